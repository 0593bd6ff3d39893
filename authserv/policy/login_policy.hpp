// login_policy.hpp: may this user log in to this service from this client, and act as that user?
// Pure functions over a directory record and connection facts (AUTH-15, AUTH-16, MMP-67). No I/O.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>

#include "authserv/directory/directory.hpp"
#include "common/access/filter.hpp"
#include "common/net/address.hpp"

namespace authserv::policy {

struct LoginFacts {
  std::string_view service;  // access-filter service name: "imap", "pop", "submission", ...
  std::optional<common::net::IpAddress> client_address;
  common::access::HostName client_name;  // NotLooked until a NeedClientName answer asks for it
  std::optional<common::net::IpAddress> server_address;
  common::access::HostName server_name;  // for service@host rules; NotLooked until asked
  // Only shown in the reason: plaintext-over-clear was already refused by mechanism_allowed().
  bool under_tls = false;
};

enum class Outcome : uint8_t {
  Allow,
  AccountInactive,
  AccountHeld,
  AccountDeleted,
  ServiceDenied,   // mailAllowedServiceAccess (the user's, else the domain's)
  HostDenied,      // Netscape access domains
  NeedClientName,  // look up the client's verified name, fill LoginFacts::client_name, ask again
  NeedServerName,  // the same for the server's name (a service@host rule in the filter)
};
std::string_view outcome_name(Outcome o);  // "allow", "account_inactive", ...: metric labels

struct LoginDecision {
  Outcome outcome = Outcome::Allow;
  // For logs only, distinct per cause (STO-08): the client gets one generic answer.
  std::string reason;
  bool allowed() const { return outcome == Outcome::Allow; }
  bool needs_name() const { return outcome == Outcome::NeedClientName || outcome == Outcome::NeedServerName; }
};

// After the credentials checked out (AUTH-16 "checked after the password"), in this order:
// account status; the user's mailAllowedServiceAccess, or the domain's when the user has none
// (none at all: allowed); then the per-user access domains. A filter that does not parse denies
// the service: a damaged directory entry must not open it.
LoginDecision check_login(const directory::UserRecord& user, const LoginFacts& facts);

// The Netscape access-domain algorithm (seed S3 "Access domain algorithm"): empty list allows;
// "none" denies; dotted quads match numerically with 0 octets as wildcards, no DNS; names match
// the client's verified name or a suffix of it at a label boundary; otherwise deny. Entries may
// also hold several names separated by blanks or commas. Only Allow, HostDenied, NeedClientName.
LoginDecision check_access_domains(std::span<const std::string> access_domains,
                                   const std::optional<common::net::IpAddress>& client_address,
                                   const common::access::HostName& client_name);

enum class ProxyOutcome : uint8_t {
  Self,        // no authzid, or the authcid's own name: nothing to authorize
  Allow,       // a store administrator acting for `target` (MMP-67, STO-07)
  NotAdmin,    // "NO Not authorized to login as specified user"
  BadAuthzid,  // empty parts, control bytes, too long
  HostDenied,  // the proxydomainallowed filter refused this client
  NeedClientName,  // as for check_login: look the name up and ask again
  NeedServerName,
};

struct ProxyDecision {
  ProxyOutcome outcome = ProxyOutcome::Self;
  std::string target;  // canonical-form authzid ("uid@domain", lowercased); the caller looks it up
  std::string reason;  // for logs
  bool allowed() const { return outcome == ProxyOutcome::Self || outcome == ProxyOutcome::Allow; }
};

inline constexpr size_t kMaxAuthzid = 320;

// SASL authorization identity check. The authzid gets `default_domain` when unqualified
// (AUTH-07). Acting for another user needs `authenticated.store_admin`, and, when
// `proxy_hosts` is given (proxydomainallowed, TH-17), a client that filter allows for
// `facts.service`. The target's own status is checked by the caller with check_login on the
// target's record.
ProxyDecision authorize_proxy(const directory::UserRecord& authenticated, std::string_view requested_authzid,
                              std::string_view default_domain = {}, const LoginFacts& facts = LoginFacts{},
                              const common::access::AccessFilter* proxy_hosts = nullptr);

}  // namespace authserv::policy
