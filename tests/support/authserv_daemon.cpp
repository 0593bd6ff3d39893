// authserv_daemon.cpp: the authserv fixture (authserv_daemon.hpp).
#include "tests/support/authserv_daemon.hpp"

#include <csignal>
#include <stdexcept>
#include <thread>

namespace test {

using namespace std::chrono_literals;

AuthservDaemon::AuthservDaemon(std::string domain, std::string nss_dir)
    : domain_(std::move(domain)), nss_dir_(std::move(nss_dir)), port_(free_port()) {
  db_ = (dir_.path() / "directory").string();
  cli({"domain", "add", domain_});
}

AuthservDaemon::~AuthservDaemon() { stop(); }

void AuthservDaemon::cli(const std::vector<std::string>& words) {
  std::vector<std::string> argv{binary_path("authserv/directory/postern-directory"),
                                "--db", db_, "--default-domain", domain_, "--argon2-ops", "1", "--argon2-mem-kib", "64"};
  argv.insert(argv.end(), words.begin(), words.end());
  auto r = run(argv);
  if (r.exit_code != 0) throw std::runtime_error("postern-directory failed: " + r.output);
}

void AuthservDaemon::add_user(const std::string& address, const std::string& mail_host, const std::string& quota) {
  const std::string uid = address.substr(0, address.find('@'));
  auto password = dir_.write(uid + ".pw", "secret-" + uid + "\n");
  cli({"user", "add", address, "--mail-host", mail_host, "--password-file", password.string()});
  if (quota != "none") cli({"user", "set", address, "quota", quota});
}

void AuthservDaemon::start() {
  const bool mtls = !nss_dir_.empty();
  std::string cfg = "[daemon]\nallow_root = true\n[log]\nlevel = \"info\"\n[metrics]\nlisten = \"\"\n";
  if (mtls) cfg += "[tls]\ndb_dir = \"" + nss_dir_ + "\"\n";
  cfg += "[grpc]\nlisten = \"127.0.0.1:" + std::to_string(port_) + "\"\n";
  if (!mtls) cfg += "plaintext = true\n";
  cfg += "[authserv]\ndefault_domain = \"" + domain_ + "\"\n[directory]\nbackend = \"embedded\"\npath = \"" + db_ +
         "\"\n[password]\nargon2_ops = 1\nargon2_memory = \"64K\"\n[tokens]\nkey_file = \"" +
         (dir_.path() / "token.key").string() + "\"\n";
  cfg += tokens_extra_;
  if (!mtls) cfg += "allow_unbound = true\n";
  auto config = dir_.write("authserv.toml", cfg);
  process_ = std::make_unique<ChildProcess>(
      std::vector<std::string>{binary_path("authserv/postern-authserv"), "--config", config.string()},
      (dir_.path() / "authserv.log").string());
  const auto until = std::chrono::steady_clock::now() + 20s;
  while (log().find("event=started") == std::string::npos) {
    if (!process_->running() && log().find("port in use") != std::string::npos && start_attempts_ < 5) {
      // free_port() raced with another test binding the same port: start again on a fresh one.
      ++start_attempts_;
      port_ = free_port();
      start();
      return;
    }
    if (!process_->running() || std::chrono::steady_clock::now() > until) {
      throw std::runtime_error("authserv did not start: " + log());
    }
    std::this_thread::sleep_for(20ms);
  }
}

void AuthservDaemon::stop() {
  if (!process_ || !process_->running()) return;
  process_->signal(SIGTERM);
  process_->wait(20s);
}

std::string AuthservDaemon::log() const { return read_file(dir_.path() / "authserv.log"); }

}  // namespace test
