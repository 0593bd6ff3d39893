// mailbox_ops.hpp: the MailStore API's operations inside one LMDB transaction (IMAP semantics in
// UIDs and MODSEQs, store/README.md "Invariants" kept by every write). No threads, no gRPC, no loop.
#pragma once

// How to call these:
// - Reads take a `const Txn&` (a read transaction, or the writer's). Writes take a `Txn&` that the
//   caller runs inside a nested transaction on the group-commit writer: a write that returns an
//   error may have written part of its work, and the caller aborts the nested transaction.
// - Every operation names the user by canonical name ("uid@domain"); a missing user record is
//   NotFound "no such user". A mailbox is named either by name (validated and canonicalised here:
//   "inbox" in any case is "INBOX") or by a MailboxRef from select_mailbox; a ref whose mailbox is
//   another user's is NotFound like a missing one (a front end cannot reach another user's mail by
//   guessing ids), and a ref whose UIDVALIDITY is not the mailbox's is FailedPrecondition.
// - UID sets are lists of inclusive ranges in any order; each operation normalises them (sorted,
//   merged, UID 0 dropped) in O(n log n) and walks messages and ranges together, so a million ranges
//   over a small mailbox cost a million range steps, not a million seeks per message. How many
//   ranges a request may carry is the caller's limit.
// - `now` and internal dates are unix seconds.

#include <cstdint>
#include <functional>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <tl/expected.hpp>

#include "common/lmdb/lmdb.hpp"
#include "common/result.hpp"
#include "store/mime/structure.hpp"
#include "store/storage/schema.hpp"

