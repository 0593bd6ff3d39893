// message_store.cpp: the store's environment, reads and group-committed deliveries (message_store.hpp).
#include "store/storage/message_store.hpp"

#include <ctime>

namespace store {

using common::Error;
using common::ErrorKind;
using common::Result;
using common::lmdb::GroupCommitWriter;
using common::lmdb::Txn;

Result<std::unique_ptr<MessageStore>> MessageStore::open(const MessageStoreOptions& options) {
  std::unique_ptr<MessageStore> store(new MessageStore());
  store->options_ = options;
  common::lmdb::OpenOptions env_options;
  env_options.map_size = options.map_size;
  env_options.max_dbs = Dbs::kCount + 4;
  env_options.max_readers = options.max_readers;
  auto env = common::lmdb::open_env(options.dir, env_options);
  if (!env) return tl::unexpected(env.error());
  store->env_ = std::move(*env);
  {
    auto txn = Txn::begin(store->env_.get(), true);
    if (!txn) return tl::unexpected(txn.error());
    auto dbs = Dbs::open(*txn);
    if (!dbs) return tl::unexpected(dbs.error());
    if (auto committed = txn->commit(); !committed) return tl::unexpected(committed.error());
    store->dbs_ = *dbs;
  }
  common::lmdb::GroupCommitOptions writer_options;
  writer_options.name = "store";
  writer_options.max_queue = options.max_pending_writes;
  writer_options.linger = options.commit_linger;
  auto writer = GroupCommitWriter::start(store->env_.get(), writer_options);
  if (!writer) return tl::unexpected(writer.error());
  store->writer_ = std::move(*writer);
  return store;
}

MessageStore::~MessageStore() {
  if (writer_) writer_->stop();
}

GroupCommitWriter::Write MessageStore::delivery_write(std::shared_ptr<const Delivery> delivery,
                                                      std::shared_ptr<std::vector<RecipientResult>> results) const {
  return [this, delivery = std::move(delivery), results = std::move(results)](Txn& txn) -> Result<void> {
    auto filed = file_delivery(txn, dbs_, *delivery, static_cast<int64_t>(std::time(nullptr)),
                               options_.delivery_retention);
    if (!filed) return tl::unexpected(filed.error());
    *results = std::move(*filed);
    return {};
  };
}

void MessageStore::publish_delivery(const std::vector<RecipientResult>& results) {
  std::vector<MailboxChange> changes;
  for (const RecipientResult& r : results) {
    if (r.outcome != RecipientOutcome::Delivered) continue;
    MailboxChange c;
    c.kind = MailboxChange::Kind::Added;
    c.mailbox_id = r.mailbox_id;
    c.modseq = r.modseq;
    c.uid = r.uid;
    changes.push_back(std::move(c));
  }
  hub_.publish(std::move(changes));
}

bool MessageStore::deliver(common::runtime::Loop& loop, std::weak_ptr<void> alive,
                           std::shared_ptr<const Delivery> delivery, DeliveryDone done) {
  auto results = std::make_shared<std::vector<RecipientResult>>();
  return writer_->submit(loop, alive_, delivery_write(std::move(delivery), results),
                         [this, results, alive = std::move(alive), done = std::move(done)](Result<void> committed) {
                           if (committed) publish_delivery(*results);
                           if (!alive.lock()) return;
                           if (!committed) return done(tl::unexpected(committed.error()));
                           done(std::move(*results));
                         });
}

bool MessageStore::write(common::runtime::Loop& loop, std::weak_ptr<void> alive, Write fn,
                         std::function<void(Result<void>)> done) {
  auto changes = std::make_shared<std::vector<MailboxChange>>();
  return writer_->submit(
      loop, alive_,
      [this, fn = std::move(fn), changes](Txn& txn) -> Result<void> {
        changes->clear();
        return fn(txn, dbs_, *changes);
      },
      [this, changes, alive = std::move(alive), done = std::move(done)](Result<void> committed) {
        if (committed) hub_.publish(std::move(*changes));
        if (!alive.lock()) return;
        done(std::move(committed));
      });
}

Result<std::vector<RecipientResult>> MessageStore::deliver_and_wait(std::shared_ptr<const Delivery> delivery) {
  auto results = std::make_shared<std::vector<RecipientResult>>();
  if (auto committed = writer_->submit_and_wait(delivery_write(std::move(delivery), results)); !committed) {
    return tl::unexpected(committed.error());
  }
  publish_delivery(*results);
  hub_.flush();
  return std::move(*results);
}

Result<void> MessageStore::read(const std::function<Result<void>(const Txn&, const Dbs&)>& fn) const {
  auto txn = Txn::begin(env_.get(), false);
  if (!txn) return tl::unexpected(txn.error());
  return fn(*txn, dbs_);
}

Result<UserRecord> MessageStore::ensure_user(std::string_view canonical, std::optional<UserQuota> quota) {
  auto known = user(canonical);
  if (!known) return tl::unexpected(known.error());
  if (*known) return **known;
  auto user = std::make_shared<UserRecord>();
  auto written = writer_->submit_and_wait([this, name = std::string(canonical), quota, user](Txn& txn) -> Result<void> {
    auto found = find_user(txn, dbs_, name);
    if (!found) return tl::unexpected(found.error());
    if (*found) {
      *user = **found;
      return {};
    }
    auto created = create_user(txn, dbs_, name, static_cast<int64_t>(std::time(nullptr)));
    if (!created) return tl::unexpected(created.error());
    *user = *created;
    if (quota) {
      user->quota_bytes = quota->bytes;
      user->quota_messages = quota->messages;
      if (auto put = txn.put(dbs_.users, user_key(name), encode(*user)); !put) return tl::unexpected(put.error());
    }
    return {};
  });
  if (!written) return tl::unexpected(written.error());
  return *user;
}

bool MessageStore::set_quota(common::runtime::Loop& loop, std::string canonical, UserQuota quota) {
  return writer_->submit(
      loop, alive_,
      [this, name = std::move(canonical), quota](Txn& txn) -> Result<void> {
        auto found = find_user(txn, dbs_, name);
        if (!found) return tl::unexpected(found.error());
        if (!*found || UserQuota{(*found)->quota_bytes, (*found)->quota_messages} == quota) return {};
        UserRecord user = **found;
        user.quota_bytes = quota.bytes;
        user.quota_messages = quota.messages;
        return txn.put(dbs_.users, user_key(name), encode(user));
      },
      [](Result<void>) {});
}

Result<std::optional<UserRecord>> MessageStore::user(std::string_view canonical) const {
  std::optional<UserRecord> out;
  auto r = read([&](const Txn& txn, const Dbs& dbs) -> Result<void> {
    auto found = find_user(txn, dbs, canonical);
    if (!found) return tl::unexpected(found.error());
    out = *found;
    return {};
  });
  if (!r) return tl::unexpected(r.error());
  return out;
}

}  // namespace store
