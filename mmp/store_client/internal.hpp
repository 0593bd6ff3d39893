// internal.hpp: what the store client's files share (store_client.cpp, watch.cpp): the client's
// and session's state, the link between a streaming reactor and its loop side, and the mapping of
// gRPC statuses to StoreErrors. Includes gRPC: only for the store client's own .cpp files.
#pragma once

#include <atomic>
#include <chrono>
#include <cstddef>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <grpcpp/grpcpp.h>

#include "common/grpc/client_base.hpp"
#include "common/runtime/loop.hpp"
#include "mmp/store_client/store_client.hpp"
#include "proto/mailstore.grpc.pb.h"

namespace mmp::store_client {

namespace detail {

namespace rpc = common::rpc;
using common::ErrorKind;
using common::runtime::Loop;
using Rpc = rpc::Client<mspb::MailStore>;
using SystemClock = std::chrono::system_clock;

// What a session can only wait out (the store down, slow, busy, or failing inside) against what
// the store decided about the request itself.
inline bool temporary(grpc::StatusCode code) {
  switch (code) {
    case grpc::StatusCode::CANCELLED:
    case grpc::StatusCode::UNKNOWN:
    case grpc::StatusCode::DEADLINE_EXCEEDED:
    case grpc::StatusCode::ABORTED:
    case grpc::StatusCode::INTERNAL:
    case grpc::StatusCode::UNAVAILABLE:
    case grpc::StatusCode::DATA_LOSS:
      return true;
    default:
      return false;
  }
}

inline StoreCode to_code(grpc::StatusCode code) {
  const int n = static_cast<int>(code);
  return n >= 0 && n <= 16 ? static_cast<StoreCode>(n) : StoreCode::Unknown;
}

inline StoreError store_error(const std::string& store, std::string_view method, const grpc::Status& status) {
  StoreError e;
  e.kind = temporary(status.error_code()) ? ErrorKind::TempFail : ErrorKind::Remote;
  e.code = to_code(status.error_code());
  e.message = status.error_message();
  e.detail =
      "store " + store + " " + std::string(method) + ": " + std::string(rpc::status_code_name(status.error_code()));
  if (!e.message.empty()) e.detail += ": " + e.message;
  return e;
}

inline StoreError overloaded(const std::string& store, std::string_view what) {
  return StoreError{ErrorKind::TempFail, StoreCode::Unavailable, "",
                    "store " + store + ": too many " + std::string(what) + " in flight"};
}

inline void add_credentials(grpc::ClientContext& context, const StoreCredentials& credentials) {
  context.AddMetadata("postern-token", credentials.token);
  if (!credentials.user.empty()) context.AddMetadata("postern-user", credentials.user);
}

// A client stream's writes, one at a time as gRPC takes them, pushed from any thread. The reactor
// starts the write of current() when push() or done() says so, never under the lock: a reaction
// may run inline and push again.
template <class M>
class SerialWrites {
 public:
  // True: `message` is current() and is to be started now; false: queued behind the one in flight.
  bool push(M message) {
    std::lock_guard lock(mu_);
    if (busy_) {
      queue_.push_back(std::move(message));
      return false;
    }
    busy_ = true;
    current_ = std::move(message);
    return true;
  }

  // current()'s write completed (`ok` false: the stream broke, and the queue is dropped). `gone`
  // sees, under the lock, each message that leaves: that one, and on !ok every queued one. True:
  // the next is current() and is to be started; false: nothing is in flight now.
  template <class Gone>
  bool done(bool ok, Gone gone) {
    std::lock_guard lock(mu_);
    gone(current_);
    if (!ok) {
      for (auto& m : queue_) gone(m);
      queue_.clear();
    }
    if (queue_.empty()) {
      busy_ = false;
      return false;
    }
    current_ = std::move(queue_.front());
    queue_.pop_front();
    return true;  // busy_ stays set: only the caller's thread starts writes until the queue is empty
  }

  M& current() { return current_; }

 private:
  std::mutex mu_;
  bool busy_ = false;
  M current_{};
  std::deque<M> queue_;
};

// What a streaming call's reactor and its loop-side state share. The loop side reaches the
// reactor only through use(), and the reactor stays (a hold on it: OnDone waits) until it is let
// go: by the loop side when done with it, by the reactor when its stream broke, or by the client's
// shutdown. A reaction may run inline inside a StartRead or a TryCancel, so no lock is held while
// the reactor is used.
template <class Reactor>
class ReactorHold {
 public:
  void attach(Reactor* reactor) { reactor_ = reactor; }

  // fn(reactor) while the hold is kept; false once it was let go.
  template <class F>
  bool use(F fn) {
    Reactor* r = nullptr;
    {
      std::lock_guard lock(mu_);
      if (reactor_ == nullptr) return false;
      r = reactor_;
      ++users_;
    }
    fn(*r);
    bool release = false;
    {
      std::lock_guard lock(mu_);
      --users_;
      if (users_ == 0 && release_pending_) {
        release_pending_ = false;
        release = true;
      }
    }
    if (release) r->RemoveHold();  // may delete the reactor: the last use of it
    return true;
  }

  // Lets the reactor finish, once, from either side.
  void let_go() {
    Reactor* r = nullptr;
    {
      std::lock_guard lock(mu_);
      if (reactor_ == nullptr) return;
      r = std::exchange(reactor_, nullptr);
      if (users_ > 0) {
        release_pending_ = true;  // the user releases it when done
        return;
      }
    }
    r->RemoveHold();
  }

