// smtpd_test.cpp: postern-mta's SMTP listeners with real clients (swaks, python smtplib): the queue
// takes what was answered 250, the relay matrix, AUTH only under TLS and only on submission by
// default, sender identity, the limits and bad input.
#include <catch2/catch.hpp>

#include <string>
#include <thread>
#include <vector>

#include "mta/queue/queue.hpp"
#include "tests/mta/support/mta_daemon.hpp"
#include "tests/store/support/store_daemon.hpp"
#include "tests/support/dnsmasq.hpp"
#include "tests/support/line_client.hpp"
#include "tests/support/process.hpp"

using namespace std::chrono_literals;

namespace {

bool contains(const std::string& haystack, const std::string& needle) { return haystack.find(needle) != std::string::npos; }

// swaks against one of the mta's ports; `tls`: "" (none), "starttls" or "implicit".
test::CommandResult swaks(int port, const std::string& tls, std::vector<std::string> extra) {
  std::vector<std::string> argv{"swaks", "--server", "127.0.0.1", "--port", std::to_string(port),
                                "--helo", "client.example.org", "--timeout", "20"};
  if (tls == "starttls") argv.push_back("--tls");
  if (tls == "implicit") argv.push_back("--tls-on-connect");
  argv.insert(argv.end(), extra.begin(), extra.end());
  return test::run(argv, 60s);
}


}  // namespace

TEST_CASE("port 25 takes mail for a local user from anyone, after the queue's commit", "[integration][mta]") {
  test::StoreDaemon store;
  store.start();
  test::MtaDaemon mta(store);
  mta.start();
  auto r = swaks(mta.smtp_port(), "", {"--from", "someone@example.org", "--to", "alice@example.com"});
  INFO(r.output << mta.log());
  REQUIRE(contains(r.output, "<-  250 2.0.0 Ok: queued as "));
  CHECK(contains(r.output, "250-PIPELINING"));
  CHECK(contains(r.output, "250 STARTTLS"));
  CHECK(contains(r.output, "250-SIZE 52428800"));
  CHECK(contains(r.output, "250-CHUNKING"));
  CHECK(contains(r.output, "250-DSN"));
  CHECK_FALSE(contains(r.output, "AUTH"));
  CHECK(mta.count("comp=smtpd") > 0);
  CHECK(mta.count("phase=commit event=queued") == 1);
  // The deliverer takes it to alice's store by LMTP over mutual TLS.
  REQUIRE(mta.queue_drains());
  store.stop();
  const auto inbox = store.messages("alice@example.com");
  REQUIRE(inbox.size() == 1);
  CHECK(contains(inbox[0], "Return-Path: <someone@example.org>\r\n"));
  CHECK(contains(inbox[0], "Received: from client.example.org ([127.0.0.1]) by mta1.test (Postern)"));
}

namespace {

// One whole reply (the last line of a multi-line one), or "" on timeout.
std::string reply(test::LineClient& c) {
  while (auto line = c.read_line()) {
    if (line->size() < 4 || (*line)[3] != '-') return *line;
  }
  return "";
}

std::string say(test::LineClient& c, const std::string& command) {
  c.send(command + "\r\n");
  return reply(c);
}

std::string plain(const std::string& user, const std::string& password) {
  std::string raw = std::string("\0", 1) + user + std::string("\0", 1) + password;
  static const char* kAlphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  size_t i = 0;
  for (; i + 2 < raw.size(); i += 3) {
    const unsigned v = (static_cast<unsigned char>(raw[i]) << 16) | (static_cast<unsigned char>(raw[i + 1]) << 8) |
                       static_cast<unsigned char>(raw[i + 2]);
    for (int k = 18; k >= 0; k -= 6) out += kAlphabet[(v >> k) & 63];
  }
  if (i + 1 == raw.size()) {
    const unsigned v = static_cast<unsigned char>(raw[i]) << 16;
    out += kAlphabet[(v >> 18) & 63];
    out += kAlphabet[(v >> 12) & 63];
    out += "==";
  } else if (i + 2 == raw.size()) {
    const unsigned v = (static_cast<unsigned char>(raw[i]) << 16) | (static_cast<unsigned char>(raw[i + 1]) << 8);
    for (int k = 18; k >= 6; k -= 6) out += kAlphabet[(v >> k) & 63];
    out += "=";
  }
  return out;
}

}  // namespace

