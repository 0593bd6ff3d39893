// pem_test.cpp: PEM encoding and decoding (pure), the format gRPC and NSS exchange.
#include <catch2/catch.hpp>

#include <string>

#include "common/grpc/pem.hpp"

using common::rpc::from_pem;
using common::rpc::to_pem;

namespace {
std::span<const unsigned char> bytes(const std::string& s) {
  return {reinterpret_cast<const unsigned char*>(s.data()), s.size()};
}
}  // namespace

TEST_CASE("PEM round-trips every length and keeps 64-column lines", "[grpc][pem]") {
  std::string data;
  for (int n = 0; n < 200; ++n) {
    data.push_back(static_cast<char>(n * 37 + 11));
    std::string pem = to_pem(bytes(data), "CERTIFICATE");
    CHECK(pem.rfind("-----BEGIN CERTIFICATE-----\n", 0) == 0);
    CHECK(pem.size() >= 26);
    CHECK(pem.substr(pem.size() - 26) == "-----END CERTIFICATE-----\n");
    size_t start = 0;
    for (size_t nl; (nl = pem.find('\n', start)) != std::string::npos; start = nl + 1) CHECK(nl - start <= 64);
    auto back = from_pem(pem, "CERTIFICATE");
    REQUIRE(back);
    REQUIRE(back->size() == 1);
    CHECK(back->front() == data);
  }
}

TEST_CASE("PEM known vectors (RFC 4648 §10) and chains with CRLF and headers", "[grpc][pem]") {
  CHECK(to_pem(bytes("foobar"), "X") == "-----BEGIN X-----\nZm9vYmFy\n-----END X-----\n");
  CHECK(to_pem(bytes("fo"), "X") == "-----BEGIN X-----\nZm8=\n-----END X-----\n");
  std::string chain = "subject=CN=a\r\n-----BEGIN CERTIFICATE-----\r\nZm9v\r\n-----END CERTIFICATE-----\r\n"
                      "-----BEGIN PRIVATE KEY-----\nYQ==\n-----END PRIVATE KEY-----\n"
                      "-----BEGIN CERTIFICATE-----\nYmFy\nYg==\n-----END CERTIFICATE-----\n";
  auto certs = from_pem(chain, "CERTIFICATE");
  REQUIRE(certs);
  REQUIRE(certs->size() == 2);
  CHECK((*certs)[0] == "foo");
  CHECK((*certs)[1] == "barb");
}

TEST_CASE("PEM refuses what is not PEM", "[grpc][pem]") {
  CHECK_FALSE(from_pem("", "CERTIFICATE"));
  CHECK_FALSE(from_pem("no pem here", "CERTIFICATE"));
  CHECK_FALSE(from_pem("-----BEGIN CERTIFICATE-----\nZm9v\n", "CERTIFICATE"));                       // no END
  CHECK_FALSE(from_pem("-----BEGIN CERTIFICATE-----\nZm9v!\n-----END CERTIFICATE-----", "CERTIFICATE"));  // bad char
  CHECK_FALSE(from_pem("-----BEGIN CERTIFICATE-----\nZg==Zg\n-----END CERTIFICATE-----", "CERTIFICATE"));  // data after pad
  CHECK_FALSE(from_pem("-----BEGIN CERTIFICATE-----\n\n-----END CERTIFICATE-----", "CERTIFICATE"));       // empty
}

TEST_CASE("wipe zeroes and empties a secret", "[grpc][pem]") {
  std::string key = "-----BEGIN PRIVATE KEY-----";
  common::rpc::wipe(key);
  CHECK(key.empty());
}
