// directory.hpp: what authserv needs from a user directory, and the records it gets back. The
// embedded LMDB directory and the OpenLDAP backend implement Backend; policy and the gRPC service
// only see these types.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/result.hpp"
#include "common/tls/certmap_query.hpp"

namespace authserv::directory {

// inetUserStatus / mailUserStatus (STO-08, AUTH-15). The stricter of the two wins; an unknown value
// counts as Inactive so a typo in the directory fails closed.
enum class Status : uint8_t { Active, Inactive, Held, Deleted };
std::string_view status_name(Status s);                  // "active", "inactive", "hold", "deleted"
Status parse_status(std::string_view directory_value);   // case-insensitive; "" = Active
Status stricter(Status a, Status b);                     // Deleted > Held > Inactive > Active

struct DomainRecord {
  std::string name;  // lowercase, no trailing dot
  Status status = Status::Active;
  std::string allowed_services;  // mailAllowedServiceAccess of the domain ("" = no filter)
  std::string search_filter;     // inetDomainSearchFilter (LDAP only; "" = the configured default)
};

struct UserRecord {
  std::string canonical;  // "uid@domain": the one name every daemon uses for this user
  std::string uid;
  std::string domain;
  std::string dn;         // LDAP: the entry's DN; embedded: empty
  Status status = Status::Active;  // already combined with the domain's status
  std::string mail;       // primary address
  std::vector<std::string> addresses;  // mail, mailAlternateAddress, mailEquivalentAddress
  std::string mail_host;  // the store that holds the mailbox
  std::string allowed_services;          // user's mailAllowedServiceAccess ("" = none set)
  std::string domain_allowed_services;   // the domain's
  std::vector<std::string> access_domains;  // Netscape per-user host list (AUTH-16; empty = any)
  uint64_t quota_bytes = 0;  // 0: no quota
  uint64_t quota_messages = 0;
  std::string sieve;         // mailSieveRuleSource
  bool store_admin = false;  // may act for other users (MMP-67, STO-07)
  // Credentials. Never leave authserv, never logged.
  std::string password;  // stored userPassword: "{ARGON2}...", "{SSHA512}...", ...; "" = none
  std::string scram;     // "{SCRAM-SHA-256}i,salt,stored,server" (Dovecot); "" = none
  // Changes whenever the entry does (LDAP modifyTimestamp); "" = the backend has none. Not stored
  // by the embedded directory: its stored hash already changes with the password.
  std::string change_stamp;
};

enum class RecipientKind : uint8_t { User, Alias, Unknown };
struct Recipient {
  RecipientKind kind = RecipientKind::Unknown;
  std::string address;               // as asked, normalised (domain lowercased)
  std::optional<UserRecord> user;    // kind == User
  std::vector<std::string> targets;  // kind == Alias: expanded, up to kMaxAliasTargets
};
inline constexpr size_t kMaxAliasTargets = 1000;
inline constexpr int kMaxAliasDepth = 8;

// How a plaintext password check went when the backend does it (LDAP bind).
enum class BindResult : uint8_t { Match, Mismatch, Unavailable };

// Thread-safe; every call may block (LDAP) and so runs on a worker pool, except where
// `nonblocking()` says the calls are fast enough for gRPC's own threads (LMDB reads).
// Errors: ErrorKind::TempFail when the directory is down or slow (the client gets "try later"),
// ErrorKind::Internal for a damaged record. "Not found" is not an error: it is nullopt / Unknown.
class Backend {
 public:
  virtual ~Backend() = default;
  virtual bool nonblocking() const = 0;
  virtual std::string_view kind() const = 0;  // "embedded", "ldap": logs and metrics

  virtual common::Result<std::optional<DomainRecord>> find_domain(std::string_view domain) = 0;
  // `uid` and `domain` already split and lowercased (names.hpp); domain is never empty.
  // `as_typed` is the login as the client sent it (Sun's %o in LDAP search filters); empty when
  // the name comes from elsewhere (a token, a certificate), which means uid@domain.
  virtual common::Result<std::optional<UserRecord>> find_user(std::string_view uid, std::string_view domain,
                                                              std::string_view as_typed = {}) = 0;
  // `address` is "local@domain", domain lowercased. Aliases are expanded (depth kMaxAliasDepth,
  // loops cut), users are found by any of their addresses.
  virtual common::Result<Recipient> find_recipient(std::string_view address) = 0;
  // The certmap searches: a typed query (an AND of equalities under a base DN) that an LDAP
  // directory sends as filter text and the embedded directory evaluates as it is. Returns matching
  // users' canonical names.
  virtual common::Result<std::vector<std::string>> find_by_certificate(const common::tls::CertQuery& query) = 0;
  // The same search for certmap's VerifyCert: each user with the certificates stored in the entry
  // (userCertificate;binary, DER). A directory that keeps no certificates refuses (Config).
  struct CertificateHolder {
    std::string canonical;
    std::vector<std::string> certificates_der;
  };
  virtual common::Result<std::vector<CertificateHolder>> find_certificate_holders(const common::tls::CertQuery& query) {
    (void)query;
    return common::fail(common::ErrorKind::Config,
                        "certmap VerifyCert needs certificates stored in the directory; the " + std::string(kind()) +
                            " directory keeps none");
  }

  // Backends that check passwords by binding (LDAP `bind` mode) say so; the others return
  // nullopt and authserv verifies `UserRecord::password` itself.
  virtual std::optional<BindResult> bind_as(const UserRecord& user, std::string_view password) = 0;
  // Stores a new password hash after a successful login (AUTH-10 rehash). May be refused
  // (read-only directory): the login still succeeds.
  virtual common::Result<void> store_password_hash(const UserRecord& user, std::string_view stored,
                                                   std::string_view scram) = 0;
};

}  // namespace authserv::directory
