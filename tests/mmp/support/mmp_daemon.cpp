// mmp_daemon.cpp: the test mmp (mmp_daemon.hpp).
#include "tests/mmp/support/mmp_daemon.hpp"

#include <catch2/catch.hpp>

#include <csignal>
#include <thread>

namespace test {

using namespace std::chrono_literals;

namespace {

StoreDaemonOptions store_options(StoreDaemonOptions o) {
  o.authserv_mtls = true;
  if (o.mailstore_extra.find("allowed_clients") == std::string::npos) o.mailstore_extra += "allowed_clients = [\"mmp1\"]\n";
  return o;
}

}  // namespace

MmpDaemon::MmpDaemon(MmpDaemonOptions options)
    : options_(std::move(options)), store_(store_options(options_.store)) {
  store_.start();
  nss_ = pki_.host("mmp1");
  imap_port_ = free_port();
  imaps_port_ = free_port();
  write_config();
  start();
}

MmpDaemon::~MmpDaemon() { stop(); }

void MmpDaemon::write_config() {
  auto listener = [&](const std::string& name, int port, const std::string& tls) {
    return "[[listener]]\nname = \"" + name + "\"\nservice = \"imap\"\naddress = \"127.0.0.1:" + std::to_string(port) +
           "\"\ntls = \"" + tls + "\"\nidle_timeout = \"30s\"\n" + options_.listener_extra;
  };
  const std::string cfg = "[daemon]\nallow_root = true\n[log]\nlevel = \"info\"\n[metrics]\nlisten = \"\"\n"
                          "[tls]\ndb_dir = \"" + nss_.string() + "\"\n"
                          "[mmp]\nhost_name = \"mmp1.test\"\ndefault_domain = \"example.com\"\n" + options_.mmp_extra +
                          "[authserv]\ntargets = [\"" + store_.auth().target() + "\"]\n"
                          "[stores.stores]\nstore1 = \"127.0.0.1:" + std::to_string(store_.grpc_port()) + "\"\n" +
                          options_.sections_extra + listener("imap", imap_port_, "starttls") +
                          listener("imaps", imaps_port_, "implicit");
  config_ = dir_.write("mmp.toml", cfg).string();
}

size_t MmpDaemon::count(const std::string& needle) const {
  const std::string text = log();
  size_t n = 0;
  for (size_t at = text.find(needle); at != std::string::npos; at = text.find(needle, at + needle.size())) ++n;
  return n;
}

void MmpDaemon::start() {
  // As the store's fixture: a port taken between free_port() and the bind makes the mmp exit
  // saying so, and it starts again on fresh ports.
  for (int attempt = 0;; ++attempt) {
    const size_t started = count("event=started"), in_use = count("port in use");
    mmp_ = std::make_unique<ChildProcess>(
        std::vector<std::string>{binary_path("mmp/postern-mmp"), "--config", config_}, log_path());
    const auto until = std::chrono::steady_clock::now() + 20s;
    while (count("event=started") <= started) {
      if (!mmp_->running() && count("port in use") > in_use && attempt < 5) break;
      if (!mmp_->running() || std::chrono::steady_clock::now() > until) FAIL("mmp did not start: " << log());
      std::this_thread::sleep_for(20ms);
    }
    if (count("event=started") > started) return;
    imap_port_ = free_port();
    imaps_port_ = free_port();
    write_config();
  }
}

int MmpDaemon::stop() {
  if (!mmp_ || !mmp_->running()) return 0;
  mmp_->signal(SIGTERM);
  return mmp_->wait(20s);
}

void MmpDaemon::kill9() {
  if (!mmp_ || !mmp_->running()) return;
  mmp_->signal(SIGKILL);
  mmp_->wait(10s);
}

CommandResult MmpDaemon::imaplib(const std::string& tls, int port, const std::string& user, const std::string& password) {
  return run({"python3", source_path("tests/mmp/daemon/imap_read.py"), "--port", std::to_string(port), "--tls", tls,
              "--ca", Pki::file("ca/ca.pem").string(), "--user", user, "--password", password},
             60s);
}

}  // namespace test
