// connection_test.cpp: the runtime over real loopback sockets, in-process: echo, line limit, idle
// timeout, per-IP limit, admission refusal, backpressure, drain, bind clashes and IPv6.
#include <catch2/catch.hpp>

#include <sys/socket.h>

#include <atomic>
#include <thread>

#include "common/runtime/connection.hpp"
#include "common/runtime/listener.hpp"
#include "common/runtime/loop.hpp"
#include "tests/support/echo_session.hpp"
#include "tests/support/line_client.hpp"

using namespace common::runtime;
using common::net::Endpoint;
using namespace std::chrono_literals;

namespace {

class DenyAll : public AdmissionCheck {
 public:
  void check(const ConnectionInfo&, std::function<void(Outcome)> done) override {
    done(Outcome{false, "deny:1 ALL: ALL", ""});
  }
};

struct Server {
  common::metrics::Registry registry;  // first: connections closing at the end still count in it
  Loop loop;
  ConnectionSet connections{loop.get()};
  test::LineEchoFactory factory;
  std::shared_ptr<ConnectionLimiter> limiter;
  std::shared_ptr<ListenerStats> stats = std::make_shared<ListenerStats>("echo", registry);
  std::unique_ptr<Listener> listener;
  std::thread thread;
  int port = 0;

  explicit Server(ListenerOptions options, size_t max_per_ip = 0, AdmissionCheck* admission = nullptr,
                  const std::string& address = "127.0.0.1:0", size_t max_line = 100)
      : factory(max_line, 3), limiter(std::make_shared<ConnectionLimiter>(0, max_per_ip)) {
    auto bound = bind_endpoints({*Endpoint::parse(address)}, 1, 128);
    REQUIRE(bound);
    port = (*bound)[0][0].endpoint.port;
    listener = std::make_unique<Listener>(connections, std::move(options), std::move((*bound)[0][0]), limiter, stats,
                                          factory, admission);
    REQUIRE(listener->start());
    thread = std::thread([this] { loop.run(); });
  }
  ~Server() {
    loop.stop();
    thread.join();
  }
  // Runs fn on the loop thread and waits for it.
  template <class F>
  void on_loop(F fn) {
    std::atomic<bool> done{false};
    loop.post([&] {
      fn();
      done = true;
    });
    while (!done) std::this_thread::sleep_for(1ms);
  }
};

ListenerOptions options(std::chrono::milliseconds idle = 5s) {
  ListenerOptions o;
  o.name = "echo";
  o.service = "echo";
  o.limits.idle_timeout = idle;
  return o;
}

}  // namespace

TEST_CASE("lines are echoed and QUIT closes after the reply", "[runtime]") {
  Server s(options());
  test::LineClient c("127.0.0.1", s.port);
  REQUIRE(c.connected());
  auto greeting = c.read_line();
  REQUIRE(greeting);
  CHECK(greeting->rfind("+ready ", 0) == 0);
  c.send("hello\r\nworld\r\n");
  CHECK(c.read_line() == "hello");
  CHECK(c.read_line() == "world");
  c.send("QUIT\r\n");
  CHECK(c.read_line() == "+bye");
  CHECK(c.closed_by_peer());
}

TEST_CASE("an over-long line gets an error and the session goes on, repeated errors close it", "[runtime]") {
  Server s(options());
  test::LineClient c("127.0.0.1", s.port);
  c.read_line();
  c.send(std::string(5000, 'x') + "\r\nafter\r\n");
  CHECK(c.read_line() == "-ERR line too long");
  CHECK(c.read_line() == "after");
  c.send(std::string(101, 'y') + "\n" + std::string(101, 'y') + "\n");
  CHECK(c.read_line() == "-ERR line too long");
  CHECK(c.read_line() == "-ERR line too long");
  CHECK(c.read_line() == "-ERR too many errors");
  CHECK(c.closed_by_peer());
}

TEST_CASE("an idle client is told and disconnected", "[runtime]") {
  Server s(options(200ms));
  test::LineClient c("127.0.0.1", s.port);
  c.read_line();
  auto start = std::chrono::steady_clock::now();
  CHECK(c.read_line() == "-ERR idle timeout");
  CHECK(c.closed_by_peer());
  CHECK(std::chrono::steady_clock::now() - start >= 150ms);
}

