// queue_test.cpp: the mta queue on a real LMDB environment: enqueue and reopen, leases and their
// expiry, the backoff schedule on an injected clock, lifetime expiry with its DSN, hold/release/
// delete/flush, counters, and enqueue's completion on the caller's loop after the commit.
#include <catch2/catch.hpp>

#include <atomic>
#include <memory>
#include <set>
#include <thread>

#include "common/metrics/metrics.hpp"
#include "common/runtime/loop.hpp"
#include "common/runtime/timer.hpp"
#include "mta/queue/queue.hpp"
#include "tests/support/process.hpp"

using namespace mta::queue;
using namespace std::chrono_literals;

namespace {

constexpr UnixMs kStart = 1'700'000'000'000;  // 2023-11-14
constexpr UnixMs kMinute = 60'000;

struct Fixture {
  test::TempDir tmp;
  std::shared_ptr<std::atomic<UnixMs>> clock = std::make_shared<std::atomic<UnixMs>>(kStart);
  std::unique_ptr<Queue> queue;

  explicit Fixture(Policy policy = no_jitter()) { open(std::move(policy)); }
  bool recover_leases = false;
  static Policy no_jitter() {
    Policy p;
    p.jitter = 0;
    p.reporting_mta = "mx.test.example";
    return p;
  }
  void open(Policy policy = no_jitter()) {
    queue.reset();
    QueueOptions options;
    options.dir = (tmp / "queue").string();
    options.map_size = size_t{256} << 20;
    options.policy = std::move(policy);
    options.recover_leases = recover_leases;
    auto c = clock;
    options.clock = [c] { return c->load(); };
    auto q = Queue::open(std::move(options));
    INFO((q ? "" : q.error().detail));
    REQUIRE(q);
    queue = std::move(*q);
  }
  UnixMs now() const { return clock->load(); }
};

Message message(std::string from, std::vector<std::pair<std::string, std::string>> rcpts,
                std::string content = "Subject: hello\r\nFrom: a@example.org\r\n\r\nbody line\r\n") {
  Message m;
  m.envelope.reverse_path = std::move(from);
  m.envelope.client.address = "192.0.2.7:51234";
  m.envelope.client.name = "client.example.org";
  m.envelope.envid = "env-42";
  m.received = "Received: from client.example.org ([192.0.2.7]) by mx.test.example; Tue, 14 Nov 2023\r\n";
  m.content = std::move(content);
  for (auto& [address, destination] : rcpts) {
    Recipient r;
    r.address = address;
    r.destination = destination;
    m.recipients.push_back(std::move(r));
  }
  return m;
}

DeliveryResult result(const DueRecipient& d, Outcome outcome, uint16_t code, std::string status, std::string reply,
                      bool destination_failed = false) {
  DeliveryResult r;
  r.queue_id = d.queue_id;
  r.index = d.index;
  r.lease = d.recipient.lease;
  r.outcome = outcome;
  r.code = code;
  r.status = std::move(status);
  r.reply = std::move(reply);
  r.remote = "mx.remote.example";
  r.destination_failed = destination_failed;
  return r;
}

Recipient recipient(Queue& q, const std::string& id, uint32_t index) {
  auto info = q.show(id);
  REQUIRE(info);
  REQUIRE(*info);
  REQUIRE(index < (*info)->recipients.size());
  return (*info)->recipients[index];
}

}  // namespace

