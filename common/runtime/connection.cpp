// connection.cpp: socket I/O of one connection: reads into a per-thread buffer, writes through a
// single in-flight uv_write with everything else coalesced behind it, and a lingering close so a
// final reply is not lost to a TCP reset. An idle connection holds no I/O buffer of its own.
#include "common/runtime/connection.hpp"

#include <array>
#include <atomic>
#include <cstdio>
#include <random>

#include "common/log/log.hpp"
#include "common/runtime/listener.hpp"

namespace common::runtime {
namespace {

constexpr size_t kReadBufferSize = 64 * 1024;
thread_local std::array<char, kReadBufferSize> t_read_buffer;

Connection* from_handle(uv_handle_t* h) { return static_cast<Connection*>(h->data); }

}  // namespace

static_assert(static_cast<size_t>(CloseReason::Truncated) + 1 == kCloseReasons, "kCloseReasons counts CloseReason");

std::string_view close_reason_name(CloseReason r) {
  switch (r) {
    case CloseReason::Local: return "local";
    case CloseReason::PeerClosed: return "peer_closed";
    case CloseReason::PeerReset: return "peer_reset";
    case CloseReason::Timeout: return "timeout";
    case CloseReason::Drain: return "drain";
    case CloseReason::TransformError: return "tls_error";
    case CloseReason::Overflow: return "overflow";
    case CloseReason::Truncated: return "truncated";
  }
  return "local";
}

std::string next_connection_id() {
  static std::atomic<uint64_t> counter{std::random_device{}() & 0xffffffu};
  uint64_t n = counter.fetch_add(1, std::memory_order_relaxed);
  char buf[24];
  std::snprintf(buf, sizeof buf, "%08llx", static_cast<unsigned long long>(n));
  return buf;
}

void Session::on_peer_closed() { connection_.close(CloseReason::PeerClosed); }
void Session::on_truncated() { connection_.abort(CloseReason::Truncated); }
void Session::on_timeout(TimeoutKind) { connection_.close(CloseReason::Timeout); }
void Session::on_drain() { connection_.close(CloseReason::Drain); }

Connection::Connection(ConnectionSet& set, ConnectionInfo info, ConnectionLimits limits)
    : set_(set), info_(std::move(info)), limits_(limits), idle_timer_(set.loop()), session_timer_(set.loop()) {
  tcp_.data = this;
}

Connection::~Connection() = default;

uv_loop_t* Connection::loop() const { return set_.loop(); }

void Connection::open_session(const std::function<std::unique_ptr<Session>(Connection&)>& factory) {
  if (state_ != State::Admitting) return;
  state_ = State::Open;
  session_ = factory(*this);
  if (state_ != State::Open) return;  // the factory refused it (start_implicit_tls misused)
  arm_idle();
  if (limits_.session_timeout.count() > 0) {
    session_timer_.start(limits_.session_timeout, [this] {
      if (state_ == State::Open && session_) session_->on_timeout(TimeoutKind::Session);
    });
  }
  session_->on_open();
  if (state_ == State::Open && !paused_by_session_ && !write_blocked_) start_reading();
}

void Connection::refuse(std::string_view message) {
  if (state_ != State::Admitting) return;
  if (!message.empty()) queue_wire(message);
  state_ = State::Open;  // so close() takes the graceful path
  close(CloseReason::Local);
}

void Connection::set_admission_deadline(std::chrono::milliseconds after, std::function<void()> fn) {
  if (state_ != State::Admitting) return;
  // The idle timer is free until the session opens (arm_idle) or the close lingers: both replace it.
  idle_timer_.start(after, std::move(fn));
}

void Connection::arm_idle() {
  if (state_ != State::Open) return;
  idle_timer_.start(limits_.idle_timeout, [this] {
    if (state_ == State::Open && session_) session_->on_timeout(TimeoutKind::Idle);
  });
}

void Connection::set_idle_timeout(std::chrono::milliseconds t) {
  limits_.idle_timeout = t;
  arm_idle();
}

void Connection::start_reading() {
  if (reading_) return;
  int rc = uv_read_start(
      reinterpret_cast<uv_stream_t*>(&tcp_),
      [](uv_handle_t*, size_t, uv_buf_t* buf) { *buf = uv_buf_init(t_read_buffer.data(), kReadBufferSize); },
      [](uv_stream_t* s, ssize_t nread, const uv_buf_t* buf) {
        from_handle(reinterpret_cast<uv_handle_t*>(s))->on_read(nread, buf);
      });
  reading_ = rc == 0;
}

void Connection::stop_reading() {
  if (!reading_) return;
  uv_read_stop(reinterpret_cast<uv_stream_t*>(&tcp_));
  reading_ = false;
}

void Connection::pause_reading() {
  paused_by_session_ = true;
  stop_reading();
}

void Connection::resume_reading() {
  paused_by_session_ = false;
  if (state_ == State::Open && !write_blocked_) start_reading();
}

void Connection::on_read(ssize_t nread, const uv_buf_t* buf) {
  if (nread == 0) return;  // EAGAIN
  if (state_ == State::Closing) {
    // Lingering after our FIN: read and drop until the peer closes, so our last reply is not reset.
    if (nread < 0) finish_close();
    return;
  }
  if (state_ != State::Open) return;
  if (nread < 0) {
    if (nread == UV_EOF) {
      stop_reading();
      if (transform_ && !transform_->peer_closed()) {
        truncated();
      } else {
        session_->on_peer_closed();
      }
    } else {
      abort(CloseReason::PeerReset);
    }
    return;
  }
  arm_idle();
  bytes_read_ = true;
  std::string_view bytes(buf->base, static_cast<size_t>(nread));
  if (!transform_) {
    deliver(bytes);
    return;
  }
  std::string plain;
  std::string wire;
  auto rc = transform_->decode(bytes, plain, wire);
  if (!wire.empty()) queue_wire(wire);
  if (!transform_ready_ && rc && session_ && transform_->facts() != nullptr && transform_->facts()->handshake_done) {
    transform_ready_ = true;
    session_->on_transform_ready();
    if (state_ != State::Open) return;
  }
  if (!plain.empty()) deliver(plain);
  if (!rc) {
    // The transform logs the cause (for TLS, with the NSS error name); this line ties it to the client.
    log::debug("runtime").session(info_.id).client(info_.peer.to_string()).phase("tls").event("transform_error")
        .kv("reason", rc.error().detail);
    close(CloseReason::TransformError);
    return;
  }
  if (state_ == State::Open && transform_->peer_closed()) {
    session_->on_peer_closed();
  }
}

void Connection::truncated() {
  const SecurityFacts* facts = transform_->facts();
  log::info("runtime").session(info_.id).client(info_.peer.to_string()).phase(facts ? "data" : "handshake")
      .event("truncated").kv("reason", "TCP end without close_notify")
      .kv("buffered", transform_->buffered_input());
  session_->on_truncated();
}

void Connection::deliver(std::string_view plain) {
  if (state_ != State::Open || !session_) return;
  session_->on_data(plain);
}

void Connection::write(std::string_view bytes) {
  if (state_ != State::Open && state_ != State::Admitting) return;
  if (bytes.empty()) return;
  if (!transform_) {
    queue_wire(bytes);
    return;
  }
  std::string wire;
  auto rc = transform_->encode(bytes, wire);
  queue_wire(wire);
  if (!rc) abort(CloseReason::TransformError);
}

void Connection::start_implicit_tls(std::unique_ptr<Transform> transform) {
  if (session_ || transform_ || bytes_read_ || !transform || (state_ != State::Open && state_ != State::Admitting)) {
    log::error("runtime").session(info_.id).client(info_.peer.to_string()).phase("tls").event("tls_start_refused")
        .kv("reason", "implicit TLS asked for after the session started, twice, or without a transform");
    abort(CloseReason::TransformError);
    return;
  }
  transform_ = std::move(transform);
  start_transform();
}

void Connection::start_transform() {
  std::string wire;
  auto rc = transform_->start(wire);
  queue_wire(wire);
  if (!rc) {
    log::debug("runtime").session(info_.id).client(info_.peer.to_string()).phase("tls").event("transform_error")
        .kv("reason", rc.error().detail);
    abort(CloseReason::TransformError);
  }
}

bool StartTlsSession::start_tls(std::string_view plaintext_reply, std::unique_ptr<Transform> transform) {
  Connection& c = connection();
  if (!c.open() || c.transform_ || !transform) {
    log::warning("runtime").session(c.info_.id).client(c.info_.peer.to_string()).phase("starttls")
        .event("tls_start_refused")
        .kv("reason", c.transform_ ? "TLS is already on" : !transform ? "no TLS transform" : "connection not open");
    return false;
  }
  c.write(plaintext_reply);  // no transform yet: plaintext
  size_t dropped = forget_plaintext();
  if (dropped > 0) {
    log::notice("runtime").session(c.info_.id).client(c.info_.peer.to_string()).phase("starttls")
        .event("pipelined_plaintext_discarded").kv("bytes", dropped);
    if (c.stats_) c.stats_->starttls_discarded.inc();
  }
  if (!c.open()) return false;  // the reply's write failed: nothing left to protect
  c.transform_ = std::move(transform);
  c.start_transform();  // a TLS client sends its ClientHello now
  return c.open();
}

void Connection::queue_wire(std::string_view wire) {
  if (wire.empty()) return;
  pending_.append(wire);
  flush();
  update_backpressure();
}

void Connection::flush() {
  if (in_flight_ != 0 || pending_.empty() || state_ == State::Closed) return;
  in_flight_buf_.swap(pending_);
  pending_.clear();
  in_flight_ = in_flight_buf_.size();
  uv_buf_t buf = uv_buf_init(in_flight_buf_.data(), static_cast<unsigned>(in_flight_buf_.size()));
  write_req_.data = this;
  int rc = uv_write(&write_req_, reinterpret_cast<uv_stream_t*>(&tcp_), &buf, 1, [](uv_write_t* req, int status) {
    static_cast<Connection*>(req->data)->on_write_done(status);
  });
  if (rc != 0) {
    in_flight_ = 0;
    abort(CloseReason::PeerReset);
  }
}

void Connection::on_write_done(int status) {
  in_flight_ = 0;
  // Give the storage back rather than clear(): flush() swaps it into pending_, so keeping it would
  // leave every idle connection holding the capacity of its largest burst (up to the high-water
  // mark) twice over. One allocation per write burst is cheap next to the write itself.
  std::string().swap(in_flight_buf_);
  if (state_ == State::Closed) return;  // cancelled by uv_close
  if (status < 0) {
    abort(CloseReason::PeerReset);
    return;
  }
  // A client reading a large response slowly is not idle; one that reads nothing stalls this too.
  if (state_ == State::Open) arm_idle();
  flush();
  update_backpressure();
  if (state_ == State::Closing && queued_bytes() == 0 && !shutdown_sent_) begin_shutdown();
}

void Connection::update_backpressure() {
  size_t queued = queued_bytes();
  if (!write_blocked_ && queued > limits_.write_high_water) {
    write_blocked_ = true;
    stop_reading();
  } else if (write_blocked_ && queued < limits_.write_low_water) {
    write_blocked_ = false;
    if (state_ == State::Open) {
      if (!paused_by_session_) start_reading();
      session_->on_writable();
    }
  }
}

void Connection::close(CloseReason reason) {
  if (state_ == State::Closing || state_ == State::Closed) return;
  bool had_session = session_ != nullptr;
  state_ = State::Closing;
  close_reason_ = reason;
  stop_reading();
  session_timer_.stop();
  idle_timer_.start(limits_.close_linger, [this] { finish_close(); });
  if (transform_ && reason != CloseReason::TransformError) {
    std::string wire;
    transform_->close(wire);
    pending_.append(wire);
    flush();
  }
  if (had_session) session_->on_closed(reason);
  if (queued_bytes() == 0) begin_shutdown();
}

void Connection::begin_shutdown() {
  if (shutdown_sent_ || state_ != State::Closing) return;
  shutdown_sent_ = true;
  shutdown_req_.data = this;
  int rc = uv_shutdown(&shutdown_req_, reinterpret_cast<uv_stream_t*>(&tcp_), [](uv_shutdown_t* req, int status) {
    auto* self = static_cast<Connection*>(req->data);
    if (self->state_ == State::Closed) return;
    if (status < 0) {
      self->finish_close();
      return;
    }
    self->start_reading();  // discard until EOF; the linger timer bounds it
  });
  if (rc != 0) finish_close();
}

void Connection::abort(CloseReason reason) {
  if (state_ == State::Closed) return;
  bool was_open = state_ == State::Open;
  close_reason_ = reason;
  state_ = State::Closing;
  if (was_open && session_) session_->on_closed(reason);
  pending_.clear();
  finish_close();
}

void Connection::finish_close() {
  if (state_ == State::Closed) return;
  state_ = State::Closed;
  alive_.reset();
  if (stats_ && session_) stats_->closed[static_cast<size_t>(close_reason_)]->inc();
  idle_timer_.stop();
  session_timer_.stop();
  stop_reading();
  if (on_closed_) on_closed_();
  uv_close(reinterpret_cast<uv_handle_t*>(&tcp_), [](uv_handle_t* h) {
    auto* self = from_handle(h);
    self->set_.remove(self);
  });
}

void Connection::begin_drain() {
  draining_ = true;
  if (state_ == State::Open && session_) {
    session_->on_drain();
  } else if (state_ == State::Admitting) {
    abort(CloseReason::Drain);
  }
}

ConnectionSet::ConnectionSet(uv_loop_t* loop) : loop_(loop) {}

ConnectionSet::~ConnectionSet() {
  abort_all();
  while (!connections_.empty()) uv_run(loop_, UV_RUN_NOWAIT);
}

Connection& ConnectionSet::add(ConnectionInfo info, ConnectionLimits limits) {
  auto c = std::make_unique<Connection>(*this, std::move(info), limits);
  Connection* raw = c.get();
  connections_.emplace(raw, std::move(c));
  return *raw;
}

void ConnectionSet::remove(Connection* c) {
  connections_.erase(c);
  if (connections_.empty() && on_empty_) on_empty_();
}

void ConnectionSet::drain_all() {
  std::vector<Connection*> all;
  all.reserve(connections_.size());
  for (auto& [raw, owned] : connections_) all.push_back(raw);
  for (Connection* c : all) c->begin_drain();
}

void ConnectionSet::abort_all() {
  std::vector<Connection*> all;
  for (auto& [raw, owned] : connections_) all.push_back(raw);
  for (Connection* c : all) c->abort(CloseReason::Drain);
}

}  // namespace common::runtime
