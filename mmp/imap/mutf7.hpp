// mutf7.hpp: mailbox names on the wire: modified UTF-7 (RFC 3501 §5.1.3) for IMAP4rev1 clients,
// UTF-8 (RFC 9051 §5.1, RFC 6855) once a client has enabled IMAP4rev2 or UTF8=ACCEPT. The store
// keeps names in UTF-8; these are the two directions.
#pragma once

#include <string>
#include <string_view>

#include "common/result.hpp"
#include "common/text/mutf7.hpp"

namespace mmp::imap {

// The codec itself is common's (common/text/mutf7.hpp), shared with postern-storectl's Maildir names.
using common::text::mutf7_decode;
using common::text::mutf7_encode;

// A mailbox name from a command, as the store names it: decoded from modified UTF-7, or in UTF-8
// mode checked to be valid UTF-8; no NUL or other control character (RFC 9051 §5.1: names are
// text); "INBOX" in any case becomes "INBOX" (RFC 9051 §5.1: INBOX is case-insensitive).
common::Result<std::string> mailbox_from_wire(std::string_view wire, bool utf8);
// A store name (UTF-8) as the client reads it: modified UTF-7 unless `utf8`. Still to be written
// as an astring (encode.hpp's append_mailbox does both).
std::string mailbox_to_wire(std::string_view name, bool utf8);

}  // namespace mmp::imap
