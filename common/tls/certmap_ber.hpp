// certmap_ber.hpp: the one piece of BER certmap reads: an X.509 DirectoryString written as "#hex"
// in a DN (RFC 4514 §2.4), turned into its text when its type is a character string.
#pragma once

#include <optional>
#include <string>
#include <string_view>

namespace common::tls {

// `ber` is one TLV: tag, definite length (short form, or long form of at most 4 bytes), content,
// and nothing after it. The content for UTF8String, PrintableString, TeletexString, IA5String
// and VisibleString (tags 0x0c 0x13 0x14 0x16 0x1a); nullopt for any other type or framing,
// which certmap then keeps as bytes that match nothing but themselves.
std::optional<std::string> ber_directory_string(std::string_view ber);

}  // namespace common::tls
