// service_fixture.hpp: what the MailStore service tests share: the store started with its LMTP and
// gRPC ports, a client with a user's token, deliveries of sized messages, a SELECT that must work
// and a STORE FLAGS.
#pragma once

#include <catch2/catch.hpp>

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "tests/store/support/mailstore_client.hpp"
#include "tests/store/support/store_daemon.hpp"

namespace test::store_service {

namespace pb = postern::mailstore::v1;

inline const std::string kAlice = "alice@example.com";
inline const std::string kBob = "bob@example.com";

struct Store : test::StoreDaemon {
  explicit Store(test::StoreDaemonOptions o = {}) : StoreDaemon(std::move(o)) { start(); }
  MailStoreClient client(const std::string& user = kAlice) { return MailStoreClient(grpc_port(), test::access_token(user)); }
  void deliver_to(const std::string& rcpt, int count = 1, size_t size = 1000) {
    for (int i = 0; i < count; ++i) {
      auto r = deliver({rcpt}, {"--size", std::to_string(size)});
      REQUIRE(r.exit_code == 0);
      REQUIRE(r.output.find(" 250 ") != std::string::npos);
    }
  }
};

inline pb::SelectResponse select(MailStoreClient& c, const std::string& name = "INBOX") {
  pb::SelectResponse r;
  auto s = c.select(name, r);
  INFO(s.error_message());
  REQUIRE(s.ok());
  return r;
}

// STORE FLAGS on UIDs first..last.
inline grpc::Status store_flags(MailStoreClient& c, const pb::MailboxRef& box, uint32_t first, uint32_t last,
                         pb::StoreFlagsRequest::Mode mode, std::vector<std::string> flags, pb::StoreFlagsResponse& out,
                         std::optional<uint64_t> unchanged_since = std::nullopt) {
  pb::StoreFlagsRequest r;
  *r.mutable_mailbox() = box;
  *r.add_uids() = test::uid_range(first, last);
  r.set_mode(mode);
  for (auto& f : flags) r.add_flags(f);
  if (unchanged_since) r.set_unchanged_since(*unchanged_since);
  auto ctx = c.context();
  return c.stub().StoreFlags(ctx.get(), r, &out);
}

}  // namespace test::store_service
