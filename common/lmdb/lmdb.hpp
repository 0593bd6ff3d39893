// lmdb.hpp: owned LMDB handles shared by the directory, the store and the mta queue: the environment,
// transactions (nested ones too) that abort unless commit() succeeded, and cursors.
#pragma once

#include <lmdb.h>

#include <cstddef>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>

#include "common/deleter.hpp"
#include "common/result.hpp"

namespace common::lmdb {

using Env = std::unique_ptr<MDB_env, common::Deleter<mdb_env_close>>;

// Conditions that pass without a code change (disk or map full, an I/O error, readers busy, another
// process grew the map) are TempFail, so a mail client is told "try again later" (4xx) and keeps the
// message; everything else (corruption, a bad handle) is Internal.
common::ErrorKind error_kind(int rc);
// "what: <mdb_strerror> (<what to do about it>)"; the hint names map_size for MDB_MAP_FULL.
common::Error error(std::string_view what, int rc);

inline MDB_val val(std::string_view s) { return MDB_val{s.size(), const_cast<char*>(s.data())}; }
inline std::string_view view(const MDB_val& v) { return {static_cast<const char*>(v.mv_data), v.mv_size}; }

struct OpenOptions {
  size_t map_size = size_t{1} << 30;  // address space reserved, not disk used; writes past it get MDB_MAP_FULL
  unsigned max_dbs = 16;
  unsigned max_readers = 126;  // LMDB's default; one slot per live read transaction (MDB_NOTLS)
  // mdb_env_open flags. Leave MDB_NOSYNC/MDB_NOMETASYNC out where a commit promises durability (the
  // group-commit writer refuses such an environment). MDB_RDONLY opens without creating anything.
  unsigned flags = MDB_NOTLS;
  unsigned file_mode = 0600;  // the data and lock files: mail and queue contents are private
};

// Creates the directory (owner-only, 0700) unless MDB_RDONLY, opens the environment and clears reader
// slots left by crashed processes (they would pin old pages and grow the file). With MDB_NOSUBDIR the
// path is the data file and its parent directory is created.
common::Result<Env> open_env(const std::filesystem::path& path, const OpenOptions& options = {});

struct EnvUsage {
  size_t map_size = 0;    // bytes the map may grow to
  size_t used_bytes = 0;  // high-water mark of pages in use (free pages inside are reused first)
};
common::Result<EnvUsage> env_usage(MDB_env* env);

// What put() with flags did: Exists is MDB_KEYEXIST, the answer to MDB_NOOVERWRITE (key present),
// MDB_NODUPDATA (pair present) and MDB_APPEND/MDB_APPENDDUP (key not after the last one), so a caller
// can tell "already there" from a failure without decoding LMDB codes.
enum class PutResult { Stored, Exists };

// Views returned by get() and Cursor point into the map: valid only while the Txn lives (and, in a
// write transaction, only until the next write). Copy them out first.
class Txn {
 public:
  // With a parent: a nested write transaction. Until it ends the parent must issue nothing but
  // commit/abort; committing it folds its changes into the parent, aborting drops only them.
  // Nested transactions need an environment without MDB_WRITEMAP.
  static common::Result<Txn> begin(MDB_env* env, bool write, Txn* parent = nullptr) {
    MDB_txn* t = nullptr;
    if (int rc = mdb_txn_begin(env, parent ? parent->get() : nullptr, write ? 0 : MDB_RDONLY, &t); rc != 0)
      return tl::unexpected(error(parent ? "mdb_txn_begin (nested)" : "mdb_txn_begin", rc));
    return Txn(t);
  }
  static common::Result<Txn> nested(Txn& parent) { return begin(mdb_txn_env(parent.get()), true, &parent); }

  Txn(Txn&& o) noexcept : txn_(std::exchange(o.txn_, nullptr)) {}
  Txn& operator=(Txn&&) = delete;
  Txn(const Txn&) = delete;
  ~Txn() { abort(); }

  // The transaction is gone afterwards whatever the result (LMDB frees it on failure too).
  common::Result<void> commit() {
    const int rc = mdb_txn_commit(std::exchange(txn_, nullptr));
    if (rc != 0) return tl::unexpected(error("mdb_txn_commit", rc));
    return {};
  }
  void abort() {
    if (txn_) mdb_txn_abort(std::exchange(txn_, nullptr));
  }
  MDB_txn* get() const { return txn_; }

  // MDB_CREATE in flags (write transactions) creates the table. The handle outlives this
  // transaction only once the transaction that opened it committed.
  common::Result<MDB_dbi> open_dbi(const char* name, unsigned flags = 0) {
    MDB_dbi dbi = 0;
    if (int rc = mdb_dbi_open(txn_, name, flags, &dbi); rc != 0)
      return tl::unexpected(error(std::string("mdb_dbi_open ") + (name ? name : "(main)"), rc));
    return dbi;
  }

