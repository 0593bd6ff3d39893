// ciphers_test.cpp: the ssladjustciphersuites grammar (TLS-08): the defaults (TLS-09), the seed's
// examples, names in all three spellings, the WEAK opt-in, refusals with their column, and a
// property check over random item lists.
#include <catch2/catch.hpp>

#include <algorithm>
#include <random>
#include <set>

#include "common/tls/ciphers.hpp"

using namespace common::tls;

namespace {

std::vector<std::string> names(const CipherSelection& s) {
  std::vector<std::string> out;
  for (auto id : s.suites) out.emplace_back(find_cipher(id)->name);
  return out;
}

std::string error_of(std::string_view spec) {
  auto r = adjust_ciphers(spec);
  REQUIRE_FALSE(r);
  CHECK(r.error().kind == common::ErrorKind::Config);
  return r.error().detail;
}

CipherSelection ok(std::string_view spec) {
  auto r = adjust_ciphers(spec);
  INFO(spec << " -> " << (r ? std::string() : r.error().detail));
  REQUIRE(r);
  return *r;
}

bool contains(const std::string& s, const std::string& part) { return s.find(part) != std::string::npos; }

}  // namespace

TEST_CASE("the default set: TLS 1.3 AEAD and ECDHE with AES-GCM or ChaCha20-Poly1305", "[ciphers]") {
  auto s = ok("");
  CHECK(names(s) == std::vector<std::string>{
                        "TLS_AES_128_GCM_SHA256", "TLS_AES_256_GCM_SHA384", "TLS_CHACHA20_POLY1305_SHA256",
                        "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256", "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384",
                        "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256", "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
                        "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384", "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256"});
  CHECK(s.suites == default_cipher_suites());
  CHECK(s.warnings.empty());
  CHECK(s.any_tls13());
  CHECK(s.any_tls12());
  CHECK_FALSE(s.any_dhe());
  CHECK(ok("   ").suites == s.suites);
  CHECK(ok(",,").suites == s.suites);
  for (auto id : s.suites) CHECK(find_cipher(id)->cls() == CipherClass::Strong);
}

TEST_CASE("all adds every strong suite and nothing weak", "[ciphers]") {
  auto s = ok("all");
  CHECK(s.suites.size() == 14);
  CHECK(s.any_dhe());
  CHECK(s.contains(0x009E));  // TLS_DHE_RSA_WITH_AES_128_GCM_SHA256
  for (auto id : s.suites) CHECK(find_cipher(id)->cls() == CipherClass::Strong);
  CHECK(ok("+ALL").suites == s.suites);
  CHECK(ok("All").suites == s.suites);
}

TEST_CASE("a site list after -ALL gives exactly that list", "[ciphers]") {
  auto s = ok("-ALL,+TLS_AES_256_GCM_SHA384,+ECDHE-ECDSA-AES256-GCM-SHA384");
  CHECK(names(s) == std::vector<std::string>{"TLS_AES_256_GCM_SHA384", "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384"});
  CHECK(names(ok("-all, tls_aes_128_gcm_sha256")) == std::vector<std::string>{"TLS_AES_128_GCM_SHA256"});
  CHECK(ok("-ALL,default").suites == default_cipher_suites());
  CHECK(ok("-default,+TLS_AES_128_GCM_SHA256").suites.size() == 1);
}

TEST_CASE("a broken suite is switched off at once by name, in any spelling", "[ciphers]") {
  auto s = ok("-TLS_CHACHA20_POLY1305_SHA256, -ECDHE-RSA-CHACHA20-POLY1305 ,-tls_ecdhe_ecdsa_with_chacha20_poly1305_sha256");
  CHECK(s.suites.size() == 6);
  for (auto n : names(s)) CHECK_FALSE(contains(n, "CHACHA20"));
  // Disabling what is not enabled is fine, for any class.
  CHECK(ok("-TLS_RSA_WITH_RC4_128_MD5,-SSL_RSA_WITH_DES_CBC_SHA").suites == default_cipher_suites());
}

