// pki.hpp: the deployment's certificates for tests, made by deploy/certs once per build tree (each
// call takes a second or more, too slow to repeat in every test process) and copied into each
// test's own directory:
//   ca (the deployment CA): hosts store1, auth1 (authserv), mmp1, mta1, mta2; mta2 and carol revoked, store1 and mmp1 hold the CRL;
//     client certificates (PEM, for openssl, swaks and python) mta1 and mta3, and alice
//     (E=alice@example.com, a user's), admin (E=admin@example.com), carol (E=carol@example.com,
//     revoked); mmp1 also holds Example-Org, a certificate for mail.example.org (SNI)
//   other-ca ("Other Org CA"): host intruder, client certificate stranger
//   impostor-ca (a second CA with exactly our CA's name, another key): host impostor
#pragma once

#include <filesystem>
#include <string>

#include "tests/support/process.hpp"

namespace test {

class Pki {
 public:
  // The host's NSS database (password file HOSTDIR/password, certificate Server-Cert for NAME and
  // 127.0.0.1), copied so a test may change it.
  std::filesystem::path host(const std::string& name);
  // A file of the shared set, read-only: "ca/crl.der", "ca/ca.pem", "ca/clients/mta1.pem" (and
  // .key), "other-ca/clients/stranger.pem".
  static std::filesystem::path file(const std::string& relative);
  const TempDir& tmp() const { return tmp_; }

 private:
  static const std::filesystem::path& cache();
  TempDir tmp_;
};

// The NSS database's Server-Cert of a pki host as PEM: DIR/NAME.crt (certificate) and DIR/NAME.key
// (unencrypted PKCS#8), for peers that read PEM files (Postfix, python peers).
void export_host_pem(const std::filesystem::path& nss_db, const std::filesystem::path& dir, const std::string& name);

}  // namespace test
