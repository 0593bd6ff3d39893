// mailbox_ops_test.cpp: the MailStore operations on a real LMDB environment, each write run as the
// writer runs it (a nested transaction an error aborts) and followed by an independent check of
// the schema's invariants (counters, references, one kind-0 change per live message, UIDs).
#include <chrono>
#include <map>
#include <set>

#include <catch2/catch.hpp>

#include "common/lmdb/codec.hpp"
#include "store/mime/parser.hpp"
#include "store/storage/delivery.hpp"
#include "store/storage/mailbox_ops.hpp"
#include "tests/support/process.hpp"

namespace {

using common::lmdb::Cursor;
using common::lmdb::Decoder;
using common::lmdb::Txn;
using store::Dbs;
using namespace store::ops;

const std::string kAlice = "alice@example.com";
const std::string kBob = "bob@example.com";

uint64_t entries(const Txn& txn, MDB_dbi dbi) {
  MDB_stat st{};
  REQUIRE(mdb_stat(txn.get(), dbi, &st) == 0);
  return st.ms_entries;
}

template <class Fn>
void each(const Txn& txn, MDB_dbi dbi, Fn&& fn) {
  auto cursor = Cursor::open(txn, dbi);
  REQUIRE(cursor);
  for (auto e = cursor->first();; e = cursor->next()) {
    REQUIRE(e);
    if (!*e) return;
    fn((*e)->first, (*e)->second);
  }
}

// store/README.md "Invariants", checked from the raw tables without the code under test; then
// verify_refcounts must agree that there is nothing to report.
void check_invariants(const Txn& txn, const Dbs& dbs) {
  std::map<uint64_t, std::pair<std::string, store::UserRecord>> users;
  each(txn, dbs.users, [&](std::string_view k, std::string_view v) {
    auto u = store::decode_user(v);
    REQUIRE(u);
    REQUIRE(users.count(u->id) == 0);
    users[u->id] = {std::string(k), *u};
  });
  struct Box {
    uint64_t user = 0;
    std::string name;
    store::MailboxRecord r;
    uint32_t messages = 0, unseen = 0, kind0 = 0, kind1 = 0;
    uint64_t bytes = 0;
  };
  std::map<uint64_t, Box> boxes;
  // Deleted mailboxes still being freed: no name, no mailbox_ids entry, their messages still hold
  // their bodies' references and count for no mailbox or user.
  std::set<uint64_t> deleted;
  each(txn, dbs.deleted_mailboxes, [&](std::string_view k, std::string_view v) {
    Decoder d(k);
    uint64_t id = 0;
    REQUIRE((d.u64(id) && d.done()));
    REQUIRE(store::decode_deleted_mailbox(v));
    deleted.insert(id);
  });
  each(txn, dbs.mailboxes, [&](std::string_view k, std::string_view v) {
    Decoder d(k);
    uint64_t user = 0;
    REQUIRE(d.u64(user));
    REQUIRE(users.count(user) == 1);
    auto r = store::decode_mailbox(v);
    REQUIRE(r);
    REQUIRE(boxes.count(r->id) == 0);
    CHECK(deleted.count(r->id) == 0);
    CHECK(r->vanished_floor <= r->highestmodseq);
    boxes[r->id] = Box{user, std::string(d.rest()), *r};
    auto id = txn.get(dbs.mailbox_ids, common::lmdb::Encoder().u64(r->id).str());
    REQUIRE(id);
    REQUIRE(*id);
    CHECK(**id == common::lmdb::Encoder().u64(user).raw(d.rest()).str());
  });
  CHECK(entries(txn, dbs.mailbox_ids) == boxes.size());
  std::map<uint64_t, uint32_t> refs;
  std::map<uint64_t, std::pair<uint64_t, uint64_t>> user_sums;  // bytes, messages
  each(txn, dbs.messages, [&](std::string_view k, std::string_view v) {
    Decoder d(k);
    uint64_t mb = 0;
    uint32_t uid = 0;
    REQUIRE((d.u64(mb) && d.u32(uid) && d.done()));
    auto m = store::decode_message(v);
    REQUIRE(m);
    if (deleted.count(mb)) {
      refs[m->body_id] += 1;
      return;
    }
    REQUIRE(boxes.count(mb) == 1);
    Box& box = boxes[mb];
    CHECK(uid < box.r.uidnext);
    CHECK(m->modseq <= box.r.highestmodseq);
    auto change = txn.get(dbs.changes, store::change_key(mb, m->modseq));
    REQUIRE(change);
    REQUIRE(*change);
    Decoder c(**change);
    uint32_t cuid = 0;
    uint8_t kind = 9;
    REQUIRE((c.u32(cuid) && c.u8(kind) && c.done()));
    CHECK(cuid == uid);
    CHECK(kind == 0);
    box.messages += 1;
    if (!(m->flags & store::kSeen)) box.unseen += 1;
    box.bytes += m->size;
    user_sums[box.user].first += m->size;
    user_sums[box.user].second += 1;
    refs[m->body_id] += 1;
    auto body = store::find_body(txn, dbs, m->body_id);
    REQUIRE(body);
    REQUIRE(*body);
    CHECK(m->size == m->prefix.size() + (*body)->size);
  });
  each(txn, dbs.changes, [&](std::string_view k, std::string_view v) {
    Decoder d(k), c(v);
    uint64_t mb = 0, modseq = 0;
    uint32_t uid = 0;
    uint8_t kind = 9;
    REQUIRE((d.u64(mb) && d.u64(modseq) && d.done() && c.u32(uid) && c.u8(kind) && c.done()));
    if (deleted.count(mb)) return;
    REQUIRE(boxes.count(mb) == 1);
    Box& box = boxes[mb];
    CHECK(modseq <= box.r.highestmodseq);
    auto message = txn.get(dbs.messages, store::message_key(mb, uid));
    REQUIRE(message);
    if (kind == 0) {
      box.kind0 += 1;
      REQUIRE(*message);
      auto m = store::decode_message(**message);
      REQUIRE(m);
      CHECK(m->modseq == modseq);
    } else {
      CHECK(kind == 1);
      CHECK(uid < box.r.uidnext);
      CHECK_FALSE(*message);  // UIDs are never reused
      CHECK(modseq > box.r.vanished_floor);  // pruning goes oldest first, up to the floor
      box.kind1 += 1;
    }
  });
  for (auto& [id, box] : boxes) {
    INFO("mailbox " << box.name);
    CHECK(box.r.messages == box.messages);
    CHECK(box.r.unseen == box.unseen);
    CHECK(box.r.bytes == box.bytes);
    CHECK(box.kind0 == box.messages);
    CHECK(box.r.tombstones == box.kind1);
  }
  for (auto& [id, user] : users) {
    INFO("user " << user.first);
    CHECK(user.second.bytes_used == user_sums[id].first);
    CHECK(user.second.messages == user_sums[id].second);
  }
  uint64_t chunks = 0;
  each(txn, dbs.bodies, [&](std::string_view k, std::string_view v) {
    Decoder d(k);
    uint64_t id = 0;
    REQUIRE(d.u64(id));
    auto b = store::decode_body(v);
    REQUIRE(b);
    CHECK(b->references == refs[id]);
    CHECK(b->references > 0);
    CHECK(b->chunks == (b->size + store::kBodyChunk - 1) / store::kBodyChunk);
    uint64_t size = 0;
    for (uint32_t i = 0; i < b->chunks; ++i) {
      auto chunk = txn.get(dbs.body_chunks, store::chunk_key(id, i));
      REQUIRE(chunk);
      REQUIRE(*chunk);
      size += (*chunk)->size();
    }
    CHECK(size == b->size);
    chunks += b->chunks;
  });
  CHECK(entries(txn, dbs.bodies) == refs.size());
  CHECK(entries(txn, dbs.body_chunks) == chunks);

  auto report = verify_refcounts(txn, dbs);
  REQUIRE(report);
  for (const auto& line : report->details) INFO(line);
  CHECK(report->problems == 0);
}

// The store's tables on a temporary environment, written as the group-commit writer does.
class Store {
 public:
  Store() {
    common::lmdb::OpenOptions options;
    options.map_size = 1ull << 30;
    options.max_dbs = Dbs::kCount + 4;
    auto env = common::lmdb::open_env(dir_ / "store", options);
    REQUIRE(env);
    env_ = std::move(*env);
    auto txn = Txn::begin(env_.get(), true);
    REQUIRE(txn);
    auto dbs = Dbs::open(*txn);
    REQUIRE(dbs);
    dbs_ = *dbs;
    REQUIRE(txn->commit());
  }

  template <class Fn>
  auto write(Fn&& fn) {
    auto outer = Txn::begin(env_.get(), true);
    REQUIRE(outer);
    auto inner = Txn::nested(*outer);
    REQUIRE(inner);
    auto result = fn(*inner, dbs_);
    if (result) {
      REQUIRE(inner->commit());
    } else {
      inner->abort();
    }
    check_invariants(*outer, dbs_);
    REQUIRE(outer->commit());
    return result;
  }
  // A write that skips the invariant check: for tests that damage the store on purpose.
  template <class Fn>
  void raw(Fn&& fn) {
    auto txn = Txn::begin(env_.get(), true);
    REQUIRE(txn);
    fn(*txn, dbs_);
    REQUIRE(txn->commit());
  }
  template <class Fn>
  auto read(Fn&& fn) const {
    auto txn = Txn::begin(env_.get(), false);
    REQUIRE(txn);
    return fn(*txn, dbs_);
  }

  void user(const std::string& name) {
    REQUIRE(write([&](Txn& t, const Dbs& d) { return create_user_if_missing(t, d, name, 1700000000); }));
  }
  AppendResult append(const std::string& mailbox, const std::string& bytes, FlagSet flags = {},
                      const std::string& user = kAlice) {
    auto r = write([&](Txn& t, const Dbs& d) { return append_message(t, d, user, mailbox, bytes, flags, 1700000100); });
    INFO((r ? "" : r.error().detail));
    REQUIRE(r);
    return *r;
  }
  SelectResult select(const std::string& name, const std::string& user = kAlice) const {
    auto r = read([&](const Txn& t, const Dbs& d) { return select_mailbox(t, d, user, name); });
    INFO((r ? "" : r.error().detail));
    REQUIRE(r);
    return *r;
  }
  std::vector<store::MessageInfo> messages(const std::string& name, const std::string& user = kAlice) const {
    const SelectResult s = select(name, user);
    std::vector<store::MessageInfo> out;
    auto r = read([&](const Txn& t, const Dbs& d) {
      return for_each_message(t, d, user, s.ref, {{1, UINT32_MAX}}, [&](const store::MessageInfo& m) {
        out.push_back(m);
        return true;
      });
    });
    REQUIRE(r);
    return out;
  }
  std::vector<ListEntry> list(std::vector<std::string> patterns, ListOptions options = {}) const {
    auto r = read([&](const Txn& t, const Dbs& d) { return list_mailboxes_matching(t, d, kAlice, patterns, options); });
    REQUIRE(r);
    return *r;
  }
  uint64_t count(MDB_dbi Dbs::*dbi) const {
    return read([&](const Txn& t, const Dbs& d) { return entries(t, d.*dbi); });
  }
  // A delivery as LMTP files it: a Delivered-To prefix per recipient before the shared body.
  store::RecipientResult deliver(const std::string& body, const std::string& user = kAlice) {
    store::Delivery delivery;
    delivery.body = body;
    delivery.structure = store::mime::encode(store::mime::parse(body));
    delivery.internal_date = 1700000000;
    delivery.recipients.push_back(store::DeliveryRecipient{user, user, "", 0, 0});
    auto r = write([&](Txn& t, const Dbs& d) -> OpResult<std::vector<store::RecipientResult>> {
      auto filed = store::file_delivery(t, d, delivery, 1700000000, std::chrono::hours(24));
      if (!filed) return tl::unexpected(to_op_error(filed.error()));
      return *filed;
    });
    REQUIRE(r);
    return r->at(0);
  }
  MDB_env* env() const { return env_.get(); }

