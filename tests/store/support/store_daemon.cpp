// store_daemon.cpp: the postern-store fixture (store_daemon.hpp).
#include "tests/store/support/store_daemon.hpp"

#include <array>
#include <csignal>
#include <ctime>
#include <thread>

#include <catch2/catch.hpp>

#include "store/mime/structure.hpp"
#include "store/storage/message_store.hpp"

namespace test {

using namespace std::chrono_literals;

const common::authtoken::Signer& token_signer() {
  static const common::authtoken::Signer signer = [] {
    std::array<std::byte, 32> seed{};
    for (size_t i = 0; i < seed.size(); ++i) seed[i] = std::byte(0x40 + i);
    auto made = common::authtoken::Signer::from_seed(seed);
    if (!made) FAIL(made.error().detail);
    return std::move(*made);
  }();
  return signer;
}

std::string access_token(const std::string& user, const std::string& front_end, std::chrono::seconds ttl,
                         std::vector<std::string> services) {
  const int64_t now = static_cast<int64_t>(std::time(nullptr));
  auto claims = common::authtoken::new_claims(user, std::move(services), front_end, now, ttl);
  if (ttl.count() < 0) {
    // Issued in the past so that it has expired (and is not merely issued in the future).
    claims.issued_at = now - 2 * 3600;
    claims.session_started_at = claims.issued_at;
    claims.expires_at = now + ttl.count();
  }
  auto token = token_signer().sign(claims);
  if (!token) FAIL(token.error().detail);
  return *token;
}

StoreDaemon::StoreDaemon(StoreDaemonOptions options)
    : options_(std::move(options)),
      auth_("example.com", options_.authserv_mtls ? pki_.host("auth1").string() : ""),
      implicit_port_(free_port()),
      starttls_port_(free_port()),
      grpc_port_(free_port()) {
  nss_ = pki_.host("store1");
  auth_.add_user("alice@example.com", "store1");
  auth_.add_user("bob@example.com", "store1");
  auth_.add_user("small@example.com", "store1", "10K");
  auth_.add_user("few@example.com", "store1");
  auth_.cli({"user", "set", "few@example.com", "quota_messages", "1"});
  auth_.add_user("elsewhere@example.com", "store2");
  for (int i = 0; i < 4; ++i) auth_.add_user("user" + std::to_string(i) + "@example.com", "store1");
  for (const auto& [address, quota] : options_.extra_users) auth_.add_user(address, "store1", quota);
  auth_.start();
  data_dir_ = options_.data_dir.empty() ? (dir_ / "store").string() : options_.data_dir;
  if (options_.metrics) metrics_port_ = free_port();
  write_config();
}

void StoreDaemon::write_config() {
  const std::string metrics_listen = metrics_port_ ? "127.0.0.1:" + std::to_string(metrics_port_) : "";
  std::string cfg = "[daemon]\nallow_root = true\n[log]\nlevel = \"info\"\n[metrics]\nlisten = \"" + metrics_listen +
                    "\"\n"
                    "[tls]\ndb_dir = \"" + nss_.string() + "\"\n"
                    "[store]\ndir = \"" + data_dir_ + "\"\nnames = [\"store1\"]\n" + options_.store_extra +
                    "[lmtp]\nallowed_clients = [\"mta1\"]\nmax_recipients = 100\n" +
                    (options_.lmtp_extra.find("max_message_size") == std::string::npos ? "max_message_size = \"1M\"\n"
                                                                                        : "") +
                    options_.lmtp_extra +
                    "[authserv]\ntargets = [\"" + auth_.target() + "\"]\n" +
                    (options_.authserv_mtls ? "" : "plaintext = true\n") +
                    "[grpc]\nlisten = \"127.0.0.1:" + std::to_string(grpc_port_) + "\"\n"
                    "[mailstore]\n" +
                    (options_.mailstore_extra.find("allowed_clients") == std::string::npos ? "allowed_clients = [\"mta1\"]\n" : "") +
                    "admins = [\"admin@example.com\"]\n"
                    "token_keys = [\"" +
                    (options_.authserv_mtls ? (auth_.dir() / "token.key.pub").string() : token_signer().public_key_text()) +
                    "\"]\n" + options_.mailstore_extra +
                    "[[listener]]\nname = \"lmtps\"\nservice = \"lmtp\"\naddress = \"127.0.0.1:" +
                    std::to_string(implicit_port_) + "\"\ntls = \"implicit\"\nidle_timeout = \"5s\"\n"
                    "[[listener]]\nname = \"lmtp\"\nservice = \"lmtp\"\naddress = \"127.0.0.1:" +
                    std::to_string(starttls_port_) + "\"\ntls = \"starttls\"\nidle_timeout = \"5s\"\n";
  config_ = dir_.write("store.toml", cfg).string();
}

StoreDaemon::~StoreDaemon() { stop(); }

CommandResult StoreDaemon::deliver(const std::vector<std::string>& recipients, const std::vector<std::string>& extra) {
  std::vector<std::string> argv{"python3", source_path("tests/store/lmtp_client.py"), "send", "--port",
                                std::to_string(implicit_port_), "--tls", "implicit", "--ca", Pki::file("ca/ca.pem").string(),
                                "--cert", Pki::file("ca/clients/mta1.pem").string(), "--key",
                                Pki::file("ca/clients/mta1.key").string()};
  for (const auto& r : recipients) argv.insert(argv.end(), {"--rcpt", r});
  argv.insert(argv.end(), extra.begin(), extra.end());
  return run(argv, std::chrono::seconds(120));
}

void StoreDaemon::start() {
  // free_port() can race with another test binding the same port between the pick and the
  // store's bind; the store then exits saying so, and it is started again on fresh ports.
  for (int attempt = 0;; ++attempt) {
    const size_t started = count("event=started"), in_use = count("port in use");
    process_ = std::make_unique<ChildProcess>(
        std::vector<std::string>{binary_path("store/postern-store"), "--config", config_}, (dir_ / "store.log").string());
    const auto until = std::chrono::steady_clock::now() + 20s;
    while (count("event=started") <= started) {
      if (!process_->running() && count("port in use") > in_use && attempt < 5) break;
      if (!process_->running() || std::chrono::steady_clock::now() > until) FAIL("store did not start: " << log());
      std::this_thread::sleep_for(20ms);
    }
    if (count("event=started") > started) return;
    implicit_port_ = free_port();
    starttls_port_ = free_port();
    grpc_port_ = free_port();
    if (options_.metrics) metrics_port_ = free_port();
    write_config();
  }
}

int StoreDaemon::stop() {
  if (!process_ || !process_->running()) return 0;
  process_->signal(SIGTERM);
  return process_->wait(20s);
}

void StoreDaemon::kill9() {
  process_->signal(SIGKILL);
  process_->wait(10s);
}

std::vector<std::string> StoreDaemon::messages(const std::string& user, const std::string& mailbox) {
  std::vector<std::string> out;
  store::MessageStoreOptions o;
  o.dir = data_dir_;
  auto s = store::MessageStore::open(o);
  REQUIRE(s);
  REQUIRE((*s)->read([&](const common::lmdb::Txn& txn, const store::Dbs& dbs) -> common::Result<void> {
    auto u = store::find_user(txn, dbs, user);
    REQUIRE(u);
    if (!*u) return {};
    auto mb = store::find_mailbox(txn, dbs, (*u)->id, mailbox);
    REQUIRE(mb);
    REQUIRE(*mb);
    auto list = store::list_messages(txn, dbs, (*mb)->id);
    REQUIRE(list);
    for (auto& m : *list) {
      auto bytes = store::message_bytes(txn, dbs, m.record);
      REQUIRE(bytes);
      out.push_back(*bytes);
    }
    return {};
  }));
  return out;
}

bool StoreDaemon::structures_decode() {
  store::MessageStoreOptions o;
  o.dir = data_dir_;
  auto s = store::MessageStore::open(o);
  REQUIRE(s);
  bool ok = true;
  REQUIRE((*s)->read([&](const common::lmdb::Txn& txn, const store::Dbs& dbs) -> common::Result<void> {
    auto cursor = common::lmdb::Cursor::open(txn, dbs.bodies);
    REQUIRE(cursor);
    for (auto e = cursor->seek(""); e && *e; e = cursor->next()) {
      auto body = store::decode_body((*e)->second);
      REQUIRE(body);
      auto structure = store::mime::decode(body->structure);
      if (!structure || structure->bodystructure.empty()) ok = false;
    }
    return {};
  }));
  return ok;
}

std::string StoreDaemon::metrics() const {
  REQUIRE(metrics_port_ != 0);
  auto r = run({"curl", "-sS", "-m", "5", "http://127.0.0.1:" + std::to_string(metrics_port_) + "/metrics"});
  REQUIRE(r.exit_code == 0);
  return r.output;
}

std::string StoreDaemon::log() const { return read_file(dir_ / "store.log"); }

size_t StoreDaemon::count(const std::string& needle) const {
  const std::string text = log();
  size_t n = 0;
  for (size_t p = text.find(needle); p != std::string::npos; p = text.find(needle, p + 1)) ++n;
  return n;
}

}  // namespace test
