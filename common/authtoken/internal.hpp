// internal.hpp: helpers shared by token.cpp and signer.cpp (base64url, key ids). Not installed API.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>

#include "common/authtoken/authtoken.hpp"

namespace common::authtoken::internal {

// libsodium's URL-safe alphabet without padding.
std::string b64url_encode(std::span<const uint8_t> bytes);
// Strict: rejects padding, other characters and non-zero trailing bits, so one token has
// exactly one spelling. nullopt when invalid or longer than `max_out` bytes.
std::optional<std::string> b64url_decode(std::string_view text, size_t max_out);

// First 8 bytes of BLAKE2b-128 of the public key: names the key in every token.
std::array<uint8_t, kKeyIdBytes> key_id_of(std::span<const uint8_t, 32> public_key);

// What the signature covers: "pt1." and the encoded payload.
std::string signing_input(std::string_view payload_b64);

void ensure_sodium();  // sodium_init once; aborts if the library cannot start (no safe RNG)

}  // namespace common::authtoken::internal
