// group_commit.cpp: the writer thread: batches of nested transactions under one write transaction,
// one durable commit per batch, completions handed back to the callers' loops.
#include "common/lmdb/group_commit.hpp"

#include <future>
#include <utility>

#include "common/log/log.hpp"
#include "common/metrics/metrics.hpp"
#include "common/runtime/loop.hpp"

namespace common::lmdb {

using Clock = std::chrono::steady_clock;

struct GroupCommitWriter::Metrics {
  explicit Metrics(metrics::Registry& r, const std::string& env)
      : writes_committed(r.counter_family("postern_lmdb_writes_committed_total",
                                          "Writes on disk and acknowledged by the group-commit writer", {"env"})
                             .with({env})),
        writes_rolled_back(r.counter_family("postern_lmdb_writes_rolled_back_total",
                                            "Writes that failed and were rolled back alone", {"env"})
                               .with({env})),
        writes_lost(r.counter_family("postern_lmdb_writes_lost_total",
                                     "Writes reported failed because their batch's commit failed", {"env"})
                        .with({env})),
        commits(r.counter_family("postern_lmdb_commits_total", "Durable commits (one fsync each) carrying writes",
                                 {"env"})
                    .with({env})),
        commits_failed(
            r.counter_family("postern_lmdb_commit_failures_total", "Batch commits that failed", {"env"}).with({env})),
        refused(r.counter_family("postern_lmdb_writes_refused_total",
                                 "Writes refused because the queue was full or the writer stopping", {"env"})
                    .with({env})),
        queue_depth(r.gauge_family("postern_lmdb_queue_depth", "Writes waiting for the writer thread", {"env"})
                        .with({env})),
        writes_per_commit(r.histogram_family("postern_lmdb_writes_per_commit", "Writes folded into one durable commit",
                                             {"env"}, metrics::exponential_buckets(1, 2, 11))
                              .with({env})),
        commit_seconds(r.histogram_family("postern_lmdb_commit_seconds",
                                          "Time in mdb_txn_commit (the fsync) per batch", {"env"},
                                          metrics::exponential_buckets(0.0001, 2, 16))
                           .with({env})),
        write_wait_seconds(r.histogram_family("postern_lmdb_write_wait_seconds",
                                              "From submit to the end of the write's commit", {"env"},
                                              metrics::exponential_buckets(0.0001, 2, 16))
                               .with({env})) {}
  metrics::Counter& writes_committed;
  metrics::Counter& writes_rolled_back;
  metrics::Counter& writes_lost;
  metrics::Counter& commits;
  metrics::Counter& commits_failed;
  metrics::Counter& refused;
  metrics::Gauge& queue_depth;
  metrics::Histogram& writes_per_commit;
  metrics::Histogram& commit_seconds;
  metrics::Histogram& write_wait_seconds;
};

common::Result<std::unique_ptr<GroupCommitWriter>> GroupCommitWriter::start(MDB_env* env, GroupCommitOptions options) {
  unsigned flags = 0;
  if (int rc = mdb_env_get_flags(env, &flags); rc != 0) return tl::unexpected(error("mdb_env_get_flags", rc));
  if (flags & MDB_RDONLY) return common::fail(ErrorKind::Config, options.name + ": the environment is read-only");
  // Each of these lets mdb_txn_commit return before the data is on disk, and we acknowledge on return.
  if (flags & (MDB_NOSYNC | MDB_NOMETASYNC | MDB_MAPASYNC))
    return common::fail(ErrorKind::Config,
                        options.name + ": the environment is opened without full fsync (MDB_NOSYNC, MDB_NOMETASYNC "
                                       "or MDB_MAPASYNC), so a commit would not mean the write is on disk");
  if (flags & MDB_WRITEMAP)
    return common::fail(ErrorKind::Config,
                        options.name + ": MDB_WRITEMAP rules out the nested transaction each write runs in");
  if (options.max_queue == 0 || options.max_batch == 0)
    return common::fail(ErrorKind::Config, options.name + ": max_queue and max_batch must be at least 1");
  std::unique_ptr<GroupCommitWriter> w(new GroupCommitWriter(env, std::move(options)));
  w->thread_ = std::thread([p = w.get()] { p->run(); });
  w->writer_id_ = w->thread_.get_id();
  return w;
}

GroupCommitWriter::GroupCommitWriter(MDB_env* env, GroupCommitOptions options)
    : env_(env),
      options_(std::move(options)),
      metrics_(std::make_unique<Metrics>(options_.registry ? *options_.registry : metrics::default_registry(),
                                         options_.name)) {}

GroupCommitWriter::~GroupCommitWriter() { stop(); }

void GroupCommitWriter::stop() {
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
  }
  work_cv_.notify_all();
  space_cv_.notify_all();
  std::lock_guard join(join_mutex_);
  if (thread_.joinable()) thread_.join();
}

