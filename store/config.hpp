// config.hpp: the store's own tables, [store] and [lmtp], with their defaults; [authserv] is the
// common client table (common/authclient/config.hpp).
#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

#include "common/authclient/authclient.hpp"
#include "common/config/config.hpp"

namespace store {

struct StoreConfig {
  std::string dir;                   // the LMDB environment (data.mdb), created 0700
  std::vector<std::string> names;    // mailHost values that mean this store; default: the host name
  uint64_t map_size = 64ull << 30;   // LMDB map: the most the store can hold (sparse file)
  std::chrono::seconds delivery_retention{std::chrono::hours(24)};  // how long a delivery id is remembered
  size_t max_pending_writes = 4096;  // group-commit queue; beyond it deliveries get 451
};

struct LmtpConfig {
  // Certificate common names of the clients (our mta hosts) that may deliver. Required with TLS.
  std::vector<std::string> allowed_clients;
  bool plaintext = false;            // LMTP without TLS: only where a config says so (warned at start)
  uint64_t max_message_size = 50ull << 20;
  size_t max_recipients = 1000;
  size_t max_errors = 10;
  std::string subaddress_separator = "+";  // "" turns +detail folders off
};

struct Config {
  StoreConfig store;
  LmtpConfig lmtp;
  common::authclient::AuthClientOptions authserv;
};

// Problems go into the Document (--check-config shows them).
void read_config(common::config::Section root, Config& out);

}  // namespace store