TEST_CASE("the relay matrix: who may send to a remote domain, and unknown local users at RCPT", "[integration][mta]") {
  test::StoreDaemon store;
  // 127.0.0.7 is INTERNAL_IP; 127.0.0.1 is the Internet.
  test::MtaDaemon mta(store, {.mta_extra = "internal_networks = [\"127.0.0.7/32\"]\n"});
  mta.start();
  SECTION("the Internet without AUTH: local users yes, remote no, unknown local users 550 at RCPT") {
    auto r = swaks(mta.smtp_port(), "", {"--from", "a@example.org", "--to", "friend@remote.example"});
    INFO(r.output);
    CHECK(contains(r.output, "<** 554 5.7.1 friend@remote.example: Relay access denied"));
    r = swaks(mta.smtp_port(), "", {"--from", "a@example.org", "--to", "nobody@example.com"});
    INFO(r.output);
    CHECK(contains(r.output, "<** 550 5.1.1 nobody@example.com: Recipient address rejected: User unknown"));
    r = swaks(mta.smtp_port(), "", {"--from", "a@example.org", "--to", "bob@example.com"});
    CHECK(contains(r.output, "250 2.0.0 Ok: queued as"));
    // Upper case and a subaddress name the same user.
    r = swaks(mta.smtp_port(), "", {"--from", "a@example.org", "--to", "Bob+lists@EXAMPLE.com"});
    CHECK(contains(r.output, "250 2.0.0 Ok: queued as"));
  }
  SECTION("an INTERNAL_IP client relays") {
    auto r = swaks(mta.smtp_port(), "", {"--local-interface", "127.0.0.7", "--from", "a@example.org", "--to",
                                         "friend@remote.example"});
    INFO(r.output);
    CHECK(contains(r.output, "250 2.0.0 Ok: queued as"));
    CHECK(mta.count("channel=tcp_intranet") == 1);
  }
  SECTION("after AUTH on submission the channel is tcp_auth and relays") {
    auto r = swaks(mta.submission_port(), "starttls",
                   {"--auth", "PLAIN", "--auth-user", "alice@example.com", "--auth-password", "secret-alice", "--from",
                    "alice@example.com", "--to", "friend@remote.example"});
    INFO(r.output << mta.log());
    CHECK(contains(r.output, "<~  235 2.7.0 Authentication successful"));
    CHECK(contains(r.output, "250 2.0.0 Ok: queued as"));
    CHECK(mta.count("channel=tcp_auth") == 1);
    CHECK(mta.count("user=alice@example.com") >= 1);
  }
}

