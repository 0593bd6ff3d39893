// client_session_test.cpp: the SMTP/LMTP client session on real sockets: LMTP over mutual TLS to the
// real postern-store (several messages on one pooled connection, XID, a 550 beside a 250, a retried
// XID stored once, STARTTLS), and SMTP to a python stub (STARTTLS opportunistic and required,
// refused, an injected reply behind the 220, PIPELINING, CHUNKING, per-recipient 4xx/5xx, RSET and
// reuse) plus refused connects and a silent server as typed failures.
#include <catch2/catch.hpp>

#include <csignal>
#include <fstream>

#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/smtpclient/client_session.hpp"
#include "common/tls/client.hpp"
#include "common/tls/nss.hpp"
#include "tests/store/support/store_daemon.hpp"
#include "tests/support/loop_thread.hpp"
#include "tests/support/nss_host.hpp"
#include "tests/support/pki.hpp"
#include "tests/support/process.hpp"

using namespace common::smtpclient;
using common::net::Endpoint;
using namespace std::chrono_literals;
namespace fs = std::filesystem;

namespace {

test::NssHost& world() { return test::nss_host(); }

std::shared_ptr<common::tls::ClientContext> tls_context(common::tls::Verify verify, const std::string& cert = "") {
  common::tls::ClientOptions o;
  o.verify = verify;
  o.client_certificate = cert;
  auto ctx = common::tls::ClientContext::create(*world().nss, o);
  if (!ctx) FAIL(ctx.error().detail);
  return *ctx;
}

Timeouts short_timeouts() {
  Timeouts t;
  t.greeting = t.command = t.mail = t.rcpt = t.data_init = t.data_block = t.data_term = 5s;
  return t;
}

template <class T>
struct Box {
  std::mutex mutex;
  std::condition_variable changed;
  std::optional<T> value;
  void set(T v) {
    std::lock_guard lock(mutex);
    value = std::move(v);
    changed.notify_all();
  }
  T get(std::chrono::milliseconds deadline = 30s) {
    std::unique_lock lock(mutex);
    if (!changed.wait_for(lock, deadline, [&] { return value.has_value(); })) FAIL("no result in time");
    T out = std::move(*value);
    value.reset();
    return out;
  }
};

struct Opened {
  ClientSession* session = nullptr;
  Status status;
};

Opened open(test::LoopThread& t, int port, ClientConfig config) {
  Box<Opened> box;
  common::runtime::ConnectOptions where;
  where.remote = *Endpoint::parse("127.0.0.1:" + std::to_string(port));
  where.connect_timeout = 3s;
  t.on_loop([&] {
    open_session(t.connections, where, std::move(config),
                 [&box](ClientSession* s, Status st) { box.set(Opened{s, std::move(st)}); });
  });
  return box.get();
}

DeliveryResult send(test::LoopThread& t, ClientSession* s, Message m) {
  Box<DeliveryResult> box;
  t.on_loop([&] { s->send(std::move(m), [&box](DeliveryResult r) { box.set(std::move(r)); }); });
  return box.get();
}

Message message(std::vector<std::string> rcpts, const std::string& subject, const std::string& xid = "") {
  Message m;
  m.reverse_path = "sender@example.org";
  m.recipients = std::move(rcpts);
  m.content = "From: sender@example.org\r\nTo: alice@example.com\r\nSubject: " + subject +
              "\r\n\r\nHello.\r\n.leading dot line\r\nBye.\r\n";
  m.xid = xid;
  return m;
}

// The python stub on a port it picked; its transcript lists what it read.
class Stub {
 public:
  explicit Stub(std::vector<std::string> args) {
    std::vector<std::string> argv{"python3", test::source_path("tests/support/smtp_peer.py"),
                                  "--port-file", (dir_ / "port").string(), "--transcript",
                                  (dir_ / "transcript").string(), "--cert", world().cert_pem.string(), "--key",
                                  world().key_pem.string()};
    argv.insert(argv.end(), args.begin(), args.end());
    process_ = std::make_unique<test::ChildProcess>(argv, (dir_ / "stub.log").string());
    const auto until = std::chrono::steady_clock::now() + 10s;
    while (!fs::exists(dir_ / "port")) {
      if (std::chrono::steady_clock::now() > until) FAIL("the stub did not start: " << test::read_file(dir_ / "stub.log"));
      std::this_thread::sleep_for(20ms);
    }
    port = std::stoi(test::read_file(dir_ / "port"));
  }
  std::string transcript() const { return fs::exists(dir_ / "transcript") ? test::read_file(dir_ / "transcript") : ""; }
  bool wait_for(const std::string& needle) const {
    for (int i = 0; i < 500; ++i) {
      if (transcript().find(needle) != std::string::npos) return true;
      std::this_thread::sleep_for(10ms);
    }
    return false;
  }
  int port = 0;

