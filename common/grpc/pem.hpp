// pem.hpp: PEM (RFC 7468) encoding and decoding for the DER that NSS holds and the PEM that gRPC
// takes. Pure: no NSS, no gRPC.
#pragma once

#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "common/result.hpp"

namespace common::rpc {

// "-----BEGIN <label>-----\n", base64 in 64-column lines, "-----END <label>-----\n". The result is
// sized before it is filled, so a private key never leaves copies behind in reallocated memory.
std::string to_pem(std::span<const unsigned char> der, std::string_view label);

// Every "<label>" block of `text`, decoded, in order. Text outside the blocks is ignored
// (OpenSSL-style headers before a block are allowed); a block with bad base64 or no END line is
// an error, and so is text with no block at all.
Result<std::vector<std::string>> from_pem(std::string_view text, std::string_view label);

// Overwrites the bytes of a secret before the string is freed or reused.
void wipe(std::string& secret);

}  // namespace common::rpc
