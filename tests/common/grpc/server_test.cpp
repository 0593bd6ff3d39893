// server_test.cpp: common::rpc::GrpcServer, the skeleton behind every daemon's gRPC port, over
// plaintext on loopback: the access gate (decided now or after a late answer, kept per
// connection), the per-address and total limits, drain, rebuild on the same port, and what it
// refuses to serve. The mTLS side (CRLs, rotation, connection age) is in grpc_test.cpp.
#include <catch2/catch.hpp>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include <grpcpp/grpcpp.h>

#include "common/grpc/server.hpp"
#include "common/log/log.hpp"
#include "common/metrics/metrics.hpp"
#include "common/runtime/listener.hpp"
#include "common/runtime/loop.hpp"
#include "common/runtime/timer.hpp"
#include "ping.grpc.pb.h"
#include "tests/support/log_capture.hpp"

using namespace std::chrono_literals;
namespace pt = postern::test;

namespace {


// A loop on its own thread, as a daemon's loop 0.
class LoopThread {
 public:
  LoopThread() {
    keepalive_.start(1h, [] {}, 1h);
    thread_ = std::thread([this] { loop_.run(); });
  }
  ~LoopThread() {
    loop_.post([this] { keepalive_.stop(); });
    loop_.stop();
    thread_.join();
  }
  common::runtime::Loop& loop() { return loop_; }

 private:
  common::runtime::Loop loop_;
  common::runtime::Timer keepalive_{loop_.get()};
  std::thread thread_;
};

// The access filter's place: allows or denies everyone, at once or after `delay` (a slow DNS).
class FakeCheck final : public common::runtime::AdmissionCheck {
 public:
  explicit FakeCheck(common::runtime::Loop& loop) : loop_(loop) {}
  ~FakeCheck() override {
    for (auto& t : late_) t.join();
  }
  void check(const common::runtime::ConnectionInfo& info, std::function<void(Outcome)> done) override {
    ++checks;
    {
      std::lock_guard lock(mutex_);
      service = info.service;
      peer = info.peer;
    }
    Outcome o{allow.load(), allow.load() ? "" : "[access] deny line 1: test: ALL", ""};
    if (delay.load() == 0ms) return done(o);
    late_.emplace_back([this, o, done, d = delay.load()] {
      std::this_thread::sleep_for(d);
      loop_.post([o, done] { done(o); });
    });
  }
  std::atomic<bool> allow{true};
  std::atomic<std::chrono::milliseconds> delay{0ms};
  std::atomic<int> checks{0};
  std::mutex mutex_;
  std::string service;
  common::net::Endpoint peer;

 private:
  common::runtime::Loop& loop_;
  std::vector<std::thread> late_;
};

// A call the service keeps in progress until release(), or until the client or a shutdown cancels
// it (a callback reactor must still Finish a cancelled call before gRPC lets it go). Owned by the
// service, which outlives the server, so release() never touches a freed one.
class HeldReactor final : public grpc::ServerUnaryReactor {
 public:
  void OnCancel() override { finish(grpc::Status::CANCELLED); }
  void OnDone() override {}
  void finish(grpc::Status s) {
    if (!finished_.exchange(true)) Finish(std::move(s));
  }

 private:
  std::atomic<bool> finished_{false};
};

// Answers on the daemon's loop through the registry's bridge; "hold" calls wait for release().
class PingService final : public pt::Ping::CallbackService {
 public:
  explicit PingService(common::rpc::GrpcRegistry& registry) : registry_(registry) {}
  grpc::ServerUnaryReactor* Ping(grpc::CallbackServerContext* context, const pt::PingRequest* request,
                                 pt::PingReply* reply) override {
    ++calls;
    if (request->text() == "hold") {
      std::lock_guard lock(mutex_);
      all_.push_back(std::make_unique<HeldReactor>());
      held_.push_back(all_.back().get());
      cv_.notify_all();
      return all_.back().get();
    }
    auto* reactor = context->DefaultReactor();
    registry_.post(0, [reactor, request, reply] {
      reply->set_text(request->text());
      reactor->Finish(grpc::Status::OK);
    });
    return reactor;
  }
  bool wait_held(size_t n) {
    std::unique_lock lock(mutex_);
    return cv_.wait_for(lock, 10s, [&] { return held_.size() >= n; });
  }
  // Finishes the held calls that are still open.
  void release() {
    std::lock_guard lock(mutex_);
    for (auto* r : held_) r->finish(grpc::Status::OK);
    held_.clear();
  }
  std::atomic<int> calls{0};

