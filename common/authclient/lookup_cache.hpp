// lookup_cache.hpp: a TTL cache with LRU eviction bounded by entries and by bytes, for authserv
// lookup answers. Pure and not thread-safe: AuthClient holds it under its mutex.
#pragma once

#include <chrono>
#include <cstddef>
#include <list>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>

namespace common::authclient {

template <class V>
class LookupCache {
 public:
  using TimePoint = std::chrono::steady_clock::time_point;

  // Both bounds hold after every put: a sieve script in a UserInfo can be large, so counting
  // entries alone would not bound memory.
  LookupCache(size_t max_entries, size_t max_bytes) : max_entries_(max_entries), max_bytes_(max_bytes) {}
  LookupCache(const LookupCache&) = delete;
  LookupCache& operator=(const LookupCache&) = delete;

  // A copy of the value if present and not expired at `now`; an expired entry is dropped.
  std::optional<V> get(std::string_view key, TimePoint now) {
    auto it = index_.find(key);
    if (it == index_.end()) return std::nullopt;
    auto node = it->second;
    if (now >= node->expires) {
      erase(it);
      return std::nullopt;
    }
    lru_.splice(lru_.begin(), lru_, node);  // most recently used first
    return node->value;
  }

  // `cost`: the caller's estimate of the value's heap bytes; the key and bookkeeping are added here.
  void put(std::string key, V value, size_t cost, TimePoint expires) {
    if (auto it = index_.find(key); it != index_.end()) erase(it);
    size_t total = cost + key.size() + kOverhead;
    if (max_entries_ == 0 || total > max_bytes_) return;  // would evict everything else for nothing
    lru_.push_front(Entry{std::move(key), std::move(value), total, expires});
    index_.emplace(lru_.front().key, lru_.begin());
    bytes_ += total;
    while (index_.size() > max_entries_ || bytes_ > max_bytes_) erase(index_.find(lru_.back().key));
  }

  void clear() {
    index_.clear();
    lru_.clear();
    bytes_ = 0;
  }
  size_t size() const { return index_.size(); }
  size_t bytes() const { return bytes_; }

 private:
  // List node, two map slots and the hash node, roughly.
  static constexpr size_t kOverhead = 96;

  struct Entry {
    std::string key;
    V value;
    size_t cost;
    TimePoint expires;
  };
  using Node = typename std::list<Entry>::iterator;
  // Views into the list nodes' keys, which never move or change while indexed.
  using Index = std::unordered_map<std::string_view, Node>;

  void erase(typename Index::iterator it) {
    Node node = it->second;
    bytes_ -= node->cost;
    index_.erase(it);
    lru_.erase(node);
  }

  size_t max_entries_;
  size_t max_bytes_;
  size_t bytes_ = 0;
  std::list<Entry> lru_;
  Index index_;
};

}  // namespace common::authclient
