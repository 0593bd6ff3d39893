// record13.cpp: TLS 1.3 records after the handshake. Keys are imported into NSS's softoken for one
// decode or encode call and dropped at its end, so an idle connection holds no NSS object.
#include "common/tls/record13.hpp"

#include <algorithm>
#include <cstring>
#include <utility>

#include <pk11pub.h>
#include <sechash.h>

#include "common/deleter.hpp"
#include "common/tls/handles.hpp"

namespace common::tls {
namespace {

constexpr uint8_t kChangeCipherSpec = 20;
constexpr uint8_t kAlert = 21;
constexpr uint8_t kHandshake = 22;
constexpr uint8_t kApplicationData = 23;

constexpr uint8_t kKeyUpdate = 24;
constexpr uint8_t kUpdateNotRequested = 0;
constexpr uint8_t kUpdateRequested = 1;

constexpr uint8_t kCloseNotify = 0;
constexpr uint8_t kUnexpectedMessage = 10;
constexpr uint8_t kBadRecordMac = 20;
constexpr uint8_t kRecordOverflow = 22;
constexpr uint8_t kDecodeError = 50;
constexpr uint8_t kIllegalParameter = 47;
constexpr uint8_t kInternalError = 80;
constexpr uint8_t kUserCanceled = 90;

constexpr size_t kHeader = 5;
constexpr size_t kTag = 16;
constexpr size_t kNonce = 12;
constexpr size_t kMaxPlaintext = 16384;
constexpr size_t kMaxCiphertext = kMaxPlaintext + 256;  // RFC 8446 §5.2
// Well inside AES-GCM's 2^24.5 full-size records per key (RFC 8446 §5.5): our own KeyUpdate then.
constexpr uint64_t kRecordsPerWriteKey = uint64_t{1} << 23;

struct Aead {
  uint16_t suite;
  CK_MECHANISM_TYPE mechanism;
  size_t key_len;
  TlsHash hash;
};

constexpr Aead kAeads[] = {
    {0x1301, CKM_AES_GCM, 16, TlsHash::Sha256},
    {0x1302, CKM_AES_GCM, 32, TlsHash::Sha384},
    {0x1303, CKM_CHACHA20_POLY1305, 32, TlsHash::Sha256},
};

const Aead* aead_of(uint16_t suite) {
  for (const auto& a : kAeads) {
    if (a.suite == suite) return &a;
  }
  return nullptr;
}

size_t hash_len(TlsHash h) { return h == TlsHash::Sha256 ? 32 : 48; }
size_t hash_block(TlsHash h) { return h == TlsHash::Sha256 ? 64 : 128; }
HASH_HashType hash_type(TlsHash h) { return h == TlsHash::Sha256 ? HASH_AlgSHA256 : HASH_AlgSHA384; }

using HashContext = std::unique_ptr<HASHContext, Deleter<HASH_Destroy>>;
using SymKey = std::unique_ptr<PK11SymKey, Deleter<PK11_FreeSymKey>>;

const unsigned char* bytes(std::string_view s) { return reinterpret_cast<const unsigned char*>(s.data()); }

void wipe(std::string& s) {
  explicit_bzero(s.data(), s.size());
  s.clear();
}

// HMAC (RFC 2104) of the concatenated parts; the key is at most one hash block (TLS secrets are).
std::string hmac(TlsHash h, std::string_view key, std::initializer_list<std::string_view> parts) {
  unsigned char pad[128];
  const size_t block = hash_block(h);
  std::string digest(hash_len(h), '\0');
  if (key.size() > block) return {};
  auto run = [&](unsigned char x, std::initializer_list<std::string_view> data, unsigned char* out) {
    std::memset(pad, 0, block);
    std::memcpy(pad, key.data(), key.size());
    for (size_t i = 0; i < block; ++i) pad[i] ^= x;
    HashContext ctx(HASH_Create(hash_type(h)));
    if (!ctx) return false;
    HASH_Begin(ctx.get());
    HASH_Update(ctx.get(), pad, static_cast<unsigned>(block));
    for (auto d : data) HASH_Update(ctx.get(), bytes(d), static_cast<unsigned>(d.size()));
    unsigned len = 0;
    HASH_End(ctx.get(), out, &len, static_cast<unsigned>(hash_len(h)));
    return len == hash_len(h);
  };
  auto* out = reinterpret_cast<unsigned char*>(digest.data());
  unsigned char inner[48];
  bool ok = run(0x36, parts, inner) &&
            run(0x5c, {std::string_view(reinterpret_cast<char*>(inner), hash_len(h))}, out);
  explicit_bzero(pad, sizeof pad);
  explicit_bzero(inner, sizeof inner);
  if (!ok) return {};
  return digest;
}

void put16(std::string& out, size_t v) {
  out.push_back(static_cast<char>((v >> 8) & 0xff));
  out.push_back(static_cast<char>(v & 0xff));
}

std::string_view alert_name(uint8_t description) {
  switch (description) {
    case 0: return "close_notify";
    case 10: return "unexpected_message";
    case 20: return "bad_record_mac";
    case 22: return "record_overflow";
    case 40: return "handshake_failure";
    case 42: return "bad_certificate";
    case 46: return "certificate_unknown";
    case 47: return "illegal_parameter";
    case 50: return "decode_error";
    case 51: return "decrypt_error";
    case 80: return "internal_error";
    case 90: return "user_canceled";
    case 109: return "missing_extension";
    case 116: return "certificate_required";
    default: return "alert";
  }
}

}  // namespace

std::string hkdf_expand(TlsHash hash, std::string_view prk, std::string_view info, size_t length) {
  std::string out;
  std::string block;
  for (unsigned char counter = 1; out.size() < length; ++counter) {
    const char c = static_cast<char>(counter);
    block = hmac(hash, prk, {block, info, std::string_view(&c, 1)});
    if (block.empty() || counter == 255) return {};
    out.append(block, 0, std::min(block.size(), length - out.size()));
  }
  wipe(block);
  return out;
}

std::string hkdf_expand_label(TlsHash hash, std::string_view secret, std::string_view label,
                              std::string_view context, size_t length) {
  std::string info;
  put16(info, length);
  info.push_back(static_cast<char>(6 + label.size()));
  info.append("tls13 ").append(label);
  info.push_back(static_cast<char>(context.size()));
  info.append(context);
  return hkdf_expand(hash, secret, info, length);
}

// The keys of one direction, and the softoken key object of the current call.
struct Tls13Records::Direction {
  const Aead* aead = nullptr;
  std::string secret;
  unsigned char key[32] = {};
  unsigned char iv[kNonce] = {};
  uint64_t sequence = 0;
  CK_ATTRIBUTE_TYPE operation = CKA_ENCRYPT;
  SymKey live;

