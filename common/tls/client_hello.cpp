// client_hello.cpp: the ClientHello scan (RFC 8446 §4.1.2 layout, RFC 8449 extension 28). Bounded:
// at most one ClientHello is held, and one larger than 64 KiB ends the scan as unreadable.
#include "common/tls/client_hello.hpp"

#include <algorithm>

namespace common::tls {
namespace {

constexpr uint8_t kChangeCipherSpec = 20;
constexpr uint8_t kAlert = 21;
constexpr uint8_t kHandshake = 22;
constexpr uint8_t kClientHello = 1;
constexpr uint16_t kRecordSizeLimit = 28;
constexpr size_t kMaxHello = 64 * 1024;

// Reads big-endian fields off the front of a view; every read fails once one did.
struct Reader {
  std::string_view rest;
  bool ok = true;

  uint32_t number(size_t width) {
    if (!ok || rest.size() < width) {
      ok = false;
      return 0;
    }
    uint32_t v = 0;
    for (size_t i = 0; i < width; ++i) v = (v << 8) | static_cast<unsigned char>(rest[i]);
    rest.remove_prefix(width);
    return v;
  }
  std::string_view bytes(size_t n) {
    if (!ok || rest.size() < n) {
      ok = false;
      return {};
    }
    std::string_view out = rest.substr(0, n);
    rest.remove_prefix(n);
    return out;
  }
  std::string_view vector(size_t length_width) { return bytes(number(length_width)); }
};

}  // namespace

void ClientHelloScan::feed(std::string_view bytes) {
  while (!done_ && !bytes.empty()) {
    if (body_left_ > 0) {
      const size_t n = std::min(bytes.size(), body_left_);
      body_.append(bytes.substr(0, n));
      bytes.remove_prefix(n);
      body_left_ -= n;
      if (body_left_ == 0) on_record(header_[0], body_);
      continue;
    }
    header_[header_have_++] = static_cast<unsigned char>(bytes.front());
    bytes.remove_prefix(1);
    if (header_have_ < sizeof header_) continue;
    header_have_ = 0;
    body_.clear();
    body_left_ = (size_t{header_[3]} << 8) | header_[4];
    if (body_left_ == 0) on_record(header_[0], {});
  }
}

void ClientHelloScan::on_record(uint8_t type, std::string_view body) {
  if (type == kChangeCipherSpec || type == kAlert) return;  // compatibility CCS; NSS judges alerts
  if (type != kHandshake) {
    // The first protected record: every ClientHello is behind us, unless one was cut off.
    stop(!handshake_.empty());
    return;
  }
  handshake_.append(body);
  body_.clear();
  while (handshake_.size() >= 4) {
    const auto* h = reinterpret_cast<const unsigned char*>(handshake_.data());
    const size_t length = (size_t{h[1]} << 16) | (size_t{h[2]} << 8) | h[3];
    if (length > kMaxHello) return stop(true);
    if (handshake_.size() < 4 + length) return;
    // A client sends nothing but ClientHellos in plaintext; NSS refuses anything else.
    if (h[0] != kClientHello || !on_client_hello(std::string_view(handshake_).substr(4, length))) return stop(true);
    handshake_.erase(0, 4 + length);
  }
}

bool ClientHelloScan::on_client_hello(std::string_view body) {
  Reader r{body};
  r.number(2);    // legacy_version
  r.bytes(32);    // random
  r.vector(1);    // legacy_session_id
  r.vector(2);    // cipher_suites
  r.vector(1);    // legacy_compression_methods
  if (!r.ok) return false;
  ++hellos_;
  if (r.rest.empty()) return true;  // no extensions at all
  Reader extensions{r.vector(2)};
  if (!r.ok || !r.rest.empty()) return false;
  bool seen = false;
  while (extensions.ok && !extensions.rest.empty()) {
    const uint32_t type = extensions.number(2);
    Reader data{extensions.vector(2)};
    if (!extensions.ok || type != kRecordSizeLimit) continue;
    const uint32_t limit = data.number(2);
    // Twice in one hello, or malformed: NSS refuses it; nothing is handed over then.
    if (seen || !data.ok || !data.rest.empty()) return false;
    seen = true;
    limit_ = limit_ ? std::min(*limit_, limit) : limit;
  }
  return extensions.ok;
}

void ClientHelloScan::stop(bool failed) {
  done_ = true;
  failed_ = failed_ || failed;
  std::string().swap(body_);
  std::string().swap(handshake_);
}

}  // namespace common::tls
