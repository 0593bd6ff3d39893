// mechanisms.hpp: which SASL mechanisms a connection may see and use (AUTH-08 mech_list, the
// plaintextmincipher / RestrictPlainPasswords rule). Advertising and AUTH use the same check.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "common/result.hpp"

namespace authserv::policy {

inline constexpr uint16_t kTls12 = 0x0303;
inline constexpr uint16_t kTls13 = 0x0304;

struct MechanismPolicy {
  // sasl.default.mech_list (AUTH-08): enabled mechanisms in advertising order, uppercase, known
  // to authserv/sasl (parse_mech_list checks). Empty: every mechanism in the SASL table's order.
  std::vector<std::string> mech_list;
  // plaintextmincipher = 0 / RestrictPlainPasswords off: PLAIN, LOGIN and bearer tokens also
  // without TLS. Off by default: a password on the wire in clear is a password given away.
  bool allow_plaintext_without_tls = false;
  // Under TLS, the lowest protocol version that may carry a plaintext mechanism (0: any).
  uint16_t plaintext_min_tls_version = 0;
  bool token_issuers_configured = false;  // OAUTHBEARER, XOAUTH2 need somewhere to check tokens
};

struct ConnectionState {
  bool under_tls = false;               // between the client and the front end
  uint16_t tls_version = 0;             // 0x0303 TLS 1.2, 0x0304 TLS 1.3; 0 when not under TLS
  bool channel_binding = false;         // tls-exporter bytes available (RFC 9266): -PLUS
  bool verified_client_certificate = false;  // EXTERNAL
};

struct MechanismCheck {
  bool allowed = false;
  // "ok", "unknown_mechanism", "not_enabled", "needs_tls", "tls_too_old",
  // "needs_channel_binding", "needs_client_certificate", "no_token_issuers": logs and metrics.
  std::string_view reason;
  explicit operator bool() const { return allowed; }
};

// At AUTH time: a client may try a mechanism we never advertised; it is refused the same way.
MechanismCheck mechanism_allowed(std::string_view name, const MechanismPolicy& policy,
                                 const ConnectionState& state);

// What to advertise, in order: every enabled mechanism that mechanism_allowed() accepts.
std::vector<std::string> mechanisms_for(const MechanismPolicy& policy, const ConnectionState& state);

// "SCRAM-SHA-256 PLAIN": space-separated, case-insensitive. Unknown or repeated names are config
// errors naming the word; the result is uppercase.
common::Result<std::vector<std::string>> parse_mech_list(std::string_view text);

}  // namespace authserv::policy