TEST_CASE("enqueue commits the message, its envelope and recipients, they survive a reopen", "[queue]") {
  Fixture f;
  Message m = message("alice@example.org", {{"bob@example.net", "example.net"}, {"carol@local.test", "store1"}});
  m.envelope.size_param = 1234;
  m.envelope.body = BodyType::EightBitMime;
  m.envelope.smtputf8 = true;
  m.envelope.ret = Ret::Hdrs;
  m.envelope.client.tls = "TLSv1.3 TLS_AES_128_GCM_SHA256";
  m.envelope.client.auth_user = "alice";
  m.recipients[0].notify = kNotifyFailure | kNotifyDelay;
  m.recipients[0].orcpt_type = "rfc822";
  m.recipients[0].orcpt = "bob@old.example.net";
  // Over three chunks, so the chunking across Received + content is exercised.
  m.content = "Subject: big\r\n\r\n" + std::string(3 * kChunk + 17, 'x');
  const std::string expected = m.received + m.content;
  auto id = f.queue->enqueue_and_wait(m);
  REQUIRE(id);
  CHECK(valid_queue_id(*id));

  f.open();
  auto info = f.queue->show(*id);
  REQUIRE(info);
  REQUIRE(*info);
  const Envelope& e = (*info)->envelope;
  CHECK(e.reverse_path == "alice@example.org");
  CHECK(e.size_param == 1234u);
  CHECK(e.body == BodyType::EightBitMime);
  CHECK(e.smtputf8);
  CHECK(e.ret == Ret::Hdrs);
  CHECK(e.envid == "env-42");
  CHECK(e.client.address == "192.0.2.7:51234");
  CHECK(e.client.name == "client.example.org");
  CHECK(e.client.tls == "TLSv1.3 TLS_AES_128_GCM_SHA256");
  CHECK(e.client.auth_user == "alice");
  CHECK(e.arrival == kStart);
  CHECK(e.size == expected.size());
  CHECK(e.chunks == 4);
  REQUIRE((*info)->recipients.size() == 2);
  const Recipient& r0 = (*info)->recipients[0];
  CHECK(r0.address == "bob@example.net");
  CHECK(r0.destination == "example.net");
  CHECK(r0.notify == (kNotifyFailure | kNotifyDelay));
  CHECK(r0.orcpt == "bob@old.example.net");
  CHECK(r0.state == RcptState::Queued);
  CHECK(r0.next_attempt == kStart);
  auto bytes = f.queue->message_bytes(*id);
  REQUIRE(bytes);
  CHECK(*bytes == expected);
  auto c = f.queue->counters();
  REQUIRE(c);
  CHECK(c->messages == 1);
  CHECK(c->bytes == expected.size());
  CHECK(c->of(RcptState::Queued) == 2);
}

TEST_CASE("queue ids are unique and sort by arrival", "[queue]") {
  Fixture f;
  std::vector<std::string> ids;
  for (int i = 0; i < 50; ++i) {
    if (i % 10 == 0) f.clock->fetch_add(1);
    auto id = f.queue->enqueue_and_wait(message("a@example.org", {{"b@example.net", "example.net"}}));
    REQUIRE(id);
    ids.push_back(*id);
  }
  CHECK(std::is_sorted(ids.begin(), ids.end()));
  CHECK(std::adjacent_find(ids.begin(), ids.end()) == ids.end());
  for (const auto& id : ids) CHECK(id.size() == kQueueIdLength);
}

TEST_CASE("enqueue refuses a message without recipients or with a recipient without destination", "[queue]") {
  Fixture f;
  auto none = f.queue->enqueue_and_wait(message("a@example.org", {}));
  REQUIRE_FALSE(none);
  CHECK(none.error().kind == common::ErrorKind::Protocol);
  auto nodest = f.queue->enqueue_and_wait(message("a@example.org", {{"b@example.net", ""}}));
  REQUIRE_FALSE(nodest);
  // Nothing of a refused message is stored.
  auto c = f.queue->counters();
  REQUIRE(c);
  CHECK(c->messages == 0);
  auto l = f.queue->list();
  REQUIRE(l);
  CHECK(l->empty());
}

TEST_CASE("enqueue completes on the caller's loop, after the commit, with the queue id", "[queue]") {
  Fixture f;
  common::runtime::Loop loop;
  // The loop's post handle does not keep it running: a timer does, until the last completion.
  common::runtime::Timer guard(loop.get());
  guard.start(std::chrono::seconds(30), [&] { loop.stop(); });
  auto alive = std::make_shared<int>(0);
  std::vector<std::string> ids;
  std::thread::id ran_on;
  for (int i = 0; i < 20; ++i) {
    REQUIRE(f.queue->enqueue(loop, alive, message("a@example.org", {{"b@example.net", "example.net"}}),
                             [&](common::Result<std::string> r) {
                               REQUIRE(r);
                               ran_on = std::this_thread::get_id();
                               // Already on disk: a read transaction sees it.
                               auto info = f.queue->show(*r);
                               REQUIRE(info);
                               CHECK(info->has_value());
                               ids.push_back(*r);
                               if (ids.size() == 20) loop.stop();
                             }));
  }
  loop.run();
  CHECK(ids.size() == 20);
  CHECK(ran_on == std::this_thread::get_id());
  CHECK(f.queue->commit_stats().writes_committed == 20);
  f.queue.reset();  // the writer stops before the loop it posts to goes away
}

