// encode.cpp: IMAP response syntax (encode.hpp).
#include "mmp/imap/encode.hpp"

#include <algorithm>
#include <cstdio>

#include "common/ascii.hpp"
#include "common/text/utf8.hpp"
#include "mmp/imap/mutf7.hpp"

namespace mmp::imap {

namespace {

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

void append_number(std::string& out, uint64_t n) { out += std::to_string(n); }

// Hinnant's civil_from_days: days since 1970-01-01 to y-m-d.
void civil_from_days(int64_t z, int64_t& y, unsigned& m, unsigned& d) {
  z += 719468;
  const int64_t era = (z >= 0 ? z : z - 146096) / 146097;
  const auto doe = static_cast<unsigned>(z - era * 146097);
  const unsigned yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
  y = static_cast<int64_t>(yoe) + era * 400;
  const unsigned doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
  const unsigned mp = (5 * doy + 2) / 153;
  d = doy - (153 * mp + 2) / 5 + 1;
  m = mp < 10 ? mp + 3 : mp - 9;
  y += m <= 2;
}

bool valid_flag(std::string_view f) {
  if (f == "\\*") return true;  // RFC 9051 flag-perm: PERMANENTFLAGS says new keywords may be stored
  if (!f.empty() && f[0] == '\\') f.remove_prefix(1);
  return !f.empty() && std::all_of(f.begin(), f.end(), atom_char);
}

}  // namespace

bool can_quote(std::string_view s, bool utf8) {
  bool eight_bit = false;
  for (char ch : s) {
    const auto c = static_cast<unsigned char>(ch);
    if (c == 0 || c == '\r' || c == '\n') return false;
    if (c >= 0x80) eight_bit = true;
  }
  return !eight_bit || (utf8 && common::text::valid_utf8(s));
}

void append_quoted(std::string& out, std::string_view s) {
  out += '"';
  for (char c : s) {
    if (c == '"' || c == '\\') out += '\\';
    out += c;
  }
  out += '"';
}

void append_literal(std::string& out, std::string_view s) {
  out += '{';
  append_number(out, s.size());
  out += "}\r\n";
  out.append(s);
}

void append_literal8(std::string& out, std::string_view s) {
  out += '~';
  append_literal(out, s);
}

void append_string(std::string& out, std::string_view s, bool utf8) {
  if (s.size() <= kMaxQuoted && can_quote(s, utf8)) {
    append_quoted(out, s);
  } else {
    append_literal(out, s);
  }
}

void append_astring(std::string& out, std::string_view s, bool utf8) {
  if (!s.empty() && std::all_of(s.begin(), s.end(), astring_char) && !common::ascii::iequals(s, "NIL")) {
    out.append(s);
  } else {
    append_string(out, s, utf8);
  }
}

void append_nstring(std::string& out, std::optional<std::string_view> s, bool utf8) {
  if (!s) {
    out += "NIL";
  } else {
    append_string(out, *s, utf8);
  }
}

void append_mailbox(std::string& out, std::string_view name, bool utf8) {
  if (common::ascii::iequals(name, "INBOX")) {
    out += "INBOX";
    return;
  }
  append_astring(out, mailbox_to_wire(name, utf8), utf8);
}

void append_flag_list(std::string& out, std::span<const std::string> flags) {
  out += '(';
  bool first = true;
  for (const auto& f : flags) {
    if (!valid_flag(f)) continue;
    if (!first) out += ' ';
    out += f;
    first = false;
  }
  out += ')';
}

void append_sequence_set(std::string& out, std::span<const SeqRange> ranges) {
  bool first = true;
  for (const auto& r : ranges) {
    if (!first) out += ',';
    first = false;
    append_number(out, r.first);
    if (r.last != r.first) {
      out += ':';
      append_number(out, r.last);
    }
  }
}

void append_number_set(std::string& out, std::span<const uint32_t> ascending) {
  size_t i = 0;
  bool first = true;
  while (i < ascending.size()) {
    size_t j = i;
    while (j + 1 < ascending.size() && ascending[j + 1] == ascending[j] + uint64_t{1}) ++j;
    if (!first) out += ',';
    first = false;
    append_number(out, ascending[i]);
    if (j > i) {
      out += ':';
      append_number(out, ascending[j]);
    }
    i = j + 1;
  }
}

void append_date_time(std::string& out, int64_t t) {
  static constexpr const char* kMonths[] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                            "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
  int64_t days = t / 86400;
  int64_t secs = t % 86400;
  if (secs < 0) {
    secs += 86400;
    --days;
  }
  int64_t y;
  unsigned m, d;
  civil_from_days(days, y, m, d);
  // date-year is 4DIGIT: out-of-range times are clamped to what the syntax can say.
  y = std::clamp<int64_t>(y, 0, 9999);
  char buf[40];
  std::snprintf(buf, sizeof buf, "\"%02u-%s-%04lld %02lld:%02lld:%02lld +0000\"", d, kMonths[m - 1],
                static_cast<long long>(y), static_cast<long long>(secs / 3600), static_cast<long long>(secs / 60 % 60),
                static_cast<long long>(secs % 60));
  out += buf;
}

void append_section_name(std::string& out, const BodySection& b, bool utf8) {
  switch (b.item) {
    case BodySection::Item::Rfc822: out += "RFC822"; return;
    case BodySection::Item::Rfc822Header: out += "RFC822.HEADER"; return;
    case BodySection::Item::Rfc822Text: out += "RFC822.TEXT"; return;
    case BodySection::Item::Body: out += "BODY["; break;
    case BodySection::Item::Binary: out += "BINARY["; break;
    case BodySection::Item::BinarySize: out += "BINARY.SIZE["; break;
  }
  const Section& s = b.section;
  for (size_t i = 0; i < s.part.size(); ++i) {
    if (i > 0) out += '.';
    append_number(out, s.part[i]);
  }
  const char* text = nullptr;
  switch (s.text) {
    case Section::Text::Full: break;
    case Section::Text::Header: text = "HEADER"; break;
    case Section::Text::Text: text = "TEXT"; break;
    case Section::Text::Mime: text = "MIME"; break;
    case Section::Text::HeaderFields: text = "HEADER.FIELDS"; break;
    case Section::Text::HeaderFieldsNot: text = "HEADER.FIELDS.NOT"; break;
  }
  if (text != nullptr) {
    if (!s.part.empty()) out += '.';
    out += text;
  }
  if (s.text == Section::Text::HeaderFields || s.text == Section::Text::HeaderFieldsNot) {
    out += " (";
    for (size_t i = 0; i < s.fields.size(); ++i) {
      if (i > 0) out += ' ';
      append_astring(out, s.fields[i], utf8);
    }
    out += ')';
  }
  out += ']';
  if (b.partial) {
    out += '<';
    append_number(out, b.partial->offset);
    out += '>';
  }
}

std::string sanitize_text(std::string_view text, bool utf8) {
  std::string out;
  out.reserve(text.size());
  for (size_t i = 0; i < text.size();) {
    const auto c = static_cast<unsigned char>(text[i]);
    if (c >= 0x80) {
      uint32_t cp;
      const size_t n = utf8 ? common::text::decode_utf8(text.substr(i), cp) : 0;
      if (n > 0) {
        out.append(text.substr(i, n));
        i += n;
      } else {
        out += '?';
        ++i;
      }
      continue;
    }
    out += (c < 0x20 || c == 0x7f) ? ' ' : static_cast<char>(c);
    ++i;
  }
  size_t start = 0;
  while (start < out.size() && out[start] == '[') ++start;
  return out.substr(start);
}

std::string status_line(std::string_view tag, Condition condition, std::string_view code, std::string_view text,
                        bool utf8) {
  std::string out;
  out.reserve(tag.size() + code.size() + text.size() + 16);
  out.append(tag);
  out += ' ';
  out += condition_name(condition);
  if (!code.empty()) {
    out += " [";
    out += sanitize_text(code, false);
    out += ']';
  }
  std::string clean = sanitize_text(text, utf8);
  if (clean.empty()) clean = condition == Condition::Ok ? "done" : "failed";  // resp-text needs text after a code
  out += ' ';
  out += clean;
  out += "\r\n";
  return out;
}

std::string continuation(std::string_view text) {
  std::string out = "+ ";
  out += sanitize_text(text, false);
  out += "\r\n";
  return out;
}

std::string parse_error_line(const ParseError& e) {
  return status_line(e.tag.empty() ? std::string_view("*") : std::string_view(e.tag), e.condition, e.code, e.text);
}

}  // namespace mmp::imap
