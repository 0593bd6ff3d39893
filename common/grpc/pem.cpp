// pem.cpp: PEM encoding for gRPC's credential provider and decoding of peer chains for NSS.
#include "common/grpc/pem.hpp"

#include <array>
#include <cstdint>
#include <cstring>

#include <string.h>  // explicit_bzero

namespace common::rpc {

namespace {

constexpr char kAlphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
constexpr size_t kLine = 64;

constexpr std::array<int8_t, 256> make_decode_table() {
  std::array<int8_t, 256> t{};
  for (auto& v : t) v = -1;
  for (int i = 0; i < 64; ++i) t[static_cast<unsigned char>(kAlphabet[i])] = static_cast<int8_t>(i);
  return t;
}
constexpr auto kDecode = make_decode_table();

std::string begin_line(std::string_view label) { return "-----BEGIN " + std::string(label) + "-----"; }
std::string end_line(std::string_view label) { return "-----END " + std::string(label) + "-----"; }

// Base64 body of one block: whitespace is skipped, '=' only at the end.
Result<std::string> decode_body(std::string_view body) {
  std::string out;
  out.reserve(body.size() / 4 * 3);
  uint32_t acc = 0;
  int bits = 0;
  size_t pad = 0;
  for (char c : body) {
    if (c == ' ' || c == '\t' || c == '\r' || c == '\n') continue;
    if (c == '=') {
      ++pad;
      continue;
    }
    int8_t v = kDecode[static_cast<unsigned char>(c)];
    if (v < 0 || pad > 0) return fail(ErrorKind::Protocol, "PEM: invalid base64");
    acc = (acc << 6) | static_cast<uint32_t>(v);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out.push_back(static_cast<char>((acc >> bits) & 0xff));
    }
  }
  if (pad > 2) return fail(ErrorKind::Protocol, "PEM: invalid base64 padding");
  if (out.empty()) return fail(ErrorKind::Protocol, "PEM: empty block");
  return out;
}

}  // namespace

std::string to_pem(std::span<const unsigned char> der, std::string_view label) {
  const std::string begin = begin_line(label), end = end_line(label);
  const size_t chars = (der.size() + 2) / 3 * 4;
  const size_t lines = (chars + kLine - 1) / kLine;
  std::string out;
  out.reserve(begin.size() + 1 + chars + lines + end.size() + 1);
  out += begin;
  out += '\n';
  size_t column = 0;
  auto put = [&](char c) {
    out += c;
    if (++column == kLine) {
      out += '\n';
      column = 0;
    }
  };
  size_t i = 0;
  for (; i + 3 <= der.size(); i += 3) {
    uint32_t v = (uint32_t{der[i]} << 16) | (uint32_t{der[i + 1]} << 8) | der[i + 2];
    put(kAlphabet[(v >> 18) & 63]);
    put(kAlphabet[(v >> 12) & 63]);
    put(kAlphabet[(v >> 6) & 63]);
    put(kAlphabet[v & 63]);
  }
  if (size_t rest = der.size() - i; rest > 0) {
    uint32_t v = uint32_t{der[i]} << 16;
    if (rest == 2) v |= uint32_t{der[i + 1]} << 8;
    put(kAlphabet[(v >> 18) & 63]);
    put(kAlphabet[(v >> 12) & 63]);
    put(rest == 2 ? kAlphabet[(v >> 6) & 63] : '=');
    put('=');
  }
  if (column != 0) out += '\n';
  out += end;
  out += '\n';
  return out;
}

Result<std::vector<std::string>> from_pem(std::string_view text, std::string_view label) {
  const std::string begin = begin_line(label), end = end_line(label);
  std::vector<std::string> blocks;
  size_t pos = 0;
  while ((pos = text.find(begin, pos)) != std::string_view::npos) {
    size_t body = pos + begin.size();
    size_t stop = text.find(end, body);
    if (stop == std::string_view::npos) return fail(ErrorKind::Protocol, "PEM: " + begin + " without END line");
    auto der = decode_body(text.substr(body, stop - body));
    if (!der) return tl::unexpected(der.error());
    blocks.push_back(std::move(*der));
    pos = stop + end.size();
  }
  if (blocks.empty()) return fail(ErrorKind::Protocol, "PEM: no " + std::string(label) + " block");
  return blocks;
}

void wipe(std::string& secret) {
  if (!secret.empty()) explicit_bzero(secret.data(), secret.size());
  secret.clear();
}

}  // namespace common::rpc