TEST_CASE("AUTH: only under TLS, required on submission, not on port 25, own addresses only", "[integration][mta]") {
  test::StoreDaemon store;
  test::MtaDaemon mta(store);
  mta.start();
  SECTION("before STARTTLS: not offered, and refused with 538") {
    test::LineClient c("127.0.0.1", mta.submission_port());
    REQUIRE(contains(reply(c), "220 mta1.test"));
    c.send("EHLO client.example.org\r\n");
    std::string ehlo;
    while (auto line = c.read_line()) {
      ehlo += *line + "\n";
      if (line->size() >= 4 && (*line)[3] == ' ') break;
    }
    CHECK_FALSE(contains(ehlo, "AUTH"));
    CHECK(contains(ehlo, "STARTTLS"));
    CHECK(say(c, "AUTH PLAIN " + plain("alice@example.com", "secret-alice")) ==
          "538 5.7.11 Encryption required for requested authentication mechanism");
    CHECK(say(c, "MAIL FROM:<alice@example.com>") == "530 5.7.0 Authentication required");
  }
  SECTION("PLAIN and LOGIN after STARTTLS; a wrong password is 535") {
    auto r = swaks(mta.submission_port(), "starttls", {"--auth", "LOGIN", "--auth-user", "bob@example.com",
                                                      "--auth-password", "secret-bob", "--from", "bob@example.com",
                                                      "--to", "alice@example.com"});
    INFO(r.output);
    CHECK(contains(r.output, "~> EHLO"));
    CHECK(contains(r.output, "AUTH=")); // the legacy form beside AUTH when LOGIN is offered
    CHECK(contains(r.output, "<~  235 2.7.0 Authentication successful"));
    CHECK(contains(r.output, "250 2.0.0 Ok: queued as"));
    r = swaks(mta.submission_port(), "starttls", {"--auth", "PLAIN", "--auth-user", "bob@example.com",
                                                 "--auth-password", "wrong", "--from", "bob@example.com", "--to",
                                                 "alice@example.com"});
    CHECK(contains(r.output, "<~* 535 5.7.8 Authentication credentials invalid"));
    CHECK(mta.count("event=auth_failed") == 1);
  }
  SECTION("submission without AUTH: 530 at MAIL") {
    auto r = swaks(mta.submission_port(), "starttls", {"--from", "bob@example.com", "--to", "alice@example.com"});
    INFO(r.output);
    CHECK(contains(r.output, "<~* 530 5.7.0 Authentication required"));
  }
  SECTION("an authenticated user sends only as themselves") {
    auto r = swaks(mta.submissions_port(), "implicit", {"--auth", "PLAIN", "--auth-user", "alice@example.com",
                                                       "--auth-password", "secret-alice", "--from", "bob@example.com",
                                                       "--to", "alice@example.com"});
    INFO(r.output);
    CHECK(contains(r.output, "<~  235 2.7.0 Authentication successful"));
    CHECK(contains(r.output, "<~* 553 5.7.1 Sender address not owned by the authenticated user"));
  }
  SECTION("port 25 offers no AUTH, even under TLS") {
    auto r = swaks(mta.smtp_port(), "starttls", {"--from", "a@example.org", "--to", "alice@example.com",
                                                "--quit-after", "EHLO"});
    INFO(r.output);
    CHECK(contains(r.output, "<~  250 ENHANCEDSTATUSCODES"));
    CHECK_FALSE(contains(r.output, "AUTH"));
  }
  SECTION("465 is TLS from the first byte") {
    auto r = swaks(mta.submissions_port(), "implicit", {"--auth", "PLAIN", "--auth-user", "alice@example.com",
                                                       "--auth-password", "secret-alice", "--from",
                                                       "alice@example.com", "--to", "bob@example.com"});
    INFO(r.output);
    CHECK(contains(r.output, "250 2.0.0 Ok: queued as"));
    CHECK_FALSE(contains(r.output, "STARTTLS"));
  }
}

