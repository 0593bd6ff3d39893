// uv_handle.hpp: ownership of libuv handles, for every library on a loop. The handle memory lives
// until libuv's close callback, because libuv may still touch it after uv_close returns; moving a
// UvHandle moves the ownership, never the handle.
#pragma once

#include <memory>
#include <utility>

#include <uv.h>

namespace common {

template <class T>
class UvHandle {
 public:
  UvHandle() : handle_(std::make_unique<T>()) {}
  ~UvHandle() { close(); }
  UvHandle(const UvHandle&) = delete;
  UvHandle& operator=(const UvHandle&) = delete;
  UvHandle(UvHandle&& other) noexcept
      : handle_(std::move(other.handle_)), initialized_(std::exchange(other.initialized_, false)) {}
  UvHandle& operator=(UvHandle&& other) noexcept {
    if (this != &other) {
      close();
      handle_ = std::move(other.handle_);
      initialized_ = std::exchange(other.initialized_, false);
    }
    return *this;
  }

  T* get() const { return handle_.get(); }
  T* operator->() const { return handle_.get(); }
  uv_handle_t* base() const { return reinterpret_cast<uv_handle_t*>(handle_.get()); }
  uv_stream_t* stream() const { return reinterpret_cast<uv_stream_t*>(handle_.get()); }

  // Call once uv_*_init succeeded; before that, closing just frees the memory.
  void set_initialized() { initialized_ = true; }
  bool initialized() const { return initialized_ && handle_ != nullptr; }

  void close() {
    if (!handle_) return;
    T* raw = handle_.release();
    if (!initialized_) {
      std::unique_ptr<T> drop(raw);
      return;
    }
    raw->data = nullptr;
    uv_close(reinterpret_cast<uv_handle_t*>(raw), [](uv_handle_t* h) { std::unique_ptr<T> drop(reinterpret_cast<T*>(h)); });
  }

 private:
  std::unique_ptr<T> handle_;
  bool initialized_ = false;
};

}  // namespace common
