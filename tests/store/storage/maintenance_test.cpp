// maintenance_test.cpp: the store's background batches (store/storage/maintenance.hpp) on a real
// MessageStore and a real loop: a 50,000-message DELETE freed in batches while other writes go
// through, a kill -9 halfway through resumed from what is on disk, expunge history pruned.
#include <csignal>
#include <sys/wait.h>
#include <unistd.h>

#include <catch2/catch.hpp>

#include "common/lmdb/codec.hpp"
#include "common/runtime/loop.hpp"
#include "common/runtime/timer.hpp"
#include "store/storage/mailbox_ops.hpp"
#include "store/storage/maintenance.hpp"
#include "store/storage/message_store.hpp"
#include "tests/support/process.hpp"

namespace {

using common::lmdb::Cursor;
using common::lmdb::Txn;
using store::Dbs;
using namespace store::ops;
using namespace std::chrono_literals;

const std::string kAlice = "alice@example.com";

std::string message(int i) {
  return "From: a@example.org\r\nSubject: m" + std::to_string(i) + "\r\n\r\nbody " + std::to_string(i) + "\r\n";
}

// The environment without the store's writer: to fill it fast, and to look at it between runs.
class RawEnv {
 public:
  explicit RawEnv(const std::filesystem::path& dir) {
    common::lmdb::OpenOptions options;
    options.map_size = 1ull << 30;
    options.max_dbs = Dbs::kCount + 4;
    auto env = common::lmdb::open_env(dir, options);
    REQUIRE(env);
    env_ = std::move(*env);
    auto txn = Txn::begin(env_.get(), true);
    REQUIRE(txn);
    auto dbs = Dbs::open(*txn);
    REQUIRE(dbs);
    dbs_ = *dbs;
    REQUIRE(txn->commit());
  }
  template <class Fn>
  void write(Fn&& fn) {
    auto txn = Txn::begin(env_.get(), true);
    REQUIRE(txn);
    fn(*txn, dbs_);
    REQUIRE(txn->commit());
  }
  template <class Fn>
  auto read(Fn&& fn) const {
    auto txn = Txn::begin(env_.get(), false);
    REQUIRE(txn);
    return fn(*txn, dbs_);
  }

 private:
  common::lmdb::Env env_;
  Dbs dbs_;
};

uint64_t count_prefix(const Txn& txn, MDB_dbi dbi, uint64_t id) {
  const std::string prefix = common::lmdb::Encoder().u64(id).str();
  auto cursor = Cursor::open(txn, dbi);
  REQUIRE(cursor);
  uint64_t n = 0;
  for (auto e = cursor->seek(prefix);; e = cursor->next()) {
    REQUIRE(e);
    if (!*e || !(*e)->first.starts_with(prefix)) return n;
    ++n;
  }
}

uint64_t entries(const Txn& txn, MDB_dbi dbi) {
  MDB_stat st{};
  REQUIRE(mdb_stat(txn.get(), dbi, &st) == 0);
  return st.ms_entries;
}

void check_clean(const Txn& txn, const Dbs& dbs) {
  auto report = verify_refcounts(txn, dbs);
  REQUIRE(report);
  std::string all;
  for (const auto& line : report->details) all += line + "\n";
  INFO(all);
  CHECK(report->problems == 0);
}

// `count` messages in a new mailbox "Big", the first `shared` of them copied to "Keep". Returns Big's id.
uint64_t fill(RawEnv& env, int count, uint32_t shared) {
  uint64_t id = 0;
  env.write([&](Txn& t, const Dbs& d) {
    REQUIRE(create_user_if_missing(t, d, kAlice, 1700000000));
    REQUIRE(create_mailbox(t, d, kAlice, "Big", 0, 1700000000));
    REQUIRE(create_mailbox(t, d, kAlice, "Keep", 0, 1700000000));
  });
  for (int done = 0; done < count;) {
    env.write([&](Txn& t, const Dbs& d) {
      for (int n = 0; n < 10000 && done < count; ++n, ++done) {
        REQUIRE(append_message(t, d, kAlice, "Big", message(done), {}, 1700000100));
      }
    });
  }
  env.write([&](Txn& t, const Dbs& d) {
    auto big = find_mailbox_named(t, d, kAlice, "Big");
    REQUIRE(big);
    id = big->record.id;
    REQUIRE(copy_messages(t, d, kAlice, MailboxRef{id, big->record.uidvalidity}, {{1, shared}}, "Keep", false));
  });
  return id;
}

// Every message left is in Keep (or the mailboxes named), and each of Keep's bodies has one reference.
void check_keep(const Txn& t, const Dbs& d, uint32_t shared) {
  auto keep = find_mailbox_named(t, d, kAlice, "Keep");
  REQUIRE(keep);
  CHECK(keep->record.messages == shared);
  uint32_t seen = 0;
  REQUIRE(for_each_message(t, d, kAlice, MailboxRef{keep->record.id, keep->record.uidvalidity}, {{1, UINT32_MAX}},
                           [&](const store::MessageInfo& m) {
                             auto b = store::find_body(t, d, m.record.body_id);
                             REQUIRE(b);
                             REQUIRE(*b);
                             CHECK((*b)->references == 1);
                             ++seen;
                             return true;
                           }));
  CHECK(seen == shared);
}

// Runs the loop until `done` says so (checked after each batch) or a minute passes.
void run_until(common::runtime::Loop& loop, store::Maintenance& m, std::function<bool(const store::MaintenanceStats&)> done,
               std::chrono::milliseconds limit = 120s) {
  bool timed_out = false;
  common::runtime::Timer guard(loop.get());
  guard.start(limit, [&] {
    timed_out = true;
    loop.stop();
  });
  m.on_batch([&](const store::MaintenanceStats& s) {
    if (done(s)) loop.stop();
  });
  loop.run();
  m.on_batch(nullptr);
  guard.stop();
  REQUIRE_FALSE(timed_out);
}

store::MessageStoreOptions store_options(const std::filesystem::path& dir) {
  store::MessageStoreOptions o;
  o.dir = dir.string();
  o.map_size = 1ull << 30;
  return o;
}

}  // namespace

