// client_base_test.cpp: the gRPC client base (common/grpc/client_base.hpp) against in-process ping
// servers (plaintext): round robin, failover only where asked, the bound on calls in flight,
// results only for callers still alive, the rate-limited failure log, and close() cancelling what
// is in flight (a held call, a held stream) and refusing what comes after.
#include <catch2/catch.hpp>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include <grpcpp/grpcpp.h>

#include "common/grpc/client_base.hpp"
#include "common/runtime/loop.hpp"
#include "ping.grpc.pb.h"
#include "tests/support/log_capture.hpp"
#include "tests/support/loop_thread.hpp"
#include "tests/support/process.hpp"

using namespace std::chrono_literals;
namespace pt = postern::test;
using common::rpc::Client;
using common::rpc::ClientCore;
using common::rpc::ClientOptions;
using PingClient = Client<pt::Ping>;

namespace {

// Answers at once ("ping" -> "ping"), or holds the call ("hold") until it is cancelled.
class Held final : public grpc::ServerUnaryReactor {
 public:
  void OnCancel() override {
    if (!finished_.exchange(true)) Finish(grpc::Status::CANCELLED);
  }
  void OnDone() override { delete this; }

 private:
  std::atomic<bool> finished_{false};
};

class PingService final : public pt::Ping::CallbackService {
 public:
  grpc::ServerUnaryReactor* Ping(grpc::CallbackServerContext* context, const pt::PingRequest* request,
                                 pt::PingReply* reply) override {
    ++calls;
    if (request->text() == "hold") {
      ++held;
      return new Held;
    }
    reply->set_text(request->text());
    auto* r = context->DefaultReactor();
    r->Finish(grpc::Status::OK);
    return r;
  }
  std::atomic<int> calls{0}, held{0};
};

struct PingServer {
  PingServer() {
    grpc::ServerBuilder b;
    b.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port);
    b.RegisterService(&service);
    server = b.BuildAndStart();
    REQUIRE(server);
  }
  ~PingServer() { server->Shutdown(std::chrono::system_clock::now() + 2s); }
  std::string target() const { return "127.0.0.1:" + std::to_string(port); }
  int port = 0;
  PingService service;
  std::unique_ptr<grpc::Server> server;
};

ClientOptions options_for(std::vector<std::string> targets) {
  ClientOptions o;
  o.component = "pingclient";
  o.service = "ping";
  o.targets = std::move(targets);
  o.tls.plaintext = true;
  return o;
}

std::shared_ptr<PingClient> make(ClientOptions o) {
  auto c = PingClient::create(std::move(o));
  INFO((c ? std::string() : c.error().detail));
  REQUIRE(c);
  return *c;
}

struct Outcome {
  std::mutex mu;
  std::condition_variable cv;
  std::vector<grpc::StatusCode> codes;
  void add(grpc::StatusCode c) {
    std::lock_guard lock(mu);
    codes.push_back(c);
    cv.notify_all();
  }
  bool wait(size_t n, std::chrono::milliseconds limit = 10s) {
    std::unique_lock lock(mu);
    return cv.wait_for(lock, limit, [&] { return codes.size() >= n; });
  }
};

void ping(PingClient& c, const std::string& text, size_t target, bool failover, Outcome& out,
          std::chrono::milliseconds deadline = 5s) {
  auto req = std::make_shared<pt::PingRequest>();
  req->set_text(text);
  c.unary<pt::PingRequest, pt::PingReply>(
      "Ping", [](auto* stub, auto* ctx, auto* r, auto* resp, auto cb) { stub->Ping(ctx, r, resp, std::move(cb)); },
      std::shared_ptr<const pt::PingRequest>(req), std::chrono::system_clock::now() + deadline, target, failover,
      [&out](const grpc::Status& s, pt::PingReply*) { out.add(s.error_code()); });
}

}  // namespace

TEST_CASE("calls go round robin over the targets", "[grpc][client_base]") {
  PingServer a, b;
  auto c = make(options_for({a.target(), b.target()}));
  Outcome out;
  for (int i = 0; i < 10; ++i) ping(*c, "ping", c->pick_target(), true, out);
  REQUIRE(out.wait(10));
  for (auto code : out.codes) CHECK(code == grpc::StatusCode::OK);
  CHECK(a.service.calls == 5);
  CHECK(b.service.calls == 5);
  CHECK(c->stats().rpcs == 10);
  CHECK(c->close());
}

