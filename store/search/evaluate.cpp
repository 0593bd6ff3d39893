// evaluate.cpp: SEARCH over a mailbox: the program compiled to a tree (operands sorted by what they
// cost to decide), then each message's record, header and parts loaded only when a key asks.
#include "store/search/evaluate.hpp"

#include <algorithm>
#include <limits>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>

#include "common/ascii.hpp"
#include "store/mime/fields.hpp"
#include "store/search/text.hpp"

namespace store::search {

namespace {

using common::ErrorKind;
using common::Result;

// What deciding a key needs: the message record only, its header, or its parts' contents.
enum Cost : uint8_t { kRecord = 0, kHeader = 1, kBody = 2 };

struct Node {
  Kind kind = Kind::All;
  Cost cost = kRecord;
  std::vector<uint32_t> children;  // operators: operands, cheapest first
  std::string needle;              // folded
  std::string field;               // header keys: the field name, ASCII lower case
  uint64_t number = 0;
  int32_t day = 0;
  std::vector<UidRange> uids;  // sorted, merged
  uint32_t slot = 0;           // BODY, TEXT: index of its needle in the body scan
};

// A needle the body scan looks for; TEXT's also in the MIME headers of the parts.
struct Slot {
  std::string needle;
  bool text = false;
};

std::vector<UidRange> normalise(std::vector<UidRange> set) {
  for (auto& r : set) {
    if (r.first > r.last) std::swap(r.first, r.last);
    if (r.first == 0) r.first = 1;  // there is no UID 0
  }
  std::erase_if(set, [](const UidRange& r) { return r.last == 0; });
  std::sort(set.begin(), set.end(), [](const UidRange& a, const UidRange& b) { return a.first < b.first; });
  std::vector<UidRange> out;
  for (const auto& r : set) {
    if (!out.empty() && (r.first <= out.back().last || r.first - 1 == out.back().last)) {
      out.back().last = std::max(out.back().last, r.last);
    } else {
      out.push_back(r);
    }
  }
  return out;
}

bool contains(const std::vector<UidRange>& set, uint32_t uid) {
  auto it = std::upper_bound(set.begin(), set.end(), uid, [](uint32_t u, const UidRange& r) { return u < r.first; });
  return it != set.begin() && uid <= std::prev(it)->last;
}

const char* header_of(Kind k) {
  switch (k) {
    case Kind::Bcc: return "bcc";
    case Kind::Cc: return "cc";
    case Kind::From: return "from";
    case Kind::To: return "to";
    case Kind::Subject: return "subject";
    default: return nullptr;
  }
}

// The program as a tree. Keys arrive in prefix order, so an operator's operands follow it and a
// node's index is below its operands'; validate() has checked the shape, so this needs no checks.
struct Compiled {
  std::vector<Node> nodes;
  std::vector<Slot> slots;
  bool text_slots = false;
};

Compiled compile(std::span<const SearchKey> program) {
  Compiled c;
  if (program.empty()) {
    c.nodes.push_back(Node{});
    return c;
  }
  c.nodes.resize(program.size());
  struct Open {
    uint32_t node;
    uint32_t owed;
  };
  std::vector<Open> open;
  std::unordered_map<std::string, uint32_t> slot_of;
  for (uint32_t i = 0; i < program.size(); ++i) {
    const SearchKey& key = program[i];
    Node& n = c.nodes[i];
    n.kind = key.kind;
    if (!open.empty()) {
      c.nodes[open.back().node].children.push_back(i);
      if (--open.back().owed == 0) open.pop_back();
    }
    switch (key.kind) {
      case Kind::And: open.push_back({i, key.operands}); break;
      case Kind::Or: open.push_back({i, 2}); break;
      case Kind::Not: open.push_back({i, 1}); break;
      case Kind::Bcc: case Kind::Cc: case Kind::From: case Kind::To: case Kind::Subject:
        n.field = header_of(key.kind);
        n.needle = fold(key.text);
        n.cost = kHeader;
        break;
      case Kind::Header:
        n.field = common::ascii::lowered(key.field);
        n.needle = fold(key.text);
        n.cost = kHeader;
        break;
      case Kind::Body:
      case Kind::Text:
        n.needle = fold(key.text);
        n.cost = n.needle.empty() ? kRecord : kBody;
        if (!n.needle.empty()) {
          // The same needle twice is looked for once.
          const bool text = key.kind == Kind::Text;
          auto [at, added] = slot_of.try_emplace((text ? "T" : "B") + n.needle, static_cast<uint32_t>(c.slots.size()));
          n.slot = at->second;
          if (added) c.slots.push_back(Slot{n.needle, text});
          c.text_slots = c.text_slots || text;
        }
        break;
      case Kind::Keyword: case Kind::Unkeyword: n.needle = common::ascii::lowered(key.text); break;
      case Kind::SentBefore: case Kind::SentOn: case Kind::SentSince:
        n.day = key.day;
        n.cost = kHeader;
        break;
      case Kind::Uid: n.uids = normalise(key.uids); break;
      default:
        n.number = key.number;
        n.day = key.day;
        break;
    }
  }
  // Operands come after their operator, so walking backwards sees every operand's cost first.
  for (size_t i = c.nodes.size(); i-- > 0;) {
    Node& n = c.nodes[i];
    if (n.children.empty()) continue;
    Cost cost = kRecord;
    for (uint32_t ch : n.children) cost = std::max(cost, c.nodes[ch].cost);
    n.cost = cost;
    std::stable_sort(n.children.begin(), n.children.end(),
                     [&](uint32_t a, uint32_t b) { return c.nodes[a].cost < c.nodes[b].cost; });
  }
  return c;
}

// The UIDs the whole program can match at most: a UID key at the root, or among the root AND's
// operands, bounds the scan of `messages`.
std::pair<uint32_t, uint32_t> uid_bounds(const Compiled& c) {
  uint32_t lo = 1, hi = UINT32_MAX;
  auto narrow = [&](const Node& n) {
    if (n.uids.empty()) {
      lo = 1, hi = 0;
      return;
    }
    lo = std::max(lo, n.uids.front().first);
    hi = std::min(hi, n.uids.back().last);
  };
  const Node& root = c.nodes[0];
  if (root.kind == Kind::Uid) narrow(root);
  if (root.kind == Kind::And) {
    for (uint32_t ch : root.children) {
      if (c.nodes[ch].kind == Kind::Uid) narrow(c.nodes[ch]);
    }
  }
  return {lo, hi};
}

tl::unexpected<common::Error> damaged(uint32_t uid, const std::string& what) {
  return common::fail(ErrorKind::Internal, "message UID " + std::to_string(uid) + ": " + what);
}

class Search {
 public:
  Search(const common::lmdb::Txn& txn, const Dbs& dbs, const Compiled& c, int64_t now, SearchStats& stats,
         HeaderCache* cache)
      : txn_(txn), dbs_(dbs), c_(c), now_(now), stats_(stats), cache_(cache) {}

