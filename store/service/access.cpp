// access.cpp: the MailStore access check (access.hpp).
#include "store/service/access.hpp"

#include <algorithm>

#include "common/ascii.hpp"

namespace store::service {
namespace {

tl::unexpected<AccessRefused> refuse(Denial code, std::string detail) {
  return tl::unexpected(AccessRefused{code, std::move(detail)});
}

bool listed(const std::vector<std::string>& names, std::string_view name) {
  return std::any_of(names.begin(), names.end(), [&](const std::string& n) { return common::ascii::iequals(n, name); });
}

// The token's own words for a refusal, so the front end's log says which check failed.
std::string token_problem(const std::string& detail) {
  if (detail == "expired") return "access token expired";
  if (detail == "wrong_front_end") return "access token issued to another front end";
  if (detail == "unknown_key") return "access token signed by a key this store does not trust";
  if (detail == "bad_signature") return "access token signature invalid";
  if (detail == "issued_in_future") return "access token issued in the future (clocks differ)";
  if (detail == "unbound") return "access token bound to no front end";
  return "access token malformed";
}

}  // namespace

tl::expected<Caller, AccessRefused> check_access(const common::authtoken::Verifier& verifier,
                                                 const AccessPolicy& policy, std::string_view peer_cn,
                                                 std::string_view token, std::string_view named_user, int64_t now) {
  if (!policy.plaintext && (peer_cn.empty() || !listed(policy.allowed_clients, peer_cn))) {
    return refuse(Denial::PermissionDenied,
                  "client certificate \"" + std::string(peer_cn) + "\" is not in [mailstore] allowed_clients");
  }
  if (token.empty()) return refuse(Denial::Unauthenticated, "no access token (metadata postern-token)");
  if (token.size() > common::authtoken::kMaxToken) return refuse(Denial::Unauthenticated, "access token malformed");
  auto claims = verifier.verify(token, now, policy.plaintext ? std::string_view() : peer_cn);
  if (!claims) return refuse(Denial::Unauthenticated, token_problem(claims.error().detail));
  // A token for SMTP submission opens no mailbox: only the mail-access services do.
  if (!claims->allows_service("imap") && !claims->allows_service("pop")) {
    return refuse(Denial::PermissionDenied, "access token is not for mailbox access (imap or pop)");
  }
  Caller caller;
  caller.token_user = claims->user;
  caller.token_id = claims->token_id;
  caller.expires_at = claims->expires_at;
  caller.admin = listed(policy.admins, claims->user);
  caller.user = claims->user;
  if (!named_user.empty() && !common::ascii::iequals(named_user, claims->user)) {
    if (!caller.admin) {
      return refuse(Denial::PermissionDenied, "access token is for " + claims->user + ", not " + std::string(named_user));
    }
    caller.user = std::string(named_user);
  }
  return caller;
}

}  // namespace store::service
