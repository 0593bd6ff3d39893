// internal.hpp: helpers shared by password.cpp and scram.cpp: libsodium start-up, base64, wiping.
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

inline const unsigned char* bytes(std::string_view s) {
  return reinterpret_cast<const unsigned char*>(s.data());
}

// Strict RFC 4648 base64 with padding; nullopt for anything else. `max_out` bounds the result.
inline std::optional<std::string> b64_decode(std::string_view in, size_t max_out,
                                             int variant = sodium_base64_VARIANT_ORIGINAL) {
  if (in.empty() || in.size() / 4 * 3 > max_out + 3) return std::nullopt;
  std::string out(in.size() / 4 * 3 + 3, '\0');
  size_t len = 0;
  const char* end = nullptr;
  if (sodium_base642bin(reinterpret_cast<unsigned char*>(out.data()), out.size(), in.data(),
                        in.size(), nullptr, &len, &end, variant) != 0 ||
      end != in.data() + in.size() || len > max_out)
    return std::nullopt;
  out.resize(len);
  return out;
}

inline std::string b64_encode(std::string_view in) {
  std::string out(sodium_base64_ENCODED_LEN(in.size(), sodium_base64_VARIANT_ORIGINAL), '\0');
  sodium_bin2base64(out.data(), out.size(), bytes(in), in.size(), sodium_base64_VARIANT_ORIGINAL);
  out.resize(out.size() - 1);  // drop the terminating NUL
  return out;
}

}  // namespace authserv::password::detail
