// data_reader.cpp: the DATA/BDAT content state machine and the dot-stuffer (RFC 5321 §4.5.2).
#include "common/smtp/data_reader.hpp"

namespace common::smtp {

void DataReader::reset() {
  report_ = DataReport{};
  // The CRLF of the DATA command itself precedes the first line, so ".\r\n" at once is the end
  // of an empty message (RFC 5321 §4.1.1.4).
  state_ = options_.framing == Framing::Dot ? State::LineStart : State::Text;
  line_len_ = 0;
}

void DataReader::emit(std::string_view s, std::string& out) {
  const uint64_t before = report_.size;
  report_.size += s.size();
  if (report_.too_big) return;
  // Past the limit nothing more is stored, but reading goes on to the end so that the reply
  // (552 5.3.4) comes in step with the client (RFC 5321 §4.5.3.1.9 and RFC 1870 §6.3). The
  // bytes up to the limit are handed out whatever the split, so every split gives one content.
  if (options_.max_size && report_.size > options_.max_size) {
    report_.too_big = true;
    out.append(s.substr(0, options_.max_size - before));
    return;
  }
  out.append(s);
}

void DataReader::bare_cr(std::string& out) {
  report_.bare_cr = true;
  if (options_.bare == BarePolicy::Convert) {
    emit("\r\n", out);
    end_line();
  } else {
    emit("\r", out);
    add_line(1);
  }
}

void DataReader::bare_lf(std::string& out) {
  report_.bare_lf = true;
  emit(options_.bare == BarePolicy::Convert ? std::string_view("\r\n") : std::string_view("\n"), out);
  end_line();
}

DataFeed DataReader::feed(std::string_view in, std::string& out) {
  size_t i = 0;
  while (i < in.size() && state_ != State::Done) {
    const char c = in[i];
    switch (state_) {
      case State::LineStart:
        if (options_.framing == Framing::Dot && c == '.') {
          // The line limit does not count the dot doubled for transparency (§4.5.3.1.6).
          state_ = State::Dot;
          ++i;
        } else {
          state_ = State::Text;
        }
        break;
      case State::Dot:
        // RFC 5321 §4.5.2: a line starting with "." and more characters loses its first ".".
        // A "." before a bare line ending is kept: that line is an end marker only to a lenient
        // reader, and keeping the dot means it is re-stuffed if the message is relayed.
        if (c == '\r') {
          state_ = State::DotCr;
          ++i;
        } else {
          if (c == '\n') {
            emit(".", out);
            add_line(1);
          }
          state_ = State::Text;
        }
        break;
      case State::DotCr:
        if (c == '\n') {
          state_ = State::Done;
          ++i;
        } else {
          emit(".", out);
          add_line(1);
          bare_cr(out);
          state_ = State::Text;
        }
        break;
      case State::Cr:
        if (c == '\n') {
          emit("\r\n", out);
          end_line();
          state_ = State::LineStart;
          ++i;
        } else {
          bare_cr(out);
          state_ = State::Text;
        }
        break;
      case State::Text:
        if (c == '\r') {
          state_ = State::Cr;
          ++i;
        } else if (c == '\n') {
          bare_lf(out);
          ++i;
        } else if (c == '\0') {
          report_.nul = true;
          if (options_.nul != NulPolicy::Strip) emit(std::string_view("\0", 1), out);
          add_line(1);
          ++i;
        } else {
          // The common case: a run of ordinary bytes, copied at once.
          size_t j = i + 1;
          while (j < in.size() && in[j] != '\r' && in[j] != '\n' && in[j] != '\0') ++j;
          emit(in.substr(i, j - i), out);
          add_line(j - i);
          i = j;
        }
        break;
      case State::Done:
        break;
    }
  }
  return DataFeed{i, state_ == State::Done};
}

void DataReader::finish(std::string& out) {
  if (options_.framing != Framing::Counted || state_ == State::Done) return;
  if (state_ == State::Cr) bare_cr(out);
  state_ = State::Done;
}

std::optional<SmtpError> DataReader::verdict() const {
  if (report_.too_big)
    return SmtpError{552, {5, 3, 4}, "Message size exceeds fixed maximum message size", "data_too_big"};
  // RFC 5321 §2.3.8: CR and LF appear in mail only together, as CRLF.
  if ((report_.bare_lf || report_.bare_cr) && options_.bare == BarePolicy::Refuse)
    return SmtpError{550, {5, 6, 0}, "Message contains bare CR or LF", "data_bare_newline"};
  if (report_.nul && options_.nul == NulPolicy::Refuse)
    return SmtpError{550, {5, 6, 0}, "Message contains NUL bytes", "data_nul"};
  if (report_.long_line && options_.refuse_long_lines)
    return SmtpError{550, {5, 6, 0}, "Message has a line over 998 octets", "data_long_line"};
  return std::nullopt;
}

void DotStuffer::feed(std::string_view content, std::string& out) {
  out.reserve(out.size() + content.size() + 16);
  for (char c : content) {
    if ((state_ == kStart || state_ == kAfterCrlf || state_ == kAfterLf) && c == '.') out += '.';
    out += c;
    if (c == '\n') {
      state_ = state_ == kCr ? kAfterCrlf : kAfterLf;
    } else {
      state_ = c == '\r' ? kCr : kLine;
    }
  }
}

void DotStuffer::finish(std::string& out) {
  // The final "." must follow a CRLF (RFC 5321 §4.1.1.4): content that did not end with one
  // gets one (after a bare LF too, which leaves an empty line rather than a broken end).
  if (state_ == kCr) {
    out += '\n';
  } else if (state_ == kLine || state_ == kAfterLf) {
    out += "\r\n";
  }
  out += ".\r\n";
  state_ = kStart;
}

}  // namespace common::smtp
