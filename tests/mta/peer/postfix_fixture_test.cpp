// postfix_fixture_test.cpp: the standalone Postfix peer (tests/support/postfix.hpp) on its own: it
// keeps mail for its domains (plaintext, STARTTLS offered and required, python smtplib as the client),
// refuses to relay when it has no relayhost, relays everything to a python SMTP sink with and without
// TLS (a certificate that does not name the relay stays queued), and leaves no process behind.
#include <catch2/catch.hpp>

#include <signal.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

#include "tests/mta/peer/peer_support.hpp"
#include "tests/support/pki.hpp"
#include "tests/support/postfix.hpp"
#include "tests/support/process.hpp"

namespace fs = std::filesystem;
using namespace std::chrono_literals;
using test::PostfixInstance;
using test::PostfixOptions;

namespace {

using test::peer::has;
using test::peer::send_mail;
using test::peer::Sink;

// Is any process still running with this session id (Postfix's master leads its own session)?
bool session_alive(pid_t session) {
  std::error_code ec;
  for (const auto& e : fs::directory_iterator("/proc", ec)) {
    const std::string pid = e.path().filename().string();
    if (pid.empty() || !std::all_of(pid.begin(), pid.end(), ::isdigit)) continue;
    std::ifstream in(e.path() / "stat");
    std::string line;
    if (!std::getline(in, line)) continue;
    auto close = line.rfind(')');
    if (close == std::string::npos) continue;
    std::istringstream rest(line.substr(close + 1));
    char state = 0;
    long ppid = 0, pgrp = 0, sid = 0;
    rest >> state >> ppid >> pgrp >> sid;
    if (state != 'Z' && sid == session) return true;
  }
  return false;
}

}  // namespace

TEST_CASE("Postfix keeps mail for its domains, one Maildir file per recipient", "[postfix][peer]") {
  PostfixInstance postfix;
  auto r = send_mail(postfix.port(), "sender@client.test", {"bob@peer.example", "Carol@peer.example"}, "plain one");
  INFO(r.output << "\nmaillog:\n" << postfix.log());
  REQUIRE(r.exit_code == 0);
  REQUIRE(has(r.output, "sent"));
  REQUIRE_FALSE(has(r.output, "refused"));

  auto got = postfix.wait_for_messages(2, 20s);
  REQUIRE(got.size() == 2);
  auto bob = postfix.messages_for("bob@peer.example");
  REQUIRE(bob.size() == 1);
  CHECK(bob[0].return_path == "sender@client.test");
  CHECK(bob[0].header("Subject") == "plain one");
  CHECK(has(bob[0].header("Received"), "by postfix.test (Postfix) with ESMTP"));
  // Dot-unstuffed by smtpd as RFC 5321 §4.5.2 asks.
  CHECK(has(bob[0].body(), "\n.a line that starts with a dot"));
  CHECK(postfix.messages_for("carol@peer.example").size() == 1);
  CHECK(postfix.wait_for_empty_queue(10s));
}

TEST_CASE("Postfix without a relayhost refuses other domains at RCPT", "[postfix][peer]") {
  PostfixInstance postfix;
  auto r = send_mail(postfix.port(), "sender@client.test", {"someone@elsewhere.example", "bob@peer.example"}, "relay");
  INFO(r.output);
  REQUIRE(r.exit_code == 0);
  CHECK(has(r.output, "refused someone@elsewhere.example 554"));
  CHECK(has(r.output, "Relay access denied"));
  REQUIRE(postfix.wait_for_messages(1, 20s).size() == 1);
  CHECK(postfix.messages_for("someone@elsewhere.example").empty());
}

TEST_CASE("Postfix offers STARTTLS with the deployment's certificate", "[postfix][peer][tls]") {
  PostfixOptions o;
  o.server_tls = PostfixOptions::ServerTls::Offer;
  PostfixInstance postfix(o);

  // smtplib checks the chain against the deployment CA and the name mta1.
  auto r = send_mail(postfix.port(), "sender@client.test", {"bob@peer.example"}, "over tls", "starttls");
  INFO(r.output << "\nmaillog:\n" << postfix.log());
  REQUIRE(has(r.output, "tls TLSv1.3"));
  REQUIRE(has(r.output, "sent"));
  // Plaintext is still accepted when TLS is only offered.
  auto plain = send_mail(postfix.port(), "sender@client.test", {"bob@peer.example"}, "in clear");
  REQUIRE(has(plain.output, "sent"));

  auto got = postfix.wait_for_messages(2, 20s);
  REQUIRE(got.size() == 2);
  std::string tls_received, plain_received;
  for (const auto& m : got) (m.header("Subject") == "over tls" ? tls_received : plain_received) = m.header("Received");
  CHECK(has(tls_received, "using TLSv1.3"));
  CHECK_FALSE(has(plain_received, "using TLS"));
  CHECK(postfix.wait_for_log("Anonymous TLS connection established from localhost[127.0.0.1]", 5s));
}

TEST_CASE("Postfix requiring TLS refuses MAIL before STARTTLS", "[postfix][peer][tls]") {
  PostfixOptions o;
  o.server_tls = PostfixOptions::ServerTls::Require;
  PostfixInstance postfix(o);
  auto plain = send_mail(postfix.port(), "sender@client.test", {"bob@peer.example"}, "in clear");
  INFO(plain.output);
  CHECK(has(plain.output, "Must issue a STARTTLS command first"));
  auto tls = send_mail(postfix.port(), "sender@client.test", {"bob@peer.example"}, "over tls", "starttls");
  INFO(tls.output);
  CHECK(has(tls.output, "sent"));
  auto got = postfix.wait_for_messages(1, 20s);
  REQUIRE(got.size() == 1);
  CHECK(got[0].header("Subject") == "over tls");
}

