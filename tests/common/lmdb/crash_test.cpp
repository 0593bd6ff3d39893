// crash_test.cpp: kill -9 of a process in the middle of group commits loses no acknowledged write and
// leaves an environment that opens clean; a full file system fails commits as TempFail, losing nothing.
#include <catch2/catch.hpp>

#include <signal.h>

#include <chrono>
#include <fstream>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "common/lmdb/lmdb.hpp"
#include "tests/common/lmdb/crash_value.hpp"
#include "tests/support/process.hpp"

using namespace std::chrono_literals;
using namespace common::lmdb;

namespace {

// Complete lines only: the last one may be cut by the kill.
std::vector<std::string> read_acks(const std::filesystem::path& path) {
  std::vector<std::string> keys;
  const std::string text = test::read_file(path);
  size_t start = 0;
  for (size_t nl; (nl = text.find('\n', start)) != std::string::npos; start = nl + 1)
    keys.push_back(text.substr(start, nl - start));
  return keys;
}

}  // namespace

TEST_CASE("kill -9 mid-stream: every acknowledged write is on disk, intact", "[lmdb][crash]") {
  test::TempDir tmp;
  const auto env_dir = tmp / "env";
  const auto acks = tmp / "acks";
  std::mt19937 rng(std::random_device{}());
  size_t acked_before = 0;
  // The same environment is crashed three times, so each child also recovers from the last crash.
  for (int round = 0; round < 3; ++round) {
    const size_t target = acked_before + 300 + rng() % 700;
    {
      test::ChildProcess child({test::binary_path("tests/common/lmdb/lmdb_crash_writer"), "write", env_dir.string(),
                                acks.string(), "r" + std::to_string(round) + "-"},
                               (tmp / "child.log").string());
      const auto deadline = std::chrono::steady_clock::now() + 120s;
      while (read_acks(acks).size() < target) {
        INFO(test::read_file(tmp / "child.log"));
        REQUIRE(child.running());
        REQUIRE(std::chrono::steady_clock::now() < deadline);
        std::this_thread::sleep_for(2ms);
      }
      child.signal(SIGKILL);
      CHECK(child.wait(10s) == 128 + SIGKILL);
    }
    const auto keys = read_acks(acks);
    acked_before = keys.size();
    REQUIRE(keys.size() >= target);

    auto env = open_env(env_dir, {});
    REQUIRE(env);
    {
      auto txn = Txn::begin(env->get(), false);
      REQUIRE(txn);
      auto kv = txn->open_dbi("kv");
      REQUIRE(kv);
      for (const auto& key : keys) {
        auto v = txn->get(*kv, key);
        REQUIRE(v);
        INFO("round " << round << " key " << key);
        REQUIRE(*v);
        REQUIRE(**v == test::crash_value(key));
      }
      // Writes that were committed but not yet acknowledged may be there too, but none half-written.
      auto cur = Cursor::open(*txn, *kv);
      REQUIRE(cur);
      size_t entries = 0;
      for (auto e = cur->first(); e && *e; e = cur->next()) {
        ++entries;
        REQUIRE((*e)->second == test::crash_value((*e)->first));
      }
      CHECK(entries >= keys.size());
    }
    // Opens clean: a write transaction commits at once.
    auto txn = Txn::begin(env->get(), true);
    REQUIRE(txn);
    auto kv = txn->open_dbi("kv");
    REQUIRE(kv);
    REQUIRE(txn->put(*kv, "probe", "x"));
    REQUIRE(txn->del(*kv, "probe"));
    REQUIRE(txn->commit());
  }
}

TEST_CASE("a full file system fails commits as TempFail and loses nothing acknowledged", "[lmdb][crash]") {
  // A 1 MiB tmpfs in a private mount namespace (unprivileged through a user namespace).
  if (test::run({"unshare", "-rm", "true"}).exit_code != 0) {
    WARN("user and mount namespaces are not available here: the ENOSPC case did not run");
    return;
  }
  test::TempDir tmp;
  const std::string dir = (tmp / "small").string();
  std::filesystem::create_directories(dir);
  const std::string script = "mount -t tmpfs -o size=1m tmpfs '" + dir + "' && exec '" +
                             test::binary_path("tests/common/lmdb/lmdb_crash_writer") + "' enospc '" + dir + "'";
  auto r = test::run({"unshare", "-rm", "sh", "-c", script}, 120s);
  INFO(r.output);
  CHECK(r.exit_code == 0);
  CHECK(r.output.find("failure_kind=TempFail") != std::string::npos);
  // The full disk shows as ENOSPC, or EIO when LMDB's write came up short.
  CHECK((r.output.find("disk full") != std::string::npos || r.output.find("EIO") != std::string::npos));
  CHECK(r.output.find("again=TempFail") != std::string::npos);
  const auto acked = r.output.find("acked=");
  REQUIRE(acked != std::string::npos);
  CHECK(std::stoi(r.output.substr(acked + 6)) > 3);
}
