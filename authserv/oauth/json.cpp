// json.cpp: recursive-descent JSON reader; depth is capped, so recursion is bounded by Limits.
#include "authserv/oauth/json.hpp"

#include <algorithm>
#include <charconv>

#include "common/text/utf8.hpp"

namespace authserv::oauth::json {

using common::ErrorKind;
using common::fail;

const Value* Value::find(std::string_view key) const {
  if (type != Type::Object) return nullptr;
  for (const auto& m : object)
    if (m.key == key) return &m.value;
  return nullptr;
}

namespace {

using common::text::append_utf8;


class Reader {
 public:
  Reader(std::string_view text, const Limits& limits) : s_(text), limits_(limits) {}

  common::Result<Value> document() {
    Value v;
    if (!value(v, 0)) return fail(ErrorKind::Protocol, error_);
    skip_ws();
    if (pos_ != s_.size()) return fail(ErrorKind::Protocol, "trailing");
    return v;
  }

 private:
  bool error(const char* what) {
    if (error_.empty()) error_ = what;
    return false;
  }
  bool at_end() const { return pos_ >= s_.size(); }
  unsigned char peek() const { return static_cast<unsigned char>(s_[pos_]); }
  void skip_ws() {
    while (!at_end() && (peek() == ' ' || peek() == '\t' || peek() == '\n' || peek() == '\r')) ++pos_;
  }
  bool literal(std::string_view word) {
    if (s_.substr(pos_, word.size()) != word) return error("token");
    pos_ += word.size();
    return true;
  }

  bool value(Value& v, size_t depth) {
    skip_ws();
    if (at_end()) return error("truncated");
    switch (peek()) {
      case '{': return object(v, depth + 1);
      case '[': return array(v, depth + 1);
      case '"': v.type = Value::Type::String; return string(v.string);
      case 't': v.type = Value::Type::Bool; v.boolean = true; return literal("true");
      case 'f': v.type = Value::Type::Bool; v.boolean = false; return literal("false");
      case 'n': v.type = Value::Type::Null; return literal("null");
      default: return number(v);
    }
  }

  bool object(Value& v, size_t depth) {
    if (depth > limits_.max_depth) return error("depth");
    v.type = Value::Type::Object;
    ++pos_;  // '{'
    skip_ws();
    if (!at_end() && peek() == '}') { ++pos_; return true; }
    while (true) {
      skip_ws();
      if (at_end() || peek() != '"') return error("expected_key");
      Member m;
      if (!string(m.key)) return false;
      skip_ws();
      if (at_end() || peek() != ':') return error("expected_colon");
      ++pos_;
      if (!value(m.value, depth)) return false;
      v.object.push_back(std::move(m));
      skip_ws();
      if (at_end()) return error("truncated");
      if (peek() == ',') { ++pos_; continue; }
      if (peek() == '}') { ++pos_; break; }
      return error("expected_comma");
    }
    // RFC 7519 §4 / RFC 7515 §4: duplicate names are rejected, so two parsers (ours and the
    // issuer's) can never disagree about which "sub" or "alg" a token carries.
    std::vector<std::string_view> keys;
    keys.reserve(v.object.size());
    for (const auto& m : v.object) keys.push_back(m.key);
    std::sort(keys.begin(), keys.end());
    if (std::adjacent_find(keys.begin(), keys.end()) != keys.end()) return error("duplicate_key");
    return true;
  }

  bool array(Value& v, size_t depth) {
    if (depth > limits_.max_depth) return error("depth");
    v.type = Value::Type::Array;
    ++pos_;  // '['
    skip_ws();
    if (!at_end() && peek() == ']') { ++pos_; return true; }
    while (true) {
      Value item;
      if (!value(item, depth)) return false;
      v.array.push_back(std::move(item));
      skip_ws();
      if (at_end()) return error("truncated");
      if (peek() == ',') { ++pos_; continue; }
      if (peek() == ']') { ++pos_; return true; }
      return error("expected_comma");
    }
  }

  bool hex4(uint32_t& out) {
    if (s_.size() - pos_ < 4) return error("escape");
    out = 0;
    for (int i = 0; i < 4; ++i) {
      unsigned char c = peek();
      uint32_t d;
      if (c >= '0' && c <= '9') d = c - '0';
      else if (c >= 'a' && c <= 'f') d = c - 'a' + 10;
      else if (c >= 'A' && c <= 'F') d = c - 'A' + 10;
      else return error("escape");
      out = out * 16 + d;
      ++pos_;
    }
    return true;
  }

