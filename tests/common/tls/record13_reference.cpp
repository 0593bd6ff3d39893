// record13_reference.cpp: the reference TLS 1.3 record layer of record13_reference.hpp, over
// OpenSSL 3's EVP_KDF (HKDF) and EVP_CIPHER (AES-GCM, ChaCha20-Poly1305).
#include "tests/common/tls/record13_reference.hpp"

#include <cstdlib>
#include <memory>

#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/kdf.h>
#include <openssl/params.h>

namespace reference13 {
namespace {

constexpr uint8_t kAlertType = 21;
constexpr uint8_t kHandshakeType = 22;
constexpr uint8_t kApplicationDataType = 23;
constexpr uint8_t kUnexpectedMessage = 10;
constexpr uint8_t kBadRecordMac = 20;
constexpr uint8_t kRecordOverflow = 22;
constexpr uint8_t kIllegalParameter = 47;
constexpr uint8_t kDecodeError = 50;
constexpr size_t kTagLen = 16;

struct CtxFree {
  void operator()(EVP_CIPHER_CTX* c) const { EVP_CIPHER_CTX_free(c); }
};

// Fetched once: OpenSSL 3 looks an algorithm up in its provider tables on every implicit fetch,
// which would dominate a fuzz run.
const EVP_CIPHER* evp_cipher(Cipher c, size_t key_size) {
  static EVP_CIPHER* aes128 = EVP_CIPHER_fetch(nullptr, "AES-128-GCM", nullptr);
  static EVP_CIPHER* aes256 = EVP_CIPHER_fetch(nullptr, "AES-256-GCM", nullptr);
  static EVP_CIPHER* chacha = EVP_CIPHER_fetch(nullptr, "ChaCha20-Poly1305", nullptr);
  if (c == Cipher::ChaCha20Poly1305) return chacha;
  return key_size == 16 ? aes128 : aes256;
}

EVP_KDF* hkdf() {
  static EVP_KDF* kdf = EVP_KDF_fetch(nullptr, "HKDF", nullptr);
  return kdf;
}

size_t key_length(Cipher c) { return c == Cipher::Aes128Gcm ? 16 : 32; }
const char* digest_name(Cipher c) { return c == Cipher::Aes256Gcm ? "SHA384" : "SHA256"; }

const unsigned char* u8(std::string_view s) { return reinterpret_cast<const unsigned char*>(s.data()); }

bool crypt(Cipher cipher, bool seal, std::string_view key, std::string_view nonce, std::string_view aad,
           std::string_view in, std::string& out) {
  out.clear();
  // AES-GCM by the key's length (Wycheproof files hold both sizes under one name).
  const bool aes = cipher != Cipher::ChaCha20Poly1305;
  if (aes ? key.size() != 16 && key.size() != 32 : key.size() != 32) return false;
  if (nonce.size() != 12 || (!seal && in.size() < kTagLen)) return false;
  const EVP_CIPHER* evp = evp_cipher(cipher, key.size());
  if (evp == nullptr) std::abort();
  std::unique_ptr<EVP_CIPHER_CTX, CtxFree> ctx(EVP_CIPHER_CTX_new());
  if (!ctx || EVP_CipherInit_ex(ctx.get(), evp, nullptr, nullptr, nullptr, seal ? 1 : 0) != 1 ||
      EVP_CIPHER_CTX_ctrl(ctx.get(), EVP_CTRL_AEAD_SET_IVLEN, 12, nullptr) != 1 ||
      EVP_CipherInit_ex(ctx.get(), nullptr, nullptr, u8(key), u8(nonce), -1) != 1) {
    return false;
  }
  int len = 0;
  if (!aad.empty() && EVP_CipherUpdate(ctx.get(), nullptr, &len, u8(aad), static_cast<int>(aad.size())) != 1) {
    return false;
  }
  const size_t body = seal ? in.size() : in.size() - kTagLen;
  out.resize(body + kTagLen);
  auto* o = reinterpret_cast<unsigned char*>(out.data());
  if (body > 0 && EVP_CipherUpdate(ctx.get(), o, &len, u8(in), static_cast<int>(body)) != 1) return false;
  if (!seal) {
    std::string tag(in.substr(body));
    if (EVP_CIPHER_CTX_ctrl(ctx.get(), EVP_CTRL_AEAD_SET_TAG, kTagLen, tag.data()) != 1) return false;
  }
  int final_len = 0;
  if (EVP_CipherFinal_ex(ctx.get(), o + body, &final_len) != 1) {
    out.clear();
    return false;
  }
  if (seal) {
    if (EVP_CIPHER_CTX_ctrl(ctx.get(), EVP_CTRL_AEAD_GET_TAG, kTagLen, o + body) != 1) return false;
  } else {
    out.resize(body);
  }
  return true;
}

}  // namespace

bool aead_seal(Cipher cipher, std::string_view key, std::string_view nonce, std::string_view aad,
               std::string_view plain, std::string& sealed) {
  return crypt(cipher, true, key, nonce, aad, plain, sealed);
}

bool aead_open(Cipher cipher, std::string_view key, std::string_view nonce, std::string_view aad,
               std::string_view sealed, std::string& plain) {
  return crypt(cipher, false, key, nonce, aad, sealed, plain);
}

std::optional<Cipher> cipher_of(uint16_t suite) {
  switch (suite) {
    case 0x1301: return Cipher::Aes128Gcm;
    case 0x1302: return Cipher::Aes256Gcm;
    case 0x1303: return Cipher::ChaCha20Poly1305;
    default: return std::nullopt;
  }
}

std::string expand_label(Cipher cipher, std::string_view secret, std::string_view label, size_t length) {
  // struct { uint16 length; opaque label<7..255> = "tls13 " + Label; opaque context<0..255> = ""; }
  std::string info;
  info.push_back(static_cast<char>(length >> 8));
  info.push_back(static_cast<char>(length & 0xff));
  const std::string full = "tls13 " + std::string(label);
  info.push_back(static_cast<char>(full.size()));
  info += full;
  info.push_back('\0');
  EVP_KDF_CTX* ctx = hkdf() ? EVP_KDF_CTX_new(hkdf()) : nullptr;
  if (ctx == nullptr) std::abort();
  int mode = EVP_KDF_HKDF_MODE_EXPAND_ONLY;
  OSSL_PARAM params[] = {
      OSSL_PARAM_construct_utf8_string(OSSL_KDF_PARAM_DIGEST, const_cast<char*>(digest_name(cipher)), 0),
      OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_KEY, const_cast<char*>(secret.data()), secret.size()),
      OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_INFO, info.data(), info.size()),
      OSSL_PARAM_construct_int(OSSL_KDF_PARAM_MODE, &mode),
      OSSL_PARAM_construct_end(),
  };
  std::string out(length, '\0');
  const int rc = EVP_KDF_derive(ctx, reinterpret_cast<unsigned char*>(out.data()), length, params);
  EVP_KDF_CTX_free(ctx);
  if (rc != 1) std::abort();
  return out;
}

