// config.hpp: the mta's own configuration: [mta] (names, local domains, INTERNAL_IP, session
// limits), [queue], [authserv], the delivery tables (mta/delivery/config.hpp), and the per-listener
// keys (AUTH, limits) of each [[listener]].
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "common/authclient/authclient.hpp"
#include "common/config/config.hpp"
#include "common/daemon/daemon.hpp"
#include "common/net/address.hpp"
#include "mta/delivery/config.hpp"

namespace mta {

// What one listener's sessions may do (MTA-01..03, MTA-58). The [mta] values are the defaults a
// [[listener]] may override.
struct SessionPolicy {
  bool auth = false;          // AUTH offered (after TLS only); default: on for submission, off on 25
  bool require_auth = false;  // MAIL needs a successful AUTH (submission, 587 and 465)
  uint64_t max_message_size = 50ull << 20;
  size_t max_recipients = 100;           // per message (RFC 5321 §4.5.3.1.8 asks for at least 100)
  size_t max_session_recipients = 1000;  // over every transaction of one connection
  size_t max_messages = 100;             // transactions per connection
  size_t max_errors = 10;                // protocol errors, then 421 and close
  std::chrono::milliseconds data_timeout{std::chrono::minutes(30)};  // the whole DATA/BDAT, however it trickles
};

// [[listener]] overrides, read before [mta] (run_daemon reads the listeners first).
struct ListenerOverrides {
  std::optional<bool> auth;
  std::optional<bool> require_auth;
  std::optional<uint64_t> max_message_size;
  std::optional<size_t> max_recipients;
  std::optional<size_t> max_session_recipients;
  std::optional<size_t> max_messages;
  std::optional<size_t> max_errors;
};

struct MtaConfig {
  std::string host_name;  // greeting, Received: "by", EHLO out; default: the host name
  std::vector<std::string> local_domains;
  // INTERNAL_IP: clients that may relay without AUTH (MTA-07: keep it narrow).
  std::vector<common::net::IpNetwork> internal_networks;
  // An authenticated user may use any MAIL FROM (off: only their own addresses, MTA-13/MTA-19).
  bool any_sender = false;
  std::string subaddress_separator = "+";  // RFC 5233 "user+detail"; "" turns it off
  // Look up each client's forward-confirmed name for the Received: header and the logs (MTA-21).
  bool reverse_lookup = true;
  std::chrono::milliseconds reverse_lookup_wait{std::chrono::seconds(10)};  // at most, at the end of DATA
  SessionPolicy session;
};

struct QueueConfig {
  std::string dir;
  uint64_t map_size = uint64_t{16} << 30;
  size_t max_pending_writes = 4096;
  std::chrono::seconds max_lifetime{std::chrono::hours(24 * 5)};
  std::vector<std::chrono::seconds> retry_schedule;  // empty: the queue's default
  std::chrono::seconds delay_warning{std::chrono::hours(4)};
};

struct Config {
  MtaConfig mta;
  QueueConfig queue;
  common::authclient::AuthClientOptions authserv;
  delivery::Config delivery;  // [delivery], [[store_host]], [[route]], [[tls_policy]]
};

void read_config(common::config::Section root, Config& out);
void read_listener_overrides(common::config::Section& section, ListenerOverrides& out);

// The listener's policy: the service's defaults, then [mta], then the listener's own keys.
SessionPolicy session_policy(const MtaConfig& mta, std::string_view service, const ListenerOverrides& overrides);

}  // namespace mta
