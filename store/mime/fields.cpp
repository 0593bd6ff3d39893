// fields.cpp: RFC 2045/2231/5322 field parsing for BODYSTRUCTURE and ENVELOPE, and IMAP strings.
// Every parser here is lenient (mail in the wild is broken) and bounded by the length of its input.
#include "store/mime/fields.hpp"

#include <algorithm>
#include <cstdint>

#include "common/ascii.hpp"

namespace store::mime {
namespace {

using common::ascii::is_blank;
using common::ascii::lowered;

// RFC 5322 §3.2.3 atext, plus 8-bit bytes: UTF-8 in headers (RFC 6532) and legacy 8-bit names.
bool is_atext(unsigned char c) {
  if (c >= 0x80) return true;
  if (common::ascii::is_alnum(static_cast<char>(c))) return true;
  switch (c) {
    case '!': case '#': case '$': case '%': case '&': case '\'': case '*': case '+': case '-':
    case '/': case '=': case '?': case '^': case '_': case '`': case '{': case '|': case '}': case '~':
      return true;
    default:
      return false;
  }
}

// RFC 2045 §5.1 token: any CHAR but SPACE, CTLs and tspecials; 8-bit accepted from broken mailers.
bool is_token_char(unsigned char c) {
  if (c >= 0x80) return true;
  if (c <= 0x20 || c == 0x7f) return false;
  switch (c) {
    case '(': case ')': case '<': case '>': case '@': case ',': case ';': case ':': case '\\':
    case '"': case '/': case '[': case ']': case '?': case '=':
      return false;
    default:
      return true;
  }
}

bool is_wsp(char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\n'; }

// A cursor over one unfolded field value with the RFC 5322 lexical pieces.
class Lexer {
 public:
  explicit Lexer(std::string_view s) : s_(s) {}
  bool end() const { return i_ >= s_.size(); }
  char peek() const { return s_[i_]; }
  void skip() { ++i_; }
  size_t pos() const { return i_; }
  std::string_view rest() const { return s_.substr(i_); }

  // CFWS (RFC 5322 §3.2.2): white space and nested comments. The last comment's text is kept for
  // the one use IMAP has for it, a display name written as "addr (Name)".
  void skip_cfws(std::string* comment = nullptr) {
    while (!end()) {
      if (is_wsp(peek())) {
        ++i_;
      } else if (peek() == '(') {
        std::string text;
        int depth = 0;
        while (!end()) {
          char c = s_[i_++];
          if (c == '\\' && !end()) {
            text += s_[i_++];
            continue;
          }
          if (c == '(') {
            if (depth++ > 0) text += c;
          } else if (c == ')') {
            if (--depth == 0) break;
            text += c;
          } else {
            text += c;
          }
        }
        if (comment) *comment = std::move(text);
      } else {
        break;
      }
    }
  }

  // A quoted-string at '"': the content unescaped; an unterminated one runs to the end.
  std::string quoted() {
    std::string out;
    ++i_;
    while (!end()) {
      char c = s_[i_++];
      if (c == '"') break;
      if (c == '\\' && !end()) {
        out += s_[i_++];
      } else if (c != '\r' && c != '\n') {
        out += c;
      }
    }
    return out;
  }

  template <class Pred>
  std::string_view run(Pred pred) {
    size_t start = i_;
    while (!end() && pred(static_cast<unsigned char>(s_[i_]))) ++i_;
    return s_.substr(start, i_ - start);
  }

 private:
  std::string_view s_;
  size_t i_ = 0;
};

bool is_attribute_char(unsigned char c) {
  return is_token_char(c) && c != '*' && c != '\'' && c != '%';
}

void percent_encode(std::string& out, std::string_view v) {
  constexpr char kHex[] = "0123456789ABCDEF";
  for (char ch : v) {
    auto c = static_cast<unsigned char>(ch);
    if (is_attribute_char(c) && c < 0x80) {
      out += ch;
    } else {
      out += '%';
      out += kHex[c >> 4];
      out += kHex[c & 15];
    }
  }
}

struct RawParam {
  std::string name;
  std::string value;
};

// RFC 2231 §3-4: "name*N" sections, "name*" or "name*N*" extended (percent-encoded) ones.
struct Section {
  std::string base;
  bool sectioned = false;
  uint32_t number = 0;
  bool extended = false;
};

Section split_section(const std::string& name) {
  Section s;
  size_t star = name.find('*');
  if (star == std::string::npos || star == 0) {
    s.base = name;
    return s;
  }
  std::string_view rest = std::string_view(name).substr(star + 1);
  if (rest.empty()) {
    s.base = name.substr(0, star);
    s.extended = true;
    return s;
  }
  bool ext = rest.back() == '*';
  if (ext) rest.remove_suffix(1);
  if (rest.empty() || rest.size() > 4) {
    s.base = name;
    return s;
  }
  uint32_t n = 0;
  for (char c : rest) {
    if (!common::ascii::is_digit(c)) {
      s.base = name;
      return s;
    }
    n = n * 10 + static_cast<uint32_t>(c - '0');
  }
  s.base = name.substr(0, star);
  s.sectioned = true;
  s.number = n;
  s.extended = ext;
  return s;
}

std::vector<Param> join_sections(std::vector<RawParam> raw) {
  std::vector<Param> out;
  std::vector<bool> used(raw.size(), false);
  for (size_t i = 0; i < raw.size(); ++i) {
    if (used[i]) continue;
    Section first = split_section(raw[i].name);
    if (!first.sectioned && !first.extended) {
      used[i] = true;
      out.push_back({raw[i].name, std::move(raw[i].value)});
      continue;
    }
    // Every section of this base, in section order (mailers do send them out of order).
    std::vector<std::pair<Section, size_t>> parts;
    for (size_t j = i; j < raw.size(); ++j) {
      if (used[j]) continue;
      Section s = split_section(raw[j].name);
      if ((s.sectioned || s.extended) && s.base == first.base) {
        parts.emplace_back(s, j);
        used[j] = true;
      }
    }
    std::stable_sort(parts.begin(), parts.end(),
                     [](const auto& a, const auto& b) { return a.first.number < b.first.number; });
    bool any_extended = std::any_of(parts.begin(), parts.end(), [](const auto& p) { return p.first.extended; });
    std::string value;
    for (auto& [s, j] : parts) {
      if (any_extended && !s.extended) {
        percent_encode(value, raw[j].value);
      } else {
        value += raw[j].value;
      }
    }
    out.push_back({any_extended ? first.base + "*" : first.base, std::move(value)});
  }
  return out;
}

}  // namespace

std::string clean_value(std::string_view raw) {
  std::string out;
  out.reserve(raw.size());
  for (char c : raw) {
    if (c == '\r' || c == '\n') continue;
    if (c == '\0') {
      out += "\xEF\xBF\xBD";
      continue;
    }
    out += c;
  }
  size_t a = 0, b = out.size();
  while (a < b && is_blank(out[a])) ++a;
  while (b > a && is_blank(out[b - 1])) --b;
  return out.substr(a, b - a);
}

void append_string(std::string& out, std::string_view s) {
  bool literal = false;
  for (char c : s) {
    auto u = static_cast<unsigned char>(c);
    if (u >= 0x80 || u == '\r' || u == '\n' || u == 0) {
      literal = true;
      break;
    }
  }
  if (literal) {
    // RFC 3501 §4.3: a literal is the only way for 8-bit text in IMAP4rev1.
    out += '{';
    out += std::to_string(s.size());
    out += "}\r\n";
    out += s;
    return;
  }
  out += '"';
  for (char c : s) {
    if (c == '"' || c == '\\') out += '\\';
    out += c;
  }
  out += '"';
}

void append_nstring(std::string& out, const std::optional<std::string>& s) {
  if (!s) {
    out += "NIL";
  } else {
    append_string(out, *s);
  }
}

std::vector<Param> parse_params(std::string_view text) {
  Lexer lx(text);
  std::vector<RawParam> raw;
  while (!lx.end()) {
    lx.skip_cfws();
    if (lx.end()) break;
    if (lx.peek() == ';') {
      lx.skip();
      continue;
    }
    std::string name = lowered(lx.run(is_token_char));
    lx.skip_cfws();
    if (name.empty() || lx.end() || lx.peek() != '=') {
      // Not "name=value": skip to the next ';' rather than misread the rest.
      while (!lx.end() && lx.peek() != ';') {
        if (lx.peek() == '"') {
          lx.quoted();
        } else {
          lx.skip();
        }
      }
      continue;
    }
    lx.skip();
    lx.skip_cfws();
    std::string value;
    if (!lx.end() && lx.peek() == '"') {
      value = lx.quoted();
    } else {
      // Unquoted values with tspecials ("boundary==_Part_1") are common; take them to the ';'.
      std::string_view v = lx.run([](unsigned char c) { return c != ';' && c != '"' && c > 0x20; });
      value.assign(v);
    }
    raw.push_back({std::move(name), std::move(value)});
    if (raw.size() >= 1000) break;  // a bound on one header's parameters, far above real mail
  }
  return join_sections(std::move(raw));
}

ContentType parse_content_type(std::string_view value) {
  ContentType ct;
  Lexer lx(value);
  lx.skip_cfws();
  std::string_view type = lx.run(is_token_char);
  lx.skip_cfws();
  if (type.empty() || lx.end() || lx.peek() != '/') return ct;
  lx.skip();
  lx.skip_cfws();
  std::string_view subtype = lx.run(is_token_char);
  if (subtype.empty()) return ct;
  ct.type.assign(type);
  ct.subtype.assign(subtype);
  ct.valid = true;
  lx.skip_cfws();
  if (!lx.end() && lx.peek() == ';') ct.params = parse_params(lx.rest());
  return ct;
}

std::optional<Disposition> parse_disposition(std::string_view value) {
  Lexer lx(value);
  lx.skip_cfws();
  std::string_view type = lx.run(is_token_char);
  if (type.empty()) return std::nullopt;
  Disposition d;
  d.type.assign(type);
  lx.skip_cfws();
  if (!lx.end() && lx.peek() == ';') d.params = parse_params(lx.rest());
  return d;
}

std::vector<std::string> parse_language(std::string_view value) {
  std::vector<std::string> out;
  Lexer lx(value);
  while (!lx.end() && out.size() < 100) {
    lx.skip_cfws();
    if (lx.end()) break;
    std::string_view tag = lx.run(is_token_char);
    if (tag.empty()) {
      lx.skip();
      continue;
    }
    out.emplace_back(tag);
  }
  return out;
}

std::optional<std::string> parse_encoding(std::string_view value) {
  Lexer lx(value);
  lx.skip_cfws();
  std::string_view token = lx.run(is_token_char);
  lx.skip_cfws();
  if (token.empty() || !lx.end()) return std::nullopt;
  return std::string(token);
}

namespace {

struct Word {
  std::string text;  // decoded (quoted strings unescaped)
  std::string raw;   // as written, for a local part
};

// Words of a phrase or local part: runs of atext and '.' (obs-phrase allows dots, RFC 5322 §4.1)
// and quoted strings, up to a special that decides what they were.
std::vector<Word> read_words(Lexer& lx, std::string* comment) {
  std::vector<Word> words;
  while (true) {
    lx.skip_cfws(comment);
    if (lx.end()) break;
    char c = lx.peek();
    if (c == '"') {
      size_t start = lx.pos();
      std::string text = lx.quoted();
      Word w;
      w.raw = "\"";
      for (char q : text) {
        if (q == '"' || q == '\\') w.raw += '\\';
        w.raw += q;
      }
      w.raw += '"';
      (void)start;
      w.text = std::move(text);
      words.push_back(std::move(w));
    } else if (is_atext(static_cast<unsigned char>(c)) || c == '.') {
      std::string_view run = lx.run([](unsigned char u) { return is_atext(u) || u == '.'; });
      words.push_back({std::string(run), std::string(run)});
    } else {
      break;
    }
  }
  return words;
}

std::optional<std::string> phrase_of(const std::vector<Word>& words) {
  if (words.empty()) return std::nullopt;
  std::string out;
  for (size_t i = 0; i < words.size(); ++i) {
    if (i) out += ' ';
    out += words[i].text;
  }
  return out;
}

std::string local_of(const std::vector<Word>& words) {
  std::string out;
  for (auto& w : words) out += w.raw;
  return out;
}

// The domain after '@': a dot-atom (with CFWS between the labels, obs-domain) or a literal.
std::string read_domain(Lexer& lx, std::string* comment) {
  lx.skip_cfws(comment);
  std::string out;
  if (!lx.end() && lx.peek() == '[') {
    while (!lx.end()) {
      char c = lx.peek();
      lx.skip();
      if (c == '\\' && !lx.end()) {
        out += lx.peek();
        lx.skip();
        continue;
      }
      if (!is_wsp(c)) out += c;
      if (c == ']') break;
    }
    return out;
  }
  while (!lx.end()) {
    std::string_view run = lx.run([](unsigned char u) { return is_atext(u) || u == '.'; });
    if (run.empty()) break;
    out += run;
    lx.skip_cfws(comment);
  }
  return out;
}

void skip_to_separator(Lexer& lx) {
  while (!lx.end() && lx.peek() != ',' && lx.peek() != ';') {
    if (lx.peek() == '"') {
      lx.quoted();
    } else if (lx.peek() == '(') {
      lx.skip_cfws();
    } else {
      lx.skip();
    }
  }
}

Address mailbox(std::optional<std::string> name, std::optional<std::string> adl, std::string local,
                std::string domain) {
  Address a;
  a.name = std::move(name);
  a.adl = std::move(adl);
  a.mailbox = local.empty() ? std::string("MISSING_MAILBOX") : std::move(local);
  a.host = domain.empty() ? std::string("MISSING_DOMAIN") : std::move(domain);
  return a;
}

// One mailbox or group; returns false when nothing could be read (the caller then skips a byte).
bool read_address(Lexer& lx, std::vector<Address>& out, bool in_group) {
  std::string comment;
  size_t start = lx.pos();
  std::vector<Word> words = read_words(lx, &comment);
  if (lx.end() || lx.peek() == ',' || lx.peek() == ';') {
    // A bare local part (no '@'), or a lone display name: keep it rather than lose a recipient.
    if (words.empty()) return lx.pos() != start;
    if (words.size() == 1) {
      out.push_back(mailbox(comment.empty() ? std::nullopt : std::optional<std::string>(comment),
                            std::nullopt, local_of(words), ""));
    } else {
      out.push_back(mailbox(phrase_of(words), std::nullopt, "", ""));
    }
    return true;
  }
  char c = lx.peek();
  if (c == ':' && !in_group) {
    // RFC 5322 §3.4 group: display-name ":" [group-list] ";"; RFC 3501 §7.4.2 brackets it with a
    // start (NIL NIL name NIL) and an end (NIL NIL NIL NIL).
    lx.skip();
    Address start_item;
    start_item.mailbox = phrase_of(words).value_or("");
    out.push_back(std::move(start_item));
    while (!lx.end()) {
      lx.skip_cfws();
      if (lx.end()) break;
      if (lx.peek() == ';') {
        lx.skip();
        break;
      }
      if (lx.peek() == ',') {
        lx.skip();
        continue;
      }
      if (!read_address(lx, out, true)) {
        lx.skip();
      }
    }
    out.push_back(Address{});
    return true;
  }
  if (c == '<') {
    lx.skip();
    lx.skip_cfws();
    std::optional<std::string> adl;
    if (!lx.end() && lx.peek() == '@') {
      // obs-route (RFC 5322 §4.4): "@a,@b:" before the addr-spec; IMAP's addr-adl.
      std::string route;
      while (!lx.end() && lx.peek() != ':' && lx.peek() != '>') {
        if (!is_wsp(lx.peek())) route += lx.peek();
        lx.skip();
      }
      if (!lx.end() && lx.peek() == ':') {
        lx.skip();
        adl = std::move(route);
      }
    }
    std::vector<Word> local = read_words(lx, nullptr);
    std::string domain;
    if (!lx.end() && lx.peek() == '@') {
      lx.skip();
      domain = read_domain(lx, nullptr);
    }
    while (!lx.end() && lx.peek() != '>' && lx.peek() != ',' && lx.peek() != ';') lx.skip();
    if (!lx.end() && lx.peek() == '>') lx.skip();
    std::string trailing;
    lx.skip_cfws(&trailing);
    std::optional<std::string> name = phrase_of(words);
    if (!name && !trailing.empty()) name = trailing;
    std::string l = local_of(local);
    if (l.empty() && domain.empty() && !name) {
      skip_to_separator(lx);
      return true;  // "<>": no address at all
    }
    out.push_back(mailbox(std::move(name), std::move(adl), std::move(l), std::move(domain)));
    skip_to_separator(lx);
    return true;
  }
  if (c == '@') {
    lx.skip();
    std::string trailing;
    std::string domain = read_domain(lx, &trailing);
    if (!trailing.empty()) comment = trailing;
    std::optional<std::string> name;
    if (!comment.empty()) name = comment;
    out.push_back(mailbox(std::move(name), std::nullopt, local_of(words), std::move(domain)));
    skip_to_separator(lx);
    return true;
  }
  // A special where none belongs ('>', ']', ':' inside a group...): keep what was read, resync.
  if (!words.empty()) out.push_back(mailbox(std::nullopt, std::nullopt, local_of(words), ""));
  skip_to_separator(lx);
  return lx.pos() != start;
}

}  // namespace

std::vector<Address> parse_addresses(std::string_view value) {
  std::vector<Address> out;
  Lexer lx(value);
  while (!lx.end()) {
    lx.skip_cfws();
    if (lx.end()) break;
    char c = lx.peek();
    if (c == ',' || c == ';') {
      lx.skip();
      continue;
    }
    if (!read_address(lx, out, false)) lx.skip();
  }
  return out;
}

void append_address_list(std::string& out, const std::vector<Address>& list) {
  if (list.empty()) {
    out += "NIL";
    return;
  }
  out += '(';
  for (auto& a : list) {
    out += '(';
    append_nstring(out, a.name);
    out += ' ';
    append_nstring(out, a.adl);
    out += ' ';
    append_nstring(out, a.mailbox);
    out += ' ';
    append_nstring(out, a.host);
    out += ')';
  }
  out += ')';
}

std::string render_envelope(const EnvelopeFields& f) {
  auto text = [](const std::optional<std::string>& v) -> std::optional<std::string> {
    if (!v) return std::nullopt;
    return clean_value(*v);
  };
  auto list = [](const std::optional<std::string>& v) {
    return v ? parse_addresses(clean_value(*v)) : std::vector<Address>{};
  };
  std::vector<Address> from = list(f.from);
  std::vector<Address> sender = list(f.sender);
  std::vector<Address> reply_to = list(f.reply_to);
  // RFC 3501 §7.4.2: absent or empty Sender and Reply-To take the value of From.
  if (sender.empty()) sender = from;
  if (reply_to.empty()) reply_to = from;
  std::string out = "(";
  append_nstring(out, text(f.date));
  out += ' ';
  append_nstring(out, text(f.subject));
  for (const auto* l : {&from, &sender, &reply_to}) {
    out += ' ';
    append_address_list(out, *l);
  }
  for (const auto* v : {&f.to, &f.cc, &f.bcc}) {
    out += ' ';
    append_address_list(out, list(*v));
  }
  out += ' ';
  append_nstring(out, text(f.in_reply_to));
  out += ' ';
  append_nstring(out, text(f.message_id));
  out += ')';
  return out;
}

}  // namespace store::mime
