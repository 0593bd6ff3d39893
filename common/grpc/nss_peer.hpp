// nss_peer.hpp: NSS's verdict on a TLS peer's certificate chain as gRPC (OpenSSL) received it, so
// NSS trust flags and the CRLs NSS holds decide for gRPC exactly as they do for mail TLS.
// Includes no gRPC header.
#pragma once

#include <string>
#include <string_view>

#include "common/result.hpp"

namespace common::rpc {

// What the peer is to us: a client of our server, or the server our channel connects to.
enum class PeerRole { Client, Server };

struct PeerVerdict {
  bool ok = false;
  int error = 0;          // NSS/NSPR error code when refused
  std::string reason;     // common::tls::error_text(error), or what was wrong with the input
  std::string subject;    // NSS form "CN=store1,O=Postern"; empty if the chain did not decode
  std::string common_name;
  std::string issuer;
};

// Verifies `leaf_pem` with CERT_VerifyCertificateNow for the SSL client or SSL server usage, at the
// current time, with the process's NSS trust flags and the CRLs NSS holds. `chain_pem` is what the
// peer sent besides (gRPC's "full chain"; its order differs between client and server, and it may
// include the leaf or the root): it only offers intermediates for path building, never trust. For a
// server, `expected_host` (a DNS name or an IP address) must also match its subjectAltName
// (CERT_VerifyCertName). Thread-safe.
PeerVerdict verify_peer(std::string_view leaf_pem, PeerRole role, std::string_view expected_host,
                        std::string_view chain_pem = {});

// Subject and common name of a PEM certificate in NSS's form, without verifying it (for handlers,
// once the handshake verified it). Empty strings when it does not decode.
struct CertificateNames {
  std::string subject;
  std::string common_name;
};
CertificateNames certificate_names(std::string_view pem);

// Checks at start that our own certificate verifies for `role` (e.g. PeerRole::Server for a gRPC
// server's certificate), so an expired or untrusted certificate fails the daemon with its reason
// instead of every peer refusing it later.
Result<void> check_own_certificate(std::string_view nickname, PeerRole role);

}  // namespace common::rpc
