// delivery.cpp: filing one delivery (delivery.hpp).
#include "store/storage/delivery.hpp"

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

// Expired (delivery id, recipient) entries removed per delivery: enough to keep up with any
// delivery rate, few enough that no one delivery pays for a backlog.
constexpr int kExpirePerDelivery = 8;

Result<void> expire_deliveries(Txn& txn, const Dbs& dbs, int64_t now, std::chrono::seconds retention) {
  const int64_t cutoff = now - retention.count();
  for (int i = 0; i < kExpirePerDelivery; ++i) {
    std::string key;
    {
      auto cursor = Cursor::open(txn, dbs.delivery_times);
      if (!cursor) return tl::unexpected(cursor.error());
      auto entry = cursor->seek("");
      if (!entry) return tl::unexpected(entry.error());
      if (!*entry) return {};
      Decoder d((*entry)->first);
      int64_t when = 0;
      if (!d.i64(when)) return tl::unexpected(Error{ErrorKind::Internal, "damaged delivery_times key"});
      if (when >= cutoff) return {};
      key.assign((*entry)->first);
    }
    if (auto del = txn.del(dbs.deliveries, key.substr(8)); !del) return tl::unexpected(del.error());
    if (auto del = txn.del(dbs.delivery_times, key); !del) return tl::unexpected(del.error());
  }
  return {};
}

}  // namespace

std::string delivered_to_line(std::string_view address) { return "Delivered-To: " + std::string(address) + "\r\n"; }

Result<std::vector<RecipientResult>> file_delivery(Txn& txn, const Dbs& dbs, const Delivery& delivery, int64_t now,
                                                   std::chrono::seconds retention) {
  if (auto expired = expire_deliveries(txn, dbs, now, retention); !expired) return tl::unexpected(expired.error());
  std::vector<RecipientResult> results(delivery.recipients.size());
  uint64_t body_id = 0;
  for (size_t i = 0; i < delivery.recipients.size(); ++i) {
    const DeliveryRecipient& rcpt = delivery.recipients[i];
    RecipientResult& result = results[i];
    const std::string retry_key = delivery.delivery_id.empty() ? std::string() : delivery_key(delivery.delivery_id, rcpt.address);
    if (!retry_key.empty()) {
      auto seen = txn.get(dbs.deliveries, retry_key);
      if (!seen) return tl::unexpected(seen.error());
      if (*seen) {
        result.outcome = RecipientOutcome::Duplicate;
        continue;
      }
    }
    auto found = find_user(txn, dbs, rcpt.user);
    if (!found) return tl::unexpected(found.error());
    UserRecord user;
    if (*found) {
      user = **found;
    } else {
      auto created = create_user(txn, dbs, rcpt.user, now);
      if (!created) return tl::unexpected(created.error());
      user = *created;
    }
    user.quota_bytes = rcpt.quota_bytes;
    user.quota_messages = rcpt.quota_messages;
    MessageRecord message;
    message.internal_date = delivery.internal_date;
    message.prefix = delivered_to_line(rcpt.address);
    const uint64_t size = message.prefix.size() + delivery.body.size();
    if ((user.quota_bytes != 0 && user.bytes_used + size > user.quota_bytes) ||
        (user.quota_messages != 0 && user.messages + 1 > user.quota_messages)) {
      result.outcome = RecipientOutcome::OverQuota;
      continue;
    }
    result.mailbox = "INBOX";
    uint64_t mailbox_id = 0;
    if (!rcpt.folder.empty()) {
      auto folder = find_mailbox(txn, dbs, user.id, rcpt.folder);
      if (!folder) return tl::unexpected(folder.error());
      if (*folder) {
        result.mailbox = rcpt.folder;
        mailbox_id = (*folder)->id;
      }
    }
    if (mailbox_id == 0) {
      auto inbox = find_mailbox(txn, dbs, user.id, result.mailbox);
      if (!inbox) return tl::unexpected(inbox.error());
      if (*inbox) mailbox_id = (*inbox)->id;
    }
    if (mailbox_id != 0) {
      // Checked before the body is put, so a delivery held for every recipient leaves nothing.
      auto held = import_holds(txn, dbs, mailbox_id);
      if (!held) return tl::unexpected(held.error());
      if (*held) {
        result.outcome = RecipientOutcome::Held;
        continue;
      }
    }
    if (body_id == 0) {
      auto put = put_body(txn, dbs, delivery.body, delivery.structure);
      if (!put) return tl::unexpected(put.error());
      body_id = *put;
    }
    auto filed = add_message(txn, dbs, rcpt.user, user, result.mailbox, body_id, delivery.body.size(), std::move(message));
    if (!filed) return tl::unexpected(filed.error());
    result.uid = filed->uid;
    result.uidvalidity = filed->mailbox.uidvalidity;
    result.mailbox_id = filed->mailbox.id;
    result.modseq = filed->mailbox.highestmodseq;
    if (!retry_key.empty()) {
      const std::string value = Encoder().i64(now).u64(filed->mailbox.id).u32(result.uid).str();
      if (auto put = txn.put(dbs.deliveries, retry_key, value); !put) return tl::unexpected(put.error());
      if (auto put = txn.put(dbs.delivery_times, Encoder().i64(now).raw(retry_key).str(), ""); !put) {
        return tl::unexpected(put.error());
      }
    }
  }
  return results;
}

}  // namespace store
