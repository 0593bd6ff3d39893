// record13_differential.hpp: one exchange played through our TLS 1.3 record layer and through the
// OpenSSL reference (record13_reference.hpp) side by side, for record13_test and the fuzz target.
// The peer's records are sealed by both (they must be the same bytes), then fed to both in the same
// pieces: each piece must deliver the same plaintext, be refused at the same piece with the same
// alert, and draw the same answer (our one KeyUpdate for the peer's requests, the alert).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace reference13 {

// Script bytes, each op followed by its arguments:
//   0xff / 0xfe          a KeyUpdate, update requested / not requested
//   0xfd t L L P P f     a record of type t: L (16-bit) bytes of f, then P (16-bit) bytes of padding
//   0xfc n               flip the low bit of byte n (mod its size) of the last record
//   0xfb n bytes         n raw bytes, unprotected
//   0xfa                 the last record again (a replay)
//   0xf9 n p bytes       a record whose TLSInnerPlaintext is the n bytes as given and p zero bytes
//   t n bytes            (t < 0xf9) a record of type t carrying the n bytes
// Returns the wire bytes, or an empty string with `mismatch` set when the two sealers disagree.
std::string build_script(uint16_t suite, std::string_view script, std::string& mismatch);

// Feeds `wire` to both layers `step` bytes at a time. Empty when they agree; otherwise what differed.
std::string compare_layers(uint16_t suite, std::string_view wire, size_t step);

}  // namespace reference13
