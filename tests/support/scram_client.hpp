// scram_client.hpp: an independent SCRAM-SHA-256 client side for tests (RFC 5802 §3, PBKDF2 written
// out again rather than taken from the code under test) and strict base64 helpers.
#pragma once

#include <sodium.h>

#include <string>
#include <string_view>

namespace test {

// Empty on bad input: used for literals too, where a typo shows up as failing vectors.
inline std::string b64d(std::string_view in) {
  std::string out(in.size(), '\0');
  std::size_t len = 0;
  if (sodium_base642bin(reinterpret_cast<unsigned char*>(out.data()), out.size(), in.data(), in.size(), nullptr,
                        &len, nullptr, sodium_base64_VARIANT_ORIGINAL) != 0)
    return {};
  out.resize(len);
  return out;
}

inline std::string b64e(std::string_view in) {
  std::string out(sodium_base64_encoded_len(in.size(), sodium_base64_VARIANT_ORIGINAL), '\0');
  sodium_bin2base64(out.data(), out.size(), reinterpret_cast<const unsigned char*>(in.data()), in.size(),
                    sodium_base64_VARIANT_ORIGINAL);
  out.resize(out.size() - 1);
  return out;
}

inline std::string hmac_sha256(std::string_view key, std::string_view msg) {
  unsigned char out[32];
  crypto_auth_hmacsha256_state st;
  crypto_auth_hmacsha256_init(&st, reinterpret_cast<const unsigned char*>(key.data()), key.size());
  crypto_auth_hmacsha256_update(&st, reinterpret_cast<const unsigned char*>(msg.data()), msg.size());
  crypto_auth_hmacsha256_final(&st, out);
  return std::string(reinterpret_cast<char*>(out), 32);
}

// ClientProof for `password` (RFC 5802 §3).
inline std::string scram_client_proof(std::string_view password, std::string_view salt, int iterations,
                                      std::string_view auth_message) {
  std::string u = hmac_sha256(password, std::string(salt) + std::string("\0\0\0\1", 4));
  std::string salted = u;
  for (int i = 1; i < iterations; ++i) {
    u = hmac_sha256(password, u);
    for (int k = 0; k < 32; ++k) salted[k] ^= u[k];
  }
  std::string client_key = hmac_sha256(salted, "Client Key");
  unsigned char stored[32];
  crypto_hash_sha256(stored, reinterpret_cast<const unsigned char*>(client_key.data()), 32);
  std::string sig = hmac_sha256(std::string(reinterpret_cast<char*>(stored), 32), auth_message);
  for (int k = 0; k < 32; ++k) client_key[k] ^= sig[k];
  return client_key;
}

}  // namespace test
