// base64.cpp: base64 and base64url over libsodium, strict in both directions (base64.hpp).
#include "common/text/base64.hpp"

#include <sodium.h>

namespace common::text {
namespace {

std::string encode(std::string_view bytes, int variant) {
  std::string out(sodium_base64_encoded_len(bytes.size(), variant), '\0');
  sodium_bin2base64(out.data(), out.size(), reinterpret_cast<const unsigned char*>(bytes.data()), bytes.size(),
                    variant);
  out.pop_back();  // the terminating NUL libsodium writes
  return out;
}

// libsodium checks the padding of the padded variants and that the unused trailing bits are zero;
// with no ignore set and no end pointer it also fails unless every character was consumed.
std::optional<std::string> decode(std::string_view text, size_t max_out, size_t capacity, int variant) {
  if (text.empty()) return std::string();
  if (capacity > 2 && capacity - 2 > max_out) return std::nullopt;  // longer than any text of max_out bytes
  std::string out(capacity, '\0');
  size_t len = 0;
  if (sodium_base642bin(reinterpret_cast<unsigned char*>(out.data()), out.size(), text.data(), text.size(), nullptr,
                        &len, nullptr, variant) != 0 ||
      len > max_out)
    return std::nullopt;
  out.resize(len);
  return out;
}

}  // namespace

std::string base64_encode(std::string_view bytes) { return encode(bytes, sodium_base64_VARIANT_ORIGINAL); }

std::optional<std::string> base64_decode(std::string_view text, size_t max_out) {
  if (text.size() % 4 != 0) return std::nullopt;  // padded: always whole quanta
  return decode(text, max_out, text.size() / 4 * 3, sodium_base64_VARIANT_ORIGINAL);
}

std::string base64url_encode(std::string_view bytes) {
  return encode(bytes, sodium_base64_VARIANT_URLSAFE_NO_PADDING);
}

std::optional<std::string> base64url_decode(std::string_view text, size_t max_out) {
  if (text.size() % 4 == 1) return std::nullopt;  // no length of bytes encodes to this
  return decode(text, max_out, text.size() / 4 * 3 + (text.size() % 4 ? text.size() % 4 - 1 : 0),
                sodium_base64_VARIANT_URLSAFE_NO_PADDING);
}

}  // namespace common::text
