// storectl_test.cpp: postern-storectl on real LMDB environments: users, usage, verify, a Maildir
// export re-imported byte for byte (flags, keywords, dates, UIDs, UIDVALIDITY, UIDNEXT), a re-run
// that skips what is there, a hand-made Maildir++ tree in Dovecot's conventions, mbox export, and
// the CLI (usage errors, a store that is running).
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <fstream>
#include <map>
#include <thread>

#include <catch2/catch.hpp>

#include "common/lmdb/codec.hpp"
#include "common/lmdb/lmdb.hpp"
#include "store/mime/parser.hpp"
#include "store/storage/delivery.hpp"
#include "store/storage/mailbox_ops.hpp"
#include "store/tools/export.hpp"
#include "store/tools/import.hpp"
#include "store/tools/mbox.hpp"
#include "store/tools/offline.hpp"
#include "store/tools/storectl.hpp"
#include "tests/store/storectl/store_snapshot.hpp"
#include "tests/support/process.hpp"

namespace {

namespace fs = std::filesystem;
using common::lmdb::Txn;
using test::Box;
using test::Msg;
using test::RawEnv;
using test::snapshot;
using test::verify_problems;
using namespace std::chrono_literals;
using store::tools::OfflineOptions;
using store::tools::OfflineTarget;

constexpr const char* kAlice = "alice@example.com";

std::unique_ptr<OfflineTarget> offline(const fs::path& dir, bool read_only = false) {
  OfflineOptions o;
  o.dir = dir.string();
  o.map_size = uint64_t{1} << 30;
  o.read_only = read_only;
  auto t = OfflineTarget::open(o);
  INFO((t ? "" : t.error().detail));
  REQUIRE(t);
  return std::move(*t);
}

// An empty store environment, as postern-store leaves it after its first start.
void make_store(const fs::path& dir) { RawEnv e(dir); }

struct Seed {
  std::string bytes;
  uint32_t flags;
  std::vector<std::string> keywords;
  int64_t date;
};

std::string big_message() {
  std::string m = "Subject: big\r\nContent-Type: text/plain; charset=iso-8859-1\r\n\r\n";
  for (int i = 0; m.size() < 200 * 1024; ++i) m += "line " + std::to_string(i) + " caf\xe9 \xff\x80 From x\r\n";
  return m;
}

const std::vector<Seed>& seeds() {
  static const std::vector<Seed> s = {
      {"Subject: one\r\n\r\nhello\r\n", store::kSeen, {}, 1700000000},
      {"Subject: from lines\r\n\r\nFrom here\r\n>From there\r\n", store::kAnswered | store::kFlagged,
       {"$Forwarded", "work"}, 1700000100},
      {"Subject: expunged in the middle\r\n\r\n.\r\n", 0, {}, 1700000150},
      {big_message(), store::kDraft, {"Later"}, 1600000000},
      {"Subject: mixed\r\n\r\na\nb\r\nc\n", store::kDeleted | store::kSeen, {"work"}, 1700000200},
      {"Subject: no end\r\n\r\nlast line without CRLF", 0, {}, 1700000300},
      {"Subject: expunged last\r\n\r\nbye\r\n", 0, {}, 1700000400},
  };
  return s;
}

// alice with a delivered message (a Delivered-To prefix before the shared body) and the seeds
// appended to `mailbox`; the third and the last expunged, so UIDs have a gap and UIDNEXT is past
// the last UID.
void fill_source(const fs::path& dir, const std::string& mailbox = "INBOX") {
  RawEnv e(dir);
  e.write([&](Txn& txn) {
    REQUIRE(store::ops::create_user_if_missing(txn, e.dbs, kAlice, 1690000000));
    if (mailbox != "INBOX") REQUIRE(store::ops::create_mailbox(txn, e.dbs, kAlice, mailbox, 0, 1690000000));
    store::Delivery d;
    d.body = "Return-Path: <sender@example.net>\r\nSubject: delivered\r\n\r\nbody\r\n";
    d.structure = store::mime::encode(store::mime::parse(d.body));
    d.internal_date = 1695000000;
    d.recipients.push_back(store::DeliveryRecipient{kAlice, kAlice, mailbox == "INBOX" ? "" : mailbox, 0, 0});
    REQUIRE(store::file_delivery(txn, e.dbs, d, 1695000000, std::chrono::hours(24)));
    std::vector<uint32_t> uids;
    for (const auto& s : seeds()) {
      store::ops::FlagSet f{s.flags, s.keywords};
      auto a = store::ops::append_message(txn, e.dbs, kAlice, mailbox, s.bytes, f, s.date);
      INFO((a ? "" : a.error().detail));
      REQUIRE(a);
      uids.push_back(a->uid);
    }
    auto sel = store::ops::select_mailbox(txn, e.dbs, kAlice, mailbox);
    REQUIRE(sel);
    const store::ops::UidSet doomed{{uids[2], uids[2]}, {uids.back(), uids.back()}};
    REQUIRE(store::ops::store_flags(txn, e.dbs, kAlice, sel->ref, doomed, store::ops::StoreMode::Add,
                                    store::ops::FlagSet{store::kDeleted, {}}));
    auto gone = store::ops::expunge(txn, e.dbs, kAlice, sel->ref, doomed);
    REQUIRE(gone);
    REQUIRE(gone->expunged.size() == 2);
  });
}

std::vector<std::string> run_lines(store::tools::Target& t, std::vector<std::string_view> words, int expect = 0) {
  auto command = store::tools::parse_command(words);
  INFO((command ? "" : command.error().detail));
  REQUIRE(command);
  std::vector<std::string> lines;
  auto status = store::tools::run_command(t, *command, [&](const std::string& l) { lines.push_back(l); });
  INFO((status ? "" : status.error().detail));
  REQUIRE(status);
  for (const auto& l : lines) UNSCOPED_INFO(l);
  CHECK(*status == expect);
  return lines;
}

bool has_line(const std::vector<std::string>& lines, const std::string& needle) {
  return std::any_of(lines.begin(), lines.end(), [&](const std::string& l) { return l.find(needle) != std::string::npos; });
}

// Every file under `dir` with its bytes, and for messages their mtime (the internal date; the
// control files are as new as the export): two Maildirs compared whole.
std::map<std::string, std::pair<std::string, int64_t>> tree(const fs::path& dir) {
  std::map<std::string, std::pair<std::string, int64_t>> out;
  for (const auto& e : fs::recursive_directory_iterator(dir)) {
    if (!e.is_regular_file()) continue;
    struct stat st {};
    REQUIRE(::stat(e.path().c_str(), &st) == 0);
    const std::string name = fs::relative(e.path(), dir).string();
    out[name] = {test::read_file(e.path()), name.starts_with("cur/") ? static_cast<int64_t>(st.st_mtim.tv_sec) : 0};
  }
  return out;
}

// A target whose import stops with an error after `batches` batches, as if the tool was killed.
class CrashingTarget final : public store::tools::Target {
 public:
  CrashingTarget(store::tools::Target& inner, int batches) : inner_(inner), left_(batches) {}
  std::string describe() const override { return inner_.describe(); }
  store::tools::OpResult<store::UserRecord> create_user(std::string_view u) override { return inner_.create_user(u); }
  store::tools::OpResult<void> rename_user(std::string_view f, std::string_view t) override {
    return inner_.rename_user(f, t);
  }
  store::tools::OpResult<store::ops::DeletedUser> delete_user(std::string_view u) override {
    return inner_.delete_user(u);
  }
  store::tools::OpResult<std::vector<store::tools::UserUsage>> usage(std::optional<std::string_view> u) override {
    return inner_.usage(u);
  }
  store::tools::OpResult<store::ops::VerifyReport> verify(bool repair) override { return inner_.verify(repair); }
  store::tools::OpResult<void> export_mailbox(
      std::string_view user, std::string_view mailbox,
      const std::function<store::tools::OpResult<void>(const store::tools::ExportedMailbox&)>& begin,
      const std::function<store::tools::OpResult<void>(const store::tools::ExportedMessage&)>& message) override {
    return inner_.export_mailbox(user, mailbox, begin, message);
  }
  store::tools::OpResult<store::tools::ImportStart> begin_import(std::string_view user, std::string_view mailbox,
                                                                 uint32_t uidvalidity) override {
    return inner_.begin_import(user, mailbox, uidvalidity);
  }
  store::tools::OpResult<store::tools::ImportBatchResult> import_batch(
      std::string_view user, const store::tools::ImportStart& start,
      std::vector<store::tools::ImportMessage>&& batch) override {
    if (left_-- == 0) return tl::unexpected(store::ops::OpError{store::ops::OpCode::TempFail, "killed"});
    return inner_.import_batch(user, start, std::move(batch));
  }
  store::tools::OpResult<void> finish_import(std::string_view user, const store::tools::ImportStart& start,
                                             uint32_t next) override {
    return inner_.finish_import(user, start, next);
  }
  store::tools::OpResult<void> subscribe(std::string_view user, const std::vector<std::string>& names) override {
    return inner_.subscribe(user, names);
  }

