// group_commit_test.cpp: the group-commit writer: completions on each caller's loop, real batching,
// a failing write rolled back alone, queue-full refusal, dead sessions, draining stop, a full map.
#include <catch2/catch.hpp>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <map>
#include <mutex>
#include <thread>
#include <vector>

#include "common/lmdb/group_commit.hpp"
#include "common/metrics/metrics.hpp"
#include "common/runtime/loop.hpp"
#include "common/runtime/timer.hpp"
#include "tests/support/process.hpp"

using namespace std::chrono_literals;
using common::ErrorKind;
using common::Result;
using namespace common::lmdb;
using common::runtime::Loop;
using common::runtime::Timer;

namespace {

// A loop on its own thread, kept alive by a guard timer until the test is done with it.
struct LoopThread {
  Loop loop;
  Timer guard{loop.get()};
  std::thread thread;
  std::thread::id id;
  LoopThread() {
    guard.start(60s, [this] { loop.stop(); });
    thread = std::thread([this] { loop.run(); });
    id = thread.get_id();
  }
  ~LoopThread() {
    loop.stop();
    thread.join();
  }
};

// Holds the writer thread inside a write until released, so the writes submitted meanwhile queue up.
struct Gate {
  std::mutex mu;
  std::condition_variable cv;
  bool entered = false, open = false;
  GroupCommitWriter::Write write() {
    return [this](Txn&) -> Result<void> {
      std::unique_lock lock(mu);
      entered = true;
      cv.notify_all();
      cv.wait(lock, [this] { return open; });
      return {};
    };
  }
  void wait_entered() {
    std::unique_lock lock(mu);
    REQUIRE(cv.wait_for(lock, 10s, [this] { return entered; }));
  }
  void release() {
    std::lock_guard lock(mu);
    open = true;
    cv.notify_all();
  }
};

template <class F>
bool wait_until(F done, std::chrono::milliseconds limit = 20s) {
  const auto end = std::chrono::steady_clock::now() + limit;
  while (!done()) {
    if (std::chrono::steady_clock::now() > end) return false;
    std::this_thread::sleep_for(1ms);
  }
  return true;
}

struct Store {
  test::TempDir tmp;
  common::metrics::Registry registry;
  Env env;
  MDB_dbi kv = 0;

  explicit Store(size_t map_size = size_t{64} << 20) {
    auto e = open_env(tmp / "env", {.map_size = map_size});
    REQUIRE(e);
    env = std::move(*e);
    auto txn = Txn::begin(env.get(), true);
    REQUIRE(txn);
    auto dbi = txn->open_dbi("kv", MDB_CREATE);
    REQUIRE(dbi);
    kv = *dbi;
    REQUIRE(txn->commit());
  }
  std::unique_ptr<GroupCommitWriter> writer(GroupCommitOptions o = {}) {
    o.registry = &registry;
    if (o.name == "lmdb") o.name = "test";
    auto w = GroupCommitWriter::start(env.get(), std::move(o));
    REQUIRE(w);
    return std::move(*w);
  }
  GroupCommitWriter::Write put(std::string key, std::string value) {
    return [dbi = kv, key = std::move(key), value = std::move(value)](Txn& txn) { return txn.put(dbi, key, value); };
  }
  std::optional<std::string> read(std::string_view key) {
    auto txn = Txn::begin(env.get(), false);
    REQUIRE(txn);
    auto v = txn->get(kv, key);
    REQUIRE(v);
    if (!*v) return std::nullopt;
    return std::string(**v);
  }
};

std::string value_for(int i) { return std::string(50 + i % 200, static_cast<char>('a' + i % 26)) + std::to_string(i); }

}  // namespace

TEST_CASE("an environment that cannot keep the promise is refused", "[group_commit]") {
  test::TempDir tmp;
  auto nosync = open_env(tmp / "nosync", {.flags = MDB_NOTLS | MDB_NOSYNC});
  REQUIRE(nosync);
  auto w = GroupCommitWriter::start(nosync->get());
  REQUIRE_FALSE(w);
  CHECK(w.error().kind == ErrorKind::Config);
  CHECK(w.error().detail.find("MDB_NOSYNC") != std::string::npos);
  auto writemap = open_env(tmp / "writemap", {.flags = MDB_NOTLS | MDB_WRITEMAP});
  REQUIRE(writemap);
  CHECK_FALSE(GroupCommitWriter::start(writemap->get()));
}

