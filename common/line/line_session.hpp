// line_session.hpp: the session base of every line protocol (LMTP, SMTP, IMAP, POP3) over the
// runtime's LineFramer: commands through a table (dispatcher.hpp), suspend/resume around async
// work, raw and byte modes (DATA, BDAT, literals), batched replies, the error limit, the log phase,
// timeouts, drain and the one STARTTLS path.
//
// Usage (a protocol derives, gives its table, and answers the refusals in its own words):
//
//   enum class LmtpState { Greeting, Ready, Mail, Rcpt, Data };
//   class LmtpSession final : public common::line::LineSession {
//    public:
//     LmtpSession(Connection& c, Options o) : LineSession(c, kCommands, o.line) {}
//     void on_open() override { set_phase("greeting"); reply("220 store LMTP\r\n"); }
//    private:
//     void lhlo(const common::line::Request& r) { set_state(LmtpState::Ready); reply(...); }
//     void rcpt(const common::line::Request& r) {
//       set_phase("rcpt");
//       suspend();  // no further pipelined command runs until the lookup answers
//       authclient_.lookup(r.args, [this, alive = connection().alive()](auto result) {
//         if (alive.expired()) return;  // the connection closed meanwhile: `this` is gone
//         reply(result ? "250 2.1.5 ok\r\n" : "550 5.1.1 unknown\r\n");
//         resume();  // the next buffered command, in order; replies go out together
//       });
//     }
//     void data(const common::line::Request&) { reply("354 go ahead\r\n"); set_raw(true); }
//     void on_raw_line(const common::runtime::LineFrame& f) override {
//       if (f.text == ".") { set_raw(false); ... commit, suspend(), reply per recipient, resume() }
//     }
//     void bdat(const common::line::Request& r) { expect_bytes(size); }  // chunks to on_bytes()
//     void on_refused(common::line::Outcome o, const common::line::Request& r) override {
//       reply(o == Outcome::WrongState ? "503 5.5.1 bad sequence\r\n" : "500 5.5.2 unknown\r\n");
//     }
//     void on_line_too_long(size_t) override { reply("500 5.5.2 line too long\r\n"); }
//     void on_too_many_errors() override { reply("421 4.7.0 too many errors\r\n"); }
//     void on_forget_plaintext() override { lhlo_name_.clear(); set_state(LmtpState::Greeting); }
//     static constexpr common::line::LineSession::Entry kCommands[] = {
//       {"LHLO", handler<&LmtpSession::lhlo>, in_states(LmtpState::Greeting, LmtpState::Ready),
//        common::line::PreTls | common::line::LastInPipeline | common::line::NeedsArguments},
//       {"RCPT", handler<&LmtpSession::rcpt>, in_states(LmtpState::Mail, LmtpState::Rcpt),
//        common::line::NeedsArguments},
//       ...};
//   };
//
// Multi-line SMTP/LMTP replies ("250-first", "250 last", an enhanced code on each line) come from
// common::smtp::render_reply; IMAP and POP3 write their own shapes. Either way through reply().
//
// IMAP literals: the handler sees "a1 APPEND INBOX {5}", calls expect_bytes(5) and set_raw(true):
// the literal comes to on_bytes(), then the rest of the command line to on_raw_line().
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "common/line/dispatcher.hpp"
#include "common/log/log.hpp"
#include "common/runtime/connection.hpp"
#include "common/runtime/line_framer.hpp"

