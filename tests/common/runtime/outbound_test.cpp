// outbound_test.cpp: outbound connections over real loopback sockets: a session on a connection we
// opened (echo, addresses, IPv6, source address), refused and timed-out connects as error values, a
// silent peer hitting the idle timer, a drain while connecting, and backpressure on a peer that
// does not read.
#include <catch2/catch.hpp>

#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/runtime/listener.hpp"
#include "common/runtime/outbound.hpp"
#include "tests/support/echo_session.hpp"
#include "tests/support/loop_thread.hpp"
#include "tests/support/process.hpp"

using namespace common::runtime;
using common::net::Endpoint;
using common::net::IpAddress;
using namespace std::chrono_literals;

namespace {

using RecordingSession = test::RecordingSession;

struct Outcome {
  std::mutex mutex;
  std::condition_variable changed;
  std::optional<common::Error> error;
  bool wait(std::chrono::milliseconds d = 10s) {
    std::unique_lock lock(mutex);
    return changed.wait_for(lock, d, [&] { return error.has_value(); });
  }
};

// Connects from the loop thread; the session records into `rec`, a failure lands in `out`.
std::string start(test::LoopThread& t, const ConnectOptions& o, std::shared_ptr<test::Recording> rec,
                  std::shared_ptr<Outcome> out, RecordingSession** session = nullptr) {
  std::string id;
  t.on_loop([&] {
    id = connect(
        t.connections, o,
        [rec, session](Connection& c) {
          auto s = std::make_unique<test::RecordingSession>(c, rec);
          if (session) *session = s.get();
          return s;
        },
        [out](const common::Error& e) {
          std::lock_guard lock(out->mutex);
          out->error = e;
          out->changed.notify_all();
        });
  });
  return id;
}

// A listening socket that never accepts, its queue full: further SYNs are dropped, so a connect
// to it neither succeeds nor fails until it times out (Linux drops SYNs to a full accept queue).
struct Blackhole {
  int fd = -1;
  int port = 0;
  std::vector<int> fillers;
  Blackhole() {
    fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    REQUIRE(::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0);
    REQUIRE(::listen(fd, 0) == 0);
    socklen_t len = sizeof a;
    getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
    port = ntohs(a.sin_port);
    for (int i = 0; i < 4; ++i) {
      int c = ::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
      ::connect(c, reinterpret_cast<sockaddr*>(&a), sizeof a);
      fillers.push_back(c);
    }
    std::this_thread::sleep_for(100ms);  // the handshakes that fit complete
  }
  ~Blackhole() {
    for (int c : fillers) ::close(c);
    ::close(fd);
  }
};

// The accepted ends count into `registry`: every connection ends before it goes.
struct EchoListener {
  test::LoopThread& t;
  common::metrics::Registry registry;
  test::LineEchoFactory factory;
  std::unique_ptr<Listener> listener;
  int port = 0;
  EchoListener(test::LoopThread& loop, const std::string& address = "127.0.0.1:0") : t(loop) {
    auto bound = bind_endpoints({*Endpoint::parse(address)}, 1, 128);
    REQUIRE(bound);
    port = (*bound)[0][0].endpoint.port;
    ListenerOptions o;
    o.name = "echo";
    o.service = "echo";
    t.on_loop([&] {
      listener = std::make_unique<Listener>(t.connections, o, std::move((*bound)[0][0]),
                                            std::make_shared<ConnectionLimiter>(0, 0),
                                            std::make_shared<ListenerStats>("echo", registry), factory, nullptr);
      REQUIRE(listener->start());
    });
  }
  ~EchoListener() { stop(t); }
  void stop(test::LoopThread&) {
    t.on_loop([&] {
      listener.reset();
      t.connections.abort_all();
    });
  }
};

ConnectOptions to(const std::string& address, int port) {
  ConnectOptions o;
  o.remote = *Endpoint::parse(address + ":" + std::to_string(port));
  o.connect_timeout = 2s;
  o.limits.idle_timeout = 5s;
  o.name = "test-out";
  return o;
}

}  // namespace

