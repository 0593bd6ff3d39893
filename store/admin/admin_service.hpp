// admin_service.hpp: the store's StoreAdmin gRPC service (proto/storeadmin.proto), beside MailStore
// on the store's gRPC port: postern-storectl's commands against the running store, for the
// certificates named in [mailstore] admin_clients. Writes go through the message store's
// group-commit writer (durable before the reply, published to the Watch streams); reads run in
// LMDB read transactions.
#pragma once

#include <memory>
#include <string>
#include <vector>

namespace common::rpc {
class GrpcRegistry;
}  // namespace common::rpc

namespace store {
class MessageStore;
}

namespace store::admin {

struct AdminOptions {
  std::vector<std::string> admin_clients;  // certificate CNs of the operators' hosts; empty: nobody
  bool plaintext = false;                  // [grpc] plaintext (tests only): no certificates to check
};

class StoreAdminGrpc {
 public:
  StoreAdminGrpc(MessageStore& store, AdminOptions options);
  ~StoreAdminGrpc();
  StoreAdminGrpc(const StoreAdminGrpc&) = delete;
  StoreAdminGrpc& operator=(const StoreAdminGrpc&) = delete;
  void register_with(common::rpc::GrpcRegistry& registry);

  struct Impl;

 private:
  std::unique_ptr<Impl> impl_;
};

}  // namespace store::admin
