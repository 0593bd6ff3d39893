// password.hpp: hashing and verifying stored passwords ({ARGON2}, {SSHA*}, {CRYPT}) and building
// SCRAM-SHA-256 verifiers (RFC 5802/7677, Dovecot's stored format), all of SASLprep'd passwords.
// CPU-heavy: never on an event loop.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "common/result.hpp"

namespace authserv::password {

// libsodium ARGON2ID13 cost; the default is the suite's stored cost (t=3, 64 MiB: about 120 ms here, docs/nss-notes.md §4).
struct Argon2Cost {
  uint64_t ops = 3;
  size_t mem_bytes = size_t{64} << 20;
};

// Inputs longer than these are refused before any hashing, so an attacker cannot make us hash
// megabytes (bcrypt also silently truncates at 72 bytes; we do not rely on that).
inline constexpr size_t kMaxPassword = 1024;
inline constexpr size_t kMaxStored = 1024;

// A password after RFC 4013 SASLprep, which SCRAM clients apply before hashing (RFC 5802 §2.2) and
// PLAIN servers before comparing (RFC 4616 §2): "I\u00ADX", "\u2168" and "IX" are one password.
// Printable ASCII is unchanged. A password SASLprep refuses is used as given. Every hash we make is
// of the prepared form; verify() tries it first, then the bytes as given, for hashes made
// elsewhere without SASLprep. The prepared copy is wiped on destruction.
class PreparedPassword {
 public:
  explicit PreparedPassword(std::string_view password);
  ~PreparedPassword();
  PreparedPassword(const PreparedPassword&) = delete;
  PreparedPassword& operator=(const PreparedPassword&) = delete;

  std::string_view view() const { return changed_ ? std::string_view(prepared_) : given_; }
  // True when SASLprep changed the bytes, so a hash made without it needs a second try.
  bool changed() const { return changed_; }

 private:
  std::string_view given_;
  std::string prepared_;
  bool changed_ = false;
};

// "{ARGON2}$argon2id$v=19$m=...,t=...,p=1$<salt>$<hash>" of the SASLprep'd password.
common::Result<std::string> hash_argon2id(std::string_view password, const Argon2Cost& cost = {});

enum class Verdict {
  Match,
  Mismatch,
  Unsupported,  // a scheme we refuse (unsalted, plain text, weak crypt, argon2 cost over
                // 1 GiB / t=32), or one we do not know
  Malformed,    // a scheme we accept, but the stored value is damaged
};

// Scheme names are case-insensitive. Comparisons are constant-time. The SASLprep'd password is
// tried first, then the bytes as given when SASLprep changed them.
Verdict verify(std::string_view password, std::string_view stored);

// True for anything but argon2id at exactly `cost` (and for garbage): rehash after a login.
bool needs_rehash(std::string_view stored, const Argon2Cost& cost = {});

// RFC 5802 §3 server-side verifier; all fields raw bytes.
struct ScramVerifier {
  uint32_t iterations = 0;
  std::string salt, stored_key, server_key;
};

inline constexpr uint32_t kScramMinIterations = 4096;  // RFC 7677 §4: at least 4096
inline constexpr uint32_t kScramMaxIterations = 10'000'000;
// New verifiers' salt length; SCRAM's fake salts for unknown users have the same length, or the
// s= of a server-first message would tell the two apart (RFC 5802 §9).
inline constexpr size_t kScramSaltBytes = 16;

// Of the SASLprep'd password. Random kScramSaltBytes salt.
common::Result<ScramVerifier> make_scram_sha256(std::string_view password,
                                                uint32_t iterations = kScramMinIterations);
// Same with a given salt (tests, and re-deriving during a login).
common::Result<ScramVerifier> derive_scram_sha256(std::string_view password, std::string_view salt,
                                                  uint32_t iterations);

// "{SCRAM-SHA-256}4096,<b64 salt>,<b64 StoredKey>,<b64 ServerKey>" (Dovecot).
std::string format_scram(const ScramVerifier& v);
common::Result<ScramVerifier> parse_scram(std::string_view stored);

}  // namespace authserv::password
