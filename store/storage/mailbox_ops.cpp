// mailbox_ops.cpp: the MailStore API's operations in one transaction (mailbox_ops.hpp).
#include "store/storage/mailbox_ops.hpp"

#include "store/mime/transfer.hpp"

#include <algorithm>
#include <array>
#include <map>
#include <set>
#include <tuple>
#include <unordered_map>

#include "common/lmdb/codec.hpp"
#include "common/text/utf8.hpp"
#include "store/mime/parser.hpp"

namespace store::ops {
namespace {

using common::lmdb::Cursor;
using common::lmdb::Decoder;
using common::lmdb::Encoder;
using common::lmdb::Txn;

// Messages read per pass by the writes that delete or rewrite as they go: a write invalidates the
// cursor's views, so each pass copies a batch out, closes the cursor and then writes.
constexpr size_t kBatch = 512;

tl::unexpected<OpError> fail(OpCode code, std::string detail) {
  return tl::unexpected(OpError{code, std::move(detail)});
}
template <class T>
tl::unexpected<OpError> fail(const common::Result<T>& r) {
  return tl::unexpected(to_op_error(r.error()));
}
tl::unexpected<OpError> damaged(std::string what) { return fail(OpCode::Internal, "damaged " + std::move(what)); }

std::string in_quotes(std::string_view name) { return "\"" + std::string(name) + "\""; }

char lower(char c) { return (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c; }
std::string lowered(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = lower(c);
  return out;
}
bool iequals(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    if (lower(a[i]) != lower(b[i])) return false;
  }
  return true;
}

// ---- UTF-8 and names ----

// nullptr when `s` is valid UTF-8 without control characters, else what is wrong with it. The
// decoder (common/text) says only whether a sequence is valid; the reason is worked out here from
// the bytes it refused, so a client learns which kind of sequence was wrong.
const char* utf8_problem(std::string_view s) {
  const auto c = static_cast<uint8_t>(s[0]);
  size_t len = 0;
  if ((c & 0xe0) == 0xc0) {
    len = 2;
  } else if ((c & 0xf0) == 0xe0) {
    len = 3;
  } else if ((c & 0xf8) == 0xf0) {
    len = 4;
  } else {
    return "is not valid UTF-8";
  }
  if (len > s.size()) return "is not valid UTF-8 (a truncated sequence)";
  uint32_t cp = c & (0x7f >> len);
  for (size_t k = 1; k < len; ++k) {
    const auto cc = static_cast<uint8_t>(s[k]);
    if ((cc & 0xc0) != 0x80) return "is not valid UTF-8";
    cp = (cp << 6) | (cc & 0x3f);
  }
  // An overlong form could smuggle "/" or NUL past a byte-wise check elsewhere.
  if ((len == 2 && cp < 0x80) || (len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000)) {
    return "is not valid UTF-8 (an overlong form)";
  }
  if (cp >= 0xd800 && cp <= 0xdfff) return "is not valid UTF-8 (a surrogate)";
  if (cp > 0x10ffff) return "is not valid UTF-8 (past U+10FFFF)";
  return "is not valid UTF-8";
}

const char* text_problem(std::string_view s) {
  size_t i = 0;
  while (i < s.size()) {
    uint32_t cp = 0;
    const size_t len = common::text::decode_utf8(s.substr(i), cp);
    if (len == 0) return utf8_problem(s.substr(i));
    // RFC 5198 Net-Unicode: no C0 or C1 controls; CR and LF would also break IMAP's quoted strings.
    if (cp < 0x20 || cp == 0x7f || (cp >= 0x80 && cp <= 0x9f)) return "has a control character";
    i += len;
  }
  return nullptr;
}

std::vector<std::string_view> ancestors(std::string_view name) {
  std::vector<std::string_view> out;
  for (size_t pos = name.find('/'); pos != std::string_view::npos; pos = name.find('/', pos + 1)) {
    out.push_back(name.substr(0, pos));
  }
  return out;
}

// ---- users and mailboxes ----

OpResult<UserRecord> need_user(const Txn& txn, const Dbs& dbs, std::string_view user) {
  auto u = find_user(txn, dbs, user);
  if (!u) return fail(u);
  if (!*u) return fail(OpCode::NotFound, "no such user");
  return **u;
}

OpResult<void> put(Txn& txn, MDB_dbi dbi, std::string_view key, std::string_view value) {
  if (auto r = txn.put(dbi, key, value); !r) return fail(r);
  return {};
}
OpResult<void> del(Txn& txn, MDB_dbi dbi, std::string_view key) {
  if (auto r = txn.del(dbi, key); !r) return fail(r);
  return {};
}
OpResult<void> write_user(Txn& txn, const Dbs& dbs, std::string_view name, const UserRecord& user) {
  return put(txn, dbs.users, user_key(name), encode(user));
}
OpResult<void> write_mailbox(Txn& txn, const Dbs& dbs, uint64_t user_id, std::string_view name,
                             const MailboxRecord& mailbox) {
  return put(txn, dbs.mailboxes, mailbox_key(user_id, name), encode(mailbox));
}

std::string id_key(uint64_t id) { return Encoder().u64(id).str(); }

// The user's mailboxes in key (name) order.
OpResult<std::vector<std::pair<std::string, MailboxRecord>>> user_mailboxes(const Txn& txn, const Dbs& dbs,
                                                                           uint64_t user_id) {
  std::vector<std::pair<std::string, MailboxRecord>> out;
  const std::string prefix = id_key(user_id);
  auto cursor = Cursor::open(txn, dbs.mailboxes);
  if (!cursor) return fail(cursor);
  for (auto entry = cursor->seek(prefix);; entry = cursor->next()) {
    if (!entry) return fail(entry);
    if (!*entry || !(*entry)->first.starts_with(prefix)) return out;
    auto record = decode_mailbox((*entry)->second);
    if (!record) return fail(record);
    out.emplace_back(std::string((*entry)->first.substr(prefix.size())), *record);
  }
}

// Keys with this prefix, at most `limit` counted.
OpResult<size_t> count_prefix(const Txn& txn, MDB_dbi dbi, std::string_view prefix, size_t limit) {
  auto cursor = Cursor::open(txn, dbi);
  if (!cursor) return fail(cursor);
  size_t n = 0;
  for (auto entry = cursor->seek(prefix); n < limit; entry = cursor->next()) {
    if (!entry) return fail(entry);
    if (!*entry || !(*entry)->first.starts_with(prefix)) break;
    ++n;
  }
  return n;
}

// Names (without the user prefix) of a user's subscriptions, in order.
OpResult<std::vector<std::string>> user_subscriptions(const Txn& txn, const Dbs& dbs, uint64_t user_id) {
  std::vector<std::string> out;
  const std::string prefix = id_key(user_id);
  auto cursor = Cursor::open(txn, dbs.subscriptions);
  if (!cursor) return fail(cursor);
  for (auto entry = cursor->seek(prefix);; entry = cursor->next()) {
    if (!entry) return fail(entry);
    if (!*entry || !(*entry)->first.starts_with(prefix)) return out;
    out.emplace_back((*entry)->first.substr(prefix.size()));
  }
}

// ---- message scans ----

// Walks the messages of one mailbox in UID order, restricted to a normalised UID set when given:
// it steps with next() inside a range and seeks only across gaps, and finds the next range by
// binary search, so a set of a million ranges over few messages (or the reverse) stays cheap.
class MessageScan {
 public:
  using Item = std::pair<uint32_t, std::string_view>;

  static OpResult<MessageScan> open(const Txn& txn, const Dbs& dbs, uint64_t mailbox_id, const UidSet* set,
                                    uint64_t from = 1) {
    auto cursor = Cursor::open(txn, dbs.messages);
    if (!cursor) return fail(cursor);
    return MessageScan(std::move(*cursor), mailbox_id, set, from);
  }

  OpResult<std::optional<Item>> next() {
    while (!done_) {
      if (from_ > UINT32_MAX) break;
      if (set_ && !stepping_) {
        if (!seek_range(from_)) break;
      }
      auto entry = stepping_ ? cursor_.next() : cursor_.seek(message_key(mailbox_id_, static_cast<uint32_t>(from_)));
      stepping_ = false;
      if (!entry) return fail(entry);
      if (!*entry || !(*entry)->first.starts_with(prefix_)) break;
      if ((*entry)->first.size() != prefix_.size() + 4) return damaged("message key");
      Decoder key((*entry)->first.substr(prefix_.size()));
      uint32_t uid = 0;
      key.u32(uid);
      if (set_) {
        if (!seek_range(uid)) break;
        if (uid < (*set_)[index_].first) {
          from_ = (*set_)[index_].first;  // a gap: seek to the range's start
          continue;
        }
      }
      from_ = uint64_t{uid} + 1;
      stepping_ = true;
      return std::optional<Item>{Item{uid, (*entry)->second}};
    }
    done_ = true;
    return std::optional<Item>{};
  }

 private:
  MessageScan(Cursor cursor, uint64_t mailbox_id, const UidSet* set, uint64_t from)
      : cursor_(std::move(cursor)), mailbox_id_(mailbox_id), prefix_(id_key(mailbox_id)), set_(set),
        from_(std::max<uint64_t>(from, 1)) {}

  // The first range whose last UID is >= uid, from the current one on; false past the last range.
  bool seek_range(uint64_t uid) {
    const auto begin = set_->begin() + static_cast<std::ptrdiff_t>(index_);
    auto it = std::lower_bound(begin, set_->end(), uid,
                               [](const UidRange& r, uint64_t u) { return uint64_t{r.second} < u; });
    index_ = static_cast<size_t>(it - set_->begin());
    if (it == set_->end()) return false;
    if (from_ < it->first) from_ = it->first;
    return true;
  }

