// offline.hpp: postern-storectl's offline target: the store's LMDB environment opened by the tool
// itself, for a stopped store. LMDB lets several processes share an environment (its writers take
// turns), so this is about the running store, not about the data: a long write here would stall
// its deliveries behind the one write lock, and its watchers (IMAP IDLE) would never hear of the
// change. So writes are refused while another process has the environment open, which LMDB's lock
// file shows (each process that opens it holds a shared fcntl lock on its first byte); reads (usage,
// verify without repair, export) may run beside a store, as its own readers do.
#pragma once

#include <sys/types.h>

#include <memory>
#include <optional>
#include <string>

#include "common/lmdb/lmdb.hpp"
#include "store/tools/target.hpp"

namespace store::tools {

struct OfflineOptions {
  std::string dir;  // [store] dir: data.mdb and lock.mdb
  // Address space, not disk: at least the store's [store] map_size, or a write past it gets MDB_MAP_FULL.
  uint64_t map_size = 64ull << 30;
  bool read_only = false;  // reads only: allowed beside a running store
};

// The pid of another process that has the environment in `dir` open, if any, from LMDB's lock file
// (F_GETLK on its first byte). Opens and closes the lock file: never call it in a process that
// has this environment open (closing any descriptor of a file drops the process's fcntl locks on
// it, LMDB's included); OfflineTarget keeps its own descriptor for that.
OpResult<std::optional<pid_t>> environment_user(const std::string& dir);

class OfflineTarget final : public Target {
 public:
  // NotFound when `dir` holds no environment (the store makes it at its first start);
  // FailedPrecondition naming the pid when another process has it open and `read_only` is false.
  static OpResult<std::unique_ptr<OfflineTarget>> open(const OfflineOptions& options);
  ~OfflineTarget() override;
  OfflineTarget(const OfflineTarget&) = delete;
  OfflineTarget& operator=(const OfflineTarget&) = delete;

  std::string describe() const override;
  OpResult<UserRecord> create_user(std::string_view user) override;
  OpResult<void> rename_user(std::string_view from, std::string_view to) override;
  OpResult<ops::DeletedUser> delete_user(std::string_view user) override;
  OpResult<std::vector<UserUsage>> usage(std::optional<std::string_view> user) override;
  OpResult<ops::VerifyReport> verify(bool repair) override;
  OpResult<void> export_mailbox(std::string_view user, std::string_view mailbox,
                                const std::function<OpResult<void>(const ExportedMailbox&)>& begin,
                                const std::function<OpResult<void>(const ExportedMessage&)>& message) override;
  OpResult<ImportStart> begin_import(std::string_view user, std::string_view mailbox,
                                     uint32_t source_uidvalidity) override;
  OpResult<ImportBatchResult> import_batch(std::string_view user, const ImportStart& start,
                                           std::vector<ImportMessage>&& batch) override;
  OpResult<void> finish_import(std::string_view user, const ImportStart& start, uint32_t source_uidnext) override;
  OpResult<void> subscribe(std::string_view user, const std::vector<std::string>& mailboxes) override;

 private:
  OfflineTarget() = default;
  // Before every write transaction: a store started since open() is noticed before it has to wait.
  OpResult<void> check_alone() const;
  using WriteFn = std::function<OpResult<void>(common::lmdb::Txn&)>;
  OpResult<void> write(const WriteFn& fn);
  using ReadFn = std::function<OpResult<void>(const common::lmdb::Txn&)>;
  OpResult<void> read(const ReadFn& fn) const;

  OfflineOptions options_;
  int lock_fd_ = -1;  // lock.mdb, held open until after the environment is closed
  common::lmdb::Env env_;
  Dbs dbs_;
};

}  // namespace store::tools