TEST_CASE("sessions on two loops get every completion on their own loop thread", "[group_commit]") {
  Store s;
  auto writer = s.writer();
  constexpr int kSessions = 8, kPerSession = 60;
  LoopThread loops[2];
  std::shared_ptr<int> alive = std::make_shared<int>(0);
  std::atomic<int> done{0}, wrong_thread{0}, failed{0};

  // Each session submits its next write only after the previous one was acknowledged, as an LMTP
  // session does; the 16 of them keep the writer busy at once.
  struct Session {
    int loop, index, next = 0;
  };
  std::vector<std::unique_ptr<Session>> sessions;
  std::function<void(Session&)> send = [&](Session& ss) {
    const int n = ss.index * kPerSession + ss.next++;
    const std::string key = "s" + std::to_string(n);
    // Catch2's macros are not thread-safe: loop threads only count.
    const bool queued = writer->submit(loops[ss.loop].loop, alive, s.put(key, value_for(n)), [&](Result<void> r) {
      if (std::this_thread::get_id() != loops[ss.loop].id) ++wrong_thread;
      if (!r) ++failed;
      ++done;
      if (ss.next < kPerSession) send(ss);
    });
    if (!queued) {
      ++failed;
      ++done;
    }
  };
  for (int i = 0; i < kSessions * 2; ++i) sessions.push_back(std::make_unique<Session>(Session{i % 2, i}));
  for (auto& ss : sessions) loops[ss->loop].loop.post([&, p = ss.get()] { send(*p); });
  REQUIRE(wait_until([&] { return done.load() == kSessions * 2 * kPerSession; }));
  CHECK(wrong_thread == 0);
  CHECK(failed == 0);
  for (int n = 0; n < kSessions * 2 * kPerSession; ++n) REQUIRE(s.read("s" + std::to_string(n)) == value_for(n));
  const auto st = writer->stats();
  CHECK(st.writes_committed == kSessions * 2 * kPerSession);
  CHECK(st.writes_per_commit() >= 1.0);
  INFO("writes per commit with 16 ping-pong sessions: " << st.writes_per_commit());
  CHECK(st.batches_committed <= st.writes_committed);
}

TEST_CASE("writes queued while a commit is busy share one commit", "[group_commit]") {
  Store s;
  auto writer = s.writer({.max_batch = 64, .max_delay = 1s});
  LoopThread lt;
  std::shared_ptr<int> alive = std::make_shared<int>(0);
  Gate gate;
  std::atomic<int> done{0};
  REQUIRE(writer->submit(lt.loop, alive, gate.write(), [&](Result<void> r) { done += r.has_value(); }));
  gate.wait_entered();
  // Two loops' worth of submitters while the writer is held: 200 writes wait in the queue.
  std::vector<std::thread> submitters;
  for (int t = 0; t < 4; ++t)
    submitters.emplace_back([&, t] {
      for (int i = 0; i < 50; ++i) {
        const int n = t * 50 + i;
        while (!writer->submit(lt.loop, alive, s.put("b" + std::to_string(n), value_for(n)),
                               [&](Result<void> r) { done += r.has_value(); }))
          std::this_thread::sleep_for(1ms);
      }
    });
  for (auto& t : submitters) t.join();
  CHECK(writer->queued() == 200);
  gate.release();
  REQUIRE(wait_until([&] { return done.load() == 201; }));
  const auto st = writer->stats();
  CHECK(st.writes_committed == 201);
  // 1 (the held write) + 200 in batches of at most 64: 5 commits instead of 201.
  CHECK(st.batches_committed <= 5);
  CHECK(st.max_batch_seen == 64);
  CHECK(st.writes_per_commit() > 30);
  // The figure is a metric too.
  const std::string text = s.registry.render();
  CHECK(text.find("postern_lmdb_writes_per_commit_count{env=\"test\"} " + std::to_string(st.batches_committed)) !=
        std::string::npos);
  CHECK(text.find("postern_lmdb_writes_committed_total{env=\"test\"} 201") != std::string::npos);
  CHECK(text.find("postern_lmdb_commit_seconds_count{env=\"test\"}") != std::string::npos);
}

