// server_session.hpp: the server side that SMTP (the mta's 25, 587, 465) and LMTP (the store's 225)
// share, on the line-session base: STARTTLS, reading DATA (dot-stuffed) and BDAT (counted) through
// common/smtp's DataReader, the refusals of the command table, timeouts, drain, the error limit and
// over-long lines, each in the same words. The protocol derives and keeps its transaction.
//
//   class LmtpSession final : public common::smtpd::ServerSession {
//     void data(const Request&) { begin_data(options); set_state(State::Data); }
//     void on_content(std::string_view piece) override { body_.append(piece); }
//     void on_message_end(std::optional<smtp::SmtpError> refusal) override { commit or reply; }
//   };
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "common/daemon/daemon.hpp"
#include "common/line/line_session.hpp"
#include "common/smtp/command.hpp"
#include "common/smtp/data_reader.hpp"
#include "common/smtp/reply.hpp"

namespace common::smtpd {

// RFC 5321 §4.5.3.1.6 allows 1000 octets per text line, but real mail has longer ones and a relay
// passes on what it got; past this a message is refused at its end, not cut.
inline constexpr size_t kMaxDataLine = 64 * 1024;

struct ServerOptions {
  std::string host_name;  // in the greeting-style replies (421 at timeouts, drain, errors)
  std::shared_ptr<daemon::TlsContextSlot> starttls;  // set on a STARTTLS listener
};

class ServerSession : public line::LineSession {
 protected:
  ServerSession(runtime::Connection& connection, std::span<const Entry> table, line::LineSessionOptions line,
                ServerOptions options);

  // A reply of one line, with its enhanced code (RFC 2034).
  void answer(int code, smtp::EnhancedCode enhanced, std::string_view text);
  // A parser's refusal: counted as an error and a reject, answered, and the session closed when the
  // refusal says the client cannot be followed any more.
  void refuse(const smtp::SmtpError& error);
  // The STARTTLS command (RFC 3207): 220 in plaintext, pipelined input dropped, TLS installed, and
  // on_forget_plaintext() for the protocol's own state.
  void starttls_command();

  // DATA: the 354 and raw mode; content comes to on_content(), the end to on_message_end().
  void begin_data(const smtp::DataOptions& options);
  // BDAT (RFC 3030): `first` starts a message with `options` (Counted framing is set here). The
  // chunk's bytes come to on_content(); then on_chunk_done() or, after LAST, on_message_end().
  void begin_bdat(const smtp::BdatArgs& args, bool first, smtp::DataOptions options);
  // DATA or BDAT in progress (between begin_* and on_message_end).
  bool in_message() const { return in_message_; }
  const smtp::DataReport& data_report() const { return reader_.report(); }
  const ServerOptions& server_options() const { return server_; }

  // --- what the protocol does ---
  virtual void count_reject(std::string_view reason) = 0;  // its rejects metric
  // Each piece of content, unstuffed, in order (nothing past the size limit).
  virtual void on_content(std::string_view piece) = 0;
  // The message is complete. `refusal`: the reader's verdict (size, bare CR/LF, NUL) or a line over
  // kMaxDataLine; when set, reply with it (per recipient in LMTP) and drop the content.
  virtual void on_message_end(std::optional<smtp::SmtpError> refusal) = 0;
  // A BDAT chunk without LAST was read. The default says "250 2.0.0 N octets received".
  virtual void on_chunk_done(uint64_t size);
  // A raw line outside DATA (a SASL response).
  virtual void on_other_raw_line(const runtime::LineFrame&) {}
  // A command line over the limit. The default logs and answers 500 5.5.2.
  virtual void on_command_line_too_long(size_t length);
  // The 503 text for a command out of sequence.
  virtual std::string_view wrong_state_text() const { return "Bad sequence of commands"; }

  // line::LineSession
  void on_refused(line::Outcome outcome, const line::Request& request) override;
  void on_too_many_errors() override;
  std::string timeout_reply(runtime::TimeoutKind kind) override;
  std::string drain_reply() override;
  void on_closed(runtime::CloseReason reason) override;

 private:
  void on_line_too_long(size_t length) final;
  void on_raw_line(const runtime::LineFrame& line) final;
  void on_bytes(std::string_view chunk, bool last) final;
  void take(std::string_view content);
  void end_message();

  ServerOptions server_;
  smtp::DataReader reader_;
  std::string piece_;
  std::string line_;  // a DATA line with its ending, reused from line to line
  bool in_message_ = false;
  bool line_too_long_ = false;
  bool bdat_last_ = false;
  uint64_t bdat_chunk_ = 0;
};

}  // namespace common::smtpd
