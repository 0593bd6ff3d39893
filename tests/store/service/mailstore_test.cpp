// mailstore_test.cpp: the store's MailStore gRPC API with a real gRPC client over mutual TLS (as
// the mmp will call it): access tokens and their refusals, mailboxes, FETCH of delivered mail,
// flags, copy, move, expunge, CONDSTORE changes, append, Watch streams across sessions, and bad
// input that must get a status naming the problem while the store stays healthy.
#include <catch2/catch.hpp>

#include <thread>

#include "tests/store/service/service_fixture.hpp"
#include "tests/support/metrics_scrape.hpp"

using namespace std::chrono_literals;
using test::MailStoreClient;
using test::uid_range;
namespace pb = postern::mailstore::v1;
using namespace test::store_service;

namespace {

std::vector<uint32_t> uids_of(const google::protobuf::RepeatedPtrField<pb::UidRange>& ranges) {
  std::vector<uint32_t> out;
  for (const auto& r : ranges)
    for (uint32_t u = r.first(); u <= r.last(); ++u) out.push_back(u);
  return out;
}

std::vector<std::string> flags_of(const google::protobuf::RepeatedPtrField<std::string>& f) { return {f.begin(), f.end()}; }

grpc::Status append(MailStoreClient& c, const std::string& mailbox, const std::string& bytes,
                    std::vector<std::string> flags, int64_t date, pb::AppendResponse& out, uint64_t declared = UINT64_MAX) {
  auto ctx = c.context();
  auto writer = c.stub().Append(ctx.get(), &out);
  pb::AppendRequest start;
  start.mutable_start()->set_mailbox(mailbox);
  for (auto& f : flags) start.mutable_start()->add_flags(f);
  start.mutable_start()->set_internal_date(date);
  start.mutable_start()->set_size(declared == UINT64_MAX ? bytes.size() : declared);
  writer->Write(start);
  for (size_t at = 0; at < bytes.size(); at += 100000) {
    pb::AppendRequest chunk;
    chunk.set_data(bytes.substr(at, 100000));
    if (!writer->Write(chunk)) break;
  }
  pb::AppendRequest commit;
  commit.set_commit(true);
  writer->Write(commit);
  writer->WritesDone();
  return writer->Finish();
}

// MULTIAPPEND (RFC 3502): several messages on one Append stream, then one commit (unless `commit`
// is false: WritesDone without it, or `cancel`: the call cancelled after the last message).
struct Part {
  std::string mailbox;
  std::string bytes;
  std::vector<std::string> flags = {};
  uint64_t declared = UINT64_MAX;
};
grpc::Status append_many(MailStoreClient& c, const std::vector<Part>& parts, pb::AppendResponse& out,
                         bool commit = true, bool cancel = false) {
  auto ctx = c.context();
  auto writer = c.stub().Append(ctx.get(), &out);
  for (const Part& p : parts) {
    pb::AppendRequest start;
    start.mutable_start()->set_mailbox(p.mailbox);
    for (auto& f : p.flags) start.mutable_start()->add_flags(f);
    start.mutable_start()->set_size(p.declared == UINT64_MAX ? p.bytes.size() : p.declared);
    if (!writer->Write(start)) break;
    bool sent = true;
    for (size_t at = 0; at < p.bytes.size() && sent; at += 100000) {
      pb::AppendRequest chunk;
      chunk.set_data(p.bytes.substr(at, 100000));
      sent = writer->Write(chunk);
    }
    if (!sent) break;
  }
  if (cancel) {
    ctx->TryCancel();
  } else {
    if (commit) {
      pb::AppendRequest marker;
      marker.set_commit(true);
      writer->Write(marker);
    }
    writer->WritesDone();
  }
  return writer->Finish();
}

// Every message of the mailbox, whole, in UID order.
std::vector<std::string> fetch_all(MailStoreClient& c, const pb::SelectResponse& box) {
  std::vector<std::string> out;
  if (box.status().messages() == 0) return out;
  pb::FetchRequest f;
  *f.mutable_mailbox() = box.mailbox();
  *f.add_uids() = uid_range(1, box.status().uidnext());
  f.add_sections();
  std::vector<pb::FetchedMessage> got;
  REQUIRE(c.fetch(f, got).ok());
  for (auto& r : got) out.push_back(r.sections(0).data());
  return out;
}

}  // namespace

