// lmtp_test.cpp: postern-store with real clients: swaks and python's smtplib.LMTP over mutual TLS
// (implicit and STARTTLS) with certificates made by deploy/certs, refusals of clients without an
// allowed certificate, recipients checked with a real authserv, quotas, bad input, and a delivery
// storm with kill -9 of the store: every acknowledged message is there, intact and once.
#include <catch2/catch.hpp>

#include <csignal>
#include <fstream>
#include <map>
#include <set>
#include <sstream>
#include <thread>

#include <sys/mount.h>
#include <sys/socket.h>
#include <unistd.h>

#include "tests/store/support/store_daemon.hpp"
#include "tests/support/pki.hpp"
#include "tests/support/process.hpp"

namespace fs = std::filesystem;
using namespace std::chrono_literals;

namespace {

std::string client_script() { return test::source_path("tests/store/lmtp_client.py"); }

// The store fixture with python's smtplib.LMTP as its client.
class Store : public test::StoreDaemon {
 public:
  explicit Store(test::StoreDaemonOptions options = {}) : StoreDaemon(std::move(options)) {}

  // python's smtplib.LMTP with mta1's client certificate (or `client`'s).
  test::CommandResult python(std::vector<std::string> args, const std::string& tls = "implicit",
                             const std::string& client = "ca/clients/mta1") {
    std::vector<std::string> argv{"python3", client_script()};
    argv.insert(argv.end(), args.begin(), args.end());
    argv.insert(argv.end(), {"--port", std::to_string(tls == "implicit" ? implicit_port() : starttls_port()), "--tls",
                             tls, "--ca", test::Pki::file("ca/ca.pem").string()});
    if (!client.empty()) {
      argv.insert(argv.end(), {"--cert", test::Pki::file(client + ".pem").string(), "--key",
                               test::Pki::file(client + ".key").string()});
    }
    return test::run(argv, 120s);
  }
  test::CommandResult send(const std::vector<std::string>& rcpts, const std::string& tls = "implicit",
                           const std::string& client = "ca/clients/mta1", std::vector<std::string> extra = {}) {
    std::vector<std::string> args{"send"};
    for (const auto& r : rcpts) args.insert(args.end(), {"--rcpt", r});
    args.insert(args.end(), extra.begin(), extra.end());
    return python(args, tls, client);
  }
};

// What lmtp_client.py's message() sends for an id: the same bytes, built here to compare.
std::string sent_message(const std::string& id, size_t size) {
  const std::string head = "From: sender@example.org\r\nTo: rcpt@example.com\r\nSubject: test " + id +
                           "\r\nMessage-ID: <" + id + "@test>\r\n\r\n";
  const std::string line = "0123456789abcdefghijklmnopqrstuvwxyz ABCDEFGHIJKLMNOPQRSTUVWXYZ " + id + "\r\n";
  std::string body;
  while (head.size() + body.size() < size) body += line;
  return head + body;
}

bool contains(const std::string& haystack, const std::string& needle) { return haystack.find(needle) != std::string::npos; }

std::string swaks(const Store& s, std::vector<std::string> extra) {
  std::vector<std::string> argv{"swaks", "--protocol", "LMTP", "--server", "127.0.0.1",
                                "--port", std::to_string(s.implicit_port()), "--tls-on-connect",
                                "--tls-ca-path", test::Pki::file("ca/ca.pem").string(),
                                "--from", "sender@example.org", "--timeout", "20"};
  argv.insert(argv.end(), extra.begin(), extra.end());
  auto r = test::run(argv, 60s);
  return r.output;
}

}  // namespace

TEST_CASE("swaks delivers over implicit TLS with an allowed client certificate, one reply per recipient", "[integration][store]") {
  Store s;
  s.start();
  const std::string out = swaks(s, {"--to", "alice@example.com,bob@example.com,alice+Archive@example.com,nobody@example.com,elsewhere@example.com",
                                    "--tls-cert", test::Pki::file("ca/clients/mta1.pem").string(),
                                    "--tls-key", test::Pki::file("ca/clients/mta1.key").string(),
                                    "--header", "Subject: swaks test"});
  INFO(out);
  CHECK(contains(out, "250 2.1.5 alice@example.com delivered to INBOX"));
  CHECK(contains(out, "250 2.1.5 bob@example.com delivered to INBOX"));
  CHECK(contains(out, "250 2.1.5 alice+Archive@example.com delivered to Archive"));
  CHECK(contains(out, "550 5.1.1 nobody@example.com"));
  CHECK(contains(out, "550 5.1.6 elsewhere@example.com"));
  REQUIRE(s.stop() == 0);
  auto inbox = s.messages("alice@example.com");
  REQUIRE(inbox.size() == 1);
  CHECK(inbox[0].rfind("Delivered-To: alice@example.com\r\nReturn-Path: <sender@example.org>\r\n", 0) == 0);
  CHECK(contains(inbox[0], "Subject: swaks test"));
  CHECK(s.messages("alice@example.com", "Archive").size() == 1);
  CHECK(s.messages("bob@example.com").size() == 1);
}

