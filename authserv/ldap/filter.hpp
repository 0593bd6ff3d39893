// filter.hpp: building LDAP filters and DNs from untrusted values: RFC 4515 and RFC 4514 escaping, and
// Sun's search filter templates (%U, %u, %d or %V, %o). Pure: no I/O.
#pragma once

#include <string>
#include <string_view>

#include "common/result.hpp"

namespace authserv::ldap {

// RFC 4515 §3: a value for an assertion. `*`, `(`, `)`, `\`, NUL, every control byte, DEL and every
// byte >= 0x80 become \xx, so a login like "*)(uid=*" can only ever match itself.
std::string escape_filter_value(std::string_view value);

// RFC 4514 §2.4: a value for one RDN (attribute=value). Escapes `"+,;<>\` and NUL everywhere, a
// leading space or `#`, a trailing space, and control/non-ASCII bytes as \xx.
std::string escape_dn_value(std::string_view value);

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
