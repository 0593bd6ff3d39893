// store_client.cpp: the gRPC half of the mmp's store client (store_client.hpp): one client base
// (common/grpc/client_base.hpp) per store, unary calls carrying the user's token, and the reactors
// of Fetch, Append and Watch with their loop-side state. The only file here that includes gRPC.
#include "mmp/store_client/store_client.hpp"

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <deque>
#include <mutex>
#include <optional>
#include <utility>

#include <grpcpp/grpcpp.h>

#include "common/ascii.hpp"
#include "common/grpc/client_base.hpp"
#include "common/metrics/metrics.hpp"
#include "common/runtime/loop.hpp"
#include "common/runtime/timer.hpp"
#include "mmp/store_client/targets.hpp"
#include "proto/mailstore.grpc.pb.h"

namespace mmp::store_client {

namespace {

namespace rpc = common::rpc;
using common::ErrorKind;
using common::runtime::Loop;
using Rpc = rpc::Client<mspb::MailStore>;
using SystemClock = std::chrono::system_clock;

// Appends go out in pieces of at most this size (the store takes up to 4 MiB per message).
constexpr size_t kAppendPiece = 1u << 20;

struct Metrics {
  common::metrics::Family<common::metrics::Counter>& calls = common::metrics::default_registry().counter_family(
      "postern_storeclient_calls_total", "Calls to the stores by method and result", {"method", "result"});
  common::metrics::Family<common::metrics::Counter>& overload = common::metrics::default_registry().counter_family(
      "postern_storeclient_overload_total", "Store calls refused at once because too many were in flight", {"kind"});
};
Metrics& stats_metrics() {
  static Metrics m;
  return m;
}

// What a session can only wait out (the store down, slow, busy, or failing inside) against what
// the store decided about the request itself.
bool temporary(grpc::StatusCode code) {
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

StoreCode to_code(grpc::StatusCode code) {
  const int n = static_cast<int>(code);
  return n >= 0 && n <= 16 ? static_cast<StoreCode>(n) : StoreCode::Unknown;
}

StoreError store_error(const std::string& store, std::string_view method, const grpc::Status& status) {
  StoreError e;
  e.kind = temporary(status.error_code()) ? ErrorKind::TempFail : ErrorKind::Remote;
  e.code = to_code(status.error_code());
  e.message = status.error_message();
  e.detail =
      "store " + store + " " + std::string(method) + ": " + std::string(rpc::status_code_name(status.error_code()));
  if (!e.message.empty()) e.detail += ": " + e.message;
  return e;
}

StoreError overloaded(const std::string& store, std::string_view what) {
  return StoreError{ErrorKind::TempFail, StoreCode::Unavailable, "",
                    "store " + store + ": too many " + std::string(what) + " in flight"};
}

void add_credentials(grpc::ClientContext& context, const StoreCredentials& credentials) {
  context.AddMetadata("postern-token", credentials.token);
  if (!credentials.user.empty()) context.AddMetadata("postern-user", credentials.user);
}

// What a streaming call's reactor and its loop-side state share. The loop side reaches the
// reactor only through use(), and the reactor stays (a hold on it: OnDone waits) until it is let
// go: by the loop side when done with it, by the reactor when its stream broke, or by the client's
// shutdown. A reaction may run inline inside a StartRead or a TryCancel, so no lock is held while
// the reactor is used.
template <class Reactor, class Side>
class StreamLink {
 public:
  StreamLink(std::shared_ptr<Rpc> rpc, Loop& loop, std::weak_ptr<void> alive)
      : rpc_(std::move(rpc)), loop_(loop), alive_(std::move(alive)) {}

  void attach(Reactor* reactor, std::weak_ptr<Side> side) {
    reactor_ = reactor;
    side_ = std::move(side);
  }

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
  std::mutex mu_;
  Reactor* reactor_ = nullptr;
  size_t users_ = 0;
  bool release_pending_ = false;
};

template <class Link>
std::function<void()> aborter(const std::shared_ptr<Link>& link) {
  return [weak = std::weak_ptr<Link>(link)] {
    if (auto l = weak.lock()) l->abort();
  };
}

}  // namespace

// ---------------------------------------------------------------------------------------------

struct StoreClient::Impl {
  explicit Impl(StoreClientOptions o) : options(std::move(o)) {}