TEST_CASE("python smtplib.LMTP delivers over STARTTLS with a client certificate, and a retried XID is stored once", "[integration][store]") {
  Store s;
  s.start();
  auto first = s.send({"alice@example.com"}, "starttls", "ca/clients/mta1", {"--xid", "retry.1", "--size", "5000"});
  INFO(first.output);
  CHECK(contains(first.output, "RCPT alice@example.com 250"));
  auto again = s.send({"alice@example.com"}, "starttls", "ca/clients/mta1", {"--xid", "retry.1", "--size", "5000"});
  INFO(again.output);
  CHECK(contains(again.output, "RCPT alice@example.com 250 2.1.5 alice@example.com already delivered"));
  REQUIRE(s.stop() == 0);
  CHECK(s.messages("alice@example.com").size() == 1);
}

TEST_CASE("clients without an allowed certificate are refused and nothing is stored", "[integration][store]") {
  Store s;
  s.start();
  // No certificate: the handshake itself fails (client_certs = required).
  auto none = s.send({"alice@example.com"}, "implicit", "");
  INFO(none.output);
  CHECK(contains(none.output, "FAILED"));
  // A certificate of another CA: refused in the handshake too.
  auto foreign = s.send({"alice@example.com"}, "implicit", "other-ca/clients/stranger");
  INFO(foreign.output);
  CHECK(contains(foreign.output, "FAILED"));
  // Our CA, a name not in allowed_clients: 554 5.7.1 and the connection closes.
  auto other = s.send({"alice@example.com"}, "starttls", "ca/clients/mta3");
  INFO(other.output);
  CHECK_FALSE(contains(other.output, "RCPT alice@example.com 250"));
  CHECK(s.count("event=client_refused") >= 1);
  // Before STARTTLS nothing but LHLO, STARTTLS, NOOP and QUIT is taken.
  const std::string plain = test::run({"python3", "-c",
                                       "import smtplib,sys\n"
                                       "c=smtplib.LMTP(timeout=10)\nc.connect('127.0.0.1'," +
                                           std::to_string(s.starttls_port()) +
                                           ")\nc.ehlo()\nprint(c.mail('a@b'))\n"},
                                      30s)
                                .output;
  INFO(plain);
  CHECK(contains(plain, "530"));
  REQUIRE(s.stop() == 0);
  CHECK(s.messages("alice@example.com").empty());
}

TEST_CASE("a mailbox over quota gets 452 4.2.2 and keeps what it had", "[integration][store]") {
  Store s;
  s.start();
  auto first = s.send({"small@example.com", "alice@example.com"}, "implicit", "ca/clients/mta1", {"--size", "6000"});
  INFO(first.output);
  CHECK(contains(first.output, "RCPT small@example.com 250"));
  // 6 KB more would pass the 10K quota: refused after the data, the other recipient still served.
  auto second = s.send({"small@example.com", "alice@example.com"}, "implicit", "ca/clients/mta1", {"--size", "6000"});
  INFO(second.output);
  CHECK(contains(second.output, "RCPT small@example.com 452 4.2.2"));
  CHECK(contains(second.output, "RCPT alice@example.com 250"));
  // A mailbox at its quota is refused at RCPT, before any data.
  auto one = s.send({"few@example.com"});
  CHECK(contains(one.output, "RCPT few@example.com 250"));
  const size_t rejects_before = s.count("event=delivered");
  auto third = s.send({"few@example.com"});
  INFO(third.output);
  CHECK(contains(third.output, "RCPT few@example.com 452 4.2.2"));
  CHECK(s.count("event=delivered") == rejects_before);  // no data was taken
  REQUIRE(s.stop() == 0);
  CHECK(s.messages("small@example.com").size() == 1);
  CHECK(s.messages("alice@example.com").size() == 2);
  CHECK(s.messages("few@example.com").size() == 1);
}

