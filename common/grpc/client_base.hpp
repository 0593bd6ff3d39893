// client_base.hpp: what the suite's gRPC clients share (authserv's in common/authclient, the
// stores' in mmp/store_client): mTLS channels to a list of targets, round robin with failover,
// per-call deadlines, a bound on calls in flight, rate-limited failure logs, results posted to the
// caller's loop only while the caller lives, and a shutdown that cancels what is in flight and
// waits, so that the channels close on the owning thread. Includes gRPC, so only the adapter files
// that include it anyway (auth_client.cpp, store_client.cpp) include this.
#pragma once

#include <atomic>
#include <cassert>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include <grpcpp/grpcpp.h>

#include "common/grpc/credentials.hpp"
#include "common/metrics/metrics.hpp"
#include "common/result.hpp"
#include "common/runtime/loop.hpp"

namespace common::rpc {

struct ClientOptions {
  std::string component = "grpcclient";  // comp= of the log lines, and the start of error details
  std::string service = "server";        // what the targets are, for logs and errors: "authserv", "store1"
  // "host:port". Calls are spread round robin over the targets whose channel is not failing; one
  // that finds its target unavailable may be sent again to the next (failover, per call).
  std::vector<std::string> targets;
  MtlsOptions tls;
  std::chrono::milliseconds call_deadline{std::chrono::seconds(5)};
  // Beyond these, calls fail at once (TempFail) instead of queueing behind a slow server.
  size_t max_in_flight = 256;  // logical calls: a call retried elsewhere counts once
  size_t max_streams = 1024;   // long-lived streams (SASL exchanges, Watch)
  int max_receive_message = 0;  // bytes; 0: gRPC's default (4 MiB)
  // One failure log line per interval at most: with the server down every call would log one.
  std::chrono::milliseconds failure_log_interval{std::chrono::seconds(1)};
  // How long close() waits for cancelled calls to come back before it gives up waiting.
  std::chrono::milliseconds shutdown_wait{std::chrono::seconds(5)};
  // Optional counters: calls by {method, result} ("ok", "retried", a status code name) and calls
  // refused at once by {kind} ("call", or stream_kind for streams).
  metrics::Family<metrics::Counter>* calls_metric = nullptr;
  metrics::Family<metrics::Counter>* overload_metric = nullptr;
  std::string stream_kind = "stream";
  // Which failed statuses get the failure log line; unset: all. A store's NOT_FOUND is an answer,
  // and logging those would use up the one line a second meant for an outage.
  std::function<bool(::grpc::StatusCode)> log_failure_if;
};

// "UNAVAILABLE", ... as the logs spell status codes.
std::string_view status_code_name(::grpc::StatusCode code);

struct ClientStats {
  uint64_t rpcs = 0;        // gRPC calls sent (retries included)
  uint64_t overloaded = 0;  // refused by max_in_flight or max_streams
  size_t in_flight = 0;     // logical calls now
  size_t streams = 0;       // streams now (until gRPC has finished each)
  size_t active = 0;        // gRPC call objects not yet destroyed
};

// The part without a generated class; Client<Service> below adds the generated stubs. Thread-safe.
// Always owned by a shared_ptr: every gRPC call object holds one (its Ticket).
class ClientCore : public std::enable_shared_from_this<ClientCore> {
 public:
  using SystemClock = std::chrono::system_clock;

  // Counts one gRPC call object until the object holding its ClientContext is destroyed: declare
  // it before the context, so that it goes after it. A ClientContext holds a reference to its
  // grpc::Channel, and the last grpc::Channel must not go away on a gRPC thread: in 1.51 that tears
  // down the callback completion queue under the thread polling it (a double free ASan found). So
  // close() waits for every ticket, then drops the channels itself.
  class Ticket {
   public:
    Ticket() = default;
    ~Ticket();
    Ticket(const Ticket&) = delete;
    Ticket& operator=(const Ticket&) = delete;
    bool held() const { return core_ != nullptr; }

