// kept_memory.hpp: an argon2id memory area a hashing thread keeps between hashes ([password]
// hash_memory = "kept"). libsodium maps, faults in and unmaps argon2_memory for every hash; on a
// VM that page work costs about as much CPU as the hash itself (bench/authserv/README.md). While
// one of these lives on a thread, verify() of an argon2id hash at exactly its memory cost runs in
// it through libargon2's allocation callbacks (same result, bit for bit); libargon2 wipes the
// area after every hash, so nothing derived from a password stays in it between logins.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>

namespace authserv::password {

class KeptHashMemory {
 public:
  // Maps `bytes` (argon2_memory), asks for huge pages and touches every page once, so the first
  // hash pays no faults either. ok() is false when the mapping failed; the thread then keeps
  // hashing as before (libsodium, memory per hash).
  explicit KeptHashMemory(size_t bytes);
  ~KeptHashMemory();  // unmaps; the thread goes back to whatever it used before
  KeptHashMemory(const KeptHashMemory&) = delete;
  KeptHashMemory& operator=(const KeptHashMemory&) = delete;

  bool ok() const { return base_ != nullptr; }
  size_t bytes() const { return bytes_; }
  // Hashes run in this area so far.
  uint64_t hashes() const { return hashes_; }
  // The area itself, for tests that check it is wiped after a hash.
  std::span<const unsigned char> area() const { return {base_, base_ ? bytes_ : 0}; }

  // The calling thread's area, or null.
  static KeptHashMemory* current();

 private:
  friend int kept_allocate(uint8_t** memory, size_t bytes);
  friend void kept_release(uint8_t* memory, size_t bytes);
  unsigned char* base_ = nullptr;
  size_t bytes_ = 0;
  bool lent_ = false;  // inside a hash
  uint64_t hashes_ = 0;
  KeptHashMemory* previous_ = nullptr;
};

}  // namespace authserv::password
