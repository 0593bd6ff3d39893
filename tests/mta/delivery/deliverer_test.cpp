// deliverer_test.cpp: the deliverer on a real queue: LMTP over mutual TLS to the real postern-store
// (a retried XID stored once, a 550 failed with a DSN, the store down and back, postern-queue flush),
// SMTP to a python peer (opportunistic and required STARTTLS, certificate checks), a stalling MX
// beside a healthy one, MX order, A fallback and null MX from dnsmasq, DSNs to our own senders found
// through a real authserv, the lease deadline, wake() from another thread and the drain.
#include <catch2/catch.hpp>

#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <condition_variable>
#include <mutex>

#include "common/authclient/authclient.hpp"
#include "common/dns/resolver.hpp"
#include "common/metrics/metrics.hpp"
#include "common/smtpclient/client_session.hpp"
#include "common/tls/client.hpp"
#include "common/tls/nss.hpp"
#include "mta/delivery/deliverer.hpp"
#include "mta/queue/queue.hpp"
#include "tests/store/support/store_daemon.hpp"
#include "tests/support/authserv_daemon.hpp"
#include "tests/support/dnsmasq.hpp"
#include "tests/support/log_capture.hpp"
#include "tests/support/loop_thread.hpp"
#include "tests/support/nss_host.hpp"
#include "tests/support/pki.hpp"
#include "tests/support/process.hpp"

using namespace mta::delivery;
using namespace std::chrono_literals;
namespace fs = std::filesystem;
namespace q = mta::queue;
namespace sc = common::smtpclient;

namespace {

test::NssHost& world() { return test::nss_host(); }

bool has(const std::string& hay, const std::string& needle) { return hay.find(needle) != std::string::npos; }

size_t count(const std::string& hay, const std::string& needle) {
  size_t n = 0;
  for (size_t p = hay.find(needle); p != std::string::npos; p = hay.find(needle, p + 1)) ++n;
  return n;
}

template <class Pred>
bool eventually(Pred pred, std::chrono::milliseconds deadline = 15s) {
  const auto until = std::chrono::steady_clock::now() + deadline;
  while (std::chrono::steady_clock::now() < until) {
    if (pred()) return true;
    std::this_thread::sleep_for(20ms);
  }
  return pred();
}

// tests/support/smtp_peer.py: 550 for recipients starting "bad", 450 for "tmp".
class Peer {
 public:
  explicit Peer(std::vector<std::string> args = {}) {
    std::vector<std::string> argv{"python3", test::source_path("tests/support/smtp_peer.py"),
                                  "--port-file", (dir_ / "port").string(), "--transcript",
                                  (dir_ / "transcript").string(), "--cert", world().cert_pem.string(), "--key",
                                  world().key_pem.string()};
    argv.insert(argv.end(), args.begin(), args.end());
    process_ = std::make_unique<test::ChildProcess>(argv, (dir_ / "peer.log").string());
    if (!eventually([&] { return fs::exists(dir_ / "port"); }, 10s)) {
      FAIL("the peer did not start: " << test::read_file(dir_ / "peer.log"));
    }
    port = std::stoi(test::read_file(dir_ / "port"));
  }
  std::string transcript() const { return fs::exists(dir_ / "transcript") ? test::read_file(dir_ / "transcript") : ""; }
  bool wait_for(const std::string& needle, std::chrono::milliseconds deadline = 10s) const {
    return eventually([&] { return has(transcript(), needle); }, deadline);
  }
  int port = 0;

