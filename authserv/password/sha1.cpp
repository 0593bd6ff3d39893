// sha1.cpp: plain SHA-1 (FIPS 180-4 §6.1); only to check legacy {SSHA} values, never to store.
#include "authserv/password/sha1.hpp"

#include <cstring>

#include <sodium.h>

namespace authserv::password::detail {
namespace {
uint32_t rol(uint32_t x, int n) { return (x << n) | (x >> (32 - n)); }
}  // namespace

Sha1::Sha1() : h_{0x67452301u, 0xEFCDAB89u, 0x98BADCFEu, 0x10325476u, 0xC3D2E1F0u}, buf_{} {}

Sha1::~Sha1() {
  sodium_memzero(h_, sizeof h_);
  sodium_memzero(buf_, sizeof buf_);
}

void Sha1::block(const unsigned char* p) {
  uint32_t w[80];
  for (int i = 0; i < 16; ++i)
    w[i] = (uint32_t{p[4 * i]} << 24) | (uint32_t{p[4 * i + 1]} << 16) |
           (uint32_t{p[4 * i + 2]} << 8) | uint32_t{p[4 * i + 3]};
  for (int i = 16; i < 80; ++i) w[i] = rol(w[i - 3] ^ w[i - 8] ^ w[i - 14] ^ w[i - 16], 1);
  uint32_t a = h_[0], b = h_[1], c = h_[2], d = h_[3], e = h_[4];
  for (int i = 0; i < 80; ++i) {
    uint32_t f, k;
    if (i < 20) {
      f = (b & c) | (~b & d);
      k = 0x5A827999u;
    } else if (i < 40) {
      f = b ^ c ^ d;
      k = 0x6ED9EBA1u;
    } else if (i < 60) {
      f = (b & c) | (b & d) | (c & d);
      k = 0x8F1BBCDCu;
    } else {
      f = b ^ c ^ d;
      k = 0xCA62C1D6u;
    }
    uint32_t t = rol(a, 5) + f + e + k + w[i];
    e = d;
    d = c;
    c = rol(b, 30);
    b = a;
    a = t;
  }
  h_[0] += a;
  h_[1] += b;
  h_[2] += c;
  h_[3] += d;
  h_[4] += e;
  sodium_memzero(w, sizeof w);
}

void Sha1::update(std::span<const unsigned char> data) {
  total_ += data.size();
  for (unsigned char byte : data) {
    buf_[used_++] = byte;
    if (used_ == 64) {
      block(buf_);
      used_ = 0;
    }
  }
}

std::array<unsigned char, 20> Sha1::finish() {
  const uint64_t bits = total_ * 8;
  const unsigned char one = 0x80, zero = 0;
  update({&one, 1});
  while (used_ != 56) update({&zero, 1});
  unsigned char len[8];
  for (int i = 0; i < 8; ++i) len[i] = static_cast<unsigned char>(bits >> (56 - 8 * i));
  update({len, 8});
  std::array<unsigned char, 20> out{};
  for (int i = 0; i < 5; ++i)
    for (int j = 0; j < 4; ++j) out[4 * i + j] = static_cast<unsigned char>(h_[i] >> (24 - 8 * j));
  return out;
}

}  // namespace authserv::password::detail
