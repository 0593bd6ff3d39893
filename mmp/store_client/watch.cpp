// watch.cpp: the store client's watches (IDLE's live changes). All the watches of one store share
// one WatchMany stream (proto/mailstore.proto), whatever loop their sessions run on: a Subscribe
// per watch with its session's token, the store's events sent on to each session's loop, and each
// watch's Ready wait and lifetime bound kept on that loop. A stream costs a few KiB at each end; a
// watch on it a few hundred bytes, so 100,000 idling clients need no 100,000 streams.
#include <atomic>
#include <chrono>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "common/runtime/timer.hpp"
#include "mmp/store_client/internal.hpp"

namespace mmp::store_client {

using namespace detail;

namespace {

constexpr std::string_view kMethod = "WatchMany";

class MuxReactor;

// One WatchMany call: its reactor's hold, and how many replies it has brought (a watch whose Ready
// is overdue on a stream that has brought nothing since its Subscribe shows the stream is dead).
struct MuxStream {
  ReactorHold<MuxReactor> hold;
  std::atomic<uint64_t> replies{0};
  std::string target;
};

}  // namespace

struct WatchCall::State : std::enable_shared_from_this<WatchCall::State> {
  State(Loop& l, std::weak_ptr<void> a, const StoreClientOptions& options)
      : loop(l), alive(std::move(a)), call_deadline(options.call_deadline), watch_deadline(options.watch_deadline),
        timer(l.get()) {}
  Loop& loop;
  std::weak_ptr<void> alive;
  const std::chrono::milliseconds call_deadline, watch_deadline;
  std::shared_ptr<WatchMux> mux;  // null: refused before it started
  uint64_t id = 0;
  std::function<void(mspb::WatchEvent&&)> on_event;
  StoreCallback<void> ended_cb;
  // Ready's wait (call_deadline), then the watch's own bound (watch_deadline).
  common::runtime::Timer timer;
  bool ready = false;
  bool cancelled = false;  // the handle is gone
  bool ended = false;

  void arm(std::chrono::milliseconds after);
  void deliver(std::vector<mspb::WatchEvent>& events, std::optional<StoreResult<void>>& end);
  void finished(StoreResult<void> result);
  void timed_out();
};

namespace detail {

class WatchMux : public std::enable_shared_from_this<WatchMux> {
 public:
  WatchMux(std::shared_ptr<Rpc> rpc, std::string store, const StoreClientOptions& options)
      : rpc_(std::move(rpc)), store_(std::move(store)), max_watches_(options.max_watches) {}

  // Opens the watch `side` stands for; its events and end are posted to `loop`. Returns its id,
  // or the error to tell at once (max_watches, or the client closing).
  StoreResult<uint64_t> subscribe(Loop& loop, std::weak_ptr<void> alive, const std::shared_ptr<WatchCall::State>& side,
                                  mspb::WatchRequest request, const StoreCredentials& credentials);
  // The watch's handle is gone, or its timer ended it: no word of it reaches its side any more.
  void unsubscribe(uint64_t id);
  // Its Ready is overdue: if its stream has said nothing since the Subscribe, the stream is dead.
  void ready_overdue(uint64_t id, const std::string& why);

  void replied(const std::shared_ptr<MuxStream>& stream, mspb::WatchManyReply& reply);
  void stream_broken(const std::shared_ptr<MuxStream>& stream) {
    std::lock_guard lock(mu_);
    if (current_ == stream) current_.reset();
  }
  void stream_done(const std::shared_ptr<MuxStream>& stream, const grpc::Status& status, bool cancelled);

  size_t watches() const {
    std::lock_guard lock(mu_);
    return watches_.size();
  }
  uint64_t overloaded() const { return overloaded_.load(); }
  Rpc& rpc() { return *rpc_; }
  const std::string& store() const { return store_; }

 private:
  struct Watch {
    Loop* loop;
    std::weak_ptr<void> alive;
    std::weak_ptr<WatchCall::State> side;
    std::shared_ptr<MuxStream> stream;
    uint64_t replies_at_subscribe;
  };

