// protect_observer.hpp: a test hook that sees the key, IV and sequence number of every TLS 1.3 record
// the server side protects (NSS before the record hand-over, Tls13Records after it), so a test can
// prove that no (key, nonce) pair is ever used twice. Null, and so never called, outside tests.
#pragma once

#include <atomic>
#include <cstdint>
#include <string_view>

namespace common::tls {

enum class Protector : uint8_t { Nss, Records };

struct ProtectedRecord {
  Protector by;
  std::string_view key;  // the AEAD key
  std::string_view iv;   // the write IV; the nonce is it XOR the sequence number (RFC 8446 §5.3)
  uint64_t sequence;
  // NSS wrote it after its socket was given up at the hand-over: a record under the key and at the
  // sequence number Tls13Records then uses. Must never happen.
  bool after_release = false;
};

using ProtectObserver = void (*)(const ProtectedRecord&);
inline std::atomic<ProtectObserver> g_protect_observer{nullptr};

inline bool protect_observed() { return g_protect_observer.load(std::memory_order_acquire) != nullptr; }

inline void observe_protect(const ProtectedRecord& record) {
  if (ProtectObserver observer = g_protect_observer.load(std::memory_order_acquire)) observer(record);
}

}  // namespace common::tls
