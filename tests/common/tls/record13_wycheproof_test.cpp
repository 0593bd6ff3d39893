// record13_wycheproof_test.cpp: Project Wycheproof's AES-GCM and ChaCha20-Poly1305 vectors (copied
// into data/, source named there) through the NSS AEAD calls the TLS 1.3 record layer makes: valid
// cases seal and open byte for byte, every modified tag is refused as a tag mismatch (the peer's
// bad_record_mac), never as a local failure. OpenSSL opens the same cases, so a vector miscopied
// into data/ shows up as a disagreement rather than passing unnoticed.
#include <catch2/catch.hpp>

#include <nss.h>

#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "common/tls/record13_internal.hpp"
#include "tests/common/tls/record13_reference.hpp"

namespace {

namespace r13 = common::tls::record13;

struct Case {
  std::string id;
  bool valid = false;
  std::string key, iv, aad, msg, ct, tag;
};

std::string unhex(const std::string& hex) {
  if (hex == "-") return {};
  std::string out;
  for (size_t i = 0; i + 1 < hex.size(); i += 2) out.push_back(static_cast<char>(std::stoi(hex.substr(i, 2), nullptr, 16)));
  return out;
}

std::vector<Case> load(const std::string& path) {
  std::ifstream in(path);
  REQUIRE(in);
  std::vector<Case> cases;
  std::string line;
  while (std::getline(in, line)) {
    if (line.empty() || line[0] == '#') continue;
    std::istringstream fields(line);
    Case c;
    std::string result, key, iv, aad, msg, ct, tag;
    fields >> c.id >> result >> key >> iv >> aad >> msg >> ct >> tag;
    REQUIRE((result == "valid" || result == "invalid"));
    c.valid = result == "valid";
    c.key = unhex(key);
    c.iv = unhex(iv);
    c.aad = unhex(aad);
    c.msg = unhex(msg);
    c.ct = unhex(ct);
    c.tag = unhex(tag);
    REQUIRE(c.iv.size() == 12);
    REQUIRE(c.tag.size() == 16);
    cases.push_back(std::move(c));
  }
  return cases;
}

void run(const std::vector<Case>& cases, r13::AeadKind kind, reference13::Cipher cipher) {
  static bool ready = NSS_NoDB_Init(nullptr) == SECSuccess;
  REQUIRE(ready);
  for (const auto& c : cases) {
    INFO("tcId " << c.id);
    const std::string sealed = c.ct + c.tag;
    std::string plain;
    const auto opened = r13::aead_open(kind, c.key, c.iv, c.aad, sealed, plain);
    std::string reference_plain;
    const bool reference_opened = reference13::aead_open(cipher, c.key, c.iv, c.aad, sealed, reference_plain);
    CHECK(reference_opened == c.valid);
    if (c.valid) {
      CHECK(opened == r13::AeadResult::Ok);
      CHECK(plain == c.msg);
      std::string ours;
      CHECK(r13::aead_seal(kind, c.key, c.iv, c.aad, c.msg, ours) == r13::AeadResult::Ok);
      CHECK(ours == sealed);
    } else {
      CHECK(opened == r13::AeadResult::BadTag);
      CHECK(plain.empty());
    }
  }
}

}  // namespace

TEST_CASE("Wycheproof AES-128-GCM and AES-256-GCM through the record layer's NSS calls", "[tls][record13]") {
  auto cases = load("data/wycheproof_aes_gcm.txt");
  CHECK(cases.size() == 133);
  size_t invalid = 0;
  for (const auto& c : cases) invalid += c.valid ? 0 : 1;
  CHECK(invalid == 54);
  run(cases, r13::AeadKind::AesGcm, reference13::Cipher::Aes128Gcm);
}

TEST_CASE("Wycheproof ChaCha20-Poly1305 through the record layer's NSS calls", "[tls][record13]") {
  auto cases = load("data/wycheproof_chacha20_poly1305.txt");
  CHECK(cases.size() == 316);
  size_t invalid = 0;
  for (const auto& c : cases) invalid += c.valid ? 0 : 1;
  CHECK(invalid == 60);
  run(cases, r13::AeadKind::ChaCha20Poly1305, reference13::Cipher::ChaCha20Poly1305);
}
