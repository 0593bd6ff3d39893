// internal.hpp: helpers shared by token.cpp and signer.cpp (key ids, the signing input). Not
// installed API. Base64url is common/text's strict one.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>

#include "common/authtoken/authtoken.hpp"

namespace common::authtoken::internal {

inline std::string_view as_chars(std::span<const uint8_t> bytes) {
  return {reinterpret_cast<const char*>(bytes.data()), bytes.size()};
}

// First 8 bytes of BLAKE2b-128 of the public key: names the key in every token.
std::array<uint8_t, kKeyIdBytes> key_id_of(std::span<const uint8_t, 32> public_key);

// What the signature covers: "pt1." and the encoded payload.
std::string signing_input(std::string_view payload_b64);

void ensure_sodium();  // sodium_init once; aborts if the library cannot start (no safe RNG)

}  // namespace common::authtoken::internal
