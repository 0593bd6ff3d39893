// tls_close_test.cpp: how a TLS stream ends reaches the session: close_notify is a clean close
// (on_peer_closed), a TCP FIN without it is a truncation (on_truncated, logged and counted), with
// a real TLS client (Python's ssl, i.e. OpenSSL) against an implicit-TLS listener on the runtime.
#include <catch2/catch.hpp>

#include <algorithm>
#include <mutex>
#include <thread>

#include "common/log/log.hpp"
#include "common/metrics/metrics.hpp"
#include "common/runtime/connection.hpp"
#include "common/runtime/line_framer.hpp"
#include "common/runtime/listener.hpp"
#include "common/runtime/loop.hpp"
#include "common/tls/server.hpp"
#include "tests/common/tls/tls_harness.hpp"

using namespace common::runtime;
using namespace std::chrono_literals;
using tlstest::contains;

namespace {

// What the sessions saw, in order, across connections.
struct Events {
  std::mutex mutex;
  std::vector<std::string> list;
  void add(std::string e) {
    std::lock_guard lock(mutex);
    list.push_back(std::move(e));
  }
  std::vector<std::string> get() {
    std::lock_guard lock(mutex);
    return list;
  }
  bool has(const std::string& e) {
    auto all = get();
    return std::find(all.begin(), all.end(), e) != all.end();
  }
  bool wait_for(const std::string& e) {
    for (int i = 0; i < 500 && !has(e); ++i) std::this_thread::sleep_for(10ms);
    return has(e);
  }
};

// A line echo that "commits" each complete line, as a protocol commits a message at its end.
class CommitSession : public Session {
 public:
  CommitSession(Connection& c, Events& events) : Session(c), events_(events), framer_(1000) {}
  void on_open() override { connection().write("+ready\r\n"); }
  void on_data(std::string_view bytes) override {
    framer_.append(bytes);
    while (auto frame = framer_.next()) {
      if (auto* line = std::get_if<LineFrame>(&*frame)) {
        events_.add("commit:" + std::string(line->text));
        connection().write(std::string(line->text) + "\r\n");
      }
    }
  }
  void on_peer_closed() override {
    events_.add("peer_closed buffered=" + std::to_string(framer_.buffered()));
    Session::on_peer_closed();
  }
  void on_truncated() override {
    events_.add("truncated buffered=" + std::to_string(framer_.buffered()));
    Session::on_truncated();
  }
  void on_closed(CloseReason reason) override { events_.add("closed:" + std::string(close_reason_name(reason))); }

 private:
  Events& events_;
  LineFramer framer_;
};

class ImplicitTlsFactory : public SessionFactory {
 public:
  ImplicitTlsFactory(common::tls::ServerContext& tls, Events& events) : tls_(tls), events_(events) {}
  std::unique_ptr<Session> create(Connection& c) override {
    c.start_implicit_tls(tls_.accept(c.info().id));
    return std::make_unique<CommitSession>(c, events_);
  }

 private:
  common::tls::ServerContext& tls_;
  Events& events_;
};

struct Server {
  common::metrics::Registry registry;
  Events events;
  Loop loop;
  ConnectionSet connections{loop.get()};
  ImplicitTlsFactory factory;
  std::shared_ptr<ListenerStats> stats = std::make_shared<ListenerStats>("imaps", registry);
  std::unique_ptr<Listener> listener;
  std::thread thread;
  int port = 0;

  explicit Server(common::tls::ServerContext& tls) : factory(tls, events) {
    auto bound = bind_endpoints({*common::net::Endpoint::parse("127.0.0.1:0")}, 1, 16);
    REQUIRE(bound);
    port = (*bound)[0][0].endpoint.port;
    ListenerOptions o;
    o.name = "imaps";
    o.service = "imap";
    listener = std::make_unique<Listener>(connections, o, std::move((*bound)[0][0]),
                                          std::make_shared<ConnectionLimiter>(0, 0), stats, factory, nullptr);
    REQUIRE(listener->start());
    thread = std::thread([this] { loop.run(); });
  }
  ~Server() {
    loop.stop();
    thread.join();
  }
  uint64_t closed(CloseReason r) { return stats->closed[static_cast<size_t>(r)]->value(); }
};

test::CommandResult close_client(const std::string& mode, int port) {
  return test::run({"python3", test::source_path("tests/support/tls_close_client.py"), mode, "127.0.0.1",
                    std::to_string(port), tlstest::pki().ca_pem()},
                   30s);
}

template <class F>
void with_tls(F body) {
  auto nss = tlstest::open_nss();
  {
    common::tls::ServerOptions options;
    auto tls = common::tls::ServerContext::create(*nss, options);
    INFO((tls ? std::string() : tls.error().detail));
    REQUIRE(tls);
    body(**tls);
  }
  auto down = nss->shutdown();
  INFO((down ? std::string() : down.error().detail));
  CHECK(down);
}

}  // namespace

