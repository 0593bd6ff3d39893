// nss_peer.cpp: verifies gRPC peers' certificates with NSS (trust flags, CRLs), the one source of
// truth for certificate decisions in the suite.
#include "common/grpc/nss_peer.hpp"

#include <vector>

#include <nss.h>
#include <prerror.h>
#include <secerr.h>
#include <sslerr.h>

#include "common/grpc/nss_handles.hpp"
#include "common/grpc/pem.hpp"
#include "common/tls/nss.hpp"

namespace common::rpc {

namespace {

std::string name_text(CERTName& name) {
  nss::PortString s(CERT_NameToAscii(&name));
  return s ? std::string(s.get()) : std::string();
}

std::string common_name(const CERTName& name) {
  nss::PortString s(CERT_GetCommonName(&name));
  return s ? std::string(s.get()) : std::string();
}

nss::Cert temp_certificate(const std::string& der) {
  SECItem item{siBuffer, reinterpret_cast<unsigned char*>(const_cast<char*>(der.data())),
               static_cast<unsigned int>(der.size())};
  return nss::Cert(CERT_NewTempCertificate(CERT_GetDefaultCertDB(), &item, nullptr, PR_FALSE, PR_TRUE));
}

PeerVerdict refuse(PeerVerdict v, int error) {
  v.ok = false;
  v.error = error;
  v.reason = tls::error_text(error);
  return v;
}

}  // namespace

PeerVerdict verify_peer(std::string_view leaf_pem, PeerRole role, std::string_view expected_host,
                        std::string_view chain_pem) {
  PeerVerdict v;
  if (!NSS_IsInitialized()) {
    v.reason = "NSS is not initialised";
    return v;
  }
  auto leaf_der = from_pem(leaf_pem, "CERTIFICATE");
  if (!leaf_der) {
    v.reason = "peer certificate: " + leaf_der.error().detail;
    return v;
  }
  // The leaf, then every other certificate the peer sent, as temporary NSS certificates while we
  // verify: NSS may use them as intermediates. Trust still comes only from our database.
  std::vector<nss::Cert> certs;
  nss::Cert first = temp_certificate(leaf_der->front());
  if (!first) return refuse(std::move(v), PR_GetError());
  certs.push_back(std::move(first));
  if (!chain_pem.empty()) {
    if (auto others = from_pem(chain_pem, "CERTIFICATE")) {
      for (const auto& der : *others) {
        if (der == leaf_der->front()) continue;
        if (nss::Cert c = temp_certificate(der)) certs.push_back(std::move(c));
      }
    }
  }
  CERTCertificate* leaf = certs.front().get();
  v.subject = name_text(leaf->subject);
  v.common_name = common_name(leaf->subject);
  v.issuer = name_text(leaf->issuer);

  const SECCertificateUsage usage = role == PeerRole::Client ? certificateUsageSSLClient : certificateUsageSSLServer;
  if (CERT_VerifyCertificateNow(CERT_GetDefaultCertDB(), leaf, PR_TRUE, usage, nullptr, nullptr) != SECSuccess)
    return refuse(std::move(v), PR_GetError());
  if (role == PeerRole::Server) {
    if (expected_host.empty()) {
      v.reason = "no host name to check the server certificate against";
      return v;
    }
    std::string host(expected_host);
    if (CERT_VerifyCertName(leaf, host.c_str()) != SECSuccess) {
      int error = PR_GetError();
      return refuse(std::move(v), error != 0 ? error : SSL_ERROR_BAD_CERT_DOMAIN);
    }
  }
  v.ok = true;
  return v;
}

CertificateNames certificate_names(std::string_view pem) {
  CertificateNames names;
  if (!NSS_IsInitialized()) return names;
  auto ders = from_pem(pem, "CERTIFICATE");
  if (!ders) return names;
  nss::Cert cert = temp_certificate(ders->front());
  if (!cert) return names;
  names.subject = name_text(cert->subject);
  names.common_name = common_name(cert->subject);
  return names;
}

Result<void> check_own_certificate(std::string_view nickname, PeerRole role) {
  if (!NSS_IsInitialized()) return fail(ErrorKind::Internal, "NSS is not initialised");
  std::string nick(nickname);
  nss::Cert cert(PK11_FindCertFromNickname(nick.c_str(), nullptr));
  if (!cert)
    return fail(ErrorKind::Config,
                "certificate \"" + nick + "\" not found in the NSS database: " + tls::last_error_text());
  const SECCertificateUsage usage = role == PeerRole::Client ? certificateUsageSSLClient : certificateUsageSSLServer;
  if (CERT_VerifyCertificateNow(CERT_GetDefaultCertDB(), cert.get(), PR_TRUE, usage, nullptr, nullptr) != SECSuccess)
    return fail(ErrorKind::Config, "our certificate \"" + nick + "\" does not verify as a TLS " +
                                       (role == PeerRole::Client ? "client" : "server") +
                                       " certificate: " + tls::last_error_text());
  return {};
}

}  // namespace common::rpc
