// record13_differential_test.cpp: our TLS 1.3 record layer and an independent reference written over
// OpenSSL's libcrypto must agree, record by record, on what a peer sends: the same plaintext, the
// same alert, refused at the same point. Hand-made scripts for each rule, then random ones.
#include <catch2/catch.hpp>

#include <nss.h>

#include <random>
#include <string>

#include "tests/common/tls/record13_differential.hpp"

namespace {

using reference13::build_script;
using reference13::compare_layers;

constexpr uint16_t kSuites[] = {0x1301, 0x1302, 0x1303};

void nss_without_db() {
  static bool ready = NSS_NoDB_Init(nullptr) == SECSuccess;
  REQUIRE(ready);
}

std::string s(std::initializer_list<int> bytes) {
  std::string out;
  for (int b : bytes) out.push_back(static_cast<char>(b));
  return out;
}

// Both layers read `script` in pieces of every size from one byte to the whole.
void agree(const std::string& script) {
  for (uint16_t suite : kSuites) {
    std::string mismatch;
    std::string wire = build_script(suite, script, mismatch);
    INFO("suite " << suite);
    REQUIRE(mismatch.empty());
    for (size_t step : {size_t{1}, size_t{2}, size_t{5}, size_t{7}, size_t{22}, size_t{300}, size_t{20000},
                        wire.size() + 1}) {
      INFO("pieces of " << step);
      std::string diff = compare_layers(suite, wire, step);
      if (!diff.empty()) FAIL_CHECK(diff);
    }
  }
}

}  // namespace

TEST_CASE("differential: our layer and the OpenSSL reference agree on each rule of RFC 8446 §5", "[tls][record13]") {
  nss_without_db();
  const std::string data = s({23, 5, 'h', 'e', 'l', 'l', 'o'});
  SECTION("data, KeyUpdates both kinds, data, close_notify, then junk") {
    agree(data + s({0xff, 0xfe}) + data + s({0xff, 0xff, 0xff}) + data + s({21, 2, 1, 0}) + s({0xfb, 3, 1, 2, 3}));
  }
  SECTION("inner plaintext at 2^14 + 1 and over it, padding included") {
    agree(s({0xfd, 23, 0x40, 0x00, 0x00, 0x00, 'a'}));                            // 2^14 + type
    agree(s({0xfd, 23, 0x3f, 0xf8, 0x00, 0x08, 'b'}));                            // 2^14 + 1 with padding
    agree(data + s({0xfd, 23, 0x3f, 0xf8, 0x00, 0x09, 'c'}));                     // 2^14 + 2
    agree(s({0xfd, 23, 0x00, 0x01, 0x41, 0x00, 'd'}));                            // padding alone over
    agree(s({0xfd, 23, 0x41, 0x00, 0x00, 0x00, 'e'}));                            // ciphertext over 2^14 + 256
  }
  SECTION("tags, replays and records too short") {
    agree(data + s({0xfc, 9}));
    agree(data + s({0xfa}));
    agree(s({0xfb, 5, 23, 3, 3, 0, 15}) + std::string(15, 'x'));
    agree(s({0xfb, 5, 23, 3, 3, 0, 16}) + std::string(16, 'x'));
    agree(s({0xf9, 0, 0}));      // a tag alone: no content type
    agree(s({0xf9, 0, 7}));      // padding alone
  }
  SECTION("unprotected records, alerts and unknown types") {
    agree(s({0xfb, 6, 20, 3, 3, 0, 1, 1}));
    agree(s({0xfb, 7, 21, 3, 3, 0, 2, 2, 40}));
    agree(data + s({21, 0}));
    agree(data + s({21, 1, 2}));
    agree(data + s({21, 3, 2, 40, 0}));
    agree(data + s({21, 2, 2, 40}));
    agree(data + s({21, 2, 1, 90}) + s({21, 2, 1, 0}));
    agree(data + s({24, 1, 'x'}) + s({99, 0}));
    agree(s({20, 1, 1}));
  }
  SECTION("KeyUpdate: its value, its size, its place") {
    agree(s({22, 5, 24, 0, 0, 1, 2}));
    agree(s({22, 5, 24, 0, 0, 1, 0xff}));
    agree(s({22, 6, 24, 0, 0, 2, 0, 0}));
    agree(s({22, 6, 24, 0, 0, 1, 0, 24}));
    agree(s({22, 2, 24, 0}) + s({22, 3, 0, 1, 1}) + data);
    agree(s({22, 2, 24, 0}) + data);
    agree(s({22, 0}));
    agree(s({22, 4, 4, 0, 0, 0}));
  }
  SECTION("32 records in a row without data, then one more") {
    std::string idle;
    for (int i = 0; i < 32; ++i) idle += i % 3 == 0 ? s({0xfe}) : i % 3 == 1 ? s({23, 0}) : s({21, 2, 1, 90});
    agree(idle + data + idle + data);
    agree(idle + s({0xff}));
    agree(idle + s({23, 0}));
  }
}

TEST_CASE("differential: random scripts", "[tls][record13]") {
  nss_without_db();
  std::mt19937 rng(13);
  // Ops weighted towards well-formed records so that the refusal comes late, after real work.
  const std::string types = s({23, 23, 23, 23, 22, 21, 0xff, 0xfe, 0xfc, 0xfa, 0xf9, 0xfb, 0, 20, 24});
  for (int round = 0; round < 300; ++round) {
    std::string script;
    const int ops = 1 + static_cast<int>(rng() % 40);
    for (int i = 0; i < ops; ++i) {
      const auto op = static_cast<uint8_t>(types[rng() % types.size()]);
      script.push_back(static_cast<char>(op));
      if (op == 0xff || op == 0xfe || op == 0xfa) continue;
      if (op == 0xfc) {
        script.push_back(static_cast<char>(rng()));
        continue;
      }
      const size_t n = rng() % 8;
      script.push_back(static_cast<char>(n));
      if (op == 0xf9) script.push_back(static_cast<char>(rng() % 4));
      for (size_t k = 0; k < n; ++k) {
        // Alerts mostly close_notify or user_canceled, KeyUpdates mostly well formed.
        const char pick[] = {0, 1, 2, 24, 90, 0, 1, 'x'};
        script.push_back(pick[rng() % sizeof pick]);
      }
    }
    const uint16_t suite = kSuites[rng() % 3];
    std::string mismatch;
    std::string wire = build_script(suite, script, mismatch);
    REQUIRE(mismatch.empty());
    const size_t step = 1 + rng() % 64;
    std::string diff = compare_layers(suite, wire, step);
    INFO("round " << round << ", suite " << suite << ", pieces of " << step);
    if (!diff.empty()) FAIL_CHECK(diff);
  }
}
