// parser.cpp: IMAP command framing (lines, literals, APPEND streaming), the limits, the pauses and
// the resync after a refusal (parser.hpp); the argument grammar is in grammar.cpp.
#include "mmp/imap/parser.hpp"

#include <algorithm>

#include "common/ascii.hpp"

namespace mmp::imap {

namespace {

constexpr size_t kTail = 32;           // enough for "~{9223372036854775807+}"
constexpr size_t kKeepCapacity = 4096;  // buffers bigger than this are released between commands
constexpr uint64_t kLiteralMinusMax = 4096;  // RFC 7888 §4, RFC 9051 §4.3
constexpr uint64_t kMaxNumber64 = (uint64_t{1} << 63) - 1;

bool takes_arguments(Verb v, bool uid) {
  switch (v) {
    case Verb::Capability: case Verb::Noop: case Verb::Logout: case Verb::StartTls: case Verb::Namespace:
    case Verb::Idle: case Verb::Check: case Verb::Close: case Verb::Unselect: case Verb::Unauthenticate:
      return false;
    case Verb::Expunge:
      return uid;
    default:
      return true;
  }
}

void keep_tail(std::string& tail, std::string_view more) {
  tail.append(more.size() > kTail ? more.substr(more.size() - kTail) : more);
  if (tail.size() > kTail) tail.erase(0, tail.size() - kTail);
}

template <class S>
void release(S& s) {
  if (s.capacity() > kKeepCapacity) S().swap(s);
}

}  // namespace

Parser::Parser(ParserOptions options) : options_(options) {}

void Parser::feed(std::string_view in, std::vector<Event>& out) {
  if (failed_ || in.empty()) return;
  if (paused_) {
    if (pending_.size() + in.size() > options_.limits.max_pending) {
      fail(error_here(Condition::Bad, "LIMIT", "too much input while a command waits"), out);
      return;
    }
    pending_.append(in);
    return;
  }
  const size_t n = process(in, out);
  if (!failed_ && n < in.size()) pending_.assign(in.substr(n));
}

void Parser::resume(std::vector<Event>& out) {
  if (!paused_ || failed_) return;
  paused_ = false;
  std::string buf = std::move(pending_);
  pending_.clear();
  const size_t n = process(buf, out);
  if (!failed_ && n < buf.size()) pending_.assign(buf, n);
  if (pending_.empty()) release(pending_);
}

bool Parser::cancel_literal() {
  if (!paused_ || !awaiting_literal_) return false;
  awaiting_literal_ = false;
  end_command();
  sink_ = Sink::None;
  literal_left_ = 0;
  mode_ = Mode::Line;
  skipping_ = false;
  return true;
}

void Parser::expect_done() { line_kind_ = LineKind::Done; }

void Parser::expect_sasl(std::string_view tag) {
  line_kind_ = LineKind::Sasl;
  sasl_tag_.assign(tag);
}

void Parser::end_sasl() {
  line_kind_ = LineKind::Command;
  sasl_tag_.clear();
}

void Parser::reset() {
  const ParserOptions options = options_;
  const bool failed = failed_;
  *this = Parser(options);
  failed_ = failed;
}

size_t Parser::process(std::string_view in, std::vector<Event>& out) {
  size_t i = 0;
  while (!paused_ && !failed_) {
    if (mode_ == Mode::Literal) {
      if (literal_left_ == 0) {
        literal_done(out);
        continue;
      }
      if (i == in.size()) break;
      const size_t n = static_cast<size_t>(std::min<uint64_t>(literal_left_, in.size() - i));
      awaiting_literal_ = false;
      literal_bytes(in.substr(i, n), out);
      literal_left_ -= std::min<uint64_t>(literal_left_, n);
      i += n;
      continue;
    }
    if (i == in.size()) break;
    const size_t lf = in.find('\n', i);
    const size_t end = lf == std::string_view::npos ? in.size() : lf;
    const std::string_view seg = in.substr(i, end - i);
    if (mode_ == Mode::Discard) {
      keep_tail(tail_, seg);
      if (lf == std::string_view::npos) {
        i = in.size();
        break;
      }
      i = lf + 1;
      mode_ = Mode::Line;
      if (!tail_.empty() && tail_.back() == '\r') tail_.pop_back();
      // The dropped line may have announced a literal the client sends without waiting.
      std::optional<Announcement> lit;
      if (skipping_) lit = announcement(tail_);
      tail_.clear();
      if (skipping_) on_skipped_line(lit, out);
      continue;
    }
    // A CR may follow the limit's last byte.
    if (line_.size() + seg.size() > options_.limits.max_line + 1) {
      tail_.clear();
      keep_tail(tail_, line_);
      keep_tail(tail_, seg);
      // The refusal names the tag, so the line's start is kept to the limit.
      line_.append(seg.substr(0, options_.limits.max_line + 1 - std::min(line_.size(), options_.limits.max_line + 1)));
      line_too_long(out);
      i = end;  // Discard mode takes the rest, LF included
      continue;
    }
    line_.append(seg);
    if (lf == std::string_view::npos) {
      i = in.size();
      break;
    }
    i = lf + 1;
    if (!line_.empty() && line_.back() == '\r') line_.pop_back();
    if (line_.size() > options_.limits.max_line) {
      tail_.clear();
      keep_tail(tail_, line_);
      line_too_long(out);
      mode_ = Mode::Line;
      std::optional<Announcement> lit;
      if (skipping_) lit = announcement(tail_);
      tail_.clear();
      if (skipping_) on_skipped_line(lit, out);
      continue;
    }
    on_line(line_, out);
    line_.clear();
  }
  return i;
}

std::optional<Parser::Announcement> Parser::announcement(std::string_view line) {
  // literal = "{" number64 ["+"] "}" CRLF, literal8 = "~{" number64 "}" CRLF: the last thing on the line.
  if (line.empty() || line.back() != '}') return std::nullopt;
  const size_t open = line.rfind('{');
  if (open == std::string_view::npos) return std::nullopt;
  std::string_view inside = line.substr(open + 1, line.size() - open - 2);
  Announcement a;
  a.pos = open;
  if (!inside.empty() && inside.back() == '+') {
    a.nonsync = true;
    inside.remove_suffix(1);
  }
  if (inside.empty() || !std::all_of(inside.begin(), inside.end(), common::ascii::is_digit)) return std::nullopt;
  if (open > 0 && line[open - 1] == '~') {
    a.binary = true;
    a.pos = open - 1;
  }
  // A count past number64 cannot be read, nor its bytes skipped.
  uint64_t v = 0;
  for (char c : inside) {
    const auto d = static_cast<uint64_t>(c - '0');
    if (v > (kMaxNumber64 - d) / 10) {
      a.valid = false;
      break;
    }
    v = v * 10 + d;
  }
  a.size = a.valid ? v : 0;
  return a;
}

void Parser::on_line(std::string_view line, std::vector<Event>& out) {
  switch (line_kind_) {
    case LineKind::Done:
      line_kind_ = LineKind::Command;
      out.push_back(IdleEnd{common::ascii::iequals(line, "DONE")});
      if (options_.pause_after_command) paused_ = true;
      return;
    case LineKind::Sasl:
      out.push_back(SaslResponse{std::string(line), line == "*"});
      paused_ = true;
      return;
    case LineKind::Command:
      break;
  }
  if (skipping_) {
    on_skipped_line(announcement(line), out);
    return;
  }
  on_command_line(line, out);
}

void Parser::on_command_line(std::string_view line, std::vector<Event>& out) {
  const bool first = lines_ == 0 && !append_active_;
  if (first) {
    head_ = detail::read_head(line);
    if (line.empty()) {
      ParseError e;
      e.text = "empty command line";
      e.code = "CLIENTBUG";
      out.push_back(std::move(e));
      return;
    }
  }
  std::optional<Announcement> lit = announcement(line);
  ++lines_;
  command_bytes_ += line.size() + 2;
  if (command_bytes_ > options_.limits.max_command) {
    refuse(error_here(Condition::Bad, "TOOBIG", "command too long"), lit, out);
    return;
  }
  if (!lit) {
    cmd_.append(line);
    finish_command(out);
    return;
  }
  if (!head_.verb_ok) {
    ParseError e = error_here(Condition::Bad, "", head_.error);
    refuse(std::move(e), lit, out);
    return;
  }
  lit->pos += cmd_.size();
  cmd_.append(line);
  on_literal(*lit, out);
}

void Parser::on_skipped_line(const std::optional<Announcement>& lit, std::vector<Event>& out) {
  skipping_ = false;
  refuse(std::nullopt, lit, out);
}

void Parser::on_literal(const Announcement& lit, std::vector<Event>& out) {
  const ParserLimits& lim = options_.limits;
  // In "tag APPEND {n}" the literal is the mailbox name; every other APPEND literal is a message.
  const bool append = head_.verb == Verb::Append;
  const bool message = append && !(lines_ == 1 && !append_active_ && lit.pos == head_.args + 1);
  if (!lit.valid) {
    refuse(error_here(Condition::Bad, "TOOBIG", "literal size out of range"), lit, out);
    return;
  }
  if (!takes_arguments(*head_.verb, head_.uid)) {  // no "+" for what can only be refused
    refuse(error_here(Condition::Bad, "", std::string(verb_name(*head_.verb)) + ": takes no arguments"), lit, out);
    return;
  }
  if (lit.binary && !message) {
    refuse(error_here(Condition::Bad, "", "literal8 (~{n}) is only for APPEND messages"), lit, out);
    return;
  }
  if (lit.nonsync && !options_.literal_plus && lit.size > kLiteralMinusMax) {
    refuse(error_here(Condition::Bad, "TOOBIG", "non-synchronizing literals may not exceed 4096 octets (LITERAL-)"),
           lit, out);
    return;
  }
  if (message) {
    if (lit.size > lim.max_message || lim.max_message == 0) {
      // RFC 7889 §4: an APPEND over the limit gets NO [TOOBIG] (BAD when the bytes come anyway).
      refuse(error_here(lit.nonsync ? Condition::Bad : Condition::No, "TOOBIG", "message too large"), lit, out);
      return;
    }
    start_message(lit, out);
    return;
  }
  if (lit.size > lim.max_literal) {
    refuse(error_here(Condition::Bad, "TOOBIG", "literal too large"), lit, out);
    return;
  }
  if (literals_ >= lim.max_literals) {
    refuse(error_here(Condition::Bad, "LIMIT", "too many literals in one command"), lit, out);
    return;
  }
  if (command_bytes_ + lit.size > lim.max_command) {
    refuse(error_here(Condition::Bad, "TOOBIG", "command too long"), lit, out);
    return;
  }
  ++literals_;
  command_bytes_ += static_cast<size_t>(lit.size);
  marks_.push_back({lit.pos, cmd_.size(), static_cast<size_t>(lit.size)});
  sink_ = Sink::Command;
  literal_left_ = lit.size;
  mode_ = Mode::Literal;
  if (!lit.nonsync) {
    out.push_back(Continue{head_.tag, *head_.verb, head_.uid, lit.size, false});
    awaiting_literal_ = true;
    paused_ = true;
  }
}

void Parser::start_message(const Announcement& lit, std::vector<Event>& out) {
  const bool first = append_messages_.empty();
  if (!first && !options_.multiappend) {
    refuse(error_here(Condition::Bad, "", "APPEND takes one message (no MULTIAPPEND)"), lit, out);
    return;
  }
  if (append_messages_.size() >= options_.limits.max_messages) {
    refuse(error_here(Condition::Bad, "LIMIT", "too many messages in one APPEND"), lit, out);
    return;
  }
  AppendMessage m;
  std::string mailbox;
  if (auto err = detail::parse_append_prefix(cmd_, marks_, lit.pos, first, options_.limits, mailbox, m)) {
    refuse(error_here(Condition::Bad, "", *err), lit, out);
    return;
  }
  if (first) append_mailbox_ = std::move(mailbox);
  m.size = lit.size;
  m.binary = lit.binary;
  append_active_ = true;
  out.push_back(AppendStart{head_.tag, append_mailbox_, append_messages_.size(), m});
  append_messages_.push_back(std::move(m));
  cmd_.clear();
  marks_.clear();
  sink_ = Sink::Message;
  literal_left_ = lit.size;
  mode_ = Mode::Literal;
  if (!lit.nonsync) {
    out.push_back(Continue{head_.tag, Verb::Append, false, lit.size, true});
    awaiting_literal_ = true;
    paused_ = true;
  }
}

void Parser::literal_bytes(std::string_view bytes, std::vector<Event>& out) {
  switch (sink_) {
    case Sink::Command:
      cmd_.append(bytes);
      return;
    case Sink::Message: {
      // RFC 9051 §4.3: a literal's CHAR8 excludes NUL; only literal8 (RFC 3516 §4.4) carries it.
      const size_t nul = append_messages_.back().binary ? std::string_view::npos : bytes.find('\0');
      if (nul != std::string_view::npos) {
        // The bytes before it go out as in any other split of the input, then the refusal.
        if (nul > 0) out.push_back(AppendData{std::string(bytes.substr(0, nul)), false});
        out.push_back(error_here(Condition::Bad, "", "APPEND: NUL in a message; send it as literal8 (~{n})"));
        end_command();
        // The rest of this literal was accepted within the limits: read and drop it, then the
        // rest of the command's line.
        sink_ = Sink::Drop;
        skipping_ = true;
        return;
      }
      out.push_back(AppendData{std::string(bytes), bytes.size() == literal_left_});
      return;
    }
    case Sink::Drop:
    case Sink::None:
      return;
  }
}

void Parser::literal_done(std::vector<Event>& out) {
  mode_ = Mode::Line;
  const Sink s = sink_;
  sink_ = Sink::None;
  if (s == Sink::Message && append_messages_.back().size == 0) out.push_back(AppendData{std::string(), true});
}

void Parser::finish_command(std::vector<Event>& out) {
  if (append_active_) {
    // The line after the last message: the command ends there, or a next message is announced
    // (on_literal); anything else is junk.
    if (!cmd_.empty()) {
      out.push_back(error_here(Condition::Bad, "", "APPEND: unexpected text after the message"));
      end_command();
      return;
    }
    Command c;
    c.tag = head_.tag;
    c.verb = Verb::Append;
    c.args = AppendArgs{std::move(append_mailbox_), std::move(append_messages_)};
    end_command();
    out.push_back(std::move(c));
    if (options_.pause_after_command) paused_ = true;
    return;
  }
  auto result = detail::parse_command(cmd_, marks_, options_.limits);
  end_command();
  if (auto* c = std::get_if<Command>(&result)) {
    const Verb v = c->verb;
    out.push_back(std::move(*c));
    if (options_.pause_after_command || v == Verb::StartTls || v == Verb::Authenticate || v == Verb::Idle) {
      paused_ = true;
    }
  } else {
    out.push_back(std::move(std::get<ParseError>(result)));
  }
}

void Parser::line_too_long(std::vector<Event>& out) {
  mode_ = Mode::Discard;
  switch (line_kind_) {
    case LineKind::Done:
      line_kind_ = LineKind::Command;
      out.push_back(IdleEnd{false});
      break;
    case LineKind::Sasl: {
      line_kind_ = LineKind::Command;
      ParseError e;
      e.tag = sasl_tag_.empty() ? "*" : sasl_tag_;
      e.verb = Verb::Authenticate;
      e.code = "TOOBIG";
      e.text = "AUTHENTICATE: response line too long";
      sasl_tag_.clear();
      out.push_back(std::move(e));
      break;
    }
    case LineKind::Command:
      if (skipping_) break;  // refused already; only its literal matters
      if (lines_ == 0 && !append_active_) head_ = detail::read_head(line_);
      out.push_back(error_here(Condition::Bad, "TOOBIG", "line too long"));
      end_command();
      skipping_ = true;  // the line's end may announce a literal to drop
      break;
  }
  line_.clear();
  release(line_);
}

void Parser::refuse(std::optional<ParseError> error, const std::optional<Announcement>& lit, std::vector<Event>& out) {
  end_command();
  skipping_ = false;
  // No literal, or a synchronising one: the client waits for "+ " and sends nothing more of
  // this command, so what comes next is a new command.
  if (!lit || !lit->nonsync) {
    if (error) out.push_back(std::move(*error));
    return;
  }
  if (lit->valid && lit->size <= options_.limits.max_discard) {
    if (error) out.push_back(std::move(*error));
    sink_ = Sink::Drop;
    literal_left_ = lit->size;
    mode_ = Mode::Literal;
    skipping_ = true;
    return;
  }
  ParseError e = error ? std::move(*error) : ParseError{};
  if (!error) {
    e.code = "TOOBIG";
    e.text = "literal too large to skip";
  }
  fail(std::move(e), out);
}

void Parser::fail(ParseError error, std::vector<Event>& out) {
  error.fatal = true;
  out.push_back(std::move(error));
  failed_ = true;
  paused_ = false;
  line_.clear();
  cmd_.clear();
  marks_.clear();
  pending_.clear();
  release(line_);
  release(cmd_);
  release(pending_);
}

ParseError Parser::error_here(Condition c, std::string code, std::string text) const {
  ParseError e;
  e.condition = c;
  e.code = std::move(code);
  e.text = std::move(text);
  if (head_.tag_ok) e.tag = head_.tag;
  e.verb = head_.verb;
  return e;
}

void Parser::end_command() {
  cmd_.clear();
  marks_.clear();
  command_bytes_ = 0;
  lines_ = 0;
  literals_ = 0;
  head_ = detail::Head{};
  head_.tag = "*";
  append_active_ = false;
  append_mailbox_.clear();
  append_messages_.clear();
  shrink();
}

void Parser::shrink() {
  release(cmd_);
  release(marks_);
  release(append_messages_);
}

}  // namespace mmp::imap
