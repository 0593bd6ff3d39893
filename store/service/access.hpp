// access.hpp: who may open which mailboxes through the MailStore API (ARCHITECTURE "A front end can
// only open the mailboxes of users who logged in through it"): a caller certificate the store
// knows, and authserv's access token for the user, issued to that same front end. Pure: no gRPC.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "common/authtoken/authtoken.hpp"
#include "common/result.hpp"

namespace store::service {

struct AccessPolicy {
  std::vector<std::string> allowed_clients;  // certificate CNs of the mmp hosts
  std::vector<std::string> admins;           // token users that may name any user
  bool plaintext = false;                    // [grpc] plaintext: no certificates (tests only)
};

enum class Denial { Unauthenticated, PermissionDenied };

struct AccessRefused {
  Denial code;
  std::string detail;  // what the front end logs and shows in its status
};

struct Caller {
  std::string user;      // whose mailboxes the call works on
  std::string token_user;
  bool admin = false;
  std::string token_id;  // for the log
  int64_t expires_at = 0;  // the token's end, Unix seconds: a Watch stream ends there
};

// `token` and `named_user` are the metadata values ("postern-token", "postern-user"; empty when
// absent); `peer_cn` the calling certificate's common name.
tl::expected<Caller, AccessRefused> check_access(const common::authtoken::Verifier& verifier,
                                                 const AccessPolicy& policy, std::string_view peer_cn,
                                                 std::string_view token, std::string_view named_user, int64_t now);

}  // namespace store::service
