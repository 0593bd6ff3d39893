// fetch.cpp: the MailStore Fetch stream (service_core.hpp), read ahead on the read pool.
#include "store/service/service_core.hpp"

#include <algorithm>
#include <deque>

namespace store::service {
namespace {

// Reads one message at a time, each in its own short read transaction so a Fetch of a whole
// mailbox never pins an old snapshot (and the map's free pages) for its whole length, and sends
// them several to a reply (the proto's budget: kReplyMessages, kReplyBytes): one reply per message
// cost a gRPC write here and, in the mmp, a hop to the session's loop and a TLS record and a
// socket send each (for FETCH 1:20 (FLAGS ENVELOPE) that was a fifth of the mmp's CPU). The reads
// run on the read pool, one reply's worth ahead of the writes: a hop to the pool for every message
// cost more store CPU than the read itself, so the pool fills a reply and OnWriteDone writes the
// next from what is read already (the pieces of a large section) or goes back to the pool. That
// puts the writes on gRPC's threads, so a cheap call beside many fetches of many messages waits
// behind those writes (about 100 ms on a saturated core in bench/store/README.md; beside searches,
// a few ms). (gRPC's buffer hint would save a packet per small reply, but a hinted write may not
// complete until a later one flushes it, and this reactor waits for each write before the next: a
// fetch stalled until its deadline.)
class FetchReactor final : public grpc::ServerWriteReactor<pb::FetchResponse> {
 public:
  FetchReactor(ServiceCore& impl, grpc::CallbackServerContext* context, const pb::FetchRequest& request)
      : impl_(impl), request_(request) {
    impl_.open(context, "Fetch", [this](Checked<Caller> caller) {
      if (!caller) return Finish(caller.error());
      user_ = caller->user;
      auto set = to_uid_set(request_.uids(), impl_.options.limits.max_uid_ranges);
      if (!set) return Finish(set.error());
      if (!impl_.pooled([this, set = std::move(*set)] { scan(set); })) Finish(ServiceCore::reads_busy());
    });
  }

  // The pool's read and these writes never overlap: each StartWrite is the last thing either does.
  void OnWriteDone(bool ok) override {
    if (!ok) return Finish(grpc::Status(grpc::StatusCode::CANCELLED, "client went away"));
    if (reply_ready() || !failed_.ok() || position_ >= uids_.size()) return write_next();
    if (!impl_.pooled([this] { next(); })) Finish(ServiceCore::reads_busy());
  }
  void OnDone() override { delete this; }

 private:
  void scan(const ops::UidSet& set) {
    const size_t limit = impl_.options.limits.max_fetch_messages;
    grpc::Status s = impl_.read([&](const Txn& txn, const Dbs& dbs) -> grpc::Status {
      auto scanned = ops::for_each_message(
          txn, dbs, user_, to_ref(request_.mailbox()), set,
          [&](const MessageInfo& m) {
            uids_.push_back(m.uid);
            return uids_.size() <= limit;
          },
          request_.changed_since());
      if (!scanned) return to_status(scanned.error());
      if (uids_.size() > limit) {
        return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                            "fetch names more than " + std::to_string(limit) + " messages");
      }
      return grpc::Status::OK;
    });
    if (!s.ok()) return Finish(s);
    next();
  }

  // A reply holds whole messages up to this many, or up to this many bytes (the proto's budget);
  // one entry larger than that (a section's 1 MiB piece) goes alone.
  static constexpr size_t kReplyMessages = 128;
  static constexpr size_t kReplyBytes = 128u << 10;

  // Enough is read for a full reply.
  bool reply_ready() const { return pending_.size() >= kReplyMessages || pending_bytes_ >= kReplyBytes; }

  // On the pool: reads messages until a reply is full or none is left, then writes.
  void next() {
    while (position_ < uids_.size() && !reply_ready()) {
      const uint32_t uid = uids_[position_++];
      const size_t before = pending_.size();
      grpc::Status s = impl_.read([&](const Txn& txn, const Dbs& dbs) -> grpc::Status {
        grpc::Status built = grpc::Status::OK;
        auto scanned = ops::for_each_message(txn, dbs, user_, to_ref(request_.mailbox()), {{uid, uid}},
                                             [&](const MessageInfo& m) {
                                               auto r = fetch_message(txn, dbs, m, request_, pending_);
                                               if (!r) built = r.error();
                                               return false;
                                             });
        if (!scanned) return to_status(scanned.error());
        return built;
      });
      if (!s.ok()) {
        // The messages before it still go out whole, then the error ends the call.
        pending_.resize(before);
        failed_ = s;
        break;
      }
      for (size_t i = before; i < pending_.size(); ++i) pending_bytes_ += pending_[i].ByteSizeLong();
    }
    write_next();
  }

  // Moves the next reply's entries out of pending_: in order, whole messages while they fit (the
  // first entry always does), and writes it; with nothing left, ends the call.
  void write_next() {
    if (pending_.empty()) return Finish(failed_);
    out_.Clear();
    size_t bytes = 0;
    while (!pending_.empty() && static_cast<size_t>(out_.messages_size()) < kReplyMessages) {
      const size_t size = pending_.front().ByteSizeLong();
      if (out_.messages_size() > 0 && bytes + size > kReplyBytes) break;
      bytes += size;
      pending_bytes_ -= std::min(pending_bytes_, size);
      out_.mutable_messages()->Add(std::move(pending_.front()));
      pending_.pop_front();
    }
    // The last reply goes with the call's status in one step (no OnWriteDone, then OnDone): the
    // trailers need no write of their own. Not after a failed read: then the error ends the call
    // on its own, after the replies before it.
    if (pending_.empty() && failed_.ok() && position_ >= uids_.size()) {
      return StartWriteAndFinish(&out_, grpc::WriteOptions(), grpc::Status::OK);
    }
    StartWrite(&out_);
  }

  ServiceCore& impl_;
  pb::FetchRequest request_;
  std::string user_;
  std::vector<uint32_t> uids_;
  size_t position_ = 0;
  std::deque<pb::FetchedMessage> pending_;  // entries read, not yet written
  size_t pending_bytes_ = 0;                // their encoded size
  grpc::Status failed_;  // the read that failed; OK while none has
  pb::FetchResponse out_;
};

}  // namespace

grpc::ServerWriteReactor<pb::FetchResponse>* start_fetch(ServiceCore& core, grpc::CallbackServerContext* context,
                                                         const pb::FetchRequest& request) {
  return new FetchReactor(core, context, request);
}

}  // namespace store::service
