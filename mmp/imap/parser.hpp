// parser.hpp: the incremental, bounded IMAP command parser (RFC 9051 §2.2, §4, §9 with the RFC 3501
// forms, RFC 7888 LITERAL+/LITERAL-, RFC 3516 literal8). Pure: bytes in, events out; no I/O.
//
// A session drives it like this (the README says what each event asks of the session):
//
//   parser_.feed(bytes, events_);
//   for (auto& ev : events_) std::visit([&](auto& e) { handle(e); }, ev);
//   events_.clear();
//   // while parser_.paused(): stop reading; when the decision is made (a reply written, a store
//   // call answered), parser_.resume(events_) and handle what it yields.
//
// Any split of the same bytes gives the same events (AppendData pieces aside, whose bytes join to
// the same message), when the session makes the same decisions at the same pauses.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "mmp/imap/command.hpp"
#include "mmp/imap/grammar.hpp"

namespace mmp::imap {

struct ParserOptions {
  ParserLimits limits;
  // LITERAL+ offered (RFC 7888 §3): non-synchronising literals of any size within the limits.
  // Without it, LITERAL- (also part of IMAP4rev2, RFC 9051 §4.3): at most 4096 octets.
  bool literal_plus = true;
  bool multiappend = true;  // RFC 3502
  // Pause after every complete command (and after an IDLE's DONE), so the session runs one
  // command at a time and stops reading while it works; the others always pause.
  bool pause_after_command = true;
};

// A synchronising literal "{n}" (or "~{n}") within the limits: the client waits for "+ ". The
// parser has paused. The session either writes the continuation request and resumes, or calls
// cancel_literal(), answers the command itself (e.g. NO [TRYCREATE] for an APPEND to a mailbox
// that does not exist, RFC 9051 §6.3.12) and resumes: the client then sends no literal.
struct Continue {
  std::string tag;
  Verb verb = Verb::Noop;
  bool uid = false;
  uint64_t size = 0;
  bool message = false;  // an APPEND message (an AppendStart came just before)
  friend bool operator==(const Continue&, const Continue&) = default;
};

// An APPEND message begins: its metadata, then its bytes as AppendData. The message is only
// complete, and may be kept, once the APPEND's Command arrives; a ParseError for the APPEND
// before that means drop whatever was received.
struct AppendStart {
  std::string tag;
  std::string mailbox;  // as on the wire (mailbox_from_wire reads it)
  size_t index = 0;     // 0 for the first message of a MULTIAPPEND
  AppendMessage message;
  friend bool operator==(const AppendStart&, const AppendStart&) = default;
};

struct AppendData {
  std::string bytes;  // a piece; the pieces join to message.size bytes (fewer when a ParseError cuts in)
  bool last = false;  // the final piece (a zero-size message has one, empty)
  friend bool operator==(const AppendData&, const AppendData&) = default;
};

// The line after an accepted IDLE (expect_done()): `done` when it was "DONE" (RFC 2177 §3);
// otherwise the session answers the IDLE with BAD. Either way IDLE is over.
struct IdleEnd {
  bool done = false;
  friend bool operator==(const IdleEnd&, const IdleEnd&) = default;
};

// A line of an AUTHENTICATE exchange (expect_sasl()): the base64 text of the client's response,
// not decoded; `cancel` for "*" (RFC 9051 §6.2.2). The parser pauses after each.
struct SaslResponse {
  std::string text;
  bool cancel = false;
  friend bool operator==(const SaslResponse&, const SaslResponse&) = default;
};

using Event = std::variant<Command, Continue, AppendStart, AppendData, ParseError, IdleEnd, SaslResponse>;

class Parser {
 public:
  explicit Parser(ParserOptions options = {});

  // Consumes all of `in`: what is not complete yet is kept, within the limits. Appends the events
  // it completes to `out`. While paused() nothing is parsed: the bytes wait (up to max_pending).
  // Never throws.
  void feed(std::string_view in, std::vector<Event>& out);

  // Paused after: a Continue; a STARTTLS, AUTHENTICATE or IDLE command (what follows them is not
  // a command, or not yet); each SaslResponse; and, with pause_after_command, every command and
  // IdleEnd. resume() goes on with the bytes that waited.
  bool paused() const { return paused_; }
  void resume(std::vector<Event>& out);

