// command.hpp: the typed IMAP command model (RFC 9051 IMAP4rev2, the RFC 3501 IMAP4rev1 forms, and
// the extensions the mmp offers) that parser.hpp produces. Values only: no wire syntax is left in it.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <variant>
#include <vector>

namespace mmp::imap {

enum class Verb : uint8_t {
  Capability,
  Noop,
  Logout,
  StartTls,
  Authenticate,    // RFC 4959 SASL-IR: the initial response on the command line
  Login,
  Enable,          // RFC 5161
  Select,
  Examine,
  Create,
  Delete,
  Rename,
  Subscribe,
  Unsubscribe,
  List,            // RFC 5258 LIST-EXTENDED, RFC 5819 LIST-STATUS, RFC 6154 SPECIAL-USE
  Lsub,            // IMAP4rev1 only
  Namespace,       // RFC 2342
  Status,
  Append,          // RFC 3502 MULTIAPPEND, RFC 3516 BINARY literal8
  Idle,            // RFC 2177
  Check,           // IMAP4rev1 only
  Close,
  Unselect,        // RFC 3691
  Expunge,         // UID EXPUNGE: RFC 4315 UIDPLUS
  Search,          // RFC 4731 ESEARCH, RFC 5182 SEARCHRES, RFC 7162 MODSEQ, RFC 5032 WITHIN
  Fetch,           // RFC 3516 BINARY, RFC 7162 CHANGEDSINCE/VANISHED/MODSEQ
  Store,           // RFC 7162 UNCHANGEDSINCE
  Copy,
  Move,            // RFC 6851
  GetQuota,        // RFC 9208
  GetQuotaRoot,
  SetQuota,
  Id,              // RFC 2971
  Unauthenticate,  // RFC 8437
};
inline constexpr size_t kVerbCount = static_cast<size_t>(Verb::Unauthenticate) + 1;

// "CAPABILITY", "UID" not included (see Command::uid).
std::string_view verb_name(Verb verb);
// Case-insensitive (RFC 9051 §9: command names are case-insensitive).
std::optional<Verb> find_verb(std::string_view name);
// The verbs that may follow "UID" (RFC 9051 §6.4.9, RFC 6851, RFC 4315).
bool takes_uid(Verb verb);

enum class Condition : uint8_t { Ok, No, Bad, Bye, Preauth };
std::string_view condition_name(Condition c);  // "OK", "NO", ...

// ---- sequence sets (RFC 9051 §9 sequence-set, RFC 5182 "$") ----

// An inclusive range, first <= last.
struct SeqRange {
  uint32_t first = 0;
  uint32_t last = 0;
  friend bool operator==(const SeqRange&, const SeqRange&) = default;
};

// Message sequence numbers or UIDs, as the client wrote them, in a compact form: the numeric
// ranges sorted and merged, and every range with "*" folded into one star interval. "n:*" means
// n up to the largest number in use, or that number up to n when n is larger (RFC 9051 §9: the
// order of the two ends does not matter), so all of them together are the interval
// [min(star_lo, largest), max(star_hi, largest)]; a lone "*" adds nothing but `star`.
struct SequenceSet {
  std::vector<SeqRange> ranges;
  bool star = false;
  uint32_t star_lo = UINT32_MAX;
  uint32_t star_hi = 0;
  bool saved = false;  // "$": the result of the last SEARCH ... RETURN (SAVE); nothing else then

