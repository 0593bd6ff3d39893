// lmdb.hpp: owned LMDB handles for the embedded directory: the environment, transactions that
// abort unless commit() succeeded, and cursors (CONVENTIONS "Handles are owned").
#pragma once

#include "common/deleter.hpp"
#include <lmdb.h>

#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>

#include "common/result.hpp"

namespace authserv::directory::lmdb {

using common::Deleter;
using Env = std::unique_ptr<MDB_env, Deleter<mdb_env_close>>;

// MDB_MAP_FULL and MDB_READERS_FULL are the operator's to fix (map size, readers), so Internal;
// MDB_MAP_RESIZED (another process grew the map) goes away when this process reopens: TempFail.
inline common::Error error(std::string_view what, int rc) {
  const auto kind = rc == MDB_MAP_RESIZED ? common::ErrorKind::TempFail : common::ErrorKind::Internal;
  return common::Error{kind, std::string(what) + ": " + mdb_strerror(rc)};
}

inline MDB_val val(std::string_view s) { return MDB_val{s.size(), const_cast<char*>(s.data())}; }
inline std::string_view view(const MDB_val& v) { return {static_cast<const char*>(v.mv_data), v.mv_size}; }

// Views returned by get() and Cursor point into the map: valid only while the Txn lives.
class Txn {
 public:
  static common::Result<Txn> begin(MDB_env* env, bool write) {
    MDB_txn* t = nullptr;
    if (int rc = mdb_txn_begin(env, nullptr, write ? 0 : MDB_RDONLY, &t); rc != 0)
      return tl::unexpected(error("mdb_txn_begin", rc));
    return Txn(t);
  }
  Txn(Txn&& o) noexcept : txn_(std::exchange(o.txn_, nullptr)) {}
  Txn& operator=(Txn&&) = delete;
  Txn(const Txn&) = delete;
  ~Txn() {
    if (txn_) mdb_txn_abort(txn_);
  }

  // The transaction is gone afterwards whatever the result (LMDB frees it on failure too).
  common::Result<void> commit() {
    const int rc = mdb_txn_commit(std::exchange(txn_, nullptr));
    if (rc != 0) return tl::unexpected(error("mdb_txn_commit", rc));
    return {};
  }
  MDB_txn* get() const { return txn_; }

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
  common::Result<bool> del(MDB_dbi dbi, std::string_view key) {
    MDB_val k = val(key);
    const int rc = mdb_del(txn_, dbi, &k, nullptr);
    if (rc == MDB_NOTFOUND) return false;
    if (rc != 0) return tl::unexpected(error("mdb_del", rc));
    return true;
  }

 private:
  explicit Txn(MDB_txn* t) : txn_(t) {}
  MDB_txn* txn_;
};

// Must not outlive its Txn (declare it after the Txn so it is destroyed first).
class Cursor {
 public:
  using Entry = std::pair<std::string_view, std::string_view>;
  static common::Result<Cursor> open(const Txn& txn, MDB_dbi dbi) {
    MDB_cursor* c = nullptr;
    if (int rc = mdb_cursor_open(txn.get(), dbi, &c); rc != 0)
      return tl::unexpected(error("mdb_cursor_open", rc));
    return Cursor(c);
  }
  Cursor(Cursor&& o) noexcept : c_(std::exchange(o.c_, nullptr)) {}
  Cursor& operator=(Cursor&&) = delete;
  ~Cursor() {
    if (c_) mdb_cursor_close(c_);
  }
  // The first entry with key >= from ("" = the first entry); nullopt past the end.
  common::Result<std::optional<Entry>> seek(std::string_view from) {
    MDB_val k = val(from), v{};
    return step(from.empty() ? MDB_FIRST : MDB_SET_RANGE, k, v);
  }
  common::Result<std::optional<Entry>> next() {
    MDB_val k{}, v{};
    return step(MDB_NEXT, k, v);
  }

 private:
  explicit Cursor(MDB_cursor* c) : c_(c) {}
  common::Result<std::optional<Entry>> step(MDB_cursor_op op, MDB_val& k, MDB_val& v) {
    const int rc = mdb_cursor_get(c_, &k, &v, op);
    if (rc == MDB_NOTFOUND) return std::optional<Entry>{};
    if (rc != 0) return tl::unexpected(error("mdb_cursor_get", rc));
    return std::optional<Entry>{Entry{view(k), view(v)}};
  }
  MDB_cursor* c_;
};

}  // namespace authserv::directory::lmdb
