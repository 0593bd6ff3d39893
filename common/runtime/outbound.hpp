// outbound.hpp: connections we open (the mta's LMTP to the store, SMTP to remote MXs): connect
// with a timeout and an optional source address, then the same Connection and Session seam, write
// queue, backpressure, timers and close reasons as an accepted connection.
#pragma once

#include <chrono>
#include <functional>
#include <memory>
#include <optional>
#include <string>

#include "common/net/address.hpp"
#include "common/result.hpp"
#include "common/runtime/connection.hpp"

namespace common::runtime {

struct ConnectOptions {
  net::Endpoint remote;                   // IPv4 or IPv6
  std::optional<net::IpAddress> source;   // bind to this address first (a multi-homed MTA's sending IP)
  // RFC 5321 §4.5.3.2 names no connect timeout; an MX that drops SYNs must not hold a delivery
  // for the kernel's two minutes of retries, so ours is shorter and the queue tries the next MX.
  std::chrono::milliseconds connect_timeout{std::chrono::seconds(30)};
  ConnectionLimits limits;                // idle and session timeouts, write queue marks
  std::string name = "outbound";          // ConnectionInfo::listener, for logs ("lmtp-store1")
  std::string service = "outbound";
};

// Makes the session once connected, exactly like SessionFactory::create (implicit TLS: call
// Connection::start_implicit_tls here, before the session exists).
using OutboundFactory = std::function<std::unique_ptr<Session>(Connection&)>;
// A connect that failed or timed out: ErrorKind::Connect with the errno text ("ECONNREFUSED
// (connection refused)"); the connection is closing and no session was made. Never called once
// the factory has run.
using ConnectFailed = std::function<void(const Error&)>;

// Starts connecting on `set`'s loop (call on that loop's thread). Returns the connection's id (its
// session= in logs) at once; exactly one of `factory` or `failed` runs later, never from inside
// this call. A drain or abort of `set` while connecting reports a failure too.
std::string connect(ConnectionSet& set, const ConnectOptions& options, OutboundFactory factory, ConnectFailed failed);

}  // namespace common::runtime