TEST_CASE("close_notify then FIN is a clean close", "[runtime][tls]") {
  with_tls([](common::tls::ServerContext& tls) {
    tlstest::LogCapture logs;
    Server s(tls);
    auto r = close_client("clean", s.port);
    INFO(r.output);
    REQUIRE(r.exit_code == 0);
    CHECK(contains(r.output, "echo: committed"));
    CHECK(contains(r.output, "unwrapped: yes"));
    CHECK(contains(r.output, "after-close: b''"));  // our close_notify, then our FIN
    REQUIRE(s.events.wait_for("closed:peer_closed"));
    CHECK(s.events.has("commit:committed"));
    CHECK(s.events.has("peer_closed buffered=0"));
    CHECK_FALSE(s.events.has("truncated buffered=0"));
    CHECK(s.closed(CloseReason::PeerClosed) == 1);
    CHECK(s.closed(CloseReason::Truncated) == 0);
    for (const auto& line : logs.lines()) CHECK_FALSE(contains(line, "event=truncated"));
  });
}

TEST_CASE("a FIN without close_notify is a truncation: logged, counted, nothing committed", "[runtime][tls]") {
  with_tls([](common::tls::ServerContext& tls) {
    tlstest::LogCapture logs;
    Server s(tls);
    auto r = close_client("truncate", s.port);
    INFO(r.output);
    REQUIRE(r.exit_code == 0);
    CHECK(contains(r.output, "echo: hello"));
    REQUIRE(s.events.wait_for("closed:truncated"));
    auto events = s.events.get();
    // The cut line reached the session's framer, was never committed, and no clean close was seen.
    CHECK(std::find(events.begin(), events.end(), "truncated buffered=25") != events.end());
    for (const auto& e : events) {
      CHECK_FALSE(contains(e, "commit:cut-short"));
      CHECK_FALSE(contains(e, "peer_closed"));
    }
    CHECK(s.closed(CloseReason::Truncated) == 1);
    CHECK(s.closed(CloseReason::PeerClosed) == 0);
    CHECK(logs.wait_for({"event=truncated", "phase=data", "reason=\"TCP end without close_notify\""}));
    CHECK(contains(s.registry.render(), "postern_connections_closed_total{listener=\"imaps\",reason=\"truncated\"} 1"));
  });
}

TEST_CASE("a FIN in the middle of a record is a truncation", "[runtime][tls]") {
  common::log::Settings debug_tls;
  debug_tls.components = {{"tls", common::log::Level::Debug}};
  common::log::configure(debug_tls);  // tls_nss_released is a debug line
  struct Restore {
    ~Restore() { common::log::configure({}); }
  } restore;
  tlstest::LogCapture logs;  // from before the context is made: its line says whether the hand-over is on
  with_tls([&logs](common::tls::ServerContext& tls) {
    Server s(tls);
    auto r = close_client("half-record", s.port);
    INFO(r.output);
    REQUIRE(r.exit_code == 0);
    REQUIRE(s.events.wait_for("closed:truncated"));
    CHECK(s.events.has("truncated buffered=0"));  // nothing reached the session
    CHECK_FALSE(s.events.has("peer_closed buffered=0"));
    REQUIRE(logs.wait_for({"event=truncated"}));
    // Once the connection has left NSS (TLS 1.3 hand-over) our record layer says how much it held:
    // the 5-byte header and 10 of the 64 bytes it announced.
    bool released = false, handover_on = false;
    for (const auto& line : logs.lines()) {
      released = released || contains(line, "event=tls_nss_released");
      handover_on = handover_on || (contains(line, "event=tls_context_ready") && contains(line, "handover=on"));
    }
    CHECK(released == handover_on);
    if (released) CHECK(logs.wait_for({"event=truncated", "buffered=15"}));
  });
}

TEST_CASE("a plaintext FIN is still a clean close", "[runtime]") {
  // Without a transform there is no cleaner end than the FIN itself.
  Events events;
  class PlainFactory : public SessionFactory {
   public:
    explicit PlainFactory(Events& e) : events_(e) {}
    std::unique_ptr<Session> create(Connection& c) override { return std::make_unique<CommitSession>(c, events_); }
    Events& events_;
  } factory(events);
  common::metrics::Registry registry;
  Loop loop;
  ConnectionSet connections(loop.get());
  auto bound = bind_endpoints({*common::net::Endpoint::parse("127.0.0.1:0")}, 1, 16);
  REQUIRE(bound);
  int port = (*bound)[0][0].endpoint.port;
  ListenerOptions o;
  o.name = "plain";
  o.service = "plain";
  Listener listener(connections, o, std::move((*bound)[0][0]), std::make_shared<ConnectionLimiter>(0, 0),
                    std::make_shared<ListenerStats>("plain", registry), factory, nullptr);
  REQUIRE(listener.start());
  std::thread t([&] { loop.run(); });
  auto r = test::run({"python3", "-c",
                      "import socket,sys; s=socket.create_connection(('127.0.0.1',int(sys.argv[1])));"
                      "s.recv(100); s.sendall(b'partial'); s.shutdown(socket.SHUT_WR); print(s.recv(100))",
                      std::to_string(port)},
                     20s);
  INFO(r.output);
  CHECK(r.exit_code == 0);
  CHECK(events.wait_for("closed:peer_closed"));
  CHECK(events.has("peer_closed buffered=7"));
  loop.stop();
  t.join();
}
