// fetch_test.cpp: a MailStore Fetch of many messages through a real postern-store, which reads a
// reply's worth of messages ahead of the client on its read pool and sends several in one reply:
// every message whole, once, in UID order (a large one in several pieces among small ones), the
// replies within the proto's budget, and a client that goes away mid-stream leaves the store
// healthy.
#include <catch2/catch.hpp>

#include <map>

#include "tests/store/support/mailstore_client.hpp"
#include "tests/store/support/store_daemon.hpp"

using test::MailStoreClient;
using test::uid_range;
namespace pb = postern::mailstore::v1;

namespace {

const std::string kAlice = "alice@example.com";

grpc::Status append(MailStoreClient& c, const std::string& bytes, pb::AppendResponse& out) {
  auto ctx = c.context();
  auto writer = c.stub().Append(ctx.get(), &out);
  pb::AppendRequest start;
  start.mutable_start()->set_mailbox("INBOX");
  start.mutable_start()->set_internal_date(1700000000);
  start.mutable_start()->set_size(bytes.size());
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

// Message i: its own subject and a body of a size that varies with i, every line naming i.
std::string message(int i, size_t body_size) {
  std::string m = "From: sender@example.org\r\nTo: alice@example.com\r\nSubject: message " + std::to_string(i) +
                  "\r\n\r\n";
  const std::string line = "line of message " + std::to_string(i) + " ............................................\r\n";
  while (m.size() < body_size) m += line;
  return m;
}

}  // namespace

TEST_CASE("a Fetch of 80 messages streams each whole, once and in UID order, a 2.5 MB one among them",
          "[integration]") {
  test::StoreDaemon store;
  store.start();
  MailStoreClient c(store.grpc_port(), test::access_token(kAlice));

  // More messages than the store reads ahead at once (32) and more bytes (256 KiB), with one whose
  // BODY[] takes several 1 MiB replies in the middle.
  constexpr int kMessages = 80;
  std::map<uint32_t, std::string> sent;
  for (int i = 1; i <= kMessages; ++i) {
    const std::string bytes = message(i, i == 40 ? 2'500'000 : 2000 + static_cast<size_t>(i * 97 % 6000));
    pb::AppendResponse r;
    auto s = append(c, bytes, r);
    INFO(s.error_message());
    REQUIRE(s.ok());
    sent[r.uid()] = bytes;
  }
  REQUIRE(sent.size() == kMessages);

  pb::SelectResponse box;
  REQUIRE(c.select("INBOX", box).ok());
  pb::FetchRequest f;
  *f.mutable_mailbox() = box.mailbox();
  *f.add_uids() = uid_range(sent.begin()->first, sent.rbegin()->first);
  f.set_flags(true);
  f.set_size(true);
  f.add_sections();  // BODY[]
  std::vector<pb::FetchResponse> replies;
  auto s = c.fetch_replies(f, replies);
  INFO(s.error_message());
  REQUIRE(s.ok());
  std::vector<pb::FetchedMessage> got;
  for (const auto& r : replies) got.insert(got.end(), r.messages().begin(), r.messages().end());
  REQUIRE(got.size() > static_cast<size_t>(kMessages));  // the big one came in pieces

  // Entries of one message follow each other, messages in ascending UID, each exactly as appended.
  std::map<uint32_t, std::string> bodies;
  std::vector<uint32_t> order;
  for (const auto& entry : got) {
    if (order.empty() || order.back() != entry.uid()) {
      REQUIRE(bodies.count(entry.uid()) == 0);  // no message twice, none interleaved
      order.push_back(entry.uid());
      CHECK(entry.size() != 0);  // its items in its first entry
    } else {
      CHECK(entry.size() == 0);  // a further piece: uid and sections only
    }
    for (const auto& piece : entry.sections()) {
      auto& body = bodies[entry.uid()];
      CHECK(piece.offset() == body.size());
      body += piece.data();
      CHECK(piece.last() == (body.size() == sent[entry.uid()].size()));
    }
  }
  REQUIRE(order.size() == sent.size());
  CHECK(std::is_sorted(order.begin(), order.end()));
  for (const auto& [uid, bytes] : sent) {
    INFO("uid " << uid);
    CHECK(bodies[uid].size() == bytes.size());
    CHECK(bodies[uid] == bytes);
  }

  // Several messages to a reply, within the budget (128 KiB, 128 messages) unless one entry alone
  // is larger; each further piece of the big one starts a reply.
  CHECK(replies.size() < static_cast<size_t>(kMessages) / 4);
  size_t shared = 0, pieces = 0;
  for (const auto& r : replies) {
    REQUIRE(r.messages_size() >= 1);
    CHECK(r.messages_size() <= 128);
    if (r.messages_size() > 1) {
      ++shared;
      CHECK(r.ByteSizeLong() <= (128u << 10) + 1024);
    }
    for (int i = 0; i < r.messages_size(); ++i) {
      const auto& m = r.messages(i);
      if (!m.sections().empty() && m.sections(0).offset() > 0) {
        ++pieces;
        CHECK(i == 0);
      }
    }
  }
  CHECK(shared >= 3);
  CHECK(pieces == 2);  // 2.5 MB in 1 MiB pieces: two more after the first

  SECTION("a client that reads one reply and goes away leaves the store serving") {
    for (int round = 0; round < 3; ++round) {
      auto ctx = c.context();
      auto reader = c.stub().Fetch(ctx.get(), f);
      pb::FetchResponse one;
      REQUIRE(reader->Read(&one));
      REQUIRE(one.messages_size() > 1);
      CHECK(one.messages(0).uid() == sent.begin()->first);
      ctx->TryCancel();
      while (reader->Read(&one)) {
      }
      CHECK(reader->Finish().error_code() == grpc::StatusCode::CANCELLED);
    }
    std::vector<pb::FetchResponse> again;
    REQUIRE(c.fetch_replies(f, again).ok());
    CHECK(again.size() == replies.size());
    CHECK(store.count("level=error") == 0);
  }
}

TEST_CASE("a Fetch of 300 small messages with FLAGS ENVELOPE comes in three replies, in UID order",
          "[integration]") {
  test::StoreDaemon store;
  store.start();
  MailStoreClient c(store.grpc_port(), test::access_token(kAlice));
  constexpr int kMessages = 300;
  std::vector<uint32_t> uids;
  for (int i = 1; i <= kMessages; ++i) {
    pb::AppendResponse r;
    auto s = append(c, message(i, 600), r);
    INFO(s.error_message());
    REQUIRE(s.ok());
    uids.push_back(r.uid());
  }
  pb::SelectResponse box;
  REQUIRE(c.select("INBOX", box).ok());
  pb::FetchRequest f;
  *f.mutable_mailbox() = box.mailbox();
  *f.add_uids() = uid_range(1, 1000);
  f.set_flags(true);
  f.set_envelope(true);
  std::vector<pb::FetchResponse> replies;
  auto s = c.fetch_replies(f, replies);
  INFO(s.error_message());
  REQUIRE(s.ok());
  // At most 128 messages a reply, and as many as that while more follow (a few hundred bytes each,
  // far below the byte budget).
  REQUIRE(replies.size() == 3);
  CHECK(replies[0].messages_size() == 128);
  CHECK(replies[1].messages_size() == 128);
  CHECK(replies[2].messages_size() == kMessages - 256);
  std::vector<uint32_t> order;
  for (const auto& r : replies) {
    for (const auto& m : r.messages()) {
      order.push_back(m.uid());
      const std::string subject = "\"message " + std::to_string(order.size()) + "\"";
      INFO("uid " << m.uid() << " envelope " << m.envelope());
      CHECK(m.envelope().find(subject) != std::string::npos);
      CHECK(m.has_flags());
      CHECK(m.sections().empty());
    }
  }
  CHECK(order == uids);
}