  // After a Continue, before resume(): the literal is not wanted. The command is dropped (the
  // session answers it), and the bytes after its announcement are read as a new command. False
  // when there is no such literal (then nothing changes).
  bool cancel_literal();

  // After an IDLE the session accepted: the next line ends it (IdleEnd).
  void expect_done();
  // After an AUTHENTICATE that goes on: every line is a SaslResponse until end_sasl(). A ParseError
  // (a line too long) also ends the exchange.
  void expect_sasl(std::string_view tag);
  void end_sasl();

  // STARTTLS (RFC 9051 §6.2.1): drops every byte buffered (a client's plaintext must not be read
  // as if it came over TLS: CVE-2011-0411), the command in progress and any pause or mode. The
  // session calls it when the handshake starts; it may log pending_bytes() first.
  void reset();

  // The message limit for APPENDs from now on (RFC 7889 APPENDLIMIT); 0 refuses every APPEND
  // message before its bytes (e.g. while not authenticated).
  void set_message_limit(uint64_t bytes) { options_.limits.max_message = bytes; }
  const ParserOptions& options() const { return options_; }

  bool failed() const { return failed_; }
  // Bytes held: the line and command so far and what waits while paused.
  size_t buffered() const { return line_.size() + cmd_.size() + pending_.size(); }
  size_t pending_bytes() const { return pending_.size(); }
  // A command is partly read (the session's idle timer may treat the client as busy).
  bool in_command() const { return !line_.empty() || !cmd_.empty() || sink_ != Sink::None || append_active_; }

 private:
  enum class Mode : uint8_t { Line, Literal, Discard };
  enum class LineKind : uint8_t { Command, Done, Sasl };
  enum class Sink : uint8_t { None, Command, Message, Drop };

  struct Announcement {
    size_t pos = 0;  // of "{" or "~" in the line
    uint64_t size = 0;
    bool nonsync = false;
    bool binary = false;
    bool valid = true;  // false: "{...}" at the end of a line that is not a number we can read
  };
  static std::optional<Announcement> announcement(std::string_view line);
  size_t process(std::string_view in, std::vector<Event>& out);
  void on_line(std::string_view line, std::vector<Event>& out);
  void on_command_line(std::string_view line, std::vector<Event>& out);
  void on_skipped_line(const std::optional<Announcement>& lit, std::vector<Event>& out);
  void on_literal(const Announcement& lit, std::vector<Event>& out);
  void start_message(const Announcement& lit, std::vector<Event>& out);
  void literal_bytes(std::string_view bytes, std::vector<Event>& out);
  void literal_done(std::vector<Event>& out);
  void finish_command(std::vector<Event>& out);
  void line_too_long(std::vector<Event>& out);
  // Refuses the command in progress: emits `error` (if any), forgets the command, and when
  // `lit` announces a literal the client sends anyway, drops it or (too large) fails.
  void refuse(std::optional<ParseError> error, const std::optional<Announcement>& lit, std::vector<Event>& out);
  void fail(ParseError error, std::vector<Event>& out);
  ParseError error_here(Condition c, std::string code, std::string text) const;
  void end_command();
  void shrink();

  ParserOptions options_;
  Mode mode_ = Mode::Line;
  LineKind line_kind_ = LineKind::Command;
  Sink sink_ = Sink::None;
  bool paused_ = false;
  bool failed_ = false;
  bool skipping_ = false;        // the rest of a refused command: its lines and literals are dropped
  bool awaiting_literal_ = false;  // a Continue was emitted, no literal byte read yet
  bool append_active_ = false;
  bool message_nul_ = false;
  std::string line_;
  std::string tail_;             // the last bytes of a line too long (its end may announce a literal)
  std::string cmd_;              // the command so far: lines and string literals
  std::vector<detail::LiteralMark> marks_;
  std::string pending_;
  uint64_t literal_left_ = 0;
  size_t command_bytes_ = 0;     // of the command so far, APPEND messages apart
  size_t lines_ = 0;             // lines of the command so far
  size_t literals_ = 0;
  detail::Head head_;
  std::string sasl_tag_;
  // APPEND in progress (RFC 3502: several messages, each announced after the last one's bytes).
  std::string append_mailbox_;
  std::vector<AppendMessage> append_messages_;
};

}  // namespace mmp::imap
