// maildir.cpp: Maildir file names, dovecot-keywords, dovecot-uidlist and folder names (maildir.hpp).
#include "store/tools/maildir.hpp"

#include <algorithm>
#include <charconv>

#include "common/ascii.hpp"
#include "common/text/utf8.hpp"
#include "store/storage/schema.hpp"

namespace store::tools::maildir {
namespace {

using common::ErrorKind;
using common::fail;
using common::Result;

// The flag letters and their bits, in the ASCII order a file name lists them.
struct FlagLetter {
  char letter;
  uint32_t bit;
};
constexpr FlagLetter kFlagLetters[] = {
    {'D', kDraft}, {'F', kFlagged}, {'R', kAnswered}, {'S', kSeen}, {'T', kDeleted},
};

bool parse_u32(std::string_view s, uint32_t& out) {
  if (s.empty()) return false;
  const auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), out);
  return ec == std::errc{} && end == s.data() + s.size();
}

std::vector<std::string_view> split_lines(std::string_view text) {
  std::vector<std::string_view> out;
  while (!text.empty()) {
    const size_t nl = text.find('\n');
    std::string_view line = text.substr(0, nl);
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    out.push_back(line);
    if (nl == std::string_view::npos) break;
    text.remove_prefix(nl + 1);
  }
  return out;
}

constexpr char kBase64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+,";

int base64_value(char c) {
  if (c >= 'A' && c <= 'Z') return c - 'A';
  if (c >= 'a' && c <= 'z') return c - 'a' + 26;
  if (c >= '0' && c <= '9') return c - '0' + 52;
  if (c == '+') return 62;
  if (c == ',') return 63;
  return -1;
}


// One code point of valid UTF-8 at `i` (advanced past it); a malformed byte counts as itself.
uint32_t next_code_point(std::string_view s, size_t& i) {
  const auto b = static_cast<unsigned char>(s[i]);
  size_t len = b < 0x80 ? 1 : (b >> 5) == 6 ? 2 : (b >> 4) == 14 ? 3 : (b >> 3) == 30 ? 4 : 1;
  if (i + len > s.size()) len = 1;
  uint32_t cp = len == 1 ? b : len == 2 ? (b & 0x1f) : len == 3 ? (b & 0x0f) : (b & 0x07);
  for (size_t k = 1; k < len; ++k) cp = (cp << 6) | (static_cast<unsigned char>(s[i + k]) & 0x3f);
  i += len;
  return cp;
}

bool printable(uint32_t c) { return c >= 0x20 && c <= 0x7e; }

void flush_run(std::string& out, const std::vector<uint16_t>& units) {
  out.push_back('&');
  uint32_t bits = 0;
  int nbits = 0;
  for (uint16_t u : units) {
    for (int shift = 8; shift >= 0; shift -= 8) {
      bits = (bits << 8) | ((u >> shift) & 0xff);
      nbits += 8;
      while (nbits >= 6) {
        out.push_back(kBase64[(bits >> (nbits - 6)) & 0x3f]);
        nbits -= 6;
      }
    }
  }
  if (nbits > 0) out.push_back(kBase64[(bits << (6 - nbits)) & 0x3f]);
  out.push_back('-');
}

// Leading decimal digits, and what follows them.
uint64_t leading_number(std::string_view& s) {
  uint64_t n = 0;
  while (!s.empty() && common::ascii::is_digit(s.front())) {
    n = n * 10 + static_cast<uint64_t>(s.front() - '0');
    s.remove_prefix(1);
  }
  return n;
}

// The microseconds of "<secs>.<...M<usecs>...>.<host>", after the seconds.
std::optional<uint64_t> usecs_of(std::string_view rest) {
  if (rest.empty() || rest.front() != '.') return std::nullopt;
  rest.remove_prefix(1);
  while (!rest.empty() && rest.front() != '.' && rest.front() != ':') {
    const char c = rest.front();
    rest.remove_prefix(1);
    if (c == 'M') return leading_number(rest);
  }
  return std::nullopt;
}

}  // namespace

