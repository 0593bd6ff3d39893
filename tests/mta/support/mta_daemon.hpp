// mta_daemon.hpp: a real postern-mta for tests: listeners for transfer (25, STARTTLS), submission
// (587, STARTTLS, AUTH required) and submissions (465, implicit TLS) on free loopback ports, mta1's
// host database, the queue in a temp dir, recipients and AUTH through the authserv of a
// test::StoreDaemon (users alice, bob ... @example.com, password "secret-<uid>"), and delivery to
// that store (mailHost store1) by LMTP over mutual TLS.
#pragma once

#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "tests/store/support/store_daemon.hpp"
#include "tests/support/pki.hpp"
#include "tests/support/process.hpp"

namespace test {

struct MtaDaemonOptions {
  std::string mta_extra;       // lines for [mta] (reverse_lookup is off unless set here)
  std::string queue_extra;     // lines for [queue]
  std::string delivery_extra;  // lines for [delivery]
  std::string listener_extra;  // lines for every [[listener]]
  std::string tables;          // further tables, appended as given
};

class MtaDaemon {
 public:
  explicit MtaDaemon(StoreDaemon& store, MtaDaemonOptions options = {});
  ~MtaDaemon();
  MtaDaemon(const MtaDaemon&) = delete;
  MtaDaemon& operator=(const MtaDaemon&) = delete;

  // Starts it and waits for its "started" line (a restart waits for a new one).
  void start();
  int stop();  // SIGTERM; the exit code
  // Writes the config again with `options` (same ports) and sends SIGHUP; waits for "reloaded".
  void reload(MtaDaemonOptions options);
  void kill9();
  bool running();

  int smtp_port() const { return smtp_port_; }
  int submission_port() const { return submission_port_; }
  int submissions_port() const { return submissions_port_; }
  const std::string& queue_dir() const { return queue_dir_; }
  const std::string& config() const { return config_; }
  // postern-queue on this mta's queue directory (it reads beside the running mta): its output.
  std::string queue_tool(const std::vector<std::string>& args) const;
  // Waits until the queue holds no message (every one delivered or failed).
  bool queue_drains(std::chrono::seconds limit = std::chrono::seconds(30)) const;
  std::string log() const;
  size_t count(const std::string& needle) const;  // occurrences in the log
  const TempDir& dir() const { return dir_; }

 private:
  void write_config();

  MtaDaemonOptions options_;
  TempDir dir_;
  Pki pki_;
  std::filesystem::path nss_;
  int smtp_port_, submission_port_, submissions_port_;
  std::string authserv_;
  int store_port_;
  std::string queue_dir_, config_;
  std::unique_ptr<ChildProcess> process_;
};

}  // namespace test
