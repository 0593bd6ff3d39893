// internal.hpp: helpers shared by password.cpp and scram.cpp: libsodium start-up, wiping.
#pragma once

#include <cstddef>
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

inline const unsigned char* bytes(std::string_view s) {
  return reinterpret_cast<const unsigned char*>(s.data());
}

}  // namespace authserv::password::detail
