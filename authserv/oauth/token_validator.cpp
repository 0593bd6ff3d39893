// token_validator.cpp: JWT/JWS validation with keys from config only (never "jku", "x5u" or "jwk"
// from the token: an attacker would just name their own key). EdDSA and HS256; everything else refused.
#include "authserv/oauth/token_validator.hpp"

#include <sodium.h>

#include <algorithm>
#include <limits>
#include <optional>

#include "authserv/oauth/json.hpp"
#include "common/ascii.hpp"
#include "common/text/base64.hpp"

namespace authserv::oauth {

using common::ErrorKind;
using common::fail;

namespace {

enum class Alg { EdDSA, HS256 };

constexpr size_t kMaxSecret = 1024;
constexpr size_t kMaxKid = 128;
constexpr size_t kMinSecret = 32;  // RFC 7518 §3.2: an HS256 key must be at least 256 bits

// RFC 7515 §2 base64url: unpadded, strict, so each byte string has one spelling.
using common::text::base64url_decode;
using common::ascii::iequals;

const unsigned char* bytes(std::string_view s) { return reinterpret_cast<const unsigned char*>(s.data()); }

int64_t sat_add(int64_t a, int64_t b) {  // b >= 0
  return a > std::numeric_limits<int64_t>::max() - b ? std::numeric_limits<int64_t>::max() : a + b;
}

// Names are logged and used as identities: C0, DEL and C1 controls could forge log lines.
bool clean_user(std::string_view u) {
  if (u.empty() || u.size() > kMaxUser) return false;
  for (size_t i = 0; i < u.size(); ++i) {
    auto c = static_cast<unsigned char>(u[i]);
    if (c < 0x20 || c == 0x7F) return false;
    if (c == 0xC2 && i + 1 < u.size() && static_cast<unsigned char>(u[i + 1]) < 0xA0) return false;  // U+0080..9F
  }
  return true;
}

common::Error refused(std::string_view why) { return common::Error{ErrorKind::Protocol, std::string(why)}; }

}  // namespace

// Key material is wiped when the validator goes (HMAC secrets are as good as passwords).
struct TokenValidator::Key {
  std::string kid;  // empty: the key answers tokens with any kid or none
  Alg alg = Alg::EdDSA;
  std::string material;  // Ed25519 public key (32 bytes) or HMAC secret
  Key() = default;
  Key(const Key&) = default;
  Key(Key&&) noexcept = default;
  Key& operator=(const Key&) = default;
  Key& operator=(Key&&) noexcept = default;
  ~Key() { sodium_memzero(material.data(), material.size()); }
};

struct TokenValidator::IssuerKeys {
  std::string issuer;
  std::vector<std::string> audiences;
  std::string user_claim;
  std::vector<Key> keys;
  int64_t leeway = 0;
};

TokenValidator::TokenValidator() = default;
TokenValidator::TokenValidator(TokenValidator&&) noexcept = default;
TokenValidator& TokenValidator::operator=(TokenValidator&&) noexcept = default;
TokenValidator::TokenValidator(const TokenValidator&) = default;
TokenValidator& TokenValidator::operator=(const TokenValidator&) = default;
TokenValidator::~TokenValidator() = default;

namespace {

common::Result<TokenValidator::Key> parse_key(std::string_view text, const std::string& where) {
  TokenValidator::Key key;
  if (text.starts_with("kid=")) {
    auto semi = text.find(';');
    if (semi == std::string_view::npos) return fail(ErrorKind::Config, where + ": kid= without ';'");
    key.kid = std::string(text.substr(4, semi - 4));
    text.remove_prefix(semi + 1);
    bool printable = std::all_of(key.kid.begin(), key.kid.end(), [](char c) { return c > 0x20 && c < 0x7F; });
    if (key.kid.empty() || key.kid.size() > kMaxKid || !printable)
      return fail(ErrorKind::Config, where + ": kid must be 1-128 printable ASCII characters");
  }
  if (text.starts_with("ed25519:")) {
    auto pk = base64url_decode(text.substr(8), crypto_sign_PUBLICKEYBYTES);
    if (!pk || pk->size() != crypto_sign_PUBLICKEYBYTES)
      return fail(ErrorKind::Config, where + ": ed25519 key is not 32 bytes of unpadded base64url");
    // Small-order or off-curve points would let crafted signatures verify for any message.
    if (crypto_core_ed25519_is_valid_point(bytes(*pk)) != 1)
      return fail(ErrorKind::Config, where + ": not a valid Ed25519 public key");
    key.alg = Alg::EdDSA;
    key.material = std::move(*pk);
  } else if (text.starts_with("hs256:")) {
    auto secret = base64url_decode(text.substr(6), kMaxSecret);
    if (!secret || secret->size() < kMinSecret) {
      if (secret) sodium_memzero(secret->data(), secret->size());
      return fail(ErrorKind::Config, where + ": hs256 secret must be 32-1024 bytes of unpadded base64url");
    }
    key.alg = Alg::HS256;
    key.material = std::move(*secret);
  } else {
    return fail(ErrorKind::Config, where + ": key must start with ed25519: or hs256: (after an optional kid=...;)");
  }
  return key;
}

bool verify(const TokenValidator::Key& key, std::string_view signing_input, std::string_view sig) {
  if (key.alg == Alg::EdDSA) {
    return sig.size() == crypto_sign_BYTES &&
           crypto_sign_verify_detached(bytes(sig), bytes(signing_input), signing_input.size(),
                                       bytes(key.material)) == 0;
  }
  // crypto_auth_hmacsha256_verify takes only 32-byte keys; RFC 7518 allows longer secrets, so run
  // the HMAC by parts and compare with crypto_verify_32, the constant-time check verify uses.
  if (sig.size() != crypto_auth_hmacsha256_BYTES) return false;
  crypto_auth_hmacsha256_state st;
  unsigned char mac[crypto_auth_hmacsha256_BYTES];
  crypto_auth_hmacsha256_init(&st, bytes(key.material), key.material.size());
  crypto_auth_hmacsha256_update(&st, bytes(signing_input), signing_input.size());
  crypto_auth_hmacsha256_final(&st, mac);
  bool ok = crypto_verify_32(mac, bytes(sig)) == 0;
  sodium_memzero(&st, sizeof st);
  sodium_memzero(mac, sizeof mac);
  return ok;
}

// A NumericDate (RFC 7519 §2) we accept: a JSON integer. Absent -> nullopt; any other type -> error.
common::Result<std::optional<int64_t>> numeric_date(const json::Value& claims, std::string_view name) {
  const json::Value* v = claims.find(name);
  if (!v) return std::optional<int64_t>{};
  if (v->type != json::Value::Type::Number || !v->integer) return tl::unexpected(refused(reason::kMalformed));
  return std::optional<int64_t>{*v->integer};
}

}  // namespace

common::Result<TokenValidator> TokenValidator::create(std::vector<Issuer> issuers) {
  if (sodium_init() < 0) return fail(ErrorKind::Internal, "libsodium failed to initialise");
  TokenValidator v;
  for (auto& in : issuers) {
    const std::string where = "oauth issuer \"" + in.issuer + "\"";
    if (in.issuer.empty()) return fail(ErrorKind::Config, "oauth issuer with an empty name");
    for (const auto& other : v.issuers_)
      if (other.issuer == in.issuer) return fail(ErrorKind::Config, where + " is configured twice");
    if (in.user_claim.empty()) return fail(ErrorKind::Config, where + ": empty user_claim");
    for (const auto& a : in.audiences)
      if (a.empty()) return fail(ErrorKind::Config, where + ": empty audience");
    if (in.leeway.count() < 0 || in.leeway > kMaxLeeway)
      return fail(ErrorKind::Config, where + ": leeway must be 0-3600 seconds");
    if (in.keys.empty() || in.keys.size() > kMaxKeysPerIssuer)
      return fail(ErrorKind::Config, where + ": needs 1-16 keys");
    IssuerKeys out{in.issuer, std::move(in.audiences), std::move(in.user_claim), {}, in.leeway.count()};
    for (size_t i = 0; i < in.keys.size(); ++i) {
      auto key = parse_key(in.keys[i], where + " key " + std::to_string(i + 1));
      sodium_memzero(in.keys[i].data(), in.keys[i].size());
      if (!key) return tl::unexpected(key.error());
      for (const auto& k : out.keys) {
        if (!key->kid.empty() && k.kid == key->kid)
          return fail(ErrorKind::Config, where + ": kid \"" + k.kid + "\" is used twice");
        if (k.alg == key->alg && k.material == key->material)
          return fail(ErrorKind::Config, where + ": key " + std::to_string(i + 1) + " is listed twice");
      }
      out.keys.push_back(std::move(*key));
    }
    v.issuers_.push_back(std::move(out));
  }
  return v;
}

common::Result<Validated> TokenValidator::validate(std::string_view token, int64_t now) const {
  using Type = json::Value::Type;
  auto no = [](std::string_view why) { return tl::unexpected(refused(why)); };

  // Shape: exactly three parts (a JWE has five; RFC 7516 §9). An empty signature (alg "none")
  // passes here so the log says unsupported_alg; it can never verify.
  if (token.empty() || token.size() > kMaxToken) return no(reason::kMalformed);
  const size_t d1 = token.find('.');
  const size_t d2 = d1 == std::string_view::npos ? d1 : token.find('.', d1 + 1);
  if (d2 == std::string_view::npos || token.find('.', d2 + 1) != std::string_view::npos) return no(reason::kMalformed);
  const std::string_view signing_input = token.substr(0, d2);
  const std::string_view header_b64 = token.substr(0, d1);
  const std::string_view payload_b64 = token.substr(d1 + 1, d2 - d1 - 1);
  const std::string_view sig_b64 = token.substr(d2 + 1);
  if (header_b64.empty() || payload_b64.empty()) return no(reason::kMalformed);
  auto sig = base64url_decode(sig_b64, crypto_sign_BYTES);
  if (!sig) return no(reason::kMalformed);

  // JOSE header (RFC 7515 §4.1).
  auto header_text = base64url_decode(header_b64, kMaxToken);
  if (!header_text) return no(reason::kMalformed);
  auto header = json::parse(*header_text);
  if (!header || header->type != Type::Object) return no(reason::kMalformed);
  const json::Value* alg = header->find("alg");
  const json::Value* kid = header->find("kid");
  const json::Value* typ = header->find("typ");
  if (!alg || alg->type != Type::String) return no(reason::kMalformed);
  if (kid && kid->type != Type::String) return no(reason::kMalformed);
  // "crit" names extensions we would have to understand (e.g. RFC 7797 "b64" changes what is
  // signed); we implement none, so any is refused (§4.1.11). "zip" only belongs in a JWE.
  if (header->find("crit") || header->find("zip")) return no(reason::kMalformed);
  if (typ) {
    // RFC 8725 §3.11: explicit typing keeps other JWT kinds (logout tokens, ...) from passing.
    if (typ->type != Type::String) return no(reason::kMalformed);
    const auto& t = typ->string;
    if (!iequals(t, "JWT") && !iequals(t, "at+jwt") && !iequals(t, "application/jwt") &&
        !iequals(t, "application/at+jwt"))
      return no(reason::kMalformed);
  }
  Alg want;
  if (alg->string == "EdDSA") want = Alg::EdDSA;
  else if (alg->string == "HS256") want = Alg::HS256;
  else return no(reason::kUnsupportedAlg);  // "none", RS256, ES256, ...: RFC 8725 §3.1

  // Claims are read before the signature only to pick the issuer; nothing else is trusted yet.
  auto payload_text = base64url_decode(payload_b64, kMaxToken);
  if (!payload_text) return no(reason::kMalformed);
  auto claims = json::parse(*payload_text);
  if (!claims || claims->type != Type::Object) return no(reason::kMalformed);
  const json::Value* iss = claims->find("iss");
  if (!iss || iss->type != Type::String) return no(reason::kWrongIssuer);
  auto issuer = std::find_if(issuers_.begin(), issuers_.end(), [&](const IssuerKeys& i) { return i.issuer == iss->string; });
  if (issuer == issuers_.end()) return no(reason::kWrongIssuer);

  // Keys: by kid when the token names one (keys configured without a kid answer unknown kids),
  // else every key of the issuer. The key's type, not the header, decides the alg, so an HS256
  // token never meets an Ed25519 public key used as an HMAC secret (RFC 8725 §2.1).
  std::vector<const Key*> candidates;
  for (const auto& k : issuer->keys)
    if (!kid || k.kid == kid->string) candidates.push_back(&k);
  if (kid && candidates.empty()) {
    for (const auto& k : issuer->keys)
      if (k.kid.empty()) candidates.push_back(&k);
  }
  std::erase_if(candidates, [&](const Key* k) { return k->alg != want; });
  if (candidates.empty()) return no(reason::kUnknownKey);
  if (std::none_of(candidates.begin(), candidates.end(), [&](const Key* k) { return verify(*k, signing_input, *sig); }))
    return no(reason::kBadSignature);

  // Signed claims (RFC 7519 §4.1).
  auto exp = numeric_date(*claims, "exp");
  auto nbf = numeric_date(*claims, "nbf");
  auto iat = numeric_date(*claims, "iat");
  if (!exp || !nbf || !iat || !*exp) return no(reason::kMalformed);  // exp is required
  const int64_t leeway = issuer->leeway;
  if (now >= sat_add(**exp, leeway)) return no(reason::kExpired);
  if (*nbf && sat_add(now, leeway) < **nbf) return no(reason::kNotYetValid);
  if (*iat && sat_add(now, leeway) < **iat) return no(reason::kNotYetValid);  // issued in the future

  if (!issuer->audiences.empty()) {
    const json::Value* aud = claims->find("aud");
    auto ours = [&](const json::Value& v) {
      return v.type == Type::String &&
             std::find(issuer->audiences.begin(), issuer->audiences.end(), v.string) != issuer->audiences.end();
    };
    bool match = false;
    if (aud && aud->type == Type::String) match = ours(*aud);
    else if (aud && aud->type == Type::Array) match = std::any_of(aud->array.begin(), aud->array.end(), ours);
    if (!match) return no(reason::kWrongAudience);
  }

  const json::Value* user = claims->find(issuer->user_claim);
  if (!user || user->type != Type::String || !clean_user(user->string)) return no(reason::kNoUserClaim);
  // An address the issuer has not verified belongs to whoever typed it in (OpenID Connect Core §5.1).
  if (issuer->user_claim == "email") {
    const json::Value* verified = claims->find("email_verified");
    if (verified && verified->type == Type::Bool && !verified->boolean) return no(reason::kNoUserClaim);
  }
  return Validated{user->string, issuer->issuer, **exp};
}

}  // namespace authserv::oauth