 private:
  store::tools::Target& inner_;
  int left_;
};

void write_file(const fs::path& path, const std::string& content, int64_t mtime = 0) {
  fs::create_directories(path.parent_path());
  std::ofstream(path, std::ios::binary) << content;
  if (mtime != 0) {
    const struct timespec times[2] = {{mtime, 0}, {mtime, 0}};
    REQUIRE(::utimensat(AT_FDCWD, path.c_str(), times, 0) == 0);
  }
}

}  // namespace

TEST_CASE("storectl: user create, rename, delete and usage", "[storectl]") {
  test::TempDir dir;
  const fs::path store_dir = dir / "store";
  make_store(store_dir);
  {
    auto t = offline(store_dir);
    auto lines = run_lines(*t, {"user", "create", "Alice@Example.com"});
    CHECK(has_line(lines, "created user alice@example.com"));
    auto again = store::tools::run_command(*t, store::tools::Command{store::tools::cmd::UserCreate{kAlice}},
                                           [](const std::string&) {});
    REQUIRE_FALSE(again);
    CHECK(again.error().code == store::ops::OpCode::AlreadyExists);
    lines = run_lines(*t, {"usage", kAlice});
    CHECK(has_line(lines, "alice@example.com: 0 messages, 0 bytes; no bytes quota, no messages quota"));
    CHECK(has_line(lines, "  INBOX: 0 messages, 0 unseen, 0 bytes, UIDVALIDITY "));
    CHECK(has_line(lines, "  Archive: "));
    CHECK(has_line(lines, ", subscribed"));
  }
  fill_source(store_dir);
  {
    auto t = offline(store_dir);
    auto lines = run_lines(*t, {"usage"});
    CHECK(has_line(lines, "alice@example.com: 6 messages, "));
    CHECK(has_line(lines, "  INBOX: 6 messages, 4 unseen, "));
    CHECK(has_line(lines, "1 users"));
    lines = run_lines(*t, {"verify"});
    CHECK(has_line(lines, "checked 1 users, 6 mailboxes, 6 messages, 6 bodies"));
    CHECK(has_line(lines, "0 problems"));
    lines = run_lines(*t, {"user", "rename", kAlice, "alice2@example.com"});
    CHECK(has_line(lines, "renamed user alice@example.com to alice2@example.com"));
    auto missing = t->usage(std::string_view(kAlice));
    REQUIRE_FALSE(missing);
    CHECK(missing.error().code == store::ops::OpCode::NotFound);
    lines = run_lines(*t, {"usage", "alice2@example.com"});
    CHECK(has_line(lines, "alice2@example.com: 6 messages, "));
    lines = run_lines(*t, {"user", "delete", "alice2@example.com"});
    CHECK(has_line(lines, "deleted user alice2@example.com: 6 mailboxes, 6 messages, 6 subscriptions"));
    lines = run_lines(*t, {"usage"});
    CHECK(has_line(lines, "0 users"));
  }
  CHECK(verify_problems(store_dir) == 0);
}

