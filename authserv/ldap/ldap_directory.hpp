// ldap_directory.hpp: the OpenLDAP backend of authserv: users, domains and mail groups in a
// Sun/Oracle Messaging Server (Schema 2) directory, over a bounded pool of libldap connections.
#pragma once

#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include "authserv/directory/directory.hpp"
#include "common/result.hpp"

namespace authserv::ldap {

// Attribute names. Defaults are Sun's; directories migrated from elsewhere rename some.
struct LdapAttributes {
  std::string uid = "uid";
  std::string mail = "mail";
  std::string alternate_address = "mailAlternateAddress";
  std::string equivalent_address = "mailEquivalentAddress";
  std::string mail_host = "mailHost";
  std::string user_status = "inetUserStatus";
  std::string mail_status = "mailUserStatus";
  std::string allowed_services = "mailAllowedServiceAccess";
  std::string quota = "mailQuota";
  std::string message_quota = "mailMsgQuota";
  std::string sieve = "mailSieveRuleSource";
  std::string access_domains = "mailAccessDomain";
  std::string password = "userPassword";
  std::string scram;  // SCRAM-SHA-256 verifier attribute; "" = the directory holds none
  std::string group_member = "mgrpRFC822MailMember";
  std::string group_class = "inetMailGroup";
  std::string group_status = "inetMailGroupStatus";
  // Domain entries.
  std::string domain_status = "inetDomainStatus";
  std::string mail_domain_status = "mailDomainStatus";
  std::string domain_allowed_services = "mailDomainAllowedServiceAccess";
  std::string domain_search_filter = "inetDomainSearchFilter";
  std::string domain_base_dn = "inetDomainBaseDN";
  std::string preferred_domain = "sunPreferredDomain";
};

enum class PasswordCheck {
  Bind,  // bind as the user's DN on a connection of its own; userPassword is never read
  Hash,  // read userPassword into UserRecord::password; authserv verifies it
};

struct LdapOptions {
  // ldap:// or ldaps://; tried in order when a connection is made (failover).
  std::vector<std::string> urls;
  bool start_tls = false;  // AUTH-12 ldaprequiretls: refuse to talk unless StartTLS succeeds
  std::string ca_file;     // PEM CAs to trust for ldaps/StartTLS ("" = the system's)
  std::string bind_dn;     // the service account ("" = anonymous)
  std::string bind_password;
  std::string base_dn;      // users and groups (local.ugldapbasedn)
  std::string domain_base;  // domain entries ("" = base_dn)
  bool search_for_domain = true;  // AUTH-06 searchfordomain; false: users straight under base_dn
  // AUTH-05; a domain's inetDomainSearchFilter replaces it.
  std::string user_filter = "(&(uid=%U)(objectclass=inetmailuser))";
  // %d is the domain asked for. associatedDomain entries are aliases of the sunPreferredDomain.
  std::string domain_filter =
      "(&(|(objectclass=sunManagedOrganization)(objectclass=inetDomain))"
      "(|(sunPreferredDomain=%d)(associatedDomain=%d)))";
  size_t pool_size = 4;  // service-account connections; as many again for user binds
  std::chrono::milliseconds connect_timeout{3000};
  std::chrono::milliseconds op_timeout{5000};  // each request, and waiting for a free connection
  int size_limit = 100;                        // entries per certificate search
  PasswordCheck password_check = PasswordCheck::Bind;
  bool allow_rehash = false;       // AUTH-10 auto_transition: store_password_hash may write
  char detail_delimiter = '+';  // alice+tag@ -> alice@ for recipients; '\0' = off
  std::vector<std::string> store_admins;  // canonical names (Sun store.admins)
  LdapAttributes attrs;
};

class LdapDirectory final : public directory::Backend {
 public:
  // Checks the options and makes one service connection, so mistakes show at start-up: Config for
  // bad options or a refused service bind, TempFail when no server answers or TLS fails (the
  // detail says which; the caller may retry).
  static common::Result<std::unique_ptr<LdapDirectory>> open(LdapOptions options);
  ~LdapDirectory() override;

  bool nonblocking() const override { return false; }
  std::string_view kind() const override { return "ldap"; }

  common::Result<std::optional<directory::DomainRecord>> find_domain(std::string_view domain) override;
  common::Result<std::optional<directory::UserRecord>> find_user(std::string_view uid, std::string_view domain,
                                                                 std::string_view as_typed = {}) override;
  common::Result<directory::Recipient> find_recipient(std::string_view address) override;
  // The query as RFC 4514/4515 text (CertQuery::base_dn, CertFilter::to_string), ANDed with
  // (objectclass=inetmailuser); the whole tree is [ldap] base_dn.
  common::Result<std::vector<std::string>> find_by_certificate(const common::tls::CertQuery& query) override;
  common::Result<std::vector<CertificateHolder>> find_certificate_holders(const common::tls::CertQuery& query) override;
  std::optional<directory::BindResult> bind_as(const directory::UserRecord& user,
                                               std::string_view password) override;
  common::Result<void> store_password_hash(const directory::UserRecord& user, std::string_view stored,
                                           std::string_view scram) override;


 private:
  struct Impl;
  explicit LdapDirectory(std::unique_ptr<Impl> impl);
  common::Result<std::vector<CertificateHolder>> find_holders(std::string_view base_dn, std::string_view filter,
                                                              bool with_certificates);
  std::unique_ptr<Impl> impl_;
};

}  // namespace authserv::ldap