TEST_CASE("take_due leases one destination's due recipients, two takers never get the same", "[queue][lease]") {
  Fixture f;
  auto a = f.queue->enqueue_and_wait(
      message("s@example.org", {{"x1@example.net", "example.net"}, {"y@other.test", "other.test"}}));
  auto b = f.queue->enqueue_and_wait(message("s@example.org", {{"x2@example.net", "example.net"}}));
  REQUIRE(a);
  REQUIRE(b);

  auto first = f.queue->take_due_and_wait(f.now(), 10);
  REQUIRE(first);
  CHECK(first->destination == "example.net");
  REQUIRE(first->recipients.size() == 2);
  CHECK(first->recipients[0].recipient.address == "x1@example.net");
  CHECK(first->recipients[1].recipient.address == "x2@example.net");
  CHECK(first->recipients[0].recipient.lease != first->recipients[1].recipient.lease);
  CHECK(first->recipients[0].recipient.attempts == 1);

  auto second = f.queue->take_due_and_wait(f.now(), 10);
  REQUIRE(second);
  CHECK(second->destination == "other.test");
  REQUIRE(second->recipients.size() == 1);
  auto third = f.queue->take_due_and_wait(f.now(), 10);
  REQUIRE(third);
  CHECK(third->recipients.empty());
  // A destination filter: nothing of example.net is due while leased.
  auto filtered = f.queue->take_due_and_wait(f.now(), 10, "example.net");
  REQUIRE(filtered);
  CHECK(filtered->recipients.empty());
  // max is honoured; the rest stays due.
  for (int i = 0; i < 5; ++i) REQUIRE(f.queue->enqueue_and_wait(message("s@example.org", {{"m@many.test", "many.test"}})));
  auto two = f.queue->take_due_and_wait(f.now(), 2, "many.test");
  REQUIRE(two);
  CHECK(two->recipients.size() == 2);
  auto three = f.queue->take_due_and_wait(f.now(), 10, "many.test");
  REQUIRE(three);
  CHECK(three->recipients.size() == 3);
}

TEST_CASE("the only deliverer takes back a killed predecessor's leases at open", "[queue][lease]") {
  Fixture f;
  auto id = f.queue->enqueue_and_wait(message("s@example.org", {{"x@example.net", "example.net"}}));
  REQUIRE(id);
  auto leased = f.queue->take_due_and_wait(f.now(), 10);
  REQUIRE(leased);
  REQUIRE(leased->recipients.size() == 1);
  // Reopened as postern-queue would: the lease stands.
  f.open();
  auto none = f.queue->take_due_and_wait(f.now(), 10);
  REQUIRE(none);
  CHECK(none->recipients.empty());
  // Reopened as the mta: due at once, and the dead lease's report is stale.
  f.recover_leases = true;
  f.open();
  auto again = f.queue->take_due_and_wait(f.now(), 10);
  REQUIRE(again);
  REQUIRE(again->recipients.size() == 1);
  CHECK(again->recipients[0].recipient.attempts == 2);
  auto stale = f.queue->report_and_wait(f.now(), {result(leased->recipients[0], Outcome::Delivered, 250, "2.0.0", "ok")});
  REQUIRE(stale);
  CHECK(stale->stale == 1);
  auto applied = f.queue->report_and_wait(f.now(), {result(again->recipients[0], Outcome::Delivered, 250, "2.0.0", "ok")});
  REQUIRE(applied);
  CHECK(applied->applied == 1);
}

