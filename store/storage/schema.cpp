// schema.cpp: the store's record layouts and their operations in one transaction (schema.hpp).
#include "store/storage/schema.hpp"

#include <algorithm>
#include <array>
#include <ctime>

#include "common/lmdb/codec.hpp"

namespace store {
namespace {

using common::Error;
using common::ErrorKind;
using common::Result;
using common::lmdb::Cursor;
using common::lmdb::Decoder;
using common::lmdb::Encoder;
using common::lmdb::Txn;

constexpr uint8_t kLayout = 1;
// Mailbox records with expunge history (vanished_floor, tombstones) appended; a record with both
// zero is still written as layout 1, so older builds read it.
constexpr uint8_t kMailboxLayout2 = 2;

tl::unexpected<Error> damaged(std::string_view what) {
  return tl::unexpected(Error{ErrorKind::Internal, "damaged " + std::string(what) + " record"});
}

Result<uint64_t> next_id(Txn& txn, const Dbs& dbs, std::string_view counter) {
  auto value = txn.get(dbs.meta, counter);
  if (!value) return tl::unexpected(value.error());
  uint64_t next = 1;
  if (*value) {
    Decoder d(**value);
    if (!d.u64(next) || !d.done()) return damaged("meta");
  }
  if (auto put = txn.put(dbs.meta, counter, Encoder().u64(next + 1).str()); !put) return tl::unexpected(put.error());
  return next;
}

// RFC 3501 §2.3.1.1: UIDVALIDITY must grow when a name is reused; the clock usually does it, the
// stored last value makes sure of it when the clock steps back or two mailboxes share a second.
Result<uint32_t> next_uidvalidity(Txn& txn, const Dbs& dbs, int64_t now) {
  auto value = txn.get(dbs.meta, "last_uidvalidity");
  if (!value) return tl::unexpected(value.error());
  uint32_t last = 0;
  if (*value) {
    Decoder d(**value);
    if (!d.u32(last) || !d.done()) return damaged("meta");
  }
  uint32_t next = std::max<uint32_t>(static_cast<uint32_t>(std::clamp<int64_t>(now, 1, UINT32_MAX - 1)), last + 1);
  if (next == 0) next = 1;
  if (auto put = txn.put(dbs.meta, "last_uidvalidity", Encoder().u32(next).str()); !put) {
    return tl::unexpected(put.error());
  }
  return next;
}

struct DefaultMailbox {
  std::string_view name;
  uint32_t special_use;
};
// RFC 6154's special-use names, as the common clients expect them.
constexpr std::array<DefaultMailbox, 6> kDefaultMailboxes{{
    {"INBOX", 0},
    {"Drafts", kUseDrafts},
    {"Sent", kUseSent},
    {"Trash", kUseTrash},
    {"Junk", kUseJunk},
    {"Archive", kUseArchive},
}};

}  // namespace

Result<Dbs> Dbs::open(Txn& txn) {
  Dbs dbs;
  const std::pair<const char*, MDB_dbi*> names[] = {
      {"meta", &dbs.meta},
      {"users", &dbs.users},
      {"mailboxes", &dbs.mailboxes},
      {"mailbox_ids", &dbs.mailbox_ids},
      {"subscriptions", &dbs.subscriptions},
      {"messages", &dbs.messages},
      {"changes", &dbs.changes},
      {"bodies", &dbs.bodies},
      {"body_chunks", &dbs.body_chunks},
      {"deliveries", &dbs.deliveries},
      {"delivery_times", &dbs.delivery_times},
      {"deleted_mailboxes", &dbs.deleted_mailboxes},
  };
  for (auto [name, dbi] : names) {
    if (int rc = mdb_dbi_open(txn.get(), name, MDB_CREATE, dbi); rc != 0) {
      return tl::unexpected(common::lmdb::error(std::string("mdb_dbi_open ") + name, rc));
    }
  }
  auto version = txn.get(dbs.meta, "schema");
  if (!version) return tl::unexpected(version.error());
  if (!*version) {
    if (auto put = txn.put(dbs.meta, "schema", Encoder().u32(kSchemaVersion).str()); !put) {
      return tl::unexpected(put.error());
    }
  } else {
    Decoder d(**version);
    uint32_t v = 0;
    if (!d.u32(v) || !d.done()) return damaged("meta");
    if (v != kSchemaVersion) {
      return tl::unexpected(Error{ErrorKind::Config, "store schema version " + std::to_string(v) +
                                                         " is not the one this build reads (" +
                                                         std::to_string(kSchemaVersion) + ")"});
    }
  }
  return dbs;
}

std::string encode(const UserRecord& r) {
  return Encoder()
      .u8(kLayout)
      .u64(r.id)
      .i64(r.created)
      .u64(r.bytes_used)
      .u64(r.messages)
      .u64(r.quota_bytes)
      .u64(r.quota_messages)
      .str();
}

std::string encode(const MailboxRecord& r) {
  const bool history = r.vanished_floor != 0 || r.tombstones != 0;
  Encoder e;
  e.u8(history ? kMailboxLayout2 : kLayout)
      .u64(r.id)
      .u32(r.uidvalidity)
      .u32(r.uidnext)
      .u64(r.highestmodseq)
      .u32(r.messages)
      .u32(r.unseen)
      .u64(r.bytes)
      .u32(r.special_use)
      .i64(r.created);
  if (history) e.u64(r.vanished_floor).u32(r.tombstones);
  return std::move(e).str();
}

std::string encode(const MessageRecord& r) {
  Encoder e;
  e.u8(kLayout).u64(r.body_id).u64(r.modseq).i64(r.internal_date).u64(r.size).u32(r.flags).bytes(r.prefix);
  e.u16(static_cast<uint16_t>(r.keywords.size()));
  for (const auto& k : r.keywords) e.bytes(k);
  return std::move(e).str();
}

std::string encode(const BodyRecord& r) {
  return Encoder().u8(kLayout).u32(r.references).u64(r.size).u32(r.chunks).bytes(r.structure).str();
}

Result<UserRecord> decode_user(std::string_view v) {
  Decoder d(v);
  UserRecord r;
  uint8_t layout = 0;
  d.u8(layout);
  d.u64(r.id);
  d.i64(r.created);
  d.u64(r.bytes_used);
  d.u64(r.messages);
  d.u64(r.quota_bytes);
  d.u64(r.quota_messages);
  if (!d.done() || layout != kLayout) return damaged("user");
  return r;
}

Result<MailboxRecord> decode_mailbox(std::string_view v) {
  Decoder d(v);
  MailboxRecord r;
  uint8_t layout = 0;
  d.u8(layout);
  d.u64(r.id);
  d.u32(r.uidvalidity);
  d.u32(r.uidnext);
  d.u64(r.highestmodseq);
  d.u32(r.messages);
  d.u32(r.unseen);
  d.u64(r.bytes);
  d.u32(r.special_use);
  d.i64(r.created);
  if (layout == kMailboxLayout2) {
    d.u64(r.vanished_floor);
    d.u32(r.tombstones);
  } else if (layout != kLayout) {
    return damaged("mailbox");
  }
  if (!d.done()) return damaged("mailbox");
  return r;
}

std::string encode(const DeletedMailboxRecord& r) {
  return Encoder().u8(kLayout).u64(r.user_id).u32(r.messages).u64(r.bytes).bytes(r.name).str();
}

Result<DeletedMailboxRecord> decode_deleted_mailbox(std::string_view v) {
  Decoder d(v);
  DeletedMailboxRecord r;
  uint8_t layout = 0;
  std::string_view name;
  d.u8(layout);
  d.u64(r.user_id);
  d.u32(r.messages);
  d.u64(r.bytes);
  d.bytes(name);
  if (!d.done() || layout != kLayout) return damaged("deleted mailbox");
  r.name.assign(name);
  return r;
}

Result<MessageRecord> decode_message(std::string_view v) {
  Decoder d(v);
  MessageRecord r;
  uint8_t layout = 0;
  std::string_view prefix;
  uint16_t keywords = 0;
  d.u8(layout);
  d.u64(r.body_id);
  d.u64(r.modseq);
  d.i64(r.internal_date);
  d.u64(r.size);
  d.u32(r.flags);
  d.bytes(prefix);
  d.u16(keywords);
  if (!d.ok() || layout != kLayout || keywords > kMaxKeywords) return damaged("message");
  r.prefix.assign(prefix);
  for (uint16_t i = 0; i < keywords; ++i) {
    std::string_view k;
    if (!d.bytes(k)) return damaged("message");
    r.keywords.emplace_back(k);
  }
  if (!d.done()) return damaged("message");
  return r;
}

Result<BodyRecord> decode_body(std::string_view v) {
  Decoder d(v);
  BodyRecord r;
  uint8_t layout = 0;
  std::string_view structure;
  d.u8(layout);
  d.u32(r.references);
  d.u64(r.size);
  d.u32(r.chunks);
  d.bytes(structure);
  if (!d.done() || layout != kLayout) return damaged("body");
  r.structure.assign(structure);
  return r;
}

std::string user_key(std::string_view canonical) { return std::string(canonical); }
std::string mailbox_key(uint64_t user_id, std::string_view name) { return Encoder().u64(user_id).raw(name).str(); }
std::string message_key(uint64_t mailbox_id, uint32_t uid) { return Encoder().u64(mailbox_id).u32(uid).str(); }
std::string change_key(uint64_t mailbox_id, uint64_t modseq) { return Encoder().u64(mailbox_id).u64(modseq).str(); }
std::string chunk_key(uint64_t body_id, uint32_t chunk) { return Encoder().u64(body_id).u32(chunk).str(); }
std::string delivery_key(std::string_view delivery_id, std::string_view recipient) {
  return Encoder().raw(delivery_id).u8(0).raw(recipient).str();
}

Result<std::optional<UserRecord>> find_user(const Txn& txn, const Dbs& dbs, std::string_view canonical) {
  auto value = txn.get(dbs.users, user_key(canonical));
  if (!value) return tl::unexpected(value.error());
  if (!*value) return std::optional<UserRecord>{};
  auto user = decode_user(**value);
  if (!user) return tl::unexpected(user.error());
  return std::optional<UserRecord>{*user};
}

Result<UserRecord> create_user(Txn& txn, const Dbs& dbs, std::string_view canonical, int64_t now) {
  auto id = next_id(txn, dbs, "next_user");
  if (!id) return tl::unexpected(id.error());
  UserRecord user;
  user.id = *id;
  user.created = now;
  if (auto put = txn.put(dbs.users, user_key(canonical), encode(user)); !put) return tl::unexpected(put.error());
  for (const auto& mailbox : kDefaultMailboxes) {
    auto made = create_mailbox(txn, dbs, user.id, mailbox.name, mailbox.special_use, now);
    if (!made) return tl::unexpected(made.error());
    if (auto put = txn.put(dbs.subscriptions, mailbox_key(user.id, mailbox.name), ""); !put) {
      return tl::unexpected(put.error());
    }
  }
  return user;
}

Result<std::optional<MailboxRecord>> find_mailbox(const Txn& txn, const Dbs& dbs, uint64_t user_id,
                                                  std::string_view name) {
  auto value = txn.get(dbs.mailboxes, mailbox_key(user_id, name));
  if (!value) return tl::unexpected(value.error());
  if (!*value) return std::optional<MailboxRecord>{};
  auto mailbox = decode_mailbox(**value);
  if (!mailbox) return tl::unexpected(mailbox.error());
  return std::optional<MailboxRecord>{*mailbox};
}

Result<MailboxRecord> create_mailbox(Txn& txn, const Dbs& dbs, uint64_t user_id, std::string_view name,
                                     uint32_t special_use, int64_t now) {
  auto id = next_id(txn, dbs, "next_mailbox");
  if (!id) return tl::unexpected(id.error());
  auto uidvalidity = next_uidvalidity(txn, dbs, now);
  if (!uidvalidity) return tl::unexpected(uidvalidity.error());
  MailboxRecord mailbox;
  mailbox.id = *id;
  mailbox.uidvalidity = *uidvalidity;
  mailbox.special_use = special_use;
  mailbox.created = now;
  if (auto put = txn.put(dbs.mailboxes, mailbox_key(user_id, name), encode(mailbox)); !put) {
    return tl::unexpected(put.error());
  }
  if (auto put = txn.put(dbs.mailbox_ids, Encoder().u64(mailbox.id).str(), Encoder().u64(user_id).raw(name).str());
      !put) {
    return tl::unexpected(put.error());
  }
  return mailbox;
}

Result<std::vector<MailboxInfo>> list_mailboxes(const Txn& txn, const Dbs& dbs, uint64_t user_id) {
  std::vector<MailboxInfo> out;
  const std::string prefix = Encoder().u64(user_id).str();
  auto cursor = Cursor::open(txn, dbs.mailboxes);
  if (!cursor) return tl::unexpected(cursor.error());
  for (auto entry = cursor->seek(prefix); entry; entry = cursor->next()) {
    if (!*entry || !(*entry)->first.starts_with(prefix)) return out;
    auto record = decode_mailbox((*entry)->second);
    if (!record) return tl::unexpected(record.error());
    MailboxInfo info{std::string((*entry)->first.substr(prefix.size())), *record, false};
    auto subscribed = txn.get(dbs.subscriptions, (*entry)->first);
    if (!subscribed) return tl::unexpected(subscribed.error());
    info.subscribed = subscribed->has_value();
    out.push_back(std::move(info));
  }
  return tl::unexpected(Error{ErrorKind::Internal, "mailbox scan failed"});
}

Result<void> for_each_message(const Txn& txn, const Dbs& dbs, uint64_t mailbox_id, uint32_t first, uint32_t last,
                              const std::function<bool(uint32_t, const MessageRecord&)>& fn) {
  const std::string prefix = Encoder().u64(mailbox_id).str();
  auto cursor = Cursor::open(txn, dbs.messages);
  if (!cursor) return tl::unexpected(cursor.error());
  for (auto entry = cursor->seek(message_key(mailbox_id, first)); entry; entry = cursor->next()) {
    if (!*entry || !(*entry)->first.starts_with(prefix) || (*entry)->first.size() != prefix.size() + 4) return {};
    Decoder key((*entry)->first.substr(prefix.size()));
    uint32_t uid = 0;
    key.u32(uid);
    if (uid > last) return {};
    auto record = decode_message((*entry)->second);
    if (!record) return tl::unexpected(record.error());
    if (!fn(uid, *record)) return {};
  }
  return tl::unexpected(Error{ErrorKind::Internal, "message scan failed"});
}

Result<std::vector<MessageInfo>> list_messages(const Txn& txn, const Dbs& dbs, uint64_t mailbox_id, uint32_t first,
                                               uint32_t last) {
  std::vector<MessageInfo> out;
  auto scanned = for_each_message(txn, dbs, mailbox_id, first, last, [&](uint32_t uid, const MessageRecord& r) {
    out.push_back(MessageInfo{uid, r});
    return true;
  });
  if (!scanned) return tl::unexpected(scanned.error());
  return out;
}

Result<std::optional<BodyRecord>> find_body(const Txn& txn, const Dbs& dbs, uint64_t body_id) {
  auto value = txn.get(dbs.bodies, Encoder().u64(body_id).str());
  if (!value) return tl::unexpected(value.error());
  if (!*value) return std::optional<BodyRecord>{};
  auto body = decode_body(**value);
  if (!body) return tl::unexpected(body.error());
  return std::optional<BodyRecord>{std::move(*body)};
}

Result<std::string> message_bytes(const Txn& txn, const Dbs& dbs, const MessageRecord& message) {
  auto body = find_body(txn, dbs, message.body_id);
  if (!body) return tl::unexpected(body.error());
  if (!*body) return damaged("message (its body is missing)");
  std::string out = message.prefix;
  out.reserve(message.prefix.size() + (*body)->size);
  for (uint32_t i = 0; i < (*body)->chunks; ++i) {
    auto chunk = txn.get(dbs.body_chunks, chunk_key(message.body_id, i));
    if (!chunk) return tl::unexpected(chunk.error());
    if (!*chunk) return damaged("body (a chunk is missing)");
    out.append(**chunk);
  }
  if (out.size() != message.prefix.size() + (*body)->size) return damaged("body (its size)");
  return out;
}

Result<uint64_t> put_body(Txn& txn, const Dbs& dbs, std::string_view body, std::string_view structure) {
  auto id = next_id(txn, dbs, "next_body");
  if (!id) return tl::unexpected(id.error());
  BodyRecord record;
  record.size = body.size();
  record.chunks = static_cast<uint32_t>((body.size() + kBodyChunk - 1) / kBodyChunk);
  record.structure.assign(structure);
  for (uint32_t i = 0; i < record.chunks; ++i) {
    if (auto put = txn.put(dbs.body_chunks, chunk_key(*id, i), body.substr(size_t(i) * kBodyChunk, kBodyChunk));
        !put) {
      return tl::unexpected(put.error());
    }
  }
  if (auto put = txn.put(dbs.bodies, Encoder().u64(*id).str(), encode(record)); !put) {
    return tl::unexpected(put.error());
  }
  return *id;
}

std::string import_hold_key(uint64_t mailbox_id) { return Encoder().raw("import_hold/").u64(mailbox_id).str(); }

Result<bool> import_holds(Txn& txn, const Dbs& dbs, uint64_t mailbox_id) {
  auto hold = txn.get(dbs.meta, import_hold_key(mailbox_id));
  if (!hold) return tl::unexpected(hold.error());
  if (!*hold) return false;
  Decoder d(**hold);
  uint8_t v = 0;
  int64_t deadline = 0;
  return d.u8(v) && d.i64(deadline) && deadline > static_cast<int64_t>(std::time(nullptr));
}

Result<Filed> add_message(Txn& txn, const Dbs& dbs, const std::string& user_name, UserRecord& user,
                          std::string_view mailbox_name, uint64_t body_id, uint64_t body_size, MessageRecord message) {
  auto found = find_mailbox(txn, dbs, user.id, mailbox_name);
  if (!found) return tl::unexpected(found.error());
  if (!*found) return tl::unexpected(Error{ErrorKind::Internal, "no mailbox " + std::string(mailbox_name)});
  MailboxRecord mailbox = **found;
  auto held = import_holds(txn, dbs, mailbox.id);
  if (!held) return tl::unexpected(held.error());
  if (*held) {
    return tl::unexpected(Error{ErrorKind::TempFail, "mailbox " + std::string(mailbox_name) + " " + kImportHoldReason});
  }
  if (mailbox.uidnext == UINT32_MAX) {
    return tl::unexpected(Error{ErrorKind::Internal, "mailbox " + std::string(mailbox_name) + " has used every UID"});
  }
  const uint32_t uid = mailbox.uidnext++;
  message.modseq = ++mailbox.highestmodseq;
  message.body_id = body_id;
  message.size = message.prefix.size() + body_size;
  mailbox.messages += 1;
  if (!(message.flags & kSeen)) mailbox.unseen += 1;
  mailbox.bytes += message.size;
  user.messages += 1;
  user.bytes_used += message.size;

  auto body = find_body(txn, dbs, body_id);
  if (!body) return tl::unexpected(body.error());
  if (!*body) return damaged("body");
  (*body)->references += 1;

  const std::pair<MDB_dbi, std::pair<std::string, std::string>> puts[] = {
      {dbs.messages, {message_key(mailbox.id, uid), encode(message)}},
      {dbs.changes, {change_key(mailbox.id, message.modseq), Encoder().u32(uid).u8(0).str()}},
      {dbs.mailboxes, {mailbox_key(user.id, mailbox_name), encode(mailbox)}},
      {dbs.users, {user_key(user_name), encode(user)}},
      {dbs.bodies, {Encoder().u64(body_id).str(), encode(**body)}},
  };
  for (const auto& [dbi, kv] : puts) {
    if (auto put = txn.put(dbi, kv.first, kv.second); !put) return tl::unexpected(put.error());
  }
  return Filed{uid, mailbox};
}

}  // namespace store
