// evaluate.hpp: a SEARCH program (program.hpp) run over one mailbox inside a read transaction,
// reading only what the keys need: the message record first, the header next, bodies last.
#pragma once

#include <cstdint>
#include <functional>
#include <span>
#include <vector>

#include "common/lmdb/lmdb.hpp"
#include "common/result.hpp"
#include "store/search/header_cache.hpp"
#include "store/search/program.hpp"
#include "store/storage/schema.hpp"

namespace store::search {

// What a search cost, for the caller's metrics and for tests of the evaluation order.
struct SearchStats {
  uint64_t messages = 0;    // records looked at
  uint64_t structures = 0;  // stored MIME structures decoded
  uint64_t headers = 0;     // message headers read and decoded
  uint64_t header_hits = 0; // message headers the HeaderCache had decoded already
  uint64_t bodies = 0;      // messages whose parts were read for BODY or TEXT
  uint64_t body_bytes = 0;  // bytes of parts read for them
};

struct SearchResult {
  std::vector<uint32_t> uids;   // ascending
  uint64_t highest_modseq = 0;  // of the matches, 0 when none (RFC 7162 §3.1.5 "(MODSEQ n)")
  SearchStats stats;
};

// Semantics (RFC 9051 §6.4.4 where it speaks, Dovecot's choices where it does not):
// - Strings match as case-insensitive substrings after fold() (text.hpp). An empty string in a
//   header key matches every message that has the field; in BODY or TEXT every message.
// - BCC, CC, FROM, TO, SUBJECT and HEADER look at every field of that name in the message's own
//   header (its Delivered-To: line included, since clients read it as part of the header), each
//   value unfolded and RFC 2047-decoded.
// - BODY looks at the decoded text of every text/* leaf (base64 and quoted-printable undone, the
//   charset converted to UTF-8) and at the header fields of encapsulated message/rfc822 parts
//   (they are in the outer message's body); attachments of other types are not searched.
// - TEXT is BODY or any header field of any part ("name: value", decoded), MIME headers included.
// - BEFORE/ON/SINCE compare the internal date's UTC calendar date; SENTBEFORE/SENTON/SENTSINCE
//   the calendar date the Date: field writes (time and zone ignored), or the internal date's when
//   the field is missing or has no valid date. OLDER n: internal date <= now - n; YOUNGER n:
//   internal date >= now - n (both match at exactly n seconds, as Dovecot does).
// - LARGER and SMALLER compare RFC822.SIZE; MODSEQ is >=; UID takes the set as given.
// AND and OR try their operands cheapest first (record, then header, then body keys) and stop at
// the first that decides, so "UNSEEN BODY x" reads the bodies of unseen messages only.
// Errors: ErrorKind::Protocol from validate() (a detail for the client), Internal for a damaged
// record, structure or body, and what LMDB returns.
// `stop`, when set, is asked before each message: true ends the search with ErrorKind::TempFail
// (the caller's deadline passed or its client went away; a search over a big mailbox with many
// BODY keys can take long, and nothing else bounds it).
// `cache`, when set, keeps the decoded root headers (header_cache.hpp) for the next searches: the
// answers are the same with it and without it. It must be this environment's cache; one bound to
// another environment is not used. A hit reads neither the body record nor its header, so a body
// damaged after its header was cached shows in BODY/TEXT searches and FETCH, not in header ones.
common::Result<SearchResult> evaluate(const common::lmdb::Txn& txn, const Dbs& dbs, uint64_t mailbox_id,
                                      std::span<const SearchKey> program, int64_t now,
                                      const std::function<bool()>& stop = {}, HeaderCache* cache = nullptr);

}  // namespace store::search
