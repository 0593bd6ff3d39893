// certfilter.hpp: the small part of RFC 4515 filters and RFC 4514 DNs the embedded directory needs
// to answer certmap's searches (common/tls/certmap.hpp build_cert_queries). Pure and bounded.
#pragma once

#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "common/result.hpp"

namespace authserv::directory {

struct FilterTerm {
  std::string attr;   // lowercased attribute type
  std::string value;  // unescaped bytes; empty when `present`
  bool present = false;  // (attr=*)
};

inline constexpr size_t kMaxFilter = 4096;
inline constexpr size_t kMaxFilterTerms = 32;

// "(mail=a@b)", "(&(uid=a)(mail=a\40b))", "(objectclass=*)", nested ANDs: the equality terms, all
// of which must hold. OR, NOT, substrings, ranges, extensible matches, blanks and malformed input:
// ErrorKind::Protocol.
common::Result<std::vector<FilterTerm>> parse_cert_filter(std::string_view filter);

// "uid=Alice, dc=Example,dc=com" -> {{"uid","alice"},{"dc","example"},{"dc","com"}}: types and
// values lowercased and unescaped; "" -> empty. Multi-valued RDNs ('+'): ErrorKind::Protocol.
common::Result<std::vector<std::pair<std::string, std::string>>> parse_base_dn(std::string_view dn);

}  // namespace authserv::directory
