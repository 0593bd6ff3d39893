// grpc_service.hpp: authserv's gRPC service (the Auth service of proto/authserv.proto), served on
// the daemon's gRPC port by run_daemon's skeleton (common/grpc/server.hpp), which owns the address,
// mutual TLS, the access filters and limits. The only authserv header that knows gRPC exists; it
// forward-declares what it needs.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "authserv/service/core.hpp"
#include "common/grpc/credentials.hpp"

namespace common::rpc {
class GrpcRegistry;
}  // namespace common::rpc

namespace authserv::service {

// Admin calls (postern-directory --online) reach this; null when the backend is not editable.
class AdminHandler {
 public:
  virtual ~AdminHandler() = default;
  // `request` is a serialized postern.authserv.v1.AdminRequest; returns a serialized AdminResponse.
  // Runs on a worker thread (it may hash passwords).
  virtual std::string handle(const std::string& request) = 0;
};

struct ServiceOptions {
  size_t max_exchanges = 10000;  // concurrent Authenticate streams; more are refused
  // The port runs without TLS ([grpc] plaintext): callers have no certificate name, so Admin calls
  // are taken from loopback addresses only.
  bool plaintext = false;
};

inline constexpr size_t kMaxRequest = 64 * 1024;      // requests
inline constexpr size_t kMaxReply = 4 * 1024 * 1024;  // answers (an alias may expand to many addresses)

// The Auth service. Outlives the daemon's gRPC server (run_daemon stops that before the app).
class AuthGrpc {
 public:
  AuthGrpc(Core& core, AdminHandler* admin, ServiceOptions options);
  ~AuthGrpc();
  AuthGrpc(const AuthGrpc&) = delete;
  AuthGrpc& operator=(const AuthGrpc&) = delete;
  // Adds the service and its message limits to the daemon's gRPC port (DaemonApp::register_grpc).
  void register_with(common::rpc::GrpcRegistry& registry);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace authserv::service
