// mutf7.cpp: strict modified UTF-7 (mutf7.hpp).
#include "common/text/mutf7.hpp"

#include <cstdint>
#include <vector>

#include "common/text/utf8.hpp"

namespace common::text {

namespace {

using common::ErrorKind;
using common::fail;

constexpr char kAlphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+,";

constexpr bool printable(uint32_t c) { return c >= 0x20 && c <= 0x7e; }

int value_of(char c) {
  if (c >= 'A' && c <= 'Z') return c - 'A';
  if (c >= 'a' && c <= 'z') return c - 'a' + 26;
  if (c >= '0' && c <= '9') return c - '0' + 52;
  if (c == '+') return 62;
  if (c == ',') return 63;
  return -1;
}

void flush_run(std::string& out, const std::vector<uint16_t>& units) {
  out += '&';
  uint32_t bits = 0;
  int nbits = 0;
  for (uint16_t u : units) {
    bits = (bits << 16) | u;
    nbits += 16;
    while (nbits >= 6) {
      out += kAlphabet[(bits >> (nbits - 6)) & 0x3f];
      nbits -= 6;
    }
    bits &= (1u << nbits) - 1;
  }
  if (nbits > 0) out += kAlphabet[(bits << (6 - nbits)) & 0x3f];
  out += '-';
}

}  // namespace

common::Result<std::string> mutf7_decode(std::string_view in) {
  std::string out;
  out.reserve(in.size());
  bool after_run = false;  // the previous thing was a base64 run
  for (size_t i = 0; i < in.size();) {
    const auto c = static_cast<unsigned char>(in[i]);
    if (!printable(c)) return fail(ErrorKind::Protocol, "not modified UTF-7: a byte outside printable ASCII");
    if (c != '&') {
      out += static_cast<char>(c);
      ++i;
      after_run = false;
      continue;
    }
    const size_t end = in.find('-', i + 1);
    if (end == std::string_view::npos) return fail(ErrorKind::Protocol, "not modified UTF-7: '&' without '-'");
    if (end == i + 1) {  // "&-" is '&'
      out += '&';
      i = end + 1;
      after_run = false;
      continue;
    }
    if (after_run) return fail(ErrorKind::Protocol, "not modified UTF-7: two base64 runs side by side");
    uint32_t bits = 0;
    int nbits = 0;
    std::vector<uint16_t> units;
    for (size_t k = i + 1; k < end; ++k) {
      const int v = value_of(in[k]);
      if (v < 0) return fail(ErrorKind::Protocol, "not modified UTF-7: a character outside modified base64");
      bits = (bits << 6) | static_cast<uint32_t>(v);
      nbits += 6;
      if (nbits >= 16) {
        units.push_back(static_cast<uint16_t>(bits >> (nbits - 16)));
        nbits -= 16;
        bits &= (1u << nbits) - 1;
      }
    }
    // What is left is padding: fewer than 6 bits, all zero (RFC 2152 §2 via RFC 3501 §5.1.3).
    if (nbits >= 6 || bits != 0) {
      return fail(ErrorKind::Protocol, "not modified UTF-7: a base64 run that does not end on a UTF-16 unit");
    }
    for (size_t k = 0; k < units.size(); ++k) {
      uint32_t cp = units[k];
      if (cp >= 0xd800 && cp <= 0xdbff) {
        if (k + 1 >= units.size() || units[k + 1] < 0xdc00 || units[k + 1] > 0xdfff) {
          return fail(ErrorKind::Protocol, "not modified UTF-7: an unpaired surrogate");
        }
        cp = 0x10000 + ((cp - 0xd800) << 10) + (units[++k] - 0xdc00u);
      } else if (cp >= 0xdc00 && cp <= 0xdfff) {
        return fail(ErrorKind::Protocol, "not modified UTF-7: an unpaired surrogate");
      } else if (printable(cp)) {
        // RFC 3501 §5.1.3: base64 MUST NOT represent a printable character that can represent itself.
        return fail(ErrorKind::Protocol, "not modified UTF-7: printable ASCII encoded in base64");
      }
      common::text::append_utf8(out, cp);
    }
    i = end + 1;
    after_run = true;
  }
  return out;
}

common::Result<std::string> mutf7_encode(std::string_view utf8) {
  std::string out;
  out.reserve(utf8.size() + 8);
  std::vector<uint16_t> run;
  for (size_t i = 0; i < utf8.size();) {
    uint32_t cp;
    const size_t n = common::text::decode_utf8(utf8.substr(i), cp);
    if (n == 0) return fail(ErrorKind::Protocol, "mailbox name is not UTF-8");
    i += n;
    if (printable(cp)) {
      if (!run.empty()) {
        flush_run(out, run);
        run.clear();
      }
      if (cp == '&') {
        out += "&-";
      } else {
        out += static_cast<char>(cp);
      }
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

}  // namespace common::text
