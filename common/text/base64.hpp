// base64.hpp: strict base64 (RFC 4648 §4, padded: SASL, SCRAM, stored hashes) and base64url (§5,
// unpadded: JWS, Postern's access tokens). Strict so that one byte string has one spelling.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace common::text {

inline constexpr size_t kNoLimit = SIZE_MAX;

std::string base64_encode(std::string_view bytes);
// Padding required; no whitespace, no other characters, no non-zero trailing bits. nullopt on
// any of those or when the result would be longer than `max_out` (checked before decoding, so a
// hostile length costs nothing). "" decodes to "".
std::optional<std::string> base64_decode(std::string_view text, size_t max_out = kNoLimit);

// The URL-safe alphabet ('-', '_') without padding (RFC 7515 §2); the same strictness.
std::string base64url_encode(std::string_view bytes);
std::optional<std::string> base64url_decode(std::string_view text, size_t max_out = kNoLimit);

}  // namespace common::text
