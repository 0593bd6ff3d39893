// queue.hpp: the mta's durable queue: one LMDB environment, read from any thread, written only
// through the group-commit writer, so concurrent sessions share one fsync and each hears back (on
// its own loop) only once its message is on disk: the session's 250 comes after that.
#pragma once

#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "common/lmdb/group_commit.hpp"
#include "common/lmdb/lmdb.hpp"
#include "common/result.hpp"
#include "mta/queue/ops.hpp"
#include "mta/queue/schema.hpp"

namespace common::runtime {
class Loop;
}
namespace common::metrics {
class Registry;
}

namespace mta::queue {

struct QueueOptions {
  std::string dir;
  uint64_t map_size = uint64_t{16} << 30;  // address space, not disk
  size_t max_pending_writes = 4096;        // beyond this enqueue refuses (the session answers 451)
  unsigned max_readers = 256;
  Policy policy;
  std::function<UnixMs()> clock;           // empty: the system clock; tests inject one
  common::metrics::Registry* registry = nullptr;  // where the mta_queue_* gauges go; nullptr: none
  // This process is the directory's only deliverer (the mta): leases left by a killed predecessor
  // are taken back at open (ops.hpp recover_leases) instead of running out. postern-queue and tests
  // that open a second Queue leave it off.
  bool recover_leases = false;
};

class Queue {
 public:
  static common::Result<std::unique_ptr<Queue>> open(QueueOptions options);
  ~Queue();  // stops the writer (queued writes finish, their completions are posted) first
  Queue(const Queue&) = delete;
  Queue& operator=(const Queue&) = delete;

  // The message is stored with a new queue id; `done` runs on `loop` (while `alive` locks) only
  // after the commit is on disk, with the id, or the error (TempFail: disk or map full, answer
  // 451/452). False when the writer's queue is full or stopping: answer 451 4.3.0 at once.
  bool enqueue(common::runtime::Loop& loop, std::weak_ptr<void> alive, Message message,
               std::function<void(common::Result<std::string>)> done);
  // Leases due work (ops.hpp take_due), committed before `done` runs: two workers never hold the
  // same recipient.
  bool take_due(common::runtime::Loop& loop, std::weak_ptr<void> alive, UnixMs now, size_t max,
                std::string destination, std::function<void(common::Result<DueBatch>)> done);
  bool report(common::runtime::Loop& loop, std::weak_ptr<void> alive, UnixMs now, std::vector<DeliveryResult> results,
              std::function<void(common::Result<ReportSummary>)> done);

  // The same, blocking, off any loop (start-up, tests, administration).
  common::Result<std::string> enqueue_and_wait(Message message);
  common::Result<DueBatch> take_due_and_wait(UnixMs now, size_t max, std::string destination = "");
  common::Result<ReportSummary> report_and_wait(UnixMs now, std::vector<DeliveryResult> results);
  common::Result<size_t> hold(std::string id);  // "" = every message
  common::Result<size_t> release(std::string id, UnixMs now);
  common::Result<bool> remove(std::string id);
  common::Result<size_t> flush(std::string id, UnixMs now);

  // Reads in a read transaction on the calling thread.
  common::Result<std::vector<MessageInfo>> list(const ListFilter& filter = {}) const;
  common::Result<std::optional<MessageInfo>> show(std::string_view id) const;
  common::Result<std::string> message_bytes(std::string_view id) const;
  common::Result<Counters> counters() const;
  // ops.hpp due_destinations, in a read transaction on the calling thread (cheap: a seek per destination).
  common::Result<std::vector<DueDestination>> due_destinations(UnixMs now, size_t limit = 10000) const;

  UnixMs now() const;
  const Policy& policy() const { return options_.policy; }
  common::lmdb::GroupCommitStats commit_stats() const { return writer_->stats(); }
  MDB_env* env() const { return shared_->env.get(); }

 private:
  struct Shared {  // what the metrics callbacks reach through a weak_ptr, so they outlive nothing
    common::lmdb::Env env;
    Dbs dbs;
  };
  Queue() = default;
  template <class T, class Fn>
  bool submit(common::runtime::Loop& loop, std::weak_ptr<void> alive, Fn fn,
              std::function<void(common::Result<T>)> done);
  template <class T, class Fn>
  common::Result<T> submit_and_wait(Fn fn);
  void register_metrics();

  QueueOptions options_;
  std::shared_ptr<Shared> shared_;
  std::unique_ptr<common::lmdb::GroupCommitWriter> writer_;
};

}  // namespace mta::queue
