// worker_pool.hpp: a bounded pool of threads for work that must not run on a loop (password hashing,
// LMDB write transactions, blocking library calls). Results hop back to the caller's loop.
#pragma once

#include <condition_variable>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <thread>
#include <vector>

#include "common/runtime/loop.hpp"

namespace common::runtime {

class WorkerPool {
 public:
  // max_queue bounds waiting jobs, so a flood cannot queue unbounded memory (each argon2id hash alone
  // takes tens of MiB while it runs).
  WorkerPool(size_t threads, size_t max_queue);
  // Finishes running jobs; queued ones are dropped and their `done` is never called.
  ~WorkerPool();
  WorkerPool(const WorkerPool&) = delete;
  WorkerPool& operator=(const WorkerPool&) = delete;

  // Runs `work` on a worker, then `done` on `loop`. False when the queue is full: nothing runs,
  // and the caller answers "try again later".
  bool submit(Loop& loop, std::function<void()> work, std::function<void()> done);
  // Runs `work` on a worker and nothing after it: for callers off any loop (gRPC handlers) that
  // report the result themselves. False when the queue is full.
  bool submit(std::function<void()> work);

  template <class T>
  bool submit(Loop& loop, std::function<T()> work, std::function<void(T)> done) {
    auto slot = std::make_shared<std::optional<T>>();
    return submit(
        loop, [slot, work = std::move(work)] { slot->emplace(work()); },
        [slot, done = std::move(done)] { done(std::move(**slot)); });
  }

  size_t queued() const;
  size_t threads() const { return threads_.size(); }

 private:
  struct Job {
    Loop* loop;  // null: no completion hop
    std::function<void()> work;
    std::function<void()> done;
  };
  void run();

  mutable std::mutex mutex_;
  std::condition_variable cv_;
  std::deque<Job> queue_;
  size_t max_queue_;
  bool stopping_ = false;
  std::vector<std::thread> threads_;
};

}  // namespace common::runtime