TEST_CASE("Postfix relays everything else to its relayhost", "[postfix][peer][relay]") {
  SECTION("in plaintext") {
    Sink sink(false);
    PostfixOptions o;
    o.relay_port = sink.port;
    PostfixInstance postfix(o);
    auto r = send_mail(postfix.port(), "sender@client.test", {"alice@example.com", "bob@example.com"}, "relayed");
    INFO(r.output << "\nmaillog:\n" << postfix.log());
    REQUIRE(has(r.output, "sent"));
    auto kept = sink.wait_for(1);
    INFO("sink log: " << sink.log() << "\nmaillog:\n" << postfix.log());
    REQUIRE(kept.size() == 1);
    CHECK(kept[0].helo == "postfix.test");
    CHECK(kept[0].tls == "none");
    CHECK(kept[0].mail == "sender@client.test");
    CHECK(kept[0].rcpts == std::vector<std::string>{"alice@example.com", "bob@example.com"});
    CHECK(has(kept[0].data, "Subject: relayed\r\n"));
    CHECK(has(kept[0].data, "by postfix.test (Postfix) with ESMTP"));
    CHECK(has(kept[0].data, "\r\n.a line that starts with a dot\r\n"));
    CHECK(postfix.wait_for_empty_queue(10s));
    // Its own domain is still kept locally.
    REQUIRE(has(send_mail(postfix.port(), "sender@client.test", {"bob@peer.example"}, "local").output, "sent"));
    CHECK(postfix.wait_for_messages(1, 20s).size() == 1);
  }
  SECTION("with STARTTLS required") {
    Sink sink(true);
    PostfixOptions o;
    o.relay_port = sink.port;
    o.relay_tls = PostfixOptions::RelayTls::Encrypt;
    PostfixInstance postfix(o);
    REQUIRE(has(send_mail(postfix.port(), "sender@client.test", {"alice@example.com"}, "relayed").output, "sent"));
    auto kept = sink.wait_for(1);
    INFO("maillog:\n" << postfix.log());
    REQUIRE(kept.size() == 1);
    CHECK(kept[0].tls == "TLSv1.3");
    CHECK(kept[0].rcpts == std::vector<std::string>{"alice@example.com"});
  }
  SECTION("with the certificate verified against the deployment CA") {
    Sink sink(true);
    PostfixOptions o;
    o.relay_port = sink.port;
    o.relay_tls = PostfixOptions::RelayTls::Verify;
    o.relay_tls_name = "mta1";
    PostfixInstance postfix(o);
    REQUIRE(has(send_mail(postfix.port(), "sender@client.test", {"alice@example.com"}, "verified").output, "sent"));
    auto kept = sink.wait_for(1);
    INFO("maillog:\n" << postfix.log());
    REQUIRE(kept.size() == 1);
    CHECK(kept[0].tls == "TLSv1.3");
    CHECK(postfix.wait_for_log("Verified TLS connection established to 127.0.0.1[127.0.0.1]", 5s));
  }
  SECTION("a certificate that does not carry the required name: the mail stays queued") {
    Sink sink(true);
    PostfixOptions o;
    o.relay_port = sink.port;
    o.relay_tls = PostfixOptions::RelayTls::Verify;
    o.relay_tls_name = "other.example";
    PostfixInstance postfix(o);
    REQUIRE(has(send_mail(postfix.port(), "sender@client.test", {"alice@example.com"}, "unverified").output, "sent"));
    INFO("maillog:\n" << postfix.log());
    CHECK(postfix.wait_for_log("status=deferred", 20s));
    CHECK(has(postfix.log(), "Server certificate not verified"));
    CHECK(sink.kept().empty());
    CHECK(postfix.queued() == 1);
  }
}

TEST_CASE("Postfix retries a relayhost that was down once it is up", "[postfix][peer][relay]") {
  // Nothing listens on the relayhost's port yet: the first attempt fails and the mail is deferred;
  // a sink then takes that port and the retry (flushed here, else within 2 s) reaches it.
  const int port = test::free_port();
  PostfixOptions o;
  o.relay_port = port;
  PostfixInstance postfix(o);
  REQUIRE(has(send_mail(postfix.port(), "sender@client.test", {"alice@example.com"}, "later").output, "sent"));
  INFO("maillog:\n" << postfix.log());
  REQUIRE(postfix.wait_for_log("status=deferred", 20s));
  CHECK(has(postfix.log(), "Connection refused"));
  CHECK(postfix.queued() == 1);
  Sink sink(false, port);
  CHECK(postfix.flush());
  auto kept = sink.wait_for(1);
  REQUIRE(kept.size() == 1);
  CHECK(has(kept[0].data, "Subject: later\r\n"));
  CHECK(postfix.wait_for_empty_queue(10s));
}

TEST_CASE("Postfix stops without leaving a process behind", "[postfix][peer]") {
  PostfixOptions o;
  o.server_tls = PostfixOptions::ServerTls::Offer;
  PostfixInstance postfix(o);
  REQUIRE(has(send_mail(postfix.port(), "sender@client.test", {"bob@peer.example"}, "before stop").output, "sent"));
  REQUIRE(postfix.wait_for_messages(1, 20s).size() == 1);
  const pid_t master = postfix.master_pid();
  REQUIRE(session_alive(master));
  const int port = postfix.port();
  CHECK(postfix.stop());
  CHECK_FALSE(session_alive(master));
  CHECK_FALSE(test::wait_for_port(port, 200ms));
  CHECK(postfix.stop());  // again: nothing to do
}
