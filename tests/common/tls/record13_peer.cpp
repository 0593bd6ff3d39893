// record13_peer.cpp: the misbehaving TLS 1.3 peer of record13_peer.hpp, sealing through the record
// layer's own protect() so its records are exactly what a peer with the right keys could send.
#include "tests/common/tls/record13_peer.hpp"

#include <cstring>

namespace common::tls {

Result<void> Tls13RecordsPeer::send_inner(Tls13Records& records, std::string_view inner, std::string& wire) {
  if (records.failed_ || records.closed_) return fail(ErrorKind::Protocol, "TLS connection closed");
  const bool ok = records.protect(inner, wire);
  records.release_keys();
  if (!ok) return fail(ErrorKind::Internal, "cannot protect a record");
  return {};
}

Result<void> Tls13RecordsPeer::send_record(Tls13Records& records, uint8_t type, std::string_view content,
                                           std::string& wire, size_t padding) {
  std::string inner(content);
  inner.push_back(static_cast<char>(type));
  inner.append(padding, '\0');
  return send_inner(records, inner, wire);
}

}  // namespace common::tls