TEST_CASE("an expired lease is handed out again, and the old lease's report is ignored", "[queue][lease]") {
  Policy p = Fixture::no_jitter();
  p.lease = 2min;
  Fixture f(p);
  auto id = f.queue->enqueue_and_wait(message("s@example.org", {{"x@example.net", "example.net"}}));
  REQUIRE(id);
  auto first = f.queue->take_due_and_wait(f.now(), 10);
  REQUIRE(first);
  REQUIRE(first->recipients.size() == 1);
  // The worker "crashes": nothing is reported. Before the lease expires nothing is due.
  f.clock->fetch_add(kMinute);
  auto none = f.queue->take_due_and_wait(f.now(), 10);
  REQUIRE(none);
  CHECK(none->recipients.empty());
  f.clock->fetch_add(kMinute + 1);
  auto again = f.queue->take_due_and_wait(f.now(), 10);
  REQUIRE(again);
  REQUIRE(again->recipients.size() == 1);
  CHECK(again->recipients[0].recipient.attempts == 2);
  CHECK(again->recipients[0].recipient.lease != first->recipients[0].recipient.lease);

  // The first worker wakes up and reports: stale, ignored.
  auto stale = f.queue->report_and_wait(f.now(), {result(first->recipients[0], Outcome::Delivered, 250, "2.0.0", "ok")});
  REQUIRE(stale);
  CHECK(stale->stale == 1);
  CHECK(stale->applied == 0);
  CHECK(recipient(*f.queue, *id, 0).state == RcptState::Queued);
  // The current lease's report applies; the message is gone with its last recipient.
  auto done = f.queue->report_and_wait(f.now(), {result(again->recipients[0], Outcome::Delivered, 250, "2.0.0", "ok")});
  REQUIRE(done);
  CHECK(done->applied == 1);
  REQUIRE(done->removed.size() == 1);
  CHECK(done->removed[0] == *id);
  auto info = f.queue->show(*id);
  REQUIRE(info);
  CHECK_FALSE(info->has_value());
  // A second report of the same lease is stale too.
  auto twice = f.queue->report_and_wait(f.now(), {result(again->recipients[0], Outcome::Delivered, 250, "2.0.0", "ok")});
  REQUIRE(twice);
  CHECK(twice->stale == 1);
  auto c = f.queue->counters();
  REQUIRE(c);
  CHECK(c->messages == 0);
  CHECK(c->bytes == 0);
  for (auto n : c->recipients) CHECK(n == 0);
}

TEST_CASE("temporary failures back off along the schedule, per recipient and per destination", "[queue][backoff]") {
  Policy p = Fixture::no_jitter();
  p.retry_schedule = {1min, 5min, 15min, 30min};
  p.max_queue_lifetime = std::chrono::hours(24 * 365);
  Fixture f(p);
  auto id = f.queue->enqueue_and_wait(message("s@example.org", {{"x@example.net", "example.net"}}));
  REQUIRE(id);
  const std::vector<UnixMs> expected = {1 * kMinute, 5 * kMinute, 15 * kMinute, 30 * kMinute, 30 * kMinute};
  for (size_t i = 0; i < expected.size(); ++i) {
    auto due = f.queue->take_due_and_wait(f.now(), 10);
    REQUIRE(due);
    REQUIRE(due->recipients.size() == 1);
    auto r = f.queue->report_and_wait(
        f.now(), {result(due->recipients[0], Outcome::TempFail, 451, "4.7.1", "greylisted, try later")});
    REQUIRE(r);
    const Recipient rc = recipient(*f.queue, *id, 0);
    INFO("attempt " << i + 1);
    CHECK(rc.state == RcptState::Deferred);
    CHECK(rc.next_attempt - f.now() == expected[i]);
    CHECK(rc.last_code == 451);
    CHECK(rc.last_status == "4.7.1");
    CHECK(rc.last_reply == "greylisted, try later");
    // Not due a millisecond early, due on time.
    f.clock->store(rc.next_attempt - 1);
    auto early = f.queue->take_due_and_wait(f.now(), 10);
    REQUIRE(early);
    CHECK(early->recipients.empty());
    f.clock->store(rc.next_attempt);
  }
  auto c = f.queue->counters();
  REQUIRE(c);
  CHECK(c->of(RcptState::Deferred) == 1);

  // A destination that failed as a whole: its new mail waits for its backoff, and an answer resets it.
  auto due = f.queue->take_due_and_wait(f.now(), 10);
  REQUIRE(due);
  REQUIRE(due->recipients.size() == 1);
  REQUIRE(f.queue->report_and_wait(
      f.now(), {result(due->recipients[0], Outcome::TempFail, 421, "4.4.2", "connection lost", true)}));
  auto fresh = f.queue->enqueue_and_wait(message("s@example.org", {{"new@example.net", "example.net"}}));
  REQUIRE(fresh);
  CHECK(recipient(*f.queue, *fresh, 0).next_attempt == f.now() + kMinute);  // the destination's first step
  auto other = f.queue->enqueue_and_wait(message("s@example.org", {{"z@up.test", "up.test"}}));
  REQUIRE(other);
  CHECK(recipient(*f.queue, *other, 0).next_attempt == f.now());
}

