// search_reference_test.cpp: SEARCH on a generated mailbox of 5,000 messages (senders, subjects and
// bodies in several scripts and charsets, RFC 2047 words, base64 and quoted-printable parts,
// attachments, forwarded messages, dates, sizes, flags, keywords, MODSEQs) against a reference
// evaluation written apart: it never parses a message, it reads what the generator meant to write.
// Every program runs without and with a header cache (header_cache.hpp), both against the reference.
#include <iconv.h>

#include <chrono>
#include <map>
#include <optional>
#include <sstream>

#include "common/ascii.hpp"
#include "tests/store/search/search_env.hpp"

namespace {

using store::search::Kind;
using store::search::Program;
using store::search::SearchKey;
using store::search::UidRange;

// ---- deterministic randomness (the same mailbox on every run and every standard library) ----

struct Rng {
  uint64_t state;
  uint64_t next() {
    uint64_t z = (state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
  }
  size_t below(size_t n) { return static_cast<size_t>(next() % n); }
  int64_t between(int64_t lo, int64_t hi) { return lo + static_cast<int64_t>(below(static_cast<size_t>(hi - lo + 1))); }
  bool chance(double p) { return static_cast<double>(next() >> 11) / 9007199254740992.0 < p; }
  template <class T>
  const T& pick(const std::vector<T>& v) {
    return v[below(v.size())];
  }
};

// ---- the test's own UTF-8 and case handling (not the code under test's) ----

std::u32string to_u32(std::string_view s) {
  std::u32string out;
  for (size_t i = 0; i < s.size();) {
    const auto c = static_cast<unsigned char>(s[i]);
    const size_t n = c < 0x80 ? 1 : c < 0xE0 ? 2 : c < 0xF0 ? 3 : 4;
    char32_t cp = n == 1 ? c : n == 2 ? (c & 0x1F) : n == 3 ? (c & 0x0F) : (c & 0x07);
    for (size_t k = 1; k < n; ++k) cp = (cp << 6) | (static_cast<unsigned char>(s[i + k]) & 0x3F);
    out += cp;
    i += n;
  }
  return out;
}

std::string to_utf8(std::u32string_view s) {
  std::string out;
  for (char32_t c : s) {
    if (c < 0x80) {
      out += static_cast<char>(c);
    } else if (c < 0x800) {
      out += static_cast<char>(0xC0 | (c >> 6));
      out += static_cast<char>(0x80 | (c & 0x3F));
    } else if (c < 0x10000) {
      out += static_cast<char>(0xE0 | (c >> 12));
      out += static_cast<char>(0x80 | ((c >> 6) & 0x3F));
      out += static_cast<char>(0x80 | (c & 0x3F));
    } else {
      out += static_cast<char>(0xF0 | (c >> 18));
      out += static_cast<char>(0x80 | ((c >> 12) & 0x3F));
      out += static_cast<char>(0x80 | ((c >> 6) & 0x3F));
      out += static_cast<char>(0x80 | (c & 0x3F));
    }
  }
  return out;
}

enum class Script { Ascii, Latin, Cyrillic, Greek, Cp1252 };

struct Word {
  std::string lower, upper;
  Script script;
};

// Every letter outside ASCII that a generated message holds comes from here, so the reference
// lowers text with the pairs below and needs no Unicode table of its own.
const std::vector<Word>& vocabulary() {
  static const std::vector<Word> words = [] {
    std::vector<Word> w;
    for (const char* a : {"hello", "world", "meeting", "report", "budget", "invoice", "project", "quarterly", "review",
                          "lunch", "friday", "deadline", "server", "postern", "mailbox", "search", "quick", "brown",
                          "fox", "lazy", "dog", "alpha", "beta", "gamma", "delta", "schedule", "update", "ticket",
                          "release", "coffee"}) {
      std::string up(a);
      for (char& c : up) c = static_cast<char>(c - 'a' + 'A');
      w.push_back({a, up, Script::Ascii});
    }
    const std::pair<const char*, const char*> latin[] = {
        {"café", "CAFÉ"},         {"crème", "CRÈME"},   {"müller", "MÜLLER"}, {"naïve", "NAÏVE"},
        {"façade", "FAÇADE"},     {"señor", "SEÑOR"},   {"øresund", "ØRESUND"}, {"ærø", "ÆRØ"},
        {"straße", "STRAßE"},     {"über", "ÜBER"},     {"göteborg", "GÖTEBORG"}, {"élève", "ÉLÈVE"}};
    for (auto [l, u] : latin) w.push_back({l, u, Script::Latin});
    const std::pair<const char*, const char*> cyrillic[] = {{"привет", "ПРИВЕТ"}, {"москва", "МОСКВА"},
                                                            {"книга", "КНИГА"},   {"ёлка", "ЁЛКА"},
                                                            {"отчёт", "ОТЧЁТ"},   {"встреча", "ВСТРЕЧА"}};
    for (auto [l, u] : cyrillic) w.push_back({l, u, Script::Cyrillic});
    const std::pair<const char*, const char*> greek[] = {
        {"σοφία", "ΣΟΦΊΑ"}, {"αθήνα", "ΑΘΉΝΑ"}, {"θάλασσα", "ΘΆΛΑΣΣΑ"}, {"καλημέρα", "ΚΑΛΗΜΈΡΑ"}, {"ψυχή", "ΨΥΧΉ"}};
    for (auto [l, u] : greek) w.push_back({l, u, Script::Greek});
    w.push_back({"€uro", "€URO", Script::Cp1252});
    w.push_back({"“quoted”", "“QUOTED”", Script::Cp1252});
    return w;
  }();
  return words;
}

const std::map<char32_t, char32_t>& lower_map() {
  static const std::map<char32_t, char32_t> m = [] {
    std::map<char32_t, char32_t> out;
    for (char32_t c = 'A'; c <= 'Z'; ++c) out[c] = c + 32;
    for (const auto& w : vocabulary()) {
      const auto l = to_u32(w.lower), u = to_u32(w.upper);
      REQUIRE(l.size() == u.size());
      for (size_t i = 0; i < l.size(); ++i) {
        if (l[i] != u[i]) out[u[i]] = l[i];
      }
    }
    return out;
  }();
  return m;
}

std::string lowered(std::string_view s) {
  std::u32string u = to_u32(s);
  for (char32_t& c : u) {
    auto it = lower_map().find(c);
    if (it != lower_map().end()) c = it->second;
  }
  return to_utf8(u);
}

std::string form_of(const Word& w, Rng& rng) {
  switch (rng.below(4)) {
    case 0: return w.upper;
    case 1: {
      auto l = to_u32(w.lower), u = to_u32(w.upper);
      l[0] = u[0];
      return to_utf8(l);
    }
    default: return w.lower;
  }
}

// ---- encoders (the generator's side) ----

std::string encode_charset(const std::string& utf8, const std::string& charset) {
  if (charset == "utf-8") return utf8;
  iconv_t cd = iconv_open(charset.c_str(), "UTF-8");
  REQUIRE(cd != reinterpret_cast<iconv_t>(-1));
  std::string out(utf8.size() * 4 + 16, '\0');
  char* in = const_cast<char*>(utf8.data());
  size_t in_left = utf8.size();
  char* o = out.data();
  size_t o_left = out.size();
  const size_t r = iconv(cd, &in, &in_left, &o, &o_left);
  iconv_close(cd);
  INFO("charset " << charset << " text " << utf8);
  REQUIRE(r != static_cast<size_t>(-1));
  out.resize(out.size() - o_left);
  return out;
}

std::string base64(std::string_view bytes, size_t line = 76) {
  static constexpr char kAlphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string flat;
  for (size_t i = 0; i < bytes.size(); i += 3) {
    uint32_t v = static_cast<unsigned char>(bytes[i]) << 16;
    if (i + 1 < bytes.size()) v |= static_cast<unsigned char>(bytes[i + 1]) << 8;
    if (i + 2 < bytes.size()) v |= static_cast<unsigned char>(bytes[i + 2]);
    flat += kAlphabet[(v >> 18) & 63];
    flat += kAlphabet[(v >> 12) & 63];
    flat += i + 1 < bytes.size() ? kAlphabet[(v >> 6) & 63] : '=';
    flat += i + 2 < bytes.size() ? kAlphabet[v & 63] : '=';
  }
  if (line == 0) return flat;
  std::string out;
  for (size_t i = 0; i < flat.size(); i += line) {
    if (i) out += "\r\n";
    out += flat.substr(i, line);
  }
  return out;
}

std::string hex2(unsigned char c) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  return {'=', kHex[c >> 4], kHex[c & 15]};
}

// RFC 2045 §6.7 with soft breaks at 72 columns; `bytes` uses CRLF line breaks.
std::string quoted_printable(std::string_view bytes, Rng& rng) {
  std::string out;
  size_t column = 0;
  for (size_t i = 0; i < bytes.size(); ++i) {
    const auto c = static_cast<unsigned char>(bytes[i]);
    if (c == '\r' && i + 1 < bytes.size() && bytes[i + 1] == '\n') {
      out += "\r\n";
      column = 0;
      ++i;
      continue;
    }
    std::string token;
    if (c >= 0x80 || c == '=' || c < 0x20 || (c != ' ' && rng.chance(0.02))) {
      token = hex2(c);
    } else {
      token = std::string(1, static_cast<char>(c));
    }
    if (column + token.size() > 72) {
      out += "=\r\n";
      column = 0;
    }
    out += token;
    column += token.size();
  }
  return out;
}

std::string encoded_word(const std::string& charset, std::string_view bytes, Rng& rng) {
  if (rng.chance(0.5)) return "=?" + charset + "?B?" + base64(bytes, 0) + "?=";
  std::string text;
  for (char ch : bytes) {
    const auto c = static_cast<unsigned char>(ch);
    if (common::ascii::is_alnum(ch)) text += ch;
    else if (c == ' ') text += '_';
    else text += hex2(c);
  }
  return "=?" + (rng.chance(0.3) ? common::ascii::uppered(charset) : charset) + "?" + (rng.chance(0.5) ? "Q" : "q") +
         "?" + text + "?=";
}

const std::vector<std::string>& charsets_for(Script s) {
  static const std::map<Script, std::vector<std::string>> m = {
      {Script::Ascii, {"utf-8", "iso-8859-1", "us-ascii"}},
      {Script::Latin, {"utf-8", "iso-8859-1", "windows-1252", "iso-8859-15"}},
      {Script::Cyrillic, {"utf-8", "koi8-r", "windows-1251", "iso-8859-5"}},
      {Script::Greek, {"utf-8", "iso-8859-7"}},
      {Script::Cp1252, {"utf-8", "windows-1252"}},
  };
  return m.at(s);
}

// A phrase for a header: each word raw, raw UTF-8 (RFC 6532), or one or two RFC 2047 words in a
// charset that has its letters; white space where the RFC keeps it, folds here and there.
std::string header_phrase(const std::vector<std::string>& words, const std::vector<Script>& scripts, Rng& rng) {
  std::string raw;
  bool prev_encoded = false;
  for (size_t i = 0; i < words.size(); ++i) {
    const bool ascii = scripts[i] == Script::Ascii;
    const bool encode = ascii ? rng.chance(0.2) : !rng.chance(0.1);
    const std::string sep = rng.chance(0.15) ? "\r\n " : " ";
    if (!encode) {
      if (i) raw += prev_encoded ? " " : sep;  // a literal space after a word must survive
      raw += words[i];
      prev_encoded = false;
      continue;
    }
    // Between two encoded words white space is dropped, so the space goes inside the second.
    const std::string text = (i && prev_encoded) ? " " + words[i] : words[i];
    if (i) raw += (prev_encoded ? sep : " ");
    const std::string& charset = rng.pick(charsets_for(scripts[i]));
    const std::string bytes = encode_charset(text, charset);
    if (bytes.size() >= 2 && rng.chance(0.25)) {
      const size_t cut = 1 + rng.below(bytes.size() - 1);  // may cut a UTF-8 character in two
      raw += encoded_word(charset, bytes.substr(0, cut), rng) + (rng.chance(0.5) ? " " : "\r\n\t") +
             encoded_word(charset, bytes.substr(cut), rng);
    } else {
      raw += encoded_word(charset, bytes, rng);
    }
    prev_encoded = true;
  }
  return raw;
}

// ---- the generated mailbox: bytes for the store, meaning for the reference ----

struct Ref {
  std::vector<std::pair<std::string, std::string>> root;  // name lowered, value lowered
  std::vector<std::string> mime_lines;                    // other parts' header lines: TEXT only
  std::vector<std::string> inner_lines;                   // encapsulated messages' header lines: BODY and TEXT
  std::vector<std::string> texts;                         // text parts, lowered: BODY and TEXT
  std::optional<int32_t> sent_day;
  int64_t internal_date = 0;
  uint32_t flags = 0;
  std::vector<std::string> keywords;
  uint64_t size = 0;
  uint64_t modseq = 0;
  uint32_t uid = 0;
};

struct Person {
  std::vector<std::string> display;
  std::vector<Script> scripts;
  std::string address;
};

struct Header {
  std::string raw;
  void field(const std::string& name, const std::string& raw_value) { raw += name + ": " + raw_value + "\r\n"; }
};

void civil(int64_t days, int64_t& y, unsigned& m, unsigned& d) {
  days += 719468;
  const int64_t era = (days >= 0 ? days : days - 146096) / 146097;
  const auto doe = static_cast<unsigned>(days - era * 146097);
  const unsigned yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
  const unsigned doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
  const unsigned mp = (5 * doy + 2) / 153;
  d = doy - (153 * mp + 2) / 5 + 1;
  m = mp < 10 ? mp + 3 : mp - 9;
  y = static_cast<int64_t>(yoe) + era * 400 + (m <= 2);
}

class Generator {
 public:
  explicit Generator(uint64_t seed) : rng_{seed} {
    const char* domains[] = {"example.org", "example.net", "postern.test", "mail.example.com"};
    for (int i = 0; i < 60; ++i) {
      Person p;
      const size_t n = 1 + rng_.below(2);
      for (size_t k = 0; k < n; ++k) {
        const Word& w = rng_.pick(vocabulary());
        p.display.push_back(form_of(w, rng_));
        p.scripts.push_back(w.script);
      }
      p.address = vocabulary()[rng_.below(30)].lower + std::to_string(i) + "@" + domains[rng_.below(4)];
      people_.push_back(p);
    }
  }

