// connection_facts.hpp: a front end's connection, as the runtime and the TLS layer describe it,
// turned into the facts authserv decides on: one function, so every protocol spells them alike.
#pragma once

#include "common/authclient/types.hpp"

namespace common::runtime {
struct ConnectionInfo;
struct SecurityFacts;
}  // namespace common::runtime

namespace common::authclient {

// `security`: the connection's transform facts (Transform::facts()); null, or a handshake not yet
// done, means no TLS: tls_version "" and no certificate or channel binding, so authserv offers no
// plaintext mechanism and no -PLUS. Certificate fields only for a certificate the TLS layer
// verified (certmap must never map an unverified one). Addresses without ports; session_id is the
// connection id, so both tiers' logs join.
ConnectionFacts connection_facts(const runtime::ConnectionInfo& info, const runtime::SecurityFacts* security);

}  // namespace common::authclient
