// tls_harness.hpp: what the TLS tests share: a PKI made once per build tree with deploy/certs (a
// CA, a host database with ECDSA, RSA and a second-name certificate, client certificates, CRLs), NSS
// opened on it, an in-process server on a loop thread (implicit TLS line echo + SMTP-shaped
// STARTTLS), captured log lines and helpers that run openssl, gnutls-cli and the Python client.
#pragma once

#include "tests/support/log_capture.hpp"

#include <atomic>
#include <chrono>
#include <filesystem>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "common/runtime/connection.hpp"
#include "common/runtime/listener.hpp"
#include "common/runtime/loop.hpp"
#include "common/tls/nss.hpp"
#include "common/tls/server.hpp"
#include "tests/support/process.hpp"

namespace tlstest {

struct Pki {
  std::filesystem::path root;
  std::string host_dir() const { return (root / "host").string(); }
  std::string password_file() const { return (root / "host" / "password").string(); }
  std::string ca_pem() const { return (root / "host" / "ca.pem").string(); }
  std::string client_pem(const std::string& name) const { return (root / "clients" / (name + ".pem")).string(); }
  std::string client_key(const std::string& name) const { return (root / "clients" / (name + ".key")).string(); }
  std::string crl_before_revoke() const { return (root / "crl-before.pem").string(); }
  std::string crl_after_revoke() const { return (root / "crl-after.pem").string(); }
};

// Made on first use (about 30 s) and kept in the build tree, keyed by deploy/certs' content; a lock
// file serialises parallel test processes. Nicknames: Server-Cert (ECDSA, localhost),
// Server-Cert-RSA, Other-Cert (ECDSA, mail.example.org). Clients: alice (valid), mallory (revoked
// in crl-after.pem, not yet in crl-before.pem).
const Pki& pki();

std::unique_ptr<common::tls::Nss> open_nss();

// Log lines of this process during a test (tests/support/log_capture.hpp).
using LogCapture = test::LogCapture;

// An in-process server: `tls_port` speaks implicit TLS (a line echo with FACTS and QUIT), and
// `starttls_port` an SMTP-shaped dialogue (220, EHLO, STARTTLS, NOOP, FACTS, QUIT).
class TlsServer {
 public:
  explicit TlsServer(std::shared_ptr<common::tls::ServerContext> context,
                     std::chrono::milliseconds idle_timeout = std::chrono::seconds(10));
  ~TlsServer();
  int tls_port = 0;
  int starttls_port = 0;
  // Every command line a session executed, "tls:" or "plain:" prefixed.
  std::vector<std::string> commands() const;
  size_t open_connections();
  template <class F>
  void on_loop(F fn) {
    std::atomic<bool> done{false};
    loop_.post([&] {
      fn();
      done = true;
    });
    while (!done) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  void record(std::string command);
  common::tls::ServerContext& context() { return *context_; }

 private:
  struct Parts;
  std::shared_ptr<common::tls::ServerContext> context_;
  common::runtime::Loop loop_;
  std::unique_ptr<Parts> parts_;
  mutable std::mutex mutex_;
  std::vector<std::string> commands_;
  std::thread thread_;
};

// `openssl s_client -connect 127.0.0.1:port <args>` with `input` (printf %b escapes) on stdin.
test::CommandResult s_client(int port, const std::vector<std::string>& args, const std::string& input = "QUIT\\r\\n");
// tests/common/tls/tls_client.py MODE 127.0.0.1 PORT <args>.
test::CommandResult py_client(const std::string& mode, int port, const std::vector<std::string>& args = {});
bool contains(const std::string& haystack, const std::string& needle);

}  // namespace tlstest