  bool empty() const { return ranges.empty() && !star && !saved; }
  // The largest number named without "*" (0 when none).
  uint32_t max_number() const;
  friend bool operator==(const SequenceSet&, const SequenceSet&) = default;
};

// The set with "*" read as `largest` (the highest sequence number or UID in the mailbox), sorted
// and merged. With `largest` 0 (an empty mailbox) star ranges add nothing. `saved` is the
// caller's to substitute.
std::vector<SeqRange> resolve(const SequenceSet& set, uint32_t largest);

// ---- FETCH (RFC 9051 §6.4.5, RFC 3516 BINARY, RFC 7162) ----

// A message section; the numbering of `Text` is proto/mailstore.proto's Section.Text.
struct Section {
  enum class Text : uint8_t { Full = 0, Header = 1, Text = 2, Mime = 3, HeaderFields = 4, HeaderFieldsNot = 5 };
  std::vector<uint32_t> part;       // BODY[1.2...]; empty: the whole message
  Text text = Text::Full;
  std::vector<std::string> fields;  // HEADER.FIELDS (...) as the client wrote them
  friend bool operator==(const Section&, const Section&) = default;
};

struct Partial {
  uint64_t offset = 0;
  uint64_t length = 0;  // > 0
  friend bool operator==(const Partial&, const Partial&) = default;
};

// One BODY[...]/BINARY[...] item, or an IMAP4rev1 RFC822 item that is one in disguise.
struct BodySection {
  // The name the response item takes: BODY[...] (for BODY.PEEK too), BINARY[...], BINARY.SIZE[...],
  // and RFC822, RFC822.HEADER, RFC822.TEXT, which answer under their own names (RFC 3501 §6.4.5).
  enum class Item : uint8_t { Body, Binary, BinarySize, Rfc822, Rfc822Header, Rfc822Text };
  Item item = Item::Body;
  Section section;
  bool peek = false;  // leaves \Seen alone: BODY.PEEK, BINARY.PEEK, BINARY.SIZE, RFC822.HEADER
  std::optional<Partial> partial;
  friend bool operator==(const BodySection&, const BodySection&) = default;
};

struct FetchArgs {
  SequenceSet set;
  // ALL, FAST and FULL are expanded into these (RFC 9051 §6.4.5).
  bool flags = false;
  bool internal_date = false;
  bool size = false;           // RFC822.SIZE
  bool envelope = false;
  bool body = false;           // BODY (the structure without extension data)
  bool bodystructure = false;
  bool uid = false;            // always answered for UID FETCH (RFC 9051 §6.4.9)
  bool modseq = false;         // RFC 7162 MODSEQ (also implied by CHANGEDSINCE)
  std::vector<BodySection> sections;
  std::optional<uint64_t> changed_since;  // RFC 7162 CHANGEDSINCE (0 allowed)
  bool vanished = false;                  // RFC 7162 §3.2.6 VANISHED: UID FETCH with CHANGEDSINCE only
  friend bool operator==(const FetchArgs&, const FetchArgs&) = default;
};

// ---- STORE ----

struct StoreArgs {
  enum class Mode : uint8_t { Replace = 0, Add = 1, Remove = 2 };  // proto StoreFlagsRequest.Mode
  SequenceSet set;
  Mode mode = Mode::Replace;
  bool silent = false;
  std::vector<std::string> flags;  // as written: "\Seen", "$Junk"; "\Recent" is the session's to refuse
  std::optional<uint64_t> unchanged_since;  // RFC 7162 UNCHANGEDSINCE
  friend bool operator==(const StoreArgs&, const StoreArgs&) = default;
};

// ---- SEARCH ----

// Values 0..35 are store::search::Kind and proto SearchKey.Kind, so the translation is a cast; the
// rest name keys that only the mmp can resolve (sequence numbers, \Recent, the saved result).
enum class SearchKind : int32_t {
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
  Keyword = 14,
  Unkeyword = 15,
  Bcc = 16,
  Cc = 17,
  From = 18,
  To = 19,
  Subject = 20,
  Header = 21,  // field, text
  Body = 22,
  Text = 23,
  Before = 24,  // day
  On = 25,
  Since = 26,
  SentBefore = 27,
  SentOn = 28,
  SentSince = 29,
  Larger = 30,  // number
  Smaller = 31,
  Uid = 32,     // set (UIDs; `saved` for "UID $")
  ModSeq = 33,  // number; modseq_entry/modseq_type when given (RFC 7162 §3.1.5)
  Older = 34,   // number (seconds), RFC 5032
  Younger = 35,
  // mmp-only:
  Sequence = 100,  // set (message sequence numbers; `saved` for a bare "$")
  Recent = 101,    // IMAP4rev1 \Recent; NEW is RECENT UNSEEN, OLD is NOT RECENT: sent as such
};

struct SearchKey {
  SearchKind kind = SearchKind::All;
  std::string field;  // HEADER's field name
  std::string text;   // string keys (bytes in the command's CHARSET), KEYWORD's keyword
  uint64_t number = 0;
  int32_t day = 0;    // date keys: days since 1970-01-01
  SequenceSet set;    // UID, Sequence
  uint32_t operands = 0;  // AND
  std::string modseq_entry;  // e.g. "/flags/\draft"
  std::string modseq_type;   // "priv", "shared" or "all"
  friend bool operator==(const SearchKey&, const SearchKey&) = default;
};

struct SearchArgs {
  // RFC 4731 ESEARCH: RETURN given (RETURN () means ALL); the answer is then an ESEARCH response.
  bool esearch = false;
  bool ret_min = false;
  bool ret_max = false;
  bool ret_all = false;
  bool ret_count = false;
  bool ret_save = false;  // RFC 5182 SEARCHRES
  std::optional<std::string> charset;  // as written; the session answers NO [BADCHARSET] for ones it lacks
  // Prefix (Polish) order like the store's program: several top-level keys, and the keys of a
  // parenthesised list, become one AND with that many operands; "(key)" is just the key. Flat, so
  // nothing recurses over a client's nesting after the parser (which bounds it).
  std::vector<SearchKey> program;
  friend bool operator==(const SearchArgs&, const SearchArgs&) = default;
};

// ---- mailboxes ----

// Mailbox names are the astring bytes as sent: modified UTF-7 or UTF-8 by the client's mode, to be
// read with mailbox_from_wire() (mutf7.hpp), which is also where "INBOX" loses its case.

struct MailboxArgs {  // DELETE, SUBSCRIBE, UNSUBSCRIBE, GETQUOTAROOT
  std::string mailbox;
  friend bool operator==(const MailboxArgs&, const MailboxArgs&) = default;
};

struct QresyncParams {  // RFC 7162 §3.2.5
  uint32_t uidvalidity = 0;
  uint64_t modseq = 0;
  std::optional<SequenceSet> known_uids;      // never "*" or "$"
  std::optional<SequenceSet> known_seqs;      // seq-match-data: sequence numbers ...
  std::optional<SequenceSet> known_seq_uids;  // ... and their UIDs, as many
  friend bool operator==(const QresyncParams&, const QresyncParams&) = default;
};

struct SelectArgs {  // SELECT, EXAMINE
  std::string mailbox;
  bool condstore = false;
  std::optional<QresyncParams> qresync;
  friend bool operator==(const SelectArgs&, const SelectArgs&) = default;
};

struct CreateArgs {
  std::string mailbox;
  std::vector<std::string> special_use;  // RFC 6154 USE (...): "\Sent" ...; unknown ones the session refuses with NO [USEATTR]
  friend bool operator==(const CreateArgs&, const CreateArgs&) = default;
};

struct RenameArgs {
  std::string from;
  std::string to;
  friend bool operator==(const RenameArgs&, const RenameArgs&) = default;
};

enum class StatusItem : uint8_t {
  Messages,
  Recent,         // IMAP4rev1
  UidNext,
  UidValidity,
  Unseen,
  Deleted,
  Size,
  HighestModSeq,  // RFC 7162
  AppendLimit,    // RFC 7889
};
std::string_view status_item_name(StatusItem item);

struct StatusArgs {
  std::string mailbox;
  std::vector<StatusItem> items;  // in the order asked, without repeats
  friend bool operator==(const StatusArgs&, const StatusArgs&) = default;
};

struct ListArgs {  // LIST; LSUB fills reference and one pattern only
  std::string reference;
  std::vector<std::string> patterns;  // several only in the RFC 5258 "(p1 p2)" form
  // The RFC 5258 extended form was used (selection options, a pattern list, or RETURN): the
  // session then answers with the extended items (CHILDINFO) where they apply.
  bool extended = false;
  bool select_subscribed = false;
  bool select_remote = false;
  bool select_recursive = false;     // RECURSIVEMATCH (never alone: refused by the parser)
  bool select_special_use = false;   // RFC 6154
  bool return_subscribed = false;
  bool return_children = false;
  bool return_special_use = false;
  std::vector<StatusItem> return_status;  // RFC 5819 RETURN (STATUS (...))
  friend bool operator==(const ListArgs&, const ListArgs&) = default;
};

// ---- the others ----

struct AuthenticateArgs {
  std::string mechanism;  // as written (compare case-insensitively)
  // RFC 4959: the base64 text of the initial response ("=" is an empty one: ""), not yet decoded.
  std::optional<std::string> initial_response;
  friend bool operator==(const AuthenticateArgs&, const AuthenticateArgs&) = default;
};

struct LoginArgs {
  std::string user;
  std::string password;
  friend bool operator==(const LoginArgs&, const LoginArgs&) = default;
};

struct EnableArgs {
  std::vector<std::string> capabilities;  // as written
  friend bool operator==(const EnableArgs&, const EnableArgs&) = default;
};

struct CopyArgs {  // COPY, MOVE
  SequenceSet set;
  std::string mailbox;
  friend bool operator==(const CopyArgs&, const CopyArgs&) = default;
};

struct ExpungeArgs {  // UID EXPUNGE has the set (RFC 4315 §2.1); EXPUNGE has none
  std::optional<SequenceSet> uids;
  friend bool operator==(const ExpungeArgs&, const ExpungeArgs&) = default;
};

struct QuotaRootArgs {  // GETQUOTA
  std::string root;
  friend bool operator==(const QuotaRootArgs&, const QuotaRootArgs&) = default;
};

struct SetQuotaArgs {
  std::string root;
  std::vector<std::pair<std::string, uint64_t>> limits;  // resource name as written, limit
  friend bool operator==(const SetQuotaArgs&, const SetQuotaArgs&) = default;
};

struct IdArgs {
  // RFC 2971: NIL, or field/value pairs (at most 30; fields up to 30 octets, values 1024).
  std::vector<std::pair<std::string, std::optional<std::string>>> params;
  friend bool operator==(const IdArgs&, const IdArgs&) = default;
};

// One message of an APPEND (RFC 3502 allows several). Its bytes are not here: they stream through
// the parser's AppendStart/AppendData events, so a large message is never held whole.
struct AppendMessage {
  std::vector<std::string> flags;
  std::optional<int64_t> internal_date;  // unix seconds; none: the server's time
  uint64_t size = 0;
  bool binary = false;                   // literal8 "~{n}" (RFC 3516 §4.4): NUL bytes allowed
  friend bool operator==(const AppendMessage&, const AppendMessage&) = default;
};

struct AppendArgs {
  std::string mailbox;
  std::vector<AppendMessage> messages;  // in order; each was announced by an AppendStart
  friend bool operator==(const AppendArgs&, const AppendArgs&) = default;
};

using Arguments = std::variant<std::monostate, AuthenticateArgs, LoginArgs, EnableArgs, SelectArgs, CreateArgs,
                               MailboxArgs, RenameArgs, ListArgs, StatusArgs, AppendArgs, ExpungeArgs, SearchArgs,
                               FetchArgs, StoreArgs, CopyArgs, QuotaRootArgs, SetQuotaArgs, IdArgs>;

struct Command {
  std::string tag;
  Verb verb = Verb::Noop;
  bool uid = false;  // "UID FETCH" ...: sets are UIDs and FETCH answers UID
  Arguments args;
  friend bool operator==(const Command&, const Command&) = default;
};

}  // namespace mmp::imap
