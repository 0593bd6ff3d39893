// internal.hpp: helpers shared by password.cpp, scram.cpp and kept_memory.cpp: libsodium start-up,
// wiping, the kept-memory argon2id check.
#pragma once

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>

#include <sodium.h>

namespace authserv::password::detail {

// sodium_init once; a function-local static is initialised thread-safely (C++11 §6.7).
inline bool sodium_ready() {
  static const bool ok = sodium_init() >= 0;
  return ok;
}

// Wipes a buffer that held password-derived bytes when it leaves scope.
template <size_t N>
struct Secret {
  unsigned char b[N] = {};
  Secret() = default;
  Secret(const Secret&) = delete;
  Secret& operator=(const Secret&) = delete;
  ~Secret() { sodium_memzero(b, N); }
};

// kept_memory.cpp: an argon2id check in the thread's KeptHashMemory. nullopt when there is none,
// or the hash is not one it can take (another memory cost, p > 1, not libsodium's exact format):
// the caller asks libsodium then.
std::optional<bool> verify_argon2id_kept(std::string_view password, std::string_view value);

inline const unsigned char* bytes(std::string_view s) {
  return reinterpret_cast<const unsigned char*>(s.data());
}

}  // namespace authserv::password::detail
