// storage_test.cpp: the store's schema and deliveries on a real LMDB environment: users created
// with their mailboxes, one body for all recipients, UIDs and MODSEQs, quotas, +detail folders,
// retries answered without a second copy, a full map refused with nothing half-written.
#include <algorithm>
#include <set>

#include <catch2/catch.hpp>

#include "store/storage/message_store.hpp"
#include "tests/support/process.hpp"

namespace {

using store::Delivery;
using store::DeliveryRecipient;
using store::MessageStore;
using store::RecipientOutcome;

std::unique_ptr<MessageStore> open_store(const test::TempDir& dir, uint64_t map_size = 64ull << 20) {
  store::MessageStoreOptions options;
  options.dir = (dir / "store").string();
  options.map_size = map_size;
  auto s = MessageStore::open(options);
  INFO((s ? "" : s.error().detail));
  REQUIRE(s);
  return std::move(*s);
}

std::shared_ptr<Delivery> delivery(std::string body, std::vector<std::string> users, std::string xid = "") {
  auto d = std::make_shared<Delivery>();
  d->delivery_id = std::move(xid);
  d->body = std::move(body);
  d->structure = "structure";
  d->internal_date = 1700000000;
  for (auto& u : users) d->recipients.push_back(DeliveryRecipient{u, u, "", 0, 0});
  return d;
}

struct Mailbox {
  store::MailboxRecord record;
  std::vector<store::MessageInfo> messages;
  std::vector<std::string> bytes;
};

Mailbox mailbox(const MessageStore& s, const std::string& user, const std::string& name) {
  Mailbox out;
  auto r = s.read([&](const common::lmdb::Txn& txn, const store::Dbs& dbs) -> common::Result<void> {
    auto u = store::find_user(txn, dbs, user);
    REQUIRE(u);
    REQUIRE(*u);
    auto mb = store::find_mailbox(txn, dbs, (*u)->id, name);
    REQUIRE(mb);
    REQUIRE(*mb);
    out.record = **mb;
    auto messages = store::list_messages(txn, dbs, out.record.id);
    REQUIRE(messages);
    out.messages = *messages;
    for (auto& m : out.messages) {
      auto bytes = store::message_bytes(txn, dbs, m.record);
      REQUIRE(bytes);
      out.bytes.push_back(*bytes);
    }
    return {};
  });
  REQUIRE(r);
  return out;
}

uint64_t count(const MessageStore& s, MDB_dbi store::Dbs::*dbi) {
  uint64_t n = 0;
  auto r = s.read([&](const common::lmdb::Txn& txn, const store::Dbs& dbs) -> common::Result<void> {
    MDB_stat st{};
    REQUIRE(mdb_stat(txn.get(), dbs.*dbi, &st) == 0);
    n = st.ms_entries;
    return {};
  });
  REQUIRE(r);
  return n;
}

}  // namespace

TEST_CASE("a first delivery creates the user with INBOX and the special-use set, subscribed", "[store]") {
  test::TempDir dir;
  auto s = open_store(dir);
  auto r = s->deliver_and_wait(delivery("Subject: hi\r\n\r\nbody\r\n", {"alice@example.com"}));
  REQUIRE(r);
  REQUIRE(r->size() == 1);
  CHECK((*r)[0].outcome == RecipientOutcome::Delivered);
  CHECK((*r)[0].mailbox == "INBOX");
  CHECK((*r)[0].uid == 1);

  std::vector<store::MailboxInfo> boxes;
  REQUIRE(s->read([&](const common::lmdb::Txn& txn, const store::Dbs& dbs) -> common::Result<void> {
    auto u = store::find_user(txn, dbs, "alice@example.com");
    REQUIRE(u);
    REQUIRE(*u);
    auto list = store::list_mailboxes(txn, dbs, (*u)->id);
    REQUIRE(list);
    boxes = *list;
    return {};
  }));
  std::vector<std::string> names;
  for (auto& b : boxes) {
    names.push_back(b.name);
    CHECK(b.subscribed);
  }
  std::sort(names.begin(), names.end());
  CHECK(names == std::vector<std::string>{"Archive", "Drafts", "INBOX", "Junk", "Sent", "Trash"});
  for (auto& b : boxes) {
    if (b.name == "Sent") CHECK(b.record.special_use == store::kUseSent);
    if (b.name == "INBOX") CHECK(b.record.special_use == 0);
  }
  // UIDVALIDITY grows from mailbox to mailbox even within one second.
  std::set<uint32_t> validities;
  for (auto& b : boxes) validities.insert(b.record.uidvalidity);
  CHECK(validities.size() == boxes.size());
}

