// delivery.hpp: one LMTP delivery filed in one transaction: the body written once, a message per
// local recipient (its Delivered-To line, quota, +detail folder), the delivery id remembered so a
// retry is answered without a second copy. Runs on the group-commit writer.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

#include "common/lmdb/lmdb.hpp"
#include "common/result.hpp"
#include "store/storage/schema.hpp"

namespace store {

struct DeliveryRecipient {
  std::string address;  // as given in RCPT TO (Delivered-To, and with the delivery id the retry key)
  std::string user;     // canonical name, as authserv returned it
  std::string folder;   // the +detail; the message goes there if such a mailbox exists, else INBOX
  uint64_t quota_bytes = 0;     // 0: none
  uint64_t quota_messages = 0;  // 0: none
};

struct Delivery {
  std::string delivery_id;  // the client's XID, or empty (no retry protection)
  std::string body;         // Return-Path line and the message as received
  std::string structure;    // store/mime encoding of the body's structure
  int64_t internal_date = 0;
  std::vector<DeliveryRecipient> recipients;
};

// Held: the mailbox is under an online import keeping its source's UIDs (import_holds), and
// takes no new UID until the import is done.
enum class RecipientOutcome { Delivered, Duplicate, OverQuota, Held };

struct RecipientResult {
  RecipientOutcome outcome = RecipientOutcome::Delivered;
  std::string mailbox;
  uint32_t uid = 0;
  uint32_t uidvalidity = 0;
  uint64_t mailbox_id = 0;  // Delivered: where it went, and its MODSEQ there (for the watchers)
  uint64_t modseq = 0;
};

// One result per recipient, in order. An error rolls the whole delivery back (the caller's nested
// transaction); a recipient over its quota or held is an outcome, and the others are still filed.
common::Result<std::vector<RecipientResult>> file_delivery(common::lmdb::Txn& txn, const Dbs& dbs,
                                                           const Delivery& delivery, int64_t now,
                                                           std::chrono::seconds retention);

// The Delivered-To line a recipient's copy starts with.
std::string delivered_to_line(std::string_view address);

}  // namespace store