TEST_CASE("UNAVAILABLE goes to the next target only with failover", "[grpc][client_base]") {
  PingServer live;
  const std::string dead = "127.0.0.1:" + std::to_string(test::free_port());
  auto c = make(options_for({dead, live.target()}));
  Outcome once, again;
  ping(*c, "ping", 0, false, once);
  REQUIRE(once.wait(1));
  CHECK(once.codes[0] == grpc::StatusCode::UNAVAILABLE);
  ping(*c, "ping", 0, true, again);
  REQUIRE(again.wait(1));
  CHECK(again.codes[0] == grpc::StatusCode::OK);
  CHECK(live.service.calls == 1);
  CHECK(c->stats().rpcs == 3);
  CHECK(c->close());
}

TEST_CASE("admission is bounded, and refusals are counted", "[grpc][client_base]") {
  auto o = options_for({"127.0.0.1:1"});
  o.max_in_flight = 2;
  auto c = make(o);
  CHECK(c->admit());
  CHECK(c->admit());
  CHECK_FALSE(c->admit());
  c->release();
  CHECK(c->admit());
  CHECK(c->stats().overloaded == 1);
  CHECK(c->stats().in_flight == 2);
  c->release();
  c->release();
  CHECK(c->close());
  CHECK_FALSE(c->admit());  // closing refuses everything
}

TEST_CASE("results reach a loop only while the caller is alive and the client open", "[grpc][client_base]") {
  auto c = make(options_for({"127.0.0.1:1"}));
  test::LoopThread lt;
  std::atomic<int> delivered{0};
  auto alive = std::make_shared<int>(0);
  auto gone = std::make_shared<int>(0);
  std::weak_ptr<void> gone_weak = gone;
  gone.reset();
  c->post(lt.loop, alive, [&] { ++delivered; });
  c->post(lt.loop, gone_weak, [&] { delivered += 100; });
  const auto until = std::chrono::steady_clock::now() + 5s;
  while (delivered == 0 && std::chrono::steady_clock::now() < until) std::this_thread::sleep_for(1ms);
  std::this_thread::sleep_for(50ms);
  CHECK(delivered == 1);
  CHECK(c->close());
  c->post(lt.loop, alive, [&] { ++delivered; });
  std::this_thread::sleep_for(50ms);
  CHECK(delivered == 1);
}

TEST_CASE("failures are logged at most once per interval, naming server, method and target", "[grpc][client_base]") {
  test::LogCapture logs;
  auto o = options_for({"127.0.0.1:" + std::to_string(test::free_port())});
  o.failure_log_interval = 60s;
  auto c = make(o);
  Outcome out;
  for (int i = 0; i < 3; ++i) ping(*c, "ping", 0, false, out);
  REQUIRE(out.wait(3));
  auto lines = logs.matching("event=rpc_failed");
  REQUIRE(lines.size() == 1);
  CHECK(lines[0].find("comp=pingclient") != std::string::npos);
  CHECK(lines[0].find("server=ping") != std::string::npos);
  CHECK(lines[0].find("method=Ping") != std::string::npos);
  CHECK(lines[0].find("code=UNAVAILABLE") != std::string::npos);
  CHECK(c->close());
}

TEST_CASE("close() cancels calls in flight and a held stream, then refuses new ones", "[grpc][client_base]") {
  PingServer server;
  auto c = make(options_for({server.target()}));
  Outcome out;
  for (int i = 0; i < 3; ++i) ping(*c, "hold", 0, true, out, 30s);
  const auto until = std::chrono::steady_clock::now() + 10s;
  while (server.service.held < 3 && std::chrono::steady_clock::now() < until) std::this_thread::sleep_for(5ms);
  REQUIRE(server.service.held == 3);

  // A stream-like claim whose canceller is the only way out, as a reactor holding itself would be.
  auto ticket = std::make_unique<ClientCore::Ticket>();
  std::atomic<bool> cancelled{false};
  ClientCore::Ticket* raw = ticket.get();
  REQUIRE(c->claim(*raw, [&] {
    cancelled = true;
    ticket.reset();  // the call object lets go, as OnDone would
  }, /*stream=*/true));
  CHECK(c->stats().streams == 1);

  const auto began = std::chrono::steady_clock::now();
  CHECK(c->close());
  CHECK(std::chrono::steady_clock::now() - began < 3s);
  CHECK(cancelled);
  REQUIRE(out.wait(3));
  for (auto code : out.codes) CHECK(code == grpc::StatusCode::CANCELLED);
  CHECK(c->stats().active == 0);

  Outcome late;
  ping(*c, "ping", 0, true, late);
  REQUIRE(late.wait(1));
  CHECK(late.codes[0] == grpc::StatusCode::CANCELLED);
  CHECK(server.service.calls == 3);
}
