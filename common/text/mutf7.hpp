// mutf7.hpp: modified UTF-7 (RFC 3501 §5.1.3), the encoding of IMAP4rev1 mailbox names, which
// Maildir++ (Dovecot's folders) uses on disk too: one strict codec for the mmp and postern-storectl.
#pragma once

#include <string>
#include <string_view>

#include "common/result.hpp"

namespace common::text {

// Strict: one spelling per name, so two clients cannot address one mailbox under two names and a
// filter on names cannot be dodged. Refused: a byte outside printable ASCII (8-bit garbage
// included), "&" without its "-", a character outside the modified base64 alphabet (it uses ','
// for '/' and no '='), leftover bits that do not end a UTF-16 unit or are not zero, printable
// ASCII encoded in base64, two base64 runs side by side (the encoder writes one), and an unpaired
// surrogate. ErrorKind::Protocol with a reason for the log.
common::Result<std::string> mutf7_decode(std::string_view wire);
// UTF-8 that is not valid is refused.
common::Result<std::string> mutf7_encode(std::string_view utf8);

}  // namespace common::text
