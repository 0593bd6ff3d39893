// append.cpp: the MailStore Append stream (service_core.hpp): the message is read whole, then
// stored by the group-commit writer and answered once on disk.
#include "store/service/service_core.hpp"

namespace store::service {
namespace {

// APPEND: the Start, then the bytes; the size declared at Start is checked against the limit before
// any byte is taken, and what arrives must match it.
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
    if (committing_) return Finish(grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "data after commit"));
    if (in_.has_commit()) {
      committing_ = true;
    } else if (in_.has_start()) {
      if (started_) return Finish(grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "second Start in one append"));
      started_ = true;
      start_ = in_.start();
      if (start_.size() > impl_.options.limits.max_append_size) {
        return Finish(grpc::Status(grpc::StatusCode::RESOURCE_EXHAUSTED,
                                   "message of " + std::to_string(start_.size()) + " bytes is over the limit of " +
                                       std::to_string(impl_.options.limits.max_append_size)));
      }
      bytes_.reserve(start_.size());
    } else {
      if (!started_) return Finish(grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "append data before Start"));
      if (bytes_.size() + in_.data().size() > start_.size()) {
        return Finish(grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "more bytes than the declared size"));
      }
      bytes_ += in_.data();
    }
    StartRead(&in_);
  }

  void OnDone() override { delete this; }

 private:
  void commit() {
    if (!started_) return Finish(grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "append without Start"));
    // Cancelled, or the client gave up on the message: its reads ended without the marker.
    if (!committing_) return Finish(grpc::Status(grpc::StatusCode::ABORTED, "append ended without commit: nothing stored"));
    if (bytes_.size() != start_.size()) {
      return Finish(grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                                 "got " + std::to_string(bytes_.size()) + " of the " + std::to_string(start_.size()) +
                                     " bytes declared"));
    }
    auto flags = to_flag_set(start_.flags());
    if (!flags) return Finish(flags.error());
    const int64_t date = start_.internal_date() != 0 ? start_.internal_date() : now_unix();
    auto bytes = std::make_shared<std::string>(std::move(bytes_));
    impl_.write(
        [user = user_, mailbox = start_.mailbox(), bytes, flags = std::move(*flags), date,
         response = response_](Txn& txn, const Dbs& dbs, ChangeList& changes) {
          auto appended = ops::append_message(txn, dbs, user, mailbox, *bytes, flags, date);
          if (!appended) return to_status(appended.error());
          response->set_uidvalidity(appended->uidvalidity);
          response->set_uid(appended->uid);
          response->set_modseq(appended->modseq);
          changes.push_back(added(appended->mailbox_id, ops::MessageState{appended->uid, flags.flags, flags.keywords,
                                                                          appended->modseq}));
          return grpc::Status::OK;
        },
        [this](const grpc::Status& status) { Finish(status); });
  }

  ServiceCore& impl_;
  pb::AppendResponse* response_;
  std::string user_;
  pb::AppendRequest in_;
  pb::AppendRequest::Start start_;
  bool committing_ = false;  // the client's commit marker came
  bool started_ = false;
  std::string bytes_;
};

}  // namespace

grpc::ServerReadReactor<pb::AppendRequest>* start_append(ServiceCore& core, grpc::CallbackServerContext* context,
                                                         pb::AppendResponse* response) {
  return new AppendReactor(core, context, response);
}

}  // namespace store::service
