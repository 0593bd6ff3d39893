// token_validator_test.cpp: JWTs signed here with libsodium (Ed25519, HS256) against TokenValidator:
// every refusal detail, alg confusion, leeway edges, audiences, kid selection, hostile shapes.
#include <catch2/catch.hpp>
#include <sodium.h>

#include <array>
#include <string>

#include "authserv/oauth/token_validator.hpp"

using namespace authserv::oauth;

namespace {

constexpr int64_t kNow = 1'700'000'000;
constexpr const char* kIss = "https://idp.example";

std::string b64u(std::string_view s) {
  constexpr int kVariant = sodium_base64_VARIANT_URLSAFE_NO_PADDING;
  std::string out(sodium_base64_encoded_len(s.size(), kVariant), '\0');
  sodium_bin2base64(out.data(), out.size(), reinterpret_cast<const unsigned char*>(s.data()), s.size(), kVariant);
  out.resize(out.size() - 1);
  return out;
}

struct EdKey {
  std::array<unsigned char, crypto_sign_PUBLICKEYBYTES> pk{};
  std::array<unsigned char, crypto_sign_SECRETKEYBYTES> sk{};
  explicit EdKey(unsigned char seed_byte) {
    REQUIRE(sodium_init() >= 0);
    std::array<unsigned char, crypto_sign_SEEDBYTES> seed;
    seed.fill(seed_byte);
    crypto_sign_seed_keypair(pk.data(), sk.data(), seed.data());
  }
  std::string public_bytes() const { return std::string(reinterpret_cast<const char*>(pk.data()), pk.size()); }
  std::string config(std::string_view kid = {}) const {
    std::string k = kid.empty() ? "" : "kid=" + std::string(kid) + ";";
    return k + "ed25519:" + b64u(public_bytes());
  }
  std::string sign(std::string_view header, std::string_view payload) const {
    std::string input = b64u(header) + "." + b64u(payload);
    unsigned char sig[crypto_sign_BYTES];
    crypto_sign_detached(sig, nullptr, reinterpret_cast<const unsigned char*>(input.data()), input.size(), sk.data());
    return input + "." + b64u(std::string_view(reinterpret_cast<const char*>(sig), sizeof sig));
  }
};

std::string hs_sign(std::string_view secret, std::string_view header, std::string_view payload) {
  std::string input = b64u(header) + "." + b64u(payload);
  crypto_auth_hmacsha256_state st;
  unsigned char mac[crypto_auth_hmacsha256_BYTES];
  crypto_auth_hmacsha256_init(&st, reinterpret_cast<const unsigned char*>(secret.data()), secret.size());
  crypto_auth_hmacsha256_update(&st, reinterpret_cast<const unsigned char*>(input.data()), input.size());
  crypto_auth_hmacsha256_final(&st, mac);
  return input + "." + b64u(std::string_view(reinterpret_cast<const char*>(mac), sizeof mac));
}

const EdKey& ed_a() { static EdKey k(1); return k; }
const EdKey& ed_b() { static EdKey k(2); return k; }
const std::string kSecret(40, 's');
const std::string kEdHeader = R"({"alg":"EdDSA","typ":"JWT"})";
const std::string kHsHeader = R"({"alg":"HS256"})";

// Claims with the given extra members; exp one hour ahead unless `extra` overrides nothing else.
std::string claims(std::string_view extra = {}, int64_t exp = kNow + 3600) {
  std::string s = R"({"iss":")" + std::string(kIss) + R"(","email":"alice@example.org","exp":)" + std::to_string(exp);
  if (!extra.empty()) s += "," + std::string(extra);
  return s + "}";
}

Issuer ed_issuer() {
  Issuer i;
  i.issuer = kIss;
  i.keys = {ed_a().config()};
  return i;
}

TokenValidator make(std::vector<Issuer> issuers) {
  auto v = TokenValidator::create(std::move(issuers));
  REQUIRE(v);
  return std::move(*v);
}

std::string why(const TokenValidator& v, std::string_view token, int64_t now = kNow) {
  auto r = v.validate(token, now);
  if (r) return "ok";
  CHECK(r.error().kind == common::ErrorKind::Protocol);
  return r.error().detail;
}

}  // namespace