  // Cancels the call and lets go (the client's shutdown, or the handle going away).
  void abort() {
    use([](Reactor& r) { r.cancel(); });
    let_go();
  }

 private:
  std::mutex mu_;
  Reactor* reactor_ = nullptr;
  size_t users_ = 0;
  bool release_pending_ = false;
};

// The hold of a call serving one session, with the way back to that session's loop.
template <class Reactor, class Side>
class StreamLink : public ReactorHold<Reactor> {
 public:
  StreamLink(std::shared_ptr<Rpc> rpc, Loop& loop, std::weak_ptr<void> alive)
      : rpc_(std::move(rpc)), loop_(loop), alive_(std::move(alive)) {}

  void attach(Reactor* reactor, std::weak_ptr<Side> side) {
    ReactorHold<Reactor>::attach(reactor);
    side_ = std::move(side);
  }

  // fn(side) on the loop, while the session and the loop-side state live.
  void post(std::function<void(Side&)> fn) {
    rpc_->post(loop_, alive_, [side = side_, fn = std::move(fn)] {
      if (auto s = side.lock()) fn(*s);
    });
  }

  Rpc& rpc() { return *rpc_; }
  std::atomic<size_t> queued{0};  // Append: bytes written but not yet taken by gRPC

 private:
  std::shared_ptr<Rpc> rpc_;
  Loop& loop_;
  std::weak_ptr<void> alive_;
  std::weak_ptr<Side> side_;
};

template <class Link>
std::function<void()> aborter(const std::shared_ptr<Link>& link) {
  return [weak = std::weak_ptr<Link>(link)] {
    if (auto l = weak.lock()) l->abort();
  };
}

// The watches of one store, on one WatchMany stream (watch.cpp).
class WatchMux;
std::shared_ptr<WatchMux> make_watch_mux(std::shared_ptr<Rpc> rpc, std::string store, const StoreClientOptions& options);
struct WatchCounts {
  size_t open = 0;          // watches now
  uint64_t overloaded = 0;  // refused at once (max_watches, or no stream to be had)
};
WatchCounts watch_counts(const WatchMux& mux);

}  // namespace detail

struct StoreClient::Impl {
  using Rpc = detail::Rpc;

  explicit Impl(StoreClientOptions o) : options(std::move(o)) {}

  StoreClientOptions options;
  std::map<std::string, std::vector<std::string>, std::less<>> targets;  // normalised, by lower-case name
  std::shared_ptr<grpc::ChannelCredentials> credentials;  // made once: exporting the key costs ~20 ms

  mutable std::mutex mu;
  bool closing = false;
  struct Store {
    std::shared_ptr<Rpc> rpc;
    std::shared_ptr<detail::WatchMux> watches;
  };
  std::map<std::string, Store, std::less<>> stores;

  common::Result<std::vector<std::string>> targets_for(std::string_view mail_host) const;
  // The store's client base and watches, made on first use.
  common::Result<Store> store(std::string_view mail_host);

  // Every store's calls are cancelled before any wait, so the waits overlap.
  void close() {
    std::map<std::string, Store, std::less<>> all;
    {
      std::lock_guard lock(mu);
      closing = true;
      all.swap(stores);
    }
    for (auto& [name, s] : all) s.rpc->cancel_all();
    for (auto& [name, s] : all) s.rpc->close();
  }
};

struct StoreSession::State {
  using Rpc = detail::Rpc;
  using Loop = detail::Loop;

  std::shared_ptr<StoreClient::Impl> client;
  std::shared_ptr<Rpc> rpc;
  std::shared_ptr<detail::WatchMux> watches;
  Loop& loop;
  std::weak_ptr<void> alive;
  std::string store;
  // Shared with the calls in flight; set_token replaces it for later ones.
  std::shared_ptr<const StoreCredentials> credentials;

  const StoreClientOptions& options() const { return client->options; }

  template <class T>
  void post_error(StoreCallback<T> done, StoreError error) {
    rpc->post(loop, alive, [done = std::move(done), error = std::move(error)] { done(tl::unexpected(error)); });
  }

  // One unary call. `failover` only where sending it twice is harmless: the UNAVAILABLE that
  // triggers it may have come after the store acted (a connection lost before the reply).
  template <class Req, class Resp, class Invoke>
  void unary(std::string_view method, bool failover, Invoke invoke, Req request, StoreCallback<Resp> done) {
    if (!rpc->admit()) return post_error(std::move(done), detail::overloaded(store, "calls"));
    auto req = std::make_shared<const Req>(std::move(request));
    auto with_token = [credentials = credentials, invoke](auto* stub, grpc::ClientContext* ctx, const Req* r,
                                                          Resp* resp, auto cb) {
      detail::add_credentials(*ctx, *credentials);
      invoke(stub, ctx, r, resp, std::move(cb));
    };
    rpc->unary<Req, Resp>(
        method, with_token, std::move(req), rpc->deadline(), rpc->pick_target(), failover,
        [rpc = rpc, loop = &loop, alive = alive, store = store, method, done = std::move(done)](
            const grpc::Status& status, Resp* resp) mutable {
          StoreResult<Resp> result = status.ok()
                                         ? StoreResult<Resp>(std::move(*resp))
                                         : StoreResult<Resp>(tl::unexpected(detail::store_error(store, method, status)));
          rpc->release();
          rpc->post(*loop, std::move(alive),
                    [done = std::move(done), result = std::move(result)]() mutable { done(std::move(result)); });
        });
  }
};

}  // namespace mmp::store_client
