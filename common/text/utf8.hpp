// utf8.hpp: UTF-8 (RFC 3629) one code point at a time, strict: no overlong forms, surrogates or
// code points past U+10FFFF. For the code that checks, folds or converts text itself (SEARCH,
// mailbox names, modified UTF-7, JSON escapes).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace common::text {

// The length of the valid sequence `s` starts with, its code point in `cp`; 0 when `s` is empty or
// does not start with one.
size_t decode_utf8(std::string_view s, uint32_t& cp);
bool valid_utf8(std::string_view s);
// `cp` must be a code point (at most U+10FFFF).
void append_utf8(std::string& out, uint32_t cp);

}  // namespace common::text
