// watch.cpp: the store client's Watch streams (IDLE and NOOP's live changes): the reactor, its
// loop-side state, and StoreSession::watch.
#include <atomic>
#include <memory>
#include <string>
#include <utility>

#include "common/runtime/timer.hpp"
#include "mmp/store_client/internal.hpp"

namespace mmp::store_client {

using namespace detail;

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

}  // namespace mmp::store_client