TEST_CASE("one body serves every recipient of a delivery, each copy with its own Delivered-To", "[store]") {
  test::TempDir dir;
  auto s = open_store(dir);
  const std::string body = "Return-Path: <a@b>\r\nSubject: shared\r\n\r\n" + std::string(200000, 'x') + "\r\n";
  auto r = s->deliver_and_wait(delivery(body, {"alice@example.com", "bob@example.com"}));
  REQUIRE(r);
  CHECK(count(*s, &store::Dbs::bodies) == 1);
  CHECK(count(*s, &store::Dbs::body_chunks) == (body.size() + store::kBodyChunk - 1) / store::kBodyChunk);
  auto alice = mailbox(*s, "alice@example.com", "INBOX");
  auto bob = mailbox(*s, "bob@example.com", "INBOX");
  REQUIRE(alice.bytes.size() == 1);
  REQUIRE(bob.bytes.size() == 1);
  CHECK(alice.bytes[0] == "Delivered-To: alice@example.com\r\n" + body);
  CHECK(bob.bytes[0] == "Delivered-To: bob@example.com\r\n" + body);
  CHECK(alice.messages[0].record.size == alice.bytes[0].size());
  CHECK(alice.messages[0].record.body_id == bob.messages[0].record.body_id);
  REQUIRE(s->read([&](const common::lmdb::Txn& txn, const store::Dbs& dbs) -> common::Result<void> {
    auto b = store::find_body(txn, dbs, alice.messages[0].record.body_id);
    REQUIRE(b);
    REQUIRE(*b);
    CHECK((*b)->references == 2);
    CHECK((*b)->structure == "structure");
    return {};
  }));
}

TEST_CASE("UIDs and MODSEQs grow per mailbox, counters follow, changes are indexed by MODSEQ", "[store]") {
  test::TempDir dir;
  auto s = open_store(dir);
  for (int i = 0; i < 5; ++i) REQUIRE(s->deliver_and_wait(delivery("m" + std::to_string(i) + "\r\n", {"alice@example.com"})));
  auto inbox = mailbox(*s, "alice@example.com", "INBOX");
  REQUIRE(inbox.messages.size() == 5);
  for (uint32_t i = 0; i < 5; ++i) {
    CHECK(inbox.messages[i].uid == i + 1);
    CHECK(inbox.messages[i].record.modseq == i + 1);
  }
  CHECK(inbox.record.uidnext == 6);
  CHECK(inbox.record.highestmodseq == 5);
  CHECK(inbox.record.messages == 5);
  CHECK(inbox.record.unseen == 5);
  CHECK(count(*s, &store::Dbs::changes) == 5);
  auto user = s->user("alice@example.com");
  REQUIRE(user);
  REQUIRE(*user);
  CHECK((*user)->messages == 5);
  uint64_t bytes = 0;
  for (auto& b : inbox.bytes) bytes += b.size();
  CHECK((*user)->bytes_used == bytes);
  CHECK(inbox.record.bytes == bytes);

  // A range scan by UID.
  REQUIRE(s->read([&](const common::lmdb::Txn& txn, const store::Dbs& dbs) -> common::Result<void> {
    auto some = store::list_messages(txn, dbs, inbox.record.id, 2, 4);
    REQUIRE(some);
    REQUIRE(some->size() == 3);
    CHECK(some->front().uid == 2);
    CHECK(some->back().uid == 4);
    return {};
  }));
}

TEST_CASE("a recipient over quota is refused alone, the others are filed", "[store]") {
  test::TempDir dir;
  auto s = open_store(dir);
  auto d = delivery(std::string(1000, 'a') + "\r\n", {"alice@example.com", "bob@example.com"});
  d->recipients[0].quota_bytes = 3000;
  d->recipients[1].quota_messages = 1;
  auto first = s->deliver_and_wait(d);
  REQUIRE(first);
  CHECK((*first)[0].outcome == RecipientOutcome::Delivered);
  CHECK((*first)[1].outcome == RecipientOutcome::Delivered);
  auto second = s->deliver_and_wait(d);
  REQUIRE(second);
  CHECK((*second)[0].outcome == RecipientOutcome::Delivered);  // 2 x ~1040 bytes fit in 3000
  CHECK((*second)[1].outcome == RecipientOutcome::OverQuota);  // one message at most
  auto third = s->deliver_and_wait(d);
  REQUIRE(third);
  CHECK((*third)[0].outcome == RecipientOutcome::OverQuota);
  CHECK(mailbox(*s, "alice@example.com", "INBOX").messages.size() == 2);
  CHECK(mailbox(*s, "bob@example.com", "INBOX").messages.size() == 1);
}