TEST_CASE("bad input gets protocol errors and leaves the store healthy", "[integration][store]") {
  Store s({.lmtp_extra = "plaintext = true\n"});
  s.start();
  // Raw LMTP on the STARTTLS port (plaintext allowed here), one script per case, through python.
  auto session = [&](const std::string& body) {
    const std::string script =
        "import socket,sys,time\n"
        "s=socket.create_connection(('127.0.0.1'," + std::to_string(s.starttls_port()) + "),timeout=10)\n"
        "f=s.makefile('rb')\n"
        "def rd():\n"
        "  out=b''\n"
        "  while True:\n"
        "    l=f.readline()\n"
        "    out+=l\n"
        "    if not l or l[3:4]==b' ': return out.decode(errors='replace')\n"
        "print(rd(),end='')\n"
        "s.sendall(b'LHLO t\\r\\n'); print(rd(),end='')\n" + body;
    return test::run({"python3", "-c", script}, 60s).output;
  };
  SECTION("bare LF and NUL in the data are refused with nothing stored") {
    auto out = session(
        "s.sendall(b'MAIL FROM:<a@b>\\r\\nRCPT TO:<alice@example.com>\\r\\nDATA\\r\\n')\n"
        "for _ in range(3): print(rd(),end='')\n"
        "s.sendall(b'Subject: x\\r\\n\\r\\nbare\\nlf\\r\\n.\\r\\n'); print(rd(),end='')\n"
        "s.sendall(b'MAIL FROM:<a@b>\\r\\nRCPT TO:<alice@example.com>\\r\\nDATA\\r\\n')\n"
        "for _ in range(3): print(rd(),end='')\n"
        "s.sendall(b'Subject: x\\r\\n\\r\\nnul\\x00here\\r\\n.\\r\\n'); print(rd(),end='')\n");
    INFO(out);
    CHECK(contains(out, "550 5.6.0"));
    CHECK_FALSE(contains(out, "delivered"));
  }
  SECTION("a message over the size limit is refused at MAIL SIZE and during DATA") {
    auto out = session(
        "s.sendall(b'MAIL FROM:<a@b> SIZE=9999999\\r\\n'); print(rd(),end='')\n"
        "s.sendall(b'MAIL FROM:<a@b>\\r\\nRCPT TO:<alice@example.com>\\r\\nDATA\\r\\n')\n"
        "for _ in range(3): print(rd(),end='')\n"
        "s.sendall(b'Subject: big\\r\\n\\r\\n' + (b'x'*900+b'\\r\\n')*1500 + b'.\\r\\n'); print(rd(),end='')\n");
    INFO(out);
    CHECK(contains(out, "552 5.3.4"));
    CHECK(contains(out, "552"));
    CHECK_FALSE(contains(out, "delivered"));
  }
  SECTION("a command line over the limit, then 10,000 RCPTs") {
    auto out = session(
        "s.sendall(b'NOOP ' + b'x'*5000 + b'\\r\\n'); print(rd(),end='')\n"
        "s.sendall(b'MAIL FROM:<a@b>\\r\\n'); print(rd(),end='')\n"
        "s.sendall(b''.join(b'RCPT TO:<alice@example.com>\\r\\n' for _ in range(10000)))\n"
        "codes={}\n"
        "for _ in range(10000):\n"
        "  r=rd(); codes[r[:9]]=codes.get(r[:9],0)+1\n"
        "print(sorted(codes.items()))\n"
        "s.sendall(b'RSET\\r\\nQUIT\\r\\n'); print(rd(),end=''); print(rd(),end='')\n");
    INFO(out);
    CHECK(contains(out, "500 5.5.2"));
    CHECK(contains(out, "('250 2.1.5', 100)"));
    CHECK(contains(out, "('452 4.5.3', 9900)"));
    CHECK(contains(out, "221 2.0.0"));
  }
  SECTION("a client that stalls mid-DATA holds up no other delivery") {
    auto stalled = std::thread([&] {
      session(
          "s.sendall(b'MAIL FROM:<a@b>\\r\\nRCPT TO:<bob@example.com>\\r\\nDATA\\r\\n')\n"
          "for _ in range(3): rd()\n"
          "s.sendall(b'Subject: half\\r\\n\\r\\nhalf a mess'); time.sleep(8)\n");
    });
    std::this_thread::sleep_for(500ms);
    const auto started = std::chrono::steady_clock::now();
    auto out = session(
        "s.sendall(b'MAIL FROM:<a@b>\\r\\nRCPT TO:<alice@example.com>\\r\\nDATA\\r\\n')\n"
        "for _ in range(3): print(rd(),end='')\n"
        "s.sendall(b'Subject: meanwhile\\r\\n\\r\\nok\\r\\n.\\r\\n'); print(rd(),end='')\n");
    const auto took = std::chrono::steady_clock::now() - started;
    stalled.join();
    INFO(out);
    CHECK(contains(out, "250 2.1.5 alice@example.com delivered"));
    CHECK(took < 5s);
    CHECK(s.count("event=timeout") + s.count("event=message_abandoned") >= 1);
  }
  SECTION("BDAT chunks: one reply per chunk, one per recipient after LAST; binary bytes kept") {
    auto out = session(
        "s.sendall(b'MAIL FROM:<a@b>\\r\\nRCPT TO:<alice@example.com>\\r\\nRCPT TO:<bob@example.com>\\r\\n')\n"
        "for _ in range(3): print(rd(),end='')\n"
        "p1=b'Subject: chunked\\r\\n\\r\\nfirst '\n"
        "p2=b'lone\\nLF kept\\r\\n'\n"
        "s.sendall(b'BDAT %d\\r\\n' % len(p1) + p1); print(rd(),end='')\n"
        "s.sendall(b'BDAT %d LAST\\r\\n' % len(p2) + p2); print(rd(),end=''); print(rd(),end='')\n");
    INFO(out);
    CHECK(contains(out, "250 2.0.0 26 octets received"));
    CHECK(contains(out, "250 2.1.5 alice@example.com delivered to INBOX"));
    CHECK(contains(out, "250 2.1.5 bob@example.com delivered to INBOX"));
    REQUIRE(s.stop() == 0);
    auto inbox = s.messages("bob@example.com");
    REQUIRE(inbox.size() == 1);
    CHECK(contains(inbox[0], "Subject: chunked\r\n\r\nfirst lone\nLF kept\r\n"));
    s.start();
  }
  SECTION("a data line over 64 KiB refuses the message, the session goes on") {
    auto out = session(
        "s.sendall(b'MAIL FROM:<a@b>\\r\\nRCPT TO:<alice@example.com>\\r\\nDATA\\r\\n')\n"
        "for _ in range(3): print(rd(),end='')\n"
        "s.sendall(b'Subject: long\\r\\n\\r\\n' + b'y'*70000 + b'\\r\\n.\\r\\n'); print(rd(),end='')\n"
        "s.sendall(b'NOOP\\r\\n'); print(rd(),end='')\n");
    INFO(out);
    CHECK(contains(out, "554 5.6.0"));
    CHECK(contains(out, "250 2.0.0 OK"));
  }
  SECTION("malformed MIME is stored with a structure that decodes") {
    auto out = session(
        "s.sendall(b'MAIL FROM:<a@b>\\r\\nRCPT TO:<bob@example.com>\\r\\nDATA\\r\\n')\n"
        "for _ in range(3): print(rd(),end='')\n"
        "s.sendall(b'Content-Type: multipart/mixed; boundary=\\\"b1\\\"\\r\\nSubject: =?utf-8?q?broken?=\\r\\n\\r\\n--b1\\r\\n"
        "Content-Type: message/rfc822\\r\\n\\r\\nContent-Type: multipart/alternative; boundary=b2\\r\\n\\r\\n--b2\\r\\nno end\\r\\n.\\r\\n')\n"
        "print(rd(),end='')\n");
    INFO(out);
    CHECK(contains(out, "250 2.1.5 bob@example.com delivered"));
  }
  // After all of it the store still delivers, and kept nothing it refused.
  auto ok = s.send({"alice@example.com"}, "off", "");
  INFO(ok.output);
  CHECK(contains(ok.output, "RCPT alice@example.com 250"));
  REQUIRE(s.stop() == 0);
  for (const auto& m : s.messages("alice@example.com")) {
    CHECK_FALSE(contains(m, "bare\nlf"));
    CHECK_FALSE(contains(m, "Subject: big"));
  }
  for (const auto& m : s.messages("bob@example.com")) CHECK_FALSE(contains(m, "half a mess"));
  CHECK(s.structures_decode());
}

