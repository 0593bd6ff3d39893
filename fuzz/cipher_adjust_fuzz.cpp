// cipher_adjust_fuzz.cpp: the ssladjustciphersuites parser (common/tls/ciphers.hpp) on arbitrary
// bytes. Whatever parses must hold only allowed suites: never a broken one, a legacy one only when
// the text holds a WEAK opt-in, and the same result with spaces added around every item.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "common/tls/ciphers.hpp"

namespace {

bool mentions_weak(std::string_view text) {
  for (size_t i = 0; i + 4 <= text.size(); ++i) {
    bool match = true;
    for (size_t j = 0; j < 4 && match; ++j) match = (text[i + j] | 0x20) == "weak"[j];
    if (match) return true;
  }
  return false;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace common::tls;
  std::string_view text(reinterpret_cast<const char*>(data), size);
  auto result = adjust_ciphers(text);
  if (!result) {
    if (result.error().detail.empty()) std::abort();
    return 0;
  }
  if (result->suites.empty()) std::abort();
  for (uint16_t id : result->suites) {
    const CipherSuite* suite = find_cipher(id);
    if (suite == nullptr || suite->cls() == CipherClass::Broken) std::abort();
    if (suite->cls() == CipherClass::Legacy && !mentions_weak(text)) std::abort();
  }
  if (size < 2048) {
    std::string spaced;
    for (char c : text) {
      if (c == ',') {
        spaced += " , ";
      } else {
        spaced += c;
      }
    }
    if (spaced.size() + 2 <= kMaxCipherSpec) {
      auto again = adjust_ciphers(" " + spaced + " ");
      if (!again || again->suites != result->suites) std::abort();
    }
  }
  return 0;
}