void GroupCommitWriter::note_refusal(const char* reason) {
  refused_.fetch_add(1, std::memory_order_relaxed);
  metrics_->refused.inc();
  // A flood refuses thousands of writes a second: one line per second carries the cause and the count.
  const int64_t now_ms =
      std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now().time_since_epoch()).count();
  int64_t last = last_refusal_log_ms_.load(std::memory_order_relaxed);
  if (now_ms - last < 1000 || !last_refusal_log_ms_.compare_exchange_strong(last, now_ms)) return;
  log::warning("lmdb")
      .phase("submit")
      .event("write_refused")
      .kv("env", options_.name)
      .kv("reason", reason)
      .kv("max_queue", static_cast<uint64_t>(options_.max_queue))
      .kv("refused_total", refused_.load(std::memory_order_relaxed));
}

bool GroupCommitWriter::submit(runtime::Loop& loop, std::weak_ptr<void> alive, Write write, Done done) {
  const char* refusal = nullptr;
  {
    std::lock_guard lock(mutex_);
    if (stopping_) {
      refusal = "stopping";
    } else if (queue_.size() >= options_.max_queue) {
      refusal = "queue_full";
    } else {
      queue_.push_back(Pending{&loop, std::move(alive), std::move(write), std::move(done), Clock::now()});
      metrics_->queue_depth.set(static_cast<int64_t>(queue_.size()));
    }
  }
  if (refusal) {
    note_refusal(refusal);
    return false;
  }
  work_cv_.notify_one();
  return true;
}

common::Result<void> GroupCommitWriter::submit_and_wait(Write write) {
  if (std::this_thread::get_id() == writer_id_)
    return common::fail(ErrorKind::Internal, options_.name + ": submit_and_wait from inside a write would deadlock");
  std::promise<common::Result<void>> promise;
  auto future = promise.get_future();
  {
    std::unique_lock lock(mutex_);
    space_cv_.wait(lock, [this] { return stopping_ || queue_.size() < options_.max_queue; });
    if (stopping_) return common::fail(ErrorKind::TempFail, options_.name + ": the group-commit writer is stopping");
    queue_.push_back(Pending{nullptr, {}, std::move(write),
                             [&promise](common::Result<void> r) { promise.set_value(std::move(r)); }, Clock::now()});
    metrics_->queue_depth.set(static_cast<int64_t>(queue_.size()));
  }
  work_cv_.notify_one();
  return future.get();
}

GroupCommitStats GroupCommitWriter::stats() const {
  GroupCommitStats s;
  s.writes_committed = writes_committed_.load();
  s.writes_rolled_back = writes_rolled_back_.load();
  s.writes_lost = writes_lost_.load();
  s.batches_committed = batches_committed_.load();
  s.commits_failed = commits_failed_.load();
  s.refused = refused_.load();
  s.max_batch_seen = max_batch_seen_.load();
  return s;
}

size_t GroupCommitWriter::queued() const {
  std::lock_guard lock(mutex_);
  return queue_.size();
}

void GroupCommitWriter::run() {
  for (;;) {
    {
      std::unique_lock lock(mutex_);
      work_cv_.wait(lock, [this] { return stopping_ || !queue_.empty(); });
      if (queue_.empty()) return;  // stopping, and every queued write is done
    }
    run_batch();
  }
}

