// grammar.cpp: the argument grammar of RFC 9051 §9 (with the RFC 3501 forms and the extensions'
// ABNF: RFC 4466, 4731, 5032, 5182, 5258, 5819, 6154, 6851, 7162, 2971, 9208, 3516, 3502, 4959).
// Recursion only where the grammar nests (SEARCH keys, lists), always under max_depth.
#include "mmp/imap/grammar.hpp"

#include <algorithm>
#include <cstring>

#include "common/ascii.hpp"
#include "common/text/utf8.hpp"

namespace mmp::imap::detail {

namespace {

using common::ascii::iequals;

constexpr bool is_digit(char c) { return c >= '0' && c <= '9'; }

// RFC 9051 §9 ATOM-CHAR: any CHAR except atom-specials ( ) { SP CTL % * " \ ]
constexpr bool atom_char(char ch) {
  const auto c = static_cast<unsigned char>(ch);
  if (c <= 0x20 || c >= 0x7f) return false;
  switch (c) {
    case '(': case ')': case '{': case '%': case '*': case '"': case '\\': case ']':
      return false;
    default:
      return true;
  }
}
constexpr bool astring_char(char c) { return atom_char(c) || c == ']'; }
constexpr bool tag_char(char c) { return astring_char(c) && c != '+'; }
constexpr bool list_char(char c) { return atom_char(c) || c == '%' || c == '*' || c == ']'; }
// RFC 5322 §3.6.8 ftext: a header field name.
constexpr bool ftext(char ch) {
  const auto c = static_cast<unsigned char>(ch);
  return c >= 33 && c <= 126 && c != ':';
}

constexpr uint64_t kMaxModSeq = (uint64_t{1} << 63) - 1;  // RFC 7162 §7: 63-bit

// Days from 1970-01-01 to y-m-d (proleptic Gregorian), Howard Hinnant's days_from_civil.
int64_t days_from_civil(int64_t y, unsigned m, unsigned d) {
  y -= m <= 2;
  const int64_t era = (y >= 0 ? y : y - 399) / 400;
  const auto yoe = static_cast<unsigned>(y - era * 400);
  const unsigned doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
  const unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
  return era * 146097 + static_cast<int64_t>(doe) - 719468;
}

unsigned days_in_month(int64_t y, unsigned m) {
  static constexpr unsigned kDays[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
  const bool leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
  return m == 2 && leap ? 29 : kDays[m - 1];
}

// "Jan".."Dec", case-insensitive (ABNF strings are): 1..12, or 0.
unsigned month_number(std::string_view s) {
  static constexpr std::string_view kMonths[] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                                 "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
  for (unsigned i = 0; i < 12; ++i) {
    if (iequals(kMonths[i], s)) return i + 1;
  }
  return 0;
}

bool parse_digits(std::string_view s, unsigned& out) {
  if (s.empty()) return false;
  out = 0;
  for (char c : s) {
    if (!is_digit(c)) return false;
    out = out * 10 + static_cast<unsigned>(c - '0');
  }
  return true;
}

// date-text = date-day "-" date-month "-" date-year (RFC 9051 §9), as days since 1970-01-01.
std::optional<int32_t> parse_date_text(std::string_view s) {
  const size_t d1 = s.find('-');
  if (d1 == std::string_view::npos || d1 < 1 || d1 > 2) return std::nullopt;
  const std::string_view rest = s.substr(d1 + 1);
  if (rest.size() != 8 || rest[3] != '-') return std::nullopt;
  unsigned day, year;
  const unsigned month = month_number(rest.substr(0, 3));
  if (!parse_digits(s.substr(0, d1), day) || month == 0 || !parse_digits(rest.substr(4), year)) return std::nullopt;
  if (day < 1 || day > days_in_month(year, month)) return std::nullopt;
  return static_cast<int32_t>(days_from_civil(year, month, day));
}

// date-time = DQUOTE date-day-fixed "-" date-month "-" date-year SP time SP zone DQUOTE, the
// inside of the quotes; date-day-fixed is (SP DIGIT) / 2DIGIT, and one digit alone is taken too.
std::optional<int64_t> parse_date_time(std::string_view s) {
  if (!s.empty() && s[0] == ' ') s.remove_prefix(1);
  const size_t sp1 = s.find(' ');
  if (sp1 == std::string_view::npos) return std::nullopt;
  const auto day = parse_date_text(s.substr(0, sp1));
  if (!day) return std::nullopt;
  const std::string_view rest = s.substr(sp1 + 1);
  // hh:mm:ss SP (+|-)hhmm
  if (rest.size() != 14 || rest[2] != ':' || rest[5] != ':' || rest[8] != ' ' || (rest[9] != '+' && rest[9] != '-')) {
    return std::nullopt;
  }
  unsigned h, m, sec, zh, zm;
  if (!parse_digits(rest.substr(0, 2), h) || !parse_digits(rest.substr(3, 2), m) ||
      !parse_digits(rest.substr(6, 2), sec) || !parse_digits(rest.substr(10, 2), zh) ||
      !parse_digits(rest.substr(12, 2), zm)) {
    return std::nullopt;
  }
  if (h > 23 || m > 59 || sec > 60 || zm > 59) return std::nullopt;
  const int64_t zone = (static_cast<int64_t>(zh) * 60 + zm) * 60 * (rest[9] == '-' ? -1 : 1);
  return int64_t{*day} * 86400 + h * 3600 + m * 60 + sec - zone;
}

bool valid_base64(std::string_view s) {
  if (s.size() % 4 != 0) return false;
  size_t pad = 0;
  for (size_t i = 0; i < s.size(); ++i) {
    const char c = s[i];
    if (c == '=') {
      ++pad;
      continue;
    }
    if (pad > 0) return false;  // data after padding
    if (!(common::ascii::is_alnum(c) || c == '+' || c == '/')) return false;
  }
  return pad <= 2;
}

// The cursor over one command. Every method that fails records the first refusal and returns
// false, so a parse reads as a chain of `&&`.
class Reader {
 public:
  Reader(std::string_view buf, std::span<const LiteralMark> marks, const ParserLimits& limits)
      : buf_(buf), marks_(marks), limits_(limits) {}

  size_t pos() const { return pos_; }
  void seek(size_t p) { pos_ = p; }
  bool at_end() const { return pos_ >= buf_.size(); }
  // Tokens never run into a literal's announcement: what follows it is the literal's bytes.
  size_t limit() const { return mark_ < marks_.size() ? marks_[mark_].announce : buf_.size(); }
  char peek(size_t ahead = 0) const { return pos_ + ahead < limit() ? buf_[pos_ + ahead] : '\0'; }
  bool at_literal() const { return mark_ < marks_.size() && pos_ == marks_[mark_].announce; }

  bool fail(std::string text, std::string code = {}) {
    if (error_.empty()) {
      error_ = std::move(text);
      code_ = std::move(code);
    }
    return false;
  }
  const std::string& error() const { return error_; }
  const std::string& code() const { return code_; }

  bool consume(char c) {
    if (peek() != c) return false;
    ++pos_;
    return true;
  }
  bool expect(char c, const char* what) { return consume(c) || fail(std::string("expected ") + what); }
  bool sp() {
    if (consume(' ')) return true;
    if (at_end()) return fail("missing arguments");
    if (static_cast<unsigned char>(peek()) >= 0x80) return fail("8-bit characters need a quoted string or a literal");
    return fail("expected a space");
  }

  // An element of the command (a string, a flag, a key ...): bounded so one command cannot make
  // the parser allocate without limit.
  bool element() {
    if (++elements_ > limits_.max_elements) return fail("too many items in one command", "LIMIT");
    return true;
  }
  bool add_ranges(size_t n) {
    ranges_ += n;
    if (ranges_ > limits_.max_ranges) return fail("too many ranges in sequence sets", "LIMIT");
    return true;
  }
  bool enter() {
    if (++depth_ > limits_.max_depth) return fail("lists nested too deeply", "LIMIT");
    return true;
  }
  void leave() { --depth_; }
  size_t depth() const { return depth_; }

  // The run of characters `pred` accepts, unconsumed.
  template <class Pred>
  std::string_view scan(Pred pred) const {
    size_t e = pos_;
    const size_t lim = limit();
    while (e < lim && pred(buf_[e])) ++e;
    return buf_.substr(pos_, e - pos_);
  }
  std::string_view take(size_t n) {
    auto s = buf_.substr(pos_, n);
    pos_ += n;
    return s;
  }

  bool atom(std::string_view& out, const char* what = "an atom") {
    out = scan(atom_char);
    if (out.empty()) return fail_token(what);
    pos_ += out.size();
    return true;
  }
  // The next atom is `word` (case-insensitive) and ends there: consumed.
  bool keyword(std::string_view word) {
    auto a = scan(atom_char);
    if (!iequals(a, word)) return false;
    pos_ += a.size();
    return true;
  }

  bool number32(uint32_t& out, bool nonzero, const char* what) {
    uint64_t v;
    if (!number(v, UINT32_MAX, what)) return false;
    if (nonzero && v == 0) return fail(std::string(what) + " must not be 0");
    out = static_cast<uint32_t>(v);
    return true;
  }
  bool number(uint64_t& out, uint64_t max, const char* what) {
    auto digits = scan(is_digit);
    if (digits.empty()) return fail(std::string("expected ") + what);
    uint64_t v = 0;
    for (char c : digits) {
      const auto d = static_cast<uint64_t>(c - '0');
      if (v > (max - d) / 10) return fail(std::string(what) + " out of range");
      v = v * 10 + d;
    }
    pos_ += digits.size();
    out = v;
    return true;
  }

  bool quoted(std::string& out) {
    if (!consume('"')) return fail("expected a quoted string");
    out.clear();
    const size_t lim = limit();
    while (true) {
      if (pos_ >= lim) return fail("unterminated quoted string");
      const char c = buf_[pos_];
      if (c == '"') {
        ++pos_;
        return element();
      }
      if (c == '\\') {
        // RFC 9051 §4.3: only the quoted-specials may be escaped.
        if (pos_ + 1 >= lim || (buf_[pos_ + 1] != '"' && buf_[pos_ + 1] != '\\')) {
          return fail("bad escape in a quoted string");
        }
        out += buf_[pos_ + 1];
        pos_ += 2;
        continue;
      }
      const auto u = static_cast<unsigned char>(c);
      if (u == 0 || c == '\r' || c == '\n') return fail("control character in a quoted string");
      if (u >= 0x80) {
        // RFC 9051 QUOTED-CHAR: 8-bit only as UTF-8 (8-bit data in other charsets needs a literal).
        uint32_t cp;
        const size_t n = common::text::decode_utf8(buf_.substr(pos_, lim - pos_), cp);
        if (n == 0) return fail("a quoted string that is not UTF-8: send 8-bit data as a literal");
        out.append(buf_.substr(pos_, n));
        pos_ += n;
        continue;
      }
      out += c;
      ++pos_;
    }
  }

  bool literal(std::string& out) {
    if (!at_literal()) return fail("expected a literal");
    const LiteralMark& m = marks_[mark_];
    const std::string_view data = buf_.substr(m.data, m.size);
    // RFC 9051 §4.3: literal = ... *CHAR8, CHAR8 excludes NUL (only literal8 carries it).
    if (data.find('\0') != std::string_view::npos) return fail("NUL in a literal");
    out.assign(data);
    pos_ = m.data + m.size;
    ++mark_;
    return element();
  }

  bool string(std::string& out) {
    if (at_literal()) return literal(out);
    if (peek() == '"') return quoted(out);
    return fail("expected a string");
  }

  bool astring(std::string& out, const char* what = "a string") {
    if (at_literal()) return literal(out);
    if (peek() == '"') return quoted(out);
    auto a = scan(astring_char);
    if (a.empty()) return fail_token(what);
    out.assign(a);
    pos_ += a.size();
    return element();
  }

  bool nstring(std::optional<std::string>& out) {
    if (!at_literal() && peek() != '"') {
      if (keyword("NIL")) {
        out.reset();
        return element();
      }
      return fail("expected a string or NIL");
    }
    out.emplace();
    return string(*out);
  }

  // list-mailbox = 1*list-char / string
  bool list_mailbox(std::string& out) {
    if (at_literal()) return literal(out);
    if (peek() == '"') return quoted(out);
    auto a = scan(list_char);
    if (a.empty()) return fail_token("a mailbox pattern");
    out.assign(a);
    pos_ += a.size();
    return element();
  }

  // flag = "\" atom / atom (RFC 9051 flag, flag-keyword, flag-extension)
  bool flag(std::string& out) {
    const bool system = consume('\\');
    auto a = scan(atom_char);
    if (a.empty()) return fail_token("a flag");
    out.assign(system ? "\\" : "");
    out.append(a);
    pos_ += a.size();
    return element();
  }
  bool flag_list(std::vector<std::string>& out) {
    if (!consume('(')) return fail("expected a flag list");
    if (consume(')')) return true;
    while (true) {
      std::string f;
      if (!flag(f)) return false;
      out.push_back(std::move(f));
      if (consume(')')) return true;
      if (!sp()) return false;
    }
  }

  bool sequence_set(SequenceSet& out, bool allow_star = true, bool allow_saved = true) {
    out = SequenceSet{};
    if (peek() == '$') {
      if (!allow_saved) return fail("'$' is not allowed here");
      ++pos_;
      out.saved = true;
      return add_ranges(1);
    }
    std::vector<SeqRange> numeric;
    while (true) {
      uint32_t a = 0, b = 0;
      bool a_star = false, b_star = false;
      if (!seq_number(a, a_star, allow_star)) return false;
      bool range = false;
      if (consume(':')) {
        range = true;
        if (!seq_number(b, b_star, allow_star)) return false;
      }
      if (!add_ranges(1)) return false;
      if (!range) {
        b = a;
        b_star = a_star;
      }
      if (a_star && b_star) {
        out.star = true;
      } else if (a_star || b_star) {
        const uint32_t n = a_star ? b : a;
        out.star = true;
        out.star_lo = std::min(out.star_lo, n);
        out.star_hi = std::max(out.star_hi, n);
      } else {
        numeric.push_back({std::min(a, b), std::max(a, b)});
      }
      if (!consume(',')) break;
    }
    std::sort(numeric.begin(), numeric.end(), [](const SeqRange& x, const SeqRange& y) { return x.first < y.first; });
    for (const auto& r : numeric) {
      if (!out.ranges.empty() && r.first <= out.ranges.back().last + uint64_t{1}) {
        out.ranges.back().last = std::max(out.ranges.back().last, r.last);
      } else {
        out.ranges.push_back(r);
      }
    }
    out.ranges.shrink_to_fit();
    return true;
  }

  bool mod_sequence(uint64_t& out, bool zero_ok) {
    if (!number(out, kMaxModSeq, "a mod-sequence")) return false;
    if (!zero_ok && out == 0) return fail("a mod-sequence must not be 0");
    return true;
  }

  bool date(int32_t& out) {
    std::string text;
    if (peek() == '"') {
      if (!quoted(text)) return false;
    } else {
      auto a = scan(atom_char);
      text.assign(a);
      pos_ += a.size();
    }
    auto d = parse_date_text(text);
    if (!d) return fail("expected a date (d-Mon-yyyy)");
    out = *d;
    return true;
  }

  bool all_read() const { return at_end() && mark_ == marks_.size(); }

 private:
  bool seq_number(uint32_t& n, bool& star, bool allow_star) {
    if (consume('*')) {
      if (!allow_star) return fail("'*' is not allowed here");
      star = true;
      return true;
    }
    if (!is_digit(peek())) return fail("expected a sequence set");
    return number32(n, true, "a sequence number or UID");
  }

  bool fail_token(const char* what) {
    if (at_literal()) return fail(std::string("a literal is not allowed here (expected ") + what + ")");
    const auto c = static_cast<unsigned char>(peek());
    if (c >= 0x80) return fail(std::string("8-bit characters need a quoted string or a literal (expected ") + what + ")");
    if (at_end()) return fail(std::string("missing arguments (expected ") + what + ")");
    return fail(std::string("expected ") + what + ", found " + common::ascii::describe_byte(static_cast<char>(c)));
  }

  std::string_view buf_;
  std::span<const LiteralMark> marks_;
  const ParserLimits& limits_;
  size_t pos_ = 0;
  size_t mark_ = 0;
  size_t elements_ = 0;
  size_t ranges_ = 0;
  size_t depth_ = 0;
  std::string error_;
  std::string code_;
};

// ---- per command ----

bool mailbox(Reader& r, std::string& out) { return r.astring(out, "a mailbox name"); }

bool status_item(Reader& r, std::vector<StatusItem>& items) {
  std::string_view a;
  if (!r.atom(a, "a status item")) return false;
  static constexpr StatusItem kItems[] = {StatusItem::Messages, StatusItem::Recent,        StatusItem::UidNext,
                                          StatusItem::UidValidity, StatusItem::Unseen,    StatusItem::Deleted,
                                          StatusItem::Size,     StatusItem::HighestModSeq, StatusItem::AppendLimit};
  for (StatusItem item : kItems) {
    if (iequals(a, status_item_name(item))) {
      if (std::find(items.begin(), items.end(), item) == items.end()) items.push_back(item);
      return r.element();
    }
  }
  return r.fail("unknown status item");
}

bool status_list(Reader& r, std::vector<StatusItem>& items) {
  if (!r.expect('(', "'(' before the status items")) return false;
  while (true) {
    if (!status_item(r, items)) return false;
    if (r.consume(')')) return true;
    if (!r.sp()) return false;
  }
}

bool authenticate(Reader& r, AuthenticateArgs& a) {
  std::string_view mech;
  if (!r.sp() || !r.atom(mech, "a SASL mechanism")) return false;
  a.mechanism.assign(mech);
  if (r.at_end()) return true;
  std::string_view ir;
  if (!r.sp() || !r.atom(ir, "an initial response")) return false;
  if (ir == "=") {
    a.initial_response.emplace();  // RFC 4959 §3: "=" is an empty initial response
  } else if (valid_base64(ir)) {
    a.initial_response.emplace(ir);
  } else {
    return r.fail("the initial response is not base64");
  }
  return true;
}

bool login(Reader& r, LoginArgs& a) {
  return r.sp() && r.astring(a.user, "a user name") && r.sp() && r.astring(a.password, "a password");
}

bool enable(Reader& r, EnableArgs& a) {
  if (r.at_end()) return r.fail("ENABLE needs a capability");
  while (!r.at_end()) {
    std::string_view cap;
    if (!r.sp() || !r.atom(cap, "a capability") || !r.element()) return false;
    a.capabilities.emplace_back(cap);
  }
  return true;
}

bool seq_match(Reader& r, QresyncParams& q) {
  // seq-match-data = "(" known-sequence-set SP known-uid-set ")"
  q.known_seqs.emplace();
  q.known_seq_uids.emplace();
  if (!r.expect('(', "'(' before the sequence match data") || !r.enter() ||
      !r.sequence_set(*q.known_seqs, false, false) || !r.sp() || !r.sequence_set(*q.known_seq_uids, false, false) ||
      !r.expect(')', "')' after the sequence match data")) {
    return false;
  }
  r.leave();
  return true;
}

bool qresync(Reader& r, QresyncParams& q) {
  // RFC 7162 §3.2.5: QRESYNC SP "(" uidvalidity SP mod-sequence-value [SP known-uids]
  // [SP seq-match-data] ")"; known-uids never hold "*".
  if (!r.sp() || !r.expect('(', "'(' after QRESYNC") || !r.enter()) return false;
  if (!r.number32(q.uidvalidity, true, "a UIDVALIDITY") || !r.sp() || !r.mod_sequence(q.modseq, false)) return false;
  if (r.consume(' ')) {
    if (r.peek() == '(') {
      if (!seq_match(r, q)) return false;
    } else {
      q.known_uids.emplace();
      if (!r.sequence_set(*q.known_uids, false, false)) return false;
      if (r.consume(' ') && !seq_match(r, q)) return false;
    }
  }
  r.leave();
  return r.expect(')', "')' after the QRESYNC parameters");
}

bool select(Reader& r, SelectArgs& a) {
  if (!r.sp() || !mailbox(r, a.mailbox)) return false;
  if (r.at_end()) return true;
  // RFC 4466 §2.4 select-params, RFC 7162 §3.1.8 CONDSTORE, §3.2.5 QRESYNC
  if (!r.sp() || !r.expect('(', "'(' before the SELECT parameters") || !r.enter()) return false;
  while (true) {
    if (r.keyword("CONDSTORE")) {
      if (a.condstore) return r.fail("CONDSTORE given twice");
      a.condstore = true;
    } else if (r.keyword("QRESYNC")) {
      if (a.qresync) return r.fail("QRESYNC given twice");
      a.qresync.emplace();
      if (!qresync(r, *a.qresync)) return false;
    } else {
      return r.fail("unknown SELECT parameter");
    }
    if (r.consume(')')) break;
    if (!r.sp()) return false;
  }
  r.leave();
  return true;
}

bool create(Reader& r, CreateArgs& a) {
  if (!r.sp() || !mailbox(r, a.mailbox)) return false;
  if (r.at_end()) return true;
  // RFC 6154 §3: create-param = "USE" SP "(" [use-attr *(SP use-attr)] ")"
  if (!r.sp() || !r.expect('(', "'(' before the CREATE parameters") || !r.enter()) return false;
  bool seen = false;
  while (true) {
    if (!r.keyword("USE")) return r.fail("unknown CREATE parameter");
    if (seen) return r.fail("USE given twice");
    seen = true;
    if (!r.sp() || !r.expect('(', "'(' after USE")) return false;
    if (!r.consume(')')) {
      while (true) {
        std::string f;
        if (r.peek() != '\\') return r.fail("a special-use attribute starts with '\\'");
        if (!r.flag(f)) return false;
        a.special_use.push_back(std::move(f));
        if (r.consume(')')) break;
        if (!r.sp()) return false;
      }
    }
    if (r.consume(')')) break;
    if (!r.sp()) return false;
  }
  r.leave();
  return true;
}

bool one_mailbox(Reader& r, MailboxArgs& a) { return r.sp() && mailbox(r, a.mailbox); }

bool rename(Reader& r, RenameArgs& a) { return r.sp() && mailbox(r, a.from) && r.sp() && mailbox(r, a.to); }

bool list(Reader& r, ListArgs& a) {
  if (!r.sp()) return false;
  if (r.consume('(')) {
    // RFC 5258 §6 list-select-opts
    a.extended = true;
    if (!r.enter()) return false;
    if (!r.consume(')')) {
      while (true) {
        if (r.keyword("SUBSCRIBED")) {
          a.select_subscribed = true;
        } else if (r.keyword("REMOTE")) {
          a.select_remote = true;
        } else if (r.keyword("RECURSIVEMATCH")) {
          a.select_recursive = true;
        } else if (r.keyword("SPECIAL-USE")) {
          a.select_special_use = true;
        } else {
          return r.fail("unknown LIST selection option");
        }
        if (!r.element()) return false;
        if (r.consume(')')) break;
        if (!r.sp()) return false;
      }
    }
    r.leave();
    // RFC 5258 §3.1: RECURSIVEMATCH only modifies another selection option.
    if (a.select_recursive && !a.select_subscribed && !a.select_special_use) {
      return r.fail("RECURSIVEMATCH needs another selection option");
    }
    if (!r.sp()) return false;
  }
  if (!mailbox(r, a.reference) || !r.sp()) return false;
  if (r.consume('(')) {
    a.extended = true;
    if (!r.enter()) return false;
    while (true) {
      std::string p;
      if (!r.list_mailbox(p)) return false;
      a.patterns.push_back(std::move(p));
      if (r.consume(')')) break;
      if (!r.sp()) return false;
    }
    r.leave();
  } else {
    std::string p;
    if (!r.list_mailbox(p)) return false;
    a.patterns.push_back(std::move(p));
  }
  if (r.at_end()) return true;
  if (!r.sp() || !r.keyword("RETURN")) return r.fail("expected RETURN after the LIST patterns");
  a.extended = true;
  if (!r.sp() || !r.expect('(', "'(' after RETURN") || !r.enter()) return false;
  if (!r.consume(')')) {
    while (true) {
      if (r.keyword("SUBSCRIBED")) {
        a.return_subscribed = true;
      } else if (r.keyword("CHILDREN")) {
        a.return_children = true;
      } else if (r.keyword("SPECIAL-USE")) {
        a.return_special_use = true;
      } else if (r.keyword("STATUS")) {
        if (!a.return_status.empty()) return r.fail("STATUS given twice");
        if (!r.sp() || !status_list(r, a.return_status)) return false;
      } else {
        return r.fail("unknown LIST return option");
      }
      if (!r.element()) return false;
      if (r.consume(')')) break;
      if (!r.sp()) return false;
    }
  }
  r.leave();
  return true;
}

bool lsub(Reader& r, ListArgs& a) {
  std::string p;
  if (!r.sp() || !mailbox(r, a.reference) || !r.sp() || !r.list_mailbox(p)) return false;
  a.patterns.push_back(std::move(p));
  return true;
}

bool status(Reader& r, StatusArgs& a) { return r.sp() && mailbox(r, a.mailbox) && r.sp() && status_list(r, a.items); }

// ---- SEARCH ----

const struct {
  std::string_view name;
  SearchKind kind;
} kSimpleKeys[] = {
    {"ALL", SearchKind::All},           {"ANSWERED", SearchKind::Answered},     {"DELETED", SearchKind::Deleted},
    {"DRAFT", SearchKind::Draft},       {"FLAGGED", SearchKind::Flagged},       {"SEEN", SearchKind::Seen},
    {"UNANSWERED", SearchKind::Unanswered}, {"UNDELETED", SearchKind::Undeleted}, {"UNDRAFT", SearchKind::Undraft},
    {"UNFLAGGED", SearchKind::Unflagged}, {"UNSEEN", SearchKind::Unseen},      {"RECENT", SearchKind::Recent},
};
const struct {
  std::string_view name;
  SearchKind kind;
} kStringKeys[] = {
    {"BCC", SearchKind::Bcc},   {"CC", SearchKind::Cc},         {"FROM", SearchKind::From}, {"TO", SearchKind::To},
    {"SUBJECT", SearchKind::Subject}, {"BODY", SearchKind::Body}, {"TEXT", SearchKind::Text},
};
const struct {
  std::string_view name;
  SearchKind kind;
} kDateKeys[] = {
    {"BEFORE", SearchKind::Before},         {"ON", SearchKind::On},         {"SINCE", SearchKind::Since},
    {"SENTBEFORE", SearchKind::SentBefore}, {"SENTON", SearchKind::SentOn}, {"SENTSINCE", SearchKind::SentSince},
};

class SearchParser {
 public:
  SearchParser(Reader& r, std::vector<SearchKey>& program, const ParserLimits& limits)
      : r_(r), program_(program), limits_(limits) {}

  bool key(size_t depth) {
    // `depth` counts the enclosing lists, NOTs and ORs: what this recursion follows.
    if (depth > limits_.max_depth) return r_.fail("SEARCH nests deeper than " + std::to_string(limits_.max_depth) + " levels", "LIMIT");
    if (program_.size() >= limits_.max_search_keys) {
      return r_.fail("SEARCH has more than " + std::to_string(limits_.max_search_keys) + " keys", "LIMIT");
    }
    if (!r_.element()) return false;
    if (r_.consume('(')) {
      const size_t at = program_.size();
      program_.push_back(SearchKey{SearchKind::And});
      uint32_t n = 0;
      while (true) {
        if (!key(depth + 1)) return false;
        ++n;
        if (r_.consume(')')) break;
        if (!r_.sp()) return false;
      }
      if (n == 1) {
        program_.erase(program_.begin() + static_cast<std::ptrdiff_t>(at));
      } else {
        program_[at].operands = n;
      }
      return true;
    }
    const char c = r_.peek();
    if (is_digit(c) || c == '*' || c == '$') {
      SearchKey k{SearchKind::Sequence};
      if (!r_.sequence_set(k.set)) return false;
      program_.push_back(std::move(k));
      return true;
    }
    std::string_view name;
    if (!r_.atom(name, "a search key")) return false;
    for (const auto& s : kSimpleKeys) {
      if (iequals(name, s.name)) return push(SearchKey{s.kind});
    }
    for (const auto& s : kStringKeys) {
      if (iequals(name, s.name)) {
        SearchKey k{s.kind};
        return r_.sp() && r_.astring(k.text) && push(std::move(k));
      }
    }
    for (const auto& s : kDateKeys) {
      if (iequals(name, s.name)) {
        SearchKey k{s.kind};
        return r_.sp() && r_.date(k.day) && push(std::move(k));
      }
    }
    if (iequals(name, "NOT")) {
      program_.push_back(SearchKey{SearchKind::Not});
      return r_.sp() && key(depth + 1);
    }
    if (iequals(name, "OR")) {
      program_.push_back(SearchKey{SearchKind::Or});
      return r_.sp() && key(depth + 1) && r_.sp() && key(depth + 1);
    }
    if (iequals(name, "NEW")) {  // RFC 3501 §6.4.4: RECENT and UNSEEN
      SearchKey both{SearchKind::And};
      both.operands = 2;
      return push(std::move(both)) && push(SearchKey{SearchKind::Recent}) && push(SearchKey{SearchKind::Unseen});
    }
    if (iequals(name, "OLD")) {  // NOT RECENT
      return push(SearchKey{SearchKind::Not}) && push(SearchKey{SearchKind::Recent});
    }
    if (iequals(name, "KEYWORD") || iequals(name, "UNKEYWORD")) {
      SearchKey k{iequals(name, "KEYWORD") ? SearchKind::Keyword : SearchKind::Unkeyword};
      std::string_view kw;
      if (!r_.sp() || !r_.atom(kw, "a keyword")) return false;
      k.text.assign(kw);
      return push(std::move(k));
    }
    if (iequals(name, "HEADER")) {
      SearchKey k{SearchKind::Header};
      if (!r_.sp() || !r_.astring(k.field, "a header field name") || !r_.sp() || !r_.astring(k.text)) return false;
      if (k.field.empty() || !std::all_of(k.field.begin(), k.field.end(), ftext)) {
        return r_.fail("not a header field name");
      }
      return push(std::move(k));
    }
    if (iequals(name, "LARGER") || iequals(name, "SMALLER")) {
      SearchKey k{iequals(name, "LARGER") ? SearchKind::Larger : SearchKind::Smaller};
      return r_.sp() && r_.number(k.number, INT64_MAX, "a size") && push(std::move(k));
    }
    if (iequals(name, "UID")) {
      SearchKey k{SearchKind::Uid};
      return r_.sp() && r_.sequence_set(k.set) && push(std::move(k));
    }
    if (iequals(name, "OLDER") || iequals(name, "YOUNGER")) {  // RFC 5032: nz-number of seconds
      SearchKey k{iequals(name, "OLDER") ? SearchKind::Older : SearchKind::Younger};
      uint32_t secs;
      if (!r_.sp() || !r_.number32(secs, true, "a number of seconds")) return false;
      k.number = secs;
      return push(std::move(k));
    }
    if (iequals(name, "MODSEQ")) {
      // RFC 7162 §3.1.5: "MODSEQ" [SP entry-name SP entry-type-req] SP mod-sequence-valzer
      SearchKey k{SearchKind::ModSeq};
      if (!r_.sp()) return false;
      if (r_.peek() == '"') {
        if (!r_.quoted(k.modseq_entry)) return false;
        if (k.modseq_entry.rfind("/flags/", 0) != 0) return r_.fail("a MODSEQ entry name is \"/flags/<flag>\"");
        std::string_view type;
        if (!r_.sp() || !r_.atom(type, "priv, shared or all")) return false;
        if (!iequals(type, "priv") && !iequals(type, "shared") && !iequals(type, "all")) {
          return r_.fail("a MODSEQ entry type is priv, shared or all");
        }
        k.modseq_type = common::ascii::lowered(type);
        if (!r_.sp()) return false;
      }
      return r_.mod_sequence(k.number, true) && push(std::move(k));
    }
    return r_.fail("unknown search key");
  }

 private:
  bool push(SearchKey k) {
    if (program_.size() >= limits_.max_search_keys) {
      return r_.fail("SEARCH has more than " + std::to_string(limits_.max_search_keys) + " keys", "LIMIT");
    }
    program_.push_back(std::move(k));
    return true;
  }

  Reader& r_;
  std::vector<SearchKey>& program_;
  const ParserLimits& limits_;
};

// The depth of the program as the store counts it (a lone key is 1, NOT x is 2), walked with an
// explicit stack: what the parser hands on must pass the store's own bound.
size_t program_depth(const std::vector<SearchKey>& program) {
  std::vector<size_t> open;  // operands still expected, per open operator
  size_t deepest = 0;
  for (const auto& k : program) {
    const size_t d = open.size() + 1;
    deepest = std::max(deepest, d);
    size_t operands = 0;
    switch (k.kind) {
      case SearchKind::And: operands = k.operands; break;
      case SearchKind::Or: operands = 2; break;
      case SearchKind::Not: operands = 1; break;
      default: break;
    }
    if (operands > 0) {
      open.push_back(operands);
      continue;
    }
    while (!open.empty() && --open.back() == 0) open.pop_back();
  }
  return deepest;
}

bool search(Reader& r, SearchArgs& a, const ParserLimits& limits) {
  if (!r.sp()) return false;
  if (r.keyword("RETURN")) {
    // RFC 4731 §3.1, RFC 5182 §2: RETURN (MIN MAX ALL COUNT SAVE); "()" is ALL.
    a.esearch = true;
    if (!r.sp() || !r.expect('(', "'(' after RETURN")) return false;
    if (!r.consume(')')) {
      while (true) {
        if (r.keyword("MIN")) {
          a.ret_min = true;
        } else if (r.keyword("MAX")) {
          a.ret_max = true;
        } else if (r.keyword("ALL")) {
          a.ret_all = true;
        } else if (r.keyword("COUNT")) {
          a.ret_count = true;
        } else if (r.keyword("SAVE")) {
          a.ret_save = true;
        } else {
          return r.fail("unknown SEARCH return option");
        }
        if (r.consume(')')) break;
        if (!r.sp()) return false;
      }
    }
    if (!a.ret_min && !a.ret_max && !a.ret_count && !a.ret_save) a.ret_all = true;  // RFC 4731 §3.1
    if (!r.sp()) return false;
  }
  if (r.keyword("CHARSET")) {
    a.charset.emplace();
    if (!r.sp() || !r.astring(*a.charset, "a charset") || !r.sp()) return false;
  }
  SearchParser p(r, a.program, limits);
  const size_t top = a.program.size();
  a.program.push_back(SearchKey{SearchKind::And});
  uint32_t n = 0;
  while (true) {
    if (!p.key(1)) return false;
    ++n;
    if (r.at_end()) break;
    if (!r.sp()) return false;
  }
  if (n == 1) {
    a.program.erase(a.program.begin() + static_cast<std::ptrdiff_t>(top));
  } else {
    a.program[top].operands = n;
  }
  if (program_depth(a.program) > limits.max_depth) {
    return r.fail("SEARCH nests deeper than " + std::to_string(limits.max_depth) + " levels", "LIMIT");
  }
  return true;
}

// ---- FETCH ----

bool header_list(Reader& r, std::vector<std::string>& fields) {
  if (!r.expect('(', "'(' before the header field names") || !r.enter()) return false;
  while (true) {
    std::string f;
    if (!r.astring(f, "a header field name")) return false;
    if (f.empty() || !std::all_of(f.begin(), f.end(), ftext)) return r.fail("not a header field name");
    fields.push_back(std::move(f));
    if (r.consume(')')) break;
    if (!r.sp()) return false;
  }
  r.leave();
  return true;
}

// section = "[" [section-spec] "]", section-binary = "[" [section-part] "]" (the '[' read).
bool section(Reader& r, Section& s, bool binary) {
  if (r.consume(']')) return true;
  if (is_digit(r.peek())) {
    while (true) {
      uint32_t n;
      if (!r.number32(n, true, "a part number")) return false;
      if (s.part.size() >= 64) return r.fail("part numbers nested too deeply", "LIMIT");
      s.part.push_back(n);
      if (!r.consume('.')) break;
      if (!is_digit(r.peek())) {
        if (binary) return r.fail("BINARY takes part numbers only");
        break;
      }
    }
    if (r.peek() == ']') {
      r.consume(']');
      return true;
    }
  } else if (binary) {
    return r.fail("BINARY takes part numbers only");
  }
  auto name = r.scan([](char c) { return common::ascii::is_alpha(c) || c == '.'; });
  r.take(name.size());
  if (iequals(name, "HEADER")) {
    s.text = Section::Text::Header;
  } else if (iequals(name, "TEXT")) {
    s.text = Section::Text::Text;
  } else if (iequals(name, "MIME") && !s.part.empty()) {  // RFC 9051 §6.4.5: MIME only with a part
    s.text = Section::Text::Mime;
  } else if (iequals(name, "HEADER.FIELDS") || iequals(name, "HEADER.FIELDS.NOT")) {
    s.text = name.size() == 13 ? Section::Text::HeaderFields : Section::Text::HeaderFieldsNot;
    if (!r.sp() || !header_list(r, s.fields)) return false;
  } else {
    return r.fail("unknown section");
  }
  return r.expect(']', "']' after the section");
}

bool partial(Reader& r, std::optional<Partial>& p) {
  if (!r.consume('<')) return true;
  p.emplace();
  if (!r.number(p->offset, INT64_MAX, "a partial offset") || !r.expect('.', "'.' in the partial range") ||
      !r.number(p->length, INT64_MAX, "a partial length")) {
    return false;
  }
  if (p->length == 0) return r.fail("a partial length must not be 0");
  return r.expect('>', "'>' after the partial range");
}

bool fetch_att(Reader& r, FetchArgs& f) {
  auto name = r.scan([](char c) { return common::ascii::is_alnum(c) || c == '.'; });
  r.take(name.size());
  if (!r.element()) return false;
  if (r.peek() == '[') {
    r.consume('[');
    BodySection b;
    bool binary = false;
    if (iequals(name, "BODY")) {
      b.item = BodySection::Item::Body;
    } else if (iequals(name, "BODY.PEEK")) {
      b.item = BodySection::Item::Body;
      b.peek = true;
    } else if (iequals(name, "BINARY")) {
      b.item = BodySection::Item::Binary;
      binary = true;
    } else if (iequals(name, "BINARY.PEEK")) {
      b.item = BodySection::Item::Binary;
      b.peek = true;
      binary = true;
    } else if (iequals(name, "BINARY.SIZE")) {
      b.item = BodySection::Item::BinarySize;
      b.peek = true;
      binary = true;
    } else {
      return r.fail("unknown FETCH item");
    }
    if (!section(r, b.section, binary)) return false;
    if (b.item != BodySection::Item::BinarySize && !partial(r, b.partial)) return false;
    f.sections.push_back(std::move(b));
    return true;
  }
  auto add = [&](BodySection::Item item, Section::Text text, bool peek) {
    BodySection b;
    b.item = item;
    b.section.text = text;
    b.peek = peek;
    f.sections.push_back(std::move(b));
    return true;
  };
  if (iequals(name, "ENVELOPE")) return f.envelope = true;
  if (iequals(name, "FLAGS")) return f.flags = true;
  if (iequals(name, "INTERNALDATE")) return f.internal_date = true;
  if (iequals(name, "RFC822.SIZE")) return f.size = true;
  if (iequals(name, "BODY")) return f.body = true;
  if (iequals(name, "BODYSTRUCTURE")) return f.bodystructure = true;
  if (iequals(name, "UID")) return f.uid = true;
  if (iequals(name, "MODSEQ")) return f.modseq = true;
  // RFC 3501 §6.4.5: RFC822 is BODY[], RFC822.HEADER is BODY.PEEK[HEADER], RFC822.TEXT is BODY[TEXT].
  if (iequals(name, "RFC822")) return add(BodySection::Item::Rfc822, Section::Text::Full, false);
  if (iequals(name, "RFC822.HEADER")) return add(BodySection::Item::Rfc822Header, Section::Text::Header, true);
  if (iequals(name, "RFC822.TEXT")) return add(BodySection::Item::Rfc822Text, Section::Text::Text, false);
  if (name.empty()) return r.fail("expected a FETCH item");
  return r.fail("unknown FETCH item");
}

bool fetch(Reader& r, FetchArgs& f, bool uid) {
  if (!r.sp() || !r.sequence_set(f.set) || !r.sp()) return false;
  if (r.consume('(')) {
    if (!r.enter()) return false;
    while (true) {
      if (!fetch_att(r, f)) return false;
      if (r.consume(')')) break;
      if (!r.sp()) return false;
    }
    r.leave();
  } else if (r.keyword("ALL")) {
    f.flags = f.internal_date = f.size = f.envelope = true;
  } else if (r.keyword("FAST")) {
    f.flags = f.internal_date = f.size = true;
  } else if (r.keyword("FULL")) {
    f.flags = f.internal_date = f.size = f.envelope = f.body = true;
  } else if (!fetch_att(r, f)) {
    return false;
  }
  if (!r.at_end()) {
    // RFC 4466 §2.4 fetch-modifiers, RFC 7162 §3.1.4.1 CHANGEDSINCE, §3.2.6 VANISHED
    if (!r.sp() || !r.expect('(', "'(' before the FETCH modifiers") || !r.enter()) return false;
    while (true) {
      if (r.keyword("CHANGEDSINCE")) {
        if (f.changed_since) return r.fail("CHANGEDSINCE given twice");
        uint64_t m;
        if (!r.sp() || !r.mod_sequence(m, true)) return false;
        f.changed_since = m;
      } else if (r.keyword("VANISHED")) {
        f.vanished = true;
      } else {
        return r.fail("unknown FETCH modifier");
      }
      if (r.consume(')')) break;
      if (!r.sp()) return false;
    }
    r.leave();
  }
  if (f.vanished && (!uid || !f.changed_since)) return r.fail("VANISHED needs UID FETCH with CHANGEDSINCE");
  if (f.changed_since) f.modseq = true;  // RFC 7162 §3.1.4.1: CHANGEDSINCE implies MODSEQ
  if (uid) f.uid = true;
  return true;
}

bool store(Reader& r, StoreArgs& s) {
  if (!r.sp() || !r.sequence_set(s.set) || !r.sp()) return false;
  if (r.consume('(')) {
    // RFC 7162 §3.1.3: UNCHANGEDSINCE
    if (!r.enter()) return false;
    while (true) {
      if (!r.keyword("UNCHANGEDSINCE")) return r.fail("unknown STORE modifier");
      if (s.unchanged_since) return r.fail("UNCHANGEDSINCE given twice");
      uint64_t m;
      if (!r.sp() || !r.mod_sequence(m, true)) return false;
      s.unchanged_since = m;
      if (r.consume(')')) break;
      if (!r.sp()) return false;
    }
    r.leave();
    if (!r.sp()) return false;
  }
  std::string_view item;
  if (!r.atom(item, "FLAGS, +FLAGS or -FLAGS")) return false;
  if (!item.empty() && (item[0] == '+' || item[0] == '-')) {
    s.mode = item[0] == '+' ? StoreArgs::Mode::Add : StoreArgs::Mode::Remove;
    item.remove_prefix(1);
  }
  if (iequals(item, "FLAGS.SILENT")) {
    s.silent = true;
  } else if (!iequals(item, "FLAGS")) {
    return r.fail("expected FLAGS, +FLAGS or -FLAGS");
  }
  if (!r.sp()) return false;
  if (r.peek() == '(') return r.flag_list(s.flags);
  while (true) {
    std::string f;
    if (!r.flag(f)) return false;
    s.flags.push_back(std::move(f));
    if (r.at_end()) return true;
    if (!r.sp()) return false;
  }
}

bool copy(Reader& r, CopyArgs& c) { return r.sp() && r.sequence_set(c.set) && r.sp() && mailbox(r, c.mailbox); }

bool set_quota(Reader& r, SetQuotaArgs& q) {
  // RFC 9208 §4.1.3: SETQUOTA quota-root SP "(" [resource SP limit *(SP resource SP limit)] ")"
  if (!r.sp() || !r.astring(q.root, "a quota root") || !r.sp() || !r.expect('(', "'(' before the quota limits")) {
    return false;
  }
  if (r.consume(')')) return true;
  while (true) {
    std::string_view res;
    uint64_t limit;
    if (!r.atom(res, "a resource name") || !r.sp() || !r.number(limit, INT64_MAX, "a limit") || !r.element()) {
      return false;
    }
    q.limits.emplace_back(std::string(res), limit);
    if (r.consume(')')) return true;
    if (!r.sp()) return false;
  }
}

bool id(Reader& r, IdArgs& a) {
  // RFC 2971 §4: "ID" SP ( "(" #(string SP nstring) ")" / nil ); §3.3: at most 30 pairs, fields
  // up to 30 octets, values up to 1024.
  if (!r.sp()) return false;
  if (r.keyword("NIL")) return true;
  if (!r.expect('(', "'(' or NIL")) return false;
  if (r.consume(')')) return true;
  while (true) {
    std::string field;
    std::optional<std::string> value;
    if (!r.string(field) || !r.sp() || !r.nstring(value)) return false;
    if (field.size() > 30) return r.fail("an ID field is longer than 30 octets");
    if (value && value->size() > 1024) return r.fail("an ID value is longer than 1024 octets");
    if (a.params.size() >= 30) return r.fail("more than 30 ID fields");
    a.params.emplace_back(std::move(field), std::move(value));
    if (r.consume(')')) return true;
    if (!r.sp()) return false;
  }
}

bool append_opts(Reader& r, AppendMessage& m) {
  // append-opts = [SP flag-list] [SP date-time] (RFC 9051 §9, RFC 3502), then SP before the literal.
  if (r.peek() == ' ' && r.peek(1) == '(') {
    r.consume(' ');
    if (!r.flag_list(m.flags)) return false;
  }
  if (r.peek() == ' ' && r.peek(1) == '"') {
    r.consume(' ');
    std::string text;
    if (!r.quoted(text)) return false;
    m.internal_date = parse_date_time(text);
    if (!m.internal_date) return r.fail("expected a date-time (\"dd-Mon-yyyy hh:mm:ss +zzzz\")");
  }
  if (!r.sp()) return false;
  return r.at_end() || r.fail("expected the message literal");
}

}  // namespace

Head read_head(std::string_view line) {
  Head h;
  h.tag = "*";
  size_t i = 0;
  while (i < line.size() && tag_char(line[i])) ++i;
  if (line.empty()) {
    h.error = "empty command line";
    return h;
  }
  if (i == 0 || (i < line.size() && line[i] != ' ')) {
    h.error = "invalid tag";
    return h;
  }
  h.tag_ok = true;
  h.tag.assign(line.substr(0, i));
  if (i >= line.size() || i + 1 >= line.size()) {
    h.error = "missing command name";
    return h;
  }
  ++i;
  size_t e = i;
  while (e < line.size() && atom_char(line[e])) ++e;
  std::string_view name = line.substr(i, e - i);
  if (iequals(name, "UID")) {
    h.uid = true;
    if (e >= line.size() || line[e] != ' ') {
      h.error = "UID needs a command";
      return h;
    }
    i = e + 1;
    e = i;
    while (e < line.size() && atom_char(line[e])) ++e;
    name = line.substr(i, e - i);
  }
  h.verb = find_verb(name);
  if (!h.verb) {
    h.error = name.empty() ? "missing command name" : "unknown command";
    return h;
  }
  if (h.uid && !takes_uid(*h.verb)) {
    h.error = "UID does not go with " + std::string(verb_name(*h.verb));
    h.verb.reset();
    return h;
  }
  h.verb_ok = true;
  h.args = e;
  return h;
}

std::variant<Command, ParseError> parse_command(std::string_view cmd, std::span<const LiteralMark> marks,
                                                const ParserLimits& limits) {
  // The head lies on the first line, which ends at the first literal's announcement.
  const size_t first_line = marks.empty() ? cmd.size() : marks.front().announce;
  Head h = read_head(cmd.substr(0, first_line));
  ParseError err;
  err.tag = h.tag;
  if (!h.verb_ok) {
    err.text = h.error;
    return err;
  }
  err.verb = h.verb;
  Command c;
  c.tag = h.tag;
  c.verb = *h.verb;
  c.uid = h.uid;
  Reader r(cmd, marks, limits);
  r.seek(h.args);
  bool ok = false;
  switch (c.verb) {
    case Verb::Capability: case Verb::Noop: case Verb::Logout: case Verb::StartTls: case Verb::Namespace:
    case Verb::Idle: case Verb::Check: case Verb::Close: case Verb::Unselect: case Verb::Unauthenticate:
      ok = r.all_read() || r.fail("takes no arguments");
      break;
    case Verb::Authenticate: ok = authenticate(r, c.args.emplace<AuthenticateArgs>()); break;
    case Verb::Login: ok = login(r, c.args.emplace<LoginArgs>()); break;
    case Verb::Enable: ok = enable(r, c.args.emplace<EnableArgs>()); break;
    case Verb::Select: case Verb::Examine: ok = select(r, c.args.emplace<SelectArgs>()); break;
    case Verb::Create: ok = create(r, c.args.emplace<CreateArgs>()); break;
    case Verb::Delete: case Verb::Subscribe: case Verb::Unsubscribe: case Verb::GetQuotaRoot:
      ok = one_mailbox(r, c.args.emplace<MailboxArgs>());
      break;
    case Verb::Rename: ok = rename(r, c.args.emplace<RenameArgs>()); break;
    case Verb::List: ok = list(r, c.args.emplace<ListArgs>()); break;
    case Verb::Lsub: ok = lsub(r, c.args.emplace<ListArgs>()); break;
    case Verb::Status: ok = status(r, c.args.emplace<StatusArgs>()); break;
    case Verb::Append:
      // The parser streams APPEND messages and never gets here with one; a command without any is
      // refused here.
      ok = r.fail("APPEND needs a mailbox and a message literal");
      break;
    case Verb::Expunge: {
      auto& e = c.args.emplace<ExpungeArgs>();
      if (c.uid) {
        e.uids.emplace();
        ok = r.sp() && r.sequence_set(*e.uids);
      } else {
        ok = r.all_read() || r.fail("takes no arguments");
      }
      break;
    }
    case Verb::Search: ok = search(r, c.args.emplace<SearchArgs>(), limits); break;
    case Verb::Fetch: ok = fetch(r, c.args.emplace<FetchArgs>(), c.uid); break;
    case Verb::Store: ok = store(r, c.args.emplace<StoreArgs>()); break;
    case Verb::Copy: case Verb::Move: ok = copy(r, c.args.emplace<CopyArgs>()); break;
    case Verb::GetQuota: ok = r.sp() && r.astring(c.args.emplace<QuotaRootArgs>().root, "a quota root"); break;
    case Verb::SetQuota: ok = set_quota(r, c.args.emplace<SetQuotaArgs>()); break;
    case Verb::Id: ok = id(r, c.args.emplace<IdArgs>()); break;
  }
  if (ok && !r.all_read()) ok = r.fail("unexpected text after the arguments");
  if (!ok) {
    err.text = std::string(verb_name(c.verb)) + ": " + r.error();
    err.code = r.code();
    return err;
  }
  return c;
}

std::optional<std::string> parse_append_prefix(std::string_view cmd, std::span<const LiteralMark> marks,
                                               size_t literal_at, bool first, const ParserLimits& limits,
                                               std::string& mailbox_out, AppendMessage& message) {
  Reader r(cmd.substr(0, literal_at), marks, limits);
  bool ok = true;
  if (first) {
    const size_t first_line = marks.empty() ? literal_at : marks.front().announce;
    Head h = read_head(cmd.substr(0, first_line));
    if (!h.verb_ok || *h.verb != Verb::Append) return "APPEND: " + (h.error.empty() ? std::string("bad command") : h.error);
    r.seek(h.args);
    ok = r.sp() && mailbox(r, mailbox_out);
  }
  ok = ok && append_opts(r, message) && r.all_read();
  if (!ok) return "APPEND: " + (r.error().empty() ? std::string("unexpected text before the message") : r.error());
  return std::nullopt;
}

}  // namespace mmp::imap::detail