TEST_CASE("legacy suites need WEAK first, as in the seed's ECDH_RSA example", "[ciphers]") {
  auto detail = error_of("+TLS_ECDH_RSA_WITH_AES_128_CBC_SHA");
  CHECK(contains(detail, "column 1"));
  CHECK(contains(detail, "legacy suite"));
  CHECK(contains(detail, "no forward secrecy"));
  CHECK(contains(detail, "put WEAK before it"));
  auto s = ok("WEAK,+TLS_ECDH_RSA_WITH_AES_128_CBC_SHA");
  CHECK(s.contains(0xC00E));
  REQUIRE(s.warnings.size() == 1);
  CHECK(contains(s.warnings[0], "TLS_ECDH_RSA_WITH_AES_128_CBC_SHA"));
  // WEAK after the name is too late.
  CHECK(contains(error_of("+AES128-SHA,WEAK"), "column 1"));
  CHECK(ok("weak,AES128-SHA").contains(0x002F));
  // -WEAK withdraws the opt-in and the legacy suites.
  CHECK(ok("WEAK,+AES128-SHA,-WEAK").suites == default_cipher_suites());
  CHECK(contains(error_of("WEAK,-WEAK,+AES128-SHA"), "put WEAK before it"));
}

TEST_CASE("WEAK+FAMILY enables a legacy family, broken families are refused", "[ciphers]") {
  auto tdes = ok("WEAK+3DES");
  CHECK(tdes.contains(0x000A));  // TLS_RSA_WITH_3DES_EDE_CBC_SHA
  CHECK(tdes.contains(0xC012));
  CHECK(tdes.warnings.size() == 7);
  auto cbc = ok("WEAK+CBC");
  CHECK(cbc.contains(0xC013));   // ECDHE_RSA AES_128_CBC_SHA
  CHECK_FALSE(cbc.contains(0x002F));  // RSA key transport is not in the forward-secret CBC family
  auto rsa = ok("weak+rsa");
  CHECK(rsa.contains(0x009C));
  CHECK(rsa.contains(0x002F));
  CHECK_FALSE(rsa.contains(0x000A));
  auto des = error_of("WEAK+DES");  // the seed's example: single DES stays off
  CHECK(contains(des, "WEAK+DES is refused"));
  CHECK(contains(des, "56-bit"));
  CHECK(contains(error_of("all,WEAK+RC4"), "column 5: WEAK+RC4 is refused"));
  CHECK(contains(error_of("WEAK+EXPORT"), "refused"));
  CHECK(contains(error_of("WEAK+NULL"), "refused"));
  CHECK(contains(error_of("WEAK+FOO"), "unknown cipher family \"FOO\""));
  CHECK(contains(error_of("+WEAK+CBC"), "without a leading '+'"));
  CHECK(contains(error_of("-WEAK+CBC"), "-WEAK"));
}

TEST_CASE("broken suites cannot be enabled, even after WEAK", "[ciphers]") {
  CHECK(contains(error_of("WEAK,+TLS_RSA_EXPORT1024_WITH_DES_CBC_SHA"), "cannot be enabled"));  // the seed's 56-bit example
  CHECK(contains(error_of("WEAK,+SSL_RSA_WITH_RC4_128_MD5"), "RC4 is broken (RFC 7465)"));
  CHECK(contains(error_of("+RC4-SHA"), "TLS_RSA_WITH_RC4_128_SHA cannot be enabled"));
  CHECK(contains(error_of("+DES-CBC-SHA"), "56 or fewer key bits"));
  CHECK(contains(error_of("+NULL-SHA"), "do not encrypt"));
  CHECK(contains(error_of("+ADH-AES128-SHA"), "anonymous"));
  CHECK(contains(error_of("WEAK,+EXP-RC4-MD5"), "cannot be enabled"));
}

