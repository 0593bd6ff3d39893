// program.hpp: an IMAP SEARCH (RFC 9051 §6.4.4 with the RFC 3501 keys, RFC 7162 MODSEQ, RFC 5032
// OLDER/YOUNGER) as the MailStore API carries it: a flat list of keys in prefix (Polish) order.
#pragma once

// Why flat: a client may send a search nested 10,000 levels deep, and any decoder that recurses
// per level would follow it. The program arrives as a list, validate() walks it with an explicit
// stack and refuses more than kMaxDepth levels, and only then does anything recurse over it.

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "common/result.hpp"

namespace store::search {

// The numbering is proto/mailstore.proto's SearchKey.Kind, so the service converts with a cast
// (validate() refuses a value outside the list).
enum class Kind : int32_t {
  All = 0,
  And = 1,  // the next `operands` expressions
  Or = 2,   // the next two
  Not = 3,  // the next one
  Answered = 4,
  Deleted = 5,
  Draft = 6,
  Flagged = 7,
  Seen = 8,
  Unanswered = 9,
  Undeleted = 10,
  Undraft = 11,
  Unflagged = 12,
  Unseen = 13,
  Keyword = 14,    // text: the keyword (compared without regard to ASCII case)
  Unkeyword = 15,
  Bcc = 16,        // text, in the named header field
  Cc = 17,
  From = 18,
  To = 19,
  Subject = 20,
  Header = 21,     // field, text ("" matches every message that has the field)
  Body = 22,       // text, in the decoded text parts
  Text = 23,       // text, in the header fields (MIME part headers too) or the body
  Before = 24,     // day: internal date's UTC calendar date < day
  On = 25,
  Since = 26,
  SentBefore = 27,  // day: the Date: field's calendar date as written (else the internal date's)
  SentOn = 28,
  SentSince = 29,
  Larger = 30,     // number: RFC822.SIZE > number
  Smaller = 31,    // RFC822.SIZE < number
  Uid = 32,        // uids
  ModSeq = 33,     // MODSEQ >= number
  Older = 34,      // number: internal date <= now - number seconds
  Younger = 35,    // internal date >= now - number seconds
};
inline constexpr int32_t kLastKind = static_cast<int32_t>(Kind::Younger);

struct UidRange {
  uint32_t first = 0;
  uint32_t last = 0;  // inclusive; first > last is read as last..first
  friend bool operator==(const UidRange&, const UidRange&) = default;
};

struct SearchKey {
  Kind kind = Kind::All;
  std::string field;
  std::string text;
  uint64_t number = 0;
  int32_t day = 0;  // days since 1970-01-01
  std::vector<UidRange> uids;
  uint32_t operands = 0;  // AND: how many expressions follow as its operands
};
using Program = std::vector<SearchKey>;

// What one search may ask for. Depth counts keys from the outermost to the innermost (a lone
// key is 1 deep, NOT x is 2): no real client nests more than a handful, and the evaluation
// recurses per level. The rest bound the memory and time one request can cost.
inline constexpr size_t kMaxDepth = 64;
inline constexpr size_t kMaxKeys = 10000;
inline constexpr size_t kMaxString = 64 * 1024;      // bytes of one field name or string
inline constexpr size_t kMaxTotalText = 1024 * 1024;  // bytes of all of them together
inline constexpr size_t kMaxUidRanges = 1000000;     // ranges of all UID keys together

// "ALL", "AND", ... "YOUNGER"; "?" for a value outside the enumeration.
const char* kind_name(Kind kind);

// One well-formed expression (an empty program is ALL): every operator has its operands, nothing
// follows the end, a known kind on every key, AND with at least one operand, the limits above,
// strings in valid UTF-8 without NUL (IMAP strings cannot carry one), HEADER's field name a
// RFC 5322 field name, KEYWORD's keyword not empty, OLDER/YOUNGER at least 1 second (RFC 5032
// nz-number). ErrorKind::Protocol with a detail a client can read, naming the key by position.
// Never recurses: the program is untrusted and may be deeper than any stack.
common::Result<void> validate(std::span<const SearchKey> program);

}  // namespace store::search