  common::Result<std::optional<std::string_view>> get(MDB_dbi dbi, std::string_view key) const {
    MDB_val k = val(key), v{};
    const int rc = mdb_get(txn_, dbi, &k, &v);
    if (rc == MDB_NOTFOUND) return std::optional<std::string_view>{};
    if (rc != 0) return tl::unexpected(error("mdb_get", rc));
    return std::optional<std::string_view>{view(v)};
  }
  common::Result<void> put(MDB_dbi dbi, std::string_view key, std::string_view value) {
    MDB_val k = val(key), v = val(value);
    if (int rc = mdb_put(txn_, dbi, &k, &v, 0); rc != 0) return tl::unexpected(error("mdb_put", rc));
    return {};
  }
  // MDB_NOOVERWRITE, MDB_NODUPDATA, MDB_APPEND, MDB_APPENDDUP: see PutResult.
  common::Result<PutResult> put(MDB_dbi dbi, std::string_view key, std::string_view value, unsigned flags) {
    MDB_val k = val(key), v = val(value);
    const int rc = mdb_put(txn_, dbi, &k, &v, flags);
    if (rc == MDB_KEYEXIST) return PutResult::Exists;
    if (rc != 0) return tl::unexpected(error("mdb_put", rc));
    return PutResult::Stored;
  }
  // The key with all its values; false when it was not there.
  common::Result<bool> del(MDB_dbi dbi, std::string_view key) { return del_impl(dbi, key, nullptr); }
  // One value of a MDB_DUPSORT key; false when that pair was not there.
  common::Result<bool> del(MDB_dbi dbi, std::string_view key, std::string_view value) {
    MDB_val v = val(value);
    return del_impl(dbi, key, &v);
  }

 private:
  explicit Txn(MDB_txn* t) : txn_(t) {}
  common::Result<bool> del_impl(MDB_dbi dbi, std::string_view key, MDB_val* value) {
    MDB_val k = val(key);
    const int rc = mdb_del(txn_, dbi, &k, value);
    if (rc == MDB_NOTFOUND) return false;
    if (rc != 0) return tl::unexpected(error("mdb_del", rc));
    return true;
  }
  MDB_txn* txn_;
};

// Must not outlive its Txn (declare it after the Txn so it is destroyed first). Every move returns
// the entry it lands on, or nullopt when there is none (past either end, key absent).
class Cursor {
 public:
  using Entry = std::pair<std::string_view, std::string_view>;
  using Step = common::Result<std::optional<Entry>>;

  static common::Result<Cursor> open(const Txn& txn, MDB_dbi dbi) {
    MDB_cursor* c = nullptr;
    if (int rc = mdb_cursor_open(txn.get(), dbi, &c); rc != 0) return tl::unexpected(error("mdb_cursor_open", rc));
    return Cursor(c);
  }
  Cursor(Cursor&& o) noexcept : c_(std::exchange(o.c_, nullptr)) {}
  Cursor& operator=(Cursor&&) = delete;
  ~Cursor() {
    if (c_) mdb_cursor_close(c_);
  }

  // The first entry with key >= from ("" = the first entry).
  Step seek(std::string_view from) {
    MDB_val k = val(from), v{};
    return step(from.empty() ? MDB_FIRST : MDB_SET_RANGE, k, v);
  }
  // The entry with exactly this key (its first value in a MDB_DUPSORT table).
  Step seek_exact(std::string_view key) {
    MDB_val k = val(key), v{};
    return step(MDB_SET_KEY, k, v);
  }
  // The last entry with key <= at: where a backward scan over a range starts (newest UID first).
  Step seek_le(std::string_view at) {
    auto r = seek(at);
    if (!r) return r;
    if (!*r) return last();
    if ((*r)->first == at) return r;
    return prev();
  }
  Step first() {
    MDB_val k{}, v{};
    return step(MDB_FIRST, k, v);
  }
  Step last() {
    MDB_val k{}, v{};
    return step(MDB_LAST, k, v);
  }
  Step next() {
    MDB_val k{}, v{};
    return step(MDB_NEXT, k, v);
  }
  Step prev() {
    MDB_val k{}, v{};
    return step(MDB_PREV, k, v);
  }
  // The next value of the current key in a MDB_DUPSORT table; nullopt after its last value.
  Step next_dup() {
    MDB_val k{}, v{};
    return step(MDB_NEXT_DUP, k, v);
  }
  // Deletes the entry under the cursor (write transactions); next() then lands on its successor.
  common::Result<void> del() {
    if (int rc = mdb_cursor_del(c_, 0); rc != 0) return tl::unexpected(error("mdb_cursor_del", rc));
    return {};
  }

 private:
  explicit Cursor(MDB_cursor* c) : c_(c) {}
  Step step(MDB_cursor_op op, MDB_val& k, MDB_val& v) {
    const int rc = mdb_cursor_get(c_, &k, &v, op);
    if (rc == MDB_NOTFOUND) return std::optional<Entry>{};
    if (rc != 0) return tl::unexpected(error("mdb_cursor_get", rc));
    return std::optional<Entry>{Entry{view(k), view(v)}};
  }
  MDB_cursor* c_;
};

}  // namespace common::lmdb
