// record13_reference.hpp: a second TLS 1.3 record layer (RFC 8446 §5, KeyUpdate §4.6.3), written
// from the RFC over OpenSSL's libcrypto (EVP) and sharing no code with common/tls/record13.cpp, so
// the differential test and fuzz mode can require both to open, deliver and refuse alike.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace reference13 {

enum class Cipher : uint8_t { Aes128Gcm, Aes256Gcm, ChaCha20Poly1305 };

// The AEAD alone (12-byte nonce, 16-byte tag appended to the ciphertext). open() is false when the
// tag does not verify.
bool aead_seal(Cipher cipher, std::string_view key, std::string_view nonce, std::string_view aad,
               std::string_view plain, std::string& sealed);
bool aead_open(Cipher cipher, std::string_view key, std::string_view nonce, std::string_view aad,
               std::string_view sealed, std::string& plain);

// The cipher of a TLS 1.3 suite (0x1301, 0x1302, 0x1303), if it is one of these.
std::optional<Cipher> cipher_of(uint16_t suite);

// HKDF-Expand-Label (RFC 8446 §7.1) through OpenSSL's HKDF in expand-only mode.
std::string expand_label(Cipher cipher, std::string_view secret, std::string_view label, size_t length);

// One direction's keys: the traffic secret, the key and IV derived from it, the next sequence number.
struct TrafficKeys {
  Cipher cipher;
  std::string secret;
  std::string key;
  std::string iv;
  uint64_t sequence = 0;

  TrafficKeys(Cipher c, std::string traffic_secret, uint64_t first_sequence);
  void update();  // to the next generation (RFC 8446 §7.2); the sequence restarts at 0
  std::string nonce() const;
};

// The writing side: records exactly as RFC 8446 §5.2 builds them.
class Sealer {
 public:
  Sealer(Cipher cipher, std::string secret, uint64_t sequence) : keys_(cipher, std::move(secret), sequence) {}
  // One record whose TLSInnerPlaintext is `inner` as given.
  std::string seal_inner(std::string_view inner);
  std::string key_update(bool request);
  uint64_t sequence() const { return keys_.sequence; }

 private:
  TrafficKeys keys_;
};

// What one feed() decided.
struct Step {
  std::string delivered;                // application data, in order
  std::optional<uint8_t> refusal;       // the alert we must send, if the input was refused here
  std::string why;
  std::optional<uint8_t> peer_alert;    // the peer's fatal alert, which ends it without an answer
  unsigned update_requests = 0;         // update_requested KeyUpdates read
  unsigned key_updates = 0;             // KeyUpdates of either kind read
  std::string alerts;                   // descriptions of the warning-level alerts read, in order
};

// The reading side of a TLS 1.3 server after its handshake: every check the RFC asks for, in the
// order this project chose where the RFC leaves it open (the record header's type before its
// length; a KeyUpdate's size, then its place at the end of its record, then its value).
class Opener {
 public:
  // `idle_cap`: refuse the 33rd record in a row without application data (a server's policy, not
  // the RFC's); off when reading what our own server sent.
  Opener(Cipher cipher, std::string secret, uint64_t sequence, bool idle_cap = true)
      : keys_(cipher, std::move(secret), sequence), idle_cap_(idle_cap) {}
  Step feed(std::string_view bytes);
  bool closed() const { return closed_; }   // close_notify read: the rest is ignored
  bool failed() const { return failed_; }
  uint64_t sequence() const { return keys_.sequence; }
  size_t buffered() const { return buffer_.size(); }

 private:
  void record(std::string_view header, std::string_view body, Step& step);
  void refuse(Step& step, uint8_t alert, std::string why);

  TrafficKeys keys_;
  bool idle_cap_;
  std::string buffer_;
  std::string handshake_;
  unsigned idle_ = 0;
  bool closed_ = false;
  bool failed_ = false;
};

}  // namespace reference13
