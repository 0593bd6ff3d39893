// header_cache.cpp: decoding a header block once into DecodedHeader, and the sharded LRU cache
// that keeps the root headers' for repeated header SEARCHes (header_cache.hpp says why it is safe).
#include "store/search/header_cache.hpp"

#include <algorithm>

#include "common/ascii.hpp"
#include "common/metrics/metrics.hpp"
#include "store/mime/fields.hpp"

namespace store::search {

namespace {

// The entry in its vector (with the vector's slack), a hash node and bucket, and the allocation
// make_shared adds, roughly, on a 64-bit libstdc++.
constexpr size_t kEntryOverhead = 128;
// Shards of at least this budget: small caches get one shard, so that their bound is exact.
constexpr size_t kMinShardBytes = size_t{1} << 20;
constexpr size_t kMaxShards = 16;

struct CacheMetrics {
  common::metrics::Counter& hits;
  common::metrics::Counter& misses;
  common::metrics::Counter& evictions;
  common::metrics::Gauge& bytes;
};

CacheMetrics& metrics() {
  static CacheMetrics m = [] {
    auto& reg = common::metrics::default_registry();
    auto& lookups = reg.counter_family("postern_store_search_header_cache_lookups_total",
                                       "SEARCH header cache lookups (decoded root headers by body), by result",
                                       {"result"});
    return CacheMetrics{lookups.with({"hit"}), lookups.with({"miss"}),
                        reg.counter("postern_store_search_header_cache_evictions_total",
                                    "decoded headers dropped from the SEARCH header cache to stay in its budget"),
                        reg.gauge("postern_store_search_header_cache_bytes",
                                  "bytes the SEARCH header cache holds ([mailstore] search_cache_size bounds it)")};
  }();
  return m;
}

}  // namespace

size_t DecodedHeader::bytes() const {
  return sizeof(DecodedHeader) + text.capacity() + fields.capacity() * sizeof(Field) + kEntryOverhead;
}

DecodedHeader decode_header(std::string_view header, Charsets& charsets) {
  DecodedHeader out;
  for_each_field(header, [&](std::string_view name, std::string_view raw) {
    DecodedHeader::Field f;
    f.start = out.text.size();
    for (char c : name) out.text += common::ascii::lower(c);
    out.text += ": ";
    f.value_at = out.text.size();
    fold_append(decode_header_value(raw, charsets), out.text);
    f.end = out.text.size();
    if (!out.has_date && out.name(f) == "date") {
      out.has_date = true;
      out.sent_day = parse_date_day(mime::clean_value(raw));
    }
    out.fields.push_back(f);
  });
  out.text.shrink_to_fit();
  out.fields.shrink_to_fit();
  return out;
}

HeaderCache::HeaderCache(size_t max_bytes) : max_bytes_(max_bytes) {
  metrics();  // registered at start, so /metrics lists them before the first search
  if (max_bytes_ == 0) return;
  const size_t n = std::clamp<size_t>(max_bytes_ / kMinShardBytes, 1, kMaxShards);
  shard_budget_ = max_bytes_ / n;
  for (size_t i = 0; i < n; ++i) shards_.push_back(std::make_unique<Shard>());
}

HeaderCache::~HeaderCache() {
  size_t held = 0;
  for (const auto& s : shards_) held += s->bytes;
  metrics().bytes.sub(static_cast<int64_t>(held));
}

bool HeaderCache::accepts(MDB_env* env) {
  if (shards_.empty()) return false;
  MDB_env* bound = nullptr;
  if (env_.compare_exchange_strong(bound, env)) return true;
  return bound == env;
}

HeaderCache::Shard& HeaderCache::shard_of(uint64_t body_id) {
  // Ids are consecutive; a multiplicative hash spreads neighbours over the shards.
  const uint64_t h = body_id * 0x9E3779B97F4A7C15ull;
  return *shards_[(h >> 32) % shards_.size()];
}

std::shared_ptr<const DecodedHeader> HeaderCache::find(uint64_t body_id) {
  if (shards_.empty()) return nullptr;
  Shard& s = shard_of(body_id);
  {
    std::lock_guard lock(s.mu);
    auto it = s.index.find(body_id);
    if (it != s.index.end()) {
      hits_.fetch_add(1, std::memory_order_relaxed);
      metrics().hits.inc();
      return s.entries[it->second].header;
    }
  }
  misses_.fetch_add(1, std::memory_order_relaxed);
  metrics().misses.inc();
  return nullptr;
}

void HeaderCache::insert(uint64_t body_id, std::shared_ptr<const DecodedHeader> header) {
  if (shards_.empty() || !header) return;
  const size_t cost = header->bytes();
  if (cost > shard_budget_) return;
  Shard& s = shard_of(body_id);
  // Evicted entries are released after the lock: their last reference may free a lot.
  std::vector<std::shared_ptr<const DecodedHeader>> dropped;
  int64_t freed = 0;
  {
    std::lock_guard lock(s.mu);
    if (s.index.contains(body_id)) return;
    auto next = [&s] {
      s.random ^= s.random << 13;
      s.random ^= s.random >> 7;
      s.random ^= s.random << 17;
      return s.random;
    };
    if (s.bytes + cost > shard_budget_ && next() % kAdmitOneIn != 0) {
      not_admitted_.fetch_add(1, std::memory_order_relaxed);
      return;
    }
    while (s.bytes + cost > shard_budget_ && !s.entries.empty()) {
      const size_t victim = static_cast<size_t>(next() % s.entries.size());
      Entry& e = s.entries[victim];
      const size_t size = e.header->bytes();
      s.bytes -= size;
      freed += static_cast<int64_t>(size);
      s.index.erase(e.body_id);
      dropped.push_back(std::move(e.header));
      if (victim + 1 != s.entries.size()) {
        e = std::move(s.entries.back());
        s.index[e.body_id] = victim;
      }
      s.entries.pop_back();
    }
    s.index.emplace(body_id, s.entries.size());
    s.entries.push_back(Entry{body_id, std::move(header)});
    s.bytes += cost;
  }
  if (!dropped.empty()) {
    evictions_.fetch_add(dropped.size(), std::memory_order_relaxed);
    metrics().evictions.inc(dropped.size());
  }
  metrics().bytes.add(static_cast<int64_t>(cost) - freed);
}

HeaderCache::Stats HeaderCache::stats() const {
  Stats out;
  out.hits = hits_.load(std::memory_order_relaxed);
  out.misses = misses_.load(std::memory_order_relaxed);
  out.evictions = evictions_.load(std::memory_order_relaxed);
  out.not_admitted = not_admitted_.load(std::memory_order_relaxed);
  for (const auto& s : shards_) {
    std::lock_guard lock(s->mu);
    out.entries += s->index.size();
    out.bytes += s->bytes;
  }
  return out;
}

}  // namespace store::search
