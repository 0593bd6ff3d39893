// imap_fuzz.cpp: the IMAP command parser of mmp/imap on arbitrary client bytes, driven as a session
// would (continuations given or cancelled, IDLE and SASL lines accepted), then again in pieces of
// arbitrary sizes: both runs must give the same events. Also checked: the bytes held stay under
// the limits, refusals carry no CR/LF and a valid tag, APPEND data adds up to the announced
// sizes, SEARCH programs are well-formed and within the depth bound, mailbox names decode and
// re-encode canonically, and what the encoders write parses back to the same strings.
//
// Input: one options byte (bit 0: LITERAL+, bit 1: pause after each command, bit 2: MULTIAPPEND,
// bit 3: small limits so every bound is reachable, bits 4-7: the seed of the split sizes), then
// the client's bytes.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "mmp/imap/encode.hpp"
#include "mmp/imap/mutf7.hpp"
#include "mmp/imap/parser.hpp"

namespace {

using namespace mmp::imap;

void check(bool ok) {
  if (!ok) std::abort();
}

ParserOptions options_of(uint8_t b) {
  ParserOptions o;
  o.literal_plus = (b & 1) != 0;
  o.pause_after_command = (b & 2) != 0;
  o.multiappend = (b & 4) != 0;
  if (b & 8) {
    ParserLimits& l = o.limits;
    l.max_line = 200;
    l.max_command = 1000;
    l.max_literal = 100;
    l.max_message = 300;
    l.max_literals = 4;
    l.max_messages = 3;
    l.max_depth = 8;
    l.max_ranges = 50;
    l.max_elements = 100;
    l.max_search_keys = 40;
    l.max_discard = 300;
  }
  return o;
}

bool tag_ok(std::string_view tag) {
  if (tag == "*") return true;
  if (tag.empty()) return false;
  for (char ch : tag) {
    const auto c = static_cast<unsigned char>(ch);
    if (c <= 0x20 || c >= 0x7f) return false;
    if (ch == '(' || ch == ')' || ch == '{' || ch == '%' || ch == '*' || ch == '"' || ch == '\\' || ch == '+') {
      return false;
    }
  }
  return true;
}

// The program is one prefix expression: every operator gets its operands, nothing is left over.
void check_program(const std::vector<SearchKey>& program, size_t max_depth) {
  check(!program.empty());
  std::vector<size_t> open;
  size_t done = 0;
  for (const auto& k : program) {
    check(done == 0);
    check(open.size() + 1 <= max_depth);
    size_t operands = 0;
    if (k.kind == SearchKind::And) {
      check(k.operands >= 2);
      operands = k.operands;
    } else if (k.kind == SearchKind::Or) {
      operands = 2;
    } else if (k.kind == SearchKind::Not) {
      operands = 1;
    }
    if (operands > 0) {
      open.push_back(operands);
      continue;
    }
    while (!open.empty() && --open.back() == 0) open.pop_back();
    if (open.empty()) ++done;
  }
  check(open.empty() && done == 1);
}

void check_set(const SequenceSet& s) {
  for (size_t i = 0; i < s.ranges.size(); ++i) {
    check(s.ranges[i].first >= 1 && s.ranges[i].first <= s.ranges[i].last);
    if (i > 0) check(s.ranges[i].first > uint64_t{s.ranges[i - 1].last} + 1);  // sorted, merged
  }
  if (s.saved) check(s.ranges.empty() && !s.star);
}

void check_mailbox(const std::string& wire) {
  for (bool utf8 : {false, true}) {
    auto name = mailbox_from_wire(wire, utf8);
    if (!name) continue;
    // What we would send back reads as the same name (INBOX folded the same way).
    auto again = mailbox_from_wire(mailbox_to_wire(*name, utf8), utf8);
    check(again && *again == *name);
  }
  // A canonical modified UTF-7 spelling is the only one.
  if (auto d = mutf7_decode(wire)) {
    auto e = mutf7_encode(*d);
    check(e && *e == wire);
  }
}

std::vector<Event> reparse(const std::string& line) {
  Parser p;
  std::vector<Event> all, out;
  p.feed(line, out);
  for (int guard = 0; guard < 64; ++guard) {
    all.insert(all.end(), out.begin(), out.end());
    out.clear();
    if (!p.paused()) break;
    p.resume(out);
  }
  return all;
}

// Quoting round trip: a string the client sent, written back by the encoders, reads the same.
void check_encoding(const std::string& s) {
  if (s.find('\0') != std::string::npos || s.size() > 2000) return;
  std::string line = "t LOGIN ";
  append_astring(line, s, false);
  line += ' ';
  append_string(line, s, true);
  line += "\r\n";
  auto events = reparse(line);
  check(!events.empty());
  const auto* c = std::get_if<Command>(&events.back());
  check(c != nullptr);
  const auto& l = std::get<LoginArgs>(c->args);
  check(l.user == s && l.password == s);
}

// A set written back reads as the same ranges.
void check_set_encoding(const SequenceSet& s) {
  std::string line = "t FETCH ";
  append_sequence_set(line, s.ranges);
  line += " FLAGS\r\n";
  auto events = reparse(line);
  check(events.size() == 1);
  const auto* c = std::get_if<Command>(&events[0]);
  check(c != nullptr && std::get<FetchArgs>(c->args).set == s);
}

// The parser only yields flags the encoder can write: all of them come back.
void check_flag_encoding(const std::vector<std::string>& flags) {
  std::string line = "t STORE 1 FLAGS ";
  append_flag_list(line, flags);
  line += "\r\n";
  auto events = reparse(line);
  check(events.size() == 1);
  const auto* c = std::get_if<Command>(&events[0]);
  check(c != nullptr && std::get<StoreArgs>(c->args).flags == flags);
}

void check_command(const Command& c, const ParserOptions& o) {
  check(tag_ok(c.tag) && c.tag != "*");
  std::visit(
      [&](const auto& a) {
        using T = std::decay_t<decltype(a)>;
        if constexpr (std::is_same_v<T, SearchArgs>) {
          check_program(a.program, o.limits.max_depth);
          for (const auto& k : a.program) {
            if (k.kind == SearchKind::Uid || k.kind == SearchKind::Sequence) check_set(k.set);
          }
        } else if constexpr (std::is_same_v<T, FetchArgs> || std::is_same_v<T, StoreArgs> ||
                             std::is_same_v<T, CopyArgs>) {
          check_set(a.set);
          if (!a.set.star && !a.set.saved) check_set_encoding(a.set);
          if constexpr (std::is_same_v<T, CopyArgs>) check_mailbox(a.mailbox);
          if constexpr (std::is_same_v<T, StoreArgs>) check_flag_encoding(a.flags);
        } else if constexpr (std::is_same_v<T, SelectArgs> || std::is_same_v<T, CreateArgs> ||
                             std::is_same_v<T, MailboxArgs> || std::is_same_v<T, StatusArgs>) {
          check_mailbox(a.mailbox);
        } else if constexpr (std::is_same_v<T, RenameArgs>) {
          check_mailbox(a.from);
          check_mailbox(a.to);
        } else if constexpr (std::is_same_v<T, LoginArgs>) {
          check_encoding(a.user);
          check_encoding(a.password);
        } else if constexpr (std::is_same_v<T, AppendArgs>) {
          check(!a.messages.empty());
          check_mailbox(a.mailbox);
        }
      },
      c.args);
}

class Session {
 public:
  explicit Session(const ParserOptions& o) : parser_(o), options_(o) {}