TEST_CASE("limits: recipients, size, messages per session, errors, idle clients", "[integration][mta]") {
  test::StoreDaemon store;
  test::MtaDaemon mta(store, {.listener_extra = "max_recipients = 2\nmax_message_size = \"4K\"\nmax_messages = 2\n"
                                                "max_errors = 5\nidle_timeout = \"2s\"\n"});
  mta.start();
  test::LineClient c("127.0.0.1", mta.smtp_port());
  REQUIRE(contains(reply(c), "220 "));
  REQUIRE(contains(say(c, "EHLO client.example.org"), "250 STARTTLS"));
  SECTION("recipients per message: 452 beyond the limit, the accepted ones still get the mail") {
    CHECK(say(c, "MAIL FROM:<a@example.org>") == "250 2.1.0 Sender OK");
    CHECK(say(c, "RCPT TO:<alice@example.com>") == "250 2.1.5 alice@example.com OK");
    CHECK(say(c, "RCPT TO:<bob@example.com>") == "250 2.1.5 bob@example.com OK");
    CHECK(say(c, "RCPT TO:<user0@example.com>") == "452 4.5.3 Too many recipients");
    CHECK(say(c, "RCPT TO:<user1@example.com>") == "452 4.5.3 Too many recipients");
    CHECK(mta.count("event=limit limit=max_recipients value=2") == 1);
    CHECK(contains(say(c, "DATA"), "354 "));
    CHECK(contains(say(c, "Subject: two\r\n\r\nbody\r\n."), "250 2.0.0 Ok: queued as"));
  }
  SECTION("message size: SIZE= over the limit at MAIL, and a DATA that grows past it at the end") {
    CHECK(say(c, "MAIL FROM:<a@example.org> SIZE=100000") == "552 5.3.4 Message size exceeds fixed maximum message size");
    CHECK(mta.count("event=refused reason=") == 1);
    CHECK(say(c, "MAIL FROM:<a@example.org>") == "250 2.1.0 Sender OK");
    CHECK(say(c, "RCPT TO:<alice@example.com>") == "250 2.1.5 alice@example.com OK");
    CHECK(contains(say(c, "DATA"), "354 "));
    std::string big = "Subject: big\r\n\r\n";
    while (big.size() < 8000) big += "0123456789012345678901234567890123456789012345678901234567890123456789\r\n";
    CHECK(contains(say(c, big + "."), "552 5.3.4"));
    // The session goes on.
    CHECK(say(c, "NOOP") == "250 2.0.0 OK");
  }
  SECTION("messages per session") {
    for (int i = 0; i < 2; ++i) {
      CHECK(say(c, "MAIL FROM:<a@example.org>") == "250 2.1.0 Sender OK");
      CHECK(say(c, "RCPT TO:<alice@example.com>") == "250 2.1.5 alice@example.com OK");
      CHECK(contains(say(c, "DATA"), "354 "));
      CHECK(contains(say(c, "Subject: n\r\n\r\nbody\r\n."), "250 2.0.0 Ok: queued as"));
    }
    CHECK(contains(say(c, "MAIL FROM:<a@example.org>"), "421 4.7.0"));
    CHECK(c.closed_by_peer());
    CHECK(mta.count("event=limit limit=max_messages value=2") == 1);
  }
  SECTION("errors per session: 421 and close") {
    for (int i = 0; i < 4; ++i) CHECK(say(c, "BOGUS") == "500 5.5.2 Command not recognized");
    CHECK(say(c, "BOGUS") == "500 5.5.2 Command not recognized");
    CHECK(contains(reply(c), "421 4.7.0"));
    CHECK(c.closed_by_peer());
  }
  SECTION("a client that stops talking is dropped with 421") {
    test::LineClient slow("127.0.0.1", mta.smtp_port(), 6s);
    REQUIRE(contains(reply(slow), "220 "));
    CHECK(contains(reply(slow), "421 4.4.2"));
    CHECK(slow.closed_by_peer());
  }
}