  ~Direction() {
    wipe(secret);
    explicit_bzero(key, sizeof key);
    explicit_bzero(iv, sizeof iv);
  }

  bool install(std::string next) {
    release();
    wipe(secret);
    secret = std::move(next);
    std::string k = hkdf_expand_label(aead->hash, secret, "key", {}, aead->key_len);
    std::string i = hkdf_expand_label(aead->hash, secret, "iv", {}, kNonce);
    bool ok = k.size() == aead->key_len && i.size() == kNonce;
    if (ok) {
      std::memcpy(key, k.data(), k.size());
      std::memcpy(iv, i.data(), i.size());
    }
    wipe(k);
    wipe(i);
    sequence = 0;
    return ok;
  }

  bool update() { return install(hkdf_expand_label(aead->hash, secret, "traffic upd", {}, secret.size())); }

  void release() { live.reset(); }

  void nonce(unsigned char out[kNonce]) const {
    std::memcpy(out, iv, kNonce);
    for (int i = 0; i < 8; ++i) out[kNonce - 1 - i] ^= static_cast<unsigned char>(sequence >> (8 * i));
  }

  // `in` -> `out` (sealing adds the tag, opening removes it); false when NSS refuses or, opening,
  // when the tag does not match.
  bool crypt(std::string_view aad, const unsigned char* in, size_t in_len, unsigned char* out, size_t out_max,
             size_t* out_len) {
    if (!live) {
      NssSlot slot(PK11_GetInternalSlot());
      if (!slot) return false;
      SECItem item{siBuffer, key, static_cast<unsigned>(aead->key_len)};
      live.reset(PK11_ImportSymKey(slot.get(), aead->mechanism, PK11_OriginUnwrap, operation, &item, nullptr));
      if (!live) return false;
    }
    unsigned char n[kNonce];
    nonce(n);
    CK_GCM_PARAMS_V3 gcm{n, kNonce, kNonce * 8, const_cast<unsigned char*>(bytes(aad)), aad.size(), kTag * 8};
    CK_SALSA20_CHACHA20_POLY1305_PARAMS chacha{n, kNonce, const_cast<unsigned char*>(bytes(aad)), aad.size()};
    SECItem params = aead->mechanism == CKM_AES_GCM
                         ? SECItem{siBuffer, reinterpret_cast<unsigned char*>(&gcm), sizeof gcm}
                         : SECItem{siBuffer, reinterpret_cast<unsigned char*>(&chacha), sizeof chacha};
    unsigned len = 0;
    SECStatus rv = operation == CKA_ENCRYPT
                       ? PK11_Encrypt(live.get(), aead->mechanism, &params, out, &len, static_cast<unsigned>(out_max),
                                      in, static_cast<unsigned>(in_len))
                       : PK11_Decrypt(live.get(), aead->mechanism, &params, out, &len, static_cast<unsigned>(out_max),
                                      in, static_cast<unsigned>(in_len));
    *out_len = len;
    return rv == SECSuccess;
  }
};

bool Tls13Records::supports(uint16_t suite) { return aead_of(suite) != nullptr; }

Result<Tls13Records> Tls13Records::create(uint16_t suite, TrafficSecret read, TrafficSecret write) {
  const Aead* aead = aead_of(suite);
  if (aead == nullptr) return fail(ErrorKind::Internal, "TLS 1.3 suite " + std::to_string(suite) + " is not handled");
  if (read.secret.size() != hash_len(aead->hash) || write.secret.size() != hash_len(aead->hash)) {
    return fail(ErrorKind::Internal, "TLS 1.3 traffic secret of the wrong length");
  }
  Tls13Records records;
  records.suite_ = suite;
  records.read_ = std::make_unique<Direction>();
  records.write_ = std::make_unique<Direction>();
  records.read_->aead = records.write_->aead = aead;
  records.read_->operation = CKA_DECRYPT;
  records.write_->operation = CKA_ENCRYPT;
  if (!records.read_->install(std::move(read.secret)) || !records.write_->install(std::move(write.secret))) {
    return fail(ErrorKind::Internal, "cannot derive TLS 1.3 record keys");
  }
  records.read_->sequence = read.sequence;
  records.write_->sequence = write.sequence;
  return records;
}

Tls13Records::Tls13Records(Tls13Records&&) noexcept = default;
Tls13Records& Tls13Records::operator=(Tls13Records&&) noexcept = default;
Tls13Records::~Tls13Records() = default;

uint64_t Tls13Records::read_sequence() const { return read_ ? read_->sequence : 0; }
uint64_t Tls13Records::write_sequence() const { return write_ ? write_->sequence : 0; }

bool Tls13Records::seal(uint8_t type, std::string_view content, std::string& wire) {
  if (write_->sequence == UINT64_MAX) return false;
  thread_local std::string inner;
  inner.assign(content);
  inner.push_back(static_cast<char>(type));
  const size_t body = inner.size() + kTag;
  const size_t at = wire.size();
  wire.push_back(static_cast<char>(kApplicationData));
  wire.push_back('\x03');
  wire.push_back('\x03');
  put16(wire, body);
  wire.resize(at + kHeader + body);
  auto* out = reinterpret_cast<unsigned char*>(wire.data() + at + kHeader);
  size_t len = 0;
  bool ok = write_->crypt(std::string_view(wire.data() + at, kHeader), bytes(inner), inner.size(), out, body, &len) &&
            len == body;
  explicit_bzero(inner.data(), inner.size());
  if (!ok) {
    wire.resize(at);
    return false;
  }
  ++write_->sequence;
  return true;
}

Result<void> Tls13Records::key_update(bool request_peer, std::string& wire) {
  if (failed_ || closed_) return fail(ErrorKind::Protocol, "TLS connection closed");
  const char message[] = {static_cast<char>(kKeyUpdate), 0, 0, 1,
                          static_cast<char>(request_peer ? kUpdateRequested : kUpdateNotRequested)};
  if (!seal(kHandshake, std::string_view(message, sizeof message), wire) || !write_->update()) {
    return fatal(kInternalError, "cannot send KeyUpdate", wire);
  }
  write_->release();
  return {};
}

Result<void> Tls13Records::send_record(uint8_t content_type, std::string_view content, std::string& wire) {
  if (failed_ || closed_) return fail(ErrorKind::Protocol, "TLS connection closed");
  bool ok = seal(content_type, content, wire);
  write_->release();
  if (!ok) return fatal(kInternalError, "cannot protect a record", wire);
  return {};
}

tl::unexpected<Error> Tls13Records::fatal(uint8_t alert, std::string why, std::string& wire) {
  failed_ = true;
  const char message[] = {2, static_cast<char>(alert)};
  if (!closed_) seal(kAlert, std::string_view(message, sizeof message), wire);
  closed_ = true;
  read_->release();
  write_->release();
  return fail(ErrorKind::Protocol, "TLS " + std::string(alert_name(alert)) + ": " + why);
}

Result<void> Tls13Records::decode(std::string_view in, std::string& plain, std::string& wire) {
  if (failed_) return fail(ErrorKind::Protocol, "TLS connection already failed");
  struct Release {
    Tls13Records* r;
    ~Release() {
      r->read_->release();
      r->write_->release();
    }
  } release{this};
  // Complete records are read where they arrived; only an incomplete tail is copied.
  std::string joined;
  std::string_view data = in;
  if (!partial_.empty()) {
    joined = std::move(partial_);
    partial_.clear();
    joined.append(in);
    data = joined;
  }
  while (!peer_closed_) {
    if (data.size() < kHeader) break;
    auto* h = bytes(data);
    const size_t length = (size_t{h[3]} << 8) | h[4];
    // Checked on the header alone, so a bogus length is refused before anything is buffered.
    if (h[0] != kApplicationData) {
      return fatal(kUnexpectedMessage,
                   h[0] == kChangeCipherSpec ? "change_cipher_spec after the handshake"
                                             : "unprotected record of type " + std::to_string(h[0]),
                   wire);
    }
    if (length > kMaxCiphertext) return fatal(kRecordOverflow, "record of " + std::to_string(length) + " bytes", wire);
    if (data.size() < kHeader + length) break;
    auto opened = open_record(data.substr(0, kHeader), data.substr(kHeader, length), plain, wire);
    if (!opened) return opened;
    data.remove_prefix(kHeader + length);
  }
  if (!peer_closed_) partial_.assign(data);
  return {};
}

Result<void> Tls13Records::open_record(std::string_view header, std::string_view body, std::string& plain,
                                       std::string& wire) {
  if (body.size() < kTag + 1) return fatal(kBadRecordMac, "record too short to be protected", wire);
  if (read_->sequence == UINT64_MAX) return fatal(kUnexpectedMessage, "read sequence number exhausted", wire);
  thread_local std::string inner;
  inner.resize(body.size());
  size_t len = 0;
  if (!read_->crypt(header, bytes(body), body.size(), reinterpret_cast<unsigned char*>(inner.data()), inner.size(),
                    &len)) {
    return fatal(kBadRecordMac, "record " + std::to_string(read_->sequence) + " failed authentication", wire);
  }
  ++read_->sequence;
  inner.resize(len);
  // TLSInnerPlaintext: content, type, zero padding.
  size_t end = inner.find_last_not_of('\0');
  if (end == std::string::npos) return fatal(kUnexpectedMessage, "record with no content type", wire);
  const auto type = static_cast<uint8_t>(inner[end]);
  std::string_view content(inner.data(), end);
  if (content.size() > kMaxPlaintext) return fatal(kRecordOverflow, "plaintext over 16 KiB", wire);
  if (type != kHandshake && !handshake_.empty()) {
    return fatal(kUnexpectedMessage, "a handshake message interrupted by another record type", wire);
  }
  switch (type) {
    case kApplicationData:
      plain.append(content);
      return {};
    case kAlert: {
      if (content.size() != 2) return fatal(kDecodeError, "alert of " + std::to_string(content.size()) + " bytes", wire);
      const auto description = static_cast<uint8_t>(content[1]);
      if (description == kCloseNotify) {
        peer_closed_ = true;
        return {};
      }
      if (description == kUserCanceled) return {};  // a close_notify follows
      failed_ = true;
      closed_ = true;  // no alert answers an alert
      return fail(ErrorKind::Protocol, "TLS peer sent alert " + std::string(alert_name(description)) + " (" +
                                           std::to_string(description) + ")");
    }
    case kHandshake:
      if (content.empty()) return fatal(kUnexpectedMessage, "empty handshake record", wire);
      return on_handshake(content, wire);
    default:
      return fatal(kUnexpectedMessage, "record of content type " + std::to_string(type), wire);
  }
}

// The peer may send only KeyUpdate (5 bytes) after the handshake: we never ask for post-handshake
// authentication. Any other message is refused from its first byte, so at most 4 bytes wait here.
Result<void> Tls13Records::on_handshake(std::string_view content, std::string& wire) {
  handshake_.append(content);
  if (static_cast<uint8_t>(handshake_[0]) != kKeyUpdate) {
    return fatal(kUnexpectedMessage,
                 "handshake message " + std::to_string(static_cast<uint8_t>(handshake_[0])) + " after the handshake",
                 wire);
  }
  if (handshake_.size() < 4) return {};
  auto* m = bytes(handshake_);
  const size_t length = (size_t{m[1]} << 16) | (size_t{m[2]} << 8) | m[3];
  if (length != 1) return fatal(kDecodeError, "KeyUpdate of " + std::to_string(length) + " bytes", wire);
  if (handshake_.size() < 5) return {};
  const uint8_t request = m[4];
  // A key change must end its record (RFC 8446 §5.1).
  if (handshake_.size() != 5) return fatal(kUnexpectedMessage, "data after a KeyUpdate in its record", wire);
  handshake_.clear();
  if (request != kUpdateNotRequested && request != kUpdateRequested) {
    return fatal(kIllegalParameter, "KeyUpdate request " + std::to_string(request), wire);
  }
  if (!read_->update()) return fatal(kInternalError, "cannot derive the next read key", wire);
  if (request == kUpdateRequested && !closed_) return key_update(false, wire);
  return {};
}

Result<void> Tls13Records::encode(std::string_view plain, std::string& wire) {
  if (failed_ || closed_) return fail(ErrorKind::Protocol, "TLS connection closed");
  struct Release {
    Direction* d;
    ~Release() { d->release(); }
  } release{write_.get()};
  while (!plain.empty()) {
    if (write_->sequence >= kRecordsPerWriteKey) {
      auto updated = key_update(false, wire);
      if (!updated) return updated;
    }
    const size_t n = std::min(plain.size(), kMaxPlaintext);
    if (!seal(kApplicationData, plain.substr(0, n), wire)) return fatal(kInternalError, "cannot protect a record", wire);
    plain.remove_prefix(n);
  }
  return {};
}

void Tls13Records::close(std::string& wire) {
  if (failed_ || closed_) return;
  const char message[] = {1, static_cast<char>(kCloseNotify)};
  seal(kAlert, std::string_view(message, sizeof message), wire);
  write_->release();
  closed_ = true;
}

}  // namespace common::tls
