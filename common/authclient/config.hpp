// config.hpp: the [authserv] table of a daemon that calls authserv (store, mta, mmp): where authserv
// listens and how to reach it, read the same way in every daemon.
#pragma once

#include "common/authclient/authclient.hpp"
#include "common/config/config.hpp"

namespace common::authclient {

// Keys: targets ("host:port" or a list), certificate, ca, plaintext, server_name (the name
// authserv's certificate must carry; default: each target's host), call_deadline, positive_ttl,
// negative_ttl, cache_entries, max_in_flight. Unknown keys are reported by the Document.
void read_auth_client_config(config::Section section, AuthClientOptions& out);

}  // namespace common::authclient
