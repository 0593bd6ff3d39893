// header_cache.hpp: a message header decoded as SEARCH compares it (every field unfolded, RFC
// 2047-decoded, case-folded), and a byte-bounded cache of those per body, shared by the read pool.
#pragma once

#include <lmdb.h>

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "store/search/text.hpp"

namespace store::search {

// The fields of one header block, as one string of folded lines "name: value" (name in ASCII
// lower case, value decoded and folded) and their offsets: compact, and immutable once built.
struct DecodedHeader {
  struct Field {
    size_t start = 0;     // the line starts here in `text`
    size_t value_at = 0;  // ... its value here (after "name: ")
    size_t end = 0;
  };
  std::string text;
  std::vector<Field> fields;  // in header order
  bool has_date = false;      // a Date: field is there; sent_day is the first one's calendar date
  std::optional<int32_t> sent_day;

  std::string_view line(const Field& f) const { return std::string_view(text).substr(f.start, f.end - f.start); }
  std::string_view name(const Field& f) const {
    return std::string_view(text).substr(f.start, f.value_at - 2 - f.start);
  }
  std::string_view value(const Field& f) const {
    return std::string_view(text).substr(f.value_at, f.end - f.value_at);
  }
  // What keeping it costs, its allocations and the cache's bookkeeping included.
  size_t bytes() const;
};

// Every field of `header` (for_each_field's blocks: the message's own header, a part's header, the
// Delivered-To prefix), in order. Pure: the same bytes give the same value.
DecodedHeader decode_header(std::string_view header, Charsets& charsets);

// Decoded root headers by body id, bounded by `max_bytes`.
//
// Replacement: SEARCH reads the headers of a mailbox in UID order, all of them, again and again.
// Once the mailboxes searched add up to more than the budget, strict LRU evicts each entry just
// before the next scan needs it and hits nothing at all (random replacement hardly better: 2% of a
// mailbox four times the budget). So a full cache takes a new header only one miss in
// kAdmitOneIn, in the place of one chosen at random: what is in stays long enough to be hit, a
// mailbox bigger than the cache is found from it at about 85% of the share the budget allows, and
// a changed working set still replaces the old one, kAdmitOneIn times slower. Below the budget
// every header is taken. A hit needs no bookkeeping (no list to reorder under the lock).
//
// Why a body id is a safe key: a body is written once, at delivery or append, under an id that
// `meta` `next_body` hands out and never hands out again (schema.cpp put_body), and its bytes never
// change afterwards; what a DecodedHeader holds is a pure function of those bytes. So an entry can
// never describe another message's header, whatever the user, mailbox, UID or UIDVALIDITY: two
// messages with the same body id (one delivery to several recipients, a COPY) have the very same
// header. The per-recipient Delivered-To prefix is not in the body and not in the cache. An entry
// of a body since freed is never asked for again and ages out.
//
// Ids are unique within one LMDB environment only: a cache belongs to one environment. The first
// search binds it to its transaction's environment, and a search in another environment does not
// use it (accepts() is false), so a cache handed to the wrong environment costs speed, never results.
// The binding is by address: a cache must not outlive its environment (the service that owns the
// environment owns the cache).
//
// Thread safety: every member may be called from any thread. The entries are spread over shards,
// each behind its own mutex held only for a map lookup (and, inserting, a few vector moves); an
// entry is handed out as a shared_ptr, so one evicted while a search reads it stays alive until that
// search lets go.
class HeaderCache {
 public:
  static constexpr unsigned kAdmitOneIn = 8;

  // 0 keeps nothing (every lookup misses and nothing is stored).
  explicit HeaderCache(size_t max_bytes);
  ~HeaderCache();
  HeaderCache(const HeaderCache&) = delete;
  HeaderCache& operator=(const HeaderCache&) = delete;

  bool accepts(MDB_env* env);
  std::shared_ptr<const DecodedHeader> find(uint64_t body_id);
  // An entry larger than a shard's budget is not kept, nor, kAdmitOneIn - 1 times in kAdmitOneIn,
  // one that does not fit beside the others (above). Inserting an id already there keeps the one
  // there (two threads that missed at once decoded the same bytes).
  void insert(uint64_t body_id, std::shared_ptr<const DecodedHeader> header);

  struct Stats {
    uint64_t hits = 0;
    uint64_t misses = 0;
    uint64_t evictions = 0;
    uint64_t not_admitted = 0;  // misses a full cache did not take
    size_t entries = 0;
    size_t bytes = 0;
  };
  Stats stats() const;
  size_t max_bytes() const { return max_bytes_; }

 private:
  struct Entry {
    uint64_t body_id = 0;
    std::shared_ptr<const DecodedHeader> header;
  };
  struct Shard {
    std::mutex mu;
    std::vector<Entry> entries;                   // in no order: a victim is any index
    std::unordered_map<uint64_t, size_t> index;  // body id -> its place in entries
    size_t bytes = 0;
    uint64_t random = 0x853C49E6748FEA9Bull;  // xorshift state for admission and victims (fixed: tests repeat)
  };
  Shard& shard_of(uint64_t body_id);

  const size_t max_bytes_;
  size_t shard_budget_ = 0;
  std::vector<std::unique_ptr<Shard>> shards_;
  std::atomic<MDB_env*> env_{nullptr};
  std::atomic<uint64_t> hits_{0}, misses_{0}, evictions_{0}, not_admitted_{0};
};

}  // namespace store::search
