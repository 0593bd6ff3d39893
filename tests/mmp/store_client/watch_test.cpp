// watch_test.cpp: the store client's watches on one shared WatchMany stream per store, against a
// real postern-store: many sessions on two loops share one stream and all hear one delivery, a
// dropped watch costs the others nothing, watch_deadline and token expiry end a watch (the session
// opens another), a store that stops ends every watch with TempFail and a new stream serves once
// it is back, max_watches refuses at once.
#include <catch2/catch.hpp>

#include <atomic>
#include <memory>
#include <vector>

#include "tests/mmp/store_client/store_client_fixture.hpp"
#include "tests/support/log_capture.hpp"

using namespace test::store_client_tests;
using common::ErrorKind;

namespace {

// One IDLE's worth: the handle, what it heard and how it ended.
struct Watcher {
  Stream<mspb::WatchEvent> events;
  Got<void> ended;
  std::unique_ptr<WatchCall> call;

  void open(Session& s, const mspb::SelectResponse& box) {
    s.arm(ended);
    mspb::WatchRequest w;
    *w.mutable_mailbox() = box.mailbox();
    w.set_since_modseq(box.status().highest_modseq());
    call = s.session->watch(w, events.cb(), ended.cb());
  }
  bool ready(std::chrono::milliseconds limit = 15s) {
    return events.wait([](auto& items) {
      for (auto& e : items)
        if (e.has_ready()) return true;
      return false;
    }, limit);
  }
  bool heard_uid(uint32_t uid, std::chrono::milliseconds limit = 15s) {
    return events.wait([uid](auto& items) {
      for (auto& e : items)
        if (e.has_added() && e.added().uid() == uid) return true;
      return false;
    }, limit);
  }
};

template <class Pred>
bool eventually(Pred pred, std::chrono::milliseconds limit = 10s) {
  const auto until = Clock::now() + limit;
  while (!pred()) {
    if (Clock::now() > until) return false;
    std::this_thread::sleep_for(10ms);
  }
  return true;
}

}  // namespace

TEST_CASE("watches of many sessions on two loops share one WatchMany stream and all hear a delivery",
          "[store_client][watch_many]") {
  Store store;
  store.deliver_to(kAlice);
  test::LoopThread loop_a, loop_b;
  auto client = make_client(options_for({store.target()}));
  constexpr int kSessions = 100;
  std::vector<std::unique_ptr<Session>> sessions;
  std::vector<std::unique_ptr<Watcher>> watchers;
  for (int i = 0; i < kSessions; ++i) {
    sessions.push_back(std::make_unique<Session>(*client, i % 2 ? loop_b : loop_a));
    watchers.push_back(std::make_unique<Watcher>());
  }
  const auto box = sessions[0]->select();
  for (int i = 0; i < kSessions; ++i) sessions[i]->lt.on_loop([&] { watchers[i]->open(*sessions[i], box); });
  for (auto& w : watchers) REQUIRE(w->ready());
  const auto stats = client->stats();
  CHECK(stats.watches == kSessions);
  CHECK(stats.watch_streams == 1);

  store.deliver_to(kAlice);
  for (auto& w : watchers) CHECK(w->heard_uid(2));

  // Half the watches go (IDLE's DONE): the rest still hear the next delivery, on the same stream.
  for (int i = 0; i < kSessions; i += 2) sessions[i]->lt.on_loop([&] { watchers[i]->call.reset(); });
  CHECK(eventually([&] { return client->stats().watches == kSessions / 2; }));
  store.deliver_to(kAlice);
  for (int i = 1; i < kSessions; i += 2) CHECK(watchers[i]->heard_uid(3));
  for (int i = 0; i < kSessions; i += 2) CHECK_FALSE(watchers[i]->heard_uid(3, 0ms));
  for (auto& w : watchers) CHECK(w->ended.size() == 0);
  CHECK(client->stats().watch_streams == 1);
  for (int i = 1; i < kSessions; i += 2) sessions[i]->lt.on_loop([&] { watchers[i]->call.reset(); });
  CHECK(eventually([&] { return client->stats().watches == 0; }));
  sessions.clear();
}