TEST_CASE("a full disk is a temporary failure with nothing half-written", "[integration][store]") {
  if (geteuid() != 0) {
    WARN("needs root to mount a small tmpfs; skipped");
    return;
  }
  test::TempDir mount_dir;
  const std::string where = (mount_dir / "small").string();
  fs::create_directories(where);
  REQUIRE(::mount("tmpfs", where.c_str(), "tmpfs", 0, "size=3m") == 0);
  struct Unmount {
    std::string path;
    ~Unmount() { ::umount2(path.c_str(), MNT_DETACH); }
  } unmount{where};
  {
    Store s({.lmtp_extra = "max_message_size = \"2M\"\n", .store_extra = "map_size = \"64M\"\n", .data_dir = where + "/store"});
    s.start();
    auto first = s.send({"alice@example.com"}, "implicit", "ca/clients/mta1", {"--size", "200000"});
    INFO(first.output);
    CHECK(contains(first.output, "RCPT alice@example.com 250"));
    bool refused = false;
    for (int i = 0; i < 12 && !refused; ++i) {
      auto more = s.send({"alice@example.com"}, "implicit", "ca/clients/mta1", {"--size", "900000"});
      refused = contains(more.output, "RCPT alice@example.com 452 4.3.1");
      INFO(more.output);
      if (!refused) CHECK(contains(more.output, "RCPT alice@example.com 250"));
    }
    CHECK(refused);
    CHECK(s.count("event=delivery_failed") >= 1);
    REQUIRE(s.stop() == 0);
    auto stored = s.messages("alice@example.com");
    for (const auto& m : stored) CHECK(contains(m, "Message-ID: <single@test>"));
    CHECK_FALSE(stored.empty());
  }
}

