// codec.hpp: the byte layouts of LMDB keys and values: big-endian fixed-width integers (so keys sort
// numerically under LMDB's memcmp order) and length-prefixed strings, read back with bounds checks so
// a damaged value is an error, never an out-of-range read. Shared by the store and the mta queue.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace common::lmdb {

class Encoder {
 public:
  Encoder& u8(uint8_t v) {
    out_.push_back(static_cast<char>(v));
    return *this;
  }
  Encoder& u16(uint16_t v) { return be(v, 2); }
  Encoder& u32(uint32_t v) { return be(v, 4); }
  Encoder& u64(uint64_t v) { return be(v, 8); }
  Encoder& i64(int64_t v) { return be(static_cast<uint64_t>(v), 8); }
  // Raw bytes with no length: only last in a key or value, where the end is the length.
  Encoder& raw(std::string_view s) {
    out_.append(s);
    return *this;
  }
  // Bytes with a 32-bit length in front.
  Encoder& bytes(std::string_view s) {
    u32(static_cast<uint32_t>(s.size()));
    return raw(s);
  }
  const std::string& str() const& { return out_; }
  std::string str() && { return std::move(out_); }

 private:
  Encoder& be(uint64_t v, int width) {
    for (int shift = (width - 1) * 8; shift >= 0; shift -= 8) out_.push_back(static_cast<char>((v >> shift) & 0xff));
    return *this;
  }
  std::string out_;
};

// Each read returns false, and every later one too, once the input is short: check ok() at the end.
class Decoder {
 public:
  explicit Decoder(std::string_view in) : in_(in) {}
  bool u8(uint8_t& v) {
    uint64_t x = 0;
    const bool ok = be(x, 1);
    v = static_cast<uint8_t>(x);
    return ok;
  }
  bool u16(uint16_t& v) {
    uint64_t x = 0;
    const bool ok = be(x, 2);
    v = static_cast<uint16_t>(x);
    return ok;
  }
  bool u32(uint32_t& v) {
    uint64_t x = 0;
    const bool ok = be(x, 4);
    v = static_cast<uint32_t>(x);
    return ok;
  }
  bool u64(uint64_t& v) { return be(v, 8); }
  bool i64(int64_t& v) {
    uint64_t x = 0;
    const bool ok = be(x, 8);
    v = static_cast<int64_t>(x);
    return ok;
  }
  bool bytes(std::string_view& v) {
    uint32_t n = 0;
    if (!u32(n)) return false;
    return raw(v, n);
  }
  bool raw(std::string_view& v, size_t n) {
    if (!ok_ || in_.size() < n) return ok_ = false;
    v = in_.substr(0, n);
    in_.remove_prefix(n);
    return true;
  }
  std::string_view rest() const { return in_; }
  bool ok() const { return ok_; }
  // All read and nothing left over: a value of the expected layout.
  bool done() const { return ok_ && in_.empty(); }

 private:
  bool be(uint64_t& v, size_t width) {
    if (!ok_ || in_.size() < width) return ok_ = false;
    v = 0;
    for (size_t i = 0; i < width; ++i) v = (v << 8) | static_cast<uint8_t>(in_[i]);
    in_.remove_prefix(width);
    return true;
  }
  std::string_view in_;
  bool ok_ = true;
};

}  // namespace common::lmdb
