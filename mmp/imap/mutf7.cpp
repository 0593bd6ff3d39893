// mutf7.cpp: the mailbox-name checks on modified UTF-7 and UTF-8 names (mutf7.hpp).
#include "mmp/imap/mutf7.hpp"

#include <cstdint>
#include <vector>

#include "common/ascii.hpp"
#include "common/text/utf8.hpp"

namespace mmp::imap {

namespace {

using common::ErrorKind;
using common::fail;

}  // namespace

common::Result<std::string> mailbox_from_wire(std::string_view wire, bool utf8) {
  std::string name;
  if (utf8) {
    if (!common::text::valid_utf8(wire)) return fail(ErrorKind::Protocol, "mailbox name is not UTF-8");
    name.assign(wire);
  } else {
    auto decoded = mutf7_decode(wire);
    if (!decoded) return decoded;
    name = std::move(*decoded);
  }
  for (char ch : name) {
    const auto c = static_cast<unsigned char>(ch);
    if (c < 0x20 || c == 0x7f) return fail(ErrorKind::Protocol, "mailbox name holds a control character");
  }
  if (name.empty()) return fail(ErrorKind::Protocol, "empty mailbox name");
  if (common::ascii::iequals(name, "INBOX")) name = "INBOX";
  return name;
}

std::string mailbox_to_wire(std::string_view name, bool utf8) {
  // The store keeps valid UTF-8 names; should one not be, its bad bytes go out as U+FFFD rather
  // than raw 8-bit bytes a client would take for its own encoding.
  std::string clean;
  clean.reserve(name.size());
  for (size_t i = 0; i < name.size();) {
    uint32_t cp;
    const size_t n = common::text::decode_utf8(name.substr(i), cp);
    if (n == 0) {
      common::text::append_utf8(clean, 0xfffd);
      ++i;
    } else {
      clean.append(name.substr(i, n));
      i += n;
    }
  }
  if (utf8) return clean;
  return std::move(*mutf7_encode(clean));
}

}  // namespace mmp::imap