  const std::vector<Person>& people() const { return people_; }

  // One message: its bytes and what a reader should find in it.
  std::pair<test::SearchEnv::Message, Ref> message(uint32_t n) {
    Ref ref;
    Header h;
    const Person& from = rng_.pick(people_);
    root(h, ref, "Return-Path", "<" + from.address + ">");
    root_person(h, ref, "From", {&from});
    std::vector<const Person*> to;
    for (size_t k = 0, c = 1 + rng_.below(3); k < c; ++k) to.push_back(&rng_.pick(people_));
    root_person(h, ref, "To", to);
    if (rng_.chance(0.3)) root_person(h, ref, "Cc", {&rng_.pick(people_)});
    if (rng_.chance(0.1)) root_person(h, ref, "Bcc", {&rng_.pick(people_)});
    if (!rng_.chance(0.05)) {
      auto [words, scripts] = phrase(1 + rng_.below(8));
      std::string raw = header_phrase(words, scripts, rng_);
      std::string logical = join(words);
      if (rng_.chance(0.2)) {
        raw = "Re: " + raw;
        logical = "Re: " + logical;
      }
      root(h, ref, "Subject", raw, logical);
    }
    ref.internal_date = (kFirstDay + rng_.between(0, 90)) * 86400 + rng_.between(0, 86399);
    date_field(h, ref, "Date", true);
    root(h, ref, "Message-ID", "<" + std::to_string(n) + ".gen@postern.test>");
    if (rng_.chance(0.3)) root(h, ref, "X-Tag", "tag-" + vocabulary()[rng_.below(30)].lower);

    std::string body;
    const size_t shape = rng_.below(20);
    if (shape < 8) {
      text_part(h, body, ref, false, true, Where::Root);
    } else {
      root(h, ref, "MIME-Version", "1.0");
      const std::string b = "b" + std::to_string(n) + "_0";
      std::vector<std::pair<Header, std::string>> children;
      std::string subtype = "mixed";
      if (shape < 12) {
        subtype = "alternative";
        alternative(children, ref);
      } else if (shape < 17) {
        if (rng_.chance(0.3)) {
          Header ah;
          std::string abody;
          const std::string inner = "b" + std::to_string(n) + "_1";
          std::vector<std::pair<Header, std::string>> alt;
          alternative(alt, ref);
          mime(ah, ref, "Content-Type", "multipart/alternative; boundary=\"" + inner + "\"", Where::Part);
          children.push_back({ah, multipart(inner, alt)});
        } else {
          children.push_back(text_child(ref, false, Where::Part));
        }
        for (size_t k = 0, c = 1 + rng_.below(2); k < c; ++k) children.push_back(attachment(ref));
      } else {
        children.push_back(text_child(ref, false, Where::Part));
        children.push_back(forwarded(ref));
      }
      mime(h, ref, "Content-Type", "multipart/" + subtype + "; boundary=\"" + b + "\"", Where::Root);
      body = multipart(b, children);
    }

    test::SearchEnv::Message m;
    m.body = h.raw + "\r\n" + body;
    m.internal_date = ref.internal_date;
    m.flags = static_cast<uint32_t>(rng_.below(32));
    static const std::vector<std::string> kKeywords = {"$Forwarded", "$Junk", "$NotJunk", "Work", "todo", "$Label1"};
    for (const auto& k : kKeywords) {
      if (rng_.chance(0.2)) m.keywords.push_back(rng_.chance(0.5) ? k : common::ascii::uppered(k));
    }
    ref.flags = m.flags;
    for (const auto& k : m.keywords) ref.keywords.push_back(common::ascii::lowered(k));
    ref.root.insert(ref.root.begin(), {"delivered-to", test::SearchEnv::kUser});
    return {m, ref};
  }