 private:
  test::TempDir dir_;
  std::unique_ptr<test::ChildProcess> process_;
};

// An MX that takes the connection and never says a word: the kernel completes the handshake for the
// listen backlog, nobody accepts.
class SilentServer {
 public:
  SilentServer() {
    fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    REQUIRE(::bind(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0);
    REQUIRE(::listen(fd_, 16) == 0);
    socklen_t len = sizeof a;
    ::getsockname(fd_, reinterpret_cast<sockaddr*>(&a), &len);
    port = ntohs(a.sin_port);
  }
  ~SilentServer() { ::close(fd_); }
  int port = 0;

 private:
  int fd_ = -1;
};

q::Policy test_policy() {
  q::Policy p;
  p.jitter = 0;
  p.retry_schedule = {std::chrono::seconds(1)};
  p.reporting_mta = "mta1.test";
  p.dsn_destination = dsn_destination({"example.com"});
  return p;
}

Config base_config() {
  Config c;
  c.poll_interval = 100ms;
  c.connect_timeout = 2s;
  auto& t = c.timeouts;
  t.greeting = t.command = t.mail = t.rcpt = t.data_init = t.data_block = t.data_term = 5s;
  c.pool.idle_timeout = 3s;
  return c;
}

Route route(std::string domain, int port) {
  Route r;
  r.domain = std::move(domain);
  r.host = "127.0.0.1";
  r.port = static_cast<uint16_t>(port);
  return r;
}

StoreHost store_host(std::string name, int port) {
  StoreHost s;
  s.name = name;
  s.server_name = std::move(name);
  s.address = *common::net::Endpoint::parse("127.0.0.1:" + std::to_string(port));
  return s;
}

// A queue in a temporary directory and a deliverer on a loop thread of its own.
class Harness {
 public:
  explicit Harness(Config config, q::Policy policy = test_policy()) : config_(std::move(config)) {
    world();
    q::QueueOptions o;
    o.dir = (tmp_ / "queue").string();
    o.map_size = size_t{256} << 20;
    o.policy = std::move(policy);
    auto opened = q::Queue::open(std::move(o));
    INFO((opened ? "" : opened.error().detail));
    REQUIRE(opened);
    queue = std::move(*opened);
  }
  ~Harness() {
    if (t_) {
      t_->on_loop([&] {
        deliverer.reset();
        resolver_.reset();
      });
      t_.reset();
    }
    queue.reset();
  }

  void start(const std::string& dns_server = "", common::authclient::AuthClient* auth = nullptr) {
    t_ = std::make_unique<test::LoopThread>();
    std::string error;
    t_->on_loop([&] {
      if (!dns_server.empty()) {
        common::dns::ResolverOptions ro;
        ro.servers = {*common::net::Endpoint::parse(dns_server)};
        ro.timeout = 1000ms;
        auto r = common::dns::Resolver::create(t_->loop.get(), ro);
        if (!r) {
          error = r.error().detail;
          return;
        }
        resolver_ = std::move(*r);
      }
      Context c;
      c.loop = &t_->loop;
      c.connections = &t_->connections;
      c.resolver = resolver_.get();
      c.queue = queue.get();
      c.auth = auth;
      c.config = &config_;
      c.local_domains = {"example.com"};
      c.host_name = "mta1.test";
      c.nss = world().nss.get();
      auto d = Deliverer::create(c);
      if (!d) {
        error = d.error().detail;
        return;
      }
      deliverer = std::move(*d);
    });
    INFO(error);
    REQUIRE(deliverer);
  }

  std::string enqueue(const std::string& from, const std::vector<std::pair<std::string, std::string>>& rcpts,
                      const std::string& subject, uint8_t notify = 0) {
    q::Message m;
    m.envelope.reverse_path = from;
    m.envelope.client.address = "192.0.2.7:51234";
    m.received = "Received: from client.example.org ([192.0.2.7]) by mta1.test; Mon, 7 Dec 2026 01:00:00 +0000\r\n";
    m.content = "From: " + (from.empty() ? std::string("MAILER-DAEMON@mta1.test") : from) +
                "\r\nTo: someone\r\nSubject: " + subject + "\r\nMessage-ID: <" + subject + "@test>\r\n\r\nHello.\r\n"
                ".a line with a leading dot\r\nBye.\r\n";
    for (const auto& [address, destination] : rcpts) {
      q::Recipient r;
      r.address = address;
      r.destination = destination;
      r.notify = notify;
      m.recipients.push_back(r);
    }
    auto id = queue->enqueue_and_wait(m);
    INFO((id ? "" : id.error().detail));
    REQUIRE(id);
    return *id;
  }

  std::optional<q::MessageInfo> show(const std::string& id) {
    auto info = queue->show(id);
    REQUIRE(info);
    return *info;
  }
  bool gone(const std::string& id) { return !show(id).has_value(); }
  std::optional<q::Recipient> recipient(const std::string& id, size_t index) {
    auto info = show(id);
    if (!info || info->recipients.size() <= index) return std::nullopt;
    return info->recipients[index];
  }
  // Every message still queued, from the null sender (DSNs).
  size_t dsns_queued() {
    auto all = queue->list();
    REQUIRE(all);
    size_t n = 0;
    for (const auto& m : *all) n += m.envelope.reverse_path.empty() ? 1 : 0;
    return n;
  }

