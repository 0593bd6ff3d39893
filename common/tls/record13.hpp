// record13.hpp: the TLS 1.3 record layer (RFC 8446 §5, KeyUpdate §4.6.3) for a server connection
// whose handshake NSS has finished. NSS derives the traffic secrets; this protects application data,
// alerts and KeyUpdate with them through NSS's own AEADs, so the connection can close its NSS socket
// (about 65 KiB of NSS state) and an idle connection keeps only two secrets (bench/tls/README.md).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "common/result.hpp"

namespace common::tls {

enum class TlsHash { Sha256, Sha384 };

// RFC 5869 HKDF-Expand and RFC 8446 §7.1 HKDF-Expand-Label, over NSS's hashes.
std::string hkdf_expand(TlsHash hash, std::string_view prk, std::string_view info, size_t length);
std::string hkdf_expand_label(TlsHash hash, std::string_view secret, std::string_view label,
                              std::string_view context, size_t length);

// One direction's traffic secret (hash-length bytes) and the sequence number of its next record.
struct TrafficSecret {
  std::string secret;
  uint64_t sequence = 0;
};

class Tls13Records {
 public:
  // TLS_AES_128_GCM_SHA256, TLS_AES_256_GCM_SHA384 and TLS_CHACHA20_POLY1305_SHA256.
  static bool supports(uint16_t suite);
  // Fails for another suite or a secret of the wrong length.
  static Result<Tls13Records> create(uint16_t suite, TrafficSecret read, TrafficSecret write);

  Tls13Records(Tls13Records&&) noexcept;
  Tls13Records& operator=(Tls13Records&&) noexcept;
  ~Tls13Records();  // wipes the secrets

  // Ciphertext from the peer: application data is appended to `plain`; what this side must send
  // (our KeyUpdate, a fatal alert) to `wire`. An error ends the connection once `wire` is sent; its
  // text names the cause for the log. Records after the peer's close_notify are ignored.
  Result<void> decode(std::string_view in, std::string& plain, std::string& wire);
  // Plaintext for the peer, as application data records of up to 16 KiB.
  Result<void> encode(std::string_view plain, std::string& wire);
  // close_notify into `wire`; nothing more is sent after it.
  void close(std::string& wire);
  // Our KeyUpdate (RFC 8446 §4.6.3), asking the peer to update too when `request_peer`; later records
  // use the next write key. encode() sends one by itself before AES-GCM's record limit.
  Result<void> key_update(bool request_peer, std::string& wire);
  bool peer_closed() const { return peer_closed_; }

  uint64_t read_sequence() const;
  uint64_t write_sequence() const;
  // Bytes of an incomplete record held until the rest arrives (at most one record).
  size_t buffered() const { return partial_.size(); }

  struct Direction;

 private:
  // Tests and the fuzz target play a misbehaving peer through it (tests/common/tls/record13_peer.hpp):
  // records of any type, padding or size. The server has no way to send such records.
  friend class Tls13RecordsPeer;

  Tls13Records() = default;
  Result<void> open_record(std::string_view header, std::string_view body, std::string& plain, std::string& wire);
  Result<void> on_handshake(std::string_view content, std::string& wire);
  Result<void> count_idle(std::string& wire);
  // The alert goes out only while the write direction is usable; otherwise the caller's TCP close
  // is the only answer. `local` marks a failure of our own (NSS), not the peer's.
  tl::unexpected<Error> fatal(uint8_t alert, std::string why, std::string& wire, bool local = false);
  bool seal(uint8_t type, std::string_view content, std::string& wire);
  // One record whose TLSInnerPlaintext (content, type, padding) is `inner`.
  bool protect(std::string_view inner, std::string& wire);
  void release_keys();  // the softoken key objects of the current call

  uint16_t suite_ = 0;
  std::unique_ptr<Direction> read_;
  std::unique_ptr<Direction> write_;
  std::string partial_;    // an incomplete record
  std::string handshake_;  // a post-handshake message split across records
  // Records in a row that carried no application data (KeyUpdate, empty records, user_canceled):
  // each costs a decryption and perhaps a key derivation, so a peer may send only so many.
  unsigned idle_records_ = 0;
  bool update_owed_ = false;  // the peer asked for our KeyUpdate and has not had it yet
  bool peer_closed_ = false;
  bool closed_ = false;
  bool failed_ = false;
};

}  // namespace common::tls
