// import.hpp: a Maildir++ tree (as Dovecot keeps one) into a store through a Target: the root is
// INBOX and ".Folder.Sub" is "Folder/Sub"; flags and keywords from the file names and
// dovecot-keywords, internal dates from the files' mtimes, UIDs and UIDVALIDITY from
// dovecot-uidlist where present, subscriptions from the "subscriptions" file.
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "store/tools/target.hpp"

namespace store::tools {

struct MaildirImportOptions {
  // Where the root Maildir goes, and its folders under it ("Old" + ".Work" is "Old/Work"). Empty:
  // the root is INBOX and the folders are top-level names, as Dovecot shows them.
  std::string mailbox;
  size_t batch_messages = 500;            // per write transaction (one fsync each)
  size_t batch_bytes = size_t{64} << 20;  // and at most this much message data held at once
  uint64_t max_message_size = uint64_t{256} << 20;  // a larger file is reported and left out
  bool raw = false;  // keep the files' line ends (else an LF-only file gets CRLF, see maildir.hpp)
  bool folders = true;  // the ".Folder" directories too (false: the root only)
};

struct ImportSummary {
  uint64_t imported = 0;
  uint64_t skipped = 0;  // already there (a re-run keeping UIDs)
  // Files left out and other things worth the operator's eye; any of them makes the CLI exit 1.
  std::vector<std::string> problems;
};

// Everything the tree holds is read and checked first (folder names, dovecot-uidlist and
// dovecot-keywords of every folder), so a tree with such a problem writes nothing; then each folder
// is imported in batches, and the lines `report` gets say what each folder became. An error
// returned after some folders were imported leaves those in place: running the same import again
// skips what is already there when the UIDs were kept.
OpResult<ImportSummary> import_maildir(Target& target, std::string_view user, const std::filesystem::path& dir,
                                       const MaildirImportOptions& options,
                                       const std::function<void(const std::string&)>& report);

}  // namespace store::tools