// Takes the next write of the batch, or says the batch is complete: the queue drained, the batch
// is full, or it has been open for max_delay (a steady stream must not hold back acknowledgements).
bool GroupCommitWriter::pop(Pending& out, size_t batch_size, Clock::time_point batch_start) {
  std::unique_lock lock(mutex_);
  const bool first = batch_size == 0;
  if (queue_.empty() && !first && !stopping_ && options_.linger.count() > 0 && batch_size < last_batch_) {
    const auto until = std::min(Clock::now() + options_.linger, batch_start + options_.max_delay);
    work_cv_.wait_until(lock, until, [this] { return !queue_.empty() || stopping_; });
  }
  if (queue_.empty()) return false;
  if (!first && Clock::now() - batch_start >= options_.max_delay) return false;
  out = std::move(queue_.front());
  queue_.pop_front();
  metrics_->queue_depth.set(static_cast<int64_t>(queue_.size()));
  space_cv_.notify_one();
  return true;
}

void GroupCommitWriter::run_batch() {
  std::deque<Finished> batch;
  const auto batch_start = Clock::now();
  auto parent = Txn::begin(env_, true);
  Pending p;
  while (batch.size() < options_.max_batch && pop(p, batch.size(), batch_start)) {
    common::Result<void> r;
    if (!parent) {
      r = tl::unexpected(parent.error());  // nothing can run; the writes fail rather than wait forever
    } else {
      auto child = Txn::nested(*parent);
      if (!child) {
        r = tl::unexpected(child.error());
      } else {
        r = p.write(*child);
        if (r) r = child->commit();
        // Otherwise ~Txn aborts the child: only this write's changes are dropped.
      }
    }
    if (!r) {
      writes_rolled_back_.fetch_add(1, std::memory_order_relaxed);
      metrics_->writes_rolled_back.inc();
      // Often the write's own check (a quota), which its caller reports; logged for the record.
      log::info("lmdb")
          .phase("write")
          .event("write_rolled_back")
          .kv("env", options_.name)
          .kv("reason", r.error().detail);
    }
    batch.push_back(Finished{std::move(p), std::move(r)});
  }
  if (batch.empty()) return;  // stop() raced with the wake-up; parent aborts
  last_batch_ = batch.size();
  uint64_t ok = 0;
  for (const auto& f : batch) ok += f.result.has_value();

  common::Result<void> committed;
  if (parent) {
    const auto t0 = Clock::now();
    committed = parent->commit();
    metrics_->commit_seconds.observe(std::chrono::duration<double>(Clock::now() - t0).count());
  } else {
    committed = tl::unexpected(parent.error());
  }
  if (!committed) {
    commits_failed_.fetch_add(1, std::memory_order_relaxed);
    metrics_->commits_failed.inc();
    writes_lost_.fetch_add(ok, std::memory_order_relaxed);
    metrics_->writes_lost.inc(ok);
    log::error("lmdb")
        .phase("commit")
        .event("commit_failed")
        .kv("env", options_.name)
        .kv("writes", static_cast<uint64_t>(batch.size()))
        .kv("reason", committed.error().detail);
    // Nothing of the batch is on disk: a write that was fine reports the commit's error.
    for (auto& f : batch)
      if (f.result) f.result = committed;
  } else if (ok > 0) {
    batches_committed_.fetch_add(1, std::memory_order_relaxed);
    writes_committed_.fetch_add(ok, std::memory_order_relaxed);
    metrics_->commits.inc();
    metrics_->writes_committed.inc(ok);
    metrics_->writes_per_commit.observe(static_cast<double>(ok));
    uint64_t seen = max_batch_seen_.load(std::memory_order_relaxed);
    while (ok > seen && !max_batch_seen_.compare_exchange_weak(seen, ok)) {
    }
  }
  const auto now = Clock::now();
  for (const auto& f : batch)
    metrics_->write_wait_seconds.observe(std::chrono::duration<double>(now - f.pending.submitted).count());
  deliver(batch);
}

void GroupCommitWriter::deliver(std::deque<Finished>& batch) {
  for (auto& f : batch) {
    if (f.pending.loop == nullptr) {
      f.pending.done(std::move(f.result));
      continue;
    }
    // Checked on the loop thread, where the session is destroyed, so it cannot die in between.
    f.pending.loop->post([alive = std::move(f.pending.alive), done = std::move(f.pending.done),
                          result = std::move(f.result)]() mutable {
      if (alive.lock()) done(std::move(result));
    });
  }
}

}  // namespace common::lmdb
