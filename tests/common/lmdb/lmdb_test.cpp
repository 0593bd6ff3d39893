// lmdb_test.cpp: the LMDB wrappers against a real environment: open_env, put flags, dup deletes,
// cursor moves for backward UID scans, nested transactions, error kinds and a full map.
#include <catch2/catch.hpp>

#include <sys/stat.h>

#include <cerrno>
#include <string>
#include <vector>

#include "common/lmdb/lmdb.hpp"
#include "tests/support/process.hpp"

using common::ErrorKind;
using namespace common::lmdb;

namespace {

// Big-endian, so LMDB's byte order is numeric order (how the store keys UIDs).
std::string uid_key(uint32_t uid) {
  std::string k(4, '\0');
  for (int i = 0; i < 4; ++i) k[i] = static_cast<char>(uid >> (24 - 8 * i));
  return k;
}
uint32_t uid_of(std::string_view k) {
  uint32_t v = 0;
  for (char c : k) v = (v << 8) | static_cast<unsigned char>(c);
  return v;
}

struct Fixture {
  test::TempDir tmp;
  Env env;
  MDB_dbi kv = 0;
  MDB_dbi dups = 0;

  explicit Fixture(OpenOptions o = {}) {
    auto e = open_env(tmp / "env", o);
    REQUIRE(e);
    env = std::move(*e);
    auto txn = Txn::begin(env.get(), true);
    REQUIRE(txn);
    auto a = txn->open_dbi("kv", MDB_CREATE);
    auto b = txn->open_dbi("dups", MDB_CREATE | MDB_DUPSORT);
    REQUIRE(a);
    REQUIRE(b);
    kv = *a;
    dups = *b;
    REQUIRE(txn->commit());
  }
  std::optional<std::string> read(MDB_dbi dbi, std::string_view key) {
    auto txn = Txn::begin(env.get(), false);
    REQUIRE(txn);
    auto v = txn->get(dbi, key);
    REQUIRE(v);
    if (!*v) return std::nullopt;
    return std::string(**v);
  }
};

}  // namespace

TEST_CASE("open_env creates a private directory and refuses a missing one read-only", "[lmdb]") {
  test::TempDir tmp;
  const auto dir = tmp / "a" / "b";
  {
    auto env = open_env(dir, {.map_size = 1 << 20, .max_dbs = 2});
    REQUIRE(env);
  }
  struct stat st {};
  REQUIRE(::stat(dir.c_str(), &st) == 0);
  CHECK((st.st_mode & 0777) == 0700);
  REQUIRE(::stat((dir / "data.mdb").c_str(), &st) == 0);
  CHECK((st.st_mode & 0777) == 0600);
  CHECK(open_env(dir, {.flags = MDB_RDONLY | MDB_NOTLS}));  // existing: fine read-only

  auto missing = open_env(tmp / "missing", {.flags = MDB_RDONLY});
  REQUIRE_FALSE(missing);
  CHECK(missing.error().kind == ErrorKind::Config);
  CHECK(missing.error().detail.find("missing") != std::string::npos);
  CHECK_FALSE(std::filesystem::exists(tmp / "missing"));

  // MDB_NOSUBDIR: the path is the data file; its directory is what gets created.
  auto file = open_env(tmp / "c" / "store.mdb", {.flags = MDB_NOSUBDIR});
  REQUIRE(file);
  CHECK(std::filesystem::is_regular_file(tmp / "c" / "store.mdb"));
}

TEST_CASE("put flags report an existing key apart from failures", "[lmdb]") {
  Fixture f;
  auto txn = Txn::begin(f.env.get(), true);
  REQUIRE(txn);
  CHECK(txn->put(f.kv, "k", "v1", MDB_NOOVERWRITE) == PutResult::Stored);
  CHECK(txn->put(f.kv, "k", "v2", MDB_NOOVERWRITE) == PutResult::Exists);
  CHECK(**txn->get(f.kv, "k") == "v1");  // not overwritten
  REQUIRE(txn->put(f.kv, "k", "v3"));    // plain put overwrites
  CHECK(**txn->get(f.kv, "k") == "v3");

  // MDB_APPEND: in key order it is stored, out of order it is refused as Exists, not an error.
  // ("u" sorts after the "k" above, as new UIDs sort after the mailbox's existing ones.)
  CHECK(txn->put(f.kv, "u" + uid_key(10), "a", MDB_APPEND) == PutResult::Stored);
  CHECK(txn->put(f.kv, "u" + uid_key(11), "b", MDB_APPEND) == PutResult::Stored);
  CHECK(txn->put(f.kv, "u" + uid_key(5), "c", MDB_APPEND) == PutResult::Exists);
  CHECK_FALSE(*txn->get(f.kv, "u" + uid_key(5)));

  // A key over LMDB's limit is an error, not Exists.
  auto big = txn->put(f.kv, std::string(600, 'x'), "v", MDB_NOOVERWRITE);
  REQUIRE_FALSE(big);
  CHECK(big.error().kind == ErrorKind::Internal);
  CHECK(big.error().detail.find("mdb_put") == 0);

  CHECK(txn->put(f.dups, "kw", "1", MDB_NODUPDATA) == PutResult::Stored);
  CHECK(txn->put(f.dups, "kw", "1", MDB_NODUPDATA) == PutResult::Exists);
  REQUIRE(txn->commit());
}