  StoreClientOptions options;
  std::map<std::string, std::vector<std::string>, std::less<>> targets;  // normalised, by lower-case name
  std::shared_ptr<grpc::ChannelCredentials> credentials;  // made once: exporting the key costs ~20 ms

  mutable std::mutex mu;
  bool closing = false;
  std::map<std::string, std::shared_ptr<Rpc>, std::less<>> stores;

  common::Result<std::vector<std::string>> targets_for(std::string_view mail_host) const {
    const std::string name = common::ascii::lowered(mail_host);
    if (auto it = targets.find(name); it != targets.end()) return it->second;
    auto target = store_target(name, options.default_port);
    if (!target) return tl::unexpected(target.error());
    return std::vector<std::string>{std::move(*target)};
  }

  common::Result<std::shared_ptr<Rpc>> store(std::string_view mail_host) {
    const std::string name = common::ascii::lowered(mail_host);
    std::lock_guard lock(mu);
    if (closing) return common::fail(ErrorKind::TempFail, "store client shutting down");
    if (auto it = stores.find(name); it != stores.end()) return it->second;
    if (stores.size() >= options.max_stores) {
      stats_metrics().overload.with({"store"}).inc();
      return common::fail(ErrorKind::TempFail, "channels to " + std::to_string(stores.size()) +
                                                   " stores already (max_stores); not opening one to " + name);
    }
    auto list = targets_for(name);
    if (!list) return tl::unexpected(list.error());
    auto& metrics = stats_metrics();
    rpc::ClientOptions o;
    o.component = "storeclient";
    o.service = name;
    o.targets = std::move(*list);
    o.tls = options.tls;
    o.call_deadline = options.call_deadline;
    o.max_in_flight = options.max_in_flight;
    o.max_streams = options.max_watches;
    o.max_receive_message = static_cast<int>(std::min<size_t>(options.max_message, INT32_MAX));
    o.calls_metric = &metrics.calls;
    o.overload_metric = &metrics.overload;
    o.stream_kind = "watch";
    o.log_failure_if = temporary;
    auto made = Rpc::create(std::move(o), credentials);
    if (!made) return tl::unexpected(made.error());
    stores.emplace(name, *made);
    return std::move(*made);
  }

  // Every store's calls are cancelled before any wait, so the waits overlap.
  void close() {
    std::map<std::string, std::shared_ptr<Rpc>, std::less<>> all;
    {
      std::lock_guard lock(mu);
      closing = true;
      all.swap(stores);
    }
    for (auto& [name, client] : all) client->cancel_all();
    for (auto& [name, client] : all) client->close();
  }
};

struct StoreSession::State {
  std::shared_ptr<StoreClient::Impl> client;
  std::shared_ptr<Rpc> rpc;
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
    if (!rpc->admit()) return post_error(std::move(done), overloaded(store, "calls"));
    auto req = std::make_shared<const Req>(std::move(request));
    auto with_token = [credentials = credentials, invoke](auto* stub, grpc::ClientContext* ctx, const Req* r,
                                                          Resp* resp, auto cb) {
      add_credentials(*ctx, *credentials);
      invoke(stub, ctx, r, resp, std::move(cb));
    };
    rpc->unary<Req, Resp>(
        method, with_token, std::move(req), rpc->deadline(), rpc->pick_target(), failover,
        [rpc = rpc, loop = &loop, alive = alive, store = store, method, done = std::move(done)](
            const grpc::Status& status, Resp* resp) mutable {
          StoreResult<Resp> result = status.ok()
                                         ? StoreResult<Resp>(std::move(*resp))
                                         : StoreResult<Resp>(tl::unexpected(store_error(store, method, status)));
          rpc->release();
          rpc->post(*loop, std::move(alive),
                    [done = std::move(done), result = std::move(result)]() mutable { done(std::move(result)); });
        });
  }
};

// ---------------------------------------------------------------------------------------------
// Fetch: replies read one at a time, each asked for by the loop once it has handled the last.

namespace {
class FetchReactor;
}  // namespace
using FetchLink = StreamLink<FetchReactor, FetchCall::State>;

struct FetchCall::State {
  std::shared_ptr<FetchLink> link;  // null: refused before it started
  std::function<void(mspb::FetchResponse&&)> on_reply;
  StoreCallback<void> done;
  bool paused = false;
  bool waiting = false;    // a reply was handled while paused: the next read waits for resume()
  bool cancelled = false;  // the handle is gone
  bool ended = false;

