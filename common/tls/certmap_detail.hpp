// certmap_detail.hpp: what the certmap files share and nobody else uses: error-message text that
// names hostile bytes without echoing them, bounded.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

#include "common/ascii.hpp"

namespace common::tls::certmap_detail {

inline constexpr size_t kMaxDetail = 160;  // client-derived text in error details (as log lines cut client text)

using ascii::describe_byte;

inline std::string clip(std::string_view s) {
  if (s.size() <= kMaxDetail) return std::string(s);
  return std::string(s.substr(0, kMaxDetail)) + "...";
}

}  // namespace common::tls::certmap_detail
