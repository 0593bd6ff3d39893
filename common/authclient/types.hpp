// types.hpp: plain C++ mirrors of proto/authserv.proto's messages, so session code in mta and mmp
// never sees protobuf or gRPC. Byte fields are std::string (binary-safe).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

namespace common::authclient {

// The TLS version as the TLS layer spells it (runtime::SecurityFacts::protocol), the one spelling
// front ends send and authserv reads: a second spelling would make authserv think a TLS client
// was in plaintext (PLAIN refused) or withhold SCRAM-SHA-256-PLUS.
inline constexpr std::string_view kTls12 = "TLSv1.2";
inline constexpr std::string_view kTls13 = "TLSv1.3";

// The wire number (0x0303 for "TLSv1.2", 0x0304 for "TLSv1.3", 0x0301/0x0302 for the old ones);
// 0 for "" and for any other spelling, which authserv treats as no TLS.
constexpr uint16_t tls_version_number(std::string_view name) {
  if (name == kTls13) return 0x0304;
  if (name == kTls12) return 0x0303;
  if (name == "TLSv1.1") return 0x0302;
  if (name == "TLSv1.0") return 0x0301;
  return 0;
}

// What the front end knows about the client's connection (authserv enforces policy on it).
struct ConnectionFacts {
  std::string service;              // "imap", "pop", "smtp", "submission", "sieve", ...
  std::string client_address;       // no port
  std::string client_name;          // forward-confirmed reverse DNS name, if any
  std::string server_address;       // the local address the client reached
  std::string tls_version;          // "" when not under TLS, else kTls12 or kTls13
  std::string tls_cipher;
  std::string client_cert_subject;  // verified client certificate's subject (NSS form)
  std::string client_cert_issuer;   // its issuer (certmap picks a section by it)
  std::string client_cert_der;      // the same certificate, DER
  std::string channel_binding;      // tls-exporter (RFC 9266), for SCRAM-SHA-256-PLUS
  std::string session_id;           // so the logs of both tiers join
  std::string default_domain;       // for unqualified names (listener / SNI); "" = authserv's own
};

enum class FailureKind { Unspecified, Credentials, NotAllowed, Authz, Protocol, Mechanism, Aborted, Temporary };
std::string_view failure_kind_name(FailureKind kind);  // "credentials", ... for logs and metrics

struct UserInfo {
  std::string canonical;
  std::string status;  // "active", "inactive", "hold", "deleted"
  std::string mail_host;
  std::string allowed_services;         // the user's mailAllowedServiceAccess
  std::string domain_allowed_services;  // the domain's
  uint64_t quota_bytes = 0;
  uint64_t quota_messages = 0;
  std::string sieve;
  std::vector<std::string> addresses;
  bool store_admin = false;
};

enum class RecipientKind { Unknown, User, Alias };

struct RecipientInfo {
  RecipientKind kind = RecipientKind::Unknown;
  std::string canonical;  // User: the local user
  std::string mail_host;  // User
  std::string status;     // User: a held account's mail is kept, a deleted one's refused
  std::vector<std::string> targets;  // Alias: expanded addresses
  uint64_t quota_bytes = 0;     // User: 0 = no quota (the store refuses delivery beyond it)
  uint64_t quota_messages = 0;  // User: 0 = no limit
};

struct AuthenticatedUser {
  std::string canonical;  // "uid@domain"
  std::string authcid;    // who proved it (differs from canonical for admin proxy logins)
  std::string mail_host;
  std::vector<std::string> addresses;
  std::string token;  // signed access token for the store (common/authtoken)
  int64_t token_expires_unix = 0;
  uint64_t quota_bytes = 0;
  uint64_t quota_messages = 0;
};

// A refused renewal is an answer (ok false, reason for logs), not an error.
struct TokenRenewal {
  bool ok = false;
  std::string token;
  int64_t token_expires_unix = 0;
  std::string reason;
};

// What a SASL relay tells the session, in protocol terms.
struct SaslChallenge {
  std::string base64;  // send as the continuation ("334 " / "+ "); may be empty
};
struct SaslSuccess {
  AuthenticatedUser user;
  std::string additional_data_base64;  // empty: none (else e.g. SCRAM server-final, RFC 4954 §4)
};
struct SaslFailure {
  FailureKind kind = FailureKind::Unspecified;
  std::string reason;  // for the front end's logs only, never for the mail client
};
using SaslOutput = std::variant<SaslChallenge, SaslSuccess, SaslFailure>;

}  // namespace common::authclient
