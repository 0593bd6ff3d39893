// record13_test.cpp: the TLS 1.3 record layer alone: HKDF against RFC 5869 / RFC 8448 vectors, both
// ends of a connection talking through it for every suite, KeyUpdate, and a peer that misbehaves
// (each refusal sends the right alert and leaves nothing half-done). Interop with real clients is
// in server_test.cpp.
#include <catch2/catch.hpp>

#include <nss.h>

#include <string>

#include "common/tls/record13.hpp"
#include "common/tls/record13_internal.hpp"
#include "tests/common/tls/record13_peer.hpp"

namespace {

using common::tls::hkdf_expand;
using common::tls::hkdf_expand_label;
using common::tls::Tls13Records;
using common::tls::Tls13RecordsPeer;
using common::tls::TlsHash;
using common::tls::TrafficSecret;

std::string unhex(std::string_view hex) {
  std::string out;
  for (size_t i = 0; i + 1 < hex.size(); i += 2) out.push_back(static_cast<char>(std::stoi(std::string(hex.substr(i, 2)), nullptr, 16)));
  return out;
}

std::string hex(std::string_view bytes) {
  static const char digits[] = "0123456789abcdef";
  std::string out;
  for (unsigned char c : bytes) {
    out.push_back(digits[c >> 4]);
    out.push_back(digits[c & 15]);
  }
  return out;
}

void nss_without_db() {
  static bool ready = NSS_NoDB_Init(nullptr) == SECSuccess;
  REQUIRE(ready);
}

constexpr uint16_t kAes128 = 0x1301;
constexpr uint16_t kAes256 = 0x1302;
constexpr uint16_t kChaCha = 0x1303;

// A server and the client at the other end of the same connection.
struct Pair {
  Tls13Records server;
  Tls13Records client;
};

Pair make_pair(uint16_t suite, uint64_t client_to_server = 0, uint64_t server_to_client = 0) {
  nss_without_db();
  const size_t len = suite == kAes256 ? 48 : 32;
  std::string c2s(len, 'c');
  std::string s2c(len, 's');
  auto server = Tls13Records::create(suite, {c2s, client_to_server}, {s2c, server_to_client});
  auto client = Tls13Records::create(suite, {s2c, server_to_client}, {c2s, client_to_server});
  REQUIRE(server);
  REQUIRE(client);
  return Pair{std::move(*server), std::move(*client)};
}

// Sends `wire` into `to`, returning the plaintext; REQUIREs success.
std::string deliver(Tls13Records& to, const std::string& wire, std::string* answer = nullptr) {
  std::string plain;
  std::string back;
  auto r = to.decode(wire, plain, back);
  INFO((r ? std::string() : r.error().detail));
  REQUIRE(r);
  if (answer) *answer = back;
  return plain;
}

// What the server says about `record` from the client, and what it sends back.
struct Refusal {
  std::string error;
  std::string alert_seen_by_client;
};

Refusal refuse(Pair& p, const std::string& record) {
  std::string plain;
  std::string wire;
  auto r = p.server.decode(record, plain, wire);
  REQUIRE_FALSE(r);
  CHECK(plain.empty());
  Refusal out{r.error().detail, {}};
  if (!wire.empty()) {
    std::string ignored;
    std::string back;
    auto seen = p.client.decode(wire, ignored, back);
    REQUIRE_FALSE(seen);
    out.alert_seen_by_client = seen.error().detail;
  }
  // Nothing more is accepted from a failed connection.
  std::string more;
  CHECK_FALSE(p.server.decode("\x17\x03\x03\x00\x00", plain, more));
  return out;
}

std::string client_record(Pair& p, uint8_t type, std::string_view content) {
  std::string wire;
  REQUIRE(Tls13RecordsPeer::send_record(p.client, type, content, wire));
  return wire;
}

}  // namespace

