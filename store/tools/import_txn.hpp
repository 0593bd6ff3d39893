// import_txn.hpp: the writes of an import inside one LMDB write transaction: a mailbox that takes
// the source's UIDVALIDITY, and messages filed under the source's UIDs (the MailStore API's append
// always takes the next UID). Built on schema.hpp's put_body/add_message, so every other invariant
// (MODSEQ, `changes`, counters, references) is kept by the same code as a delivery. The offline
// target runs them in its own transactions; the store's admin service will run them on its writer.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <string_view>

#include "common/lmdb/lmdb.hpp"
#include "store/storage/schema.hpp"
#include "store/tools/target.hpp"

namespace store::tools {

// The mailbox is created when missing (ops::create_mailbox: parents too). When it has never held
// a message (no message, UIDNEXT 1) and the source's UIDVALIDITY is known, it takes that
// UIDVALIDITY, so clients that cached the source's UIDs keep their caches (RFC 3501 §2.3.1.1
// allows it: the mailbox's UIDs were never seen with its old value); `last_uidvalidity` is raised
// past it so later mailboxes still get new values. NotFound for a missing user.
OpResult<ImportStart> import_begin(common::lmdb::Txn& txn, const Dbs& dbs, std::string_view user,
                                   std::string_view mailbox, uint32_t source_uidvalidity, int64_t now);

// Files `messages` (their encoded structures beside them, same order). With start.keep_uids a
// message with a UID goes in under it (UIDs must ascend; one below the mailbox's UIDNEXT is
// skipped: already imported, or imported and expunged since), one without takes the next UID.
// FailedPrecondition when the mailbox's UIDVALIDITY is no longer start's (it was deleted and made
// again meanwhile); InvalidArgument for flag bits outside store::Flag or too many keywords.
OpResult<ImportBatchResult> import_messages(common::lmdb::Txn& txn, const Dbs& dbs, std::string_view user,
                                            const ImportStart& start, std::span<const ImportMessage> messages,
                                            std::span<const std::string> structures);

// keep_uids: UIDNEXT raised to source_uidnext when that is higher.
OpResult<void> import_finish(common::lmdb::Txn& txn, const Dbs& dbs, std::string_view user, const ImportStart& start,
                             uint32_t source_uidnext);

// An online import keeping the source's UIDs holds its mailbox until `deadline` (schema.hpp
// import_hold_key): add_message gives it no UID meanwhile, except to the import, which lifts the
// hold inside its own write (release_import) and puts it back after (hold_import). Returns the
// mailbox's id.
OpResult<uint64_t> hold_import(common::lmdb::Txn& txn, const Dbs& dbs, std::string_view user, const ImportStart& start,
                               int64_t deadline, uint64_t import_id);
OpResult<void> release_import(common::lmdb::Txn& txn, const Dbs& dbs, std::string_view user, const ImportStart& start);
// Holds whose deadline passed (an import whose client went away while the store was down).
OpResult<void> drop_stale_holds(common::lmdb::Txn& txn, const Dbs& dbs, int64_t now);

}  // namespace store::tools
