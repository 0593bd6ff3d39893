// filter.hpp: building LDAP filters from untrusted values: Sun's search filter templates (%U, %u,
// %d or %V, %o), each value escaped by common/text/ldap_escape.hpp (RFC 4515). Pure: no I/O.
#pragma once

#include <string>
#include <string_view>

#include "common/result.hpp"

namespace authserv::ldap {

// The values a Sun filter template may use (auth.searchfilter / inetDomainSearchFilter).
struct FilterVars {
  std::string_view uid;       // %U: the login without its domain
  std::string_view login;     // %u: uid@domain
  std::string_view domain;    // %d, and %V as Sun writes it ("uid=%U_%V")
  std::string_view original;  // %o: the login as the client sent it
};

// Substitutes %U %u %d %V %o (each escaped) and %% in `templ`. A bare template like "uid=%U" (Sun's
// own example) gets parentheses. An unknown %x or a trailing % is a Config error: templates come
// from the operator or the directory, and guessing would change what the filter matches.
common::Result<std::string> expand_filter(std::string_view templ, const FilterVars& vars);

// "(&<a><b>)". Both sides must already be filters.
std::string and_filter(std::string_view a, std::string_view b);

}  // namespace authserv::ldap
