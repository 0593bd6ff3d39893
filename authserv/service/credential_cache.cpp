// credential_cache.cpp: the verified-credential cache: libsodium keyed BLAKE2b tags in an LRU.
#include "authserv/service/credential_cache.hpp"

#include <sodium.h>

#include "common/metrics/metrics.hpp"

namespace authserv::service {
namespace {

common::metrics::Gauge& entries_gauge() {
  static auto& g = common::metrics::default_registry()
                       .gauge_family("authserv_password_cache_entries", "verified credentials remembered", {})
                       .with({});
  return g;
}

common::metrics::Family<common::metrics::Counter>& lookups() {
  static auto& f = common::metrics::default_registry().counter_family(
      "authserv_password_cache_lookups_total", "password checks answered from the cache (hit) or hashed (miss)",
      {"result"});
  return f;
}

// Length-prefixed, so ("ab","c") and ("a","bc") give different tags.
void absorb(crypto_generichash_state& st, std::string_view part) {
  const uint64_t n = part.size();
  unsigned char len[8];
  for (int i = 0; i < 8; ++i) len[i] = static_cast<unsigned char>(n >> (8 * i));
  crypto_generichash_update(&st, len, sizeof len);
  crypto_generichash_update(&st, reinterpret_cast<const unsigned char*>(part.data()), part.size());
}

}  // namespace

CredentialCache::CredentialCache(size_t max_entries, std::chrono::seconds ttl) : max_entries_(max_entries), ttl_(ttl) {
  if (sodium_init() < 0) abort();
  randombytes_buf(key_.data(), key_.size());
}

CredentialCache::~CredentialCache() { sodium_memzero(key_.data(), key_.size()); }

CredentialCache::Tag CredentialCache::tag(const CredentialFacts& f) const {
  crypto_generichash_state st;
  crypto_generichash_init(&st, key_.data(), key_.size(), kTagBytes);
  absorb(st, f.user);
  absorb(st, f.password);
  absorb(st, f.stored);
  absorb(st, f.stamp);
  Tag out{};
  crypto_generichash_final(&st, out.data(), out.size());
  sodium_memzero(&st, sizeof st);
  return out;
}

bool CredentialCache::verified(const CredentialFacts& facts, Clock::time_point now) {
  if (!enabled()) return false;
  return verified(facts.user, tag(facts), now);
}

bool CredentialCache::verified(std::string_view user, const Tag& given, Clock::time_point now) {
  if (!enabled()) return false;
  bool hit = false;
  {
    std::lock_guard lock(mutex_);
    auto it = index_.find(user);
    if (it != index_.end()) {
      const Entry& e = *it->second;
      if (now - e.at >= ttl_) {
        name_bytes_ -= e.user.size();
        lru_.erase(it->second);
        index_.erase(it);
      } else {
        hit = sodium_memcmp(e.tag.data(), given.data(), given.size()) == 0;
      }
    }
    entries_gauge().set(static_cast<int64_t>(lru_.size()));
  }
  lookups().with({hit ? "hit" : "miss"}).inc();
  return hit;
}

void CredentialCache::remember(const CredentialFacts& facts, Clock::time_point now) {
  if (!enabled()) return;
  const Tag t = tag(facts);
  std::lock_guard lock(mutex_);
  if (auto it = index_.find(facts.user); it != index_.end()) {
    name_bytes_ -= it->second->user.size();
    lru_.erase(it->second);
    index_.erase(it);
  }
  while (lru_.size() >= max_entries_) {  // oldest out
    name_bytes_ -= lru_.back().user.size();
    index_.erase(lru_.back().user);
    lru_.pop_back();
  }
  lru_.push_front(Entry{std::string(facts.user), t, now});
  index_.emplace(lru_.front().user, lru_.begin());
  name_bytes_ += facts.user.size();
  entries_gauge().set(static_cast<int64_t>(lru_.size()));
}

void CredentialCache::forget(std::string_view user) {
  std::lock_guard lock(mutex_);
  if (auto it = index_.find(user); it != index_.end()) {
    name_bytes_ -= it->second->user.size();
    lru_.erase(it->second);
    index_.erase(it);
  }
  entries_gauge().set(static_cast<int64_t>(lru_.size()));
}

void CredentialCache::clear() {
  std::lock_guard lock(mutex_);
  index_.clear();
  lru_.clear();
  name_bytes_ = 0;
  entries_gauge().set(0);
}

size_t CredentialCache::size() const {
  std::lock_guard lock(mutex_);
  return lru_.size();
}

size_t CredentialCache::memory_bytes() const {
  std::lock_guard lock(mutex_);
  return lru_.size() * kEntryBytes + name_bytes_;
}

}  // namespace authserv::service
