// loop.cpp: the libuv loop wrapper and its cross-thread post queue.
#include "common/runtime/loop.hpp"

#include <cstdlib>

namespace common::runtime {

Loop::Loop() {
  if (uv_loop_init(&loop_) != 0) std::abort();  // only fails on fd exhaustion at start
  uv_async_init(&loop_, async_.get(), [](uv_async_t* a) {
    if (a->data != nullptr) static_cast<Loop*>(a->data)->drain_posted();
  });
  async_.set_initialized();
  async_->data = this;
  uv_unref(async_.base());  // posts alone do not keep a loop running
}

Loop::~Loop() {
  async_.close();
  uv_walk(
      &loop_,
      [](uv_handle_t* h, void*) {
        if (!uv_is_closing(h)) uv_close(h, nullptr);  // handles nobody owns any more
      },
      nullptr);
  while (uv_run(&loop_, UV_RUN_NOWAIT) != 0) {
  }
  uv_loop_close(&loop_);
}

void Loop::run() {
  {
    std::lock_guard lock(mutex_);
    stop_requested_ = false;
  }
  for (;;) {
    uv_run(&loop_, UV_RUN_DEFAULT);
    std::lock_guard lock(mutex_);
    if (stop_requested_ || posted_.empty()) break;
  }
  drain_posted();
}

void Loop::post(std::function<void()> fn) {
  {
    std::lock_guard lock(mutex_);
    posted_.push_back(std::move(fn));
  }
  uv_async_send(async_.get());
}

void Loop::stop() {
  {
    std::lock_guard lock(mutex_);
    stop_requested_ = true;
  }
  post([this] { uv_stop(&loop_); });
}

void Loop::drain_posted() {
  std::deque<std::function<void()>> batch;
  {
    std::lock_guard lock(mutex_);
    batch.swap(posted_);
  }
  for (auto& fn : batch) fn();
}

}  // namespace common::runtime
