// fetch_test.cpp: a MailStore Fetch of many messages through a real postern-store, which reads a few
// messages ahead of the client on its read pool: every message whole, once, in UID order (a large
// one in several pieces among small ones), and a client that goes away mid-stream leaves the store
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
  std::vector<pb::FetchResponse> got;
  auto s = c.fetch(f, got);
  INFO(s.error_message());
  REQUIRE(s.ok());
  REQUIRE(got.size() > static_cast<size_t>(kMessages));  // the big one came in pieces

  // Replies of one message follow each other, messages in ascending UID, each exactly as appended.
  std::map<uint32_t, std::string> bodies;
  std::vector<uint32_t> order;
  for (const auto& reply : got) {
    if (order.empty() || order.back() != reply.uid()) {
      REQUIRE(bodies.count(reply.uid()) == 0);  // no message twice, none interleaved
      order.push_back(reply.uid());
    }
    for (const auto& piece : reply.sections()) {
      auto& body = bodies[reply.uid()];
      CHECK(piece.offset() == body.size());
      body += piece.data();
    }
  }
  REQUIRE(order.size() == sent.size());
  CHECK(std::is_sorted(order.begin(), order.end()));
  for (const auto& [uid, bytes] : sent) {
    INFO("uid " << uid);
    CHECK(bodies[uid].size() == bytes.size());
    CHECK(bodies[uid] == bytes);
  }

  SECTION("a client that reads one reply and goes away leaves the store serving") {
    for (int round = 0; round < 3; ++round) {
      auto ctx = c.context();
      auto reader = c.stub().Fetch(ctx.get(), f);
      pb::FetchResponse one;
      REQUIRE(reader->Read(&one));
      CHECK(one.uid() == sent.begin()->first);
      ctx->TryCancel();
      while (reader->Read(&one)) {
      }
      CHECK(reader->Finish().error_code() == grpc::StatusCode::CANCELLED);
    }
    std::vector<pb::FetchResponse> again;
    REQUIRE(c.fetch(f, again).ok());
    CHECK(again.size() == got.size());
    CHECK(store.count("level=error") == 0);
  }
}
