// config.hpp: the mmp's table of how to reach the stores (certificates, deadlines, limits, and
// which targets each store name has), read the same way wherever a daemon calls the stores.
#pragma once

#include "common/config/config.hpp"
#include "mmp/store_client/store_client.hpp"

namespace mmp::store_client {

// Keys: certificate, ca, plaintext, server_name (the name each store's certificate must carry;
// default: each target's host), default_port, call_deadline, transfer_deadline, watch_deadline,
// max_in_flight, max_watches, max_stores, and the sub-table `stores`: store name = "host:port" or
// a list of them (each checked as store_target() does). Unknown keys are reported by the Document.
void read_store_client_config(common::config::Section section, StoreClientOptions& out);

}  // namespace mmp::store_client