TEST_CASE("MailStore calls need the user's token, issued to the calling front end") {
  Store store;
  store.deliver_to(kAlice);
  pb::SelectResponse r;

  SECTION("no token") {
    MailStoreClient c(store.grpc_port(), "");
    auto s = c.select("INBOX", r);
    CHECK(s.error_code() == grpc::StatusCode::UNAUTHENTICATED);
    CHECK(s.error_message().find("no access token") != std::string::npos);
  }
  SECTION("an expired token") {
    MailStoreClient c(store.grpc_port(), test::access_token(kAlice, "mta1", -60s));
    auto s = c.select("INBOX", r);
    CHECK(s.error_code() == grpc::StatusCode::UNAUTHENTICATED);
    CHECK(s.error_message() == "access token expired");
  }
  SECTION("a token issued to another front end") {
    MailStoreClient c(store.grpc_port(), test::access_token(kAlice, "mmp9"));
    auto s = c.select("INBOX", r);
    CHECK(s.error_code() == grpc::StatusCode::UNAUTHENTICATED);
    CHECK(s.error_message() == "access token issued to another front end");
  }
  SECTION("a token signed by an unknown key") {
    auto other = common::authtoken::Signer::from_seed(std::vector<std::byte>(32, std::byte{7}));
    REQUIRE(other);
    auto claims = common::authtoken::new_claims(kAlice, {"imap"}, "mta1", std::time(nullptr), 3600s);
    MailStoreClient c(store.grpc_port(), *other->sign(claims));
    auto s = c.select("INBOX", r);
    CHECK(s.error_code() == grpc::StatusCode::UNAUTHENTICATED);
    CHECK(s.error_message().find("does not trust") != std::string::npos);
  }
  SECTION("a token for submission only") {
    MailStoreClient c(store.grpc_port(), test::access_token(kAlice, "mta1", 1h, {"submission"}));
    auto s = c.select("INBOX", r);
    CHECK(s.error_code() == grpc::StatusCode::PERMISSION_DENIED);
  }
  SECTION("bob's token naming alice") {
    MailStoreClient c(store.grpc_port(), test::access_token("bob@example.com"), kAlice);
    auto s = c.select("INBOX", r);
    CHECK(s.error_code() == grpc::StatusCode::PERMISSION_DENIED);
    CHECK(s.error_message() == "access token is for bob@example.com, not alice@example.com");
  }
  SECTION("a store administrator's token may name alice") {
    MailStoreClient c(store.grpc_port(), test::access_token("admin@example.com"), kAlice);
    auto s = c.select("INBOX", r);
    REQUIRE(s.ok());
    CHECK(r.status().messages() == 1);
  }
  SECTION("alice's own token") {
    auto c = store.client();
    REQUIRE(c.select("INBOX", r).ok());
    CHECK(r.status().messages() == 1);
  }
  CHECK(store.count("event=refused") <= 1);
}

TEST_CASE("a client certificate not in [mailstore] allowed_clients is refused") {
  Store store({.mailstore_extra = "allowed_clients = [\"mmp1\"]\n"});
  auto c = store.client();
  pb::SelectResponse r;
  auto s = c.select("INBOX", r);
  CHECK(s.error_code() == grpc::StatusCode::PERMISSION_DENIED);
  CHECK(s.error_message().find("allowed_clients") != std::string::npos);
}

TEST_CASE("Select and Fetch serve delivered mail: flags, sizes, envelope, sections") {
  Store store;
  store.deliver_to(kAlice, 3, 3000);
  auto c = store.client();
  auto box = select(c);
  CHECK(box.name() == "INBOX");
  CHECK(box.status().messages() == 3);
  CHECK(box.status().unseen() == 3);
  CHECK(box.status().uidnext() == 4);
  CHECK(box.first_unseen_uid() == 1);
  CHECK(uids_of(box.uids()) == std::vector<uint32_t>{1, 2, 3});
  CHECK(box.status().highest_modseq() >= 3);

  pb::FetchRequest f;
  *f.mutable_mailbox() = box.mailbox();
  *f.add_uids() = uid_range(2, 3);
  f.set_flags(true);
  f.set_size(true);
  f.set_envelope(true);
  f.set_bodystructure(true);
  f.set_internal_date(true);
  f.set_modseq(true);
  f.add_sections();  // BODY[]
  auto* fields = f.add_sections();
  fields->set_text(pb::Section::HEADER_FIELDS);
  fields->add_fields("subject");
  auto* past = f.add_sections();
  past->set_partial(true);
  past->set_offset(1u << 30);
  past->set_length(10);
  std::vector<pb::FetchedMessage> got;
  REQUIRE(c.fetch(f, got).ok());
  REQUIRE(got.size() == 2);
  CHECK(got[0].uid() == 2);
  CHECK(got[1].uid() == 3);
  for (const auto& m : got) {
    CHECK(m.flags().flags().empty());
    CHECK(m.envelope().find("\"test ") != std::string::npos);  // the subject
    CHECK(m.bodystructure().starts_with("("));
    std::string upper = m.bodystructure();
    for (auto& ch : upper) ch = static_cast<char>(std::toupper(static_cast<unsigned char>(ch)));
    CHECK(upper.find("\"PLAIN\"") != std::string::npos);
    CHECK(m.internal_date() > 0);
    REQUIRE(m.sections_size() == 3);
    const auto& body = m.sections(0).data();
    CHECK(body.starts_with("Delivered-To: alice@example.com\r\n"));
    CHECK(body.size() == m.size());
    CHECK(m.sections(1).data().starts_with("Subject: test "));
    CHECK(m.sections(1).data().ends_with("\r\n\r\n"));
    CHECK(m.sections(2).data().empty());
    CHECK(m.sections(2).total() == 0);  // the size the mmp announces: "BODY[]<1073741824> {0}"
    CHECK(m.sections(2).last());
  }

  pb::QuotaResponse q;
  auto ctx = c.context();
  REQUIRE(c.stub().GetQuota(ctx.get(), pb::QuotaRequest(), &q).ok());
  CHECK(q.messages_used() == 3);
  CHECK(q.bytes_used() == box.status().size());
}