  static constexpr int64_t kFirstDay = 19358;  // 2023-01-01

 private:
  enum class Where { Root, Part, Inner };

  static std::string join(const std::vector<std::string>& words) {
    std::string s;
    for (const auto& w : words) s += (s.empty() ? "" : " ") + w;
    return s;
  }

  std::pair<std::vector<std::string>, std::vector<Script>> phrase(size_t n) {
    std::vector<std::string> words;
    std::vector<Script> scripts;
    for (size_t i = 0; i < n; ++i) {
      const Word& w = rng_.pick(vocabulary());
      words.push_back(form_of(w, rng_));
      scripts.push_back(w.script);
    }
    return {words, scripts};
  }

  void record(Ref& ref, const std::string& name, const std::string& logical, Where where) {
    if (where == Where::Root) ref.root.emplace_back(lowered(name), lowered(logical));
    else if (where == Where::Part) ref.mime_lines.push_back(lowered(name + ": " + logical));
    else ref.inner_lines.push_back(lowered(name + ": " + logical));
  }
  void root(Header& h, Ref& ref, const std::string& name, const std::string& raw, std::optional<std::string> logical = {}) {
    h.field(name, raw);
    record(ref, name, logical ? *logical : raw, Where::Root);
  }
  void mime(Header& h, Ref& ref, const std::string& name, const std::string& value, Where where) {
    h.field(name, value);
    record(ref, name, value, where);
  }

