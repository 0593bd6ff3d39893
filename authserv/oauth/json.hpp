// json.hpp: a small strict JSON reader (RFC 8259) for JWT headers and claim sets. Untrusted input:
// bounded depth, valid UTF-8 only, no duplicate keys in any object (RFC 7519 §4), no trailing text.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/result.hpp"

namespace authserv::oauth::json {

struct Member;

struct Value {
  enum class Type { Null, Bool, Number, String, Array, Object };
  Type type = Type::Null;
  bool boolean = false;
  std::optional<int64_t> integer;  // Number without fraction or exponent that fits in int64
  std::string string;              // String, unescaped UTF-8 (may hold NUL from \u0000)
  std::vector<Value> array;
  std::vector<Member> object;      // in document order; keys unique

  const Value* find(std::string_view key) const;  // Object member, or nullptr
};

struct Member {
  std::string key;
  Value value;
};

struct Limits {
  size_t max_depth = 8;      // an object or array is one level; scalars at the top are depth 0
  size_t max_input = 8192;
};

// Errors are ErrorKind::Protocol with a short detail naming the fault ("depth", "escape",
// "duplicate_key", "trailing", ...). Never throws on bad input.
common::Result<Value> parse(std::string_view text, const Limits& limits = {});

}  // namespace authserv::oauth::json