TrafficKeys::TrafficKeys(Cipher c, std::string traffic_secret, uint64_t first_sequence)
    : cipher(c), secret(std::move(traffic_secret)), sequence(first_sequence) {
  key = expand_label(cipher, secret, "key", key_length(cipher));
  iv = expand_label(cipher, secret, "iv", 12);
}

void TrafficKeys::update() {
  *this = TrafficKeys(cipher, expand_label(cipher, secret, "traffic upd", secret.size()), 0);
}

std::string TrafficKeys::nonce() const {
  // RFC 8446 §5.3: the 64-bit sequence number, big-endian, left-padded to the IV's length, XOR the IV.
  std::string n = iv;
  for (int i = 0; i < 8; ++i) n[11 - i] = static_cast<char>(n[11 - i] ^ static_cast<char>(sequence >> (8 * i)));
  return n;
}

std::string Sealer::seal_inner(std::string_view inner) {
  const size_t length = inner.size() + kTagLen;
  std::string record{static_cast<char>(kApplicationDataType), 3, 3, static_cast<char>(length >> 8),
                     static_cast<char>(length & 0xff)};
  std::string sealed;
  if (!aead_seal(keys_.cipher, keys_.key, keys_.nonce(), record, inner, sealed)) std::abort();
  ++keys_.sequence;
  return record + sealed;
}

std::string Sealer::key_update(bool request) {
  std::string inner{24, 0, 0, 1, static_cast<char>(request ? 1 : 0), static_cast<char>(kHandshakeType)};
  std::string record = seal_inner(inner);
  keys_.update();
  return record;
}

void Opener::refuse(Step& step, uint8_t alert, std::string why) {
  failed_ = true;
  step.refusal = alert;
  step.why = std::move(why);
}

