// nss.hpp: NSS for the whole process: opened once from the host's sql: database and its password
// file, shut down last. TLS for mail protocols (common/tls) and gRPC mTLS (common/grpc) both use it.
#pragma once

#include <chrono>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "common/result.hpp"

namespace common::tls {

struct NssOptions {
  std::string db_dir;         // directory holding cert9.db, key4.db, pkcs11.txt ("sql:" is added)
  std::string password_file;  // lines "Internal (Software) Token:<password>" (389-ds/mod_nss format)
  bool read_only = true;
  bool load_public_roots = false;  // the built-in roots module, only for outbound SMTP to public MX
  int session_cache_entries = 10000;  // server session ID cache (mandatory: without it the first TLS 1.2 client crashes libssl3)
  // DER or PEM CRLs held in NSS's memory for the whole process (CERT_CacheCRL), so every
  // certificate NSS verifies, a TLS client's or a gRPC peer's, is checked against them.
  std::vector<std::string> crl_files;
};

// One per process, created after any fork and before worker threads use NSS; destroyed after every
// NSS object (certificates, keys, sockets) is gone, or NSS_Shutdown fails (logged as a leak).
class Nss {
 public:
  // Fails with a clear message: missing database, unreadable or world-readable password file,
  // wrong password (checked at start with PK11_Authenticate, never retried in a loop).
  static Result<std::unique_ptr<Nss>> init(const NssOptions& options);
  ~Nss();
  Nss(const Nss&) = delete;
  Nss& operator=(const Nss&) = delete;

  // Shuts NSS down now (the destructor then does nothing). Fails with SEC_ERROR_BUSY when a
  // certificate, key or socket reference is still alive: tests use it to prove nothing leaked.
  Result<void> shutdown();

  const NssOptions& options() const { return options_; }

  // SIGHUP: reads `files` (the list may have changed) and caches their CRLs, then lets the old
  // ones go; a certificate verified from then on sees them. On an error the old CRLs stay in force
  // and the error names the file. Thread-safe.
  Result<void> reload_crls(const std::vector<std::string>& files);
  size_t crl_count() const;
  // "3.87.1", for --version and the start log line (TLS-28).
  static std::string version();

 private:
  explicit Nss(NssOptions options);
  struct Context;
  NssOptions options_;
  std::unique_ptr<Context> context_;
};

// When the certificate `nickname` (as NSS finds it now, so a re-issued one) stops being valid.
struct CertificateValidity {
  std::string subject;  // NSS form: "CN=store1,O=Postern"
  std::string serial;   // hex
  std::chrono::system_clock::time_point not_after;
};
Result<CertificateValidity> certificate_validity(std::string_view nickname);

// The NSS/NSPR error name, number and text: "SEC_ERROR_REVOKED_CERTIFICATE (-8180): Peer's
// Certificate has been revoked." (TLS-26, TLS-27).
std::string error_text(int code);
// The same for PR_GetError().
std::string last_error_text();

}  // namespace common::tls
