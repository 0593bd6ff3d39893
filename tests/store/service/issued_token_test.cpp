// issued_token_test.cpp: the trust path end to end, as the mmp will walk it: a front end logs a
// user in at a real authserv over mutual TLS, and the token authserv signs opens that user's
// mailbox at a real store that knows only authserv's public key (token.key.pub), and nothing else.
#include <catch2/catch.hpp>

#include <chrono>
#include <string>

#include <grpcpp/grpcpp.h>

#include "common/grpc/credentials.hpp"
#include "proto/authserv.grpc.pb.h"
#include "tests/store/support/mailstore_client.hpp"
#include "tests/store/support/store_daemon.hpp"
#include "tests/support/nss_host.hpp"

namespace {

namespace apb = postern::authserv::v1;
namespace mpb = postern::mailstore::v1;
using namespace std::chrono_literals;

// AUTHENTICATE PLAIN from the test process, which presents mta1's certificate (tests/support/
// nss_host.hpp), so authserv binds the token to front end "mta1", the store's allowed client.
apb::AuthReply login(const std::string& target, const std::string& user, const std::string& password) {
  test::nss_host();
  auto creds = common::rpc::channel_credentials({});
  if (!creds) FAIL(creds.error().detail);
  auto stub = apb::Auth::NewStub(grpc::CreateChannel(target, *creds));
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + 20s);
  auto stream = stub->Authenticate(&context);
  apb::AuthStep step;
  auto* start = step.mutable_start();
  start->mutable_facts()->set_service("imap");
  start->mutable_facts()->set_client_address("192.0.2.7");
  start->mutable_facts()->set_server_address("127.0.0.1");
  start->mutable_facts()->set_tls_version("TLSv1.3");
  start->set_mechanism("PLAIN");
  start->set_has_initial_response(true);
  start->set_initial_response(std::string(1, '\0') + user + std::string(1, '\0') + password);
  REQUIRE(stream->Write(step));
  apb::AuthReply reply;
  REQUIRE(stream->Read(&reply));
  stream->WritesDone();
  apb::AuthReply extra;
  while (stream->Read(&extra)) {
  }
  INFO(stream->Finish().error_message());
  return reply;
}

}  // namespace

TEST_CASE("a token authserv issues over mutual TLS opens the user's own mailbox at the store, and nothing else",
          "[integration]") {
  test::StoreDaemon store({.authserv_mtls = true});
  store.start();
  REQUIRE(store.deliver({"alice@example.com"}).output.find("RCPT alice@example.com 250") != std::string::npos);

  auto alice = login(store.auth().target(), "alice@example.com", "secret-alice");
  INFO(alice.DebugString() << store.auth().log());
  REQUIRE(alice.has_success());
  CHECK(alice.success().canonical() == "alice@example.com");
  CHECK(alice.success().mail_host() == "store1");
  const std::string token = alice.success().token();
  REQUIRE(!token.empty());

  SECTION("it opens alice's INBOX") {
    test::MailStoreClient client(store.grpc_port(), token);
    mpb::SelectResponse box;
    auto s = client.select("INBOX", box);
    INFO(s.error_message() << store.log());
    REQUIRE(s.ok());
    CHECK(box.status().messages() == 1);
  }
  SECTION("it does not open bob's, naming him") {
    test::MailStoreClient client(store.grpc_port(), token, "bob@example.com");
    mpb::SelectResponse box;
    auto s = client.select("INBOX", box);
    CHECK(s.error_code() == grpc::StatusCode::PERMISSION_DENIED);
  }
  SECTION("altered by one character it opens nothing") {
    std::string forged = token;
    forged[forged.size() / 2] = forged[forged.size() / 2] == 'A' ? 'B' : 'A';
    test::MailStoreClient client(store.grpc_port(), forged);
    mpb::SelectResponse box;
    auto s = client.select("INBOX", box);
    CHECK(s.error_code() == grpc::StatusCode::UNAUTHENTICATED);
  }
  SECTION("one the fixture's test key signed is not authserv's and opens nothing") {
    test::MailStoreClient client(store.grpc_port(), test::access_token("alice@example.com"));
    mpb::SelectResponse box;
    auto s = client.select("INBOX", box);
    CHECK(s.error_code() == grpc::StatusCode::UNAUTHENTICATED);
  }
  SECTION("the store asks authserv, over mutual TLS too, for the quota of a user it has never stored for") {
    auto small = login(store.auth().target(), "small@example.com", "secret-small");
    REQUIRE(small.has_success());
    test::MailStoreClient client(store.grpc_port(), small.success().token());
    mpb::QuotaResponse quota;
    auto context = client.context();
    auto s = client.stub().GetQuota(context.get(), mpb::QuotaRequest(), &quota);
    INFO(s.error_message() << store.log());
    REQUIRE(s.ok());
    CHECK(quota.DebugString().find("10240") != std::string::npos);
  }
  SECTION("a wrong password gets no token") {
    auto refused = login(store.auth().target(), "alice@example.com", "not-her-password");
    CHECK(refused.has_failure());
    CHECK(!refused.has_success());
  }
}
