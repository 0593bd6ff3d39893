// client_hello_test.cpp: reading record_size_limit (RFC 8449) out of ClientHellos as they arrive:
// whole, split across records and TCP reads, after a HelloRetryRequest, and the shapes it must call
// unreadable (cut off, oversized, malformed) so the connection stays in NSS.
#include <catch2/catch.hpp>

#include <string>
#include <utility>
#include <vector>

#include "common/tls/client_hello.hpp"

using common::tls::ClientHelloScan;

namespace {

std::string be(uint32_t v, size_t width) {
  std::string out;
  for (size_t i = width; i-- > 0;) out.push_back(static_cast<char>((v >> (8 * i)) & 0xff));
  return out;
}

std::string with_length(const std::string& body, size_t width) {
  return be(static_cast<uint32_t>(body.size()), width) + body;
}

using Extensions = std::vector<std::pair<uint16_t, std::string>>;

// A ClientHello handshake message (RFC 8446 §4.1.2) with these extensions.
std::string hello(const Extensions& extensions, bool any_extensions = true) {
  std::string body = be(0x0303, 2) + std::string(32, 'r') + with_length(std::string(32, 's'), 1) +
                     with_length(be(0x1301, 2) + be(0x1303, 2), 2) + with_length(std::string(1, '\0'), 1);
  if (any_extensions) {
    std::string list;
    for (const auto& [type, data] : extensions) list += be(type, 2) + with_length(data, 2);
    body += with_length(list, 2);
  }
  return std::string(1, '\x01') + with_length(body, 3);
}

std::string record(uint8_t type, const std::string& body) {
  return std::string(1, static_cast<char>(type)) + be(0x0301, 2) + with_length(body, 2);
}

Extensions usual(uint16_t limit) {
  return {{0, with_length(std::string(1, '\0') + with_length("mail.example.org", 2), 2)},
          {43, with_length(be(0x0304, 2), 1)},
          {28, be(limit, 2)},
          {51, with_length(be(29, 2) + with_length(std::string(32, 'k'), 2), 2)}};
}

ClientHelloScan scan(const std::string& bytes, size_t chunk = 0) {
  ClientHelloScan s;
  if (chunk == 0) {
    s.feed(bytes);
  } else {
    for (size_t at = 0; at < bytes.size(); at += chunk) s.feed(std::string_view(bytes).substr(at, chunk));
  }
  return s;
}

}  // namespace

TEST_CASE("record_size_limit is read from a ClientHello, however the bytes arrive", "[tls]") {
  const std::string one = record(22, hello(usual(512)));
  for (size_t chunk : {0, 1, 3, 7, 64}) {
    auto s = scan(one + record(23, std::string(40, 'x')), chunk);
    INFO("chunk " << chunk);
    CHECK(s.readable());
    REQUIRE(s.record_size_limit());
    CHECK(*s.record_size_limit() == 512);
  }
  // A ClientHello split over three records, with the middlebox change_cipher_spec behind it.
  const std::string h = hello(usual(16385));
  auto split = scan(record(22, h.substr(0, 10)) + record(22, h.substr(10, 50)) + record(22, h.substr(60)) +
                    record(20, "\x01"));
  CHECK(split.readable());
  CHECK(split.record_size_limit() == std::optional<uint32_t>(16385));
  // Without the extension, or without any extension.
  auto none = scan(record(22, hello({{43, with_length(be(0x0304, 2), 1)}})));
  CHECK(none.readable());
  CHECK_FALSE(none.record_size_limit());
  auto bare = scan(record(22, hello({}, false)));
  CHECK(bare.readable());
  CHECK_FALSE(bare.record_size_limit());
}

TEST_CASE("after a HelloRetryRequest the smaller of the two limits counts", "[tls]") {
  auto s = scan(record(22, hello(usual(16385))) + record(20, "\x01") + record(22, hello(usual(600))));
  CHECK(s.readable());
  CHECK(s.record_size_limit() == std::optional<uint32_t>(600));
}

TEST_CASE("a ClientHello the scan cannot follow is unreadable, never a guess", "[tls]") {
  const std::string h = hello(usual(512));
  // Cut off by a protected record.
  CHECK_FALSE(scan(record(22, h.substr(0, 30)) + record(23, "x")).readable());
  // Nothing yet.
  CHECK_FALSE(scan("").readable());
  CHECK_FALSE(scan(record(22, h).substr(0, 20)).readable());
  // The extension twice, or of the wrong length.
  Extensions twice = usual(512);
  twice.push_back({28, be(600, 2)});
  CHECK_FALSE(scan(record(22, hello(twice))).readable());
  CHECK_FALSE(scan(record(22, hello({{28, be(512, 3)}}))).readable());
  // An extension list running past its message, or bytes after it.
  std::string bad = h;
  bad[bad.size() - 40] = '\x7f';
  CHECK_FALSE(scan(record(22, bad)).readable());
  // A handshake message larger than 64 KiB, or one that is not a ClientHello.
  CHECK_FALSE(scan(record(22, std::string("\x01\x02\x00\x00", 4))).readable());
  CHECK_FALSE(scan(record(22, std::string("\x02\x00\x00\x00", 4))).readable());
}
