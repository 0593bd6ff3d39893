// cli_test.cpp: postern-queue on a real queue directory: list with filters, show, hold, release,
// flush and delete, each read back through the library; refusals for a missing queue or id.
#include <catch2/catch.hpp>

#include "mta/queue/queue.hpp"
#include "tests/support/process.hpp"

using namespace mta::queue;

namespace {

test::CommandResult cli(const std::filesystem::path& dir, std::vector<std::string> args) {
  std::vector<std::string> argv = {test::binary_path("mta/queue/postern-queue"), "--dir", dir.string()};
  argv.insert(argv.end(), args.begin(), args.end());
  return test::run(argv);
}

Message message(std::string from, std::string to, std::string destination) {
  Message m;
  m.envelope.reverse_path = std::move(from);
  m.envelope.client.address = "192.0.2.9:40000";
  m.envelope.envid = "E1";
  m.received = "Received: from x by y\r\n";
  m.content = "Subject: cli test\r\nFrom: a@example.org\r\n\r\nsecret body\r\n";
  Recipient r;
  r.address = std::move(to);
  r.destination = std::move(destination);
  m.recipients.push_back(std::move(r));
  return m;
}

}  // namespace

TEST_CASE("postern-queue lists, shows, holds, releases, flushes and deletes", "[queue][cli]") {
  test::TempDir tmp;
  const auto dir = tmp / "queue";
  QueueOptions options;
  options.dir = dir.string();
  options.map_size = size_t{1} << 30;
  std::string a, b;
  {
    auto q = Queue::open(options);
    REQUIRE(q);
    auto ra = (*q)->enqueue_and_wait(message("alice@example.org", "x@example.net", "example.net"));
    auto rb = (*q)->enqueue_and_wait(message("bob@example.org", "y@local.test", "store1"));
    REQUIRE(ra);
    REQUIRE(rb);
    a = *ra;
    b = *rb;
    // A temporary failure on b, so show has a last reply to print.
    auto due = (*q)->take_due_and_wait((*q)->now(), 10, "store1");
    REQUIRE(due);
    REQUIRE(due->recipients.size() == 1);
    DeliveryResult res;
    res.queue_id = b;
    res.index = 0;
    res.lease = due->recipients[0].recipient.lease;
    res.outcome = Outcome::TempFail;
    res.code = 452;
    res.status = "4.2.2";
    res.reply = "mailbox full";
    res.remote = "store1";
    REQUIRE((*q)->report_and_wait((*q)->now(), {res}));
  }

  auto r = cli(dir, {"list"});
  INFO(r.output);
  CHECK(r.exit_code == 0);
  CHECK(r.output.find(a) != std::string::npos);
  CHECK(r.output.find(b) != std::string::npos);
  CHECK(r.output.find("2 messages") != std::string::npos);

  r = cli(dir, {"list", "--state", "deferred"});
  CHECK(r.exit_code == 0);
  CHECK(r.output.find(a) == std::string::npos);
  CHECK(r.output.find(b) != std::string::npos);
  r = cli(dir, {"list", "--destination", "example.net"});
  CHECK(r.output.find(a) != std::string::npos);
  CHECK(r.output.find(b) == std::string::npos);
  CHECK(cli(dir, {"list", "--state", "bogus"}).exit_code == 2);

  r = cli(dir, {"show", b});
  INFO(r.output);
  CHECK(r.exit_code == 0);
  CHECK(r.output.find("from:      <bob@example.org>") != std::string::npos);
  CHECK(r.output.find("ENVID=E1") != std::string::npos);
  CHECK(r.output.find("<y@local.test> deferred") != std::string::npos);
  CHECK(r.output.find("last reply: 452 4.2.2 mailbox full from store1") != std::string::npos);
  CHECK(r.output.find("Subject: cli test") != std::string::npos);
  CHECK(r.output.find("secret body") == std::string::npos);  // headers only
  CHECK(cli(dir, {"show", "0000000000NOPE"}).exit_code == 1);

  r = cli(dir, {"hold", a});
  CHECK(r.exit_code == 0);
  CHECK(r.output.find("held 1 recipient") != std::string::npos);
  r = cli(dir, {"list", "--state", "held"});
  CHECK(r.output.find(a) != std::string::npos);
  CHECK(r.output.find("1 message\n") != std::string::npos);
  r = cli(dir, {"release", "--all"});
  CHECK(r.exit_code == 0);
  CHECK(r.output.find("released 1 recipient") != std::string::npos);
  r = cli(dir, {"hold", "--all"});
  CHECK(r.output.find("held 2 recipients") != std::string::npos);
  REQUIRE(cli(dir, {"release", "--all"}).exit_code == 0);
  r = cli(dir, {"flush", b});
  CHECK(r.exit_code == 0);
  CHECK(r.output.find("flushed 1 recipient") != std::string::npos);
  CHECK(cli(dir, {"hold", "0000000000NOPE"}).exit_code == 1);

  r = cli(dir, {"delete", a});
  CHECK(r.exit_code == 0);
  CHECK(cli(dir, {"delete", a}).exit_code == 1);

  // What the tool did is what the library reads.
  auto q = Queue::open(options);
  REQUIRE(q);
  auto gone = (*q)->show(a);
  REQUIRE(gone);
  CHECK_FALSE(gone->has_value());
  auto info = (*q)->show(b);
  REQUIRE(info);
  REQUIRE(*info);
  CHECK((*info)->recipients[0].state == RcptState::Deferred);
  CHECK((*info)->recipients[0].next_attempt <= (*q)->now());
  auto c = (*q)->counters();
  REQUIRE(c);
  CHECK(c->messages == 1);
  CHECK(c->of(RcptState::Held) == 0);
  CHECK(c->of(RcptState::Deferred) == 1);
}

