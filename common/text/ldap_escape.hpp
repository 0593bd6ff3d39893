// ldap_escape.hpp: values written into LDAP strings, RFC 4514 DN attribute values and RFC 4515
// filter assertion values. One module for both: logins and certificate subjects reach each, and
// two escapers that disagree on a character leave one of them the weak one.
#pragma once

#include <string>
#include <string_view>

namespace common::text {

// RFC 4515 §3: '*', '(', ')', '\' and NUL must be written \XX. So are every other control byte,
// DEL and every byte >= 0x80: RFC 4515 allows UTF-8 as it is, but escaped, a malformed sequence
// cannot confuse the server's filter parser, and equality matching is unchanged. A login such as
// "*)(uid=*" can then only ever match itself.
std::string escape_filter_value(std::string_view bytes);

// RFC 4514 §2.4: escapes exactly what it requires, '"' '+' ',' ';' '<' '>' '\' anywhere, '#' or
// ' ' at the start, ' ' at the end, with a backslash before the character, and NUL as \00. Every
// other control byte, DEL and byte >= 0x80 is \XX too, so the result is printable ASCII and a
// subject's bytes reach logs and config files unaltered.
//   '=' is not escaped: §2.4 does not require it, and §3's string grammar allows it.
//   A space at either edge is "\20", not "\ ": both are valid (§2.4 allows the hex form for any
//   octet), but "\ " at the end of a line is eaten by every tool that trims trailing blanks,
//   leaving a value that ends in a lone backslash.
std::string escape_dn_value(std::string_view bytes);

}  // namespace common::text
