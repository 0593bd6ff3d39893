// admin_txn.hpp: postern-storectl's reads and its user creation inside one LMDB transaction, shared
// by the offline target (its own transactions) and the store's admin service (store/admin: its read
// transactions and its writer), so both answer the same.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string_view>
#include <vector>

#include "common/lmdb/lmdb.hpp"
#include "store/storage/schema.hpp"
#include "store/tools/target.hpp"

namespace store::tools {

// AlreadyExists for a user that is there.
OpResult<UserRecord> create_user_in(common::lmdb::Txn& txn, const Dbs& dbs, std::string_view user, int64_t now);
// One user (NotFound if missing), or every user in name order.
OpResult<std::vector<UserUsage>> usage_in(const common::lmdb::Txn& txn, const Dbs& dbs,
                                          std::optional<std::string_view> user);
// The mailbox's messages in UID order, one at a time, from this transaction's view.
OpResult<void> export_in(const common::lmdb::Txn& txn, const Dbs& dbs, std::string_view user, std::string_view mailbox,
                         const std::function<OpResult<void>(const ExportedMailbox&)>& begin,
                         const std::function<OpResult<void>(const ExportedMessage&)>& message);

}  // namespace store::tools