  void feed(std::string_view bytes) {
    std::vector<Event> out;
    parser_.feed(bytes, out);
    settle(out);
    // Bounded whatever the client sends: a line, a command, what waits (the tail of a pause).
    const auto& l = options_.limits;
    check(parser_.buffered() <= l.max_line + 1 + l.max_command);
  }

  std::vector<Event> events;

 private:
  void settle(std::vector<Event>& out) {
    for (int guard = 0;; ++guard) {
      check(guard < 1000000);
      for (auto& e : out) {
        react(e);
        add(std::move(e));
      }
      out.clear();
      if (!parser_.paused()) return;
      parser_.resume(out);
    }
  }

  void react(const Event& e) {
    if (const auto* c = std::get_if<Command>(&e)) {
      check_command(*c, options_);
      if (c->verb == Verb::Idle) parser_.expect_done();
      if (c->verb == Verb::Authenticate && !std::get<AuthenticateArgs>(c->args).initial_response) {
        parser_.expect_sasl(c->tag);
        sasl_lines_ = 0;
      }
    } else if (const auto* k = std::get_if<Continue>(&e)) {
      check(tag_ok(k->tag) && k->tag != "*");
      // A session that refuses some literals after seeing them announced.
      if (k->size % 7 == 3) check(parser_.cancel_literal());
    } else if (std::holds_alternative<SaslResponse>(e)) {
      if (++sasl_lines_ >= 2) parser_.end_sasl();
    } else if (const auto* p = std::get_if<ParseError>(&e)) {
      check(tag_ok(p->tag));
      check(p->text.find_first_of("\r\n") == std::string::npos && !p->text.empty());
      const std::string line = parse_error_line(*p);
      check(line.find('\n') == line.size() - 1);
      if (p->verb == Verb::Authenticate) parser_.end_sasl();
    } else if (const auto* s = std::get_if<AppendStart>(&e)) {
      check(s->message.size <= options_.limits.max_message);
      append_left_ = s->message.size;
    } else if (const auto* d = std::get_if<AppendData>(&e)) {
      check(d->bytes.size() <= append_left_);
      append_left_ -= d->bytes.size();
      check(d->last == (append_left_ == 0));
    }
  }

  void add(Event e) {
    if (auto* d = std::get_if<AppendData>(&e); d != nullptr && !events.empty()) {
      if (auto* prev = std::get_if<AppendData>(&events.back()); prev != nullptr && !prev->last) {
        prev->bytes += d->bytes;
        prev->last = d->last;
        return;
      }
    }
    events.push_back(std::move(e));
  }

  Parser parser_;
  ParserOptions options_;
  uint64_t append_left_ = 0;
  int sasl_lines_ = 0;
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1 || size > (1 << 20)) return 0;
  const ParserOptions o = options_of(data[0]);
  const std::string_view in(reinterpret_cast<const char*>(data + 1), size - 1);

  Session whole(o);
  whole.feed(in);

  Session pieces(o);
  uint32_t seed = 0x9e3779b9u * (data[0] >> 4 | 1);
  for (size_t i = 0; i < in.size();) {
    seed = seed * 1103515245u + 12345u;
    const size_t n = 1 + (seed >> 16) % 17;
    pieces.feed(in.substr(i, n));
    i += n;
  }
  check(whole.events == pieces.events);
  return 0;
}
