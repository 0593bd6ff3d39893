// timer.hpp: a one-shot or repeating libuv timer owned by its user.
#pragma once

#include <chrono>
#include <functional>

#include "common/uv_handle.hpp"

namespace common::runtime {

class Timer {
 public:
  explicit Timer(uv_loop_t* loop);
  // Replaces any earlier schedule. repeat 0 = one shot.
  void start(std::chrono::milliseconds after, std::function<void()> fn,
             std::chrono::milliseconds repeat = std::chrono::milliseconds(0));
  // Re-arms with the same callback and delay (cheap: for idle timers reset on every read).
  void restart();
  void stop();
  bool active() const;
  // Timers normally keep the loop alive; housekeeping timers should not.
  void unref();

 private:
  UvHandle<uv_timer_t> handle_;
  std::function<void()> fn_;
  std::chrono::milliseconds after_{0};
  std::chrono::milliseconds repeat_{0};
};

}  // namespace common::runtime
