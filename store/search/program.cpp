// program.cpp: validation of a flat SEARCH program (program.hpp): one pass, an explicit stack of
// open operators, so a program of any depth costs O(keys) time and O(kMaxDepth) stack.
#include "store/search/program.hpp"

#include <string_view>

#include "store/search/text.hpp"

namespace store::search {

namespace {

using common::ErrorKind;

constexpr const char* kNames[] = {
    "ALL",        "AND",       "OR",       "NOT",       "ANSWERED", "DELETED", "DRAFT",      "FLAGGED",
    "SEEN",       "UNANSWERED", "UNDELETED", "UNDRAFT", "UNFLAGGED", "UNSEEN", "KEYWORD",    "UNKEYWORD",
    "BCC",        "CC",        "FROM",     "TO",        "SUBJECT",  "HEADER",  "BODY",       "TEXT",
    "BEFORE",     "ON",        "SINCE",    "SENTBEFORE", "SENTON",  "SENTSINCE", "LARGER",   "SMALLER",
    "UID",        "MODSEQ",    "OLDER",    "YOUNGER",
};
static_assert(sizeof(kNames) / sizeof(kNames[0]) == kLastKind + 1);

bool takes_text(Kind k) {
  switch (k) {
    case Kind::Keyword: case Kind::Unkeyword: case Kind::Bcc: case Kind::Cc: case Kind::From: case Kind::To:
    case Kind::Subject: case Kind::Header: case Kind::Body: case Kind::Text:
      return true;
    default:
      return false;
  }
}

// RFC 5322 §3.6.8: ftext is printable US-ASCII except ":".
bool valid_field_name(std::string_view name) {
  if (name.empty()) return false;
  for (char c : name) {
    const auto u = static_cast<unsigned char>(c);
    if (u < 33 || u > 126 || c == ':') return false;
  }
  return true;
}

tl::unexpected<common::Error> refuse(size_t at, const SearchKey& key, std::string what) {
  return common::fail(ErrorKind::Protocol,
                      "search key " + std::to_string(at + 1) + " (" + kind_name(key.kind) + "): " + what);
}

}  // namespace

const char* kind_name(Kind kind) {
  const auto v = static_cast<int32_t>(kind);
  return v >= 0 && v <= kLastKind ? kNames[v] : "?";
}

common::Result<void> validate(std::span<const SearchKey> program) {
  if (program.size() > kMaxKeys) {
    return common::fail(ErrorKind::Protocol, "search has " + std::to_string(program.size()) + " keys, more than " +
                                                 std::to_string(kMaxKeys));
  }
  // The operators whose operands are still coming, outermost first: the innermost is the parent
  // of the next key (prefix order), and each is one level deeper than the one before it.
  struct Open {
    uint32_t owed;
    size_t depth;
  };
  std::vector<Open> open;
  open.reserve(kMaxDepth);
  size_t text_bytes = 0;
  size_t uid_ranges = 0;
  for (size_t i = 0; i < program.size(); ++i) {
    const SearchKey& key = program[i];
    if (i > 0 && open.empty()) {
      return common::fail(ErrorKind::Protocol, "search key " + std::to_string(i + 1) + " (" + kind_name(key.kind) +
                                                   ") follows the end of the expression");
    }
    const size_t depth = open.empty() ? 1 : open.back().depth + 1;
    if (depth > kMaxDepth) {
      return common::fail(ErrorKind::Protocol, "search nests deeper than " + std::to_string(kMaxDepth) + " levels");
    }
    if (!open.empty() && --open.back().owed == 0) open.pop_back();

    const auto raw = static_cast<int32_t>(key.kind);
    if (raw < 0 || raw > kLastKind) {
      return common::fail(ErrorKind::Protocol,
                          "search key " + std::to_string(i + 1) + " has an unknown kind " + std::to_string(raw));
    }
    if (key.field.size() > kMaxString || key.text.size() > kMaxString) {
      return refuse(i, key, "a string longer than " + std::to_string(kMaxString) + " bytes");
    }
    switch (key.kind) {
      case Kind::And:
        if (key.operands == 0) return refuse(i, key, "no operands");
        open.push_back({key.operands, depth});
        break;
      case Kind::Or:
        open.push_back({2, depth});
        break;
      case Kind::Not:
        open.push_back({1, depth});
        break;
      case Kind::Header:
        if (!valid_field_name(key.field)) return refuse(i, key, "the field name is not a RFC 5322 field name");
        text_bytes += key.field.size();
        break;
      case Kind::Keyword:
      case Kind::Unkeyword:
        if (key.text.empty()) return refuse(i, key, "an empty keyword");
        break;
      case Kind::Older:
      case Kind::Younger:
        if (key.number == 0) return refuse(i, key, "an interval of 0 seconds (RFC 5032 wants at least 1)");
        break;
      case Kind::Uid:
        uid_ranges += key.uids.size();
        if (uid_ranges > kMaxUidRanges) {
          return common::fail(ErrorKind::Protocol,
                              "search has more than " + std::to_string(kMaxUidRanges) + " UID ranges");
        }
        break;
      default:
        break;
    }
    if (takes_text(key.kind)) {
      if (key.text.find('\0') != std::string::npos) return refuse(i, key, "a string with a NUL byte");
      if (!valid_utf8(key.text)) return refuse(i, key, "a string that is not valid UTF-8");
      text_bytes += key.text.size();
    }
    if (text_bytes > kMaxTotalText) {
      return common::fail(ErrorKind::Protocol,
                          "search strings add up to more than " + std::to_string(kMaxTotalText) + " bytes");
    }
  }
  if (!open.empty()) {
    return common::fail(ErrorKind::Protocol, "search ends before its operators have all their operands");
  }
  return {};
}

}  // namespace store::search
