// nss_identity.hpp: the host's gRPC identity read out of the NSS database (one certificate store
// per host): its private key as PKCS#8 PEM, its chain, and the deployment CA as trusted root.
// Needs NSS opened by common::tls::Nss; includes no gRPC header.
#pragma once

#include <string>
#include <string_view>

#include "common/result.hpp"

namespace common::rpc {

struct PemIdentity {
  std::string private_key_pem;        // "-----BEGIN PRIVATE KEY-----" (PKCS#8); wipe() it after use
  std::string certificate_chain_pem;  // the certificate, then any intermediates (no root)
};

// The certificate `nickname` and its private key. The database's keys are sensitive, so the key is
// wrapped under a throwaway AES key and decrypted again (docs/nss-notes.md §3); the clear DER
// is zeroed before it is freed. Errors (ErrorKind::Config): NSS not initialised, no such
// certificate, no private key for it, or a key that cannot be extracted (CKA_EXTRACTABLE off, FIPS).
Result<PemIdentity> export_identity(std::string_view nickname);

// The certificate `nickname` and the intermediates NSS knows, as PEM, without the key: what
// export_identity() would serve now (a rebuild compares it to tell a re-issued certificate).
Result<std::string> certificate_chain_pem(std::string_view nickname);

// The CA certificate `ca_nickname` as PEM, for gRPC's root store. It must be a CA trusted in NSS
// for TLS (trust flags C or T), or peers would be refused later with a less obvious reason.
Result<std::string> trusted_roots_pem(std::string_view ca_nickname);

}  // namespace common::rpc
