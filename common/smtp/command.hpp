// command.hpp: the arguments of SMTP (RFC 5321) and LMTP (RFC 2033) commands, parsed after the
// verb: HELO/EHLO/LHLO names, MAIL/RCPT paths with ESMTP parameters, BDAT sizes. Pure: text in,
// typed command or an SmtpError (reply to send) out; no I/O, clock or logging.
//
// `args` is the rest of the command line after the verb, without CRLF; leading and trailing
// blanks are ignored. Keywords are case-insensitive (RFC 5321 §2.4).
//
// XID, our delivery-id MAIL parameter (announced as the EHLO/LHLO keyword "XID"):
//   MAIL FROM:<reverse-path> XID=<id>   id = 1*64( ALPHA / DIGIT / "." / "_" / ":" / "-" )
// The mta sends one id per queued message per delivery attempt series; the store remembers
// (id, recipient) for its retry window, so a retry after a crash between the store's commit and
// its reply gets the 250 again without a second copy. The value is plain (not xtext): none of
// its characters need encoding, and a fixed alphabet keeps it safe as a database key and in logs.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "common/smtp/reply.hpp"

namespace common::smtp {

// RFC 5321 §4.5.3.1: these are the minimums a server must accept; longer is refused.
struct CommandLimits {
  size_t max_path = 256;     // §4.5.3.1.3, the angle brackets included
  size_t max_local = 64;     // §4.5.3.1.1
  size_t max_domain = 255;   // §4.5.3.1.2
  size_t max_params = 10;    // ESMTP parameters on one MAIL or RCPT
  uint64_t max_message = 0;  // SIZE= above this is refused with 552 5.3.4 (RFC 1870 §6); 0: no limit
  uint64_t max_chunk = 64 * 1024 * 1024;  // largest BDAT chunk we will read
  // Which extensions the server announced: a parameter of one it did not is refused with
  // 555 5.5.4 like an unknown one (RFC 5321 §4.1.1.11).
  bool size = true;
  bool eightbitmime = true;
  bool binarymime = false;
  bool smtputf8 = false;
  bool dsn = false;
  bool auth = false;
  bool xid = false;
  // HELO/EHLO names from the Internet break the grammar (underscores, bare words); false accepts
  // any one word of printable ASCII (kind Other) so a policy can decide, true refuses them.
  bool strict_helo = true;
};

enum class DomainKind { Name, Ipv4, Ipv6, General, Other };

struct HeloArgs {
  std::string name;  // as sent; an address literal keeps its brackets
  DomainKind kind = DomainKind::Name;
};

struct Mailbox {
  std::string local;   // as on the wire: a dot-string, or a quoted-string with its quotes
  std::string domain;  // as sent (not lowered); an address literal keeps its brackets; "" only for <Postmaster>
  DomainKind kind = DomainKind::Name;
  bool quoted = false;
  bool utf8 = false;   // non-ASCII in the local part or domain (RFC 6531)
  std::string address() const { return domain.empty() ? local : local + "@" + domain; }
  // The local part's value: quotes and quoted-pair backslashes removed (RFC 5321 §4.1.2).
  std::string local_value() const;
};

struct Path {
  bool null = false;          // "<>": the null reverse path (RFC 5321 §4.5.5), MAIL only
  bool postmaster = false;    // "<Postmaster>" without a domain (RFC 5321 §4.1.1.3), RCPT only
  bool source_route = false;  // "<@a,@b:x@y>": accepted, the route ignored (RFC 5321 §4.1.1.3, App. C)
  Mailbox mailbox;
};

enum class Body { SevenBit, EightBitMime, BinaryMime };
enum class Ret { Full, Hdrs };
// NOTIFY (RFC 3461 §4.1): NEVER alone, or any of the three.
enum Notify : uint8_t { kNotifyNever = 1, kNotifySuccess = 2, kNotifyFailure = 4, kNotifyDelay = 8 };

struct MailParams {
  std::optional<uint64_t> size;      // RFC 1870
  std::optional<Body> body;          // RFC 6152 8BITMIME, RFC 3030 BINARYMIME (then BDAT only)
  bool smtputf8 = false;             // RFC 6531 §3.4
  std::optional<Ret> ret;            // RFC 3461 §4.3
  std::optional<std::string> envid;  // RFC 3461 §4.4, xtext-decoded
  std::optional<std::string> auth;   // RFC 4954 §5, xtext-decoded; "<>" when the sender is unknown
  std::optional<std::string> xid;    // our delivery id (above)
};

struct RcptParams {
  uint8_t notify = 0;                      // Notify bits; 0: not given
  std::optional<std::string> orcpt_type;   // RFC 3461 §4.2 addr-type, e.g. "rfc822" or "utf-8"
  std::optional<std::string> orcpt;        // its address, xtext-decoded
};

struct MailArgs {
  Path path;
  MailParams params;
};

struct RcptArgs {
  Path path;
  RcptParams params;
};

struct BdatArgs {
  uint64_t size = 0;
  bool last = false;
};

// EHLO and LHLO: Domain / address-literal; HELO: Domain (RFC 5321 §4.1.1.1, RFC 2033 §4.1).
SmtpResult<HeloArgs> parse_helo(std::string_view args, bool extended, const CommandLimits& limits);
// "FROM:<reverse-path> [params]". Non-ASCII in the path needs SMTPUTF8 on the same command.
SmtpResult<MailArgs> parse_mail(std::string_view args, const CommandLimits& limits);
// "TO:<forward-path> [params]". smtputf8: whether this transaction's MAIL carried SMTPUTF8.
SmtpResult<RcptArgs> parse_rcpt(std::string_view args, bool smtputf8, const CommandLimits& limits);
// "n [LAST]" (RFC 3030 §2). Any error here has close set: the client sends n bytes whatever we
// reply, and with a size we cannot trust we cannot tell where they end.
SmtpResult<BdatArgs> parse_bdat(std::string_view args, const CommandLimits& limits);
// DATA, RSET, QUIT, STARTTLS (RFC 3207 §4: "501 Syntax error (no parameters allowed)").
SmtpResult<void> parse_no_args(std::string_view args);
// NOOP and HELP take an optional string, VRFY and EXPN a required one (RFC 5321 §4.1.1.6-9);
// returned trimmed, printable ASCII (UTF-8 when utf8) only.
SmtpResult<std::string_view> parse_string_arg(std::string_view args, bool required, bool utf8 = false);

// The client side (the mta towards the store or the Internet): the command line with CRLF.
// ENVID, AUTH and ORCPT are xtext-encoded; a source route is not sent (RFC 5321 §4.1.1.3 says
// clients SHOULD NOT). Parsing what these render gives back the same arguments.
std::string format_mail(const MailArgs& mail);
std::string format_rcpt(const RcptArgs& rcpt);
std::string format_path(const Path& path);

// A bare path "<...>" alone (tests, the mta's queue tools). reverse: "<>" allowed.
SmtpResult<Path> parse_path(std::string_view text, bool reverse, bool utf8_allowed, const CommandLimits& limits);

// RFC 3461 §4: xtext ("+" and two upper-case hex digits for a byte). nullopt when malformed.
std::optional<std::string> xtext_decode(std::string_view text);
std::string xtext_encode(std::string_view text);

// Well-formed UTF-8 (RFC 3629): no overlongs, surrogates or code points above U+10FFFF.
bool valid_utf8(std::string_view text);

// An XID value is 1..64 of [A-Za-z0-9._:-].
bool valid_xid(std::string_view id);

}  // namespace common::smtp