 private:
  test::TempDir dir_;
  common::lmdb::Env env_;
  Dbs dbs_;
};

std::vector<std::string> names(const std::vector<ListEntry>& list) {
  std::vector<std::string> out;
  for (const auto& e : list) out.push_back(e.name);
  return out;
}

const ListEntry* entry(const std::vector<ListEntry>& list, const std::string& name) {
  for (const auto& e : list) {
    if (e.name == name) return &e;
  }
  return nullptr;
}

std::string simple_message(const std::string& subject, size_t body_bytes = 10) {
  return "From: a@example.org\r\nSubject: " + subject + "\r\n\r\n" + std::string(body_bytes, 'b') + "\r\n";
}

FlagSet flags_of(std::vector<std::string> names) {
  auto f = parse_flags(names);
  REQUIRE(f);
  return *f;
}

double seconds_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

}  // namespace

// ---------------------------------------------------------------- names, flags, UID sets

TEST_CASE("mailbox names: UTF-8, no controls or empty levels, INBOX canonical", "[ops]") {
  auto ok = [](std::string_view n) {
    auto r = validate_mailbox_name(n);
    INFO(n << ": " << (r ? "" : r.error().detail));
    REQUIRE(r);
    return *r;
  };
  CHECK(ok("INBOX") == "INBOX");
  CHECK(ok("inbox") == "INBOX");
  CHECK(ok("InBoX/Sub") == "INBOX/Sub");
  CHECK(ok("inboxes") == "inboxes");
  CHECK(ok("Archive/inbox") == "Archive/inbox");
  CHECK(ok("Entw\xc3\xbcrfe") == "Entw\xc3\xbcrfe");
  CHECK(ok("\xe6\x97\xa5\xe6\x9c\xac/\xf0\x9f\x93\xac") == "\xe6\x97\xa5\xe6\x9c\xac/\xf0\x9f\x93\xac");
  CHECK(ok(std::string(1000, 'a')).size() == 1000);

  for (std::string bad : {std::string(), std::string("a//b"), std::string("/a"), std::string("a/"), std::string("/"),
                          std::string("a\0b", 3), std::string("a\rb"), std::string("a\nb"), std::string("a\x7f"),
                          std::string("a\tb"), std::string("\xc2\x85"),  // U+0085, a C1 control
                          std::string("\xc0\xaf"),                       // overlong "/"
                          std::string("\xe0\x80\xaf"),                   // overlong "/" in 3 bytes
                          std::string("\xed\xa0\x80"),                   // a surrogate
                          std::string("\xf4\x90\x80\x80"),               // past U+10FFFF
                          std::string("\xe2\x82"),                       // truncated
                          std::string("\x80"), std::string("\xff"), std::string("a*"), std::string("%"),
                          std::string(1001, 'a')}) {
    auto r = validate_mailbox_name(bad);
    INFO("name of " << bad.size() << " bytes");
    REQUIRE_FALSE(r);
    CHECK(r.error().code == OpCode::InvalidArgument);
    CHECK_FALSE(r.error().detail.empty());
  }
}

TEST_CASE("flags: system flags in any case, keyword atoms, Recent refused", "[ops]") {
  auto f = parse_flags(std::vector<std::string>{"\\seen", "\\FLAGGED", "$Junk", "$junk", "NonJunk"});
  REQUIRE(f);
  CHECK(f->flags == (store::kSeen | store::kFlagged));
  CHECK(f->keywords == std::vector<std::string>{"$Junk", "NonJunk"});
  CHECK(flag_names(f->flags, f->keywords) == std::vector<std::string>{"\\Seen", "\\Flagged", "$Junk", "NonJunk"});

  for (const std::string& bad : std::vector<std::string>{"\\Recent", "\\Other", "a b", "a(", "x\\y", "a]", "a*", "\x01", "caf\xc3\xa9", "",
                          std::string(kMaxKeywordLength + 1, 'k')}) {
    auto r = parse_flags(std::vector<std::string>{bad});
    INFO(bad);
    REQUIRE_FALSE(r);
    CHECK(r.error().code == OpCode::InvalidArgument);
  }
  std::vector<std::string> many;
  for (size_t i = 0; i <= store::kMaxKeywords; ++i) many.push_back("k" + std::to_string(i));
  CHECK_FALSE(parse_flags(many));
  many.pop_back();
  CHECK(parse_flags(many));

  auto uses = parse_special_use(std::vector<std::string>{"\\sent", "\\Trash"});
  REQUIRE(uses);
  CHECK(*uses == (store::kUseSent | store::kUseTrash));
  CHECK(special_use_names(*uses) == std::vector<std::string>{"\\Sent", "\\Trash"});
  CHECK_FALSE(parse_special_use(std::vector<std::string>{"\\Important"}));
}

TEST_CASE("UID sets are sorted and merged, a million ranges in linear time", "[ops]") {
  CHECK(normalise({{5, 3}, {1, 1}, {2, 2}, {10, 12}, {11, 20}, {0, 0}}) == UidSet{{1, 5}, {10, 20}});
  CHECK(normalise({{0, 4}, {UINT32_MAX, UINT32_MAX}, {UINT32_MAX - 1, UINT32_MAX}}) ==
        UidSet{{1, 4}, {UINT32_MAX - 1, UINT32_MAX}});
  const UidSet set = normalise({{3, 5}, {9, 9}});
  CHECK(contains(set, 3));
  CHECK(contains(set, 5));
  CHECK_FALSE(contains(set, 6));
  CHECK(contains(set, 9));
  CHECK_FALSE(contains(set, 10));
  CHECK(to_ranges(std::vector<uint32_t>{1, 2, 3, 7, 9, 10}) == UidSet{{1, 3}, {7, 7}, {9, 10}});

  UidSet big;
  for (uint32_t i = 0; i < 1000000; ++i) big.emplace_back(2000001 - 2 * i, 2000001 - 2 * i);  // reverse order
  const auto start = std::chrono::steady_clock::now();
  const UidSet n = normalise(big);
  CHECK(n.size() == 1000000);
  CHECK(n.front() == UidRange{3, 3});
  CHECK(seconds_since(start) < 10);
}

// ---------------------------------------------------------------- mailboxes

TEST_CASE("create makes missing superior names, refuses what exists, takes special uses", "[ops]") {
  Store s;
  s.user(kAlice);
  auto made = s.write([](Txn& t, const Dbs& d) { return create_mailbox(t, d, kAlice, "a/b/c", 0, 1700000000); });
  REQUIRE(made);
  CHECK(made->name == "a/b/c");
  CHECK(made->parents_created == std::vector<std::string>{"a", "a/b"});
  auto list = s.list({"a*"});
  CHECK(names(list) == std::vector<std::string>{"a", "a/b", "a/b/c"});

  auto again = s.write([](Txn& t, const Dbs& d) { return create_mailbox(t, d, kAlice, "a/b", 0, 1700000000); });
  REQUIRE_FALSE(again);
  CHECK(again.error().code == OpCode::AlreadyExists);
  CHECK(again.error().detail == "mailbox \"a/b\" exists");
  auto inbox = s.write([](Txn& t, const Dbs& d) { return create_mailbox(t, d, kAlice, "inbox", 0, 1700000000); });
  REQUIRE_FALSE(inbox);
  CHECK(inbox.error().code == OpCode::AlreadyExists);

  // A trailing delimiter only declares that inferiors will follow (RFC 9051 §6.3.4).
  auto trailing = s.write([](Txn& t, const Dbs& d) { return create_mailbox(t, d, kAlice, "Projects/", 0, 1700000000); });
  REQUIRE(trailing);
  CHECK(trailing->name == "Projects");

  auto special = s.write(
      [](Txn& t, const Dbs& d) { return create_mailbox(t, d, kAlice, "Everything", store::kUseAll, 1700000000); });
  REQUIRE(special);
  CHECK(special->record.special_use == store::kUseAll);
  auto bad_use = s.write([](Txn& t, const Dbs& d) { return create_mailbox(t, d, kAlice, "X", 1u << 20, 1700000000); });
  REQUIRE_FALSE(bad_use);
  CHECK(bad_use.error().code == OpCode::InvalidArgument);

  auto bad = s.write([](Txn& t, const Dbs& d) { return create_mailbox(t, d, kAlice, "bad\xc0\xafname", 0, 1700000000); });
  REQUIRE_FALSE(bad);
  CHECK(bad.error().code == OpCode::InvalidArgument);
  auto nobody = s.write([](Txn& t, const Dbs& d) { return create_mailbox(t, d, "nobody@x", "Y", 0, 1700000000); });
  REQUIRE_FALSE(nobody);
  CHECK(nobody.error().code == OpCode::NotFound);
  CHECK(nobody.error().detail == "no such user");

  // UIDVALIDITY grows from one mailbox to the next, even within one second.
  CHECK(s.select("a/b/c").record.uidvalidity > s.select("a/b").record.uidvalidity);
}

TEST_CASE("delete expunges the messages, keeps inferiors and the subscription, refuses INBOX", "[ops]") {
  Store s;
  s.user(kAlice);
  REQUIRE(s.write([](Txn& t, const Dbs& d) { return create_mailbox(t, d, kAlice, "Work/Old", 0, 1700000000); }));
  REQUIRE(s.write([](Txn& t, const Dbs& d) { return subscribe(t, d, kAlice, "Work", true); }));
  s.append("Work", simple_message("one"));
  s.append("Work", simple_message("two", 100000));  // two chunks
  s.append("INBOX", simple_message("kept"));
  const SelectResult work = s.select("Work");
  // A copy in INBOX shares the first body: deleting Work must leave it.
  REQUIRE(s.write([&](Txn& t, const Dbs& d) { return copy_messages(t, d, kAlice, work.ref, {{1, 1}}, "INBOX", false); }));
  CHECK(s.count(&Dbs::bodies) == 3);

  auto gone = s.write([](Txn& t, const Dbs& d) { return delete_mailbox(t, d, kAlice, "Work"); });
  REQUIRE(gone);
  CHECK(gone->expunged == 2);
  CHECK(gone->freed);  // small enough to be freed in DELETE's own transaction
  CHECK(gone->record.id == work.ref.id);
  CHECK(s.count(&Dbs::bodies) == 2);  // the copied body stays, the 100 KB one is gone
  CHECK(s.messages("INBOX").size() == 2);
  // Nothing of the mailbox is left in changes or mailbox_ids (the invariant check counts those).
  s.read([&](const Txn& t, const Dbs& d) {
    auto id = t.get(d.mailbox_ids, common::lmdb::Encoder().u64(work.ref.id).str());
    REQUIRE(id);
    CHECK_FALSE(*id);
    auto cursor = Cursor::open(t, d.changes);
    REQUIRE(cursor);
    auto e = cursor->seek(common::lmdb::Encoder().u64(work.ref.id).str());
    REQUIRE(e);
    if (*e) CHECK_FALSE((*e)->first.starts_with(common::lmdb::Encoder().u64(work.ref.id).str()));
    return 0;
  });

  // "Work" is now a superior name without a mailbox; "Work/Old" stays.
  auto list = s.list({"Work*"});
  REQUIRE(list.size() == 2);
  CHECK(list[0].name == "Work");
  CHECK_FALSE(list[0].exists);
  CHECK(list[0].has_children);
  CHECK(list[0].subscribed);  // RFC 9051 §6.3.7: the server does not unsubscribe by itself
  CHECK(list[1].name == "Work/Old");
  CHECK(list[1].exists);

  auto again = s.write([](Txn& t, const Dbs& d) { return delete_mailbox(t, d, kAlice, "Work"); });
  REQUIRE_FALSE(again);
  CHECK(again.error().code == OpCode::NotFound);
  auto inbox = s.write([](Txn& t, const Dbs& d) { return delete_mailbox(t, d, kAlice, "iNbOx"); });
  REQUIRE_FALSE(inbox);
  CHECK(inbox.error().code == OpCode::InvalidArgument);

  // Created again, the name gets a new UIDVALIDITY (RFC 9051 §2.3.1.1).
  auto made = s.write([](Txn& t, const Dbs& d) { return create_mailbox(t, d, kAlice, "Work", 0, 1); });
  REQUIRE(made);
  CHECK(made->record.uidvalidity > work.record.uidvalidity);
  CHECK(made->record.id != work.ref.id);
  CHECK(made->record.uidnext == 1);
}

