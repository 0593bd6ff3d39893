// filter.cpp: RFC 4515/4514 escaping and Sun filter template expansion.
#include "authserv/ldap/filter.hpp"

namespace authserv::ldap {
namespace {

constexpr char kHex[] = "0123456789abcdef";

void append_hex(std::string& out, unsigned char c) {
  out += '\\';
  out += kHex[c >> 4];
  out += kHex[c & 0xf];
}

}  // namespace

std::string escape_filter_value(std::string_view value) {
  std::string out;
  out.reserve(value.size() + 8);
  for (char ch : value) {
    const auto c = static_cast<unsigned char>(ch);
    // Non-ASCII is escaped too: RFC 4515 allows UTF-8 as is, but escaping it means a malformed
    // sequence can never confuse the server's filter parser, and equality matching is unchanged.
    if (c == '*' || c == '(' || c == ')' || c == '\\' || c < 0x20 || c >= 0x7f) {
      append_hex(out, c);
    } else {
      out += ch;
    }
  }
  return out;
}

std::string escape_dn_value(std::string_view value) {
  std::string out;
  out.reserve(value.size() + 8);
  for (size_t i = 0; i < value.size(); ++i) {
    const auto c = static_cast<unsigned char>(value[i]);
    const bool edge_space = c == ' ' && (i == 0 || i + 1 == value.size());
    if (c < 0x20 || c >= 0x7f) {
      append_hex(out, c);
    } else if (c == '"' || c == '+' || c == ',' || c == ';' || c == '<' || c == '>' || c == '\\' ||
               c == '=' || edge_space || (c == '#' && i == 0)) {
      out += '\\';
      out += static_cast<char>(c);
    } else {
      out += static_cast<char>(c);
    }
  }
  return out;
}

common::Result<std::string> expand_filter(std::string_view templ, const FilterVars& vars) {
  if (templ.empty()) return common::fail(common::ErrorKind::Config, "empty search filter template");
  std::string out;
  out.reserve(templ.size() + vars.login.size() * 2);
  for (size_t i = 0; i < templ.size(); ++i) {
    if (templ[i] != '%') {
      out += templ[i];
      continue;
    }
    if (i + 1 == templ.size()) {
      return common::fail(common::ErrorKind::Config, "search filter template ends in %");
    }
    switch (templ[++i]) {
      case 'U': out += escape_filter_value(vars.uid); break;
      case 'u': out += escape_filter_value(vars.login); break;
      case 'd':
      case 'V': out += escape_filter_value(vars.domain); break;  // %V: Sun's name for it
      case 'o': out += escape_filter_value(vars.original); break;
      case '%': out += '%'; break;
      default:
        return common::fail(common::ErrorKind::Config,
                            std::string("unknown %") + templ[i] + " in search filter template");
    }
  }
  if (out.front() != '(') out = "(" + out + ")";
  return out;
}

std::string and_filter(std::string_view a, std::string_view b) {
  std::string out = "(&";
  out += a;
  out += b;
  out += ')';
  return out;
}

}  // namespace authserv::ldap
