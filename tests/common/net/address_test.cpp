// address_test.cpp: parsing and printing of addresses and endpoints.
#include <catch2/catch.hpp>

#include <netinet/in.h>

#include "common/net/address.hpp"

using common::net::Endpoint;
using common::net::IpAddress;

TEST_CASE("IPv4 and IPv6 addresses parse and print back", "[net]") {
  auto v4 = IpAddress::parse("192.0.2.7");
  REQUIRE(v4);
  CHECK(v4->is_v4());
  CHECK(v4->to_string() == "192.0.2.7");
  CHECK(v4->v4_host_order() == 0xc0000207u);
  auto v6 = IpAddress::parse("2001:db8::1");
  REQUIRE(v6);
  CHECK_FALSE(v6->is_v4());
  CHECK(v6->to_string() == "2001:db8::1");
  CHECK(IpAddress::parse("::1")->is_loopback());
  CHECK(IpAddress::parse("127.0.0.9")->is_loopback());
  CHECK_FALSE(IpAddress::parse("256.1.1.1"));
  CHECK_FALSE(IpAddress::parse("1.2.3"));
  CHECK_FALSE(IpAddress::parse(""));
  CHECK_FALSE(IpAddress::parse("[::1]"));
  CHECK_FALSE(IpAddress::parse(std::string(100, '1')));
}

TEST_CASE("reverse names follow in-addr.arpa and ip6.arpa", "[net]") {
  CHECK(IpAddress::parse("192.0.2.7")->reverse_name() == "7.2.0.192.in-addr.arpa");
  CHECK(IpAddress::parse("2001:db8::1")->reverse_name() ==
        "1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6.arpa");
}

TEST_CASE("endpoints parse with brackets for IPv6 and a wildcard", "[net]") {
  auto a = Endpoint::parse("[::1]:143");
  REQUIRE(a);
  CHECK(a->port == 143);
  CHECK(a->to_string() == "[::1]:143");
  auto b = Endpoint::parse("127.0.0.1:25");
  REQUIRE(b);
  CHECK(b->to_string() == "127.0.0.1:25");
  auto any = Endpoint::parse("*:587");
  REQUIRE(any);
  CHECK(any->address.is_unspecified());
  CHECK_FALSE(any->address.is_v4());
  CHECK_FALSE(Endpoint::parse("::1:143"));
  CHECK_FALSE(Endpoint::parse("[127.0.0.1]:143"));
  CHECK_FALSE(Endpoint::parse("127.0.0.1:65536"));
  CHECK_FALSE(Endpoint::parse("127.0.0.1:"));
  CHECK_FALSE(Endpoint::parse("127.0.0.1:25x"));
  CHECK_FALSE(Endpoint::parse("localhost:25"));
}

TEST_CASE("sockaddr round trip unmaps IPv4-mapped IPv6", "[net]") {
  sockaddr_storage ss;
  auto ep = *Endpoint::parse("[::ffff:192.0.2.1]:25");
  ep.to_sockaddr(ss);
  auto back = Endpoint::from_sockaddr(reinterpret_cast<sockaddr*>(&ss));
  REQUIRE(back);
  CHECK(back->address.is_v4());
  CHECK(back->to_string() == "192.0.2.1:25");
}

TEST_CASE("IP networks parse with a prefix, refuse host bits, and match their family only", "[net]") {
  using common::net::IpAddress;
  using common::net::IpNetwork;
  auto v4 = IpNetwork::parse("192.0.2.0/24");
  REQUIRE(v4);
  CHECK(v4->contains(*IpAddress::parse("192.0.2.77")));
  CHECK_FALSE(v4->contains(*IpAddress::parse("192.0.3.1")));
  CHECK_FALSE(v4->contains(*IpAddress::parse("::1")));
  CHECK(v4->to_string() == "192.0.2.0/24");
  auto host = IpNetwork::parse("127.0.0.1");
  REQUIRE(host);
  CHECK(host->prefix == 32);
  CHECK(host->contains(*IpAddress::parse("127.0.0.1")));
  CHECK_FALSE(host->contains(*IpAddress::parse("127.0.0.2")));
  auto v6 = IpNetwork::parse("2001:db8::/32");
  REQUIRE(v6);
  CHECK(v6->contains(*IpAddress::parse("2001:db8:ffff::1")));
  CHECK_FALSE(v6->contains(*IpAddress::parse("2001:db9::1")));
  CHECK(IpNetwork::parse("0.0.0.0/0")->contains(*IpAddress::parse("203.0.113.9")));
  CHECK_FALSE(IpNetwork::parse("192.0.2.1/24"));  // host bits set: a typo, not a wider net
  CHECK_FALSE(IpNetwork::parse("192.0.2.0/33"));
  CHECK_FALSE(IpNetwork::parse("192.0.2.0/"));
  CHECK_FALSE(IpNetwork::parse("192.0.2.0/2x"));
  CHECK_FALSE(IpNetwork::parse("host.example/24"));
}
