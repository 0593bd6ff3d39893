// certmap_query.hpp: certificate -> user: the directory searches certmap.conf prescribes for a
// verified client certificate (typed, never filter text to parse back), and the mapper that runs
// them against the user directory. Pure: the TLS layer hands in the certificate's facts.
#pragma once

#include <functional>
#include <string>
#include <vector>

#include "common/result.hpp"
#include "common/tls/certmap_conf.hpp"
#include "common/tls/certmap_dn.hpp"

namespace common::tls {

// What the TLS layer knows of a client certificate NSS has already verified (chain, CRL).
struct CertFacts {
  std::string issuer_dn;   // string form (NSS CERT_NameToAscii or RFC 4514)
  std::string subject_dn;
  std::string der;         // the certificate as presented, for VerifyCert
};

// The filter of one certmap search: an AND of equality assertions (RFC 4515 "(attr=value)"), or,
// with none, every entry ("(objectclass=*)"). Values are the certificate's bytes as they are:
// to_string() escapes them for an LDAP server, and the embedded directory compares them
// directly, so no filter text is ever parsed back and no escaping mistake can add a term.
struct CertFilter {
  struct Equality {
    std::string attr;   // the LDAP attribute certmap.conf names (FilterComps, CmapLdapAttr)
    std::string value;  // raw bytes; never empty
    friend bool operator==(const Equality&, const Equality&) = default;
  };
  std::vector<Equality> all_of;

  bool matches_everything() const { return all_of.empty(); }
  // "(mail=a@example.com)", "(&(uid=a)(mail=a@example.com))", "(objectclass=*)"; every value
  // through common::text::escape_filter_value.
  std::string to_string() const;
  friend bool operator==(const CertFilter&, const CertFilter&) = default;
};

// One directory search. Always subtree scope under `base`; a base that does not exist yields no
// entries (not an error). `filter` is complete and authoritative; the other fields say how it was
// made (for the directory's attribute choice and for logs).
struct CertQuery {
  Dn base;                          // empty: the whole tree (the directory's configured user base)
  CertFilter filter;
  bool subject_is_user_dn = false;  // DNComps absent: base is the subject DN itself
  bool verify_cert = false;  // fetch userCertificate;binary: it must contain the presented DER
  std::string cmap_attr;     // set: filter is (cmap_attr=<subject DN as the TLS layer wrote it>)
  std::string section;       // the certmap section that decided

  std::string base_dn() const { return base.to_string(); }  // RFC 4514, "" for the whole tree
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
