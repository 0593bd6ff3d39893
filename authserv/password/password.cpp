// password.cpp: stored-password schemes: argon2id (ours), plus salted LDAP and crypt(3) values
// accepted on import and replaced by argon2id at the next successful login.
#include "authserv/password/password.hpp"

#include <crypt.h>

#include <algorithm>
#include <array>
#include <charconv>
#include <memory>
#include <optional>

#include "authserv/password/internal.hpp"
#include "common/ascii.hpp"
#include "common/text/base64.hpp"
#include "authserv/password/sha1.hpp"

namespace authserv::password {
namespace {

using detail::bytes;

using common::ascii::iequals;

// Splits "{SCHEME}rest"; nullopt when there is no brace-enclosed scheme.
struct Tagged {
  std::string_view scheme, value;
};
std::optional<Tagged> split_scheme(std::string_view stored) {
  if (stored.empty() || stored.front() != '{') return std::nullopt;
  const size_t close = stored.find('}');
  if (close == std::string_view::npos || close > 32) return std::nullopt;
  return Tagged{stored.substr(1, close - 1), stored.substr(close + 1)};
}

bool const_equal(std::string_view a, std::string_view b) {
  return a.size() == b.size() && sodium_memcmp(a.data(), b.data(), a.size()) == 0;
}

// {SSHA}, {SSHA256}, {SSHA512}: base64(H(password || salt) || salt) (RFC 2307 practice, OpenLDAP).
template <size_t DigestLen, class Digest>
Verdict verify_salted(std::string_view password, std::string_view value, Digest digest) {
  constexpr size_t kMaxSalt = 64;
  const auto raw = common::text::base64_decode(value, DigestLen + kMaxSalt);
  if (!raw || raw->size() <= DigestLen) return Verdict::Malformed;  // no salt: not salted at all
  const std::string_view expect = std::string_view(*raw).substr(0, DigestLen);
  const std::string_view salt = std::string_view(*raw).substr(DigestLen);
  detail::Secret<DigestLen> got;
  digest(password, salt, got.b);
  const bool same = sodium_memcmp(got.b, expect.data(), DigestLen) == 0;
  return same ? Verdict::Match : Verdict::Mismatch;
}

Verdict verify_ssha(std::string_view password, std::string_view value) {
  return verify_salted<20>(password, value, [](auto pw, auto salt, unsigned char* out) {
    detail::Sha1 h;
    h.update({bytes(pw), pw.size()});
    h.update({bytes(salt), salt.size()});
    auto d = h.finish();
    std::copy(d.begin(), d.end(), out);
    sodium_memzero(d.data(), d.size());
  });
}

// {SSHA256} and {SSHA512}: one salted check over libsodium's streaming SHA-2 of either size.
template <size_t N, class State, auto Init, auto Update, auto Final>
Verdict verify_salted_sha2(std::string_view password, std::string_view value) {
  return verify_salted<N>(password, value, [](auto pw, auto salt, unsigned char* out) {
    State st;
    Init(&st);
    Update(&st, bytes(pw), pw.size());
    Update(&st, bytes(salt), salt.size());
    Final(&st, out);
    sodium_memzero(&st, sizeof st);
  });
}

Verdict verify_ssha256(std::string_view password, std::string_view value) {
  return verify_salted_sha2<crypto_hash_sha256_BYTES, crypto_hash_sha256_state, crypto_hash_sha256_init,
                            crypto_hash_sha256_update, crypto_hash_sha256_final>(password, value);
}

Verdict verify_ssha512(std::string_view password, std::string_view value) {
  return verify_salted_sha2<crypto_hash_sha512_BYTES, crypto_hash_sha512_state, crypto_hash_sha512_init,
                            crypto_hash_sha512_update, crypto_hash_sha512_final>(password, value);
}

bool starts_with(std::string_view s, std::string_view p) { return s.substr(0, p.size()) == p; }

// {CRYPT}: only the modern salted crypt(3) methods. Traditional DES and $1$ MD5 are too weak to
// keep accepting: an attacker with the directory cracks them offline.
Verdict verify_crypt(std::string_view password, std::string_view value) {
  const bool modern = starts_with(value, "$6$") || starts_with(value, "$5$") ||
                      starts_with(value, "$y$") || starts_with(value, "$gy$") ||
                      starts_with(value, "$2b$") || starts_with(value, "$2y$") ||
                      starts_with(value, "$2a$");
  if (!modern) return Verdict::Unsupported;
  if (value.size() >= CRYPT_OUTPUT_SIZE || value.find('\0') != std::string_view::npos)
    return Verdict::Malformed;
  // crypt(3) stops at a NUL, so "pw\0anything" would match "pw": refuse instead.
  if (password.find('\0') != std::string_view::npos) return Verdict::Mismatch;
  const std::string setting(value);
  std::string phrase(password);
  auto data = std::make_unique<crypt_data>();  // ~32 KiB: not on the stack
  const char* out = crypt_rn(phrase.c_str(), setting.c_str(), data.get(), sizeof(crypt_data));
  Verdict v = Verdict::Malformed;  // NULL or a "*" failure token: the setting was rejected
  if (out != nullptr && out[0] != '*') v = const_equal(out, value) ? Verdict::Match : Verdict::Mismatch;
  sodium_memzero(data.get(), sizeof(crypt_data));
  sodium_memzero(phrase.data(), phrase.size());
  return v;
}

// Reads the decimal after `key` (e.g. "m=") in a PHC parameter string; nullopt when absent.
std::optional<uint64_t> phc_param(std::string_view value, std::string_view key) {
  const size_t at = value.find(key);
  if (at == std::string_view::npos) return std::nullopt;
  const char* first = value.data() + at + key.size();
  uint64_t n = 0;
  const auto [end, ec] = std::from_chars(first, value.data() + value.size(), n);
  if (ec != std::errc{} || end == first) return std::nullopt;
  return n;
}

// An imported or tampered hash with m=4 GiB or t=1e6 would let each login attempt pin a worker
// thread and its memory; such costs are refused before libsodium allocates anything.
constexpr uint64_t kMaxArgon2MemKiB = uint64_t{1} << 20;  // 1 GiB
constexpr uint64_t kMaxArgon2Ops = 32;

Verdict verify_argon2(std::string_view password, std::string_view value) {
  // libsodium verifies both $argon2id$ (ours) and $argon2i$ (slapd's argon2 module).
  if (!starts_with(value, "$argon2id$") && !starts_with(value, "$argon2i$"))
    return starts_with(value, "$argon2d$") ? Verdict::Unsupported : Verdict::Malformed;
  if (!detail::sodium_ready()) return Verdict::Malformed;
  const auto mem = phc_param(value, "$m="), ops = phc_param(value, ",t=");
  if (!mem || !ops) return Verdict::Malformed;
  if (*mem > kMaxArgon2MemKiB || *ops > kMaxArgon2Ops) return Verdict::Unsupported;
  // A hashing thread with its own memory area ([password] hash_memory = "kept") at this cost.
  if (starts_with(value, "$argon2id$")) {
    if (auto kept = detail::verify_argon2id_kept(password, value)) return *kept ? Verdict::Match : Verdict::Mismatch;
  }
  const std::string str(value);  // NUL-terminated for libsodium
  if (crypto_pwhash_str_verify(str.c_str(), password.data(), password.size()) == 0)
    return Verdict::Match;
  // libsodium answers -1 for both a wrong password and a bad string; parsing the parameters
  // tells them apart (-1 again means the string itself is broken).
  const int parsed = starts_with(value, "$argon2id$")
                         ? crypto_pwhash_argon2id_str_needs_rehash(str.c_str(), 1, crypto_pwhash_MEMLIMIT_MIN)
                         : crypto_pwhash_argon2i_str_needs_rehash(str.c_str(), 1, crypto_pwhash_MEMLIMIT_MIN);
  return parsed == -1 ? Verdict::Malformed : Verdict::Mismatch;
}

}  // namespace

common::Result<std::string> hash_argon2id(std::string_view password, const Argon2Cost& cost) {
  if (!detail::sodium_ready()) return common::fail(common::ErrorKind::Internal, "sodium_init failed");
  if (password.size() > kMaxPassword)
    return common::fail(common::ErrorKind::Protocol, "password too long");
  if (cost.ops < crypto_pwhash_OPSLIMIT_MIN || cost.mem_bytes < crypto_pwhash_MEMLIMIT_MIN)
    return common::fail(common::ErrorKind::Config, "argon2id cost below libsodium minimum");
  const PreparedPassword prepared(password);
  char out[crypto_pwhash_STRBYTES];
  if (crypto_pwhash_str_alg(out, prepared.view().data(), prepared.view().size(), cost.ops, cost.mem_bytes,
                            crypto_pwhash_ALG_ARGON2ID13) != 0)
    return common::fail(common::ErrorKind::TempFail, "argon2id hashing failed (out of memory?)");
  return std::string("{ARGON2}") + out;
}

namespace {

Verdict verify_as_given(std::string_view password, std::string_view stored) {
  // sodium_init picks the fastest implementations and seeds the RNG; it fails only when
  // /dev/urandom is missing, which leaves no safe way to go on.
  if (!detail::sodium_ready()) return Verdict::Malformed;
  if (stored.size() > kMaxStored) return Verdict::Malformed;
  // Refused before hashing so a huge password costs nothing; it cannot match a stored one anyway
  // because set-password enforces the same limit.
  if (password.size() > kMaxPassword) return Verdict::Mismatch;
  const auto tagged = split_scheme(stored);
  // No scheme means plain text in OpenLDAP; storing that lets anyone who reads the directory log
  // in as every user, so we refuse it instead of comparing.
  if (!tagged) return Verdict::Unsupported;
  const auto [scheme, value] = *tagged;
  if (iequals(scheme, "ARGON2")) return verify_argon2(password, value);
  if (iequals(scheme, "SSHA")) return verify_ssha(password, value);
  if (iequals(scheme, "SSHA256")) return verify_ssha256(password, value);
  if (iequals(scheme, "SSHA512")) return verify_ssha512(password, value);
  if (iequals(scheme, "CRYPT")) return verify_crypt(password, value);
  // {CLEARTEXT}, {PLAIN}: plain text. {MD5}, {SHA}, {SHA256}, {SHA512}: unsalted, so one
  // precomputed table cracks every account. {SCRAM-SHA-256} is a SASL verifier, not for PLAIN.
  return Verdict::Unsupported;
}

}  // namespace

Verdict verify(std::string_view password, std::string_view stored) {
  const PreparedPassword prepared(password);
  const Verdict first = verify_as_given(prepared.view(), stored);
  if (first != Verdict::Mismatch || !prepared.changed()) return first;
  return verify_as_given(password, stored);
}

bool needs_rehash(std::string_view stored, const Argon2Cost& cost) {
  if (stored.size() > kMaxStored) return true;
  const auto tagged = split_scheme(stored);
  if (!tagged || !iequals(tagged->scheme, "ARGON2") || !starts_with(tagged->value, "$argon2id$"))
    return true;
  if (!detail::sodium_ready()) return true;
  const std::string str(tagged->value);
  // 0: exactly these parameters; 1: different; -1: not an argon2id string libsodium understands.
  return crypto_pwhash_str_needs_rehash(str.c_str(), cost.ops, cost.mem_bytes) != 0;
}

}  // namespace authserv::password