TEST_CASE("bad input gets a protocol error and the session or the daemon goes on", "[integration][mta]") {
  test::StoreDaemon store;
  test::MtaDaemon mta(store, {.listener_extra = "max_errors = 50\n"});
  mta.start();
  test::LineClient c("127.0.0.1", mta.smtp_port());
  REQUIRE(contains(reply(c), "220 "));
  CHECK(say(c, "MAIL FROM:<a@example.org>") == "503 5.5.1 Send HELO or EHLO first");
  REQUIRE(contains(say(c, "EHLO client.example.org"), "250 "));
  CHECK(say(c, "MAIL FROM:<a@example.org>\r\nBOGUS") == "250 2.1.0 Sender OK");
  CHECK(reply(c) == "500 5.5.2 Command not recognized");
  CHECK(say(c, "RCPT TO:<" + std::string(3000, 'a') + "@example.com>") == "500 5.5.2 Line too long");
  CHECK(contains(say(c, std::string("RCPT TO:<al\0ice@example.com>", 27)), "501 "));
  CHECK(contains(say(c, "RCPT TO:<@relay.example:alice@example.com>"), "250 "));  // a source route is ignored
  CHECK(contains(say(c, "RCPT TO:<alice@@example.com>"), "501 "));
  CHECK(contains(say(c, "RCPT TO:alice@example.com"), "501 "));
  CHECK(contains(say(c, "DATA extra"), "501 "));
  // A bare LF in the text is made a line end; a bare-LF dot does not end the data.
  CHECK(contains(say(c, "DATA"), "354 "));
  c.send("Subject: lf\r\n\r\nline one\nline two\n.\nstill data\r\n.\r\n");
  CHECK(contains(reply(c), "250 2.0.0 Ok: queued as"));
  SECTION("10,000 pipelined RCPTs: 452 past the limit, no crash") {
    CHECK(say(c, "MAIL FROM:<a@example.org>") == "250 2.1.0 Sender OK");
    std::string burst;
    for (int i = 0; i < 10000; ++i) burst += "RCPT TO:<alice@example.com>\r\n";
    c.send(burst);
    size_t ok = 0, full = 0;
    for (int i = 0; i < 10000; ++i) {
      const std::string r = reply(c);
      if (contains(r, "250 2.1.5")) ++ok;
      if (contains(r, "452 4.5.3")) ++full;
      if (r.empty()) break;
    }
    CHECK(ok == 100);
    CHECK(full == 9900);
  }
  test::LineClient other("127.0.0.1", mta.smtp_port());
  CHECK(contains(reply(other), "220 "));
}

TEST_CASE("STARTTLS: a command pipelined behind it in plaintext is dropped, and the client greets again", "[integration][mta]") {
  test::StoreDaemon store;
  test::MtaDaemon mta(store);
  mta.start();
  auto r = test::run({"python3", test::source_path("tests/mta/smtp_probe.py"), "inject", "--port",
                      std::to_string(mta.smtp_port())}, 60s);
  INFO(r.output << mta.log());
  REQUIRE(r.exit_code == 0);
  CHECK(contains(r.output, "starttls 220 2.0.0 Ready to start TLS"));
  CHECK(contains(r.output, "tls-ehlo 250 ENHANCEDSTATUSCODES"));  // no STARTTLS any more
  CHECK(contains(r.output, "rcpt 503 5.5.1 Bad sequence of commands"));
  CHECK(mta.count("event=pipelined_plaintext_discarded") == 1);
}

TEST_CASE("python smtplib submits on 587 and 465", "[integration][mta]") {
  test::StoreDaemon store;
  test::MtaDaemon mta(store);
  mta.start();
  for (bool implicit : {false, true}) {
    std::vector<std::string> argv{"python3", test::source_path("tests/mta/smtp_probe.py"), "submit", "--port",
                                  std::to_string(implicit ? mta.submissions_port() : mta.submission_port()),
                                  "--ca", test::Pki::file("ca/ca.pem").string(), "--user", "alice@example.com",
                                  "--password", "secret-alice", "--sender", "alice@example.com",
                                  "--rcpt", "bob@example.com", "--rcpt", "nobody@example.com"};
    if (implicit) argv.push_back("--implicit");
    auto r = test::run(argv, 60s);
    INFO(r.output << mta.log());
    CHECK(r.exit_code == 0);
    CHECK(contains(r.output, "login 235"));
    CHECK(contains(r.output, "refused ['nobody@example.com']"));
    CHECK(contains(r.output, "quit 221"));
  }
  CHECK(mta.count("phase=commit event=queued") == 2);
}