  Cursor cursor_;
  uint64_t mailbox_id_;
  std::string prefix_;
  const UidSet* set_;
  size_t index_ = 0;
  uint64_t from_;
  bool stepping_ = false;
  bool done_ = false;
};

// Up to kBatch decoded messages from `from` on (advanced past them); empty at the end.
OpResult<std::vector<MessageInfo>> next_batch(const Txn& txn, const Dbs& dbs, uint64_t mailbox_id, const UidSet* set,
                                              uint64_t& from) {
  std::vector<MessageInfo> out;
  auto scan = MessageScan::open(txn, dbs, mailbox_id, set, from);
  if (!scan) return tl::unexpected(scan.error());
  while (out.size() < kBatch) {
    auto item = scan->next();
    if (!item) return tl::unexpected(item.error());
    if (!*item) break;
    auto record = decode_message((*item)->second);
    if (!record) return fail(record);
    out.push_back(MessageInfo{(*item)->first, std::move(*record)});
  }
  if (!out.empty()) from = uint64_t{out.back().uid} + 1;
  return out;
}

// ---- writes shared by expunge, delete, move and rename ----

// One reference less; the body and its chunks go with the last. A missing body is left for
// verify_refcounts to report rather than making the message impossible to expunge.
// `chunks_deleted` (when given) counts the chunks removed, for the batches that free a mailbox.
OpResult<void> release_body(Txn& txn, const Dbs& dbs, uint64_t body_id, size_t* chunks_deleted = nullptr) {
  auto body = find_body(txn, dbs, body_id);
  if (!body) return fail(body);
  if (!*body) return {};
  if ((*body)->references > 1) {
    (*body)->references -= 1;
    return put(txn, dbs.bodies, id_key(body_id), encode(**body));
  }
  for (uint32_t i = 0; i < (*body)->chunks; ++i) {
    if (auto r = del(txn, dbs.body_chunks, chunk_key(body_id, i)); !r) return r;
  }
  if (chunks_deleted) *chunks_deleted += (*body)->chunks + 1;
  return del(txn, dbs.bodies, id_key(body_id));
}

// Removes one message and its kind-0 change; with `tombstone` its expunge takes HIGHESTMODSEQ + 1
// as a kind-1 entry (what QRESYNC's VANISHED reads). The records are written by the caller.
OpResult<void> remove_message(Txn& txn, const Dbs& dbs, MailboxRecord& mailbox, UserRecord& user, uint32_t uid,
                              const MessageRecord& message, bool tombstone) {
  if (auto r = del(txn, dbs.messages, message_key(mailbox.id, uid)); !r) return r;
  if (auto r = del(txn, dbs.changes, change_key(mailbox.id, message.modseq)); !r) return r;
  if (tombstone) {
    const uint64_t modseq = ++mailbox.highestmodseq;
    if (auto r = put(txn, dbs.changes, change_key(mailbox.id, modseq), Encoder().u32(uid).u8(1).str()); !r) return r;
    mailbox.tombstones += 1;
  }
  mailbox.messages -= std::min<uint32_t>(mailbox.messages, 1);
  if (!(message.flags & kSeen)) mailbox.unseen -= std::min<uint32_t>(mailbox.unseen, 1);
  mailbox.bytes -= std::min(mailbox.bytes, message.size);
  user.messages -= std::min<uint64_t>(user.messages, 1);
  user.bytes_used -= std::min(user.bytes_used, message.size);
  return release_body(txn, dbs, message.body_id);
}

// Files a copy of `message` (its body shared) into the mailbox `name`; returns the new state.
OpResult<MessageState> file_copy(Txn& txn, const Dbs& dbs, const std::string& user_name, UserRecord& user,
                                 std::string_view name, const MessageRecord& message) {
  MessageRecord copy = message;
  const uint64_t body_size = message.size - std::min<uint64_t>(message.size, message.prefix.size());
  auto filed = add_message(txn, dbs, user_name, user, name, message.body_id, body_size, std::move(copy));
  if (!filed) return fail(filed);
  return MessageState{filed->uid, message.flags, message.keywords, filed->mailbox.highestmodseq};
}

OpResult<void> check_quota(const UserRecord& user, uint64_t add_bytes, uint64_t add_messages) {
  if (user.quota_bytes != 0 && user.bytes_used + add_bytes > user.quota_bytes) {
    return fail(OpCode::ResourceExhausted, "over quota: " + std::to_string(user.bytes_used) + " of " +
                                               std::to_string(user.quota_bytes) + " bytes used, " +
                                               std::to_string(add_bytes) + " more do not fit");
  }
  if (user.quota_messages != 0 && user.messages + add_messages > user.quota_messages) {
    return fail(OpCode::ResourceExhausted, "over quota: " + std::to_string(user.messages) + " of " +
                                               std::to_string(user.quota_messages) + " messages, " +
                                               std::to_string(add_messages) + " more do not fit");
  }
  return {};
}

OpResult<void> check_uid_room(std::string_view name, const MailboxRecord& mailbox, uint64_t count) {
  // add_message keeps UIDNEXT below UINT32_MAX, so the largest UID is UINT32_MAX - 1.
  if (uint64_t{mailbox.uidnext} + count > UINT32_MAX) {
    return fail(OpCode::ResourceExhausted, "mailbox " + in_quotes(name) + " has no UIDs left");
  }
  return {};
}

// The missing superior names of `name` (outermost first), the mailbox count checked for them and
// `extra` more.
OpResult<std::vector<std::string>> missing_parents(const Txn& txn, const Dbs& dbs, uint64_t user_id,
                                                   std::string_view name, size_t extra) {
  std::vector<std::string> missing;
  for (std::string_view a : ancestors(name)) {
    auto found = find_mailbox(txn, dbs, user_id, a);
    if (!found) return fail(found);
    if (!*found) missing.emplace_back(a);
  }
  auto count = count_prefix(txn, dbs.mailboxes, id_key(user_id), kMaxMailboxesPerUser + 1);
  if (!count) return tl::unexpected(count.error());
  if (*count + missing.size() + extra > kMaxMailboxesPerUser) {
    return fail(OpCode::ResourceExhausted,
                "too many mailboxes (at most " + std::to_string(kMaxMailboxesPerUser) + " per user)");
  }
  return missing;
}

OpResult<MailboxRecord> make_mailbox(Txn& txn, const Dbs& dbs, uint64_t user_id, std::string_view name,
                                     uint32_t special_use, int64_t now) {
  auto made = store::create_mailbox(txn, dbs, user_id, name, special_use, now);
  if (!made) return fail(made);
  return *made;
}

// DELETE's part that takes effect at once: the name and the id go, the mailbox is listed in
// `deleted_mailboxes` for free_deleted, and the user's counters drop by the mailbox's (they are
// the sums of its messages), so quota and usage are right before a single message is freed. The
// user record is updated in memory and written.
OpResult<DeletedMailbox> remove_mailbox(Txn& txn, const Dbs& dbs, std::string_view user_name, UserRecord& user,
                                        std::string_view name, MailboxRecord mailbox) {
  DeletedMailbox out{std::string(name), mailbox, mailbox.messages};
  const DeletedMailboxRecord pending{user.id, mailbox.messages, mailbox.bytes, std::string(name)};
  if (auto r = put(txn, dbs.deleted_mailboxes, id_key(mailbox.id), encode(pending)); !r) return tl::unexpected(r.error());
  if (auto r = del(txn, dbs.mailboxes, mailbox_key(user.id, name)); !r) return tl::unexpected(r.error());
  if (auto r = del(txn, dbs.mailbox_ids, id_key(mailbox.id)); !r) return tl::unexpected(r.error());
  user.messages -= std::min<uint64_t>(user.messages, mailbox.messages);
  user.bytes_used -= std::min(user.bytes_used, mailbox.bytes);
  if (auto r = write_user(txn, dbs, user_name, user); !r) return tl::unexpected(r.error());
  return out;
}

// The first pending mailbox id at or after `from`.
OpResult<std::optional<uint64_t>> next_pending(const Txn& txn, const Dbs& dbs, uint64_t from) {
  auto cursor = Cursor::open(txn, dbs.deleted_mailboxes);
  if (!cursor) return fail(cursor);
  auto entry = cursor->seek(id_key(from));
  if (!entry) return fail(entry);
  if (!*entry) return std::optional<uint64_t>{};
  Decoder k((*entry)->first);
  uint64_t id = 0;
  if (!k.u64(id) || !k.done()) return damaged("deleted_mailboxes key");
  return std::optional<uint64_t>{id};
}

// ---- flags ----

constexpr std::array<std::pair<std::string_view, uint32_t>, 5> kSystemFlags{{
    {"\\Seen", kSeen},
    {"\\Answered", kAnswered},
    {"\\Flagged", kFlagged},
    {"\\Deleted", kDeleted},
    {"\\Draft", kDraft},
}};
constexpr uint32_t kAllFlags = kSeen | kAnswered | kFlagged | kDeleted | kDraft;

constexpr std::array<std::pair<std::string_view, uint32_t>, 7> kSpecialUses{{
    {"\\Drafts", kUseDrafts},
    {"\\Sent", kUseSent},
    {"\\Trash", kUseTrash},
    {"\\Junk", kUseJunk},
    {"\\Archive", kUseArchive},
    {"\\All", kUseAll},
    {"\\Flagged", kUseFlagged},
}};
constexpr uint32_t kAllSpecialUse = 127;

// RFC 9051 ATOM-CHAR: CHAR minus atom-specials ("(" ")" "{" SP CTL "%" "*" DQUOTE "\" "]").
bool atom_char(char c) {
  const auto u = static_cast<unsigned char>(c);
  if (u <= 0x20 || u >= 0x7f) return false;
  switch (c) {
    case '(': case ')': case '{': case '%': case '*': case '"': case '\\': case ']': return false;
    default: return true;
  }
}

OpResult<void> check_keyword(std::string_view k) {
  if (k.empty()) return fail(OpCode::InvalidArgument, "empty keyword");
  if (k.size() > kMaxKeywordLength) {
    return fail(OpCode::InvalidArgument, "keyword over " + std::to_string(kMaxKeywordLength) + " bytes");
  }
  for (char c : k) {
    if (!atom_char(c)) return fail(OpCode::InvalidArgument, "keyword with a character IMAP atoms cannot carry");
  }
  return {};
}

bool has_keyword(const std::vector<std::string>& list, std::string_view k) {
  return std::any_of(list.begin(), list.end(), [&](const std::string& x) { return iequals(x, k); });
}

bool same_keywords(const std::vector<std::string>& a, const std::vector<std::string>& b) {
  if (a.size() != b.size()) return false;
  return std::all_of(a.begin(), a.end(), [&](const std::string& k) { return has_keyword(b, k); });
}

OpResult<void> check_flagset(const FlagSet& f) {
  if (f.flags & ~kAllFlags) return fail(OpCode::InvalidArgument, "unknown system flag bits");
  if (f.keywords.size() > kMaxKeywords) {
    return fail(OpCode::InvalidArgument, "more than " + std::to_string(kMaxKeywords) + " keywords");
  }
  for (const auto& k : f.keywords) {
    if (auto r = check_keyword(k); !r) return r;
  }
  return {};
}

// ---- LIST patterns ----

bool match_impl(std::string_view pattern, std::string_view name) {
  // INBOX is case-insensitive (RFC 9051 §5.1): its first level compares without case.
  const size_t fold = (name == "INBOX" || name.starts_with("INBOX/")) ? 5 : 0;
  const size_t n = name.size();
  std::vector<char> cur(n + 1, 0), nxt(n + 1, 0);
  cur[0] = 1;
  for (size_t pi = 0; pi < pattern.size(); ++pi) {
    const char p = pattern[pi];
    if (p == '*' && pi + 1 < pattern.size() && pattern[pi + 1] == '*') continue;
    bool any = false;
    for (size_t j = 0; j <= n; ++j) {
      char v = 0;
      if (p == '*') {
        v = cur[j] || (j > 0 && nxt[j - 1]);
      } else if (p == '%') {
        v = cur[j] || (j > 0 && nxt[j - 1] && name[j - 1] != '/');
      } else if (j > 0 && cur[j - 1]) {
        v = j - 1 < fold ? lower(name[j - 1]) == lower(p) : name[j - 1] == p;
      }
      nxt[j] = v;
      any = any || v;
    }
    if (!any) return false;
    cur.swap(nxt);
  }
  return cur[n] != 0;
}

// ---- section bytes ----

// The field lines of a header whose names are (or, with `exclude`, are not) in `names`, each with
// its continuation lines, then the empty line (RFC 9051 §6.4.5 HEADER.FIELDS).
std::string filter_header(std::string_view header, const std::vector<std::string>& names, bool exclude) {
  std::vector<std::string> wanted;
  wanted.reserve(names.size());
  for (const auto& n : names) wanted.push_back(lowered(n));
  std::string out;
  bool keep = false;
  size_t pos = 0;
  while (pos < header.size()) {
    size_t end = header.find('\n', pos);
    end = end == std::string_view::npos ? header.size() : end + 1;
    std::string_view line = header.substr(pos, end - pos);
    pos = end;
    if (line == "\r\n" || line == "\n") break;  // the header's end
    if (line[0] == ' ' || line[0] == '\t') {
      if (keep) out += line;
      continue;
    }
    const size_t colon = line.find(':');
    std::string name;
    if (colon != std::string_view::npos) {
      std::string_view n = line.substr(0, colon);
      while (!n.empty() && (n.back() == ' ' || n.back() == '\t')) n.remove_suffix(1);
      name = lowered(n);
    }
    const bool listed = !name.empty() && std::find(wanted.begin(), wanted.end(), name) != wanted.end();
    keep = listed != exclude;
    if (keep) out += line;
  }
  out += "\r\n";
  return out;
}

// The UIDs below UIDNEXT that no message has (expunged, or never used), within `set` when given,
// as ranges: one pass over the live messages, so the answer is as long as they are fragmented.
OpResult<UidSet> not_live(const Txn& txn, const Dbs& dbs, const MailboxRecord& box, const UidSet* set) {
  UidSet gaps;
  uint64_t next = 1;  // the lowest UID not yet accounted for
  auto scan = MessageScan::open(txn, dbs, box.id, nullptr, 1);
  if (!scan) return tl::unexpected(scan.error());
  for (;;) {
    auto item = scan->next();
    if (!item) return tl::unexpected(item.error());
    if (!*item || (*item)->first >= box.uidnext) break;
    const uint32_t uid = (*item)->first;
    if (uid > next) gaps.emplace_back(static_cast<uint32_t>(next), uid - 1);
    next = uint64_t{uid} + 1;
  }
  if (next < box.uidnext) gaps.emplace_back(static_cast<uint32_t>(next), box.uidnext - 1);
  if (!set) return gaps;
  UidSet out;
  size_t j = 0;
  for (const UidRange& g : gaps) {
    while (j < set->size() && (*set)[j].second < g.first) ++j;
    for (size_t k = j; k < set->size() && (*set)[k].first <= g.second; ++k) {
      out.emplace_back(std::max(g.first, (*set)[k].first), std::min(g.second, (*set)[k].second));
    }
  }
  return out;
}

}  // namespace

// ---- errors ----

OpError to_op_error(const common::Error& e) {
  return OpError{e.kind == common::ErrorKind::TempFail ? OpCode::TempFail : OpCode::Internal, e.detail};
}

const char* op_code_name(OpCode code) {
  switch (code) {
    case OpCode::NotFound: return "NotFound";
    case OpCode::AlreadyExists: return "AlreadyExists";
    case OpCode::InvalidArgument: return "InvalidArgument";
    case OpCode::FailedPrecondition: return "FailedPrecondition";
    case OpCode::ResourceExhausted: return "ResourceExhausted";
    case OpCode::TempFail: return "TempFail";
    case OpCode::Internal: return "Internal";
  }
  return "Internal";
}

// ---- names, flags, UID sets ----

OpResult<std::string> validate_mailbox_name(std::string_view name) {
  if (name.empty()) return fail(OpCode::InvalidArgument, "empty mailbox name");
  if (name.size() > kMaxMailboxName) {
    return fail(OpCode::InvalidArgument, "mailbox name over " + std::to_string(kMaxMailboxName) + " bytes");
  }
  if (const char* problem = text_problem(name)) return fail(OpCode::InvalidArgument, std::string("mailbox name ") + problem);
  if (name.find_first_of("*%") != std::string_view::npos) {
    return fail(OpCode::InvalidArgument, "mailbox name with a LIST wildcard (\"*\" or \"%\")");
  }
  if (name.front() == '/' || name.back() == '/' || name.find("//") != std::string_view::npos) {
    return fail(OpCode::InvalidArgument, "mailbox name with an empty hierarchy level");
  }
  std::string out(name);
  const size_t first = out.find('/');
  if (iequals(std::string_view(out).substr(0, first), "INBOX")) out.replace(0, 5, "INBOX");
  return out;
}

OpResult<FlagSet> parse_flags(std::span<const std::string> names) {
  FlagSet out;
  for (const auto& n : names) {
    if (!n.empty() && n[0] == '\\') {
      auto it = std::find_if(kSystemFlags.begin(), kSystemFlags.end(), [&](auto& f) { return iequals(f.first, n); });
      if (it != kSystemFlags.end()) {
        out.flags |= it->second;
        continue;
      }
      if (iequals(n, "\\Recent")) return fail(OpCode::InvalidArgument, "\\Recent cannot be stored");
      return fail(OpCode::InvalidArgument, "unknown system flag");
    }
    if (auto r = check_keyword(n); !r) return tl::unexpected(r.error());
    if (has_keyword(out.keywords, n)) continue;
    if (out.keywords.size() == kMaxKeywords) {
      return fail(OpCode::InvalidArgument, "more than " + std::to_string(kMaxKeywords) + " keywords");
    }
    out.keywords.push_back(n);
  }
  return out;
}

std::vector<std::string> flag_names(uint32_t flags, const std::vector<std::string>& keywords) {
  std::vector<std::string> out;
  for (const auto& [name, bit] : kSystemFlags) {
    if (flags & bit) out.emplace_back(name);
  }
  out.insert(out.end(), keywords.begin(), keywords.end());
  return out;
}

OpResult<uint32_t> parse_special_use(std::span<const std::string> names) {
  uint32_t bits = 0;
  for (const auto& n : names) {
    auto it = std::find_if(kSpecialUses.begin(), kSpecialUses.end(), [&](auto& u) { return iequals(u.first, n); });
    if (it == kSpecialUses.end()) return fail(OpCode::InvalidArgument, "unknown special use (RFC 6154)");
    bits |= it->second;
  }
  return bits;
}

std::vector<std::string> special_use_names(uint32_t bits) {
  std::vector<std::string> out;
  for (const auto& [name, bit] : kSpecialUses) {
    if (bits & bit) out.emplace_back(name);
  }
  return out;
}

UidSet normalise(UidSet set) {
  for (auto& r : set) {
    if (r.first > r.second) std::swap(r.first, r.second);
    if (r.first == 0) r.first = 1;
  }
  std::erase_if(set, [](const UidRange& r) { return r.second == 0; });
  std::sort(set.begin(), set.end());
  UidSet out;
  out.reserve(set.size());
  for (const auto& r : set) {
    if (!out.empty() && uint64_t{r.first} <= uint64_t{out.back().second} + 1) {
      out.back().second = std::max(out.back().second, r.second);
    } else {
      out.push_back(r);
    }
  }
  return out;
}

bool contains(const UidSet& set, uint32_t uid) {
  auto it = std::lower_bound(set.begin(), set.end(), uid, [](const UidRange& r, uint32_t u) { return r.second < u; });
  return it != set.end() && it->first <= uid;
}

UidSet to_ranges(std::span<const uint32_t> uids) {
  UidSet out;
  for (uint32_t uid : uids) {
    if (!out.empty() && uint64_t{out.back().second} + 1 == uid) {
      out.back().second = uid;
    } else {
      out.emplace_back(uid, uid);
    }
  }
  return out;
}

// ---- mailboxes ----

OpResult<OpenMailbox> resolve_mailbox(const Txn& txn, const Dbs& dbs, std::string_view user, MailboxRef ref) {
  auto u = need_user(txn, dbs, user);
  if (!u) return tl::unexpected(u.error());
  auto owner = txn.get(dbs.mailbox_ids, id_key(ref.id));
  if (!owner) return fail(owner);
  Decoder d(owner->value_or(std::string_view()));
  uint64_t owner_id = 0;
  // Another user's mailbox answers exactly like a missing one.
  if (!*owner || !d.u64(owner_id) || owner_id != u->id) {
    return fail(OpCode::NotFound, "no mailbox with id " + std::to_string(ref.id));
  }
  OpenMailbox out;
  out.user_id = u->id;
  out.name.assign(d.rest());
  auto mailbox = find_mailbox(txn, dbs, u->id, out.name);
  if (!mailbox) return fail(mailbox);
  if (!*mailbox || (*mailbox)->id != ref.id) return damaged("mailbox_ids entry for mailbox " + std::to_string(ref.id));
  out.record = **mailbox;
  if (out.record.uidvalidity != ref.uidvalidity) {
    return fail(OpCode::FailedPrecondition, "UIDVALIDITY changed: mailbox " + in_quotes(out.name) + " is now " +
                                                std::to_string(out.record.uidvalidity) + ", not " +
                                                std::to_string(ref.uidvalidity));
  }
  return out;
}

OpResult<OpenMailbox> find_mailbox_named(const Txn& txn, const Dbs& dbs, std::string_view user, std::string_view name) {
  auto u = need_user(txn, dbs, user);
  if (!u) return tl::unexpected(u.error());
  auto canonical = validate_mailbox_name(name);
  if (!canonical) return tl::unexpected(canonical.error());
  auto mailbox = find_mailbox(txn, dbs, u->id, *canonical);
  if (!mailbox) return fail(mailbox);
  if (!*mailbox) return fail(OpCode::NotFound, "no mailbox " + in_quotes(*canonical));
  return OpenMailbox{u->id, std::move(*canonical), **mailbox};
}

OpResult<UserRecord> create_user_if_missing(Txn& txn, const Dbs& dbs, std::string_view user, int64_t now) {
  if (user.empty()) return fail(OpCode::InvalidArgument, "empty user name");
  auto found = find_user(txn, dbs, user);
  if (!found) return fail(found);
  if (*found) return **found;
  auto made = create_user(txn, dbs, user, now);
  if (!made) return fail(made);
  return *made;
}

OpResult<CreatedMailbox> create_mailbox(Txn& txn, const Dbs& dbs, std::string_view user, std::string_view name,
                                        uint32_t special_use, int64_t now) {
  auto u = need_user(txn, dbs, user);
  if (!u) return tl::unexpected(u.error());
  // RFC 9051 §6.3.4: a trailing delimiter only declares that inferiors will follow.
  if (name.size() > 1 && name.back() == '/') name.remove_suffix(1);
  auto canonical = validate_mailbox_name(name);
  if (!canonical) return tl::unexpected(canonical.error());
  if (special_use & ~kAllSpecialUse) return fail(OpCode::InvalidArgument, "unknown special-use bits");
  auto existing = find_mailbox(txn, dbs, u->id, *canonical);
  if (!existing) return fail(existing);
  if (*existing) return fail(OpCode::AlreadyExists, "mailbox " + in_quotes(*canonical) + " exists");
  auto parents = missing_parents(txn, dbs, u->id, *canonical, 1);
  if (!parents) return tl::unexpected(parents.error());
  CreatedMailbox out;
  for (const auto& p : *parents) {
    if (auto made = make_mailbox(txn, dbs, u->id, p, 0, now); !made) return tl::unexpected(made.error());
  }
  auto made = make_mailbox(txn, dbs, u->id, *canonical, special_use, now);
  if (!made) return tl::unexpected(made.error());
  out.name = std::move(*canonical);
  out.record = *made;
  out.parents_created = std::move(*parents);
  return out;
}

OpResult<DeletedMailbox> delete_mailbox(Txn& txn, const Dbs& dbs, std::string_view user, std::string_view name) {
  auto u = need_user(txn, dbs, user);
  if (!u) return tl::unexpected(u.error());
  auto canonical = validate_mailbox_name(name);
  if (!canonical) return tl::unexpected(canonical.error());
  if (*canonical == "INBOX") return fail(OpCode::InvalidArgument, "INBOX cannot be deleted");
  auto mailbox = find_mailbox(txn, dbs, u->id, *canonical);
  if (!mailbox) return fail(mailbox);
  if (!*mailbox) return fail(OpCode::NotFound, "no mailbox " + in_quotes(*canonical));
  auto out = remove_mailbox(txn, dbs, user, *u, *canonical, **mailbox);
  if (!out) return out;
  // A small mailbox is freed right here; a large one goes on in the background (free_deleted).
  auto freed = free_deleted(txn, dbs);
  if (!freed) return tl::unexpected(freed.error());
  auto pending = txn.get(dbs.deleted_mailboxes, id_key(out->record.id));
  if (!pending) return fail(pending);
  out->freed = !*pending;
  return out;
}

OpResult<FreeProgress> free_deleted(Txn& txn, const Dbs& dbs, const FreeLimits& limits) {
  FreeProgress out;
  size_t chunks = 0;
  auto spent = [&] { return out.messages + out.changes >= limits.messages || chunks >= limits.chunks; };
  for (uint64_t from = 0;;) {
    auto id = next_pending(txn, dbs, from);
    if (!id) return tl::unexpected(id.error());
    if (!*id) return out;
    const uint64_t mailbox_id = **id;
    from = mailbox_id + 1;
    // Its messages: each one's kind-0 change and body reference go with it. No counter is
    // touched: the mailbox record is gone and the user's counters dropped at the DELETE.
    for (;;) {
      if (spent()) {
        out.more = true;
        return out;
      }
      uint64_t first = 1;
      auto batch = next_batch(txn, dbs, mailbox_id, nullptr, first);
      if (!batch) return tl::unexpected(batch.error());
      if (batch->empty()) break;
      for (const MessageInfo& m : *batch) {
        if (spent()) {
          out.more = true;
          return out;
        }
        if (auto r = del(txn, dbs.messages, message_key(mailbox_id, m.uid)); !r) return tl::unexpected(r.error());
        if (auto r = del(txn, dbs.changes, change_key(mailbox_id, m.record.modseq)); !r) return tl::unexpected(r.error());
        if (auto r = release_body(txn, dbs, m.record.body_id, &chunks); !r) return tl::unexpected(r.error());
        out.messages += 1;
      }
    }
    // Then what is left in `changes` (the kind-1 entries of earlier expunges): the id is never
    // handed out again, so nothing else will read them.
    const std::string prefix = id_key(mailbox_id);
    for (;;) {
      std::vector<std::string> keys;
      {
        auto cursor = Cursor::open(txn, dbs.changes);
        if (!cursor) return fail(cursor);
        for (auto entry = cursor->seek(prefix); keys.size() < kBatch; entry = cursor->next()) {
          if (!entry) return fail(entry);
          if (!*entry || !(*entry)->first.starts_with(prefix)) break;
          keys.emplace_back((*entry)->first);
        }
      }
      if (keys.empty()) break;
      for (const auto& k : keys) {
        if (spent()) {
          out.more = true;
          return out;
        }
        if (auto r = del(txn, dbs.changes, k); !r) return tl::unexpected(r.error());
        out.changes += 1;
      }
    }
    if (auto r = del(txn, dbs.deleted_mailboxes, prefix); !r) return tl::unexpected(r.error());
    out.mailboxes_finished += 1;
    out.chunks = chunks;
  }
}

OpResult<uint64_t> pending_deletions(const Txn& txn, const Dbs& dbs) {
  MDB_stat st{};
  if (int rc = mdb_stat(txn.get(), dbs.deleted_mailboxes, &st); rc != 0) {
    return tl::unexpected(to_op_error(common::lmdb::error("mdb_stat deleted_mailboxes", rc)));
  }
  return uint64_t{st.ms_entries};
}

OpResult<PruneProgress> prune_tombstones(Txn& txn, const Dbs& dbs, const PruneLimits& limits, std::string& cursor_key) {
  PruneProgress out;
  // The mailboxes over the limit among the next `limits.mailboxes` records (read first: a write
  // would invalidate the cursor's views).
  std::vector<std::tuple<std::string, MailboxRecord>> over;
  std::string next_key;
  {
    auto cursor = Cursor::open(txn, dbs.mailboxes);
    if (!cursor) return fail(cursor);
    auto entry = cursor_key.empty() ? cursor->first() : cursor->seek(cursor_key);
    for (;; entry = cursor->next()) {
      if (!entry) return fail(entry);
      if (!*entry) break;
      if (out.mailboxes == limits.mailboxes) {
        next_key.assign((*entry)->first);
        break;
      }
      out.mailboxes += 1;
      auto record = decode_mailbox((*entry)->second);
      if (!record) return fail(record);
      if (record->tombstones > limits.keep) over.emplace_back(std::string((*entry)->first), *record);
    }
  }
  for (auto& [key, box] : over) {
    // The oldest first, from the floor up; kind-0 entries on the way are left.
    uint64_t need = box.tombstones - limits.keep;
    std::vector<std::pair<std::string, uint8_t>> seen;  // key, kind
    {
      const std::string prefix = id_key(box.id);
      auto cursor = Cursor::open(txn, dbs.changes);
      if (!cursor) return fail(cursor);
      const size_t room = limits.entries > out.entries ? limits.entries - out.entries : 0;
      uint64_t kind1 = 0;
      for (auto entry = cursor->seek(change_key(box.id, box.vanished_floor + 1)); seen.size() < room && kind1 < need;
           entry = cursor->next()) {
        if (!entry) return fail(entry);
        if (!*entry || !(*entry)->first.starts_with(prefix)) break;
        Decoder v((*entry)->second);
        uint32_t uid = 0;
        uint8_t kind = 0;
        if (!v.u32(uid) || !v.u8(kind) || !v.done()) return damaged("changes entry");
        seen.emplace_back(std::string((*entry)->first), kind);
        if (kind == 1) kind1 += 1;
      }
    }
    out.entries += seen.size();
    if (seen.empty() && need > 0 && out.entries < limits.entries) {
      // The count says more than there is (a record from before the count was kept): trust the table.
      box.tombstones = limits.keep;
    }
    for (const auto& [k, kind] : seen) {
      Decoder key(std::string_view(k).substr(8));
      uint64_t modseq = 0;
      key.u64(modseq);
      // Past kind-0 entries too: every tombstone up to the next one pruned is at or below it, so the
      // floor ends no higher than where this mailbox's pruning will end anyway.
      box.vanished_floor = std::max(box.vanished_floor, modseq);
      if (kind != 1) continue;
      if (auto r = del(txn, dbs.changes, k); !r) return tl::unexpected(r.error());
      box.tombstones -= 1;
      out.pruned += 1;
    }
    if (auto r = put(txn, dbs.mailboxes, key, encode(box)); !r) return tl::unexpected(r.error());
    if (box.tombstones > limits.keep) {
      // Out of budget in this mailbox: the next batch starts with it again.
      cursor_key = key;
      out.more = true;
      return out;
    }
  }
  cursor_key = next_key;
  out.more = !next_key.empty();
  return out;
}

namespace {

// RENAME INBOX: its messages move to a new mailbox; INBOX stays, empty.
OpResult<RenameResult> rename_inbox(Txn& txn, const Dbs& dbs, std::string_view user_name, UserRecord& user,
                                    const std::string& to, int64_t now) {
  RenameResult out;
  auto parents = missing_parents(txn, dbs, user.id, to, 1);
  if (!parents) return tl::unexpected(parents.error());
  for (const auto& p : *parents) {
    if (auto made = make_mailbox(txn, dbs, user.id, p, 0, now); !made) return tl::unexpected(made.error());
  }
  auto target = make_mailbox(txn, dbs, user.id, to, 0, now);
  if (!target) return tl::unexpected(target.error());
  auto inbox = find_mailbox(txn, dbs, user.id, "INBOX");
  if (!inbox) return fail(inbox);
  if (!*inbox) return damaged("user record (no INBOX)");
  MailboxRecord box = **inbox;
  // Only the messages there now: nothing filed during the move can be, but the bound is explicit.
  const UidSet before{{1, box.uidnext > 1 ? box.uidnext - 1 : 0}};
  const std::string name(user_name);
  std::vector<uint32_t> moved;
  for (uint64_t from = 1;;) {
    auto batch = next_batch(txn, dbs, box.id, &before, from);
    if (!batch) return tl::unexpected(batch.error());
    if (batch->empty()) break;
    for (const MessageInfo& m : *batch) {
      if (auto filed = file_copy(txn, dbs, name, user, to, m.record); !filed) return tl::unexpected(filed.error());
      if (auto r = remove_message(txn, dbs, box, user, m.uid, m.record, true); !r) return tl::unexpected(r.error());
      moved.push_back(m.uid);
    }
  }
  if (auto r = write_mailbox(txn, dbs, user.id, "INBOX", box); !r) return tl::unexpected(r.error());
  if (auto r = write_user(txn, dbs, user_name, user); !r) return tl::unexpected(r.error());
  auto created = find_mailbox(txn, dbs, user.id, to);
  if (!created) return fail(created);
  if (!*created) return damaged("mailbox just created");
  out.created = **created;
  out.inbox_expunged = to_ranges(moved);
  out.inbox_highest_modseq = box.highestmodseq;
  out.parents_created = std::move(*parents);
  return out;
}

}  // namespace

OpResult<RenameResult> rename_mailbox(Txn& txn, const Dbs& dbs, std::string_view user, std::string_view from,
                                      std::string_view to, int64_t now) {
  auto u = need_user(txn, dbs, user);
  if (!u) return tl::unexpected(u.error());
  auto old_name = validate_mailbox_name(from);
  if (!old_name) return tl::unexpected(old_name.error());
  auto new_name = validate_mailbox_name(to);
  if (!new_name) return tl::unexpected(new_name.error());
  auto source = find_mailbox(txn, dbs, u->id, *old_name);
  if (!source) return fail(source);
  if (!*source) return fail(OpCode::NotFound, "no mailbox " + in_quotes(*old_name));
  auto target = find_mailbox(txn, dbs, u->id, *new_name);
  if (!target) return fail(target);
  if (*target) return fail(OpCode::AlreadyExists, "mailbox " + in_quotes(*new_name) + " exists");
  if (*old_name == "INBOX") return rename_inbox(txn, dbs, user, *u, *new_name, now);
  if (new_name->starts_with(*old_name + "/")) {
    return fail(OpCode::InvalidArgument, "cannot rename " + in_quotes(*old_name) + " under itself");
  }

  auto all = user_mailboxes(txn, dbs, u->id);
  if (!all) return tl::unexpected(all.error());
  std::vector<std::pair<std::string, MailboxRecord>> moving;
  const std::string inferior = *old_name + "/";
  for (auto& [n, record] : *all) {
    if (n == *old_name || n.starts_with(inferior)) moving.emplace_back(n, record);
  }
  RenameResult out;
  for (const auto& [n, record] : moving) {
    std::string renamed = *new_name + n.substr(old_name->size());
    if (renamed.size() > kMaxMailboxName) {
      return fail(OpCode::InvalidArgument, "renamed mailbox name over " + std::to_string(kMaxMailboxName) + " bytes");
    }
    auto clash = find_mailbox(txn, dbs, u->id, renamed);
    if (!clash) return fail(clash);
    if (*clash) return fail(OpCode::AlreadyExists, "mailbox " + in_quotes(renamed) + " exists");
    out.renamed.push_back(RenamedMailbox{record.id, n, std::move(renamed)});
  }
  auto parents = missing_parents(txn, dbs, u->id, *new_name, 0);
  if (!parents) return tl::unexpected(parents.error());
  for (size_t i = 0; i < moving.size(); ++i) {
    const RenamedMailbox& r = out.renamed[i];
    if (auto d = del(txn, dbs.mailboxes, mailbox_key(u->id, r.from)); !d) return tl::unexpected(d.error());
    if (auto p = write_mailbox(txn, dbs, u->id, r.to, moving[i].second); !p) return tl::unexpected(p.error());
    if (auto p = put(txn, dbs.mailbox_ids, id_key(r.id), Encoder().u64(u->id).raw(r.to).str()); !p) {
      return tl::unexpected(p.error());
    }
  }
  // Subscriptions follow the names, subscribed inferiors that do not exist included.
  auto subs = user_subscriptions(txn, dbs, u->id);
  if (!subs) return tl::unexpected(subs.error());
  for (const auto& s : *subs) {
    if (s != *old_name && !s.starts_with(inferior)) continue;
    if (auto d = del(txn, dbs.subscriptions, mailbox_key(u->id, s)); !d) return tl::unexpected(d.error());
    const std::string renamed = *new_name + s.substr(old_name->size());
    if (renamed.size() > kMaxMailboxName) continue;
    if (auto p = put(txn, dbs.subscriptions, mailbox_key(u->id, renamed), ""); !p) return tl::unexpected(p.error());
  }
  for (const auto& p : *parents) {
    if (auto made = make_mailbox(txn, dbs, u->id, p, 0, now); !made) return tl::unexpected(made.error());
  }
  out.parents_created = std::move(*parents);
  return out;
}

OpResult<std::string> subscribe(Txn& txn, const Dbs& dbs, std::string_view user, std::string_view name,
                                bool subscribed) {
  auto u = need_user(txn, dbs, user);
  if (!u) return tl::unexpected(u.error());
  auto canonical = validate_mailbox_name(name);
  if (!canonical) return tl::unexpected(canonical.error());
  const std::string key = mailbox_key(u->id, *canonical);
  if (!subscribed) {
    if (auto d = del(txn, dbs.subscriptions, key); !d) return tl::unexpected(d.error());
    return *canonical;
  }
  auto present = txn.get(dbs.subscriptions, key);
  if (!present) return fail(present);
  if (*present) return *canonical;
  auto count = count_prefix(txn, dbs.subscriptions, id_key(u->id), kMaxSubscriptionsPerUser);
  if (!count) return tl::unexpected(count.error());
  if (*count >= kMaxSubscriptionsPerUser) {
    return fail(OpCode::ResourceExhausted,
                "too many subscriptions (at most " + std::to_string(kMaxSubscriptionsPerUser) + ")");
  }
  if (auto p = put(txn, dbs.subscriptions, key, ""); !p) return tl::unexpected(p.error());
  return *canonical;
}

// ---- LIST ----

bool list_match(std::string_view pattern, std::string_view name) { return match_impl(pattern, name); }

OpResult<std::vector<ListEntry>> list_mailboxes_matching(const Txn& txn, const Dbs& dbs, std::string_view user,
                                                         std::span<const std::string> patterns,
                                                         const ListOptions& options) {
  auto u = need_user(txn, dbs, user);
  if (!u) return tl::unexpected(u.error());
  std::vector<std::string_view> pats;
  for (const auto& p : patterns) {
    if (p.size() > kMaxListPattern) {
      return fail(OpCode::InvalidArgument, "LIST pattern over " + std::to_string(kMaxListPattern) + " bytes");
    }
    if (const char* problem = text_problem(p)) return fail(OpCode::InvalidArgument, std::string("LIST pattern ") + problem);
    if (!p.empty()) pats.push_back(p);
  }
  auto boxes = user_mailboxes(txn, dbs, u->id);
  if (!boxes) return tl::unexpected(boxes.error());
  auto subs = user_subscriptions(txn, dbs, u->id);
  if (!subs) return tl::unexpected(subs.error());

  auto matches = [&](std::string_view name) {
    return std::any_of(pats.begin(), pats.end(), [&](std::string_view p) { return match_impl(p, name); });
  };
  auto find_box = [&](std::string_view name) -> const MailboxRecord* {
    auto it = std::lower_bound(boxes->begin(), boxes->end(), name,
                               [](const auto& b, std::string_view n) { return b.first < n; });
    return it != boxes->end() && it->first == name ? &it->second : nullptr;
  };
  auto subscribed = [&](std::string_view name) { return std::binary_search(subs->begin(), subs->end(), name); };
  // Keys sort byte-wise, so every inferior of "a" ("a/...") lies from "a/" on, together.
  auto box_inferior = [&](const std::string& name) {
    const std::string p = name + "/";
    auto it = std::lower_bound(boxes->begin(), boxes->end(), p, [](const auto& b, const std::string& n) { return b.first < n; });
    return it != boxes->end() && it->first.starts_with(p);
  };
  auto sub_inferior = [&](const std::string& name) {
    const std::string p = name + "/";
    auto it = std::lower_bound(subs->begin(), subs->end(), p);
    return it != subs->end() && it->starts_with(p);
  };

  std::map<std::string, ListEntry> found;
  auto add = [&](const std::string& name) -> ListEntry& {
    auto [it, inserted] = found.try_emplace(name);
    if (inserted) {
      ListEntry& e = it->second;
      e.name = name;
      if (const MailboxRecord* r = find_box(name)) {
        e.exists = true;
        e.record = *r;
        e.special_use = r->special_use;
      }
      e.subscribed = subscribed(name);
      e.has_children = box_inferior(name);
      e.child_subscribed = sub_inferior(name);
    }
    return it->second;
  };

  if (!options.subscribed_only) {
    for (const auto& [name, record] : *boxes) {
      if (options.special_use_only && record.special_use == 0) continue;
      if (matches(name)) add(name);
    }
    if (!options.special_use_only) {
      // A superior name whose own mailbox was deleted while inferiors stayed (RFC 9051 §6.3.5):
      // listed as not existing, with children.
      for (const auto& [name, record] : *boxes) {
        for (std::string_view a : ancestors(name)) {
          if (!find_box(a) && matches(a)) add(std::string(a));
        }
      }
    }
  } else {
    for (const auto& s : *subs) {
      if (!matches(s)) continue;
      if (options.special_use_only) {
        const MailboxRecord* r = find_box(s);
        if (!r || r->special_use == 0) continue;
      }
      add(s);
    }
    if (!options.special_use_only) {
      // RFC 5258 §3.5 / RFC 3501 LSUB: a subscribed inferior the patterns do not reach makes its
      // matching superior appear, with CHILDINFO ("SUBSCRIBED").
      for (const auto& s : *subs) {
        if (matches(s)) continue;
        for (std::string_view a : ancestors(s)) {
          if (!subscribed(a) && matches(a)) add(std::string(a));
        }
      }
    }
  }
  std::vector<ListEntry> out;
  out.reserve(found.size());
  for (auto& [name, entry] : found) out.push_back(std::move(entry));
  return out;
}

// ---- SELECT / STATUS ----

namespace {

OpResult<void> scan_state(const Txn& txn, const Dbs& dbs, SelectResult& out, bool full) {
  auto scan = MessageScan::open(txn, dbs, out.record.id, nullptr);
  if (!scan) return tl::unexpected(scan.error());
  std::map<std::string, std::string> keywords;  // lowercased -> as first spelled
  std::vector<uint32_t> uids;
  for (;;) {
    auto item = scan->next();
    if (!item) return tl::unexpected(item.error());
    if (!*item) break;
    auto m = decode_message((*item)->second);
    if (!m) return fail(m);
    const uint32_t uid = (*item)->first;
    if (m->flags & kDeleted) out.deleted += 1;
    if (!full) continue;
    if (!out.uids.empty() && uint64_t{out.uids.back().second} + 1 == uid) {
      out.uids.back().second = uid;
    } else {
      out.uids.emplace_back(uid, uid);
    }
    if (out.first_unseen == 0 && !(m->flags & kSeen)) out.first_unseen = uid;
    for (auto& k : m->keywords) keywords.try_emplace(lowered(k), k);
  }
  for (auto& [lower_name, k] : keywords) out.keywords.push_back(std::move(k));
  return {};
}

}  // namespace

OpResult<SelectResult> select_mailbox(const Txn& txn, const Dbs& dbs, std::string_view user, std::string_view name) {
  auto mailbox = find_mailbox_named(txn, dbs, user, name);
  if (!mailbox) return tl::unexpected(mailbox.error());
  SelectResult out;
  out.name = std::move(mailbox->name);
  out.record = mailbox->record;
  out.ref = MailboxRef{out.record.id, out.record.uidvalidity};
  if (auto r = scan_state(txn, dbs, out, true); !r) return tl::unexpected(r.error());
  return out;
}

OpResult<SelectResult> status_mailbox(const Txn& txn, const Dbs& dbs, std::string_view user, std::string_view name,
                                      bool count_deleted) {
  auto mailbox = find_mailbox_named(txn, dbs, user, name);
  if (!mailbox) return tl::unexpected(mailbox.error());
  SelectResult out;
  out.name = std::move(mailbox->name);
  out.record = mailbox->record;
  out.ref = MailboxRef{out.record.id, out.record.uidvalidity};
  if (count_deleted) {
    if (auto r = scan_state(txn, dbs, out, false); !r) return tl::unexpected(r.error());
  }
  return out;
}

// ---- FETCH ----

OpResult<void> for_each_message(const Txn& txn, const Dbs& dbs, std::string_view user, MailboxRef ref,
                                const UidSet& uids, const std::function<bool(const MessageInfo&)>& fn,
                                uint64_t changed_since) {
  auto mailbox = resolve_mailbox(txn, dbs, user, ref);
  if (!mailbox) return tl::unexpected(mailbox.error());
  const UidSet set = normalise(uids);
  if (set.empty()) return {};
  auto scan = MessageScan::open(txn, dbs, ref.id, &set);
  if (!scan) return tl::unexpected(scan.error());
  MessageInfo info;
  for (;;) {
    auto item = scan->next();
    if (!item) return tl::unexpected(item.error());
    if (!*item) return {};
    auto m = decode_message((*item)->second);
    if (!m) return fail(m);
    if (changed_since != 0 && m->modseq <= changed_since) continue;
    info.uid = (*item)->first;
    info.record = std::move(*m);
    if (!fn(info)) return {};
  }
}

OpResult<mime::MessageStructure> load_structure(const Txn& txn, const Dbs& dbs, const MessageRecord& message) {
  auto body = find_body(txn, dbs, message.body_id);
  if (!body) return fail(body);
  if (!*body) return damaged("message (its body is missing)");
  auto s = mime::decode((*body)->structure);
  if (!s) return fail(s);
  return std::move(*s);
}

OpResult<std::string> read_bytes(const Txn& txn, const Dbs& dbs, const MessageRecord& message, uint64_t start,
                                 uint64_t end) {
  end = std::min(end, message.size);
  std::string out;
  if (start >= end) return out;
  const uint64_t want = end - start;
  out.reserve(static_cast<size_t>(want));
  const uint64_t p = message.prefix.size();
  if (start < p) {
    out.append(message.prefix, static_cast<size_t>(start), static_cast<size_t>(std::min(end, p) - start));
    start = p;
  }
  if (start >= end) return out;
  if (message.prefix.size() > message.size) return damaged("message (its prefix is longer than its size)");
  const uint64_t from = start - p, to = end - p;  // body offsets
  for (uint64_t chunk = from / kBodyChunk; chunk * kBodyChunk < to; ++chunk) {
    auto value = txn.get(dbs.body_chunks, chunk_key(message.body_id, static_cast<uint32_t>(chunk)));
    if (!value) return fail(value);
    if (!*value) return damaged("body (a chunk is missing)");
    const uint64_t base = chunk * kBodyChunk;
    const uint64_t a = std::max(from, base) - base;
    const uint64_t b = std::min<uint64_t>(to - base, (*value)->size());
    if (b < a || (b < to - base && (*value)->size() < kBodyChunk)) return damaged("body (a chunk is short)");
    out.append((*value)->substr(static_cast<size_t>(a), static_cast<size_t>(b - a)));
  }
  if (out.size() != want) return damaged("body (shorter than its message record says)");
  return out;
}

OpResult<std::string> decode_transfer_encoding(std::string_view content, mime::Encoding encoding) {
  auto decoded = mime::decode_transfer(content, encoding);
  if (!decoded) return fail(OpCode::FailedPrecondition, "unknown content-transfer-encoding");
  return std::move(*decoded);
}

OpResult<SectionData> read_section(const Txn& txn, const Dbs& dbs, const MessageRecord& message,
                                   const mime::MessageStructure& structure, const Section& section,
                                   std::optional<Partial> partial, bool size_only) {
  SectionData out;
  const uint64_t p = message.prefix.size();
  if (message.size < p || structure.size != message.size - p) {
    return damaged("message (its structure does not match its size)");
  }
  // The client's view is prefix + body; structure offsets are the body's. The message's own
  // header and the whole message start at 0, with the prefix.
  auto client_range = [&](mime::ByteRange r, bool from_top) {
    return mime::ByteRange{from_top ? 0 : r.start + p, r.end + p};
  };
  bool computed = false;  // `out.data` holds the whole section (filtered or decoded)
  mime::ByteRange range;
  const bool top = section.part.empty();
  if (section.binary) {
    if (section.text != SectionText::Full) {
      return fail(OpCode::InvalidArgument, "BINARY takes a part number only, no HEADER, TEXT or MIME");
    }
    if (top) {
      range = mime::ByteRange{0, message.size};
    } else {
      auto index = mime::find_part(structure, section.part);
      if (!index) {
        out.missing = true;
        return out;
      }
      const mime::Part& part = structure.parts[*index];
      range = client_range(mime::ByteRange{part.body_start, part.body_end}, false);
      if (part.kind == mime::PartKind::Leaf && part.encoding != mime::Encoding::SevenBit &&
          part.encoding != mime::Encoding::EightBit && part.encoding != mime::Encoding::Binary) {
        if (part.encoding == mime::Encoding::Other) {
          return fail(OpCode::FailedPrecondition, "unknown content-transfer-encoding");
        }
        auto raw = read_bytes(txn, dbs, message, range.start, range.end);
        if (!raw) return tl::unexpected(raw.error());
        auto decoded = decode_transfer_encoding(*raw, part.encoding);
        if (!decoded) return tl::unexpected(decoded.error());
        out.data = std::move(*decoded);
        computed = true;
      }
    }
  } else {
    mime::SectionText text = mime::SectionText::Full;
    switch (section.text) {
      case SectionText::Full: text = mime::SectionText::Full; break;
      case SectionText::Text: text = mime::SectionText::Text; break;
      case SectionText::Mime: text = mime::SectionText::Mime; break;
      case SectionText::Header:
      case SectionText::HeaderFields:
      case SectionText::HeaderFieldsNot: text = mime::SectionText::Header; break;
    }
    auto r = mime::section_range(structure, section.part, text);
    if (!r) {
      out.missing = true;
      return out;
    }
    const bool from_top = top && (text == mime::SectionText::Full || text == mime::SectionText::Header);
    range = client_range(*r, from_top);
    if (section.text == SectionText::HeaderFields || section.text == SectionText::HeaderFieldsNot) {
      auto header = read_bytes(txn, dbs, message, range.start, range.end);
      if (!header) return tl::unexpected(header.error());
      out.data = filter_header(*header, section.fields, section.text == SectionText::HeaderFieldsNot);
      computed = true;
    }
  }
  if (range.end > message.size || range.start > range.end) return damaged("message structure (a part past its end)");
  out.total = computed ? out.data.size() : range.size();
  uint64_t start = 0, end = out.total;
  if (partial) {
    start = std::min(partial->offset, out.total);
    end = start + std::min(partial->length, out.total - start);
  }
  if (size_only) {
    out.data.clear();
    return out;
  }
  if (computed) {
    out.data = out.data.substr(static_cast<size_t>(start), static_cast<size_t>(end - start));
    return out;
  }
  auto bytes = read_bytes(txn, dbs, message, range.start + start, range.start + end);
  if (!bytes) return tl::unexpected(bytes.error());
  out.data = std::move(*bytes);
  return out;
}

// ---- STORE ----

OpResult<StoreResult> store_flags(Txn& txn, const Dbs& dbs, std::string_view user, MailboxRef ref, const UidSet& uids,
                                  StoreMode mode, const FlagSet& flags, std::optional<uint64_t> unchanged_since) {
  if (auto r = check_flagset(flags); !r) return tl::unexpected(r.error());
  auto mailbox = resolve_mailbox(txn, dbs, user, ref);
  if (!mailbox) return tl::unexpected(mailbox.error());
  MailboxRecord& box = mailbox->record;
  const UidSet set = normalise(uids);
  StoreResult out;
  std::vector<uint32_t> modified;
  bool dirty = false;
  for (uint64_t from = 1;;) {
    auto batch = next_batch(txn, dbs, box.id, &set, from);
    if (!batch) return tl::unexpected(batch.error());
    if (batch->empty()) break;
    for (MessageInfo& m : *batch) {
      MessageRecord& r = m.record;
      // RFC 7162 §3.1.3: changed since the client last looked: left alone, reported MODIFIED.
      if (unchanged_since && r.modseq > *unchanged_since) {
        modified.push_back(m.uid);
        continue;
      }
      uint32_t new_flags = r.flags;
      std::vector<std::string> new_keywords = r.keywords;
      switch (mode) {
        case StoreMode::Replace:
          new_flags = flags.flags;
          new_keywords.clear();
          for (const auto& k : flags.keywords) {
            if (!has_keyword(new_keywords, k)) new_keywords.push_back(k);
          }
          break;
        case StoreMode::Add:
          new_flags |= flags.flags;
          for (const auto& k : flags.keywords) {
            if (!has_keyword(new_keywords, k)) new_keywords.push_back(k);
          }
          break;
        case StoreMode::Remove:
          new_flags &= ~flags.flags;
          std::erase_if(new_keywords, [&](const std::string& k) { return has_keyword(flags.keywords, k); });
          break;
      }
      if (new_keywords.size() > kMaxKeywords) {
        return fail(OpCode::InvalidArgument, "message " + std::to_string(m.uid) + " would have more than " +
                                                 std::to_string(kMaxKeywords) + " keywords");
      }
      if (new_flags == r.flags && same_keywords(new_keywords, r.keywords)) {
        out.unchanged.push_back(MessageState{m.uid, r.flags, r.keywords, r.modseq});
        continue;
      }
      if (auto d = del(txn, dbs.changes, change_key(box.id, r.modseq)); !d) return tl::unexpected(d.error());
      const bool was_seen = r.flags & kSeen, seen = new_flags & kSeen;
      if (was_seen && !seen) box.unseen += 1;
      if (!was_seen && seen) box.unseen -= std::min<uint32_t>(box.unseen, 1);
      r.flags = new_flags;
      r.keywords = std::move(new_keywords);
      r.modseq = ++box.highestmodseq;
      dirty = true;
      if (auto p = put(txn, dbs.changes, change_key(box.id, r.modseq), Encoder().u32(m.uid).u8(0).str()); !p) {
        return tl::unexpected(p.error());
      }
      if (auto p = put(txn, dbs.messages, message_key(box.id, m.uid), encode(r)); !p) return tl::unexpected(p.error());
      out.updated.push_back(MessageState{m.uid, r.flags, r.keywords, r.modseq});
    }
  }
  if (dirty) {
    if (auto p = write_mailbox(txn, dbs, mailbox->user_id, mailbox->name, box); !p) return tl::unexpected(p.error());
  }
  out.modified = to_ranges(modified);
  out.highest_modseq = box.highestmodseq;
  return out;
}

// ---- APPEND, COPY, MOVE, EXPUNGE ----

OpResult<AppendResult> append_message(Txn& txn, const Dbs& dbs, std::string_view user, std::string_view mailbox,
                                      std::string_view bytes, const FlagSet& flags, int64_t internal_date) {
  if (auto r = check_flagset(flags); !r) return tl::unexpected(r.error());
  auto u = need_user(txn, dbs, user);
  if (!u) return tl::unexpected(u.error());
  auto name = validate_mailbox_name(mailbox);
  if (!name) return tl::unexpected(name.error());
  auto box = find_mailbox(txn, dbs, u->id, *name);
  if (!box) return fail(box);
  if (!*box) return fail(OpCode::NotFound, "no mailbox " + in_quotes(*name));
  if (auto q = check_quota(*u, bytes.size(), 1); !q) return tl::unexpected(q.error());
  if (auto room = check_uid_room(*name, **box, 1); !room) return tl::unexpected(room.error());
  // The structure, computed here as a delivery does: once, stored beside the body.
  const std::string structure = mime::encode(mime::parse(bytes));
  auto body = put_body(txn, dbs, bytes, structure);
  if (!body) return fail(body);
  MessageRecord message;
  message.internal_date = internal_date;
  message.flags = flags.flags;
  message.keywords = flags.keywords;
  UserRecord record = *u;
  auto filed = add_message(txn, dbs, std::string(user), record, *name, *body, bytes.size(), std::move(message));
  if (!filed) return fail(filed);
  return AppendResult{filed->mailbox.id, filed->mailbox.uidvalidity, filed->uid, filed->mailbox.highestmodseq};
}

OpResult<CopyResult> copy_messages(Txn& txn, const Dbs& dbs, std::string_view user, MailboxRef source,
                                   const UidSet& uids, std::string_view target, bool move) {
  auto src = resolve_mailbox(txn, dbs, user, source);
  if (!src) return tl::unexpected(src.error());
  auto target_name = validate_mailbox_name(target);
  if (!target_name) return tl::unexpected(target_name.error());
  auto dst = find_mailbox(txn, dbs, src->user_id, *target_name);
  if (!dst) return fail(dst);
  if (!*dst) return fail(OpCode::NotFound, "no mailbox " + in_quotes(*target_name));
  auto u = need_user(txn, dbs, user);
  if (!u) return tl::unexpected(u.error());
  UserRecord record = *u;

  // Only what is in the source now: with source == target the copies must not be copied again.
  UidSet set = normalise(uids);
  const uint32_t last_uid = src->record.uidnext > 1 ? src->record.uidnext - 1 : 0;
  std::erase_if(set, [&](const UidRange& r) { return r.first > last_uid; });
  if (!set.empty()) set.back().second = std::min(set.back().second, last_uid);

  // The whole set's size first: a COPY that does not fit is refused before anything is filed.
  uint64_t bytes = 0, count = 0;
  for (uint64_t from = 1;;) {
    auto batch = next_batch(txn, dbs, src->record.id, &set, from);
    if (!batch) return tl::unexpected(batch.error());
    if (batch->empty()) break;
    for (const MessageInfo& m : *batch) {
      bytes += m.record.size;
      count += 1;
    }
  }
  if (!move) {
    if (auto q = check_quota(record, bytes, count); !q) return tl::unexpected(q.error());
  }
  if (auto room = check_uid_room(*target_name, **dst, count); !room) return tl::unexpected(room.error());

  CopyResult out;
  out.target = MailboxRef{(*dst)->id, (*dst)->uidvalidity};
  out.target_highest_modseq = (*dst)->highestmodseq;
  const std::string user_name(user);
  std::vector<MessageInfo> moved;
  for (uint64_t from = 1;;) {
    auto batch = next_batch(txn, dbs, src->record.id, &set, from);
    if (!batch) return tl::unexpected(batch.error());
    if (batch->empty()) break;
    for (MessageInfo& m : *batch) {
      auto filed = file_copy(txn, dbs, user_name, record, *target_name, m.record);
      if (!filed) return tl::unexpected(filed.error());
      out.source_uids.push_back(m.uid);
      out.target_uids.push_back(filed->uid);
      out.target_highest_modseq = filed->modseq;
      out.added.push_back(std::move(*filed));
    }
    if (move) {
      // Re-read: with source == target the adds changed the record.
      auto box = find_mailbox(txn, dbs, src->user_id, src->name);
      if (!box) return fail(box);
      if (!*box) return damaged("mailbox during a move");
      MailboxRecord sbox = **box;
      for (const MessageInfo& m : *batch) {
        if (auto r = remove_message(txn, dbs, sbox, record, m.uid, m.record, true); !r) return tl::unexpected(r.error());
      }
      if (auto p = write_mailbox(txn, dbs, src->user_id, src->name, sbox); !p) return tl::unexpected(p.error());
      out.source_highest_modseq = sbox.highestmodseq;
      if (src->record.id == out.target.id) out.target_highest_modseq = sbox.highestmodseq;
    }
  }
  if (move) {
    out.expunged = to_ranges(out.source_uids);
    if (out.source_uids.empty()) out.source_highest_modseq = src->record.highestmodseq;
  }
  if (auto p = write_user(txn, dbs, user, record); !p) return tl::unexpected(p.error());
  return out;
}

OpResult<ExpungeResult> expunge(Txn& txn, const Dbs& dbs, std::string_view user, MailboxRef ref,
                                const std::optional<UidSet>& uids) {
  auto mailbox = resolve_mailbox(txn, dbs, user, ref);
  if (!mailbox) return tl::unexpected(mailbox.error());
  auto u = need_user(txn, dbs, user);
  if (!u) return tl::unexpected(u.error());
  UserRecord record = *u;
  MailboxRecord& box = mailbox->record;
  std::optional<UidSet> set;
  if (uids) set = normalise(*uids);
  ExpungeResult out;
  std::vector<uint32_t> gone;
  if (!set || !set->empty()) {
    for (uint64_t from = 1;;) {
      auto batch = next_batch(txn, dbs, box.id, set ? &*set : nullptr, from);
      if (!batch) return tl::unexpected(batch.error());
      if (batch->empty()) break;
      for (const MessageInfo& m : *batch) {
        if (!(m.record.flags & kDeleted)) continue;
        if (auto r = remove_message(txn, dbs, box, record, m.uid, m.record, true); !r) return tl::unexpected(r.error());
        gone.push_back(m.uid);
      }
    }
  }
  if (!gone.empty()) {
    if (auto p = write_mailbox(txn, dbs, mailbox->user_id, mailbox->name, box); !p) return tl::unexpected(p.error());
    if (auto p = write_user(txn, dbs, user, record); !p) return tl::unexpected(p.error());
  }
  out.expunged = to_ranges(gone);
  out.highest_modseq = box.highestmodseq;
  return out;
}

// ---- CONDSTORE / QRESYNC ----

OpResult<ChangesResult> changes_since(const Txn& txn, const Dbs& dbs, std::string_view user, MailboxRef ref,
                                      uint64_t since, const std::optional<UidSet>& uids) {
  auto mailbox = resolve_mailbox(txn, dbs, user, ref);
  if (!mailbox) return tl::unexpected(mailbox.error());
  std::optional<UidSet> set;
  if (uids) set = normalise(*uids);
  ChangesResult out;
  out.highest_modseq = mailbox->record.highestmodseq;
  if (since >= out.highest_modseq) return out;
  // RFC 7162 §3.2.5.2: below the floor some expunges are no longer listed, so every UID under
  // UIDNEXT that is not live is reported (within the client's set): a superset the client drops
  // for UIDs it never had.
  const bool history_complete = since >= mailbox->record.vanished_floor;
  if (!history_complete) {
    auto gone = not_live(txn, dbs, mailbox->record, set ? &*set : nullptr);
    if (!gone) return tl::unexpected(gone.error());
    out.vanished = std::move(*gone);
  }
  std::vector<uint32_t> vanished;
  const std::string prefix = id_key(ref.id);
  auto cursor = Cursor::open(txn, dbs.changes);
  if (!cursor) return fail(cursor);
  for (auto entry = cursor->seek(change_key(ref.id, since + 1));; entry = cursor->next()) {
    if (!entry) return fail(entry);
    if (!*entry || !(*entry)->first.starts_with(prefix)) break;
    Decoder key((*entry)->first.substr(prefix.size()));
    Decoder value((*entry)->second);
    uint64_t modseq = 0;
    uint32_t uid = 0;
    uint8_t kind = 0;
    if (!key.u64(modseq) || !key.done() || !value.u32(uid) || !value.u8(kind) || !value.done()) {
      return damaged("changes entry");
    }
    if (set && !contains(*set, uid)) continue;
    if (kind == 1) {
      if (history_complete) vanished.push_back(uid);
      continue;
    }
    auto message = txn.get(dbs.messages, message_key(ref.id, uid));
    if (!message) return fail(message);
    if (!*message) continue;  // verify_refcounts reports a kind-0 entry without its message
    auto m = decode_message(**message);
    if (!m) return fail(m);
    out.changed.push_back(MessageState{uid, m->flags, std::move(m->keywords), modseq});
  }
  if (history_complete) {
    std::sort(vanished.begin(), vanished.end());
    vanished.erase(std::unique(vanished.begin(), vanished.end()), vanished.end());
    out.vanished = to_ranges(vanished);
  }
  return out;
}

// ---- QUOTA ----

OpResult<QuotaInfo> quota(const Txn& txn, const Dbs& dbs, std::string_view user) {
  auto u = need_user(txn, dbs, user);
  if (!u) return tl::unexpected(u.error());
  return QuotaInfo{u->bytes_used, u->quota_bytes, u->messages, u->quota_messages};
}

// ---- users ----

OpResult<void> rename_user(Txn& txn, const Dbs& dbs, std::string_view from, std::string_view to) {
  if (to.empty()) return fail(OpCode::InvalidArgument, "empty user name");
  if (to.size() > kMaxMailboxName) return fail(OpCode::InvalidArgument, "user name too long");
  if (const char* problem = text_problem(to)) return fail(OpCode::InvalidArgument, std::string("user name ") + problem);
  auto u = need_user(txn, dbs, from);
  if (!u) return tl::unexpected(u.error());
  auto existing = find_user(txn, dbs, to);
  if (!existing) return fail(existing);
  if (*existing) return fail(OpCode::AlreadyExists, "user " + in_quotes(to) + " exists");
  if (auto p = write_user(txn, dbs, to, *u); !p) return p;
  return del(txn, dbs.users, user_key(from));
}

OpResult<DeletedUser> delete_user(Txn& txn, const Dbs& dbs, std::string_view user) {
  auto u = need_user(txn, dbs, user);
  if (!u) return tl::unexpected(u.error());
  UserRecord record = *u;
  auto boxes = user_mailboxes(txn, dbs, record.id);
  if (!boxes) return tl::unexpected(boxes.error());
  DeletedUser out;
  for (const auto& [name, box] : *boxes) {
    auto gone = remove_mailbox(txn, dbs, user, record, name, box);
    if (!gone) return tl::unexpected(gone.error());
    out.mailboxes.push_back(std::move(*gone));
  }
  auto subs = user_subscriptions(txn, dbs, record.id);
  if (!subs) return tl::unexpected(subs.error());
  for (const auto& s : *subs) {
    if (auto d = del(txn, dbs.subscriptions, mailbox_key(record.id, s)); !d) return tl::unexpected(d.error());
  }
  out.subscriptions = subs->size();
  if (auto d = del(txn, dbs.users, user_key(user)); !d) return tl::unexpected(d.error());
  auto freed = free_deleted(txn, dbs);
  if (!freed) return tl::unexpected(freed.error());
  for (DeletedMailbox& m : out.mailboxes) {
    auto pending = txn.get(dbs.deleted_mailboxes, id_key(m.record.id));
    if (!pending) return fail(pending);
    m.freed = !*pending;
  }
  return out;
}

// ---- verify and repair ----

namespace {

class Verifier {
 public:
  Verifier(const Txn& txn, const Dbs& dbs, Txn* write) : txn_(txn), dbs_(dbs), write_(write) {}