TEST_CASE("the per-IP limit refuses the extra connection and frees slots on close", "[runtime]") {
  Server s(options(), 2);
  auto a = std::make_unique<test::LineClient>("127.0.0.1", s.port);
  test::LineClient b("127.0.0.1", s.port);
  REQUIRE(a->read_line());
  REQUIRE(b.read_line());
  {
    test::LineClient third("127.0.0.1", s.port);
    CHECK(third.read_line() == "-ERR refused per_ip_limit");
    CHECK(third.closed_by_peer());
  }
  a->send("QUIT\r\n");
  CHECK(a->read_line() == "+bye");
  CHECK(a->closed_by_peer());
  a.reset();
  // The slot is released when the server side has closed.
  std::optional<std::string> greeting;
  for (int i = 0; i < 50; ++i) {
    test::LineClient again("127.0.0.1", s.port);
    greeting = again.read_line();
    if (greeting && greeting->rfind("+ready", 0) == 0) break;
    std::this_thread::sleep_for(20ms);
  }
  REQUIRE(greeting);
  CHECK(greeting->rfind("+ready", 0) == 0);
  CHECK(s.stats->refused_per_ip.value() >= 1);
}

TEST_CASE("a denying access check refuses before any session exists", "[runtime]") {
  DenyAll deny;
  Server s(options(), 0, &deny);
  test::LineClient c("127.0.0.1", s.port);
  CHECK(c.read_line() == "-ERR refused access_denied");
  CHECK(c.closed_by_peer());
  CHECK(s.stats->refused_access.value() == 1);
  CHECK(s.stats->active.value() == 0);
}

TEST_CASE("a client that does not read stops the server from reading: output stays bounded", "[runtime]") {
  Server s(options(), 0, nullptr, "127.0.0.1:0", 100000);
  test::LineClient c("127.0.0.1", s.port, 2s);
  c.read_line();
  // Send 32 MiB of lines without reading any echo; the send stalls once both sides' buffers fill.
  std::atomic<size_t> sent{0};
  std::thread writer([&] {
    std::string chunk;
    for (int i = 0; i < 1024; ++i) chunk += std::string(30, 'a') + "\r\n";
    while (sent < (32u << 20)) {
      ssize_t n = ::send(c.fd(), chunk.data(), chunk.size(), MSG_NOSIGNAL);
      if (n <= 0) break;  // SO_SNDTIMEO: the server stopped reading
      sent += static_cast<size_t>(n);
      if (static_cast<size_t>(n) < chunk.size()) break;
    }
  });
  writer.join();
  CHECK(sent < (32u << 20));  // the server stopped reading well before taking it all
  // Drain everything we were sent back; the echo is complete and in order.
  size_t lines = 0;
  size_t whole_lines = sent / 32;
  while (lines < whole_lines) {
    auto l = c.read_line();
    REQUIRE(l);
    REQUIRE(l->size() == 30);
    ++lines;
  }
  CHECK(lines == whole_lines);
}

TEST_CASE("drain asks every session to finish", "[runtime]") {
  Server s(options());
  test::LineClient a("127.0.0.1", s.port);
  test::LineClient b("127.0.0.1", s.port);
  a.read_line();
  b.read_line();
  s.on_loop([&] {
    s.listener->stop();
    s.connections.drain_all();
  });
  CHECK(a.read_line() == "+shutting down");
  CHECK(b.read_line() == "+shutting down");
  CHECK(a.closed_by_peer());
  CHECK(b.closed_by_peer());
  test::LineClient late("127.0.0.1", s.port);
  CHECK_FALSE(late.connected());
}

TEST_CASE("binding a port twice is a clash, even with SO_REUSEPORT", "[runtime]") {
  auto first = bind_endpoints({*Endpoint::parse("127.0.0.1:0")}, 2, 16);
  REQUIRE(first);
  REQUIRE((*first)[0].size() == 2);
  CHECK((*first)[0][0].endpoint.port == (*first)[0][1].endpoint.port);
  auto port = (*first)[0][0].endpoint.port;
  auto again = bind_endpoints({*Endpoint::parse("127.0.0.1:" + std::to_string(port))}, 1, 16);
  REQUIRE_FALSE(again);
  CHECK(again.error().detail.find("127.0.0.1:" + std::to_string(port)) != std::string::npos);
  auto dup = bind_endpoints({*Endpoint::parse("127.0.0.1:4000"), *Endpoint::parse("127.0.0.1:4000")}, 1, 16);
  REQUIRE_FALSE(dup);
  CHECK(dup.error().detail.find("twice") != std::string::npos);
}

TEST_CASE("IPv6 loopback listeners work", "[runtime]") {
  Server s(options(), 0, nullptr, "[::1]:0");
  test::LineClient c("::1", s.port);
  REQUIRE(c.connected());
  CHECK(c.read_line()->rfind("+ready", 0) == 0);
  c.send("v6\r\n");
  CHECK(c.read_line() == "v6");
}
