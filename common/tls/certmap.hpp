// certmap.hpp: client certificate -> user mapping (AUTH-14, TLS-15): string DNs (RFC 4514), the
// certmap.conf parser (seed S2 §8 Table 8-8; 389-ds certmap.conf(5)), directory queries, the mapper.
// Pure: the TLS layer hands in the certificate's facts as strings; no NSS, no I/O, no clock.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <tl/expected.hpp>

#include "common/result.hpp"

namespace common::tls {

// ---------------------------------------------------------------------------------------------
// Distinguished names

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
};

using Rdn = std::vector<Ava>;  // AVAs joined with '+', in written order

struct Dn {
  std::vector<Rdn> rdns;  // string order: the most specific first ("CN=alice" before "C=US")

  bool empty() const { return rdns.empty(); }
  // RFC 4514 with canonical types: "cn=Alice Smith,o=Example\2c Inc.,c=US". Specials are
  // backslash-escaped, and bytes outside printable ASCII (controls, NUL, UTF-8) as \XX, so the
  // result is printable ASCII and parses back to an equal Dn.
  std::string to_string() const;
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

// RFC 4515 §3 assertion value: '*', '(', ')', '\', NUL and every byte outside printable ASCII become
// \XX, so an attacker's subject can neither add filter terms nor wildcards.
std::string escape_filter_value(std::string_view bytes);
// RFC 4514 §2.4 attribute value (see Dn::to_string).
std::string escape_dn_value(std::string_view bytes);

// ---------------------------------------------------------------------------------------------
// certmap.conf

// DNComps and FilterComps keep the difference between a property that is not there (commented
// out) and one that is there with no value (Table 8-8), since the two mean different searches.
enum class Comps : uint8_t { Absent, Empty, List };

struct FilterComp {
  std::string cert_attr;  // canonical subject attribute ("mail" for e)
  std::string ldap_attr;  // LDAP attribute the filter tests: "e=mail" -> mail; plain "uid" -> uid
};

struct CertMapSection {
  std::string name;          // "default" for the default section (names compare case-insensitively)
  std::optional<Dn> issuer;  // none for the default section
  std::string issuer_text;   // as written, for logs

  // Absent: the subject DN is the user's DN. Empty: search the whole tree. List: the base DN is
  // made of these subject attributes, in the subject's order.
  Comps dn_comps = Comps::Absent;
  std::vector<std::string> dn_comps_list;  // canonical attribute types
  // Absent or Empty: (objectclass=*). List: an AND of (ldap_attr=<subject value>).
  Comps filter_comps = Comps::Absent;
  std::vector<FilterComp> filter_comps_list;
  bool verify_cert = false;    // the entry's userCertificate;binary must equal the presented DER
  std::string cmap_ldap_attr;  // empty: not set. Else search (attr=<subject DN>) first

  uint32_t line = 0;    // of the "certmap" line, 0 when built in code
  uint32_t column = 0;

  bool is_default() const;
};

struct CertMapLimits {
  size_t max_line = 4096;     // bytes of one line (longer lines are reported and skipped unread)
  size_t max_sections = 256;  // default included
  size_t max_comps = 32;      // entries in one DNComps/FilterComps list
  size_t max_name = 128;      // section name, attribute names
  size_t max_errors = 16;     // errors kept; the rest are only counted
  DnLimits dn;
};

struct CertMapDiagnostic {
  std::string source;
  uint32_t line = 0;    // 1-based; 0 for sections built in code
  uint32_t column = 0;  // 1-based byte of the line
  std::string message;
  std::string to_string() const;  // "certmap.conf:3:9: message"
};
using CertMapErrors = std::vector<CertMapDiagnostic>;
template <class T>
using CertMapResult = tl::expected<T, CertMapErrors>;

// One error for common::Result callers (ErrorKind::Config, every message joined).
common::Error to_error(const CertMapErrors& errors);

struct PropertyError {
  size_t offset = 0;  // byte of the value
  std::string message;
};

// Sets one property as certmap.conf spells it (name case-insensitive): DNComps, FilterComps,
// VerifyCert, CmapLdapAttr. `value` is the text after the name, blanks trimmed; "" is present but
// empty. This is also the entry point for the unified form (base.certmap:default.dncomps "").
//   DNComps / FilterComps: names separated by commas and/or blanks; FilterComps entries may be
//     certattr=ldapattr ("e=mail"). A value in double quotes is unquoted first ("\"e=mail\"").
//   VerifyCert: on | off; empty means on (389-ds keeps that for Messaging Server compatibility).
//   CmapLdapAttr: an attribute name; empty means not set.
//   library, InitFn: refused (we load no mapping plugins); anything else: unknown property.
tl::expected<void, PropertyError> set_property(CertMapSection& section, std::string_view property,
                                               std::string_view value, const CertMapLimits& limits = {});

// The parsed file; immutable, so a reload builds a new one and swaps a shared_ptr<const CertMap>.
class CertMap {
 public:
  // What applies with no certmap.conf (seed S4 step 4: none is needed when the certificate's
  // e-mail equals the directory's mail; seed S2 §7 step 4 spells it "dncomps \"\"",
  // "filtercomps \"e=mail\""): one default section, DNComps empty (whole tree), FilterComps
  // e=mail, VerifyCert off, no CmapLdapAttr. A subject without E fails to map.
  static CertMap builtin_default();