TEST_CASE("rename moves inferiors and subscriptions, keeps ids and UIDVALIDITY", "[ops]") {
  Store s;
  s.user(kAlice);
  REQUIRE(s.write([](Txn& t, const Dbs& d) { return create_mailbox(t, d, kAlice, "a/x/deep", 0, 1700000000); }));
  REQUIRE(s.write([](Txn& t, const Dbs& d) { return create_mailbox(t, d, kAlice, "a-sibling", 0, 1700000000); }));
  REQUIRE(s.write([](Txn& t, const Dbs& d) { return subscribe(t, d, kAlice, "a/x", true); }));
  REQUIRE(s.write([](Txn& t, const Dbs& d) { return subscribe(t, d, kAlice, "a/ghost", true); }));
  s.append("a/x", simple_message("in a/x"));
  const SelectResult before = s.select("a/x");

  auto renamed = s.write([](Txn& t, const Dbs& d) { return rename_mailbox(t, d, kAlice, "a", "new/b", 1700000000); });
  REQUIRE(renamed);
  CHECK(renamed->renamed.size() == 3);
  CHECK(renamed->parents_created == std::vector<std::string>{"new"});
  CHECK_FALSE(renamed->created);
  auto list = s.list({"*"});
  CHECK(names(list) == std::vector<std::string>{"Archive", "Drafts", "INBOX", "Junk", "Sent", "Trash", "a-sibling", "new",
                                                "new/b", "new/b/x", "new/b/x/deep"});
  const SelectResult after = s.select("new/b/x");
  CHECK(after.ref.id == before.ref.id);
  CHECK(after.record.uidvalidity == before.record.uidvalidity);
  CHECK(after.uids == before.uids);
  auto subs = s.list({"*"}, ListOptions{true, false});
  CHECK(entry(subs, "new/b/x"));
  CHECK(entry(subs, "new/b/ghost"));  // a subscribed name that never existed moves too
  CHECK_FALSE(entry(subs, "a/x"));

  auto missing = s.write([](Txn& t, const Dbs& d) { return rename_mailbox(t, d, kAlice, "a", "c", 1); });
  REQUIRE_FALSE(missing);
  CHECK(missing.error().code == OpCode::NotFound);
  auto exists = s.write([](Txn& t, const Dbs& d) { return rename_mailbox(t, d, kAlice, "a-sibling", "Sent", 1); });
  REQUIRE_FALSE(exists);
  CHECK(exists.error().code == OpCode::AlreadyExists);
  auto under = s.write([](Txn& t, const Dbs& d) { return rename_mailbox(t, d, kAlice, "new/b", "new/b/x/y", 1); });
  REQUIRE_FALSE(under);
  CHECK(under.error().code == OpCode::InvalidArgument);
  // An inferior's new name that exists is refused before anything moves.
  REQUIRE(s.write([](Txn& t, const Dbs& d) { return create_mailbox(t, d, kAlice, "z/x", 0, 1700000000); }));
  REQUIRE(s.write([](Txn& t, const Dbs& d) { return delete_mailbox(t, d, kAlice, "z"); }));
  auto clash = s.write([](Txn& t, const Dbs& d) { return rename_mailbox(t, d, kAlice, "new/b", "z", 1); });
  REQUIRE_FALSE(clash);
  CHECK(clash.error().code == OpCode::AlreadyExists);
  CHECK(clash.error().detail == "mailbox \"z/x\" exists");
  CHECK(s.select("new/b/x").ref.id == before.ref.id);
}

TEST_CASE("RENAME INBOX moves its messages into a new mailbox and leaves INBOX empty", "[ops]") {
  Store s;
  s.user(kAlice);
  REQUIRE(s.write([](Txn& t, const Dbs& d) { return create_mailbox(t, d, kAlice, "INBOX/child", 0, 1700000000); }));
  s.append("INBOX", simple_message("one"), flags_of({"\\Seen", "$Work"}));
  s.append("INBOX", simple_message("two"));
  s.append("INBOX", simple_message("three"), flags_of({"\\Flagged"}));
  s.append("INBOX/child", simple_message("child"));
  REQUIRE(s.write([&](Txn& t, const Dbs& d) {
    return expunge(t, d, kAlice, s.select("INBOX").ref, std::nullopt);  // nothing is \Deleted
  }));
  const SelectResult inbox = s.select("INBOX");
  const auto old_messages = s.messages("INBOX");

  auto renamed = s.write([](Txn& t, const Dbs& d) { return rename_mailbox(t, d, kAlice, "inbox", "Old/Mail", 1700000000); });
  REQUIRE(renamed);
  REQUIRE(renamed->created);
  CHECK(renamed->renamed.empty());
  CHECK(renamed->inbox_expunged == UidSet{{1, 3}});
  CHECK(renamed->parents_created == std::vector<std::string>{"Old"});

  const SelectResult after = s.select("INBOX");
  CHECK(after.ref.id == inbox.ref.id);
  CHECK(after.record.uidvalidity == inbox.record.uidvalidity);
  CHECK(after.record.messages == 0);
  CHECK(after.record.uidnext == 4);  // UIDs are not reused
  CHECK(after.record.highestmodseq == renamed->inbox_highest_modseq);
  CHECK(after.record.highestmodseq == inbox.record.highestmodseq + 3);
  const auto moved = s.messages("Old/Mail");
  REQUIRE(moved.size() == 3);
  for (size_t i = 0; i < 3; ++i) {
    CHECK(moved[i].uid == i + 1);
    CHECK(moved[i].record.flags == old_messages[i].record.flags);
    CHECK(moved[i].record.keywords == old_messages[i].record.keywords);
    CHECK(moved[i].record.body_id == old_messages[i].record.body_id);
    CHECK(moved[i].record.internal_date == old_messages[i].record.internal_date);
  }
  CHECK(s.select("Old/Mail").record.unseen == 2);
  CHECK(s.messages("INBOX/child").size() == 1);  // inferiors of INBOX are unaffected

  // QRESYNC sees the move as an expunge in INBOX.
  auto changes = s.read([&](const Txn& t, const Dbs& d) { return changes_since(t, d, kAlice, after.ref, inbox.record.highestmodseq); });
  REQUIRE(changes);
  CHECK(changes->vanished == UidSet{{1, 3}});
  CHECK(changes->changed.empty());

  auto exists = s.write([](Txn& t, const Dbs& d) { return rename_mailbox(t, d, kAlice, "INBOX", "Old/Mail", 1); });
  REQUIRE_FALSE(exists);
  CHECK(exists.error().code == OpCode::AlreadyExists);
  auto to_inbox = s.write([](Txn& t, const Dbs& d) { return rename_mailbox(t, d, kAlice, "Old", "INBOX", 1); });
  REQUIRE_FALSE(to_inbox);
  CHECK(to_inbox.error().code == OpCode::AlreadyExists);
}

// ---------------------------------------------------------------- LIST and subscriptions

TEST_CASE("LIST wildcards: * crosses levels, % does not, INBOX in any case", "[ops]") {
  CHECK(list_match("*", "a/b/c"));
  CHECK(list_match("%", "a"));
  CHECK_FALSE(list_match("%", "a/b"));
  CHECK(list_match("a/%", "a/b"));
  CHECK_FALSE(list_match("a/%", "a/b/c"));
  CHECK(list_match("a/*", "a/b/c"));
  CHECK(list_match("%/%/c", "a/b/c"));
  CHECK(list_match("a*c", "abc"));
  CHECK(list_match("a*c", "a/b/c"));
  CHECK_FALSE(list_match("a%c", "a/c"));
  CHECK(list_match("inbox", "INBOX"));
  CHECK(list_match("InBox/%", "INBOX/Sub"));
  CHECK(list_match("in*", "INBOX"));
  CHECK_FALSE(list_match("inbox/sub", "INBOX/Sub"));  // only INBOX's own level ignores case
  CHECK_FALSE(list_match("sent", "Sent"));
  CHECK_FALSE(list_match("", "INBOX"));
  CHECK(list_match("", ""));
  // A pattern built to backtrack costs |pattern| x |name|, not an exponential search.
  const std::string name(1000, 'a');
  std::string pattern;
  for (int i = 0; i < 400; ++i) pattern += "*a";
  pattern += "b";
  const auto start = std::chrono::steady_clock::now();
  CHECK_FALSE(list_match(pattern, name));
  CHECK(seconds_since(start) < 5);
}

TEST_CASE("LIST: children, special use, superior names without a mailbox", "[ops]") {
  Store s;
  s.user(kAlice);
  REQUIRE(s.write([](Txn& t, const Dbs& d) { return create_mailbox(t, d, kAlice, "Lists/ietf", 0, 1700000000); }));
  REQUIRE(s.write([](Txn& t, const Dbs& d) { return create_mailbox(t, d, kAlice, "INBOX/Sub", 0, 1700000000); }));
  auto top = s.list({"%"});
  CHECK(names(top) == std::vector<std::string>{"Archive", "Drafts", "INBOX", "Junk", "Lists", "Sent", "Trash"});
  CHECK(entry(top, "INBOX")->has_children);
  CHECK(entry(top, "Lists")->has_children);
  CHECK_FALSE(entry(top, "Sent")->has_children);
  CHECK(entry(top, "Sent")->special_use == store::kUseSent);
  CHECK(entry(top, "Sent")->subscribed);
  CHECK_FALSE(entry(top, "Lists")->subscribed);
  CHECK(entry(top, "INBOX")->record.uidvalidity != 0);
  CHECK(names(s.list({"inbox/%"})) == std::vector<std::string>{"INBOX/Sub"});
  CHECK(names(s.list({"Lists/%", "Sent"})) == std::vector<std::string>{"Lists/ietf", "Sent"});
  CHECK(names(s.list({"*"}, ListOptions{false, true})) ==
        std::vector<std::string>{"Archive", "Drafts", "Junk", "Sent", "Trash"});
  CHECK(s.list({"nothing*"}).empty());

  auto bad = s.read([](const Txn& t, const Dbs& d) {
    return list_mailboxes_matching(t, d, kAlice, std::vector<std::string>{"bad\xff"}, {});
  });
  REQUIRE_FALSE(bad);
  CHECK(bad.error().code == OpCode::InvalidArgument);
}

TEST_CASE("subscriptions need no mailbox: a subscribed inferior shows its superior (CHILDINFO)", "[ops]") {
  Store s;
  s.user(kAlice);
  REQUIRE(s.write([](Txn& t, const Dbs& d) { return create_mailbox(t, d, kAlice, "Foo/Bar", 0, 1700000000); }));
  auto sub = s.write([](Txn& t, const Dbs& d) { return subscribe(t, d, kAlice, "foo/bar", true); });
  REQUIRE(sub);
  CHECK(*sub == "foo/bar");  // names are case-sensitive except INBOX
  REQUIRE(s.write([](Txn& t, const Dbs& d) { return subscribe(t, d, kAlice, "Foo/Bar", true); }));
  REQUIRE(s.write([](Txn& t, const Dbs& d) { return subscribe(t, d, kAlice, "Gone", true); }));
  REQUIRE(s.write([](Txn& t, const Dbs& d) { return subscribe(t, d, kAlice, "Foo/Bar", true); }));  // twice is fine
  REQUIRE(s.write([](Txn& t, const Dbs& d) { return subscribe(t, d, kAlice, "Sent", false); }));
  REQUIRE(s.write([](Txn& t, const Dbs& d) { return subscribe(t, d, kAlice, "Never", false); }));

  auto subs = s.list({"*"}, ListOptions{true, false});
  CHECK(names(subs) == std::vector<std::string>{"Archive", "Drafts", "Foo/Bar", "Gone", "INBOX", "Junk", "Trash", "foo/bar"});
  CHECK_FALSE(entry(subs, "Gone")->exists);
  CHECK_FALSE(entry(subs, "foo/bar")->exists);
  CHECK(entry(subs, "Foo/Bar")->exists);

  // "%" does not reach Foo/Bar: Foo is reported, unsubscribed, with a subscribed child.
  auto top = s.list({"%"}, ListOptions{true, false});
  const ListEntry* foo = entry(top, "Foo");
  REQUIRE(foo);
  CHECK_FALSE(foo->subscribed);
  CHECK(foo->child_subscribed);
  CHECK(foo->exists);
  CHECK(foo->has_children);
  const ListEntry* lower = entry(top, "foo");
  REQUIRE(lower);
  CHECK_FALSE(lower->exists);
  CHECK_FALSE(entry(top, "Sent"));
  // With "*" the child itself matches, so its superior is not added.
  CHECK_FALSE(entry(s.list({"*"}, ListOptions{true, false}), "Foo"));
  // Plain LIST reports the subscription state too.
  CHECK(entry(s.list({"%"}), "Foo")->child_subscribed);

  auto bad = s.write([](Txn& t, const Dbs& d) { return subscribe(t, d, kAlice, "a\r\nb", true); });
  REQUIRE_FALSE(bad);
  CHECK(bad.error().code == OpCode::InvalidArgument);
}

