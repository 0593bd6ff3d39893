// grammar.hpp: the argument grammar of every IMAP command over one complete command (its lines
// with the literals' bytes in place), the limits it and the parser share, and their refusal.
// Pure. The parser (parser.hpp) is the only caller outside the tests.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <variant>

#include "mmp/imap/command.hpp"

namespace mmp::imap {

// Every byte a client can make the parser hold is under one of these.
struct ParserLimits {
  size_t max_line = 64 * 1024;          // one line, without CRLF (RFC 7162 §4 asks for at least 8192)
  size_t max_command = 1024 * 1024;     // lines and string literals of one command; APPEND messages apart
  uint64_t max_literal = 64 * 1024;     // one string literal (a password, a SEARCH string, a name)
  uint64_t max_message = 50ull << 20;   // one APPEND message literal (APPENDLIMIT): the store's max_append_size
  size_t max_literals = 256;            // string literals in one command
  size_t max_messages = 1000;           // messages in one MULTIAPPEND
  size_t max_depth = 64;                // nesting of parenthesised lists and of SEARCH keys
  size_t max_ranges = 65536;            // ranges in all sequence sets of one command, before merging
  size_t max_elements = 20000;          // strings, flags, fields, search keys ... of one command
  size_t max_search_keys = 10000;       // keys of one SEARCH (the store's own bound)
  // A refused non-synchronising literal (the client sends it without waiting) up to this size is
  // read and dropped, so the session goes on; a larger one ends the session (the bytes would
  // otherwise be parsed as commands, and reading gigabytes to find the next command is the
  // client's denial of service).
  uint64_t max_discard = 256 * 1024;
  // Bytes fed while paused (the session should stop reading then; this catches one that does not).
  size_t max_pending = 256 * 1024;
};

// A command (or a line) the parser refused. The session answers
//   <tag> <BAD|NO> [<code>] <text>
// (encode.hpp's append_parse_error), counts the error, and when `fatal` writes "* BYE" and
// closes: the parser cannot find the next command and ignores all further input.
struct ParseError {
  std::string tag = "*";         // the command's tag when one could be read
  Condition condition = Condition::Bad;
  std::string code;              // a response code without brackets ("TOOBIG", "CLIENTBUG"), or empty
  std::string text;              // for the client; never holds client bytes or CR/LF
  std::optional<Verb> verb;      // when the command name was read
  bool fatal = false;
  friend bool operator==(const ParseError&, const ParseError&) = default;
};

namespace detail {

// A literal inside a collected command: its announcement ("{5}", "{5+}", "~{5}") ends a line at
// `announce`, its bytes follow at `data`, and the next line's text follows them.
struct LiteralMark {
  size_t announce = 0;
  size_t data = 0;
  size_t size = 0;
};

// The start of a command's first line: the tag and the command name ("UID FETCH" is Fetch with
// uid), read before any literal of the command is accepted.
struct Head {
  bool tag_ok = false;
  bool verb_ok = false;
  std::string tag;       // "*" unless tag_ok
  std::optional<Verb> verb;
  bool uid = false;
  size_t args = 0;       // offset of what follows the command name
  std::string error;     // when !verb_ok: for the client
};
Head read_head(std::string_view line);

// The whole command: a Command, or the refusal to answer.
std::variant<Command, ParseError> parse_command(std::string_view cmd, std::span<const LiteralMark> marks,
                                                const ParserLimits& limits);

// The text before an APPEND message literal that starts at `literal_at`: for the first message
// "tag APPEND mailbox [flags] [date] " (fills `mailbox`), for the next ones " [flags] [date] ".
// Fills `message` (not its size); a refusal's text otherwise.
std::optional<std::string> parse_append_prefix(std::string_view cmd, std::span<const LiteralMark> marks,
                                               size_t literal_at, bool first, const ParserLimits& limits,
                                               std::string& mailbox, AppendMessage& message);

}  // namespace detail
}  // namespace mmp::imap