  OpResult<VerifyReport> run() {
    for (auto step : {&Verifier::scan_users, &Verifier::scan_mailboxes, &Verifier::scan_deleted, &Verifier::scan_mailbox_ids,
                      &Verifier::scan_messages, &Verifier::scan_changes, &Verifier::scan_bodies,
                      &Verifier::scan_chunks, &Verifier::scan_subscriptions}) {
      if (auto r = (this->*step)(); !r) return tl::unexpected(r.error());
    }
    check_counters();
    if (write_) {
      if (auto r = repair(); !r) return tl::unexpected(r.error());
      report_.repaired = report_.problems - report_.unrepairable;
    }
    return report_;
  }

 private:
  struct UserAgg {
    std::string name;
    UserRecord record;
    uint64_t bytes = 0, messages = 0;
  };
  struct BoxAgg {
    uint64_t user_id = 0;
    std::string name;
    MailboxRecord record;
    uint32_t messages = 0, unseen = 0;
    uint64_t bytes = 0;
    uint32_t max_uid = 0;
    uint64_t max_modseq = 0;
    uint32_t tombstones = 0;
    bool indexed = false;  // its mailbox_ids entry is right
  };
  struct BodyCheck {
    uint64_t id = 0;
    uint32_t chunks = 0;
    uint64_t size = 0;
    uint32_t seen_chunks = 0;
    uint64_t seen_bytes = 0;
    bool dead = false;  // no message points at it
  };