TEST_CASE("mailboxes: create with parents, list, status, rename, subscribe, delete") {
  Store store;
  auto c = store.client();
  auto call = [&](auto method, const auto& request, auto& response) {
    auto ctx = c.context();
    auto status = (c.stub().*method)(ctx.get(), request, &response);
    if (!status.ok()) UNSCOPED_INFO("status: " << status.error_message() << "\n" << store.log());
    return status;
  };
  pb::CreateMailboxRequest create;
  create.set_name("Work/Projects");
  pb::MailboxChanged changed;
  REQUIRE(call(&pb::MailStore::Stub::CreateMailbox, create, changed).ok());
  CHECK(changed.mailbox().name() == "Work/Projects");
  CHECK(call(&pb::MailStore::Stub::CreateMailbox, create, changed).error_code() == grpc::StatusCode::ALREADY_EXISTS);
  pb::CreateMailboxRequest bad;
  bad.set_name(std::string("bad\xff\xfe", 5));
  auto invalid = call(&pb::MailStore::Stub::CreateMailbox, bad, changed);
  CHECK(invalid.error_code() == grpc::StatusCode::INVALID_ARGUMENT);

  pb::ListMailboxesRequest list;
  list.add_patterns("*");
  list.set_with_status(true);
  pb::ListMailboxesResponse listed;
  REQUIRE(call(&pb::MailStore::Stub::ListMailboxes, list, listed).ok());
  std::vector<std::string> names;
  for (const auto& m : listed.mailboxes()) names.push_back(m.name());
  CHECK(std::find(names.begin(), names.end(), "Work") != names.end());
  CHECK(std::find(names.begin(), names.end(), "Work/Projects") != names.end());
  CHECK(std::find(names.begin(), names.end(), "INBOX") != names.end());
  for (const auto& m : listed.mailboxes()) {
    if (m.name() == "Sent") CHECK(flags_of(m.special_use()) == std::vector<std::string>{"\\Sent"});
    if (m.name() == "Work") CHECK(m.has_children());
  }

  pb::RenameMailboxRequest rename;
  rename.set_from("Work");
  rename.set_to("Jobs");
  REQUIRE(call(&pb::MailStore::Stub::RenameMailbox, rename, changed).ok());
  pb::StatusRequest status;
  status.set_name("Jobs/Projects");
  pb::MailboxEntry entry;
  REQUIRE(call(&pb::MailStore::Stub::Status, status, entry).ok());
  status.set_name("Work/Projects");
  CHECK(call(&pb::MailStore::Stub::Status, status, entry).error_code() == grpc::StatusCode::NOT_FOUND);

  pb::SubscribeRequest sub;
  sub.set_name("Jobs/Projects");
  sub.set_subscribe(true);
  REQUIRE(call(&pb::MailStore::Stub::Subscribe, sub, changed).ok());
  list.set_subscribed_only(true);
  list.set_with_status(false);
  listed.Clear();
  REQUIRE(call(&pb::MailStore::Stub::ListMailboxes, list, listed).ok());
  bool subscribed = false;
  for (const auto& m : listed.mailboxes()) subscribed |= m.name() == "Jobs/Projects" && m.subscribed();
  CHECK(subscribed);

  pb::DeleteMailboxRequest del;
  del.set_name("INBOX");
  CHECK(call(&pb::MailStore::Stub::DeleteMailbox, del, changed).error_code() == grpc::StatusCode::INVALID_ARGUMENT);
  del.set_name("Jobs/Projects");
  REQUIRE(call(&pb::MailStore::Stub::DeleteMailbox, del, changed).ok());
  status.set_name("Jobs/Projects");
  CHECK(call(&pb::MailStore::Stub::Status, status, entry).error_code() == grpc::StatusCode::NOT_FOUND);
}

