// schema.hpp: the store's LMDB records (store/README.md "Schema") and the operations on them inside
// one transaction: create a user with its mailboxes, file a delivery, read mailboxes and messages.
// No threads, no loop: the message store runs these on the group-commit writer or in read txns.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <lmdb.h>

#include "common/lmdb/lmdb.hpp"
#include "common/result.hpp"

namespace store {

inline constexpr uint32_t kSchemaVersion = 1;
inline constexpr size_t kBodyChunk = 64 * 1024;
inline constexpr size_t kMaxKeywords = 64;

enum Flag : uint32_t { kSeen = 1, kAnswered = 2, kFlagged = 4, kDeleted = 8, kDraft = 16 };
enum SpecialUse : uint32_t {
  kUseDrafts = 1, kUseSent = 2, kUseTrash = 4, kUseJunk = 8, kUseArchive = 16, kUseAll = 32, kUseFlagged = 64,
};

struct UserRecord {
  uint64_t id = 0;
  int64_t created = 0;
  uint64_t bytes_used = 0;
  uint64_t messages = 0;
  uint64_t quota_bytes = 0;     // 0: none
  uint64_t quota_messages = 0;  // 0: none
};

struct MailboxRecord {
  uint64_t id = 0;
  uint32_t uidvalidity = 0;
  uint32_t uidnext = 1;
  uint64_t highestmodseq = 0;
  uint32_t messages = 0;
  uint32_t unseen = 0;
  uint64_t bytes = 0;
  uint32_t special_use = 0;
  int64_t created = 0;
  // Expunge history (RFC 7162 VANISHED): kind-1 `changes` entries at or below this MODSEQ may have
  // been pruned, so a client resyncing from an older MODSEQ gets every UID that is not live.
  uint64_t vanished_floor = 0;
  uint32_t tombstones = 0;  // the mailbox's kind-1 `changes` entries
};

// A deleted mailbox whose messages are still being freed in batches (store/README.md "DELETE").
struct DeletedMailboxRecord {
  uint64_t user_id = 0;
  uint32_t messages = 0;  // at the DELETE
  uint64_t bytes = 0;
  std::string name;       // for the logs
};

struct MessageRecord {
  uint64_t body_id = 0;
  uint64_t modseq = 0;
  int64_t internal_date = 0;
  uint64_t size = 0;  // prefix + body
  uint32_t flags = 0;
  std::string prefix;
  std::vector<std::string> keywords;
};

struct BodyRecord {
  uint32_t references = 0;
  uint64_t size = 0;
  uint32_t chunks = 0;
  std::string structure;
};

struct MailboxInfo {
  std::string name;
  MailboxRecord record;
  bool subscribed = false;
};

struct MessageInfo {
  uint32_t uid = 0;
  MessageRecord record;
};

// The named databases, opened once (write txn at start) and valid for the environment's life.
struct Dbs {
  MDB_dbi meta = 0, users = 0, mailboxes = 0, mailbox_ids = 0, subscriptions = 0, messages = 0, changes = 0,
          bodies = 0, body_chunks = 0, deliveries = 0, delivery_times = 0, deleted_mailboxes = 0;
  static constexpr unsigned kCount = 12;
  // Creates what is missing and checks the schema version.
  static common::Result<Dbs> open(common::lmdb::Txn& write_txn);
};

// Record layouts (README); decode_* fail with ErrorKind::Internal on a damaged value.
std::string encode(const UserRecord&);
std::string encode(const MailboxRecord&);
std::string encode(const MessageRecord&);
std::string encode(const BodyRecord&);
std::string encode(const DeletedMailboxRecord&);
common::Result<UserRecord> decode_user(std::string_view);
common::Result<MailboxRecord> decode_mailbox(std::string_view);
common::Result<MessageRecord> decode_message(std::string_view);
common::Result<BodyRecord> decode_body(std::string_view);
common::Result<DeletedMailboxRecord> decode_deleted_mailbox(std::string_view);

std::string user_key(std::string_view canonical);
std::string mailbox_key(uint64_t user_id, std::string_view name);
std::string message_key(uint64_t mailbox_id, uint32_t uid);
std::string change_key(uint64_t mailbox_id, uint64_t modseq);
std::string chunk_key(uint64_t body_id, uint32_t chunk);
std::string delivery_key(std::string_view delivery_id, std::string_view recipient);
// `meta` key of a mailbox held by an online import that keeps its source's UIDs (store/admin):
// value u8 1, i64 deadline (unix s), u64 import id. Until the deadline add_message refuses to
// give the mailbox a UID with TempFail, since a delivery taking UIDNEXT between two batches would
// take a UID the source gave another message.
std::string import_hold_key(uint64_t mailbox_id);
// Whether such a hold is in force (its deadline not yet passed).
common::Result<bool> import_holds(common::lmdb::Txn&, const Dbs&, uint64_t mailbox_id);
// Said of a held mailbox, after its name, in the errors and the LMTP reply.
inline constexpr const char* kImportHoldReason = "is being imported with its source's UIDs (postern-storectl): try again later";

// --- in a transaction ---
common::Result<std::optional<UserRecord>> find_user(const common::lmdb::Txn&, const Dbs&, std::string_view canonical);
// The user with INBOX and the special-use set, all subscribed (README "Invariants").
common::Result<UserRecord> create_user(common::lmdb::Txn&, const Dbs&, std::string_view canonical, int64_t now);
common::Result<std::optional<MailboxRecord>> find_mailbox(const common::lmdb::Txn&, const Dbs&, uint64_t user_id,
                                                          std::string_view name);
common::Result<MailboxRecord> create_mailbox(common::lmdb::Txn&, const Dbs&, uint64_t user_id, std::string_view name,
                                             uint32_t special_use, int64_t now);
common::Result<std::vector<MailboxInfo>> list_mailboxes(const common::lmdb::Txn&, const Dbs&, uint64_t user_id);
// Messages with first <= UID <= last, in UID order.
common::Result<std::vector<MessageInfo>> list_messages(const common::lmdb::Txn&, const Dbs&, uint64_t mailbox_id,
                                                       uint32_t first = 1, uint32_t last = UINT32_MAX);
// The same without holding them all: `fn(uid, record)` for each, in UID order, until it returns false.
common::Result<void> for_each_message(const common::lmdb::Txn&, const Dbs&, uint64_t mailbox_id, uint32_t first,
                                      uint32_t last, const std::function<bool(uint32_t, const MessageRecord&)>& fn);
common::Result<std::optional<BodyRecord>> find_body(const common::lmdb::Txn&, const Dbs&, uint64_t body_id);
// The bytes a client reads: the message's prefix, then its body.
common::Result<std::string> message_bytes(const common::lmdb::Txn&, const Dbs&, const MessageRecord&);

// Writes a body (records and chunks) with `references` = 0 and returns its id; add_message counts it.
common::Result<uint64_t> put_body(common::lmdb::Txn&, const Dbs&, std::string_view body, std::string_view structure);
// Files a message into a mailbox: the next UID and MODSEQ, the counters of the mailbox and of the
// user, the body's reference. Returns the UID and the mailbox as it is after the change.
struct Filed {
  uint32_t uid = 0;
  MailboxRecord mailbox;
};
common::Result<Filed> add_message(common::lmdb::Txn&, const Dbs&, const std::string& user_name, UserRecord& user,
                                  std::string_view mailbox_name, uint64_t body_id, uint64_t body_size,
                                  MessageRecord message);

}  // namespace store
