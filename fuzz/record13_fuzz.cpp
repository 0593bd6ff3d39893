// record13_fuzz.cpp: the TLS 1.3 record layer (common/tls/record13) against a hostile peer. The first
// byte picks what the rest is: raw bytes on the wire (headers, lengths, forged records), or a script
// of records the peer protects with the right key, so content types, alerts, KeyUpdate and padding
// are reached behind the AEAD. It arrives in pieces whose size the first byte also sets. The server
// must answer with plaintext or an error, and whatever it sends back must be readable by the peer.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include <nss.h>

#include "common/tls/record13.hpp"
#include "tests/common/tls/record13_peer.hpp"

using common::tls::Tls13Records;

namespace {

constexpr uint8_t kKeyUpdateRequested = 0xff;
constexpr uint8_t kKeyUpdate = 0xfe;

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const bool ready = NSS_NoDB_Init(nullptr) == SECSuccess;
  if (!ready) std::abort();
  if (size == 0) return 0;
  const std::string c2s(32, 'c');
  const std::string s2c(32, 's');
  auto server = Tls13Records::create(0x1301, {c2s, 0}, {s2c, 0});
  auto client = Tls13Records::create(0x1301, {s2c, 0}, {c2s, 0});
  if (!server || !client) std::abort();

  std::string_view in(reinterpret_cast<const char*>(data) + 1, size - 1);
  std::string wire;
  if (data[0] & 1) {
    // [type][length][content] ... ; two type values stand for the peer's KeyUpdate.
    while (in.size() >= 2) {
      const auto type = static_cast<uint8_t>(in[0]);
      const size_t length = std::min<size_t>(static_cast<uint8_t>(in[1]), in.size() - 2);
      std::string_view content = in.substr(2, length);
      in.remove_prefix(2 + length);
      bool sent = type == kKeyUpdateRequested ? bool(client->key_update(true, wire))
                  : type == kKeyUpdate        ? bool(client->key_update(false, wire))
                                              : bool(common::tls::Tls13RecordsPeer::send_record(*client, type, content, wire));
      if (!sent) std::abort();
    }
  } else {
    wire.assign(in);
  }

  const size_t step = (data[0] >> 1) + 1;
  std::string plain;
  std::string answer;
  std::string_view rest = wire;
  bool ok = true;
  while (ok && !rest.empty()) {
    const size_t n = std::min(step, rest.size());
    ok = bool(server->decode(rest.substr(0, n), plain, answer));
    rest.remove_prefix(n);
  }
  if (server->buffered() > 5 + 16384 + 256) std::abort();  // never more than one record
  if (ok && !server->peer_closed() && !server->encode(plain.substr(0, 100), answer)) std::abort();
  std::string echoed;
  std::string back;
  auto read = client->decode(answer, echoed, back);
  // The peer played by the rules only in script mode: then the server's answers must all open.
  if ((data[0] & 1) && ok && !read) std::abort();
  return 0;
}
