// maintenance.cpp: bounded background batches on the writer (maintenance.hpp).
#include "store/storage/maintenance.hpp"

#include "common/log/log.hpp"

namespace store {

using common::Error;
using common::ErrorKind;
using common::Result;
using common::lmdb::Txn;

namespace {

Error as_error(const ops::OpError& e) {
  return Error{e.code == ops::OpCode::TempFail ? ErrorKind::TempFail : ErrorKind::Internal, e.detail};
}

}  // namespace

std::unique_ptr<Maintenance> Maintenance::start(common::runtime::Loop& loop, MessageStore& store,
                                                MaintenanceOptions options) {
  std::unique_ptr<Maintenance> m(new Maintenance(loop, store, std::move(options)));
  m->schedule(std::chrono::milliseconds(0));
  return m;
}

Maintenance::Maintenance(common::runtime::Loop& loop, MessageStore& store, MaintenanceOptions options)
    : loop_(loop), store_(store), options_(std::move(options)), timer_(loop.get()) {
  // Housekeeping: a loop with nothing else to do may end.
  timer_.unref();
}

Maintenance::~Maintenance() { timer_.stop(); }

void Maintenance::schedule(std::chrono::milliseconds after) {
  timer_.start(after, [this] { tick(); });
}

void Maintenance::tick() {
  if (in_flight_) return;
  uint64_t pending = 0;
  auto looked = store_.read([&](const Txn& txn, const Dbs& dbs) -> Result<void> {
    auto n = ops::pending_deletions(txn, dbs);
    if (!n) return tl::unexpected(as_error(n.error()));
    pending = *n;
    return {};
  });
  if (!looked) {
    stats_.errors += 1;
    common::log::warning("store").event("maintenance_failed").kv("step", "look").kv("error", looked.error().detail);
    return schedule(options_.poll);
  }
  if (pending > 0) return run_free();
  if (walking_ || loop_.now_ms() >= next_walk_ms_) return run_prune();
  schedule(options_.poll);
}

void Maintenance::run_free() {
  auto progress = std::make_shared<ops::FreeProgress>();
  const ops::FreeLimits limits = options_.free;
  in_flight_ = true;
  const bool queued = store_.write(
      loop_, alive_,
      [progress, limits](Txn& txn, const Dbs& dbs, std::vector<MailboxChange>&) -> Result<void> {
        auto done = ops::free_deleted(txn, dbs, limits);
        if (!done) return tl::unexpected(as_error(done.error()));
        *progress = *done;
        return {};
      },
      [this, progress](Result<void> committed) {
        in_flight_ = false;
        if (!committed) {
          stats_.errors += 1;
          common::log::warning("store").event("maintenance_failed").kv("step", "free").kv("error",
                                                                                          committed.error().detail);
          return schedule(options_.poll);
        }
        stats_.free_batches += 1;
        stats_.messages_freed += progress->messages;
        stats_.mailboxes_freed += progress->mailboxes_finished;
        if (progress->mailboxes_finished > 0) {
          common::log::info("store").event("deleted_mailboxes_freed").kv("mailboxes", progress->mailboxes_finished)
              .kv("messages_total", stats_.messages_freed);
        }
        finished();
      });
  if (!queued) {
    in_flight_ = false;
    stats_.errors += 1;
    common::log::warning("store").event("maintenance_deferred").kv("step", "free").kv("reason", "writer queue full");
    schedule(options_.poll);
  }
}

void Maintenance::run_prune() {
  if (!walking_) {
    walking_ = true;
    prune_cursor_.clear();
  }
  auto progress = std::make_shared<ops::PruneProgress>();
  auto cursor = std::make_shared<std::string>(prune_cursor_);
  const ops::PruneLimits limits = options_.prune;
  in_flight_ = true;
  const bool queued = store_.write(
      loop_, alive_,
      [progress, cursor, limits, start = prune_cursor_](Txn& txn, const Dbs& dbs,
                                                        std::vector<MailboxChange>&) -> Result<void> {
        // From the same place on every attempt: the writer may run this again after an abort.
        *cursor = start;
        auto done = ops::prune_tombstones(txn, dbs, limits, *cursor);
        if (!done) return tl::unexpected(as_error(done.error()));
        *progress = *done;
        return {};
      },
      [this, progress, cursor](Result<void> committed) {
        in_flight_ = false;
        if (!committed) {
          stats_.errors += 1;
          walking_ = false;
          next_walk_ms_ = loop_.now_ms() + static_cast<uint64_t>(options_.poll.count());
          common::log::warning("store").event("maintenance_failed").kv("step", "prune").kv("error",
                                                                                           committed.error().detail);
          return schedule(options_.poll);
        }
        stats_.prune_batches += 1;
        stats_.tombstones_pruned += progress->pruned;
        prune_cursor_ = *cursor;
        if (!progress->more) {
          walking_ = false;
          stats_.prune_walks += 1;
          next_walk_ms_ = loop_.now_ms() + static_cast<uint64_t>(options_.prune_every.count());
        }
        finished();
      });
  if (!queued) {
    in_flight_ = false;
    stats_.errors += 1;
    common::log::warning("store").event("maintenance_deferred").kv("step", "prune").kv("reason", "writer queue full");
    schedule(options_.poll);
  }
}

void Maintenance::finished() {
  schedule(options_.pause);
  if (on_batch_) on_batch_(stats_);
}

}  // namespace store