   private:
    friend class ClientCore;
    std::shared_ptr<ClientCore> core_;
    bool stream_ = false;
  };

  ClientCore(const ClientCore&) = delete;
  ClientCore& operator=(const ClientCore&) = delete;

  const ClientOptions& options() const { return options_; }
  size_t target_count() const { return targets_.size(); }
  const std::string& target_name(size_t index) const { return targets_[index].name; }
  // Round robin over the targets whose channel is not known to be failing; all failing: any.
  size_t pick_target();
  // The one after `failed`, the same way.
  size_t pick_target_after(size_t failed);
  SystemClock::time_point deadline() const { return SystemClock::now() + options_.call_deadline; }

  // One logical call against max_in_flight; false (counted, never queued) when full or closing.
  bool admit();
  // An admitted call has its answer.
  void release();

  // Takes a ticket for one gRPC call object (a stream also against max_streams). `cancel`, when
  // set, is what close() runs (outside any lock) to end the call while the ticket is held: cancel
  // the context, and for a stream let go of its hold. False once closing, or at max_streams.
  bool claim(Ticket& ticket, std::function<void()> cancel, bool stream = false);
  // The usual `cancel` for a call object owning its context: TryCancel while it still exists.
  static std::function<void()> canceller(std::weak_ptr<::grpc::ClientContext> context);

  // Runs `fn` on `loop` while `alive` can be locked, through Loop::post (never inline). Once
  // closing nothing is posted: the daemon may already have destroyed the loop.
  void post(runtime::Loop& loop, std::weak_ptr<void> alive, std::function<void()> fn);
  template <class T>
  void deliver(runtime::Loop& loop, std::weak_ptr<void> alive, std::function<void(Result<T>)> done, Result<T> result) {
    post(loop, std::move(alive), [done = std::move(done), result = std::move(result)]() mutable {
      done(std::move(result));
    });
  }

  // The rate-limited warning (comp=<component> event=rpc_failed) naming the service (server=),
  // the method and the target.
  void log_failure(std::string_view method, const std::string& target, const ::grpc::Status& status);
  void count(std::string_view method, std::string_view result);
  void sent() { rpcs_.fetch_add(1, std::memory_order_relaxed); }

  // Refusals that retrying cannot fix (a bug or a configuration mismatch between the tiers) are
  // Remote; everything else (down, slow, overloaded, cancelled) is TempFail. The detail names the
  // service, the method and the code.
  Error rpc_error(std::string_view method, const ::grpc::Status& status) const;

  ClientStats stats() const;
  bool closing() const;
  // The first half of close(): refuses new calls and ends those in flight, without waiting, so a
  // daemon with many clients (one per store) can end them all before waiting for any.
  void cancel_all();

 protected:
  explicit ClientCore(ClientOptions options);
  ~ClientCore();
  // Checks the options, then makes one channel per target (with `credentials`, or ones made from
  // options.tls when null).
  Result<void> connect(std::shared_ptr<::grpc::ChannelCredentials> credentials);
  const std::shared_ptr<::grpc::Channel>& channel_ptr(size_t index) const { return targets_[index].channel; }
  // Refuses new calls, cancels the listed ones and waits up to shutdown_wait until every ticket is
  // gone; false (logged) when some are still out.
  bool shutdown();
  // After shutdown() returned true: the channels go, here. After false: they are kept for the life
  // of the process, since a call object still alive may drop its reference on a gRPC thread.
  void drop_channels(bool idle);

 private:
  struct Target {
    std::string name;
    std::shared_ptr<::grpc::Channel> channel;  // null once dropped
  };
  size_t healthy_from(size_t first);
  void ticket_gone(const Ticket* ticket, bool stream);

  ClientOptions options_;
  std::vector<Target> targets_;
  std::atomic<size_t> next_target_{0};