TEST_CASE("backoff jitter stays within its bounds", "[queue][backoff]") {
  Policy p;
  p.retry_schedule = {10min};
  p.jitter = 0.2;
  CHECK(backoff(p, 1, 0.0) == std::chrono::milliseconds(8 * kMinute));
  CHECK(backoff(p, 1, 0.5) == std::chrono::milliseconds(10 * kMinute));
  CHECK(backoff(p, 3, 1.0) == std::chrono::milliseconds(12 * kMinute));

  // Through the queue, with its own generator: every delay within ±20%, and not all the same.
  p.max_queue_lifetime = std::chrono::hours(24 * 365);
  Fixture f(p);
  std::set<UnixMs> delays;
  for (int i = 0; i < 20; ++i) {
    auto id = f.queue->enqueue_and_wait(message("s@example.org", {{"x@j" + std::to_string(i) + ".test", "j" + std::to_string(i)}}));
    REQUIRE(id);
    auto due = f.queue->take_due_and_wait(f.now(), 10);
    REQUIRE(due);
    REQUIRE(due->recipients.size() == 1);
    REQUIRE(f.queue->report_and_wait(f.now(), {result(due->recipients[0], Outcome::TempFail, 450, "4.2.1", "busy")}));
    const UnixMs d = recipient(*f.queue, *id, 0).next_attempt - f.now();
    CHECK(d >= 8 * kMinute);
    CHECK(d <= 12 * kMinute);
    delays.insert(d);
  }
  CHECK(delays.size() > 5);
}

TEST_CASE("past the queue lifetime a temporary failure fails, with a DSN to the sender", "[queue][dsn]") {
  Policy p = Fixture::no_jitter();
  p.max_queue_lifetime = std::chrono::hours(2);
  Fixture f(p);
  Message m = message("alice@example.org", {{"x@example.net", "example.net"}, {"y@example.net", "example.net"}});
  m.recipients[1].notify = kNotifyNever;
  auto id = f.queue->enqueue_and_wait(m);
  REQUIRE(id);
  auto due = f.queue->take_due_and_wait(f.now(), 10);
  REQUIRE(due);
  REQUIRE(due->recipients.size() == 2);
  f.clock->fetch_add(2 * 60 * kMinute);
  auto r = f.queue->report_and_wait(f.now(), {result(due->recipients[0], Outcome::TempFail, 452, "4.2.2", "mailbox full"),
                                              result(due->recipients[1], Outcome::TempFail, 452, "4.2.2", "mailbox full")});
  REQUIRE(r);
  CHECK(r->applied == 2);
  // One DSN for the recipient that did not say NOTIFY=NEVER; the original is done and removed.
  REQUIRE(r->dsns.size() == 1);
  REQUIRE(r->removed.size() == 1);
  CHECK(r->removed[0] == *id);
  auto dsn = f.queue->show(r->dsns[0]);
  REQUIRE(dsn);
  REQUIRE(*dsn);
  CHECK((*dsn)->envelope.reverse_path.empty());
  REQUIRE((*dsn)->recipients.size() == 1);
  CHECK((*dsn)->recipients[0].address == "alice@example.org");
  CHECK((*dsn)->recipients[0].destination == "example.org");
  auto bytes = f.queue->message_bytes(r->dsns[0]);
  REQUIRE(bytes);
  CHECK(bytes->find("Final-Recipient: rfc822; x@example.net") != std::string::npos);
  CHECK(bytes->find("y@example.net") == std::string::npos);
  CHECK(bytes->find("Action: failed") != std::string::npos);
  CHECK(bytes->find("Status: 4.2.2") != std::string::npos);
  CHECK(bytes->find("Diagnostic-Code: smtp; 452 4.2.2 mailbox full") != std::string::npos);
  CHECK(bytes->find("Original-Envelope-Id: env-42") != std::string::npos);

  // The DSN itself fails: a bounce of a bounce is dropped, and the DSN leaves the queue.
  auto dsn_due = f.queue->take_due_and_wait(f.now(), 10);
  REQUIRE(dsn_due);
  REQUIRE(dsn_due->recipients.size() == 1);
  auto r2 = f.queue->report_and_wait(f.now(), {result(dsn_due->recipients[0], Outcome::PermFail, 550, "5.1.1", "no such user")});
  REQUIRE(r2);
  CHECK(r2->dsns.empty());
  CHECK(r2->removed.size() == 1);
  auto c = f.queue->counters();
  REQUIRE(c);
  CHECK(c->messages == 0);
}

