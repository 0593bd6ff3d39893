// admission_test.cpp: the cap and the deadline in front of the access check. Connections waiting
// for their check are capped per address (IPv6 per /64) and in all before any DNS is asked, and a
// check that never ends is refused at the deadline; with a hanging fake check and with the real
// access filter whose reverse DNS goes to a server that never answers (SilentDns).
#include <catch2/catch.hpp>

#include <atomic>
#include <mutex>
#include <thread>

#include "common/config/config.hpp"
#include "common/daemon/access_admission.hpp"
#include "common/daemon/daemon.hpp"
#include "common/dns/resolver.hpp"
#include "common/log/log.hpp"
#include "common/metrics/metrics.hpp"
#include "common/runtime/connection.hpp"
#include "common/runtime/listener.hpp"
#include "common/runtime/loop.hpp"
#include "tests/support/echo_session.hpp"
#include "tests/support/line_client.hpp"
#include "tests/support/silent_dns.hpp"

using namespace common::runtime;
using common::net::Endpoint;
using namespace std::chrono_literals;

namespace {

// An access check that answers only when the test says so (as a resolver that hangs).
class HangingCheck : public AdmissionCheck {
 public:
  void check(const ConnectionInfo&, std::function<void(Outcome)> done) override {
    std::lock_guard lock(mutex_);
    waiting_.push_back(std::move(done));
    ++calls_;
  }
  size_t calls() {
    std::lock_guard lock(mutex_);
    return calls_;
  }
  // On the loop thread: lets every waiting connection in.
  void allow_all() {
    std::vector<std::function<void(Outcome)>> all;
    {
      std::lock_guard lock(mutex_);
      all.swap(waiting_);
    }
    for (auto& done : all) done(Outcome{});
  }

 private:
  std::mutex mutex_;
  std::vector<std::function<void(Outcome)>> waiting_;
  size_t calls_ = 0;
};

struct Logs {
  Logs() {
    common::log::set_sink([this](std::string_view line) {
      std::lock_guard lock(mutex);
      lines.emplace_back(line);
    });
  }
  ~Logs() { common::log::reset_sink(); }
  size_t count(const std::vector<std::string>& parts) {
    std::lock_guard lock(mutex);
    size_t n = 0;
    for (const auto& line : lines) {
      bool all = true;
      for (const auto& p : parts) all = all && line.find(p) != std::string::npos;
      n += all ? 1 : 0;
    }
    return n;
  }
  std::mutex mutex;
  std::vector<std::string> lines;
};

ListenerOptions options(size_t per_ip, size_t total, std::chrono::milliseconds timeout) {
  ListenerOptions o;
  o.name = "echo";
  o.service = "echo";
  o.limits.max_admitting_per_ip = per_ip;
  o.limits.max_admitting = total;
  o.limits.admission_timeout = timeout;
  return o;
}

// A listener on its own loop thread. `make_check` runs on this thread with the loop, before it runs.
struct Server {
  common::metrics::Registry registry;
  Loop loop;
  std::unique_ptr<common::dns::Resolver> resolver;
  std::unique_ptr<AdmissionCheck> owned_check;
  ConnectionSet connections{loop.get()};
  test::LineEchoFactory factory;
  std::shared_ptr<ConnectionLimiter> limiter = std::make_shared<ConnectionLimiter>(0, 0);
  std::shared_ptr<ListenerStats> stats = std::make_shared<ListenerStats>("echo", registry);
  std::unique_ptr<Listener> listener;
  std::thread thread;
  int port = 0;

  Server(ListenerOptions o, AdmissionCheck* check) { start(std::move(o), check); }
  // The real access filter with `deny` rules, its reverse DNS sent to `dns_server`.
  Server(ListenerOptions o, const std::vector<std::string>& deny, const std::string& dns_server) {
    common::dns::ResolverOptions ro;
    ro.servers = {*Endpoint::parse(dns_server)};
    auto r = common::dns::Resolver::create(loop.get(), ro);
    REQUIRE(r);
    resolver = std::move(*r);
    common::daemon::CommonConfig config;
    config.deny_rules = deny;
    auto policy = common::daemon::load_access_policy(config);
    REQUIRE(policy);
    owned_check = std::make_unique<common::daemon::AccessAdmission>(*policy, resolver.get());
    start(std::move(o), owned_check.get());
  }
  void start(ListenerOptions o, AdmissionCheck* check) {
    auto bound = bind_endpoints({*Endpoint::parse("127.0.0.1:0")}, 1, 128);
    REQUIRE(bound);
    port = (*bound)[0][0].endpoint.port;
    listener = std::make_unique<Listener>(connections, std::move(o), std::move((*bound)[0][0]), limiter, stats,
                                          factory, check);
    REQUIRE(listener->start());
    thread = std::thread([this] { loop.run(); });
  }
  ~Server() {
    loop.stop();
    thread.join();
  }
  template <class F>
  void on_loop(F fn) {
    std::atomic<bool> done{false};
    loop.post([&] {
      fn();
      done = true;
    });
    while (!done) std::this_thread::sleep_for(1ms);
  }
  size_t admitting() {
    size_t n = 0;
    on_loop([&] { n = limiter->admitting(); });
    return n;
  }
};

template <class Pred>
bool eventually(Pred pred, std::chrono::milliseconds deadline = 5s) {
  auto until = std::chrono::steady_clock::now() + deadline;
  while (!pred()) {
    if (std::chrono::steady_clock::now() >= until) return false;
    std::this_thread::sleep_for(5ms);
  }
  return true;
}

// Connects from `source` and waits until the server has started this connection's check.
std::unique_ptr<test::LineClient> waiting_client(Server& s, HangingCheck& check, const std::string& source) {
  size_t before = check.calls();
  auto c = std::make_unique<test::LineClient>("127.0.0.1", s.port, 5s, source);
  REQUIRE(c->connected());
  REQUIRE(eventually([&] { return check.calls() == before + 1; }));
  return c;
}

}  // namespace