  void next();
  void reply(mspb::FetchResponse&& r);
  void finished(StoreResult<void> result);
};

namespace {

class FetchReactor final : public grpc::ClientReadReactor<mspb::FetchResponse> {
 public:
  FetchReactor(std::shared_ptr<FetchLink> link, std::string store, mspb::FetchRequest request)
      : link_(std::move(link)), store_(std::move(store)), request_(std::move(request)) {}

  rpc::ClientCore::Ticket& ticket() { return ticket_; }

  void begin(Rpc& rpc, size_t target, const StoreCredentials& credentials, SystemClock::time_point deadline) {
    target_ = rpc.target_name(target);
    add_credentials(ctx_, credentials);
    ctx_.set_deadline(deadline);
    rpc.sent();
    rpc.stub(target).async()->Fetch(&ctx_, &request_, this);
    AddHold();  // the loop side's
    StartRead(&in_);
    StartCall();
  }
  void read_next() { StartRead(&in_); }
  void cancel() { ctx_.TryCancel(); }

  void OnReadDone(bool ok) override {
    if (!ok) {
      link_->let_go();  // the stream ended: OnDone brings the status
      return;
    }
    mspb::FetchResponse reply;
    reply.Swap(&in_);  // before the post: the loop may start the next read at once
    link_->post([reply = std::move(reply)](FetchCall::State& s) mutable { s.reply(std::move(reply)); });
  }

  void OnDone(const grpc::Status& status) override {
    auto& rpc = link_->rpc();
    StoreResult<void> result;
    if (!status.ok()) {
      rpc.log_failure("Fetch", target_, status);
      result = tl::unexpected(store_error(store_, "Fetch", status));
    }
    rpc.count("Fetch", status.ok() ? "ok" : rpc::status_code_name(status.error_code()));
    rpc.release();
    link_->post([result = std::move(result)](FetchCall::State& s) mutable { s.finished(std::move(result)); });
    delete this;
  }

 private:
  rpc::ClientCore::Ticket ticket_;  // first: destroyed after the context
  std::shared_ptr<FetchLink> link_;
  std::string store_, target_;
  grpc::ClientContext ctx_;
  mspb::FetchRequest request_;
  mspb::FetchResponse in_;
};

}  // namespace

void FetchCall::State::next() {
  if (paused) {
    waiting = true;
    return;
  }
  link->use([](FetchReactor& r) { r.read_next(); });
}

void FetchCall::State::reply(mspb::FetchResponse&& r) {
  if (cancelled || ended) return;
  on_reply(std::move(r));  // may destroy the handle (cancelled then)
  if (!cancelled) next();
}

void FetchCall::State::finished(StoreResult<void> result) {
  if (cancelled || ended) return;
  ended = true;
  done(std::move(result));
}

FetchCall::FetchCall(std::shared_ptr<State> state) : state_(std::move(state)) {}

FetchCall::~FetchCall() {
  state_->cancelled = true;
  if (state_->link) state_->link->abort();
}

void FetchCall::pause() { state_->paused = true; }

void FetchCall::resume() {
  State& s = *state_;
  if (!s.paused) return;
  s.paused = false;
  if (s.waiting && s.link && !s.ended) {
    s.waiting = false;
    s.next();
  }
}

// ---------------------------------------------------------------------------------------------
// Append: the Start and the bytes written in order, one write at a time.

namespace {
class AppendReactor;
}  // namespace
using AppendLink = StreamLink<AppendReactor, AppendCall::State>;

struct AppendCall::State {
  std::shared_ptr<AppendLink> link;
  StoreCallback<mspb::AppendResponse> done;
  std::function<void()> drained;
  bool finishing = false;  // finish() was called
  bool cancelled = false;
  bool ended = false;

  void finished(StoreResult<mspb::AppendResponse> result);
};

namespace {

class AppendReactor final : public grpc::ClientWriteReactor<mspb::AppendRequest> {
 public:
  AppendReactor(std::shared_ptr<AppendLink> link, std::string store)
      : link_(std::move(link)), store_(std::move(store)) {}

  rpc::ClientCore::Ticket& ticket() { return ticket_; }

  void begin(Rpc& rpc, size_t target, const StoreCredentials& credentials, SystemClock::time_point deadline,
             mspb::AppendRequest start) {
    target_ = rpc.target_name(target);
    add_credentials(ctx_, credentials);
    ctx_.set_deadline(deadline);
    rpc.sent();
    rpc.stub(target).async()->Append(&ctx_, &response_, this);
    AddHold();  // the loop side's, until finish() or the handle goes
    write(std::move(start));
    StartCall();
  }
  void cancel() { ctx_.TryCancel(); }

