// filter.hpp: compiled client access filters and their pure evaluator: facts about a connection in,
// allow/deny (or "look up this name and ask again") out, with the rule that decided. No I/O.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/access/parser.hpp"
#include "common/access/rule.hpp"
#include "common/net/address.hpp"

namespace common::access {

// Matching, per name state (tcpd hosts_access.c host_match, seed S2 Table 7-2):
//   pattern          NotLooked   None   TempFail   Verified(n)       Mismatch(n)
//   address forms    (never need a name: a.b.c.d, a.b.c., /len, /mask, [v6], [v6]/len)
//   KNOWN            ask         no     no         yes               no
//   UNKNOWN          ask         yes    yes        no                yes
//   LOCAL            ask         no     no         n has no dot      no
//   DNSSPOOFER       ask         no     no         no                yes
//   name, .domain    ask         no     no         compare n         no (a spoofed name is no name)
//   @netgroup        never (no NIS; the parser warns)
// tcpd's paranoid name matches neither KNOWN nor UNKNOWN; we let UNKNOWN match it so that the
// common deny "ALL: UNKNOWN" also keeps out hosts with a forged PTR (fail closed).
//
// What the caller knows about a host's name. The caller gets it as tcpd does: PTR lookup of the
// address, then A/AAAA lookup of the PTR name; the name is Verified only when that forward lookup
// returns the address (ACC-02, ACC-10).
enum class NameStatus : uint8_t {
  NotLooked,  // DNS not consulted yet: the evaluator asks for it only when a rule needs it
  None,       // no PTR record (NXDOMAIN / no data)
  TempFail,   // DNS outage (SERVFAIL, timeout): UNKNOWN matches, KNOWN does not
  Verified,   // forward-confirmed reverse DNS: `name` is trustworthy
  Mismatch,   // PTR `name` does not resolve back to the address: a DNSSPOOFER
};

struct HostName {
  NameStatus status = NameStatus::NotLooked;
  std::string_view name;  // Verified and Mismatch; a trailing dot and letter case do not matter

  static HostName not_looked() { return {}; }
  static HostName none() { return {NameStatus::None, {}}; }
  static HostName temp_fail() { return {NameStatus::TempFail, {}}; }
  static HostName verified(std::string_view n) { return {NameStatus::Verified, n}; }
  static HostName mismatch(std::string_view n) { return {NameStatus::Mismatch, n}; }
};

struct HostFacts {
  // No address (not an IP socket): address patterns never match, UNKNOWN matches, and the name
  // counts as None since it cannot be looked up.
  std::optional<net::IpAddress> address;
  HostName name;
};

// The facts of one connection (or login). Views must outlive the evaluate() call only.
struct AccessRequest {
  std::string_view service;  // "imap", "pop", ... compared case-insensitively
  HostFacts client;          // the peer
  HostFacts server;          // the local endpoint the client reached (for service@host rules)
  // identd user for user@host on connections (legacy, usually absent), or the login user when
  // applying per-user rules. Absent means "unknown": ALL and UNKNOWN match it, names do not.
  std::optional<std::string_view> user;
};

enum class Verdict : uint8_t {
  Allow,
  Deny,
  NeedClientName,  // look up the client's name, set request.client.name, evaluate again
  NeedServerName,  // the same for the server's name (service@host rules)
};

enum class DecidedBy : uint8_t {
  Rule,               // `rule` matched (or, for Need*, is waiting for a name)
  NoMatch,            // no rule matched: allow (ACC-03)
  NoMatchAllowsOnly,  // no rule matched, allow rules but no deny rules: deny (ACC-03)
};

struct Decision {
  Verdict verdict = Verdict::Allow;
  DecidedBy by = DecidedBy::NoMatch;
  // The deciding rule (by == Rule), or for Need* the first rule that cannot be decided without
  // the name. Points into the AccessFilter, valid while it lives.
  const RuleInfo* rule = nullptr;
  // For Need*: every name that rule needs, so the caller can start both lookups at once.
  bool needs_client_name = false;
  bool needs_server_name = false;

  bool allowed() const { return verdict == Verdict::Allow; }
  bool needs_name() const {
    return verdict == Verdict::NeedClientName || verdict == Verdict::NeedServerName;
  }
};

// "allow by hosts.allow:3: imap: ALL", "deny: no rule matched (allow rules but no deny rules)",
// "needs the client name for hosts.allow:2: ALL: .example.com".
std::string describe(const Decision& decision);

// Immutable once built; evaluate() is const, allocation-free and safe from any thread, so a
// reload builds a new filter and swaps a std::shared_ptr<const AccessFilter>.
//
// Order (ACC-03, S2 §7): every Allow rule in the order given, then every Deny rule; the first
// match decides. No match allows, except when there are Allow rules and no Deny rules at all.
// "There are Allow rules" counts every rule regardless of its services, as the seed's per-user
// mailAllowedServiceAccess note says (an allow for any service denies the unnamed ones).
class AccessFilter {
 public:
  AccessFilter();  // no rules: allows everything
  ~AccessFilter();
  AccessFilter(AccessFilter&&) noexcept;
  AccessFilter& operator=(AccessFilter&&) noexcept;
  AccessFilter(const AccessFilter&) = delete;
  AccessFilter& operator=(const AccessFilter&) = delete;

  // Rules of every list, Allow ones first (each list keeps its order). Fails when the lists name
  // more than limits.max_service_names distinct services.
  static ParseResult<AccessFilter> build(std::vector<RuleList> lists, const AccessLimits& limits = {});
  // An allow file and a deny file (either may be empty text); names appear in diagnostics.
  static ParseResult<AccessFilter> from_files(std::string_view allow_text, std::string_view allow_name,
                                              std::string_view deny_text, std::string_view deny_name,
                                              const AccessLimits& limits = {});
  // A per-user/domain compact string (mailAllowedServiceAccess, ACC-05/ACC-20). The '+' rules
  // are tried first, then the '-' rules, each in written order, as for files: the seed's schema
  // reference evaluates these attributes "in this manner" (allow, deny, then the default).
  static ParseResult<AccessFilter> from_compact(std::string_view rules, std::string_view source = "rules",
                                                const AccessLimits& limits = {});

  // Never does I/O. Ask-again protocol: a NotLooked name is requested (Need*) only when the
  // first rule not already ruled out by numeric facts needs it; purely numeric rules never ask.
  Decision evaluate(const AccessRequest& request) const;

  size_t allow_rules() const { return allow_count_; }
  size_t deny_rules() const { return deny_count_; }
  const std::vector<Diagnostic>& warnings() const { return warnings_; }

  struct Impl;  // compiled form (filter.cpp)

 private:
  std::vector<Diagnostic> warnings_;
  size_t allow_count_ = 0;
  size_t deny_count_ = 0;
  std::unique_ptr<Impl> impl_;
};

}  // namespace common::access