TEST_CASE("flags with UNCHANGEDSINCE, copy, move, expunge and the changes since a MODSEQ") {
  Store store;
  store.deliver_to(kAlice, 4);
  auto c = store.client();
  auto box = select(c);
  const uint64_t before = box.status().highest_modseq();

  pb::StoreFlagsResponse stored;
  REQUIRE(store_flags(c, box.mailbox(), 1, 2, pb::StoreFlagsRequest::ADD, {"\\Seen", "$Important"}, stored).ok());
  REQUIRE(stored.updated_size() == 2);
  CHECK(flags_of(stored.updated(0).flags()) == std::vector<std::string>{"\\Seen", "$Important"});
  CHECK(stored.updated(1).modseq() > before);
  // UNCHANGEDSINCE below message 1's MODSEQ leaves it alone (RFC 7162 MODIFIED).
  pb::StoreFlagsResponse conditional;
  REQUIRE(store_flags(c, box.mailbox(), 1, 1, pb::StoreFlagsRequest::ADD, {"\\Flagged"}, conditional, before).ok());
  CHECK(conditional.updated_size() == 0);
  CHECK(uids_of(conditional.modified()) == std::vector<uint32_t>{1});
  pb::StoreFlagsResponse recent;
  CHECK(store_flags(c, box.mailbox(), 1, 1, pb::StoreFlagsRequest::ADD, {"\\Recent"}, recent).error_code() ==
        grpc::StatusCode::INVALID_ARGUMENT);

  pb::CopyRequest copy;
  *copy.mutable_mailbox() = box.mailbox();
  *copy.add_uids() = uid_range(1, 2);
  copy.set_target("Archive");
  pb::CopyResponse copied;
  {
    auto ctx = c.context();
    REQUIRE(c.stub().Copy(ctx.get(), copy, &copied).ok());
  }
  CHECK(std::vector<uint32_t>(copied.source_uids().begin(), copied.source_uids().end()) == std::vector<uint32_t>{1, 2});
  CHECK(copied.target_uids_size() == 2);
  copy.set_target("Nowhere");
  {
    auto ctx = c.context();
    CHECK(c.stub().Copy(ctx.get(), copy, &copied).error_code() == grpc::StatusCode::NOT_FOUND);
  }
  copy.set_target("Trash");
  copy.set_move(true);
  copy.clear_uids();
  *copy.add_uids() = uid_range(3, 3);
  pb::CopyResponse moved;
  {
    auto ctx = c.context();
    REQUIRE(c.stub().Copy(ctx.get(), copy, &moved).ok());
  }
  CHECK(uids_of(moved.expunged()) == std::vector<uint32_t>{3});

  REQUIRE(store_flags(c, box.mailbox(), 4, 4, pb::StoreFlagsRequest::ADD, {"\\Deleted"}, stored).ok());
  pb::ExpungeRequest expunge;
  *expunge.mutable_mailbox() = box.mailbox();
  pb::ExpungeResponse expunged;
  {
    auto ctx = c.context();
    REQUIRE(c.stub().Expunge(ctx.get(), expunge, &expunged).ok());
  }
  CHECK(uids_of(expunged.expunged()) == std::vector<uint32_t>{4});

  pb::ChangesRequest since;
  *since.mutable_mailbox() = box.mailbox();
  since.set_since_modseq(before);
  pb::ChangesResponse changes;
  {
    auto ctx = c.context();
    REQUIRE(c.stub().Changes(ctx.get(), since, &changes).ok());
  }
  std::vector<uint32_t> changed;
  for (const auto& u : changes.changed()) changed.push_back(u.uid());
  std::sort(changed.begin(), changed.end());
  CHECK(changed == std::vector<uint32_t>{1, 2});
  CHECK(uids_of(changes.vanished()) == std::vector<uint32_t>{3, 4});
  CHECK(changes.highest_modseq() == expunged.highest_modseq());

  auto after = select(c);
  CHECK(uids_of(after.uids()) == std::vector<uint32_t>{1, 2});
  CHECK(after.status().unseen() == 0);
  // A reference with a stale UIDVALIDITY is refused, never applied to another mailbox.
  pb::MailboxRef stale = box.mailbox();
  stale.set_uidvalidity(stale.uidvalidity() + 1);
  CHECK(store_flags(c, stale, 1, 1, pb::StoreFlagsRequest::ADD, {"\\Seen"}, stored).error_code() ==
        grpc::StatusCode::FAILED_PRECONDITION);
  // Another user's mailbox id looks like no mailbox at all.
  auto bob = store.client("bob@example.com");
  CHECK(store_flags(bob, box.mailbox(), 1, 1, pb::StoreFlagsRequest::ADD, {"\\Seen"}, stored).error_code() ==
        grpc::StatusCode::NOT_FOUND);
}

