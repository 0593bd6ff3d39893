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

bool MessageStore::deliver(common::runtime::Loop& loop, std::weak_ptr<void> alive,
                           std::shared_ptr<const Delivery> delivery, DeliveryDone done) {
  auto results = std::make_shared<std::vector<RecipientResult>>();
  return writer_->submit(loop, std::move(alive), delivery_write(std::move(delivery), results),
                         [results, done = std::move(done)](Result<void> committed) {
                           if (!committed) return done(tl::unexpected(committed.error()));
                           done(std::move(*results));
                         });
}

Result<std::vector<RecipientResult>> MessageStore::deliver_and_wait(std::shared_ptr<const Delivery> delivery) {
  auto results = std::make_shared<std::vector<RecipientResult>>();
  if (auto committed = writer_->submit_and_wait(delivery_write(std::move(delivery), results)); !committed) {
    return tl::unexpected(committed.error());
  }
  return std::move(*results);
}

Result<void> MessageStore::read(const std::function<Result<void>(const Txn&, const Dbs&)>& fn) const {
  auto txn = Txn::begin(env_.get(), false);
  if (!txn) return tl::unexpected(txn.error());
  return fn(*txn, dbs_);
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
