// credential_cache.hpp: authserv's verified-credential cache. After a password verified against a
// user's stored hash (or an LDAP bind), a keyed hash of (user, password, stored hash, change stamp)
// lets the next login with the same password skip the argon2id hash. Thread-safe.
#pragma once

#include <array>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <list>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_map>

namespace authserv::service {

// What the tag binds: a change of any of these (a new password hash, an LDAP modifyTimestamp)
// makes the old tag useless without anyone having to tell the cache.
struct CredentialFacts {
  std::string_view user;      // canonical uid@domain
  std::string_view password;  // as the client sent it and it was verified
  std::string_view stored;    // the stored hash ("" for LDAP bind)
  std::string_view stamp;     // a change counter (LDAP modifyTimestamp); "" when none
};

class CredentialCache {
 public:
  using Clock = std::chrono::steady_clock;
  // ttl 0 turns the cache off. One entry per user (the last password that worked), so the bound on
  // entries is the bound on memory: about kEntryBytes each plus the user's name.
  CredentialCache(size_t max_entries, std::chrono::seconds ttl);
  ~CredentialCache();
  CredentialCache(const CredentialCache&) = delete;
  CredentialCache& operator=(const CredentialCache&) = delete;

  static constexpr size_t kTagBytes = 32;
  using Tag = std::array<unsigned char, kTagBytes>;

  bool enabled() const { return ttl_.count() > 0 && max_entries_ > 0; }
  // The keyed hash of the facts (also what SharedChecks groups identical attempts by); it means
  // nothing outside this process.
  Tag tag(const CredentialFacts& facts) const;
  // True only when these exact facts were remembered within the TTL. Never a "wrong" answer: a
  // false means "hash it".
  bool verified(const CredentialFacts& facts, Clock::time_point now = Clock::now());
  // The same, for a tag already computed from facts naming `user`.
  bool verified(std::string_view user, const Tag& given, Clock::time_point now = Clock::now());
  // After a successful verification only; failures are never remembered (see README).
  void remember(const CredentialFacts& facts, Clock::time_point now = Clock::now());
  // The embedded directory's admin calls: the user's entry goes at once.
  void forget(std::string_view user);
  void clear();

  size_t size() const;
  size_t memory_bytes() const;
  static constexpr size_t kEntryBytes = 128;  // tag, time, list and map nodes (estimate for metrics)

 private:
  struct Entry {
    std::string user;
    Tag tag;
    Clock::time_point at;
  };

  const size_t max_entries_;
  const std::chrono::seconds ttl_;
  std::array<unsigned char, 32> key_{};  // random per process: tags mean nothing outside it
  mutable std::mutex mutex_;
  std::list<Entry> lru_;  // front: most recently remembered
  std::unordered_map<std::string_view, std::list<Entry>::iterator> index_;
  size_t name_bytes_ = 0;
};

}  // namespace authserv::service