  template <class F>
  void on_loop(F fn) {
    t_->on_loop(std::move(fn));
  }
  test::LoopThread& loop() { return *t_; }

  std::unique_ptr<q::Queue> queue;
  std::unique_ptr<Deliverer> deliverer;
  const test::TempDir& tmp() const { return tmp_; }

 private:
  test::TempDir tmp_;
  Config config_;
  std::unique_ptr<test::LoopThread> t_;
  std::unique_ptr<common::dns::Resolver> resolver_;
};

std::shared_ptr<common::tls::ClientContext> lmtp_tls() {
  common::tls::ClientOptions o;
  o.verify = common::tls::Verify::DeploymentCa;
  o.client_certificate = "Server-Cert";
  auto c = common::tls::ClientContext::create(*world().nss, o);
  if (!c) FAIL(c.error().detail);
  return *c;
}

std::string metrics() { return common::metrics::default_registry().render(); }

}  // namespace

TEST_CASE("LMTP to the store over mutual TLS: a retried delivery id is stored once, a 550 fails with a DSN",
          "[integration][delivery]") {
  test::LogCapture logs;
  test::StoreDaemon store;
  store.start();
  Peer peer;  // remote.test's MX, where the DSN to the sender goes
  Config c = base_config();
  c.store_hosts.push_back(store_host("store1", store.implicit_port()));
  c.routes.push_back(route("remote.test", peer.port));
  Harness h(c);
  const std::string id = h.enqueue("sender@remote.test",
                                   {{"alice@example.com", "store:store1"},
                                    {"bob@example.com", "store:store1"},
                                    {"nobody@example.com", "store:store1"}},
                                   "lmtp-once");
  // A first attempt reached the store for alice and then the mta died before it reported: the
  // store has the copy under this delivery id.
  {
    test::LoopThread t;
    common::runtime::ConnectOptions where;
    where.remote = *common::net::Endpoint::parse("127.0.0.1:" + std::to_string(store.implicit_port()));
    sc::ClientConfig cc;
    cc.protocol = sc::Protocol::Lmtp;
    cc.helo_name = "mta1.test";
    cc.implicit_tls = true;
    cc.starttls = sc::StartTls::Off;
    cc.tls = lmtp_tls();
    cc.tls_peer = {"store1", "store1"};
    sc::Message m;
    m.reverse_path = "sender@remote.test";
    m.recipients = {"alice@example.com"};
    m.content = *h.queue->message_bytes(id);
    m.xid = id;
    std::unique_ptr<sc::DestinationPool> pool;
    std::atomic<bool> done{false};
    bool ok = false;
    t.on_loop([&] {
      pool = std::make_unique<sc::DestinationPool>(t.connections, where, cc);
      pool->deliver(m, [&](sc::DeliveryResult r) {
        ok = r.status.ok() && r.recipients[0].status.ok();
        done = true;
      });
    });
    REQUIRE(eventually([&] { return done.load(); }));
    REQUIRE(ok);
    t.on_loop([&] { pool.reset(); });
  }
  h.start();
  REQUIRE(eventually([&] { return h.gone(id); }));
  // The DSN for nobody@ went to the sender's MX.
  REQUIRE(peer.wait_for("RCPT TO:<sender@remote.test>"));
  CHECK(has(peer.transcript(), "MAIL FROM:<>"));
  CHECK(eventually([&] { return h.queue->list()->empty(); }));
  CHECK(logs.wait_for({"comp=delivery", "event=delivered", "queue_id=" + id, "recipient=alice@example.com",
                       "remote=store1"}));
  CHECK(logs.wait_for({"comp=delivery", "event=failed", "queue_id=" + id, "recipient=nobody@example.com",
                       "code=550", "status=5.1.1"}));
  CHECK(logs.wait_for({"comp=delivery", "event=transaction", "tls=TLSv1.3", "verified=yes"}));
  CHECK(has(metrics(), "mta_delivery_attempts_total{channel=\"lmtp\",outcome=\"delivered\"}"));
  CHECK(has(metrics(), "mta_delivery_attempts_total{channel=\"lmtp\",outcome=\"failed\"}"));
  h.on_loop([&] { h.deliverer.reset(); });
  REQUIRE(store.stop() == 0);
  CHECK(store.messages("alice@example.com").size() == 1);  // the retry was not stored again
  auto bob = store.messages("bob@example.com");
  REQUIRE(bob.size() == 1);
  CHECK(has(bob[0], "Subject: lmtp-once"));
  CHECK(has(bob[0], "Received: from client.example.org"));
  CHECK(has(bob[0], "\r\n.a line with a leading dot\r\n"));  // dot-stuffing undone by the store
  CHECK(has(store.log(), "client_cert=\"CN=mta1"));
}

TEST_CASE("a store that is down: the mail stays queued, and drains when it is back and postern-queue flushes",
          "[integration][delivery]") {
  test::LogCapture logs;
  test::StoreDaemon store;  // its ports are chosen; nothing listens yet
  Config c = base_config();
  c.store_hosts.push_back(store_host("store1", store.implicit_port()));
  q::Policy policy = test_policy();
  policy.retry_schedule = {std::chrono::hours(1)};  // only the flush brings it back
  Harness h(c, policy);
  const std::string id = h.enqueue("sender@remote.test", {{"alice@example.com", "store:store1"}}, "store-down");
  h.start();
  REQUIRE(eventually([&] {
    auto r = h.recipient(id, 0);
    return r && r->state == q::RcptState::Deferred;
  }));
  auto r = h.recipient(id, 0);
  CHECK(r->attempts == 1);
  CHECK(r->last_status == "4.4.1");
  CHECK(has(r->last_reply, "ECONNREFUSED"));
  CHECK(r->last_remote == "store1");
  CHECK(logs.wait_for({"comp=delivery", "event=deferred", "queue_id=" + id, "destination_failed=yes"}));
  CHECK(logs.wait_for({"comp=queue", "event=destination_backoff", "destination=store:store1"}));
  // New mail for the dead store waits behind its backoff too, and nothing is lost meanwhile.
  const std::string second = h.enqueue("sender@remote.test", {{"bob@example.com", "store:store1"}}, "store-down-2");
  std::this_thread::sleep_for(500ms);
  CHECK(h.recipient(second, 0)->attempts == 0);
  CHECK(h.recipient(id, 0)->attempts == 1);

  store.start();
  // The operator's flush, from another process on the same queue directory, while we run.
  auto flushed = test::run({test::binary_path("mta/queue/postern-queue"), "--dir", (h.tmp() / "queue").string(), "flush"});
  INFO(flushed.output);
  REQUIRE(flushed.exit_code == 0);
  REQUIRE(eventually([&] { return h.gone(id) && h.gone(second); }));
  CHECK(h.dsns_queued() == 0);
  h.on_loop([&] { h.deliverer.reset(); });
  REQUIRE(store.stop() == 0);
  CHECK(store.messages("alice@example.com").size() == 1);
  CHECK(store.messages("bob@example.com").size() == 1);
}

TEST_CASE("SMTP to remote MXs: opportunistic STARTTLS where offered, plaintext where not, a 550 with a DSN",
          "[integration][delivery]") {
  test::LogCapture logs;
  Peer tls_peer({"--starttls", "yes"});
  Peer plain_peer;
  Config c = base_config();
  c.routes.push_back(route("tls.test", tls_peer.port));
  c.routes.push_back(route("plain.test", plain_peer.port));
  Harness h(c);
  const std::string one = h.enqueue("sender@plain.test", {{"ok@tls.test", "tls.test"}, {"bad@tls.test", "tls.test"},
                                                          {"ok2@tls.test", "tls.test"}},
                                    "remote-tls");
  const std::string two = h.enqueue("sender@plain.test", {{"ok@plain.test", "plain.test"}}, "remote-plain");
  const std::string three = h.enqueue("other@plain.test", {{"ok3@tls.test", "tls.test"}}, "remote-tls-2");
  h.start();
  REQUIRE(eventually([&] { return h.gone(one) && h.gone(two) && h.gone(three); }));
  REQUIRE(plain_peer.wait_for("RCPT TO:<sender@plain.test>"));  // the DSN for bad@tls.test
  const std::string tr = tls_peer.transcript();
  INFO(tr);
  CHECK(has(tr, "plain: STARTTLS"));
  CHECK(has(tr, "tls: EHLO mta1.test"));
  CHECK(has(tr, "tls: MAIL FROM:<sender@plain.test>"));
  CHECK(has(tr, "tls: RCPT TO:<ok@tls.test>"));
  CHECK(has(tr, "tls: RCPT TO:<ok2@tls.test>"));
  CHECK(!has(tr, "plain: MAIL"));
  CHECK(!has(tr, "XID="));
  CHECK(has(tr, "tls: MAIL FROM:<other@plain.test>"));
  CHECK(count(tr, "* connect") == 1);  // both messages on one connection
  const std::string pt = plain_peer.transcript();
  CHECK(has(pt, "plain: MAIL FROM:<sender@plain.test>"));
  CHECK(has(pt, "plain: MAIL FROM:<>"));
  CHECK(logs.wait_for({"comp=delivery", "event=relayed", "queue_id=" + one, "recipient=ok@tls.test",
                       "remote=127.0.0.1", "code=250"}));
  CHECK(logs.wait_for({"comp=delivery", "event=failed", "queue_id=" + one, "recipient=bad@tls.test", "code=550",
                       "status=5.1.1"}));
  CHECK(logs.wait_for({"comp=delivery", "event=transaction", "queue_id=" + one, "tls=TLSv1.3"}));
  CHECK(logs.wait_for({"comp=delivery", "event=transaction", "queue_id=" + two, "tls=no"}));
  CHECK(logs.wait_for({"comp=queue", "event=dsn_queued", "queue_id=" + one, "action=failed"}));
  CHECK(has(metrics(), "mta_delivery_attempts_total{channel=\"smtp\",outcome=\"relayed\"}"));
}

TEST_CASE("required TLS per destination: no STARTTLS defers, a certificate of our CA passes the CA check and "
          "fails the public roots check", "[integration][delivery]") {
  test::LogCapture logs;
  Peer tls_peer({"--starttls", "yes"});
  Peer plain_peer;
  Config c = base_config();
  c.routes.push_back(route("partner.test", tls_peer.port));
  c.routes.push_back(route("noplain.test", plain_peer.port));
  c.routes.push_back(route("public.test", tls_peer.port));
  c.routes.push_back(route("wrongname.test", tls_peer.port));
  auto policy = [](std::string domain, common::tls::Verify verify, std::string name) {
    TlsPolicy p;
    p.domain = std::move(domain);
    p.starttls = sc::StartTls::Required;
    p.verify = verify;
    p.server_name = std::move(name);
    return p;
  };
  c.pool.idle_timeout = 200ms;  // idle sessions go soon, so each policy opens its own connection
  c.tls_policies.push_back(policy("partner.test", common::tls::Verify::DeploymentCa, "mta1"));
  c.tls_policies.push_back(policy("noplain.test", common::tls::Verify::DeploymentCa, ""));
  c.tls_policies.push_back(policy("public.test", common::tls::Verify::SystemRoots, "mta1"));
  c.tls_policies.push_back(policy("wrongname.test", common::tls::Verify::DeploymentCa, "mx.wrongname.test"));
  Harness h(c);
  const std::string partner = h.enqueue("sender@example.org", {{"ok@partner.test", "partner.test"}}, "req-ok");
  const std::string noplain = h.enqueue("sender@example.org", {{"ok@noplain.test", "noplain.test"}}, "req-plain");
  const std::string pub = h.enqueue("sender@example.org", {{"ok@public.test", "public.test"}}, "req-public");
  const std::string wrong = h.enqueue("sender@example.org", {{"ok@wrongname.test", "wrongname.test"}}, "req-name");
  h.start();
  REQUIRE(eventually([&] { return h.gone(partner); }));
  auto deferred = [&](const std::string& id) {
    return eventually([&] {
      auto r = h.recipient(id, 0);
      return r && r->state == q::RcptState::Deferred;
    });
  };
  REQUIRE(deferred(noplain));
  REQUIRE(deferred(pub));
  REQUIRE(deferred(wrong));
  CHECK(h.recipient(noplain, 0)->last_status == "4.7.5");
  CHECK(has(h.recipient(noplain, 0)->last_reply, "does not offer STARTTLS"));
  CHECK(h.recipient(pub, 0)->last_status == "4.7.5");
  CHECK(has(h.recipient(wrong, 0)->last_reply, "mx.wrongname.test"));
  CHECK(!has(plain_peer.transcript(), "MAIL FROM"));  // nothing in plaintext where TLS is required
  const std::string tr = tls_peer.transcript();
  CHECK(count(tr, "MAIL FROM:<sender@example.org>") == 1);  // partner.test only
  CHECK(logs.wait_for({"comp=delivery", "event=transaction", "queue_id=" + partner, "tls=TLSv1.3", "verified=yes"}));
  CHECK(h.dsns_queued() == 0);  // deferred, not failed
}

TEST_CASE("a stalling MX times out and is deferred, and other destinations are delivered meanwhile",
          "[integration][delivery]") {
  test::LogCapture logs;
  SilentServer silent;
  Peer peer;
  Config c = base_config();
  c.timeouts.greeting = 3s;
  c.batch_recipients = 1;  // a run per message
  c.max_per_destination = 1;
  c.routes.push_back(route("stall.test", silent.port));
  c.routes.push_back(route("fine.test", peer.port));
  Harness h(c);
  // A backlog for the stalling MX, queued first.
  const std::string stalled = h.enqueue("sender@example.org", {{"a@stall.test", "stall.test"}}, "stalled");
  const std::string stalled2 = h.enqueue("sender@example.org", {{"c@stall.test", "stall.test"}}, "stalled-2");
  const std::string stalled3 = h.enqueue("sender@example.org", {{"d@stall.test", "stall.test"}}, "stalled-3");
  const std::string fine = h.enqueue("sender@example.org", {{"b@fine.test", "fine.test"}}, "fine");
  const auto started = std::chrono::steady_clock::now();
  h.start();
  REQUIRE(eventually([&] { return h.gone(fine); }, 10s));
  CHECK(std::chrono::steady_clock::now() - started < 2500ms);  // not behind the stall's 3 s
  CHECK(h.recipient(stalled, 0)->state == q::RcptState::Queued);  // leased, still waiting for a greeting
  REQUIRE(eventually([&] {
    auto r = h.recipient(stalled, 0);
    return r && r->state == q::RcptState::Deferred;
  }));
  CHECK(std::chrono::steady_clock::now() - started >= 2900ms);
  CHECK(h.recipient(stalled, 0)->last_status == "4.4.2");
  CHECK(logs.wait_for({"comp=delivery", "event=server_failed", "queue_id=" + stalled, "kind=timeout"}));
  // One session at a time to it, and once it failed as a whole the rest of its backlog waits out the
  // destination's backoff instead of each message sitting out its own timeout.
  size_t attempts = 0;
  for (const auto& line : logs.matching("event=attempt")) attempts += has(line, "destination=stall.test") ? 1 : 0;
  CHECK(attempts == 1);
  CHECK(h.recipient(stalled2, 0)->attempts == 0);
  CHECK(h.recipient(stalled3, 0)->attempts == 0);
}

TEST_CASE("MX from DNS: preference order with the next MX after a refusal, the A fallback, null MX and NXDOMAIN "
          "fail without a connection", "[integration][delivery]") {
  test::LogCapture logs;
  Peer peer;
  test::Dnsmasq dns({"--local=/test/", "--mx-host=mx.test,mx1.mx.test,10", "--mx-host=mx.test,mx2.mx.test,20",
                     "--host-record=mx1.mx.test,127.0.0.2", "--host-record=mx2.mx.test,127.0.0.1",
                     "--host-record=amx.test,127.0.0.1", "--dns-rr=null.test,15,000000"});
  Config c = base_config();
  c.smtp_port = static_cast<uint16_t>(peer.port);  // every MX is the peer's port
  c.pool.idle_timeout = 200ms;  // idle sessions go soon, so each policy opens its own connection
  Harness h(c);
  const std::string mx = h.enqueue("", {{"a@mx.test", "mx.test"}}, "via-mx");
  const std::string a = h.enqueue("", {{"b@amx.test", "amx.test"}}, "via-a");
  const std::string null = h.enqueue("", {{"c@null.test", "null.test"}}, "null-mx");
  const std::string nx = h.enqueue("", {{"d@nx.test", "nx.test"}}, "nxdomain");
  const auto before = metrics();
  h.start(dns.server());
  REQUIRE(eventually([&] { return h.gone(mx) && h.gone(a) && h.gone(null) && h.gone(nx); }));
  CHECK(logs.wait_for({"comp=delivery", "event=relayed", "queue_id=" + mx, "remote=mx2.mx.test"}));
  CHECK(logs.wait_for({"comp=delivery", "event=server_failed", "queue_id=" + mx, "remote=mx1.mx.test[127.0.0.2:"}));
  CHECK(logs.wait_for({"comp=delivery", "event=relayed", "queue_id=" + a, "remote=amx.test"}));
  CHECK(logs.wait_for({"comp=delivery", "event=failed", "queue_id=" + null, "code=556", "status=5.1.10"}));
  CHECK(logs.wait_for({"comp=delivery", "event=failed", "queue_id=" + nx, "status=5.1.2"}));
  CHECK(logs.wait_for({"comp=queue", "event=dsn_dropped", "queue_id=" + null, "reason=\"null sender\""}));
  const std::string tr = peer.transcript();
  CHECK(count(tr, "RCPT TO:") == 2);
  CHECK(has(tr, "RCPT TO:<a@mx.test>"));
  CHECK(has(tr, "RCPT TO:<b@amx.test>"));
  CHECK(!has(tr, "null.test"));
  CHECK(!has(tr, "nx.test"));
}

TEST_CASE("DSNs to our own senders: looked up at delivery and stored in their mailbox, after a 550 and after the "
          "queue lifetime", "[integration][delivery]") {
  test::LogCapture logs;
  test::StoreDaemon store;
  store.start();
  test::AuthservDaemon auth;
  auth.add_user("alice@example.com", "store1");
  auth.add_user("bob@example.com", "store1");
  auth.start();
  common::authclient::AuthClientOptions ao;
  ao.targets = {auth.target()};
  ao.tls.plaintext = true;
  auto client = common::authclient::AuthClient::create(ao);
  REQUIRE(client);
  Peer peer;
  Config c = base_config();
  c.store_hosts.push_back(store_host("store1", store.implicit_port()));
  c.routes.push_back(route("remote.test", peer.port));
  c.routes.push_back(route("dead.test", test::free_port()));
  q::Policy policy = test_policy();
  policy.max_queue_lifetime = std::chrono::seconds(3);
  {
    Harness h(c, policy);
    const std::string refused = h.enqueue("bob@example.com", {{"bad@remote.test", "remote.test"}}, "refused");
    const std::string expiring = h.enqueue("alice@example.com", {{"x@dead.test", "dead.test"}}, "expiring");
    const std::string nobody = h.enqueue("nobody@example.com", {{"bad2@remote.test", "remote.test"}}, "no-sender");
    h.start("", client->get());
    REQUIRE(eventually([&] { return h.gone(refused) && h.gone(expiring) && h.gone(nobody); }, 20s));
    REQUIRE(eventually([&] { return h.queue->list()->empty(); }, 10s));
    CHECK(logs.wait_for({"comp=queue", "event=recipient_expired", "queue_id=" + expiring}));
    CHECK(logs.wait_for({"comp=delivery", "event=delivered", "recipient=alice@example.com", "destination=local:example.com",
                         "remote=store1"}));
    CHECK(logs.wait_for({"comp=delivery", "event=delivered", "recipient=bob@example.com", "destination=local:example.com"}));
    // A DSN to a sender the directory does not know fails for good, and is not answered again.
    CHECK(logs.wait_for({"comp=delivery", "event=failed", "recipient=nobody@example.com", "status=5.1.1"}));
    h.on_loop([&] { h.deliverer.reset(); });
    client->reset();  // before the loop it delivers to
  }
  REQUIRE(store.stop() == 0);
  auto alice = store.messages("alice@example.com");
  REQUIRE(alice.size() == 1);
  CHECK(has(alice[0], "Return-Path: <>"));
  CHECK(has(alice[0], "multipart/report"));
  CHECK(has(alice[0], "Action: failed"));
  CHECK(has(alice[0], "Status: 4.4.1"));
  CHECK(has(alice[0], "Subject: expiring"));
  auto bob = store.messages("bob@example.com");
  REQUIRE(bob.size() == 1);
  CHECK(has(bob[0], "Final-Recipient: rfc822; bad@remote.test"));
  CHECK(has(bob[0], "Status: 5.1.1"));
  CHECK(has(bob[0], "Diagnostic-Code: smtp; 550 5.1.1 no such user"));
}

TEST_CASE("a delivery still hanging at the lease deadline is reported deferred before the lease runs out",
          "[integration][delivery]") {
  test::LogCapture logs;
  SilentServer silent;
  Config c = base_config();
  c.timeouts.greeting = 20s;
  c.routes.push_back(route("stall.test", silent.port));
  q::Policy policy = test_policy();
  policy.lease = std::chrono::seconds(2);
  policy.retry_schedule = {std::chrono::hours(1)};
  Harness h(c, policy);
  const std::string id = h.enqueue("sender@example.org", {{"a@stall.test", "stall.test"}}, "lease");
  const auto started = std::chrono::steady_clock::now();
  h.start();
  REQUIRE(eventually([&] {
    auto r = h.recipient(id, 0);
    return r && r->state == q::RcptState::Deferred;
  }));
  const auto took = std::chrono::steady_clock::now() - started;
  CHECK(took >= 1500ms);
  CHECK(took < 2000ms);  // before the lease's 2 s
  auto r = h.recipient(id, 0);
  CHECK(r->last_status == "4.4.2");
  CHECK(has(r->last_reply, "lease deadline"));
  CHECK(r->lease == 0);
  CHECK(logs.wait_for({"comp=delivery", "event=lease_deadline", "queue_id=" + id, "in_flight=yes"}));
  // Not handed out again behind our back: still one attempt once the lease would have run out.
  std::this_thread::sleep_for(1s);
  CHECK(h.recipient(id, 0)->attempts == 1);
}

TEST_CASE("wake() from another thread starts a delivery at once, and stop() drains, QUITs idle sessions and "
          "leases nothing more", "[integration][delivery]") {
  test::LogCapture logs;
  Peer peer;
  SilentServer silent;
  Config c = base_config();
  c.poll_interval = 1h;  // only wake() looks
  c.timeouts.greeting = 20s;
  c.routes.push_back(route("fine.test", peer.port));
  c.routes.push_back(route("stall.test", silent.port));
  Harness h(c);
  h.start();
  std::this_thread::sleep_for(200ms);  // the first look found nothing
  const std::string id = h.enqueue("sender@example.org", {{"a@fine.test", "fine.test"}}, "woken");
  auto waker = h.deliverer->waker();
  std::thread other([&] {
    for (int i = 0; i < 100; ++i) waker();  // many wakes, one look
  });
  other.join();
  REQUIRE(eventually([&] { return h.gone(id); }, 5s));
  // A delivery in progress when the drain starts: stop() waits for it; the connection's drain ends it.
  const std::string stalled = h.enqueue("sender@example.org", {{"s@stall.test", "stall.test"}}, "stalled");
  h.deliverer->wake();
  REQUIRE(logs.wait_for({"comp=delivery", "event=attempt", "queue_id=" + stalled}));
  std::atomic<bool> stopped{false};
  h.on_loop([&] { h.deliverer->stop([&] { stopped = true; }); });
  REQUIRE(peer.wait_for("* quit"));  // the idle pooled session to fine.test
  std::this_thread::sleep_for(300ms);
  CHECK(!stopped);
  h.on_loop([&] { h.loop().connections.drain_all(); });
  REQUIRE(eventually([&] { return stopped.load(); }, 5s));
  auto r = h.recipient(stalled, 0);
  REQUIRE(r);
  CHECK(r->state == q::RcptState::Deferred);
  // Nothing new is leased once stopped.
  const std::string late = h.enqueue("sender@example.org", {{"b@fine.test", "fine.test"}}, "late");
  h.deliverer->wake();
  std::this_thread::sleep_for(500ms);
  CHECK(h.recipient(late, 0)->attempts == 0);
  Deliverer::Stats s;
  h.on_loop([&] { s = h.deliverer->stats(); });
  CHECK(s.active == 0);
  CHECK(s.reporting == 0);
  CHECK(s.reported >= 2);
}