 private:
  common::rpc::GrpcRegistry& registry_;
  std::mutex mutex_;
  std::condition_variable cv_;
  std::vector<HeldReactor*> held_;
  std::vector<std::unique_ptr<HeldReactor>> all_;
};

common::rpc::ServerOptions plain_options(std::string name) {
  common::rpc::ServerOptions o;
  o.name = std::move(name);
  o.service = "ping";
  o.listen = *common::net::Endpoint::parse("127.0.0.1:0");
  o.mtls.plaintext = true;
  return o;
}

struct Fixture {
  explicit Fixture(common::rpc::ServerOptions o, bool with_check = true) : options(std::move(o)) {
    registry.add<pt::Ping>(service);
    auto s = common::rpc::GrpcServer::start(options, registry,
                                            {&loop.loop(), with_check ? &check : nullptr});
    INFO((s ? std::string() : s.error().detail));
    REQUIRE(s);
    server = std::move(*s);
  }
  ~Fixture() {
    service.release();
    server.reset();  // before the loop and the check it uses
  }
  std::string target() const { return "127.0.0.1:" + std::to_string(server->port()); }
  std::unique_ptr<pt::Ping::Stub> stub() const {
    return pt::Ping::NewStub(grpc::CreateChannel(target(), grpc::InsecureChannelCredentials()));
  }

  test::LogCapture logs{"server_test"};
  LoopThread loop;
  FakeCheck check{loop.loop()};
  common::rpc::GrpcRegistry registry{{&loop.loop()}};
  PingService service{registry};
  common::rpc::ServerOptions options;
  std::unique_ptr<common::rpc::GrpcServer> server;
};

grpc::Status ping(pt::Ping::Stub& stub, const std::string& text = "ping", std::chrono::milliseconds deadline = 10s) {
  grpc::ClientContext context;
  INFO("ping " << text);
  context.set_deadline(std::chrono::system_clock::now() + deadline);
  pt::PingRequest request;
  request.set_text(text);
  pt::PingReply reply;
  auto status = stub.Ping(&context, request, &reply);
  if (status.ok()) CHECK(reply.text() == text);
  UNSCOPED_INFO("last ping: code " << status.error_code() << " " << status.error_message());
  return status;
}

// A call that stays in progress until the service releases it.
struct HeldCall {
  explicit HeldCall(pt::Ping::Stub& stub) {
    context.set_deadline(std::chrono::system_clock::now() + 20s);
    request.set_text("hold");
    stub.async()->Ping(&context, &request, &reply, [this](grpc::Status s) {
      std::lock_guard lock(mutex);
      status = s;
      done = true;
      cv.notify_all();
    });
  }
  ~HeldCall() {
    context.TryCancel();
    wait();
  }
  grpc::Status wait() {
    std::unique_lock lock(mutex);
    cv.wait_for(lock, 30s, [&] { return done; });
    return status;
  }
  grpc::ClientContext context;
  pt::PingRequest request;
  pt::PingReply reply;
  std::mutex mutex;
  std::condition_variable cv;
  bool done = false;
  grpc::Status status;
};

std::string metrics_text() { return common::metrics::default_registry().render(); }

// The client has its answer a moment before the server lets go of the call (and its slot).
bool wait_idle(const std::string& listener) {
  std::string idle = "postern_grpc_calls_active{listener=\"" + listener + "\"} 0\n";
  for (int i = 0; i < 500; ++i) {
    if (metrics_text().find(idle) != std::string::npos) return true;
    std::this_thread::sleep_for(10ms);
  }
  return false;
}

}  // namespace

TEST_CASE("gRPC peers go through the access check before the service sees them", "[grpc][server]") {
  Fixture f(plain_options("gate1"));
  auto stub = f.stub();
  CHECK(ping(*stub).ok());
  CHECK(f.service.calls == 1);
  CHECK(f.check.checks == 1);
  {
    std::lock_guard lock(f.check.mutex_);
    CHECK(f.check.service == "ping");
    CHECK(f.check.peer.address.to_string() == "127.0.0.1");
    CHECK(f.check.peer.port != 0);
  }
  // The decision is kept for the connection: the next call does not ask again.
  CHECK(ping(*stub).ok());
  CHECK(f.check.checks == 1);

  // A new filter (SIGHUP) that denies: decisions are forgotten, the handler never runs.
  f.check.allow = false;
  f.server->policy_changed();
  auto denied = ping(*stub);
  CHECK(denied.error_code() == grpc::StatusCode::PERMISSION_DENIED);
  CHECK(denied.error_message() == "access denied");
  CHECK(f.service.calls == 2);
  auto lines = f.logs.matching("event=refused");
  REQUIRE(lines.size() == 1);
  CHECK(lines[0].find("comp=grpc") != std::string::npos);
  CHECK(lines[0].find("client=127.0.0.1:") != std::string::npos);
  CHECK(lines[0].find("reason=access_denied") != std::string::npos);
  CHECK(lines[0].find("rule=\"[access] deny line 1: test: ALL\"") != std::string::npos);
  CHECK(lines[0].find("method=postern.test.Ping/Ping") != std::string::npos);
  CHECK(metrics_text().find("postern_grpc_calls_refused_total{listener=\"gate1\",reason=\"access_denied\"} 1") !=
        std::string::npos);
  CHECK(metrics_text().find("postern_grpc_calls_total{listener=\"gate1\",method=\"postern.test.Ping/Ping\"} 2") !=
        std::string::npos);
  // Denied again from the kept decision, without asking.
  int asked = f.check.checks;
  CHECK(ping(*stub).error_code() == grpc::StatusCode::PERMISSION_DENIED);
  CHECK(f.check.checks == asked);
  CHECK(f.service.calls == 2);
}