  // nullopt: WritesDone. Queued while a write is in progress (gRPC takes one at a time).
  void write(std::optional<mspb::AppendRequest> message) {
    {
      std::lock_guard lock(mu_);
      if (busy_) {
        queue_.push_back(std::move(message));
        return;
      }
      busy_ = true;
      current_ = std::move(message);
    }
    issue();  // not under mu_: a reaction may run inline and take it
  }

  void OnWriteDone(bool ok) override { next(ok); }
  void OnWritesDoneDone(bool ok) override { next(ok); }

  void OnDone(const grpc::Status& status) override {
    auto& rpc = link_->rpc();
    StoreResult<mspb::AppendResponse> result = std::move(response_);
    if (!status.ok()) {
      rpc.log_failure("Append", target_, status);
      result = tl::unexpected(store_error(store_, "Append", status));
    }
    rpc.count("Append", status.ok() ? "ok" : rpc::status_code_name(status.error_code()));
    rpc.release();
    link_->post([result = std::move(result)](AppendCall::State& s) mutable { s.finished(std::move(result)); });
    delete this;
  }

 private:
  void issue() {
    if (current_) StartWrite(&*current_);
    else StartWritesDone();
  }
  void next(bool ok) {
    bool drained = false, more = false;
    {
      std::lock_guard lock(mu_);
      if (current_ && current_->has_data()) link_->queued -= current_->data().size();
      if (!ok) {
        // The store ended the call (a refusal, a broken connection): nothing more goes out, and
        // OnDone, once we let go, brings its status.
        for (auto& m : queue_)
          if (m && m->has_data()) link_->queued -= m->data().size();
        queue_.clear();
        busy_ = false;
      } else if (queue_.empty()) {
        busy_ = false;
        drained = current_.has_value();
      } else {
        current_ = std::move(queue_.front());
        queue_.pop_front();
        more = true;
      }
    }
    if (!ok) return link_->let_go();
    if (drained) {
      link_->post([](AppendCall::State& s) {
        if (s.drained && !s.cancelled && !s.ended) s.drained();
      });
    }
    if (more) issue();  // busy_ stays set: only this thread issues until the queue is empty
  }

  rpc::ClientCore::Ticket ticket_;  // first: destroyed after the context
  std::shared_ptr<AppendLink> link_;
  std::string store_, target_;
  grpc::ClientContext ctx_;
  mspb::AppendResponse response_;
  std::mutex mu_;
  bool busy_ = false;
  std::optional<mspb::AppendRequest> current_;
  std::deque<std::optional<mspb::AppendRequest>> queue_;
};

}  // namespace

void AppendCall::State::finished(StoreResult<mspb::AppendResponse> result) {
  if (cancelled || ended) return;
  ended = true;
  done(std::move(result));
}

AppendCall::AppendCall(std::shared_ptr<State> state) : state_(std::move(state)) {}

AppendCall::~AppendCall() {
  state_->cancelled = true;
  if (state_->link && !state_->ended) state_->link->abort();
}

void AppendCall::write(std::string bytes) {
  State& s = *state_;
  if (!s.link || s.finishing || s.ended) return;
  for (size_t at = 0; at < bytes.size(); at += kAppendPiece) {
    const bool whole = at == 0 && bytes.size() <= kAppendPiece;
    mspb::AppendRequest piece;
    if (whole) piece.set_data(std::move(bytes));
    else piece.set_data(bytes.substr(at, kAppendPiece));
    const size_t size = piece.data().size();
    s.link->queued += size;
    if (!s.link->use([&](AppendReactor& r) { r.write(std::move(piece)); })) {
      s.link->queued -= size;  // the call already ended; its result is on the way
      return;
    }
    if (whole) break;
  }
}

void AppendCall::next_message(mspb::AppendRequest::Start start) {
  State& s = *state_;
  if (!s.link || s.finishing || s.ended) return;
  mspb::AppendRequest part;
  *part.mutable_start() = std::move(start);
  s.link->use([&](AppendReactor& r) { r.write(std::move(part)); });
}

void AppendCall::finish() {
  State& s = *state_;
  if (!s.link || s.finishing) return;
  s.finishing = true;
  s.link->use([](AppendReactor& r) {
    mspb::AppendRequest commit;
    commit.set_commit(true);
    r.write(std::move(commit));
    r.write(std::nullopt);
  });
  s.link->let_go();  // gRPC finishes the call once the writes are out and the store answers
}

size_t AppendCall::queued_bytes() const { return state_->link ? state_->link->queued.load() : 0; }

void AppendCall::on_drained(std::function<void()> fn) { state_->drained = std::move(fn); }

// ---------------------------------------------------------------------------------------------
// Watch: events read one at a time, each asked for by the loop once it has handled the last; a
// store that sends no Ready within call_deadline is given up on.

namespace {
class WatchReactor;
}  // namespace
using WatchLink = StreamLink<WatchReactor, WatchCall::State>;

struct WatchCall::State {
  explicit State(Loop& l) : loop(l), ready_timer(l.get()) {}
  Loop& loop;
  std::shared_ptr<WatchLink> link;
  std::function<void(mspb::WatchEvent&&)> on_event;
  StoreCallback<void> ended_cb;
  std::string store;
  std::string target;
  common::runtime::Timer ready_timer;
  bool ready = false;
  bool cancelled = false;
  bool ended = false;

