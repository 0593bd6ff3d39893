// store_daemon.hpp: a real postern-store for tests (the store's own and the mta's LMTP client's):
// an implicit-TLS LMTP port and a STARTTLS one, mta1 allowed, the host database of store1 from
// test::Pki, recipients looked up in a real authserv with a fixed set of users; and reads of what
// it stored, from the environment, while it is stopped.
#pragma once

#include <chrono>
#include <filesystem>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "common/authtoken/authtoken.hpp"
#include "tests/support/authserv_daemon.hpp"
#include "tests/support/pki.hpp"
#include "tests/support/process.hpp"

namespace test {

struct StoreDaemonOptions {
  std::string lmtp_extra;   // lines for [lmtp]
  std::string store_extra;  // lines for [store]
  std::string mailstore_extra;  // lines for [mailstore]
  std::string data_dir;     // default: under the fixture's directory
  // authserv on mutual TLS (its own host certificate, auth1), the store calling it with store1's,
  // and the store trusting authserv's real token key (token.key.pub) instead of token_signer().
  bool authserv_mtls = false;
  // More users on store1, each {address, quota} ("none", "10M"...), password "secret-<local part>".
  std::vector<std::pair<std::string, std::string>> extra_users;
  bool metrics = false;  // serve /metrics on a loopback port (metrics() reads it)
};

// The key the fixture's store trusts for access tokens, as authserv's would be: tests mint tokens
// with it (fixed seed, so every test process agrees).
const common::authtoken::Signer& token_signer();
// A token for `user` issued to front end `front_end`, valid for `ttl` from now (negative: expired).
std::string access_token(const std::string& user, const std::string& front_end = "mta1",
                         std::chrono::seconds ttl = std::chrono::hours(1),
                         std::vector<std::string> services = {"imap"});

class StoreDaemon {
 public:
  // Users on store1: alice, bob, small (quota 10K), few (one message at most), user0..user3;
  // elsewhere@ lives on store2. All @example.com.
  explicit StoreDaemon(StoreDaemonOptions options = {});
  ~StoreDaemon();
  StoreDaemon(const StoreDaemon&) = delete;
  StoreDaemon& operator=(const StoreDaemon&) = delete;

  // Starts it and waits for its "started" line (a restart waits for a new one).
  void start();
  int stop();  // SIGTERM; the exit code
  void kill9();

  // What it holds for a user's mailbox (call while it is stopped).
  std::vector<std::string> messages(const std::string& user, const std::string& mailbox = "INBOX");
  // Every stored body's structure (ENVELOPE, BODYSTRUCTURE, offsets) decodes.
  bool structures_decode();

  // One message to `recipients` over LMTP (implicit TLS, mta1's certificate) with
  // tests/store/lmtp_client.py; `extra`: its options (--size, --data FILE, --xid...).
  CommandResult deliver(const std::vector<std::string>& recipients, const std::vector<std::string>& extra = {});

  std::string log() const;
  size_t count(const std::string& needle) const;  // occurrences in the log
  int implicit_port() const { return implicit_port_; }
  int starttls_port() const { return starttls_port_; }
  // The MailStore gRPC port (mutual TLS: clients with mta1's certificate are allowed, and tokens of
  // test::token_signer(); admin@example.com is a store administrator).
  int grpc_port() const { return grpc_port_; }
  // The Prometheus text of /metrics (options.metrics), read with curl.
  std::string metrics() const;
  const TempDir& dir() const { return dir_; }
  // The authserv the store asks (the mta's tests share it).
  AuthservDaemon& auth() { return auth_; }

 private:
  StoreDaemonOptions options_;
  TempDir dir_;
  Pki pki_;
  AuthservDaemon auth_;
  std::filesystem::path nss_;
  void write_config();  // from the options and the current ports

  int implicit_port_, starttls_port_, grpc_port_;
  int metrics_port_ = 0;
  std::string data_dir_, config_;
  std::unique_ptr<ChildProcess> process_;
};

}  // namespace test
