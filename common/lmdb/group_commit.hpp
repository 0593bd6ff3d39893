// group_commit.hpp: one writer thread per LMDB environment that folds concurrent writes into one
// durable commit (one fsync) per batch and reports each write on its caller's loop, after the fsync.
//
// Usage (the store's delivery path; the mta queue does the same):
//
//   auto env = common::lmdb::open_env(dir, {.map_size = size_t{8} << 30});  // no MDB_NOSYNC
//   // Open the tables once at start-up, before the writer runs or through submit_and_wait.
//   auto writer = common::lmdb::GroupCommitWriter::start(env->get(), {.name = "store"});
//   ...
//   // On a loop thread (a session, after the message arrived):
//   auto uid = std::make_shared<uint32_t>(0);          // what the write hands back to the completion
//   bool queued = writer->submit(loop, conn.alive(),
//       [msg = std::move(msg), uid, dbi](common::lmdb::Txn& txn) -> common::Result<void> {
//         // Writer thread, inside this write's own nested transaction. Return an error to roll back
//         // this write alone; the others of the batch still commit.
//         *uid = ...;  return txn.put(dbi, key, msg.body);
//       },
//       [this, uid](common::Result<void> r) {
//         // This session's loop thread, only if the session is still alive, and only after the
//         // batch's commit returned: ok means the write is on disk. Else r.error().kind is TempFail
//         // (disk or map full, I/O error: answer 4xx) or whatever the write itself returned.
//       });
//   if (!queued) { /* queue full or stopping: answer a temporary failure (451 4.3.0) */ }
//
// Rules for a write callback:
// - It runs on the writer thread: capture by value what it needs; it must not touch loop-owned state.
// - Writes run one at a time in submission order, and each sees what the writes before it did (same
//   batch or earlier), so reading a counter (UIDNEXT) and writing it back is safe.
// - Views and cursors it takes die before it returns. It must not call submit_and_wait or stop().
// - Whatever it did may still be lost if the batch's commit fails: keep nothing derived from it in
//   memory until the completion says ok.
// - It delays every other write of its batch: no blocking calls, no network.
//
// Lifetimes: the environment outlives the writer; every Loop given to submit() outlives the
// completions posted to it (stop the writer, then run or stop the loops, then destroy them).
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include "common/lmdb/lmdb.hpp"
#include "common/result.hpp"

namespace common::runtime {
class Loop;
}
namespace common::metrics {
class Registry;
class Counter;
class Gauge;
class Histogram;
}  // namespace common::metrics

namespace common::lmdb {

struct GroupCommitOptions {
  std::string name = "lmdb";  // the env="" label of the metrics and the log lines
  size_t max_queue = 4096;    // pending writes beyond this are refused, so a flood cannot grow memory
  size_t max_batch = 512;     // writes folded into one commit at most
  // A batch commits as soon as the queue is empty, or at the latest this long after its first write
  // started, so a steady stream of writes cannot hold back acknowledgements.
  std::chrono::microseconds max_delay{2000};
  // When the queue runs dry before a batch has as many writes as the previous one had, wait up to
  // this long for the rest: a fixed set of clients that each wait for their commit (LMTP sessions)
  // then fall into step and share one commit instead of splitting over two. 0: commit at once.
  std::chrono::microseconds linger{0};
  metrics::Registry* registry = nullptr;  // nullptr: metrics::default_registry()
};

// Counted by this writer alone (the metrics of writers sharing a name and registry add up).
struct GroupCommitStats {
  uint64_t writes_committed = 0;    // on disk and reported ok
  uint64_t writes_rolled_back = 0;  // the write (or its nested commit) failed; the batch went on
  uint64_t writes_lost = 0;         // the write was fine but its batch's commit failed
  uint64_t batches_committed = 0;   // durable commits that carried at least one write
  uint64_t commits_failed = 0;
  uint64_t refused = 0;  // submit() returned false: queue full or stopping
  uint64_t max_batch_seen = 0;
  double writes_per_commit() const {
    return batches_committed ? static_cast<double>(writes_committed) / static_cast<double>(batches_committed) : 0.0;
  }
};

class GroupCommitWriter {
 public:
  using Write = std::function<common::Result<void>(Txn&)>;
  using Done = std::function<void(common::Result<void>)>;

  // Refuses (Config) an environment that cannot keep the durability promise or nest transactions:
  // MDB_RDONLY, MDB_NOSYNC, MDB_NOMETASYNC, MDB_MAPASYNC or MDB_WRITEMAP.
  static common::Result<std::unique_ptr<GroupCommitWriter>> start(MDB_env* env, GroupCommitOptions options = {});
  ~GroupCommitWriter();  // stop()
  GroupCommitWriter(const GroupCommitWriter&) = delete;
  GroupCommitWriter& operator=(const GroupCommitWriter&) = delete;

  // Queues `write`; after its batch's commit, `done` runs on `loop` if `alive` can still be locked
  // (sessions pass Connection::alive(); an empty weak_ptr counts as gone). False when the queue is
  // full or the writer is stopping: nothing runs, and the caller answers a temporary failure.
  bool submit(runtime::Loop& loop, std::weak_ptr<void> alive, Write write, Done done);
  // Blocks until `write` is committed (or failed); waits for room instead of refusing. For start-up
  // and tests, off any loop. TempFail once stopping.
  common::Result<void> submit_and_wait(Write write);

  // Refuses new writes, finishes every queued one (their completions are posted), joins the thread.
  void stop();

  GroupCommitStats stats() const;
  size_t queued() const;

 private:
  struct Pending {
    runtime::Loop* loop = nullptr;  // null: `done` runs on the writer thread (submit_and_wait)
    std::weak_ptr<void> alive;
    Write write;
    Done done;
    std::chrono::steady_clock::time_point submitted;
  };
  struct Finished {
    Pending pending;
    common::Result<void> result;
  };
  struct Metrics;

  GroupCommitWriter(MDB_env* env, GroupCommitOptions options);
  void run();
  void run_batch();
  bool pop(Pending& out, size_t batch_size, std::chrono::steady_clock::time_point batch_start);
  void deliver(std::deque<Finished>& batch);
  void note_refusal(const char* reason);

  MDB_env* env_;
  GroupCommitOptions options_;
  std::unique_ptr<Metrics> metrics_;

  mutable std::mutex mutex_;
  std::condition_variable work_cv_;   // the writer waits for writes
  std::condition_variable space_cv_;  // submit_and_wait waits for room
  std::deque<Pending> queue_;
  bool stopping_ = false;
  std::mutex join_mutex_;  // two stop() calls must not join at once
  std::thread thread_;
  std::thread::id writer_id_;
  size_t last_batch_ = 0;      // writer thread only: the size linger waits for  // set before start() returns, read by submit_and_wait without a lock

  std::atomic<uint64_t> writes_committed_{0}, writes_rolled_back_{0}, writes_lost_{0}, batches_committed_{0},
      commits_failed_{0}, refused_{0}, max_batch_seen_{0};
  std::atomic<int64_t> last_refusal_log_ms_{0};
};

}  // namespace common::lmdb