TEST_CASE("append is on disk before its reply, keeps flags and date, and is refused over the limits") {
  Store store({.mailstore_extra = "max_append_size = \"64K\"\n"});
  // The user record learns the quota authserv gives at a delivery.
  store.deliver_to("small@example.com", 1, 500);
  auto c = store.client("small@example.com");  // quota 10K
  const std::string message = "From: a@example.org\r\nSubject: appended\r\n\r\nhello\r\n";
  pb::AppendResponse appended;
  REQUIRE(append(c, "Drafts", message, {"\\Draft", "\\Seen"}, 1700000000, appended).ok());
  CHECK(appended.uid() == 1);
  CHECK(appended.uidvalidity() != 0);

  SECTION("over max_append_size: refused from the declared size") {
    pb::AppendResponse r;
    auto s = append(c, "INBOX", std::string(70000, 'x'), {}, 0, r);
    CHECK(s.error_code() == grpc::StatusCode::RESOURCE_EXHAUSTED);
    CHECK(s.error_message().find("over the limit") != std::string::npos);
  }
  SECTION("over the quota") {
    pb::AppendResponse r;
    auto s = append(c, "INBOX", "Subject: big\r\n\r\n" + std::string(20000, 'x'), {}, 0, r);
    CHECK(s.error_code() == grpc::StatusCode::RESOURCE_EXHAUSTED);
    CHECK(s.error_message().find("quota") != std::string::npos);
  }
  SECTION("to a missing mailbox ([TRYCREATE])") {
    pb::AppendResponse r;
    CHECK(append(c, "Nowhere", message, {}, 0, r).error_code() == grpc::StatusCode::NOT_FOUND);
  }
  SECTION("fewer bytes than declared") {
    pb::AppendResponse r;
    CHECK(append(c, "INBOX", message, {}, 0, r, message.size() + 5).error_code() == grpc::StatusCode::INVALID_ARGUMENT);
  }
  SECTION("every byte sent but no commit marker, or the call cancelled after them: nothing is stored") {
    for (const bool cancel : {false, true}) {
      auto ctx = c.context();
      pb::AppendResponse r;
      auto writer = c.stub().Append(ctx.get(), &r);
      pb::AppendRequest start;
      start.mutable_start()->set_mailbox("Drafts");
      start.mutable_start()->set_size(message.size());
      REQUIRE(writer->Write(start));
      pb::AppendRequest data;
      data.set_data(message);
      REQUIRE(writer->Write(data));
      if (cancel) ctx->TryCancel();
      else writer->WritesDone();
      const auto status = writer->Finish();
      CHECK_FALSE(status.ok());
      if (!cancel) CHECK(status.error_code() == grpc::StatusCode::ABORTED);
    }
    // Two messages, every byte of both sent, then no marker or a cancel: neither is stored.
    for (const bool cancel : {false, true}) {
      pb::AppendResponse r;
      auto status = append_many(c, {{"Drafts", message}, {"Drafts", message}}, r, false, cancel);
      CHECK_FALSE(status.ok());
      if (!cancel) CHECK(status.error_code() == grpc::StatusCode::ABORTED);
    }
    CHECK(select(c, "Drafts").status().messages() == 1);
  }
  SECTION("kill -9 after the reply: the message is there") {
    store.kill9();
    store.start();
    auto again = store.client("small@example.com");
    auto box = select(again, "Drafts");
    REQUIRE(box.status().messages() == 1);
    pb::FetchRequest f;
    *f.mutable_mailbox() = box.mailbox();
    *f.add_uids() = uid_range(1, 1);
    f.set_flags(true);
    f.set_internal_date(true);
    f.add_sections();
    std::vector<pb::FetchedMessage> got;
    REQUIRE(again.fetch(f, got).ok());
    REQUIRE(got.size() == 1);
    CHECK(got[0].sections(0).data() == message);
    CHECK(got[0].internal_date() == 1700000000);
    CHECK(flags_of(got[0].flags().flags()) == std::vector<std::string>{"\\Seen", "\\Draft"});
  }
}

TEST_CASE("MULTIAPPEND: several messages stored in one transaction, or none") {
  Store store({.mailstore_extra = "max_append_size = \"64K\"\nmax_append_messages = 3\n"
                                  "max_append_total = \"100K\"\n"});
  auto c = store.client();
  const std::string one = "From: a@example.org\r\nSubject: one\r\n\r\nfirst\r\n";
  const std::string two = "From: b@example.org\r\nSubject: two\r\n\r\n" + std::string(150000 / 3, 'y') + "\r\n";
  const std::string three = "Subject: three\r\n\r\n\r\n";

  // Watchers see every message the commit adds.
  auto watched = select(c, "INBOX");
  pb::WatchRequest w;
  *w.mutable_mailbox() = watched.mailbox();
  w.set_since_modseq(watched.status().highest_modseq());
  auto wctx = c.context(60s);
  auto stream = c.stub().Watch(wctx.get(), w);
  pb::WatchEvent e;
  REQUIRE(stream->Read(&e));
  REQUIRE(e.has_ready());

  pb::AppendResponse r;
  auto s = append_many(c, {{"INBOX", one, {"\\Seen"}}, {"INBOX", two}}, r);
  INFO(s.error_message());
  REQUIRE(s.ok());
  CHECK(std::vector<uint32_t>(r.uids().begin(), r.uids().end()) == std::vector<uint32_t>{1, 2});
  CHECK(r.uid() == 1);
  CHECK(r.uidvalidity() == watched.mailbox().uidvalidity());
  for (uint32_t uid : {1u, 2u}) {
    REQUIRE(stream->Read(&e));
    REQUIRE(e.has_added());
    CHECK(e.added().uid() == uid);
  }
  CHECK(r.modseq() == e.added().modseq());
  wctx->TryCancel();
  stream->Finish();

  pb::AppendResponse r3;
  REQUIRE(append_many(c, {{"INBOX", three}, {"INBOX", one}, {"INBOX", three, {"$Forwarded"}}}, r3).ok());
  CHECK(std::vector<uint32_t>(r3.uids().begin(), r3.uids().end()) == std::vector<uint32_t>{3, 4, 5});
  CHECK(fetch_all(c, select(c)) == std::vector<std::string>{one, two, three, one, three});

  SECTION("the second over max_append_size: none stored") {
    pb::AppendResponse x;
    auto refused = append_many(c, {{"INBOX", one}, {"INBOX", std::string(70000, 'x')}}, x);
    CHECK(refused.error_code() == grpc::StatusCode::RESOURCE_EXHAUSTED);
    CHECK(refused.error_message().find("message 2 of 70000 bytes is over the limit of 65536") != std::string::npos);
  }
  SECTION("more than max_append_messages: none stored") {
    pb::AppendResponse x;
    auto refused = append_many(c, {{"INBOX", one}, {"INBOX", one}, {"INBOX", one}, {"INBOX", one}}, x);
    CHECK(refused.error_code() == grpc::StatusCode::RESOURCE_EXHAUSTED);
    CHECK(refused.error_message().find("message 4 is over the limit of 3 messages") != std::string::npos);
  }
  SECTION("over max_append_total: none stored") {
    pb::AppendResponse x;
    const std::string big(60000, 'z');
    auto refused = append_many(c, {{"INBOX", big}, {"INBOX", big}}, x);
    CHECK(refused.error_code() == grpc::StatusCode::RESOURCE_EXHAUSTED);
    CHECK(refused.error_message().find("over the limit of 102400 for one append") != std::string::npos);
  }
  SECTION("a message for another mailbox: refused, none stored") {
    pb::AppendResponse x;
    auto refused = append_many(c, {{"INBOX", one}, {"Drafts", one}}, x);
    CHECK(refused.error_code() == grpc::StatusCode::INVALID_ARGUMENT);
    CHECK(refused.error_message().find("another mailbox") != std::string::npos);
  }
  SECTION("a message cut short before the next Start: refused, none stored") {
    pb::AppendResponse x;
    auto refused = append_many(c, {{"INBOX", one, {}, one.size() + 3}, {"INBOX", one}}, x);
    CHECK(refused.error_code() == grpc::StatusCode::INVALID_ARGUMENT);
    CHECK(refused.error_message().find("message 1: got") != std::string::npos);
  }
  SECTION("a bad flag on the second: none stored") {
    pb::AppendResponse x;
    CHECK(append_many(c, {{"INBOX", one}, {"INBOX", one, {"\\Recent"}}}, x).error_code() ==
          grpc::StatusCode::INVALID_ARGUMENT);
  }
  SECTION("into a missing mailbox: NOT_FOUND, none stored") {
    pb::AppendResponse x;
    CHECK(append_many(c, {{"Nowhere", one}, {"Nowhere", one}}, x).error_code() == grpc::StatusCode::NOT_FOUND);
  }
  // Whatever was refused, the mailbox holds the five committed before, unchanged.
  CHECK(fetch_all(c, select(c)) == std::vector<std::string>{one, two, three, one, three});
}

