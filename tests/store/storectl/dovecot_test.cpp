// dovecot_test.cpp: a Maildir written by a real Dovecot (Debian's dovecot-imapd and -lmtpd, a private
// instance on loopback) imported with postern-storectl, then compared message by message (bytes as
// Dovecot's IMAP serves them), flag by flag and keyword by keyword, with the internal dates, UIDs,
// UIDVALIDITY and UIDNEXT its IMAP reports, and the subscriptions.
#include <algorithm>
#include <fstream>
#include <set>
#include <sstream>

#include <catch2/catch.hpp>

#include "common/text/base64.hpp"
#include "store/storage/schema.hpp"
#include "store/tools/maildir.hpp"
#include "tests/store/storectl/store_snapshot.hpp"
#include "tests/support/dovecot.hpp"
#include "tests/support/process.hpp"

namespace {

namespace fs = std::filesystem;

struct ImapMessage {
  uint32_t uid = 0;
  uint64_t size = 0;
  int64_t date = 0;
  std::string bytes;
  uint32_t flags = 0;
  std::vector<std::string> keywords;  // sorted
};
struct ImapMailbox {
  std::string name;  // modified UTF-7, as IMAP sends it
  uint32_t uidvalidity = 0, uidnext = 0, messages = 0, unseen = 0;
  bool subscribed = false;
  std::vector<ImapMessage> list;
};

std::vector<std::string> words(const std::string& line) {
  std::istringstream in(line);
  std::vector<std::string> out;
  for (std::string w; in >> w;) out.push_back(w);
  return out;
}

// tests/support/imap_client.py's dump.
std::vector<ImapMailbox> read_dump(const fs::path& file) {
  std::vector<ImapMailbox> out;
  std::ifstream in(file);
  for (std::string line; std::getline(in, line);) {
    if (line.starts_with("mailbox ")) {
      auto w = words(line);
      REQUIRE(w.size() >= 7);
      ImapMailbox box;
      box.uidvalidity = static_cast<uint32_t>(std::stoul(w[1]));
      box.uidnext = static_cast<uint32_t>(std::stoul(w[2]));
      box.messages = static_cast<uint32_t>(std::stoul(w[3]));
      box.unseen = static_cast<uint32_t>(std::stoul(w[4]));
      box.subscribed = w[5] == "1";
      // The name is the rest of the line (it may hold blanks).
      size_t at = 0;
      for (int i = 0; i < 6; ++i) at = line.find(' ', at) + 1;
      box.name = line.substr(at);
      out.push_back(std::move(box));
    } else if (line.starts_with("message ")) {
      REQUIRE_FALSE(out.empty());
      auto w = words(line);
      REQUIRE(w.size() >= 5);
      ImapMessage m;
      m.uid = static_cast<uint32_t>(std::stoul(w[1]));
      m.size = std::stoull(w[2]);
      m.date = std::stoll(w[3]);
      auto bytes = common::text::base64_decode(w[4]);
      REQUIRE(bytes);
      m.bytes = *bytes;
      for (size_t i = 5; i < w.size(); ++i) {
        const std::string& f = w[i];
        if (f == "\\Seen") m.flags |= store::kSeen;
        else if (f == "\\Answered") m.flags |= store::kAnswered;
        else if (f == "\\Flagged") m.flags |= store::kFlagged;
        else if (f == "\\Deleted") m.flags |= store::kDeleted;
        else if (f == "\\Draft") m.flags |= store::kDraft;
        else m.keywords.push_back(f);
      }
      std::sort(m.keywords.begin(), m.keywords.end());
      out.back().list.push_back(std::move(m));
    }
  }
  return out;
}

std::string message(int i, const std::string& subject, const std::string& body) {
  return "From: Sender " + std::to_string(i) + " <sender@peer.example>\r\nTo: alice@example.com\r\nSubject: " +
         subject + "\r\nMessage-ID: <m" + std::to_string(i) + "@peer.example>\r\nDate: Tue, 14 Nov 2023 22:13:" +
         std::to_string(10 + i) + " +0000\r\nMIME-Version: 1.0\r\n" + body;
}

std::vector<std::string> inbox_messages() {
  std::string big = "Content-Type: text/plain\r\n\r\n";
  for (int i = 0; big.size() < 150 * 1024; ++i) big += "a line of a large message, number " + std::to_string(i) + "\r\n";
  return {
      message(1, "plain", "Content-Type: text/plain\r\n\r\nHello.\r\n"),
      message(2, "=?utf-8?q?caf=C3=A9?=",
              "Content-Type: multipart/alternative; boundary=\"b1\"\r\n\r\n--b1\r\nContent-Type: text/plain; "
              "charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\ncaf\xc3\xa9 \xe2\x82\xac\r\n--b1\r\n"
              "Content-Type: text/html; charset=utf-8\r\n\r\n<p>caf\xc3\xa9</p>\r\n--b1--\r\n"),
      message(3, "from lines", "Content-Type: text/plain\r\n\r\nFrom here on\r\n.a line with a dot\r\n..two\r\n"),
      message(4, "big", big),
      message(5, "deleted, not expunged", "Content-Type: text/plain\r\n\r\nstill here\r\n"),
      message(6, "expunged", "Content-Type: text/plain\r\n\r\ngone\r\n"),
  };
}

}  // namespace

