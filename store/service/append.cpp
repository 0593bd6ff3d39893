// append.cpp: the MailStore Append stream (service_core.hpp): one message, or several (MULTIAPPEND,
// RFC 3502) to one mailbox, read whole, then stored together by the group-commit writer in one
// transaction (all or none) and answered once on disk.
#include "store/service/service_core.hpp"

#include <vector>

namespace store::service {
namespace {

grpc::Status refused(grpc::StatusCode code, std::string text) { return grpc::Status(code, std::move(text)); }

// APPEND: for each message a Start, then its bytes; then one commit. Every limit is checked at a
// Start, from the declared size, before any of that message's bytes is taken; what arrives must
// match the declared size. All messages are held until the commit (max_append_total bounds them).
class AppendReactor final : public grpc::ServerReadReactor<pb::AppendRequest> {
 public:
  AppendReactor(ServiceCore& impl, grpc::CallbackServerContext* context, pb::AppendResponse* response)
      : impl_(impl), response_(response) {
    // Nothing finishes this reactor before `open` calls back, so `this` is alive there.
    impl_.open(context, "Append", [this](Checked<Caller> caller) {
      if (!caller) return Finish(caller.error());
      user_ = caller->user;
      StartRead(&in_);
    });
  }

  void OnReadDone(bool ok) override {
    if (!ok) return commit();
    if (committing_) return Finish(refused(grpc::StatusCode::INVALID_ARGUMENT, "data after commit"));
    if (in_.has_commit()) {
      committing_ = true;
    } else if (in_.has_start()) {
      if (auto s = start(in_.start()); !s.ok()) return Finish(s);
    } else {
      if (messages_.empty()) return Finish(refused(grpc::StatusCode::INVALID_ARGUMENT, "append data before Start"));
      Message& m = messages_.back();
      if (m.bytes.size() + in_.data().size() > m.start.size()) {
        return Finish(refused(grpc::StatusCode::INVALID_ARGUMENT,
                              message_name() + ": more bytes than the " + std::to_string(m.start.size()) + " declared"));
      }
      m.bytes += in_.data();
    }
    StartRead(&in_);
  }

  void OnDone() override { delete this; }

 private:
  struct Message {
    pb::AppendRequest::Start start;
    ops::FlagSet flags;
    std::string bytes;
  };

  // "message 2" (counting from 1), for the status texts of a MULTIAPPEND.
  std::string message_name() const { return "message " + std::to_string(messages_.size()); }

  grpc::Status whole_so_far() const {
    if (messages_.empty()) return grpc::Status::OK;
    const Message& m = messages_.back();
    if (m.bytes.size() == m.start.size()) return grpc::Status::OK;
    return refused(grpc::StatusCode::INVALID_ARGUMENT, message_name() + ": got " + std::to_string(m.bytes.size()) +
                                                           " of the " + std::to_string(m.start.size()) +
                                                           " bytes declared");
  }

  grpc::Status start(const pb::AppendRequest::Start& s) {
    if (auto whole = whole_so_far(); !whole.ok()) return whole;
    const auto& limits = impl_.options.limits;
    const std::string name = "message " + std::to_string(messages_.size() + 1);
    if (messages_.size() + 1 > limits.max_append_messages) {
      return refused(grpc::StatusCode::RESOURCE_EXHAUSTED,
                     "too many messages: " + name + " is over the limit of " +
                         std::to_string(limits.max_append_messages) + " messages in one append");
    }
    if (!messages_.empty() && s.mailbox() != messages_.front().start.mailbox()) {
      return refused(grpc::StatusCode::INVALID_ARGUMENT, name + " is for another mailbox than message 1: one append "
                                                                "stores into one mailbox");
    }
    if (s.size() > limits.max_append_size) {
      return refused(grpc::StatusCode::RESOURCE_EXHAUSTED, name + " of " + std::to_string(s.size()) +
                                                               " bytes is over the limit of " +
                                                               std::to_string(limits.max_append_size));
    }
    if (total_ + s.size() > limits.max_append_total) {
      return refused(grpc::StatusCode::RESOURCE_EXHAUSTED,
                     "messages of " + std::to_string(total_ + s.size()) + " bytes in all (to " + name +
                         ") are over the limit of " + std::to_string(limits.max_append_total) + " for one append");
    }
    auto flags = to_flag_set(s.flags());
    if (!flags) return flags.error();
    total_ += s.size();
    Message& m = messages_.emplace_back();
    m.start = s;
    m.flags = std::move(*flags);
    m.bytes.reserve(s.size());
    return grpc::Status::OK;
  }

  void commit() {
    if (messages_.empty()) return Finish(refused(grpc::StatusCode::INVALID_ARGUMENT, "append without Start"));
    // Cancelled, or the client gave up on the messages: its reads ended without the marker.
    if (!committing_) {
      return Finish(refused(grpc::StatusCode::ABORTED, "append ended without commit: nothing stored"));
    }
    if (auto whole = whole_so_far(); !whole.ok()) return Finish(whole);
    const int64_t now = now_unix();
    auto messages = std::make_shared<std::vector<Message>>(std::move(messages_));
    impl_.write(
        [user = user_, messages, now, response = response_](Txn& txn, const Dbs& dbs, ChangeList& changes) {
          // One transaction: a refusal of any message (quota, which counts those before it here,
          // UIDs, the mailbox) rolls back all of them and publishes nothing.
          response->Clear();
          for (const Message& m : *messages) {
            const int64_t date = m.start.internal_date() != 0 ? m.start.internal_date() : now;
            auto appended = ops::append_message(txn, dbs, user, m.start.mailbox(), m.bytes, m.flags, date);
            if (!appended) {
              response->Clear();
              return to_status(appended.error());
            }
            if (response->uids_size() == 0) {
              response->set_uidvalidity(appended->uidvalidity);
              response->set_uid(appended->uid);
            }
            response->add_uids(appended->uid);
            response->set_modseq(appended->modseq);
            changes.push_back(added(appended->mailbox_id,
                                    ops::MessageState{appended->uid, m.flags.flags, m.flags.keywords, appended->modseq}));
          }
          return grpc::Status::OK;
        },
        [this](const grpc::Status& status) { Finish(status); });
  }

  ServiceCore& impl_;
  pb::AppendResponse* response_;
  std::string user_;
  pb::AppendRequest in_;
  bool committing_ = false;  // the client's commit marker came
  std::vector<Message> messages_;
  uint64_t total_ = 0;  // the declared sizes of messages_
};

}  // namespace

grpc::ServerReadReactor<pb::AppendRequest>* start_append(ServiceCore& core, grpc::CallbackServerContext* context,
                                                         pb::AppendResponse* response) {
  return new AppendReactor(core, context, response);
}

}  // namespace store::service