TEST_CASE("oauth: a good Ed25519 token") {
  auto v = make({ed_issuer()});
  auto r = v.validate(ed_a().sign(kEdHeader, claims()), kNow);
  REQUIRE(r);
  CHECK(r->user == "alice@example.org");
  CHECK(r->issuer == kIss);
  CHECK(r->expires_at == kNow + 3600);
  CHECK_FALSE(v.empty());
  // typ is optional, and RFC 9068's at+jwt is accepted.
  CHECK(why(v, ed_a().sign(R"({"alg":"EdDSA"})", claims())) == "ok");
  CHECK(why(v, ed_a().sign(R"({"typ":"at+JWT","alg":"EdDSA"})", claims())) == "ok");
}

TEST_CASE("oauth: a good HS256 token, short and long secrets") {
  std::string long_secret(200, 'k');
  Issuer i = ed_issuer();
  i.keys = {"hs256:" + b64u(std::string(32, 'x')), "hs256:" + b64u(long_secret)};
  auto v = make({i});
  CHECK(why(v, hs_sign(std::string(32, 'x'), kHsHeader, claims())) == "ok");
  CHECK(why(v, hs_sign(long_secret, kHsHeader, claims())) == "ok");
  CHECK(why(v, hs_sign(std::string(32, 'y'), kHsHeader, claims())) == "bad_signature");
}