TEST_CASE("admissions in flight are capped per address and in all before the check runs", "[runtime][admission]") {
  Logs logs;
  HangingCheck check;
  Server s(options(2, 3, 30s), &check);
  auto a1 = waiting_client(s, check, "127.0.0.2");
  auto a2 = waiting_client(s, check, "127.0.0.2");
  {
    test::LineClient a3("127.0.0.1", s.port, 5s, "127.0.0.2");
    CHECK(a3.read_line() == "-ERR refused admission_per_ip_limit");
    CHECK(a3.closed_by_peer());
  }
  auto b1 = waiting_client(s, check, "127.0.0.3");
  {
    test::LineClient c1("127.0.0.1", s.port, 5s, "127.0.0.4");
    CHECK(c1.read_line() == "-ERR refused admission_limit");
    CHECK(c1.closed_by_peer());
  }
  CHECK(check.calls() == 3);  // the refused ones never reached the expensive check
  CHECK(s.stats->refused_admission_per_ip.value() == 1);
  CHECK(s.stats->refused_admission_total.value() == 1);
  CHECK(s.stats->admitting.value() == 3);
  CHECK(s.admitting() == 3);
  CHECK(logs.count({"event=refused", "reason=admission_per_ip_limit", "cap=2", "client=127.0.0.2:"}) == 1);
  CHECK(logs.count({"event=refused", "reason=admission_limit", "cap=3", "client=127.0.0.4:"}) == 1);

  // The answers come: each waiting connection gets its session, and its place in the queue back.
  s.on_loop([&] { check.allow_all(); });
  for (auto* c : {a1.get(), a2.get(), b1.get()}) {
    auto greeting = c->read_line();
    REQUIRE(greeting);
    CHECK(greeting->rfind("+ready", 0) == 0);
  }
  CHECK(s.admitting() == 0);
  CHECK(s.stats->admitting.value() == 0);
  auto again = waiting_client(s, check, "127.0.0.2");
  CHECK(s.admitting() == 1);
  s.on_loop([&] { check.allow_all(); });
  CHECK(again->read_line().value_or("").rfind("+ready", 0) == 0);
}

TEST_CASE("an admission that outlasts its deadline is refused, and a late answer changes nothing",
          "[runtime][admission]") {
  Logs logs;
  HangingCheck check;
  Server s(options(8, 256, 300ms), &check);
  auto start = std::chrono::steady_clock::now();
  auto c = waiting_client(s, check, "127.0.0.5");
  CHECK(c->read_line() == "-ERR refused admission_timeout");
  CHECK(std::chrono::steady_clock::now() - start >= 290ms);
  CHECK(c->closed_by_peer());
  CHECK(s.stats->refused_admission_timeout.value() == 1);
  CHECK(logs.count({"event=refused", "reason=admission_timeout", "timeout_ms=300"}) == 1);
  CHECK(s.admitting() == 0);
  // The check answers after the refusal: no session, no count taken.
  s.on_loop([&] { check.allow_all(); });
  CHECK(s.stats->active.value() == 0);
  CHECK(s.limiter->total() == 0);
  CHECK(s.admitting() == 0);
}

TEST_CASE("a drain while admissions wait gives their places back", "[runtime][admission]") {
  HangingCheck check;
  Server s(options(8, 256, 30s), &check);
  auto c1 = waiting_client(s, check, "127.0.0.6");
  auto c2 = waiting_client(s, check, "127.0.0.7");
  CHECK(s.admitting() == 2);
  s.on_loop([&] { s.connections.drain_all(); });
  CHECK(c1->closed_by_peer());
  CHECK(c2->closed_by_peer());
  CHECK(s.admitting() == 0);
  CHECK(s.stats->admitting.value() == 0);
  s.on_loop([&] { check.allow_all(); });  // late answers for closed connections are dropped
  CHECK(s.stats->active.value() == 0);
}