TEST_CASE("storectl: verify --repair fixes counters and references", "[storectl]") {
  test::TempDir dir;
  const fs::path store_dir = dir / "store";
  make_store(store_dir);
  fill_source(store_dir);
  {
    // Damage: the user's message counter and a body's reference count.
    RawEnv e(store_dir);
    e.write([&](Txn& txn) {
      auto u = store::find_user(txn, e.dbs, kAlice);
      REQUIRE(u);
      store::UserRecord r = **u;
      r.messages += 5;
      REQUIRE(txn.put(e.dbs.users, store::user_key(kAlice), store::encode(r)));
      auto body = store::find_body(txn, e.dbs, 1);
      REQUIRE(body);
      REQUIRE(*body);
      store::BodyRecord b = **body;
      b.references += 2;
      REQUIRE(txn.put(e.dbs.bodies, common::lmdb::Encoder().u64(1).str(), store::encode(b)));
    });
  }
  {
    auto t = offline(store_dir, true);
    auto lines = run_lines(*t, {"verify"}, 1);
    CHECK(has_line(lines, "2 problems"));
  }
  {
    auto t = offline(store_dir);
    auto lines = run_lines(*t, {"verify", "--repair"});
    CHECK(has_line(lines, "2 problems, 2 repaired, 0 left for the operator"));
    lines = run_lines(*t, {"verify"});
    CHECK(has_line(lines, "0 problems"));
  }
}

