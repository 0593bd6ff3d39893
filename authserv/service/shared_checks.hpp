// shared_checks.hpp: password checks in progress, by credential tag. An attempt identical to one
// being hashed (same user, password, stored hash and change stamp: a phone opening five IMAP
// connections at once, or a repeat login before the first one's hash is done) waits for that
// check's verdict instead of taking an argon2id hash of its own. Thread-safe.
#pragma once

#include <cstddef>
#include <cstring>
#include <functional>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

#include "authserv/service/credential_cache.hpp"

namespace authserv::service {

// What the check in progress concluded; every attempt that waited for it gets the same one.
struct SharedVerdict {
  enum class Kind { Match, Mismatch, TempFail } kind = Kind::TempFail;
  std::string reason;  // Mismatch: the log reason ("wrong_password"); TempFail: the detail
};

class SharedChecks {
 public:
  using Tag = CredentialCache::Tag;
  using Waiter = std::function<void(const SharedVerdict&)>;

  // At most `max_waiters` attempts wait in all; beyond that an attempt is not joined and takes a
  // place in the hashing queue like any other (whose bounds then apply).
  explicit SharedChecks(size_t max_waiters);
  SharedChecks(const SharedChecks&) = delete;
  SharedChecks& operator=(const SharedChecks&) = delete;

  enum class Joined {
    Lead,     // no check of this tag in progress: the caller runs it and must call finish(tag)
    Waiting,  // one is in progress: `waiter` runs with its verdict, on the thread that finishes it
    Full,     // max_waiters wait already: the caller checks on its own, without finish()
  };
  Joined join(const Tag& tag, Waiter waiter);
  // Ends the check of `tag` (a Lead's): the waiters run here, after the tag is free again, so an
  // attempt arriving from now on finds the credential cache filled (or leads a new check).
  void finish(const Tag& tag, const SharedVerdict& verdict);

  size_t waiting() const;
  size_t in_progress() const;

 private:
  struct TagHash {
    // The tag is a keyed hash: its first bytes are as good a hash as any, and an attacker without
    // the key cannot aim at one bucket.
    size_t operator()(const Tag& t) const {
      size_t h;
      std::memcpy(&h, t.data(), sizeof h);
      return h;
    }
  };
  const size_t max_waiters_;
  mutable std::mutex mutex_;
  std::unordered_map<Tag, std::vector<Waiter>, TagHash> checks_;
  size_t waiting_ = 0;
};

}  // namespace authserv::service
