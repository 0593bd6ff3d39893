// grpc_service.hpp: the MailStore gRPC service (proto/mailstore.proto) the mmp serves IMAP and
// POP3 from, on the store's gRPC port (run_daemon's skeleton owns the address, mutual TLS, access
// filters and limits). Every call passes store::service::check_access first. Reads run in LMDB
// read transactions, so they never wait for the writer: the cheap ones on the calling gRPC thread,
// searches and fetches on the service's read pool; writes go through the message store's
// group-commit writer and are answered once on disk.
#pragma once

#include <memory>

#include "common/authtoken/authtoken.hpp"
#include "store/config.hpp"
#include "store/service/access.hpp"

namespace common::authclient {
class AuthClient;
}
namespace common::rpc {
class GrpcRegistry;
}  // namespace common::rpc

namespace store {
class MessageStore;
}

namespace store::service {

struct ServiceOptions {
  AccessPolicy access;
  MailStoreConfig limits;
  // Where users' quotas come from (user_quota.hpp); null: none asked for.
  common::authclient::AuthClient* directory = nullptr;
};

class MailStoreGrpc {
 public:
  MailStoreGrpc(MessageStore& store, common::authtoken::Verifier verifier, ServiceOptions options);
  ~MailStoreGrpc();
  MailStoreGrpc(const MailStoreGrpc&) = delete;
  MailStoreGrpc& operator=(const MailStoreGrpc&) = delete;
  void register_with(common::rpc::GrpcRegistry& registry);
  // The daemon drains: the WatchMany streams end now with UNAVAILABLE (their clients go on elsewhere).
  void end_watches();

  struct Impl;  // the generated service's subclass, in grpc_service.cpp

 private:
  std::unique_ptr<Impl> impl_;
};

}  // namespace store::service