  void root_person(Header& h, Ref& ref, const std::string& name, const std::vector<const Person*>& people,
                   Where where = Where::Root) {
    std::string raw, logical;
    for (const Person* p : people) {
      if (!raw.empty()) {
        raw += rng_.chance(0.3) ? ",\r\n " : ", ";
        logical += ", ";
      }
      raw += header_phrase(p->display, p->scripts, rng_) + " <" + p->address + ">";
      logical += join(p->display) + " <" + p->address + ">";
    }
    h.field(name, raw);
    record(ref, name, logical, where);
  }

  // A Date: field in one of the forms mailers write, or a broken one, or none (root only).
  void date_field(Header& h, Ref& ref, const std::string& name, bool is_root) {
    const size_t form = rng_.below(20);
    if (form >= 18) return;  // no Date:
    const int64_t sent = ref.internal_date - rng_.between(0, 3 * 86400);
    const int64_t zone = rng_.between(-24, 28) * 30;  // minutes, -12:00 to +14:00
    const int64_t local = sent + zone * 60;
    const int64_t day = local >= 0 ? local / 86400 : (local - 86399) / 86400;
    const int64_t secs = local - day * 86400;
    int64_t y;
    unsigned mo, d;
    civil(day, y, mo, d);
    static const char* kMonths[] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
    static const char* kDays[] = {"Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"};
    char time[32], tz[16];
    std::snprintf(time, sizeof time, "%02d:%02d:%02d", int(secs / 3600), int(secs / 60 % 60), int(secs % 60));
    std::snprintf(tz, sizeof tz, "%c%02d%02d", zone < 0 ? '-' : '+', int(std::abs(zone) / 60), int(std::abs(zone) % 60));
    std::string value;
    std::optional<int32_t> written = static_cast<int32_t>(day);
    const std::string dom = rng_.chance(0.5) ? std::to_string(d) : (d < 10 ? "0" : "") + std::to_string(d);
    if (form < 11) {
      value = std::string(kDays[((day % 7) + 7) % 7]) + ", " + dom + " " + kMonths[mo - 1] + " " + std::to_string(y) +
              " " + time + " " + tz;
    } else if (form < 13) {
      value = dom + " " + kMonths[mo - 1] + " " + std::to_string(y) + " " + time + " " + tz;
    } else if (form < 15) {
      value = dom + " " + kMonths[mo - 1] + " " + (y % 100 < 10 ? "0" : "") + std::to_string(y % 100) + " " + time +
              " " + tz;  // RFC 5322 §4.3 two-digit year
    } else if (form < 16) {
      value = std::string(kDays[((day % 7) + 7) % 7]) + ", " + dom + " " + kMonths[mo - 1] + " " + std::to_string(y) +
              " " + time + " " + tz + " (zone comment)";
    } else {
      static const std::vector<std::string> kBroken = {"yesterday", "2023-07-01T10:00:00Z", "32 Jan 2023 10:00 +0000",
                                                       "Mon, 29 Feb 2023 10:00:00 +0000", ""};
      value = rng_.pick(kBroken);
      written.reset();
    }
    h.field(name, value);
    if (is_root) {
      record(ref, name, value, Where::Root);
      ref.sent_day = written;
    } else {
      record(ref, name, value, Where::Inner);
    }
  }