// ---------------------------------------------------------------- SELECT, STATUS, FETCH

TEST_CASE("select: UID ranges, keywords in use, first unseen: status counts Deleted", "[ops]") {
  Store s;
  s.user(kAlice);
  for (int i = 1; i <= 6; ++i) {
    std::vector<std::string> f;
    if (i <= 2) f.push_back("\\Seen");
    if (i == 3) f = {"\\Seen", "\\Deleted", "$Later"};
    if (i == 5) f = {"$later", "Project"};
    s.append("INBOX", simple_message("m" + std::to_string(i)), flags_of(f));
  }
  const MailboxRef ref = s.select("inbox").ref;
  REQUIRE(s.write([&](Txn& t, const Dbs& d) { return expunge(t, d, kAlice, ref, std::nullopt); }));
  const SelectResult sel = s.select("INBOX");
  CHECK(sel.name == "INBOX");
  CHECK(sel.uids == UidSet{{1, 2}, {4, 6}});
  CHECK(sel.record.messages == 5);
  CHECK(sel.record.unseen == 3);
  CHECK(sel.record.uidnext == 7);
  CHECK(sel.first_unseen == 4);
  CHECK(sel.keywords == std::vector<std::string>{"$later", "Project"});
  CHECK(sel.deleted == 0);

  REQUIRE(s.write([&](Txn& t, const Dbs& d) {
    return store_flags(t, d, kAlice, ref, {{1, 2}}, StoreMode::Add, flags_of({"\\Deleted"}));
  }));
  auto status = s.read([](const Txn& t, const Dbs& d) { return status_mailbox(t, d, kAlice, "INBOX", true); });
  REQUIRE(status);
  CHECK(status->deleted == 2);
  CHECK(status->record.messages == 5);
  CHECK(status->uids.empty());
  auto missing = s.read([](const Txn& t, const Dbs& d) { return select_mailbox(t, d, kAlice, "Nope"); });
  REQUIRE_FALSE(missing);
  CHECK(missing.error().code == OpCode::NotFound);
  CHECK(missing.error().detail == "no mailbox \"Nope\"");
}

TEST_CASE("fetch walks a UID set in order, stops when asked, honours CHANGEDSINCE", "[ops]") {
  Store s;
  s.user(kAlice);
  for (int i = 0; i < 20; ++i) s.append("INBOX", simple_message(std::to_string(i)));
  const MailboxRef ref = s.select("INBOX").ref;
  auto uids_of = [&](const UidSet& set, uint64_t changed_since = 0, size_t stop_after = 1000) {
    std::vector<uint32_t> out;
    auto r = s.read([&](const Txn& t, const Dbs& d) {
      return for_each_message(
          t, d, kAlice, ref, set,
          [&](const store::MessageInfo& m) {
            out.push_back(m.uid);
            return out.size() < stop_after;
          },
          changed_since);
    });
    REQUIRE(r);
    return out;
  };
  CHECK(uids_of({{18, 25}, {2, 3}, {3, 4}, {10, 10}}) == std::vector<uint32_t>{2, 3, 4, 10, 18, 19, 20});
  CHECK(uids_of({{21, UINT32_MAX}}).empty());
  CHECK(uids_of({}).empty());
  CHECK(uids_of({{1, UINT32_MAX}}, 0, 3) == std::vector<uint32_t>{1, 2, 3});
  REQUIRE(s.write([&](Txn& t, const Dbs& d) {
    return store_flags(t, d, kAlice, ref, {{5, 5}, {7, 7}}, StoreMode::Add, flags_of({"\\Seen"}));
  }));
  CHECK(uids_of({{1, UINT32_MAX}}, 20) == std::vector<uint32_t>{5, 7});

  // A million ranges over a small mailbox, and one range over it: both quick.
  UidSet odd;
  for (uint32_t i = 0; i < 1000000; ++i) odd.emplace_back(2 * i + 1, 2 * i + 1);
  const auto start = std::chrono::steady_clock::now();
  CHECK(uids_of(odd) == std::vector<uint32_t>{1, 3, 5, 7, 9, 11, 13, 15, 17, 19});
  CHECK(seconds_since(start) < 10);

  auto stale = s.read([&](const Txn& t, const Dbs& d) {
    return for_each_message(t, d, kAlice, MailboxRef{ref.id, ref.uidvalidity + 1}, {{1, 1}},
                            [](const store::MessageInfo&) { return true; });
  });
  REQUIRE_FALSE(stale);
  CHECK(stale.error().code == OpCode::FailedPrecondition);
  CHECK(stale.error().detail.find("UIDVALIDITY changed") == 0);
  // Another user's mailbox id looks like no mailbox at all.
  s.user(kBob);
  auto foreign = s.read([&](const Txn& t, const Dbs& d) {
    return for_each_message(t, d, kBob, ref, {{1, 1}}, [](const store::MessageInfo&) { return true; });
  });
  REQUIRE_FALSE(foreign);
  CHECK(foreign.error().code == OpCode::NotFound);
}

namespace {

const std::string kMultipart =
    "Return-Path: <a@example.org>\r\n"
    "From: A <a@example.org>\r\n"
    "To: b@example.com\r\n"
    "Subject: test\r\n"
    " continued\r\n"
    "X-Long: one\r\n"
    "\ttwo\r\n"
    "MIME-Version: 1.0\r\n"
    "Content-Type: multipart/mixed; boundary=\"XX\"\r\n"
    "\r\n"
    "preamble\r\n"
    "--XX\r\n"
    "Content-Type: text/plain; charset=utf-8\r\n"
    "Content-Transfer-Encoding: quoted-printable\r\n"
    "\r\n"
    "caf=C3=A9 =\r\n"
    "soft=3D  \r\n"
    "end\r\n"
    "--XX\r\n"
    "Content-Type: application/octet-stream\r\n"
    "Content-Transfer-Encoding: base64\r\n"
    "\r\n"
    "aGVsbG8g\r\n"
    "d29ybGQ=\r\n"
    "--XX\r\n"
    "Content-Type: text/plain\r\n"
    "Content-Transfer-Encoding: x-uuencode\r\n"
    "\r\n"
    "begin 644 x\r\n"
    "--XX--\r\n";

struct Fetched {
  store::MessageRecord record;
  store::mime::MessageStructure structure;
};

Fetched fetch_one(const Store& s, const std::string& mailbox, uint32_t uid) {
  const SelectResult sel = s.select(mailbox);
  Fetched out;
  bool found = false;
  REQUIRE(s.read([&](const Txn& t, const Dbs& d) -> OpResult<void> {
    return for_each_message(t, d, kAlice, sel.ref, {{uid, uid}}, [&](const store::MessageInfo& m) {
      out.record = m.record;
      auto structure = load_structure(t, d, m.record);
      REQUIRE(structure);
      out.structure = *structure;
      found = true;
      return true;
    });
  }));
  REQUIRE(found);
  return out;
}

SectionData section(const Store& s, const Fetched& f, Section sec, std::optional<Partial> partial = std::nullopt,
                    bool size_only = false) {
  auto r = s.read([&](const Txn& t, const Dbs& d) { return read_section(t, d, f.record, f.structure, sec, partial, size_only); });
  INFO((r ? "" : r.error().detail));
  REQUIRE(r);
  return *r;
}

}  // namespace

TEST_CASE("sections: the prefix comes first, header fields, MIME, parts, partial ranges", "[ops]") {
  Store s;
  s.user(kAlice);
  s.deliver(kMultipart);
  const Fetched f = fetch_one(s, "INBOX", 1);
  const std::string prefix = "Delivered-To: alice@example.com\r\n";
  REQUIRE(f.record.prefix == prefix);
  const std::string whole = prefix + kMultipart;
  const size_t header_end = kMultipart.find("\r\n\r\n") + 4;

  CHECK(section(s, f, {}).data == whole);
  CHECK(section(s, f, {}).total == whole.size());
  CHECK(section(s, f, {{}, SectionText::Header}).data == prefix + kMultipart.substr(0, header_end));
  CHECK(section(s, f, {{}, SectionText::Text}).data == kMultipart.substr(header_end));
  CHECK(section(s, f, {{}, SectionText::Mime}).missing);
  CHECK(section(s, f, {{1}}).data == "caf=C3=A9 =\r\nsoft=3D  \r\nend");
  CHECK(section(s, f, {{1}, SectionText::Mime}).data ==
        "Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n");
  CHECK(section(s, f, {{2}}).data == "aGVsbG8g\r\nd29ybGQ=");
  CHECK(section(s, f, {{4}}).missing);
  CHECK(section(s, f, {{1}, SectionText::Header}).missing);  // not a message/rfc822 part

  // HEADER.FIELDS: case-insensitive names, continuation lines kept, the empty line at the end; the
  // prefix is part of the message's header.
  CHECK(section(s, f, {{}, SectionText::HeaderFields, {"subject", "X-LONG"}}).data ==
        "Subject: test\r\n continued\r\nX-Long: one\r\n\ttwo\r\n\r\n");
  CHECK(section(s, f, {{}, SectionText::HeaderFields, {"Delivered-To"}}).data == prefix + "\r\n");
  CHECK(section(s, f, {{}, SectionText::HeaderFields, {"No-Such"}}).data == "\r\n");
  CHECK(section(s, f, {{}, SectionText::HeaderFieldsNot, {"Subject", "X-Long", "Delivered-To", "Return-Path"}}).data ==
        "From: A <a@example.org>\r\nTo: b@example.com\r\nMIME-Version: 1.0\r\n"
        "Content-Type: multipart/mixed; boundary=\"XX\"\r\n\r\n");

  // Partial ranges, one past the end is empty with the full size still known.
  SectionData part = section(s, f, {}, Partial{3, 10});
  CHECK(part.data == whole.substr(3, 10));
  CHECK(part.total == whole.size());
  part = section(s, f, {}, Partial{whole.size() - 4, 100});
  CHECK(part.data == whole.substr(whole.size() - 4));
  part = section(s, f, {}, Partial{whole.size() + 1, 10});
  CHECK(part.data.empty());
  CHECK(part.total == whole.size());
  part = section(s, f, {{}, SectionText::HeaderFields, {"subject"}}, Partial{9, 4});
  CHECK(part.data == "test");
  CHECK(section(s, f, {}, Partial{UINT64_MAX, UINT64_MAX}).data.empty());
  CHECK(section(s, f, {}, std::nullopt, true).data.empty());
}

