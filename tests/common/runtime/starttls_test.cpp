// starttls_test.cpp: StartTlsSession::start_tls over real loopback sockets, with a toy transform
// (every byte XORed) standing in for TLS: the reply goes out in plaintext, plaintext pipelined
// behind the command is dropped, logged and counted, and TLS cannot start twice or by the back door.
#include <catch2/catch.hpp>

#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <cerrno>
#include <mutex>
#include <thread>

#include "common/log/log.hpp"
#include "common/metrics/metrics.hpp"
#include "common/runtime/connection.hpp"
#include "common/runtime/listener.hpp"
#include "common/runtime/loop.hpp"
#include "tests/support/echo_session.hpp"

using namespace common::runtime;
using common::net::Endpoint;
using namespace std::chrono_literals;

namespace {

constexpr char kKey = 0x5a;

std::string xored(std::string_view in) {
  std::string out(in);
  for (auto& ch : out) ch = static_cast<char>(ch ^ kKey);
  return out;
}

// Stands in for TLS: bytes change on the wire, so a byte that skipped it shows.
class XorTransform : public Transform {
 public:
  common::Result<void> decode(std::string_view in, std::string& plain, std::string&) override {
    plain += xored(in);
    return {};
  }
  common::Result<void> encode(std::string_view plain, std::string& wire) override {
    wire += xored(plain);
    return {};
  }
  void close(std::string&) override {}
};

struct Logs {
  Logs() {
    common::log::set_sink([this](std::string_view line) {
      std::lock_guard lock(mutex);
      lines.emplace_back(line);
    });
  }
  ~Logs() { common::log::reset_sink(); }
  bool has(const std::vector<std::string>& parts) {
    std::lock_guard lock(mutex);
    for (const auto& line : lines) {
      bool all = true;
      for (const auto& p : parts) all = all && line.find(p) != std::string::npos;
      if (all) return true;
    }
    return false;
  }
  std::mutex mutex;
  std::vector<std::string> lines;
};

// Commands of a session that tries what the runtime must refuse.
class MisuseSession : public StartTlsSession {
 public:
  explicit MisuseSession(Connection& c) : StartTlsSession(c) {}
  void on_open() override { connection().write("+ready\r\n"); }
  void on_data(std::string_view bytes) override {
    std::string line(bytes.substr(0, bytes.find('\r')));
    if (line == "TWICE") {
      bool first = start_tls("+first\r\n", std::make_unique<XorTransform>());
      bool second = start_tls("+second\r\n", std::make_unique<XorTransform>());
      connection().write(std::string(first ? "+1" : "-1") + (second ? " +2" : " -2") + "\r\n");
    } else if (line == "NULL") {
      connection().write(start_tls("+never\r\n", nullptr) ? "+started\r\n" : "-refused\r\n");
    } else if (line == "IMPLICIT") {
      // Implicit TLS after the session began would take this line's successors as protected.
      connection().start_implicit_tls(std::make_unique<XorTransform>());
      connection().write("+still here\r\n");
    }
  }
  size_t forget_plaintext() override { return 0; }
};

template <class MakeSession>
class Factory : public SessionFactory {
 public:
  explicit Factory(MakeSession make) : make_(std::move(make)) {}
  std::unique_ptr<Session> create(Connection& c) override { return make_(c); }

 private:
  MakeSession make_;
};

struct Server {
  common::metrics::Registry registry;
  Loop loop;
  ConnectionSet connections{loop.get()};
  std::unique_ptr<SessionFactory> factory;
  std::shared_ptr<ListenerStats> stats = std::make_shared<ListenerStats>("echo", registry);
  std::unique_ptr<Listener> listener;
  std::thread thread;
  int port = 0;

  explicit Server(std::unique_ptr<SessionFactory> f) : factory(std::move(f)) {
    auto bound = bind_endpoints({*Endpoint::parse("127.0.0.1:0")}, 1, 16);
    REQUIRE(bound);
    port = (*bound)[0][0].endpoint.port;
    ListenerOptions o;
    o.name = "echo";
    o.service = "echo";
    listener = std::make_unique<Listener>(connections, o, std::move((*bound)[0][0]),
                                          std::make_shared<ConnectionLimiter>(0, 0), stats, *factory, nullptr);
    REQUIRE(listener->start());
    thread = std::thread([this] { loop.run(); });
  }
  ~Server() {
    loop.stop();
    thread.join();
  }
};

// A blocking client that reads raw bytes (the toy "TLS" is not line-safe before decoding).
class Client {
 public:
  explicit Client(int port) {
    fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in sin{};
    sin.sin_family = AF_INET;
    sin.sin_port = htons(static_cast<uint16_t>(port));
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    timeval tv{5, 0};
    setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    connected_ = ::connect(fd_, reinterpret_cast<sockaddr*>(&sin), sizeof sin) == 0;
  }
  ~Client() { ::close(fd_); }
  bool connected() const { return connected_; }
  void send(std::string_view bytes) { REQUIRE(::send(fd_, bytes.data(), bytes.size(), MSG_NOSIGNAL) == ssize_t(bytes.size())); }
  // Reads until `n` bytes are held or the peer stops; returns and consumes them.
  std::string read(size_t n) {
    while (buffer_.size() < n) {
      char buf[4096];
      ssize_t got = ::recv(fd_, buf, sizeof buf, 0);
      if (got <= 0) break;
      buffer_.append(buf, static_cast<size_t>(got));
    }
    std::string out = buffer_.substr(0, n);
    buffer_.erase(0, out.size());
    return out;
  }
  // True when the server closed (EOF or reset) within the timeout.
  bool closed() {
    char buf[256];
    for (;;) {
      ssize_t got = ::recv(fd_, buf, sizeof buf, 0);
      if (got == 0 || (got < 0 && errno != EAGAIN && errno != EWOULDBLOCK)) return true;
      if (got < 0) return false;
    }
  }