TEST_CASE("a failing write is rolled back alone, the rest of its batch commits", "[group_commit]") {
  Store s;
  auto writer = s.writer({.max_delay = 5s});
  LoopThread lt;
  std::shared_ptr<int> alive = std::make_shared<int>(0);
  Gate gate;
  std::mutex mu;
  std::map<std::string, Result<void>> results;
  auto record = [&](std::string name) {
    return [&, name](Result<void> r) {
      std::lock_guard lock(mu);
      results.emplace(name, std::move(r));
    };
  };
  REQUIRE(writer->submit(lt.loop, alive, gate.write(), record("gate")));
  gate.wait_entered();
  const MDB_dbi kv = s.kv;
  REQUIRE(writer->submit(lt.loop, alive, s.put("a", "1"), record("a")));
  // The callback's own check fails after it wrote: its put must vanish with it.
  REQUIRE(writer->submit(lt.loop, alive,
                         [kv](Txn& txn) -> Result<void> {
                           if (auto ok = txn.put(kv, "b", "2"); !ok) return ok;
                           return common::fail(ErrorKind::Protocol, "over quota");
                         },
                         record("b")));
  REQUIRE(writer->submit(lt.loop, alive, s.put("c", "3"), record("c")));
  // LMDB itself refuses this one (key over 511 bytes).
  REQUIRE(writer->submit(lt.loop, alive, s.put(std::string(600, 'k'), "x"), record("bigkey")));
  // A later write sees the earlier ones of its batch.
  REQUIRE(writer->submit(lt.loop, alive,
                         [kv](Txn& txn) -> Result<void> {
                           auto a = txn.get(kv, "a");
                           if (!a) return tl::unexpected(a.error());
                           if (!*a) return common::fail(ErrorKind::Internal, "a not visible");
                           return txn.put(kv, "d", std::string(**a) + "+");
                         },
                         record("d")));
  gate.release();
  REQUIRE(wait_until([&] {
    std::lock_guard lock(mu);
    return results.size() == 6;
  }));
  CHECK(results.at("a").has_value());
  REQUIRE_FALSE(results.at("b").has_value());
  CHECK(results.at("b").error().kind == ErrorKind::Protocol);
  CHECK(results.at("c").has_value());
  REQUIRE_FALSE(results.at("bigkey").has_value());
  CHECK(results.at("bigkey").error().detail.find("mdb_put") != std::string::npos);
  CHECK(results.at("d").has_value());
  CHECK(s.read("a") == "1");
  CHECK_FALSE(s.read("b"));
  CHECK(s.read("c") == "3");
  CHECK(s.read("d") == "1+");
  const auto st = writer->stats();
  CHECK(st.writes_rolled_back == 2);
  CHECK(st.writes_committed == 4);
  // The five queued behind the held write commit together (with it, as max_delay is long).
  CHECK(st.batches_committed <= 2);
  CHECK(st.max_batch_seen >= 3);
}

TEST_CASE("a full queue refuses writes, a stopped writer refuses all", "[group_commit]") {
  Store s;
  auto writer = s.writer({.max_queue = 4});
  LoopThread lt;
  std::shared_ptr<int> alive = std::make_shared<int>(0);
  Gate gate;
  std::atomic<int> done{0};
  auto count = [&](Result<void> r) { done += r.has_value(); };
  REQUIRE(writer->submit(lt.loop, alive, gate.write(), count));
  gate.wait_entered();  // out of the queue now, so the queue holds exactly what follows
  for (int i = 0; i < 4; ++i) CHECK(writer->submit(lt.loop, alive, s.put("q" + std::to_string(i), "v"), count));
  CHECK_FALSE(writer->submit(lt.loop, alive, s.put("refused", "v"), count));
  CHECK(writer->stats().refused == 1);
  CHECK(s.registry.render().find("postern_lmdb_writes_refused_total{env=\"test\"} 1") != std::string::npos);
  gate.release();
  REQUIRE(wait_until([&] { return done.load() == 5; }));
  CHECK_FALSE(s.read("refused"));

  // submit_and_wait waits for room instead of refusing.
  CHECK(writer->submit_and_wait(s.put("sync", "v")));
  CHECK(s.read("sync") == "v");

  writer->stop();
  CHECK_FALSE(writer->submit(lt.loop, alive, s.put("late", "v"), count));
  auto late = writer->submit_and_wait(s.put("late", "v"));
  REQUIRE_FALSE(late);
  CHECK(late.error().kind == ErrorKind::TempFail);
  CHECK_FALSE(s.read("late"));
}

