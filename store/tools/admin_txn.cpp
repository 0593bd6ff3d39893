// admin_txn.cpp: storectl's reads and user creation in one transaction (admin_txn.hpp).
#include "store/tools/admin_txn.hpp"

namespace store::tools {
namespace {

using common::lmdb::Txn;
using ops::OpCode;

tl::unexpected<OpError> op_fail(OpCode code, std::string detail) { return tl::unexpected(OpError{code, std::move(detail)}); }
tl::unexpected<OpError> op_fail(const common::Error& e) { return tl::unexpected(ops::to_op_error(e)); }

}  // namespace

OpResult<UserRecord> create_user_in(Txn& txn, const Dbs& dbs, std::string_view user, int64_t now) {
  auto found = find_user(txn, dbs, user);
  if (!found) return op_fail(found.error());
  if (*found) return op_fail(OpCode::AlreadyExists, "user " + std::string(user) + " exists");
  return ops::create_user_if_missing(txn, dbs, user, now);
}

OpResult<std::vector<UserUsage>> usage_in(const Txn& txn, const Dbs& dbs, std::optional<std::string_view> user) {
  std::vector<UserUsage> out;
  auto add = [&](std::string name, const UserRecord& record) -> OpResult<void> {
    auto boxes = list_mailboxes(txn, dbs, record.id);
    if (!boxes) return op_fail(boxes.error());
    UserUsage u{std::move(name), record, {}};
    for (auto& b : *boxes) u.mailboxes.push_back(MailboxUsage{std::move(b.name), b.record, b.subscribed});
    out.push_back(std::move(u));
    return {};
  };
  if (user) {
    auto found = find_user(txn, dbs, *user);
    if (!found) return op_fail(found.error());
    if (!*found) return op_fail(OpCode::NotFound, "no user " + std::string(*user));
    if (auto a = add(std::string(*user), **found); !a) return tl::unexpected(a.error());
    return out;
  }
  auto cursor = common::lmdb::Cursor::open(txn, dbs.users);
  if (!cursor) return op_fail(cursor.error());
  auto entry = cursor->first();
  for (; entry && *entry; entry = cursor->next()) {
    auto record = decode_user((*entry)->second);
    if (!record) return op_fail(record.error());
    if (auto a = add(std::string((*entry)->first), *record); !a) return tl::unexpected(a.error());
  }
  if (!entry) return op_fail(entry.error());
  return out;
}

OpResult<void> export_in(const Txn& txn, const Dbs& dbs, std::string_view user, std::string_view mailbox,
                         const std::function<OpResult<void>(const ExportedMailbox&)>& begin,
                         const std::function<OpResult<void>(const ExportedMessage&)>& message) {
  auto box = ops::find_mailbox_named(txn, dbs, user, mailbox);
  if (!box) return tl::unexpected(box.error());
  ExportedMailbox head{box->name, box->record.uidvalidity, box->record.uidnext, box->record.messages};
  if (auto b = begin(head); !b) return b;
  std::optional<OpError> failed;
  auto scanned = ops::for_each_message(
      txn, dbs, user, ops::MailboxRef{box->record.id, box->record.uidvalidity}, ops::UidSet{{1, UINT32_MAX}},
      [&](const MessageInfo& m) {
        auto bytes = message_bytes(txn, dbs, m.record);
        if (!bytes) {
          failed = ops::to_op_error(bytes.error());
          failed->detail = "UID " + std::to_string(m.uid) + ": " + failed->detail;
          return false;
        }
        ExportedMessage out{m.uid, m.record.flags, m.record.keywords, m.record.internal_date, std::move(*bytes)};
        if (auto sent = message(out); !sent) {
          failed = sent.error();
          return false;
        }
        return true;
      });
  if (failed) return tl::unexpected(*failed);
  if (!scanned) return tl::unexpected(scanned.error());
  return {};
}

}  // namespace store::tools
