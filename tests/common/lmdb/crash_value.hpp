// crash_value.hpp: the value the crash-test writer stores under each key, so the parent can check
// every acknowledged write byte for byte without being told the value.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace test {

inline std::string crash_value(std::string_view key) {
  uint64_t h = 1469598103934665603ull;  // FNV-1a: lengths and bytes differ from key to key
  for (char c : key) h = (h ^ static_cast<unsigned char>(c)) * 1099511628211ull;
  std::string v(100 + h % 4000, '\0');
  for (size_t i = 0; i < v.size(); ++i) {
    h = h * 6364136223846793005ull + 1442695040888963407ull;
    v[i] = static_cast<char>(h >> 56);
  }
  return v;
}

}  // namespace test
