// listener.cpp: binding with clash detection, the accept path and connection limits.
#include "common/runtime/listener.hpp"

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "common/log/log.hpp"

namespace common::runtime {

Fd::~Fd() {
  if (fd_ >= 0) ::close(fd_);
}

Fd& Fd::operator=(Fd&& o) noexcept {
  if (this != &o) {
    if (fd_ >= 0) ::close(fd_);
    fd_ = o.release();
  }
  return *this;
}

namespace {

Result<Fd> make_socket(const net::Endpoint& ep, bool reuseport) {
  int family = ep.address.is_v4() ? AF_INET : AF_INET6;
  Fd fd(::socket(family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  if (!fd) return fail(ErrorKind::Config, "socket: " + std::string(std::strerror(errno)));
  int one = 1;
  setsockopt(fd.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  if (reuseport) setsockopt(fd.get(), SOL_SOCKET, SO_REUSEPORT, &one, sizeof one);
  if (family == AF_INET6) {
    int v6only = ep.address.is_unspecified() ? 0 : 1;
    setsockopt(fd.get(), IPPROTO_IPV6, IPV6_V6ONLY, &v6only, sizeof v6only);
  }
  sockaddr_storage ss;
  socklen_t len = ep.to_sockaddr(ss);
  if (::bind(fd.get(), reinterpret_cast<sockaddr*>(&ss), len) != 0) {
    return fail(ErrorKind::Config, "bind " + ep.to_string() + ": " + std::strerror(errno));
  }
  return fd;
}

// One connection's place among those waiting for admission: given back once, whichever comes first
// of the check's answer, the deadline or the connection closing (a drain).
class AdmissionSlot {
 public:
  AdmissionSlot(std::shared_ptr<ConnectionLimiter> limiter, std::shared_ptr<ListenerStats> stats, net::IpAddress ip)
      : limiter_(std::move(limiter)), stats_(std::move(stats)), ip_(ip) {
    stats_->admitting.inc();
  }
  ~AdmissionSlot() { release(); }
  AdmissionSlot(const AdmissionSlot&) = delete;
  AdmissionSlot& operator=(const AdmissionSlot&) = delete;
  void release() {
    if (!held_) return;
    held_ = false;
    limiter_->release_admission(ip_);
    stats_->admitting.dec();
  }

 private:
  std::shared_ptr<ConnectionLimiter> limiter_;
  std::shared_ptr<ListenerStats> stats_;
  net::IpAddress ip_;
  bool held_ = true;
};

net::Endpoint local_endpoint(int fd, const net::Endpoint& fallback) {
  sockaddr_storage ss;
  socklen_t len = sizeof ss;
  if (getsockname(fd, reinterpret_cast<sockaddr*>(&ss), &len) != 0) return fallback;
  auto ep = net::Endpoint::from_sockaddr(reinterpret_cast<sockaddr*>(&ss));
  if (!ep) return fallback;
  ep->address = fallback.address;  // keep "*" (v6 any) rather than an unmapped form
  return *ep;
}

}  // namespace

Result<std::vector<std::vector<BoundSocket>>> bind_endpoints(const std::vector<net::Endpoint>& endpoints,
                                                            size_t copies, int backlog) {
  std::vector<std::vector<BoundSocket>> out;
  for (size_t i = 0; i < endpoints.size(); ++i) {
    for (size_t j = 0; j < i; ++j) {
      if (endpoints[j] == endpoints[i] && endpoints[i].port != 0) {
        return fail(ErrorKind::Config, "endpoint " + endpoints[i].to_string() + " is configured twice");
      }
    }
  }
  for (const auto& wanted : endpoints) {
    net::Endpoint ep = wanted;
    if (ep.port != 0) {
      // SO_REUSEPORT would let us share a port with another daemon of the same user without a word;
      // a plain bind first proves the port is free.
      auto probe = make_socket(ep, false);
      if (!probe) return fail(ErrorKind::Config, probe.error().detail + " (port in use?)");
    }
    std::vector<BoundSocket> group;
    for (size_t c = 0; c < copies; ++c) {
      auto fd = make_socket(ep, true);
      if (!fd) return tl::unexpected(fd.error());
      if (::listen(fd->get(), backlog) != 0) {
        return fail(ErrorKind::Config, "listen " + ep.to_string() + ": " + std::strerror(errno));
      }
      ep = local_endpoint(fd->get(), ep);  // port 0: later copies share the port the first one got
      group.push_back(BoundSocket{ep, std::move(*fd)});
    }
    out.push_back(std::move(group));
  }
  return out;
}

ListenerStats::ListenerStats(const std::string& listener, metrics::Registry& registry)
    : accepted(registry.counter_family("postern_connections_accepted_total", "TCP connections accepted", {"listener"})
                   .with({listener})),
      refused_access(registry
                         .counter_family("postern_connections_refused_total",
                                         "Connections refused before a session started", {"listener", "reason"})
                         .with({listener, refusal_name(Refusal::AccessDenied)})),
      refused_per_ip(registry.counter_family("postern_connections_refused_total", "", {"listener", "reason"})
                         .with({listener, refusal_name(Refusal::TooManyFromIp)})),
      refused_total(registry.counter_family("postern_connections_refused_total", "", {"listener", "reason"})
                        .with({listener, refusal_name(Refusal::TooManyConnections)})),
      refused_draining(registry.counter_family("postern_connections_refused_total", "", {"listener", "reason"})
                           .with({listener, refusal_name(Refusal::Draining)})),
      refused_admission_per_ip(registry.counter_family("postern_connections_refused_total", "", {"listener", "reason"})
                                   .with({listener, refusal_name(Refusal::AdmissionBusyFromIp)})),
      refused_admission_total(registry.counter_family("postern_connections_refused_total", "", {"listener", "reason"})
                                  .with({listener, refusal_name(Refusal::AdmissionBusy)})),
      refused_admission_timeout(registry.counter_family("postern_connections_refused_total", "", {"listener", "reason"})
                                    .with({listener, refusal_name(Refusal::AdmissionTimeout)})),
      active(registry.gauge_family("postern_connections_active", "Sessions open now", {"listener"}).with({listener})),
      admitting(registry
                    .gauge_family("postern_connections_admitting", "Connections waiting for the access check now",
                                  {"listener"})
                    .with({listener})),
      starttls_discarded(registry
                             .counter_family("postern_starttls_pipelined_discarded_total",
                                             "STARTTLS commands with plaintext pipelined behind them (dropped)",
                                             {"listener"})
                             .with({listener})) {
  auto& family = registry.counter_family("postern_connections_closed_total", "Sessions ended, by close reason",
                                         {"listener", "reason"});
  for (size_t r = 0; r < kCloseReasons; ++r) {
    closed[r] = &family.with({listener, close_reason_name(static_cast<CloseReason>(r))});
  }
}

std::string_view refusal_name(Refusal r) {
  switch (r) {
    case Refusal::AccessDenied: return "access_denied";
    case Refusal::TooManyFromIp: return "per_ip_limit";
    case Refusal::TooManyConnections: return "connection_limit";
    case Refusal::Draining: return "draining";
    case Refusal::AdmissionBusyFromIp: return "admission_per_ip_limit";
    case Refusal::AdmissionBusy: return "admission_limit";
    case Refusal::AdmissionTimeout: return "admission_timeout";
  }
  return "refused";
}

std::string ConnectionLimiter::key(const net::IpAddress& a) {
  auto b = a.bytes();
  return std::string(reinterpret_cast<const char*>(b.data()), a.is_v4() ? 4 : 8);
}

ConnectionLimiter::Verdict ConnectionLimiter::take(Counts& counts, const std::string& key, size_t max_total,
                                                      size_t max_per_ip) {
  if (max_total != 0 && counts.total >= max_total) return Verdict::TooManyConnections;
  auto& n = counts.per_ip[key];
  if (max_per_ip != 0 && n >= max_per_ip) {
    if (n == 0) counts.per_ip.erase(key);
    return Verdict::TooManyFromIp;
  }
  ++n;
  ++counts.total;
  return Verdict::Ok;
}

void ConnectionLimiter::give_back(Counts& counts, const std::string& key) {
  auto it = counts.per_ip.find(key);
  if (it == counts.per_ip.end()) return;
  if (--it->second == 0) counts.per_ip.erase(it);
  if (counts.total > 0) --counts.total;
}

ConnectionLimiter::Verdict ConnectionLimiter::acquire(const net::IpAddress& client) {
  std::lock_guard lock(mutex_);
  return take(sessions_, key(client), max_total_, max_per_ip_);
}

void ConnectionLimiter::release(const net::IpAddress& client) {
  std::lock_guard lock(mutex_);
  give_back(sessions_, key(client));
}

ConnectionLimiter::Verdict ConnectionLimiter::acquire_admission(const net::IpAddress& client, size_t max_total,
                                                                size_t max_per_ip) {
  std::lock_guard lock(mutex_);
  return take(admitting_, key(client), max_total, max_per_ip);
}

void ConnectionLimiter::release_admission(const net::IpAddress& client) {
  std::lock_guard lock(mutex_);
  give_back(admitting_, key(client));
}

size_t ConnectionLimiter::admitting() const {
  std::lock_guard lock(mutex_);
  return admitting_.total;
}

void ConnectionLimiter::set_limits(size_t max_total, size_t max_per_ip) {
  std::lock_guard lock(mutex_);
  max_total_ = max_total;
  max_per_ip_ = max_per_ip;
}

size_t ConnectionLimiter::total() const {
  std::lock_guard lock(mutex_);
  return sessions_.total;
}

Listener::Listener(ConnectionSet& connections, ListenerOptions options, BoundSocket socket,
                   std::shared_ptr<ConnectionLimiter> limiter, std::shared_ptr<ListenerStats> stats,
                   SessionFactory& factory, AdmissionCheck* admission)
    : connections_(connections),
      options_(std::move(options)),
      endpoint_(socket.endpoint),
      fd_(std::move(socket.fd)),
      limiter_(std::move(limiter)),
      stats_(std::move(stats)),
      factory_(factory),
      admission_(admission) {}

Result<void> Listener::start() {
  uv_tcp_init(connections_.loop(), handle_.get());
  handle_.set_initialized();
  handle_->data = this;
  if (int rc = uv_tcp_open(handle_.get(), fd_.get()); rc != 0) {
    return fail(ErrorKind::Config, "listener " + options_.name + ": " + uv_strerror(rc));
  }
  fd_.release();  // the handle owns it now
  int rc = uv_listen(handle_.stream(), options_.backlog, [](uv_stream_t* s, int status) {
    if (s->data != nullptr) static_cast<Listener*>(s->data)->on_connection(status);
  });
  if (rc != 0) return fail(ErrorKind::Config, "listen " + endpoint_.to_string() + ": " + uv_strerror(rc));
  log::info("runtime").phase("listen").event("listening").kv("listener", options_.name)
      .kv("address", endpoint_.to_string());
  return {};
}

void Listener::stop() {
  if (stopped_) return;
  stopped_ = true;
  handle_.close();
}

void Listener::on_connection(int status) {
  if (status < 0) {
    // EMFILE and friends: the backlog keeps the client until a descriptor frees up.
    log::warning("runtime").phase("accept").event("accept_failed").kv("listener", options_.name)
        .kv("reason", uv_strerror(status));
    return;
  }
  ConnectionInfo info;
  info.id = next_connection_id();
  info.listener = options_.name;
  info.service = options_.service;
  Connection& c = connections_.add(std::move(info), options_.limits);
  c.set_stats(stats_);
  uv_tcp_init(connections_.loop(), c.tcp());
  if (uv_accept(handle_.stream(), reinterpret_cast<uv_stream_t*>(c.tcp())) != 0) {
    c.abort(CloseReason::PeerReset);
    return;
  }
  sockaddr_storage ss;
  int len = sizeof ss;
  net::Endpoint peer, local;
  if (uv_tcp_getpeername(c.tcp(), reinterpret_cast<sockaddr*>(&ss), &len) == 0) {
    if (auto ep = net::Endpoint::from_sockaddr(reinterpret_cast<sockaddr*>(&ss))) peer = *ep;
  }
  len = sizeof ss;
  if (uv_tcp_getsockname(c.tcp(), reinterpret_cast<sockaddr*>(&ss), &len) == 0) {
    if (auto ep = net::Endpoint::from_sockaddr(reinterpret_cast<sockaddr*>(&ss))) local = *ep;
  }
  c.set_addresses(peer, local);
  uv_tcp_nodelay(c.tcp(), 1);
  stats_->accepted.inc();
  if (stopped_) {
    refuse(c, Refusal::Draining);
    return;
  }
  // The cheap cap before the expensive check: counted per address before any DNS is asked.
  const ConnectionLimits& limits = options_.limits;
  const net::IpAddress ip = c.info().peer.address;
  switch (limiter_->acquire_admission(ip, limits.max_admitting, limits.max_admitting_per_ip)) {
    case ConnectionLimiter::Verdict::TooManyFromIp: refuse(c, Refusal::AdmissionBusyFromIp); return;
    case ConnectionLimiter::Verdict::TooManyConnections: refuse(c, Refusal::AdmissionBusy); return;
    case ConnectionLimiter::Verdict::Ok: break;
  }
  auto slot = std::make_shared<AdmissionSlot>(limiter_, stats_, ip);
  if (admission_ == nullptr) {
    slot->release();
    admit(c, {});
    return;
  }
  c.set_on_closed([slot] { slot->release(); });  // drained while waiting
  c.set_admission_deadline(limits.admission_timeout, [this, &c, slot] {
    slot->release();
    refuse(c, Refusal::AdmissionTimeout);
  });
  admission_->check(c.info(), [this, &c, alive = c.alive(), slot](AdmissionCheck::Outcome outcome) {
    // Closed (drain) or refused at the deadline while DNS was answering: the answer comes too late.
    if (alive.expired() || c.state() != Connection::State::Admitting) return;
    slot->release();
    admit(c, std::move(outcome));
  });
}

void Listener::admit(Connection& c, AdmissionCheck::Outcome outcome) {
  if (!outcome.client_name.empty()) c.set_client_name(outcome.client_name);
  if (!outcome.allowed) {
    refuse(c, Refusal::AccessDenied, outcome.rule);
    return;
  }
  if (c.draining()) {
    refuse(c, Refusal::Draining);
    return;
  }
  switch (limiter_->acquire(c.info().peer.address)) {
    case ConnectionLimiter::Verdict::TooManyFromIp: refuse(c, Refusal::TooManyFromIp); return;
    case ConnectionLimiter::Verdict::TooManyConnections: refuse(c, Refusal::TooManyConnections); return;
    case ConnectionLimiter::Verdict::Ok: break;
  }
  stats_->active.inc();
  c.set_on_closed([limiter = limiter_, stats = stats_, ip = c.info().peer.address] {
    limiter->release(ip);
    stats->active.dec();
  });
  log::debug("runtime").session(c.info().id).client(c.info().peer.to_string()).phase("accept").event("accepted")
      .kv("listener", options_.name);
  c.open_session([this](Connection& conn) { return factory_.create(conn); });
}

void Listener::refuse(Connection& c, Refusal why, std::string_view rule) {
  switch (why) {
    case Refusal::AccessDenied: stats_->refused_access.inc(); break;
    case Refusal::TooManyFromIp: stats_->refused_per_ip.inc(); break;
    case Refusal::TooManyConnections: stats_->refused_total.inc(); break;
    case Refusal::Draining: stats_->refused_draining.inc(); break;
    case Refusal::AdmissionBusyFromIp: stats_->refused_admission_per_ip.inc(); break;
    case Refusal::AdmissionBusy: stats_->refused_admission_total.inc(); break;
    case Refusal::AdmissionTimeout: stats_->refused_admission_timeout.inc(); break;
  }
  auto line = log::notice("runtime");
  line.session(c.info().id).client(c.info().peer.to_string()).phase("accept").event("refused")
      .kv("listener", options_.name).kv("reason", refusal_name(why));
  if (!rule.empty()) line.kv("rule", rule);
  const ConnectionLimits& limits = options_.limits;
  if (why == Refusal::AdmissionBusyFromIp) line.kv("cap", limits.max_admitting_per_ip);
  if (why == Refusal::AdmissionBusy) line.kv("cap", limits.max_admitting);
  if (why == Refusal::AdmissionTimeout) {
    line.kv("timeout_ms", static_cast<int64_t>(limits.admission_timeout.count()));
  }
  c.refuse(factory_.refusal(why));
}

}  // namespace common::runtime
