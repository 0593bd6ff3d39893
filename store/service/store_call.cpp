// store_call.cpp: a gRPC call's write and read in the store (store_call.hpp).
#include "store/service/store_call.hpp"

namespace store::service {

void write_call(MessageStore& store, common::runtime::Loop& loop, std::weak_ptr<void> alive,
                const CallReplies& replies, CallWrite fn, CallFinish finish) {
  auto outcome = std::make_shared<grpc::Status>();
  const bool queued = store.write(
      loop, std::move(alive),
      [fn = std::move(fn), outcome](common::lmdb::Txn& txn, const Dbs& dbs,
                                    std::vector<MailboxChange>& changes) -> common::Result<void> {
        *outcome = fn(txn, dbs, changes);
        if (outcome->ok()) return {};
        changes.clear();
        return common::fail(common::ErrorKind::Protocol, "refused");
      },
      [outcome, finish, to_status = replies.to_status](common::Result<void> committed) {
        finish(!outcome->ok() ? *outcome : !committed ? to_status(committed.error()) : grpc::Status::OK);
      });
  if (!queued) finish(grpc::Status(grpc::StatusCode::UNAVAILABLE, replies.busy));
}

grpc::Status read_call(const MessageStore& store, StatusOf to_status,
                       const std::function<grpc::Status(const common::lmdb::Txn&, const Dbs&)>& fn) {
  grpc::Status out;
  auto r = store.read([&](const common::lmdb::Txn& txn, const Dbs& dbs) -> common::Result<void> {
    out = fn(txn, dbs);
    return {};
  });
  if (!r) return to_status(r.error());
  return out;
}

}  // namespace store::service