  void event(mspb::WatchEvent&& e);
  void finished(StoreResult<void> result);
  // No Ready in time: the store accepted the call but is not serving it (stopped, or stuck).
  void ready_overdue();
};

namespace {

class WatchReactor final : public grpc::ClientReadReactor<mspb::WatchEvent> {
 public:
  WatchReactor(std::shared_ptr<WatchLink> link, std::string store, mspb::WatchRequest request)
      : link_(std::move(link)), store_(std::move(store)), request_(std::move(request)) {}

  rpc::ClientCore::Ticket& ticket() { return ticket_; }

  void begin(Rpc& rpc, size_t target, const StoreCredentials& credentials, SystemClock::time_point deadline) {
    target_ = rpc.target_name(target);
    add_credentials(ctx_, credentials);
    ctx_.set_deadline(deadline);
    rpc.sent();
    rpc.stub(target).async()->Watch(&ctx_, &request_, this);
    AddHold();
    StartRead(&in_);
    StartCall();
  }
  void read_next() { StartRead(&in_); }
  void cancel() {
    cancelled_ = true;
    ctx_.TryCancel();
  }

  void OnReadDone(bool ok) override {
    if (!ok) {
      link_->let_go();
      return;
    }
    mspb::WatchEvent event;
    event.Swap(&in_);
    link_->post([event = std::move(event)](WatchCall::State& s) mutable { s.event(std::move(event)); });
  }

  void OnDone(const grpc::Status& status) override {
    auto& rpc = link_->rpc();
    StoreResult<void> result;
    if (!status.ok()) {
      // A watch we cancelled (IDLE's DONE, the session closing) is no failure of the store's.
      if (!cancelled_) rpc.log_failure("Watch", target_, status);
      result = tl::unexpected(store_error(store_, "Watch", status));
    }
    rpc.count("Watch", status.ok() ? "ok" : rpc::status_code_name(status.error_code()));
    link_->post([result = std::move(result)](WatchCall::State& s) mutable { s.finished(std::move(result)); });
    delete this;
  }