namespace store::ops {

// ---- errors ----

// What the gRPC layer maps to a status: NotFound NOT_FOUND (IMAP [NONEXISTENT], [TRYCREATE] for
// APPEND/COPY targets), AlreadyExists ALREADY_EXISTS ([ALREADYEXISTS]), InvalidArgument
// INVALID_ARGUMENT, FailedPrecondition FAILED_PRECONDITION (UIDVALIDITY changed, [UNKNOWN-CTE]),
// ResourceExhausted RESOURCE_EXHAUSTED ([OVERQUOTA], [LIMIT]), TempFail UNAVAILABLE (disk or map
// full, retry later), Internal INTERNAL (a damaged record).
enum class OpCode { NotFound, AlreadyExists, InvalidArgument, FailedPrecondition, ResourceExhausted, TempFail, Internal };
struct OpError {
  OpCode code;
  std::string detail;  // readable by a client: "no mailbox \"Foo\"", "over quota: ..."
};
template <class T>
using OpResult = tl::expected<T, OpError>;

// TempFail stays TempFail; every other storage error is Internal.
OpError to_op_error(const common::Error& e);
const char* op_code_name(OpCode code);  // "NotFound", ... for logs

// ---- limits (bad input from a front end is refused with a readable error, never stored) ----

inline constexpr size_t kMaxMailboxName = 1000;         // bytes, UTF-8
inline constexpr size_t kMaxMailboxesPerUser = 10000;   // CREATE past it: ResourceExhausted
inline constexpr size_t kMaxSubscriptionsPerUser = 10000;
inline constexpr size_t kMaxKeywordLength = 256;        // bytes of one keyword atom
inline constexpr size_t kMaxListPattern = 1000;

// ---- names, flags, UID sets ----

// A mailbox name as stored: valid UTF-8 (no overlong forms, surrogates or code points past
// U+10FFFF), no C0/C1 control characters or DEL (so no NUL, CR, LF), no "*" or "%" (they would be
// LIST wildcards), not empty, no empty level ("a//b", a leading or trailing "/"), at most
// kMaxMailboxName bytes. A first level equal to "inbox" in any case becomes "INBOX". Returns the
// canonical name; InvalidArgument naming the problem otherwise.
OpResult<std::string> validate_mailbox_name(std::string_view name);

struct FlagSet {
  uint32_t flags = 0;                 // store::Flag bits
  std::vector<std::string> keywords;  // distinct (compared case-insensitively), as first spelled
};
// IMAP spellings ("\\Seen" ... "\\Draft" in any case, and keyword atoms: RFC 9051 atom characters,
// not starting with "\\", at most kMaxKeywordLength bytes, at most kMaxKeywords of them).
// "\\Recent" and other "\\" names are InvalidArgument (\Recent cannot be stored, RFC 9051 §2.3.2).
OpResult<FlagSet> parse_flags(std::span<const std::string> names);
// "\\Seen", "\\Answered", "\\Flagged", "\\Deleted", "\\Draft" for the bits, then the keywords.
std::vector<std::string> flag_names(uint32_t flags, const std::vector<std::string>& keywords);
// RFC 6154 names ("\\Drafts", "\\Sent", "\\Trash", "\\Junk", "\\Archive", "\\All", "\\Flagged",
// any case) to store::SpecialUse bits; an unknown one is InvalidArgument.
OpResult<uint32_t> parse_special_use(std::span<const std::string> names);
std::vector<std::string> special_use_names(uint32_t bits);

using UidRange = std::pair<uint32_t, uint32_t>;  // first, last (inclusive)
using UidSet = std::vector<UidRange>;
// Sorted, overlapping and adjacent ranges merged, first > last swapped, UID 0 left out.
UidSet normalise(UidSet set);
// On a normalised set, by binary search.
bool contains(const UidSet& set, uint32_t uid);
// Ascending UIDs as ranges.
UidSet to_ranges(std::span<const uint32_t> ascending_uids);

// ---- mailboxes ----

struct MailboxRef {
  uint64_t id = 0;
  uint32_t uidvalidity = 0;
};

// A mailbox of the user, looked up by ref (ownership and UIDVALIDITY checked) or by name.
struct OpenMailbox {
  uint64_t user_id = 0;
  std::string name;
  MailboxRecord record;
};
OpResult<OpenMailbox> resolve_mailbox(const common::lmdb::Txn&, const Dbs&, std::string_view user, MailboxRef ref);
OpResult<OpenMailbox> find_mailbox_named(const common::lmdb::Txn&, const Dbs&, std::string_view user,
                                         std::string_view name);

// The user record with INBOX and the special-use set (schema.hpp create_user) when it is missing.
OpResult<UserRecord> create_user_if_missing(common::lmdb::Txn&, const Dbs&, std::string_view user, int64_t now);

struct CreatedMailbox {
  std::string name;  // canonical
  MailboxRecord record;
  std::vector<std::string> parents_created;  // missing superior names made on the way, outermost first
};
// RFC 9051 §6.3.4: a trailing "/" is dropped; missing superior names are created ("a/b/c" makes
// "a" and "a/b"); AlreadyExists when the name exists (INBOX always does). `special_use` is the RFC
// 6154 CREATE-SPECIAL-USE bits (SpecialUse), 0 for none; unknown bits are InvalidArgument.
OpResult<CreatedMailbox> create_mailbox(common::lmdb::Txn&, const Dbs&, std::string_view user, std::string_view name,
                                        uint32_t special_use, int64_t now);

struct DeletedMailbox {
  std::string name;
  MailboxRecord record;    // as it was before the delete (its id for the watchers' "gone")
  uint32_t expunged = 0;   // messages removed with it (freed now or by later free_deleted batches)
  bool freed = false;      // every one of them was freed in this transaction
};
// RFC 9051 §6.3.5. Takes effect at once, whatever the mailbox's size: the name and the mailbox_ids
// entry go (a ref to it is NotFound, the name can be created again with a new id and
// UIDVALIDITY), the user's bytes and messages drop by the mailbox's, and the id is listed in
// `deleted_mailboxes`. Its messages (kind-0 changes, body references, bodies) and its kind-1
// entries are freed by free_deleted: the first FreeLimits{} worth here, the rest in later
// transactions. Its inferior names stay; its subscription stays (§6.3.7: the server does not
// unsubscribe by itself). INBOX cannot be deleted (InvalidArgument).
OpResult<DeletedMailbox> delete_mailbox(common::lmdb::Txn&, const Dbs&, std::string_view user, std::string_view name);

// One bounded batch of the freeing that DELETE (and user deletion) left: pending mailboxes in id
// order, each one's messages (the message, its kind-0 change, its body reference; the body and
// its chunks with the last one), then its remaining `changes` entries, then its
// `deleted_mailboxes` entry. A batch stops once it removed `messages` entries (messages and
// changes entries together) or `chunks` (chunks and body records), checked before each message,
// so one message with a large body may go past it. Safe to repeat after a crash: what a committed
// batch freed is gone, the rest is still listed.
struct FreeLimits {
  size_t messages = 1000;
  size_t chunks = 4096;  // 256 MiB of body chunks
};
struct FreeProgress {
  uint64_t messages = 0;            // messages freed
  uint64_t changes = 0;             // other `changes` entries removed
  uint64_t chunks = 0;              // chunks and body records deleted
  uint64_t mailboxes_finished = 0;  // `deleted_mailboxes` entries done and removed
  bool more = false;                // stopped by the limits: another batch has work
};
OpResult<FreeProgress> free_deleted(common::lmdb::Txn&, const Dbs&, const FreeLimits& limits = {});
// How many deleted mailboxes are still being freed.
OpResult<uint64_t> pending_deletions(const common::lmdb::Txn&, const Dbs&);

// Expunge history is bounded: a mailbox keeps its newest `keep` kind-1 entries; older ones are
// removed, oldest first, and the mailbox's vanished_floor rises to the highest MODSEQ removed, so
// changes_since from below it answers with every UID that is not live (RFC 7162 allows a superset).
// Count, not age: VANISHED for a client older than the floor costs the mailbox's live-UID ranges,
// not the number of expunges, so what must be bounded is the space, about 40 bytes per entry.
struct PruneLimits {
  uint32_t keep = 10000;     // kind-1 entries kept per mailbox
  size_t mailboxes = 1000;   // mailbox records looked at per batch
  size_t entries = 1000;     // `changes` entries read (and at most removed) per batch
};
struct PruneProgress {
  uint64_t mailboxes = 0;  // records looked at
  uint64_t pruned = 0;     // kind-1 entries removed
  uint64_t entries = 0;    // `changes` entries read
  bool more = false;       // the walk over the mailboxes goes on from `cursor`
};
// One batch of a walk over every mailbox; `cursor` is the `mailboxes` key to go on from ("" for the
// first), left "" once the walk reached the end. The walk holds no state but the cursor, so a
// restart simply begins a new one.
OpResult<PruneProgress> prune_tombstones(common::lmdb::Txn&, const Dbs&, const PruneLimits& limits,
                                         std::string& cursor);

struct RenamedMailbox {
  uint64_t id = 0;
  std::string from;
  std::string to;
};
struct RenameResult {
  // Mailboxes that changed name (the one named and its inferiors), each keeping its id, UIDs and
  // UIDVALIDITY. Empty when INBOX was renamed.
  std::vector<RenamedMailbox> renamed;
  std::vector<std::string> parents_created;
  // RENAME INBOX (RFC 9051 §6.3.6): a new mailbox `to` got every INBOX message (new UIDs in the
  // old order, flags, keywords and dates kept); INBOX stays, empty, its inferiors untouched.
  std::optional<MailboxRecord> created;
  UidSet inbox_expunged;
  uint64_t inbox_highest_modseq = 0;
};
// RFC 9051 §6.3.6: NotFound when `from` does not exist, AlreadyExists when `to` or any renamed
// inferior's new name does, InvalidArgument for a rename under itself ("a" to "a/b") or a new
// inferior name over kMaxMailboxName. Subscriptions of the renamed names move with them; missing
// superior names of `to` are created.
OpResult<RenameResult> rename_mailbox(common::lmdb::Txn&, const Dbs&, std::string_view user, std::string_view from,
                                      std::string_view to, int64_t now);

// RFC 9051 §6.3.7/§6.3.8: the name need not exist. Returns the canonical name. Subscribing past
// kMaxSubscriptionsPerUser is ResourceExhausted; unsubscribing a name not subscribed is fine.
OpResult<std::string> subscribe(common::lmdb::Txn&, const Dbs&, std::string_view user, std::string_view name,
                                bool subscribed);

// ---- LIST (RFC 9051 §6.3.9, RFC 5258, RFC 6154) ----

struct ListOptions {
  bool subscribed_only = false;   // LIST (SUBSCRIBED), LSUB: subscribed names, existing or not
  bool special_use_only = false;  // LIST (SPECIAL-USE): existing mailboxes with a special use
};
struct ListEntry {
  std::string name;
  bool exists = false;            // false: \NonExistent (a subscription, or a superior name with
                                  // existing inferiors whose own mailbox was deleted: \Noselect)
  bool subscribed = false;        // always computed (\Subscribed, RETURN (SUBSCRIBED))
  bool has_children = false;      // existing inferior mailboxes (\HasChildren / \HasNoChildren)
  // Some inferior name is subscribed (RFC 5258 CHILDINFO ("SUBSCRIBED")). With subscribed_only,
  // an entry with subscribed == false is a superior name reported only because an inferior is
  // subscribed and does not itself match the patterns: what LSUB shows with \Noselect and
  // LIST (SUBSCRIBED RECURSIVEMATCH) with CHILDINFO; plain LIST (SUBSCRIBED) skips those.
  bool child_subscribed = false;
  uint32_t special_use = 0;
  MailboxRecord record;           // when exists
};
// Names matching any of `patterns` ("*" matches anything including "/", "%" anything but "/"; the
// reference is already joined by the caller), compared on canonical names with INBOX's first level
// case-insensitive ("inbox/%" matches "INBOX/a"). In name order. A pattern that is not valid UTF-8
// or is over kMaxListPattern bytes is InvalidArgument; an empty pattern matches nothing.
OpResult<std::vector<ListEntry>> list_mailboxes_matching(const common::lmdb::Txn&, const Dbs&, std::string_view user,
                                                         std::span<const std::string> patterns,
                                                         const ListOptions& options);
// The pattern matcher itself (exposed for tests and for the front end's own uses).
bool list_match(std::string_view pattern, std::string_view name);

// ---- SELECT / EXAMINE / STATUS ----

struct SelectResult {
  std::string name;  // canonical
  MailboxRef ref;
  MailboxRecord record;             // UIDVALIDITY, UIDNEXT, HIGHESTMODSEQ, messages, unseen, bytes
  UidSet uids;                      // every message, ascending: the front end's sequence numbers
  std::vector<std::string> keywords;  // in use in the mailbox (FLAGS), sorted, distinct
  uint32_t first_unseen = 0;        // lowest UID without \Seen, 0: none
  uint32_t deleted = 0;             // messages with \Deleted (STATUS DELETED)
};
// One scan of the mailbox's messages.
OpResult<SelectResult> select_mailbox(const common::lmdb::Txn&, const Dbs&, std::string_view user,
                                      std::string_view name);
// STATUS: the record alone, or with `count_deleted` a scan for the \Deleted count (in `deleted`,
// `uids` and `keywords` left empty).
OpResult<SelectResult> status_mailbox(const common::lmdb::Txn&, const Dbs&, std::string_view user,
                                      std::string_view name, bool count_deleted);

// ---- FETCH ----

// Calls `fn` for each message of `ref` whose UID is in `uids` (any order; normalised here), in UID
// order, one at a time (nothing held but the current message). `fn` returns false to stop.
// `changed_since` > 0 passes only messages with a greater MODSEQ (RFC 7162 CHANGEDSINCE).
OpResult<void> for_each_message(const common::lmdb::Txn&, const Dbs&, std::string_view user, MailboxRef ref,
                                const UidSet& uids, const std::function<bool(const MessageInfo&)>& fn,
                                uint64_t changed_since = 0);

// The body's stored structure (ENVELOPE, BODYSTRUCTURE, part offsets relative to the body).
OpResult<mime::MessageStructure> load_structure(const common::lmdb::Txn&, const Dbs&, const MessageRecord& message);

enum class SectionText { Full, Header, Text, Mime, HeaderFields, HeaderFieldsNot };
struct Section {
  std::vector<uint32_t> part;        // 1-based path, as in BODY[1.2]; empty: the whole message
  SectionText text = SectionText::Full;
  std::vector<std::string> fields;   // HEADER.FIELDS (...) names, compared case-insensitively
  bool binary = false;               // RFC 3516 BINARY[part]: content decoded from its CTE
};
struct Partial {
  uint64_t offset = 0;
  uint64_t length = UINT64_MAX;
};
struct SectionData {
  bool missing = false;  // no such part / no meaning for this part: IMAP sends "" (NIL for BINARY)
  uint64_t total = 0;    // the whole section's size (BINARY: decoded; BINARY.SIZE's answer)
  std::string data;      // the bytes of [offset, offset + length) of it; empty past the end
};
// BODY[section]<partial> and BINARY[section]<partial> of one message, as the client sees it: the
// message's prefix (its Delivered-To line) then its body. Only the 64 KiB body chunks that the
// range needs are read, so a large section can be streamed by calling this with growing offsets.
// HEADER.FIELDS / .NOT keep whole fields (continuation lines included) and end with the empty line
// (RFC 9051 §6.4.5); the message's own header includes the prefix. BINARY works on a leaf part
// (its 7bit/8bit/binary/base64/quoted-printable content; a multipart, a message/rfc822 part or the
// whole message come as stored), only with SectionText::Full, else InvalidArgument; an unknown
// encoding is FailedPrecondition "unknown content-transfer-encoding" (IMAP [UNKNOWN-CTE]).
// `size_only`: total only (BINARY.SIZE), no data read past what decoding needs. BINARY of a
// base64 or quoted-printable part decodes the whole part on every call, so stream such a section
// by reading it once (with the client's partial) and splitting the result.
// A missing part is `missing`, not an error; errors are FailedPrecondition (above), InvalidArgument
// (above) and Internal (a damaged body or structure).
OpResult<SectionData> read_section(const common::lmdb::Txn&, const Dbs&, const MessageRecord& message,
                                   const mime::MessageStructure& structure, const Section& section,
                                   std::optional<Partial> partial = std::nullopt, bool size_only = false);
// Bytes [start, end) of the message as the client sees it (prefix, then body chunks), clamped to
// its size.
OpResult<std::string> read_bytes(const common::lmdb::Txn&, const Dbs&, const MessageRecord& message, uint64_t start,
                                 uint64_t end);
// RFC 2045 §6.7/§6.8 decoding (base64 ignores characters outside its alphabet; quoted-printable
// keeps a malformed "=" as it is and drops trailing blanks of encoded lines); identity for 7bit,
// 8bit and binary; FailedPrecondition for Encoding::Other. Shared with SEARCH BODY/TEXT.
OpResult<std::string> decode_transfer_encoding(std::string_view content, mime::Encoding encoding);

// ---- STORE (RFC 9051 §6.4.6, RFC 7162 §3.1.3) ----

enum class StoreMode { Replace, Add, Remove };
struct MessageState {
  uint32_t uid = 0;
  uint32_t flags = 0;
  std::vector<std::string> keywords;
  uint64_t modseq = 0;
};
struct StoreResult {
  std::vector<MessageState> updated;    // flags changed: each with its new MODSEQ, in UID order
  std::vector<MessageState> unchanged;  // in the set, flags already as asked: no new MODSEQ
  UidSet modified;                      // failed UNCHANGEDSINCE (MODSEQ above it): left alone
  uint64_t highest_modseq = 0;          // the mailbox's after the command
};
// Each changed message gets its own MODSEQ, HIGHESTMODSEQ + 1 at its turn (the `changes` table
// holds one entry per MODSEQ), its kind-0 `changes` entry moves there, and the unseen counter
// follows \Seen. A message with MODSEQ > *unchanged_since is not changed and is listed in
// `modified`. More than kMaxKeywords keywords on a message is InvalidArgument.
OpResult<StoreResult> store_flags(common::lmdb::Txn&, const Dbs&, std::string_view user, MailboxRef ref,
                                  const UidSet& uids, StoreMode mode, const FlagSet& flags,
                                  std::optional<uint64_t> unchanged_since = std::nullopt);

// ---- APPEND, COPY, MOVE, EXPUNGE ----

struct AppendResult {
  uint64_t mailbox_id = 0;
  uint32_t uidvalidity = 0;  // RFC 4315 APPENDUID
  uint32_t uid = 0;
  uint64_t modseq = 0;
};
// The message's structure is parsed here (store/mime, as at delivery); an appended message has no
// Delivered-To prefix; `internal_date` is stored as given (the caller puts "now" for a missing
// one). NotFound for a missing mailbox (IMAP [TRYCREATE]); ResourceExhausted
// "over quota: ..." when the user record's quota (bytes or messages) would be passed.
OpResult<AppendResult> append_message(common::lmdb::Txn&, const Dbs&, std::string_view user,
                                      std::string_view mailbox, std::string_view bytes, const FlagSet& flags,
                                      int64_t internal_date);

struct CopyResult {
  MailboxRef target;                 // COPYUID's UIDVALIDITY
  std::vector<uint32_t> source_uids;  // in source UID order
  std::vector<uint32_t> target_uids;  // the same order
  std::vector<MessageState> added;    // in the target, for the watchers
  uint64_t target_highest_modseq = 0;
  UidSet expunged;                    // MOVE: gone from the source
  uint64_t source_highest_modseq = 0;  // MOVE: the source's after the expunge
};
// COPY / MOVE (RFC 9051 §6.4.7, RFC 6851): bodies are shared (reference + 1, no bytes copied);
// flags, keywords, internal date and prefix are kept; new UIDs in source-UID order. NotFound for a
// missing target ([TRYCREATE]); a COPY passing the quota is ResourceExhausted for the whole set (a
// MOVE between one user's mailboxes does not change its usage). An empty match is not an error.
OpResult<CopyResult> copy_messages(common::lmdb::Txn&, const Dbs&, std::string_view user, MailboxRef source,
                                   const UidSet& uids, std::string_view target, bool move);

struct ExpungeResult {
  UidSet expunged;
  uint64_t highest_modseq = 0;
};
// EXPUNGE: every message with \Deleted; with `uids` (UID EXPUNGE, RFC 4315) only those in the set
// (an empty set expunges nothing). Each removal takes a new MODSEQ for its kind-1 `changes` entry.
OpResult<ExpungeResult> expunge(common::lmdb::Txn&, const Dbs&, std::string_view user, MailboxRef ref,
                                const std::optional<UidSet>& uids = std::nullopt);

// ---- CONDSTORE / QRESYNC (RFC 7162) ----

struct ChangesResult {
  std::vector<MessageState> changed;  // MODSEQ > since, in MODSEQ order, with current flags
  UidSet vanished;                    // expunged after `since` (VANISHED (EARLIER))
  uint64_t highest_modseq = 0;
};
// A range scan of `changes` from (mailbox, since + 1); `uids` restricts both lists. Below the
// mailbox's vanished_floor (older expunges were pruned, prune_tombstones) `vanished` is every UID
// under UIDNEXT that is not live, restricted to `uids` when given.
OpResult<ChangesResult> changes_since(const common::lmdb::Txn&, const Dbs&, std::string_view user, MailboxRef ref,
                                      uint64_t since, const std::optional<UidSet>& uids = std::nullopt);

// ---- QUOTA (RFC 9208 STORAGE and MESSAGE resources) ----

struct QuotaInfo {
  uint64_t bytes_used = 0;
  uint64_t bytes_limit = 0;  // 0: none
  uint64_t messages_used = 0;
  uint64_t messages_limit = 0;
};
OpResult<QuotaInfo> quota(const common::lmdb::Txn&, const Dbs&, std::string_view user);

// ---- user administration (postern-storectl, the service's admin calls) ----

// Re-keys the users record; mailboxes and subscriptions are keyed by user id, so they stay.
// NotFound for a missing `from`, AlreadyExists for an existing `to`, InvalidArgument for an empty
// `to` or one with control characters.
OpResult<void> rename_user(common::lmdb::Txn&, const Dbs&, std::string_view from, std::string_view to);

struct DeletedUser {
  std::vector<DeletedMailbox> mailboxes;
  uint64_t subscriptions = 0;
};
// Every mailbox deleted as delete_mailbox does (INBOX too; the first FreeLimits{} of their messages
// freed here, the rest by free_deleted), the subscriptions, then the record.
OpResult<DeletedUser> delete_user(common::lmdb::Txn&, const Dbs&, std::string_view user);

// A full consistency check of the environment against store/README.md "Invariants": messages per
// body against bodies.references, bodies and chunks nothing points at, missing or extra chunks,
// messages of unknown mailboxes, mailbox and user counters recomputed from the messages, UIDs at or
// above UIDNEXT, MODSEQs above HIGHESTMODSEQ, one kind-0 `changes` entry per live message at its
// MODSEQ, mailbox_ids against mailboxes, subscriptions of unknown users.
struct VerifyReport {
  uint64_t users = 0, mailboxes = 0, messages = 0, bodies = 0, chunks = 0;
  uint64_t problems = 0;              // every discrepancy found, listed or not
  std::vector<std::string> details;   // the first kMaxVerifyDetails, one readable line each
  uint64_t repaired = 0;              // with repair: discrepancies fixed
  // Found but left alone even with repair (a message whose body is gone, a mailbox of a missing
  // user): the operator decides.
  uint64_t unrepairable = 0;
};
inline constexpr size_t kMaxVerifyDetails = 1000;
// With `repair` (a write transaction): counters set to the recomputed values, references to the
// counted ones, UIDNEXT/HIGHESTMODSEQ raised past what is used, missing kind-0 entries written and
// stale ones removed, orphan bodies, chunks, messages of unknown mailboxes, missing mailbox_ids
// entries and subscriptions of unknown users removed or restored. The whole store in one
// transaction: for a stopped store (storectl offline) or a quiet one.
OpResult<VerifyReport> verify_refcounts(common::lmdb::Txn&, const Dbs&, bool repair);
// Check only, in a read transaction.
OpResult<VerifyReport> verify_refcounts(const common::lmdb::Txn&, const Dbs&);

}  // namespace store::ops
