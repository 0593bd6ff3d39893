// worker_pool_test.cpp: results come back on the loop thread; the queue bound refuses work.
#include <catch2/catch.hpp>

#include <atomic>
#include <chrono>
#include <thread>

#include "common/runtime/loop.hpp"
#include "common/runtime/timer.hpp"
#include "common/runtime/worker_pool.hpp"

using namespace common::runtime;

TEST_CASE("work runs off the loop and its result is delivered on the loop thread", "[workers]") {
  Loop loop;
  WorkerPool pool(2, 100);
  auto loop_thread = std::this_thread::get_id();
  int done = 0;
  bool all_on_loop = true;
  bool any_work_on_loop = false;
  Timer keepalive(loop.get());
  keepalive.start(std::chrono::seconds(10), [&] { loop.stop(); });
  for (int i = 0; i < 50; ++i) {
    REQUIRE(pool.submit<int>(
        loop,
        [&, i] {
          if (std::this_thread::get_id() == loop_thread) any_work_on_loop = true;
          return i * 2;
        },
        [&, i](int r) {
          all_on_loop &= std::this_thread::get_id() == loop_thread && r == i * 2;
          if (++done == 50) loop.stop();
        }));
  }
  loop.run();
  CHECK(done == 50);
  CHECK(all_on_loop);
  CHECK_FALSE(any_work_on_loop);
}

TEST_CASE("a full queue refuses new work instead of growing", "[workers]") {
  Loop loop;
  std::atomic<bool> release{false};
  {
    WorkerPool pool(1, 2);
    auto block = [&] {
      while (!release) std::this_thread::sleep_for(std::chrono::milliseconds(1));
    };
    REQUIRE(pool.submit(loop, block, [] {}));
    // Wait until the worker took the first job, so the queue holds exactly what we add next.
    for (int i = 0; i < 1000 && pool.queued() != 0; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(1));
    CHECK(pool.submit(loop, [] {}, [] {}));
    CHECK(pool.submit(loop, [] {}, [] {}));
    CHECK_FALSE(pool.submit(loop, [] {}, [] {}));
    release = true;
  }
}

TEST_CASE("posts from many threads all run, merged wakeups included", "[loop]") {
  Loop loop;
  std::atomic<int> count{0};
  Timer guard(loop.get());
  guard.start(std::chrono::seconds(10), [&] { loop.stop(); });
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < 5000; ++i) loop.post([&] {
          if (++count == 20000) loop.stop();
        });
    });
  }
  loop.run();
  for (auto& t : threads) t.join();
  CHECK(count == 20000);
}