 private:
  test::TempDir dir_;
  std::unique_ptr<test::ChildProcess> process_;
};

ClientConfig smtp_config(StartTls starttls) {
  ClientConfig c;
  c.protocol = Protocol::Smtp;
  c.helo_name = "mta1.test";
  c.starttls = starttls;
  c.tls = tls_context(common::tls::Verify::DeploymentCa);
  c.tls_peer = {"mta1", ""};
  c.timeouts = short_timeouts();
  return c;
}

bool has(const std::string& hay, const std::string& needle) { return hay.find(needle) != std::string::npos; }

ClientConfig lmtp_config(bool implicit) {
  ClientConfig c;
  c.protocol = Protocol::Lmtp;
  c.helo_name = "mta1";
  c.implicit_tls = implicit;
  c.starttls = implicit ? StartTls::Off : StartTls::Required;
  c.tls = tls_context(common::tls::Verify::DeploymentCa, "Server-Cert");  // this host's certificate
  c.tls_peer = {"store1", ""};
  c.timeouts = short_timeouts();
  return c;
}

}  // namespace

TEST_CASE("LMTP to the real store over mutual TLS: one pooled connection, XID, a result per recipient",
          "[integration][smtpclient]") {
  world();
  test::StoreDaemon store;
  store.start();
  test::LoopThread t;
  common::runtime::ConnectOptions where;
  where.remote = *Endpoint::parse("127.0.0.1:" + std::to_string(store.implicit_port()));
  where.connect_timeout = 3s;
  std::unique_ptr<DestinationPool> pool;
  t.on_loop([&] { pool = std::make_unique<DestinationPool>(t.connections, where, lmtp_config(true)); });
  auto deliver = [&](Message m) {
    Box<DeliveryResult> box;
    t.on_loop([&] { pool->deliver(std::move(m), [&box](DeliveryResult r) { box.set(std::move(r)); }); });
    return box.get();
  };
  for (int i = 0; i < 3; ++i) {
    auto r = deliver(message({"alice@example.com", "nobody@example.com", "bob@example.com"},
                             "pooled " + std::to_string(i), "t15-" + std::to_string(i)));
    INFO(r.status.detail);
    REQUIRE(r.status.ok());
    REQUIRE(r.recipients.size() == 3);
    CHECK(r.recipients[0].status.ok());
    CHECK(r.recipients[1].status.kind == Failure::PermFail);
    REQUIRE(r.recipients[1].status.reply);
    CHECK(r.recipients[1].status.reply->code == 550);
    CHECK(r.recipients[1].status.reply->enhanced.str() == "5.1.1");
    CHECK(r.recipients[2].status.ok());
  }
  // A retry of a delivery id the store has answered gets its 250 again, without a second copy.
  auto again = deliver(message({"alice@example.com"}, "pooled 0", "t15-0"));
  CHECK(again.status.ok());
  CHECK(again.recipients[0].status.ok());
  size_t idle = 0, opened = 0;
  t.on_loop([&] {
    idle = pool->idle();
    opened = pool->connections_opened();
  });
  CHECK(opened == 1);  // four transactions, one connection
  CHECK(idle == 1);
  // STARTTLS (required) on the other port, with a direct session.
  auto o = open(t, store.starttls_port(), lmtp_config(false));
  REQUIRE(o.session != nullptr);
  t.on_loop([&] {
    CHECK(o.session->server().xid);
    CHECK(o.session->server().chunking);
    const auto* f = o.session->tls_facts();
    REQUIRE(f != nullptr);
    CHECK(f->server_verified);
    CHECK(has(f->server_subject, "CN=store1"));
  });
  auto r = send(t, o.session, message({"bob@example.com"}, "over starttls", "t15-starttls"));
  CHECK(r.status.ok());
  CHECK(r.recipients[0].status.ok());
  t.on_loop([&] {
    o.session->quit();
    pool.reset();
  });
  std::this_thread::sleep_for(200ms);
  const std::string log = store.log();
  CHECK(has(log, "client_cert=\"CN=mta1"));
  REQUIRE(store.stop() == 0);
  CHECK(store.messages("alice@example.com").size() == 3);  // the retried XID was not stored twice
  CHECK(store.messages("bob@example.com").size() == 4);
}