TEST_CASE("storectl: Maildir export then import round-trips byte for byte", "[storectl][roundtrip]") {
  test::TempDir dir;
  const fs::path source = dir / "source", dest = dir / "dest", exported = dir / "exported",
                 again = dir / "again";
  make_store(source);
  fill_source(source);
  const Box before = snapshot(source, kAlice, "INBOX");
  REQUIRE(before.messages.size() == 6);
  REQUIRE(before.record.uidnext == 9);  // the delivery, 7 appends; UID 8 expunged
  {
    auto t = offline(source, true);
    auto lines = run_lines(*t, {"export", kAlice, "inbox", "--maildir", exported.string()});
    CHECK(has_line(lines, "exported INBOX (UIDVALIDITY " + std::to_string(before.record.uidvalidity) +
                              "): 6 messages"));
  }
  // What Dovecot reads: flags in the names, the internal date as mtime, the uidlist and keywords.
  const auto files = tree(exported);
  CHECK(files.count("dovecot-uidlist"));
  CHECK(files.at("dovecot-keywords").first == "0 $Forwarded\n1 work\n2 Later\n");
  CHECK(files.at("dovecot-uidlist").first.starts_with("3 V" + std::to_string(before.record.uidvalidity) + " N9\n"));
  size_t in_cur = 0;
  for (const auto& [name, content] : files) {
    if (!name.starts_with("cur/")) continue;
    ++in_cur;
    const auto it = std::find_if(before.messages.begin(), before.messages.end(),
                                 [&](const Msg& m) { return m.bytes == content.first; });
    REQUIRE(it != before.messages.end());
    CHECK(content.second == it->date);
    CHECK(name.find(".M" + std::to_string(it->uid) + "P") != std::string::npos);
    if (it->flags == (store::kAnswered | store::kFlagged)) CHECK(name.ends_with(":2,FRab"));
    if (it->flags == store::kDraft) CHECK(name.ends_with(":2,Dc"));
  }
  CHECK(in_cur == 6);

  make_store(dest);
  {
    auto t = offline(dest);
    run_lines(*t, {"user", "create", kAlice});
    auto lines = run_lines(*t, {"import", kAlice, "--maildir", exported.string()});
    CHECK(has_line(lines, "INBOX <- .: 6 imported, UIDs kept (UIDVALIDITY " +
                              std::to_string(before.record.uidvalidity) + ")"));
    CHECK(has_line(lines, "imported 6 messages for alice@example.com"));
  }
  const Box after = snapshot(dest, kAlice, "INBOX");
  CHECK(after.record.uidvalidity == before.record.uidvalidity);
  CHECK(after.record.uidnext == before.record.uidnext);
  CHECK(after.record.messages == before.record.messages);
  CHECK(after.record.unseen == before.record.unseen);
  CHECK(after.record.bytes == before.record.bytes);
  REQUIRE(after.messages.size() == before.messages.size());
  for (size_t i = 0; i < before.messages.size(); ++i) {
    INFO("UID " << before.messages[i].uid);
    CHECK(after.messages[i].uid == before.messages[i].uid);
    CHECK(after.messages[i].flags == before.messages[i].flags);
    CHECK(after.messages[i].keywords == before.messages[i].keywords);
    CHECK(after.messages[i].date == before.messages[i].date);
    CHECK(after.messages[i].bytes == before.messages[i].bytes);
  }
  CHECK(verify_problems(dest) == 0);

  SECTION("exporting the import gives the same Maildir") {
    auto t = offline(dest, true);
    run_lines(*t, {"export", kAlice, "INBOX", "--maildir", again.string()});
    t.reset();
    CHECK(tree(again) == files);
  }
  SECTION("a second run skips every message") {
    auto t = offline(dest);
    auto lines = run_lines(*t, {"import", kAlice, "--maildir", exported.string()});
    CHECK(has_line(lines, "INBOX <- .: 0 imported, 6 already there, UIDs kept"));
    t.reset();
    CHECK(snapshot(dest, kAlice, "INBOX").messages == after.messages);
  }
  SECTION("an import cut short is finished by a second run") {
    const fs::path other = dir / "other";
    make_store(other);
    {
      auto t = offline(other);
      run_lines(*t, {"user", "create", kAlice});
      CrashingTarget crashing(*t, 2);
      store::tools::MaildirImportOptions options;
      options.batch_messages = 1;
      auto cut = store::tools::import_maildir(crashing, kAlice, exported, options, [](const std::string&) {});
      REQUIRE_FALSE(cut);
      CHECK(cut.error().detail == "INBOX <- .: killed");
    }
    CHECK(snapshot(other, kAlice, "INBOX").messages.size() == 2);
    {
      auto t = offline(other);
      auto lines = run_lines(*t, {"import", kAlice, "--maildir", exported.string()});
      CHECK(has_line(lines, "INBOX <- .: 4 imported, 2 already there, UIDs kept"));
    }
    CHECK(snapshot(other, kAlice, "INBOX").messages == after.messages);
    CHECK(snapshot(other, kAlice, "INBOX").record.uidnext == before.record.uidnext);
    CHECK(verify_problems(other) == 0);
  }
  SECTION("into a mailbox that already has mail: new UIDs after its own") {
    auto t = offline(dest);
    auto lines = run_lines(*t, {"import", kAlice, "--maildir", exported.string(), "--mailbox", "Work"});
    CHECK(has_line(lines, "Work <- .: 6 imported, UIDs kept"));
    CHECK(has_line(lines, "mailbox created"));
    // Archive exists, empty, with its own UIDVALIDITY and UIDNEXT 1: it takes the source's.
    lines = run_lines(*t, {"import", kAlice, "--maildir", exported.string(), "--mailbox", "Archive"});
    CHECK(has_line(lines, "Archive <- .: 6 imported, UIDs kept"));
    // Sent gets a message of its own first: the import then appends after it with new UIDs.
    t.reset();
    {
      RawEnv e(dest);
      e.write([&](Txn& txn) {
        store::ops::FlagSet none;
        REQUIRE(store::ops::append_message(txn, e.dbs, kAlice, "Sent", "Subject: mine\r\n\r\nx\r\n", none, 1));
      });
    }
    t = offline(dest);
    lines = run_lines(*t, {"import", kAlice, "--maildir", exported.string(), "--mailbox", "Sent"});
    CHECK(has_line(lines, "Sent <- .: 6 imported, new UIDs"));
    t.reset();
    const Box sent = snapshot(dest, kAlice, "Sent");
    REQUIRE(sent.messages.size() == 7);
    for (size_t i = 0; i < 7; ++i) CHECK(sent.messages[i].uid == i + 1);
    CHECK(sent.messages[1].bytes == before.messages[0].bytes);
    CHECK(snapshot(dest, kAlice, "Work").messages == after.messages);
    CHECK(verify_problems(dest) == 0);
  }
}

