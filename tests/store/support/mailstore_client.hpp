// mailstore_client.hpp: a real gRPC client of the store's MailStore API for tests, as the mmp will
// be one: mutual TLS with mta1's certificate (tests/support/nss_host.hpp) and an access token in
// the call metadata.
#pragma once

#include <chrono>
#include <memory>
#include <string>

#include <grpcpp/grpcpp.h>

#include "proto/mailstore.grpc.pb.h"

namespace test {

namespace mspb = postern::mailstore::v1;

class MailStoreClient {
 public:
  // `user`: the postern-user metadata (an administrator naming another user); empty: none.
  MailStoreClient(int port, std::string token, std::string user = "");

  mspb::MailStore::Stub& stub() { return *stub_; }
  // A context carrying the token, with a deadline.
  std::unique_ptr<grpc::ClientContext> context(std::chrono::milliseconds deadline = std::chrono::seconds(30)) const;
  void set_token(std::string token) { token_ = std::move(token); }

  grpc::Status select(const std::string& name, mspb::SelectResponse& out);
  // Fetch: every message entry of the stream, in order (a large section's pieces in entries of
  // their own, as the proto sends them).
  grpc::Status fetch(const mspb::FetchRequest& request, std::vector<mspb::FetchedMessage>& out);
  // Fetch, the stream's replies as they came (several messages each).
  grpc::Status fetch_replies(const mspb::FetchRequest& request, std::vector<mspb::FetchResponse>& out);

 private:
  std::string token_, user_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<mspb::MailStore::Stub> stub_;
};

// A UID range for requests.
mspb::UidRange uid_range(uint32_t first, uint32_t last);

}  // namespace test
