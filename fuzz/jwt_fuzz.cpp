// jwt_fuzz.cpp: TokenValidator and its JSON reader on hostile input. Byte 0 picks the mode:
// 0 a raw token; 1 "header\npayload" JSON that the target signs (Ed25519 or HS256 by byte 1), so
// claim checks run on signed data; 2 bare JSON. Invariants: never crash, and a success names a
// configured issuer, a clean user claim from the signed payload and an unexpired exp.
#include <sodium.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "authserv/oauth/json.hpp"
#include "authserv/oauth/token_validator.hpp"

using namespace authserv::oauth;

namespace {

constexpr int64_t kNow = 1'700'000'000;

std::string b64u(std::string_view s) {
  constexpr int kVariant = sodium_base64_VARIANT_URLSAFE_NO_PADDING;
  std::string out(sodium_base64_encoded_len(s.size(), kVariant), '\0');
  sodium_bin2base64(out.data(), out.size(), reinterpret_cast<const unsigned char*>(s.data()), s.size(), kVariant);
  out.resize(out.size() - 1);
  return out;
}

struct Fixture {
  unsigned char pk[crypto_sign_PUBLICKEYBYTES]{};
  unsigned char sk[crypto_sign_SECRETKEYBYTES]{};
  std::string secret = std::string(32, 'f');
  TokenValidator validator = make();

  TokenValidator make() {
    if (sodium_init() < 0) std::abort();
    unsigned char seed[crypto_sign_SEEDBYTES];
    for (auto& b : seed) b = 7;  // fixed, so corpus tokens stay valid
    crypto_sign_seed_keypair(pk, sk, seed);
    Issuer a;
    a.issuer = "https://idp.example";
    a.audiences = {"postern"};
    a.keys = {"kid=k1;ed25519:" + b64u(std::string_view(reinterpret_cast<const char*>(pk), sizeof pk))};
    Issuer b;
    b.issuer = "https://hs.example";
    b.user_claim = "sub";
    b.keys = {"hs256:" + b64u(secret)};
    auto v = TokenValidator::create({a, b});
    if (!v) std::abort();
    return std::move(*v);
  }

  std::string sign(bool ed, std::string_view header, std::string_view payload) const {
    std::string input = b64u(header) + "." + b64u(payload);
    unsigned char sig[crypto_sign_BYTES];
    size_t len = crypto_sign_BYTES;
    if (ed) {
      crypto_sign_detached(sig, nullptr, reinterpret_cast<const unsigned char*>(input.data()), input.size(), sk);
    } else {
      crypto_auth_hmacsha256_state st;
      crypto_auth_hmacsha256_init(&st, reinterpret_cast<const unsigned char*>(secret.data()), secret.size());
      crypto_auth_hmacsha256_update(&st, reinterpret_cast<const unsigned char*>(input.data()), input.size());
      crypto_auth_hmacsha256_final(&st, sig);
      len = crypto_auth_hmacsha256_BYTES;
    }
    return input + "." + b64u(std::string_view(reinterpret_cast<const char*>(sig), len));
  }
};

size_t depth_of(const json::Value& v) {
  size_t d = 0;
  for (const auto& item : v.array) d = std::max(d, depth_of(item));
  for (const auto& m : v.object) d = std::max(d, depth_of(m.value));
  bool container = v.type == json::Value::Type::Array || v.type == json::Value::Type::Object;
  return d + (container ? 1 : 0);
}

void check_success(const Validated& ok) {
  if (ok.issuer != "https://idp.example" && ok.issuer != "https://hs.example") std::abort();
  if (ok.user.empty() || ok.user.size() > kMaxUser) std::abort();
  for (unsigned char c : ok.user)
    if (c < 0x20 || c == 0x7F) std::abort();
  if (ok.expires_at + 60 <= kNow) std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size < 2) return 0;
  static const Fixture fx;
  const std::string_view rest(reinterpret_cast<const char*>(data + 2), size - 2);
  switch (data[0] % 3) {
    case 0: {
      auto r = fx.validator.validate(rest, kNow);
      if (r) check_success(*r);
      break;
    }
    case 1: {
      const bool ed = data[1] & 1;
      auto nl = rest.find('\n');
      std::string_view header = ed ? R"({"alg":"EdDSA","kid":"k1"})" : R"({"alg":"HS256"})";
      std::string_view payload = rest;
      if (nl != std::string_view::npos) {
        header = rest.substr(0, nl);
        payload = rest.substr(nl + 1);
      }
      if (header.size() + payload.size() > 2 * kMaxToken) return 0;
      auto r = fx.validator.validate(fx.sign(ed, header, payload), kNow);
      if (!r) break;
      check_success(*r);
      // What succeeded must be what was signed: the payload parses and names the same user.
      auto claims = json::parse(payload);
      if (!claims) std::abort();
      const json::Value* user = claims->find(r->issuer == "https://hs.example" ? "sub" : "email");
      if (!user || user->string != r->user) std::abort();
      break;
    }
    default: {
      auto v = json::parse(rest);
      if (v && depth_of(*v) > json::Limits{}.max_depth) std::abort();
      break;
    }
  }
  return 0;
}
