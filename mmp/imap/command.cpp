// command.cpp: names of the command model's values and sequence-set resolution (command.hpp).
#include "mmp/imap/command.hpp"

#include <algorithm>
#include <array>

#include "common/ascii.hpp"

namespace mmp::imap {

namespace {

constexpr std::array<std::string_view, kVerbCount> kVerbNames = {
    "CAPABILITY", "NOOP",     "LOGOUT", "STARTTLS",  "AUTHENTICATE", "LOGIN",      "ENABLE",  "SELECT",
    "EXAMINE",    "CREATE",   "DELETE", "RENAME",    "SUBSCRIBE",    "UNSUBSCRIBE", "LIST",   "LSUB",
    "NAMESPACE",  "STATUS",   "APPEND", "IDLE",      "CHECK",        "CLOSE",      "UNSELECT", "EXPUNGE",
    "SEARCH",     "FETCH",    "STORE",  "COPY",      "MOVE",         "GETQUOTA",   "GETQUOTAROOT", "SETQUOTA",
    "ID",         "UNAUTHENTICATE",
};

}  // namespace

std::string_view verb_name(Verb verb) {
  const auto i = static_cast<size_t>(verb);
  return i < kVerbNames.size() ? kVerbNames[i] : std::string_view("?");
}

std::optional<Verb> find_verb(std::string_view name) {
  for (size_t i = 0; i < kVerbNames.size(); ++i) {
    if (common::ascii::iequals(kVerbNames[i], name)) return static_cast<Verb>(i);
  }
  return std::nullopt;
}

bool takes_uid(Verb verb) {
  switch (verb) {
    case Verb::Copy: case Verb::Move: case Verb::Fetch: case Verb::Search: case Verb::Store: case Verb::Expunge:
      return true;
    default:
      return false;
  }
}

std::string_view condition_name(Condition c) {
  switch (c) {
    case Condition::Ok: return "OK";
    case Condition::No: return "NO";
    case Condition::Bad: return "BAD";
    case Condition::Bye: return "BYE";
    case Condition::Preauth: return "PREAUTH";
  }
  return "BAD";
}

std::string_view status_item_name(StatusItem item) {
  switch (item) {
    case StatusItem::Messages: return "MESSAGES";
    case StatusItem::Recent: return "RECENT";
    case StatusItem::UidNext: return "UIDNEXT";
    case StatusItem::UidValidity: return "UIDVALIDITY";
    case StatusItem::Unseen: return "UNSEEN";
    case StatusItem::Deleted: return "DELETED";
    case StatusItem::Size: return "SIZE";
    case StatusItem::HighestModSeq: return "HIGHESTMODSEQ";
    case StatusItem::AppendLimit: return "APPENDLIMIT";
  }
  return "?";
}

uint32_t SequenceSet::max_number() const {
  uint32_t m = ranges.empty() ? 0 : ranges.back().last;
  if (star) m = std::max(m, star_lo == UINT32_MAX && star_hi == 0 ? 0 : star_hi);
  return m;
}

std::vector<SeqRange> resolve(const SequenceSet& set, uint32_t largest) {
  std::vector<SeqRange> out = set.ranges;
  if (set.star && largest > 0) {
    out.push_back({std::min(set.star_lo, largest), std::max(set.star_hi, largest)});
    std::sort(out.begin(), out.end(), [](const SeqRange& a, const SeqRange& b) { return a.first < b.first; });
    std::vector<SeqRange> merged;
    for (const auto& r : out) {
      if (!merged.empty() && r.first <= merged.back().last + uint64_t{1}) {
        merged.back().last = std::max(merged.back().last, r.last);
      } else {
        merged.push_back(r);
      }
    }
    out = std::move(merged);
  }
  return out;
}

}  // namespace mmp::imap
