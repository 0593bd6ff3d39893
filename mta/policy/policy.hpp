// policy.hpp: the mta's relay decisions as pure functions over facts (no I/O): which channel a
// session is in, whether a recipient may be accepted from it, and whether an authenticated user
// may use a sender address. Relay blocking is on by default: only tcp_intranet and tcp_auth relay.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "common/net/address.hpp"

namespace mta::policy {

// The seed's source channels: tcp_intranet (an INTERNAL_IP network), tcp_auth (after a successful
// AUTH, the saslswitchchannel), tcp_local (everyone else, the Internet).
enum class Channel { Local, Intranet, Auth };
std::string_view channel_name(Channel);

// INTERNAL_IP: the networks whose clients may relay (MTA-07: keep it narrow).
Channel classify(const common::net::IpAddress& client, const std::vector<common::net::IpNetwork>& internal,
                 bool authenticated);

enum class RecipientClass {
  LocalUser,     // a user authserv knows in one of our domains
  LocalUnknown,  // one of our domains, no such user: 550 5.1.1 at RCPT, so nothing bounces later
  Remote,        // another domain
};

enum class Verdict { Accept, RejectUnknown, RejectRelay };

// MTA-15: unauthenticated mail only for local users; relaying only from tcp_intranet or tcp_auth.
Verdict recipient_verdict(Channel channel, RecipientClass recipient);

// Whether `domain` (any case) is one of ours.
bool is_local_domain(std::string_view domain, const std::vector<std::string>& local_domains);

// An authenticated user may send only as one of their own addresses (MTA-13 VerifyIdentity,
// MTA-19), unless the configuration lets them; the null sender (bounces) is not theirs to use.
bool sender_allowed(std::string_view mail_from, const std::vector<std::string>& user_addresses, bool any_sender);

}  // namespace mta::policy
