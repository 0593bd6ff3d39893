// record13_fuzz.cpp: the TLS 1.3 record layer (common/tls/record13) against a hostile peer, checked
// against an independent reference over OpenSSL's libcrypto (tests/common/tls/record13_reference).
// The first byte picks the suite, the size of the pieces the input arrives in, and what the rest is:
// raw bytes on the wire (headers, lengths, forged records), or a script of records the peer protects
// with the right keys (record13_differential.hpp), so content types, alerts, KeyUpdate, padding and
// sizes are reached behind the AEAD. Both layers seal the script alike, read it alike, and refuse it
// at the same piece with the same alert; what ours sends back must open on the reference's side.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>

#include <nss.h>

#include "tests/common/tls/record13_differential.hpp"

namespace {

constexpr uint16_t kSuites[] = {0x1301, 0x1302, 0x1303, 0x1301};
// Piece sizes around the record layout: a header (5), a tag (16), a KeyUpdate record (27), a full
// record (16389 to 16661 bytes); 0 is the whole input at once.
constexpr size_t kSteps[] = {1,  2,   3,   4,    5,    6,    7,    8,     11,    16,    17,    21,    22,    23,  27, 32,
                             37, 64, 100, 255, 256, 512, 1000, 1500, 4096, 16384, 16389, 16405, 16661, 20000, 65536, 0};

[[noreturn]] void disagree(const std::string& what) {
  std::fprintf(stderr, "record13_fuzz: %s\n", what.c_str());
  std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const bool ready = NSS_NoDB_Init(nullptr) == SECSuccess;
  if (!ready) std::abort();
  if (size == 0) return 0;
  const uint8_t mode = data[0];
  const uint16_t suite = kSuites[(mode >> 1) & 3];
  std::string_view in(reinterpret_cast<const char*>(data) + 1, size - 1);
  std::string wire;
  if (mode & 1) {
    std::string mismatch;
    wire = reference13::build_script(suite, in, mismatch);
    if (!mismatch.empty()) disagree(mismatch);
  } else {
    wire.assign(in);
  }
  size_t step = kSteps[mode >> 3];
  if (step == 0) step = wire.size() + 1;
  std::string diff = reference13::compare_layers(suite, wire, step);
  if (!diff.empty()) disagree(diff);
  return 0;
}
