// message_store.hpp: the store's LMDB environment: opened once per process, read from any loop
// thread (short read transactions), written only through the group-commit writer, so concurrent
// deliveries share one durable commit.
#pragma once

#include <chrono>
#include <functional>
#include <memory>
#include <optional>
#include <string>

#include "common/lmdb/group_commit.hpp"
#include "common/lmdb/lmdb.hpp"
#include "common/result.hpp"
#include "store/storage/change_hub.hpp"
#include "store/storage/delivery.hpp"
#include "store/storage/schema.hpp"

namespace common::runtime {
class Loop;
}

namespace store {

struct UserQuota {
  uint64_t bytes = 0;     // 0: none
  uint64_t messages = 0;  // 0: none
  bool operator==(const UserQuota&) const = default;
};

struct MessageStoreOptions {
  std::string dir;
  uint64_t map_size = 64ull << 30;
  std::chrono::seconds delivery_retention{std::chrono::hours(24)};
  size_t max_pending_writes = 4096;
  unsigned max_readers = 512;
  // How long a commit waits for the deliveries of the sessions that were in the last one
  // (GroupCommitOptions::linger): a little latency for fewer fsyncs per message.
  std::chrono::microseconds commit_linger{500};  // one slot per read transaction in flight, all threads together
};

class MessageStore {
 public:
  static common::Result<std::unique_ptr<MessageStore>> open(const MessageStoreOptions& options);
  ~MessageStore();  // stops the writer (queued deliveries finish) before the environment closes
  MessageStore(const MessageStore&) = delete;
  MessageStore& operator=(const MessageStore&) = delete;

  using DeliveryDone = std::function<void(common::Result<std::vector<RecipientResult>>)>;
  // Files `delivery` on the writer; `done` runs on `loop` once it is on disk (or failed), and only
  // while `alive` can be locked. False when the writer's queue is full: answer 451 4.3.0.
  bool deliver(common::runtime::Loop& loop, std::weak_ptr<void> alive, std::shared_ptr<const Delivery> delivery,
               DeliveryDone done);
  // The same, blocking, off any loop (tests, tools).
  common::Result<std::vector<RecipientResult>> deliver_and_wait(std::shared_ptr<const Delivery> delivery);

  // Any other write (the MailStore API's): `fn` runs on the writer in its own nested transaction
  // and lists what it changed; once the commit is on disk those changes go to the watchers, then
  // `done` runs on `loop` while `alive` can be locked. False when the writer's queue is full.
  using Write = std::function<common::Result<void>(common::lmdb::Txn&, const Dbs&, std::vector<MailboxChange>&)>;
  bool write(common::runtime::Loop& loop, std::weak_ptr<void> alive, Write fn,
             std::function<void(common::Result<void>)> done);
  ChangeHub& hub() { return hub_; }

  // Runs `fn` in a read transaction on the calling thread. Views it takes die with the transaction.
  common::Result<void> read(const std::function<common::Result<void>(const common::lmdb::Txn&, const Dbs&)>& fn) const;
  // The user's record, created (with INBOX and the special-use set, and `quota` when given) if this
  // is their first access: blocks on the writer, once per new user.
  common::Result<UserRecord> ensure_user(std::string_view canonical, std::optional<UserQuota> quota = {});
  // Records the quota authserv now gives an existing user, on the writer; nothing waits for it
  // (the next call sees it). False when the writer's queue is full.
  bool set_quota(common::runtime::Loop& loop, std::string canonical, UserQuota quota);
  // A user's record, or nullopt before their first delivery.
  common::Result<std::optional<UserRecord>> user(std::string_view canonical) const;

  common::lmdb::GroupCommitStats commit_stats() const { return writer_->stats(); }
  MDB_env* env() const { return env_.get(); }

 private:
  MessageStore() = default;
  common::lmdb::GroupCommitWriter::Write delivery_write(std::shared_ptr<const Delivery> delivery,
                                     std::shared_ptr<std::vector<RecipientResult>> results) const;
  void publish_delivery(const std::vector<RecipientResult>& results);

  MessageStoreOptions options_;
  common::lmdb::Env env_;
  Dbs dbs_;
  ChangeHub hub_;
  // The writer's completions must run even when the caller went away, since they publish to the
  // watchers; the caller's own liveness is checked after that.
  std::shared_ptr<int> alive_ = std::make_shared<int>(0);
  std::unique_ptr<common::lmdb::GroupCommitWriter> writer_;
};

}  // namespace store
