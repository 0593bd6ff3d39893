// policy_test.cpp: the relay matrix (every channel x local user, unknown local, remote) and the
// sender identity check of authenticated users.
#include <catch2/catch.hpp>

#include "mta/policy/policy.hpp"

using namespace mta::policy;
using common::net::IpAddress;
using common::net::IpNetwork;

TEST_CASE("sessions are classified by INTERNAL_IP networks and AUTH", "[mta]") {
  const std::vector<IpNetwork> internal{*IpNetwork::parse("10.0.0.0/8"), *IpNetwork::parse("2001:db8:1::/48")};
  CHECK(classify(*IpAddress::parse("10.1.2.3"), internal, false) == Channel::Intranet);
  CHECK(classify(*IpAddress::parse("2001:db8:1::5"), internal, false) == Channel::Intranet);
  CHECK(classify(*IpAddress::parse("192.0.2.1"), internal, false) == Channel::Local);
  CHECK(classify(*IpAddress::parse("192.0.2.1"), internal, true) == Channel::Auth);
  CHECK(classify(*IpAddress::parse("10.1.2.3"), internal, true) == Channel::Auth);
  // The default: nothing is internal, not even loopback (relay blocking on, MTA-05).
  CHECK(classify(*IpAddress::parse("127.0.0.1"), {}, false) == Channel::Local);
  CHECK(channel_name(Channel::Intranet) == "tcp_intranet");
}

TEST_CASE("the relay matrix: only tcp_intranet and tcp_auth relay, unknown local users are refused everywhere", "[mta]") {
  for (Channel c : {Channel::Local, Channel::Intranet, Channel::Auth}) {
    INFO(channel_name(c));
    CHECK(recipient_verdict(c, RecipientClass::LocalUser) == Verdict::Accept);
    CHECK(recipient_verdict(c, RecipientClass::LocalUnknown) == Verdict::RejectUnknown);
    CHECK(recipient_verdict(c, RecipientClass::Remote) == (c == Channel::Local ? Verdict::RejectRelay : Verdict::Accept));
  }
}

TEST_CASE("local domains match without case and with a trailing dot", "[mta]") {
  const std::vector<std::string> ours{"example.com", "example.net"};
  CHECK(is_local_domain("Example.COM", ours));
  CHECK(is_local_domain("example.net.", ours));
  CHECK_FALSE(is_local_domain("sub.example.com", ours));
  CHECK_FALSE(is_local_domain("", ours));
}

TEST_CASE("an authenticated user sends only as one of their addresses unless allowed any", "[mta]") {
  const std::vector<std::string> alice{"alice@example.com", "a.smith@example.com"};
  CHECK(sender_allowed("alice@example.com", alice, false));
  CHECK(sender_allowed("A.Smith@EXAMPLE.com", alice, false));
  CHECK_FALSE(sender_allowed("bob@example.com", alice, false));
  CHECK_FALSE(sender_allowed("alice@example.com.evil", alice, false));
  CHECK_FALSE(sender_allowed("", alice, false));  // bounces are the mta's own to send
  CHECK(sender_allowed("bob@example.com", alice, true));
}