namespace common::line {

class LineSession;

// What a handler gets. Views into the framer: valid during the handler call only, so a handler
// that suspends copies what it needs.
struct Request {
  std::string_view tag;   // tagged protocols (IMAP)
  std::string_view verb;  // as sent
  std::string_view args;  // the unparsed argument text
  std::string_view line;  // the whole line, without its ending
  bool has_args = false;
  bool bare_lf = false;   // ended by LF alone (RFC 5321 §2.3.8 forbids it; the protocol decides)
  uint32_t flags = 0;     // the entry's CommandFlags (zero for refusals of unknown verbs)
};

struct LineSessionOptions {
  std::string component = "line";  // log component: "lmtp", "smtpd", "imap", "pop3"
  // Longest line any mode reads, without CRLF; also the framer's bound. RFC 5321 §4.5.3.1.6: a
  // text line is at most 1000 octets with its CRLF.
  size_t max_line = 998;
  // Longest command line (command mode only); 0 = max_line. RFC 5321 §4.5.3.1.4: 512 with CRLF.
  size_t max_command_line = 0;
  // While suspended the framer keeps what the client pipelines; past this many bytes reading
  // pauses, so a client cannot make us buffer without bound while authserv or the disk answers.
  size_t max_buffered = 64 * 1024;
  bool tagged = false;        // IMAP
  bool tls_required = false;  // refuse every command without PreTls until TLS is on
  ErrorLimits errors;
};

class LineSession : public runtime::StartTlsSession {
 public:
  using Handler = void (*)(LineSession&, const Request&);
  using Entry = Command<Handler>;

  // Calls a member handler of the derived class: {"NOOP", handler<&ImapSession::noop>, ...}.
  template <auto Fn>
  static void call(LineSession& s, const Request& r);
  template <auto Fn>
  static constexpr Handler handler = &call<Fn>;

  // Calls resume() when the connection is still there; for callbacks of async work that runs on
  // the connection's loop (authserv, the commit writer's completion).
  class Resumer {
   public:
    void operator()() const;

   private:
    friend class LineSession;
    Resumer(std::weak_ptr<void> alive, LineSession* session) : alive_(std::move(alive)), session_(session) {}
    std::weak_ptr<void> alive_;
    LineSession* session_;
  };

  void on_data(std::string_view bytes) final;
  void on_writable() final;
  // A client may half-close right after its last pipelined command ("...QUIT" then FIN): what it
  // sent is still answered, then the connection closes.
  void on_peer_closed() override;
  void on_timeout(runtime::TimeoutKind kind) final;
  // Honoured between commands: a suspended command, a DATA or a literal in progress ends first.
  void on_drain() final;
  // Drops the framer's bytes and leaves raw and byte mode, then on_forget_plaintext() forgets the
  // protocol's own state. Final, so no protocol can keep pipelined plaintext by forgetting the
  // framer: commands injected behind STARTTLS would otherwise run after the handshake as if the
  // client had sent them protected (CVE-2011-0411). The error count is kept.
  size_t forget_plaintext() final;

 protected:
  LineSession(runtime::Connection& connection, std::span<const Entry> table, LineSessionOptions options);

  // --- the protocol's words ---
  // A line the table refused (every outcome but Run); it counted one error already.
  virtual void on_refused(Outcome outcome, const Request& request) = 0;
  // A line over the limit (dropped up to its LF). In command mode it counted one error already;
  // in raw mode it did not (a DATA with a long line fails once, at its end, as the protocol says).
  virtual void on_line_too_long(size_t length) = 0;
  // The error limit was reached: write the reply (SMTP 421 4.7.0, IMAP BYE); the base closes.
  virtual void on_too_many_errors() = 0;
  // A LastInPipeline command with `buffered` bytes behind it. Logged once per session by the base.
  // True runs the command anyway (the default); false skips it (the hook has replied and maybe closed).
  virtual bool on_improper_pipelining(const Request& request, size_t buffered);
  // Raw mode: each line, in order (DATA text, the rest of an IMAP command after a literal).
  virtual void on_raw_line(const runtime::LineFrame& line);
  // Byte mode: the requested bytes as they arrive; `last` on the final chunk.
  virtual void on_bytes(std::string_view chunk, bool last);
  // Written before the connection closes on a timeout or a drain; empty: close without a word.
  virtual std::string timeout_reply(runtime::TimeoutKind kind);
  virtual std::string drain_reply();
  // RFC 3207 §4.2: forget what was learnt in plaintext (HELO name, extensions, SASL state, the
  // transaction). The framer is already empty.
  virtual void on_forget_plaintext() {}