TEST_CASE("HKDF-Expand matches RFC 5869 and HKDF-Expand-Label the keys of RFC 8448", "[tls][record13]") {
  nss_without_db();
  auto okm = hkdf_expand(TlsHash::Sha256, unhex("077709362c2e32df0ddc3f0dc47bba6390b6c73bb50f9c3122ec844ad7c2b3e5"),
                         unhex("f0f1f2f3f4f5f6f7f8f9"), 42);
  CHECK(hex(okm) == "3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf34007208d5b887185865");
  // RFC 8448 §3, the server's application traffic secret and its write key and IV.
  auto secret = unhex("a11af9f05531f856ad47116b45a950328204b4f44bfb6b3a4b4f1f3fcb631643");
  CHECK(hex(hkdf_expand_label(TlsHash::Sha256, secret, "key", {}, 16)) == "9f02283b6c9c07efc26bb9f2ac92e356");
  CHECK(hex(hkdf_expand_label(TlsHash::Sha256, secret, "iv", {}, 12)) == "cf782b88dd83549aadf1e984");
  // SHA-384 (TLS_AES_256_GCM_SHA384), computed with Python's hmac.
  std::string counting;
  for (int i = 0; i < 48; ++i) counting.push_back(static_cast<char>(i));
  CHECK(hex(hkdf_expand_label(TlsHash::Sha384, counting, "traffic upd", {}, 48)) ==
        "401331b63e9d59f202e8f041042d9516f4cd7fa2e2ee14631d3b49fc340d7af37fc2c0c9f252d8036f81ec5b85cbe5db");
}

TEST_CASE("both ends exchange data in records of at most 16 KiB with every TLS 1.3 suite", "[tls][record13]") {
  for (uint16_t suite : {kAes128, kAes256, kChaCha}) {
    INFO("suite " << suite);
    CHECK(Tls13Records::supports(suite));
    auto p = make_pair(suite, 5, 2);  // sequence numbers carried over from NSS
    std::string big(40000, 'x');
    for (size_t i = 0; i < big.size(); ++i) big[i] = static_cast<char>('a' + i % 26);
    std::string wire;
    REQUIRE(p.client.encode(big, wire));
    CHECK(wire.size() == big.size() + 3 * 22);  // three records: 5-byte header, type, 16-byte tag
    CHECK(deliver(p.server, wire) == big);
    CHECK(p.server.read_sequence() == 8);
    wire.clear();
    REQUIRE(p.server.encode("* OK\r\n", wire));
    CHECK(deliver(p.client, wire) == "* OK\r\n");
    CHECK(p.server.write_sequence() == 3);
  }
  CHECK_FALSE(Tls13Records::supports(0xc02b));  // TLS 1.2 suites stay in NSS
  CHECK_FALSE(Tls13Records::create(0xc02b, {std::string(32, 'a'), 0}, {std::string(32, 'b'), 0}));
  CHECK_FALSE(Tls13Records::create(kAes128, {std::string(48, 'a'), 0}, {std::string(32, 'b'), 0}));
}

TEST_CASE("records split anywhere, even into single bytes, are put back together", "[tls][record13]") {
  auto p = make_pair(kAes128);
  std::string wire;
  REQUIRE(p.client.encode("a1 NOOP\r\n", wire));
  REQUIRE(p.client.encode("a2 LOGOUT\r\n", wire));
  std::string got;
  for (char c : wire) got += deliver(p.server, std::string(1, c));
  CHECK(got == "a1 NOOP\r\na2 LOGOUT\r\n");
  CHECK(p.server.buffered() == 0);
}