TEST_CASE("a recipient past the lifetime is failed by take_due instead of being handed out", "[queue][dsn]") {
  Policy p = Fixture::no_jitter();
  p.max_queue_lifetime = std::chrono::hours(1);
  Fixture f(p);
  auto from_null = f.queue->enqueue_and_wait(message("", {{"x@example.net", "example.net"}}));
  auto from_alice = f.queue->enqueue_and_wait(message("alice@example.org", {{"y@example.net", "example.net"}}));
  REQUIRE(from_null);
  REQUIRE(from_alice);
  f.clock->fetch_add(61 * kMinute);
  auto due = f.queue->take_due_and_wait(f.now(), 10);
  REQUIRE(due);
  CHECK(due->recipients.empty());
  CHECK(due->expired == 2);
  // Only alice's message gets a DSN (none to <>); both originals are gone.
  auto l = f.queue->list();
  REQUIRE(l);
  REQUIRE(l->size() == 1);
  CHECK((*l)[0].envelope.reverse_path.empty());
  CHECK((*l)[0].recipients[0].address == "alice@example.org");
  auto bytes = f.queue->message_bytes((*l)[0].queue_id);
  REQUIRE(bytes);
  CHECK(bytes->find("Status: 4.4.7") != std::string::npos);
}

TEST_CASE("a permanent failure fails at once, NOTIFY=SUCCESS gets a delivered DSN", "[queue][dsn]") {
  Fixture f;
  Message m = message("alice@example.org", {{"x@example.net", "example.net"}, {"y@example.net", "example.net"},
                                            {"z@example.net", "example.net"}});
  m.recipients[1].notify = kNotifySuccess;
  m.recipients[2].notify = kNotifySuccess;
  auto id = f.queue->enqueue_and_wait(m);
  REQUIRE(id);
  auto due = f.queue->take_due_and_wait(f.now(), 10);
  REQUIRE(due);
  REQUIRE(due->recipients.size() == 3);
  auto r = f.queue->report_and_wait(f.now(), {result(due->recipients[0], Outcome::PermFail, 550, "5.1.1", "unknown user"),
                                              result(due->recipients[1], Outcome::Delivered, 250, "2.1.5", "ok"),
                                              result(due->recipients[2], Outcome::Forwarded, 250, "2.0.0", "ok")});
  REQUIRE(r);
  // A failure DSN for x and a success DSN for y; z went on to a DSN-aware MTA, which reports.
  REQUIRE(r->dsns.size() == 2);
  std::string all;
  for (const auto& d : r->dsns) {
    auto b = f.queue->message_bytes(d);
    REQUIRE(b);
    all += *b;
  }
  CHECK(all.find("Action: failed") != std::string::npos);
  CHECK(all.find("Action: delivered") != std::string::npos);
  CHECK(all.find("z@example.net") == std::string::npos);
  CHECK(r->removed.size() == 1);
}

TEST_CASE("NOTIFY=DELAY gets one delayed DSN after delay_warning", "[queue][dsn]") {
  Policy p = Fixture::no_jitter();
  p.delay_warning = std::chrono::hours(1);
  Fixture f(p);
  Message m = message("alice@example.org", {{"x@example.net", "example.net"}});
  m.recipients[0].notify = kNotifyDelay | kNotifyFailure;
  auto id = f.queue->enqueue_and_wait(m);
  REQUIRE(id);
  size_t dsns = 0;
  for (int i = 0; i < 4; ++i) {
    auto due = f.queue->take_due_and_wait(f.now(), 10, "example.net");
    REQUIRE(due);
    REQUIRE(due->recipients.size() == 1);
    auto r = f.queue->report_and_wait(f.now(), {result(due->recipients[0], Outcome::TempFail, 451, "4.3.0", "later")});
    REQUIRE(r);
    dsns += r->dsns.size();
    if (!r->dsns.empty()) {
      auto b = f.queue->message_bytes(r->dsns[0]);
      REQUIRE(b);
      CHECK(b->find("Action: delayed") != std::string::npos);
      CHECK(b->find("Will-Retry-Until: ") != std::string::npos);
      CHECK(b->find("Content-Type: text/rfc822-headers") != std::string::npos);
    }
    f.clock->store(recipient(*f.queue, *id, 0).next_attempt + 40 * kMinute);
  }
  CHECK(dsns == 1);
}

