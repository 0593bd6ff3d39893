// record13_test.cpp: the TLS 1.3 record layer alone: HKDF against RFC 5869 / RFC 8448 vectors, both
// ends of a connection talking through it for every suite, KeyUpdate, and a peer that misbehaves
// (each refusal sends the right alert and leaves nothing half-done). Interop with real clients is
// in server_test.cpp.
#include <catch2/catch.hpp>

#include <nss.h>

#include <string>

#include "common/tls/record13.hpp"

namespace {

using common::tls::hkdf_expand;
using common::tls::hkdf_expand_label;
using common::tls::Tls13Records;
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
  REQUIRE(p.client.send_record(type, content, wire));
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

TEST_CASE("close_notify ends the stream both ways; records after it are ignored", "[tls][record13]") {
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
