// rule.hpp: the parsed form of client access filters (tcpd hosts_access(5) syntax, seed S2 §7):
// patterns, EXCEPT chains, rules with their source position, and the parser's limits.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace common::access {

// 1-based; column counts bytes of the physical line.
struct Position {
  uint32_t line = 0;
  uint32_t column = 0;
  friend bool operator==(const Position&, const Position&) = default;
};

// A parse error or warning: "source:line:col: message".
struct Diagnostic {
  std::string source;
  Position pos;
  std::string message;
  std::string to_string() const;
};

// Every limit is enforced while reading, so a hostile file costs at most these amounts.
struct AccessLimits {
  size_t max_line = 4096;          // bytes of one logical line, continuation lines included
  size_t max_rules = 10000;        // per file or compact string
  size_t max_list_entries = 512;   // tokens in one rule (both lists, EXCEPT included)
  size_t max_token = 260;          // one pattern: a 253-byte name plus a user part fits
  size_t max_compact = 65536;      // a whole compact "+svc:list$-svc:list" string
  size_t max_errors = 16;          // errors kept; parsing goes on but only counts the rest
  size_t max_warnings = 64;
  size_t max_service_names = 63;   // distinct service names over a whole AccessFilter
};

enum class RuleKind : uint8_t { Allow, Deny };

// One host pattern: the client host in a client list, or the server host after service@.
struct HostPattern {
  enum class Kind : uint8_t {
    All,         // ALL, *
    Local,       // LOCAL: a verified name without a dot
    Known,       // KNOWN: address and verified name known
    Unknown,     // UNKNOWN: no address, or no verified name (none, DNS failure, mismatch)
    DnsSpoofer,  // DNSSPOOFER (tcpd: PARANOID): the PTR name does not resolve back
    V4Net,       // a.b.c.d, a.b.c., a.b.c.d/len, a.b.c.d/m.m.m.m
    V6Net,       // [v6], [v6]/len
    NameExact,   // host.example.com (lowercase, no trailing dot)
    NameSuffix,  // .example.com (lowercase, leading dot kept)
    Netgroup,    // @group: parsed, never matches (no NIS)
  };
  Kind kind = Kind::All;
  uint8_t prefix_len = 0;  // V4Net 0..32, V6Net 0..128
  uint32_t v4_net = 0;     // host order, already masked
  uint32_t v4_mask = 0;
  uint64_t v6_net[2] = {0, 0};  // big-endian halves, already masked
  uint64_t v6_mask[2] = {0, 0};
  std::string name;  // NameExact, NameSuffix, Netgroup
};

struct UserPattern {
  enum class Kind : uint8_t { All, Known, Unknown, Exact };
  Kind kind = Kind::All;
  std::string name;  // Exact, lowercase
};

struct ClientEntry {
  bool has_user = false;  // user@host form (identd user, or the login user for per-user rules)
  UserPattern user;
  HostPattern host;
};

struct ServiceEntry {
  bool all = false;      // ALL or *
  std::string name;      // lowercase service name unless all
  bool has_host = false; // service@host: matches the address/name the client connected to
  HostPattern host;
};

// "a EXCEPT b EXCEPT c" is {a, b, c} and means a EXCEPT (b EXCEPT c): right-associative (S2 §7).
template <class Entry>
using ExceptChain = std::vector<std::vector<Entry>>;

// Where a rule came from, for logs and postern-accesscheck.
struct RuleInfo {
  RuleKind kind = RuleKind::Allow;
  std::string source;  // file name, or "rules" for a compact string
  Position pos;        // first byte of the rule
  std::string text;    // the rule as written (continuations joined, comment dropped)
  std::string to_string() const;  // "source:line: text"
};

struct Rule {
  RuleInfo info;
  ExceptChain<ServiceEntry> services;
  ExceptChain<ClientEntry> clients;
};

struct RuleList {
  std::vector<Rule> rules;
  std::vector<Diagnostic> warnings;
};

// Our service names (ACC-04/ACC-23): one name per protocol, whatever the port or TLS mode, so
// "imap" covers 143 and 993 and "pop" 110 and 995 in every daemon, as the seed's MMP does.
inline constexpr const char* kKnownServices[] = {"smtp", "submission", "imap",      "pop",
                                                 "lmtp", "sieve",      "ens",       "authserv",
                                                 "mailstore", "http"};

}  // namespace common::access