FileName parse_file_name(std::string_view name) {
  FileName out;
  out.base = std::string(name.substr(0, name.find(':')));
  const size_t colon = name.rfind(':');
  if (colon == std::string_view::npos) return out;
  std::string_view info = name.substr(colon + 1);
  if (!info.starts_with("2,")) return out;
  info.remove_prefix(2);
  // A second "," starts another flag set, which no one defines: ignored, as Dovecot does.
  info = info.substr(0, info.find(','));
  for (char c : info) {
    bool known = false;
    for (const auto& f : kFlagLetters) {
      if (c == f.letter) {
        out.flags |= f.bit;
        known = true;
      }
    }
    if (known) continue;
    if (c == 'P') {
      out.passed = true;
    } else if (c >= 'a' && c <= 'z') {
      if (out.keyword_letters.find(c) == std::string::npos) out.keyword_letters.push_back(c);
    } else if (out.unknown_flags.find(c) == std::string::npos) {
      out.unknown_flags.push_back(c);
    }
  }
  return out;
}

std::string make_file_name(std::string_view base, uint32_t flags, bool passed, std::string_view keyword_letters) {
  std::string out(base);
  out += ":2,";
  for (const auto& f : kFlagLetters) {
    if (f.letter > 'P' && passed) {
      out.push_back('P');
      passed = false;
    }
    if (flags & f.bit) out.push_back(f.letter);
  }
  if (passed) out.push_back('P');
  std::string letters;
  for (char c : keyword_letters) {
    if (c >= 'a' && c <= 'z' && letters.find(c) == std::string::npos) letters.push_back(c);
  }
  std::sort(letters.begin(), letters.end());
  return out + letters;
}

std::optional<uint64_t> size_field(std::string_view base, char key) {
  const std::string marker = std::string(",") + key + "=";
  const size_t at = base.find(marker);
  if (at == std::string_view::npos) return std::nullopt;
  std::string_view rest = base.substr(at + marker.size());
  if (rest.empty() || !common::ascii::is_digit(rest.front())) return std::nullopt;
  const uint64_t n = leading_number(rest);
  if (!rest.empty() && rest.front() != ',' && rest.front() != ':') return std::nullopt;
  return n;
}

bool sorts_before(std::string_view a, std::string_view b) {
  std::string_view ra = a, rb = b;
  const uint64_t sa = leading_number(ra), sb = leading_number(rb);
  if (sa != sb) return sa < sb;
  const auto ua = usecs_of(ra), ub = usecs_of(rb);
  if (ua && ub && *ua != *ub) return *ua < *ub;
  return a.substr(0, a.find(':')) < b.substr(0, b.find(':'));
}

std::vector<std::string> parse_keywords(std::string_view text) {
  std::vector<std::string> out(kMaxKeywordLetters);
  for (std::string_view line : split_lines(text)) {
    const size_t sp = line.find(' ');
    if (sp == std::string_view::npos) continue;
    uint32_t index = 0;
    if (!parse_u32(line.substr(0, sp), index) || index >= kMaxKeywordLetters) continue;
    const std::string_view name = line.substr(sp + 1);
    if (name.empty()) continue;
    out[index] = std::string(name);
  }
  return out;
}

std::string format_keywords(const std::vector<std::string>& by_letter) {
  std::string out;
  for (size_t i = 0; i < by_letter.size() && i < kMaxKeywordLetters; ++i) {
    if (!by_letter[i].empty()) out += std::to_string(i) + " " + by_letter[i] + "\n";
  }
  return out;
}