 private:
  rpc::ClientCore::Ticket ticket_;  // first: destroyed after the context
  std::shared_ptr<WatchLink> link_;
  std::string store_, target_;
  grpc::ClientContext ctx_;
  mspb::WatchRequest request_;
  mspb::WatchEvent in_;
  std::atomic<bool> cancelled_{false};
};

}  // namespace

void WatchCall::State::event(mspb::WatchEvent&& e) {
  if (cancelled || ended) return;
  if (e.has_ready()) {
    ready = true;
    ready_timer.stop();
  }
  on_event(std::move(e));  // may destroy the handle
  if (!cancelled && !ended) link->use([](WatchReactor& r) { r.read_next(); });
}

void WatchCall::State::finished(StoreResult<void> result) {
  if (cancelled || ended) return;
  ended = true;
  ready_timer.stop();
  ended_cb(std::move(result));
}

// No Ready in time: the store accepted the call but is not serving it (stopped, or stuck).
void WatchCall::State::ready_overdue() {
  if (cancelled || ended || ready) return;
  const auto waited = link->rpc().options().call_deadline;
  const std::string why = "no Ready within " + std::to_string(waited.count()) + " ms";
  link->rpc().log_failure("Watch", target, grpc::Status(grpc::StatusCode::DEADLINE_EXCEEDED, why));
  link->abort();
  finished(tl::unexpected(StoreError{ErrorKind::TempFail, StoreCode::DeadlineExceeded, why,
                                     "store " + store + " Watch: DEADLINE_EXCEEDED: " + why}));
}

WatchCall::WatchCall(std::shared_ptr<State> state) : state_(std::move(state)) {}

WatchCall::~WatchCall() {
  state_->cancelled = true;
  state_->ready_timer.stop();
  if (state_->link) state_->link->abort();
}

bool WatchCall::ready() const { return state_->ready; }

// ---------------------------------------------------------------------------------------------

StoreSession::StoreSession(std::shared_ptr<State> state) : state_(std::move(state)) {}
StoreSession::~StoreSession() = default;

const std::string& StoreSession::store() const { return state_->store; }

void StoreSession::set_token(std::string token) {
  state_->credentials =
      std::make_shared<const StoreCredentials>(StoreCredentials{std::move(token), state_->credentials->user});
}

// Failover (kRepeatable) for the reads and for Subscribe (setting a subscription twice is the
// same); not for what would be done twice or answered differently the second time (kOnce).
constexpr bool kRepeatable = true;
constexpr bool kOnce = false;

void StoreSession::list(mspb::ListMailboxesRequest request, StoreCallback<mspb::ListMailboxesResponse> done) {
  state_->unary(
      "ListMailboxes", kRepeatable,
      [](auto* stub, auto* ctx, auto* req, auto* resp, auto cb) { stub->ListMailboxes(ctx, req, resp, std::move(cb)); },
      std::move(request), std::move(done));
}

void StoreSession::create(mspb::CreateMailboxRequest request, StoreCallback<mspb::MailboxChanged> done) {
  state_->unary(
      "CreateMailbox", kOnce,
      [](auto* stub, auto* ctx, auto* req, auto* resp, auto cb) { stub->CreateMailbox(ctx, req, resp, std::move(cb)); },
      std::move(request), std::move(done));
}

void StoreSession::remove(mspb::DeleteMailboxRequest request, StoreCallback<mspb::MailboxChanged> done) {
  state_->unary(
      "DeleteMailbox", kOnce,
      [](auto* stub, auto* ctx, auto* req, auto* resp, auto cb) { stub->DeleteMailbox(ctx, req, resp, std::move(cb)); },
      std::move(request), std::move(done));
}

void StoreSession::rename(mspb::RenameMailboxRequest request, StoreCallback<mspb::MailboxChanged> done) {
  state_->unary(
      "RenameMailbox", kOnce,
      [](auto* stub, auto* ctx, auto* req, auto* resp, auto cb) { stub->RenameMailbox(ctx, req, resp, std::move(cb)); },
      std::move(request), std::move(done));
}

void StoreSession::subscribe(mspb::SubscribeRequest request, StoreCallback<mspb::MailboxChanged> done) {
  state_->unary(
      "Subscribe", kRepeatable,
      [](auto* stub, auto* ctx, auto* req, auto* resp, auto cb) { stub->Subscribe(ctx, req, resp, std::move(cb)); },
      std::move(request), std::move(done));
}

void StoreSession::status(mspb::StatusRequest request, StoreCallback<mspb::MailboxEntry> done) {
  state_->unary(
      "Status", kRepeatable,
      [](auto* stub, auto* ctx, auto* req, auto* resp, auto cb) { stub->Status(ctx, req, resp, std::move(cb)); },
      std::move(request), std::move(done));
}

void StoreSession::select(mspb::SelectRequest request, StoreCallback<mspb::SelectResponse> done) {
  state_->unary(
      "Select", kRepeatable,
      [](auto* stub, auto* ctx, auto* req, auto* resp, auto cb) { stub->Select(ctx, req, resp, std::move(cb)); },
      std::move(request), std::move(done));
}

void StoreSession::store_flags(mspb::StoreFlagsRequest request, StoreCallback<mspb::StoreFlagsResponse> done) {
  state_->unary(
      "StoreFlags", kOnce,
      [](auto* stub, auto* ctx, auto* req, auto* resp, auto cb) { stub->StoreFlags(ctx, req, resp, std::move(cb)); },
      std::move(request), std::move(done));
}

void StoreSession::copy(mspb::CopyRequest request, StoreCallback<mspb::CopyResponse> done) {
  state_->unary(
      "Copy", kOnce,
      [](auto* stub, auto* ctx, auto* req, auto* resp, auto cb) { stub->Copy(ctx, req, resp, std::move(cb)); },
      std::move(request), std::move(done));
}

void StoreSession::expunge(mspb::ExpungeRequest request, StoreCallback<mspb::ExpungeResponse> done) {
  state_->unary(
      "Expunge", kOnce,
      [](auto* stub, auto* ctx, auto* req, auto* resp, auto cb) { stub->Expunge(ctx, req, resp, std::move(cb)); },
      std::move(request), std::move(done));
}

void StoreSession::search(mspb::SearchRequest request, StoreCallback<mspb::SearchResponse> done) {
  state_->unary(
      "Search", kRepeatable,
      [](auto* stub, auto* ctx, auto* req, auto* resp, auto cb) { stub->Search(ctx, req, resp, std::move(cb)); },
      std::move(request), std::move(done));
}

void StoreSession::changes(mspb::ChangesRequest request, StoreCallback<mspb::ChangesResponse> done) {
  state_->unary(
      "Changes", kRepeatable,
      [](auto* stub, auto* ctx, auto* req, auto* resp, auto cb) { stub->Changes(ctx, req, resp, std::move(cb)); },
      std::move(request), std::move(done));
}

void StoreSession::quota(StoreCallback<mspb::QuotaResponse> done) {
  state_->unary(
      "GetQuota", kRepeatable,
      [](auto* stub, auto* ctx, auto* req, auto* resp, auto cb) { stub->GetQuota(ctx, req, resp, std::move(cb)); },
      mspb::QuotaRequest(), std::move(done));
}

std::unique_ptr<FetchCall> StoreSession::fetch(mspb::FetchRequest request,
                                               std::function<void(mspb::FetchResponse&&)> on_reply,
                                               StoreCallback<void> done) {
  State& s = *state_;
  auto side = std::make_shared<FetchCall::State>();
  side->on_reply = std::move(on_reply);
  side->done = std::move(done);
  std::unique_ptr<FetchCall> handle(new FetchCall(side));
  if (!s.rpc->admit()) {
    s.post_error(std::move(side->done), overloaded(s.store, "calls"));
    side->ended = true;
    return handle;
  }
  auto link = std::make_shared<FetchLink>(s.rpc, s.loop, s.alive);
  auto* reactor = new FetchReactor(link, s.store, std::move(request));
  if (!s.rpc->claim(reactor->ticket(), aborter(link))) {
    delete reactor;
    s.rpc->release();
    s.post_error(std::move(side->done), overloaded(s.store, "calls"));
    side->ended = true;
    return handle;
  }
  link->attach(reactor, side);
  side->link = link;
  reactor->begin(*s.rpc, s.rpc->pick_target(), *s.credentials, SystemClock::now() + s.options().transfer_deadline);
  return handle;
}

std::unique_ptr<AppendCall> StoreSession::append(mspb::AppendRequest::Start start,
                                                 StoreCallback<mspb::AppendResponse> done) {
  State& s = *state_;
  auto side = std::make_shared<AppendCall::State>();
  side->done = std::move(done);
  std::unique_ptr<AppendCall> handle(new AppendCall(side));
  if (!s.rpc->admit()) {
    s.post_error(std::move(side->done), overloaded(s.store, "calls"));
    side->ended = true;
    return handle;
  }
  auto link = std::make_shared<AppendLink>(s.rpc, s.loop, s.alive);
  auto* reactor = new AppendReactor(link, s.store);
  if (!s.rpc->claim(reactor->ticket(), aborter(link))) {
    delete reactor;
    s.rpc->release();
    s.post_error(std::move(side->done), overloaded(s.store, "calls"));
    side->ended = true;
    return handle;
  }
  link->attach(reactor, side);
  side->link = link;
  mspb::AppendRequest first;
  *first.mutable_start() = std::move(start);
  reactor->begin(*s.rpc, s.rpc->pick_target(), *s.credentials, SystemClock::now() + s.options().transfer_deadline,
                 std::move(first));
  return handle;
}

std::unique_ptr<WatchCall> StoreSession::watch(mspb::WatchRequest request,
                                               std::function<void(mspb::WatchEvent&&)> on_event,
                                               StoreCallback<void> ended) {
  State& s = *state_;
  auto side = std::make_shared<WatchCall::State>(s.loop);
  side->on_event = std::move(on_event);
  side->ended_cb = std::move(ended);
  side->store = s.store;
  std::unique_ptr<WatchCall> handle(new WatchCall(side));
  auto link = std::make_shared<WatchLink>(s.rpc, s.loop, s.alive);
  auto* reactor = new WatchReactor(link, s.store, std::move(request));
  if (!s.rpc->claim(reactor->ticket(), aborter(link), /*stream=*/true)) {
    delete reactor;
    s.post_error(std::move(side->ended_cb), overloaded(s.store, "watches"));
    side->ended = true;
    return handle;
  }
  link->attach(reactor, side);
  side->link = link;
  const size_t target = s.rpc->pick_target();
  side->target = s.rpc->target_name(target);
  // Posted rather than run from the timer: the handler may destroy the handle and so the timer.
  // Through the link, so that it too waits on `alive` and stops once the client is closing.
  side->ready_timer.start(s.options().call_deadline, [weak = std::weak_ptr<WatchLink>(link)] {
    if (auto l = weak.lock()) l->post([](WatchCall::State& st) { st.ready_overdue(); });
  });
  reactor->begin(*s.rpc, target, *s.credentials, SystemClock::now() + s.options().watch_deadline);
  return handle;
}

// ---------------------------------------------------------------------------------------------

common::Result<std::unique_ptr<StoreClient>> StoreClient::create(StoreClientOptions options) {
  if (options.default_port == 0) return common::fail(ErrorKind::Config, "storeclient: default_port must be set");
  if (options.call_deadline.count() <= 0 || options.transfer_deadline.count() <= 0 ||
      options.watch_deadline.count() <= 0)
    return common::fail(ErrorKind::Config, "storeclient: deadlines must be positive");
  if (options.max_in_flight == 0 || options.max_watches == 0 || options.max_stores == 0)
    return common::fail(ErrorKind::Config, "storeclient: max_in_flight, max_watches and max_stores must be positive");
  auto impl = std::make_shared<Impl>(std::move(options));
  for (const auto& [name, list] : impl->options.stores) {
    if (list.empty()) return common::fail(ErrorKind::Config, "storeclient: store " + name + " has no address");
    std::vector<std::string> targets;
    for (const auto& t : list) {
      auto target = store_target(t, impl->options.default_port);
      if (!target) return common::fail(ErrorKind::Config, "storeclient: store " + name + ": " + target.error().detail);
      targets.push_back(std::move(*target));
    }
    impl->targets[common::ascii::lowered(name)] = std::move(targets);
  }
  auto credentials = rpc::channel_credentials(impl->options.tls);
  if (!credentials) return tl::unexpected(credentials.error());
  impl->credentials = std::move(*credentials);
  return std::unique_ptr<StoreClient>(new StoreClient(std::move(impl)));
}

StoreClient::StoreClient(std::shared_ptr<Impl> impl) : impl_(std::move(impl)) {}

StoreClient::~StoreClient() { impl_->close(); }

common::Result<std::vector<std::string>> StoreClient::targets_for(std::string_view mail_host) const {
  return impl_->targets_for(mail_host);
}

common::Result<std::unique_ptr<StoreSession>> StoreClient::open(std::string_view mail_host, Loop& loop,
                                                                std::weak_ptr<void> alive,
                                                                StoreCredentials credentials) {
  auto rpc = impl_->store(mail_host);
  if (!rpc) return tl::unexpected(rpc.error());
  auto state = std::shared_ptr<StoreSession::State>(new StoreSession::State{
      impl_, std::move(*rpc), loop, std::move(alive), common::ascii::lowered(mail_host),
      std::make_shared<const StoreCredentials>(std::move(credentials))});
  return std::unique_ptr<StoreSession>(new StoreSession(std::move(state)));
}

StoreClientStats StoreClient::stats() const {
  StoreClientStats out;
  std::lock_guard lock(impl_->mu);
  out.stores = impl_->stores.size();
  for (const auto& [name, client] : impl_->stores) {
    const auto s = client->stats();
    out.rpcs += s.rpcs;
    out.overloaded += s.overloaded;
    out.in_flight += s.in_flight;
    out.watches += s.streams;
  }
  return out;
}

std::string_view store_code_name(StoreCode code) {
  return rpc::status_code_name(static_cast<grpc::StatusCode>(static_cast<int>(code)));
}

}  // namespace mmp::store_client