  // A new stream as current_, claimed from the client base and bound, for the caller to start()
  // once mu_ is unlocked; null when the client refuses one. Under mu_.
  MuxReactor* open_stream();
  void post(const Watch& w, std::vector<mspb::WatchEvent> events, std::optional<StoreResult<void>> end);
  tl::unexpected<StoreError> refuse() {
    overloaded_.fetch_add(1);
    if (auto* m = rpc_->options().overload_metric) m->with({"watch"}).inc();
    return tl::unexpected(detail::overloaded(store_, "watches"));
  }

  std::shared_ptr<Rpc> rpc_;
  const std::string store_;
  const size_t max_watches_;
  mutable std::mutex mu_;
  std::shared_ptr<MuxStream> current_;  // the stream new watches go on; null until one is needed
  std::unordered_map<uint64_t, Watch> watches_;
  uint64_t next_id_ = 0;
  std::atomic<uint64_t> overloaded_{0};
};

}  // namespace detail

namespace {

StoreResult<void> ended_result(const std::string& store, int32_t code, const std::string& message) {
  if (code == 0) return {};
  return tl::unexpected(store_error(store, kMethod, grpc::Status(static_cast<grpc::StatusCode>(code), message)));
}

class MuxReactor final : public grpc::ClientBidiReactor<mspb::WatchControl, mspb::WatchManyReply> {
 public:
  MuxReactor(std::shared_ptr<WatchMux> mux, std::shared_ptr<MuxStream> stream)
      : mux_(std::move(mux)), stream_(std::move(stream)) {}

  rpc::ClientCore::Ticket& ticket() { return ticket_; }

  // No deadline: the stream lives as long as it has watches and the store; each watch has its own.
  // bind() makes the reactor usable (writes are held until start()) and runs no reaction, so it may
  // be called under a lock; start() may run reactions inline.
  void bind(Rpc& rpc, size_t target) {
    rpc.sent();
    rpc.stub(target).async()->WatchMany(&ctx_, this);
    AddHold();  // the mux's, through stream_->hold
  }
  void start() {
    StartRead(&in_);
    StartCall();
  }
  void cancel() {
    cancelled_ = true;
    ctx_.TryCancel();
  }

  // Any thread; queued while a write is in flight.
  void write(mspb::WatchControl message) {
    if (writes_.push(std::move(message))) StartWrite(&writes_.current());
  }

  // !ok: the stream broke; the read side sees it too and ends the watches.
  void OnWriteDone(bool ok) override {
    if (writes_.done(ok, [](const mspb::WatchControl&) {})) StartWrite(&writes_.current());
  }

  void OnReadDone(bool ok) override {
    if (!ok) {
      mux_->stream_broken(stream_);  // new watches go on a new stream from now on
      stream_->hold.let_go();        // OnDone brings the status and ends this one's watches
      return;
    }
    mux_->replied(stream_, in_);
    in_.Clear();
    StartRead(&in_);
  }

  void OnDone(const grpc::Status& status) override {
    mux_->stream_done(stream_, status, cancelled_);
    delete this;
  }

