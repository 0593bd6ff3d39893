// server.hpp: TLS for one listener: the NSS model socket (certificates per key type and per SNI
// name, versions, suites, client certificates) and the per-connection transform that runs
// NSS over memory buffers on the connection's loop. Used for implicit TLS and for STARTTLS alike.
#pragma once

#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "common/result.hpp"
#include "common/runtime/transform.hpp"
#include "common/tls/ciphers.hpp"

namespace common::tls {

class Nss;

// Per listener (TLS-14). Optional: requested; absence is fine but a bad certificate fails the
// handshake. Required: absence fails with certificate_required.
enum class ClientCerts { Off, Optional, Required };
std::string_view client_certs_name(ClientCerts mode);
Result<ClientCerts> parse_client_certs(std::string_view text);  // "off" | "optional" | "required"

struct ServerOptions {
  std::vector<std::string> certificates{"Server-Cert"};  // nicknames, one per key type (ECDSA + RSA) (TLS-05)
  // Server name -> nicknames (TLS-06 via SNI). Names are matched case-insensitively; "*.example.org"
  // matches one label. Unknown or absent names get `certificates`.
  std::vector<std::pair<std::string, std::vector<std::string>>> sni;
  ClientCerts client_certs = ClientCerts::Off;
  // With Optional: a certificate that fails verification (revoked, expired, another CA) is logged
  // (event=bad_client_cert) and the connection goes on as if none was sent, instead of failing the
  // handshake. For mail clients, who can still log in with a password while EXTERNAL stays
  // unavailable; never for back-end peers, whose only credential is the certificate.
  bool tolerate_bad_client_cert = false;
  std::string min_version = "1.2";  // "1.2" or "1.3"; 1.0/1.1 are refused (TLS-07)
  std::string adjust_ciphers;       // ssladjustciphersuites grammar (TLS-08, ciphers.hpp)
  // TLS 1.3 connections leave NSS's record layer once the handshake is over (record13.hpp), which
  // frees NSS's per-socket state; off keeps every record in NSS (for comparison in bench/tls).
  bool release_nss_after_handshake = true;
};

// The NSS model socket(s) of one listener: immutable once made, shared by all its connections on
// every loop thread (connections keep it alive). Destroy before the Nss object.
class ServerContext : public std::enable_shared_from_this<ServerContext> {
 public:
  // Fails with a clear message naming the nickname or the grammar column (TLS-26).
  static Result<std::shared_ptr<ServerContext>> create(const Nss& nss, const ServerOptions& options);
  ~ServerContext();
  ServerContext(const ServerContext&) = delete;
  ServerContext& operator=(const ServerContext&) = delete;

  // A TLS server session over memio for StartTlsSession::start_tls or Connection::start_implicit_tls.
  // Never null: if NSS cannot make the socket, the transform fails its first decode (the connection
  // then closes) and it is logged.
  std::unique_ptr<runtime::Transform> accept(std::string_view connection_id);

  // Client certificates are checked against the CRLs common::tls::Nss holds for the process
  // (NssOptions::crl_files, Nss::reload_crls on SIGHUP).

  // The start-up check of the TLS 1.3 record hand-over, which create() runs when
  // release_nss_after_handshake is on (and a failure turns the hand-over off for the process): for
  // each TLS 1.3 suite, an NSS client in memory handshakes with a connection of this context, data
  // goes both ways, each side sends a KeyUpdate, our layer closes, and the client must read it all.
  Result<void> self_test_handover();
  // Whether TLS 1.3 connections of this process may leave NSS: the NSS version is one the tests
  // passed on, and no self-test or hand-over has failed.
  static bool handover_enabled();

  const ServerOptions& options() const;
  const CipherSelection& ciphers() const;

  struct State;  // NSS details, in server.cpp

 private:
  ServerContext();
  std::unique_ptr<State> state_;
};

}  // namespace common::tls
