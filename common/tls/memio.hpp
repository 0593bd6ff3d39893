// memio.hpp: the bottom NSPR layer under NSS's SSL layer: reads come from an input buffer the
// socket fills, writes go to an output buffer the connection sends (docs/nss-notes.md §1; the design of
// Chromium's nss_memio). NSS never touches a real socket.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include <prio.h>

namespace common::tls {

// Counts the complete TLS records passing one way through memio, from a point NSS names (a new
// traffic key), so the record layer that takes over knows each direction's sequence number.
struct RecordTally {
  uint64_t records = 0;      // records completed since restart()
  uint64_t unprotected = 0;  // of them, records whose outer type is not application_data
  uint16_t epoch = 0;        // the NSS epoch (sslexp.h) of the key counted since restart()
  unsigned char header[5] = {};
  size_t header_have = 0;
  size_t body_left = 0;

  bool at_boundary() const { return header_have == 0 && body_left == 0; }
  // Under TLS 1.3 every protected record has the outer type application_data and takes one
  // sequence number; a record of another type (a plaintext alert or change_cipher_spec) takes none,
  // so a tally holding one no longer gives the sequence number.
  void restart(uint16_t key_epoch) {
    records = 0;
    unprotected = 0;
    epoch = key_epoch;
  }
  // `done` (when set) hears of every record completed, with its outer content type.
  void feed(const char* data, size_t n, void (*done)(void* arg, uint8_t type) = nullptr, void* arg = nullptr);
};

// The buffers of one connection; owned by its stub and freed when the stub is closed. Nothing here
// holds memory while a connection is idle: input is borrowed from the caller's (per-thread) read
// buffer for the length of one NSS call sequence, and output is handed to the connection at once.
struct MemioState {
  std::string_view feed;  // borrowed ciphertext, valid between begin_input() and end_input()
  std::string rest;       // ciphertext NSS did not read before end_input() (rare); read first
  size_t rest_pos = 0;    // bytes of `rest` already read
  bool eof = false;       // the peer ended the stream: reads return 0 once the input is empty
  std::string out;        // ciphertext NSS wrote, for the socket
  void* owner = nullptr;  // the transform using this connection (for NSS callbacks)
  RecordTally records_in;   // what NSS read
  RecordTally records_out;  // what NSS wrote
  // Told of every record NSS wrote, with `owner` (the transform tracks what NSS protects).
  void (*on_record_out)(void* owner, uint8_t type) = nullptr;
  // Set when the transform has given the connection's records to its own layer: NSS must write
  // nothing more, and whatever it still writes is refused (never sent) and counted here.
  bool released = false;
  uint64_t* writes_after_release = nullptr;

  size_t readable() const { return rest.size() - rest_pos + feed.size(); }
  // Makes `bytes` readable by NSS without copying them. They must stay valid until end_input().
  void begin_input(std::string_view bytes);
  // Copies what NSS left unread (normally nothing: the transform reads until NSS would block) and
  // drops the borrowed view, so no pointer into the caller's buffer outlives the call.
  void end_input();
  // Reads up to `n` bytes in arrival order; returns how many.
  size_t read(char* dst, size_t n);
  // Moves what NSS wrote into `wire` (appended). Call after every NSS call: NSS writes during and after the handshake and when it fails.
  void take_output(std::string& wire);
};

// A per-connection stub with fresh state. PR_Close (of it, or of the SSL layer above) frees it.
PRFileDesc* memio_create();
// A stateless stub for a model socket: getpeername says "not connected", since SSL_ImportFD asks for the peer.
PRFileDesc* memio_create_model();
// The state of the memio layer somewhere in `stack`; null for a model or a foreign stack.
MemioState* memio_state(PRFileDesc* stack);

}  // namespace common::tls