TEST_CASE("KeyUpdate: a requested update is answered, and both sides move to the next keys", "[tls][record13]") {
  for (uint16_t suite : {kAes128, kAes256, kChaCha}) {
    auto p = make_pair(suite);
    std::string wire;
    REQUIRE(p.client.key_update(true, wire));
    REQUIRE(p.client.encode("after\r\n", wire));
    std::string answer;
    CHECK(deliver(p.server, wire, &answer) == "after\r\n");
    CHECK(p.server.read_sequence() == 1);  // the new key's first record was the data
    REQUIRE_FALSE(answer.empty());        // the server's own KeyUpdate
    REQUIRE(p.server.encode("reply\r\n", answer));
    std::string nothing;
    CHECK(deliver(p.client, answer, &nothing) == "reply\r\n");
    CHECK(nothing.empty());  // not requested back, so the client does not answer
    CHECK(p.server.write_sequence() == 1);

    // Not requested: the server updates its read key only.
    wire.clear();
    REQUIRE(p.client.key_update(false, wire));
    REQUIRE(p.client.encode("again\r\n", wire));
    CHECK(deliver(p.server, wire, &answer) == "again\r\n");
    CHECK(answer.empty());
  }
}

TEST_CASE("the write key is updated before AES-GCM's record limit", "[tls][record13]") {
  constexpr uint64_t kLimit = uint64_t{1} << 23;
  auto p = make_pair(kAes128, 0, kLimit - 1);
  std::string wire;
  REQUIRE(p.server.encode(std::string(20000, 'z'), wire));  // one record at the limit, then a KeyUpdate
  CHECK(p.server.write_sequence() == 1);
  CHECK(deliver(p.client, wire) == std::string(20000, 'z'));
}

TEST_CASE("close_notify ends the stream both ways, records after it are ignored", "[tls][record13]") {
  auto p = make_pair(kAes128);
  std::string wire;
  REQUIRE(p.client.encode("last\r\n", wire));
  p.client.close(wire);
  REQUIRE_FALSE(p.client.encode("late", wire));
  CHECK(deliver(p.server, wire + "junk after the end") == "last\r\n");
  CHECK(p.server.peer_closed());
  std::string out;
  p.server.close(out);
  deliver(p.client, out);
  CHECK(p.client.peer_closed());
}

