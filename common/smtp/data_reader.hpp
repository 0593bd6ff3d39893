// data_reader.hpp: the message bytes after DATA's 354 (RFC 5321 §4.1.1.4, §4.5.2) or BDAT's
// chunks (RFC 3030): dot-unstuffing, the CRLF.CRLF end, size limit, bare CR/LF, NUL and long
// lines reported for the caller's policy. Pure state machine: any split of the input gives the
// same content and the same end. Also the dot-stuffer for sending (the mta's SMTP/LMTP client).
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "common/smtp/reply.hpp"

namespace common::smtp {

// DATA ends only at CRLF "." CRLF (RFC 5321 §4.1.1.4). A reader that also ended at LF "." LF or
// CR "." CR would let a client smuggle a second message past a relay that does not (the 2023
// "SMTP smuggling" attacks), so bare line endings never end the data and never start a line for
// unstuffing; they are reported and handled by BarePolicy.
enum class Framing { Dot, Counted };  // Dot: DATA; Counted: BDAT chunks, the caller counts sizes
// Refuse: content passed as sent, verdict() refuses; Convert: a bare CR or LF becomes CRLF in
// the content; Keep: passed as sent, only reported.
enum class BarePolicy { Refuse, Convert, Keep };
// Refuse: verdict() refuses; Strip: NULs removed from the content; Keep: passed, only reported.
enum class NulPolicy { Refuse, Strip, Keep };

struct DataOptions {
  uint64_t max_size = 0;   // content bytes; 0: no limit (then the caller must bound it otherwise)
  size_t max_line = 998;   // RFC 5321 §4.5.3.1.6: 1000 octets with the CRLF
  BarePolicy bare = BarePolicy::Refuse;
  NulPolicy nul = NulPolicy::Refuse;
  bool refuse_long_lines = false;  // most servers accept and report; RFC 5322 §2.1.1 "MUST" is on senders
  Framing framing = Framing::Dot;
};

struct DataReport {
  uint64_t size = 0;    // content bytes (unstuffed, converted), counted on past the limit too
  uint64_t lines = 0;   // line endings seen
  bool too_big = false; // over max_size: only the first max_size bytes were handed out
  bool bare_lf = false;
  bool bare_cr = false;
  bool nul = false;
  bool long_line = false;  // a line over max_line octets, a stuffing dot not counted
};

struct DataFeed {
  size_t consumed = 0;  // input bytes used; with done, what follows is the next command (pipelining)
  bool done = false;
};

// DATA: after the 354, feed each read; write `out` away and clear it; once done, verdict()
// says 250 or the refusal, and the input past `consumed` is the next pipelined command.
// BDAT: read exactly each chunk's size (the command's, not ours) and feed it; after LAST, call
// finish() and then verdict(). A message over max_size still has all its chunks read.
class DataReader {
 public:
  explicit DataReader(DataOptions options = {}) : options_(options) { reset(); }

  // Appends this input's content to `out` (the caller writes it out and clears it, so a large
  // message is never held twice). Dot framing stops after the final ".\r\n"; Counted framing
  // consumes everything. After the end, consumes nothing.
  DataFeed feed(std::string_view in, std::string& out);
  // Counted framing, after the LAST chunk: flushes a CR held back in case an LF followed.
  void finish(std::string& out);

  bool done() const { return state_ == State::Done; }
  const DataReport& report() const { return report_; }
  // After done(): the reply refusing this message under the options (552 5.3.4 when too big;
  // 550 5.6.0 for bare CR/LF or NUL under Refuse, or a long line under refuse_long_lines), or
  // nullopt to accept. When set, the caller discards the content it was handed.
  std::optional<SmtpError> verdict() const;
  void reset();

 private:
  enum class State { LineStart, Text, Cr, Dot, DotCr, Done };
  void emit(std::string_view s, std::string& out);
  void bare_cr(std::string& out);
  void bare_lf(std::string& out);
  void end_line() {
    line_len_ = 0;
    ++report_.lines;
  }
  void add_line(size_t n) {
    line_len_ += n;
    if (line_len_ > options_.max_line) report_.long_line = true;
  }

  DataOptions options_;
  DataReport report_;
  State state_ = State::LineStart;
  size_t line_len_ = 0;
};

// Sending side of RFC 5321 §4.5.2: a "." is doubled at the start of every line. A line starts
// after any LF, bare ones included, so no receiver that ends data at LF "." LF can be fooled.
class DotStuffer {
 public:
  void feed(std::string_view content, std::string& out);
  // Ends the data: CRLF if the content did not end with one, then ".\r\n".
  void finish(std::string& out);
  void reset() { state_ = kStart; }

 private:
  enum : uint8_t { kStart, kLine, kCr, kAfterCrlf, kAfterLf };
  uint8_t state_ = kStart;
};

}  // namespace common::smtp
