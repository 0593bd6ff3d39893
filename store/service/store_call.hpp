// store_call.hpp: a gRPC call's work in the store, shared by the MailStore and StoreAdmin services:
// a write on the group-commit writer answered once it is on disk, and a read in one transaction.
#pragma once

#include <grpcpp/support/status.h>

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "common/result.hpp"
#include "store/storage/message_store.hpp"

namespace common::runtime {
class Loop;
}

namespace store::service {

// How a service words the store's errors: MailStore hides an internal error's detail from a
// front end, StoreAdmin shows it to the operator.
using StatusOf = grpc::Status (*)(const common::Error&);

struct CallReplies {
  StatusOf to_status;
  std::string busy;  // the UNAVAILABLE text when the writer's queue is full
};

using CallWrite = std::function<grpc::Status(common::lmdb::Txn&, const Dbs&, std::vector<MailboxChange>&)>;
using CallFinish = std::function<void(const grpc::Status&)>;

// `fn` runs on the writer and returns the call's status; a refusal rolls its nested transaction
// back and publishes nothing. `finish` runs on `loop` (while `alive` can be locked) with that
// refusal, the commit's failure, or OK once the commit is on disk and its changes are with the
// watchers; at once with UNAVAILABLE `replies.busy` when the writer's queue is full.
void write_call(MessageStore& store, common::runtime::Loop& loop, std::weak_ptr<void> alive,
                const CallReplies& replies, CallWrite fn, CallFinish finish);

// `fn` in a read transaction on the calling thread; its status, or the store's error as `to_status` words it.
grpc::Status read_call(const MessageStore& store, StatusOf to_status,
                       const std::function<grpc::Status(const common::lmdb::Txn&, const Dbs&)>& fn);

}  // namespace store::service