TEST_CASE("a session gone before the commit gets no completion, its write still lands", "[group_commit]") {
  Store s;
  auto writer = s.writer();
  LoopThread lt;
  Gate gate;
  auto live = std::make_shared<int>(0);
  auto dying = std::make_shared<int>(0);
  std::atomic<bool> dead_called{false}, live_called{false}, empty_called{false};
  REQUIRE(writer->submit(lt.loop, live, gate.write(), [](Result<void>) {}));
  gate.wait_entered();
  REQUIRE(writer->submit(lt.loop, dying, s.put("orphan", "v"), [&](Result<void>) { dead_called = true; }));
  REQUIRE(writer->submit(lt.loop, std::weak_ptr<void>{}, s.put("nobody", "v"), [&](Result<void>) { empty_called = true; }));
  REQUIRE(writer->submit(lt.loop, live, s.put("after", "v"), [&](Result<void>) { live_called = true; }));
  dying.reset();  // the connection closed while its write waited
  gate.release();
  // Completions of one loop run in submission order: once the last ran, the others had their turn.
  REQUIRE(wait_until([&] { return live_called.load(); }));
  CHECK_FALSE(dead_called);
  CHECK_FALSE(empty_called);
  CHECK(s.read("orphan") == "v");
  CHECK(s.read("after") == "v");
}

TEST_CASE("stop() commits every queued write before it returns", "[group_commit]") {
  Store s;
  auto writer = s.writer({.max_batch = 16});
  LoopThread lt;
  auto alive = std::make_shared<int>(0);
  std::atomic<int> done{0};
  std::atomic<bool> submitted{false};
  std::atomic<int> refused{0};
  lt.loop.post([&] {
    for (int i = 0; i < 300; ++i)
      if (!writer->submit(lt.loop, alive, s.put("d" + std::to_string(i), value_for(i)),
                          [&](Result<void> r) { done += r.has_value(); }))
        ++refused;
    submitted = true;
  });
  REQUIRE(wait_until([&] { return submitted.load(); }));
  REQUIRE(refused == 0);
  writer->stop();
  CHECK(writer->queued() == 0);
  const auto st = writer->stats();
  CHECK(st.writes_committed == 300);
  for (int i = 0; i < 300; ++i) REQUIRE(s.read("d" + std::to_string(i)) == value_for(i));
  REQUIRE(wait_until([&] { return done.load() == 300; }));  // posted before stop() returned
  writer.reset();                                              // a second stop() from the destructor
}

