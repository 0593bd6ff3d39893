// names.hpp: pure checks and normal forms for login names and mail addresses (AUTH-07 default
// domain, subaddress detail). No I/O; every input is bounded before it is copied.
#pragma once

#include <string>
#include <string_view>

#include "common/result.hpp"

namespace authserv::directory {

// RFC 5321 §4.5.3.1 sizes.
inline constexpr size_t kMaxLocalPart = 64;
inline constexpr size_t kMaxDomain = 253;
inline constexpr size_t kMaxAddress = 320;

struct Login {
  std::string uid;     // lowercased
  std::string domain;  // lowercased, no trailing dot
  std::string canonical() const { return uid + "@" + domain; }
};

// "Alice" + default "example.com" -> {alice, example.com}; "alice@Example.COM." -> {alice,
// example.com}. Unqualified with no default domain, empty parts, blanks, control bytes, NUL, a
// second '@' or over-long parts: ErrorKind::Protocol. Bytes special to LDAP DNs or filters are
// allowed: the LDAP backend escapes them (RFC 4514/4515).
common::Result<Login> split_login(std::string_view login, std::string_view default_domain);

// A domain alone (same rules as the domain part above): lowercased, one trailing dot dropped.
common::Result<std::string> normalize_domain(std::string_view domain);

// "Alice@Example.COM" -> "Alice@example.com": the local part keeps its case for display, the
// domain is lowercased. Same checks as split_login, but a domain is required.
common::Result<std::string> normalize_address(std::string_view address);

// The lookup key for an address: everything lowercased. Local parts are case-sensitive in theory
// (RFC 5321 §2.4) but no mail system we interoperate with treats them so.
std::string address_key(std::string_view address);

// "alice+tag@example.com" -> "alice@example.com"; unchanged when there is no delimiter in the
// local part, or when the delimiter is its first byte ("+list@x" is a real name, not a detail).
std::string strip_detail(std::string_view address, char delimiter);

}  // namespace authserv::directory