TEST_CASE("IPv6 clients share one admission cap per /64", "[runtime][admission]") {
  ConnectionLimiter limiter(0, 0);
  auto a = *common::net::IpAddress::parse("2001:db8:1:2::1");
  auto b = *common::net::IpAddress::parse("2001:db8:1:2:ffff::9");
  auto other = *common::net::IpAddress::parse("2001:db8:1:3::1");
  CHECK(limiter.acquire_admission(a, 0, 1) == ConnectionLimiter::Verdict::Ok);
  CHECK(limiter.acquire_admission(b, 0, 1) == ConnectionLimiter::Verdict::TooManyFromIp);
  CHECK(limiter.acquire_admission(other, 0, 1) == ConnectionLimiter::Verdict::Ok);
  CHECK(limiter.acquire_admission(other, 2, 0) == ConnectionLimiter::Verdict::TooManyConnections);
  limiter.release_admission(a);
  CHECK(limiter.acquire_admission(b, 0, 1) == ConnectionLimiter::Verdict::Ok);
  CHECK(limiter.admitting() == 2);
  CHECK(limiter.total() == 0);  // sessions are counted apart
}

TEST_CASE("with a DNS server that never answers, the cap and the deadline hold the real access filter",
          "[runtime][admission][dns]") {
  Logs logs;
  test::SilentDns dns;
  // A rule about the client's name makes every connection wait for reverse DNS.
  Server s(options(2, 256, 500ms), {"echo: UNKNOWN"}, dns.server());
  std::vector<std::unique_ptr<test::LineClient>> held;
  for (int i = 0; i < 2; ++i) {
    held.push_back(std::make_unique<test::LineClient>("127.0.0.1", s.port, 5s, "127.0.0.8"));
    REQUIRE(held.back()->connected());
  }
  REQUIRE(eventually([&] { return s.stats->admitting.value() == 2; }));
  // A third from the same address, and more, are refused at once while DNS hangs.
  for (int i = 0; i < 5; ++i) {
    test::LineClient extra("127.0.0.1", s.port, 5s, "127.0.0.8");
    CHECK(extra.read_line() == "-ERR refused admission_per_ip_limit");
  }
  // Another address is not held up by them.
  test::LineClient elsewhere("127.0.0.1", s.port, 5s, "127.0.0.9");
  for (auto& c : held) CHECK(c->read_line() == "-ERR refused admission_timeout");
  CHECK(elsewhere.read_line() == "-ERR refused admission_timeout");
  CHECK(dns.queries() >= 3);  // the resolver did ask: the deadline, not an answer, ended the wait
  CHECK(s.stats->refused_admission_per_ip.value() == 5);
  CHECK(s.stats->refused_admission_timeout.value() == 3);
  CHECK(eventually([&] { return s.stats->admitting.value() == 0; }));
  CHECK(s.stats->active.value() == 0);
  CHECK(logs.count({"reason=admission_timeout", "client=127.0.0.8:"}) == 2);
  // The places are free again: the next connection from that address waits its turn.
  test::LineClient next("127.0.0.1", s.port, 5s, "127.0.0.8");
  CHECK(next.read_line() == "-ERR refused admission_timeout");
}

TEST_CASE("[[listener]] reads the admission cap and deadline", "[runtime][admission]") {
  struct App : common::daemon::DaemonApp {
    std::vector<std::string> services() const override { return {"echo"}; }
    void read_config(common::config::Section) override {}
    std::unique_ptr<SessionFactory> make_factory(const common::daemon::ListenerConfig&,
                                                 common::daemon::LoopContext&) override {
      return nullptr;
    }
  } app;
  auto doc = common::config::Document::parse(
      "[[listener]]\nservice = \"echo\"\naddress = [\"127.0.0.1:0\"]\n"
      "admission_timeout = \"3s\"\nmax_admitting = 50\nmax_admitting_per_ip = 2\n",
      "test.toml");
  common::daemon::CommonConfig config;
  common::daemon::read_common_config(doc.root(), app, config);
  doc.finish();
  INFO(doc.problems_text());
  CHECK(doc.problems().empty());
  REQUIRE(config.listeners.size() == 1);
  CHECK(config.listeners[0].limits.admission_timeout == 3s);
  CHECK(config.listeners[0].limits.max_admitting == 50);
  CHECK(config.listeners[0].limits.max_admitting_per_ip == 2);
  ConnectionLimits defaults;
  CHECK(defaults.max_admitting_per_ip == 8);
  CHECK(defaults.admission_timeout == 15s);
}