TEST_CASE("hold, release, flush and delete by id and for all", "[queue][admin]") {
  Policy p = Fixture::no_jitter();
  p.max_queue_lifetime = std::chrono::hours(24 * 365);
  Fixture f(p);
  auto a = f.queue->enqueue_and_wait(message("s@example.org", {{"x@example.net", "example.net"}, {"y@o.test", "o.test"}}));
  auto b = f.queue->enqueue_and_wait(message("s@example.org", {{"z@example.net", "example.net"}}));
  REQUIRE(a);
  REQUIRE(b);

  auto held = f.queue->hold(*a);
  REQUIRE(held);
  CHECK(*held == 2);
  CHECK(recipient(*f.queue, *a, 0).state == RcptState::Held);
  auto due = f.queue->take_due_and_wait(f.now(), 10);
  REQUIRE(due);
  REQUIRE(due->recipients.size() == 1);
  CHECK(due->recipients[0].queue_id == *b);
  ListFilter filter;
  filter.state = RcptState::Held;
  auto l = f.queue->list(filter);
  REQUIRE(l);
  REQUIRE(l->size() == 1);
  CHECK((*l)[0].queue_id == *a);
  filter = {};
  filter.destination = "o.test";
  l = f.queue->list(filter);
  REQUIRE(l);
  REQUIRE(l->size() == 1);

  f.clock->fetch_add(kMinute);
  auto released = f.queue->release(*a, f.now());
  REQUIRE(released);
  CHECK(*released == 2);
  CHECK(recipient(*f.queue, *a, 0).state == RcptState::Queued);
  CHECK(recipient(*f.queue, *a, 0).next_attempt == f.now());

  // b's recipient defers for a minute; flush makes it due now.
  REQUIRE(f.queue->report_and_wait(f.now(), {result(due->recipients[0], Outcome::TempFail, 451, "4.0.0", "later")}));
  CHECK(recipient(*f.queue, *b, 0).next_attempt == f.now() + kMinute);
  auto flushed = f.queue->flush(*b, f.now());
  REQUIRE(flushed);
  CHECK(*flushed == 1);
  CHECK(recipient(*f.queue, *b, 0).next_attempt == f.now());

  auto all = f.queue->hold("");
  REQUIRE(all);
  CHECK(*all == 3);
  auto c = f.queue->counters();
  REQUIRE(c);
  CHECK(c->of(RcptState::Held) == 3);
  auto none = f.queue->take_due_and_wait(f.now() + 365LL * 24 * 60 * kMinute, 10);
  REQUIRE(none);
  CHECK(none->recipients.empty());
  REQUIRE(f.queue->release("", f.now()));

  auto removed = f.queue->remove(*a);
  REQUIRE(removed);
  CHECK(*removed);
  auto again = f.queue->remove(*a);
  REQUIRE(again);
  CHECK_FALSE(*again);
  c = f.queue->counters();
  REQUIRE(c);
  CHECK(c->messages == 1);
  CHECK(c->of(RcptState::Held) == 0);
  CHECK(c->of(RcptState::Deferred) + c->of(RcptState::Queued) == 1);
  // What is left is exactly b.
  auto rest = f.queue->take_due_and_wait(f.now(), 10);
  REQUIRE(rest);
  REQUIRE(rest->recipients.size() == 1);
  CHECK(rest->recipients[0].queue_id == *b);
}

TEST_CASE("the queue's gauges read the stored counters", "[queue][metrics]") {
  test::TempDir tmp;
  common::metrics::Registry registry;
  QueueOptions options;
  options.dir = (tmp / "q").string();
  options.map_size = size_t{64} << 20;
  options.registry = &registry;
  {
    auto q = Queue::open(options);
    REQUIRE(q);
    REQUIRE((*q)->enqueue_and_wait(message("s@example.org", {{"x@example.net", "example.net"}})));
    const std::string text = registry.render();
    CHECK(text.find("mta_queue_messages 1") != std::string::npos);
    CHECK(text.find("mta_queue_recipients_queued 1") != std::string::npos);
    CHECK(text.find("mta_queue_bytes ") != std::string::npos);
  }
  // The queue is gone: scraping is still safe.
  CHECK(registry.render().find("mta_queue_messages 0") != std::string::npos);
}
