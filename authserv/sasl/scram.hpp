// scram.hpp: SCRAM-SHA-256 and SCRAM-SHA-256-PLUS server state machine (RFC 5802, 7677, 9266).
#pragma once

#include <memory>

#include "authserv/sasl/sasl.hpp"

namespace authserv::sasl {

// plus: the -PLUS mechanism (requires ctx.channel_binding). Without -PLUS, a context with
// channel binding still makes the server refuse the "y" flag (downgrade, RFC 5802 §6).
std::unique_ptr<Mechanism> make_scram_sha256(bool plus, MechanismContext ctx);

}  // namespace authserv::sasl