TEST_CASE("a delivery storm with kill -9 of the store loses no acknowledged message and stores none twice", "[integration][store][slow]") {
  Store s;
  s.start();
  const fs::path acked = s.dir() / "acked.txt";
  std::vector<std::string> users{"user0@example.com", "user1@example.com", "user2@example.com", "user3@example.com"};
  std::vector<std::string> argv{"python3", client_script(), "storm", "--port", std::to_string(s.implicit_port()),
                                "--tls", "implicit", "--ca", test::Pki::file("ca/ca.pem").string(),
                                "--cert", test::Pki::file("ca/clients/mta1.pem").string(),
                                "--key", test::Pki::file("ca/clients/mta1.key").string(),
                                "--sessions", "8", "--messages", "2000", "--size", "3000",
                                "--acked", acked.string(), "--users"};
  argv.insert(argv.end(), users.begin(), users.end());
  test::ChildProcess storm(argv, (s.dir() / "storm.log").string());
  // Kill the store once about half the messages are acknowledged.
  auto lines = [&] {
    std::ifstream in(acked);
    return static_cast<size_t>(std::count(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>(), '\n'));
  };
  const auto until = std::chrono::steady_clock::now() + 120s;
  while (lines() < 1000 && std::chrono::steady_clock::now() < until && storm.running()) std::this_thread::sleep_for(5ms);
  REQUIRE(lines() >= 1000);
  s.kill9();
  REQUIRE(storm.wait(60s) == 0);
  const size_t before_crash = lines();
  CHECK(before_crash < 2000);  // the kill came mid-storm
  // The environment opens clean; the client then sends everything again with the same delivery
  // ids, as an mta retries what it got no reply for: what was committed before the kill but not
  // acknowledged is answered "already delivered", never stored twice.
  s.start();
  test::ChildProcess retry(argv, (s.dir() / "retry.log").string());
  REQUIRE(retry.wait(120s) == 0);
  REQUIRE(s.stop() == 0);
  CHECK(lines() == before_crash + 2000);

  std::map<std::string, std::string> acknowledged;  // message id -> user
  {
    std::ifstream in(acked);
    std::string id, user;
    while (in >> id >> user) acknowledged[id] = user;
  }
  std::map<std::string, int> seen;
  size_t intact = 0;
  for (const auto& user : users) {
    for (const auto& m : s.messages(user)) {
      const auto at = m.find("Message-ID: <");
      REQUIRE(at != std::string::npos);
      const std::string id = m.substr(at + 13, m.find('@', at) - at - 13);
      ++seen[id];
      // Byte for byte what the client sent, behind the two lines the store adds.
      if (m == "Delivered-To: " + user + "\r\nReturn-Path: <sender@example.org>\r\n" + sent_message(id, 3000)) ++intact;
    }
  }
  for (const auto& [id, user] : acknowledged) {
    INFO("acknowledged " << id << " for " << user);
    CHECK(seen[id] == 1);
  }
  for (const auto& [id, n] : seen) CHECK(n == 1);
  CHECK(seen.size() == 2000);
  CHECK(intact == seen.size());
}