  Result<bool> matches(uint32_t uid, const MessageRecord& record) {
    uid_ = uid;
    record_ = &record;
    structure_.reset();
    header_.reset();
    body_hits_.clear();
    body_scanned_ = false;
    return eval(0);
  }

 private:
  // Recursion is bounded by validate()'s depth limit.
  Result<bool> eval(uint32_t index) {
    const Node& n = c_.nodes[index];
    const MessageRecord& m = *record_;
    switch (n.kind) {
      case Kind::All: return true;
      case Kind::And:
        for (uint32_t ch : n.children) {
          auto r = eval(ch);
          if (!r || !*r) return r;
        }
        return true;
      case Kind::Or:
        for (uint32_t ch : n.children) {
          auto r = eval(ch);
          if (!r || *r) return r;
        }
        return false;
      case Kind::Not: {
        auto r = eval(n.children.front());
        if (!r) return r;
        return !*r;
      }
      case Kind::Answered: return (m.flags & kAnswered) != 0;
      case Kind::Deleted: return (m.flags & kDeleted) != 0;
      case Kind::Draft: return (m.flags & kDraft) != 0;
      case Kind::Flagged: return (m.flags & kFlagged) != 0;
      case Kind::Seen: return (m.flags & kSeen) != 0;
      case Kind::Unanswered: return (m.flags & kAnswered) == 0;
      case Kind::Undeleted: return (m.flags & kDeleted) == 0;
      case Kind::Undraft: return (m.flags & kDraft) == 0;
      case Kind::Unflagged: return (m.flags & kFlagged) == 0;
      case Kind::Unseen: return (m.flags & kSeen) == 0;
      case Kind::Keyword:
      case Kind::Unkeyword: {
        bool has = false;
        for (const auto& k : m.keywords) has = has || common::ascii::iequals(k, n.needle);
        return n.kind == Kind::Keyword ? has : !has;
      }
      case Kind::Bcc: case Kind::Cc: case Kind::From: case Kind::To: case Kind::Subject: case Kind::Header: {
        if (auto r = load_root(); !r) return tl::unexpected(r.error());
        auto in = [&](const DecodedHeader& h) {
          for (const auto& f : h.fields) {
            if (h.name(f) == n.field && (n.needle.empty() || h.value(f).find(n.needle) != std::string_view::npos)) {
              return true;
            }
          }
          return false;
        };
        return in(*prefix_) || in(*header_);
      }
      case Kind::Body:
      case Kind::Text: {
        if (n.needle.empty()) return true;
        if (n.kind == Kind::Text) {
          if (auto r = load_root(); !r) return tl::unexpected(r.error());
          auto in = [&](const DecodedHeader& h) {
            for (const auto& f : h.fields) {
              if (h.line(f).find(n.needle) != std::string_view::npos) return true;
            }
            return false;
          };
          if (in(*prefix_) || in(*header_)) return true;
        }
        if (!body_scanned_) {
          if (auto r = scan_body(); !r) return tl::unexpected(r.error());
        }
        return body_hits_[n.slot] != 0;
      }
      case Kind::Before: return utc_day(m.internal_date) < n.day;
      case Kind::On: return utc_day(m.internal_date) == n.day;
      case Kind::Since: return utc_day(m.internal_date) >= n.day;
      case Kind::SentBefore:
      case Kind::SentOn:
      case Kind::SentSince: {
        if (auto r = load_root(); !r) return tl::unexpected(r.error());
        // The first Date: field decides (the prefix's, were there one), valid or not.
        const std::optional<int32_t> sent = prefix_->has_date ? prefix_->sent_day : header_->sent_day;
        const int32_t d = sent ? *sent : utc_day(m.internal_date);
        return n.kind == Kind::SentBefore ? d < n.day : n.kind == Kind::SentOn ? d == n.day : d >= n.day;
      }
      case Kind::Larger: return m.size > n.number;
      case Kind::Smaller: return m.size < n.number;
      case Kind::Uid: return contains(n.uids, uid_);
      case Kind::ModSeq: return m.modseq >= n.number;
      case Kind::Older:
      case Kind::Younger: {
        // Intervals past 2^62 seconds are "forever"; clamping keeps now - n from overflowing.
        const int64_t interval = static_cast<int64_t>(std::min<uint64_t>(n.number, uint64_t{1} << 62));
        const int64_t edge = now_ - interval;
        return n.kind == Kind::Older ? m.internal_date <= edge : m.internal_date >= edge;
      }
    }
    return false;
  }