TEST_CASE("a call waits for a late access answer (reverse DNS) and then runs or is refused", "[grpc][server]") {
  Fixture f(plain_options("gate2"));
  f.check.delay = 300ms;
  auto stub = f.stub();
  auto started = std::chrono::steady_clock::now();
  CHECK(ping(*stub).ok());
  CHECK(std::chrono::steady_clock::now() - started >= 300ms);
  f.check.allow = false;
  f.server->policy_changed();
  CHECK(ping(*stub).error_code() == grpc::StatusCode::PERMISSION_DENIED);
  CHECK(f.service.calls == 1);
}

TEST_CASE("per-address and total call limits refuse with RESOURCE_EXHAUSTED until a call ends", "[grpc][server]") {
  auto o = plain_options("limits");
  o.max_calls_per_ip = 1;
  Fixture f(o);
  auto stub = f.stub();
  {
    HeldCall held(*stub);
    REQUIRE(f.service.wait_held(1));
    auto refused = ping(*stub);
    CHECK(refused.error_code() == grpc::StatusCode::RESOURCE_EXHAUSTED);
    CHECK(f.logs.matching("reason=per_ip_limit").size() == 1);
    f.service.release();
    CHECK(held.wait().ok());
  }
  REQUIRE(wait_idle("limits"));
  CHECK(ping(*stub).ok());
  REQUIRE(wait_idle("limits"));
  // The total, set live (SIGHUP).
  f.server->set_limits(1, 0);
  {
    HeldCall held(*stub);
    REQUIRE(f.service.wait_held(1));
    CHECK(ping(*stub).error_code() == grpc::StatusCode::RESOURCE_EXHAUSTED);
    f.service.release();
    CHECK(held.wait().ok());
  }
  REQUIRE(wait_idle("limits"));
  CHECK(ping(*stub).ok());
  CHECK(wait_idle("limits"));
}

TEST_CASE("drain lets calls in progress finish, refuses new ones and then reports", "[grpc][server]") {
  Fixture f(plain_options("drain1"));
  auto stub = f.stub();
  REQUIRE(ping(*stub).ok());
  HeldCall held(*stub);
  REQUIRE(f.service.wait_held(1));
  std::atomic<bool> drained{false};
  f.server->drain(10s, [&] { drained = true; });
  std::this_thread::sleep_for(100ms);
  CHECK_FALSE(drained);
  // A new call now: refused (UNAVAILABLE), whether by our gate or by gRPC's GOAWAY.
  CHECK(ping(*stub, "late", 2s).error_code() == grpc::StatusCode::UNAVAILABLE);
  f.service.release();
  CHECK(held.wait().ok());
  for (int i = 0; i < 500 && !drained; ++i) std::this_thread::sleep_for(10ms);
  CHECK(drained);
}

TEST_CASE("drain cancels what is still running at its deadline", "[grpc][server]") {
  Fixture f(plain_options("drain2"));
  auto stub = f.stub();
  HeldCall held(*stub);
  REQUIRE(f.service.wait_held(1));
  std::atomic<bool> drained{false};
  auto started = std::chrono::steady_clock::now();
  f.server->drain(300ms, [&] { drained = true; });
  CHECK_FALSE(held.wait().ok());
  for (int i = 0; i < 500 && !drained; ++i) std::this_thread::sleep_for(10ms);
  CHECK(drained);
  CHECK(std::chrono::steady_clock::now() - started < 5s);
}

