// transfer.hpp: Content-Transfer-Encoding decoding (RFC 2045 §6.7 quoted-printable, §6.8 base64),
// shared by FETCH BINARY and SEARCH BODY/TEXT so the two read a part alike. Pure.
#pragma once

#include <optional>
#include <string>
#include <string_view>

#include "store/mime/structure.hpp"

namespace store::mime {

// Lenient, as mail readers are: characters outside the base64 alphabet are skipped and a padding
// "=" ends a block (mailers that concatenate encoded blocks start the next one after it); in
// quoted-printable a malformed "=" escape stays as it is and blanks at the end of a line go.
std::string decode_base64(std::string_view in);
std::string decode_quoted_printable(std::string_view in);
// 7bit, 8bit and binary as they are; nullopt for an encoding this cannot decode (Other).
std::optional<std::string> decode_transfer(std::string_view content, Encoding encoding);

}  // namespace store::mime
