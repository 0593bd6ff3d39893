// daemon.hpp: the one daemon skeleton. run_daemon() owns flags, config loading and --check-config,
// logging and metrics set-up, binding, the privilege drop, signals (SIGTERM drain, SIGHUP reload),
// the client access filters, the libuv loops and the daemon's gRPC port. Every daemon's main()
// calls it and nothing more.
#pragma once

#include <chrono>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "common/config/config.hpp"
#include "common/dns/resolver.hpp"
#include "common/grpc/server.hpp"
#include "common/log/log.hpp"
#include "common/net/address.hpp"
#include "common/result.hpp"
#include "common/runtime/connection.hpp"
#include "common/runtime/listener.hpp"
#include "common/runtime/loop.hpp"
#include "common/runtime/process.hpp"
#include "common/runtime/worker_pool.hpp"
#include "common/tls/server.hpp"

namespace common::daemon {


enum class TlsMode { Off, StartTls, Implicit };

// A listener's TLS context. SIGHUP builds a new one (certificates read again from the NSS
// database, so a certificate deploy/certs re-issued is served) and swaps it in; a connection keeps
// the context it started with, through the shared_ptr its transform holds.
class TlsContextSlot {
 public:
  explicit TlsContextSlot(std::shared_ptr<tls::ServerContext> context) : context_(std::move(context)) {}
  std::shared_ptr<tls::ServerContext> current() const {
    std::lock_guard lock(mutex_);
    return context_;
  }
  void replace(std::shared_ptr<tls::ServerContext> context) {
    std::lock_guard lock(mutex_);
    context_ = std::move(context);
  }
  // A TLS server session of the current context, for StartTlsSession::start_tls.
  std::unique_ptr<runtime::Transform> accept(std::string_view connection_id) const {
    return current()->accept(connection_id);
  }

