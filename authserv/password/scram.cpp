// scram.cpp: SCRAM-SHA-256 stored verifiers (RFC 5802 §3, RFC 7677) in Dovecot's
// "{SCRAM-SHA-256}iter,salt,StoredKey,ServerKey" form; PBKDF2-HMAC-SHA256 over libsodium.
#include <algorithm>
#include <charconv>
#include <string>

#include "authserv/password/internal.hpp"
#include "common/ascii.hpp"
#include "common/text/base64.hpp"
#include "authserv/password/password.hpp"

namespace authserv::password {
namespace {

using detail::bytes;
using detail::Secret;
constexpr size_t kKeyLen = crypto_auth_hmacsha256_BYTES;  // 32
constexpr size_t kMinSalt = 8, kMaxSalt = 64;
constexpr std::string_view kPrefix = "{SCRAM-SHA-256}";

// Wipes an HMAC state keyed with the password.
struct HmacState {
  crypto_auth_hmacsha256_state st;
  ~HmacState() { sodium_memzero(&st, sizeof st); }
};

void hmac(const unsigned char* key, size_t key_len, std::string_view msg, unsigned char* out) {
  HmacState h;
  crypto_auth_hmacsha256_init(&h.st, key, key_len);
  crypto_auth_hmacsha256_update(&h.st, bytes(msg), msg.size());
  crypto_auth_hmacsha256_final(&h.st, out);
}

// PBKDF2 (RFC 8018 §5.2) with dkLen = hLen, so a single block: Hi() of RFC 5802 §2.2.
void hi(std::string_view password, std::string_view salt, uint32_t iterations, unsigned char* out) {
  HmacState keyed;  // keyed once, copied per round: the key schedule is not redone 4096 times
  crypto_auth_hmacsha256_init(&keyed.st, bytes(password), password.size());
  Secret<kKeyLen> u;
  {
    HmacState h{keyed};
    const unsigned char block_index[4] = {0, 0, 0, 1};
    crypto_auth_hmacsha256_update(&h.st, bytes(salt), salt.size());
    crypto_auth_hmacsha256_update(&h.st, block_index, sizeof block_index);
    crypto_auth_hmacsha256_final(&h.st, u.b);
  }
  std::copy(u.b, u.b + kKeyLen, out);
  for (uint32_t i = 1; i < iterations; ++i) {
    HmacState h{keyed};
    crypto_auth_hmacsha256_update(&h.st, u.b, kKeyLen);
    crypto_auth_hmacsha256_final(&h.st, u.b);
    for (size_t j = 0; j < kKeyLen; ++j) out[j] ^= u.b[j];
  }
}

std::string as_string(const unsigned char* p, size_t n) {
  return std::string(reinterpret_cast<const char*>(p), n);
}

}  // namespace

common::Result<ScramVerifier> derive_scram_sha256(std::string_view password, std::string_view salt,
                                                  uint32_t iterations) {
  if (!detail::sodium_ready()) return common::fail(common::ErrorKind::Internal, "sodium_init failed");
  if (password.size() > kMaxPassword)
    return common::fail(common::ErrorKind::Protocol, "password too long");
  if (iterations < kScramMinIterations || iterations > kScramMaxIterations)
    return common::fail(common::ErrorKind::Config, "SCRAM iteration count out of range");
  if (salt.size() < kMinSalt || salt.size() > kMaxSalt)
    return common::fail(common::ErrorKind::Config, "SCRAM salt length out of range");
  const PreparedPassword prepared(password);
  Secret<kKeyLen> salted, client_key;
  hi(prepared.view(), salt, iterations, salted.b);
  unsigned char stored_key[crypto_hash_sha256_BYTES], server_key[kKeyLen];
  hmac(salted.b, kKeyLen, "Client Key", client_key.b);
  crypto_hash_sha256(stored_key, client_key.b, kKeyLen);
  hmac(salted.b, kKeyLen, "Server Key", server_key);
  return ScramVerifier{iterations, std::string(salt), as_string(stored_key, sizeof stored_key),
                       as_string(server_key, sizeof server_key)};
}

common::Result<ScramVerifier> make_scram_sha256(std::string_view password, uint32_t iterations) {
  if (!detail::sodium_ready()) return common::fail(common::ErrorKind::Internal, "sodium_init failed");
  unsigned char salt[kScramSaltBytes];
  randombytes_buf(salt, sizeof salt);
  return derive_scram_sha256(password, as_string(salt, sizeof salt), iterations);
}

std::string format_scram(const ScramVerifier& v) {
  return std::string(kPrefix) + std::to_string(v.iterations) + ',' + common::text::base64_encode(v.salt) +
         ',' + common::text::base64_encode(v.stored_key) + ',' + common::text::base64_encode(v.server_key);
}

common::Result<ScramVerifier> parse_scram(std::string_view stored) {
  auto bad = [](const char* why) { return common::fail(common::ErrorKind::Protocol, why); };
  if (stored.size() > kMaxStored) return bad("SCRAM verifier too long");
  if (stored.size() < kPrefix.size()) return bad("not a SCRAM-SHA-256 verifier");
  if (!common::ascii::iequals(stored.substr(0, kPrefix.size()), kPrefix)) return bad("not a SCRAM-SHA-256 verifier");
  std::string_view rest = stored.substr(kPrefix.size());
  std::string_view fields[4];
  for (int i = 0; i < 4; ++i) {
    const size_t comma = rest.find(',');
    if ((comma == std::string_view::npos) != (i == 3)) return bad("SCRAM verifier needs 4 fields");
    fields[i] = rest.substr(0, comma);
    if (i < 3) rest.remove_prefix(comma + 1);
  }
  uint32_t iterations = 0;
  const auto [end, ec] =
      std::from_chars(fields[0].data(), fields[0].data() + fields[0].size(), iterations);
  if (ec != std::errc{} || end != fields[0].data() + fields[0].size() ||
      iterations < kScramMinIterations || iterations > kScramMaxIterations)
    return bad("SCRAM iteration count invalid");
  auto salt = common::text::base64_decode(fields[1], kMaxSalt);
  if (!salt || salt->size() < kMinSalt) return bad("SCRAM salt invalid");
  auto stored_key = common::text::base64_decode(fields[2], kKeyLen);
  auto server_key = common::text::base64_decode(fields[3], kKeyLen);
  if (!stored_key || stored_key->size() != kKeyLen || !server_key || server_key->size() != kKeyLen)
    return bad("SCRAM key invalid");
  return ScramVerifier{iterations, std::move(*salt), std::move(*stored_key), std::move(*server_key)};
}

}  // namespace authserv::password
