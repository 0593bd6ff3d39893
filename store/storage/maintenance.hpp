// maintenance.hpp: the store's background work on the group-commit writer: freeing the messages of
// deleted mailboxes and pruning old expunge history, in bounded batches paced by a loop timer.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "common/runtime/loop.hpp"
#include "common/runtime/timer.hpp"
#include "store/storage/mailbox_ops.hpp"
#include "store/storage/message_store.hpp"

namespace store {

struct MaintenanceOptions {
  // How often to look for deleted mailboxes left to free (a read transaction; no write when none).
  std::chrono::milliseconds poll{std::chrono::seconds(10)};
  // A walk over every mailbox for expunge history past its limit starts this long after the last
  // one ended (and once at start).
  std::chrono::milliseconds prune_every{std::chrono::hours(1)};
  // Between two batches: every write queued meanwhile (deliveries first of all) commits before the
  // next batch, which goes to the back of the writer's queue.
  std::chrono::milliseconds pause{std::chrono::milliseconds(2)};
  ops::FreeLimits free;
  ops::PruneLimits prune;
};

struct MaintenanceStats {
  uint64_t free_batches = 0, messages_freed = 0, mailboxes_freed = 0;
  uint64_t prune_batches = 0, tombstones_pruned = 0, prune_walks = 0;
  uint64_t errors = 0;  // batches that failed or found the writer's queue full (retried at the next poll)
};

class Maintenance {
 public:
  // Starts on `loop` (its thread only, as the store's other loop users); the first look is at once.
  // `store` must outlive the returned object; destroying it stops the timer, and a batch still on
  // the writer then commits without telling anyone.
  static std::unique_ptr<Maintenance> start(common::runtime::Loop& loop, MessageStore& store,
                                            MaintenanceOptions options);
  ~Maintenance();
  Maintenance(const Maintenance&) = delete;
  Maintenance& operator=(const Maintenance&) = delete;

  const MaintenanceStats& stats() const { return stats_; }
  // Runs on the loop after each committed batch (tests, metrics).
  void on_batch(std::function<void(const MaintenanceStats&)> fn) { on_batch_ = std::move(fn); }

 private:
  Maintenance(common::runtime::Loop& loop, MessageStore& store, MaintenanceOptions options);
  void schedule(std::chrono::milliseconds after);
  void tick();
  void run_free();
  void run_prune();
  void finished();

  common::runtime::Loop& loop_;
  MessageStore& store_;
  MaintenanceOptions options_;
  common::runtime::Timer timer_;
  std::shared_ptr<int> alive_ = std::make_shared<int>(0);
  MaintenanceStats stats_;
  std::function<void(const MaintenanceStats&)> on_batch_;
  bool in_flight_ = false;
  bool walking_ = false;            // a prune walk is under way (prune_cursor_ is where it goes on)
  std::string prune_cursor_;
  uint64_t next_walk_ms_ = 0;       // loop time at which the next walk may start
};

}  // namespace store
