// transfer.cpp: Content-Transfer-Encoding decoding (transfer.hpp).
#include "store/mime/transfer.hpp"

#include <cstdint>

#include "common/ascii.hpp"

namespace store::mime {
namespace {

using common::ascii::is_blank;

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  return -1;
}

}  // namespace

std::string decode_base64(std::string_view in) {
  std::string out;
  out.reserve(in.size() / 4 * 3 + 3);
  uint32_t acc = 0;
  int bits = 0;
  for (char c : in) {
    int v;
    if (c >= 'A' && c <= 'Z') v = c - 'A';
    else if (c >= 'a' && c <= 'z') v = c - 'a' + 26;
    else if (c >= '0' && c <= '9') v = c - '0' + 52;
    else if (c == '+') v = 62;
    else if (c == '/') v = 63;
    else if (c == '=') {
      // Padding ends a block; mailers that concatenate encoded blocks start the next one after it.
      acc = 0;
      bits = 0;
      continue;
    } else {
      continue;  // line breaks and what RFC 2045 §6.8 says to ignore
    }
    acc = ((acc << 6) | static_cast<uint32_t>(v)) & 0xFFFFFF;
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out += static_cast<char>((acc >> bits) & 0xFF);
    }
  }
  return out;
}

std::string decode_quoted_printable(std::string_view in) {
  std::string out;
  out.reserve(in.size());
  size_t pos = 0;
  while (pos < in.size()) {
    const size_t nl = in.find('\n', pos);
    const bool has_break = nl != std::string_view::npos;
    std::string_view line = in.substr(pos, (has_break ? nl : in.size()) - pos);
    pos = has_break ? nl + 1 : in.size();
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    // RFC 2045 §6.7 rule 3: blanks at the end of a line were added in transport.
    while (!line.empty() && is_blank(line.back())) line.remove_suffix(1);
    bool soft = false;
    if (!line.empty() && line.back() == '=') {
      soft = true;
      line.remove_suffix(1);
    }
    for (size_t i = 0; i < line.size(); ++i) {
      if (line[i] == '=' && i + 2 < line.size()) {
        const int hi = hex_value(line[i + 1]);
        const int lo = hex_value(line[i + 2]);
        if (hi >= 0 && lo >= 0) {
          out += static_cast<char>(hi * 16 + lo);
          i += 2;
          continue;
        }
      }
      out += line[i];
    }
    if (has_break && !soft) out += "\r\n";
  }
  return out;
}

std::optional<std::string> decode_transfer(std::string_view content, Encoding encoding) {
  switch (encoding) {
    case Encoding::SevenBit:
    case Encoding::EightBit:
    case Encoding::Binary: return std::string(content);
    case Encoding::Base64: return decode_base64(content);
    case Encoding::QuotedPrintable: return decode_quoted_printable(content);
    case Encoding::Other: break;
  }
  return std::nullopt;
}

}  // namespace store::mime