TEST_CASE("BINARY decodes base64 and quoted-printable, refuses an unknown encoding", "[ops]") {
  Store s;
  s.user(kAlice);
  s.append("INBOX", kMultipart);
  const Fetched f = fetch_one(s, "INBOX", 1);
  CHECK(f.record.prefix.empty());  // APPEND has no Delivered-To line
  Section qp{{1}};
  qp.binary = true;
  CHECK(section(s, f, qp).data == "caf\xc3\xa9 soft=\r\nend");
  Section b64{{2}};
  b64.binary = true;
  CHECK(section(s, f, b64).data == "hello world");
  SectionData size = section(s, f, b64, std::nullopt, true);
  CHECK(size.total == 11);  // BINARY.SIZE is the decoded size
  CHECK(size.data.empty());
  CHECK(section(s, f, b64, Partial{6, 100}).data == "world");
  CHECK(section(s, f, b64, Partial{11, 1}).data.empty());

  Section unknown{{3}};
  unknown.binary = true;
  auto r = s.read([&](const Txn& t, const Dbs& d) { return read_section(t, d, f.record, f.structure, unknown); });
  REQUIRE_FALSE(r);
  CHECK(r.error().code == OpCode::FailedPrecondition);
  CHECK(r.error().detail == "unknown content-transfer-encoding");
  Section header{{1}, SectionText::Mime};
  header.binary = true;
  auto h = s.read([&](const Txn& t, const Dbs& d) { return read_section(t, d, f.record, f.structure, header); });
  REQUIRE_FALSE(h);
  CHECK(h.error().code == OpCode::InvalidArgument);
  Section gone{{9}};
  gone.binary = true;
  CHECK(section(s, f, gone).missing);
  Section whole;
  whole.binary = true;
  CHECK(section(s, f, whole).data == kMultipart);  // the whole message has no encoding of its own

  auto plain = decode_transfer_encoding("x=4", store::mime::Encoding::QuotedPrintable);
  REQUIRE(plain);
  CHECK(*plain == "x=4");  // a malformed escape stays as it is
  auto junk = decode_transfer_encoding("aGk*\r\n!!", store::mime::Encoding::Base64);
  REQUIRE(junk);
  CHECK(*junk == "hi");
}

TEST_CASE("a partial read of a big body reads only the chunks it needs", "[ops]") {
  Store s;
  s.user(kAlice);
  std::string body = "Subject: big\r\n\r\n";
  for (int i = 0; body.size() < 5 * store::kBodyChunk; ++i) body += "line " + std::to_string(i) + "\r\n";
  s.append("INBOX", body);
  const Fetched f = fetch_one(s, "INBOX", 1);
  const uint64_t across = store::kBodyChunk - 100;
  CHECK(section(s, f, {}, Partial{across, 300}).data == body.substr(across, 300));
  CHECK(section(s, f, {{}, SectionText::Text}, Partial{2 * store::kBodyChunk, 10}).data ==
        body.substr(body.find("\r\n\r\n") + 4 + 2 * store::kBodyChunk, 10));

  // Take chunks 0 and 4 away: a range inside chunks 1..2 still reads, the whole message cannot.
  s.raw([&](Txn& t, const Dbs& d) {
    REQUIRE(t.del(d.body_chunks, store::chunk_key(f.record.body_id, 0)));
    REQUIRE(t.del(d.body_chunks, store::chunk_key(f.record.body_id, 4)));
  });
  CHECK(section(s, f, {}, Partial{store::kBodyChunk + 5, store::kBodyChunk}).data ==
        body.substr(store::kBodyChunk + 5, store::kBodyChunk));
  auto broken = s.read([&](const Txn& t, const Dbs& d) { return read_section(t, d, f.record, f.structure, Section{}); });
  REQUIRE_FALSE(broken);
  CHECK(broken.error().code == OpCode::Internal);
}

// ---------------------------------------------------------------- STORE

TEST_CASE("store: one new MODSEQ per changed message, none for a no-op, unseen follows Seen", "[ops]") {
  Store s;
  s.user(kAlice);
  for (int i = 0; i < 4; ++i) s.append("INBOX", simple_message(std::to_string(i)));
  const SelectResult before = s.select("INBOX");
  const uint64_t m0 = before.record.highestmodseq;
  CHECK(before.record.unseen == 4);

  auto add = s.write([&](Txn& t, const Dbs& d) {
    return store_flags(t, d, kAlice, before.ref, {{1, 3}}, StoreMode::Add, flags_of({"\\Seen", "$Todo"}));
  });
  REQUIRE(add);
  REQUIRE(add->updated.size() == 3);
  for (size_t i = 0; i < 3; ++i) {
    CHECK(add->updated[i].uid == i + 1);
    CHECK(add->updated[i].modseq == m0 + 1 + i);
    CHECK(add->updated[i].flags == store::kSeen);
    CHECK(add->updated[i].keywords == std::vector<std::string>{"$Todo"});
  }
  CHECK(add->highest_modseq == m0 + 3);
  CHECK(s.select("INBOX").record.unseen == 1);

  // The same again changes nothing and takes no MODSEQ.
  auto again = s.write([&](Txn& t, const Dbs& d) {
    return store_flags(t, d, kAlice, before.ref, {{1, 3}}, StoreMode::Add, flags_of({"\\seen", "$TODO"}));
  });
  REQUIRE(again);
  CHECK(again->updated.empty());
  CHECK(again->unchanged.size() == 3);
  CHECK(again->highest_modseq == m0 + 3);

  auto remove = s.write([&](Txn& t, const Dbs& d) {
    return store_flags(t, d, kAlice, before.ref, {{2, 2}}, StoreMode::Remove, flags_of({"\\Seen", "$todo"}));
  });
  REQUIRE(remove);
  REQUIRE(remove->updated.size() == 1);
  CHECK(remove->updated[0].flags == 0);
  CHECK(remove->updated[0].keywords.empty());
  CHECK(s.select("INBOX").record.unseen == 2);

  auto replace = s.write([&](Txn& t, const Dbs& d) {
    return store_flags(t, d, kAlice, before.ref, {{1, 4}}, StoreMode::Replace, flags_of({"\\Flagged", "$A"}));
  });
  REQUIRE(replace);
  CHECK(replace->updated.size() == 4);
  for (const auto& m : s.messages("INBOX")) {
    CHECK(m.record.flags == store::kFlagged);
    CHECK(m.record.keywords == std::vector<std::string>{"$A"});
  }
  CHECK(s.select("INBOX").record.unseen == 4);
  // The changes table has moved with the messages: one kind-0 entry each (checked after every
  // write), and changes_since sees exactly the last command.
  auto changes = s.read([&](const Txn& t, const Dbs& d) {
    return changes_since(t, d, kAlice, before.ref, replace->highest_modseq - 4);
  });
  REQUIRE(changes);
  CHECK(changes->changed.size() == 4);
}

TEST_CASE("store UNCHANGEDSINCE leaves newer messages alone and reports them MODIFIED", "[ops]") {
  Store s;
  s.user(kAlice);
  for (int i = 0; i < 3; ++i) s.append("INBOX", simple_message(std::to_string(i)));
  const SelectResult sel = s.select("INBOX");
  const uint64_t m0 = sel.record.highestmodseq;  // messages have MODSEQ 1..3
  REQUIRE(s.write([&](Txn& t, const Dbs& d) {
    return store_flags(t, d, kAlice, sel.ref, {{2, 2}}, StoreMode::Add, flags_of({"\\Answered"}));
  }));
  auto r = s.write([&](Txn& t, const Dbs& d) {
    return store_flags(t, d, kAlice, sel.ref, {{1, 3}}, StoreMode::Add, flags_of({"\\Flagged"}), m0);
  });
  REQUIRE(r);
  CHECK(r->modified == UidSet{{2, 2}});
  REQUIRE(r->updated.size() == 2);
  CHECK(r->updated[0].uid == 1);
  CHECK(r->updated[1].uid == 3);
  auto zero = s.write([&](Txn& t, const Dbs& d) {
    return store_flags(t, d, kAlice, sel.ref, {{1, 3}}, StoreMode::Add, flags_of({"\\Draft"}), uint64_t{0});
  });
  REQUIRE(zero);
  CHECK(zero->modified == UidSet{{1, 3}});
  CHECK(zero->updated.empty());
}

TEST_CASE("store refusals: stale UIDVALIDITY, too many keywords (rolled back whole)", "[ops]") {
  Store s;
  s.user(kAlice);
  std::vector<std::string> many;
  for (size_t i = 0; i < store::kMaxKeywords; ++i) many.push_back("k" + std::to_string(i));
  s.append("INBOX", simple_message("few"));
  s.append("INBOX", simple_message("full"), flags_of(many));
  const SelectResult sel = s.select("INBOX");
  auto stale = s.write([&](Txn& t, const Dbs& d) {
    return store_flags(t, d, kAlice, MailboxRef{sel.ref.id, sel.ref.uidvalidity - 1}, {{1, 2}}, StoreMode::Add,
                       flags_of({"\\Seen"}));
  });
  REQUIRE_FALSE(stale);
  CHECK(stale.error().code == OpCode::FailedPrecondition);
  // Message 1 would be changed first; message 2 would pass kMaxKeywords: nothing is kept.
  auto over = s.write([&](Txn& t, const Dbs& d) {
    return store_flags(t, d, kAlice, sel.ref, {{1, 2}}, StoreMode::Add, flags_of({"\\Seen", "extra"}));
  });
  REQUIRE_FALSE(over);
  CHECK(over.error().code == OpCode::InvalidArgument);
  CHECK(s.select("INBOX").record.highestmodseq == sel.record.highestmodseq);
  CHECK(s.messages("INBOX")[0].record.flags == 0);
  // A million-range set is walked, not multiplied by the mailbox.
  UidSet odd;
  for (uint32_t i = 0; i < 1000000; ++i) odd.emplace_back(2 * i + 1, 2 * i + 1);
  const auto start = std::chrono::steady_clock::now();
  auto wide = s.write([&](Txn& t, const Dbs& d) {
    return store_flags(t, d, kAlice, sel.ref, odd, StoreMode::Add, flags_of({"\\Seen"}));
  });
  REQUIRE(wide);
  CHECK(wide->updated.size() == 1);
  CHECK(seconds_since(start) < 10);
}

// ---------------------------------------------------------------- APPEND, COPY, MOVE, EXPUNGE

TEST_CASE("append: flags, date, structure, APPENDUID: quota and a missing mailbox refused", "[ops]") {
  Store s;
  s.user(kAlice);
  const AppendResult a = s.append("INBOX", kMultipart, flags_of({"\\Seen", "$Sent"}));
  CHECK(a.uid == 1);
  const SelectResult sel = s.select("INBOX");
  CHECK(a.uidvalidity == sel.record.uidvalidity);
  CHECK(a.mailbox_id == sel.ref.id);
  CHECK(a.modseq == sel.record.highestmodseq);
  const Fetched f = fetch_one(s, "INBOX", 1);
  CHECK(f.record.flags == store::kSeen);
  CHECK(f.record.keywords == std::vector<std::string>{"$Sent"});
  CHECK(f.record.internal_date == 1700000100);
  CHECK(f.record.size == kMultipart.size());
  CHECK(f.structure.envelope.find("\"test continued\"") != std::string::npos);
  CHECK(f.structure.parts.size() == 4);

  auto missing = s.write([](Txn& t, const Dbs& d) { return append_message(t, d, kAlice, "Nope", "x\r\n", {}, 1); });
  REQUIRE_FALSE(missing);
  CHECK(missing.error().code == OpCode::NotFound);  // the front end answers [TRYCREATE]
  auto bad_flags = s.write([](Txn& t, const Dbs& d) {
    return append_message(t, d, kAlice, "INBOX", "x\r\n", FlagSet{0, {"bad word"}}, 1);
  });
  REQUIRE_FALSE(bad_flags);
  CHECK(bad_flags.error().code == OpCode::InvalidArgument);

  // The quota is the user record's (as authserv said at the last delivery).
  s.raw([&](Txn& t, const Dbs& d) {
    auto u = store::find_user(t, d, kAlice);
    REQUIRE(u);
    store::UserRecord r = **u;
    r.quota_bytes = r.bytes_used + 100;
    r.quota_messages = 2;
    REQUIRE(t.put(d.users, store::user_key(kAlice), store::encode(r)));
  });
  auto big = s.write([](Txn& t, const Dbs& d) {
    return append_message(t, d, kAlice, "INBOX", std::string(101, 'x'), {}, 1);
  });
  REQUIRE_FALSE(big);
  CHECK(big.error().code == OpCode::ResourceExhausted);
  CHECK(big.error().detail.find("over quota") == 0);
  s.append("INBOX", std::string(100, 'x'));
  auto third = s.write([](Txn& t, const Dbs& d) { return append_message(t, d, kAlice, "INBOX", "", {}, 1); });
  REQUIRE_FALSE(third);
  CHECK(third.error().code == OpCode::ResourceExhausted);
  auto q = s.read([](const Txn& t, const Dbs& d) { return quota(t, d, kAlice); });
  REQUIRE(q);
  CHECK(q->messages_used == 2);
  CHECK(q->messages_limit == 2);
  CHECK(q->bytes_used == kMultipart.size() + 100);
  CHECK(q->bytes_limit == q->bytes_used);
  auto nobody = s.read([](const Txn& t, const Dbs& d) { return quota(t, d, "nobody@example.com"); });
  REQUIRE_FALSE(nobody);
  CHECK(nobody.error().code == OpCode::NotFound);
}