TEST_CASE("SMTP with opportunistic STARTTLS: TLS, pipelining, 250/550/450 per recipient, reuse",
          "[integration][smtpclient]") {
  world();
  Stub stub({"--starttls", "yes"});
  test::LoopThread t;
  auto o = open(t, stub.port, smtp_config(StartTls::Opportunistic));
  REQUIRE(o.session != nullptr);
  t.on_loop([&] {
    const auto* f = o.session->tls_facts();
    REQUIRE(f != nullptr);
    CHECK(f->server_verified);
    CHECK(o.session->server().pipelining);
    CHECK(!o.session->server().xid);
  });
  auto r = send(t, o.session, message({"ok@example.net", "bad@example.net", "tmp@example.net"}, "one", "x-1"));
  INFO(stub.transcript());
  CHECK(r.status.ok());
  CHECK(r.recipients[0].status.ok());
  CHECK(r.recipients[1].status.kind == Failure::PermFail);
  CHECK(r.recipients[2].status.kind == Failure::TempFail);
  CHECK(retryable(r.recipients[2].status.kind));
  CHECK(!retryable(r.recipients[1].status.kind));
  // Every recipient refused: RSET, and the session is still usable.
  auto none = send(t, o.session, message({"bad1@example.net", "bad2@example.net"}, "two"));
  CHECK(none.status.kind == Failure::PermFail);
  auto third = send(t, o.session, message({"ok2@example.net"}, "three"));
  CHECK(third.status.ok());
  t.on_loop([&] { o.session->quit(); });
  REQUIRE(stub.wait_for("* quit"));
  const std::string tr = stub.transcript();
  CHECK(has(tr, "plain: STARTTLS"));
  CHECK(has(tr, "tls: EHLO mta1.test"));
  CHECK(has(tr, "tls: MAIL FROM:<sender@example.org> SIZE="));
  CHECK(!has(tr, "XID="));  // not announced by this server
  CHECK(!has(tr, "plain: MAIL"));
  CHECK(has(tr, "tls: RSET"));
  CHECK(!has(tr, "pipelined after STARTTLS"));
}

TEST_CASE("required STARTTLS fails as a TLS failure when the server does not offer it or refuses",
          "[integration][smtpclient]") {
  world();
  test::LoopThread t;
  SECTION("not offered") {
    Stub stub({"--starttls", "no"});
    auto o = open(t, stub.port, smtp_config(StartTls::Required));
    CHECK(o.session == nullptr);
    CHECK(o.status.kind == Failure::Tls);
    REQUIRE(stub.wait_for("* quit"));
    CHECK(!has(stub.transcript(), "MAIL"));
  }
  SECTION("refused with 454") {
    Stub stub({"--starttls", "refuse"});
    auto required = open(t, stub.port, smtp_config(StartTls::Required));
    CHECK(required.status.kind == Failure::Tls);
    REQUIRE(required.status.reply);
    CHECK(required.status.reply->code == 454);
    // Opportunistic goes on in plaintext.
    auto o = open(t, stub.port, smtp_config(StartTls::Opportunistic));
    REQUIRE(o.session != nullptr);
    t.on_loop([&] { CHECK(o.session->tls_facts() == nullptr); });
    auto r = send(t, o.session, message({"ok@example.net"}, "plain"));
    CHECK(r.status.ok());
  }
  SECTION("a certificate for another name under required verification") {
    Stub stub({"--starttls", "yes"});
    auto config = smtp_config(StartTls::Required);
    config.tls_peer = {"mx.example.net", ""};
    auto o = open(t, stub.port, config);
    CHECK(o.session == nullptr);
    CHECK(o.status.kind == Failure::Tls);
    CHECK(has(o.status.detail, "does not name mx.example.net"));
  }
}

