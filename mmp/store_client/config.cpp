// config.cpp: the store client's table (config.hpp).
#include "mmp/store_client/config.hpp"

#include <chrono>

#include "common/ascii.hpp"
#include "mmp/store_client/targets.hpp"

namespace mmp::store_client {

void read_store_client_config(common::config::Section s, StoreClientOptions& out) {
  using namespace std::chrono_literals;
  using ms = std::chrono::milliseconds;
  s.get("certificate", out.tls.certificate);
  s.get("ca", out.tls.ca);
  s.get("plaintext", out.tls.plaintext);
  s.get("server_name", out.tls.expected_peer_name);
  s.get("default_port", out.default_port, uint16_t{1}, uint16_t{65535});
  s.get_duration("call_deadline", out.call_deadline, ms(100ms), ms(5min));
  s.get_duration("transfer_deadline", out.transfer_deadline, ms(1s), ms(1h));
  s.get_duration("watch_deadline", out.watch_deadline, ms(1s), ms(24h));
  s.get("max_in_flight", out.max_in_flight, size_t{1}, size_t{1000000});
  s.get("max_watches", out.max_watches, size_t{1}, size_t{10000000});
  s.get("max_stores", out.max_stores, size_t{1}, size_t{100000});
  auto stores = s.section("stores");
  for (const auto& name : stores.keys()) {
    std::vector<std::string> targets;
    stores.get(name, targets);
    if (targets.empty()) {
      stores.error(name, "at least one address (host or host:port) is needed");
      continue;
    }
    bool ok = true;
    for (const auto& t : targets) {
      if (auto checked = store_target(t, out.default_port); !checked) {
        stores.error(name, checked.error().detail);
        ok = false;
      }
    }
    // Names compare as host names do: mailHost "Store1" is the store configured as "store1".
    if (ok) out.stores[common::ascii::lowered(name)] = std::move(targets);
  }
}

}  // namespace mmp::store_client
