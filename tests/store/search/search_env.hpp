// search_env.hpp: a store environment for the SEARCH tests: one user's INBOX filled through
// schema.hpp as delivery fills it (structure from store/mime's parser), searched in read txns.
#pragma once

#include <string>
#include <vector>

#include <catch2/catch.hpp>

#include "common/lmdb/codec.hpp"
#include "common/lmdb/lmdb.hpp"
#include "store/mime/parser.hpp"
#include "store/search/evaluate.hpp"
#include "store/storage/schema.hpp"
#include "tests/support/process.hpp"

namespace test {

class SearchEnv {
 public:
  static constexpr const char* kUser = "alice@example.com";

  SearchEnv() {
    common::lmdb::OpenOptions options;
    options.map_size = 2ull << 30;
    options.max_dbs = store::Dbs::kCount + 4;
    options.flags |= MDB_NOSYNC;  // nothing here needs to survive a crash; fsyncs would dominate
    auto env = common::lmdb::open_env(dir_ / "store", options);
    REQUIRE(env);
    env_ = std::move(*env);
    auto txn = common::lmdb::Txn::begin(env_.get(), true);
    REQUIRE(txn);
    auto dbs = store::Dbs::open(*txn);
    REQUIRE(dbs);
    dbs_ = *dbs;
    auto user = store::create_user(*txn, dbs_, kUser, 1700000000);
    REQUIRE(user);
    user_ = *user;
    auto inbox = store::find_mailbox(*txn, dbs_, user_.id, "INBOX");
    REQUIRE(inbox);
    REQUIRE(*inbox);
    mailbox_id_ = (*inbox)->id;
    REQUIRE(txn->commit());
  }

  struct Message {
    std::string body;  // as delivered (the Delivered-To prefix is added here)
    uint32_t flags = 0;
    std::vector<std::string> keywords;
    int64_t internal_date = 1700000000;
  };

  // Files the messages in one transaction and returns their UIDs.
  std::vector<uint32_t> add(const std::vector<Message>& messages) {
    std::vector<uint32_t> uids;
    auto txn = common::lmdb::Txn::begin(env_.get(), true);
    REQUIRE(txn);
    for (const auto& m : messages) {
      auto body_id = store::put_body(*txn, dbs_, m.body, store::mime::encode(store::mime::parse(m.body)));
      REQUIRE(body_id);
      store::MessageRecord record;
      record.internal_date = m.internal_date;
      record.flags = m.flags;
      record.keywords = m.keywords;
      record.prefix = std::string("Delivered-To: ") + kUser + "\r\n";
      auto filed = store::add_message(*txn, dbs_, kUser, user_, "INBOX", *body_id, m.body.size(), record);
      INFO((filed ? "" : filed.error().detail));
      REQUIRE(filed);
      uids.push_back(filed->uid);
    }
    REQUIRE(txn->commit());
    return uids;
  }
  uint32_t add(const Message& m) { return add(std::vector<Message>{m}).at(0); }
  uint32_t add(const std::string& body, uint32_t flags = 0, int64_t internal_date = 1700000000) {
    return add(Message{body, flags, {}, internal_date});
  }

  // A flag change as the store makes it: the next MODSEQ, the old `changes` entry replaced.
  uint64_t touch(uint32_t uid) {
    auto txn = common::lmdb::Txn::begin(env_.get(), true);
    REQUIRE(txn);
    auto value = txn->get(dbs_.messages, store::message_key(mailbox_id_, uid));
    REQUIRE(value);
    REQUIRE(*value);
    auto record = store::decode_message(**value);
    REQUIRE(record);
    auto mb = store::find_mailbox(*txn, dbs_, user_.id, "INBOX");
    REQUIRE(mb);
    store::MailboxRecord box = **mb;
    REQUIRE(txn->del(dbs_.changes, store::change_key(mailbox_id_, record->modseq)));
    record->modseq = ++box.highestmodseq;
    REQUIRE(txn->put(dbs_.changes, store::change_key(mailbox_id_, record->modseq),
                     common::lmdb::Encoder().u32(uid).u8(0).str()));
    REQUIRE(txn->put(dbs_.messages, store::message_key(mailbox_id_, uid), store::encode(*record)));
    REQUIRE(txn->put(dbs_.mailboxes, store::mailbox_key(user_.id, "INBOX"), store::encode(box)));
    REQUIRE(txn->commit());
    return record->modseq;
  }

  // Another message on the body of message `uid` (as one delivery to several recipients, or a
  // COPY, files it), with its own Delivered-To prefix.
  uint32_t add_sharing(uint32_t uid, const std::string& prefix, uint32_t flags = 0) {
    auto txn = common::lmdb::Txn::begin(env_.get(), true);
    REQUIRE(txn);
    auto value = txn->get(dbs_.messages, store::message_key(mailbox_id_, uid));
    REQUIRE(value);
    REQUIRE(*value);
    auto original = store::decode_message(**value);
    REQUIRE(original);
    auto body = store::find_body(*txn, dbs_, original->body_id);
    REQUIRE(body);
    REQUIRE(*body);
    store::MessageRecord record;
    record.internal_date = original->internal_date;
    record.flags = flags;
    record.prefix = prefix;
    auto filed = store::add_message(*txn, dbs_, kUser, user_, "INBOX", original->body_id, (*body)->size, record);
    REQUIRE(filed);
    REQUIRE(txn->commit());
    return filed->uid;
  }

  common::Result<store::search::SearchResult> search(const store::search::Program& program, int64_t now = 1700000000,
                                                     store::search::HeaderCache* cache = nullptr) const {
    auto txn = common::lmdb::Txn::begin(env_.get(), false);
    REQUIRE(txn);
    return store::search::evaluate(*txn, dbs_, mailbox_id_, program, now, {}, cache);
  }
  std::vector<uint32_t> uids(const store::search::Program& program, int64_t now = 1700000000,
                             store::search::HeaderCache* cache = nullptr) const {
    auto r = search(program, now, cache);
    INFO((r ? "" : r.error().detail));
    REQUIRE(r);
    return r->uids;
  }

  MDB_env* env() const { return env_.get(); }
  const store::Dbs& dbs() const { return dbs_; }
  uint64_t mailbox_id() const { return mailbox_id_; }

 private:
  TempDir dir_;
  common::lmdb::Env env_;
  store::Dbs dbs_;
  store::UserRecord user_;
  uint64_t mailbox_id_ = 0;
};

// Search keys as the tests write them, for the programs they build.
namespace search_keys {
using store::search::Kind;
using store::search::SearchKey;
inline SearchKey key(Kind k) { return SearchKey{k}; }
inline SearchKey str(Kind k, std::string text) {
  SearchKey s{k};
  s.text = std::move(text);
  return s;
}
inline SearchKey header(std::string field, std::string text) {
  SearchKey s{Kind::Header};
  s.field = std::move(field);
  s.text = std::move(text);
  return s;
}
inline SearchKey all_of(uint32_t n) {
  SearchKey s{Kind::And};
  s.operands = n;
  return s;
}
}  // namespace search_keys

}  // namespace test
