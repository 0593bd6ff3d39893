// target.hpp: what postern-storectl's commands run against: a store, reached offline (its LMDB
// environment opened here, offline.hpp) or, later, online through the store's admin gRPC service.
// The commands (storectl.hpp) and the Maildir/mbox code (import.hpp, export.hpp) see only this.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "store/storage/mailbox_ops.hpp"
#include "store/storage/schema.hpp"

namespace store::tools {

using ops::OpError;
using ops::OpResult;

struct MailboxUsage {
  std::string name;
  MailboxRecord record;  // messages, unseen, bytes, UIDVALIDITY, UIDNEXT, HIGHESTMODSEQ
  bool subscribed = false;
};
struct UserUsage {
  std::string user;
  UserRecord record;  // bytes and messages used, the quotas authserv gave at the last delivery
  std::vector<MailboxUsage> mailboxes;
};

struct ExportedMailbox {
  std::string name;  // canonical
  uint32_t uidvalidity = 0;
  uint32_t uidnext = 0;
  uint32_t messages = 0;
};
struct ExportedMessage {
  uint32_t uid = 0;
  uint32_t flags = 0;
  std::vector<std::string> keywords;
  int64_t internal_date = 0;
  std::string bytes;  // what a client reads: prefix, then body
};

// One message to import. uid 0: the mailbox's next UID.
struct ImportMessage {
  uint32_t uid = 0;
  uint32_t flags = 0;
  std::vector<std::string> keywords;
  int64_t internal_date = 0;
  std::string bytes;
  std::string source;  // where it came from (a file), for reports
};

// What begin_import decided for a mailbox.
struct ImportStart {
  std::string mailbox;  // canonical
  bool created = false;
  // The source's UIDs are kept: the mailbox had never held a message and took the source's
  // UIDVALIDITY, or already has that UIDVALIDITY (a re-run after a partial import, or a re-import
  // of our own export): UIDs below `uidnext` are already there and skipped.
  bool keep_uids = false;
  uint32_t uidvalidity = 0;
  uint32_t uidnext = 1;  // the mailbox's before this import
};
struct ImportBatchResult {
  uint32_t imported = 0;
  uint32_t skipped = 0;      // keep_uids: a UID below the mailbox's UIDNEXT (already imported, or expunged since)
  uint32_t first_uid = 0;    // of those imported
  uint32_t last_uid = 0;
};

class Target {
 public:
  virtual ~Target() = default;
  // "offline /var/lib/postern/store", for reports.
  virtual std::string describe() const = 0;

  // Users are named canonically ("uid@domain", lowercase, as authserv returns them).
  virtual OpResult<UserRecord> create_user(std::string_view user) = 0;  // AlreadyExists if there
  virtual OpResult<void> rename_user(std::string_view from, std::string_view to) = 0;
  virtual OpResult<ops::DeletedUser> delete_user(std::string_view user) = 0;
  // One user, or every user in name order.
  virtual OpResult<std::vector<UserUsage>> usage(std::optional<std::string_view> user) = 0;
  virtual OpResult<ops::VerifyReport> verify(bool repair) = 0;

  // The mailbox's messages in UID order from one consistent view: `begin` once, then `message`
  // for each, one at a time (only the current message is held). An error from a callback stops
  // the export and is returned.
  virtual OpResult<void> export_mailbox(std::string_view user, std::string_view mailbox,
                                        const std::function<OpResult<void>(const ExportedMailbox&)>& begin,
                                        const std::function<OpResult<void>(const ExportedMessage&)>& message) = 0;

  // Import, in three steps so a large mailbox is written in batches (each one durable commit):
  // the mailbox is created if missing (with its missing parents), and given the source's
  // UIDVALIDITY when it never held a message (source_uidvalidity 0: none known).
  virtual OpResult<ImportStart> begin_import(std::string_view user, std::string_view mailbox,
                                             uint32_t source_uidvalidity) = 0;
  // Messages in ascending UID order when start.keep_uids; their structure is computed here.
  virtual OpResult<ImportBatchResult> import_batch(std::string_view user, const ImportStart& start,
                                                   std::vector<ImportMessage>&& batch) = 0;
  // Raises UIDNEXT to the source's next UID (keep_uids), so UIDs the source handed out and then
  // expunged are never given to other messages.
  virtual OpResult<void> finish_import(std::string_view user, const ImportStart& start, uint32_t source_uidnext) = 0;
  // Subscribes mailbox names, all in one write (imports carry the source's subscriptions).
  virtual OpResult<void> subscribe(std::string_view user, const std::vector<std::string>& mailboxes) = 0;
};

}  // namespace store::tools
