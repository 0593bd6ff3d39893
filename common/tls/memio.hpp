// memio.hpp: the bottom NSPR layer under NSS's SSL layer: reads come from an input buffer the
// socket fills, writes go to an output buffer the connection sends (notes §1; the design of
// Chromium's nss_memio). NSS never touches a real socket.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

#include <prio.h>

namespace common::tls {

// The buffers of one connection; owned by its stub and freed when the stub is closed.
struct MemioState {
  std::string in;        // ciphertext from the peer not yet read by NSS
  size_t in_pos = 0;     // bytes of `in` already read
  bool eof = false;      // the peer ended the stream: reads return 0 once `in` is empty
  std::string out;       // ciphertext NSS wrote, for the socket
  void* owner = nullptr; // the transform using this connection (for NSS callbacks)

  size_t readable() const { return in.size() - in_pos; }
  void append_input(std::string_view bytes);
  // Moves what NSS wrote into `wire` (appended). Call after every NSS call (pitfall 5).
  void take_output(std::string& wire);
};

// A per-connection stub with fresh state. PR_Close (of it, or of the SSL layer above) frees it.
PRFileDesc* memio_create();
// A stateless stub for a model socket: getpeername says "not connected" (pitfall 1).
PRFileDesc* memio_create_model();
// The state of the memio layer somewhere in `stack`; null for a model or a foreign stack.
MemioState* memio_state(PRFileDesc* stack);

}  // namespace common::tls
