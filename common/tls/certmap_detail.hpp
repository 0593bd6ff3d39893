// certmap_detail.hpp: what the certmap files share and nobody else uses: error-message text that
// names hostile bytes without echoing them, bounded.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

namespace common::tls::certmap_detail {

inline constexpr size_t kMaxDetail = 160;  // client-derived text in error details (CONVENTIONS: logs)

// A byte named for a message: 'x' when printable, else "byte 0x1f".
inline std::string describe_byte(char c) {
  constexpr char kHex[] = "0123456789abcdef";
  auto u = static_cast<unsigned char>(c);
  if (u >= 0x21 && u < 0x7f) return std::string("'") + c + "'";
  std::string s = "byte 0x";
  s += kHex[u >> 4];
  s += kHex[u & 15];
  return s;
}

inline std::string clip(std::string_view s) {
  if (s.size() <= kMaxDetail) return std::string(s);
  return std::string(s.substr(0, kMaxDetail)) + "...";
}

}  // namespace common::tls::certmap_detail
