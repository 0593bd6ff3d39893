// watch.cpp: the MailStore Watch stream and WatchMany, many watches on one stream (service_core.hpp):
// a mailbox's changes since a MODSEQ, then live from the store's ChangeHub, ended when the access
// token expires. Both share the open (resolve, subscribe, catch-up) and the MODSEQ de-duplication.
#include "store/service/service_core.hpp"

#include <grpcpp/alarm.h>

#include <algorithm>
#include <deque>
#include <limits>
#include <mutex>
#include <optional>
#include <set>
#include <unordered_map>

#include "common/grpc/credentials.hpp"
#include "common/log/log.hpp"

namespace store::service {
namespace {

uint64_t event_modseq(const pb::WatchEvent& e) {
  if (e.has_added()) return e.added().modseq();
  if (e.has_flags()) return e.flags().modseq();
  if (e.has_expunged()) return e.expunged().modseq();
  return 0;
}

// A live change the catch-up (up to `ready_modseq`) did not already carry.
bool fresh(const MailboxChange& c, bool started, uint64_t ready_modseq) {
  return !started || c.modseq == 0 || c.modseq > ready_modseq;
}

// What a watch sends first: the catch-up read's events, Ready, then the live events that came in
// meanwhile (`live`) that the catch-up did not have. `out` is emptied first.
template <typename Queue>
void start_queue(Queue& out, std::vector<pb::WatchEvent>& catch_up, uint64_t modseq) {
  Queue live;
  live.swap(out);
  for (auto& e : catch_up) out.push_back(std::move(e));
  pb::WatchEvent ready;
  ready.mutable_ready()->set_highest_modseq(modseq);
  out.push_back(std::move(ready));
  for (auto& e : live) {
    if (event_modseq(e) == 0 || event_modseq(e) > modseq) out.push_back(std::move(e));
  }
}

std::string not_reading(size_t pending) {
  return "watch client is not reading: " + std::to_string(pending) + " events pending";
}
grpc::Status token_expired() {
  return grpc::Status(grpc::StatusCode::UNAUTHENTICATED, "access token expired: renew it and watch again");
}

struct WatchOpened {
  uint64_t mailbox_id = 0;
  uint64_t subscription = 0;  // on the hub; 0: not subscribed
  uint64_t highest = 0;
  std::vector<pb::WatchEvent> catch_up;
};

// Resolves the mailbox, subscribes `watcher` to it and reads what changed since the request's MODSEQ.
// On an error the watcher may be subscribed all the same (`out.subscription`): the caller unsubscribes.
grpc::Status open_watch(ServiceCore& impl, const Caller& caller, const pb::WatchRequest& request,
                        const std::shared_ptr<ChangeHub::Watcher>& watcher, WatchOpened& out) {
  const ops::MailboxRef ref = to_ref(request.mailbox());
  return impl.read([&](const Txn& txn, const Dbs& dbs) -> grpc::Status {
    auto mailbox = ops::resolve_mailbox(txn, dbs, caller.user, ref);
    if (!mailbox) return to_status(mailbox.error());
    // Subscribed while this snapshot lives: whatever commits after it began is published later,
    // and what both the snapshot and the hub carry is dropped by MODSEQ.
    out.mailbox_id = mailbox->record.id;
    out.subscription = impl.store.hub().subscribe(out.mailbox_id, watcher);
    out.highest = mailbox->record.highestmodseq;
    auto changes = ops::changes_since(txn, dbs, caller.user, ref, request.since_modseq());
    if (!changes) return to_status(changes.error());
    if (changes->changed.size() > impl.options.limits.max_watch_backlog) {
      return grpc::Status(grpc::StatusCode::RESOURCE_EXHAUSTED,
                          std::to_string(changes->changed.size()) + " changes since MODSEQ " +
                              std::to_string(request.since_modseq()) + ": select the mailbox again");
    }
    to_events(*changes, out.catch_up);
    return grpc::Status::OK;
  });
}

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
      if (fresh(*c, started_, ready_modseq_)) events_.push_back(to_event(*c));
    }
    pump();
  }

  // The catch-up read's events, then Ready; live changes at or below `modseq` were in the catch-up.
  void start(std::vector<pb::WatchEvent> catch_up, uint64_t modseq) {
    std::lock_guard lock(mu_);
    ready_modseq_ = modseq;
    start_queue(events_, catch_up, modseq);
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
  void pump() {
    if (finished_ || !reactor_) return;
    // The backlog counts whatever waits while the client is not reading, before and after Ready.
    if (events_.size() > max_backlog_) {
      common::log::warning("mailstore").event("watch_cut_off").kv("backlog", events_.size());
      return finish(grpc::Status(grpc::StatusCode::RESOURCE_EXHAUSTED, not_reading(events_.size())));
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
    WatchOpened o;
    grpc::Status s = open_watch(impl_, *caller, request_, state_, o);
    mailbox_id_ = o.mailbox_id;
    subscription_ = o.subscription;
    if (!s.ok()) return state_->fail(s);
    // A token is good until it expires, and a stream must not outlive it: the mmp renews the token
    // and watches again, so a revoked login stops seeing mail at the latest here.
    expiry_.Set(std::chrono::system_clock::from_time_t(static_cast<std::time_t>(caller->expires_at)),
                [weak = std::weak_ptr<WatchState>(state_), user = caller->user](bool fired) {
                  if (!fired) return;
                  auto state = weak.lock();
                  if (!state) return;
                  common::log::info("mailstore").event("watch_token_expired").kv("user", user);
                  state->end(token_expired());
                });
    state_->start(std::move(o.catch_up), o.highest);
  }

  ServiceCore& impl_;
  pb::WatchRequest request_;
  std::shared_ptr<WatchState> state_;
  grpc::Alarm expiry_;
  uint64_t mailbox_id_ = 0;
  uint64_t subscription_ = 0;
};

// ---- WatchMany ----------------------------------------------------------------------------------

class ManyState;

// One subscription of a WatchMany stream: what the hub calls, and its own small queue. Kept small
// (an idle one allocates nothing beyond itself): its queue is a vector, empty until events come.
class Subscription final : public ChangeHub::Watcher {
 public:
  Subscription(std::weak_ptr<ManyState> stream, uint64_t id) : stream_(std::move(stream)), id(id) {}
  void changed(const std::vector<const MailboxChange*>& changes) override;

  std::weak_ptr<ManyState> stream_;
  const uint64_t id;
  uint64_t mailbox_id = 0, hub_id = 0;
  uint64_t ready_modseq = 0;
  int64_t expires_at = 0;
  // Before Ready: the live events held back until the catch-up is read; after: waiting to be written.
  std::vector<pb::WatchEvent> queue;
  bool started = false;  // Ready is queued: events go out
  bool listed = false;   // on the stream's list of subscriptions with something to send
  bool ended = false;    // its Ended goes out once its queue has
  grpc::StatusCode end_code = grpc::StatusCode::OK;
  std::string end_message;
};

// A WatchMany stream's state, shared by its reactor, its subscriptions (weakly), the open callbacks
// and the expiry alarm. One mutex; the reactor is cleared in OnDone.
class ManyState final : public std::enable_shared_from_this<ManyState> {
 public:
  using Reactor = grpc::ServerBidiReactor<pb::WatchControl, pb::WatchManyReply>;
  ManyState(ServiceCore& impl, Reactor* reactor, std::string peer, std::string address)
      : impl_(impl), reactor_(reactor), peer_(std::move(peer)), address_(std::move(address)) {
    const auto& limits = impl.options.limits;
    max_backlog_ = limits.max_watch_backlog;
    max_subscriptions_ = limits.max_watch_subscriptions;
    // The whole stream's bound: many subscriptions may each hold a little while one write waits.
    max_pending_ = std::max<size_t>(16 * max_backlog_, 1024);
  }

  void control(pb::WatchControl c) {
    if (c.has_unsubscribe()) {
      std::lock_guard lock(mu_);
      auto it = subs_.find(c.unsubscribe().id());
      if (it != subs_.end()) end_sub(*it->second, grpc::Status(grpc::StatusCode::CANCELLED, "unsubscribed"), true);
      return pump();
    }
    if (!c.has_subscribe()) return;
    auto& sub = *c.mutable_subscribe();
    std::shared_ptr<Subscription> s;
    {
      std::lock_guard lock(mu_);
      if (finished_) return;
      if (subs_.count(sub.id())) {
        refuse(sub.id(), grpc::StatusCode::ALREADY_EXISTS, "subscription " + std::to_string(sub.id()) + " is open");
        return pump();
      }
      if (subs_.size() >= max_subscriptions_) {
        common::log::warning("mailstore").event("watch_subscriptions_full").kv("client", peer_).kv("open", subs_.size());
        refuse(sub.id(), grpc::StatusCode::RESOURCE_EXHAUSTED,
               std::to_string(subs_.size()) + " subscriptions open on this stream: the limit");
        return pump();
      }
      s = std::make_shared<Subscription>(weak_from_this(), sub.id());
      subs_.emplace(sub.id(), s);
    }
    impl_.open(peer_, address_, sub.token(), sub.user(), "WatchMany",
               [self = shared_from_this(), s, request = std::move(*sub.mutable_watch())](Checked<Caller> caller) {
                 self->opened(s, request, std::move(caller));
               });
  }

  void changed(Subscription& s, const std::vector<const MailboxChange*>& changes) {
    std::lock_guard lock(mu_);
    if (finished_ || s.ended) return;
    bool gone = false;
    for (const MailboxChange* c : changes) {
      if (!fresh(*c, s.started, s.ready_modseq)) continue;
      s.queue.push_back(to_event(*c));
      gone = gone || s.queue.back().has_gone();
      if (s.started) ++pending_;
    }
    if (s.queue.size() > max_backlog_) {
      common::log::warning("mailstore").event("watch_cut_off").kv("backlog", s.queue.size()).kv("client", peer_);
      end_sub(s, grpc::Status(grpc::StatusCode::RESOURCE_EXHAUSTED, not_reading(s.queue.size())), true);
    } else if (gone && s.started) {
      end_sub(s, grpc::Status::OK, false);  // Gone is its last event, as a Watch ends after it
    } else if (s.started) {
      list(s);
    }
    if (pending_ > max_pending_) {
      common::log::warning("mailstore").event("watch_cut_off").kv("pending", pending_).kv("client", peer_);
      return finish(grpc::Status(grpc::StatusCode::RESOURCE_EXHAUSTED,
                                 not_reading(pending_) + " on the stream of " + std::to_string(subs_.size()) +
                                     " subscriptions"));
    }
    pump();
  }

  void write_done(bool ok) {
    std::lock_guard lock(mu_);
    writing_ = false;
    out_.Clear();
    if (!ok) return finish(grpc::Status(grpc::StatusCode::CANCELLED, "client went away"));
    pump();
  }

  void finish(grpc::Status s) {
    if (finished_) return;
    finished_ = true;
    for (auto& [id, sub] : subs_) {
      sub->ended = true;
      if (sub->hub_id) impl_.store.hub().unsubscribe(sub->mailbox_id, sub->hub_id);
    }
    subs_.clear();
    listed_.clear();
    refused_.clear();
    expiries_.clear();
    pending_ = 0;
    alarm_.reset();
    spent_.reset();
    if (reactor_) reactor_->Finish(std::move(s));
  }
  void finish_locked(grpc::Status s) {
    std::lock_guard lock(mu_);
    finish(std::move(s));
  }

  void done() {
    std::lock_guard lock(mu_);
    finished_ = true;
    reactor_ = nullptr;
  }

  // The next read, unless the stream is finished (no operation may start after Finish).
  void read_next(Reactor* reactor, pb::WatchControl* in) {
    std::lock_guard lock(mu_);
    if (!finished_) reactor->StartRead(in);
  }

 private:
  void opened(const std::shared_ptr<Subscription>& s, const pb::WatchRequest& request, Checked<Caller> caller) {
    if (!caller) {
      std::lock_guard lock(mu_);
      end_sub(*s, caller.error(), true);
      return pump();
    }
    {
      std::lock_guard lock(mu_);
      if (finished_ || s->ended) return;
    }
    WatchOpened o;
    grpc::Status status = open_watch(impl_, *caller, request, s, o);
    std::lock_guard lock(mu_);
    if (finished_ || s->ended || !status.ok()) {
      if (o.subscription) impl_.store.hub().unsubscribe(o.mailbox_id, o.subscription);
      if (!status.ok()) end_sub(*s, status, true);
      return pump();
    }
    s->mailbox_id = o.mailbox_id;
    s->hub_id = o.subscription;
    s->ready_modseq = o.highest;
    s->expires_at = caller->expires_at;
    start_queue(s->queue, o.catch_up, o.highest);
    s->started = true;
    pending_ += s->queue.size();
    expiries_.emplace(s->expires_at, s->id);
    arm(s->expires_at);
    const bool gone = std::any_of(s->queue.begin(), s->queue.end(), [](const pb::WatchEvent& e) { return e.has_gone(); });
    if (gone) end_sub(*s, grpc::Status::OK, false);
    else list(*s);
    pump();
  }

  // Ends a subscription: out of the map and the hub now, its Ended sent after what it has queued
  // (or at once, dropping that, when `drop`).
  void end_sub(Subscription& s, const grpc::Status& status, bool drop) {
    if (s.ended) return;
    s.ended = true;
    s.end_code = status.error_code();
    s.end_message = status.error_message();
    if (s.hub_id) impl_.store.hub().unsubscribe(s.mailbox_id, s.hub_id);
    s.hub_id = 0;
    if (s.expires_at) expiries_.erase(std::make_pair(s.expires_at, s.id));
    if (drop || !s.started) {
      if (s.started) pending_ -= s.queue.size();
      std::vector<pb::WatchEvent>().swap(s.queue);
    }
    auto it = subs_.find(s.id);
    std::shared_ptr<Subscription> keep;
    if (it != subs_.end() && it->second.get() == &s) {
      keep = it->second;
      subs_.erase(it);
    }
    if (keep) list(*keep, keep);
  }

  void list(Subscription& s, std::shared_ptr<Subscription> keep = nullptr) {
    if (s.listed) return;
    if (!keep) {
      auto it = subs_.find(s.id);
      if (it == subs_.end()) return;
      keep = it->second;
    }
    s.listed = true;
    listed_.push_back(std::move(keep));
  }

  void refuse(uint64_t id, grpc::StatusCode code, std::string message) {
    pb::WatchManyEvent e;
    e.set_id(id);
    e.mutable_ended()->set_code(code);
    e.mutable_ended()->set_message(std::move(message));
    refused_.push_back(std::move(e));
  }

  // Sends what is pending in one reply, when no write is in flight: up to a bound in bytes, so a
  // reply stays well below gRPC's message limit.
  void pump() {
    if (finished_ || !reactor_ || writing_) return;
    constexpr size_t kMaxReply = 1 << 20;
    size_t bytes = 0;
    for (auto& e : refused_) *out_.add_events() = std::move(e);
    refused_.clear();
    while (!listed_.empty() && bytes < kMaxReply) {
      Subscription& s = *listed_.front();
      size_t taken = 0;
      for (; taken < s.queue.size() && bytes < kMaxReply; ++taken) {
        bytes += s.queue[taken].ByteSizeLong() + 16;
        auto* e = out_.add_events();
        e->set_id(s.id);
        *e->mutable_event() = std::move(s.queue[taken]);
      }
      pending_ -= taken;
      if (taken < s.queue.size()) {
        s.queue.erase(s.queue.begin(), s.queue.begin() + static_cast<std::ptrdiff_t>(taken));
        break;
      }
      std::vector<pb::WatchEvent>().swap(s.queue);
      if (s.ended) {
        auto* e = out_.add_events();
        e->set_id(s.id);
        e->mutable_ended()->set_code(s.end_code);
        e->mutable_ended()->set_message(s.end_message);
      }
      s.listed = false;
      listed_.pop_front();
    }
    if (out_.events().empty()) return;
    writing_ = true;
    reactor_->StartWrite(&out_);
  }

  // One alarm per stream, at the earliest token expiry of its subscriptions.
  void arm(int64_t at) {
    if (alarm_ && alarm_at_ <= at) return;
    spent_ = std::move(alarm_);  // an alarm replaced (or fired) goes after the next one is set
    alarm_ = std::make_unique<grpc::Alarm>();
    alarm_at_ = at;
    alarm_->Set(std::chrono::system_clock::from_time_t(static_cast<std::time_t>(at)),
                [weak = weak_from_this()](bool fired) {
                  if (!fired) return;
                  if (auto self = weak.lock()) self->expire();
                });
  }

  void expire() {
    std::lock_guard lock(mu_);
    if (finished_) return;
    alarm_at_ = std::numeric_limits<int64_t>::max();
    const int64_t now = now_unix();
    size_t ended = 0;
    while (!expiries_.empty() && expiries_.begin()->first <= now) {
      auto it = subs_.find(expiries_.begin()->second);
      if (it == subs_.end()) {
        expiries_.erase(expiries_.begin());
        continue;
      }
      end_sub(*it->second, token_expired(), false);
      ++ended;
    }
    if (ended) common::log::info("mailstore").event("watch_token_expired").kv("client", peer_).kv("subscriptions", ended);
    if (!expiries_.empty()) arm(expiries_.begin()->first);
    pump();
  }

  ServiceCore& impl_;
  std::mutex mu_;
  Reactor* reactor_;
  const std::string peer_, address_;
  size_t max_backlog_, max_subscriptions_, max_pending_;
  std::unordered_map<uint64_t, std::shared_ptr<Subscription>> subs_;
  std::deque<std::shared_ptr<Subscription>> listed_;  // with events or an Ended to send, in order
  std::vector<pb::WatchManyEvent> refused_;           // Ended of subscribes that never opened
  size_t pending_ = 0;                                // events queued after Ready, all subscriptions
  std::set<std::pair<int64_t, uint64_t>> expiries_;   // (token expiry, id) of the open subscriptions
  std::unique_ptr<grpc::Alarm> alarm_, spent_;
  int64_t alarm_at_ = std::numeric_limits<int64_t>::max();
  pb::WatchManyReply out_;
  bool writing_ = false, finished_ = false;
};

void Subscription::changed(const std::vector<const MailboxChange*>& changes) {
  if (auto stream = stream_.lock()) stream->changed(*this, changes);
}

class WatchManyReactor final : public grpc::ServerBidiReactor<pb::WatchControl, pb::WatchManyReply> {
 public:
  WatchManyReactor(ServiceCore& impl, grpc::CallbackServerContext* context)
      : impl_(impl),
        state_(std::make_shared<ManyState>(impl, this, common::rpc::peer_identity(*context).common_name,
                                           context->peer())),
        registered_(impl.add_stream([weak = std::weak_ptr<ManyState>(state_)] {
          if (auto s = weak.lock())
            s->finish_locked(grpc::Status(grpc::StatusCode::UNAVAILABLE, "the store is shutting down"));
        })) {
    StartRead(&in_);
  }

  void OnReadDone(bool ok) override {
    // The client closed its side (or went): the stream and its subscriptions end.
    if (!ok) return state_->finish_locked(grpc::Status::OK);
    pb::WatchControl c = std::move(in_);
    in_.Clear();
    // Handled before the next read, so a client's Subscribe and Unsubscribe keep their order.
    state_->control(std::move(c));
    state_->read_next(this, &in_);
  }
  void OnWriteDone(bool ok) override { state_->write_done(ok); }
  void OnCancel() override { state_->finish_locked(grpc::Status::CANCELLED); }
  void OnDone() override {
    impl_.remove_stream(registered_);
    state_->done();
    delete this;
  }

 private:
  ServiceCore& impl_;
  std::shared_ptr<ManyState> state_;
  const uint64_t registered_;
  pb::WatchControl in_;
};

}  // namespace

grpc::ServerWriteReactor<pb::WatchEvent>* start_watch(ServiceCore& core, grpc::CallbackServerContext* context,
                                                      const pb::WatchRequest& request) {
  return new WatchReactor(core, context, request);
}

grpc::ServerBidiReactor<pb::WatchControl, pb::WatchManyReply>* start_watch_many(ServiceCore& core,
                                                                                grpc::CallbackServerContext* context) {
  return new WatchManyReactor(core, context);
}

}  // namespace store::service