Step Opener::feed(std::string_view bytes) {
  Step step;
  if (failed_ || closed_) {
    if (failed_) step.why = "already failed";
    return step;
  }
  buffer_.append(bytes);
  size_t at = 0;
  while (!failed_ && !closed_ && buffer_.size() - at >= 5) {
    std::string_view header(buffer_.data() + at, 5);
    const auto type = static_cast<uint8_t>(header[0]);
    const size_t length = (size_t{static_cast<uint8_t>(header[3])} << 8) | static_cast<uint8_t>(header[4]);
    // §5: after the handshake every record is protected (outer type application_data); §5.2: a
    // TLSCiphertext longer than 2^14 + 256 is record_overflow. Both are known from the header.
    if (type != kApplicationDataType) {
      refuse(step, kUnexpectedMessage, "outer type");
      break;
    }
    if (length > 16384 + 256) {
      refuse(step, kRecordOverflow, "ciphertext length");
      break;
    }
    if (buffer_.size() - at < 5 + length) break;
    record(header, std::string_view(buffer_.data() + at + 5, length), step);
    at += 5 + length;
  }
  if (failed_ || closed_) {
    buffer_.clear();
  } else {
    buffer_.erase(0, at);
  }
  return step;
}

void Opener::record(std::string_view header, std::string_view body, Step& step) {
  std::string inner;
  // A body shorter than the tag cannot be authentic; any tag that does not verify is bad_record_mac.
  if (body.size() < kTagLen || !aead_open(keys_.cipher, keys_.key, keys_.nonce(), header, body, inner)) {
    return refuse(step, kBadRecordMac, "authentication");
  }
  ++keys_.sequence;
  // §5.4: TLSInnerPlaintext (content, type, padding) is at most 2^14 + 1 bytes.
  if (inner.size() > 16384 + 1) return refuse(step, kRecordOverflow, "inner plaintext length");
  // §5.4: the type is the last non-zero byte; none at all is unexpected_message.
  size_t end = inner.size();
  while (end > 0 && inner[end - 1] == '\0') --end;
  if (end == 0) return refuse(step, kUnexpectedMessage, "no content type");
  const auto type = static_cast<uint8_t>(inner[end - 1]);
  const std::string content = inner.substr(0, end - 1);
  // §5.1: a handshake message may span records, but nothing of another type may come between.
  if (!handshake_.empty() && type != kHandshakeType) return refuse(step, kUnexpectedMessage, "interleaved");
  auto idle = [&]() {
    if (idle_cap_ && ++idle_ > 32) {
      refuse(step, kUnexpectedMessage, "idle records");
      return false;
    }
    return true;
  };
  if (type == kApplicationDataType) {
    if (content.empty()) {
      idle();
      return;
    }
    idle_ = 0;
    step.delivered += content;
    return;
  }
  if (type == kAlertType) {
    // §5.4: zero-length alert content is unexpected_message; §6: a malformed one decode_error.
    if (content.empty()) return refuse(step, kUnexpectedMessage, "empty alert");
    if (content.size() != 2) return refuse(step, kDecodeError, "alert size");
    const auto description = static_cast<uint8_t>(content[1]);
    step.alerts.push_back(static_cast<char>(description));
    if (description == 0) {
      closed_ = true;
    } else if (description == 90) {
      idle();
    } else {
      // §6.2: every other alert is fatal, whatever its level says.
      failed_ = true;
      step.peer_alert = description;
    }
    return;
  }
  if (type == kHandshakeType) {
    // §5.4: zero-length handshake content is unexpected_message.
    if (content.empty()) return refuse(step, kUnexpectedMessage, "empty handshake");
    if (!idle()) return;
    handshake_ += content;
    // After the handshake a server takes KeyUpdate (24) only: it never asks for client auth again.
    if (static_cast<uint8_t>(handshake_[0]) != 24) return refuse(step, kUnexpectedMessage, "handshake type");
    if (handshake_.size() < 4) return;
    const size_t length = (size_t{static_cast<uint8_t>(handshake_[1])} << 16) |
                          (size_t{static_cast<uint8_t>(handshake_[2])} << 8) | static_cast<uint8_t>(handshake_[3]);
    if (length != 1) return refuse(step, kDecodeError, "KeyUpdate length");
    if (handshake_.size() < 5) return;
    // §5.1: a KeyUpdate must be the last thing in its record.
    if (handshake_.size() > 5) return refuse(step, kUnexpectedMessage, "data after KeyUpdate");
    const auto request = static_cast<uint8_t>(handshake_[4]);
    handshake_.clear();
    // §4.6.3: request_update is update_not_requested(0) or update_requested(1).
    if (request > 1) return refuse(step, kIllegalParameter, "request_update value");
    keys_.update();
    ++step.key_updates;
    if (request == 1) ++step.update_requests;
    return;
  }
  refuse(step, kUnexpectedMessage, "inner content type");
}

}  // namespace reference13