  bool escape(std::string& out) {
    ++pos_;  // '\\'
    if (at_end()) return error("escape");
    unsigned char c = peek();
    ++pos_;
    switch (c) {
      case '"': out += '"'; return true;
      case '\\': out += '\\'; return true;
      case '/': out += '/'; return true;
      case 'b': out += '\b'; return true;
      case 'f': out += '\f'; return true;
      case 'n': out += '\n'; return true;
      case 'r': out += '\r'; return true;
      case 't': out += '\t'; return true;
      case 'u': break;
      default: return error("escape");
    }
    uint32_t cp;
    if (!hex4(cp)) return false;
    if (cp >= 0xDC00 && cp <= 0xDFFF) return error("surrogate");  // a low half alone
    if (cp >= 0xD800 && cp <= 0xDBFF) {
      uint32_t low;
      if (s_.substr(pos_, 2) != "\\u") return error("surrogate");
      pos_ += 2;
      if (!hex4(low)) return false;
      if (low < 0xDC00 || low > 0xDFFF) return error("surrogate");
      cp = 0x10000 + ((cp - 0xD800) << 10) + (low - 0xDC00);
    }
    append_utf8(out, cp);
    return true;
  }

  // One raw UTF-8 sequence (RFC 3629 §4): no overlongs, no surrogates, nothing past U+10FFFF.
  bool utf8(std::string& out) {
    unsigned char c = peek();
    size_t len;
    uint32_t min;
    uint32_t cp;
    if (c >= 0xC2 && c <= 0xDF) { len = 2; min = 0x80; cp = c & 0x1F; }
    else if (c >= 0xE0 && c <= 0xEF) { len = 3; min = 0x800; cp = c & 0x0F; }
    else if (c >= 0xF0 && c <= 0xF4) { len = 4; min = 0x10000; cp = c & 0x07; }
    else return error("utf8");
    if (s_.size() - pos_ < len) return error("utf8");
    for (size_t i = 1; i < len; ++i) {
      unsigned char cc = static_cast<unsigned char>(s_[pos_ + i]);
      if ((cc & 0xC0) != 0x80) return error("utf8");
      cp = (cp << 6) | (cc & 0x3F);
    }
    if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return error("utf8");
    out.append(s_.substr(pos_, len));
    pos_ += len;
    return true;
  }

  bool string(std::string& out) {
    ++pos_;  // '"'
    while (true) {
      if (at_end()) return error("truncated");
      unsigned char c = peek();
      if (c == '"') { ++pos_; return true; }
      if (c == '\\') {
        if (!escape(out)) return false;
      } else if (c < 0x20) {
        return error("control_char");
      } else if (c < 0x80) {
        out += static_cast<char>(c);
        ++pos_;
      } else if (!utf8(out)) {
        return false;
      }
    }
  }

  // RFC 8259 §6 grammar: -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?
  bool number(Value& v) {
    auto digits = [&] {
      size_t start = pos_;
      while (!at_end() && peek() >= '0' && peek() <= '9') ++pos_;
      return pos_ - start;
    };
    size_t start = pos_;
    if (!at_end() && peek() == '-') ++pos_;
    if (at_end() || peek() < '0' || peek() > '9') return error("token");
    if (peek() == '0') {
      ++pos_;
    } else {
      digits();
    }
    bool integral = true;
    if (!at_end() && peek() == '.') {
      ++pos_;
      if (digits() == 0) return error("number");
      integral = false;
    }
    if (!at_end() && (peek() == 'e' || peek() == 'E')) {
      ++pos_;
      if (!at_end() && (peek() == '+' || peek() == '-')) ++pos_;
      if (digits() == 0) return error("number");
      integral = false;
    }
    v.type = Value::Type::Number;
    if (integral) {
      int64_t n = 0;
      auto [end, ec] = std::from_chars(s_.data() + start, s_.data() + pos_, n);
      if (ec == std::errc() && end == s_.data() + pos_) v.integer = n;  // else out of range: no integer
    }
    return true;
  }

  std::string_view s_;
  const Limits& limits_;
  size_t pos_ = 0;
  std::string error_;
};

}  // namespace

common::Result<Value> parse(std::string_view text, const Limits& limits) {
  if (text.size() > limits.max_input) return fail(ErrorKind::Protocol, "oversize");
  return Reader(text, limits).document();
}

}  // namespace authserv::oauth::json