  void problem(std::string line, bool fixable = true) {
    report_.problems += 1;
    if (!fixable) report_.unrepairable += 1;
    if (report_.details.size() < kMaxVerifyDetails) report_.details.push_back(std::move(line));
  }

  // Calls fn(key, value) for every entry of a table.
  template <class Fn>
  OpResult<void> scan(MDB_dbi dbi, Fn&& fn) {
    auto cursor = Cursor::open(txn_, dbi);
    if (!cursor) return fail(cursor);
    for (auto entry = cursor->first();; entry = cursor->next()) {
      if (!entry) return fail(entry);
      if (!*entry) return {};
      if (auto r = fn((*entry)->first, (*entry)->second); !r) return r;
    }
  }

  std::string box_name(uint64_t id) {
    auto it = boxes_.find(id);
    if (it == boxes_.end()) return "mailbox " + std::to_string(id);
    auto user = users_.find(it->second.user_id);
    return "mailbox " + std::to_string(id) + " (" + (user == users_.end() ? "user " + std::to_string(it->second.user_id) : user->second.name) +
           " " + in_quotes(it->second.name) + ")";
  }

  OpResult<void> scan_users() {
    return scan(dbs_.users, [&](std::string_view key, std::string_view value) -> OpResult<void> {
      auto record = decode_user(value);
      if (!record) {
        problem("user " + in_quotes(key) + ": damaged record", false);
        return {};
      }
      if (users_.count(record->id)) {
        problem("users " + in_quotes(key) + " and " + in_quotes(users_[record->id].name) + " share id " +
                    std::to_string(record->id),
                false);
        return {};
      }
      users_[record->id] = UserAgg{std::string(key), *record};
      report_.users += 1;
      return {};
    });
  }