TEST_CASE("storectl: a Maildir++ tree in Dovecot's conventions", "[storectl][import]") {
  test::TempDir dir;
  const fs::path md = dir / "Maildir", store_dir = dir / "store";
  // INBOX: two files Dovecot numbered (3 and 5), one in new/ it has not yet (gets N=9), LF line ends.
  write_file(md / "dovecot-uidlist",
             "3 V1234 N9 Gabc\n3 :1600000000.M1P1.host,S=20\n5 W40 :1600000001.M2P1.host,S=30\n7 :gone.M3P1.h\n");
  write_file(md / "dovecot-keywords", "0 $Forwarded\n1 Work\n3 bad\"keyword\n");
  write_file(md / "cur/1600000000.M1P1.host,S=20:2,SRa", "Subject: a\n\nfirst\n", 1600000000);
  write_file(md / "cur/1600000001.M2P1.host,S=30:2,PFXbc", "Subject: b\r\n\r\nsecond\r\n", 1600000001);
  write_file(md / "new/1600000002.M9P1.host", "Subject: c\n\nthird\n", 1600000002);
  write_file(md / "new/1600000002.M8P1.host:2,d", "Subject: d\n\nfourth\n", 1600000003);
  write_file(md / "tmp/1600000003.M1P1.host", "half-written\n");
  write_file(md / "cur/.hidden", "not mail\n");
  // Folders: "Work/Sub" (Dovecot has no directory for the superior "Work"), "été".
  write_file(md / ".Work.Sub/dovecot-uidlist", "3 V99 N2\n1 :1.M1P1.h\n");
  write_file(md / ".Work.Sub/cur/1.M1P1.h:2,T", "Subject: sub\n\nx\n", 1000);
  write_file(md / ".Work.Sub/maildirfolder", "");
  write_file(md / ".&AOk-t&AOk-/new/2.M1P1.h", "Subject: ete\n\ny\n", 2000);
  fs::create_directories(md / ".Empty" / "cur");
  write_file(md / "subscriptions", "V\t2\n\nWork\tSub\n&AOk-t&AOk-\nINBOX\n");
  make_store(store_dir);
  {
    auto t = offline(store_dir);
    run_lines(*t, {"user", "create", kAlice});
    auto lines = run_lines(*t, {"import", kAlice, "--maildir", md.string()}, 1);
    CHECK(has_line(lines, "INBOX <- .: 4 imported, UIDs kept (UIDVALIDITY 1234)"));
    CHECK(has_line(lines, "Work/Sub <- .Work.Sub: 1 imported, UIDs kept (UIDVALIDITY 99), mailbox created"));
    CHECK(has_line(lines, "\xc3\xa9t\xc3\xa9 <- .&AOk-t&AOk-: 1 imported, new UIDs"));
    CHECK(has_line(lines, "Empty <- .Empty: 0 imported"));
    CHECK(has_line(lines, "3 subscriptions"));
    CHECK(has_line(lines, "problem: ") );
    CHECK(has_line(lines, "file-name flags 'X' have no IMAP meaning"));
    CHECK(has_line(lines, "imported 6 messages"));
  }
  const Box inbox = snapshot(store_dir, kAlice, "INBOX");
  CHECK(inbox.record.uidvalidity == 1234);
  CHECK(inbox.record.uidnext == 11);
  REQUIRE(inbox.messages.size() == 4);
  CHECK(inbox.messages[0].uid == 3);
  CHECK(inbox.messages[0].bytes == "Subject: a\r\n\r\nfirst\r\n");  // LF-only file: CRLF
  CHECK(inbox.messages[0].flags == (store::kSeen | store::kAnswered));
  CHECK(inbox.messages[0].keywords == std::vector<std::string>{"$Forwarded"});
  CHECK(inbox.messages[0].date == 1600000000);
  CHECK(inbox.messages[1].uid == 5);
  CHECK(inbox.messages[1].bytes == "Subject: b\r\n\r\nsecond\r\n");
  CHECK(inbox.messages[1].flags == store::kFlagged);
  // P and the "$Forwarded" letter are one keyword; "c" was never named: Dovecot calls it unknown-2.
  CHECK(inbox.messages[1].keywords == std::vector<std::string>{"$Forwarded", "Work", "unknown-2"});
  // Not in the uidlist: the next UIDs from N, in Dovecot's order (seconds, then M<usecs>).
  CHECK(inbox.messages[2].uid == 9);
  CHECK(inbox.messages[2].bytes == "Subject: d\r\n\r\nfourth\r\n");
  CHECK(inbox.messages[2].keywords.empty());  // "d" names the keyword "bad\"keyword": not an atom
  CHECK(inbox.messages[3].uid == 10);
  CHECK(inbox.messages[3].bytes == "Subject: c\r\n\r\nthird\r\n");
  const Box sub = snapshot(store_dir, kAlice, "Work/Sub");
  REQUIRE(sub.exists);
  CHECK(sub.record.uidvalidity == 99);
  CHECK(sub.subscribed);
  REQUIRE(sub.messages.size() == 1);
  CHECK(sub.messages[0].flags == store::kDeleted);
  CHECK(sub.messages[0].date == 1000);
  CHECK(snapshot(store_dir, kAlice, "Work").exists);  // the superior name, made on the way
  const Box ete = snapshot(store_dir, kAlice, "\xc3\xa9t\xc3\xa9");
  REQUIRE(ete.messages.size() == 1);
  CHECK(ete.messages[0].uid == 1);
  CHECK(ete.subscribed);
  CHECK(verify_problems(store_dir) == 0);

  SECTION("--mailbox puts the tree under a name; --raw keeps LF") {
    auto t = offline(store_dir);
    auto lines = run_lines(*t, {"import", kAlice, "--maildir", md.string(), "--mailbox", "Old", "--raw"}, 1);
    CHECK(has_line(lines, "Old <- .: 4 imported"));
    CHECK(has_line(lines, "Old/Work/Sub <- .Work.Sub: 1 imported"));
    t.reset();
    const Box old = snapshot(store_dir, kAlice, "Old");
    REQUIRE(old.messages.size() == 4);
    CHECK(old.messages[0].bytes == "Subject: a\n\nfirst\n");
    CHECK(old.subscribed);
    CHECK(snapshot(store_dir, kAlice, "Old/Work/Sub").subscribed);
  }
  SECTION("a tree with a problem found up front writes nothing") {
    write_file(md / ".Broken/dovecot-uidlist", "3 V1 N2\n2 :a\n1 :b\n");
    write_file(md / ".Broken/cur/a", "x\n");
    auto t = offline(store_dir);
    auto command = store::tools::parse_command(
        std::vector<std::string_view>{"import", kAlice, "--maildir", md.string(), "--mailbox", "New"});
    REQUIRE(command);
    auto status = store::tools::run_command(*t, *command, [](const std::string&) {});
    REQUIRE_FALSE(status);
    CHECK(status.error().detail.find("UIDs not ascending") != std::string::npos);
    t.reset();
    CHECK_FALSE(snapshot(store_dir, kAlice, "New").exists);
  }
  SECTION("a user that does not exist is refused") {
    auto t = offline(store_dir);
    auto command = store::tools::parse_command(
        std::vector<std::string_view>{"import", "bob@example.com", "--maildir", md.string()});
    REQUIRE(command);
    auto status = store::tools::run_command(*t, *command, [](const std::string&) {});
    REQUIRE_FALSE(status);
    CHECK(status.error().code == store::ops::OpCode::NotFound);
  }
}