  // Words in one script's charsets: ASCII, plus Latin, Cyrillic, Greek or cp1252 letters, or
  // everything (UTF-8 only); CRLF line breaks, no blank at a line's end.
  std::pair<std::string, std::string> text(bool ascii_only) {
    static const std::vector<Script> kProfiles = {Script::Latin, Script::Cyrillic, Script::Greek, Script::Cp1252,
                                                  Script::Ascii};
    const bool everything = !ascii_only && rng_.chance(0.15);
    const Script profile = ascii_only ? Script::Ascii : rng_.pick(kProfiles);
    std::string out, line;
    const size_t n = 3 + rng_.below(40);
    for (size_t i = 0; i < n; ++i) {
      const Word* w;
      do {
        w = &rng_.pick(vocabulary());
      } while (!(w->script == Script::Ascii || everything || w->script == profile));
      std::string word = form_of(*w, rng_);
      if (rng_.chance(0.1)) word += rng_.chance(0.5) ? "," : ".";
      if (!line.empty() && line.size() + word.size() > 60) {
        out += line + "\r\n";
        line.clear();
      }
      line += (line.empty() ? "" : " ") + word;
    }
    out += line + "\r\n";
    const std::string charset = everything ? std::string("utf-8") : rng_.pick(charsets_for(profile));
    return {out, charset};
  }

  // A text/plain or text/html part: its fields into `h`, its encoded body into `body`.
  void text_part(Header& h, std::string& body, Ref& ref, bool html, bool ascii_ok, Where where) {
    auto [logical, charset] = text(ascii_ok && rng_.chance(0.2));
    if (html) logical = "<html><body><p>" + logical + "</p></body></html>\r\n";
    const bool ascii = charset == "us-ascii" || std::all_of(logical.begin(), logical.end(), [](char c) {
                         return static_cast<unsigned char>(c) < 0x80;
                       });
    const std::string type = html ? "text/html" : "text/plain";
    if (!html && charset == "us-ascii" && rng_.chance(0.5)) {
      // No Content-Type at all: RFC 2045 §5.2's text/plain; charset=us-ascii.
    } else {
      mime(h, ref, "Content-Type", type + "; charset=" + (rng_.chance(0.5) ? charset : "\"" + charset + "\""), where);
    }
    const std::string bytes = encode_charset(logical, charset == "us-ascii" ? "utf-8" : charset);
    const size_t cte = rng_.below(3);
    if (cte == 0) {
      if (!ascii) mime(h, ref, "Content-Transfer-Encoding", "8bit", where);
      body = bytes;
    } else if (cte == 1) {
      mime(h, ref, "Content-Transfer-Encoding", "quoted-printable", where);
      body = quoted_printable(bytes, rng_);
    } else {
      mime(h, ref, "Content-Transfer-Encoding", rng_.chance(0.5) ? "base64" : "BASE64", where);
      body = base64(bytes);
    }
    ref.texts.push_back(lowered(logical));
  }

  std::pair<Header, std::string> text_child(Ref& ref, bool html, Where where) {
    Header h;
    std::string body;
    text_part(h, body, ref, html, true, where);
    return {h, body};
  }

  void alternative(std::vector<std::pair<Header, std::string>>& children, Ref& ref) {
    children.push_back(text_child(ref, false, Where::Part));
    children.push_back(text_child(ref, true, Where::Part));
  }

  // Not a text part: its words must not match BODY, its header fields match TEXT.
  std::pair<Header, std::string> attachment(Ref& ref) {
    Header h;
    const std::string name = vocabulary()[rng_.below(30)].lower + ".bin";
    mime(h, ref, "Content-Type", rng_.chance(0.5) ? "application/octet-stream" : "image/png; name=\"" + name + "\"",
         Where::Part);
    mime(h, ref, "Content-Disposition", "attachment; filename=\"" + name + "\"", Where::Part);
    mime(h, ref, "Content-Transfer-Encoding", "base64", Where::Part);
    return {h, base64(text(false).first)};
  }

