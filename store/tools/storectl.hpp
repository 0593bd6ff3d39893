// storectl.hpp: postern-storectl's commands as data, their parser, and running one on a Target;
// main.cpp only calls storectl_main.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <variant>

#include "common/result.hpp"
#include "store/tools/import.hpp"
#include "store/tools/offline.hpp"
#include "store/tools/target.hpp"

namespace store::tools {

namespace cmd {
struct UserCreate { std::string user; };
struct UserRename { std::string from, to; };
struct UserDelete { std::string user; };
struct Usage { std::optional<std::string> user; };
struct Verify { bool repair = false; };
struct Export {
  std::string user, mailbox;
  std::string mbox_file;    // one of these two
  std::string maildir_dir;
  bool keep_crlf = false;   // mbox: CRLF line ends as stored
};
struct Import {
  std::string user;
  std::string maildir_dir;
  MaildirImportOptions options;
};
}  // namespace cmd

using Command = std::variant<cmd::UserCreate, cmd::UserRename, cmd::UserDelete, cmd::Usage, cmd::Verify,
                             cmd::Export, cmd::Import>;

// The words after the global options, e.g. {"user", "create", "alice@example.com"}. User names are
// lowercased (authserv's canonical form) and must be "uid@domain" without blanks or controls. A
// failure is a usage error (ErrorKind::Config) whose detail says what was wrong.
common::Result<Command> parse_command(std::span<const std::string_view> args);
std::string_view usage_text();
// Whether the command writes (the offline target then refuses an environment in use).
bool writes(const Command& command);

// Runs one command; each line for the operator goes to `out` as it is known (an import reports
// folder by folder). Returns the exit status: 0 done, 1 done with problems listed (verify found
// something left, an import or export left something out); an error is returned as one.
OpResult<int> run_command(Target& target, const Command& command, const std::function<void(const std::string&)>& out);

// The whole CLI: options, command, target, run; exit 0, 1 (failure or problems), 2 (usage).
int storectl_main(int argc, char** argv);

}  // namespace store::tools
