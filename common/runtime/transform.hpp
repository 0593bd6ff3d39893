// transform.hpp: the seam where TLS sits between the socket and a session. A connection without a
// transform passes bytes through; STARTTLS installs one mid-stream, implicit TLS before the first byte.
#pragma once

#include <span>
#include <string>
#include <string_view>

#include "common/result.hpp"

namespace common::runtime {

class Transform {
 public:
  virtual ~Transform() = default;
  // Bytes from the socket. Plaintext for the session goes to `plain`; bytes the transform itself must
  // send (handshake, alerts, tickets) go to `wire`. An error closes the connection after `wire` is sent.
  virtual Result<void> decode(std::string_view in, std::string& plain, std::string& wire) = 0;
  // Plaintext from the session, encoded for the socket into `wire`.
  virtual Result<void> encode(std::string_view plain, std::string& wire) = 0;
  // Graceful end (TLS close_notify) into `wire`.
  virtual void close(std::string& wire) = 0;
  // Peer sent end-of-stream at the transform level (TLS close_notify).
  virtual bool peer_closed() const { return false; }
};

}  // namespace common::runtime