TEST_CASE("copy shares bodies, keeps flags, gives COPYUID in source order: quota for the whole set", "[ops]") {
  Store s;
  s.user(kAlice);
  s.deliver(simple_message("delivered"));
  s.append("INBOX", simple_message("two"), flags_of({"\\Flagged", "$X"}));
  s.append("INBOX", simple_message("three"));
  s.append("Archive", simple_message("already there"));
  const SelectResult inbox = s.select("INBOX");
  const uint64_t bodies = s.count(&Dbs::bodies);
  const uint64_t chunks = s.count(&Dbs::body_chunks);

  auto copy = s.write([&](Txn& t, const Dbs& d) {
    return copy_messages(t, d, kAlice, inbox.ref, {{3, 3}, {1, 2}, {9, 20}}, "Archive", false);
  });
  INFO((copy ? "" : copy.error().detail));
  REQUIRE(copy);
  const SelectResult archive = s.select("Archive");
  CHECK(copy->target.id == archive.ref.id);
  CHECK(copy->target.uidvalidity == archive.record.uidvalidity);
  CHECK(copy->source_uids == std::vector<uint32_t>{1, 2, 3});
  CHECK(copy->target_uids == std::vector<uint32_t>{2, 3, 4});
  CHECK(copy->added.size() == 3);
  CHECK(copy->target_highest_modseq == archive.record.highestmodseq);
  CHECK(copy->expunged.empty());
  CHECK(s.count(&Dbs::bodies) == bodies);  // no bytes copied
  CHECK(s.count(&Dbs::body_chunks) == chunks);
  const auto src = s.messages("INBOX");
  const auto dst = s.messages("Archive");
  REQUIRE(dst.size() == 4);
  for (size_t i = 0; i < 3; ++i) {
    CHECK(dst[i + 1].record.body_id == src[i].record.body_id);
    CHECK(dst[i + 1].record.flags == src[i].record.flags);
    CHECK(dst[i + 1].record.keywords == src[i].record.keywords);
    CHECK(dst[i + 1].record.prefix == src[i].record.prefix);
    CHECK(dst[i + 1].record.internal_date == src[i].record.internal_date);
  }
  s.read([&](const Txn& t, const Dbs& d) {
    auto b = store::find_body(t, d, src[0].record.body_id);
    REQUIRE(b);
    CHECK((*b)->references == 2);
    return 0;
  });

  auto missing = s.write([&](Txn& t, const Dbs& d) { return copy_messages(t, d, kAlice, inbox.ref, {{1, 1}}, "Nope", false); });
  REQUIRE_FALSE(missing);
  CHECK(missing.error().code == OpCode::NotFound);
  auto none = s.write([&](Txn& t, const Dbs& d) { return copy_messages(t, d, kAlice, inbox.ref, {{50, 60}}, "Trash", false); });
  REQUIRE(none);
  CHECK(none->target_uids.empty());

  // Room for one more message but not for three.
  s.raw([&](Txn& t, const Dbs& d) {
    auto u = store::find_user(t, d, kAlice);
    REQUIRE(u);
    store::UserRecord r = **u;
    r.quota_messages = r.messages + 1;
    REQUIRE(t.put(d.users, store::user_key(kAlice), store::encode(r)));
  });
  auto over = s.write([&](Txn& t, const Dbs& d) { return copy_messages(t, d, kAlice, inbox.ref, {{1, 3}}, "Trash", false); });
  REQUIRE_FALSE(over);
  CHECK(over.error().code == OpCode::ResourceExhausted);
  CHECK(s.select("Trash").record.messages == 0);
  // A MOVE does not change the usage, so the quota does not stop it.
  auto move = s.write([&](Txn& t, const Dbs& d) { return copy_messages(t, d, kAlice, inbox.ref, {{1, 3}}, "Trash", true); });
  REQUIRE(move);
  CHECK(move->expunged == UidSet{{1, 3}});
}

TEST_CASE("move expunges from the source with MODSEQs, also within one mailbox", "[ops]") {
  Store s;
  s.user(kAlice);
  for (int i = 0; i < 5; ++i) s.append("INBOX", simple_message(std::to_string(i)), flags_of(i == 2 ? std::vector<std::string>{"\\Seen"} : std::vector<std::string>{}));
  const SelectResult inbox = s.select("INBOX");
  auto move = s.write([&](Txn& t, const Dbs& d) { return copy_messages(t, d, kAlice, inbox.ref, {{2, 4}}, "Junk", true); });
  REQUIRE(move);
  CHECK(move->source_uids == std::vector<uint32_t>{2, 3, 4});
  CHECK(move->target_uids == std::vector<uint32_t>{1, 2, 3});
  CHECK(move->expunged == UidSet{{2, 4}});
  const SelectResult after = s.select("INBOX");
  CHECK(move->source_highest_modseq == after.record.highestmodseq);
  CHECK(after.record.highestmodseq == inbox.record.highestmodseq + 3);
  CHECK(after.uids == UidSet{{1, 1}, {5, 5}});
  CHECK(after.record.unseen == 2);
  CHECK(s.select("Junk").record.unseen == 2);
  auto changes = s.read([&](const Txn& t, const Dbs& d) { return changes_since(t, d, kAlice, inbox.ref, inbox.record.highestmodseq); });
  REQUIRE(changes);
  CHECK(changes->vanished == UidSet{{2, 4}});

  // Within one mailbox: the messages get new UIDs at the end, the copies are not moved again.
  auto self = s.write([&](Txn& t, const Dbs& d) { return copy_messages(t, d, kAlice, after.ref, {{1, UINT32_MAX}}, "INBOX", true); });
  REQUIRE(self);
  CHECK(self->source_uids == std::vector<uint32_t>{1, 5});
  CHECK(self->target_uids == std::vector<uint32_t>{6, 7});
  CHECK(s.select("INBOX").uids == UidSet{{6, 7}});
  CHECK(self->target_highest_modseq == s.select("INBOX").record.highestmodseq);
}

TEST_CASE("expunge removes Deleted messages (all, or in a UID set), frees the last reference", "[ops]") {
  Store s;
  s.user(kAlice);
  for (int i = 0; i < 6; ++i) s.append("INBOX", simple_message(std::to_string(i), i == 0 ? 200000 : 10));
  const SelectResult sel = s.select("INBOX");
  REQUIRE(s.write([&](Txn& t, const Dbs& d) { return copy_messages(t, d, kAlice, sel.ref, {{1, 1}}, "Archive", false); }));
  REQUIRE(s.write([&](Txn& t, const Dbs& d) {
    return store_flags(t, d, kAlice, sel.ref, {{1, 1}, {3, 5}}, StoreMode::Add, flags_of({"\\Deleted"}));
  }));
  const uint64_t m0 = s.select("INBOX").record.highestmodseq;
  const uint64_t bodies = s.count(&Dbs::bodies);

  auto none = s.write([&](Txn& t, const Dbs& d) { return expunge(t, d, kAlice, sel.ref, UidSet{}); });
  REQUIRE(none);
  CHECK(none->expunged.empty());
  CHECK(none->highest_modseq == m0);
  auto some = s.write([&](Txn& t, const Dbs& d) { return expunge(t, d, kAlice, sel.ref, UidSet{{4, 6}}); });
  REQUIRE(some);
  CHECK(some->expunged == UidSet{{4, 5}});
  CHECK(some->highest_modseq == m0 + 2);
  CHECK(s.count(&Dbs::bodies) == bodies - 2);
  auto rest = s.write([&](Txn& t, const Dbs& d) { return expunge(t, d, kAlice, sel.ref, std::nullopt); });
  REQUIRE(rest);
  CHECK(rest->expunged == UidSet{{1, 1}, {3, 3}});
  CHECK(s.count(&Dbs::bodies) == bodies - 3);  // the 200 KB body lives on in Archive
  CHECK(s.select("INBOX").uids == UidSet{{2, 2}, {6, 6}});
  CHECK(s.messages("Archive").size() == 1);

  auto changes = s.read([&](const Txn& t, const Dbs& d) { return changes_since(t, d, kAlice, sel.ref, m0); });
  REQUIRE(changes);
  CHECK(changes->vanished == UidSet{{1, 1}, {3, 5}});
  CHECK(changes->highest_modseq == m0 + 4);
  auto restricted = s.read([&](const Txn& t, const Dbs& d) { return changes_since(t, d, kAlice, sel.ref, m0, UidSet{{5, 9}}); });
  REQUIRE(restricted);
  CHECK(restricted->vanished == UidSet{{5, 5}});
}

TEST_CASE("changes since a MODSEQ: flags with their MODSEQ, vanished UIDs, a UID filter", "[ops]") {
  Store s;
  s.user(kAlice);
  for (int i = 0; i < 5; ++i) s.append("INBOX", simple_message(std::to_string(i)));
  const SelectResult sel = s.select("INBOX");
  const uint64_t m0 = sel.record.highestmodseq;
  REQUIRE(s.write([&](Txn& t, const Dbs& d) {
    return store_flags(t, d, kAlice, sel.ref, {{2, 2}, {4, 4}}, StoreMode::Add, flags_of({"\\Deleted", "$K"}));
  }));
  REQUIRE(s.write([&](Txn& t, const Dbs& d) { return expunge(t, d, kAlice, sel.ref, UidSet{{4, 4}}); }));
  s.append("INBOX", simple_message("new"));
  auto c = s.read([&](const Txn& t, const Dbs& d) { return changes_since(t, d, kAlice, sel.ref, m0); });
  REQUIRE(c);
  REQUIRE(c->changed.size() == 2);
  CHECK(c->changed[0].uid == 2);
  CHECK(c->changed[0].modseq == m0 + 1);
  CHECK(c->changed[0].flags == store::kDeleted);
  CHECK(c->changed[0].keywords == std::vector<std::string>{"$K"});
  CHECK(c->changed[1].uid == 6);  // a new message is a change too
  CHECK(c->vanished == UidSet{{4, 4}});
  CHECK(c->highest_modseq == m0 + 4);
  auto all = s.read([&](const Txn& t, const Dbs& d) { return changes_since(t, d, kAlice, sel.ref, 0); });
  REQUIRE(all);
  CHECK(all->changed.size() == 5);
  auto none = s.read([&](const Txn& t, const Dbs& d) { return changes_since(t, d, kAlice, sel.ref, m0 + 4); });
  REQUIRE(none);
  CHECK(none->changed.empty());
  CHECK(none->vanished.empty());
  auto filtered = s.read([&](const Txn& t, const Dbs& d) { return changes_since(t, d, kAlice, sel.ref, 0, UidSet{{1, 2}}); });
  REQUIRE(filtered);
  CHECK(filtered->changed.size() == 2);
}

// ---------------------------------------------------------------- users and verify