TEST_CASE("storectl: mbox export is mboxrd with the sender and internal date", "[storectl][mbox]") {
  test::TempDir dir;
  const fs::path store_dir = dir / "store", file = dir / "inbox.mbox";
  make_store(store_dir);
  fill_source(store_dir);
  const Box before = snapshot(store_dir, kAlice, "INBOX");
  {
    auto t = offline(store_dir, true);
    auto lines = run_lines(*t, {"export", kAlice, "INBOX", "--mbox", file.string()});
    CHECK(has_line(lines, "6 messages"));
    // Never over an existing file.
    auto command = store::tools::parse_command(
        std::vector<std::string_view>{"export", kAlice, "INBOX", "--mbox", file.string()});
    REQUIRE(command);
    auto status = store::tools::run_command(*t, *command, [](const std::string&) {});
    REQUIRE_FALSE(status);
    CHECK(status.error().code == store::ops::OpCode::AlreadyExists);
  }
  const std::string text = test::read_file(file);
  CHECK(text.starts_with("From sender@example.net Mon Sep 18 01:20:00 2023\nDelivered-To: alice@example.com\n"));
  CHECK(text.find("\r") == std::string::npos);
  const auto messages = store::tools::mbox::parse(text);
  REQUIRE(messages.size() == before.messages.size());
  for (size_t i = 0; i < messages.size(); ++i) {
    std::string lf = before.messages[i].bytes;
    lf.erase(std::remove(lf.begin(), lf.end(), '\r'), lf.end());
    if (!lf.ends_with("\n")) lf += "\n";
    CHECK(messages[i].bytes == lf);
    CHECK(messages[i].from_line.find(store::tools::mbox::from_line("x", before.messages[i].date).substr(7, 24)) !=
          std::string::npos);
  }
}