  // Checks what the parser checks beyond syntax: exactly one default section, unique names and
  // issuer DNs, at most limits.max_sections, and no section that would search the whole tree
  // with no filter (DNComps empty, FilterComps absent or empty, no CmapLdapAttr: every entry
  // matches, so it could never map anyone).
  static CertMapResult<CertMap> build(std::vector<CertMapSection> sections, std::string_view source = "certmap",
                                      const CertMapLimits& limits = {});

  // The section whose issuer DN equals `issuer` (dn_equal), else the default section.
  const CertMapSection& section_for(const Dn& issuer) const;
  const CertMapSection& default_section() const { return sections_[default_index_]; }
  const std::vector<CertMapSection>& sections() const { return sections_; }

  // The effective configuration in certmap.conf syntax (for --check-config); parses back equal.
  std::string to_conf() const;

 private:
  friend class CertMapParser;
  CertMap() = default;
  std::vector<CertMapSection> sections_;
  size_t default_index_ = 0;
};

// Incremental certmap.conf parser; any split of the input gives the same result. Lines:
//   certmap <name> <issuerDN>          a section; "certmap default default" is mandatory
//   <name>:<property> [<value>]        for a section declared on an earlier line
//   # comment, blank lines; CRLF endings; a UTF-8 BOM at the start is skipped
// Errors (line, column) never stop the parse: it resyncs at the next LF and reports them all.
class CertMapParser {
 public:
  explicit CertMapParser(std::string source = "certmap.conf", CertMapLimits limits = {});

  void feed(std::string_view bytes);
  CertMapResult<CertMap> finish();  // ends the input (a last line without LF counts)

 private:
  void end_line();
  void parse_line(std::string_view line);
  void error(uint32_t column, std::string message);
  CertMapSection* find_section(std::string_view name);

  std::string source_;
  CertMapLimits limits_;
  std::string line_buf_;  // the line being read, at most max_line bytes
  bool overflow_ = false;
  uint32_t line_ = 1;
  std::vector<CertMapSection> sections_;
  std::vector<std::vector<std::pair<std::string, uint32_t>>> seen_;  // per section: property, line
  CertMapErrors errors_;
  size_t error_count_ = 0;
  bool too_many_sections_ = false;
};

CertMapResult<CertMap> parse_certmap(std::string_view text, std::string_view source = "certmap.conf",
                                     const CertMapLimits& limits = {});

// ---------------------------------------------------------------------------------------------
// Mapping

// What the TLS layer knows of a client certificate NSS has already verified (chain, CRL).
struct CertFacts {
  std::string issuer_dn;   // string form (NSS CERT_NameToAscii or RFC 4514)
  std::string subject_dn;
  std::string der;         // the certificate as presented, for VerifyCert
};

// One directory search. Always subtree scope under base_dn; a base_dn that does not exist yields
// no entries (not an error). `filter` is complete and authoritative; the other fields say how it
// was made (for the directory's attribute choice and for logs).
struct CertQuery {
  std::string base_dn;       // "" = the whole tree (the directory's configured user base)
  std::string filter;        // RFC 4515, every certificate value escaped
  bool subject_is_user_dn = false;  // DNComps absent: base_dn is the subject DN itself
  bool verify_cert = false;  // fetch userCertificate;binary: it must contain the presented DER
  std::string cmap_attr;     // set: filter is (cmap_attr=<subject DN as the TLS layer wrote it>)
  std::string section;       // the certmap section that decided

  friend bool operator==(const CertQuery&, const CertQuery&) = default;
};

// The searches for one certificate, tried in order until one finds entries. CmapLdapAttr gives
// two (389-ds ldapu_cert_searchfn_default, HP/Red Hat DS guides: "If the search does not yield
// any entries, the server retries the search using the DNComps and FilterComps mappings"), except
// that the retry is dropped when it would be a whole-tree (objectclass=*) search.
// Fails (ErrorKind::Protocol, detail "reason=... section=...") when a DN does not parse, a listed
// DNComps/FilterComps attribute is missing from the subject or has an empty or BER value.
common::Result<std::vector<CertQuery>> build_cert_queries(const CertMap& map, const CertFacts& facts);

// The user directory, implemented by authserv (LDAP or the embedded directory); tests use a fake.
class CertDirectory {
 public:
  virtual ~CertDirectory() = default;
  struct Entry {
    std::string dn;
    std::string uid;
    std::vector<std::string> certificates_der;  // userCertificate;binary values (when verify_cert)
  };
  // Asynchronous in spirit: `done` may run before search() returns or later, exactly once.
  virtual void search(const CertQuery& q, std::function<void(common::Result<std::vector<Entry>>)> done) = 0;
};

// Certificate -> canonical user (uid). Exactly one entry must match the first query that finds
// any; several are an error even with VerifyCert (we never pick one; 389-ds lets VerifyCert
// choose). VerifyCert on and no stored certificate equal to facts.der: an error. Errors are
// ErrorKind::Protocol with "reason=<no_entry|ambiguous|cert_mismatch|no_uid|...> section=..."
// (printable ASCII, bounded), or the directory's own error passed through.
// `map` and `facts` are read before this returns; `directory` must outlive the callback.
void map_certificate(const CertMap& map, const CertFacts& facts, CertDirectory& directory,
                     std::function<void(common::Result<std::string>)> done);

}  // namespace common::tls