TEST_CASE("MULTIAPPEND over the quota in total: none stored") {
  Store store;
  store.deliver_to("small@example.com", 1, 500);
  auto c = store.client("small@example.com");  // quota 10K: each of these fits alone, not both
  const std::string half = "Subject: half\r\n\r\n" + std::string(5000, 'h');
  pb::AppendResponse r;
  auto s = append_many(c, {{"INBOX", half}, {"INBOX", half}}, r);
  CHECK(s.error_code() == grpc::StatusCode::RESOURCE_EXHAUSTED);
  CHECK(s.error_message().find("quota") != std::string::npos);
  CHECK(select(c).status().messages() == 1);
  REQUIRE(append_many(c, {{"INBOX", half}}, r).ok());
  CHECK(select(c).status().messages() == 2);

  auto few = store.client("few@example.com");  // one message at most
  const std::string tiny = "Subject: tiny\r\n\r\n";
  CHECK(append_many(few, {{"INBOX", tiny}, {"INBOX", tiny}}, r).error_code() == grpc::StatusCode::RESOURCE_EXHAUSTED);
  CHECK(select(few).status().messages() == 0);
}

TEST_CASE("a user's quota comes from authserv before any delivery, and a user it does not know gets no mailbox") {
  Store store;
  // "small" (quota 10K in the fixture's directory) never had mail: the first call asks authserv.
  auto c = store.client("small@example.com");
  pb::AppendResponse r;
  auto over = append(c, "INBOX", "Subject: big\r\n\r\n" + std::string(20000, 'x'), {}, 0, r);
  CHECK(over.error_code() == grpc::StatusCode::RESOURCE_EXHAUSTED);
  CHECK(over.error_message().find("quota") != std::string::npos);
  REQUIRE(append(c, "INBOX", "Subject: small\r\n\r\nhello\r\n", {}, 0, r).ok());
  pb::QuotaResponse q;
  auto ctx = c.context();
  REQUIRE(c.stub().GetQuota(ctx.get(), pb::QuotaRequest(), &q).ok());
  CHECK(q.bytes_limit() == 10 * 1024);

  // A valid token for a user the directory does not have opens nothing (no record is made).
  MailStoreClient ghost(store.grpc_port(), test::access_token("ghost@example.com"));
  auto gctx = ghost.context();
  auto refused = ghost.stub().GetQuota(gctx.get(), pb::QuotaRequest(), &q);
  CHECK(refused.error_code() == grpc::StatusCode::PERMISSION_DENIED);
  CHECK(refused.error_message().find("not in the directory") != std::string::npos);
}