TEST_CASE("a misbehaving peer gets the right alert and the connection ends", "[tls][record13]") {
  SECTION("a record whose tag does not match") {
    auto p = make_pair(kAes128);
    std::string wire;
    REQUIRE(p.client.encode("hello", wire));
    wire[7] ^= 1;
    auto r = refuse(p, wire);
    CHECK(r.error.find("bad_record_mac") != std::string::npos);
    CHECK(r.alert_seen_by_client.find("bad_record_mac") != std::string::npos);
  }
  SECTION("a record replayed (its sequence number is used up)") {
    auto p = make_pair(kAes128);
    std::string wire;
    REQUIRE(p.client.encode("once", wire));
    deliver(p.server, wire);
    CHECK(refuse(p, wire).error.find("bad_record_mac") != std::string::npos);
  }
  SECTION("change_cipher_spec or a plaintext alert after the handshake") {
    auto p = make_pair(kAes128);
    CHECK(refuse(p, std::string("\x14\x03\x03\x00\x01\x01", 6)).error.find("unexpected_message") != std::string::npos);
    auto q = make_pair(kAes128);
    CHECK(refuse(q, std::string("\x15\x03\x03\x00\x02\x02\x28", 7)).alert_seen_by_client.find("unexpected_message") !=
          std::string::npos);
  }
  SECTION("a length over 2^14 + 256 is refused from the header, before the body arrives") {
    auto p = make_pair(kAes128);
    auto r = refuse(p, std::string("\x17\x03\x03\x41\x01", 5));
    CHECK(r.error.find("record_overflow") != std::string::npos);
  }
  SECTION("a record too short to carry a tag") {
    auto p = make_pair(kAes128);
    CHECK(refuse(p, std::string("\x17\x03\x03\x00\x03zzz", 8)).error.find("bad_record_mac") != std::string::npos);
  }
  SECTION("a record with only padding, no content type") {
    auto p = make_pair(kAes128);
    auto record = client_record(p, 0, std::string(3, '\0'));
    CHECK(refuse(p, record).error.find("no content type") != std::string::npos);
  }
  SECTION("a handshake message other than KeyUpdate") {
    auto p = make_pair(kAes128);
    auto record = client_record(p, 22, std::string("\x04\x00\x00\x01\x00", 5));  // NewSessionTicket
    CHECK(refuse(p, record).alert_seen_by_client.find("unexpected_message") != std::string::npos);
  }
  SECTION("data after a KeyUpdate in the same record (a key change must end its record)") {
    auto p = make_pair(kAes128);
    auto record = client_record(p, 22, std::string("\x18\x00\x00\x01\x00\x18\x00\x00\x01\x00", 10));
    CHECK(refuse(p, record).error.find("data after a KeyUpdate") != std::string::npos);
  }
  SECTION("a KeyUpdate with a request value that does not exist, or the wrong length") {
    auto p = make_pair(kAes128);
    CHECK(refuse(p, client_record(p, 22, std::string("\x18\x00\x00\x01\x02", 5))).error.find("illegal_parameter") !=
          std::string::npos);
    auto q = make_pair(kAes128);
    CHECK(refuse(q, client_record(q, 22, std::string("\x18\x00\x00\x02\x00\x00", 6))).error.find("decode_error") !=
          std::string::npos);
  }
  SECTION("application data in the middle of a split handshake message") {
    auto p = make_pair(kAes128);
    std::string wire = client_record(p, 22, std::string("\x18\x00", 2));
    REQUIRE(p.client.encode("sneak", wire));
    CHECK(refuse(p, wire).error.find("interrupted") != std::string::npos);
  }
  SECTION("an alert of the wrong size, and an unknown content type") {
    auto p = make_pair(kAes128);
    CHECK(refuse(p, client_record(p, 21, "\x02")).error.find("decode_error") != std::string::npos);
    auto q = make_pair(kAes128);
    CHECK(refuse(q, client_record(q, 99, "x")).error.find("content type 99") != std::string::npos);
  }
  SECTION("the peer's fatal alert ends the connection without an answer") {
    auto p = make_pair(kAes128);
    std::string plain;
    std::string wire;
    auto r = p.server.decode(client_record(p, 21, std::string("\x02\x28", 2)), plain, wire);
    REQUIRE_FALSE(r);
    CHECK(r.error().detail.find("handshake_failure") != std::string::npos);
    CHECK(wire.empty());
  }
  SECTION("user_canceled is followed by close_notify") {
    auto p = make_pair(kAes128);
    std::string wire = client_record(p, 21, std::string("\x01\x5a", 2));
    p.client.close(wire);
    deliver(p.server, wire);
    CHECK(p.server.peer_closed());
  }
}

TEST_CASE("an inner plaintext over 2^14 + 1 bytes is refused with record_overflow, whatever share is padding",
          "[tls][record13]") {
  // RFC 8446 §5.4: content, type and padding together must not exceed 2^14 + 1 bytes.
  SECTION("2^14 - 8 bytes of data, the type and 9 bytes of padding (2^14 + 2)") {
    auto p = make_pair(kAes128);
    std::string record;
    REQUIRE(Tls13RecordsPeer::send_record(p.client, 23, std::string(16384 - 8, 'd'), record, 9));
    auto r = refuse(p, record);
    CHECK(r.error.find("record_overflow") != std::string::npos);
    CHECK(r.alert_seen_by_client.find("record_overflow") != std::string::npos);
  }
  SECTION("only padding past the limit") {
    auto p = make_pair(kChaCha);
    std::string record;
    REQUIRE(Tls13RecordsPeer::send_record(p.client, 23, "x", record, 16384));
    CHECK(refuse(p, record).error.find("record_overflow") != std::string::npos);
  }
  SECTION("exactly 2^14 + 1 is delivered, with or without padding") {
    auto p = make_pair(kAes256);
    std::string wire;
    REQUIRE(Tls13RecordsPeer::send_record(p.client, 23, std::string(16384, 'a'), wire));
    REQUIRE(Tls13RecordsPeer::send_record(p.client, 23, std::string(16384 - 8, 'b'), wire, 8));
    CHECK(deliver(p.server, wire) == std::string(16384, 'a') + std::string(16384 - 8, 'b'));
  }
}

