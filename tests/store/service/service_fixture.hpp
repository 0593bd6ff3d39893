// service_fixture.hpp: what the MailStore service tests share: the store started with its LMTP and
// gRPC ports, a client with a user's token, deliveries of sized messages, and a SELECT that must work.
#pragma once

#include <catch2/catch.hpp>

#include <string>

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

}  // namespace test::store_service