TEST_CASE("a rebuild serves on the same port and the old connections move over", "[grpc][server]") {
  Fixture f(plain_options("rebuild"));
  auto stub = f.stub();
  REQUIRE(ping(*stub).ok());
  int port = f.server->port();
  HeldCall held(*stub);
  REQUIRE(f.service.wait_held(1));
  auto rebuilt = f.server->rebuild(f.options, 5s);
  INFO((rebuilt ? std::string() : rebuilt.error().detail));
  REQUIRE(rebuilt);
  CHECK(f.server->port() == port);
  // The call in progress on the old server finishes there. A call the client sends before the old
  // server's GOAWAY reaches it is cancelled by gRPC (see GrpcServer::rebuild); once it has, the
  // channel's calls go to the new server.
  std::this_thread::sleep_for(200ms);
  f.service.release();
  CHECK(held.wait().ok());
  for (int i = 0; i < 5; ++i) CHECK(ping(*stub).ok());
  CHECK(ping(*f.stub()).ok());
  CHECK(f.logs.matching("event=rebuilt").size() == 1);
  // Another address needs a restart; the running server stays.
  auto moved = f.options;
  moved.listen = *common::net::Endpoint::parse("127.0.0.2:0");
  auto refused = f.server->rebuild(moved, 1s);
  REQUIRE_FALSE(refused);
  CHECK(refused.error().detail.find("restart") != std::string::npos);
  CHECK(ping(*stub).ok());
}

TEST_CASE("a reload with nothing new keeps the server and its connections", "[grpc][server]") {
  Fixture f(plain_options("reload"));
  auto stub = f.stub();
  REQUIRE(ping(*stub).ok());
  for (int i = 0; i < 3; ++i) {
    auto reloaded = f.server->reload(f.options, 5s);
    REQUIRE(reloaded);
    CHECK_FALSE(*reloaded);
    CHECK(ping(*stub).ok());  // no GOAWAY, so no call is lost
  }
  CHECK(f.logs.matching("event=rebuilt").empty());
  CHECK(f.check.checks == 4);  // each reload had the connection's next call checked again
}

TEST_CASE("without an access check every peer passes, and the limits still apply", "[grpc][server]") {
  Fixture f(plain_options("nocheck"), false);
  auto stub = f.stub();
  CHECK(ping(*stub).ok());
  CHECK(f.check.checks == 0);
}

namespace {
class SyncPing final : public pt::Ping::Service {};
}  // namespace

TEST_CASE("services that are not callback services, unknown names and taken ports are refused at start",
          "[grpc][server]") {
  LoopThread loop;
  {
    common::rpc::GrpcRegistry registry{{&loop.loop()}};
    SyncPing sync;
    registry.add<pt::Ping>(sync);
    auto s = common::rpc::GrpcServer::start(plain_options("bad1"), registry, {});
    REQUIRE_FALSE(s);
    CHECK(s.error().detail.find("callback API") != std::string::npos);
  }
  {
    common::rpc::GrpcRegistry registry{{&loop.loop()}};
    pt::Ping::CallbackService ping;
    registry.add(ping, "postern.test.NoSuch");
    auto s = common::rpc::GrpcServer::start(plain_options("bad2"), registry, {});
    REQUIRE_FALSE(s);
    CHECK(s.error().detail.find("no such service") != std::string::npos);
  }
  {
    common::rpc::GrpcRegistry registry{{&loop.loop()}};
    auto s = common::rpc::GrpcServer::start(plain_options("bad3"), registry, {});
    REQUIRE_FALSE(s);
    CHECK(s.error().detail.find("registered no service") != std::string::npos);
  }
  {
    common::rpc::GrpcRegistry registry{{&loop.loop()}};
    pt::Ping::CallbackService ping;
    registry.add<pt::Ping>(ping);
    auto first = common::rpc::GrpcServer::start(plain_options("taken1"), registry, {});
    REQUIRE(first);
    auto o = plain_options("taken2");
    o.listen.port = static_cast<uint16_t>((*first)->port());
    auto second = common::rpc::GrpcServer::start(o, registry, {});
    REQUIRE_FALSE(second);
    CHECK(second.error().detail.find("port in use") != std::string::npos);
  }
}

TEST_CASE("gRPC peer texts become endpoints the filters understand", "[grpc][server]") {
  using common::rpc::parse_peer;
  CHECK(parse_peer("ipv4:192.0.2.7:5123")->to_string() == "192.0.2.7:5123");
  CHECK(parse_peer("ipv6:[2001:db8::1]:443")->to_string() == "[2001:db8::1]:443");
  CHECK(parse_peer("ipv6:%5B::1%5D:80")->to_string() == "[::1]:80");
  auto mapped = parse_peer("ipv6:[::ffff:127.0.0.1]:9");
  REQUIRE(mapped);
  CHECK(mapped->address.is_v4());
  CHECK(mapped->to_string() == "127.0.0.1:9");
  CHECK_FALSE(parse_peer("unix:/run/x.sock"));
  CHECK_FALSE(parse_peer("ipv4:not-an-address:1"));
  CHECK_FALSE(parse_peer(""));
}


