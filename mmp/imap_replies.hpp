// imap_replies.hpp: how the IMAP session words what the store said (RFC 5530 response codes), shared
// by the files that make up ImapSession.
#pragma once

#include <string>
#include <string_view>

#include "mmp/store_client/store_client.hpp"

namespace mmp {

inline constexpr std::string_view kImapComponent = "imap";

std::string_view code_for(const store_client::StoreError& e);
std::string text_for(const store_client::StoreError& e);

}  // namespace mmp
