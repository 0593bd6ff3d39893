// connection.hpp: one accepted TCP connection and the Session that speaks its protocol. The connection
// owns the socket, the timers, the bounded write queue and the optional transform (TLS); the session
// only sees bytes and events. Sessions never outlive their connection.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>

#include <uv.h>

#include "common/net/address.hpp"
#include "common/runtime/timer.hpp"
#include "common/runtime/transform.hpp"

namespace common::runtime {

class Connection;
class ConnectionSet;
struct ListenerStats;

struct ConnectionLimits {
  std::chrono::milliseconds idle_timeout{std::chrono::minutes(5)};      // no bytes from the client
  std::chrono::milliseconds session_timeout{std::chrono::hours(24)};    // whole connection, 0 = none
  std::chrono::milliseconds close_linger{std::chrono::seconds(2)};      // flushing and lingering on close
  size_t write_high_water = 256 * 1024;  // stop reading above this many queued output bytes
  size_t write_low_water = 64 * 1024;    // resume below
  // Admission (the access check, with its reverse DNS) comes before the per-IP and total limits,
  // so a connection waiting for it counts against neither: without these caps one address could
  // hold as many sockets as descriptors allow while DNS is slow. The default outlasts the resolver's
  // own give-up time (two lookups of 2 s + 4 s) so a slow but working DNS still decides.
  std::chrono::milliseconds admission_timeout{std::chrono::seconds(15)};
  size_t max_admitting = 256;       // waiting at once per listener, all loops together; 0 = no cap
  size_t max_admitting_per_ip = 8;  // of those, per IPv4 address or IPv6 /64; 0 = no cap
};

struct ConnectionInfo {
  std::string id;          // unique per process, for logs (session=)
  std::string listener;    // listener name
  std::string service;     // access-filter service name
  net::Endpoint peer;
  net::Endpoint local;
  std::string client_name; // forward-confirmed reverse name when the access check looked it up
};

enum class TimeoutKind { Idle, Session };
// Truncated: the stream ended under a transform without its clean end (for TLS, a FIN with no
// close_notify, perhaps with half a record held), so what the session got may be cut short.
enum class CloseReason { Local, PeerClosed, PeerReset, Timeout, Drain, TransformError, Overflow, Truncated };
inline constexpr size_t kCloseReasons = 8;
std::string_view close_reason_name(CloseReason);

class Session {
 public:
  virtual ~Session() = default;
  // After admission; the session usually writes its greeting here.
  virtual void on_open() {}
  // Plaintext bytes, in order. Called only while the connection is open.
  virtual void on_data(std::string_view bytes) = 0;
  // The client half-closed in plaintext, or ended TLS with close_notify. Default: close.
  virtual void on_peer_closed();
  // The TCP stream ended under TLS without close_notify. Anyone on the path can inject a FIN, so
  // a message, a command or a literal that was in progress is cut short, not complete: never
  // commit, deliver or act on it. Default: abort (queued output is dropped).
  virtual void on_truncated();
  // The transform (TLS) finished its handshake: facts() now holds the client certificate and the
  // SNI name. Once per connection, before any byte it decoded is delivered. A protocol whose
  // greeting depends on the certificate (IMAPS PREAUTH, RFC 9051 §7.1.4) greets here.
  virtual void on_transform_ready() {}
  // Default: close without a word. Protocols write their timeout reply, then close.
  virtual void on_timeout(TimeoutKind kind);
  // The daemon is stopping (SIGTERM): finish the exchange in progress and close. Default: close.
  virtual void on_drain();
  // The write queue fell below the low-water mark after being above the high one.
  virtual void on_writable() {}
  // Last call; the connection closes right after.
  virtual void on_closed(CloseReason) {}

 protected:
  explicit Session(Connection& connection) : connection_(connection) {}
  Connection& connection() { return connection_; }

 private:
  Connection& connection_;
};

// A session whose protocol switches to TLS mid-stream: SMTP and LMTP STARTTLS (RFC 3207), IMAP
// STARTTLS and POP3 STLS (RFC 2595), ManageSieve STARTTLS (RFC 5804). start_tls() is the only way
// to start TLS on an open connection, and a session cannot have it without forget_plaintext().
class StartTlsSession : public Session {
 protected:
  explicit StartTlsSession(Connection& connection) : Session(connection) {}

  // Call from the command's handler in place of writing its reply, and handle no further input in
  // that call. In this order it
  //  1. writes `plaintext_reply` in plaintext (the client starts its handshake once it reads it);
  //  2. calls forget_plaintext(), then logs and counts the bytes it dropped. Anyone on the path can
  //     append commands to the client's STARTTLS in the same segment; run after the handshake they
  //     would count as the client's, protected and authenticated (CVE-2011-0411);
  //  3. installs `transform`: every byte read from now on goes through it.
  // A client (outbound SMTP/LMTP) calls it with an empty reply once it has read the server's 220:
  // then what the server sent behind the 220 is what is dropped, and the transform's start()
  // sends the ClientHello.
  // False, with nothing written or changed, when TLS is already on, the connection is not open or
  // `transform` is null; the session answers as its protocol says (SMTP: 503, IMAP: BAD). False
  // too when writing the reply failed: the connection is then closing.
  bool start_tls(std::string_view plaintext_reply, std::unique_ptr<Transform> transform);