 private:
  int fd_ = -1;
  bool connected_ = false;
  std::string buffer_;
};

std::unique_ptr<SessionFactory> echo_with_starttls() {
  test::StartTls make = [](std::string_view) { return std::make_unique<XorTransform>(); };
  return std::make_unique<test::LineEchoFactory>(100, 3, make);
}

std::string greeting(Client& c) {
  std::string g;
  while (g.empty() || g.back() != '\n') {
    std::string b = c.read(1);
    if (b.empty()) break;
    g += b;
  }
  return g;
}

}  // namespace

TEST_CASE("plaintext pipelined behind STARTTLS is dropped, logged and counted, the reply is plaintext",
          "[runtime][starttls]") {
  Logs logs;
  Server s(echo_with_starttls());
  Client c(s.port);
  REQUIRE(c.connected());
  CHECK(greeting(c).rfind("+ready ", 0) == 0);
  // An attacker on the path appends a command to the client's segment (CVE-2011-0411).
  c.send("STARTTLS\r\nINJECTED\r\n");
  CHECK(c.read(11) == "+go ahead\r\n");  // in plaintext: not XORed
  c.send(xored("after\r\nQUIT\r\n"));
  // Had INJECTED survived, its echo would come first.
  CHECK(xored(c.read(7)) == "after\r\n");
  CHECK(xored(c.read(6)) == "+bye\r\n");
  CHECK(c.closed());
  CHECK(logs.has({"phase=starttls", "event=pipelined_plaintext_discarded", "bytes=10"}));
  CHECK(s.stats->starttls_discarded.value() == 1);
  CHECK(s.registry.render().find("postern_starttls_pipelined_discarded_total{listener=\"echo\"} 1") !=
        std::string::npos);
}

TEST_CASE("a STARTTLS with nothing behind it discards nothing and logs nothing", "[runtime][starttls]") {
  Logs logs;
  Server s(echo_with_starttls());
  Client c(s.port);
  REQUIRE(c.connected());
  greeting(c);
  c.send("STARTTLS\r\n");
  CHECK(c.read(11) == "+go ahead\r\n");
  c.send(xored("x\r\n"));
  CHECK(xored(c.read(3)) == "x\r\n");
  CHECK(s.stats->starttls_discarded.value() == 0);
  CHECK_FALSE(logs.has({"event=pipelined_plaintext_discarded"}));
}

TEST_CASE("TLS starts once: a second start_tls and a null transform are refused without a byte written",
          "[runtime][starttls]") {
  Logs logs;
  auto make = [](Connection& c) -> std::unique_ptr<Session> { return std::make_unique<MisuseSession>(c); };
  Server s(std::make_unique<Factory<decltype(make)>>(make));
  {
    Client c(s.port);
    REQUIRE(c.connected());
    CHECK(greeting(c) == "+ready\r\n");
    c.send("NULL\r\n");
    CHECK(c.read(10) == "-refused\r\n");
    CHECK(logs.has({"event=tls_start_refused", "reason=\"no TLS transform\""}));
  }
  {
    Client c(s.port);
    REQUIRE(c.connected());
    greeting(c);
    c.send("TWICE\r\n");
    CHECK(c.read(8) == "+first\r\n");  // plaintext; "+second" never goes out
    CHECK(xored(c.read(7)) == "+1 -2\r\n");
    CHECK(logs.has({"event=tls_start_refused", "reason=\"TLS is already on\""}));
  }
}

TEST_CASE("implicit TLS asked for mid-stream aborts the connection", "[runtime][starttls]") {
  Logs logs;
  auto make = [](Connection& c) -> std::unique_ptr<Session> { return std::make_unique<MisuseSession>(c); };
  Server s(std::make_unique<Factory<decltype(make)>>(make));
  Client c(s.port);
  REQUIRE(c.connected());
  greeting(c);
  c.send("IMPLICIT\r\n");
  CHECK(c.read(13) == "");  // never "+still here"
  CHECK(c.closed());
  CHECK(logs.has({"event=tls_start_refused", "level=error"}));
  CHECK(s.stats->closed[static_cast<size_t>(CloseReason::TransformError)]->value() == 1);
}