TEST_CASE("user admin: rename keeps the mail, delete removes it and only its references", "[ops]") {
  Store s;
  s.user(kAlice);
  s.user(kAlice);  // a second time is a no-op
  REQUIRE(s.write([](Txn& t, const Dbs& d) { return create_mailbox(t, d, kAlice, "Projects/X", 0, 1700000000); }));
  s.append("Projects/X", simple_message("mine"));
  // One delivery to both users: one body with two references.
  store::Delivery delivery;
  delivery.body = simple_message("shared", 70000);
  delivery.structure = store::mime::encode(store::mime::parse(delivery.body));
  delivery.recipients = {{kAlice, kAlice, "", 0, 0}, {kBob, kBob, "", 0, 0}};
  REQUIRE(s.write([&](Txn& t, const Dbs& d) -> OpResult<int> {
    auto r = store::file_delivery(t, d, delivery, 1700000000, std::chrono::hours(24));
    if (!r) return tl::unexpected(to_op_error(r.error()));
    return 0;
  }));
  const SelectResult before = s.select("Projects/X");

  auto renamed = s.write([](Txn& t, const Dbs& d) { return rename_user(t, d, kAlice, "alice2@example.com"); });
  REQUIRE(renamed);
  CHECK(s.select("Projects/X", "alice2@example.com").ref.id == before.ref.id);
  auto old = s.read([](const Txn& t, const Dbs& d) { return select_mailbox(t, d, kAlice, "INBOX"); });
  REQUIRE_FALSE(old);
  CHECK(old.error().code == OpCode::NotFound);
  auto clash = s.write([](Txn& t, const Dbs& d) { return rename_user(t, d, kBob, "alice2@example.com"); });
  REQUIRE_FALSE(clash);
  CHECK(clash.error().code == OpCode::AlreadyExists);
  auto bad = s.write([](Txn& t, const Dbs& d) { return rename_user(t, d, kBob, "x\n"); });
  REQUIRE_FALSE(bad);
  CHECK(bad.error().code == OpCode::InvalidArgument);

  auto gone = s.write([](Txn& t, const Dbs& d) { return delete_user(t, d, "alice2@example.com"); });
  REQUIRE(gone);
  CHECK(gone->mailboxes.size() == 8);  // the six defaults, Projects and Projects/X
  CHECK(gone->subscriptions == 6);
  CHECK(s.count(&Dbs::users) == 1);
  CHECK(s.count(&Dbs::bodies) == 1);  // bob's copy keeps the shared body
  CHECK(s.count(&Dbs::subscriptions) == 6);
  CHECK(s.messages("INBOX", kBob).size() == 1);
  auto again = s.write([](Txn& t, const Dbs& d) { return delete_user(t, d, "alice2@example.com"); });
  REQUIRE_FALSE(again);
  CHECK(again.error().code == OpCode::NotFound);
}

TEST_CASE("verify finds damaged references, counters and changes: repair fixes them", "[ops]") {
  Store s;
  s.user(kAlice);
  for (int i = 0; i < 4; ++i) s.append("INBOX", simple_message(std::to_string(i), i == 0 ? 140000 : 10));
  const SelectResult sel = s.select("INBOX");
  const auto messages = s.messages("INBOX");
  auto clean = s.read([](const Txn& t, const Dbs& d) { return verify_refcounts(t, d); });
  REQUIRE(clean);
  CHECK(clean->problems == 0);
  CHECK(clean->users == 1);
  CHECK(clean->mailboxes == 6);
  CHECK(clean->messages == 4);
  CHECK(clean->bodies == 4);
  CHECK(clean->chunks == 6);

  s.raw([&](Txn& t, const Dbs& d) {
    using common::lmdb::Encoder;
    // A reference count off by one.
    auto b = store::find_body(t, d, messages[1].record.body_id);
    REQUIRE(b);
    store::BodyRecord body = **b;
    body.references = 3;
    REQUIRE(t.put(d.bodies, Encoder().u64(messages[1].record.body_id).str(), store::encode(body)));
    // A body and a chunk nothing points at, and a chunk of no body.
    REQUIRE(t.put(d.bodies, Encoder().u64(9999).str(), store::encode(store::BodyRecord{1, 3, 1, ""})));
    REQUIRE(t.put(d.body_chunks, store::chunk_key(9999, 0), "abc"));
    REQUIRE(t.put(d.body_chunks, store::chunk_key(8888, 0), "zzz"));
    // A message whose kind-0 change went missing, and a stale kind-0 change.
    REQUIRE(t.del(d.changes, store::change_key(sel.ref.id, messages[2].record.modseq)));
    REQUIRE(t.put(d.changes, store::change_key(sel.ref.id, 500), Encoder().u32(77).u8(0).str()));
    // Wrong counters.
    auto mb = store::find_mailbox(t, d, sel.record.id ? (store::find_user(t, d, kAlice)->value().id) : 0, "INBOX");
    REQUIRE(mb);
    store::MailboxRecord box = **mb;
    box.messages = 9;
    box.unseen = 0;
    box.uidnext = 2;
    REQUIRE(t.put(d.mailboxes, store::mailbox_key(store::find_user(t, d, kAlice)->value().id, "INBOX"), store::encode(box)));
    store::UserRecord user = store::find_user(t, d, kAlice)->value();
    user.bytes_used = 1;
    REQUIRE(t.put(d.users, store::user_key(kAlice), store::encode(user)));
    // A message of a mailbox that does not exist, and a subscription of a user that does not.
    store::MessageRecord orphan = messages[3].record;
    REQUIRE(t.put(d.messages, store::message_key(4242, 1), store::encode(orphan)));
    REQUIRE(t.put(d.subscriptions, store::mailbox_key(31337, "X"), ""));
  });
  auto found = s.read([](const Txn& t, const Dbs& d) { return verify_refcounts(t, d); });
  REQUIRE(found);
  std::string all;
  for (const auto& line : found->details) all += line + "\n";
  INFO(all);
  CHECK(found->problems >= 10);
  CHECK(found->unrepairable == 0);
  CHECK(all.find("references 3, counted 1") != std::string::npos);
  CHECK(all.find("body 9999: no message points at it") != std::string::npos);
  CHECK(all.find("body 8888 chunk 0: no such body") != std::string::npos);
  CHECK(all.find("has no kind-0 change") != std::string::npos);
  CHECK(all.find("for UID 77") != std::string::npos);
  CHECK(all.find("no such mailbox") != std::string::npos);
  CHECK(all.find("is not below UIDNEXT 2") != std::string::npos);
  CHECK(all.find("user id 31337: no such user") != std::string::npos);

  auto repaired = s.write([](Txn& t, const Dbs& d) { return verify_refcounts(t, d, true); });  // checks invariants after
  REQUIRE(repaired);
  CHECK(repaired->repaired == found->problems);
  const SelectResult after = s.select("INBOX");
  CHECK(after.record.messages == 4);
  CHECK(after.record.unseen == 4);
  CHECK(after.record.uidnext == 5);
  CHECK(after.record.highestmodseq > 500);  // past the stale entry it saw
  // The message that lost its change got a fresh MODSEQ, so a resyncing client refetches it.
  auto changes = s.read([&](const Txn& t, const Dbs& d) { return changes_since(t, d, kAlice, sel.ref, 500); });
  REQUIRE(changes);
  REQUIRE(changes->changed.size() == 1);
  CHECK(changes->changed[0].uid == messages[2].uid);
}

TEST_CASE("a message whose body is gone is reported, not repaired, and can still be expunged", "[ops]") {
  Store s;
  s.user(kAlice);
  s.append("INBOX", simple_message("lost"), flags_of({"\\Deleted"}));
  const auto m = s.messages("INBOX");
  s.raw([&](Txn& t, const Dbs& d) {
    REQUIRE(t.del(d.bodies, common::lmdb::Encoder().u64(m[0].record.body_id).str()));
    REQUIRE(t.del(d.body_chunks, store::chunk_key(m[0].record.body_id, 0)));
  });
  auto report = s.read([](const Txn& t, const Dbs& d) { return verify_refcounts(t, d); });
  REQUIRE(report);
  CHECK(report->problems == 1);
  CHECK(report->unrepairable == 1);
  s.raw([&](Txn& t, const Dbs& d) {
    auto r = expunge(t, d, kAlice, MailboxRef{s.select("INBOX").ref}, std::nullopt);
    REQUIRE(r);
    CHECK(r->expunged == UidSet{{1, 1}});
  });
  auto after = s.read([](const Txn& t, const Dbs& d) { return verify_refcounts(t, d); });
  REQUIRE(after);
  CHECK(after->problems == 0);
}

TEST_CASE("sections inside an attached message/rfc822: HEADER, TEXT, HEADER.FIELDS, its parts", "[ops]") {
  Store s;
  s.user(kAlice);
  const std::string inner =
      "Subject: inner\r\n"
      "Content-Type: multipart/alternative; boundary=YY\r\n"
      "\r\n"
      "--YY\r\n"
      "Content-Type: text/plain\r\n"
      "\r\n"
      "plain\r\n"
      "--YY--\r\n";
  const std::string outer =
      "Subject: outer\r\n"
      "Content-Type: multipart/mixed; boundary=XX\r\n"
      "\r\n"
      "--XX\r\n"
      "Content-Type: text/plain\r\n"
      "\r\n"
      "first\r\n"
      "--XX\r\n"
      "Content-Type: message/rfc822\r\n"
      "\r\n" +
      inner +
      "\r\n"
      "--XX--\r\n";
  s.append("INBOX", outer);
  const Fetched f = fetch_one(s, "INBOX", 1);
  CHECK(section(s, f, {{2}, SectionText::Header}).data == "Subject: inner\r\nContent-Type: multipart/alternative; boundary=YY\r\n\r\n");
  CHECK(section(s, f, {{2}, SectionText::HeaderFields, {"SUBJECT"}}).data == "Subject: inner\r\n\r\n");
  CHECK(section(s, f, {{2}, SectionText::Text}).data.starts_with("--YY\r\n"));
  CHECK(section(s, f, {{2, 1}}).data == "plain");
  CHECK(section(s, f, {{2}, SectionText::Mime}).data == "Content-Type: message/rfc822\r\n\r\n");
  CHECK(section(s, f, {{1}}).data == "first");
  CHECK(section(s, f, {{2, 2}}).missing);
}

TEST_CASE("a user's mailboxes and subscriptions are bounded", "[ops]") {
  Store s;
  s.user(kAlice);
  s.raw([&](Txn& t, const Dbs& d) {
    auto u = store::find_user(t, d, kAlice);
    REQUIRE(u);
    for (size_t i = 6; i < kMaxMailboxesPerUser; ++i) {
      REQUIRE(store::create_mailbox(t, d, (*u)->id, "f" + std::to_string(i), 0, 1700000000));
    }
    for (size_t i = 6; i < kMaxSubscriptionsPerUser; ++i) {
      REQUIRE(t.put(d.subscriptions, store::mailbox_key((*u)->id, "s" + std::to_string(i)), ""));
    }
  });
  auto more = s.write([](Txn& t, const Dbs& d) { return create_mailbox(t, d, kAlice, "one-more", 0, 1700000000); });
  REQUIRE_FALSE(more);
  CHECK(more.error().code == OpCode::ResourceExhausted);
  auto inbox = s.write([](Txn& t, const Dbs& d) { return rename_mailbox(t, d, kAlice, "INBOX", "old-inbox", 1700000000); });
  REQUIRE_FALSE(inbox);
  CHECK(inbox.error().code == OpCode::ResourceExhausted);
  auto sub = s.write([](Txn& t, const Dbs& d) { return subscribe(t, d, kAlice, "one-more", true); });
  REQUIRE_FALSE(sub);
  CHECK(sub.error().code == OpCode::ResourceExhausted);
  REQUIRE(s.write([](Txn& t, const Dbs& d) { return subscribe(t, d, kAlice, "s7", true); }));  // already there
  REQUIRE(s.write([](Txn& t, const Dbs& d) { return delete_mailbox(t, d, kAlice, "f7"); }));
  REQUIRE(s.write([](Txn& t, const Dbs& d) { return create_mailbox(t, d, kAlice, "one-more", 0, 1700000000); }));
}

// ---------------------------------------------------------------- expunge history, big deletes

