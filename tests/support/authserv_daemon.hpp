// authserv_daemon.hpp: a real postern-authserv for the tests of the daemons that call it (store, mta,
// mmp): an embedded directory filled with postern-directory, gRPC on a free loopback port, started
// and stopped by the test (never outliving it).
#pragma once

#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "tests/support/process.hpp"

namespace test {

class AuthservDaemon {
 public:
  // Plaintext gRPC unless `nss_dir` names an NSS database (deploy/certs host) for mutual TLS.
  explicit AuthservDaemon(std::string domain = "example.com", std::string nss_dir = "");
  ~AuthservDaemon();
  AuthservDaemon(const AuthservDaemon&) = delete;
  AuthservDaemon& operator=(const AuthservDaemon&) = delete;

  // postern-directory on the embedded directory (before start(), or with --online semantics off).
  void cli(const std::vector<std::string>& words);
  // A user with a password of "secret-<uid>" on `mail_host`; quota "none", "100K", ...
  void add_user(const std::string& address, const std::string& mail_host, const std::string& quota = "none");

  // Lines for authserv.toml's [tokens] (e.g. ttl = "60s"), from the next start() on.
  void set_tokens_extra(std::string lines) { tokens_extra_ = std::move(lines); }

  void start();
  void stop();
  std::string target() const { return "127.0.0.1:" + std::to_string(port_); }
  std::string log() const;
  const std::filesystem::path& dir() const { return dir_.path(); }

 private:
  TempDir dir_;
  std::string domain_;
  std::string nss_dir_;
  int port_;
  int start_attempts_ = 0;
  std::string db_;
  std::string tokens_extra_;
  std::unique_ptr<ChildProcess> process_;
};

}  // namespace test