TEST_CASE("postern-queue writes beside a running queue, which sees them at its next scan", "[queue][cli]") {
  test::TempDir tmp;
  QueueOptions options;
  options.dir = (tmp / "q").string();
  options.map_size = size_t{1} << 30;
  auto q = Queue::open(options);  // with its writer thread, as in the mta
  REQUIRE(q);
  auto id = (*q)->enqueue_and_wait(message("alice@example.org", "x@example.net", "example.net"));
  REQUIRE(id);
  auto r = cli(tmp / "q", {"hold", *id});
  INFO(r.output);
  REQUIRE(r.exit_code == 0);
  auto due = (*q)->take_due_and_wait((*q)->now(), 10);
  REQUIRE(due);
  CHECK(due->recipients.empty());
  // The running queue goes on writing, and the tool reads what it wrote.
  auto other = (*q)->enqueue_and_wait(message("bob@example.org", "y@example.net", "example.net"));
  REQUIRE(other);
  r = cli(tmp / "q", {"list", "--state", "queued"});
  CHECK(r.output.find(*other) != std::string::npos);
  CHECK(r.output.find(*id) == std::string::npos);
  REQUIRE(cli(tmp / "q", {"release", *id}).exit_code == 0);
  due = (*q)->take_due_and_wait((*q)->now(), 10);
  REQUIRE(due);
  CHECK(due->recipients.size() == 2);
}

TEST_CASE("postern-queue refuses a directory without a queue and bad usage", "[queue][cli]") {
  test::TempDir tmp;
  auto r = cli(tmp / "none", {"list"});
  CHECK(r.exit_code == 2);
  CHECK(r.output.find("no mta queue") != std::string::npos);
  CHECK_FALSE(std::filesystem::exists(tmp / "none" / "data.mdb"));
  CHECK(test::run({test::binary_path("mta/queue/postern-queue"), "list"}).exit_code == 2);
  QueueOptions options;
  options.dir = (tmp / "q").string();
  options.map_size = size_t{64} << 20;
  { REQUIRE(Queue::open(options)); }
  CHECK(cli(tmp / "q", {"frobnicate"}).exit_code == 2);
  CHECK(cli(tmp / "q", {"delete", "--all"}).exit_code == 2);
  r = cli(tmp / "q", {"list"});
  CHECK(r.exit_code == 0);
  CHECK(r.output.find("0 messages") != std::string::npos);
}