  // message/rfc822: the encapsulated header is part of the outer body.
  std::pair<Header, std::string> forwarded(Ref& ref) {
    Header h;
    mime(h, ref, "Content-Type", "message/rfc822", Where::Part);
    Header inner;
    root_person(inner, ref, "From", {&rng_.pick(people_)}, Where::Inner);
    auto [words, scripts] = phrase(1 + rng_.below(5));
    inner.field("Subject", header_phrase(words, scripts, rng_));
    record(ref, "Subject", join(words), Where::Inner);
    date_field(inner, ref, "Date", false);
    std::string body;
    text_part(inner, body, ref, false, true, Where::Inner);
    return {h, inner.raw + "\r\n" + body};
  }

  std::string multipart(const std::string& boundary, const std::vector<std::pair<Header, std::string>>& children) {
    std::string out;
    if (rng_.chance(0.5)) out += "preamble " + rng_.pick(vocabulary()).lower + "\r\n";
    for (const auto& [h, body] : children) out += "--" + boundary + "\r\n" + h.raw + "\r\n" + body + "\r\n";
    out += "--" + boundary + "--\r\n";
    if (rng_.chance(0.3)) out += "epilogue " + rng_.pick(vocabulary()).lower + "\r\n";
    return out;
  }

  Rng rng_;
  std::vector<Person> people_;
};

// ---- the reference evaluation: recursive, over what the generator meant ----

bool has(const std::string& hay, const std::string& needle) { return hay.find(needle) != std::string::npos; }

bool ref_eval(const Program& p, size_t& i, const Ref& m, int64_t now) {
  const SearchKey& k = p[i++];
  const std::string needle = lowered(k.text);
  auto header = [&](const std::string& field) {
    const std::string f = common::ascii::lowered(field);
    for (const auto& [name, value] : m.root) {
      if (name == f && has(value, needle)) return true;
    }
    return false;
  };
  auto in_body = [&] {
    if (needle.empty()) return true;
    for (const auto& t : m.texts) if (has(t, needle)) return true;
    for (const auto& l : m.inner_lines) if (has(l, needle)) return true;
    return false;
  };
  const int32_t internal_day = static_cast<int32_t>(m.internal_date / 86400);
  const int32_t sent_day = m.sent_day ? *m.sent_day : internal_day;
  switch (k.kind) {
    case Kind::All: return true;
    case Kind::And: {
      bool all = true;
      for (uint32_t n = 0; n < k.operands; ++n) all = ref_eval(p, i, m, now) && all;
      return all;
    }
    case Kind::Or: {
      const bool a = ref_eval(p, i, m, now);
      const bool b = ref_eval(p, i, m, now);
      return a || b;
    }
    case Kind::Not: return !ref_eval(p, i, m, now);
    case Kind::Answered: return m.flags & store::kAnswered;
    case Kind::Deleted: return m.flags & store::kDeleted;
    case Kind::Draft: return m.flags & store::kDraft;
    case Kind::Flagged: return m.flags & store::kFlagged;
    case Kind::Seen: return m.flags & store::kSeen;
    case Kind::Unanswered: return !(m.flags & store::kAnswered);
    case Kind::Undeleted: return !(m.flags & store::kDeleted);
    case Kind::Undraft: return !(m.flags & store::kDraft);
    case Kind::Unflagged: return !(m.flags & store::kFlagged);
    case Kind::Unseen: return !(m.flags & store::kSeen);
    case Kind::Keyword:
      return std::find(m.keywords.begin(), m.keywords.end(), common::ascii::lowered(k.text)) != m.keywords.end();
    case Kind::Unkeyword:
      return std::find(m.keywords.begin(), m.keywords.end(), common::ascii::lowered(k.text)) == m.keywords.end();
    case Kind::Bcc: return header("bcc");
    case Kind::Cc: return header("cc");
    case Kind::From: return header("from");
    case Kind::To: return header("to");
    case Kind::Subject: return header("subject");
    case Kind::Header: return header(k.field);
    case Kind::Body: return in_body();
    case Kind::Text: {
      if (in_body()) return true;
      for (const auto& [name, value] : m.root) if (has(name + ": " + value, needle)) return true;
      for (const auto& l : m.mime_lines) if (has(l, needle)) return true;
      return false;
    }
    case Kind::Before: return internal_day < k.day;
    case Kind::On: return internal_day == k.day;
    case Kind::Since: return internal_day >= k.day;
    case Kind::SentBefore: return sent_day < k.day;
    case Kind::SentOn: return sent_day == k.day;
    case Kind::SentSince: return sent_day >= k.day;
    case Kind::Larger: return m.size > k.number;
    case Kind::Smaller: return m.size < k.number;
    case Kind::Uid:
      for (const auto& r : k.uids) {
        if (m.uid >= std::min(r.first, r.last) && m.uid <= std::max(r.first, r.last)) return true;
      }
      return false;
    case Kind::ModSeq: return m.modseq >= k.number;
    case Kind::Older: return m.internal_date <= now - static_cast<int64_t>(k.number);
    case Kind::Younger: return m.internal_date >= now - static_cast<int64_t>(k.number);
  }
  FAIL("unknown kind");
  return false;
}

// ---- random programs ----

class Programs {
 public:
  Programs(uint64_t seed, const std::vector<Ref>& refs, const Generator& gen) : rng_{seed}, refs_(refs), gen_(gen) {}

  Program next() {
    Program p;
    gen(p, 1);
    return p;
  }

