// reply.hpp: SMTP/LMTP replies (RFC 5321 §4.2) with enhanced status codes (RFC 3463, RFC 2034):
// the error value every smtp parser returns, the reply builder and a bounded reply parser. Pure.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include <tl/expected.hpp>

namespace common::smtp {

// class.subject.detail (RFC 3463 §2); klass 0 means "none" (a reply without one, e.g. to EHLO).
struct EnhancedCode {
  uint8_t klass = 0;
  uint16_t subject = 0;
  uint16_t detail = 0;
  bool present() const { return klass != 0; }
  std::string str() const;  // "5.5.4", or "" when absent
  friend bool operator==(const EnhancedCode&, const EnhancedCode&) = default;
};

// What a parser refuses with: the reply to send (code, enhanced code, fixed text that never echoes
// client bytes) and a short static reason for the log line and the rejects counter.
// close: the session cannot stay in step with the client after this (a BDAT whose size we will
// not read, a DATA stream we gave up on): send the reply, then close (RFC 5321 §3.8 allows 421).
struct SmtpError {
  int code = 0;
  EnhancedCode enhanced;
  std::string text;
  const char* reason = "";
  bool close = false;
};

template <class T>
using SmtpResult = tl::expected<T, SmtpError>;

inline tl::unexpected<SmtpError> refuse(int code, EnhancedCode enh, std::string text, const char* reason,
                                        bool close = false) {
  return tl::unexpected<SmtpError>(SmtpError{code, enh, std::move(text), reason, close});
}

// RFC 5321 §4.5.3.1.5: a reply line is at most 512 octets including the code and CRLF; longer
// text is cut there, so the peer's line reader never sees an over-long line from us.
inline constexpr size_t kMaxReplyLine = 512;

// Client-supplied text (a HELO name, an address) made safe to echo in a reply or a log: CR, LF,
// NUL, other control bytes and non-ASCII become '?', cut to max bytes with "..." appended.
// Without it a client could end our reply line early and inject a reply of its own.
std::string sanitize(std::string_view text, size_t max = 160);

// One reply, every line "code-enh text" (RFC 2034: the enhanced code starts each line of a
// multi-line reply). Lines are sanitized and cut to kMaxReplyLine. No lines gives "code enh".
std::string render_reply(int code, EnhancedCode enh, std::span<const std::string_view> lines);
std::string render_reply(int code, EnhancedCode enh, std::string_view text);
std::string render_reply(const SmtpError& err);

// The EHLO/LHLO answer (RFC 5321 §4.1.1.1): "250-domain greeting" then one keyword per line.
// RFC 2034: replies to EHLO/LHLO carry no enhanced code. xid announces our delivery-id MAIL
// parameter (see XID in command.hpp). size 0 announces "SIZE" with no fixed limit (RFC 1870 §4).
struct Capabilities {
  std::string domain;
  std::string greeting;
  std::optional<uint64_t> size;
  bool pipelining = true;
  bool eightbitmime = true;
  bool smtputf8 = false;
  bool enhancedstatuscodes = true;
  bool chunking = false;
  bool binarymime = false;
  bool dsn = false;
  bool starttls = false;
  bool xid = false;
  std::vector<std::string> auth;   // SASL mechanisms, upper case
  std::vector<std::string> extra;  // other keywords, sent as given after sanitizing
};
std::string render_ehlo(const Capabilities& caps);

// A reply as read from a server (the mta's SMTP/LMTP client, tests).
struct Reply {
  int code = 0;
  EnhancedCode enhanced;           // from the first line, when its class matches the code's
  std::vector<std::string> lines;  // text of each line, enhanced code and its space removed
  bool positive() const { return code >= 200 && code < 400; }
  bool transient() const { return code >= 400 && code < 500; }
};

struct ReplyLimits {
  size_t max_line = 2048;   // more than 512, since real servers send longer lines
  size_t max_lines = 100;   // EHLO lists are about 20
  size_t max_total = 65536;
};

// Incremental: bytes in any split, complete replies out. LF alone ends a line too (servers in
// the wild send it; a client loses nothing by accepting it). A malformed or over-long reply makes
// failed() true for good: a server speaking garbage is dropped, not resynchronised.
class ReplyParser {
 public:
  explicit ReplyParser(ReplyLimits limits = {}) : limits_(limits) {}
  // Consumes all of `in`; appends each complete reply to `out`.
  void feed(std::string_view in, std::vector<Reply>& out);
  bool failed() const { return !error_.empty(); }
  const std::string& error() const { return error_; }
  // Bytes of an unfinished reply held (0 between replies).
  size_t pending() const { return line_.size() + held_; }
  void reset();

 private:
  void on_line(std::string_view line, std::vector<Reply>& out);

  ReplyLimits limits_;
  std::string line_;
  Reply current_;
  bool in_reply_ = false;
  size_t held_ = 0;
  std::string error_;
};

// "d.ddd.ddd " at the start of text (RFC 3463 §2: class 2, 4 or 5; subject and detail 1..3
// digits). Returns the code and the length consumed including the one space, or nullopt.
std::optional<std::pair<EnhancedCode, size_t>> parse_enhanced(std::string_view text);

}  // namespace common::smtp
