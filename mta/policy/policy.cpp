// policy.cpp: the mta's relay decisions (policy.hpp).
#include "mta/policy/policy.hpp"

#include <algorithm>

#include "common/ascii.hpp"

namespace mta::policy {

std::string_view channel_name(Channel c) {
  switch (c) {
    case Channel::Intranet: return "tcp_intranet";
    case Channel::Auth: return "tcp_auth";
    case Channel::Local: return "tcp_local";
  }
  return "tcp_local";
}

Channel classify(const common::net::IpAddress& client, const std::vector<common::net::IpNetwork>& internal,
                 bool authenticated) {
  // AUTH switches the channel (saslswitchchannel) whatever the address.
  if (authenticated) return Channel::Auth;
  for (const auto& net : internal) {
    if (net.contains(client)) return Channel::Intranet;
  }
  return Channel::Local;
}

Verdict recipient_verdict(Channel channel, RecipientClass recipient) {
  switch (recipient) {
    case RecipientClass::LocalUser: return Verdict::Accept;
    case RecipientClass::LocalUnknown: return Verdict::RejectUnknown;
    case RecipientClass::Remote: return channel == Channel::Local ? Verdict::RejectRelay : Verdict::Accept;
  }
  return Verdict::RejectRelay;
}

bool is_local_domain(std::string_view domain, const std::vector<std::string>& local_domains) {
  // A trailing dot names the same domain (RFC 5321 does not allow it in paths, but be exact).
  if (!domain.empty() && domain.back() == '.') domain.remove_suffix(1);
  return std::any_of(local_domains.begin(), local_domains.end(),
                     [&](const std::string& d) { return common::ascii::iequals(d, domain); });
}

bool sender_allowed(std::string_view mail_from, const std::vector<std::string>& user_addresses, bool any_sender) {
  if (any_sender) return true;
  if (mail_from.empty()) return false;
  const auto at = mail_from.rfind('@');
  // Local parts are case-sensitive in principle (RFC 5321 §2.4); the directory stores them lowered
  // and matches them so, and the domain is case-insensitive.
  return std::any_of(user_addresses.begin(), user_addresses.end(), [&](const std::string& a) {
    const auto a_at = a.rfind('@');
    if (at == std::string_view::npos || a_at == std::string::npos) return common::ascii::iequals(a, mail_from);
    return common::ascii::iequals(std::string_view(a).substr(0, a_at), mail_from.substr(0, at)) &&
           common::ascii::iequals(std::string_view(a).substr(a_at), mail_from.substr(at));
  });
}

}  // namespace mta::policy
