// hash_queue_test.cpp: the hashing queue's bound, its per-source share and its round-robin order,
// with jobs that block until the test lets them go.
#include "authserv/service/hash_queue.hpp"
#include "authserv/password/kept_memory.hpp"

#include <catch2/catch.hpp>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

using authserv::service::HashQueue;
using namespace std::chrono_literals;

namespace {
// A latch the worker waits on, so the queue's contents stay put while the test submits.
struct Gate {
  std::mutex m;
  std::condition_variable cv;
  bool open = false;
  std::atomic<int> entered{0};
  void wait() {
    ++entered;
    std::unique_lock l(m);
    cv.wait(l, [this] { return open; });
  }
  void release() {
    {
      std::lock_guard l(m);
      open = true;
    }
    cv.notify_all();
  }
};

void wait_until(const std::function<bool()>& cond) {
  auto until = std::chrono::steady_clock::now() + 10s;
  while (!cond()) {
    REQUIRE(std::chrono::steady_clock::now() < until);
    std::this_thread::sleep_for(1ms);
  }
}
}  // namespace

TEST_CASE("a full hashing queue refuses at once, and one source gets only its share") {
  Gate gate;
  HashQueue q(1, 8, 2);
  REQUIRE(q.submit("10.0.0.1", [&] { gate.wait(); }) == HashQueue::Refusal::None);
  wait_until([&] { return gate.entered == 1; });  // the one thread is busy
  // The flooding source: two places, then refused while others still get in.
  CHECK(q.submit("10.0.0.1", [] {}) == HashQueue::Refusal::None);
  CHECK(q.submit("10.0.0.1", [] {}) == HashQueue::Refusal::None);
  CHECK(q.submit("10.0.0.1", [] {}) == HashQueue::Refusal::SourceFull);
  for (int i = 2; i <= 7; ++i) {
    CHECK(q.submit("10.0.0." + std::to_string(i), [] {}) == HashQueue::Refusal::None);
  }
  CHECK(q.queued() == 8);
  CHECK(q.submit("10.0.0.9", [] {}) == HashQueue::Refusal::QueueFull);  // at once, no wait
  gate.release();
  wait_until([&] { return q.queued() == 0; });
}

TEST_CASE("jobs run round-robin over sources: a flood waits behind everyone else's single job") {
  Gate gate;
  HashQueue q(1, 100, 50);
  std::mutex m;
  std::vector<std::string> order;
  REQUIRE(q.submit("blocker", [&] { gate.wait(); }) == HashQueue::Refusal::None);
  wait_until([&] { return gate.entered == 1; });
  for (int i = 0; i < 20; ++i) {
    REQUIRE(q.submit("flood", [&] { std::lock_guard l(m); order.push_back("flood"); }) == HashQueue::Refusal::None);
  }
  REQUIRE(q.submit("alice", [&] { std::lock_guard l(m); order.push_back("alice"); }) == HashQueue::Refusal::None);
  REQUIRE(q.submit("bob", [&] { std::lock_guard l(m); order.push_back("bob"); }) == HashQueue::Refusal::None);
  gate.release();
  wait_until([&] { return q.queued() == 0 && order.size() == 22; });
  std::lock_guard l(m);
  // flood's first job had its turn before alice and bob arrived; theirs come right after it.
  REQUIRE(order.size() == 22);
  CHECK(order[0] == "flood");
  CHECK(order[1] == "alice");
  CHECK(order[2] == "bob");
}

TEST_CASE("sources are client addresses, IPv6 by /64") {
  CHECK(HashQueue::source_key("192.0.2.7") == "192.0.2.7");
  CHECK(HashQueue::source_key("2001:db8:1:2:aaaa::1") == HashQueue::source_key("2001:db8:1:2:bbbb::9"));
  CHECK(HashQueue::source_key("2001:db8:1:2::1") != HashQueue::source_key("2001:db8:1:3::1"));
  CHECK(HashQueue::source_key("garbage") == "");
  CHECK(HashQueue::source_key("") == "");
}

TEST_CASE("destroying the queue drops waiting jobs and finishes the running one") {
  Gate gate;
  std::atomic<int> ran{0};
  std::thread releaser;
  {
    HashQueue q(1, 10, 10);
    REQUIRE(q.submit("a", [&] { gate.wait(); ++ran; }) == HashQueue::Refusal::None);
    wait_until([&] { return gate.entered == 1; });
    REQUIRE(q.submit("a", [&] { ++ran; }) == HashQueue::Refusal::None);
    releaser = std::thread([&] {
      std::this_thread::sleep_for(50ms);
      gate.release();
    });
  }
  releaser.join();
  CHECK(ran == 1);
}

TEST_CASE("with kept memory each hashing thread has its own area for its life, and without it none") {
  using authserv::password::KeptHashMemory;
  constexpr size_t kBytes = size_t{1} << 20;
  {
    HashQueue q(2, 16, 0, kBytes);
    Gate gate;
    std::mutex m;
    std::vector<const KeptHashMemory*> seen;
    std::atomic<int> done{0};
    for (int i = 0; i < 2; ++i) {  // both threads busy at once, so each reports its own area
      REQUIRE(q.submit("192.0.2.1", [&] {
        gate.wait();
        std::lock_guard l(m);
        const KeptHashMemory* kept = KeptHashMemory::current();
        seen.push_back(kept != nullptr && kept->ok() && kept->bytes() == kBytes ? kept : nullptr);
        ++done;
      }) == HashQueue::Refusal::None);
    }
    wait_until([&] { return gate.entered == 2; });
    gate.release();
    wait_until([&] { return done == 2; });
    REQUIRE(seen.size() == 2);
    CHECK(seen[0] != nullptr);
    CHECK(seen[1] != nullptr);
    CHECK(seen[0] != seen[1]);
  }
  HashQueue plain(1, 16);
  std::atomic<int> has_area{-1};
  REQUIRE(plain.submit("192.0.2.1", [&] { has_area = KeptHashMemory::current() != nullptr ? 1 : 0; }) ==
          HashQueue::Refusal::None);
  wait_until([&] { return has_area != -1; });
  CHECK(has_area == 0);
  CHECK(KeptHashMemory::current() == nullptr);  // the test's own thread
}
