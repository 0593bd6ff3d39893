// accesscheck.hpp: postern-accesscheck, our tcpdmatch: evaluates the filters for one imagined
// connection and prints the decision and the rule that made it. main() only forwards to run().
#pragma once

#include <ostream>
#include <span>
#include <string_view>

namespace common::access {

// Exit codes: 0 allow, 1 deny, 2 usage, unreadable file or parse error (file:line:col: message).
int accesscheck_run(std::span<const std::string_view> args, std::ostream& out, std::ostream& err);

}  // namespace common::access