TEST_CASE("a KeyUpdate whose request_update is neither 0 nor 1 gets illegal_parameter", "[tls][record13]") {
  for (char request : {'\x02', '\x7f', '\xff'}) {
    auto p = make_pair(kAes128);
    auto r = refuse(p, client_record(p, 22, std::string("\x18\x00\x00\x01", 4) + request));
    CHECK(r.error.find("illegal_parameter") != std::string::npos);
    CHECK(r.alert_seen_by_client.find("illegal_parameter") != std::string::npos);
  }
}

TEST_CASE("an empty alert record is unexpected_message (RFC 8446 §5.4), other wrong sizes are decode_error",
          "[tls][record13]") {
  auto p = make_pair(kAes128);
  auto r = refuse(p, client_record(p, 21, ""));
  CHECK(r.error.find("unexpected_message") != std::string::npos);
  CHECK(r.alert_seen_by_client.find("unexpected_message") != std::string::npos);
  // Padding is not content: an alert record of padding alone is empty too.
  auto q = make_pair(kChaCha);
  std::string padded;
  REQUIRE(Tls13RecordsPeer::send_record(q.client, 21, "", padded, 12));
  CHECK(refuse(q, padded).alert_seen_by_client.find("unexpected_message") != std::string::npos);
  for (std::string content : {std::string("\x02", 1), std::string("\x02\x28\x00", 3), std::string("\x01\x00\x01\x00", 4)}) {
    auto s = make_pair(kAes128);
    CHECK(refuse(s, client_record(s, 21, content)).alert_seen_by_client.find("decode_error") != std::string::npos);
  }
}

TEST_CASE("at most 32 records in a row without application data, then unexpected_message", "[tls][record13]") {
  // Each kind alone, and mixed: KeyUpdate, empty application data, user_canceled, a split KeyUpdate.
  auto idle = [](Pair& p, int kind, std::string& wire) {
    switch (kind % 4) {
      case 0: REQUIRE(p.client.key_update(false, wire)); break;
      case 1: REQUIRE(Tls13RecordsPeer::send_record(p.client, 23, "", wire, kind % 3)); break;
      case 2: REQUIRE(Tls13RecordsPeer::send_record(p.client, 21, std::string("\x01\x5a", 2), wire)); break;
      default: REQUIRE(Tls13RecordsPeer::send_record(p.client, 22, std::string("\x18\x00", 2), wire)); break;
    }
  };
  for (int pattern : {0, 1, 2, -1}) {
    INFO("pattern " << pattern);
    auto p = make_pair(kAes128);
    auto kind = [&](int i) { return pattern >= 0 ? pattern : i % 3; };
    std::string wire;
    if (pattern == -1) {
      // 31 of every kind mixed, then a KeyUpdate split in two: its second half is the 33rd.
      for (int i = 0; i < 31; ++i) idle(p, kind(i), wire);
      idle(p, 3, wire);
      auto r = refuse(p, wire + client_record(p, 22, std::string("\x00\x01\x00", 3)));
      CHECK(r.error.find("more than 32 records in a row") != std::string::npos);
      continue;
    }
    // 32 in a row, then data (which resets the count), then 32 more: all accepted.
    for (int i = 0; i < 32; ++i) idle(p, kind(i), wire);
    REQUIRE(p.client.encode("x", wire));
    for (int i = 0; i < 32; ++i) idle(p, kind(i), wire);
    CHECK(deliver(p.server, wire) == "x");
    // One more is refused.
    wire.clear();
    idle(p, kind(0), wire);
    auto r = refuse(p, wire);
    CHECK(r.error.find("more than 32 records in a row without application data") != std::string::npos);
    CHECK(r.alert_seen_by_client.find("unexpected_message") != std::string::npos);
  }
}