  OpResult<void> scan_mailboxes() {
    return scan(dbs_.mailboxes, [&](std::string_view key, std::string_view value) -> OpResult<void> {
      Decoder d(key);
      uint64_t user_id = 0;
      const std::string name(key.size() >= 8 ? key.substr(8) : std::string_view());
      auto record = decode_mailbox(value);
      if (!d.u64(user_id) || !record) {
        problem("mailboxes entry " + in_quotes(name) + ": damaged", false);
        return {};
      }
      if (!users_.count(user_id)) problem("mailbox " + in_quotes(name) + " of user id " + std::to_string(user_id) + ": no such user", false);
      if (boxes_.count(record->id)) {
        problem("mailbox id " + std::to_string(record->id) + " used twice (" + in_quotes(name) + ")", false);
        return {};
      }
      boxes_[record->id] = BoxAgg{user_id, name, *record};
      report_.mailboxes += 1;
      return {};
    });
  }

  // Mailboxes deleted and still being freed: their messages keep their bodies referenced and
  // belong to no mailbox or user counter; their `changes` entries are not checked.
  OpResult<void> scan_deleted() {
    return scan(dbs_.deleted_mailboxes, [&](std::string_view key, std::string_view value) -> OpResult<void> {
      Decoder k(key);
      uint64_t id = 0;
      if (!k.u64(id) || !k.done() || !decode_deleted_mailbox(value)) {
        problem("deleted_mailboxes: a damaged entry", false);
        return {};
      }
      if (boxes_.count(id)) problem("mailbox id " + std::to_string(id) + " is both live and deleted", false);
      deleted_.insert(id);
      return {};
    });
  }

