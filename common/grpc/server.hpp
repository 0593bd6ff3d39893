// server.hpp: the gRPC server skeleton run_daemon drives for a daemon's gRPC port: mTLS from the
// host's NSS database, every call's peer through the client access filter and the per-peer limits
// before any service code runs, metrics, drain, and a rebuild with fresh credentials on SIGHUP.
// Includes no gRPC header; daemons register their generated services through GrpcRegistry.
#pragma once

#include <chrono>
#include <cstddef>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "common/grpc/credentials.hpp"
#include "common/net/address.hpp"
#include "common/result.hpp"

namespace grpc {
class Service;
}  // namespace grpc

namespace common::runtime {
class Loop;
class AdmissionCheck;
}  // namespace common::runtime

namespace common::rpc {

// One daemon's gRPC port ([grpc] in its config).
struct ServerOptions {
  std::string name = "grpc";  // listener="..." in logs and metrics
  std::string service;        // the service name the access filters see: "authserv", "mailstore", "ens"
  net::Endpoint listen;       // "*:port" listens on both IPv6 and IPv4
  MtlsOptions mtls;
  size_t max_calls = 10000;        // calls in progress over all peers
  size_t max_calls_per_ip = 1000;  // per client address (IPv6 per /64); 0: no per-address limit
  // gRPC sends GOAWAY to a connection this old and gives its calls `grace` more, so a long-lived
  // channel is handshaken again, and its certificate checked against today's CRLs.
  std::chrono::milliseconds max_connection_age{std::chrono::minutes(30)};
  std::chrono::milliseconds max_connection_age_grace{std::chrono::minutes(5)};
};

// What a daemon hands over in DaemonApp::register_grpc: its services (generated
// ...::CallbackService subclasses it owns, alive until its stop()), message limits, and the loops
// its handlers may post work onto.
class GrpcRegistry {
 public:
  explicit GrpcRegistry(std::vector<runtime::Loop*> loops);
  ~GrpcRegistry();
  GrpcRegistry(const GrpcRegistry&) = delete;
  GrpcRegistry& operator=(const GrpcRegistry&) = delete;

  // add<postern::authserv::v1::Auth>(service). Every method must use the callback API; a service
  // that does not (or whose name the linked descriptors do not know) fails the daemon's start.
  template <class Generated>
  void add(::grpc::Service& service) {
    add(service, Generated::service_full_name());
  }
  void add(::grpc::Service& service, std::string_view full_name);

  // Largest request and reply a call may carry (gRPC refuses bigger ones with RESOURCE_EXHAUSTED).
  void set_message_limits(size_t max_receive, size_t max_send);

  // The bridge onto the daemon's libuv loops: `work` runs on loop `index` (modulo their number);
  // a handler may finish its reactor from there. run_daemon keeps the loops running until the gRPC
  // server has shut down, so posted work always runs. Thread-safe.
  void post(size_t index, std::function<void()> work);
  runtime::Loop& loop(size_t index);
  size_t loops() const { return loops_.size(); }

  struct Method;
  struct Entry;

 private:
  friend class GrpcServer;
  std::vector<runtime::Loop*> loops_;
  std::vector<std::shared_ptr<const Entry>> services_;
  std::string error_;  // the first add() that failed
  size_t max_receive_ = 4 * 1024 * 1024;
  size_t max_send_ = 4 * 1024 * 1024;
};

// Where the client access filter runs for gRPC peers: run_daemon's check of loop 0 (the same
// filter, with the same asynchronous reverse DNS, as its TCP listeners).
struct PeerAdmission {
  runtime::Loop* loop = nullptr;             // check() is called on this loop's thread
  runtime::AdmissionCheck* check = nullptr;  // null: every peer passes the filter
};

// A daemon's gRPC server. Each call goes through a gate before the daemon's handler sees it:
// draining -> UNAVAILABLE; more calls than the limits -> RESOURCE_EXHAUSTED; a client certificate
// NSS no longer accepts (revoked since the handshake) -> UNAUTHENTICATED; refused by the access
// filter -> PERMISSION_DENIED. Every refusal is logged (comp=grpc event=refused, with the client's
// address, the reason and the deciding rule) and counted (postern_grpc_calls_refused_total); the
// handler never runs for a refused call. A peer's decisions are kept for a minute per connection
// (its address and port), so only a connection's first call waits for reverse DNS.
class GrpcServer {
 public:
  // Listens on options.listen. The registry's services and loops must outlive the server, and so
  // must admission's loop and check.
  static Result<std::unique_ptr<GrpcServer>> start(ServerOptions options, const GrpcRegistry& registry,
                                                   PeerAdmission admission);
  // Refuses the calls still waiting for the filter, cancels the rest and waits for them.
  ~GrpcServer();
  GrpcServer(const GrpcServer&) = delete;
  GrpcServer& operator=(const GrpcServer&) = delete;

  int port() const;
  const ServerOptions& options() const;

  // SIGHUP. Limits apply to calls from now on.
  void set_limits(size_t max_calls, size_t max_calls_per_ip);
  // The access filter changed: forget the decisions kept per connection. Call on the admission loop
  // after the check has the new filter.
  void policy_changed();
  // SIGHUP, after the CRLs were read again: applies the limits, has every connection's next call
  // checked again (the access filter, and NSS verifying the peer's certificate against the CRLs it
  // holds now, so a front end revoked since it connected is refused from its next call on), and
  // rebuilds the server when it would serve something new: another certificate chain or CA in the
  // NSS database (deploy/certs re-issued it), or other TLS settings. True when it rebuilt. On an
  // error the running server keeps serving. listen must not change (that needs a restart).
  Result<bool> reload(ServerOptions options, std::chrono::milliseconds grace);
  // A new server on the same address with credentials made again now (the certificate and key as
  // the NSS database holds them), then the old one shuts down: its connections get GOAWAY and
  // their calls `grace` to finish. gRPC cancels a call that reaches the old server after its
  // shutdown began (a client that sent it before it saw the GOAWAY), which is why reload() rebuilds
  // only when something changed.
  Result<void> rebuild(ServerOptions options, std::chrono::milliseconds grace);

  // SIGTERM: new calls get UNAVAILABLE; calls in progress have `grace`, then are cancelled. `done`
  // runs on a thread of the server's own once no call is left (the admission loop must keep running
  // until then).
  void drain(std::chrono::milliseconds grace, std::function<void()> done);
  // A second SIGTERM: cancel every call now.
  void cancel_all();

 private:
  struct Impl;
  explicit GrpcServer(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// gRPC's peer text ("ipv4:192.0.2.7:5123", "ipv6:[2001:db8::1]:5123", percent-encoded or not) as
// an endpoint; IPv4-mapped IPv6 comes back as IPv4, so filters see one form. nullopt for anything
// else (unix sockets). Exposed for tests.
std::optional<net::Endpoint> parse_peer(std::string_view peer);

}  // namespace common::rpc
