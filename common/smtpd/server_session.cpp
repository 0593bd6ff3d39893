// server_session.cpp: the SMTP/LMTP server side shared by the mta and the store (server_session.hpp).
#include "common/smtpd/server_session.hpp"

namespace common::smtpd {

using line::Outcome;

ServerSession::ServerSession(runtime::Connection& connection, std::span<const Entry> table,
                             line::LineSessionOptions line, ServerOptions options)
    : LineSession(connection, table, std::move(line)), server_(std::move(options)) {}

void ServerSession::answer(int code, smtp::EnhancedCode enhanced, std::string_view text) {
  reply(smtp::render_reply(code, enhanced, text));
}

void ServerSession::refuse(const smtp::SmtpError& error) {
  count_error();
  count_reject(error.reason);
  // Bounded by the error limit, which every refusal here counts towards.
  log_line(log::info(options().component)).event("refused").kv("reason", error.reason).kv("code", error.code);
  reply(smtp::render_reply(error));
  if (error.close) close_session();
}

void ServerSession::starttls_command() {
  if (!server_.starttls || tls_on()) {
    count_error();
    answer(503, {5, 5, 1}, tls_on() ? "TLS already active" : "STARTTLS not offered here");
    return;
  }
  set_phase("starttls");
  if (!start_tls(smtp::render_reply(220, {2, 0, 0}, "Ready to start TLS"),
                 server_.starttls->accept(connection().info().id))) {
    answer(454, {4, 7, 0}, "TLS not available due to temporary reason");
  }
}

void ServerSession::begin_data(const smtp::DataOptions& options) {
  set_phase("data");
  reader_ = smtp::DataReader(options);
  in_message_ = true;
  line_too_long_ = false;
  set_raw(true);
  answer(354, {}, "Start mail input; end with <CRLF>.<CRLF>");
}

void ServerSession::begin_bdat(const smtp::BdatArgs& args, bool first, smtp::DataOptions options) {
  set_phase("bdat");
  if (first) {
    options.framing = smtp::Framing::Counted;
    reader_ = smtp::DataReader(options);
    in_message_ = true;
    line_too_long_ = false;
  }
  bdat_last_ = args.last;
  bdat_chunk_ = args.size;
  expect_bytes(args.size);
}

void ServerSession::take(std::string_view content) {
  if (content.empty() || reader_.report().too_big) return;
  on_content(content);
}

void ServerSession::on_raw_line(const runtime::LineFrame& line) {
  if (!in_message_) return on_other_raw_line(line);
  // The framer took the line ending off; the DATA reader needs it back to see how the line ended.
  piece_.clear();
  line_.assign(line.text);
  line_ += line.bare_lf ? "\n" : "\r\n";
  reader_.feed(line_, piece_);
  take(piece_);
  if (reader_.done()) {
    set_raw(false);
    end_message();
  }
}

void ServerSession::on_bytes(std::string_view chunk, bool last) {
  piece_.clear();
  reader_.feed(chunk, piece_);
  take(piece_);
  if (!last) return;
  if (!bdat_last_) return on_chunk_done(bdat_chunk_);
  piece_.clear();
  reader_.finish(piece_);
  take(piece_);
  end_message();
}

void ServerSession::on_chunk_done(uint64_t size) { answer(250, {2, 0, 0}, std::to_string(size) + " octets received"); }

void ServerSession::end_message() {
  in_message_ = false;
  set_phase("commit");
  std::optional<smtp::SmtpError> refusal = reader_.verdict();
  if (!refusal && line_too_long_) {
    refusal = smtp::SmtpError{554, {5, 6, 0}, "Message has a line over " + std::to_string(kMaxDataLine) + " octets",
                              "data_line_too_long"};
  }
  if (refusal) {
    count_reject(refusal->reason);
    log_line(log::info(options().component))
        .event("message_refused")
        .kv("reason", refusal->reason)
        .kv("size", reader_.report().size);
  }
  on_message_end(std::move(refusal));
}

void ServerSession::on_line_too_long(size_t length) {
  if (raw() && in_message_) {
    line_too_long_ = true;  // refused at the final dot, once, as a message
    return;
  }
  on_command_line_too_long(length);
}

void ServerSession::on_command_line_too_long(size_t length) {
  count_reject("line_too_long");
  log_line(log::info(options().component)).event("line_too_long").kv("length", static_cast<uint64_t>(length));
  answer(500, {5, 5, 2}, "Line too long");
}

void ServerSession::on_refused(Outcome outcome, const line::Request&) {
  count_reject(line::outcome_name(outcome));
  switch (outcome) {
    case Outcome::TlsRequired: answer(530, {5, 7, 0}, "Must issue a STARTTLS command first"); break;
    case Outcome::WrongState: answer(503, {5, 5, 1}, wrong_state_text()); break;
    case Outcome::BadArguments: answer(501, {5, 5, 4}, "Syntax error in parameters or arguments"); break;
    case Outcome::Empty:
    case Outcome::Unknown:
    case Outcome::Run: answer(500, {5, 5, 2}, "Command not recognized"); break;
  }
}

void ServerSession::on_too_many_errors() {
  count_reject("too_many_errors");
  log_line(log::notice(options().component))
      .event("too_many_errors")
      .kv("errors", static_cast<uint64_t>(errors().count()));
  answer(421, {4, 7, 0}, server_.host_name + " too many errors, closing connection");
}

std::string ServerSession::timeout_reply(runtime::TimeoutKind) {
  return smtp::render_reply(421, {4, 4, 2}, server_.host_name + " timeout exceeded, closing connection");
}

std::string ServerSession::drain_reply() {
  return smtp::render_reply(421, {4, 3, 2}, server_.host_name + " shutting down, try again later");
}

void ServerSession::on_closed(runtime::CloseReason reason) {
  if (in_message_) {
    // A message cut short is never kept (a truncated TLS stream above all: anyone on the path can
    // send the FIN).
    log_line(log::info(options().component))
        .event("message_abandoned")
        .kv("reason", runtime::close_reason_name(reason))
        .kv("received", static_cast<uint64_t>(reader_.report().size));
  }
}

}  // namespace common::smtpd