TEST_CASE("del removes one duplicate or the whole key", "[lmdb]") {
  Fixture f;
  auto txn = Txn::begin(f.env.get(), true);
  REQUIRE(txn);
  for (auto v : {"1", "2", "3"}) REQUIRE(txn->put(f.dups, "flag", v));
  REQUIRE(txn->put(f.dups, "other", "9"));
  CHECK(*txn->del(f.dups, "flag", "2") == true);
  CHECK(*txn->del(f.dups, "flag", "2") == false);
  CHECK(*txn->del(f.dups, "flag", "7") == false);
  {
    auto cur = Cursor::open(*txn, f.dups);
    REQUIRE(cur);
    std::vector<std::string> values;
    for (auto e = cur->seek_exact("flag"); e && *e; e = cur->next_dup()) values.emplace_back((*e)->second);
    CHECK(values == std::vector<std::string>{"1", "3"});
    CHECK_FALSE(*cur->seek_exact("nope"));
  }
  CHECK(*txn->del(f.dups, "flag") == true);
  CHECK_FALSE(*txn->get(f.dups, "flag"));
  CHECK(**txn->get(f.dups, "other") == "9");
  CHECK(*txn->del(f.kv, "absent") == false);
  REQUIRE(txn->commit());
}

TEST_CASE("cursors scan UID ranges forwards and backwards", "[lmdb]") {
  Fixture f;
  {
    auto txn = Txn::begin(f.env.get(), true);
    REQUIRE(txn);
    for (uint32_t uid = 10; uid <= 100; uid += 10) REQUIRE(txn->put(f.kv, uid_key(uid), std::to_string(uid)));
    REQUIRE(txn->commit());
  }
  auto txn = Txn::begin(f.env.get(), false);
  REQUIRE(txn);
  auto cur = Cursor::open(*txn, f.kv);
  REQUIRE(cur);
  CHECK(uid_of((*cur->first())->first) == 10);
  CHECK(uid_of((*cur->last())->first) == 100);
  CHECK_FALSE(*cur->next());  // past the end
  CHECK(uid_of((*cur->prev())->first) == 90);
  CHECK(uid_of((*cur->seek(uid_key(35)))->first) == 40);
  CHECK(uid_of((*cur->seek_exact(uid_key(50)))->first) == 50);
  CHECK_FALSE(*cur->seek_exact(uid_key(55)));
  CHECK((*cur->seek("")).value().second == "10");

  // seek_le: at a key, between keys, past the last, before the first.
  CHECK(uid_of((*cur->seek_le(uid_key(60)))->first) == 60);
  CHECK(uid_of((*cur->seek_le(uid_key(65)))->first) == 60);
  CHECK(uid_of((*cur->seek_le(uid_key(1000)))->first) == 100);
  CHECK_FALSE(*cur->seek_le(uid_key(5)));

  // UIDs 25:75 newest first, as a FETCH of the latest messages walks them.
  std::vector<uint32_t> seen;
  for (auto e = cur->seek_le(uid_key(75)); e && *e && uid_of((*e)->first) >= 25; e = cur->prev())
    seen.push_back(uid_of((*e)->first));
  CHECK(seen == std::vector<uint32_t>{70, 60, 50, 40, 30});
}

TEST_CASE("a cursor deletes as it walks", "[lmdb]") {
  Fixture f;
  auto txn = Txn::begin(f.env.get(), true);
  REQUIRE(txn);
  for (uint32_t uid = 1; uid <= 6; ++uid) REQUIRE(txn->put(f.kv, uid_key(uid), "x"));
  {
    auto cur = Cursor::open(*txn, f.kv);
    REQUIRE(cur);
    for (auto e = cur->first(); e && *e; e = cur->next())
      if (uid_of((*e)->first) % 2 == 0) REQUIRE(cur->del());  // expunge the even UIDs
  }
  REQUIRE(txn->commit());
  CHECK(f.read(f.kv, uid_key(1)));
  CHECK_FALSE(f.read(f.kv, uid_key(2)));
  CHECK(f.read(f.kv, uid_key(5)));
  CHECK_FALSE(f.read(f.kv, uid_key(6)));
}

