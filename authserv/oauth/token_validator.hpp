// token_validator.hpp: bearer-token (JWT, RFC 7519; compact JWS, RFC 7515) validation for SASL
// OAUTHBEARER (RFC 7628) and XOAUTH2, against issuers and keys from config. Pure: no I/O, no clock.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "common/result.hpp"

namespace authserv::oauth {

inline constexpr size_t kMaxToken = 8192;
inline constexpr size_t kMaxUser = 320;  // local part 64 + '@' + domain 253, rounded up
inline constexpr size_t kMaxKeysPerIssuer = 16;
inline constexpr std::chrono::seconds kMaxLeeway{3600};

struct Issuer {
  std::string issuer;                  // "iss" must equal this, byte for byte
  std::vector<std::string> audiences;  // "aud" (string or array) must hold one; empty = not checked
  std::string user_claim = "email";    // claim naming the user: "email", "sub", "preferred_username"
  // "ed25519:<base64url 32-byte public key>" (alg EdDSA) or "hs256:<base64url secret, >= 32 bytes>"
  // (alg HS256), optionally prefixed "kid=<id>;". The key's type alone fixes the alg it accepts.
  std::vector<std::string> keys;
  std::chrono::seconds leeway{60};  // clock skew allowed on exp, nbf and iat
};

struct Validated {
  std::string user;
  std::string issuer;
  int64_t expires_at = 0;  // Unix seconds ("exp")
};

// Failure details (ErrorKind::Protocol), for logs and counters, never for the client.
namespace reason {
inline constexpr std::string_view kMalformed = "malformed";
inline constexpr std::string_view kUnsupportedAlg = "unsupported_alg";
inline constexpr std::string_view kUnknownKey = "unknown_key";
inline constexpr std::string_view kBadSignature = "bad_signature";
inline constexpr std::string_view kExpired = "expired";
inline constexpr std::string_view kNotYetValid = "not_yet_valid";
inline constexpr std::string_view kWrongIssuer = "wrong_issuer";
inline constexpr std::string_view kWrongAudience = "wrong_audience";
inline constexpr std::string_view kNoUserClaim = "no_user_claim";
}  // namespace reason

class TokenValidator {
 public:
  // ErrorKind::Config for a bad key, duplicate issuer or kid, empty names or a leeway out of range.
  static common::Result<TokenValidator> create(std::vector<Issuer> issuers);

  // Checks, in order: shape and JSON (malformed), alg (unsupported_alg), iss (wrong_issuer), key
  // (unknown_key), signature (bad_signature); then, on signed claims only: exp (required), nbf,
  // iat, aud and the user claim. `now` is Unix seconds.
  common::Result<Validated> validate(std::string_view token, int64_t now) const;

  bool empty() const { return issuers_.empty(); }

  struct Key;
  struct IssuerKeys;

  TokenValidator(TokenValidator&&) noexcept;
  TokenValidator& operator=(TokenValidator&&) noexcept;
  TokenValidator(const TokenValidator&);
  TokenValidator& operator=(const TokenValidator&);
  ~TokenValidator();

 private:
  TokenValidator();
  std::vector<IssuerKeys> issuers_;
};

}  // namespace authserv::oauth