TEST_CASE("storectl: a Maildir export names at most 26 keywords and says which it left off", "[storectl]") {
  test::TempDir dir;
  const fs::path store_dir = dir / "store";
  make_store(store_dir);
  {
    RawEnv e(store_dir);
    e.write([&](Txn& txn) {
      REQUIRE(store::ops::create_user_if_missing(txn, e.dbs, kAlice, 1));
      for (int i = 0; i < 28; ++i) {
        store::ops::FlagSet f{0, {"kw" + std::to_string(i)}};
        REQUIRE(store::ops::append_message(txn, e.dbs, kAlice, "INBOX", "Subject: k\r\n\r\n", f, 1));
      }
    });
  }
  auto t = offline(store_dir, true);
  auto lines = run_lines(*t, {"export", kAlice, "INBOX", "--maildir", (dir / "out").string()}, 1);
  CHECK(has_line(lines, "problem: UID 27: keyword 'kw26' left off"));
  CHECK(has_line(lines, "problem: UID 28: keyword 'kw27' left off"));
  CHECK(has_line(lines, "28 messages"));
}

TEST_CASE("storectl: command line", "[storectl][cli]") {
  const std::string tool = test::binary_path("store/tools/postern-storectl");
  test::TempDir dir;
  const fs::path store_dir = dir / "store";
  auto r = test::run({tool, "--help"});
  CHECK(r.exit_code == 0);
  CHECK(r.output.find("import USER --maildir DIR") != std::string::npos);
  for (const std::vector<std::string>& bad : std::vector<std::vector<std::string>>{
           {tool, "usage"},
           {tool, "--dir", store_dir.string()},
           {tool, "--dir", store_dir.string(), "frobnicate"},
           {tool, "--dir", store_dir.string(), "user", "create", "no-domain"},
           {tool, "--dir", store_dir.string(), "user", "create", "a b@c"},
           {tool, "--dir", store_dir.string(), "export", kAlice, "INBOX"},
           {tool, "--dir", store_dir.string(), "export", kAlice, "INBOX", "--mbox", "x", "--maildir", "y"},
           {tool, "--dir", store_dir.string(), "import", kAlice},
           {tool, "--dir", store_dir.string(), "import", kAlice, "--maildir", "x", "--batch", "0"},
           {tool, "--dir", store_dir.string(), "verify", "--fix"},
           {tool, "--dir", store_dir.string(), "--map-size", "lots", "usage"},
       }) {
    INFO(bad.back());
    auto out = test::run(bad);
    CHECK(out.exit_code == 2);
    CHECK(out.output.find("postern-storectl: ") != std::string::npos);
  }
  r = test::run({tool, "--dir", store_dir.string(), "usage"});
  CHECK(r.exit_code == 1);
  CHECK(r.output.find("no store environment in") != std::string::npos);

  make_store(store_dir);
  r = test::run({tool, "--dir", store_dir.string(), "user", "create", kAlice});
  CHECK(r.exit_code == 0);
  r = test::run({tool, "--dir", store_dir.string(), "user", "create", kAlice});
  CHECK(r.exit_code == 1);
  CHECK(r.output.find("error (AlreadyExists): user alice@example.com exists") != std::string::npos);

  SECTION("writes are refused while another process has the environment open; reads run beside it") {
    // A stand-in for a running store: a process that opens the environment with liblmdb and waits.
    const std::string script =
        "import ctypes, sys, time\n"
        "l = ctypes.CDLL('liblmdb.so.0')\n"
        "env = ctypes.c_void_p()\n"
        "assert l.mdb_env_create(ctypes.byref(env)) == 0\n"
        "l.mdb_env_set_maxdbs(env, 20)\n"
        "l.mdb_env_set_mapsize(env, ctypes.c_size_t(1 << 30))\n"
        "rc = l.mdb_env_open(env, sys.argv[1].encode(), 0x200000, 0o600)\n"
        "print('opened', rc, flush=True)\n"
        "time.sleep(60)\n";
    const fs::path script_file = dir.write("hold.py", script);
    test::ChildProcess holder({"python3", script_file.string(), store_dir.string()}, (dir / "hold.log").string());
    const auto until = std::chrono::steady_clock::now() + 20s;
    while (test::read_file(dir / "hold.log").find("opened") == std::string::npos) {
      REQUIRE(std::chrono::steady_clock::now() < until);
      std::this_thread::sleep_for(20ms);
    }
    REQUIRE(test::read_file(dir / "hold.log").find("opened 0") != std::string::npos);
    auto in_use = store::tools::environment_user(store_dir.string());
    REQUIRE(in_use);
    REQUIRE(*in_use);
    CHECK(**in_use == holder.pid());
    r = test::run({tool, "--dir", store_dir.string(), "user", "create", "bob@example.com"});
    CHECK(r.exit_code == 1);
    CHECK(r.output.find("is open in process " + std::to_string(holder.pid())) != std::string::npos);
    r = test::run({tool, "--dir", store_dir.string(), "usage"});
    CHECK(r.exit_code == 0);
    CHECK(r.output.find("alice@example.com: 0 messages") != std::string::npos);
    r = test::run({tool, "--dir", store_dir.string(), "verify"});
    CHECK(r.exit_code == 0);
  }
  SECTION("nothing else has it open: writes go ahead") {
    auto in_use = store::tools::environment_user(store_dir.string());
    REQUIRE(in_use);
    CHECK_FALSE(*in_use);
    r = test::run({tool, "--dir", store_dir.string(), "user", "create", "bob@example.com"});
    CHECK(r.exit_code == 0);
  }
}