TEST_CASE("nested transactions fold into their parent or drop only their own changes", "[lmdb]") {
  Fixture f;
  {
    auto parent = Txn::begin(f.env.get(), true);
    REQUIRE(parent);
    REQUIRE(parent->put(f.kv, "p", "1"));
    {
      auto child = Txn::nested(*parent);
      REQUIRE(child);
      CHECK(**child->get(f.kv, "p") == "1");  // a child sees its parent's writes
      REQUIRE(child->put(f.kv, "kept", "2"));
      REQUIRE(child->commit());
    }
    {
      auto child = Txn::begin(f.env.get(), true, &*parent);
      REQUIRE(child);
      REQUIRE(child->put(f.kv, "dropped", "3"));
      REQUIRE(child->put(f.kv, "p", "changed"));
    }  // aborted
    CHECK(**parent->get(f.kv, "kept") == "2");
    CHECK_FALSE(*parent->get(f.kv, "dropped"));
    CHECK(**parent->get(f.kv, "p") == "1");
    REQUIRE(parent->commit());
  }
  CHECK(f.read(f.kv, "kept") == "2");
  CHECK_FALSE(f.read(f.kv, "dropped"));
  {
    // A committed child is still undone when its parent aborts.
    auto parent = Txn::begin(f.env.get(), true);
    REQUIRE(parent);
    auto child = Txn::nested(*parent);
    REQUIRE(child);
    REQUIRE(child->put(f.kv, "lost", "4"));
    REQUIRE(child->commit());
    parent->abort();
    CHECK(parent->get() == nullptr);
  }
  CHECK_FALSE(f.read(f.kv, "lost"));

  // No nesting under a read transaction.
  auto reader = Txn::begin(f.env.get(), false);
  REQUIRE(reader);
  auto bad = Txn::nested(*reader);
  REQUIRE_FALSE(bad);
  CHECK(bad.error().detail.find("nested") != std::string::npos);
}

TEST_CASE("error kinds: full map and disk are temporary, the rest internal", "[lmdb]") {
  auto map_full = error("mdb_put", MDB_MAP_FULL);
  CHECK(map_full.kind == ErrorKind::TempFail);
  CHECK(map_full.detail.find("MDB_MAP_FULL") != std::string::npos);
  CHECK(map_full.detail.find("map_size") != std::string::npos);
  auto disk = error("mdb_txn_commit", ENOSPC);
  CHECK(disk.kind == ErrorKind::TempFail);
  CHECK(disk.detail.find("disk full") != std::string::npos);
  CHECK(error("mdb_txn_commit", EIO).kind == ErrorKind::TempFail);
  CHECK(error("mdb_txn_begin", MDB_READERS_FULL).detail.find("max_readers") != std::string::npos);
  CHECK(error("mdb_get", MDB_CORRUPTED).kind == ErrorKind::Internal);
  CHECK(error("mdb_get", MDB_BAD_DBI).kind == ErrorKind::Internal);
}

TEST_CASE("a write past map_size fails as TempFail and leaves committed data intact", "[lmdb]") {
  Fixture f({.map_size = 256 * 1024});
  auto usage = env_usage(f.env.get());
  REQUIRE(usage);
  CHECK(usage->map_size == 256 * 1024);
  const size_t used_before = usage->used_bytes;

  const std::string value(4000, 'v');
  int committed = 0;
  common::Error failure{ErrorKind::Internal, ""};
  for (int i = 0; i < 1000; ++i) {
    auto txn = Txn::begin(f.env.get(), true);
    REQUIRE(txn);
    auto put = txn->put(f.kv, "k" + std::to_string(i), value);
    if (!put) {
      failure = put.error();
      break;
    }
    auto c = txn->commit();
    if (!c) {
      failure = c.error();
      break;
    }
    ++committed;
  }
  REQUIRE(committed > 10);
  REQUIRE(committed < 1000);
  CHECK(failure.kind == ErrorKind::TempFail);
  CHECK(failure.detail.find("MDB_MAP_FULL") != std::string::npos);
  CHECK(env_usage(f.env.get())->used_bytes > used_before);

  f.env.reset();
  auto again = open_env(f.tmp / "env", {.map_size = 256 * 1024});
  REQUIRE(again);
  auto txn = Txn::begin(again->get(), false);
  REQUIRE(txn);
  auto kv = txn->open_dbi("kv");
  REQUIRE(kv);
  for (int i = 0; i < committed; ++i) {
    auto v = txn->get(*kv, "k" + std::to_string(i));
    REQUIRE(v);
    REQUIRE(*v);
    CHECK(**v == value);
  }
}
