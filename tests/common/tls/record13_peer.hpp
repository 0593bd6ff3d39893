// record13_peer.hpp: a TLS 1.3 peer that misbehaves on purpose, for the record layer's tests and fuzz
// target: records of any content type, padding and size under the right keys, which the server's
// own API (encode, key_update, close) cannot produce.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "common/result.hpp"
#include "common/tls/record13.hpp"

namespace common::tls {

class Tls13RecordsPeer {
 public:
  // One record whose TLSInnerPlaintext is `inner` exactly: content, type byte, zero padding, or
  // anything else (no type, an oversized record up to the 16-bit length field).
  static Result<void> send_inner(Tls13Records& records, std::string_view inner, std::string& wire);
  // `content` as one record of `type`, followed by `padding` zero bytes.
  static Result<void> send_record(Tls13Records& records, uint8_t type, std::string_view content, std::string& wire,
                                  size_t padding = 0);
};

}  // namespace common::tls
