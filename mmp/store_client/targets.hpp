// targets.hpp: how a store's name (a user's mailHost) or a configured address becomes the
// "host:port" target of a gRPC channel. Pure: no gRPC, no I/O.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "common/result.hpp"

namespace mmp::store_client {

// "host", "host:port", "[v6]", "[v6]:port" or a bare IPv6 address; without a port, default_port.
// Host names are lower-cased (DNS names are case-insensitive, and one store must not get two
// channel sets). Config errors for anything else: the directory or a config file holds the
// value, and a malformed one must not reach gRPC's resolver as some other name.
common::Result<std::string> store_target(std::string_view text, uint16_t default_port);

}  // namespace mmp::store_client
