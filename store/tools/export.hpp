// export.hpp: a store mailbox out through a Target, as a Maildir that Dovecot (and our import)
// reads with its flags, keywords, internal dates and UIDs, or as an mboxrd file.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <string_view>
#include <vector>

#include "store/tools/target.hpp"

namespace store::tools {

struct ExportSummary {
  std::string mailbox;  // canonical
  uint32_t uidvalidity = 0;
  uint64_t messages = 0;
  uint64_t bytes = 0;
  std::vector<std::string> problems;  // e.g. keywords past the 26 a Maildir can name
};

// `dir` must not exist or be empty; it becomes a Maildir (cur/ new/ tmp/, mode 0700). Each
// message is a file in cur/ (written in tmp/, its mtime set to the internal date, then renamed in,
// as a delivery would; all of them on disk, by one syncfs, before the uidlist is written) named "<date>.M<uid>P<uidvalidity>.<host>,S=<size>,W=<size
// with CRLF>:2,<flags>" with the message's bytes as they are stored (CRLF line ends); then
// dovecot-keywords (letters in order of first use; "$Forwarded" is a keyword like any other, as
// Dovecot keeps it) and dovecot-uidlist (UIDVALIDITY, UIDNEXT, each file's UID), so an import
// restores the same UIDs.
OpResult<ExportSummary> export_maildir(Target& target, std::string_view user, std::string_view mailbox,
                                       const std::filesystem::path& dir);

// `file` must not exist. mboxrd (mbox.hpp): a From line with the Return-Path sender and the
// internal date, LF line ends unless `keep_crlf`. mbox has no place for flags, keywords or UIDs:
// use a Maildir to migrate.
OpResult<ExportSummary> export_mbox(Target& target, std::string_view user, std::string_view mailbox,
                                    const std::filesystem::path& file, bool keep_crlf = false);

}  // namespace store::tools
