// ldap_escape.cpp: RFC 4514 DN value and RFC 4515 filter value escaping (ldap_escape.hpp).
#include "common/text/ldap_escape.hpp"

namespace common::text {
namespace {

constexpr char kHex[] = "0123456789abcdef";

void append_hex(std::string& out, unsigned char c) {
  out += '\\';
  out += kHex[c >> 4];
  out += kHex[c & 15];
}

bool outside_printable_ascii(unsigned char c) { return c < 0x20 || c >= 0x7f; }

}  // namespace

std::string escape_filter_value(std::string_view bytes) {
  std::string out;
  out.reserve(bytes.size() + 8);
  for (char ch : bytes) {
    const auto c = static_cast<unsigned char>(ch);
    if (ch == '*' || ch == '(' || ch == ')' || ch == '\\' || outside_printable_ascii(c)) {
      append_hex(out, c);
    } else {
      out += ch;
    }
  }
  return out;
}

std::string escape_dn_value(std::string_view bytes) {
  std::string out;
  out.reserve(bytes.size() + 8);
  for (size_t i = 0; i < bytes.size(); ++i) {
    const char ch = bytes[i];
    const auto c = static_cast<unsigned char>(ch);
    const bool edge_space = ch == ' ' && (i == 0 || i + 1 == bytes.size());
    if (outside_printable_ascii(c) || edge_space) {
      append_hex(out, c);
    } else if (ch == '"' || ch == '+' || ch == ',' || ch == ';' || ch == '<' || ch == '>' || ch == '\\' ||
               (ch == '#' && i == 0)) {
      out += '\\';
      out += ch;
    } else {
      out += ch;
    }
  }
  return out;
}

}  // namespace common::text