TEST_CASE("several update_requested KeyUpdates read together are answered with one KeyUpdate", "[tls][record13]") {
  auto p = make_pair(kAes128);
  std::string wire;
  for (int i = 0; i < 5; ++i) REQUIRE(p.client.key_update(true, wire));
  REQUIRE(p.client.encode("after five\r\n", wire));
  std::string answer;
  CHECK(deliver(p.server, wire, &answer) == "after five\r\n");
  CHECK(answer.size() == 5 + 5 + 1 + 16);  // one record: the 5-byte KeyUpdate, its type, the tag
  CHECK(p.server.write_sequence() == 0);   // under the next write key now
  REQUIRE(p.server.encode("reply\r\n", answer));
  std::string nothing;
  CHECK(deliver(p.client, answer, &nothing) == "reply\r\n");
  CHECK(nothing.empty());
  // A later request gets its own answer.
  wire.clear();
  REQUIRE(p.client.key_update(true, wire));
  CHECK(deliver(p.server, wire, &answer).empty());
  CHECK(p.server.write_sequence() == 0);
  CHECK_FALSE(answer.empty());
}

TEST_CASE("no plaintext stays behind in the layer's buffers after a call", "[tls][record13]") {
  namespace r13 = common::tls::record13;
  auto all_zero = [](std::string_view s) { return s.find_first_not_of('\0') == std::string_view::npos; };
  auto p = make_pair(kAes128);
  std::string wire;
  REQUIRE(p.client.encode("a1 LOGIN alice hunter2\r\n", wire));
  CHECK(all_zero(r13::seal_scratch()));
  CHECK(deliver(p.server, wire) == "a1 LOGIN alice hunter2\r\n");
  CHECK(r13::open_scratch().size() >= 24);
  CHECK(all_zero(r13::open_scratch()));
  // A refused record too.
  wire.clear();
  REQUIRE(Tls13RecordsPeer::send_record(p.client, 99, "a2 LOGIN bob secret\r\n", wire));
  refuse(p, wire);
  CHECK(all_zero(r13::open_scratch()));
}

namespace {

// RFC 8448 §3 (simple 1-RTT handshake, TLS_AES_128_GCM_SHA256): the application traffic secrets
// and the records protected under them, as "complete record" in the trace.
constexpr std::string_view kClientApSecret = "9e40646ce79a7f9dc05af8889bce6552875afa0b06df0087f792ebb7c17504a5";
constexpr std::string_view kServerApSecret = "a11af9f05531f856ad47116b45a950328204b4f44bfb6b3a4b4f1f3fcb631643";
constexpr std::string_view kNewSessionTicket =
    "040000c90000001efad6aac502000000b22c035d829359ee5ff7af4ec900000000262a6494dc486d2c8a34cb33fa90bf1b0070ad3c498883c9"
    "367c09a2be785abc55cd226097a3a982117283f82a03a143efd3ff5dd36d64e861be7fd61d2827db279cce145077d454a3664d4e6da4d29ee0"
    "3725a6a4dafcd0fc67d2aea70529513e3da2677fa5906c5b3f7d8f92f228bda40dda721470f9fbf297b5aea617646fac5c03272e970727c621"
    "a79141ef5f7de6505e5bfbc388e93343694093934ae4d3570008002a000400000400";
constexpr std::string_view kServerTicketRecord =
    "17030300de3a6b8f90414a97d6959c3487680de5134a2b240e6cffac116e95d41d6af8f6b580dcf3d11d63c758db289a015940252f55713e06"
    "1dc13e078891a38efbcf5753ad8ef170ad3c7353d16d9da773b9ca7f2b9fa1b6c0d4a3d03f75e09c30ba1e62972ac46f75f7b981be63439b29"
    "99ce13064615139891d5e4c5b406f16e3fc181a77ca475840025db2f0a77f81b5ab05b94c01346755f69232c86519d86cbeeac87aac347d143"
    "f9605d64f650db4d023e70e952ca49fe5137121c74bc2697687e248746d6df353005f3bce18696129c8153556b3b6c6779b37bf15985684f";
constexpr std::string_view kClientDataRecord =
    "1703030043a23f7054b62c94d0affafe8228ba55cbefacea42f914aa66bcab3f2b9819a8a5b46b395bd54a9a20441e2b62974e1f5a6292a297"
    "7014bd1e3deae63aeebb21694915e4";
constexpr std::string_view kServerDataRecord =
    "17030300432e937e11ef4ac740e538ad36005fc4a46932fc3225d05f82aa1b36e30efaf97d90e6dffc602dcb501a59a8fcc49c4bf2e5f0a21c"
    "0047c2abf332540dd032e167c2955d";
constexpr std::string_view kClientAlertRecord = "1703030013c9872760655666b74d7ff1153efd6db6d0b0e3";
constexpr std::string_view kServerAlertRecord = "1703030013b58fd67166ebf599d24720cfbe7efa7a8864a9";

// The 50 bytes 00 01 .. 31 both sides send in the trace.
std::string trace_payload() {
  std::string s;
  for (int i = 0; i < 50; ++i) s.push_back(static_cast<char>(i));
  return s;
}

}  // namespace

