// offline.cpp: the offline target on a stopped store's environment (offline.hpp).
#include "store/tools/offline.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <ctime>
#include <filesystem>

#include "store/mime/parser.hpp"
#include "store/tools/admin_txn.hpp"
#include "store/tools/import_txn.hpp"

namespace store::tools {
namespace {

using common::lmdb::Txn;
using ops::OpCode;

tl::unexpected<OpError> op_fail(OpCode code, std::string detail) { return tl::unexpected(OpError{code, std::move(detail)}); }
tl::unexpected<OpError> op_fail(const common::Error& e) { return tl::unexpected(ops::to_op_error(e)); }

int64_t now() { return static_cast<int64_t>(std::time(nullptr)); }

// Another process's lock on the first byte of LMDB's lock file: a shared one means it has the
// environment open, an exclusive one that it is opening it.
OpResult<std::optional<pid_t>> lock_holder(int fd, const std::string& path) {
  struct flock probe {};
  probe.l_type = F_WRLCK;
  probe.l_whence = SEEK_SET;
  probe.l_start = 0;
  probe.l_len = 1;
  if (::fcntl(fd, F_GETLK, &probe) != 0) {
    return op_fail(OpCode::Internal, "fcntl(F_GETLK) on " + path + ": " + std::strerror(errno));
  }
  if (probe.l_type == F_UNLCK) return std::optional<pid_t>{};
  return std::optional<pid_t>{probe.l_pid};
}

std::string in_use(const std::string& dir, pid_t pid) {
  return "the store environment in " + dir + " is open in process " + std::to_string(pid) +
         " (a running postern-store?): stop it before writing offline (reads run beside it)";
}

}  // namespace

OpResult<std::optional<pid_t>> environment_user(const std::string& dir) {
  const std::string path = (std::filesystem::path(dir) / "lock.mdb").string();
  const int fd = ::open(path.c_str(), O_RDWR | O_CLOEXEC);
  if (fd < 0) {
    if (errno == ENOENT) return std::optional<pid_t>{};
    return op_fail(OpCode::Internal, "cannot open " + path + ": " + std::strerror(errno));
  }
  auto holder = lock_holder(fd, path);
  ::close(fd);
  return holder;
}

OpResult<std::unique_ptr<OfflineTarget>> OfflineTarget::open(const OfflineOptions& options) {
  namespace fs = std::filesystem;
  std::error_code ec;
  if (!fs::is_regular_file(fs::path(options.dir) / "data.mdb", ec)) {
    return op_fail(OpCode::NotFound, "no store environment in " + options.dir +
                                         " (no data.mdb; postern-store creates it when it first starts)");
  }
  std::unique_ptr<OfflineTarget> t(new OfflineTarget());
  t->options_ = options;
  const std::string lock_path = (fs::path(options.dir) / "lock.mdb").string();
  // Ours for the environment's whole life (see environment_user); LMDB would create it the same way.
  t->lock_fd_ = ::open(lock_path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (t->lock_fd_ < 0) return op_fail(OpCode::Internal, "cannot open " + lock_path + ": " + std::strerror(errno));
  if (!options.read_only) {
    if (auto alone = t->check_alone(); !alone) return tl::unexpected(alone.error());
  }
  common::lmdb::OpenOptions env_options;
  env_options.map_size = options.map_size;
  env_options.max_dbs = Dbs::kCount + 4;
  auto env = common::lmdb::open_env(options.dir, env_options);
  if (!env) return op_fail(env.error());
  t->env_ = std::move(*env);
  auto txn = Txn::begin(t->env_.get(), true);
  if (!txn) return op_fail(txn.error());
  auto dbs = Dbs::open(*txn);
  if (!dbs) return op_fail(dbs.error());
  if (auto committed = txn->commit(); !committed) return op_fail(committed.error());
  t->dbs_ = *dbs;
  // A store that started between the check and our open holds its lock now.
  if (!options.read_only) {
    if (auto alone = t->check_alone(); !alone) return tl::unexpected(alone.error());
  }
  return t;
}

OfflineTarget::~OfflineTarget() {
  env_.reset();  // before the lock file's descriptor: closing that drops LMDB's locks
  if (lock_fd_ >= 0) ::close(lock_fd_);
}

std::string OfflineTarget::describe() const { return "offline " + options_.dir; }

OpResult<void> OfflineTarget::check_alone() const {
  auto holder = lock_holder(lock_fd_, options_.dir + "/lock.mdb");
  if (!holder) return tl::unexpected(holder.error());
  if (*holder) return op_fail(OpCode::FailedPrecondition, in_use(options_.dir, **holder));
  return {};
}

OpResult<void> OfflineTarget::write(const WriteFn& fn) {
  if (options_.read_only) return op_fail(OpCode::Internal, "a write on a target opened for reading");
  if (auto alone = check_alone(); !alone) return alone;
  auto txn = Txn::begin(env_.get(), true);
  if (!txn) return op_fail(txn.error());
  if (auto r = fn(*txn); !r) return r;
  // The commit is the fsync: nothing is reported done before it returned.
  if (auto committed = txn->commit(); !committed) return op_fail(committed.error());
  return {};
}

OpResult<void> OfflineTarget::read(const ReadFn& fn) const {
  auto txn = Txn::begin(env_.get(), false);
  if (!txn) return op_fail(txn.error());
  return fn(*txn);
}

OpResult<UserRecord> OfflineTarget::create_user(std::string_view user) {
  UserRecord out;
  auto r = write([&](Txn& txn) -> OpResult<void> {
    auto made = create_user_in(txn, dbs_, user, now());
    if (!made) return tl::unexpected(made.error());
    out = *made;
    return {};
  });
  if (!r) return tl::unexpected(r.error());
  return out;
}

OpResult<void> OfflineTarget::rename_user(std::string_view from, std::string_view to) {
  return write([&](Txn& txn) { return ops::rename_user(txn, dbs_, from, to); });
}

OpResult<ops::DeletedUser> OfflineTarget::delete_user(std::string_view user) {
  ops::DeletedUser out;
  auto r = write([&](Txn& txn) -> OpResult<void> {
    auto gone = ops::delete_user(txn, dbs_, user);
    if (!gone) return tl::unexpected(gone.error());
    out = std::move(*gone);
    return {};
  });
  if (!r) return tl::unexpected(r.error());
  return out;
}

OpResult<std::vector<UserUsage>> OfflineTarget::usage(std::optional<std::string_view> user) {
  std::vector<UserUsage> out;
  auto r = read([&](const Txn& txn) -> OpResult<void> {
    auto users = usage_in(txn, dbs_, user);
    if (!users) return tl::unexpected(users.error());
    out = std::move(*users);
    return {};
  });
  if (!r) return tl::unexpected(r.error());
  return out;
}

OpResult<ops::VerifyReport> OfflineTarget::verify(bool repair) {
  ops::VerifyReport out;
  auto r = repair ? write([&](Txn& txn) -> OpResult<void> {
    auto report = ops::verify_refcounts(txn, dbs_, true);
    if (!report) return tl::unexpected(report.error());
    out = std::move(*report);
    return {};
  })
                  : read([&](const Txn& txn) -> OpResult<void> {
                      auto report = ops::verify_refcounts(txn, dbs_);
                      if (!report) return tl::unexpected(report.error());
                      out = std::move(*report);
                      return {};
                    });
  if (!r) return tl::unexpected(r.error());
  return out;
}

OpResult<void> OfflineTarget::export_mailbox(std::string_view user, std::string_view mailbox,
                                             const std::function<OpResult<void>(const ExportedMailbox&)>& begin,
                                             const std::function<OpResult<void>(const ExportedMessage&)>& message) {
  // One read transaction: the export is one consistent view, whatever writes meanwhile.
  return read([&](const Txn& txn) { return export_in(txn, dbs_, user, mailbox, begin, message); });
}

OpResult<ImportStart> OfflineTarget::begin_import(std::string_view user, std::string_view mailbox,
                                                  uint32_t source_uidvalidity) {
  ImportStart out;
  auto r = write([&](Txn& txn) -> OpResult<void> {
    auto start = import_begin(txn, dbs_, user, mailbox, source_uidvalidity, now());
    if (!start) return tl::unexpected(start.error());
    out = std::move(*start);
    return {};
  });
  if (!r) return tl::unexpected(r.error());
  return out;
}

OpResult<ImportBatchResult> OfflineTarget::import_batch(std::string_view user, const ImportStart& start,
                                                        std::vector<ImportMessage>&& batch) {
  // The structures are parsed before the write transaction, so the write lock is held only for
  // the writes.
  std::vector<std::string> structures;
  structures.reserve(batch.size());
  for (const auto& m : batch) structures.push_back(mime::encode(mime::parse(m.bytes)));
  ImportBatchResult out;
  auto r = write([&](Txn& txn) -> OpResult<void> {
    auto done = import_messages(txn, dbs_, user, start, batch, structures);
    if (!done) return tl::unexpected(done.error());
    out = *done;
    return {};
  });
  if (!r) return tl::unexpected(r.error());
  return out;
}

OpResult<void> OfflineTarget::finish_import(std::string_view user, const ImportStart& start,
                                            uint32_t source_uidnext) {
  return write([&](Txn& txn) { return import_finish(txn, dbs_, user, start, source_uidnext); });
}

OpResult<void> OfflineTarget::subscribe(std::string_view user, const std::vector<std::string>& mailboxes) {
  return write([&](Txn& txn) -> OpResult<void> {
    for (const auto& name : mailboxes) {
      auto done = ops::subscribe(txn, dbs_, user, name, true);
      if (!done) return tl::unexpected(done.error());
    }
    return {};
  });
}

}  // namespace store::tools
