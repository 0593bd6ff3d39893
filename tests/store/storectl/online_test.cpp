// online_test.cpp: postern-storectl --online against a real postern-store over mutual TLS: every
// command, an export then re-import byte for byte, an import keeping UIDs while LMTP deliveries
// for the same mailbox arrive (held back with a temporary failure, never given a source's UID),
// an abandoned import releasing its hold, and the refusals (certificate not in admin_clients).
#include <catch2/catch.hpp>

#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <thread>

#include "store/tools/online.hpp"
#include "tests/store/storectl/store_snapshot.hpp"
#include "tests/store/support/store_daemon.hpp"
#include "tests/support/nss_host.hpp"
#include "tests/support/process.hpp"

namespace {

namespace fs = std::filesystem;

std::string slurp(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

// Every file of a Maildir (name -> bytes), the uidlist too.
std::map<std::string, std::string> maildir_files(const fs::path& dir) {
  std::map<std::string, std::string> out;
  for (const auto& e : fs::recursive_directory_iterator(dir)) {
    if (e.is_regular_file()) out[fs::relative(e.path(), dir).string()] = slurp(e.path());
  }
  return out;
}

test::StoreDaemonOptions admin_options(const std::string& admins = "[\"mta1\"]") {
  test::StoreDaemonOptions o;
  o.mailstore_extra = "admin_clients = " + admins + "\n";
  o.lmtp_extra = "max_message_size = \"4M\"\n";
  return o;
}

std::unique_ptr<store::tools::OnlineTarget> online_target(int port, uint32_t idle = 60) {
  test::nss_host();
  store::tools::OnlineOptions o;
  o.target = "127.0.0.1:" + std::to_string(port);
  o.import_idle_seconds = idle;
  auto t = store::tools::OnlineTarget::open(o);
  REQUIRE(t);
  return std::move(*t);
}

store::tools::ImportMessage message(uint32_t uid, const std::string& subject) {
  store::tools::ImportMessage m;
  m.uid = uid;
  m.internal_date = 1700000000 + uid;
  m.bytes = "From: a@example.com\r\nSubject: " + subject + "\r\n\r\nbody " + subject + "\r\n";
  m.source = subject;
  return m;
}

}  // namespace

TEST_CASE("storectl online: every command against a running postern-store", "[storectl][integration]") {
  const std::string tool = test::binary_path("store/tools/postern-storectl");
  const std::string nss = test::nss_host().db.string();
  test::StoreDaemon store(admin_options());
  store.start();
  const std::vector<std::string> online{tool, "--online", "127.0.0.1:" + std::to_string(store.grpc_port()), "--nss", nss};
  auto run = [&](std::vector<std::string> words) {
    std::vector<std::string> argv = online;
    argv.insert(argv.end(), words.begin(), words.end());
    auto r = test::run(argv);
    UNSCOPED_INFO(r.output);
    return r;
  };
  // A 1.5 MB message goes over the gRPC message limit: export and import send it in pieces.
  for (const std::string size : {"1000", "70000", "1500000"}) {
    auto sent = store.deliver({"alice@example.com"}, {"--size", size});
    INFO(sent.output);
    REQUIRE(sent.exit_code == 0);
  }
  const test::TempDir out;
  const fs::path dir = store.dir() / "store";

  auto r = run({"usage", "alice@example.com"});
  CHECK(r.exit_code == 0);
  CHECK(r.output.find("alice@example.com: 3 messages") != std::string::npos);
  CHECK(r.output.find("  INBOX: 3 messages, 3 unseen") != std::string::npos);
  r = run({"usage"});
  CHECK(r.exit_code == 0);
  CHECK(r.output.find("1 users") != std::string::npos);
  r = run({"verify"});
  CHECK(r.exit_code == 0);
  CHECK(r.output.find("0 problems") != std::string::npos);
  r = run({"user", "create", "carol@example.com"});
  CHECK(r.exit_code == 0);
  r = run({"user", "create", "carol@example.com"});
  CHECK(r.exit_code == 1);
  CHECK(r.output.find("user carol@example.com exists") != std::string::npos);
  r = run({"usage", "nobody@example.com"});
  CHECK(r.exit_code == 1);
  CHECK(r.output.find("no user nobody@example.com") != std::string::npos);

  // Export online; the same mailbox exported offline beside the running store is the same bytes.
  r = run({"export", "alice@example.com", "INBOX", "--maildir", (out / "alice").string()});
  REQUIRE(r.exit_code == 0);
  CHECK(r.output.find("3 messages") != std::string::npos);
  r = run({"export", "alice@example.com", "INBOX", "--mbox", (out / "alice.mbox").string()});
  REQUIRE(r.exit_code == 0);
  auto offline = test::run({tool, "--dir", dir.string(), "export", "alice@example.com", "INBOX", "--mbox",
                            (out / "offline.mbox").string()});
  REQUIRE(offline.exit_code == 0);
  CHECK(slurp(out / "alice.mbox") == slurp(out / "offline.mbox"));
  CHECK(slurp(out / "alice.mbox").size() > 1500000);
  r = run({"export", "alice@example.com", "Nonesuch", "--maildir", (out / "none").string()});
  CHECK(r.exit_code == 1);

  // Import online into carol, export her INBOX online again: the same files, names (UIDs,
  // UIDVALIDITY, dates) and uidlist.
  r = run({"import", "carol@example.com", "--maildir", (out / "alice").string(), "--batch", "2"});
  REQUIRE(r.exit_code == 0);
  CHECK(r.output.find("INBOX <- .: 3 imported, UIDs kept") != std::string::npos);
  r = run({"export", "carol@example.com", "INBOX", "--maildir", (out / "carol").string()});
  REQUIRE(r.exit_code == 0);
  const auto alice_files = maildir_files(out / "alice");
  CHECK(alice_files.size() >= 4);
  CHECK(maildir_files(out / "carol") == alice_files);
  // Run again: everything is already there.
  r = run({"import", "carol@example.com", "--maildir", (out / "alice").string()});
  CHECK(r.exit_code == 0);
  CHECK(r.output.find("(3 were already there)") != std::string::npos);

  r = run({"user", "rename", "carol@example.com", "dave@example.com"});
  CHECK(r.exit_code == 0);
  r = run({"usage", "dave@example.com"});
  CHECK(r.output.find("dave@example.com: 3 messages") != std::string::npos);
  r = run({"verify", "--repair"});
  CHECK(r.exit_code == 0);
  CHECK(r.output.find("0 problems, 0 repaired") != std::string::npos);
  r = run({"user", "delete", "dave@example.com"});
  CHECK(r.exit_code == 0);
  CHECK(r.output.find("deleted user dave@example.com: 6 mailboxes, 3 messages") != std::string::npos);
  CHECK(store.count("event=refused") == 0);

  auto sent = store.deliver({"alice@example.com"});
  REQUIRE(sent.exit_code == 0);
  REQUIRE(store.stop() == 0);
  CHECK(test::verify_problems(dir) == 0);
  CHECK(test::snapshot(dir, "alice@example.com", "INBOX").messages.size() == 4);
}

TEST_CASE("storectl online: an import keeping UIDs holds back deliveries to its mailbox", "[storectl][integration]") {
  test::StoreDaemon store(admin_options());
  store.start();
  auto initial = store.deliver({"bob@example.com"});  // bob exists, with mail in INBOX
  INFO(initial.output << store.log());
  REQUIRE(initial.exit_code == 0);
  auto target = online_target(store.grpc_port());
  REQUIRE(target->create_user("user1@example.com"));

  auto start = target->begin_import("user1@example.com", "INBOX", 4242);
  REQUIRE(start);
  CHECK(start->keep_uids);
  CHECK(start->uidvalidity == 4242);
  std::vector<store::tools::ImportMessage> first;
  first.push_back(message(1, "one"));
  first.push_back(message(2, "two"));
  auto done = target->import_batch("user1@example.com", *start, std::move(first));
  REQUIRE(done);
  CHECK(done->imported == 2);

  // Between two batches a delivery must not take UID 3 (the source's next message's): it is held
  // back with a temporary failure, and the mta tries again later.
  // Only the held recipient is refused: bob, in the same transaction, gets his copy.
  auto held = store.deliver({"user1@example.com", "bob@example.com"});
  INFO(held.output);
  CHECK(held.output.find("RCPT user1@example.com 451 4.2.1") != std::string::npos);
  CHECK(held.output.find("RCPT bob@example.com 250") != std::string::npos);
  CHECK(store.count("is being imported with its source's UIDs") >= 1);

  std::vector<store::tools::ImportMessage> second;
  second.push_back(message(3, "three"));
  second.push_back(message(7, "seven"));
  done = target->import_batch("user1@example.com", *start, std::move(second));
  REQUIRE(done);
  CHECK(done->imported == 2);
  CHECK(done->skipped == 0);
  CHECK(done->first_uid == 3);
  CHECK(done->last_uid == 7);
  REQUIRE(target->finish_import("user1@example.com", *start, 10));
  // Finished: the delivery that was held back goes in after the source's UIDs.
  auto retried = store.deliver({"user1@example.com"});
  INFO(retried.output);
  REQUIRE(retried.output.find("RCPT user1@example.com 250") != std::string::npos);

  REQUIRE(store.stop() == 0);
  const fs::path dir = store.dir() / "store";
  const auto box = test::snapshot(dir, "user1@example.com", "INBOX");
  CHECK(box.record.uidvalidity == 4242);
  std::vector<uint32_t> uids;
  for (const auto& m : box.messages) uids.push_back(m.uid);
  CHECK(uids == std::vector<uint32_t>{1, 2, 3, 7, 10});
  CHECK(box.messages[3].bytes.find("Subject: seven") != std::string::npos);
  CHECK(test::verify_problems(dir) == 0);
}

TEST_CASE("storectl online: an abandoned import releases its hold", "[storectl][integration]") {
  test::StoreDaemon store(admin_options());
  store.start();
  auto target = online_target(store.grpc_port(), 2);
  REQUIRE(target->create_user("user2@example.com"));
  auto start = target->begin_import("user2@example.com", "INBOX", 777);
  REQUIRE(start);
  REQUIRE(start->keep_uids);
  // A second import of the same mailbox while the first holds it is refused.
  auto second = online_target(store.grpc_port())->begin_import("user2@example.com", "INBOX", 777);
  REQUIRE(!second);
  CHECK(second.error().detail.find("is being imported by another postern-storectl") != std::string::npos);
  CHECK(store.deliver({"user2@example.com"}).output.find("RCPT user2@example.com 451") != std::string::npos);
  // The client goes quiet past its idle time: the hold lapses and the import is given up.
  std::this_thread::sleep_for(std::chrono::milliseconds(3200));
  auto sent = store.deliver({"user2@example.com"});
  INFO(sent.output);
  CHECK(sent.output.find("RCPT user2@example.com 250") != std::string::npos);
  std::vector<store::tools::ImportMessage> late;
  late.push_back(message(1, "late"));
  auto r = target->import_batch("user2@example.com", *start, std::move(late));
  REQUIRE(!r);
  CHECK(r.error().detail.find("given up after going quiet") != std::string::npos);
  // A new import of the mailbox (now holding mail under 777) keeps UIDs again, after the delivery.
  auto again = online_target(store.grpc_port())->begin_import("user2@example.com", "INBOX", 777);
  REQUIRE(again);
  CHECK(again->keep_uids);
  CHECK(again->uidnext == 2);
  REQUIRE(store.stop() == 0);
}

TEST_CASE("storectl online: callers outside admin_clients are refused", "[storectl][integration]") {
  const std::string tool = test::binary_path("store/tools/postern-storectl");
  const std::string nss = test::nss_host().db.string();
  for (const std::string admins : {"[\"operator9\"]", "[]"}) {
    test::StoreDaemon store(admin_options(admins));
    store.start();
    const std::string at = "127.0.0.1:" + std::to_string(store.grpc_port());
    for (const std::vector<std::string>& words : std::vector<std::vector<std::string>>{
             {"usage"}, {"user", "create", "carol@example.com"}, {"export", "alice@example.com", "INBOX", "--mbox",
                                                                  (store.dir() / "x.mbox").string()}}) {
      std::vector<std::string> argv{tool, "--online", at, "--nss", nss};
      argv.insert(argv.end(), words.begin(), words.end());
      auto r = test::run(argv);
      INFO(admins << " " << r.output);
      CHECK(r.exit_code == 1);
      CHECK(r.output.find("refused: certificate mta1 is not in [mailstore] admin_clients") != std::string::npos);
    }
    CHECK(store.count("comp=storeadmin") >= 3);
    CHECK(store.count("event=refused") >= 3);
    // No certificate at all: the store's TLS port takes no plaintext call.
    auto r = test::run({tool, "--online", at, "--plaintext", "yes", "usage"});
    INFO(r.output);
    CHECK(r.exit_code == 1);
    CHECK(r.output.find("store " + at + ": ") != std::string::npos);
    REQUIRE(store.stop() == 0);
    CHECK(test::verify_problems(store.dir() / "store") == 0);
  }
}
