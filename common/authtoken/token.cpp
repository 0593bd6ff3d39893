// token.cpp: the token payload codec, the Verifier stores run on every MailStore session, and renewal.
#include <sodium.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cstdlib>

#include "common/ascii.hpp"
#include "common/authtoken/authtoken.hpp"
#include "common/authtoken/internal.hpp"
#include "common/text/base64.hpp"

namespace common::authtoken {

namespace internal {

std::array<uint8_t, kKeyIdBytes> key_id_of(std::span<const uint8_t, 32> public_key) {
  std::array<uint8_t, crypto_generichash_BYTES_MIN> hash{};
  crypto_generichash(hash.data(), hash.size(), public_key.data(), public_key.size(), nullptr, 0);
  std::array<uint8_t, kKeyIdBytes> id{};
  std::copy_n(hash.begin(), id.size(), id.begin());
  return id;
}

std::string signing_input(std::string_view payload_b64) {
  std::string s;
  s.reserve(kPrefix.size() + payload_b64.size());
  s.append(kPrefix).append(payload_b64);
  return s;
}

void ensure_sodium() {
  if (sodium_init() < 0) std::abort();  // no working RNG: nothing here can be made safe
}

}  // namespace internal

namespace {

using common::text::base64url_decode;

constexpr size_t kSignatureBytes = crypto_sign_BYTES;
constexpr size_t kFixedBytes = kKeyIdBytes + 3 * 8;
// The longest payload the bounds allow; the token text stays under kMaxToken with it.
constexpr size_t kMaxPayload = kFixedBytes + 1 + kMaxTokenId + 2 + kMaxUser + 1 + kMaxFrontEnd + 1 +
                               kMaxServices * (1 + kMaxServiceName);
static_assert(kPrefix.size() + (kMaxPayload * 4 + 2) / 3 + 1 + (kSignatureBytes * 4 + 2) / 3 <= kMaxToken);

Error malformed() { return Error{ErrorKind::Protocol, "malformed"}; }

// Text fields end up in logs and LDAP-free lookups: no control bytes, no DEL.
bool printable(std::string_view s) {
  return std::none_of(s.begin(), s.end(), [](char c) {
    auto u = static_cast<unsigned char>(c);
    return u < 0x20 || u == 0x7f;
  });
}
bool valid_service(std::string_view s) {
  return !s.empty() && s.size() <= kMaxServiceName && std::all_of(s.begin(), s.end(), [](char c) {
           return (c >= 'a' && c <= 'z') || ascii::is_digit(c) || c == '-' || c == '_';
         });
}
bool valid_token_id(std::string_view s) {
  return !s.empty() && s.size() <= kMaxTokenId && std::all_of(s.begin(), s.end(), [](char c) {
           return ascii::is_alnum(c) || c == '-' || c == '_';
         });
}

// Everything but the signature: the same rules for signing and verifying.
bool valid_claims(const Claims& c) {
  if (c.user.empty() || c.user.size() > kMaxUser || !printable(c.user)) return false;
  if (c.front_end.size() > kMaxFrontEnd || !printable(c.front_end)) return false;
  if (!valid_token_id(c.token_id)) return false;
  if (c.services.size() > kMaxServices) return false;
  if (!std::all_of(c.services.begin(), c.services.end(), valid_service)) return false;
  return c.session_started_at <= c.issued_at && c.issued_at < c.expires_at;
}

void put_u8(std::string& out, size_t v) { out.push_back(static_cast<char>(v)); }
void put_u16(std::string& out, size_t v) {
  put_u8(out, (v >> 8) & 0xff);
  put_u8(out, v & 0xff);
}
void put_i64(std::string& out, int64_t v) {
  auto u = static_cast<uint64_t>(v);
  for (int shift = 56; shift >= 0; shift -= 8) put_u8(out, (u >> shift) & 0xff);
}

// Bounds-checked reads over untrusted bytes; a short read poisons the reader.
struct Reader {
  std::span<const uint8_t> in;
  size_t pos = 0;
  bool ok = true;