TEST_CASE("RFC 8448 §3: the application records of the 1-RTT trace, re-encrypted byte for byte on both sides",
          "[tls][record13]") {
  nss_without_db();
  auto client_secret = unhex(kClientApSecret);
  CHECK(hex(hkdf_expand_label(TlsHash::Sha256, client_secret, "key", {}, 16)) == "17422dda596ed5d9acd890e3c63f5051");
  CHECK(hex(hkdf_expand_label(TlsHash::Sha256, client_secret, "iv", {}, 12)) == "5b78923dee08579033e523d9");

  SECTION("the server: NewSessionTicket, data and close_notify out; the client's data and close_notify in") {
    auto server = Tls13Records::create(kAes128, {client_secret, 0}, {unhex(kServerApSecret), 0});
    REQUIRE(server);
    std::string wire;
    // The ticket is NSS's to send; the test peer protects the same handshake message at sequence 0.
    REQUIRE(Tls13RecordsPeer::send_record(*server, 22, unhex(kNewSessionTicket), wire));
    CHECK(hex(wire) == hex(unhex(kServerTicketRecord)));
    wire.clear();
    REQUIRE(server->encode(trace_payload(), wire));
    CHECK(hex(wire) == hex(unhex(kServerDataRecord)));
    CHECK(deliver(*server, unhex(kClientDataRecord)) == trace_payload());
    CHECK(deliver(*server, unhex(kClientAlertRecord)).empty());
    CHECK(server->peer_closed());
    wire.clear();
    server->close(wire);
    CHECK(hex(wire) == hex(unhex(kServerAlertRecord)));
  }
  SECTION("the client: data and close_notify out; the server's data and close_notify in") {
    // Sequence 1: the ticket at 0 is a handshake message this layer does not take.
    auto client = Tls13Records::create(kAes128, {unhex(kServerApSecret), 1}, {client_secret, 0});
    REQUIRE(client);
    std::string wire;
    REQUIRE(client->encode(trace_payload(), wire));
    CHECK(hex(wire) == hex(unhex(kClientDataRecord)));
    wire.clear();
    client->close(wire);
    CHECK(hex(wire) == hex(unhex(kClientAlertRecord)));
    CHECK(deliver(*client, unhex(kServerDataRecord)) == trace_payload());
    CHECK(deliver(*client, unhex(kServerAlertRecord)).empty());
    CHECK(client->peer_closed());
  }
}