TEST_CASE("a Watch ends when its access token expires") {
  Store store;
  store.deliver_to(kAlice);
  // Long enough for the select and the open on a loaded machine, short enough to wait for.
  MailStoreClient c(store.grpc_port(), test::access_token(kAlice, "mta1", 10s));
  auto box = select(c);
  pb::WatchRequest w;
  *w.mutable_mailbox() = box.mailbox();
  w.set_since_modseq(box.status().highest_modseq());
  auto ctx = c.context(60s);
  const auto began = std::chrono::steady_clock::now();
  auto stream = c.stub().Watch(ctx.get(), w);
  pb::WatchEvent e;
  bool ready = false;
  while (stream->Read(&e)) ready = ready || e.has_ready();
  auto ended = stream->Finish();
  INFO("status: " << ended.error_message());
  CHECK(ready);
  CHECK(ended.error_code() == grpc::StatusCode::UNAUTHENTICATED);
  CHECK(ended.error_message().find("expired") != std::string::npos);
  CHECK(std::chrono::steady_clock::now() - began < 30s);
  CHECK(store.log().find("event=watch_token_expired") != std::string::npos);
}

TEST_CASE("Watch streams what other sessions and deliveries change, and cuts off a client that never reads") {
  Store store({.mailstore_extra = "max_watch_backlog = 16\n"});
  store.deliver_to(kAlice, 2);
  auto watcher = store.client();
  auto box = select(watcher);

  pb::WatchRequest w;
  *w.mutable_mailbox() = box.mailbox();
  w.set_since_modseq(box.status().highest_modseq());
  auto ctx = watcher.context(60s);
  auto stream = watcher.stub().Watch(ctx.get(), w);
  pb::WatchEvent e;
  REQUIRE(stream->Read(&e));
  REQUIRE(e.has_ready());
  CHECK(e.ready().highest_modseq() == box.status().highest_modseq());

  // Another session of the same user changes a flag, a delivery arrives, the other session expunges.
  auto other = store.client();
  pb::StoreFlagsResponse stored;
  REQUIRE(store_flags(other, box.mailbox(), 1, 1, pb::StoreFlagsRequest::ADD, {"\\Deleted"}, stored).ok());
  REQUIRE(stream->Read(&e));
  REQUIRE(e.has_flags());
  CHECK(e.flags().uid() == 1);
  CHECK(flags_of(e.flags().flags()) == std::vector<std::string>{"\\Deleted"});
  store.deliver_to(kAlice);
  REQUIRE(stream->Read(&e));
  REQUIRE(e.has_added());
  CHECK(e.added().uid() == 3);
  pb::ExpungeRequest x;
  *x.mutable_mailbox() = box.mailbox();
  pb::ExpungeResponse xr;
  {
    auto c2 = other.context();
    REQUIRE(other.stub().Expunge(c2.get(), x, &xr).ok());
  }
  REQUIRE(stream->Read(&e));
  REQUIRE(e.has_expunged());
  CHECK(uids_of(e.expunged().uids()) == std::vector<uint32_t>{1});

  // A Watch from an older MODSEQ first gets what it missed.
  pb::WatchRequest late = w;
  auto late_ctx = watcher.context(60s);
  auto late_stream = watcher.stub().Watch(late_ctx.get(), late);
  std::vector<pb::WatchEvent> caught;
  while (late_stream->Read(&e)) {
    caught.push_back(e);
    if (e.has_ready()) break;
  }
  REQUIRE(caught.size() >= 3);
  CHECK(caught.back().ready().highest_modseq() == xr.highest_modseq());
  late_ctx->TryCancel();
  late_stream->Finish();

  ctx->TryCancel();
  stream->Finish();

  // A stream nobody reads: flag changes with long keywords fill the transport's window, pile up past
  // the backlog, and the stream is cut off with a status that says why.
  auto idle_ctx = watcher.context(60s);
  auto idle = watcher.stub().Watch(idle_ctx.get(), w);
  std::vector<std::string> keywords;
  for (int k = 0; k < 60; ++k) keywords.push_back("$K" + std::to_string(k) + std::string(240, 'k'));
  for (int round = 0; round < 1500 && store.count("event=watch_cut_off") == 0; ++round) {
    pb::StoreFlagsResponse r;
    auto set = keywords;
    set.push_back(round % 2 ? "\\Seen" : "\\Flagged");
    REQUIRE(store_flags(other, box.mailbox(), 2, 3, pb::StoreFlagsRequest::REPLACE, set, r).ok());
  }
  while (idle->Read(&e)) {
  }
  auto end = idle->Finish();
  CHECK(end.error_code() == grpc::StatusCode::RESOURCE_EXHAUSTED);
  CHECK(end.error_message().find("not reading") != std::string::npos);
  CHECK(store.count("event=watch_cut_off") >= 1);
  // The store is healthy: a new session selects and watches.
  auto after = select(other);
  CHECK(after.status().messages() == 2);
  auto again_ctx = watcher.context(30s);
  auto again = watcher.stub().Watch(again_ctx.get(), w);
  std::vector<pb::WatchEvent> replay;
  while (again->Read(&e)) {
    if (e.has_ready()) break;
  }
  CHECK(e.has_ready());
  again_ctx->TryCancel();
  again->Finish();
}