  OpResult<void> scan_mailbox_ids() {
    auto r = scan(dbs_.mailbox_ids, [&](std::string_view key, std::string_view value) -> OpResult<void> {
      Decoder k(key), v(value);
      uint64_t id = 0, user_id = 0;
      const bool ok = k.u64(id) && k.done() && v.u64(user_id);
      auto it = ok ? boxes_.find(id) : boxes_.end();
      if (it != boxes_.end() && it->second.user_id == user_id && it->second.name == v.rest()) {
        it->second.indexed = true;
        return {};
      }
      problem("mailbox_ids entry " + std::to_string(id) + " names no such mailbox");
      stale_ids_.emplace_back(key);
      return {};
    });
    if (!r) return r;
    for (auto& [id, box] : boxes_) {
      if (!box.indexed) problem(box_name(id) + ": no mailbox_ids entry");
    }
    return {};
  }

  OpResult<void> scan_messages() {
    return scan(dbs_.messages, [&](std::string_view key, std::string_view value) -> OpResult<void> {
      Decoder k(key);
      uint64_t mailbox_id = 0;
      uint32_t uid = 0;
      if (!k.u64(mailbox_id) || !k.u32(uid) || !k.done()) {
        problem("messages: a damaged key");
        orphan_messages_.emplace_back(key);
        return {};
      }
      auto it = boxes_.find(mailbox_id);
      if (it == boxes_.end() && deleted_.count(mailbox_id)) {
        if (decode_message(value)) {
          report_.messages += 1;
          body_refs_.push_back(decode_message(value)->body_id);
        } else {
          problem("deleted mailbox " + std::to_string(mailbox_id) + " message " + std::to_string(uid) + ": damaged record", false);
        }
        return {};
      }
      if (it == boxes_.end()) {
        problem("message " + std::to_string(uid) + " of mailbox " + std::to_string(mailbox_id) + ": no such mailbox");
        orphan_messages_.emplace_back(key);
        return {};
      }
      auto m = decode_message(value);
      if (!m) {
        problem(box_name(mailbox_id) + " message " + std::to_string(uid) + ": damaged record", false);
        return {};
      }
      report_.messages += 1;
      BoxAgg& box = it->second;
      box.messages += 1;
      if (!(m->flags & kSeen)) box.unseen += 1;
      box.bytes += m->size;
      box.max_uid = std::max(box.max_uid, uid);
      box.max_modseq = std::max(box.max_modseq, m->modseq);
      if (uid >= box.record.uidnext) {
        problem(box_name(mailbox_id) + ": UID " + std::to_string(uid) + " is not below UIDNEXT " +
                std::to_string(box.record.uidnext));
      }
      if (m->modseq > box.record.highestmodseq) {
        problem(box_name(mailbox_id) + ": message " + std::to_string(uid) + " has MODSEQ " + std::to_string(m->modseq) +
                " above HIGHESTMODSEQ " + std::to_string(box.record.highestmodseq));
      }
      auto change = txn_.get(dbs_.changes, change_key(mailbox_id, m->modseq));
      if (!change) return fail(change);
      Decoder c(change->value_or(std::string_view()));
      uint32_t change_uid = 0;
      uint8_t kind = 0xff;
      if (!*change || !c.u32(change_uid) || !c.u8(kind) || !c.done() || change_uid != uid || kind != 0) {
        problem(box_name(mailbox_id) + ": message " + std::to_string(uid) + " has no kind-0 change at its MODSEQ " +
                std::to_string(m->modseq));
        renumber_.emplace_back(mailbox_id, uid);
      }
      auto user = users_.find(box.user_id);
      if (user != users_.end()) {
        user->second.bytes += m->size;
        user->second.messages += 1;
      }
      body_refs_.push_back(m->body_id);
      return {};
    });
  }

