// lmdb.cpp: LMDB error classification and opening an environment with a private directory.
#include "common/lmdb/lmdb.hpp"

#include <sys/stat.h>

#include <cerrno>
#include <system_error>

namespace common::lmdb {

common::ErrorKind error_kind(int rc) {
  switch (rc) {
    case MDB_MAP_FULL:
    case MDB_MAP_RESIZED:
    case MDB_READERS_FULL:
    case MDB_TXN_FULL:
    case ENOSPC:
    case EDQUOT:
    case EIO:
      return common::ErrorKind::TempFail;
    default:
      return common::ErrorKind::Internal;
  }
}

namespace {

// What an operator reading the log line should do; empty when the code speaks for itself.
std::string_view hint(int rc) {
  switch (rc) {
    case MDB_MAP_FULL: return " (map full: the environment's map_size is used up; raise map_size)";
    case MDB_MAP_RESIZED: return " (another process grew the map; reopen the environment)";
    case MDB_READERS_FULL: return " (every reader slot is taken; raise max_readers)";
    case MDB_TXN_FULL: return " (one transaction dirtied too many pages)";
    case ENOSPC: return " (disk full: ENOSPC)";
    case EDQUOT: return " (disk quota exceeded: EDQUOT)";
    case EIO: return " (I/O error from the disk, or a short write on a full file system: EIO)";
    default: return "";
  }
}

}  // namespace

common::Error error(std::string_view what, int rc) {
  std::string detail(what);
  detail += ": ";
  detail += mdb_strerror(rc);
  detail += hint(rc);
  return common::Error{error_kind(rc), std::move(detail)};
}

common::Result<Env> open_env(const std::filesystem::path& path, const OpenOptions& options) {
  const bool read_only = (options.flags & MDB_RDONLY) != 0;
  const std::filesystem::path dir = (options.flags & MDB_NOSUBDIR) ? path.parent_path() : path;
  if (!read_only && !dir.empty()) {
    std::error_code ec;
    std::filesystem::create_directories(dir, ec);
    if (ec) return common::fail(ErrorKind::Config, "cannot create " + dir.string() + ": " + ec.message());
    // Mail, queue files and password hashes live here: owner only, whatever the umask was.
    std::filesystem::permissions(dir, std::filesystem::perms::owner_all, ec);
    if (ec) return common::fail(ErrorKind::Config, "cannot make " + dir.string() + " private: " + ec.message());
  }
  MDB_env* raw = nullptr;
  if (int rc = mdb_env_create(&raw); rc != 0) return tl::unexpected(error("mdb_env_create", rc));
  Env env(raw);
  if (int rc = mdb_env_set_maxdbs(raw, options.max_dbs); rc != 0)
    return tl::unexpected(error("mdb_env_set_maxdbs", rc));
  if (int rc = mdb_env_set_maxreaders(raw, options.max_readers); rc != 0)
    return tl::unexpected(error("mdb_env_set_maxreaders", rc));
  if (int rc = mdb_env_set_mapsize(raw, options.map_size); rc != 0)
    return tl::unexpected(error("mdb_env_set_mapsize", rc));
  if (int rc = mdb_env_open(raw, path.c_str(), options.flags, static_cast<mdb_mode_t>(options.file_mode)); rc != 0) {
    // A missing or foreign file is the configuration's fault; a full or failing disk is not.
    auto e = error("cannot open LMDB environment " + path.string(), rc);
    if (e.kind != ErrorKind::TempFail) e.kind = ErrorKind::Config;
    return tl::unexpected(std::move(e));
  }
  int dead = 0;
  mdb_reader_check(raw, &dead);  // best effort: a read-only opener may lack write access to the lock file
  return env;
}

common::Result<EnvUsage> env_usage(MDB_env* env) {
  MDB_envinfo info{};
  MDB_stat stat{};
  if (int rc = mdb_env_info(env, &info); rc != 0) return tl::unexpected(error("mdb_env_info", rc));
  if (int rc = mdb_env_stat(env, &stat); rc != 0) return tl::unexpected(error("mdb_env_stat", rc));
  return EnvUsage{info.me_mapsize, (info.me_last_pgno + 1) * size_t{stat.ms_psize}};
}

}  // namespace common::lmdb