Result<UidList> parse_uidlist(std::string_view text) {
  const auto lines = split_lines(text);
  if (lines.empty() || lines[0].empty()) return fail(ErrorKind::Protocol, "dovecot-uidlist: no header line");
  UidList out;
  const std::string_view header = lines[0];
  int version = 0;
  if (header.starts_with("3 ") || header == "3") {
    version = 3;
    std::string_view fields = header.substr(1);
    while (!fields.empty()) {
      while (!fields.empty() && fields.front() == ' ') fields.remove_prefix(1);
      if (fields.empty()) break;
      const size_t end = fields.find(' ');
      const std::string_view field = fields.substr(0, end);
      fields = end == std::string_view::npos ? std::string_view{} : fields.substr(end);
      uint32_t* target = field[0] == 'V' ? &out.uidvalidity : field[0] == 'N' ? &out.next_uid : nullptr;
      if (target && !parse_u32(field.substr(1), *target)) {
        return fail(ErrorKind::Protocol, "dovecot-uidlist: bad header field '" + std::string(field.substr(0, 40)) + "'");
      }
    }
  } else if (header.starts_with("1 ")) {
    version = 1;
    const std::string_view rest = header.substr(2);
    const size_t sp = rest.find(' ');
    if (sp == std::string_view::npos || !parse_u32(rest.substr(0, sp), out.uidvalidity) ||
        !parse_u32(rest.substr(sp + 1), out.next_uid)) {
      return fail(ErrorKind::Protocol, "dovecot-uidlist: bad version 1 header");
    }
  } else {
    return fail(ErrorKind::Protocol, "dovecot-uidlist: unknown version in header '" +
                                         std::string(header.substr(0, 40)) + "' (versions 1 and 3 are read)");
  }
  uint32_t previous = 0;
  for (size_t i = 1; i < lines.size(); ++i) {
    std::string_view line = lines[i];
    if (line.empty()) continue;
    const std::string where = "dovecot-uidlist line " + std::to_string(i + 1) + ": ";
    const size_t sp = line.find(' ');
    UidList::Entry entry;
    if (sp == std::string_view::npos || !parse_u32(line.substr(0, sp), entry.uid) || entry.uid == 0 ||
        entry.uid == UINT32_MAX) {
      return fail(ErrorKind::Protocol, where + "no UID");
    }
    if (entry.uid <= previous) return fail(ErrorKind::Protocol, where + "UIDs not ascending");
    previous = entry.uid;
    line.remove_prefix(sp + 1);
    if (version == 3) {
      // Extension fields ("W1234", "S1234", ...) up to the ':' that starts the file name.
      const size_t colon = line.find(':');
      if (colon == std::string_view::npos) return fail(ErrorKind::Protocol, where + "no ':' before the file name");
      line.remove_prefix(colon + 1);
    } else {
      while (!line.empty() && line.front() == ' ') line.remove_prefix(1);
    }
    if (line.empty() || line.find('/') != std::string_view::npos) {
      return fail(ErrorKind::Protocol, where + "bad file name");
    }
    entry.base = std::string(line.substr(0, line.find(':')));
    if (entry.base.empty()) return fail(ErrorKind::Protocol, where + "bad file name");
    out.entries.push_back(std::move(entry));
  }
  return out;
}

std::string format_uidlist(uint32_t uidvalidity, uint32_t next_uid, const std::vector<UidListLine>& lines) {
  std::string out = "3 V" + std::to_string(uidvalidity) + " N" + std::to_string(next_uid) + "\n";
  for (const auto& l : lines) {
    out += std::to_string(l.uid);
    if (l.vsize != 0) out += " W" + std::to_string(l.vsize);
    out += " :" + l.base + "\n";
  }
  return out;
}

Result<std::string> mutf7_decode(std::string_view in) {
  std::string out;
  for (size_t i = 0; i < in.size();) {
    const auto c = static_cast<unsigned char>(in[i]);
    if (!printable(c)) return fail(ErrorKind::Protocol, "not modified UTF-7: a byte outside printable ASCII");
    if (c != '&') {
      out.push_back(static_cast<char>(c));
      ++i;
      continue;
    }
    const size_t end = in.find('-', i + 1);
    if (end == std::string_view::npos) return fail(ErrorKind::Protocol, "not modified UTF-7: '&' run without '-'");
    if (end == i + 1) {
      out.push_back('&');
      i = end + 1;
      continue;
    }
    uint32_t bits = 0;
    int nbits = 0;
    std::vector<uint16_t> units;
    for (size_t k = i + 1; k < end; ++k) {
      const int v = base64_value(in[k]);
      if (v < 0) return fail(ErrorKind::Protocol, "not modified UTF-7: bad base64 character");
      bits = (bits << 6) | static_cast<uint32_t>(v);
      nbits += 6;
      if (nbits >= 16) {
        units.push_back(static_cast<uint16_t>((bits >> (nbits - 16)) & 0xffff));
        nbits -= 16;
      }
    }
    // What is left must be padding: fewer than 6 bits, all zero.
    if (nbits >= 6 || (bits & ((1u << nbits) - 1)) != 0) {
      return fail(ErrorKind::Protocol, "not modified UTF-7: a run that does not end on a UTF-16 unit");
    }
    for (size_t k = 0; k < units.size(); ++k) {
      uint32_t cp = units[k];
      if (cp >= 0xd800 && cp <= 0xdbff) {
        if (k + 1 >= units.size() || units[k + 1] < 0xdc00 || units[k + 1] > 0xdfff) {
          return fail(ErrorKind::Protocol, "not modified UTF-7: an unpaired surrogate");
        }
        cp = 0x10000 + ((cp - 0xd800) << 10) + (units[++k] - 0xdc00);
      } else if (cp >= 0xdc00 && cp <= 0xdfff) {
        return fail(ErrorKind::Protocol, "not modified UTF-7: an unpaired surrogate");
      } else if (printable(cp)) {
        return fail(ErrorKind::Protocol, "not modified UTF-7: printable ASCII encoded in a run");
      }
      common::text::append_utf8(out, cp);
    }
    i = end + 1;
  }
  return out;
}

