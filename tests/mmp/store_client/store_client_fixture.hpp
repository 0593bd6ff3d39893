// store_client_fixture.hpp: what the store client's tests share: a real postern-store with
// alice's mail, a port that never answers, a session on a loop thread as a connection holds one,
// and recorders of what the loop delivered (results, stream items), readable from the test thread.
#pragma once

#include <catch2/catch.hpp>

#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <condition_variable>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "mmp/store_client/store_client.hpp"
#include "tests/store/support/store_daemon.hpp"
#include "tests/support/loop_thread.hpp"
#include "tests/support/nss_host.hpp"

namespace test::store_client_tests {

using namespace std::chrono_literals;
using namespace mmp::store_client;
using Clock = std::chrono::steady_clock;


inline const std::string kAlice = "alice@example.com";

// Results as the loop delivered them, readable from the test thread.
template <class T>
struct Got {
  std::mutex mu;
  std::condition_variable cv;
  std::vector<StoreResult<T>> results;
  bool all_on_loop = true;
  std::thread::id loop_thread;

  StoreCallback<T> cb() {
    return [this](StoreResult<T> r) {
      std::lock_guard lock(mu);
      all_on_loop &= std::this_thread::get_id() == loop_thread;
      results.push_back(std::move(r));
      cv.notify_all();
    };
  }
  bool wait(size_t n = 1, std::chrono::milliseconds limit = 15s) {
    std::unique_lock lock(mu);
    return cv.wait_for(lock, limit, [&] { return results.size() >= n; });
  }
  size_t size() {
    std::lock_guard lock(mu);
    return results.size();
  }
  StoreResult<T> take(size_t i = 0) {
    REQUIRE(wait(i + 1));
    std::lock_guard lock(mu);
    return results[i];
  }
};

// Things a stream handed the loop (replies, events), in order.
template <class M>
struct Stream {
  std::mutex mu;
  std::condition_variable cv;
  std::vector<M> items;
  std::function<void(M&&)> cb() {
    return [this](M&& m) {
      std::lock_guard lock(mu);
      items.push_back(std::move(m));
      cv.notify_all();
    };
  }
  template <class Pred>
  bool wait(Pred pred, std::chrono::milliseconds limit = 15s) {
    std::unique_lock lock(mu);
    return cv.wait_for(lock, limit, [&] { return pred(items); });
  }
  size_t size() {
    std::lock_guard lock(mu);
    return items.size();
  }
};

// The store, started, with alice's mail delivered through its LMTP port.
struct Store : test::StoreDaemon {
  Store() { start(); }
  std::string target() const { return "127.0.0.1:" + std::to_string(grpc_port()); }
  void deliver_to(const std::string& rcpt, const std::vector<std::string>& extra = {"--size", "2000"}) {
    auto r = deliver({rcpt}, extra);
    INFO(r.output);
    REQUIRE(r.exit_code == 0);
    REQUIRE(r.output.find(" 250 ") != std::string::npos);
  }
};

// A port that accepts connections (the kernel does, into the backlog) and never says a word: a
// store that hangs, as far as TLS and gRPC can tell.
class SilentPort {
 public:
  SilentPort() {
    fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
    REQUIRE(fd_ >= 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    REQUIRE(::bind(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0);
    REQUIRE(::listen(fd_, 64) == 0);
    socklen_t len = sizeof a;
    REQUIRE(::getsockname(fd_, reinterpret_cast<sockaddr*>(&a), &len) == 0);
    port_ = ntohs(a.sin_port);
  }
  ~SilentPort() { ::close(fd_); }
  SilentPort(const SilentPort&) = delete;
  SilentPort& operator=(const SilentPort&) = delete;
  std::string target() const { return "127.0.0.1:" + std::to_string(port_); }

 private:
  int fd_ = -1;
  int port_ = 0;
};

inline std::string dead_target() { return "127.0.0.1:" + std::to_string(test::free_port()); }

inline StoreClientOptions options_for(std::vector<std::string> targets) {
  test::nss_host();  // NSS on mta1's database, once per process
  StoreClientOptions o;
  o.stores["store1"] = std::move(targets);
  return o;
}

inline std::unique_ptr<StoreClient> make_client(StoreClientOptions o) {
  auto c = StoreClient::create(std::move(o));
  INFO((c ? std::string() : c.error().detail));
  REQUIRE(c);
  return std::move(*c);
}

// A session of the loop thread's, as a connection would hold it: `alive` is its Connection::alive().
struct Session {
  Session(StoreClient& client, test::LoopThread& lt, std::string token = test::access_token(kAlice),
          std::string mail_host = "store1")
      : lt(lt) {
    lt.on_loop([&] { loop_thread = std::this_thread::get_id(); });
    auto s = client.open(mail_host, lt.loop, alive, StoreCredentials{std::move(token), ""});
    INFO((s ? std::string() : s.error().detail));
    REQUIRE(s);
    session = std::move(*s);
  }
  ~Session() {
    lt.on_loop([&] {
      session.reset();
      alive.reset();
    });
  }
  template <class T>
  void arm(Got<T>& got) {
    got.loop_thread = loop_thread;
  }
  mspb::SelectResponse select(const std::string& name = "INBOX") {
    Got<mspb::SelectResponse> got;
    arm(got);
    mspb::SelectRequest r;
    r.set_name(name);
    lt.on_loop([&] { session->select(r, got.cb()); });
    auto result = got.take();
    INFO((result ? std::string() : result.error().detail));
    REQUIRE(result);
    CHECK(got.all_on_loop);
    return *result;
  }

  test::LoopThread& lt;
  std::thread::id loop_thread;
  std::shared_ptr<int> alive = std::make_shared<int>(0);
  std::unique_ptr<StoreSession> session;
};

}  // namespace test::store_client_tests