  struct Body {
    uint64_t size = 0;
    uint32_t chunks = 0;
    mime::MessageStructure structure;
  };

  Result<const Body*> structure() {
    if (structure_) return &*structure_;
    auto record = find_body(txn_, dbs_, record_->body_id);
    if (!record) return tl::unexpected(record.error());
    if (!*record) return damaged(uid_, "its body is missing");
    auto s = mime::decode((*record)->structure);
    if (!s) return damaged(uid_, "its stored structure: " + s.error().detail);
    if (s->size != (*record)->size || s->parts.empty()) return damaged(uid_, "its structure does not fit its body");
    if ((*record)->chunks != ((*record)->size + kBodyChunk - 1) / kBodyChunk) {
      return damaged(uid_, "its body has the wrong number of chunks");
    }
    ++stats_.structures;
    structure_.emplace(Body{(*record)->size, (*record)->chunks, std::move(*s)});
    return &*structure_;
  }

  // Bytes [start, end) of the body, from the chunks that hold them only.
  Result<std::string> read(const Body& body, uint64_t start, uint64_t end) {
    std::string out;
    if (end > body.size || start > end) return damaged(uid_, "a part outside its body");
    out.reserve(end - start);
    for (uint64_t at = start; at < end;) {
      const uint64_t chunk = at / kBodyChunk;
      auto value = txn_.get(dbs_.body_chunks, chunk_key(record_->body_id, static_cast<uint32_t>(chunk)));
      if (!value) return tl::unexpected(value.error());
      if (!*value) return damaged(uid_, "a body chunk is missing");
      const uint64_t chunk_start = chunk * kBodyChunk;
      const uint64_t expected = std::min<uint64_t>(kBodyChunk, body.size - chunk_start);
      if ((*value)->size() != expected) return damaged(uid_, "a body chunk has the wrong size");
      const uint64_t to = std::min(end, chunk_start + expected);
      out.append((*value)->substr(at - chunk_start, to - at));
      at = to;
    }
    return out;
  }