TEST_CASE("maintenance: a 50,000-message DELETE is at once, the name is reused, the messages freed in batches",
          "[maintenance]") {
  test::TempDir dir;
  const auto path = dir / "store";
  std::filesystem::create_directories(path);
  constexpr uint32_t kShared = 1000;
  uint64_t big_id = 0;
  {
    RawEnv env(path);
    big_id = fill(env, 50000, kShared);
  }
  common::runtime::Loop loop;
  auto opened = store::MessageStore::open(store_options(path));
  REQUIRE(opened);
  store::MessageStore& st = **opened;
  std::shared_ptr<int> alive = std::make_shared<int>(0);

  // DELETE, then CREATE of the same name at once, each one writer transaction.
  std::optional<DeletedMailbox> deleted;
  std::optional<CreatedMailbox> created;
  int answered = 0;
  common::runtime::Timer guard(loop.get());
  guard.start(60s, [&] { loop.stop(); });
  REQUIRE(st.write(loop, alive,
                   [&](Txn& t, const Dbs& d, std::vector<store::MailboxChange>&) -> common::Result<void> {
                     auto r = delete_mailbox(t, d, kAlice, "Big");
                     if (!r) return tl::unexpected(common::Error{common::ErrorKind::Internal, r.error().detail});
                     deleted = *r;
                     return {};
                   },
                   [&](common::Result<void> r) {
                     REQUIRE(r);
                     ++answered;
                   }));
  REQUIRE(st.write(loop, alive,
                   [&](Txn& t, const Dbs& d, std::vector<store::MailboxChange>&) -> common::Result<void> {
                     auto r = create_mailbox(t, d, kAlice, "Big", 0, 1700000200);
                     if (!r) return tl::unexpected(common::Error{common::ErrorKind::Internal, r.error().detail});
                     created = *r;
                     if (!append_message(t, d, kAlice, "Big", message(-1), {}, 1700000300)) {
                       return tl::unexpected(common::Error{common::ErrorKind::Internal, "append"});
                     }
                     return {};
                   },
                   [&](common::Result<void> r) {
                     REQUIRE(r);
                     if (++answered == 2) loop.stop();
                   }));
  loop.run();
  guard.stop();
  REQUIRE(answered == 2);
  REQUIRE(deleted);
  REQUIRE(created);
  CHECK(deleted->expunged == 50000);
  CHECK_FALSE(deleted->freed);
  CHECK(created->record.id != big_id);
  REQUIRE(st.read([&](const Txn& t, const Dbs& d) -> common::Result<void> {
    // Before any batch: the old id answers as missing, the user's counters are what is visible.
    auto old = resolve_mailbox(t, d, kAlice, MailboxRef{big_id, deleted->record.uidvalidity});
    REQUIRE_FALSE(old);
    CHECK(old.error().code == OpCode::NotFound);
    auto q = quota(t, d, kAlice);
    REQUIRE(q);
    CHECK(q->messages_used == kShared + 1);
    CHECK(pending_deletions(t, d).value() == 1);
    CHECK(count_prefix(t, d.messages, big_id) == 50000 - FreeLimits{}.messages);
    check_clean(t, d);
    return {};
  }));

  store::MaintenanceOptions options;
  options.poll = 10ms;
  options.pause = 1ms;
  options.free.messages = 1000;
  auto m = store::Maintenance::start(loop, st, options);
  // A write submitted while the batches run commits between two of them, not after the last.
  uint64_t interleaved_at = 0;
  bool submitted = false;
  run_until(loop, *m, [&](const store::MaintenanceStats& s) {
    if (s.free_batches == 10 && !submitted) {
      submitted = true;
      REQUIRE(st.write(loop, alive,
                       [](Txn& t, const Dbs& d, std::vector<store::MailboxChange>&) -> common::Result<void> {
                         if (!append_message(t, d, kAlice, "INBOX", message(-2), {}, 1700000400)) {
                           return tl::unexpected(common::Error{common::ErrorKind::Internal, "append"});
                         }
                         return {};
                       },
                       [&](common::Result<void> r) {
                         REQUIRE(r);
                         interleaved_at = m->stats().free_batches;
                       }));
    }
    return s.mailboxes_freed == 1;
  });
  const store::MaintenanceStats stats = m->stats();
  CHECK(stats.messages_freed == 50000 - FreeLimits{}.messages);
  CHECK(stats.free_batches >= 49);
  CHECK(stats.errors == 0);
  CHECK(interleaved_at > 0);
  CHECK(interleaved_at <= 11);
  REQUIRE(st.read([&](const Txn& t, const Dbs& d) -> common::Result<void> {
    CHECK(pending_deletions(t, d).value() == 0);
    CHECK(count_prefix(t, d.messages, big_id) == 0);
    CHECK(count_prefix(t, d.changes, big_id) == 0);
    // Keep's 1,000 bodies (now one reference each), the new Big's message, the INBOX append.
    CHECK(entries(t, d.messages) == kShared + 2);
    CHECK(entries(t, d.bodies) == kShared + 2);
    CHECK(entries(t, d.body_chunks) == kShared + 2);
    check_keep(t, d, kShared);
    auto big = find_mailbox_named(t, d, kAlice, "Big");
    REQUIRE(big);
    CHECK(big->record.messages == 1);
    check_clean(t, d);
    return {};
  }));
  m.reset();
}