 private:
  mutable std::mutex mutex_;
  std::shared_ptr<tls::ServerContext> context_;
};

// One [[listener]] table.
struct ListenerConfig {
  std::string name;     // unique in the file; logs and metrics use it
  std::string service;  // the protocol, and the service name the access filters see
  std::vector<net::Endpoint> addresses;
  TlsMode tls_mode = TlsMode::Off;  // implicit: the handshake comes first; starttls: the session starts it
  tls::ServerOptions tls_options;   // certificates, client_certs, [[listener.sni]]
  // Made by run_daemon from tls_options and [tls] when tls_mode is not Off, and made again on
  // SIGHUP; sessions hand tls->accept() to StartTlsSession::start_tls (STARTTLS). Shared by every
  // loop's copy of the listener.
  std::shared_ptr<TlsContextSlot> tls;
  int backlog = 511;
  size_t max_connections = 10000;
  size_t max_per_ip = 20;  // 0: no per-IP limit
  runtime::ConnectionLimits limits;
};

// [tls]: this host's NSS database, shared by every TLS listener and the gRPC port.
struct TlsConfig {
  std::string db_dir;          // cert9.db, key4.db, pkcs11.txt (deploy/certs host)
  std::string password_file;   // default: <db_dir>/password
  // Loaded into NSS once for the process (TLS listeners and gRPC peers alike), again on SIGHUP.
  std::vector<std::string> crl_files;
  // A warning at start, after each SIGHUP and daily while a certificate we serve expires within this.
  std::chrono::milliseconds expiry_warning{std::chrono::hours(24 * 30)};
  std::string adjust_ciphers;  // ssladjustciphersuites grammar, for every listener
  std::string min_version = "1.2";
};

// The [daemon], [log], [metrics], [dns], [access], [tls], [workers] and, for a daemon with a gRPC
// port, [grpc] tables every daemon shares.
struct CommonConfig {
  runtime::PrivilegeOptions privileges;
  std::string pid_file;
  size_t threads = 1;  // loop threads; each has its own copy of every listener (SO_REUSEPORT)
  std::chrono::milliseconds drain_timeout{std::chrono::seconds(30)};
  log::Settings log;
  std::optional<net::Endpoint> metrics_listen;  // [metrics] listen; "" turns it off
  dns::ResolverOptions dns;
  std::vector<std::string> allow_files, deny_files;  // tcpd-style filter files
  std::vector<std::string> allow_rules, deny_rules;  // the same filters inline, one per string
  TlsConfig tls;
  size_t worker_threads = 2;
  size_t worker_queue = 1024;
  std::vector<ListenerConfig> listeners;
  // [grpc]: listen, certificate, ca, plaintext, max_calls, max_calls_per_ip, max_connection_age,
  // max_connection_age_grace. Set when the daemon has a gRPC port (DaemonApp::grpc_port).
  std::optional<rpc::ServerOptions> grpc;
};

// A daemon's gRPC port: the service name its access filters see and its default address.
struct GrpcPort {
  std::string service;         // "authserv", "mailstore", "ens"
  std::string default_listen;  // "127.0.0.1:7560"
};

// What one loop thread has: daemons create per-loop state (caches, clients) in make_factory.
struct LoopContext {
  size_t index = 0;
  runtime::Loop* loop = nullptr;
  runtime::ConnectionSet* connections = nullptr;
  dns::Resolver* resolver = nullptr;  // null when DNS could not start (logged)
  runtime::WorkerPool* workers = nullptr;      // shared by all loops
  // The process's NSS (null when no TLS is configured and the daemon did not ask for it): for a
  // daemon's outbound TLS client contexts (the mta's delivery).
  const tls::Nss* nss = nullptr;
};

// The part of a daemon that differs from the others.
class DaemonApp {
 public:
  virtual ~DaemonApp() = default;
  // Listener services this daemon speaks ("smtp", "imap", ...). Others are config errors.
  virtual std::vector<std::string> services() const = 0;
  // Reads the daemon's own tables. Problems go into the Document (shown by --check-config).
  virtual void read_config(config::Section root) = 0;
  // Reads the keys of one [[listener]] that the common part does not know, and may change the
  // daemon's defaults for the common ones (the store requires client certificates on LMTP).
  virtual void read_listener(config::Section&, ListenerConfig&) {}
  // True when the daemon needs the host's NSS database without any TLS listener or gRPC port that
  // uses it (an outbound mTLS client).
  virtual bool needs_nss() const { return false; }
  // The daemon's gRPC port, if it has one: run_daemon then reads [grpc] and serves the services
  // register_grpc() adds, with the access filters, limits, metrics, drain and reload of the skeleton.
  virtual std::optional<GrpcPort> grpc_port() const { return std::nullopt; }
  // After start() and once the loops exist: add the gRPC services (registry.add<Generated>(svc)).
  // They must stay alive until stop(), which run_daemon calls only after the gRPC server is gone.
  virtual void register_grpc(rpc::GrpcRegistry&) {}
  // After binding and the privilege drop, before any loop runs: open stores, connect clients.
  virtual Result<void> start(const CommonConfig&) { return {}; }
  // Once per loop, before its factories and before it runs: per-loop work that is
  // not a listener's (the mta's deliverer on loop 0). An error stops the start-up.
  virtual Result<void> start_loop(LoopContext&) { return {}; }
  // One factory per listener per loop; called on that loop's thread before it runs.
  virtual std::unique_ptr<runtime::SessionFactory> make_factory(const ListenerConfig& listener, LoopContext& ctx) = 0;
  // SIGHUP: the file was read again into a fresh app object through read_config(); adopt what can
  // change live from it. Called on loop 0.
  virtual void reload(DaemonApp&) {}
  // SIGTERM, on loop 0, before every connection is told to drain: stop starting outbound work (the
  // mta's deliveries), and call `drained` (any thread) once what is in flight has finished. The
  // loops stop only after it, or at the drain deadline.
  virtual void drain(std::function<void()> drained) { drained(); }
  // After the drain, before the loops close.
  virtual void stop() {}
};

struct DaemonSpec {
  std::string name;                // "mta"
  std::string description;         // one line for --help
  std::string default_metrics_listen;  // e.g. "127.0.0.1:9101"; empty: metrics off unless configured
  std::function<std::unique_ptr<DaemonApp>()> make_app;
};

// Reads the common tables into `out`, problems into the Document. Exposed for tests.
void read_common_config(config::Section root, DaemonApp& app, CommonConfig& out);

// Returns the process exit code: 0 after a clean drain or a good --check-config, 1 on config or
// start-up errors (printed to stderr), 2 on bad flags.
int run_daemon(int argc, char** argv, const DaemonSpec& spec);

}  // namespace common::daemon
