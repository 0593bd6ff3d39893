// mailstore_client.cpp: the MailStore test client (mailstore_client.hpp).
#include "tests/store/support/mailstore_client.hpp"

#include <catch2/catch.hpp>

#include "common/grpc/credentials.hpp"
#include "tests/support/nss_host.hpp"

namespace test {

MailStoreClient::MailStoreClient(int port, std::string token, std::string user)
    : token_(std::move(token)), user_(std::move(user)) {
  nss_host();  // NSS on mta1's database, once per process
  auto creds = common::rpc::channel_credentials({});
  if (!creds) FAIL(creds.error().detail);
  grpc::ChannelArguments args;
  args.SetMaxReceiveMessageSize(64 << 20);
  args.SetMaxSendMessageSize(64 << 20);
  channel_ = grpc::CreateCustomChannel("127.0.0.1:" + std::to_string(port), *creds, args);
  stub_ = mspb::MailStore::NewStub(channel_);
}

std::unique_ptr<grpc::ClientContext> MailStoreClient::context(std::chrono::milliseconds deadline) const {
  auto c = std::make_unique<grpc::ClientContext>();
  c->set_deadline(std::chrono::system_clock::now() + deadline);
  if (!token_.empty()) c->AddMetadata("postern-token", token_);
  if (!user_.empty()) c->AddMetadata("postern-user", user_);
  return c;
}

grpc::Status MailStoreClient::select(const std::string& name, mspb::SelectResponse& out) {
  mspb::SelectRequest r;
  r.set_name(name);
  auto c = context();
  return stub_->Select(c.get(), r, &out);
}

grpc::Status MailStoreClient::fetch_replies(const mspb::FetchRequest& request, std::vector<mspb::FetchResponse>& out) {
  auto c = context();
  auto reader = stub_->Fetch(c.get(), request);
  mspb::FetchResponse r;
  while (reader->Read(&r)) out.push_back(std::move(r));
  return reader->Finish();
}

grpc::Status MailStoreClient::fetch(const mspb::FetchRequest& request, std::vector<mspb::FetchedMessage>& out) {
  std::vector<mspb::FetchResponse> replies;
  auto status = fetch_replies(request, replies);
  for (auto& r : replies) {
    for (auto& m : *r.mutable_messages()) out.push_back(std::move(m));
  }
  return status;
}

mspb::UidRange uid_range(uint32_t first, uint32_t last) {
  mspb::UidRange r;
  r.set_first(first);
  r.set_last(last);
  return r;
}

}  // namespace test