TEST_CASE("an outbound connection runs a session with the connection's info filled", "[runtime][outbound]") {
  test::LoopThread t;
  EchoListener echo(t);
  auto rec = std::make_shared<test::Recording>();
  auto out = std::make_shared<Outcome>();
  RecordingSession* session = nullptr;
  const std::string id = start(t, to("127.0.0.1", echo.port), rec, out, &session);
  CHECK(!id.empty());
  REQUIRE(rec->wait_for_data("+ready"));
  t.on_loop([&] {
    const ConnectionInfo& info = session->conn().info();
    CHECK(info.id == id);
    CHECK(info.listener == "test-out");
    CHECK(info.peer.to_string() == "127.0.0.1:" + std::to_string(echo.port));
    CHECK(info.local.address.to_string() == "127.0.0.1");
    CHECK(info.local.port != 0);
    session->send("hello outbound\r\n");
  });
  REQUIRE(rec->wait_for_data("hello outbound\r\n"));
  t.on_loop([&] { session->send("QUIT\r\n"); });
  REQUIRE(rec->wait_closed());
  CHECK(rec->text().find("+bye") != std::string::npos);
  CHECK(*rec->closed == CloseReason::PeerClosed);
  CHECK(!out->error);
  echo.stop(t);
}

TEST_CASE("an outbound connection to IPv6 loopback, from a chosen source address", "[runtime][outbound]") {
  test::LoopThread t;
  SECTION("IPv6") {
    int probe = ::socket(AF_INET6, SOCK_STREAM, 0);
    sockaddr_in6 a{};
    a.sin6_family = AF_INET6;
    a.sin6_addr = in6addr_loopback;
    const bool have_v6 = probe >= 0 && ::bind(probe, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0;
    if (probe >= 0) ::close(probe);
    if (!have_v6) {
      WARN("no IPv6 loopback here");
      return;
    }
    EchoListener echo(t, "[::1]:0");
    auto rec = std::make_shared<test::Recording>();
    auto out = std::make_shared<Outcome>();
    RecordingSession* session = nullptr;
    auto o = to("127.0.0.1", echo.port);
    o.remote = *Endpoint::parse("[::1]:" + std::to_string(echo.port));
    start(t, o, rec, out, &session);
    REQUIRE(rec->wait_for_data("+ready"));
    t.on_loop([&] { CHECK(session->conn().info().local.address.to_string() == "::1"); });
    echo.stop(t);
  }
  SECTION("source address") {
    EchoListener echo(t);
    auto rec = std::make_shared<test::Recording>();
    auto out = std::make_shared<Outcome>();
    RecordingSession* session = nullptr;
    auto o = to("127.0.0.1", echo.port);
    o.source = IpAddress::parse("127.0.0.1");
    start(t, o, rec, out, &session);
    REQUIRE(rec->wait_for_data("+ready"));
    t.on_loop([&] { CHECK(session->conn().info().local.address.to_string() == "127.0.0.1"); });
    echo.stop(t);
  }
  SECTION("a source address of the other family fails as a value") {
    auto rec = std::make_shared<test::Recording>();
    auto out = std::make_shared<Outcome>();
    auto o = to("127.0.0.1", 9);
    o.source = IpAddress::parse("::1");
    start(t, o, rec, out);
    REQUIRE(out->wait());
    CHECK(out->error->kind == common::ErrorKind::Connect);
    CHECK(out->error->detail.find("family") != std::string::npos);
    CHECK(!rec->opened);
  }
}

TEST_CASE("a refused connect is an error value with the errno text", "[runtime][outbound]") {
  test::LoopThread t;
  const int port = test::free_port();  // nothing listens there
  auto rec = std::make_shared<test::Recording>();
  auto out = std::make_shared<Outcome>();
  start(t, to("127.0.0.1", port), rec, out);
  REQUIRE(out->wait());
  CHECK(out->error->kind == common::ErrorKind::Connect);
  CHECK(out->error->detail.find("ECONNREFUSED") != std::string::npos);
  CHECK(out->error->detail.find("127.0.0.1:" + std::to_string(port)) != std::string::npos);
  CHECK(!rec->opened);
  t.on_loop([&] { CHECK(t.connections.size() <= 1); });
}

TEST_CASE("a connect to a peer that never answers times out", "[runtime][outbound]") {
  test::LoopThread t;
  Blackhole hole;
  auto rec = std::make_shared<test::Recording>();
  auto out = std::make_shared<Outcome>();
  auto o = to("127.0.0.1", hole.port);
  o.connect_timeout = 300ms;
  const auto began = std::chrono::steady_clock::now();
  start(t, o, rec, out);
  REQUIRE(out->wait(5s));
  const auto took = std::chrono::steady_clock::now() - began;
  CHECK(out->error->kind == common::ErrorKind::Connect);
  CHECK(out->error->detail.find("timed out") != std::string::npos);
  CHECK(took >= 250ms);
  CHECK(took < 3s);
  CHECK(!rec->opened);
  // The timed-out connection is gone from the set.
  REQUIRE(rec->wait([&] {
    size_t n = 0;
    const_cast<test::LoopThread&>(t).on_loop([&] { n = t.connections.size(); });
    return n == 0;
  }, 2s) == true);
}

TEST_CASE("an established outbound connection to a silent peer hits its idle timer", "[runtime][outbound]") {
  test::LoopThread t;
  // A listener that never accepts, queue not full: the kernel completes the handshake for us.
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  REQUIRE(::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0);
  REQUIRE(::listen(fd, 8) == 0);
  socklen_t len = sizeof a;
  getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  auto rec = std::make_shared<test::Recording>();
  auto out = std::make_shared<Outcome>();
  auto o = to("127.0.0.1", ntohs(a.sin_port));
  o.limits.idle_timeout = 200ms;
  start(t, o, rec, out);
  REQUIRE(rec->wait_closed(5s));
  CHECK(rec->opened);
  CHECK(*rec->closed == CloseReason::Timeout);
  ::close(fd);
}

TEST_CASE("a drain while connecting reports a failure, and backpressure stops reading", "[runtime][outbound]") {
  test::LoopThread t;
  SECTION("drain") {
    Blackhole hole;
    auto rec = std::make_shared<test::Recording>();
    auto out = std::make_shared<Outcome>();
    auto o = to("127.0.0.1", hole.port);
    o.connect_timeout = 10s;
    start(t, o, rec, out);
    std::this_thread::sleep_for(50ms);
    t.on_loop([&] { t.connections.drain_all(); });
    REQUIRE(out->wait(2s));
    CHECK(out->error->kind == common::ErrorKind::Connect);
    CHECK(out->error->detail.find("closed before") != std::string::npos);
  }
  SECTION("backpressure") {
    int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    REQUIRE(::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0);
    REQUIRE(::listen(fd, 8) == 0);
    socklen_t len = sizeof a;
    getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
    auto rec = std::make_shared<test::Recording>();
    auto out = std::make_shared<Outcome>();
    RecordingSession* session = nullptr;
    auto o = to("127.0.0.1", ntohs(a.sin_port));
    o.limits.write_high_water = 64 * 1024;
    o.limits.write_low_water = 16 * 1024;
    start(t, o, rec, out, &session);
    REQUIRE(rec->wait([&] { return rec->opened; }));
    bool blocked = false;
    const std::string chunk(64 * 1024, 'x');
    for (int i = 0; i < 200 && !blocked; ++i) {
      t.on_loop([&] {
        session->send(chunk);
        blocked = session->conn().write_blocked();
      });
    }
    CHECK(blocked);  // the peer never reads: the queue passes the high-water mark
    ::close(fd);
  }
}
