// certmap_dn.hpp: distinguished names as certmap reads them from client certificates: RFC 4514
// strings (and what NSS and RFC 1779 writers produce), parsed, printed back and compared.
// Pure: no NSS, no I/O. Every byte of a subject or issuer is hostile.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

#include <tl/expected.hpp>

namespace common::tls {

// A hostile DN costs at most these amounts (X.509 names from real CAs are far smaller).
struct DnLimits {
  size_t max_length = 4096;  // bytes of the string form
  size_t max_rdns = 64;
  size_t max_avas = 16;  // per multi-valued RDN
  size_t max_type = 128;  // bytes of one attribute type
};

// One attribute=value pair. `type` is canonical (canonical_attr_type): lowercase, with the
// certmap aliases folded, so "E", "email", "emailAddress", "MAIL" and both e-mail OIDs are "mail"
// (389-ds lib/ldaputil/certmap.c maps the PKCS#9 E and RFC 1274 MAIL to the LDAP attribute mail).
struct Ava {
  std::string type;
  std::string value;  // unescaped bytes; may hold NUL or any byte the certificate carried
  // Written as #hex (RFC 4514 §2.4) with a BER type that is not a character string: `value` then
  // holds the BER bytes; such values compare as bytes and are never put into filters or DNs.
  bool ber = false;
  friend bool operator==(const Ava&, const Ava&) = default;
};

using Rdn = std::vector<Ava>;  // AVAs joined with '+', in written order

struct Dn {
  std::vector<Rdn> rdns;  // string order: the most specific first ("CN=alice" before "C=US")

  bool empty() const { return rdns.empty(); }
  // RFC 4514 with canonical types: "cn=Alice Smith,o=Example\, Inc.,c=US", each value escaped by
  // common::text::escape_dn_value (printable ASCII that parses back to an equal Dn), BER values
  // as #hex.
  std::string to_string() const;
  // The same RDNs, types and bytes (certmap's queries compare so); dn_equal() is the lenient match.
  friend bool operator==(const Dn&, const Dn&) = default;
};

struct DnError {
  size_t offset = 0;  // byte of the input where the problem is
  std::string message;
};

// RFC 4514 plus what NSS and RFC 1779 writers produce: blanks around ',', '+' and '=', ';' between
// RDNs, quoted values ("Example, Inc."), and "OID.2.5.4.3" types. Escapes: \, \+ \" \\ \; \< \>
// \= \# \space and \XX. Unescaped leading and trailing blanks of a value are dropped. "" is the
// empty DN. A leading '#' value must be hex; character-string BER types (UTF8, Printable, IA5,
// Teletex, Visible) are decoded to their text.
tl::expected<Dn, DnError> parse_dn(std::string_view text, const DnLimits& limits = {});

// Equality for certmap's issuer matching: RDNs in the same order, each the same set of AVAs; types
// compared canonically; string values compared ignoring ASCII case, leading/trailing blanks and
// runs of inner blanks (the caseIgnore rules of the attributes X.509 names use: cn, o, ou, c, l, st,
// dc, mail, uid); BER values compared as bytes. 389-ds normalises the same way (ldapu_dn_normalize
// then strcasecmp), although the Sun manuals call the issuer match exact: we take the lenient
// reading since both spellings name the same CA, which NSS has already verified.
bool dn_equal(const Dn& a, const Dn& b);

// "CN" -> "cn", "E"/"email"/"emailAddress"/"rfc822Mailbox"/"mail"/1.2.840.113549.1.9.1/
// 0.9.2342.19200300.100.1.3 -> "mail", "OID.2.5.4.3" -> "cn", "userid" -> "uid", "S" -> "st",
// "commonName" -> "cn", ...; other names are lowercased, other OIDs kept as dotted numbers.
std::string canonical_attr_type(std::string_view type);

// RFC 4512 §2.5 attribute description without options: a descr ("cn", "mail") or a numericoid
// ("2.5.4.3"), optionally prefixed "OID." as RFC 1779 writers do.
bool is_attribute_name(std::string_view s);

}  // namespace common::tls
