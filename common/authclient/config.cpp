// config.cpp: the [authserv] client table (config.hpp).
#include "common/authclient/config.hpp"

#include <chrono>

namespace common::authclient {

void read_auth_client_config(config::Section s, AuthClientOptions& out) {
  using namespace std::chrono_literals;
  s.get("targets", out.targets);
  if (out.targets.empty()) s.error("targets", "at least one authserv address (host:port) is needed");
  s.get("certificate", out.tls.certificate);
  s.get("ca", out.tls.ca);
  s.get("plaintext", out.tls.plaintext);
  s.get("server_name", out.tls.expected_peer_name);
  s.get_duration("call_deadline", out.call_deadline, std::chrono::milliseconds(100ms),
                 std::chrono::milliseconds(5min));
  s.get_duration("positive_ttl", out.positive_ttl, std::chrono::milliseconds(0ms), std::chrono::milliseconds(24h));
  s.get_duration("negative_ttl", out.negative_ttl, std::chrono::milliseconds(0ms), std::chrono::milliseconds(24h));
  s.get("cache_entries", out.cache_entries, size_t{0}, size_t{10000000});
  s.get("max_in_flight", out.max_in_flight, size_t{1}, size_t{100000});
}

}  // namespace common::authclient
