// loop.hpp: one libuv loop with a thread-safe post() for results coming from worker threads, gRPC or
// other loops; closes every handle before the loop itself.
#pragma once

#include <deque>
#include <functional>
#include <mutex>

#include <uv.h>

#include "common/uv_handle.hpp"

namespace common::runtime {

class Loop {
 public:
  Loop();
  ~Loop();  // closes remaining handles, runs the loop until they are gone, closes it
  Loop(const Loop&) = delete;
  Loop& operator=(const Loop&) = delete;

  uv_loop_t* get() { return &loop_; }
  // Runs until stop() or until nothing is left to do (the post handle does not keep it alive).
  void run();
  // Thread-safe: `fn` runs on this loop's thread. Many posts share one wakeup (uv_async_send merges).
  void post(std::function<void()> fn);
  // Thread-safe: makes run() return after the current iteration.
  void stop();
  uint64_t now_ms() { return uv_now(&loop_); }

 private:
  void drain_posted();

  uv_loop_t loop_{};
  UvHandle<uv_async_t> async_;
  std::mutex mutex_;
  std::deque<std::function<void()>> posted_;
  bool stop_requested_ = false;
};

}  // namespace common::runtime
