// authtoken.hpp: access tokens authserv signs on every login (Ed25519, libsodium) and stores verify
// offline, so a front end can only open mailboxes of users who logged in through it (ARCHITECTURE.md).
#pragma once

#include <array>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "common/result.hpp"

namespace common::authtoken {

// Text form: "pt1." base64url(payload) "." base64url(signature), no padding. The signature covers
// "pt1." plus the encoded payload, so the version cannot be swapped. Payload (big-endian):
//   key id (8) | issued_at i64 | expires_at i64 | session_started_at i64 | token_id (u8 len)
//   | user (u16 len) | front_end (u8 len) | service count u8 | services (u8 len each)
// The bounds below keep the longest token under kMaxToken.
inline constexpr std::string_view kPrefix = "pt1.";
inline constexpr size_t kMaxToken = 2048;
inline constexpr size_t kMaxUser = 320;      // local part 64 + '@' + domain 253, rounded up
inline constexpr size_t kMaxFrontEnd = 255;  // certificate CN or DNS name
inline constexpr size_t kMaxServices = 32;
inline constexpr size_t kMaxServiceName = 24;
inline constexpr size_t kMaxTokenId = 32;
inline constexpr size_t kKeyIdBytes = 8;

struct Claims {
  std::string user;                   // canonical "uid@domain"
  std::vector<std::string> services;  // lowercase access-filter service names ("imap", "pop", ...)
  std::string front_end;              // CN of the front end's mTLS client certificate; never empty
                                      // unless a test config allows unbound tokens
  int64_t issued_at = 0;              // Unix seconds
  int64_t expires_at = 0;
  int64_t session_started_at = 0;     // the login; bounds renewals (max session lifetime)
  std::string token_id;               // random, for logs and revocation lists

  bool allows_service(std::string_view service) const;  // case-insensitive
  friend bool operator==(const Claims&, const Claims&) = default;
};

// A fresh login's claims: random token id, session starting now.
Claims new_claims(std::string user, std::vector<std::string> services, std::string front_end,
                  int64_t now, std::chrono::seconds ttl);
std::string random_token_id();  // 16 random bytes, base64url: 22 characters

// A token bound to no front end (a front end whose certificate has no CN, or plaintext gRPC)
// would open the user's mailbox for any front end that presents it, which is what the binding
// exists to prevent. Signer and Verifier refuse such tokens unless this is set, and only test
// configurations set it ([tokens] allow_unbound = true).
struct BindingPolicy {
  bool allow_unbound = false;
};

// Holds the secret key in sodium_malloc'd memory (guard pages, mlock, zeroed on free).
// sign() is const and touches no shared state, so one Signer serves every thread.
class Signer {
 public:
  // Reads the 32-byte Ed25519 seed from `key_file`, or creates it (mode 0600, from randombytes)
  // when absent. Refuses a file group or others may access, a symlink, or a wrong size. Writes
  // `key_file` + ".pub" (public_key_text()) for distribution to the stores.
  static Result<Signer> load_or_create(const std::filesystem::path& key_file, BindingPolicy binding = {});
  // The same from a seed in memory (tests, tools); `seed` must be 32 bytes.
  static Result<Signer> from_seed(std::span<const std::byte> seed, BindingPolicy binding = {});

  // Fails (Internal) on claims outside the bounds above, which verify() would refuse, and on
  // claims with an empty front_end unless the binding policy allows unbound tokens.
  Result<std::string> sign(const Claims& claims) const;
  std::string public_key_text() const;  // "ed25519:" base64url(32 bytes)
  std::string key_id() const;           // hex of the 8-byte id carried in every token

  // A key for another use of the same secret, from libsodium's KDF (BLAKE2b keyed by the signing
  // seed): the same in every process that loads this key file, and out of reach of anyone who
  // holds only the public key, which every store has. `context` names the use in exactly
  // crypto_kdf_CONTEXTBYTES (8) bytes, `id` numbers keys within it. The seed never leaves the
  // Signer's locked memory. Fails (Internal) on a wrong context length or a moved-from Signer.
  Result<void> derive_key(std::string_view context, uint64_t id, std::span<uint8_t, 32> out) const;

  Signer(Signer&&) noexcept;  // a moved-from Signer must not sign
  Signer& operator=(Signer&&) noexcept;
  ~Signer();

 private:
  struct SecretKey;
  Signer();
  std::unique_ptr<SecretKey> secret_;
  BindingPolicy binding_;
  std::array<uint8_t, 32> public_key_{};
  std::array<uint8_t, kKeyIdBytes> key_id_{};
};

struct VerifierOptions {
  std::chrono::seconds clock_skew{30};  // tolerated difference between authserv's and our clock
  BindingPolicy binding;
};

class Verifier {
 public:
  // Several keys for rotation: stores trust the old and the new key while tokens of both live.
  static Result<Verifier> from_public_keys(std::span<const std::string> texts,
                                           VerifierOptions options = {});

  // Every failure is ErrorKind::Protocol with one detail: "malformed", "unknown_key",
  // "bad_signature", "expired", "issued_in_future", "unbound", "wrong_front_end". Fields are
  // parsed only after the signature checks out; before that, only the bounded framing and the key
  // id. "unbound": the token names no front end, or the caller names none (it does not know who
  // is asking); only a binding policy that allows unbound tokens accepts these, and then an empty
  // expected_front_end skips the front-end check.
  Result<Claims> verify(std::string_view token, int64_t now,
                        std::string_view expected_front_end = {}) const;

  size_t key_count() const { return keys_.size(); }

 private:
  Verifier();  // only from_public_keys: a Verifier always has a key
  // The framing and the signature, then the decoded claims; remembered per thread (token.cpp).
  Result<Claims> signed_claims(std::string_view token) const;
  struct Key {
    std::array<uint8_t, kKeyIdBytes> id;
    std::array<uint8_t, 32> public_key;
  };
  std::vector<Key> keys_;
  VerifierOptions options_;
  uint64_t id_;  // names this key set in the per-thread memory of verified tokens
};

// Renewal by the same front end: same user, services and session, a new token id, issued now,
// expiring at min(now + ttl, session_started_at + max_session). nullopt once the session is over.
// The caller verifies `old` first and re-checks the account (a user made inactive must not renew).
std::optional<Claims> renew(const Claims& old, int64_t now, std::chrono::seconds ttl,
                            std::chrono::seconds max_session);

namespace detail {
// The payload codec, exposed for tests and the fuzz target only.
Result<std::string> encode_payload(const Claims& claims, std::span<const uint8_t, kKeyIdBytes> key_id);
Result<Claims> decode_payload(std::span<const uint8_t> payload);  // key id skipped, not checked
}  // namespace detail

}  // namespace common::authtoken
