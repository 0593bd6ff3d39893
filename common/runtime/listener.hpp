// listener.hpp: a listening socket on one loop: accept -> client access filter -> per-IP and total
// connection limits -> session. Sockets are bound (SO_REUSEPORT, one per loop) before privileges drop.
#pragma once

#include <array>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

#include "common/metrics/metrics.hpp"
#include "common/net/address.hpp"
#include "common/result.hpp"
#include "common/runtime/connection.hpp"
#include "common/uv_handle.hpp"

namespace common::runtime {

// An owned file descriptor.
class Fd {
 public:
  Fd() = default;
  explicit Fd(int fd) : fd_(fd) {}
  ~Fd();
  Fd(Fd&& o) noexcept : fd_(o.release()) {}
  Fd& operator=(Fd&& o) noexcept;
  int get() const { return fd_; }
  int release() { int f = fd_; fd_ = -1; return f; }
  explicit operator bool() const { return fd_ >= 0; }

 private:
  int fd_ = -1;
};

struct BoundSocket {
  net::Endpoint endpoint;  // with the real port when 0 was asked
  Fd fd;
};

// Binds `copies` sockets per endpoint with SO_REUSEPORT (one per loop thread). A port already held by
// any other socket, even one with SO_REUSEPORT, is a clash and an error naming the endpoint.
// "*:port" is dual-stack; an explicit IPv6 address is IPv6 only.
Result<std::vector<std::vector<BoundSocket>>> bind_endpoints(const std::vector<net::Endpoint>& endpoints,
                                                            size_t copies, int backlog);

// The Admission* refusals come before the access check: too many from this address (or /64), or in
// all, are waiting for theirs, or this one waited longer than ConnectionLimits::admission_timeout.
enum class Refusal {
  AccessDenied,
  TooManyFromIp,
  TooManyConnections,
  Draining,
  AdmissionBusyFromIp,
  AdmissionBusy,
  AdmissionTimeout
};
std::string_view refusal_name(Refusal);

class SessionFactory {
 public:
  virtual ~SessionFactory() = default;
  virtual std::unique_ptr<Session> create(Connection& connection) = 0;
  // Sent before closing a refused connection, e.g. "421 4.7.0 Too many connections\r\n"; empty: close only.
  virtual std::string refusal(Refusal) { return {}; }
};

// The client access filter step; may answer later (reverse DNS) but always on the loop thread.
class AdmissionCheck {
 public:
  struct Outcome {
    bool allowed = true;
    std::string rule;         // the rule that decided, for the log
    std::string client_name;  // verified reverse name, when one was looked up
  };
  virtual ~AdmissionCheck() = default;
  virtual void check(const ConnectionInfo& info, std::function<void(Outcome)> done) = 0;
};

// Connection counts shared by every loop's copy of one listener. IPv6 clients count per /64, since
// one subscriber usually holds a whole /64.
class ConnectionLimiter {
 public:
  enum class Verdict { Ok, TooManyFromIp, TooManyConnections };
  ConnectionLimiter(size_t max_total, size_t max_per_ip) : max_total_(max_total), max_per_ip_(max_per_ip) {}
  // Sessions: counted from admission to close.
  Verdict acquire(const net::IpAddress& client);
  void release(const net::IpAddress& client);
  void set_limits(size_t max_total, size_t max_per_ip);
  size_t total() const;
  // Connections waiting for their admission check, counted before it runs (caps of 0: none).
  Verdict acquire_admission(const net::IpAddress& client, size_t max_total, size_t max_per_ip);
  void release_admission(const net::IpAddress& client);
  size_t admitting() const;

 private:
  struct Counts {
    size_t total = 0;
    std::unordered_map<std::string, size_t> per_ip;
  };
  static std::string key(const net::IpAddress& a);
  static Verdict take(Counts& counts, const std::string& key, size_t max_total, size_t max_per_ip);
  static void give_back(Counts& counts, const std::string& key);
  mutable std::mutex mutex_;
  size_t max_total_;
  size_t max_per_ip_;  // 0 = no per-IP limit
  Counts sessions_;
  Counts admitting_;
};

// A listener's metrics (postern_connections_*{listener=...}); shared by its copies on every loop.
struct ListenerStats {
  ListenerStats(const std::string& listener, metrics::Registry& registry);
  metrics::Counter& accepted;
  metrics::Counter& refused_access;
  metrics::Counter& refused_per_ip;
  metrics::Counter& refused_total;
  metrics::Counter& refused_draining;
  metrics::Counter& refused_admission_per_ip;
  metrics::Counter& refused_admission_total;
  metrics::Counter& refused_admission_timeout;
  metrics::Gauge& active;
  metrics::Gauge& admitting;  // postern_connections_admitting: waiting for the access check now
  // postern_connections_closed_total{listener,reason}: how sessions ended, by CloseReason
  // ("truncated" counts TLS streams cut without close_notify).
  std::array<metrics::Counter*, kCloseReasons> closed{};
  // postern_starttls_pipelined_discarded_total{listener}: STARTTLS commands that had plaintext
  // pipelined behind them, which was dropped (the log line says how many bytes).
  metrics::Counter& starttls_discarded;
};

struct ListenerOptions {
  std::string name;       // "smtp", "imaps", ...
  std::string service;    // access-filter service name
  int backlog = 511;
  ConnectionLimits limits;
};

class Listener {
 public:
  Listener(ConnectionSet& connections, ListenerOptions options, BoundSocket socket,
           std::shared_ptr<ConnectionLimiter> limiter, std::shared_ptr<ListenerStats> stats,
           SessionFactory& factory, AdmissionCheck* admission);
  Result<void> start();
  // Stops accepting; established connections are not touched.
  void stop();
  const net::Endpoint& endpoint() const { return endpoint_; }
  const ListenerOptions& options() const { return options_; }
  void set_limits(const ConnectionLimits& limits) { options_.limits = limits; }

 private:
  void on_connection(int status);
  void admit(Connection& c, AdmissionCheck::Outcome outcome);
  void refuse(Connection& c, Refusal why, std::string_view rule = {});

  ConnectionSet& connections_;
  ListenerOptions options_;
  net::Endpoint endpoint_;
  Fd fd_;
  UvHandle<uv_tcp_t> handle_;
  std::shared_ptr<ConnectionLimiter> limiter_;
  std::shared_ptr<ListenerStats> stats_;
  SessionFactory& factory_;
  AdmissionCheck* admission_;
  bool stopped_ = false;
};

}  // namespace common::runtime
