// encode.hpp: the response syntax of RFC 9051 §7 and §9 (strings, astrings, nstrings, mailbox
// names, flag lists, sequence sets, dates, section names, status lines), so a session never builds
// wire syntax by hand and no client byte reaches the wire unquoted.
//
// `utf8`: the client enabled IMAP4rev2 or UTF8=ACCEPT (RFC 9051 §6.3.1, RFC 6855), so quoted
// strings and resp-text may carry UTF-8; before that 8-bit text goes as a literal (RFC 3501's
// quoted strings are 7-bit) and mailbox names in modified UTF-7.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>

#include "mmp/imap/command.hpp"
#include "mmp/imap/grammar.hpp"

namespace mmp::imap {

// Longest string sent quoted; longer ones go as literals (a client's line limit is the concern).
inline constexpr size_t kMaxQuoted = 1024;

// No NUL, CR or LF; 8-bit only as valid UTF-8 and only when `utf8`.
bool can_quote(std::string_view s, bool utf8);
// "..." with '"' and '\' escaped; `s` must pass can_quote.
void append_quoted(std::string& out, std::string_view s);
// "{n}\r\n" and the bytes (a server's literals are synchronising by nature: RFC 9051 §4.3).
void append_literal(std::string& out, std::string_view s);
// "~{n}\r\n" and the bytes: BINARY[] data that holds NUL (RFC 3516 §4.3).
void append_literal8(std::string& out, std::string_view s);
// Quoted when it can be (and is at most kMaxQuoted), else a literal.
void append_string(std::string& out, std::string_view s, bool utf8);
// An atom when every byte is an ASTRING-CHAR (and it is not "NIL"), else as append_string.
void append_astring(std::string& out, std::string_view s, bool utf8);
// NIL when `s` is empty-handed, else append_string.
void append_nstring(std::string& out, std::optional<std::string_view> s, bool utf8);
// A store mailbox name (UTF-8): modified UTF-7 unless `utf8`, then as an astring; INBOX as an atom.
void append_mailbox(std::string& out, std::string_view name, bool utf8);
// "(\Seen $Junk)". A flag that is not "\" atom or atom cannot be written and is left out.
void append_flag_list(std::string& out, std::span<const std::string> flags);
// "1:3,5,7:9" from ranges (first <= last) in the order given.
void append_sequence_set(std::string& out, std::span<const SeqRange> ranges);
// The same from ascending numbers, runs joined ("1,2,3,5" is written "1:3,5").
void append_number_set(std::string& out, std::span<const uint32_t> ascending);
// INTERNALDATE: "\"17-Jul-1996 09:44:25 +0000\"" (date-time, in UTC).
void append_date_time(std::string& out, int64_t unix_seconds);
// The name a FETCH response gives a section: BODY[1.2.HEADER.FIELDS (From To)]<0>, BINARY[1],
// BINARY.SIZE[2], RFC822.HEADER ... (<origin> with a partial, RFC 9051 §7.5.2). BODY.PEEK answers
// as BODY.
void append_section_name(std::string& out, const BodySection& section, bool utf8);

// resp-text made safe: CR, LF and other control bytes become spaces, 8-bit bytes '?' unless `utf8`
// and valid UTF-8, and a leading '[' (which would read as a response code) is dropped.
std::string sanitize_text(std::string_view text, bool utf8);
// "<tag> <OK|NO|BAD|BYE|PREAUTH> [<code>] <text>\r\n"; tag "*" for an untagged one. The text is
// sanitized; the code is the session's own (an atom and its arguments).
std::string status_line(std::string_view tag, Condition condition, std::string_view code, std::string_view text,
                        bool utf8 = false);
// "+ <text>\r\n" (a continuation request; for SASL the text is the base64 challenge).
std::string continuation(std::string_view text);
// The reply to a ParseError: "<tag> BAD [<code>] <text>\r\n".
std::string parse_error_line(const ParseError& error);

}  // namespace mmp::imap