TEST_CASE("a reply injected behind the server's 220 to STARTTLS is dropped", "[integration][smtpclient]") {
  world();
  Stub stub({"--starttls", "inject"});
  test::LoopThread t;
  auto o = open(t, stub.port, smtp_config(StartTls::Required));
  REQUIRE(o.session != nullptr);
  t.on_loop([&] {
    CHECK(o.session->server().domain == "peer.test");  // from the EHLO under TLS, not "injected"
    CHECK(o.session->tls_facts() != nullptr);
  });
  auto r = send(t, o.session, message({"ok@example.net"}, "after injection"));
  CHECK(r.status.ok());
}

TEST_CASE("SMTP with CHUNKING sends BDAT, without PIPELINING one command at a time", "[integration][smtpclient]") {
  world();
  test::LoopThread t;
  SECTION("BDAT") {
    Stub stub({"--chunking"});
    auto o = open(t, stub.port, smtp_config(StartTls::Off));
    REQUIRE(o.session != nullptr);
    Message m = message({"ok@example.net", "bad@example.net"}, "chunked");
    const size_t size = m.content.size();
    auto r = send(t, o.session, m);
    CHECK(r.status.ok());
    CHECK(r.recipients[1].status.kind == Failure::PermFail);
    REQUIRE(stub.wait_for("* bdat"));
    CHECK(has(stub.transcript(), "plain: BDAT " + std::to_string(size) + " LAST"));
  }
  SECTION("no pipelining, a large message through the write queue") {
    Stub stub({"--no-pipelining"});
    auto o = open(t, stub.port, smtp_config(StartTls::Off));
    REQUIRE(o.session != nullptr);
    Message m = message({"ok@example.net", "ok2@example.net"}, "large");
    while (m.content.size() < 900 * 1000) m.content += std::string(990, 'y') + "\r\n.dot\r\n";
    auto r = send(t, o.session, m);
    INFO(r.status.detail);
    CHECK(r.status.ok());
    REQUIRE(stub.wait_for("* data"));
  }
}

TEST_CASE("connect refused and a silent server are typed failures", "[smtpclient]") {
  world();
  test::LoopThread t;
  SECTION("refused") {
    auto o = open(t, test::free_port(), smtp_config(StartTls::Off));
    CHECK(o.session == nullptr);
    CHECK(o.status.kind == Failure::Connect);
    CHECK(has(o.status.detail, "ECONNREFUSED"));
  }
  SECTION("no greeting") {
    int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    REQUIRE(::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0);
    REQUIRE(::listen(fd, 8) == 0);
    socklen_t len = sizeof a;
    getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
    auto config = smtp_config(StartTls::Off);
    config.timeouts.greeting = 300ms;
    auto o = open(t, ntohs(a.sin_port), config);
    CHECK(o.session == nullptr);
    CHECK(o.status.kind == Failure::Timeout);
    ::close(fd);
  }
}

TEST_CASE("EHLO keywords are read case-insensitively, SIZE with and without a limit", "[smtpclient]") {
  common::smtp::Reply r;
  r.code = 250;
  r.lines = {"mx.example.net greets you", "pipelining", "SIZE 35882577", "8BITMIME", "Chunking", "XID", "STARTTLS"};
  auto info = parse_ehlo(r);
  CHECK(info.domain == "mx.example.net");
  CHECK(info.pipelining);
  CHECK(info.chunking);
  CHECK(info.xid);
  CHECK(info.starttls);
  CHECK(!info.smtputf8);
  REQUIRE(info.size);
  CHECK(*info.size == 35882577);
  r.lines = {"mx", "SIZE"};
  CHECK(*parse_ehlo(r).size == 0);
}
