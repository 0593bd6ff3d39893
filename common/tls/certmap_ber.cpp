// certmap_ber.cpp: an X.509 DirectoryString from a DN's "#hex" value (certmap_ber.hpp).
#include "common/tls/certmap_ber.hpp"

namespace common::tls {

std::optional<std::string> ber_directory_string(std::string_view ber) {
  if (ber.size() < 2) return std::nullopt;
  auto tag = static_cast<unsigned char>(ber[0]);
  if (tag != 0x0c && tag != 0x13 && tag != 0x14 && tag != 0x16 && tag != 0x1a) return std::nullopt;
  auto first = static_cast<unsigned char>(ber[1]);
  size_t len = 0, head = 2;
  if (first < 0x80) {
    len = first;
  } else {
    size_t n = first & 0x7f;
    if (n == 0 || n > 4 || ber.size() < 2 + n) return std::nullopt;
    for (size_t k = 0; k < n; ++k) len = (len << 8) | static_cast<unsigned char>(ber[2 + k]);
    head = 2 + n;
  }
  if (ber.size() - head != len) return std::nullopt;
  return std::string(ber.substr(head));
}

}  // namespace common::tls
