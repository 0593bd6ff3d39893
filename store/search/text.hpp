// text.hpp: the text SEARCH compares (RFC 9051 §6.4.4): case folding, header fields unfolded and
// RFC 2047-decoded, bodies decoded from base64 / quoted-printable and converted to UTF-8. Pure.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/text/utf8.hpp"
#include "store/mime/structure.hpp"
#include "store/mime/transfer.hpp"

namespace store::search {

// RFC 3629: no overlong forms, no surrogates, nothing past U+10FFFF.
using common::text::valid_utf8;  // common/text/utf8.hpp

// Simple case folding (Unicode CaseFolding.txt, statuses C and S: one code point to one) for the
// scripts of most mail we carry, from a small table instead of a Unicode library: ASCII, Latin-1,
// Latin Extended-A, Latin Extended Additional (Vietnamese), basic Greek and Cyrillic (with the
// Cyrillic supplement letters). Other code points, and bytes that are not valid UTF-8, stay as
// they are, so folding never changes where a match can start.
std::string fold(std::string_view utf8);
void fold_append(std::string_view utf8, std::string& out);

// Text in a MIME charset as UTF-8, through glibc's iconv; one converter per charset is kept for
// the life of this object (an iconv_open loads a module). Bytes the charset cannot have become
// U+FFFD. UTF-8, US-ASCII, no charset, and a charset iconv does not know pass the bytes through.
class Charsets {
 public:
  Charsets();
  ~Charsets();
  Charsets(const Charsets&) = delete;
  Charsets& operator=(const Charsets&) = delete;

  void to_utf8(std::string_view charset, std::string_view bytes, std::string& out);

 private:
  struct Converter;
  Converter* find(std::string_view charset);
  std::vector<std::unique_ptr<Converter>> cache_;  // a few entries, searched in order
};

// A header field value as SEARCH sees it: unfolded (RFC 5322 §2.2.3), trimmed, and RFC 2047
// encoded words decoded to UTF-8 (white space between adjacent encoded words dropped, §6.2;
// words split inside a multi-byte character joined before conversion). Encoded words that touch
// other text are decoded too, as mailers write them so.
std::string decode_header_value(std::string_view raw, Charsets& charsets);

// A part's body without its Content-Transfer-Encoding (RFC 2045 §6.7, §6.8), leniently: bytes
// outside the base64 alphabet are skipped, a malformed "=" escape stays as it is.
using mime::decode_base64;  // store/mime/transfer.hpp
using mime::decode_quoted_printable;
std::string decode_transfer(std::string_view in, mime::Encoding encoding);

// The fields of a header block (RFC 5322 §2.2): `fn(name, raw value)` for each, in order, the
// value with its folding line breaks. Lines that are neither a field nor a continuation are
// skipped; the empty line ends the block.
void for_each_field(std::string_view header, const std::function<void(std::string_view, std::string_view)>& fn);

// Days since 1970-01-01 of a proleptic Gregorian date (RFC 9051 dates are such calendar dates).
int32_t days_from_civil(int64_t year, unsigned month, unsigned day);
// The UTC calendar date of a unix time, as days.
int32_t utc_day(int64_t unix_seconds);
// The calendar date a Date: field (RFC 5322 §3.3, and the obsolete §4.3 forms: two- and
// three-digit years, no day of week, comments) writes, ignoring its time and zone; nullopt when
// it has no valid day, month and year.
std::optional<int32_t> parse_date_day(std::string_view value);

}  // namespace store::search
