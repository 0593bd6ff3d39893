// hash_queue.cpp: per-source round-robin queue for the password hashing threads.
#include "authserv/service/hash_queue.hpp"

#include <algorithm>
#include <optional>

#include "authserv/password/kept_memory.hpp"
#include "common/log/log.hpp"
#include "common/net/address.hpp"

namespace authserv::service {

HashQueue::HashQueue(size_t threads, size_t max_queue, size_t per_source, size_t kept_memory)
    : kept_memory_(kept_memory),
      max_queue_(std::max<size_t>(1, max_queue)),
      per_source_(per_source ? std::min(per_source, max_queue_) : std::max<size_t>(1, max_queue_ / 8)) {
  threads = std::max<size_t>(1, threads);
  threads_.reserve(threads);
  for (size_t i = 0; i < threads; ++i) threads_.emplace_back([this] { run(); });
}

HashQueue::~HashQueue() {
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
    waiting_.clear();
    turns_.clear();
    queued_ = 0;
  }
  wake_.notify_all();
  for (auto& t : threads_) t.join();
}

std::string HashQueue::source_key(std::string_view client_address) {
  auto a = common::net::IpAddress::parse(client_address);
  if (!a) return std::string();
  if (a->is_v4()) return a->to_string();
  std::array<uint8_t, 16> bytes{};
  std::copy_n(a->bytes().begin(), 8, bytes.begin());
  return common::net::IpAddress::v6(bytes).to_string() + "/64";
}

HashQueue::Refusal HashQueue::submit(std::string_view source, std::function<void()> work) {
  {
    std::lock_guard lock(mutex_);
    if (stopping_ || queued_ >= max_queue_) return Refusal::QueueFull;
    auto it = waiting_.find(std::string(source));
    if (it != waiting_.end() && it->second.size() >= per_source_) return Refusal::SourceFull;
    if (it == waiting_.end()) {
      it = waiting_.emplace(std::string(source), std::deque<std::function<void()>>{}).first;
      turns_.push_back(it->first);
    }
    it->second.push_back(std::move(work));
    ++queued_;
  }
  wake_.notify_one();
  return Refusal::None;
}

size_t HashQueue::queued() const {
  std::lock_guard lock(mutex_);
  return queued_;
}

void HashQueue::run() {
  std::optional<password::KeptHashMemory> kept;
  if (kept_memory_ > 0) {
    kept.emplace(kept_memory_);
    if (!kept->ok()) {
      common::log::warning("authserv").phase("start").event("hash_memory_unavailable")
          .kv("bytes", std::to_string(kept_memory_))
          .kv("effect", "this hashing thread maps argon2 memory per hash (libsodium)");
    }
  }
  for (;;) {
    std::function<void()> job;
    {
      std::unique_lock lock(mutex_);
      wake_.wait(lock, [this] { return stopping_ || !turns_.empty(); });
      if (stopping_) return;
      std::string source = std::move(turns_.front());
      turns_.pop_front();
      auto it = waiting_.find(source);
      job = std::move(it->second.front());
      it->second.pop_front();
      --queued_;
      if (it->second.empty()) {
        waiting_.erase(it);
      } else {
        turns_.push_back(std::move(source));  // its next job waits for every other source's turn
      }
    }
    job();
  }
}

}  // namespace authserv::service
