// watch.cpp: the MailStore Watch stream (service_core.hpp): a mailbox's changes since a MODSEQ,
// then live from the store's ChangeHub, ended when the access token expires.
#include "store/service/service_core.hpp"

#include <grpcpp/alarm.h>

#include <deque>
#include <mutex>
#include <optional>

#include "common/log/log.hpp"

namespace store::service {
namespace {

// What a Watch stream shares with the hub: a bounded queue of events and the one write in flight.
// The reactor goes away in OnDone; the hub holds this weakly.
class WatchState final : public ChangeHub::Watcher {
 public:
  WatchState(grpc::ServerWriteReactor<pb::WatchEvent>* reactor, size_t max_backlog)
      : reactor_(reactor), max_backlog_(max_backlog) {}

  void changed(const std::vector<const MailboxChange*>& changes) override {
    std::lock_guard lock(mu_);
    if (finished_) return;
    for (const MailboxChange* c : changes) {
      if (started_ && c->modseq != 0 && c->modseq <= ready_modseq_) continue;  // the catch-up had it
      events_.push_back(to_event(*c));
    }
    pump();
  }

  // The catch-up read's events, then Ready; live changes at or below `modseq` were in the catch-up.
  void start(std::vector<pb::WatchEvent> catch_up, uint64_t modseq) {
    std::lock_guard lock(mu_);
    ready_modseq_ = modseq;
    std::deque<pb::WatchEvent> live;
    live.swap(events_);
    for (auto& e : catch_up) events_.push_back(std::move(e));
    pb::WatchEvent ready;
    ready.mutable_ready()->set_highest_modseq(modseq);
    events_.push_back(std::move(ready));
    for (auto& e : live) {
      if (event_modseq(e) == 0 || event_modseq(e) > modseq) events_.push_back(std::move(e));
    }
    started_ = true;
    opened_ = true;
    if (deferred_) return finish(*deferred_);
    pump();
  }

  void write_done(bool ok) {
    std::lock_guard lock(mu_);
    writing_ = false;
    if (!ok) return finish(grpc::Status(grpc::StatusCode::CANCELLED, "client went away"));
    if (ending_) return finish(grpc::Status::OK);
    pump();
  }

  void cancelled() {
    std::lock_guard lock(mu_);
    ending_ = true;
    if (!writing_) finish(grpc::Status::CANCELLED);
  }

  void done() {
    std::lock_guard lock(mu_);
    reactor_ = nullptr;
  }

  // The open failed: the stream ends with `s` (or what ended it meanwhile).
  void fail(grpc::Status s) {
    std::lock_guard lock(mu_);
    opened_ = true;
    finish(deferred_ ? *deferred_ : std::move(s));
  }

  // Ends a live stream (its token expired); before the open is done, once it is.
  void end(grpc::Status s) {
    std::lock_guard lock(mu_);
    finish(std::move(s));
  }

 private:
  static uint64_t event_modseq(const pb::WatchEvent& e) {
    if (e.has_added()) return e.added().modseq();
    if (e.has_flags()) return e.flags().modseq();
    if (e.has_expunged()) return e.expunged().modseq();
    return 0;
  }

  void pump() {
    if (finished_ || !reactor_) return;
    // The backlog counts whatever waits while the client is not reading, before and after Ready.
    if (events_.size() > max_backlog_) {
      common::log::warning("mailstore").event("watch_cut_off").kv("backlog", events_.size());
      return finish(grpc::Status(grpc::StatusCode::RESOURCE_EXHAUSTED,
                                 "watch client is not reading: " + std::to_string(events_.size()) + " events pending"));
    }
    if (!started_ || writing_ || events_.empty()) return;
    out_ = std::move(events_.front());
    events_.pop_front();
    if (out_.has_gone()) ending_ = true;
    writing_ = true;
    reactor_->StartWrite(&out_);
  }

  void finish(grpc::Status s) {
    if (finished_ || !reactor_) return;
    if (!opened_) {
      // The reactor is still being opened on another thread, which uses it after this returns.
      if (!deferred_) deferred_ = std::move(s);
      return;
    }
    finished_ = true;
    events_.clear();
    reactor_->Finish(std::move(s));
  }

