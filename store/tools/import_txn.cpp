// import_txn.cpp: an import's writes in one transaction (import_txn.hpp).
#include "store/tools/import_txn.hpp"

#include <algorithm>

#include "common/lmdb/codec.hpp"

namespace store::tools {
namespace {

using common::lmdb::Decoder;
using common::lmdb::Encoder;
using common::lmdb::Txn;
using ops::OpCode;

constexpr uint32_t kAllFlags = kSeen | kAnswered | kFlagged | kDeleted | kDraft;

tl::unexpected<OpError> op_fail(OpCode code, std::string detail) { return tl::unexpected(OpError{code, std::move(detail)}); }
tl::unexpected<OpError> op_fail(const common::Error& e) { return tl::unexpected(ops::to_op_error(e)); }

OpResult<UserRecord> need_user(const Txn& txn, const Dbs& dbs, std::string_view user) {
  auto u = find_user(txn, dbs, user);
  if (!u) return op_fail(u.error());
  if (!*u) return op_fail(OpCode::NotFound, "no user " + std::string(user));
  return **u;
}

// The mailbox as begin_import left it: same name, same UIDVALIDITY.
OpResult<MailboxRecord> started_mailbox(const Txn& txn, const Dbs& dbs, const UserRecord& user,
                                        const ImportStart& start) {
  auto box = find_mailbox(txn, dbs, user.id, start.mailbox);
  if (!box) return op_fail(box.error());
  if (!*box) return op_fail(OpCode::NotFound, "mailbox " + start.mailbox + " is gone (deleted during the import)");
  if ((*box)->uidvalidity != start.uidvalidity) {
    return op_fail(OpCode::FailedPrecondition,
                   "mailbox " + start.mailbox + " changed UIDVALIDITY during the import (deleted and made again)");
  }
  return **box;
}

OpResult<void> put_mailbox(Txn& txn, const Dbs& dbs, uint64_t user_id, std::string_view name,
                           const MailboxRecord& record) {
  if (auto put = txn.put(dbs.mailboxes, mailbox_key(user_id, name), encode(record)); !put) return op_fail(put.error());
  return {};
}

OpResult<void> raise_last_uidvalidity(Txn& txn, const Dbs& dbs, uint32_t at_least) {
  auto value = txn.get(dbs.meta, "last_uidvalidity");
  if (!value) return op_fail(value.error());
  uint32_t last = 0;
  if (*value) {
    Decoder d(**value);
    if (!d.u32(last) || !d.done()) return op_fail(OpCode::Internal, "damaged meta record last_uidvalidity");
  }
  if (last >= at_least) return {};
  if (auto put = txn.put(dbs.meta, "last_uidvalidity", Encoder().u32(at_least).str()); !put) {
    return op_fail(put.error());
  }
  return {};
}

}  // namespace

OpResult<ImportStart> import_begin(Txn& txn, const Dbs& dbs, std::string_view user, std::string_view mailbox,
                                   uint32_t source_uidvalidity, int64_t now) {
  auto u = need_user(txn, dbs, user);
  if (!u) return tl::unexpected(u.error());
  auto name = ops::validate_mailbox_name(mailbox);
  if (!name) return tl::unexpected(name.error());
  ImportStart start;
  start.mailbox = *name;
  auto box = find_mailbox(txn, dbs, u->id, *name);
  if (!box) return op_fail(box.error());
  MailboxRecord record;
  if (*box) {
    record = **box;
  } else {
    auto made = ops::create_mailbox(txn, dbs, user, *name, 0, now);
    if (!made) return tl::unexpected(made.error());
    record = made->record;
    start.created = true;
  }
  const bool never_used = record.messages == 0 && record.uidnext == 1;
  if (source_uidvalidity != 0 && never_used && record.uidvalidity != source_uidvalidity) {
    record.uidvalidity = source_uidvalidity;
    if (auto p = put_mailbox(txn, dbs, u->id, *name, record); !p) return tl::unexpected(p.error());
    if (auto r = raise_last_uidvalidity(txn, dbs, source_uidvalidity); !r) return tl::unexpected(r.error());
  }
  start.keep_uids = source_uidvalidity != 0 && record.uidvalidity == source_uidvalidity;
  start.uidvalidity = record.uidvalidity;
  start.uidnext = record.uidnext;
  return start;
}

OpResult<ImportBatchResult> import_messages(Txn& txn, const Dbs& dbs, std::string_view user,
                                            const ImportStart& start, std::span<const ImportMessage> messages,
                                            std::span<const std::string> structures) {
  if (messages.size() != structures.size()) return op_fail(OpCode::Internal, "import: a structure per message");
  auto u = need_user(txn, dbs, user);
  if (!u) return tl::unexpected(u.error());
  UserRecord record = *u;
  auto box = started_mailbox(txn, dbs, record, start);
  if (!box) return tl::unexpected(box.error());
  MailboxRecord current = *box;
  const std::string user_name(user);
  ImportBatchResult out;
  for (size_t i = 0; i < messages.size(); ++i) {
    const ImportMessage& m = messages[i];
    if (m.flags & ~kAllFlags) return op_fail(OpCode::InvalidArgument, m.source + ": unknown flag bits");
    if (m.keywords.size() > kMaxKeywords) {
      return op_fail(OpCode::InvalidArgument, m.source + ": more than " + std::to_string(kMaxKeywords) + " keywords");
    }
    if (start.keep_uids && m.uid != 0) {
      if (m.uid < current.uidnext) {
        ++out.skipped;
        continue;
      }
      if (m.uid == UINT32_MAX) return op_fail(OpCode::InvalidArgument, m.source + ": UID 4294967295 is not a UID");
      // add_message hands out the mailbox's UIDNEXT: set it to the UID to keep.
      current.uidnext = m.uid;
      if (auto p = put_mailbox(txn, dbs, record.id, start.mailbox, current); !p) return tl::unexpected(p.error());
    }
    if (current.uidnext == UINT32_MAX) {
      return op_fail(OpCode::ResourceExhausted, "mailbox " + start.mailbox + " has used every UID");
    }
    auto body = put_body(txn, dbs, m.bytes, structures[i]);
    if (!body) return op_fail(body.error());
    MessageRecord message;
    message.internal_date = m.internal_date;
    message.flags = m.flags;
    message.keywords = m.keywords;
    auto filed = add_message(txn, dbs, user_name, record, start.mailbox, *body, m.bytes.size(), std::move(message));
    if (!filed) return op_fail(filed.error());
    current = filed->mailbox;
    if (out.imported == 0) out.first_uid = filed->uid;
    out.last_uid = filed->uid;
    ++out.imported;
  }
  return out;
}

OpResult<void> import_finish(Txn& txn, const Dbs& dbs, std::string_view user, const ImportStart& start,
                             uint32_t source_uidnext) {
  if (!start.keep_uids) return {};
  auto u = need_user(txn, dbs, user);
  if (!u) return tl::unexpected(u.error());
  auto box = started_mailbox(txn, dbs, *u, start);
  if (!box) return tl::unexpected(box.error());
  if (source_uidnext <= box->uidnext) return {};
  MailboxRecord record = *box;
  record.uidnext = source_uidnext;
  return put_mailbox(txn, dbs, u->id, start.mailbox, record);
}

OpResult<uint64_t> hold_import(Txn& txn, const Dbs& dbs, std::string_view user, const ImportStart& start,
                               int64_t deadline, uint64_t import_id) {
  auto u = need_user(txn, dbs, user);
  if (!u) return tl::unexpected(u.error());
  auto box = started_mailbox(txn, dbs, *u, start);
  if (!box) return tl::unexpected(box.error());
  const std::string value = Encoder().u8(1).i64(deadline).u64(import_id).str();
  if (auto put = txn.put(dbs.meta, import_hold_key(box->id), value); !put) return op_fail(put.error());
  return box->id;
}

OpResult<void> release_import(Txn& txn, const Dbs& dbs, std::string_view user, const ImportStart& start) {
  auto u = need_user(txn, dbs, user);
  if (!u) return tl::unexpected(u.error());
  auto box = find_mailbox(txn, dbs, u->id, start.mailbox);
  if (!box) return op_fail(box.error());
  if (!*box) return {};
  if (auto del = txn.del(dbs.meta, import_hold_key((*box)->id)); !del) return op_fail(del.error());
  return {};
}

OpResult<void> drop_stale_holds(Txn& txn, const Dbs& dbs, int64_t now) {
  const std::string prefix = "import_hold/";
  std::vector<std::string> stale;
  {
    auto cursor = common::lmdb::Cursor::open(txn, dbs.meta);
    if (!cursor) return op_fail(cursor.error());
    auto entry = cursor->seek(prefix);
    for (; entry && *entry && (*entry)->first.starts_with(prefix); entry = cursor->next()) {
      Decoder d((*entry)->second);
      uint8_t v = 0;
      int64_t deadline = 0;
      if (!d.u8(v) || !d.i64(deadline) || deadline <= now) stale.emplace_back((*entry)->first);
    }
    if (!entry) return op_fail(entry.error());
  }
  for (const auto& key : stale) {
    if (auto del = txn.del(dbs.meta, key); !del) return op_fail(del.error());
  }
  return {};
}

}  // namespace store::tools
