// text.cpp: folding, charset conversion (glibc iconv), RFC 2047 words, transfer decoding, header
// fields and Date: calendar dates for SEARCH. Everything here reads untrusted message bytes.
#include "store/search/text.hpp"

#include "store/mime/transfer.hpp"

#include <iconv.h>

#include <cerrno>
#include <cstring>

#include "common/ascii.hpp"
#include "store/mime/fields.hpp"

namespace store::search {

namespace {

using common::ascii::is_blank;
using common::ascii::is_digit;
using common::ascii::lower;

constexpr std::string_view kReplacement = "\xEF\xBF\xBD";  // U+FFFD



// CaseFolding.txt (statuses C and S) for the ranges text.hpp names.
uint32_t fold_cp(uint32_t c) {
  if (c < 0x80) return (c >= 'A' && c <= 'Z') ? c + 32 : c;
  if (c < 0x100) {
    if (c == 0xB5) return 0x3BC;                           // MICRO SIGN -> GREEK SMALL MU
    if (c >= 0xC0 && c <= 0xDE && c != 0xD7) return c + 32;  // Latin-1 capitals (not the multiplication sign)
    return c;
  }
  if (c < 0x180) {
    if ((c >= 0x100 && c <= 0x12F) || (c >= 0x132 && c <= 0x137) || (c >= 0x14A && c <= 0x177)) {
      return (c % 2 == 0) ? c + 1 : c;
    }
    if ((c >= 0x139 && c <= 0x148) || (c >= 0x179 && c <= 0x17E)) return (c % 2 == 1) ? c + 1 : c;
    if (c == 0x178) return 0xFF;  // Y WITH DIAERESIS
    if (c == 0x17F) return 's';   // LONG S
    return c;                     // U+0130 (dotted I) has only a Turkic and a full folding
  }
  if (c >= 0x370 && c < 0x400) {
    if (c == 0x386) return 0x3AC;
    if (c >= 0x388 && c <= 0x38A) return c + 37;
    if (c == 0x38C) return 0x3CC;
    if (c == 0x38E || c == 0x38F) return c + 63;
    if ((c >= 0x391 && c <= 0x3A1) || (c >= 0x3A3 && c <= 0x3AB)) return c + 32;
    if (c == 0x3C2) return 0x3C3;  // final sigma folds to sigma
    return c;
  }
  if (c >= 0x400 && c < 0x530) {
    if (c <= 0x40F) return c + 80;
    if (c <= 0x42F) return c + 32;
    if ((c >= 0x460 && c <= 0x481) || (c >= 0x48A && c <= 0x4BF) || (c >= 0x4D0 && c <= 0x52F)) {
      return (c % 2 == 0) ? c + 1 : c;
    }
    if (c == 0x4C0) return 0x4CF;
    if (c >= 0x4C1 && c <= 0x4CE) return (c % 2 == 1) ? c + 1 : c;
    return c;
  }
  if (c >= 0x1E00 && c <= 0x1EFF) {
    if (c <= 0x1E95 || c >= 0x1EA0) return (c % 2 == 0) ? c + 1 : c;
    if (c == 0x1E9B) return 0x1E61;
    if (c == 0x1E9E) return 0xDF;  // CAPITAL SHARP S
    return c;
  }
  return c;
}

// iconv names are tokens; anything else ("utf-8//IGNORE", a path) is not a charset a message may
// choose for us.
std::optional<std::string> charset_name(std::string_view raw) {
  raw = common::ascii::trim(raw);
  if (auto star = raw.find('*'); star != std::string_view::npos) raw = raw.substr(0, star);  // RFC 2231 language
  if (raw.empty() || raw.size() > 64) return std::nullopt;
  std::string name;
  for (char c : raw) {
    if (!(common::ascii::is_alnum(c) || c == '-' || c == '_' || c == '.' || c == ':' || c == '+')) return std::nullopt;
    name += lower(c);
  }
  return name;
}

bool passes_through(std::string_view name) {
  return name == "utf-8" || name == "utf8" || name == "us-ascii" || name == "ascii" || name == "ansi_x3.4-1968" ||
         name == "x-unknown" || name == "unknown-8bit";
}

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  return -1;
}

struct Word {
  std::string_view charset;
  char encoding;
  std::string_view text;
  size_t end;
};

// RFC 2047 §2: "=?" charset "?" encoding "?" encoded-text "?=" at v[at], no white space inside.
std::optional<Word> parse_word(std::string_view v, size_t at) {
  const size_t cs = at + 2;
  const size_t q1 = v.find('?', cs);
  if (q1 == std::string_view::npos || q1 == cs || q1 - cs > 64 || q1 + 2 >= v.size() || v[q1 + 2] != '?') {
    return std::nullopt;
  }
  const char enc = lower(v[q1 + 1]);
  if (enc != 'b' && enc != 'q') return std::nullopt;
  const size_t t = q1 + 3;
  const size_t end = v.find("?=", t);
  if (end == std::string_view::npos) return std::nullopt;
  Word w{v.substr(cs, q1 - cs), enc, v.substr(t, end - t), end + 2};
  for (char c : w.charset) {
    if (is_blank(c)) return std::nullopt;
  }
  for (char c : w.text) {
    if (is_blank(c)) return std::nullopt;
  }
  return w;
}

void decode_q(std::string_view text, std::string& out) {
  for (size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    if (c == '_') {
      out += ' ';
    } else if (c == '=' && i + 2 < text.size() && hex_value(text[i + 1]) >= 0 && hex_value(text[i + 2]) >= 0) {
      out += static_cast<char>(hex_value(text[i + 1]) * 16 + hex_value(text[i + 2]));
      i += 2;
    } else {
      out += c;
    }
  }
}

void skip_cfws(std::string_view s, size_t& i) {
  for (;;) {
    while (i < s.size() && (is_blank(s[i]) || s[i] == '\r' || s[i] == '\n')) ++i;
    if (i >= s.size() || s[i] != '(') return;
    // A comment (RFC 5322 §3.2.2), nested, with quoted pairs.
    size_t level = 0;
    while (i < s.size()) {
      const char c = s[i++];
      if (c == '\\' && i < s.size()) {
        ++i;
      } else if (c == '(') {
        ++level;
      } else if (c == ')' && --level == 0) {
        break;
      }
    }
  }
}

unsigned days_in_month(int64_t year, unsigned month) {
  static constexpr unsigned kDays[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
  const bool leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
  return month == 2 && leap ? 29 : kDays[month - 1];
}

}  // namespace


void fold_append(std::string_view s, std::string& out) {
  out.reserve(out.size() + s.size());
  const auto* p = reinterpret_cast<const unsigned char*>(s.data());
  size_t i = 0;
  while (i < s.size()) {
    if (p[i] < 0x80) {
      out += lower(s[i]);
      ++i;
      continue;
    }
    uint32_t cp;
    const size_t n = common::text::decode_utf8(s.substr(i), cp);
    if (n == 0) {
      out += s[i];
      ++i;
      continue;
    }
    const uint32_t f = fold_cp(cp);
    if (f == cp) {
      out.append(s.substr(i, n));
    } else {
      common::text::append_utf8(out, f);
    }
    i += n;
  }
}

std::string fold(std::string_view s) {
  std::string out;
  fold_append(s, out);
  return out;
}

// ---- charsets ----

struct Charsets::Converter {
  std::string name;
  iconv_t cd = reinterpret_cast<iconv_t>(-1);  // -1: iconv does not know it, the bytes pass through
  bool passthrough = false;
  Converter() = default;
  Converter(const Converter&) = delete;
  Converter& operator=(const Converter&) = delete;
  ~Converter() {
    if (cd != reinterpret_cast<iconv_t>(-1)) iconv_close(cd);
  }
};

namespace {
constexpr size_t kMaxCachedCharsets = 16;
}

Charsets::Charsets() = default;
Charsets::~Charsets() = default;

Charsets::Converter* Charsets::find(std::string_view charset) {
  for (const auto& c : cache_) {
    if (c->name == charset) return c.get();
  }
  // A message naming many charsets cannot grow the cache: the oldest converter goes.
  if (cache_.size() >= kMaxCachedCharsets) cache_.erase(cache_.begin());
  auto c = std::make_unique<Converter>();
  c->name = std::string(charset);
  c->passthrough = passes_through(c->name);
  if (!c->passthrough) {
    c->cd = iconv_open("UTF-8", c->name.c_str());
    if (c->cd == reinterpret_cast<iconv_t>(-1)) c->passthrough = true;
  }
  cache_.push_back(std::move(c));
  return cache_.back().get();
}

void Charsets::to_utf8(std::string_view charset, std::string_view bytes, std::string& out) {
  auto name = charset_name(charset);
  Converter* c = name ? find(*name) : nullptr;
  if (c == nullptr || c->passthrough) {
    out.append(bytes);
    return;
  }
  iconv(c->cd, nullptr, nullptr, nullptr, nullptr);  // the initial shift state (ISO-2022-JP and the like)
  char* in = const_cast<char*>(bytes.data());
  size_t in_left = bytes.size();
  char buf[4096];
  while (in_left > 0) {
    char* o = buf;
    size_t o_left = sizeof buf;
    const size_t r = iconv(c->cd, &in, &in_left, &o, &o_left);
    out.append(buf, static_cast<size_t>(o - buf));
    if (r != static_cast<size_t>(-1)) continue;
    if (errno == E2BIG) continue;
    out += kReplacement;
    if (errno == EILSEQ) {
      ++in;
      --in_left;
      continue;
    }
    break;  // EINVAL: a sequence cut short by the end of the text
  }
  char* o = buf;
  size_t o_left = sizeof buf;
  iconv(c->cd, nullptr, nullptr, &o, &o_left);
  out.append(buf, static_cast<size_t>(o - buf));
}

// ---- headers ----

std::string decode_header_value(std::string_view raw, Charsets& charsets) {
  const std::string v = mime::clean_value(raw);
  if (v.find("=?") == std::string::npos) return v;
  std::string out;
  out.reserve(v.size());
  std::string word_charset, word_bytes;
  bool have_word = false;   // bytes of encoded words waiting for conversion
  bool after_word = false;  // only white space since the last encoded word
  std::string blanks;       // that white space: dropped if another word follows (RFC 2047 §6.2)
  auto flush = [&] {
    if (!have_word) return;
    charsets.to_utf8(word_charset, word_bytes, out);
    word_bytes.clear();
    have_word = false;
  };
  size_t i = 0;
  while (i < v.size()) {
    if (v[i] == '=' && i + 1 < v.size() && v[i + 1] == '?') {
      if (auto w = parse_word(v, i)) {
        blanks.clear();
        const std::string charset = common::ascii::lowered(w->charset.substr(0, w->charset.find('*')));
        if (have_word && charset != word_charset) flush();
        word_charset = charset;
        have_word = true;
        if (w->encoding == 'b') {
          word_bytes += decode_base64(w->text);
        } else {
          decode_q(w->text, word_bytes);
        }
        after_word = true;
        i = w->end;
        continue;
      }
    }
    if (after_word && is_blank(v[i])) {
      blanks += v[i++];
      continue;
    }
    flush();
    out += blanks;
    blanks.clear();
    after_word = false;
    out += v[i++];
  }
  flush();
  out += blanks;
  return out;
}

void for_each_field(std::string_view header, const std::function<void(std::string_view, std::string_view)>& fn) {
  std::string_view name;
  size_t value_start = 0, value_end = 0;
  bool open = false;
  size_t pos = 0;
  while (pos < header.size()) {
    size_t nl = header.find('\n', pos);
    const size_t line_end = nl == std::string_view::npos ? header.size() : nl;
    std::string_view content = header.substr(pos, line_end - pos);
    if (!content.empty() && content.back() == '\r') content.remove_suffix(1);
    const size_t line_start = pos;
    pos = nl == std::string_view::npos ? header.size() : nl + 1;
    if (content.empty()) break;  // the end of the header
    if (is_blank(content[0])) {
      if (open) value_end = line_end;
      continue;
    }
    if (open) fn(name, header.substr(value_start, value_end - value_start));
    open = false;
    const size_t colon = content.find(':');
    if (colon == std::string_view::npos) continue;
    std::string_view n = content.substr(0, colon);
    while (!n.empty() && is_blank(n.back())) n.remove_suffix(1);  // "Subject :" (RFC 5322 §4.5)
    bool valid = !n.empty();
    for (char c : n) {
      const auto u = static_cast<unsigned char>(c);
      if (u < 33 || u > 126) valid = false;
    }
    if (!valid) continue;
    name = n;
    value_start = line_start + colon + 1;
    value_end = line_end;
    open = true;
  }
  if (open) fn(name, header.substr(value_start, value_end - value_start));
}

// ---- bodies ----

std::string decode_transfer(std::string_view in, mime::Encoding encoding) {
  // A part in an encoding nobody can decode is searched as it is stored.
  auto decoded = mime::decode_transfer(in, encoding);
  return decoded ? std::move(*decoded) : std::string(in);
}

// ---- dates ----

int32_t days_from_civil(int64_t y, unsigned m, unsigned d) {
  y -= m <= 2;
  const int64_t era = (y >= 0 ? y : y - 399) / 400;
  const auto yoe = static_cast<unsigned>(y - era * 400);
  const unsigned doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
  const unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
  return static_cast<int32_t>(era * 146097 + static_cast<int64_t>(doe) - 719468);
}

int32_t utc_day(int64_t t) {
  int64_t d = t / 86400;
  if (t % 86400 < 0) --d;
  return static_cast<int32_t>(d);
}

std::optional<int32_t> parse_date_day(std::string_view s) {
  static constexpr std::string_view kMonths[] = {"jan", "feb", "mar", "apr", "may", "jun",
                                                 "jul", "aug", "sep", "oct", "nov", "dec"};
  size_t i = 0;
  skip_cfws(s, i);
  if (i < s.size() && common::ascii::is_alpha(s[i])) {  // day-of-week, not checked against the date
    while (i < s.size() && common::ascii::is_alpha(s[i])) ++i;
    skip_cfws(s, i);
    if (i < s.size() && s[i] == ',') ++i;
    skip_cfws(s, i);
  }
  auto number = [&](size_t min_digits, size_t max_digits, unsigned& value, size_t& digits) {
    value = 0;
    digits = 0;
    while (i < s.size() && is_digit(s[i])) {
      if (++digits > max_digits) return false;
      value = value * 10 + static_cast<unsigned>(s[i++] - '0');
    }
    return digits >= min_digits;
  };
  auto separator = [&] {
    skip_cfws(s, i);
    if (i < s.size() && s[i] == '-') ++i;  // "1-Jul-2003", as some mailers write it
    skip_cfws(s, i);
  };
  unsigned day = 0, year = 0;
  size_t digits = 0;
  if (!number(1, 2, day, digits)) return std::nullopt;
  separator();
  const size_t month_start = i;
  while (i < s.size() && common::ascii::is_alpha(s[i])) ++i;
  if (i - month_start < 3) return std::nullopt;
  const std::string month_name = common::ascii::lowered(s.substr(month_start, 3));
  unsigned month = 0;
  for (unsigned m = 0; m < 12; ++m) {
    if (month_name == kMonths[m]) month = m + 1;
  }
  if (month == 0) return std::nullopt;
  separator();
  if (!number(2, 4, year, digits)) return std::nullopt;
  if (i < s.size() && !(is_blank(s[i]) || s[i] == '\r' || s[i] == '\n' || s[i] == '(')) return std::nullopt;
  // RFC 5322 §4.3: two digits are 1950-2049, three digits add 1900.
  if (digits == 2) year += year < 50 ? 2000 : 1900;
  else if (digits == 3) year += 1900;
  if (day < 1 || day > days_in_month(year, month)) return std::nullopt;
  return days_from_civil(year, month, day);
}

}  // namespace store::search