  bool have(size_t n) {
    if (!ok || in.size() - pos < n) ok = false;
    return ok;
  }
  uint64_t uint(size_t bytes) {
    if (!have(bytes)) return 0;
    uint64_t v = 0;
    for (size_t i = 0; i < bytes; ++i) v = (v << 8) | in[pos++];
    return v;
  }
  int64_t i64() { return static_cast<int64_t>(uint(8)); }
  std::string text(size_t len_bytes, size_t max) {
    size_t n = uint(len_bytes);
    if (n > max || !have(n)) {
      ok = false;
      return {};
    }
    std::string s(reinterpret_cast<const char*>(in.data() + pos), n);
    pos += n;
    return s;
  }
};

int64_t saturating_add(int64_t a, int64_t b) {
  int64_t r;
  if (__builtin_add_overflow(a, b, &r)) return b > 0 ? INT64_MAX : INT64_MIN;
  return r;
}

}  // namespace

bool Claims::allows_service(std::string_view service) const {
  return std::any_of(services.begin(), services.end(),
                     [&](const std::string& s) { return ascii::iequals(s, service); });
}

std::string random_token_id() {
  internal::ensure_sodium();
  std::array<uint8_t, 16> bytes{};
  randombytes_buf(bytes.data(), bytes.size());
  return text::base64url_encode(internal::as_chars(bytes));
}

Claims new_claims(std::string user, std::vector<std::string> services, std::string front_end,
                  int64_t now, std::chrono::seconds ttl) {
  Claims c;
  c.user = std::move(user);
  c.services = std::move(services);
  c.front_end = std::move(front_end);
  c.issued_at = now;
  c.session_started_at = now;
  c.expires_at = saturating_add(now, ttl.count());
  c.token_id = random_token_id();
  return c;
}

namespace detail {

Result<std::string> encode_payload(const Claims& c, std::span<const uint8_t, kKeyIdBytes> key_id) {
  if (!valid_claims(c)) return fail(ErrorKind::Internal, "claims out of bounds");
  std::string out;
  out.reserve(kMaxPayload);
  out.append(reinterpret_cast<const char*>(key_id.data()), key_id.size());
  put_i64(out, c.issued_at);
  put_i64(out, c.expires_at);
  put_i64(out, c.session_started_at);
  put_u8(out, c.token_id.size());
  out += c.token_id;
  put_u16(out, c.user.size());
  out += c.user;
  put_u8(out, c.front_end.size());
  out += c.front_end;
  put_u8(out, c.services.size());
  for (const auto& s : c.services) {
    put_u8(out, s.size());
    out += s;
  }
  return out;
}

Result<Claims> decode_payload(std::span<const uint8_t> payload) {
  if (payload.size() > kMaxPayload) return tl::unexpected(malformed());
  Reader r{payload};
  if (!r.have(kKeyIdBytes)) return tl::unexpected(malformed());
  r.pos += kKeyIdBytes;
  Claims c;
  c.issued_at = r.i64();
  c.expires_at = r.i64();
  c.session_started_at = r.i64();
  c.token_id = r.text(1, kMaxTokenId);
  c.user = r.text(2, kMaxUser);
  c.front_end = r.text(1, kMaxFrontEnd);
  size_t count = r.uint(1);
  if (count > kMaxServices) return tl::unexpected(malformed());
  for (size_t i = 0; i < count && r.ok; ++i) c.services.push_back(r.text(1, kMaxServiceName));
  // Trailing bytes would let two payloads mean the same claims.
  if (!r.ok || r.pos != payload.size() || !valid_claims(c)) return tl::unexpected(malformed());
  return c;
}

}  // namespace detail

Result<Verifier> Verifier::from_public_keys(std::span<const std::string> texts, VerifierOptions options) {
  internal::ensure_sodium();
  if (texts.empty()) return fail(ErrorKind::Config, "no access-token public key configured");
  if (options.clock_skew.count() < 0 || options.clock_skew > std::chrono::hours(1))
    return fail(ErrorKind::Config, "access-token clock skew must be between 0 and 3600 seconds");
  constexpr std::string_view kKeyPrefix = "ed25519:";
  Verifier v;
  v.options_ = options;
  for (const auto& raw : texts) {
    // Tolerate the newline of a .pub file and surrounding blanks from config.
    std::string_view t = ascii::trim(raw);
    if (!t.starts_with(kKeyPrefix)) return fail(ErrorKind::Config, "access-token key lacks 'ed25519:'");
    auto bytes = base64url_decode(t.substr(kKeyPrefix.size()), 32);
    if (!bytes || bytes->size() != 32) return fail(ErrorKind::Config, "access-token key is not 32 bytes of base64url");
    Key k{};
    std::copy_n(reinterpret_cast<const uint8_t*>(bytes->data()), 32, k.public_key.begin());
    k.id = internal::key_id_of(k.public_key);
    auto same_id = [&](const Key& o) { return o.id == k.id; };
    if (auto it = std::find_if(v.keys_.begin(), v.keys_.end(), same_id); it != v.keys_.end()) {
      if (it->public_key != k.public_key) return fail(ErrorKind::Config, "two access-token keys share a key id");
      continue;  // listed twice: harmless
    }
    v.keys_.push_back(k);
  }
  return v;
}

namespace {

// A store checks the same session's token on every call; an Ed25519 verification costs about
// 50 us, 7% of the store's CPU under IMAP load (bench/mmp). The same bytes verify the same way,
// so each thread remembers the last few tokens whose signature checked out, with their claims,
// per Verifier (its key set); the time and binding checks still run on every call.
struct VerifiedToken {
  uint64_t verifier = 0;
  std::string token;
  Claims claims;
};
constexpr size_t kVerifiedPerThread = 16;
thread_local std::array<VerifiedToken, kVerifiedPerThread> verified_tokens;
thread_local size_t next_verified = 0;

std::atomic<uint64_t> next_verifier_id{1};

}  // namespace

Verifier::Verifier() : id_(next_verifier_id.fetch_add(1)) {}

Result<Claims> Verifier::signed_claims(std::string_view token) const {
  auto error = [](const char* detail) { return tl::unexpected(Error{ErrorKind::Protocol, detail}); };
  if (token.size() > kMaxToken || !token.starts_with(kPrefix)) return error("malformed");
  for (const auto& v : verified_tokens) {
    if (v.verifier == id_ && v.token == token) return v.claims;
  }
  auto body = token.substr(kPrefix.size());
  auto dot = body.find('.');
  if (dot == std::string_view::npos) return error("malformed");
  auto payload_b64 = body.substr(0, dot);
  auto payload = base64url_decode(payload_b64, kMaxPayload);
  auto signature = base64url_decode(body.substr(dot + 1), kSignatureBytes);
  if (!payload || !signature || signature->size() != kSignatureBytes || payload->size() < kFixedBytes)
    return error("malformed");

  auto bytes = [](const std::string& s) { return reinterpret_cast<const uint8_t*>(s.data()); };
  auto key = std::find_if(keys_.begin(), keys_.end(), [&](const Key& k) {
    return std::equal(k.id.begin(), k.id.end(), bytes(*payload));
  });
  if (key == keys_.end()) return error("unknown_key");
  auto input = internal::signing_input(payload_b64);
  if (crypto_sign_verify_detached(bytes(*signature), reinterpret_cast<const uint8_t*>(input.data()),
                                  input.size(), key->public_key.data()) != 0)
    return error("bad_signature");

  auto claims = detail::decode_payload({bytes(*payload), payload->size()});
  if (!claims) return error("malformed");  // signed by our key yet unreadable: a bug or a newer format
  auto& slot = verified_tokens[next_verified++ % kVerifiedPerThread];
  slot.verifier = id_;
  slot.token.assign(token);
  slot.claims = *claims;
  return claims;
}

Result<Claims> Verifier::verify(std::string_view token, int64_t now, std::string_view expected_front_end) const {
  auto error = [](const char* detail) { return tl::unexpected(Error{ErrorKind::Protocol, detail}); };
  auto claims = signed_claims(token);
  if (!claims) return claims;
  const int64_t skew = options_.clock_skew.count();
  if (claims->issued_at > saturating_add(now, skew)) return error("issued_in_future");
  if (now >= saturating_add(claims->expires_at, skew)) return error("expired");
  // An unbound token would open the mailbox for whoever holds it; a caller that cannot name the
  // front end asking could not tell whose token it is.
  if (!options_.binding.allow_unbound && (claims->front_end.empty() || expected_front_end.empty()))
    return error("unbound");
  // Not secret (the front end presents its own certificate name), so a plain comparison is fine.
  if (!expected_front_end.empty() && claims->front_end != expected_front_end) return error("wrong_front_end");
  return claims;
}

std::optional<Claims> renew(const Claims& old, int64_t now, std::chrono::seconds ttl,
                            std::chrono::seconds max_session) {
  const int64_t session_end = saturating_add(old.session_started_at, max_session.count());
  const int64_t expires = std::min(saturating_add(now, ttl.count()), session_end);
  if (now < old.session_started_at || expires <= now) return std::nullopt;
  Claims c = old;
  c.issued_at = now;
  c.expires_at = expires;
  c.token_id = random_token_id();
  return c;
}

}  // namespace common::authtoken
