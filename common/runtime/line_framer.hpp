// line_framer.hpp: pure CRLF line framing with a hard line limit, plus a byte-count mode for IMAP
// literals and SMTP BDAT chunks. No I/O: bytes in, frames pulled out one at a time, so a session can
// switch modes between two frames.
#pragma once

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>
#include <variant>

namespace common::runtime {

struct LineFrame {
  std::string_view text;  // without the line ending; valid until the next call into the framer
  bool bare_lf = false;   // ended by LF alone (RFC 5321 forbids it; protocols decide)
};
// A line longer than the limit: its bytes are dropped up to and including the next LF, and this
// frame is reported once, when that LF arrives (so the session answers once, in order).
struct LineTooLong {
  size_t length = 0;  // bytes seen (capped report: at least max_line + 1)
};
// Part of a literal requested with expect_bytes(); `last` marks its final chunk.
struct ByteChunk {
  std::string_view bytes;
  bool last = false;
};

using Frame = std::variant<LineFrame, LineTooLong, ByteChunk>;

class LineFramer {
 public:
  // max_line counts the bytes before CRLF.
  explicit LineFramer(size_t max_line);

  void append(std::string_view bytes);
  // The next complete frame, or nothing until more bytes arrive. Views stay valid until the next call.
  std::optional<Frame> next();
  // The next `count` bytes are raw data, delivered as ByteChunk frames before any further line.
  void expect_bytes(size_t count);
  // Drops everything buffered and leaves byte mode (after STARTTLS: pipelined plaintext must not
  // survive into the TLS session, CVE-2011-0411).
  void reset();
  // Bytes held, for tests and to detect a client flooding while the session is paused.
  size_t buffered() const { return buffer_.size() - start_; }
  bool in_byte_mode() const { return bytes_left_ > 0; }

 private:
  void compact();

  size_t max_line_;
  std::string buffer_;
  size_t start_ = 0;        // consumed prefix of buffer_
  size_t scanned_ = 0;      // bytes after start_ already known to hold no LF
  size_t bytes_left_ = 0;   // literal bytes still expected
  bool discarding_ = false; // inside an over-long line
  size_t discarded_ = 0;
};

}  // namespace common::runtime