  OpResult<void> scan_changes() {
    return scan(dbs_.changes, [&](std::string_view key, std::string_view value) -> OpResult<void> {
      Decoder k(key), v(value);
      uint64_t mailbox_id = 0, modseq = 0;
      uint32_t uid = 0;
      uint8_t kind = 0;
      if (!k.u64(mailbox_id) || !k.u64(modseq) || !k.done() || !v.u32(uid) || !v.u8(kind) || !v.done() || kind > 1) {
        problem("changes: a damaged entry");
        stale_changes_.emplace_back(key);
        return {};
      }
      auto it = boxes_.find(mailbox_id);
      if (it == boxes_.end() && deleted_.count(mailbox_id)) return {};
      if (it == boxes_.end()) {
        problem("changes entry of mailbox " + std::to_string(mailbox_id) + ": no such mailbox");
        stale_changes_.emplace_back(key);
        return {};
      }
      BoxAgg& box = it->second;
      box.max_modseq = std::max(box.max_modseq, modseq);
      if (modseq > box.record.highestmodseq) {
        problem(box_name(mailbox_id) + ": a change at MODSEQ " + std::to_string(modseq) + " above HIGHESTMODSEQ " +
                std::to_string(box.record.highestmodseq));
      }
      if (kind == 1) {
        if (uid >= box.record.uidnext) {
          problem(box_name(mailbox_id) + ": expunged UID " + std::to_string(uid) + " is not below UIDNEXT");
        }
        if (modseq <= box.record.vanished_floor) {
          // Pruning goes oldest first, so nothing at or below the floor is left: repair removes it.
          problem(box_name(mailbox_id) + ": an expunge at MODSEQ " + std::to_string(modseq) +
                  " is at or below the expunge history floor " + std::to_string(box.record.vanished_floor));
          stale_changes_.emplace_back(key);
        } else {
          box.tombstones += 1;
        }
        box.max_uid = std::max(box.max_uid, uid);
        return {};
      }
      auto message = txn_.get(dbs_.messages, message_key(mailbox_id, uid));
      if (!message) return fail(message);
      std::optional<MessageRecord> m;
      if (*message) {
        if (auto decoded = decode_message(**message)) m = std::move(*decoded);
      }
      if (!m || m->modseq != modseq) {
        problem(box_name(mailbox_id) + ": a kind-0 change at MODSEQ " + std::to_string(modseq) + " for UID " +
                std::to_string(uid) + ", which is not there at that MODSEQ");
        stale_changes_.emplace_back(key);
      }
      return {};
    });
  }

