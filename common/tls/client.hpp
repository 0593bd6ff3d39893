// client.hpp: TLS for connections we open (the mta's LMTP to the store, SMTP to remote MXs): an NSS
// client model over memio like ServerContext's, and the per-connection transform, for implicit TLS
// (installed at connect) and for STARTTLS (installed after the server's 220).
#pragma once

#include <memory>
#include <string>
#include <string_view>

#include "common/result.hpp"
#include "common/runtime/transform.hpp"
#include "common/tls/ciphers.hpp"

namespace common::tls {

class Nss;

// What the server's certificate is checked against.
//  Opportunistic: checked against everything NSS trusts, the result only recorded in the facts
//    (RFC 7435: encryption without authentication beats plaintext; SMTP to a remote MX by default).
//  DeploymentCa: the CAs of the host's NSS database only; a chain ending in a public root fails,
//    so a certificate a public CA issued for "store1" cannot stand in for our store.
//  SystemRoots: the public roots only, NSS's built-in module (libnssckbi.so from Debian's libnss3,
//    Mozilla's root list, the source Debian's ca-certificates is made from too); loaded when
//    the process has not already. For destinations where STARTTLS with a valid certificate is required.
enum class Verify { Opportunistic, DeploymentCa, SystemRoots };
std::string_view verify_name(Verify mode);
Result<Verify> parse_verify(std::string_view text);  // "opportunistic" | "deployment-ca" | "system"

struct ClientOptions {
  Verify verify = Verify::DeploymentCa;
  std::string client_certificate;  // nickname of our certificate for mutual TLS; empty: none
  std::string min_version = "1.2";  // "1.2" or "1.3"
  std::string adjust_ciphers;       // ssladjustciphersuites grammar (ciphers.hpp)
};

// Per connection: the name to send (SNI) and the name the certificate must carry.
struct ClientPeer {
  std::string server_name;    // SNI (RFC 6066 §3); not sent when empty or an IP literal
  std::string expected_name;  // checked with CERT_VerifyCertName; empty: server_name; empty both: not checked
};

// A client transform; failure() says why its handshake or a record failed, for the typed result.
class ClientTransform : public runtime::Transform {
 public:
  virtual const std::string& failure() const = 0;
};

// Immutable once made, shared by every connection on every loop thread (connections keep it alive).
// Create at start-up (it may load the built-in roots module); destroy before the Nss object.
class ClientContext : public std::enable_shared_from_this<ClientContext> {
 public:
  static Result<std::shared_ptr<ClientContext>> create(const Nss& nss, const ClientOptions& options);
  ~ClientContext();
  ClientContext(const ClientContext&) = delete;
  ClientContext& operator=(const ClientContext&) = delete;

  // For Connection::start_implicit_tls, or StartTlsSession::start_tls after the 220. Never null: if
  // NSS cannot make the socket the transform fails at start() and the connection closes.
  std::unique_ptr<ClientTransform> connect(std::string_view connection_id, const ClientPeer& peer);

  const ClientOptions& options() const;

  struct State;  // NSS details, in client.cpp

 private:
  ClientContext();
  std::unique_ptr<State> state_;
};

}  // namespace common::tls
