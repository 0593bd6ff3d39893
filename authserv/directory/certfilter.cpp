// certfilter.cpp: equality-only LDAP filter and DN parsing for certmap searches (see certfilter.hpp).
#include "authserv/directory/certfilter.hpp"

#include "authserv/directory/names.hpp"

namespace authserv::directory {
namespace {

using common::ErrorKind;
using common::fail;

int hex(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

bool attr_char(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
         c == '.' || c == ';';
}

class FilterParser {
 public:
  explicit FilterParser(std::string_view f) : f_(f) {}

  common::Result<std::vector<FilterTerm>> run() {
    if (!filter(0)) return fail(ErrorKind::Protocol, "unsupported filter: " + why_);
    if (pos_ != f_.size()) return fail(ErrorKind::Protocol, "unsupported filter: text after the filter");
    return std::move(terms_);
  }

 private:
  bool bad(std::string why) {
    why_ = std::move(why);
    return false;
  }
  bool eat(char c) {
    if (pos_ < f_.size() && f_[pos_] == c) {
      ++pos_;
      return true;
    }
    return false;
  }

  bool filter(int depth) {
    if (depth > 8) return bad("nested too deep");
    if (!eat('(')) return bad("expected '('");
    if (eat('&')) {
      if (pos_ >= f_.size() || f_[pos_] != '(') return bad("empty '&'");
      while (pos_ < f_.size() && f_[pos_] == '(') {
        if (!filter(depth + 1)) return false;
      }
    } else if (!item()) {
      return false;
    }
    return eat(')') || bad("expected ')'");
  }

  bool item() {
    const size_t start = pos_;
    while (pos_ < f_.size() && attr_char(f_[pos_])) ++pos_;
    if (pos_ == start) return bad("expected an attribute type (only '&' and equality are understood)");
    FilterTerm t;
    t.attr = ascii_lower(f_.substr(start, pos_ - start));
    if (!eat('=')) return bad("only equality terms are understood");
    if (f_.substr(pos_, 2) == "*)") {
      ++pos_;
      t.present = true;
    } else {
      while (pos_ < f_.size() && f_[pos_] != ')') {
        const char c = f_[pos_];
        if (c == '*') return bad("substring matches are not understood");
        if (c == '(' || c == '\0') return bad("unescaped '(' or NUL in a value");
        if (c == '\\') {
          const int hi = pos_ + 1 < f_.size() ? hex(f_[pos_ + 1]) : -1;
          const int lo = pos_ + 2 < f_.size() ? hex(f_[pos_ + 2]) : -1;
          if (hi < 0 || lo < 0) return bad("bad escape (RFC 4515: a backslash and two hex digits)");
          t.value.push_back(static_cast<char>(hi * 16 + lo));
          pos_ += 3;
        } else {
          t.value.push_back(c);
          ++pos_;
        }
      }
      if (t.value.empty()) return bad("empty value");
    }
    if (terms_.size() == kMaxFilterTerms) return bad("too many terms");
    terms_.push_back(std::move(t));
    return true;
  }

  std::string_view f_;
  size_t pos_ = 0;
  std::vector<FilterTerm> terms_;
  std::string why_;
};

std::string_view trim(std::string_view s) {
  while (!s.empty() && s.front() == ' ') s.remove_prefix(1);
  while (!s.empty() && s.back() == ' ' && !(s.size() >= 2 && s[s.size() - 2] == '\\')) s.remove_suffix(1);
  return s;
}

// RFC 4514 §3: "\," style and "\XX" escapes.
common::Result<std::string> unescape_dn_value(std::string_view v) {
  std::string out;
  for (size_t i = 0; i < v.size(); ++i) {
    if (v[i] != '\\') {
      out.push_back(v[i]);
      continue;
    }
    if (i + 1 >= v.size()) return fail(ErrorKind::Protocol, "DN ends in a backslash");
    const int hi = hex(v[i + 1]), lo = i + 2 < v.size() ? hex(v[i + 2]) : -1;
    if (hi >= 0 && lo >= 0) {
      out.push_back(static_cast<char>(hi * 16 + lo));
      i += 2;
    } else {
      out.push_back(v[++i]);
    }
  }
  return out;
}

}  // namespace

common::Result<std::vector<FilterTerm>> parse_cert_filter(std::string_view filter) {
  if (filter.size() > kMaxFilter) return fail(ErrorKind::Protocol, "unsupported filter: longer than 4096 bytes");
  return FilterParser(filter).run();
}

common::Result<std::vector<std::pair<std::string, std::string>>> parse_base_dn(std::string_view dn) {
  std::vector<std::pair<std::string, std::string>> out;
  if (dn.size() > kMaxFilter) return fail(ErrorKind::Protocol, "base DN longer than 4096 bytes");
  size_t start = 0;
  for (size_t i = 0; i <= dn.size(); ++i) {
    if (i < dn.size() && dn[i] == '\\') {
      ++i;  // the escaped byte (or the first hex digit) cannot end an RDN
      continue;
    }
    if (i < dn.size() && dn[i] == '+') return fail(ErrorKind::Protocol, "multi-valued RDN in base DN");
    if (i < dn.size() && dn[i] != ',') continue;
    const std::string_view rdn = dn.substr(start, i - start);
    start = i + 1;
    if (trim(rdn).empty() && out.empty() && i == dn.size()) break;  // "" is the root
    const size_t eq = rdn.find('=');
    if (eq == std::string_view::npos) return fail(ErrorKind::Protocol, "RDN without '=' in base DN");
    auto value = unescape_dn_value(trim(rdn.substr(eq + 1)));
    if (!value) return tl::unexpected(value.error());
    std::string type = ascii_lower(trim(rdn.substr(0, eq)));
    if (type == "domaincomponent") type = "dc";
    if (type == "userid") type = "uid";
    out.emplace_back(std::move(type), ascii_lower(*value));
  }
  return out;
}

}  // namespace authserv::directory
