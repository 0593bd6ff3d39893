// mta_daemon.cpp: the postern-mta fixture (mta_daemon.hpp).
#include "tests/mta/support/mta_daemon.hpp"

#include <csignal>
#include <thread>

#include <catch2/catch.hpp>

namespace test {

using namespace std::chrono_literals;

MtaDaemon::MtaDaemon(StoreDaemon& store, MtaDaemonOptions options)
    : options_(std::move(options)), smtp_port_(free_port()), submission_port_(free_port()),
      submissions_port_(free_port()), authserv_(store.auth().target()), store_port_(store.implicit_port()) {
  nss_ = pki_.host("mta1");
  queue_dir_ = (dir_ / "queue").string();
  write_config();
}

void MtaDaemon::write_config() {
  const std::string listener =
      (options_.listener_extra.find("idle_timeout") == std::string::npos ? "idle_timeout = \"10s\"\n" : "") +
      options_.listener_extra;
  auto port = [](int p) { return "\"127.0.0.1:" + std::to_string(p) + "\"\n"; };
  std::string cfg = "[daemon]\nallow_root = true\n[log]\nlevel = \"info\"\n[metrics]\nlisten = \"\"\n"
                    "[tls]\ndb_dir = \"" + nss_.string() + "\"\n"
                    "[mta]\nhost_name = \"mta1.test\"\nlocal_domains = [\"example.com\"]\n" +
                    (options_.mta_extra.find("reverse_lookup") == std::string::npos ? "reverse_lookup = false\n" : "") +
                    options_.mta_extra +
                    "[queue]\ndir = \"" + queue_dir_ + "\"\n" + options_.queue_extra +
                    "[authserv]\ntargets = [\"" + authserv_ + "\"]\nplaintext = true\n" +
                    "[delivery]\npoll_interval = \"200ms\"\nconnect_timeout = \"5s\"\n" + options_.delivery_extra +
                    "[[store_host]]\nname = \"store1\"\naddress = \"127.0.0.1:" + std::to_string(store_port_) +
                    "\"\ntls = \"implicit\"\n" + options_.tables +
                    "[[listener]]\nname = \"smtp\"\nservice = \"smtp\"\naddress = " + port(smtp_port_) +
                    "tls = \"starttls\"\n" + listener +
                    "[[listener]]\nname = \"submission\"\nservice = \"submission\"\naddress = " + port(submission_port_) +
                    "tls = \"starttls\"\n" + listener +
                    "[[listener]]\nname = \"submissions\"\nservice = \"submissions\"\naddress = " +
                    port(submissions_port_) + "tls = \"implicit\"\n" + listener;
  config_ = dir_.write("mta.toml", cfg).string();
}

MtaDaemon::~MtaDaemon() { stop(); }

void MtaDaemon::reload(MtaDaemonOptions options) {
  options_ = std::move(options);
  write_config();
  const size_t before = count("event=reloaded");
  process_->signal(SIGHUP);
  const auto until = std::chrono::steady_clock::now() + 20s;
  while (count("event=reloaded") <= before) {
    if (!process_->running() || std::chrono::steady_clock::now() > until) FAIL("mta did not reload: " << log());
    std::this_thread::sleep_for(20ms);
  }
}

void MtaDaemon::start() {
  const size_t before = count("event=started");
  process_ = std::make_unique<ChildProcess>(
      std::vector<std::string>{binary_path("mta/postern-mta"), "--config", config_}, (dir_ / "mta.log").string());
  const auto until = std::chrono::steady_clock::now() + 20s;
  while (count("event=started") <= before) {
    if (!process_->running() || std::chrono::steady_clock::now() > until) FAIL("mta did not start: " << log());
    std::this_thread::sleep_for(20ms);
  }
}

int MtaDaemon::stop() {
  if (!process_ || !process_->running()) return 0;
  process_->signal(SIGTERM);
  return process_->wait(30s);
}

void MtaDaemon::kill9() {
  process_->signal(SIGKILL);
  process_->wait(10s);
}

bool MtaDaemon::running() { return process_ && process_->running(); }

std::string MtaDaemon::queue_tool(const std::vector<std::string>& args) const {
  std::vector<std::string> argv{binary_path("mta/queue/postern-queue"), "--dir", queue_dir_};
  argv.insert(argv.end(), args.begin(), args.end());
  return run(argv, 30s).output;
}

bool MtaDaemon::queue_drains(std::chrono::seconds limit) const {
  const auto until = std::chrono::steady_clock::now() + limit;
  while (std::chrono::steady_clock::now() < until) {
    const std::string list = queue_tool({"list"});
    if (list.rfind("0 messages", 0) == 0 || list.find("\n0 messages") != std::string::npos) return true;
    std::this_thread::sleep_for(100ms);
  }
  return false;
}

std::string MtaDaemon::log() const { return read_file(dir_ / "mta.log"); }

size_t MtaDaemon::count(const std::string& needle) const {
  const std::string text = log();
  size_t n = 0;
  for (size_t p = text.find(needle); p != std::string::npos; p = text.find(needle, p + 1)) ++n;
  return n;
}

}  // namespace test