TEST_CASE("maintenance: killed with SIGKILL halfway through a DELETE's batches, it finishes after a restart",
          "[maintenance]") {
  test::TempDir dir;
  const auto path = dir / "store";
  std::filesystem::create_directories(path);
  constexpr uint32_t kShared = 300;
  uint64_t big_id = 0;
  {
    RawEnv env(path);
    big_id = fill(env, 20000, kShared);
    env.write([&](Txn& t, const Dbs& d) { REQUIRE(delete_mailbox(t, d, kAlice, "Big")); });
    env.read([&](const Txn& t, const Dbs& d) {
      CHECK(count_prefix(t, d.messages, big_id) == 19000);
      return 0;
    });
  }
  constexpr uint64_t kBatch = 500;
  const pid_t child = fork();
  REQUIRE(child >= 0);
  if (child == 0) {
    // The store process: five batches commit, then it dies without any cleanup.
    common::runtime::Loop loop;
    auto opened = store::MessageStore::open(store_options(path));
    if (!opened) _exit(2);
    store::MaintenanceOptions options;
    options.poll = 10ms;
    options.pause = 0ms;
    options.free.messages = kBatch;
    auto m = store::Maintenance::start(loop, **opened, options);
    m->on_batch([](const store::MaintenanceStats& s) {
      if (s.free_batches == 5) raise(SIGKILL);
    });
    common::runtime::Timer guard(loop.get());
    guard.start(120s, [&] { loop.stop(); });
    loop.run();
    _exit(3);
  }
  int status = 0;
  REQUIRE(waitpid(child, &status, 0) == child);
  REQUIRE(WIFSIGNALED(status));
  CHECK(WTERMSIG(status) == SIGKILL);
  {
    // What is on disk: five whole batches freed, nothing of a sixth, and consistent.
    RawEnv env(path);
    env.read([&](const Txn& t, const Dbs& d) {
      CHECK(pending_deletions(t, d).value() == 1);
      CHECK(count_prefix(t, d.messages, big_id) == 19000 - 5 * kBatch);
      check_clean(t, d);
      return 0;
    });
  }
  // The restart: the store picks up from the deleted_mailboxes entry.
  common::runtime::Loop loop;
  auto opened = store::MessageStore::open(store_options(path));
  REQUIRE(opened);
  store::MaintenanceOptions options;
  options.poll = 10ms;
  options.pause = 0ms;
  options.free.messages = kBatch;
  auto m = store::Maintenance::start(loop, **opened, options);
  run_until(loop, *m, [](const store::MaintenanceStats& s) { return s.mailboxes_freed == 1; });
  CHECK(m->stats().messages_freed == 19000 - 5 * kBatch);
  REQUIRE((*opened)->read([&](const Txn& t, const Dbs& d) -> common::Result<void> {
    CHECK(pending_deletions(t, d).value() == 0);
    CHECK(count_prefix(t, d.messages, big_id) == 0);
    CHECK(count_prefix(t, d.changes, big_id) == 0);
    CHECK(entries(t, d.messages) == kShared);
    CHECK(entries(t, d.bodies) == kShared);
    check_keep(t, d, kShared);
    check_clean(t, d);
    return {};
  }));
  m.reset();
}

