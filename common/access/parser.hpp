// parser.hpp: pure parser for client access filters: filter files (one rule per line, '#'
// comments, backslash-newline continuation as in tcpd) and the compact "+svc:list$-svc:list" form.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include <tl/expected.hpp>

#include "common/access/rule.hpp"

namespace common::access {

// Errors (at most limits.max_errors, each with line and column); warnings travel in RuleList.
using ParseErrors = std::vector<Diagnostic>;
template <class T>
using ParseResult = tl::expected<T, ParseErrors>;

// Maps a byte of an assembled logical line back to its physical line and column.
struct LinePiece {
  uint32_t offset;  // where this piece starts in the logical line
  uint32_t line;
  uint32_t column;  // physical column of that first byte
};

// Incremental: any split of the input gives the same result. Memory is bounded by the limits:
// an over-long line is reported and skipped without being buffered.
class FilterParser {
 public:
  FilterParser(std::string source, RuleKind kind, AccessLimits limits = {});

  void feed(std::string_view bytes);
  // Ends the input (a last line without newline counts) and returns the rules or every error.
  ParseResult<RuleList> finish();

 private:
  bool end_physical_line();  // true when the line ends in a backslash (continued)
  void end_logical_line();

  std::string source_;
  RuleKind kind_;
  AccessLimits limits_;
  std::string logical_;        // the logical line being assembled
  std::vector<LinePiece> pieces_;  // physical lines in logical_
  std::string physical_;       // the physical line being read (bounded)
  size_t raw_bytes_ = 0;       // bytes of the logical line so far, newlines included
  bool overflow_ = false;      // logical line over max_line: skipping to its end
  char last_ = 0, before_last_ = 0;  // last two bytes of the physical line (for '\' and "\\\r")
  uint32_t line_ = 1;          // physical line being read
  uint32_t column_ = 0;        // bytes of it read so far
  RuleList out_;
  ParseErrors errors_;
  size_t error_count_ = 0;     // all errors, also those past max_errors
};

// Whole-text conveniences over FilterParser.
ParseResult<RuleList> parse_filter(std::string_view text, std::string_view source, RuleKind kind,
                                   const AccessLimits& limits = {});

// "+imap,pop,http:*$-smtp:ALL": '$' separates rules, '+' allows, '-' denies (ACC-05). Blanks around
// rules are ignored, an empty rule is skipped with a warning; positions are line 1, column = byte.
ParseResult<RuleList> parse_compact(std::string_view text, std::string_view source = "rules",
                                    const AccessLimits& limits = {});

}  // namespace common::access