TEST_CASE("mailbox names: each kind of bad UTF-8 is named", "[ops]") {
  auto reason = [](std::string_view n) {
    auto r = validate_mailbox_name(n);
    REQUIRE_FALSE(r);
    return r.error().detail;
  };
  CHECK(reason("a\xc0\xaf") == "mailbox name is not valid UTF-8 (an overlong form)");
  CHECK(reason("\xe0\x80\xaf") == "mailbox name is not valid UTF-8 (an overlong form)");
  CHECK(reason("\xed\xa0\x80") == "mailbox name is not valid UTF-8 (a surrogate)");
  CHECK(reason("\xf4\x90\x80\x80") == "mailbox name is not valid UTF-8 (past U+10FFFF)");
  CHECK(reason("\xf7\xbf\xbf\xbf") == "mailbox name is not valid UTF-8 (past U+10FFFF)");
  CHECK(reason("ab\xe2\x82") == "mailbox name is not valid UTF-8 (a truncated sequence)");
  CHECK(reason("\x80") == "mailbox name is not valid UTF-8");
  CHECK(reason("\xff") == "mailbox name is not valid UTF-8");
  CHECK(reason("\xc3(") == "mailbox name is not valid UTF-8");
  CHECK(reason("\xc2\x85") == "mailbox name has a control character");
  CHECK(reason("a\tb") == "mailbox name has a control character");
  CHECK(validate_mailbox_name("\xf4\x8f\xbf\xbf"));  // U+10FFFF itself
}

TEST_CASE("mailbox records: layout 1 is still read, expunge history makes layout 2", "[ops]") {
  store::MailboxRecord r;
  r.id = 7;
  r.uidvalidity = 99;
  r.uidnext = 5;
  r.highestmodseq = 12;
  r.messages = 3;
  const std::string plain = store::encode(r);
  CHECK(plain[0] == 1);
  // A record as written before the expunge history existed, built by hand.
  const std::string old = common::lmdb::Encoder().u8(1).u64(7).u32(99).u32(5).u64(12).u32(3).u32(0).u64(0).u32(0).i64(0).str();
  CHECK(plain == old);
  auto back = store::decode_mailbox(old);
  REQUIRE(back);
  CHECK(back->vanished_floor == 0);
  CHECK(back->tombstones == 0);
  r.vanished_floor = 10;
  r.tombstones = 4;
  const std::string with = store::encode(r);
  CHECK(with[0] == 2);
  auto again = store::decode_mailbox(with);
  REQUIRE(again);
  CHECK(again->vanished_floor == 10);
  CHECK(again->tombstones == 4);
  CHECK(again->highestmodseq == 12);
  CHECK_FALSE(store::decode_mailbox(with.substr(0, with.size() - 1)));
  CHECK_FALSE(store::decode_mailbox(old + "x"));
}

TEST_CASE("expunge history is pruned oldest first, and below the floor VANISHED is every UID not live", "[ops]") {
  Store s;
  s.user(kAlice);
  s.raw([&](Txn& t, const Dbs& d) {
    for (int i = 0; i < 40; ++i) REQUIRE(append_message(t, d, kAlice, "INBOX", simple_message(std::to_string(i)), {}, 1700000100));
  });
  const SelectResult sel = s.select("INBOX");
  // 30 expunges, each its own command, so each tombstone has its own MODSEQ: UIDs 1..30 in order,
  // then the live ones are 31..40.
  std::vector<uint64_t> expunged_at;  // MODSEQ of UID i + 1's tombstone
  for (uint32_t uid = 1; uid <= 30; ++uid) {
    REQUIRE(s.write([&](Txn& t, const Dbs& d) {
      return store_flags(t, d, kAlice, sel.ref, {{uid, uid}}, StoreMode::Add, flags_of({"\\Deleted"}));
    }));
    auto e = s.write([&](Txn& t, const Dbs& d) { return expunge(t, d, kAlice, sel.ref, UidSet{{uid, uid}}); });
    REQUIRE(e);
    expunged_at.push_back(e->highest_modseq);
  }
  // A flag change after the expunges, which a resync must still see.
  REQUIRE(s.write([&](Txn& t, const Dbs& d) {
    return store_flags(t, d, kAlice, sel.ref, {{35, 35}}, StoreMode::Add, flags_of({"\\Flagged"}));
  }));
  CHECK(s.select("INBOX").record.tombstones == 30);

  // Keep 10, reading at most 7 entries a batch: several batches, each leaving the invariants.
  PruneLimits limits;
  limits.keep = 10;
  limits.entries = 7;
  std::string cursor;
  uint64_t pruned = 0;
  int batches = 0;
  for (;;) {
    auto p = s.write([&](Txn& t, const Dbs& d) { return prune_tombstones(t, d, limits, cursor); });
    REQUIRE(p);
    pruned += p->pruned;
    ++batches;
    REQUIRE(batches < 100);
    if (!p->more) break;
  }
  CHECK(batches > 2);
  CHECK(pruned == 20);
  CHECK(cursor.empty());
  const SelectResult after = s.select("INBOX");
  CHECK(after.record.tombstones == 10);
  // The floor is the 20th tombstone's MODSEQ (at most: kind-0 entries are never pruned past).
  CHECK(after.record.vanished_floor == expunged_at[19]);
  // A second walk finds nothing to do.
  auto idle = s.write([&](Txn& t, const Dbs& d) { return prune_tombstones(t, d, limits, cursor); });
  REQUIRE(idle);
  CHECK(idle->pruned == 0);

  auto since = [&](uint64_t m, std::optional<UidSet> only = std::nullopt) {
    auto c = s.read([&](const Txn& t, const Dbs& d) { return changes_since(t, d, kAlice, sel.ref, m, only); });
    REQUIRE(c);
    return *c;
  };
  // At or above the floor: exact, from the tombstones still there.
  CHECK(since(expunged_at[19]).vanished == UidSet{{21, 30}});
  CHECK(since(expunged_at[24]).vanished == UidSet{{26, 30}});
  // Below it: every UID under UIDNEXT that is not live, a superset of what really vanished since.
  const auto below = since(expunged_at[19] - 1);
  CHECK(below.vanished == UidSet{{1, 30}});
  CHECK(since(0).vanished == UidSet{{1, 30}});
  CHECK(since(expunged_at[4]).vanished == UidSet{{1, 30}});
  // The flag change is still reported below the floor (kind-0 entries are never pruned).
  REQUIRE(below.changed.size() >= 1);
  CHECK(below.changed.back().uid == 35);
  // With the client's known UIDs: only those.
  CHECK(since(0, UidSet{{3, 5}, {29, 33}, {38, 50}}).vanished == UidSet{{3, 5}, {29, 30}});
  CHECK(since(expunged_at[24], UidSet{{3, 5}, {29, 33}}).vanished == UidSet{{29, 30}});
  // An expunge after the pruning goes on being exact above the floor.
  REQUIRE(s.write([&](Txn& t, const Dbs& d) {
    return store_flags(t, d, kAlice, sel.ref, {{31, 31}}, StoreMode::Add, flags_of({"\\Deleted"}));
  }));
  auto last = s.write([&](Txn& t, const Dbs& d) { return expunge(t, d, kAlice, sel.ref, UidSet{{31, 31}}); });
  REQUIRE(last);
  CHECK(since(last->highest_modseq - 1).vanished == UidSet{{31, 31}});
  CHECK(since(1).vanished == UidSet{{1, 31}});
  CHECK(s.select("INBOX").record.tombstones == 11);
}

TEST_CASE("a mailbox too big for one transaction: DELETE takes effect at once, the rest is freed in batches",
          "[ops]") {
  Store s;
  s.user(kAlice);
  REQUIRE(s.write([](Txn& t, const Dbs& d) { return create_mailbox(t, d, kAlice, "Big", 0, 1700000000); }));
  s.raw([&](Txn& t, const Dbs& d) {
    for (int i = 0; i < 2500; ++i) {
      REQUIRE(append_message(t, d, kAlice, "Big", simple_message(std::to_string(i), i % 100 == 0 ? 70000 : 10), {},
                             1700000100));
    }
  });
  const SelectResult big = s.select("Big");
  // 200 of them copied to INBOX: those bodies must outlive the deleted mailbox.
  REQUIRE(s.write([&](Txn& t, const Dbs& d) { return copy_messages(t, d, kAlice, big.ref, {{1, 200}}, "INBOX", false); }));
  s.append("INBOX", simple_message("own"));
  REQUIRE(s.write([&](Txn& t, const Dbs& d) {
    return store_flags(t, d, kAlice, big.ref, {{2401, 2500}}, StoreMode::Add, flags_of({"\\Deleted"}));
  }));
  REQUIRE(s.write([&](Txn& t, const Dbs& d) { return expunge(t, d, kAlice, big.ref); }));  // 100 tombstones
  const auto inbox_before = s.select("INBOX");

  auto gone = s.write([](Txn& t, const Dbs& d) { return delete_mailbox(t, d, kAlice, "Big"); });
  REQUIRE(gone);
  CHECK(gone->expunged == 2400);
  CHECK_FALSE(gone->freed);
  // At once: the id does not resolve, the name is free, the user's counters are what is visible.
  auto stale = s.read([&](const Txn& t, const Dbs& d) { return select_mailbox(t, d, kAlice, "Big"); });
  REQUIRE_FALSE(stale);
  CHECK(stale.error().code == OpCode::NotFound);
  auto by_ref = s.read([&](const Txn& t, const Dbs& d) { return changes_since(t, d, kAlice, big.ref, 0); });
  REQUIRE_FALSE(by_ref);
  CHECK(by_ref.error().code == OpCode::NotFound);
  auto quota_now = s.read([](const Txn& t, const Dbs& d) { return quota(t, d, kAlice); });
  REQUIRE(quota_now);
  CHECK(quota_now->messages_used == inbox_before.record.messages);
  CHECK(quota_now->bytes_used == inbox_before.record.bytes);
  auto made = s.write([](Txn& t, const Dbs& d) { return create_mailbox(t, d, kAlice, "Big", 0, 1700000000); });
  REQUIRE(made);
  CHECK(made->record.id != big.ref.id);
  CHECK(made->record.uidvalidity > big.record.uidvalidity);
  s.append("Big", simple_message("in the new Big"));
  CHECK(s.read([](const Txn& t, const Dbs& d) { return pending_deletions(t, d); }).value() == 1);
  // DELETE's own transaction freed the first FreeLimits{} worth.
  CHECK(s.count(&Dbs::messages) == 2400 - 1000 + 200 + 1 + 1);

  FreeLimits limits;
  limits.messages = 300;
  int batches = 0;
  for (;;) {
    auto f = s.write([&](Txn& t, const Dbs& d) { return free_deleted(t, d, limits); });  // invariants after each
    REQUIRE(f);
    CHECK(f->messages + f->changes <= limits.messages);
    ++batches;
    REQUIRE(batches < 100);
    if (!f->more) {
      CHECK(f->mailboxes_finished == 1);
      break;
    }
  }
  CHECK(batches >= 5);  // 1,400 messages and 100 tombstones at 300 a batch
  CHECK(s.read([](const Txn& t, const Dbs& d) { return pending_deletions(t, d); }).value() == 0);
  CHECK(s.count(&Dbs::messages) == 202);
  CHECK(s.count(&Dbs::bodies) == 202);  // 200 shared with INBOX, INBOX's own, the new Big's
  s.read([&](const Txn& t, const Dbs& d) {
    auto cursor = Cursor::open(t, d.changes);
    REQUIRE(cursor);
    auto e = cursor->seek(common::lmdb::Encoder().u64(big.ref.id).str());
    REQUIRE(e);
    if (*e) CHECK_FALSE((*e)->first.starts_with(common::lmdb::Encoder().u64(big.ref.id).str()));
    for (const auto& m : s.messages("INBOX")) {
      auto b = store::find_body(t, d, m.record.body_id);
      REQUIRE(b);
      REQUIRE(*b);
      CHECK((*b)->references == 1);
    }
    return 0;
  });
  // Nothing more to do is not an error.
  auto none = s.write([&](Txn& t, const Dbs& d) { return free_deleted(t, d, limits); });
  REQUIRE(none);
  CHECK_FALSE(none->more);
  CHECK(none->messages == 0);
}