 private:
  rpc::ClientCore::Ticket ticket_;  // first: destroyed after the context
  std::shared_ptr<WatchMux> mux_;
  std::shared_ptr<MuxStream> stream_;
  grpc::ClientContext ctx_;
  mspb::WatchManyReply in_;
  SerialWrites<mspb::WatchControl> writes_;
  std::atomic<bool> cancelled_{false};
};

}  // namespace

namespace detail {

MuxReactor* WatchMux::open_stream() {
  auto stream = std::make_shared<MuxStream>();
  auto* reactor = new MuxReactor(shared_from_this(), stream);
  if (!rpc_->claim(reactor->ticket(), [weak = std::weak_ptr<MuxStream>(stream)] {
        if (auto s = weak.lock()) s->hold.abort();
      }, /*stream=*/true)) {
    delete reactor;
    return nullptr;
  }
  const size_t target = rpc_->pick_target();
  stream->target = rpc_->target_name(target);
  reactor->bind(*rpc_, target);
  stream->hold.attach(reactor);
  current_ = std::move(stream);
  return reactor;
}

StoreResult<uint64_t> WatchMux::subscribe(Loop& loop, std::weak_ptr<void> alive,
                                          const std::shared_ptr<WatchCall::State>& side, mspb::WatchRequest request,
                                          const StoreCredentials& credentials) {
  std::shared_ptr<MuxStream> stream;
  MuxReactor* fresh = nullptr;
  uint64_t id = 0;
  {
    std::lock_guard lock(mu_);
    if (watches_.size() >= max_watches_) return refuse();
    if (!current_) {
      fresh = open_stream();
      // The client base refused the stream (closing, or max_streams) and counted it.
      if (!fresh) return tl::unexpected(detail::overloaded(store_, "watches"));
    }
    stream = current_;
    id = ++next_id_;
    watches_.emplace(id, Watch{&loop, std::move(alive), side, stream, stream->replies.load()});
  }
  mspb::WatchControl control;
  auto* sub = control.mutable_subscribe();
  sub->set_id(id);
  sub->set_token(credentials.token);
  sub->set_user(credentials.user);
  *sub->mutable_watch() = std::move(request);
  if (fresh) fresh->start();  // may run reactions inline, even its end: stream_done then ends this watch
  // A stream let go already has its end on the way, which ends this watch with it.
  stream->hold.use([&](MuxReactor& r) { r.write(std::move(control)); });
  return id;
}

void WatchMux::unsubscribe(uint64_t id) {
  std::shared_ptr<MuxStream> stream;
  {
    std::lock_guard lock(mu_);
    auto it = watches_.find(id);
    if (it == watches_.end()) return;
    stream = std::move(it->second.stream);
    watches_.erase(it);
  }
  mspb::WatchControl control;
  control.mutable_unsubscribe()->set_id(id);
  stream->hold.use([&](MuxReactor& r) { r.write(std::move(control)); });
}

void WatchMux::ready_overdue(uint64_t id, const std::string& why) {
  std::shared_ptr<MuxStream> dead;
  {
    std::lock_guard lock(mu_);
    auto it = watches_.find(id);
    if (it == watches_.end()) return;
    if (it->second.stream->replies.load() == it->second.replies_at_subscribe) dead = it->second.stream;
  }
  if (!dead) return;
  rpc_->log_failure(kMethod, dead->target, grpc::Status(grpc::StatusCode::DEADLINE_EXCEEDED, why));
  stream_broken(dead);
  dead->hold.abort();
}

void WatchMux::post(const Watch& w, std::vector<mspb::WatchEvent> events, std::optional<StoreResult<void>> end) {
  rpc_->post(*w.loop, w.alive,
             [side = w.side, events = std::move(events), end = std::move(end)]() mutable {
               if (auto s = side.lock()) s->deliver(events, end);
             });
}

// One post per watch per reply: a delivery to many users is one wake-up per session, not per event.
void WatchMux::replied(const std::shared_ptr<MuxStream>& stream, mspb::WatchManyReply& reply) {
  struct Batch {
    Watch watch;
    std::vector<mspb::WatchEvent> events;
    std::optional<StoreResult<void>> end;
  };
  std::vector<Batch> batches;
  std::unordered_map<uint64_t, size_t> index;
  stream->replies.fetch_add(1);
  {
    std::lock_guard lock(mu_);
    for (auto& e : *reply.mutable_events()) {
      auto it = watches_.find(e.id());
      if (it == watches_.end() || it->second.stream != stream) continue;  // unsubscribed already
      auto [at, added] = index.emplace(e.id(), batches.size());
      if (added) batches.push_back(Batch{it->second, {}, std::nullopt});
      Batch& b = batches[at->second];
      if (e.has_event()) b.events.push_back(std::move(*e.mutable_event()));
      if (e.has_ended()) {
        b.end = ended_result(store_, e.ended().code(), e.ended().message());
        watches_.erase(it);
      }
    }
  }
  for (auto& b : batches) post(b.watch, std::move(b.events), std::move(b.end));
}

void WatchMux::stream_done(const std::shared_ptr<MuxStream>& stream, const grpc::Status& status, bool cancelled) {
  // A stream we cancelled (the client closing, or found dead) is no failure of the store's; one
  // the store ended with OK (it stopped) still leaves its watches unserved.
  if (!cancelled) rpc_->log_failure(kMethod, stream->target, status);
  rpc_->count(kMethod, status.ok() ? "ok" : rpc::status_code_name(status.error_code()));
  const grpc::Status why = status.ok() ? grpc::Status(grpc::StatusCode::UNAVAILABLE, "the store ended the stream")
                                       : status;
  stream_broken(stream);
  std::vector<Watch> orphans;
  {
    std::lock_guard lock(mu_);
    for (auto it = watches_.begin(); it != watches_.end();) {
      if (it->second.stream != stream) {
        ++it;
        continue;
      }
      orphans.push_back(std::move(it->second));
      it = watches_.erase(it);
    }
  }
  for (auto& w : orphans) post(w, {}, StoreResult<void>(tl::unexpected(store_error(store_, kMethod, why))));
}

std::shared_ptr<WatchMux> make_watch_mux(std::shared_ptr<Rpc> rpc, std::string store,
                                         const StoreClientOptions& options) {
  return std::make_shared<WatchMux>(std::move(rpc), std::move(store), options);
}

WatchCounts watch_counts(const WatchMux& mux) { return {mux.watches(), mux.overloaded()}; }

}  // namespace detail

// ---- the loop side ----------------------------------------------------------------------------

void WatchCall::State::deliver(std::vector<mspb::WatchEvent>& events, std::optional<StoreResult<void>>& end) {
  for (auto& e : events) {
    if (cancelled || ended) return;
    if (e.has_ready() && !ready) {
      ready = true;
      arm(watch_deadline);
    }
    on_event(std::move(e));  // may destroy the handle
  }
  if (end && !cancelled) finished(std::move(*end));
}

void WatchCall::State::arm(std::chrono::milliseconds after) {
  timer.start(after, [this] {
    // Posted rather than run here: what the session does about it may destroy the handle, and so
    // this timer. Through the client, so that it stops once the client is closing.
    mux->rpc().post(loop, alive, [weak = weak_from_this()] {
      if (auto s = weak.lock()) s->timed_out();
    });
  });
}

void WatchCall::State::finished(StoreResult<void> result) {
  if (cancelled || ended) return;
  ended = true;
  timer.stop();
  ended_cb(std::move(result));
}

// No Ready in time (the store accepted the stream or the Subscribe but is not serving it), or the
// watch's own bound reached: the watch ends, and the session may open another.
void WatchCall::State::timed_out() {
  if (cancelled || ended) return;
  const auto waited = ready ? watch_deadline : call_deadline;
  const std::string why = (ready ? "watch_deadline of " : "no Ready within ") + std::to_string(waited.count()) + " ms";
  if (!ready) mux->ready_overdue(id, why);
  mux->unsubscribe(id);
  finished(tl::unexpected(StoreError{ErrorKind::TempFail, StoreCode::DeadlineExceeded, why,
                                     "store " + mux->store() + " WatchMany: DEADLINE_EXCEEDED: " + why}));
}

WatchCall::WatchCall(std::shared_ptr<State> state) : state_(std::move(state)) {}

WatchCall::~WatchCall() {
  state_->cancelled = true;
  state_->timer.stop();
  if (state_->mux && !state_->ended) state_->mux->unsubscribe(state_->id);
}

bool WatchCall::ready() const { return state_->ready; }

std::unique_ptr<WatchCall> StoreSession::watch(mspb::WatchRequest request,
                                               std::function<void(mspb::WatchEvent&&)> on_event,
                                               StoreCallback<void> ended) {
  State& s = *state_;
  auto side = std::make_shared<WatchCall::State>(s.loop, s.alive, s.options());
  side->on_event = std::move(on_event);
  side->ended_cb = std::move(ended);
  std::unique_ptr<WatchCall> handle(new WatchCall(side));
  auto id = s.watches->subscribe(s.loop, s.alive, side, std::move(request), *s.credentials);
  if (!id) {
    side->ended = true;
    s.post_error(std::move(side->ended_cb), std::move(id.error()));
    return handle;
  }
  side->mux = s.watches;
  side->id = *id;
  side->arm(side->call_deadline);
  return handle;
}

}  // namespace mmp::store_client