  // --- tools ---
  // Queues a reply. Replies to a pipelined group go out as one write when the group is done, the
  // session suspends or more than a TLS record's worth is queued: RFC 2920 §3.2, a server flushes
  // when it would otherwise wait. Outside the pump (a callback) a reply is written at once.
  // Always reply through here, not connection().write(), or replies could overtake each other.
  void reply(std::string_view text);
  void flush_replies();
  // Flushes the replies, then closes gracefully.
  void close_session(runtime::CloseReason reason = runtime::CloseReason::Local);
  // The only STARTTLS path, as StartTlsSession::start_tls (which this hides): the queued replies
  // go first, in plaintext, then the plaintext reply; what was pipelined behind is dropped.
  bool start_tls(std::string_view plaintext_reply, std::unique_ptr<runtime::Transform> transform);

  // Stops running commands after this handler until resume(); reading pauses once max_buffered
  // bytes wait in the framer.
  void suspend();
  // Runs the next buffered command, in order. Safe to call from the handler itself (work that
  // finished at once) and on a closing connection (nothing happens). Only on the loop thread;
  // from a callback that may outlive the connection, check connection().alive() or use resumer().
  void resume();
  Resumer resumer() { return Resumer(connection().alive(), this); }
  bool suspended() const { return suspended_; }

  // Raw mode: lines go to on_raw_line() instead of the table.
  void set_raw(bool on) { raw_ = on; }
  bool raw() const { return raw_; }
  // The next `count` bytes go to on_bytes(), before any further line; 0 gives one empty last chunk.
  void expect_bytes(size_t count);
  bool in_byte_mode() const { return framer_.in_byte_mode() || empty_chunk_pending_; }

  // What the session is doing, for the phase= key of every line it logs.
  void set_phase(std::string_view phase) { phase_.assign(phase); }
  const std::string& phase() const { return phase_; }

  template <class E>
  void set_state(E e) {
    static_assert(sizeof(E) <= sizeof(unsigned));
    state_ = static_cast<unsigned>(e);
  }
  template <class E>
  E state() const {
    return static_cast<E>(state_);
  }

  // A protocol error the table cannot see (a 501 to bad MAIL arguments, a failed AUTH).
  void count_error(unsigned n = 1) { dispatcher_.errors().add(n); }
  ErrorCounter& errors() { return dispatcher_.errors(); }
  bool draining() const { return drain_requested_; }
  bool tls_on() const;
  const LineSessionOptions& options() const { return options_; }

  // A log line with this session's id, client and phase: log_line(log::info(...)).event(...).
  log::Line& log_line(log::Line&& line);

 private:

  void pump();
  void handle_line(const runtime::LineFrame& frame);
  void line_too_long(size_t length);
  bool stop_for_errors();
  void finish_drain();
  void update_reading();

  LineSessionOptions options_;
  runtime::LineFramer framer_;
  Dispatcher<Handler> dispatcher_;
  std::string phase_ = "command";
  std::string out_;
  unsigned state_ = 0;
  bool pumping_ = false;
  bool suspended_ = false;
  bool paused_reading_ = false;
  bool raw_ = false;
  bool empty_chunk_pending_ = false;
  bool peer_closed_ = false;
  bool drain_requested_ = false;
  bool pipelining_logged_ = false;
};

namespace detail {
template <class T>
struct member_class;
template <class C, class R, class... A>
struct member_class<R (C::*)(A...)> {
  using type = C;
};
}  // namespace detail

template <auto Fn>
void LineSession::call(LineSession& s, const Request& r) {
  using C = typename detail::member_class<decltype(Fn)>::type;
  (static_cast<C&>(s).*Fn)(r);
}

}  // namespace common::line
