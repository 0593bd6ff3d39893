// loop_thread.hpp: a runtime loop with its connection set on a thread of its own, and a recording
// session for outbound connections: what the tests of outbound connections, the TLS client and the
// SMTP/LMTP client drive from the test thread.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>

#include "common/runtime/connection.hpp"
#include "common/runtime/loop.hpp"
#include "common/runtime/timer.hpp"

namespace test {

class LoopThread {
 public:
  // Loop::run returns when nothing is left to do; the keep-alive timer holds it until the end.
  LoopThread()
      : thread_([this] {
          keepalive_.start(std::chrono::hours(1), [] {}, std::chrono::hours(1));
          loop.run();
        }) {}
  ~LoopThread() {
    on_loop([this] {
      connections.abort_all();
      keepalive_.stop();
    });
    loop.stop();
    thread_.join();
  }
  // Runs fn on the loop thread and waits for it.
  template <class F>
  void on_loop(F fn) {
    std::atomic<bool> done{false};
    loop.post([&] {
      fn();
      done = true;
    });
    while (!done) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }

  common::runtime::Loop loop;
  common::runtime::ConnectionSet connections{loop.get()};

 private:
  common::runtime::Timer keepalive_{loop.get()};
  std::thread thread_;
};

// What a recording session saw, readable from the test thread.
struct Recording {
  mutable std::mutex mutex;
  std::condition_variable changed;
  std::string data;
  bool opened = false;
  std::optional<common::runtime::CloseReason> closed;
  std::optional<common::runtime::SecurityFacts> facts;  // at close, when the transform had them
  // Called on the loop as the connection closes, while its transform still lives (under `mutex`).
  std::function<void(common::runtime::Connection&)> at_close;

  template <class Pred>
  bool wait(Pred pred, std::chrono::milliseconds deadline = std::chrono::seconds(10)) const {
    std::unique_lock lock(mutex);
    return const_cast<std::condition_variable&>(changed).wait_for(lock, deadline, [&] { return pred(); });
  }
  bool wait_for_data(const std::string& needle, std::chrono::milliseconds deadline = std::chrono::seconds(10)) const {
    return wait([&] { return data.find(needle) != std::string::npos; }, deadline);
  }
  bool wait_closed(std::chrono::milliseconds deadline = std::chrono::seconds(10)) const {
    return wait([&] { return closed.has_value(); }, deadline);
  }
  std::string text() const {
    std::lock_guard lock(mutex);
    return data;
  }
};

// Records what arrives; writes `greeting` when it opens. upgrade() is the client's STARTTLS step.
class RecordingSession final : public common::runtime::StartTlsSession {
 public:
  RecordingSession(common::runtime::Connection& c, std::shared_ptr<Recording> rec, std::string greeting = {})
      : StartTlsSession(c), rec_(std::move(rec)), greeting_(std::move(greeting)) {}
  void on_open() override {
    {
      std::lock_guard lock(rec_->mutex);
      rec_->opened = true;
    }
    rec_->changed.notify_all();
    if (!greeting_.empty()) connection().write(greeting_);
  }
  void on_data(std::string_view bytes) override {
    {
      std::lock_guard lock(rec_->mutex);
      rec_->data.append(bytes);
    }
    rec_->changed.notify_all();
  }
  void on_closed(common::runtime::CloseReason reason) override {
    {
      std::lock_guard lock(rec_->mutex);
      rec_->closed = reason;
      auto* t = connection().transform();
      if (t != nullptr && t->facts() != nullptr) rec_->facts = *t->facts();
      if (rec_->at_close) rec_->at_close(connection());
    }
    rec_->changed.notify_all();
  }
  void send(std::string_view bytes) { connection().write(bytes); }
  bool upgrade(std::unique_ptr<common::runtime::Transform> t) {
    {
      std::lock_guard lock(rec_->mutex);
      rec_->data.clear();
    }
    return start_tls("", std::move(t));
  }
  common::runtime::Connection& conn() { return connection(); }

 private:
  size_t forget_plaintext() override { return 0; }
  std::shared_ptr<Recording> rec_;
  std::string greeting_;
};

}  // namespace test
