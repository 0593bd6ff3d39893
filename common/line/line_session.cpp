// line_session.cpp: the pump of LineSession (line_session.hpp): frames in order while the
// connection is open, not write-blocked and not suspended; replies batched per pipelined group.
#include "common/line/line_session.hpp"

#include <variant>

namespace common::line {
namespace {

using runtime::CloseReason;
using runtime::TimeoutKind;

// About one TLS record of plaintext (2^14): past it a batch goes out, so the connection's
// high-water mark still sees a client that pipelines far more than it reads.
constexpr size_t kFlushAt = 16 * 1024;

}  // namespace

LineSession::LineSession(runtime::Connection& connection, std::span<const Entry> table, LineSessionOptions options)
    : StartTlsSession(connection),
      options_(std::move(options)),
      framer_(options_.max_line),
      dispatcher_(table, DispatchOptions{options_.tagged, options_.errors}) {
  if (options_.max_command_line == 0 || options_.max_command_line > options_.max_line) {
    options_.max_command_line = options_.max_line;
  }
  // A bound below one line would pause reading before a single command could be read whole.
  if (options_.max_buffered < options_.max_line + 2) options_.max_buffered = options_.max_line + 2;
}

void LineSession::Resumer::operator()() const {
  if (alive_.expired()) return;
  session_->resume();
}

bool LineSession::tls_on() const { return const_cast<LineSession*>(this)->connection().transform() != nullptr; }

log::Line& LineSession::log_line(log::Line&& line) {
  auto& c = connection();
  return line.session(c.info().id).client(c.info().peer.to_string()).phase(phase_);
}

void LineSession::on_data(std::string_view bytes) {
  framer_.append(bytes);
  pump();
}

void LineSession::on_writable() { pump(); }

void LineSession::on_peer_closed() {
  peer_closed_ = true;
  pump();
}

void LineSession::on_timeout(TimeoutKind kind) {
  log_line(log::info(options_.component))
      .event("timeout")
      .kv("kind", kind == TimeoutKind::Idle ? "idle" : "session")
      .kv("buffered", framer_.buffered());
  std::string text = timeout_reply(kind);
  reply(text);
  close_session(CloseReason::Timeout);
}

void LineSession::on_drain() {
  drain_requested_ = true;
  if (!pumping_) pump();
}

void LineSession::finish_drain() {
  log_line(log::info(options_.component)).event("drain").kv("buffered", framer_.buffered());
  std::string text = drain_reply();
  reply(text);
  close_session(CloseReason::Drain);
}

size_t LineSession::forget_plaintext() {
  size_t held = framer_.buffered();
  framer_.reset();
  raw_ = false;
  empty_chunk_pending_ = false;
  on_forget_plaintext();
  return held;
}

bool LineSession::on_improper_pipelining(const Request&, size_t) { return true; }
void LineSession::on_raw_line(const runtime::LineFrame&) {}
void LineSession::on_bytes(std::string_view, bool) {}
std::string LineSession::timeout_reply(TimeoutKind) { return {}; }
std::string LineSession::drain_reply() { return {}; }

void LineSession::reply(std::string_view text) {
  out_.append(text);
  if (!pumping_ || out_.size() >= kFlushAt) flush_replies();
}

void LineSession::flush_replies() {
  if (out_.empty()) return;
  connection().write(out_);
  out_.clear();
}

void LineSession::close_session(CloseReason reason) {
  flush_replies();
  connection().close(reason);
}

bool LineSession::start_tls(std::string_view plaintext_reply, std::unique_ptr<runtime::Transform> transform) {
  // Replies to the commands before STARTTLS were sent in plaintext by the client's reckoning too;
  // they must not be held back and go out encrypted after the handshake.
  flush_replies();
  return StartTlsSession::start_tls(plaintext_reply, std::move(transform));
}

void LineSession::suspend() { suspended_ = true; }

void LineSession::resume() {
  if (!suspended_) return;
  suspended_ = false;
  if (!connection().open()) return;
  if (!pumping_) pump();  // inside the pump (a handler resuming at once) the loop goes on by itself
}

void LineSession::expect_bytes(size_t count) {
  if (count == 0) {
    empty_chunk_pending_ = true;
  } else {
    framer_.expect_bytes(count);
  }
}

bool LineSession::stop_for_errors() {
  if (!dispatcher_.errors().exhausted()) return false;
  log_line(log::notice(options_.component))
      .event("too_many_errors")
      .kv("errors", dispatcher_.errors().count())
      .kv("buffered", framer_.buffered());
  on_too_many_errors();
  close_session(CloseReason::Local);
  return true;
}

void LineSession::pump() {
  if (pumping_) return;
  pumping_ = true;
  auto& c = connection();
  // While output is blocked the framer keeps the rest; the connection pauses reading meanwhile.
  while (c.open() && !c.write_blocked() && !suspended_) {
    if (stop_for_errors()) break;
    if (empty_chunk_pending_) {
      empty_chunk_pending_ = false;
      on_bytes({}, true);
      continue;
    }
    if (drain_requested_ && !raw_ && !framer_.in_byte_mode()) {
      finish_drain();
      break;
    }
    auto frame = framer_.next();
    if (!frame) {
      if (peer_closed_) {
        log_line(log::debug(options_.component)).event("peer_closed").kv("buffered", framer_.buffered());
        close_session(CloseReason::PeerClosed);
      }
      break;
    }
    if (auto* line = std::get_if<runtime::LineFrame>(&*frame)) {
      handle_line(*line);
    } else if (auto* chunk = std::get_if<runtime::ByteChunk>(&*frame)) {
      on_bytes(chunk->bytes, chunk->last);
    } else {
      line_too_long(std::get<runtime::LineTooLong>(*frame).length);
    }
  }
  pumping_ = false;
  flush_replies();
  update_reading();
}

void LineSession::update_reading() {
  auto& c = connection();
  if (!c.open()) return;
  bool hold = suspended_ && framer_.buffered() > options_.max_buffered;
  if (hold && !paused_reading_) {
    log_line(log::debug(options_.component)).event("reading_paused").kv("buffered", framer_.buffered());
    c.pause_reading();
    paused_reading_ = true;
  } else if (!hold && paused_reading_) {
    c.resume_reading();
    paused_reading_ = false;
  }
}

void LineSession::line_too_long(size_t length) {
  if (!raw_) dispatcher_.errors().add();
  log_line(log::info(options_.component))
      .event("line_too_long")
      .kv("length", length)
      .kv("limit", raw_ ? options_.max_line : options_.max_command_line)
      .kv("raw", raw_ ? "yes" : "no");
  on_line_too_long(length);
}

void LineSession::handle_line(const runtime::LineFrame& frame) {
  if (raw_) {
    on_raw_line(frame);
    return;
  }
  if (frame.text.size() > options_.max_command_line) {
    line_too_long(frame.text.size());
    return;
  }
  bool tls_missing = options_.tls_required && !tls_on();
  auto d = dispatcher_.dispatch(frame.text, StateMask{1} << state_, tls_missing);
  Request r;
  r.tag = d.line.tag;
  r.verb = d.line.verb;
  r.args = d.line.args;
  r.line = frame.text;
  r.has_args = d.line.has_args;
  r.bare_lf = frame.bare_lf;
  r.flags = d.command ? d.command->flags : 0;
  if (d.outcome != Outcome::Run) {
    log_line(log::info(options_.component))
        .event("command_refused")
        .kv("outcome", outcome_name(d.outcome))
        .client_text("verb", d.line.verb)
        .kv("errors", dispatcher_.errors().count());
    on_refused(d.outcome, r);
    return;
  }
  if (d.command->has(LastInPipeline) && framer_.buffered() > 0) {
    // RFC 2920 §3.1: the client must wait for this reply; bytes already here were sent blind.
    if (!pipelining_logged_) {
      pipelining_logged_ = true;
      log_line(log::info(options_.component))
          .event("improper_pipelining")
          .client_text("verb", d.line.verb)
          .kv("buffered", framer_.buffered());
    }
    if (!on_improper_pipelining(r, framer_.buffered())) return;
  }
  d.command->handler(*this, r);
}

}  // namespace common::line
