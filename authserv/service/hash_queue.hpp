// hash_queue.hpp: the bounded, per-source fair queue in front of authserv's password hashing
// threads. A full queue refuses at once (the caller answers "temporary failure"), and one source
// address cannot hold more than its share, so a flood of wrong passwords from one place delays
// everyone else by at most one hash per active source.
#pragma once

#include <condition_variable>
#include <cstddef>
#include <deque>
#include <functional>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>
#include <unordered_map>
#include <vector>

namespace authserv::service {

class HashQueue {
 public:
  // `max_queue` jobs wait in all; one source at most `per_source` of them (0: max_queue / 8, at
  // least 1). Jobs run in round-robin order over the sources that have some waiting. With
  // `kept_memory` (argon2_memory in bytes), each thread keeps a password::KeptHashMemory of that
  // size for its whole life ([password] hash_memory = "kept").
  HashQueue(size_t threads, size_t max_queue, size_t per_source = 0, size_t kept_memory = 0);
  // Finishes running jobs; waiting ones are dropped without running.
  ~HashQueue();
  HashQueue(const HashQueue&) = delete;
  HashQueue& operator=(const HashQueue&) = delete;

  enum class Refusal { None, QueueFull, SourceFull };
  Refusal submit(std::string_view source, std::function<void()> work);

  // IPv4 addresses as they are; IPv6 by /64, the smallest block one subscriber usually gets, so
  // one attacker cannot pose as 2^64 sources. Anything unparsable is one source ("").
  static std::string source_key(std::string_view client_address);

  size_t queued() const;
  size_t threads() const { return threads_.size(); }
  size_t per_source() const { return per_source_; }

 private:
  void run();

  const size_t kept_memory_;
  const size_t max_queue_;
  const size_t per_source_;
  mutable std::mutex mutex_;
  std::condition_variable wake_;
  std::unordered_map<std::string, std::deque<std::function<void()>>> waiting_;
  std::deque<std::string> turns_;  // sources with waiting jobs, next first
  size_t queued_ = 0;
  bool stopping_ = false;
  std::vector<std::thread> threads_;
};

}  // namespace authserv::service