std::string mutf7_encode(std::string_view utf8) {
  std::string out;
  std::vector<uint16_t> run;
  for (size_t i = 0; i < utf8.size();) {
    const uint32_t cp = next_code_point(utf8, i);
    if (printable(cp)) {
      if (!run.empty()) {
        flush_run(out, run);
        run.clear();
      }
      out += cp == '&' ? std::string("&-") : std::string(1, static_cast<char>(cp));
      continue;
    }
    if (cp >= 0x10000) {
      run.push_back(static_cast<uint16_t>(0xd800 + ((cp - 0x10000) >> 10)));
      run.push_back(static_cast<uint16_t>(0xdc00 + ((cp - 0x10000) & 0x3ff)));
    } else {
      run.push_back(static_cast<uint16_t>(cp));
    }
  }
  if (!run.empty()) flush_run(out, run);
  return out;
}

Result<std::optional<std::string>> folder_mailbox(std::string_view dir_name, std::string_view prefix) {
  if (dir_name.size() < 2 || dir_name.front() != '.' || dir_name == "..") return std::optional<std::string>{};
  std::string name(prefix);
  std::string_view rest = dir_name.substr(1);
  while (true) {
    const size_t dot = rest.find('.');
    const std::string_view level = rest.substr(0, dot);
    if (level.empty()) return std::optional<std::string>{};
    auto decoded = mutf7_decode(level);
    if (!decoded) {
      return fail(ErrorKind::Protocol, "folder " + std::string(dir_name.substr(0, 200)) + ": " + decoded.error().detail);
    }
    if (!name.empty()) name.push_back('/');
    name += *decoded;
    if (dot == std::string_view::npos) break;
    rest.remove_prefix(dot + 1);
  }
  return std::optional<std::string>{std::move(name)};
}

Result<std::string> mailbox_folder(std::string_view mailbox) {
  std::string out;
  std::string_view rest = mailbox;
  while (true) {
    const size_t slash = rest.find('/');
    const std::string_view level = rest.substr(0, slash);
    if (level.find('.') != std::string_view::npos) {
      return fail(ErrorKind::Protocol, "mailbox " + std::string(mailbox.substr(0, 200)) +
                                           " has a '.' in a level, which Maildir++ uses as its delimiter");
    }
    out += "." + mutf7_encode(level);
    if (slash == std::string_view::npos) break;
    rest.remove_prefix(slash + 1);
  }
  return out;
}

Result<std::vector<std::string>> parse_subscriptions(std::string_view text) {
  auto lines = split_lines(text);
  size_t first = 0;
  char delimiter = '.';
  if (!lines.empty() && lines[0] == "V\t2") {
    delimiter = '\t';
    first = 1;
    while (first < lines.size() && !lines[first].empty()) ++first;  // header fields up to the empty line
  }
  std::vector<std::string> out;
  for (size_t i = first; i < lines.size(); ++i) {
    std::string_view line = lines[i];
    if (line.empty()) continue;
    std::string name;
    for (bool first_level = true;; first_level = false) {
      const size_t d = line.find(delimiter);
      auto level = mutf7_decode(line.substr(0, d));
      if (!level) {
        return fail(ErrorKind::Protocol, "subscriptions line " + std::to_string(i + 1) + ": " + level.error().detail);
      }
      if (!first_level) name.push_back('/');
      name += *level;
      if (d == std::string_view::npos) break;
      line.remove_prefix(d + 1);
    }
    out.push_back(std::move(name));
  }
  return out;
}

std::string imap_line_ends(std::string&& file_bytes) {
  if (file_bytes.find('\r') != std::string::npos) return std::move(file_bytes);
  const size_t lfs = static_cast<size_t>(std::count(file_bytes.begin(), file_bytes.end(), '\n'));
  if (lfs == 0) return std::move(file_bytes);
  std::string out;
  out.reserve(file_bytes.size() + lfs);
  for (char c : file_bytes) {
    if (c == '\n') out.push_back('\r');
    out.push_back(c);
  }
  return out;
}

uint64_t crlf_size(std::string_view bytes) {
  uint64_t n = bytes.size();
  for (size_t i = 0; i < bytes.size(); ++i) {
    if (bytes[i] == '\n' && (i == 0 || bytes[i - 1] != '\r')) ++n;
  }
  return n;
}

}  // namespace store::tools::maildir
