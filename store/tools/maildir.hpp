// maildir.hpp: the Maildir conventions postern-storectl reads and writes, as Dovecot keeps them:
// file-name info flags (":2,DFPRST" and keyword letters), dovecot-keywords, dovecot-uidlist, and
// Maildir++ folder names (".Folder.Sub", levels in modified UTF-7). Pure: strings in, values out.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/result.hpp"
#include "common/text/mutf7.hpp"

namespace store::tools::maildir {

// The keyword an info "P" (passed: resent, forwarded or bounced, cr.yp.to/proto/maildir.html)
// becomes: IMAP has no such flag, and "$Forwarded" is the keyword clients use for it (RFC 5788).
inline constexpr std::string_view kForwardedKeyword = "$Forwarded";
// dovecot-keywords maps at most the 26 letters a..z.
inline constexpr size_t kMaxKeywordLetters = 26;

// What a file name carries. The base is everything before the first ':' (Dovecot keys
// dovecot-uidlist by it, so a flag change that renames the file keeps its UID); the info is after
// the last ':' and only the "2," form has flags.
struct FileName {
  std::string base;
  uint32_t flags = 0;            // store::Flag bits from D F R S T
  bool passed = false;           // P
  std::string keyword_letters;   // a..z as they appear, distinct
  std::string unknown_flags;     // other characters of the "2," flag set (kept out of IMAP)
};
FileName parse_file_name(std::string_view name);

// base + ":2," + the flag letters in ASCII order (D F P R S T, then keyword letters sorted), the
// order Dovecot writes and expects.
std::string make_file_name(std::string_view base, uint32_t flags, bool passed, std::string_view keyword_letters);

// The sizes Dovecot reads from a base name (",S=<file size>", ",W=<size with CRLF line ends>").
std::optional<uint64_t> size_field(std::string_view base, char key);

// Dovecot's order for files it has not numbered yet: the leading seconds of the name, then the
// microseconds of an "M<usecs>" in its second part, then the base names.
bool sorts_before(std::string_view a, std::string_view b);

// dovecot-keywords: lines "<index> <name>", index 0..25 being the letter 'a' + index. Lines that
// do not parse are skipped, as Dovecot does. Returns 26 names, "" where a letter is unassigned.
std::vector<std::string> parse_keywords(std::string_view text);
std::string format_keywords(const std::vector<std::string>& by_letter);

// dovecot-uidlist, version 3 ("3 V<uidvalidity> N<nextuid> G<guid>", then "<uid> [<key><value>
// ...] :<file name>") or version 1 ("1 <uidvalidity> <nextuid>", then "<uid> <file name>").
struct UidList {
  uint32_t uidvalidity = 0;  // 0: absent
  uint32_t next_uid = 0;
  struct Entry {
    uint32_t uid = 0;
    std::string base;  // the file name up to its first ':'
  };
  std::vector<Entry> entries;  // ascending UIDs
};
// ErrorKind::Protocol naming the line for a header or record that is not one of those forms or a
// UID that does not grow: a uidlist we cannot trust is refused rather than half-used.
common::Result<UidList> parse_uidlist(std::string_view text);
// Version 3, with "W<vsize>" when given (non-zero) so Dovecot need not read the file for its size.
struct UidListLine {
  uint32_t uid = 0;
  uint64_t vsize = 0;
  std::string base;
};
std::string format_uidlist(uint32_t uidvalidity, uint32_t next_uid, const std::vector<UidListLine>& lines);

// RFC 3501 §5.1.3 modified UTF-7 <-> UTF-8: the strict codec the mmp uses too.
using common::text::mutf7_decode;
using common::text::mutf7_encode;

// A Maildir++ folder directory (".A.B") as a mailbox name ("A/B"), each level decoded from
// modified UTF-7; nullopt for a directory that is not a folder ("." , "..", no leading '.', an
// empty level). `prefix` (if not empty) goes in front: "Work" + ".A" is "Work/A".
common::Result<std::optional<std::string>> folder_mailbox(std::string_view dir_name, std::string_view prefix);
// The other way, for a mailbox name whose levels contain no '.' (ErrorKind::Protocol otherwise).
common::Result<std::string> mailbox_folder(std::string_view mailbox);

// Dovecot's "subscriptions" file in the Maildir root: version 2 ("V\t2", an empty line, then one
// name a line with TAB between levels) or version 1 (a name a line, '.' between levels, the
// Maildir++ delimiter). Names come back as mailbox names ("Work/Sub", levels decoded from
// modified UTF-7); a line that does not decode is ErrorKind::Protocol.
common::Result<std::vector<std::string>> parse_subscriptions(std::string_view text);

// Line ends: a Maildir file as Dovecot and Postfix write it has LF line ends, and IMAP serves
// CRLF (RFC 9051 §2.2), so a file with no CR at all gets CRLF; a file that has any CR is taken
// as it is (it was written with CRLF, e.g. by our own export, and must round-trip unchanged).
std::string imap_line_ends(std::string&& file_bytes);
// Bytes the file would take with every LF not after a CR made CRLF (Dovecot's W= size).
uint64_t crlf_size(std::string_view bytes);

}  // namespace store::tools::maildir
