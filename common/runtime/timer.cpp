// timer.cpp: libuv timer wrapper.
#include "common/runtime/timer.hpp"

namespace common::runtime {

Timer::Timer(uv_loop_t* loop) {
  uv_timer_init(loop, handle_.get());
  handle_.set_initialized();
  handle_->data = this;
}

void Timer::start(std::chrono::milliseconds after, std::function<void()> fn, std::chrono::milliseconds repeat) {
  fn_ = std::move(fn);
  after_ = after;
  repeat_ = repeat;
  restart();
}

void Timer::restart() {
  if (!fn_) return;
  uv_timer_start(
      handle_.get(),
      [](uv_timer_t* t) {
        if (t->data == nullptr) return;
        auto* self = static_cast<Timer*>(t->data);
        // Copy: the callback may destroy or re-arm this timer.
        auto fn = self->fn_;
        fn();
      },
      static_cast<uint64_t>(after_.count()), static_cast<uint64_t>(repeat_.count()));
}

void Timer::stop() { uv_timer_stop(handle_.get()); }

bool Timer::active() const { return uv_is_active(handle_.base()) != 0; }

void Timer::unref() { uv_unref(handle_.base()); }

}  // namespace common::runtime
