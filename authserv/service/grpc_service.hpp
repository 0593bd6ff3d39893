// grpc_service.hpp: authserv's gRPC server (the Auth service of proto/authserv.proto) over mutual
// TLS. The only authserv header that knows gRPC exists; it forward-declares what it needs.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "authserv/service/core.hpp"
#include "common/grpc/credentials.hpp"

namespace authserv::service {

// Admin calls (postern-directory --online) reach this; null when the backend is not editable.
class AdminHandler {
 public:
  virtual ~AdminHandler() = default;
  // `request` is a serialized postern.authserv.v1.AdminRequest; returns a serialized AdminResponse.
  // Runs on a worker thread (it may hash passwords).
  virtual std::string handle(const std::string& request) = 0;
};

struct ServerOptions {
  std::string listen = "127.0.0.1:7560";
  common::rpc::MtlsOptions mtls;
  size_t max_exchanges = 10000;  // concurrent Authenticate streams; more are refused
  size_t max_message = 64 * 1024;    // requests
  size_t max_send = 4 * 1024 * 1024;  // answers (an alias may expand to many addresses); gRPC's default receive limit
};

class AuthServer {
 public:
  static common::Result<std::unique_ptr<AuthServer>> start(Core& core, AdminHandler* admin, const ServerOptions& options);
  ~AuthServer();
  // Stops accepting, lets running calls finish until `grace`, then cancels the rest.
  void shutdown(std::chrono::milliseconds grace);
  int port() const;

 private:
  struct Impl;
  explicit AuthServer(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace authserv::service