TEST_CASE("oauth: alg none, RS256 and friends are refused") {
  auto v = make({ed_issuer()});
  std::string body = b64u(claims());
  CHECK(why(v, b64u(R"({"alg":"none"})") + "." + body + ".") == "unsupported_alg");
  CHECK(why(v, b64u(R"({"alg":"None"})") + "." + body + ".") == "unsupported_alg");
  for (auto alg : {"RS256", "ES256", "PS256", "HS512", "Ed25519", "eddsa", ""}) {
    std::string h = std::string(R"({"alg":")") + alg + R"("})";
    CHECK(why(v, ed_a().sign(h, claims())) == "unsupported_alg");
  }
  CHECK(why(v, ed_a().sign(R"({"typ":"JWT"})", claims())) == "malformed");      // no alg
  CHECK(why(v, ed_a().sign(R"({"alg":["EdDSA"]})", claims())) == "malformed");  // not a string
  // An EdDSA token with its signature stripped.
  std::string t = ed_a().sign(kEdHeader, claims());
  CHECK(why(v, t.substr(0, t.rfind('.') + 1)) == "bad_signature");
}

TEST_CASE("oauth: alg confusion: a key's type fixes its alg") {
  // The classic attack: HMAC the token with the issuer's public key as the secret.
  auto v = make({ed_issuer()});
  CHECK(why(v, hs_sign(ed_a().public_bytes(), kHsHeader, claims())) == "unknown_key");
  CHECK(why(v, hs_sign(ed_a().public_bytes(), R"({"alg":"HS256","kid":"x"})", claims())) == "unknown_key");
  // A kid naming an HS256 key does not make an EdDSA token acceptable, nor the reverse.
  Issuer i = ed_issuer();
  i.keys = {"kid=h;hs256:" + b64u(kSecret), ed_a().config("e")};
  auto both = make({i});
  CHECK(why(both, ed_a().sign(R"({"alg":"EdDSA","kid":"h"})", claims())) == "unknown_key");
  CHECK(why(both, hs_sign(kSecret, R"({"alg":"HS256","kid":"e"})", claims())) == "unknown_key");
  CHECK(why(both, hs_sign(kSecret, R"({"alg":"HS256","kid":"h"})", claims())) == "ok");
  CHECK(why(both, ed_a().sign(R"({"alg":"EdDSA","kid":"e"})", claims())) == "ok");
}

TEST_CASE("oauth: tampered tokens fail the signature") {
  auto v = make({ed_issuer()});
  std::string t = ed_a().sign(kEdHeader, claims());
  auto d1 = t.find('.');
  auto d2 = t.rfind('.');
  std::string forged = claims(R"("admin":true)");
  CHECK(why(v, t.substr(0, d1 + 1) + b64u(forged) + t.substr(d2)) == "bad_signature");
  CHECK(why(v, t.substr(0, d1 + 1) + b64u(R"({"iss":"https://idp.example","email":"root@example.org","exp":1700003600})") +
                   t.substr(d2)) == "bad_signature");
  CHECK(why(v, ed_b().sign(kEdHeader, claims())) == "bad_signature");  // another key
  CHECK(why(v, t.substr(0, t.size() - 2)) != "ok");                     // short signature
  // Every single-character change and every prefix is refused, and none crashes.
  for (size_t i = 0; i < t.size(); ++i) {
    std::string m = t;
    m[i] = m[i] == 'A' ? 'B' : 'A';
    CHECK(why(v, m) != "ok");
    CHECK(why(v, t.substr(0, i)) != "ok");
  }
}

TEST_CASE("oauth: exp, nbf and iat with leeway") {
  auto v = make({ed_issuer()});  // leeway 60
  auto tok = [&](int64_t exp, std::string_view extra = {}) { return ed_a().sign(kEdHeader, claims(extra, exp)); };
  CHECK(why(v, tok(kNow - 59)) == "ok");
  CHECK(why(v, tok(kNow - 60)) == "expired");
  CHECK(why(v, tok(kNow - 100000)) == "expired");
  CHECK(why(v, tok(INT64_MAX)) == "ok");  // no overflow
  CHECK(why(v, tok(INT64_MIN)) == "expired");
  CHECK(why(v, tok(kNow + 3600, "\"nbf\":" + std::to_string(kNow + 60))) == "ok");
  CHECK(why(v, tok(kNow + 3600, "\"nbf\":" + std::to_string(kNow + 61))) == "not_yet_valid");
  CHECK(why(v, tok(kNow + 3600, "\"iat\":" + std::to_string(kNow + 60))) == "ok");
  CHECK(why(v, tok(kNow + 3600, "\"iat\":" + std::to_string(kNow + 61))) == "not_yet_valid");
  CHECK(why(v, tok(kNow + 3600, "\"iat\":" + std::to_string(kNow - 100))) == "ok");
  // exp is required and every date must be an integer NumericDate.
  CHECK(why(v, ed_a().sign(kEdHeader, R"({"iss":"https://idp.example","email":"a@b"})")) == "malformed");
  CHECK(why(v, ed_a().sign(kEdHeader, R"({"iss":"https://idp.example","email":"a@b","exp":"1800000000"})")) ==
        "malformed");
  CHECK(why(v, ed_a().sign(kEdHeader, R"({"iss":"https://idp.example","email":"a@b","exp":1.8e9})")) == "malformed");
  CHECK(why(v, tok(kNow + 3600, R"("nbf":null)")) == "malformed");
  CHECK(why(v, tok(kNow + 3600, R"("iat":99999999999999999999)")) == "malformed");

  Issuer strict = ed_issuer();
  strict.leeway = std::chrono::seconds(0);
  auto s = make({strict});
  CHECK(why(s, tok(kNow)) == "expired");
  CHECK(why(s, tok(kNow + 1)) == "ok");
  CHECK(why(s, tok(kNow + 3600, "\"nbf\":" + std::to_string(kNow + 1))) == "not_yet_valid");
}

TEST_CASE("oauth: issuer must match exactly") {
  auto v = make({ed_issuer()});
  auto with_iss = [&](std::string_view iss) {
    return ed_a().sign(kEdHeader, std::string(R"({"email":"a@b","exp":1800000000)") +
                                      (iss.empty() ? "" : ",\"iss\":" + std::string(iss)) + "}");
  };
  CHECK(why(v, with_iss(R"("https://idp.example")")) == "ok");
  CHECK(why(v, with_iss(R"("https://idp.example/")")) == "wrong_issuer");
  CHECK(why(v, with_iss(R"("https://IDP.example")")) == "wrong_issuer");
  CHECK(why(v, with_iss(R"(["https://idp.example"])")) == "wrong_issuer");
  CHECK(why(v, with_iss("")) == "wrong_issuer");
  auto none = make({});
  CHECK(none.empty());
  CHECK(why(none, ed_a().sign(kEdHeader, claims())) == "wrong_issuer");
}

TEST_CASE("oauth: audience as a string or an array") {
  Issuer i = ed_issuer();
  i.audiences = {"imap.example.org", "postern"};
  auto v = make({i});
  CHECK(why(v, ed_a().sign(kEdHeader, claims(R"("aud":"postern")"))) == "ok");
  CHECK(why(v, ed_a().sign(kEdHeader, claims(R"("aud":["other","imap.example.org"])"))) == "ok");
  CHECK(why(v, ed_a().sign(kEdHeader, claims(R"("aud":["other",7,null,"postern"])"))) == "ok");
  CHECK(why(v, ed_a().sign(kEdHeader, claims(R"("aud":"other")"))) == "wrong_audience");
  CHECK(why(v, ed_a().sign(kEdHeader, claims(R"("aud":"Postern")"))) == "wrong_audience");
  CHECK(why(v, ed_a().sign(kEdHeader, claims(R"("aud":["other"])"))) == "wrong_audience");
  CHECK(why(v, ed_a().sign(kEdHeader, claims(R"("aud":[])"))) == "wrong_audience");
  CHECK(why(v, ed_a().sign(kEdHeader, claims(R"("aud":[["postern"]])"))) == "wrong_audience");
  CHECK(why(v, ed_a().sign(kEdHeader, claims())) == "wrong_audience");
  // No audiences configured: aud is not checked.
  auto open = make({ed_issuer()});
  CHECK(why(open, ed_a().sign(kEdHeader, claims(R"("aud":"anyone")"))) == "ok");
}

TEST_CASE("oauth: kid selects the key") {
  Issuer i = ed_issuer();
  i.keys = {ed_a().config("a"), ed_b().config("b")};
  auto v = make({i});
  CHECK(why(v, ed_b().sign(R"({"alg":"EdDSA","kid":"b"})", claims())) == "ok");
  CHECK(why(v, ed_a().sign(R"({"alg":"EdDSA","kid":"a"})", claims())) == "ok");
  CHECK(why(v, ed_b().sign(R"({"alg":"EdDSA","kid":"a"})", claims())) == "bad_signature");
  CHECK(why(v, ed_b().sign(R"({"alg":"EdDSA","kid":"c"})", claims())) == "unknown_key");
  CHECK(why(v, ed_b().sign(R"({"alg":"EdDSA","kid":7})", claims())) == "malformed");
  // No kid in the token: every key of the alg is tried.
  CHECK(why(v, ed_b().sign(kEdHeader, claims())) == "ok");
  // A key configured without a kid answers any kid the issuer sends.
  auto plain = make({ed_issuer()});
  CHECK(why(plain, ed_a().sign(R"({"alg":"EdDSA","kid":"2024-rotation"})", claims())) == "ok");
}

TEST_CASE("oauth: the user claim") {
  auto v = make({ed_issuer()});
  auto tok = [&](std::string_view user_member) {
    return ed_a().sign(kEdHeader, std::string(R"({"iss":"https://idp.example","exp":1800000000)") +
                                      (user_member.empty() ? "" : "," + std::string(user_member)) + "}");
  };
  CHECK(why(v, tok(R"("email":"b@example.org")")) == "ok");
  CHECK(why(v, tok("")) == "no_user_claim");
  CHECK(why(v, tok(R"("email":"")")) == "no_user_claim");
  CHECK(why(v, tok(R"("email":42)")) == "no_user_claim");
  CHECK(why(v, tok(R"("email":["a@b"])")) == "no_user_claim");
  CHECK(why(v, tok(R"("email":"a@b\nlevel=info event=forged")")) == "no_user_claim");
  CHECK(why(v, tok(R"("email":"a@b\u0000")")) == "no_user_claim");
  CHECK(why(v, tok(R"("email":"a\u007f@b")")) == "no_user_claim");
  CHECK(why(v, tok(R"("email":"a\u0085@b")")) == "no_user_claim");  // C1 NEL
  CHECK(why(v, tok(R"("email":"\u00e9l\u00e8ve@example.org")")) == "ok");
  CHECK(why(v, tok("\"email\":\"" + std::string(320, 'u') + "\"")) == "ok");
  CHECK(why(v, tok("\"email\":\"" + std::string(321, 'u') + "\"")) == "no_user_claim");
  CHECK(why(v, tok(R"("email":"a@b","email_verified":false)")) == "no_user_claim");
  CHECK(why(v, tok(R"("email":"a@b","email_verified":true)")) == "ok");

  Issuer by_sub = ed_issuer();
  by_sub.user_claim = "sub";
  auto s = make({by_sub});
  auto r = s.validate(tok(R"("sub":"u-123","email":"a@b")"), kNow);
  REQUIRE(r);
  CHECK(r->user == "u-123");
  CHECK(why(s, tok(R"("email":"a@b")")) == "no_user_claim");
}

TEST_CASE("oauth: malformed headers and claim sets") {
  auto v = make({ed_issuer()});
  auto sign = [&](std::string_view header, std::string_view payload) { return ed_a().sign(header, payload); };
  std::string deep = "{\"iss\":\"https://idp.example\",\"email\":\"a@b\",\"exp\":1800000000,\"x\":" +
                     std::string(8, '[') + std::string(8, ']') + "}";
  CHECK(why(v, sign(kEdHeader, deep)) == "malformed");  // object + 8 arrays = depth 9
  std::string ok_deep = "{\"iss\":\"https://idp.example\",\"email\":\"a@b\",\"exp\":1800000000,\"x\":" +
                        std::string(7, '[') + std::string(7, ']') + "}";
  CHECK(why(v, sign(kEdHeader, ok_deep)) == "ok");
  CHECK(why(v, sign(kEdHeader, claims(R"("x":"\q")"))) == "malformed");
  CHECK(why(v, sign(kEdHeader, claims(R"("x":"\ud800")"))) == "malformed");
  CHECK(why(v, sign(kEdHeader, claims() + "x")) == "malformed");
  CHECK(why(v, sign(kEdHeader, claims() + "{}")) == "malformed");
  CHECK(why(v, sign(kEdHeader, claims(R"("email":"mallory@example.org")"))) == "malformed");  // duplicate
  CHECK(why(v, sign(kEdHeader, claims(R"("ex\u0070":1)"))) == "malformed");
  CHECK(why(v, sign(R"({"alg":"EdDSA","alg":"none"})", claims())) == "malformed");
  CHECK(why(v, sign(kEdHeader, "[" + claims() + "]")) == "malformed");
  CHECK(why(v, sign(kEdHeader, "\"text\"")) == "malformed");
  CHECK(why(v, sign("[]", claims())) == "malformed");
  CHECK(why(v, sign(R"({"alg":"EdDSA","crit":["b64"],"b64":false})", claims())) == "malformed");
  CHECK(why(v, sign(R"({"alg":"EdDSA","typ":"logout+jwt"})", claims())) == "malformed");
  CHECK(why(v, sign(R"({"alg":"EdDSA","typ":1})", claims())) == "malformed");
  CHECK(why(v, sign(R"({"alg":"EdDSA","zip":"DEF"})", claims())) == "malformed");
  CHECK(why(v, sign(kEdHeader, "\xFF" + claims())) == "malformed");
}

TEST_CASE("oauth: token shape and base64url") {
  auto v = make({ed_issuer()});
  std::string t = ed_a().sign(kEdHeader, claims());
  auto d1 = t.find('.');
  for (std::string bad : {std::string(), std::string("."), std::string(".."), std::string("abc"), std::string("a.b"),
                          t + ".x", t + ".", "." + t.substr(d1), t.substr(0, d1) + "." + t.substr(t.rfind('.')),
                          t + "=", t + "==", " " + t, t + " ", t + "\n", "Bearer " + t})
    CHECK(why(v, bad) == "malformed");
  std::string std_b64 = t;
  std_b64[1] = '+';  // the standard alphabet is not base64url
  CHECK(why(v, std_b64) == "malformed");
  // A 64-byte signature is 86 characters; the last carries 4 unused bits that must be zero, or
  // one signature would have several spellings.
  const std::string alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
  std::string loose = t;
  REQUIRE((loose.size() - loose.rfind('.') - 1) == 86);
  loose.back() = alphabet[alphabet.find(loose.back()) | 1];
  CHECK(why(v, loose) == "malformed");
}

TEST_CASE("oauth: oversize tokens") {
  auto v = make({ed_issuer()});
  std::string base = ed_a().sign(kEdHeader, claims(R"("pad":"")"));
  // Grow the padding until the token is exactly kMaxToken, then one character past it.
  size_t pad = (kMaxToken - base.size()) * 3 / 4;
  std::string t;
  while (true) {
    t = ed_a().sign(kEdHeader, claims("\"pad\":\"" + std::string(pad, 'p') + "\""));
    if (t.size() >= kMaxToken) break;
    ++pad;
  }
  while (t.size() > kMaxToken) t = ed_a().sign(kEdHeader, claims("\"pad\":\"" + std::string(--pad, 'p') + "\""));
  REQUIRE(t.size() <= kMaxToken);
  CHECK(why(v, t) == "ok");
  std::string over = ed_a().sign(kEdHeader, claims("\"pad\":\"" + std::string(pad + 3, 'p') + "\""));
  REQUIRE(over.size() > kMaxToken);
  CHECK(why(v, over) == "malformed");
  CHECK(why(v, std::string(1 << 20, 'A')) == "malformed");
}

TEST_CASE("oauth: config errors") {
  auto config_error = [](std::vector<Issuer> issuers) {
    auto r = TokenValidator::create(std::move(issuers));
    if (r) return std::string("ok");
    CHECK(r.error().kind == common::ErrorKind::Config);
    return r.error().detail;
  };
  auto with_keys = [](std::vector<std::string> keys) {
    Issuer i = ed_issuer();
    i.keys = std::move(keys);
    return std::vector<Issuer>{i};
  };
  CHECK(config_error({ed_issuer()}) == "ok");
  CHECK(config_error(with_keys({})) != "ok");
  CHECK(config_error(with_keys({"ed25519:"})) != "ok");
  CHECK(config_error(with_keys({"ed25519:" + b64u(std::string(31, 'k'))})) != "ok");
  CHECK(config_error(with_keys({"ed25519:" + b64u(ed_a().public_bytes()) + "="})) != "ok");
  CHECK(config_error(with_keys({"ED25519:" + b64u(ed_a().public_bytes())})) != "ok");
  CHECK(config_error(with_keys({"ed25519:" + b64u(std::string(32, '\0'))})) != "ok");  // small order
  CHECK(config_error(with_keys({"rsa:AAAA"})) != "ok");
  CHECK(config_error(with_keys({"hs256:" + b64u(std::string(31, 's'))})) != "ok");    // < 256 bits
  CHECK(config_error(with_keys({"hs256:" + b64u(std::string(32, 's'))})) == "ok");
  CHECK(config_error(with_keys({"kid=;" + ed_a().config()})) != "ok");
  CHECK(config_error(with_keys({"kid=a b;" + ed_a().config()})) != "ok");
  CHECK(config_error(with_keys({"kid=a" + ed_a().config()})) != "ok");
  CHECK(config_error(with_keys({ed_a().config("k"), ed_b().config("k")})) != "ok");   // duplicate kid
  CHECK(config_error(with_keys({ed_a().config(), ed_a().config("x")})) != "ok");     // same key twice
  CHECK(config_error(with_keys(std::vector<std::string>(17, ed_a().config()))) != "ok");
  CHECK(config_error({ed_issuer(), ed_issuer()}) != "ok");                          // duplicate issuer
  Issuer i = ed_issuer();
  i.issuer.clear();
  CHECK(config_error({i}) != "ok");
  i = ed_issuer();
  i.user_claim.clear();
  CHECK(config_error({i}) != "ok");
  i = ed_issuer();
  i.audiences = {""};
  CHECK(config_error({i}) != "ok");
  i = ed_issuer();
  i.leeway = std::chrono::seconds(-1);
  CHECK(config_error({i}) != "ok");
  i.leeway = std::chrono::seconds(3601);
  CHECK(config_error({i}) != "ok");
  // Errors name the issuer and key, never the key material.
  auto secret = "hs256:" + b64u("short-secret");
  auto detail = config_error(with_keys({secret}));
  CHECK(detail.find("idp.example") != std::string::npos);
  CHECK(detail.find(b64u("short-secret")) == std::string::npos);
}

TEST_CASE("oauth: several issuers, copies and moves") {
  Issuer a = ed_issuer();
  Issuer b;
  b.issuer = "https://other.example";
  b.keys = {"hs256:" + b64u(kSecret)};
  b.user_claim = "preferred_username";
  auto v = make({a, b});
  auto tb = hs_sign(kSecret, kHsHeader, R"({"iss":"https://other.example","preferred_username":"bob","exp":1800000000})");
  CHECK(why(v, tb) == "ok");
  CHECK(why(v, ed_a().sign(kEdHeader, claims())) == "ok");
  // An issuer's key cannot vouch for another issuer's users.
  CHECK(why(v, hs_sign(kSecret, kHsHeader, claims())) == "unknown_key");
  TokenValidator copy = v;
  TokenValidator moved = std::move(v);
  CHECK(why(copy, tb) == "ok");
  CHECK(why(moved, tb) == "ok");
}