TEST_CASE("Search is evaluated in the store, and a search nested 10,000 levels deep is refused") {
  Store store;
  store.deliver_to(kAlice, 5);
  auto c = store.client();
  auto box = select(c);
  pb::StoreFlagsResponse stored;
  REQUIRE(store_flags(c, box.mailbox(), 2, 3, pb::StoreFlagsRequest::ADD, {"\\Seen"}, stored).ok());
  auto search = [&](std::vector<pb::SearchKey> program, pb::SearchResponse& out) {
    pb::SearchRequest r;
    *r.mutable_mailbox() = box.mailbox();
    for (auto& k : program) *r.add_program() = k;
    auto ctx = c.context();
    return c.stub().Search(ctx.get(), r, &out);
  };
  auto key = [](pb::SearchKey::Kind kind, std::string text = "") {
    pb::SearchKey k;
    k.set_kind(kind);
    k.set_text(text);
    return k;
  };
  pb::SearchResponse r;
  REQUIRE(search({key(pb::SearchKey::UNSEEN)}, r).ok());
  CHECK(uids_of(r.uids()) == std::vector<uint32_t>{1, 4, 5});
  CHECK(r.count() == 3);
  // Two expressions where one is wanted: the program is refused, not half run.
  r.Clear();
  CHECK(search({key(pb::SearchKey::SUBJECT, "TEST"), key(pb::SearchKey::SEEN)}, r).error_code() ==
        grpc::StatusCode::INVALID_ARGUMENT);
  std::vector<pb::SearchKey> deep(9999, key(pb::SearchKey::NOT));
  deep.push_back(key(pb::SearchKey::SEEN));
  r.Clear();
  auto s = search(deep, r);
  CHECK(s.error_code() == grpc::StatusCode::INVALID_ARGUMENT);
  CHECK(s.error_message().find("deeper") != std::string::npos);
  pb::SearchKey both = key(pb::SearchKey::AND);
  both.set_operands(2);
  r.Clear();
  REQUIRE(search({both, key(pb::SearchKey::SUBJECT, "TEST"), key(pb::SearchKey::SEEN)}, r).ok());
  CHECK(uids_of(r.uids()) == std::vector<uint32_t>{2, 3});
}

TEST_CASE("a repeated header Search is answered from the store's header cache") {
  test::StoreDaemonOptions o;
  o.metrics = true;
  Store store(o);
  store.deliver_to(kAlice, 4);
  auto c = store.client();
  auto box = select(c);
  pb::SearchRequest r;
  *r.mutable_mailbox() = box.mailbox();
  auto* from = r.add_program();
  from->set_kind(pb::SearchKey::FROM);
  from->set_text("example");
  auto search = [&] {
    pb::SearchResponse out;
    auto ctx = c.context();
    REQUIRE(c.stub().Search(ctx.get(), r, &out).ok());
    return out.count();
  };
  const std::string hits = "postern_store_search_header_cache_lookups_total{result=\"hit\"}";
  const std::string misses = "postern_store_search_header_cache_lookups_total{result=\"miss\"}";
  const uint32_t first = search();
  auto scrape = store.metrics();
  INFO(scrape);
  CHECK(test::metric_sample(scrape, misses) == 4);
  CHECK(test::metric_sample(scrape, hits) == 0);
  // The same answer, the four headers from the cache.
  CHECK(search() == first);
  CHECK(test::metric_sample(store.metrics(), hits) == 4);
}

TEST_CASE("bad input gets a status naming the problem and the store stays healthy") {
  Store store;
  store.deliver_to(kAlice);
  auto c = store.client();
  auto box = select(c);
  pb::FetchRequest f;
  *f.mutable_mailbox() = box.mailbox();
  f.set_flags(true);
  SECTION("a UID set over max_uid_ranges") {
    for (uint32_t i = 0; i < 200000; ++i) *f.add_uids() = uid_range(2 * i + 1, 2 * i + 1);
    std::vector<pb::FetchedMessage> got;
    auto s = c.fetch(f, got);
    CHECK(s.error_code() == grpc::StatusCode::INVALID_ARGUMENT);
    CHECK(s.error_message().find("ranges is over the limit") != std::string::npos);
  }
  SECTION("a UID set of a million ranges: over the message size") {
    for (uint32_t i = 0; i < 1000000; ++i) *f.add_uids() = uid_range(2 * i + 1, 2 * i + 1);
    std::vector<pb::FetchedMessage> got;
    auto s = c.fetch(f, got);
    CHECK(s.error_code() == grpc::StatusCode::RESOURCE_EXHAUSTED);
  }
  SECTION("a backwards range") {
    *f.add_uids() = uid_range(5, 2);
    std::vector<pb::FetchedMessage> got;
    CHECK(c.fetch(f, got).error_code() == grpc::StatusCode::INVALID_ARGUMENT);
  }
  SECTION("a mailbox name with invalid UTF-8") {
    pb::SelectResponse r;
    CHECK(c.select(std::string("IN\xc0\x80", 4), r).error_code() == grpc::StatusCode::INVALID_ARGUMENT);
  }
  // Still serving.
  std::vector<pb::FetchedMessage> got;
  pb::FetchRequest ok;
  *ok.mutable_mailbox() = box.mailbox();
  *ok.add_uids() = uid_range(1, 1);
  ok.set_size(true);
  REQUIRE(c.fetch(ok, got).ok());
  CHECK(got.size() == 1);
}
