// mmp_daemon.hpp: a real postern-mmp for tests, in front of a real store and authserv (the store's
// test fixture, all over mutual TLS as deployed), with a STARTTLS IMAP port and an IMAPS one.
#pragma once

#include <memory>
#include <string>

#include "tests/store/support/store_daemon.hpp"
#include "tests/support/pki.hpp"
#include "tests/support/process.hpp"

namespace test {

struct MmpDaemonOptions {
  std::string mmp_extra;       // lines for [mmp]
  std::string sections_extra;  // whole sections appended to mmp.toml (e.g. "[imap]\n...")
  std::string listener_extra;  // lines added to both [[listener]] tables
  StoreDaemonOptions store;    // authserv_mtls is always on; mmp1 is always an allowed client
};

class MmpDaemon {
 public:
  // Starts the store (and its authserv: users in StoreDaemon) and then the mmp.
  explicit MmpDaemon(MmpDaemonOptions options = {});
  ~MmpDaemon();
  MmpDaemon(const MmpDaemon&) = delete;
  MmpDaemon& operator=(const MmpDaemon&) = delete;

  void start();  // after stop() or kill9(): again on the same ports
  int stop();    // SIGTERM; the exit code
  void kill9();
  bool running() const { return mmp_ && mmp_->running(); }

  StoreDaemon& store() { return store_; }
  int imap_port() const { return imap_port_; }
  int imaps_port() const { return imaps_port_; }
  std::string log() const { return read_file(log_path()); }
  size_t count(const std::string& needle) const;  // occurrences in the log

  // tests/mmp/daemon/imap_read.py: logs in, lists, reads every INBOX message.
  CommandResult imaplib(const std::string& tls, int port, const std::string& user, const std::string& password);

 private:
  std::string log_path() const { return (dir_.path() / "mmp.log").string(); }
  void write_config();

  MmpDaemonOptions options_;
  StoreDaemon store_;
  TempDir dir_;
  Pki pki_;
  std::filesystem::path nss_;
  int imap_port_ = 0, imaps_port_ = 0;
  std::string config_;
  std::unique_ptr<ChildProcess> mmp_;
};

}  // namespace test