  OpResult<void> scan_bodies() {
    std::sort(body_refs_.begin(), body_refs_.end());
    size_t i = 0;
    auto missing_until = [&](uint64_t id) {
      while (i < body_refs_.size() && body_refs_[i] < id) {
        const uint64_t missing = body_refs_[i];
        size_t n = 0;
        while (i < body_refs_.size() && body_refs_[i] == missing) ++i, ++n;
        problem(std::to_string(n) + " message(s) point at body " + std::to_string(missing) + ", which is gone", false);
      }
    };
    auto r = scan(dbs_.bodies, [&](std::string_view key, std::string_view value) -> OpResult<void> {
      Decoder k(key);
      uint64_t id = 0;
      auto body = decode_body(value);
      if (!k.u64(id) || !k.done() || !body) {
        problem("bodies: a damaged entry", false);
        return {};
      }
      report_.bodies += 1;
      missing_until(id);
      uint32_t counted = 0;
      while (i < body_refs_.size() && body_refs_[i] == id) ++i, ++counted;
      BodyCheck check{id, body->chunks, body->size};
      if (counted == 0) {
        problem("body " + std::to_string(id) + ": no message points at it (references " +
                std::to_string(body->references) + ")");
        check.dead = true;
      } else if (counted != body->references) {
        problem("body " + std::to_string(id) + ": references " + std::to_string(body->references) + ", counted " +
                std::to_string(counted));
        body->references = counted;
        body_fixes_.emplace_back(id, *body);
      }
      bodies_.push_back(check);
      return {};
    });
    if (!r) return r;
    missing_until(UINT64_MAX);
    return {};
  }

  OpResult<void> scan_chunks() {
    size_t j = 0;
    auto r = scan(dbs_.body_chunks, [&](std::string_view key, std::string_view value) -> OpResult<void> {
      report_.chunks += 1;
      Decoder k(key);
      uint64_t id = 0;
      uint32_t n = 0;
      if (!k.u64(id) || !k.u32(n) || !k.done()) {
        problem("body_chunks: a damaged key");
        stale_chunks_.emplace_back(key);
        return {};
      }
      while (j < bodies_.size() && bodies_[j].id < id) ++j;
      if (j == bodies_.size() || bodies_[j].id != id) {
        problem("body " + std::to_string(id) + " chunk " + std::to_string(n) + ": no such body");
        stale_chunks_.emplace_back(key);
        return {};
      }
      BodyCheck& b = bodies_[j];
      if (b.dead) {
        stale_chunks_.emplace_back(key);  // reported with its body
        return {};
      }
      if (n >= b.chunks) {
        problem("body " + std::to_string(id) + " chunk " + std::to_string(n) + ": beyond its " +
                std::to_string(b.chunks) + " chunks");
        stale_chunks_.emplace_back(key);
        return {};
      }
      b.seen_chunks += 1;
      b.seen_bytes += value.size();
      return {};
    });
    if (!r) return r;
    for (const BodyCheck& b : bodies_) {
      if (!b.dead && (b.seen_chunks != b.chunks || b.seen_bytes != b.size)) {
        problem("body " + std::to_string(b.id) + ": " + std::to_string(b.seen_chunks) + " of " +
                    std::to_string(b.chunks) + " chunks, " + std::to_string(b.seen_bytes) + " of " +
                    std::to_string(b.size) + " bytes",
                false);
      }
    }
    return {};
  }

  OpResult<void> scan_subscriptions() {
    return scan(dbs_.subscriptions, [&](std::string_view key, std::string_view) -> OpResult<void> {
      Decoder k(key);
      uint64_t user_id = 0;
      if (!k.u64(user_id) || !users_.count(user_id)) {
        problem("subscription of user id " + std::to_string(user_id) + ": no such user");
        stale_subscriptions_.emplace_back(key);
      }
      return {};
    });
  }

  void check_counters() {
    for (auto& [id, box] : boxes_) {
      const MailboxRecord& r = box.record;
      if (r.tombstones != box.tombstones) {
        problem(box_name(id) + ": " + std::to_string(r.tombstones) + " expunges counted in the record, " +
                std::to_string(box.tombstones) + " listed");
      }
      if (r.vanished_floor > r.highestmodseq) {
        problem(box_name(id) + ": expunge history floor " + std::to_string(r.vanished_floor) + " above HIGHESTMODSEQ");
      }
      if (r.messages != box.messages || r.unseen != box.unseen || r.bytes != box.bytes) {
        problem(box_name(id) + ": counters messages " + std::to_string(r.messages) + " unseen " +
                std::to_string(r.unseen) + " bytes " + std::to_string(r.bytes) + ", counted " +
                std::to_string(box.messages) + " " + std::to_string(box.unseen) + " " + std::to_string(box.bytes));
      }
    }
    for (auto& [id, user] : users_) {
      if (user.record.bytes_used != user.bytes || user.record.messages != user.messages) {
        problem("user " + in_quotes(user.name) + ": bytes used " + std::to_string(user.record.bytes_used) + " messages " +
                std::to_string(user.record.messages) + ", counted " + std::to_string(user.bytes) + " " +
                std::to_string(user.messages));
      }
    }
  }

  OpResult<void> repair() {
    Txn& w = *write_;
    for (const auto& k : stale_changes_) {
      if (auto r = del(w, dbs_.changes, k); !r) return r;
    }
    for (const auto& k : orphan_messages_) {
      if (auto r = del(w, dbs_.messages, k); !r) return r;
    }
    for (const auto& k : stale_ids_) {
      if (auto r = del(w, dbs_.mailbox_ids, k); !r) return r;
    }
    for (const auto& [id, body] : body_fixes_) {
      if (auto r = put(w, dbs_.bodies, id_key(id), encode(body)); !r) return r;
    }
    for (const BodyCheck& b : bodies_) {
      if (b.dead) {
        if (auto r = del(w, dbs_.bodies, id_key(b.id)); !r) return r;
      }
    }
    for (const auto& k : stale_chunks_) {
      if (auto r = del(w, dbs_.body_chunks, k); !r) return r;
    }
    for (const auto& k : stale_subscriptions_) {
      if (auto r = del(w, dbs_.subscriptions, k); !r) return r;
    }
    for (auto& [id, box] : boxes_) {
      MailboxRecord& r = box.record;
      r.messages = box.messages;
      r.unseen = box.unseen;
      r.bytes = box.bytes;
      r.tombstones = box.tombstones;
      r.uidnext = std::max<uint32_t>(r.uidnext, box.max_uid == UINT32_MAX ? UINT32_MAX : box.max_uid + 1);
      r.highestmodseq = std::max(r.highestmodseq, box.max_modseq);
    }
    // A message whose kind-0 entry is wrong gets a fresh MODSEQ: clients then refetch its flags.
    for (const auto& [mailbox_id, uid] : renumber_) {
      BoxAgg& box = boxes_[mailbox_id];
      const std::string key = message_key(mailbox_id, uid);
      auto value = w.get(dbs_.messages, key);
      if (!value) return fail(value);
      if (!*value) continue;
      auto m = decode_message(**value);
      if (!m) continue;
      m->modseq = ++box.record.highestmodseq;
      if (auto r = put(w, dbs_.messages, key, encode(*m)); !r) return r;
      if (auto r = put(w, dbs_.changes, change_key(mailbox_id, m->modseq), Encoder().u32(uid).u8(0).str()); !r) return r;
    }
    for (auto& [id, box] : boxes_) {
      if (auto r = write_mailbox(w, dbs_, box.user_id, box.name, box.record); !r) return r;
      if (!box.indexed) {
        if (auto r = put(w, dbs_.mailbox_ids, id_key(id), Encoder().u64(box.user_id).raw(box.name).str()); !r) return r;
      }
    }
    for (auto& [id, user] : users_) {
      user.record.bytes_used = user.bytes;
      user.record.messages = user.messages;
      if (auto r = write_user(w, dbs_, user.name, user.record); !r) return r;
    }
    return {};
  }

  const Txn& txn_;
  const Dbs& dbs_;
  Txn* write_;
  VerifyReport report_;
  std::unordered_map<uint64_t, UserAgg> users_;
  std::unordered_map<uint64_t, BoxAgg> boxes_;
  std::set<uint64_t> deleted_;
  std::vector<uint64_t> body_refs_;
  std::vector<BodyCheck> bodies_;  // in id order
  std::vector<std::pair<uint64_t, BodyRecord>> body_fixes_;
  std::vector<std::pair<uint64_t, uint32_t>> renumber_;
  std::vector<std::string> stale_changes_, orphan_messages_, stale_ids_, stale_chunks_, stale_subscriptions_;
};

}  // namespace

OpResult<VerifyReport> verify_refcounts(Txn& txn, const Dbs& dbs, bool repair) {
  return Verifier(txn, dbs, repair ? &txn : nullptr).run();
}

OpResult<VerifyReport> verify_refcounts(const Txn& txn, const Dbs& dbs) { return Verifier(txn, dbs, nullptr).run(); }

}  // namespace store::ops