TEST_CASE("a full map fails writes as TempFail and keeps what was acknowledged", "[group_commit]") {
  Store s(512 * 1024);
  auto writer = s.writer({.max_delay = 5s});
  LoopThread lt;
  auto alive = std::make_shared<int>(0);

  // One write of the batch is too big for the map: it alone fails, its neighbours commit.
  Gate gate;
  std::mutex mu;
  std::map<std::string, Result<void>> results;
  auto record = [&](std::string name) {
    return [&, name](Result<void> r) {
      std::lock_guard lock(mu);
      results.emplace(name, std::move(r));
    };
  };
  REQUIRE(writer->submit(lt.loop, alive, gate.write(), record("gate")));
  gate.wait_entered();
  REQUIRE(writer->submit(lt.loop, alive, s.put("before", "1"), record("before")));
  REQUIRE(writer->submit(lt.loop, alive, s.put("huge", std::string(1 << 20, 'h')), record("huge")));
  REQUIRE(writer->submit(lt.loop, alive, s.put("after", "2"), record("after")));
  gate.release();
  REQUIRE(wait_until([&] {
    std::lock_guard lock(mu);
    return results.size() == 4;
  }));
  CHECK(results.at("before").has_value());
  CHECK(results.at("after").has_value());
  REQUIRE_FALSE(results.at("huge").has_value());
  CHECK(results.at("huge").error().kind == ErrorKind::TempFail);
  CHECK(results.at("huge").error().detail.find("MDB_MAP_FULL") != std::string::npos);

  // Fill the map for real: every acknowledged write survives a reopen.
  std::vector<int> acked;
  common::Error failure{ErrorKind::Internal, ""};
  for (int i = 0; i < 2000; ++i) {
    auto r = writer->submit_and_wait(s.put("f" + std::to_string(i), std::string(3000, 'f') + std::to_string(i)));
    if (!r) {
      failure = r.error();
      break;
    }
    acked.push_back(i);
  }
  REQUIRE(acked.size() > 20);
  REQUIRE(acked.size() < 2000);
  CHECK(failure.kind == ErrorKind::TempFail);
  CHECK(failure.detail.find("MDB_MAP_FULL") != std::string::npos);
  // Still full, still answering.
  CHECK(writer->submit_and_wait(s.put("more", std::string(50000, 'm'))).error().kind == ErrorKind::TempFail);
  writer.reset();
  s.env.reset();

  auto env = open_env(s.tmp / "env", {.map_size = 512 * 1024});
  REQUIRE(env);
  auto txn = Txn::begin(env->get(), false);
  REQUIRE(txn);
  auto kv = txn->open_dbi("kv");
  REQUIRE(kv);
  CHECK(**txn->get(*kv, "before") == "1");
  CHECK(**txn->get(*kv, "after") == "2");
  CHECK_FALSE(*txn->get(*kv, "huge"));
  for (int i : acked) {
    auto v = txn->get(*kv, "f" + std::to_string(i));
    REQUIRE(v);
    REQUIRE(*v);
    CHECK(**v == std::string(3000, 'f') + std::to_string(i));
  }
}

TEST_CASE("linger lets clients that each wait for their commit share one, a lone client never waits", "[group_commit]") {
  Store s;
  // Generous bounds so the test does not hang on the machine's speed: the assertions are about
  // batching, not time.
  auto writer = s.writer({.max_delay = std::chrono::milliseconds(200), .linger = std::chrono::milliseconds(50)});
  LoopThread lt;
  std::shared_ptr<int> alive = std::make_shared<int>(0);
  constexpr int kClients = 8, kRounds = 25;
  std::atomic<int> done{0}, failed{0};
  // Each client submits its next write from the completion of its last, as an LMTP session does.
  // (On the loop thread: no Catch2 assertions there.)
  std::function<void(int, int)> next = [&](int client, int round) {
    if (round == kRounds) return;
    const std::string key = "c" + std::to_string(client) + "r" + std::to_string(round);
    const bool queued = writer->submit(lt.loop, alive, s.put(key, value_for(round)), [&, client, round](Result<void> r) {
      if (!r) ++failed;
      ++done;
      next(client, round + 1);
    });
    if (!queued) ++failed;
  };
  lt.loop.post([&] {
    for (int c = 0; c < kClients; ++c) next(c, 0);
  });
  REQUIRE(wait_until([&] { return done.load() == kClients * kRounds; }, 60s));
  CHECK(failed == 0);
  const auto st = writer->stats();
  writer->stop();
  INFO("writes per commit " << st.writes_per_commit());
  CHECK(st.writes_per_commit() > kClients / 2);

  auto lone = s.writer({.name = "lone", .max_delay = std::chrono::seconds(2), .linger = std::chrono::seconds(2)});
  const auto started = std::chrono::steady_clock::now();
  for (int i = 0; i < 20; ++i) REQUIRE(lone->submit_and_wait(s.put("lone" + std::to_string(i), "x")));
  CHECK(std::chrono::steady_clock::now() - started < std::chrono::seconds(2));
}
