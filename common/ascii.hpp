// ascii.hpp: locale-free ASCII helpers for protocol text (names, keywords, DNs): one definition for
// every parser, since <cctype> depends on the locale and on the sign of char. Encodings (base64,
// LDAP escaping) are in common/text/.
#pragma once

#include <string>
#include <string_view>

namespace common::ascii {

constexpr char lower(char c) { return (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c; }
constexpr bool is_digit(char c) { return c >= '0' && c <= '9'; }
constexpr bool is_alpha(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); }
constexpr bool is_alnum(char c) { return is_digit(c) || is_alpha(c); }
constexpr bool is_hex(char c) { return is_digit(c) || (lower(c) >= 'a' && lower(c) <= 'f'); }
constexpr bool is_blank(char c) { return c == ' ' || c == '\t'; }
constexpr bool is_space(char c) { return is_blank(c) || c == '\r' || c == '\n'; }

// Blanks and line endings off both ends (a value read with its line's CR, padded by an LDIF tool
// or a config writer); never other bytes, whatever the locale.
constexpr std::string_view trim(std::string_view s) {
  while (!s.empty() && is_space(s.front())) s.remove_prefix(1);
  while (!s.empty() && is_space(s.back())) s.remove_suffix(1);
  return s;
}

constexpr bool iequals(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    if (lower(a[i]) != lower(b[i])) return false;
  }
  return true;
}

inline std::string lowered(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = lower(c);
  return out;
}

inline std::string uppered(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = (c >= 'a' && c <= 'z') ? static_cast<char>(c - 'a' + 'A') : c;
  return out;
}

// A byte named for an error message: 'x' when printable, else "byte 0x1f", so a message never
// carries a control byte or a space that hides where the input went wrong.
inline std::string describe_byte(char c) {
  constexpr char kHex[] = "0123456789abcdef";
  auto u = static_cast<unsigned char>(c);
  if (u >= 0x21 && u < 0x7f) return std::string("'") + c + "'";
  std::string s = "byte 0x";
  s += kHex[u >> 4];
  s += kHex[u & 15];
  return s;
}

}  // namespace common::ascii