  mutable std::mutex mu_;
  std::condition_variable idle_;
  bool closing_ = false;
  size_t in_flight_ = 0;
  size_t streams_ = 0;
  size_t active_ = 0;
  std::unordered_map<const Ticket*, std::function<void()>> cancels_;  // calls close() ends
  std::atomic<uint64_t> rpcs_{0}, overloaded_{0};
  std::atomic<int64_t> last_failure_log_{0};
};

// A client of one generated service: the core plus a stub of the generated class per target.
template <class Service>
class Client final : public ClientCore {
 public:
  using Stub = typename Service::Stub;
  template <class Resp>
  using Done = std::function<void(const ::grpc::Status&, Resp*)>;

  static Result<std::shared_ptr<Client>> create(ClientOptions options,
                                                std::shared_ptr<::grpc::ChannelCredentials> credentials = nullptr) {
    auto client = std::shared_ptr<Client>(new Client(std::move(options)));
    if (auto connected = client->connect(std::move(credentials)); !connected) return tl::unexpected(connected.error());
    for (size_t i = 0; i < client->target_count(); ++i)
      client->stubs_.push_back(Service::NewStub(client->channel_ptr(i)));
    return client;
  }

  // Valid until close(); claim a ticket first (claim fails once closing, and close() waits).
  Stub& stub(size_t target) { return *stubs_[target]; }

  // Cancels and waits for what is in flight (close()'s wait), then lets the channels go on this
  // thread. Call it from the owner's destructor, before the loops the results go to are gone.
  bool close() {
    const bool idle = shutdown();
    if (idle) stubs_.clear();
    drop_channels(idle);
    return idle;
  }

  // One unary call; with `failover`, UNAVAILABLE sends it again to the next target while the
  // deadline allows (once per target). Only for calls whose repetition is harmless: the failure may
  // have come after the server acted. `invoke(async_stub, context, request, response, callback)`
  // issues it and may add metadata to the context first. `done` runs on a gRPC thread with the
  // response (null when never sent).
  template <class Req, class Resp, class Invoke>
  void unary(std::string_view method, Invoke invoke, std::shared_ptr<const Req> req, SystemClock::time_point deadline,
             size_t target, bool failover, Done<Resp> done, size_t attempt = 0) {
    auto call = std::make_shared<UnaryCall<Resp>>();
    if (!claim(call->ticket, canceller(std::shared_ptr<::grpc::ClientContext>(call, &call->ctx)))) {
      done(::grpc::Status(::grpc::StatusCode::CANCELLED, options().component + " shutting down"), nullptr);
      return;
    }
    call->ctx.set_deadline(deadline);
    sent();
    // gRPC may run the completion inline: nothing here holds a lock.
    invoke(stub(target).async(), &call->ctx, req.get(), &call->resp,
           [self = self(), call, method, invoke, req, deadline, target, failover, attempt,
            done = std::move(done)](::grpc::Status status) mutable {
             if (!status.ok()) self->log_failure(method, self->target_name(target), status);
             const size_t n = self->target_count();
             if (failover && status.error_code() == ::grpc::StatusCode::UNAVAILABLE && attempt + 1 < n &&
                 SystemClock::now() < deadline) {
               self->count(method, "retried");
               self->template unary<Req, Resp>(method, invoke, std::move(req), deadline, (target + 1) % n, failover,
                                               std::move(done), attempt + 1);
             } else {
               self->count(method, status.ok() ? "ok" : status_code_name(status.error_code()));
               done(status, &call->resp);
             }
           });
  }

  std::shared_ptr<Client> self() { return std::static_pointer_cast<Client>(shared_from_this()); }

 private:
  template <class Resp>
  struct UnaryCall {
    Ticket ticket;  // first: destroyed after the context
    ::grpc::ClientContext ctx;
    Resp resp;
  };

  explicit Client(ClientOptions options) : ClientCore(std::move(options)) {}

  std::vector<std::unique_ptr<Stub>> stubs_;
};

}  // namespace common::rpc
