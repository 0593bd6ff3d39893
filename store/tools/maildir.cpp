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

Result<std::optional<std::string>> folder_mailbox(std::string_view dir_name, std::string_view prefix) {
  if (dir_name.size() < 2 || dir_name.front() != '.' || dir_name == "..") return std::optional<std::string>{};
  std::string name(prefix);
  std::string_view rest = dir_name.substr(1);
  while (true) {
    const size_t dot = rest.find('.');
    const std::string_view level = rest.substr(0, dot);
    if (level.empty()) return std::optional<std::string>{};
    auto decoded = common::text::mutf7_decode(level);
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
    auto encoded = common::text::mutf7_encode(level);
    if (!encoded) {
      return fail(ErrorKind::Protocol, "mailbox " + std::string(mailbox.substr(0, 200)) + ": " + encoded.error().detail);
    }
    out += "." + *encoded;
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
      auto level = common::text::mutf7_decode(line.substr(0, d));
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
