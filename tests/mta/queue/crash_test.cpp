// crash_test.cpp: kill -9 of a process enqueueing through the group-commit writer loses no
// acknowledged message: each is there after a reopen with its envelope, every recipient and its
// bytes, and the queue's counters match what is stored.
#include <catch2/catch.hpp>

#include <signal.h>

#include <chrono>
#include <random>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "mta/queue/queue.hpp"
#include "tests/mta/queue/crash_message.hpp"
#include "tests/support/process.hpp"

using namespace std::chrono_literals;
using namespace mta::queue;

namespace {

struct Ack {
  std::string id, key;
  int recipients = 0;
};

// Complete lines only: the last one may be cut by the kill.
std::vector<Ack> read_acks(const std::filesystem::path& path) {
  std::vector<Ack> acks;
  const std::string text = test::read_file(path);
  size_t start = 0;
  for (size_t nl; (nl = text.find('\n', start)) != std::string::npos; start = nl + 1) {
    std::istringstream line(text.substr(start, nl - start));
    Ack a;
    line >> a.id >> a.key >> a.recipients;
    acks.push_back(a);
  }
  return acks;
}

}  // namespace

TEST_CASE("kill -9 while enqueueing: every acknowledged message and its recipients survive", "[queue][crash]") {
  test::TempDir tmp;
  const auto dir = tmp / "queue";
  const auto acks_file = tmp / "acks";
  std::mt19937 rng(std::random_device{}());
  size_t acked_before = 0;
  // The same queue is crashed three times, so each child also opens what the last crash left.
  for (int round = 0; round < 3; ++round) {
    const size_t target = acked_before + 200 + rng() % 400;
    {
      test::ChildProcess child({test::binary_path("tests/mta/queue/queue_crash_writer"), "write", dir.string(),
                                acks_file.string(), "r" + std::to_string(round) + "k"},
                               (tmp / "child.log").string());
      const auto deadline = std::chrono::steady_clock::now() + 120s;
      while (read_acks(acks_file).size() < target) {
        INFO(test::read_file(tmp / "child.log"));
        REQUIRE(child.running());
        REQUIRE(std::chrono::steady_clock::now() < deadline);
        std::this_thread::sleep_for(2ms);
      }
      child.signal(SIGKILL);
      CHECK(child.wait(10s) == 128 + SIGKILL);
    }
    const auto acks = read_acks(acks_file);
    acked_before = acks.size();
    REQUIRE(acks.size() >= target);

    QueueOptions options;
    options.dir = dir.string();
    options.map_size = size_t{1} << 30;
    auto queue = Queue::open(options);
    REQUIRE(queue);
    for (const auto& a : acks) {
      INFO("round " << round << " message " << a.id << " key " << a.key);
      auto info = (*queue)->show(a.id);
      REQUIRE(info);
      REQUIRE(*info);
      const Message expected = test::crash_message(a.key, a.recipients);
      CHECK((*info)->envelope.reverse_path == expected.envelope.reverse_path);
      REQUIRE((*info)->recipients.size() == static_cast<size_t>(a.recipients));
      for (int i = 0; i < a.recipients; ++i) {
        CHECK((*info)->recipients[i].address == expected.recipients[i].address);
        CHECK((*info)->recipients[i].state == RcptState::Queued);
      }
      auto bytes = (*queue)->message_bytes(a.id);
      REQUIRE(bytes);
      REQUIRE(*bytes == expected.received + expected.content);
    }
    // Committed but unacknowledged messages may be there too; the counters match what is stored,
    // and every stored recipient is due (in the schedule): take_due finds all of them.
    auto all = (*queue)->list();
    REQUIRE(all);
    CHECK(all->size() >= acks.size());
    auto c = (*queue)->counters();
    REQUIRE(c);
    CHECK(c->messages == all->size());
    size_t recipients = 0, bytes = 0;
    for (const auto& m : *all) {
      recipients += m.recipients.size();
      bytes += m.envelope.size;
    }
    CHECK(c->of(RcptState::Queued) == recipients);
    CHECK(c->bytes == bytes);
    if (round == 2) {
      size_t leased = 0;
      for (;;) {
        auto due = (*queue)->take_due_and_wait((*queue)->now(), 1000);
        REQUIRE(due);
        if (due->recipients.empty()) break;
        leased += due->recipients.size();
      }
      CHECK(leased == recipients);
    }
  }
}