  // Drop every input byte the session holds (framer, parser: what was pipelined behind the command)
  // and return how many; then forget everything learnt in plaintext, as RFC 3207 §4.2 demands ("the
  // server MUST discard any knowledge obtained from the client ... not obtained from the TLS
  // negotiation itself"): the EHLO/LHLO name and the extensions chosen, capabilities, SASL state,
  // a transaction in progress. Limits that count errors or commands should keep counting.
  virtual size_t forget_plaintext() = 0;
};

class Connection {
 public:
  enum class State { Admitting, Open, Closing, Closed };

  Connection(ConnectionSet& set, ConnectionInfo info, ConnectionLimits limits);
  ~Connection();
  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;

  // --- for the session ---
  const ConnectionInfo& info() const { return info_; }
  uv_loop_t* loop() const;
  State state() const { return state_; }
  bool open() const { return state_ == State::Open; }
  // Queues bytes (through the transform, if any). Never blocks; see write_blocked().
  void write(std::string_view bytes);
  // True while queued output is above the high-water mark; reading is paused meanwhile.
  bool write_blocked() const { return write_blocked_; }
  size_t queued_bytes() const { return in_flight_ + pending_.size(); }
  // Graceful: no more reads, flush what is queued (with the transform's close), then close.
  void close(CloseReason reason = CloseReason::Local);
  // Immediate close; queued output is dropped.
  void abort(CloseReason reason);
  // Stop or resume delivering bytes (a session waiting for async work stops reading).
  void pause_reading();
  void resume_reading();
  void set_idle_timeout(std::chrono::milliseconds t);
  // Implicit TLS (IMAPS, POP3S, submissions): call from SessionFactory::create, before the session
  // exists and before any byte is read, so nothing in plaintext ever reaches it. Any other use is a
  // bug that would leave a session with plaintext it took for protected, so the connection is
  // aborted (and it is logged). TLS mid-stream goes through StartTlsSession::start_tls.
  void start_implicit_tls(std::unique_ptr<Transform> transform);
  Transform* transform() const { return transform_.get(); }
  bool draining() const { return draining_; }
  // Expires when the connection closes: async work (DNS, workers, gRPC) checks it before touching us.
  std::weak_ptr<void> alive() const { return alive_; }

  // --- for the listener ---
  uv_tcp_t* tcp() { return &tcp_; }
  void set_addresses(const net::Endpoint& peer, const net::Endpoint& local) {
    info_.peer = peer;
    info_.local = local;
  }
  void set_client_name(std::string name) { info_.client_name = std::move(name); }
  void set_on_closed(std::function<void()> fn) { on_closed_ = std::move(fn); }
  // The listener's counters: closes by reason (of connections that had a session), STARTTLS discards.
  void set_stats(std::shared_ptr<ListenerStats> stats) { stats_ = std::move(stats); }
  // Admission passed: create the session and start reading.
  void open_session(const std::function<std::unique_ptr<Session>(Connection&)>& factory);
  // Admission failed: write the refusal (may be empty) and close.
  void refuse(std::string_view message);
  // Bounds the admission: `fn` runs after `after` unless the connection opens or closes first.
  void set_admission_deadline(std::chrono::milliseconds after, std::function<void()> fn);
  void begin_drain();

 private:
  friend class ConnectionSet;
  friend class StartTlsSession;
  void start_reading();
  void stop_reading();
  void on_read(ssize_t nread, const uv_buf_t* buf);
  void deliver(std::string_view plain);
  void truncated();
  void start_transform();
  void queue_wire(std::string_view wire);
  void flush();
  void on_write_done(int status);
  void update_backpressure();
  void begin_shutdown();
  void finish_close();
  void arm_idle();

  ConnectionSet& set_;
  ConnectionInfo info_;
  ConnectionLimits limits_;
  uv_tcp_t tcp_{};
  State state_ = State::Admitting;
  std::unique_ptr<Session> session_;
  std::unique_ptr<Transform> transform_;
  Timer idle_timer_;
  Timer session_timer_;
  std::string pending_;      // output not yet handed to libuv
  std::string in_flight_buf_;
  size_t in_flight_ = 0;
  uv_write_t write_req_{};
  uv_shutdown_t shutdown_req_{};
  bool shutdown_sent_ = false;
  bool reading_ = false;
  bool paused_by_session_ = false;
  bool write_blocked_ = false;
  bool draining_ = false;
  bool bytes_read_ = false;  // once true, implicit TLS can no longer start
  bool transform_ready_ = false;  // on_transform_ready() was called
  std::shared_ptr<void> alive_ = std::make_shared<int>(0);
  CloseReason close_reason_ = CloseReason::Local;
  std::function<void()> on_closed_;
  std::shared_ptr<ListenerStats> stats_;
};

// All connections of one loop: owns them until libuv has closed their sockets.
class ConnectionSet {
 public:
  explicit ConnectionSet(uv_loop_t* loop);
  ~ConnectionSet();
  uv_loop_t* loop() const { return loop_; }
  Connection& add(ConnectionInfo info, ConnectionLimits limits);
  size_t size() const { return connections_.size(); }
  // Asks every session to finish (SIGTERM).
  void drain_all();
  // Closes every connection now.
  void abort_all();
  // Called when the set becomes empty (used by the drain).
  void set_on_empty(std::function<void()> fn) { on_empty_ = std::move(fn); }

 private:
  friend class Connection;
  void remove(Connection* c);

  uv_loop_t* loop_;
  std::unordered_map<Connection*, std::unique_ptr<Connection>> connections_;
  std::function<void()> on_empty_;
};

// Process-unique, short, hex connection ids ("7f3a01").
std::string next_connection_id();

}  // namespace common::runtime
