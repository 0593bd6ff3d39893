// dovecot.hpp: a private Debian Dovecot for tests, as the peer whose Maildirs users migrate from:
// its own config, base_dir, state and Maildirs in a temp dir, IMAP and LMTP on free loopback ports,
// run as an unprivileged account (nobody when the test runs as root), no system service touched.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "tests/support/process.hpp"

namespace test {

struct DovecotOptions {
  // Every user has this password (passdb static); mail goes to <dir>/mail/<user>, a Maildir++.
  std::string password = "secret";
  // The IMAP hierarchy delimiter; Maildir++ keeps '.' on disk whatever this is.
  std::string separator = "/";
  // Further dovecot.conf lines, appended last (a setting given again there wins over ours).
  std::vector<std::string> extra;
  // An IMAPS (implicit TLS) listener on a free loopback port too; its ssl_cert and ssl_key come in
  // `extra`. Off: the imaps listener is disabled.
  bool imaps = false;
};

class DovecotInstance {
 public:
  // Starts it and waits until IMAP and LMTP accept (REQUIREs it).
  explicit DovecotInstance(DovecotOptions options = {});
  // stop(), then the temp dir goes.
  ~DovecotInstance();
  DovecotInstance(const DovecotInstance&) = delete;
  DovecotInstance& operator=(const DovecotInstance&) = delete;

  int imap_port() const { return imap_port_; }
  int lmtp_port() const { return lmtp_port_; }
  int imaps_port() const { return imaps_port_; }  // 0 unless options.imaps
  const std::string& password() const { return options_.password; }
  // A user's Maildir (the root is INBOX); the user part of an address, as %n.
  std::filesystem::path maildir(const std::string& user) const { return dir_ / "mail" / user; }
  std::string log() const;

  // One message over LMTP (RFC 2033): dot-stuffed here; returns one reply line per recipient (or
  // the reply that ended the transaction early).
  std::vector<std::string> deliver(const std::string& from, const std::vector<std::string>& recipients,
                                   const std::string& message);
  // tests/support/imap_client.py: `run` a JSON file of commands, or `dump` a user's mailboxes to
  // a JSON file. The script's result (exit code 0 on success).
  CommandResult imap(const std::vector<std::string>& args, const std::string& user);

  // SIGTERM to master (it stops its children), SIGKILL after 5 s to master and to any child left.
  // True when nothing had to be killed. Idempotent.
  bool stop();
  bool running();

 private:
  bool start(int imap_port, int lmtp_port);
  void write_config(int imap_port, int lmtp_port);
  std::vector<pid_t> children() const;

  DovecotOptions options_;
  TempDir dir_;
  std::string account_, group_;
  int imap_port_ = 0, lmtp_port_ = 0, imaps_port_ = 0;
  std::unique_ptr<ChildProcess> master_;
};

}  // namespace test