TEST_CASE("EXTERNAL: a user's client certificate on 465 is offered EXTERNAL and logs in with it", "[integration][mta]") {
  test::StoreDaemon store;
  test::MtaDaemon mta(store, {.listener_extra = "client_certs = \"optional\"\n"});
  mta.start();
  const std::string cert = test::Pki::file("ca/clients/alice.pem").string();
  const std::string key = test::Pki::file("ca/clients/alice.key").string();
  // swaks has no EXTERNAL; python's smtplib sends it.
  auto r = test::run({"python3", test::source_path("tests/mta/smtp_probe.py"), "submit", "--implicit", "--port",
                      std::to_string(mta.submissions_port()), "--ca", test::Pki::file("ca/ca.pem").string(), "--cert",
                      cert, "--key", key, "--sender", "alice@example.com", "--rcpt", "friend@remote.example"},
                     60s);
  INFO(r.output << mta.log());
  CHECK(contains(r.output, "auth EXTERNAL"));
  CHECK(contains(r.output, "login 235"));
  CHECK(contains(r.output, "refused []"));
  CHECK(mta.count("mechanism=EXTERNAL") == 1);
  // Without a certificate EXTERNAL is not offered.
  r = swaks(mta.submissions_port(), "implicit", {"--quit-after", "EHLO"});
  CHECK_FALSE(contains(r.output, "EXTERNAL"));
  CHECK(contains(r.output, "PLAIN"));
}

TEST_CASE("the Received: header names the client's verified name and address, the HELO as given", "[integration][mta]") {
  // 127.0.0.9 has a PTR and a matching A record; 127.0.0.10 only a PTR whose name does not resolve back.
  test::Dnsmasq dns({"--host-record=client.test,127.0.0.9", "--ptr-record=10.0.0.127.in-addr.arpa,forged.test",
                     "--local=/test/", "--local=/127.in-addr.arpa/"});
  test::StoreDaemon store;
  store.start();
  test::MtaDaemon mta(store, {.mta_extra = "reverse_lookup = true\n",
                              .tables = "[dns]\nservers = [\"" + dns.server() + "\"]\n"});
  mta.start();
  for (const std::string source : {"127.0.0.9", "127.0.0.10"}) {
    auto r = swaks(mta.smtp_port(), "", {"--local-interface", source, "--helo", "liar.example.net", "--from",
                                         "a@example.org", "--to", "alice@example.com"});
    INFO(r.output);
    REQUIRE(contains(r.output, "250 2.0.0 Ok: queued as"));
  }
  REQUIRE(mta.queue_drains());
  store.stop();
  std::string shown;
  for (const auto& m : store.messages("alice@example.com")) shown += m;
  INFO(shown << mta.log());
  CHECK(contains(shown, "Received: from liar.example.net (client.test [127.0.0.9])"));
  // A PTR alone is whatever the address's owner wrote: not in the header.
  CHECK(contains(shown, "Received: from liar.example.net ([127.0.0.10])"));
  CHECK_FALSE(contains(shown, "forged.test"));
  CHECK(mta.count("client_name=client.test") == 1);
}

TEST_CASE("AUTH with garbage gets a clear reply each time and a good AUTH still works", "[integration][mta]") {
  test::StoreDaemon store;
  test::MtaDaemon mta(store, {.listener_extra = "max_errors = 20\n"});
  mta.start();
  auto r = test::run({"python3", test::source_path("tests/mta/smtp_probe.py"), "auth-garbage", "--port",
                      std::to_string(mta.submission_port()), "--good", plain("alice@example.com", "secret-alice")},
                     60s);
  INFO(r.output << mta.log());
  REQUIRE(r.exit_code == 0);
  CHECK(contains(r.output, "garbage 501 5.5.2 Cannot decode response"));
  CHECK(contains(r.output, "unknown 504 5.5.4 Unrecognized authentication type"));
  CHECK(contains(r.output, "badname 501 5.5.4 Syntax error in mechanism name"));
  CHECK(contains(r.output, "abort 501 5.0.0 Authentication aborted"));
  CHECK(contains(r.output, "long 50"));
  CHECK(contains(r.output, "good 235 2.7.0 Authentication successful"));
  CHECK(contains(r.output, "quit 221"));
}

