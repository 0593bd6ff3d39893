// certmap_conf.hpp: the certmap.conf file (seed S2 §8 Table 8-8; 389-ds certmap.conf(5)): its
// sections, properties, incremental parser and checks. Pure: no NSS, no I/O.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <tl/expected.hpp>

#include "common/result.hpp"
#include "common/tls/certmap_dn.hpp"

namespace common::tls {

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

}  // namespace common::tls