TEST_CASE("a watch ends with DeadlineExceeded at watch_deadline, and another opens on the same stream",
          "[store_client][watch_many]") {
  Store store;
  test::LoopThread lt;
  auto o = options_for({store.target()});
  o.watch_deadline = 1500ms;
  auto client = make_client(o);
  Session s(*client, lt);
  const auto box = s.select();
  Watcher w;
  lt.on_loop([&] { w.open(s, box); });
  REQUIRE(w.ready());
  const auto began = Clock::now();
  auto end = w.ended.take();
  CHECK(Clock::now() - began >= 1s);
  REQUIRE_FALSE(end);
  CHECK(end.error().kind == ErrorKind::TempFail);
  CHECK(end.error().code == StoreCode::DeadlineExceeded);
  CHECK(eventually([&] { return client->stats().watches == 0; }));

  Watcher again;
  lt.on_loop([&] {
    w.call.reset();
    again.open(s, box);
  });
  REQUIRE(again.ready());
  store.deliver_to(kAlice);
  CHECK(again.heard_uid(1));
  CHECK(client->stats().watch_streams == 1);
  lt.on_loop([&] { again.call.reset(); });
}

TEST_CASE("a watch whose token expires ends with Unauthenticated and the stream serves the others",
          "[store_client][watch_many]") {
  Store store;
  test::LoopThread lt;
  auto client = make_client(options_for({store.target()}));
  Session lasting(*client, lt);
  Session brief(*client, lt, test::access_token(kAlice, "mta1", std::chrono::seconds(3)));
  const auto box = lasting.select();
  Watcher long_lived, short_lived;
  lt.on_loop([&] {
    long_lived.open(lasting, box);
    short_lived.open(brief, box);
  });
  REQUIRE(long_lived.ready());
  REQUIRE(short_lived.ready());
  auto end = short_lived.ended.take();
  REQUIRE_FALSE(end);
  CHECK(end.error().code == StoreCode::Unauthenticated);
  store.deliver_to(kAlice);
  CHECK(long_lived.heard_uid(1));
  CHECK(long_lived.ended.size() == 0);
  lt.on_loop([&] {
    long_lived.call.reset();
    short_lived.call.reset();
  });
}

TEST_CASE("a store that stops ends every watch with TempFail, and once it is back a new stream serves",
          "[store_client][watch_many]") {
  Store store;
  test::LoopThread lt;
  auto client = make_client(options_for({store.target()}));
  Session s(*client, lt);
  const auto box = s.select();
  std::vector<std::unique_ptr<Watcher>> watchers;
  for (int i = 0; i < 5; ++i) watchers.push_back(std::make_unique<Watcher>());
  lt.on_loop([&] {
    for (auto& w : watchers) w->open(s, box);
  });
  for (auto& w : watchers) REQUIRE(w->ready());

  test::LogCapture logs;
  const int stopped = store.stop();
  INFO(store.log());
  REQUIRE(stopped == 0);
  for (auto& w : watchers) {
    auto end = w->ended.take();
    REQUIRE_FALSE(end);
    CHECK(end.error().kind == ErrorKind::TempFail);
    CHECK(w->ended.all_on_loop);
  }
  CHECK(logs.wait_for({"comp=storeclient", "event=rpc_failed", "method=WatchMany"}));
  CHECK(eventually([&] { return client->stats().watches == 0 && client->stats().watch_streams == 0; }));

  store.start();
  bool served = false;
  const auto until = Clock::now() + 20s;
  while (!served && Clock::now() < until) {
    Watcher w;
    lt.on_loop([&] { w.open(s, box); });
    served = w.ready(3s);
    lt.on_loop([&] { w.call.reset(); });
    if (!served) std::this_thread::sleep_for(200ms);
  }
  CHECK(served);
  lt.on_loop([&] { watchers.clear(); });
}

TEST_CASE("beyond max_watches a watch fails at once with TempFail", "[store_client][watch_many][overload]") {
  Store store;
  test::LoopThread lt;
  auto o = options_for({store.target()});
  o.max_watches = 2;
  auto client = make_client(o);
  Session s(*client, lt);
  const auto box = s.select();
  Watcher a, b, c;
  lt.on_loop([&] {
    a.open(s, box);
    b.open(s, box);
    c.open(s, box);
  });
  auto refused = c.ended.take();
  REQUIRE_FALSE(refused);
  CHECK(refused.error().kind == ErrorKind::TempFail);
  CHECK(refused.error().detail.find("too many watches") != std::string::npos);
  REQUIRE(a.ready());
  REQUIRE(b.ready());
  CHECK(client->stats().overloaded == 1);
  CHECK(client->stats().watches == 2);
  lt.on_loop([&] {
    a.call.reset();
    b.call.reset();
    c.call.reset();
  });
}
