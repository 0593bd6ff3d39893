// crash_writer.cpp: the child of the crash tests. "write": submits writes through a GroupCommitWriter
// forever and appends each acknowledged key to a file, until the parent kill -9s it. "enospc": fills a
// small file system and checks that what was acknowledged survives the failed commits.
#include <fcntl.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "common/lmdb/group_commit.hpp"
#include "common/runtime/loop.hpp"
#include "common/runtime/timer.hpp"
#include "tests/common/lmdb/crash_value.hpp"

using namespace common::lmdb;

namespace {

Env open_or_die(const std::string& dir, size_t map_size, MDB_dbi& kv) {
  auto env = open_env(dir, {.map_size = map_size});
  if (!env) {
    std::fprintf(stderr, "open: %s\n", env.error().detail.c_str());
    std::exit(2);
  }
  auto txn = Txn::begin(env->get(), true);
  auto dbi = txn ? txn->open_dbi("kv", MDB_CREATE) : common::Result<MDB_dbi>(tl::unexpected(txn.error()));
  if (!dbi || !txn->commit()) {
    std::fprintf(stderr, "cannot open table kv\n");
    std::exit(2);
  }
  kv = *dbi;
  return std::move(*env);
}

// Keeps kWindow writes in flight from one loop; an ack line is written (one write(2), so a kill
// cannot leave half of it) only once the completion reported the commit.
int run_writes(const std::string& dir, const std::string& ack_path, const std::string& prefix) {
  MDB_dbi kv = 0;
  Env env = open_or_die(dir, size_t{1} << 30, kv);
  const int ack = ::open(ack_path.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0600);
  if (ack < 0) return 2;
  auto writer = GroupCommitWriter::start(env.get(), {.name = "crash"});
  if (!writer) return 2;
  common::runtime::Loop loop;
  common::runtime::Timer guard(loop.get());
  guard.start(std::chrono::seconds(120), [&] { loop.stop(); });  // the parent kills us long before
  auto alive = std::make_shared<int>(0);
  constexpr int kWindow = 32, kMax = 200000;
  int next = 0, failures = 0;
  std::function<void()> send = [&] {
    if (next >= kMax) return;
    const std::string key = prefix + std::to_string(next++);
    auto write = [kv, key](Txn& txn) { return txn.put(kv, key, test::crash_value(key)); };
    auto done = [&, key](common::Result<void> r) {
      if (r) {
        const std::string line = key + "\n";
        if (::write(ack, line.data(), line.size()) != static_cast<ssize_t>(line.size())) std::exit(3);
      } else if (++failures > 10) {
        std::fprintf(stderr, "write failed: %s\n", r.error().detail.c_str());
        std::exit(4);
      }
      send();
    };
    if (!(*writer)->submit(loop, alive, write, done)) {
      std::fprintf(stderr, "queue full\n");
      std::exit(5);
    }
  };
  loop.post([&] {
    for (int i = 0; i < kWindow; ++i) send();
  });
  loop.run();
  (*writer)->stop();
  return 0;
}

// On a file system far smaller than the map: commits fail when it fills; the writer must report
// TempFail and every write it acknowledged must read back after a reopen.
int run_enospc(const std::string& dir) {
  std::vector<std::string> acked;
  common::Error failure{common::ErrorKind::Internal, "no failure"};
  {
    MDB_dbi kv = 0;
    Env env = open_or_die(dir, size_t{64} << 20, kv);
    auto writer = GroupCommitWriter::start(env.get(), {.name = "enospc"});
    if (!writer) return 2;
    for (int i = 0; i < 1000; ++i) {
      const std::string key = "e" + std::to_string(i);
      auto r = (*writer)->submit_and_wait(
          [kv, key](Txn& txn) { return txn.put(kv, key, test::crash_value(key) + std::string(60000, 'z')); });
      if (!r) {
        failure = r.error();
        break;
      }
      acked.push_back(key);
    }
    // Still answering, still failing cleanly.
    auto again = (*writer)->submit_and_wait([kv](Txn& txn) { return txn.put(kv, "more", std::string(200000, 'm')); });
    std::printf("again=%s\n", again ? "ok" : (again.error().kind == common::ErrorKind::TempFail ? "TempFail" : "other"));
  }
  std::printf("acked=%zu\nfailure_kind=%s\nfailure=%s\n", acked.size(),
              failure.kind == common::ErrorKind::TempFail ? "TempFail" : "other", failure.detail.c_str());
  MDB_dbi kv = 0;
  auto env = open_env(dir, {.map_size = size_t{64} << 20, .flags = MDB_NOTLS | MDB_RDONLY});
  if (!env) {
    std::printf("reopen failed: %s\n", env.error().detail.c_str());
    return 1;
  }
  auto txn = Txn::begin(env->get(), false);
  auto dbi = txn ? txn->open_dbi("kv") : common::Result<MDB_dbi>(tl::unexpected(txn.error()));
  if (!dbi) return 1;
  kv = *dbi;
  size_t ok = 0;
  for (const auto& key : acked) {
    auto v = txn->get(kv, key);
    if (v && *v && **v == test::crash_value(key) + std::string(60000, 'z')) ++ok;
  }
  std::printf("verified=%zu\n", ok);
  return ok == acked.size() ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc == 5 && std::strcmp(argv[1], "write") == 0) return run_writes(argv[2], argv[3], argv[4]);
  if (argc == 3 && std::strcmp(argv[1], "enospc") == 0) return run_enospc(argv[2]);
  std::fprintf(stderr, "usage: %s write <env-dir> <ack-file> <key-prefix> | enospc <dir>\n", argv[0]);
  return 2;
}