TEST_CASE("a DATA that never ends is cut off at data_timeout and nothing is queued", "[integration][mta]") {
  test::StoreDaemon store;
  test::MtaDaemon mta(store, {.mta_extra = "data_timeout = \"2s\"\n"});
  mta.start();
  // Short reads, so the client trickles a line every ~300 ms: the idle timeout (10 s) never fires.
  test::LineClient c("127.0.0.1", mta.smtp_port(), 200ms);
  REQUIRE(contains(reply(c), "220 "));
  REQUIRE(contains(say(c, "EHLO client.example.org"), "250 "));
  REQUIRE(say(c, "MAIL FROM:<a@example.org>") == "250 2.1.0 Sender OK");
  REQUIRE(say(c, "RCPT TO:<alice@example.com>") == "250 2.1.5 alice@example.com OK");
  REQUIRE(contains(say(c, "DATA"), "354 "));
  std::string got;
  for (int i = 0; i < 40 && got.empty(); ++i) {
    c.send("a line now and then, never the end\r\n");
    std::this_thread::sleep_for(100ms);
    got = reply(c);
  }
  CHECK(contains(got, "421 4.4.2"));
  CHECK(mta.count("event=data_timeout") == 1);
  CHECK(contains(mta.queue_tool({"list"}), "0 messages"));
}

TEST_CASE("SCRAM-SHA-256 through the mta: authserv's challenge, our proof, its signature", "[integration][mta]") {
  test::StoreDaemon store;
  test::MtaDaemon mta(store);
  mta.start();
  auto scram = [&](const std::string& password) {
    return test::run({"python3", test::source_path("tests/mta/smtp_probe.py"), "scram", "--port",
                      std::to_string(mta.submission_port()), "--user", "alice@example.com", "--password", password},
                     60s);
  };
  auto r = scram("secret-alice");
  INFO(r.output << mta.log());
  CHECK(contains(r.output, "server-signature ok"));
  CHECK(contains(r.output, "scram 235 2.7.0 Authentication successful"));
  r = scram("wrong");
  CHECK(contains(r.output, "scram 535 5.7.8 Authentication credentials invalid"));
}

TEST_CASE("SIGHUP: a new INTERNAL_IP and new limits apply to the next session, the open one keeps its own", "[integration][mta]") {
  test::StoreDaemon store;
  test::MtaDaemon mta(store);
  mta.start();
  test::LineClient before("127.0.0.1", mta.smtp_port());
  REQUIRE(contains(reply(before), "220 "));
  REQUIRE(contains(say(before, "EHLO client.example.org"), "250 "));
  mta.reload({.mta_extra = "internal_networks = [\"127.0.0.1/32\"]\n", .listener_extra = "max_recipients = 1\n"});
  CHECK(mta.count("event=settings_reloaded") == 1);
  // The session opened before the reload still relays nothing and takes two recipients.
  CHECK(say(before, "MAIL FROM:<a@example.org>") == "250 2.1.0 Sender OK");
  CHECK(contains(say(before, "RCPT TO:<friend@remote.example>"), "554 5.7.1"));
  CHECK(say(before, "RCPT TO:<alice@example.com>") == "250 2.1.5 alice@example.com OK");
  CHECK(say(before, "RCPT TO:<bob@example.com>") == "250 2.1.5 bob@example.com OK");
  // A new one is tcp_intranet now, with the new limit.
  test::LineClient after("127.0.0.1", mta.smtp_port());
  REQUIRE(contains(reply(after), "220 "));
  REQUIRE(contains(say(after, "EHLO client.example.org"), "250 "));
  CHECK(say(after, "MAIL FROM:<a@example.org>") == "250 2.1.0 Sender OK");
  CHECK(say(after, "RCPT TO:<friend@remote.example>") == "250 2.1.5 friend@remote.example OK");
  CHECK(say(after, "RCPT TO:<alice@example.com>") == "452 4.5.3 Too many recipients");
}
