// store_snapshot.hpp: the storectl tests' view of a store environment: opened directly to build a
// source store, and a mailbox read back whole (record, subscription, every message) to compare.
#pragma once

#include <algorithm>
#include <filesystem>
#include <string>
#include <vector>

#include <catch2/catch.hpp>

#include "common/lmdb/lmdb.hpp"
#include "store/storage/mailbox_ops.hpp"
#include "store/storage/schema.hpp"

namespace test {

// The environment opened directly, to build a source store and read results. Never open while an
// OfflineTarget of the same directory is open (one environment per process and directory).
struct RawEnv {
  common::lmdb::Env env;
  store::Dbs dbs;
  explicit RawEnv(const std::filesystem::path& dir) {
    common::lmdb::OpenOptions o;
    o.map_size = size_t{1} << 30;
    o.max_dbs = store::Dbs::kCount + 4;
    auto e = common::lmdb::open_env(dir, o);
    REQUIRE(e);
    env = std::move(*e);
    auto txn = common::lmdb::Txn::begin(env.get(), true);
    REQUIRE(txn);
    auto d = store::Dbs::open(*txn);
    REQUIRE(d);
    dbs = *d;
    REQUIRE(txn->commit());
  }
  template <class F>
  void write(F&& fn) {
    auto txn = common::lmdb::Txn::begin(env.get(), true);
    REQUIRE(txn);
    fn(*txn);
    REQUIRE(txn->commit());
  }
  template <class F>
  void read(F&& fn) {
    auto txn = common::lmdb::Txn::begin(env.get(), false);
    REQUIRE(txn);
    fn(*txn);
  }
};

struct Msg {
  uint32_t uid = 0;
  uint32_t flags = 0;
  std::vector<std::string> keywords;  // sorted: IMAP keeps a set
  int64_t date = 0;
  std::string bytes;
  bool operator==(const Msg&) const = default;
};
struct Box {
  bool exists = false;
  store::MailboxRecord record;
  bool subscribed = false;
  std::vector<Msg> messages;
};

inline Box snapshot(const std::filesystem::path& dir, const std::string& user, const std::string& mailbox) {
  Box out;
  RawEnv e(dir);
  e.read([&](const common::lmdb::Txn& txn) {
    auto u = store::find_user(txn, e.dbs, user);
    REQUIRE(u);
    if (!*u) return;
    auto boxes = store::list_mailboxes(txn, e.dbs, (*u)->id);
    REQUIRE(boxes);
    for (const auto& b : *boxes) {
      if (b.name == mailbox) {
        out.exists = true;
        out.record = b.record;
        out.subscribed = b.subscribed;
      }
    }
    if (!out.exists) return;
    auto list = store::list_messages(txn, e.dbs, out.record.id);
    REQUIRE(list);
    for (const auto& m : *list) {
      auto bytes = store::message_bytes(txn, e.dbs, m.record);
      REQUIRE(bytes);
      Msg msg{m.uid, m.record.flags, m.record.keywords, m.record.internal_date, *bytes};
      std::sort(msg.keywords.begin(), msg.keywords.end());
      out.messages.push_back(std::move(msg));
    }
  });
  return out;
}

inline uint64_t verify_problems(const std::filesystem::path& dir) {
  RawEnv e(dir);
  uint64_t problems = ~uint64_t{0};
  e.read([&](const common::lmdb::Txn& txn) {
    auto report = store::ops::verify_refcounts(txn, e.dbs);
    REQUIRE(report);
    for (const auto& d : report->details) UNSCOPED_INFO(d);
    problems = report->problems;
  });
  return problems;
}

}  // namespace test
