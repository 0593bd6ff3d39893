// outbound.cpp: the connect path of outbound connections. A connection waits in the Admitting state
// while it connects (its admission deadline is the connect timeout), then opens its session the way
// an accepted one does, so everything past the connect is Connection's code, not a copy of it.
#include "common/runtime/outbound.hpp"

#include <sys/socket.h>

#include "common/log/log.hpp"

namespace common::runtime {
namespace {

struct Pending {
  uv_connect_t req{};
  OutboundFactory factory;
  ConnectFailed failed;
  std::weak_ptr<void> alive;
  Connection* connection = nullptr;
  std::string id;
  std::string remote;
  bool reported = false;  // the factory ran or the failure was told: nothing more is
};

// Tells the failure once; the caller then aborts the connection (the failure callback never sees it).
void report_failure(const std::shared_ptr<Pending>& p, std::string detail) {
  if (p->reported) return;
  p->reported = true;
  log::info("runtime").session(p->id).client(p->remote).phase("connect").event("connect_failed")
      .kv("reason", detail);
  ConnectFailed failed = std::move(p->failed);
  p->factory = nullptr;
  if (failed) failed(Error{ErrorKind::Connect, "connect to " + p->remote + ": " + detail});
}

std::string uv_error_text(int rc) { return std::string(uv_err_name(rc)) + " (" + uv_strerror(rc) + ")"; }

// Fails on the next loop turn: the caller of connect() hears nothing from inside the call.
void fail_later(Connection& c, const std::shared_ptr<Pending>& p, std::string detail) {
  c.set_admission_deadline(std::chrono::milliseconds(0), [&c, p, detail = std::move(detail)] {
    report_failure(p, detail);
    c.abort(CloseReason::Local);
  });
}

void on_connected(uv_connect_t* req, int status) {
  auto* holder = static_cast<std::shared_ptr<Pending>*>(req->data);
  std::shared_ptr<Pending> p = std::move(*holder);
  delete holder;
  // Cancelled (UV_ECANCELED) by the close after a timeout or a drain: already told.
  if (p->alive.expired() || p->reported) return;
  Connection& c = *p->connection;
  if (status < 0) {
    report_failure(p, uv_error_text(status));
    c.abort(CloseReason::Local);
    return;
  }
  sockaddr_storage ss;
  int len = sizeof ss;
  net::Endpoint peer = c.info().peer;
  net::Endpoint local;
  if (uv_tcp_getpeername(c.tcp(), reinterpret_cast<sockaddr*>(&ss), &len) == 0) {
    if (auto ep = net::Endpoint::from_sockaddr(reinterpret_cast<sockaddr*>(&ss))) peer = *ep;
  }
  len = sizeof ss;
  if (uv_tcp_getsockname(c.tcp(), reinterpret_cast<sockaddr*>(&ss), &len) == 0) {
    if (auto ep = net::Endpoint::from_sockaddr(reinterpret_cast<sockaddr*>(&ss))) local = *ep;
  }
  c.set_addresses(peer, local);
  uv_tcp_nodelay(c.tcp(), 1);
  p->reported = true;
  c.set_on_closed(nullptr);
  log::debug("runtime").session(p->id).client(p->remote).phase("connect").event("connected")
      .kv("local", local.to_string()).kv("name", c.info().listener);
  OutboundFactory factory = std::move(p->factory);
  p->failed = nullptr;
  c.open_session(factory);
}

}  // namespace

std::string connect(ConnectionSet& set, const ConnectOptions& options, OutboundFactory factory, ConnectFailed failed) {
  ConnectionInfo info;
  info.id = next_connection_id();
  info.listener = options.name;
  info.service = options.service;
  info.peer = options.remote;
  Connection& c = set.add(info, options.limits);
  uv_tcp_init(set.loop(), c.tcp());  // cannot fail without flags: the socket is made by bind/connect

  auto p = std::make_shared<Pending>();
  p->factory = std::move(factory);
  p->failed = std::move(failed);
  p->alive = c.alive();
  p->connection = &c;
  p->id = info.id;
  p->remote = options.remote.to_string();
  // A drain (or the set going away) while connecting ends the attempt: the caller must hear of it.
  c.set_on_closed([p] { report_failure(p, "closed before the connection was made"); });

  if (options.source) {
    net::Endpoint source{*options.source, 0};
    sockaddr_storage ss;
    source.to_sockaddr(ss);
    if (options.source->is_v4() != options.remote.address.is_v4()) {
      fail_later(c, p, "source address " + options.source->to_string() + " is not of the destination's family");
      return info.id;
    }
    if (int rc = uv_tcp_bind(c.tcp(), reinterpret_cast<const sockaddr*>(&ss), 0); rc != 0) {
      fail_later(c, p, "bind to " + options.source->to_string() + ": " + uv_error_text(rc));
      return info.id;
    }
  }
  sockaddr_storage ss;
  options.remote.to_sockaddr(ss);
  p->req.data = new std::shared_ptr<Pending>(p);
  if (int rc = uv_tcp_connect(&p->req, c.tcp(), reinterpret_cast<const sockaddr*>(&ss), on_connected); rc != 0) {
    delete static_cast<std::shared_ptr<Pending>*>(p->req.data);
    fail_later(c, p, uv_error_text(rc));
    return info.id;
  }
  const auto timeout = options.connect_timeout;
  c.set_admission_deadline(timeout, [&c, p, timeout] {
    report_failure(p, "timed out after " + std::to_string(timeout.count()) + " ms");
    c.abort(CloseReason::Timeout);
  });
  return info.id;
}

}  // namespace common::runtime