 private:
  std::string word_needle() {
    const Word& w = rng_.pick(vocabulary());
    std::string form = form_of(w, rng_);
    if (rng_.chance(0.3)) {
      auto u = to_u32(form);
      if (u.size() > 2) {
        const size_t len = 2 + rng_.below(u.size() - 1);
        const size_t at = rng_.below(u.size() - len + 1);
        form = to_utf8(u.substr(at, len));
      }
    }
    return form;
  }
  std::string needle() {
    switch (rng_.below(12)) {
      case 0: return "";
      case 1: {  // a piece of some message's text: a hit for sure, perhaps across words or a line break
        const Ref& r = rng_.pick(refs_);
        const std::u32string t = to_u32(rng_.pick(r.texts));
        const size_t len = std::min<size_t>(t.size(), 3 + rng_.below(13));
        return to_utf8(t.substr(rng_.below(t.size() - len + 1), len));
      }
      case 2: return rng_.pick(std::vector<std::string>{"example", "postern.test", "tag-", "gen@", "<", "zzz-nowhere",
                                                       "text/html", "base64", "attachment", "re: "});
      case 3: return word_needle() + " " + word_needle();
      default: return word_needle();
    }
  }
  std::string person_needle() {
    const Person& p = rng_.pick(gen_.people());
    switch (rng_.below(5)) {
      case 0: return p.address;
      case 1: return p.address.substr(p.address.find('@'));
      case 2: return rng_.pick(p.display);
      case 3: return "";
      default: return needle();
    }
  }

  SearchKey leaf() {
    SearchKey k;
    const size_t r = rng_.below(100);
    if (r < 22) {
      static const Kind kFlags[] = {Kind::Answered, Kind::Deleted, Kind::Draft, Kind::Flagged, Kind::Seen,
                                    Kind::Unanswered, Kind::Undeleted, Kind::Undraft, Kind::Unflagged, Kind::Unseen,
                                    Kind::All};
      k.kind = kFlags[rng_.below(11)];
    } else if (r < 27) {
      k.kind = rng_.chance(0.5) ? Kind::Keyword : Kind::Unkeyword;
      k.text = rng_.pick(std::vector<std::string>{"$forwarded", "$JUNK", "$NotJunk", "work", "TODO", "$label1", "none"});
    } else if (r < 37) {
      static const Kind kPeople[] = {Kind::From, Kind::To, Kind::Cc, Kind::Bcc};
      k.kind = kPeople[rng_.below(4)];
      k.text = person_needle();
    } else if (r < 45) {
      k.kind = Kind::Subject;
      k.text = needle();
    } else if (r < 50) {
      k.kind = Kind::Header;
      k.field = rng_.pick(std::vector<std::string>{"X-Tag", "Message-ID", "Content-Type", "Return-Path", "Mime-Version",
                                                   "X-Missing", "Delivered-To", "subject", "FROM",
                                                   "Content-Transfer-Encoding", "date"});
      k.text = rng_.chance(0.3) ? "" : needle();
    } else if (r < 62) {
      k.kind = rng_.chance(0.6) ? Kind::Body : Kind::Text;
      k.text = needle();
    } else if (r < 80) {
      static const Kind kDates[] = {Kind::Before, Kind::On, Kind::Since, Kind::SentBefore, Kind::SentOn,
                                    Kind::SentSince};
      k.kind = kDates[rng_.below(6)];
      k.day = static_cast<int32_t>(Generator::kFirstDay + rng_.between(-5, 95));
    } else if (r < 86) {
      k.kind = rng_.chance(0.5) ? Kind::Larger : Kind::Smaller;
      k.number = rng_.pick(refs_).size + rng_.between(-2, 2);
    } else if (r < 91) {
      k.kind = Kind::Uid;
      for (size_t n = 0, c = 1 + rng_.below(4); n < c; ++n) {
        k.uids.push_back({static_cast<uint32_t>(rng_.between(0, 5100)), static_cast<uint32_t>(rng_.between(0, 5100))});
      }
    } else if (r < 95) {
      k.kind = Kind::ModSeq;
      k.number = rng_.pick(refs_).modseq + rng_.between(-1, 1);
    } else {
      k.kind = rng_.chance(0.5) ? Kind::Older : Kind::Younger;
      k.number = static_cast<uint64_t>(rng_.between(1, 100 * 86400));
    }
    return k;
  }

  void gen(Program& p, int depth) {
    if (depth >= 6 || rng_.chance(depth == 1 ? 0.15 : 0.5)) {
      p.push_back(leaf());
      return;
    }
    SearchKey op;
    switch (rng_.below(3)) {
      case 0:
        op.kind = Kind::And;
        op.operands = static_cast<uint32_t>(1 + rng_.below(4));
        p.push_back(op);
        for (uint32_t n = 0; n < op.operands; ++n) gen(p, depth + 1);
        break;
      case 1:
        op.kind = Kind::Or;
        p.push_back(op);
        gen(p, depth + 1);
        gen(p, depth + 1);
        break;
      default:
        op.kind = Kind::Not;
        p.push_back(op);
        gen(p, depth + 1);
        break;
    }
  }

  Rng rng_;
  const std::vector<Ref>& refs_;
  const Generator& gen_;
};

std::string describe(const Program& p) {
  std::ostringstream out;
  for (const auto& k : p) {
    out << store::search::kind_name(k.kind);
    if (k.kind == Kind::And) out << "/" << k.operands;
    if (!k.field.empty()) out << " " << k.field;
    if (!k.text.empty() || k.kind == Kind::Header || k.kind == Kind::Body || k.kind == Kind::Text) out << " \"" << k.text << "\"";
    if (k.number) out << " " << k.number;
    if (k.day) out << " day " << k.day;
    for (const auto& r : k.uids) out << " " << r.first << ":" << r.last;
    out << " | ";
  }
  return out.str();
}

}  // namespace

