// client_hello.hpp: reads the record_size_limit (RFC 8449) a TLS client asks for out of its
// plaintext ClientHello(s) as they arrive, because NSS agrees to the limit without saying what it
// was, and the record layer that takes over from NSS must know it. Pure: bytes in, no I/O.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace common::tls {

class ClientHelloScan {
 public:
  // The client's bytes in arrival order, from the first. Scanning ends at its first protected
  // record (the handshake is then encrypted) or on anything it cannot follow.
  void feed(std::string_view bytes);

  // Every ClientHello so far was read whole (a second one follows a HelloRetryRequest).
  bool readable() const { return !failed_ && hellos_ > 0; }
  // The smallest record_size_limit of those ClientHellos; nullopt when none carried the extension.
  std::optional<uint32_t> record_size_limit() const { return limit_; }

 private:
  void on_record(uint8_t type, std::string_view body);
  bool on_client_hello(std::string_view body);
  void stop(bool failed);

  unsigned char header_[5] = {};
  size_t header_have_ = 0;
  size_t body_left_ = 0;
  std::string body_;       // the record being read
  std::string handshake_;  // handshake messages not yet complete
  std::optional<uint32_t> limit_;
  unsigned hellos_ = 0;
  bool done_ = false;
  bool failed_ = false;
};

}  // namespace common::tls
