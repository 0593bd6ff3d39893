// credentials.hpp: gRPC server and channel credentials for mutual TLS between Postern hosts, from
// the host's NSS database (TLS-29). NSS decides every peer certificate (trust flags, CRLs); gRPC's
// OpenSSL only carries the handshake. Forward-declares gRPC so this header stays cheap; the files
// that use the results include <grpcpp/...> themselves.
#pragma once

#include <memory>
#include <string>

#include "common/result.hpp"

namespace grpc {
class ServerCredentials;
class ChannelCredentials;
class ServerContextBase;
}  // namespace grpc

// Not "common::grpc": inside namespace common that name would hide ::grpc.
namespace common::rpc {

struct MtlsOptions {
  std::string certificate = "Server-Cert";  // our certificate's nickname; the key must be extractable
  std::string ca = "Postern-CA";            // the deployment CA's nickname (trust CT,C,C)
  bool plaintext = false;                   // only where a config says so: logs a warning each time
  // Client side: the name the server certificate must carry (DNS or IP subjectAltName). Empty: the
  // host part of the channel's target.
  std::string expected_peer_name;
};

// TLS 1.2+ server that requires a client certificate: OpenSSL checks it chains to `ca`, then NSS
// verifies it for the SSL client usage; a refusal is logged (comp=grpc event=peer_refused, with the
// NSS error name) and counted, since the client only sees UNAVAILABLE. Needs common::tls::Nss.
// Errors (Config): certificate, key or CA missing, key not extractable, our certificate invalid.
Result<std::shared_ptr<::grpc::ServerCredentials>> server_credentials(const MtlsOptions& options);

// What server_credentials() checks and exports, without building anything (for --check-config).
Result<void> check_server_identity(const MtlsOptions& options);

// The client side: presents our certificate, and NSS verifies the server's for the SSL server usage
// and its name (expected_peer_name, else the target's host).
Result<std::shared_ptr<::grpc::ChannelCredentials>> channel_credentials(const MtlsOptions& options);

// Who called, as the TLS handshake (and so NSS) verified it. Empty strings on a plaintext server.
struct PeerIdentity {
  std::string common_name;  // "store1"
  std::string subject;      // NSS form, as common/tls reports mail clients: "CN=store1,O=Postern"
};
PeerIdentity peer_identity(const ::grpc::ServerContextBase& context);

// Sends gRPC's own log lines (handshake failures OpenSSL saw, transport errors) through
// common::log as comp=grpc event=grpc_core. The factories call it; calling it again is harmless.
// Also turns off Abseil's mutex deadlock detection (a debug aid Debian leaves on).
void route_grpc_logs();

}  // namespace common::rpc