TEST_CASE("maintenance: a walk prunes expunge history past the limit, oldest first", "[maintenance]") {
  test::TempDir dir;
  const auto path = dir / "store";
  std::filesystem::create_directories(path);
  MailboxRef ref;
  uint64_t first_expunge = 0;
  {
    RawEnv env(path);
    fill(env, 60, 0);
    env.write([&](Txn& t, const Dbs& d) {
      auto big = find_mailbox_named(t, d, kAlice, "Big");
      REQUIRE(big);
      ref = MailboxRef{big->record.id, big->record.uidvalidity};
      first_expunge = big->record.highestmodseq + 51;  // after the 50 flag changes
      auto flags = parse_flags(std::vector<std::string>{"\\Deleted"});
      REQUIRE(flags);
      REQUIRE(store_flags(t, d, kAlice, ref, {{1, 50}}, StoreMode::Add, *flags));
      auto e = expunge(t, d, kAlice, ref);
      REQUIRE(e);
      REQUIRE(e->expunged == UidSet{{1, 50}});
    });
  }
  common::runtime::Loop loop;
  auto opened = store::MessageStore::open(store_options(path));
  REQUIRE(opened);
  store::MaintenanceOptions options;
  options.poll = 10ms;
  options.pause = 0ms;
  options.prune.keep = 10;
  options.prune.entries = 8;
  auto m = store::Maintenance::start(loop, **opened, options);
  run_until(loop, *m, [](const store::MaintenanceStats& s) { return s.prune_walks == 1; });
  CHECK(m->stats().tombstones_pruned == 40);
  CHECK(m->stats().prune_batches >= 5);
  REQUIRE((*opened)->read([&](const Txn& t, const Dbs& d) -> common::Result<void> {
    auto big = resolve_mailbox(t, d, kAlice, ref);
    REQUIRE(big);
    CHECK(big->record.tombstones == 10);
    CHECK(big->record.vanished_floor == first_expunge + 39);  // UID 40's expunge
    auto exact = changes_since(t, d, kAlice, ref, first_expunge + 39);
    REQUIRE(exact);
    CHECK(exact->vanished == UidSet{{41, 50}});
    auto superset = changes_since(t, d, kAlice, ref, first_expunge);
    REQUIRE(superset);
    CHECK(superset->vanished == UidSet{{1, 50}});
    check_clean(t, d);
    return {};
  }));
  m.reset();
}