  std::mutex mu_;
  grpc::ServerWriteReactor<pb::WatchEvent>* reactor_;
  size_t max_backlog_;
  std::deque<pb::WatchEvent> events_;
  pb::WatchEvent out_;
  uint64_t ready_modseq_ = 0;
  bool started_ = false, writing_ = false, ending_ = false, finished_ = false;
  bool opened_ = false;                   // start() or fail() ran: finishing may delete the reactor
  std::optional<grpc::Status> deferred_;  // what ended the stream while it was being opened
};

class WatchReactor final : public grpc::ServerWriteReactor<pb::WatchEvent> {
 public:
  WatchReactor(ServiceCore& impl, grpc::CallbackServerContext* context, const pb::WatchRequest& request)
      : impl_(impl),
        request_(request),
        state_(std::make_shared<WatchState>(this, impl.options.limits.max_watch_backlog)) {
    impl_.open(context, "Watch", [this](Checked<Caller> caller) { opened(std::move(caller)); });
  }

  void OnWriteDone(bool ok) override { state_->write_done(ok); }
  void OnCancel() override { state_->cancelled(); }
  void OnDone() override {
    state_->done();
    expiry_.Cancel();
    if (subscription_) impl_.store.hub().unsubscribe(mailbox_id_, subscription_);
    delete this;
  }

 private:
  // The state finishes nothing before start() or fail(), so each is the last use of `this` here.
  void opened(Checked<Caller> caller) {
    if (!caller) return state_->fail(caller.error());
    std::vector<pb::WatchEvent> catch_up;
    uint64_t highest = 0;
    const ops::MailboxRef ref = to_ref(request_.mailbox());
    grpc::Status s = impl_.read([&](const Txn& txn, const Dbs& dbs) -> grpc::Status {
      auto mailbox = ops::resolve_mailbox(txn, dbs, caller->user, ref);
      if (!mailbox) return to_status(mailbox.error());
      // Subscribed while this snapshot lives: whatever commits after it began is published later,
      // and what both the snapshot and the hub carry is dropped by MODSEQ.
      mailbox_id_ = mailbox->record.id;
      subscription_ = impl_.store.hub().subscribe(mailbox_id_, state_);
      highest = mailbox->record.highestmodseq;
      auto changes = ops::changes_since(txn, dbs, caller->user, ref, request_.since_modseq());
      if (!changes) return to_status(changes.error());
      if (changes->changed.size() > impl_.options.limits.max_watch_backlog) {
        return grpc::Status(grpc::StatusCode::RESOURCE_EXHAUSTED,
                            std::to_string(changes->changed.size()) + " changes since MODSEQ " +
                                std::to_string(request_.since_modseq()) + ": select the mailbox again");
      }
      to_events(*changes, catch_up);
      return grpc::Status::OK;
    });
    if (!s.ok()) return state_->fail(s);
    // A token is good until it expires, and a stream must not outlive it: the mmp renews the token
    // and watches again, so a revoked login stops seeing mail at the latest here.
    expiry_.Set(std::chrono::system_clock::from_time_t(static_cast<std::time_t>(caller->expires_at)),
                [weak = std::weak_ptr<WatchState>(state_), user = caller->user](bool fired) {
                  if (!fired) return;
                  auto state = weak.lock();
                  if (!state) return;
                  common::log::info("mailstore").event("watch_token_expired").kv("user", user);
                  state->end(grpc::Status(grpc::StatusCode::UNAUTHENTICATED,
                                          "access token expired: renew it and watch again"));
                });
    state_->start(std::move(catch_up), highest);
  }

  ServiceCore& impl_;
  pb::WatchRequest request_;
  std::shared_ptr<WatchState> state_;
  grpc::Alarm expiry_;
  uint64_t mailbox_id_ = 0;
  uint64_t subscription_ = 0;
};

}  // namespace

grpc::ServerWriteReactor<pb::WatchEvent>* start_watch(ServiceCore& core, grpc::CallbackServerContext* context,
                                                      const pb::WatchRequest& request) {
  return new WatchReactor(core, context, request);
}

}  // namespace store::service
