// record13_differential.cpp: our record layer against the OpenSSL reference, record by record
// (record13_differential.hpp).
#include "tests/common/tls/record13_differential.hpp"

#include <algorithm>
#include <cstdlib>
#include <optional>

#include "common/tls/record13.hpp"
#include "tests/common/tls/record13_peer.hpp"
#include "tests/common/tls/record13_reference.hpp"

namespace reference13 {
namespace {

using common::tls::Tls13Records;
using common::tls::Tls13RecordsPeer;

size_t secret_length(uint16_t suite) { return suite == 0x1302 ? 48 : 32; }
std::string client_secret(uint16_t suite) { return std::string(secret_length(suite), 'c'); }
std::string server_secret(uint16_t suite) { return std::string(secret_length(suite), 's'); }

std::string alert_name(uint8_t alert) {
  switch (alert) {
    case 10: return "unexpected_message";
    case 20: return "bad_record_mac";
    case 22: return "record_overflow";
    case 47: return "illegal_parameter";
    case 50: return "decode_error";
    default: return "alert " + std::to_string(alert);
  }
}

std::string hex_prefix(std::string_view s) {
  static const char digits[] = "0123456789abcdef";
  std::string out;
  for (unsigned char c : s.substr(0, 48)) {
    out.push_back(digits[c >> 4]);
    out.push_back(digits[c & 15]);
  }
  return out;
}

}  // namespace

std::string build_script(uint16_t suite, std::string_view script, std::string& mismatch) {
  mismatch.clear();
  const auto cipher = cipher_of(suite);
  if (!cipher) std::abort();
  // Our layer as the peer (its key_update, or any record through the test peer), and the reference.
  auto ours = Tls13Records::create(suite, {server_secret(suite), 0}, {client_secret(suite), 0});
  if (!ours) std::abort();
  Sealer theirs(*cipher, client_secret(suite), 0);
  std::string wire;
  std::string last;
  auto take = [&](size_t n) {
    n = std::min(n, script.size());
    std::string_view s = script.substr(0, n);
    script.remove_prefix(n);
    return s;
  };
  auto byte = [&]() -> int {
    if (script.empty()) return -1;
    const auto b = static_cast<uint8_t>(script[0]);
    script.remove_prefix(1);
    return b;
  };
  auto both = [&](std::string_view inner, std::optional<bool> key_update) {
    std::string mine;
    std::string reference;
    if (key_update) {
      if (!ours->key_update(*key_update, mine)) std::abort();
      reference = theirs.key_update(*key_update);
    } else {
      if (!Tls13RecordsPeer::send_inner(*ours, inner, mine)) std::abort();
      reference = theirs.seal_inner(inner);
    }
    if (mine != reference) {
      mismatch = "sealed records differ at sequence " + std::to_string(theirs.sequence()) + ": ours " +
                 hex_prefix(mine) + ", reference " + hex_prefix(reference);
      return false;
    }
    wire += mine;
    last = mine;
    return true;
  };
  // The largest TLSInnerPlaintext a 16-bit record length can carry.
  constexpr size_t kMaxInner = 0xffff - 16;
  while (!script.empty()) {
    const int op = byte();
    bool ok = true;
    if (op == 0xff || op == 0xfe) {
      ok = both({}, op == 0xff);
    } else if (op == 0xfd) {
      const int type = byte();
      const int l1 = byte(), l2 = byte(), p1 = byte(), p2 = byte(), fill = byte();
      if (fill < 0) break;
      const size_t length = std::min<size_t>((size_t(l1) << 8) | size_t(l2), kMaxInner - 1);
      const size_t padding = std::min<size_t>((size_t(p1) << 8) | size_t(p2), kMaxInner - 1 - length);
      std::string inner(length, static_cast<char>(fill));
      inner.push_back(static_cast<char>(type));
      inner.append(padding, '\0');
      ok = both(inner, std::nullopt);
    } else if (op == 0xfc) {
      const int n = byte();
      if (n < 0 || last.empty()) break;
      wire[wire.size() - last.size() + size_t(n) % last.size()] ^= 1;
      last.clear();
    } else if (op == 0xfb) {
      const int n = byte();
      if (n < 0) break;
      wire.append(take(size_t(n)));
      last.clear();
    } else if (op == 0xfa) {
      wire += last;
    } else if (op == 0xf9) {
      const int n = byte(), p = byte();
      if (p < 0) break;
      std::string inner(take(size_t(n)));
      inner.append(size_t(p), '\0');
      ok = both(inner, std::nullopt);
    } else {
      const int n = byte();
      if (n < 0) break;
      std::string inner(take(size_t(n)));
      inner.push_back(static_cast<char>(op));
      ok = both(inner, std::nullopt);
    }
    if (!ok) return {};
  }
  return wire;
}

std::string compare_layers(uint16_t suite, std::string_view wire, size_t step) {
  const auto cipher = cipher_of(suite);
  if (!cipher || step == 0) std::abort();
  auto server = Tls13Records::create(suite, {client_secret(suite), 0}, {server_secret(suite), 0});
  if (!server) std::abort();
  Opener reference(*cipher, client_secret(suite), 0);
  // Reads what our server sends back, with no limit of its own on records without data.
  Opener client(*cipher, server_secret(suite), 0, false);
  std::string delivered;
  size_t offset = 0;
  while (offset < wire.size()) {
    const std::string_view piece = wire.substr(offset, step);
    const size_t at = offset;
    // Built only for a disagreement: this loop runs once per byte in the fuzz target.
    auto where = [at] { return "piece at byte " + std::to_string(at) + ": "; };
    offset += piece.size();
    std::string plain;
    std::string answer;
    auto ours = server->decode(piece, plain, answer);
    Step expected = reference.feed(piece);
    Step answered = client.feed(answer);
    if (plain != expected.delivered) {
      return where() + "delivered " + std::to_string(plain.size()) + " bytes, the reference " +
             std::to_string(expected.delivered.size());
    }
    delivered += plain;
    if (answered.refusal) return where() + "our answer does not open: " + answered.why;
    if (!answered.delivered.empty()) return where() + "our answer carries application data";
    if (expected.refusal) {
      if (ours) return where() + "the reference refused (" + expected.why + "), ours did not";
      if (ours.error().detail.find(alert_name(*expected.refusal)) == std::string::npos) {
        return where() + "the reference refused with " + alert_name(*expected.refusal) + " (" + expected.why +
               "), ours: " + ours.error().detail;
      }
      if (answered.peer_alert != expected.refusal) return where() + "our alert on the wire is not " + alert_name(*expected.refusal);
      if (answered.key_updates != 0) return where() + "a KeyUpdate of ours before the alert";
      return {};
    }
    if (expected.peer_alert) {
      if (ours) return where() + "the peer's fatal alert did not end our side";
      if (!answer.empty()) return where() + "we answered the peer's fatal alert";
      return {};
    }
    if (!ours) return where() + "ours refused (" + ours.error().detail + "), the reference did not";
    // One KeyUpdate answers every request read in one call (RFC 8446 §4.6.3), none without one.
    const unsigned owed = expected.update_requests > 0 ? 1 : 0;
    if (answered.key_updates != owed || answered.update_requests != 0) {
      return where() + std::to_string(answered.key_updates) + " KeyUpdates of ours for " +
             std::to_string(expected.update_requests) + " requests";
    }
    if (!answered.alerts.empty()) return where() + "an alert of ours without a refusal";
    if (reference.closed()) {
      if (!server->peer_closed()) return where() + "close_notify not seen by ours";
      return {};
    }
    if (server->read_sequence() != reference.sequence()) {
      return where() + "read sequence " + std::to_string(server->read_sequence()) + ", the reference's " +
             std::to_string(reference.sequence());
    }
    if (server->buffered() != reference.buffered()) return where() + "buffered bytes differ";
    if (server->buffered() > 5 + 16384 + 256) return where() + "more than one record buffered";
  }
  // Still open: our reply must open on the reference's side.
  std::string reply;
  if (!server->encode(delivered.substr(0, 100), reply)) return "encode failed on an open connection";
  Step echoed = client.feed(reply);
  if (echoed.refusal || echoed.delivered != delivered.substr(0, 100)) return "our reply did not open: " + echoed.why;
  return {};
}

}  // namespace reference13
