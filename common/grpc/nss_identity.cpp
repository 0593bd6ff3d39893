// nss_identity.cpp: exports the host's certificate, chain and private key from NSS as the PEM that
// gRPC's StaticDataCertificateProvider takes (docs/nss-notes.md §3: a plain export of a sensitive key fails).
#include "common/grpc/nss_identity.hpp"

#include <string.h>  // explicit_bzero

#include <span>
#include <vector>

#include <nss.h>
#include <prerror.h>

#include "common/grpc/nss_handles.hpp"  // cert.h, before certdb.h
#include <certdb.h>
#include "common/grpc/pem.hpp"
#include "common/tls/nss.hpp"

namespace common::rpc {

namespace {

// Clear key material: zeroed when it goes away, whichever way the function returns.
struct SecretBytes {
  std::vector<unsigned char> bytes;
  explicit SecretBytes(size_t n) : bytes(n) {}
  ~SecretBytes() {
    if (!bytes.empty()) explicit_bzero(bytes.data(), bytes.size());
  }
  SecretBytes(const SecretBytes&) = delete;
  SecretBytes& operator=(const SecretBytes&) = delete;
};

std::string quoted(std::string_view s) { return "\"" + std::string(s) + "\""; }

Result<void> require_nss() {
  if (!NSS_IsInitialized())
    return fail(ErrorKind::Internal, "NSS is not initialised (common::tls::Nss::init comes first)");
  return {};
}

Result<nss::Cert> find_certificate(std::string_view nickname) {
  std::string nick(nickname);
  nss::Cert cert(PK11_FindCertFromNickname(nick.c_str(), nullptr));
  if (!cert)
    return fail(ErrorKind::Config, "certificate " + quoted(nickname) + " not found in the NSS database: " +
                                       tls::last_error_text());
  return cert;
}

std::span<const unsigned char> der_of(const SECItem& item) { return {item.data, item.len}; }

// PKCS#8 PrivateKeyInfo DER of a sensitive key: PK11_ExportDERPrivateKeyInfo fails with SEC_ERROR_IO
// on keys certutil or pk12util made (CKA_SENSITIVE), but wrapping under our own AES key and
// decrypting with that key yields the same bytes.
Result<std::string> private_key_pem(SECKEYPrivateKey& key, std::string_view nickname) {
  auto cannot = [&](std::string_view step) {
    return fail(ErrorKind::Config, "private key of " + quoted(nickname) + " cannot be exported (" + std::string(step) +
                                       "; the key must be extractable and NSS not in FIPS mode): " +
                                       tls::last_error_text());
  };
  // The operator's CKA_EXTRACTABLE=false is honoured here: NSS 3.87's softoken wraps such a key anyway
  // (verified), so the token would not stop us.
  SECItem extractable{siBuffer, nullptr, 0};
  if (PK11_ReadRawAttribute(PK11_TypePrivKey, &key, CKA_EXTRACTABLE, &extractable) == SECSuccess) {
    bool allowed = extractable.len == 1 && extractable.data[0] != CK_FALSE;
    SECITEM_FreeItem(&extractable, PR_FALSE);
    if (!allowed)
      return fail(ErrorKind::Config, "private key of " + quoted(nickname) +
                                         " is marked unextractable (CKA_EXTRACTABLE false); gRPC needs the key "
                                         "itself, so give this host a key made without --keyAttrFlags unextractable");
  }
  nss::Slot slot(PK11_GetSlotFromPrivateKey(&key));
  if (!slot) return cannot("no slot");
  nss::SymKey wrapping(PK11_KeyGen(slot.get(), CKM_AES_KEY_GEN, nullptr, 32, nullptr));
  if (!wrapping) return cannot("AES key generation");
  unsigned char iv[16];
  if (PK11_GenerateRandom(iv, sizeof iv) != SECSuccess) return cannot("random IV");
  SECItem iv_item{siBuffer, iv, sizeof iv};
  nss::ZeroedItem param(PK11_ParamFromIV(CKM_AES_CBC_PAD, &iv_item));
  if (!param) return cannot("wrap parameters");

  // A first call without a buffer asks the token for the wrapped length (PKCS#11 C_WrapKey).
  SECItem wrapped{siBuffer, nullptr, 0};
  if (PK11_WrapPrivKey(slot.get(), wrapping.get(), &key, CKM_AES_CBC_PAD, param.get(), &wrapped, nullptr) !=
          SECSuccess ||
      wrapped.len == 0)
    return cannot("wrap");
  SecretBytes wrapped_bytes(wrapped.len);
  wrapped.data = wrapped_bytes.bytes.data();
  if (PK11_WrapPrivKey(slot.get(), wrapping.get(), &key, CKM_AES_CBC_PAD, param.get(), &wrapped, nullptr) !=
      SECSuccess)
    return cannot("wrap");

  SecretBytes clear(wrapped.len);
  unsigned int clear_len = 0;
  if (PK11_Decrypt(wrapping.get(), CKM_AES_CBC_PAD, param.get(), clear.bytes.data(), &clear_len,
                   static_cast<unsigned int>(clear.bytes.size()), wrapped.data, wrapped.len) != SECSuccess)
    return cannot("decrypt");
  // PrivateKeyInfo is a DER SEQUENCE; anything else means the token wrapped in another format.
  if (clear_len < 2 || clear.bytes[0] != 0x30) return cannot("unexpected wrapped format");
  return to_pem({clear.bytes.data(), clear_len}, "PRIVATE KEY");
}

// Leaf first, then intermediates NSS knows; the root stays out (peers have it). Without a chain
// (issuer not in this database) the leaf alone is sent and the peer's verification decides.
std::string chain_pem(CERTCertificate& cert) {
  std::string out;
  nss::CertList chain(CERT_CertChainFromCert(&cert, certUsageSSLServer, PR_FALSE));
  if (chain && chain->len > 0) {
    for (int i = 0; i < chain->len; ++i) out += to_pem(der_of(chain->certs[i]), "CERTIFICATE");
  } else {
    out = to_pem(der_of(cert.derCert), "CERTIFICATE");
  }
  return out;
}

}  // namespace

Result<PemIdentity> export_identity(std::string_view nickname) {
  if (auto ok = require_nss(); !ok) return tl::unexpected(ok.error());
  auto cert = find_certificate(nickname);
  if (!cert) return tl::unexpected(cert.error());
  nss::PrivateKey key(PK11_FindKeyByAnyCert(cert->get(), nullptr));
  if (!key)
    return fail(ErrorKind::Config, "no private key for certificate " + quoted(nickname) +
                                       " in the NSS database: " + tls::last_error_text());
  PemIdentity identity;
  auto key_pem = private_key_pem(*key, nickname);
  if (!key_pem) return tl::unexpected(key_pem.error());
  identity.private_key_pem = std::move(*key_pem);

  identity.certificate_chain_pem = chain_pem(*cert->get());
  return identity;
}

Result<std::string> certificate_chain_pem(std::string_view nickname) {
  if (auto ok = require_nss(); !ok) return tl::unexpected(ok.error());
  auto cert = find_certificate(nickname);
  if (!cert) return tl::unexpected(cert.error());
  return chain_pem(*cert->get());
}

Result<std::string> trusted_roots_pem(std::string_view ca_nickname) {
  if (auto ok = require_nss(); !ok) return tl::unexpected(ok.error());
  auto cert = find_certificate(ca_nickname);
  if (!cert) return tl::unexpected(cert.error());
  if (!CERT_IsCACert(cert->get(), nullptr))
    return fail(ErrorKind::Config, "certificate " + quoted(ca_nickname) + " is not a CA certificate");
  CERTCertTrust trust{};
  if (CERT_GetCertTrust(cert->get(), &trust) != SECSuccess ||
      (trust.sslFlags & (CERTDB_TRUSTED_CA | CERTDB_TRUSTED_CLIENT_CA)) == 0)
    return fail(ErrorKind::Config, "CA " + quoted(ca_nickname) +
                                       " is not trusted for TLS in the NSS database (certutil -M -t CT,C,C)");
  return to_pem(der_of((*cert)->derCert), "CERTIFICATE");
}

}  // namespace common::rpc