  // The message's own header as SEARCH sees it: its Delivered-To prefix (decoded once for all the
  // messages of the search that carry the same prefix, which in one mailbox is most), then the
  // body's header, from the cache when it has it, else read, decoded and offered to the cache.
  Result<void> load_root() {
    if (header_) return {};
    if (!prefix_ || prefix_bytes_ != record_->prefix) {
      prefix_bytes_ = record_->prefix;
      prefix_ = decode_header(prefix_bytes_, charsets_);
    }
    if (cache_) {
      header_ = cache_->find(record_->body_id);
      if (header_) {
        ++stats_.header_hits;
        return {};
      }
    }
    auto body = structure();
    if (!body) return tl::unexpected(body.error());
    const mime::Part& top = (*body)->structure.parts[0];
    auto header = read(**body, top.header_start, top.header_end);
    if (!header) return tl::unexpected(header.error());
    ++stats_.headers;
    auto decoded = std::make_shared<const DecodedHeader>(decode_header(*header, charsets_));
    if (cache_) cache_->insert(record_->body_id, decoded);
    header_ = std::move(decoded);
    return {};
  }

  // Every BODY and TEXT needle of the program against this message's parts at once, so the parts
  // are read and decoded once however many keys ask. TEXT's look at the root header elsewhere.
  Result<void> scan_body() {
    body_scanned_ = true;
    body_hits_.assign(c_.slots.size(), 0);
    auto got = structure();
    if (!got) return tl::unexpected(got.error());
    const Body& body = **got;
    const auto& parts = body.structure.parts;
    ++stats_.bodies;
    size_t left = c_.slots.size();
    auto look = [&](std::string_view text, bool in_body) {
      for (size_t i = 0; i < c_.slots.size(); ++i) {
        if (body_hits_[i] || !(in_body || c_.slots[i].text)) continue;
        if (text.find(c_.slots[i].needle) != std::string_view::npos) {
          body_hits_[i] = 1;
          --left;
        }
      }
    };
    std::string text;
    for (size_t p = 0; p < parts.size() && left > 0; ++p) {
      const mime::Part& part = parts[p];
      const bool encapsulated = p > 0 && parts[part.parent].kind == mime::PartKind::Message;
      if (p > 0 && (encapsulated || c_.text_slots)) {
        auto header = read(body, part.header_start, part.header_end);
        if (!header) return tl::unexpected(header.error());
        stats_.body_bytes += header->size();
        const DecodedHeader fields = decode_header(*header, charsets_);
        for (const auto& f : fields.fields) look(fields.line(f), encapsulated);
      }
      if (part.kind == mime::PartKind::Leaf && part.type == "text") {
        auto raw = read(body, part.body_start, part.body_end);
        if (!raw) return tl::unexpected(raw.error());
        stats_.body_bytes += raw->size();
        const std::string decoded = search::decode_transfer(*raw, part.encoding);
        std::string utf8;
        charsets_.to_utf8(part.charset, decoded, utf8);
        text.clear();
        fold_append(utf8, text);
        look(text, true);
      }
    }
    return {};
  }

  const common::lmdb::Txn& txn_;
  const Dbs& dbs_;
  const Compiled& c_;
  const int64_t now_;
  SearchStats& stats_;
  HeaderCache* const cache_;
  Charsets charsets_;

  uint32_t uid_ = 0;
  const MessageRecord* record_ = nullptr;
  std::optional<Body> structure_;
  std::string prefix_bytes_;
  std::optional<DecodedHeader> prefix_;
  std::shared_ptr<const DecodedHeader> header_;  // null until load_root()
  bool body_scanned_ = false;
  std::vector<uint8_t> body_hits_;
};

}  // namespace

Result<SearchResult> evaluate(const common::lmdb::Txn& txn, const Dbs& dbs, uint64_t mailbox_id,
                              std::span<const SearchKey> program, int64_t now, const std::function<bool()>& stop,
                              HeaderCache* cache) {
  if (auto ok = validate(program); !ok) return tl::unexpected(ok.error());
  const Compiled compiled = compile(program);
  SearchResult result;
  const auto [lo, hi] = uid_bounds(compiled);
  if (lo > hi) return result;
  if (cache && !cache->accepts(mdb_txn_env(txn.get()))) cache = nullptr;
  Search search(txn, dbs, compiled, now, result.stats, cache);
  std::optional<common::Error> failed;
  auto scanned = for_each_message(txn, dbs, mailbox_id, lo, hi, [&](uint32_t uid, const MessageRecord& record) {
    if (stop && stop()) {
      failed = common::Error{ErrorKind::TempFail, "search stopped after " + std::to_string(result.stats.messages) +
                                                      " messages (deadline or cancellation)"};
      return false;
    }
    ++result.stats.messages;
    auto r = search.matches(uid, record);
    if (!r) {
      failed = r.error();
      return false;
    }
    if (*r) {
      result.uids.push_back(uid);
      result.highest_modseq = std::max(result.highest_modseq, record.modseq);
    }
    return true;
  });
  if (!scanned) return tl::unexpected(scanned.error());
  if (failed) return tl::unexpected(*failed);
  return result;
}

}  // namespace store::search
