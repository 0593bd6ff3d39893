// config.hpp: the delivery side's configuration: [delivery] (polling, concurrency, the SMTP client's
// port and timeouts), [[store_host]] (where each mailHost's store listens for LMTP), [[route]] (static
// routes instead of MX) and [[tls_policy]] (STARTTLS and certificate checks per remote domain).
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/config/config.hpp"
#include "common/net/address.hpp"
#include "common/smtpclient/client_session.hpp"
#include "common/tls/client.hpp"

namespace mta::delivery {

// One [[store_host]]: the store a user's mailHost names, reached by LMTP over mutual TLS.
struct StoreHost {
  std::string name;  // the mailHost value, lower case ("store1")
  common::net::Endpoint address;
  bool implicit_tls = true;  // tls = "implicit" (the store's lmtps port) or "starttls"
  std::string server_name;   // the name its certificate carries; default: name
};

// One [[route]]: mail for `domain` goes to `host` (a smarthost or a partner's gateway) instead of
// the domain's MX; `host` is an address or a name looked up for A/AAAA, never for MX.
struct Route {
  std::string domain;  // lower case; ".example.net" also matches every subdomain
  std::string host;    // "127.0.0.1", "smarthost.example.net", "2001:db8::25"
  uint16_t port = 25;
};

// One [[tls_policy]] (MTA-22, MTA-23): what STARTTLS means for mail to `domain`.
struct TlsPolicy {
  std::string domain;  // lower case; ".example.net" also matches every subdomain
  common::smtpclient::StartTls starttls = common::smtpclient::StartTls::Opportunistic;
  // Checked only where TLS is required; opportunistic TLS records the result and goes on.
  common::tls::Verify verify = common::tls::Verify::SystemRoots;
  std::string server_name;  // the name the certificate must carry; default: the MX host (or route host)
};

struct Config {
  std::chrono::milliseconds poll_interval{std::chrono::seconds(1)};  // how often the queue is read
  size_t max_sessions = 50;          // deliveries in progress at once, all destinations together
  size_t max_per_destination = 4;    // of those, to one destination (a store, a domain)
  size_t batch_recipients = 100;     // recipients leased from the queue per delivery run
  size_t max_transaction_recipients = 100;  // RCPTs per transaction (RFC 5321 §4.5.3.1.8: at least 100)
  uint16_t smtp_port = 25;           // of remote MX hosts; tests point it at a peer
  std::string helo_name;             // EHLO/LHLO name; default: [mta] host_name
  std::string certificate = "Server-Cert";  // our certificate (NSS nickname) for mutual TLS to the stores
  std::chrono::milliseconds connect_timeout{std::chrono::seconds(30)};
  common::smtpclient::Timeouts timeouts;   // RFC 5321 §4.5.3.2 by default
  common::smtpclient::PoolOptions pool;    // idle sessions kept per store or MX address
  size_t max_mx_addresses = 10;      // addresses tried per delivery, over every MX host
  std::vector<StoreHost> store_hosts;
  std::vector<Route> routes;
  std::vector<TlsPolicy> tls_policies;

  const StoreHost* store_host(std::string_view name) const;  // by lower-case name
  const Route* route(std::string_view domain) const;          // exact, then the longest ".suffix"
  const TlsPolicy* tls_policy(std::string_view domain) const;
};

// Reads [delivery], [[store_host]], [[route]] and [[tls_policy]]; problems go to the sections (so
// --check-config lists them with file and line).
void read_config(common::config::Section root, Config& out);

// For queue::Policy::dsn_destination: "local:<domain>" for an address in one of our domains (the
// deliverer finds the sender's store at delivery time: the queue's writer may not block on a
// lookup), else the address's domain in lower case, as the inbound session files remote recipients.
std::function<std::string(std::string_view address)> dsn_destination(std::vector<std::string> local_domains);

}  // namespace mta::delivery