TEST_CASE("5,000 generated messages, 200 random programs: the store's SEARCH equals the reference", "[search]") {
  const auto started = std::chrono::steady_clock::now();
  test::SearchEnv env;
  Generator gen(0x5EA4C4);
  std::vector<Ref> refs;
  std::vector<test::SearchEnv::Message> batch;
  constexpr uint32_t kMessages = 5000;
  for (uint32_t n = 1; n <= kMessages; ++n) {
    auto [m, r] = gen.message(n);
    r.size = std::string("Delivered-To: ").size() + std::string(test::SearchEnv::kUser).size() + 2 + m.body.size();
    batch.push_back(std::move(m));
    refs.push_back(std::move(r));
    if (batch.size() == 500) {
      env.add(batch);
      batch.clear();
    }
  }
  // Flag changes move a fifth of the messages to later MODSEQs.
  Rng rng{42};
  for (int i = 0; i < 1000; ++i) env.touch(static_cast<uint32_t>(1 + rng.below(kMessages)));
  {
    auto txn = common::lmdb::Txn::begin(env.env(), false);
    REQUIRE(txn);
    auto list = store::list_messages(*txn, env.dbs(), env.mailbox_id());
    REQUIRE(list);
    REQUIRE(list->size() == kMessages);
    for (size_t i = 0; i < kMessages; ++i) {
      REQUIRE((*list)[i].uid == i + 1);
      REQUIRE((*list)[i].record.size == refs[i].size);
      refs[i].uid = (*list)[i].uid;
      refs[i].modseq = (*list)[i].record.modseq;
    }
  }
  const auto generated = std::chrono::steady_clock::now();

  int64_t now = 0;
  for (const auto& r : refs) now = std::max(now, r.internal_date);
  now += 3600;
  Programs programs(7, refs, gen);
  // Each program runs once more through a header cache: even ones through a cache that holds every
  // header, odd ones through one that holds about a fifth and evicts all along.
  store::search::HeaderCache big(64 << 20), small(1 << 20);
  size_t cached_failures = 0;
  size_t failures = 0, nonempty = 0, bodies = 0;
  std::chrono::steady_clock::duration in_store{};
  for (int n = 0; n < 200; ++n) {
    const Program p = programs.next();
    std::vector<uint32_t> expected;
    uint64_t expected_modseq = 0;
    for (const auto& r : refs) {
      size_t at = 0;
      if (ref_eval(p, at, r, now)) {
        expected.push_back(r.uid);
        expected_modseq = std::max(expected_modseq, r.modseq);
      }
      REQUIRE(at == p.size());
    }
    const auto before = std::chrono::steady_clock::now();
    auto got = env.search(p, now);
    in_store += std::chrono::steady_clock::now() - before;
    INFO("program " << n << ": " << describe(p));
    REQUIRE(got);
    if (got->uids != expected || got->highest_modseq != expected_modseq) {
      ++failures;
      size_t i = 0;
      while (i < got->uids.size() && i < expected.size() && got->uids[i] == expected[i]) ++i;
      INFO("first difference at index " << i << ": store "
                                        << (i < got->uids.size() ? std::to_string(got->uids[i]) : "end")
                                        << ", reference " << (i < expected.size() ? std::to_string(expected[i]) : "end"));
      CHECK(got->uids.size() == expected.size());
      CHECK(failures == 0);
      if (failures >= 5) break;
    }
    auto cached = env.search(p, now, n % 2 ? &small : &big);
    REQUIRE(cached);
    if (cached->uids != expected || cached->highest_modseq != expected_modseq) {
      ++cached_failures;
      CHECK(cached->uids.size() == expected.size());
      CHECK(cached_failures == 0);
      if (cached_failures >= 5) break;
    }
    if (!expected.empty() && expected.size() < kMessages) ++nonempty;
    bodies += got->stats.bodies;
  }
  CHECK(failures == 0);
  CHECK(cached_failures == 0);
  const auto big_stats = big.stats(), small_stats = small.stats();
  CHECK(big_stats.hits > 0);
  CHECK(big_stats.evictions == 0);
  CHECK(small_stats.hits > 0);
  CHECK(small_stats.evictions > 0);
  CHECK(small_stats.bytes <= small.max_bytes());
  // The programs must be worth comparing: most select some messages but not all.
  CHECK(nonempty > 100);
  const auto done = std::chrono::steady_clock::now();
  WARN("generated in " << std::chrono::duration_cast<std::chrono::milliseconds>(generated - started).count()
                       << " ms; 200 programs in "
                       << std::chrono::duration_cast<std::chrono::milliseconds>(done - generated).count()
                       << " ms, " << std::chrono::duration_cast<std::chrono::milliseconds>(in_store).count()
                       << " ms of them in the store's evaluation; bodies scanned " << bodies << "; programs selecting some but not all: " << nonempty
                       << "; header cache of all: " << big_stats.entries << " entries, " << big_stats.bytes
                       << " bytes, " << big_stats.hits << " hits, " << big_stats.misses << " misses; of a fifth: "
                       << small_stats.entries << " entries, " << small_stats.hits << " hits, " << small_stats.misses
                       << " misses, " << small_stats.evictions << " evictions");
}