TEST_CASE("unknown names and bad syntax are errors with their column", "[ciphers]") {
  CHECK(contains(error_of("all,+BOGUS"), "column 5: unknown cipher suite \"BOGUS\""));
  CHECK(contains(error_of("  -TLS_AES_128_GCM_SHA257"), "column 3: unknown"));  // a typo never passes silently
  CHECK(contains(error_of("+TLS_AES;"), "unexpected character"));
  CHECK(contains(error_of("all, +"), "column 6: \"+\" without a cipher suite name"));
  CHECK(contains(error_of("-"), "without a cipher suite name"));
  CHECK(contains(error_of("+TLS AES"), "unexpected character"));
  CHECK(contains(error_of("-ALL"), "leaves no cipher suite enabled"));
  CHECK(contains(error_of(std::string(kMaxCipherSpec + 1, 'a')), "longer than"));
  std::string many;
  for (size_t i = 0; i <= kMaxCipherItems; ++i) many += "all,";
  CHECK(contains(error_of(many), "more than"));
  CHECK(contains(error_of(std::string("+TLS_AES\0", 9)), "unexpected character"));
}

TEST_CASE("names: RFC, SSL_ legacy prefix and OpenSSL spellings find the same suite", "[ciphers]") {
  CHECK(find_cipher("TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256") == find_cipher("ECDHE-RSA-AES128-GCM-SHA256"));
  CHECK(find_cipher("SSL_RSA_WITH_3DES_EDE_CBC_SHA") == find_cipher("DES-CBC3-SHA"));
  CHECK(find_cipher("tls_aes_128_gcm_sha256")->id == 0x1301);
  CHECK(find_cipher("NOPE") == nullptr);
  CHECK(find_cipher(uint16_t{0xFFFF}) == nullptr);
  std::set<uint16_t> ids;
  std::set<std::string> spellings;
  for (const auto& s : cipher_catalog()) {
    INFO(s.name);
    CHECK(ids.insert(s.id).second);
    CHECK(spellings.insert(std::string(s.name)).second);
    if (!s.openssl.empty() && s.openssl != s.name) CHECK(spellings.insert(std::string(s.openssl)).second);
    CHECK(find_cipher(s.name) == &s);
    CHECK(find_cipher(s.id) == &s);
    if (s.cls() == CipherClass::Strong) CHECK(s.weakness().empty());
    if (s.cls() != CipherClass::Strong) CHECK_FALSE(s.weakness().empty());
  }
}

TEST_CASE("property: any item list yields only allowed suites, never a broken one", "[ciphers]") {
  std::vector<std::string> items{"all", "-all", "default", "-default", "WEAK", "-WEAK", "WEAK+3DES", "WEAK+CBC",
                                 "WEAK+RSA", "WEAK+DES", "+BOGUS", ""};
  for (const auto& s : cipher_catalog()) {
    items.push_back("+" + std::string(s.name));
    items.push_back("-" + std::string(s.openssl.empty() ? s.name : s.openssl));
  }
  std::mt19937 rng(20240611);
  for (int round = 0; round < 2000; ++round) {
    std::string spec;
    bool weak = false;
    size_t n = rng() % 8;
    for (size_t i = 0; i < n; ++i) {
      const auto& item = items[rng() % items.size()];
      spec += (i ? "," : "") + item;
      if (item == "WEAK" || item.rfind("WEAK+", 0) == 0) weak = true;
    }
    auto r = adjust_ciphers(spec);
    if (!r) continue;
    INFO(spec);
    CHECK_FALSE(r->suites.empty());
    for (auto id : r->suites) {
      auto cls = find_cipher(id)->cls();
      CHECK(cls != CipherClass::Broken);
      if (cls == CipherClass::Legacy) CHECK(weak);
    }
    CHECK(std::is_sorted(r->suites.begin(), r->suites.end(), [](uint16_t a, uint16_t b) {
      return find_cipher(a) < find_cipher(b);
    }));
  }
}