TEST_CASE("+detail files into an existing folder of that name, else INBOX", "[store]") {
  test::TempDir dir;
  auto s = open_store(dir);
  auto d = delivery("x\r\n", {"alice@example.com", "alice@example.com"});
  d->recipients[0].folder = "Archive";
  d->recipients[1].folder = "NoSuchFolder";
  auto r = s->deliver_and_wait(d);
  REQUIRE(r);
  CHECK((*r)[0].mailbox == "Archive");
  CHECK((*r)[1].mailbox == "INBOX");
  CHECK(mailbox(*s, "alice@example.com", "Archive").messages.size() == 1);
}

TEST_CASE("a retried delivery id is answered as delivered without a second copy", "[store]") {
  test::TempDir dir;
  auto s = open_store(dir);
  auto d = delivery("x\r\n", {"alice@example.com", "bob@example.com"}, "q1.abc");
  auto first = s->deliver_and_wait(d);
  REQUIRE(first);
  CHECK((*first)[0].outcome == RecipientOutcome::Delivered);
  auto again = s->deliver_and_wait(d);
  REQUIRE(again);
  CHECK((*again)[0].outcome == RecipientOutcome::Duplicate);
  CHECK((*again)[1].outcome == RecipientOutcome::Duplicate);
  // A retry that adds a recipient files only the new one.
  d->recipients.push_back(DeliveryRecipient{"carol@example.com", "carol@example.com", "", 0, 0});
  auto third = s->deliver_and_wait(d);
  REQUIRE(third);
  CHECK((*third)[2].outcome == RecipientOutcome::Delivered);
  CHECK(mailbox(*s, "alice@example.com", "INBOX").messages.size() == 1);
  CHECK(mailbox(*s, "carol@example.com", "INBOX").messages.size() == 1);
  // Without an id every delivery is a new one.
  auto plain = delivery("x\r\n", {"alice@example.com"});
  REQUIRE(s->deliver_and_wait(plain));
  REQUIRE(s->deliver_and_wait(plain));
  CHECK(mailbox(*s, "alice@example.com", "INBOX").messages.size() == 3);
}

TEST_CASE("the environment reopens with everything committed", "[store]") {
  test::TempDir dir;
  {
    auto s = open_store(dir);
    REQUIRE(s->deliver_and_wait(delivery("kept\r\n", {"alice@example.com"})));
  }
  auto s = open_store(dir);
  auto inbox = mailbox(*s, "alice@example.com", "INBOX");
  REQUIRE(inbox.bytes.size() == 1);
  CHECK(inbox.bytes[0] == "Delivered-To: alice@example.com\r\nkept\r\n");
  // Ids are not reused after a restart.
  auto r = s->deliver_and_wait(delivery("next\r\n", {"alice@example.com"}));
  REQUIRE(r);
  CHECK((*r)[0].uid == 2);
}

TEST_CASE("a full map is a temporary failure and leaves what was stored intact", "[store]") {
  test::TempDir dir;
  auto s = open_store(dir, 2ull << 20);
  REQUIRE(s->deliver_and_wait(delivery("small\r\n", {"alice@example.com"})));
  auto big = s->deliver_and_wait(delivery(std::string(4u << 20, 'z'), {"alice@example.com"}));
  REQUIRE_FALSE(big);
  CHECK(big.error().kind == common::ErrorKind::TempFail);
  auto inbox = mailbox(*s, "alice@example.com", "INBOX");
  CHECK(inbox.messages.size() == 1);
  CHECK(inbox.record.uidnext == 2);
  CHECK(count(*s, &store::Dbs::bodies) == 1);
  // And the store still takes what fits.
  REQUIRE(s->deliver_and_wait(delivery("after\r\n", {"alice@example.com"})));
}