TEST_CASE("storectl: a Maildir written by Dovecot is imported message by message and flag by flag",
          "[storectl][dovecot][peer]") {
  test::TempDir dir;
  test::DovecotInstance dovecot;
  const auto messages = inbox_messages();
  for (const auto& m : messages) {
    auto replies = dovecot.deliver("sender@peer.example", {"alice@example.com"}, m);
    REQUIRE(replies.size() == 1);
    INFO(dovecot.log());
    REQUIRE(replies[0].starts_with("250"));
  }
  const fs::path appended = dir.write("appended.eml", "Subject: appended\r\nFrom: a@b.example\r\n\r\nold mail\r\n");
  const fs::path accented = dir.write("accented.eml", "Subject: accented folder\r\n\r\n\xc3\xa9\r\n");
  // Flags and keywords set through IMAP; folders made and filled by APPEND with dates and flags.
  const fs::path commands = dir.write("commands.json", R"J([
    ["select", "INBOX"],
    ["store", "1", "+FLAGS", "(\\Seen)"],
    ["store", "2", "+FLAGS", "(\\Answered \\Flagged $Forwarded Work)"],
    ["store", "3", "+FLAGS", "(\\Draft $Junk Later \\Seen)"],
    ["store", "3", "-FLAGS", "(\\Seen)"],
    ["store", "6", "+FLAGS", "(\\Deleted)"],
    ["expunge"],
    ["store", "5", "+FLAGS", "(\\Deleted \\Seen)"],
    ["create", "Work/Sub"],
    ["subscribe", "Work/Sub"],
    ["append", "Work/Sub", "(\\Seen Work)", 978307200, ")J" + appended.string() + R"J("],
    ["append", "Work/Sub", "()", 1577880000, ")J" + appended.string() + R"J("],
    ["create", "Caf&AOk-"],
    ["subscribe", "Caf&AOk-"],
    ["append", "Caf&AOk-", "(\\Flagged)", 1262304000, ")J" + accented.string() + R"J("]
  ])J");
  auto ran = dovecot.imap({"run", "--commands", commands.string()}, "alice");
  INFO(ran.output << dovecot.log());
  REQUIRE(ran.exit_code == 0);
  // One more after the IMAP session: it stays in new/, numbered by LMTP alone.
  REQUIRE(dovecot.deliver("sender@peer.example", {"alice@example.com"},
                          message(7, "late", "Content-Type: text/plain\r\n\r\nnot seen by IMAP yet\r\n"))
              .at(0)
              .starts_with("250"));
  const fs::path dump_file = dir / "dovecot.dump";
  auto dumped = dovecot.imap({"dump", "--out", dump_file.string()}, "alice");
  INFO(dumped.output);
  REQUIRE(dumped.exit_code == 0);
  REQUIRE(dovecot.stop());
  const auto boxes = read_dump(dump_file);
  const fs::path maildir = dovecot.maildir("alice");
  REQUIRE_FALSE(fs::is_empty(maildir / "new"));  // the late message: the new/ path is exercised

  // What Dovecot holds, as its IMAP reports it.
  REQUIRE(boxes.size() == 3);
  const ImapMailbox* inbox = nullptr;
  for (const auto& b : boxes) {
    if (b.name == "INBOX") inbox = &b;
  }
  REQUIRE(inbox);
  REQUIRE(inbox->list.size() == 6);
  CHECK(inbox->uidnext == 8);

  // Imported with the tool, as an operator would.
  const std::string tool = test::binary_path("store/tools/postern-storectl");
  const fs::path store_dir = dir / "store";
  { test::RawEnv make(store_dir); }
  auto r = test::run({tool, "--dir", store_dir.string(), "user", "create", "alice@example.com"});
  REQUIRE(r.exit_code == 0);
  r = test::run({tool, "--dir", store_dir.string(), "import", "alice@example.com", "--maildir", maildir.string()},
                std::chrono::seconds(120));
  INFO(r.output);
  REQUIRE(r.exit_code == 0);
  CHECK(r.output.find("INBOX <- .: 6 imported, UIDs kept") != std::string::npos);
  CHECK(r.output.find("Work/Sub <- .Work.Sub: 2 imported, UIDs kept") != std::string::npos);
  CHECK(r.output.find("imported 9 messages for alice@example.com") != std::string::npos);

  for (const auto& b : boxes) {
    auto name = store::tools::maildir::mutf7_decode(b.name);
    REQUIRE(name);
    INFO("mailbox " << *name);
    const test::Box ours = test::snapshot(store_dir, "alice@example.com", *name);
    REQUIRE(ours.exists);
    CHECK(ours.record.uidvalidity == b.uidvalidity);
    CHECK(ours.record.uidnext == b.uidnext);
    CHECK(ours.record.messages == b.messages);
    CHECK(ours.record.unseen == b.unseen);
    // Our users start with INBOX and the special-use set subscribed; the rest as Dovecot had them.
    if (b.name != "INBOX") CHECK(ours.subscribed == b.subscribed);
    if (b.subscribed) CHECK(ours.subscribed);
    REQUIRE(ours.messages.size() == b.list.size());
    uint64_t bytes = 0;
    for (size_t i = 0; i < b.list.size(); ++i) {
      const ImapMessage& theirs = b.list[i];
      const test::Msg& mine = ours.messages[i];
      INFO("UID " << theirs.uid);
      CHECK(mine.uid == theirs.uid);
      CHECK(mine.bytes == theirs.bytes);
      CHECK(mine.bytes.size() == theirs.size);
      CHECK(mine.flags == theirs.flags);
      CHECK(mine.keywords == theirs.keywords);
      CHECK(mine.date == theirs.date);
      bytes += mine.bytes.size();
    }
    CHECK(ours.record.bytes == bytes);
  }
  // The flags set above made it through (not only "the same as Dovecot" but what was asked).
  const test::Box ours = test::snapshot(store_dir, "alice@example.com", "INBOX");
  REQUIRE(ours.messages.size() == 6);
  CHECK(ours.messages[0].flags == store::kSeen);
  CHECK(ours.messages[1].flags == (store::kAnswered | store::kFlagged));
  CHECK(ours.messages[1].keywords == std::vector<std::string>{"$Forwarded", "Work"});
  CHECK(ours.messages[2].flags == store::kDraft);
  CHECK(ours.messages[2].keywords == std::vector<std::string>{"$Junk", "Later"});
  CHECK(ours.messages[4].uid == 5);
  CHECK(ours.messages[4].flags == (store::kDeleted | store::kSeen));
  CHECK(ours.messages[5].uid == 7);
  const test::Box sub = test::snapshot(store_dir, "alice@example.com", "Work/Sub");
  REQUIRE(sub.messages.size() == 2);
  CHECK(sub.messages[0].date == 978307200);
  CHECK(sub.messages[0].keywords == std::vector<std::string>{"Work"});
  CHECK(test::verify_problems(store_dir) == 0);
}
