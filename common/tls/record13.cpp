// record13.cpp: TLS 1.3 records after the handshake. Keys are imported into NSS's softoken for one
// decode or encode call and dropped at its end, so an idle connection holds no NSS object.
#include "common/tls/record13.hpp"

#include <algorithm>
#include <atomic>
#include <cstring>
#include <utility>

#include <pk11pub.h>
#include <prerror.h>
#include <secerr.h>
#include <sechash.h>

#include "common/deleter.hpp"
#include "common/log/log.hpp"
#include "common/tls/handles.hpp"
#include "common/tls/nss.hpp"
#include "common/tls/protect_observer.hpp"
#include "common/tls/record13_internal.hpp"

namespace common::tls {

namespace record13 {
namespace {

struct Faults {
  std::atomic<bool> armed{false};
  std::atomic<bool> paused{false};
  std::atomic<unsigned> counted[kNssCalls] = {};
  std::atomic<unsigned> fail_at[kNssCalls] = {};
};

Faults& faults() {
  static Faults f;
  return f;
}

}  // namespace

void fail_nth_call(NssCall call, unsigned nth) {
  auto& f = faults();
  for (size_t i = 0; i < kNssCalls; ++i) {
    f.counted[i] = 0;
    f.fail_at[i] = 0;
  }
  f.fail_at[static_cast<size_t>(call)] = nth;
  f.paused = false;
  f.armed = true;
}

unsigned calls_counted(NssCall call) { return faults().counted[static_cast<size_t>(call)]; }

void pause_faults(bool paused) { faults().paused = paused; }

void disarm_faults() {
  faults().armed = false;
  faults().paused = false;
}

bool injected_failure(NssCall call) {
  auto& f = faults();
  if (!f.armed.load(std::memory_order_relaxed) || f.paused.load(std::memory_order_relaxed)) return false;
  const auto i = static_cast<size_t>(call);
  const unsigned n = ++f.counted[i];
  if (n != f.fail_at[i]) return false;
  PORT_SetError(SEC_ERROR_LIBRARY_FAILURE);
  return true;
}

}  // namespace record13

namespace {

using record13::AeadResult;
using record13::injected_failure;
using record13::NssCall;

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
constexpr size_t kMaxInnerPlaintext = kMaxPlaintext + 1;  // content, type and padding (RFC 8446 §5.4)
constexpr size_t kMaxCiphertext = kMaxPlaintext + 256;    // RFC 8446 §5.2
// Well inside AES-GCM's 2^24.5 full-size records per key (RFC 8446 §5.5): our own KeyUpdate then.
constexpr uint64_t kRecordsPerWriteKey = uint64_t{1} << 23;
// Records in a row without application data before the peer is cut off, as OpenSSL's
// MAX_EMPTY_RECORDS: a real peer sends a KeyUpdate or an empty record now and then, never 33 at once.
constexpr unsigned kMaxIdleRecords = 32;

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
// Empty when NSS fails: every caller checks the length it gets.
std::string hmac(TlsHash h, std::string_view key, std::initializer_list<std::string_view> parts) {
  unsigned char pad[128];
  const size_t block = hash_block(h);
  std::string digest(hash_len(h), '\0');
  if (key.size() > block) return {};
  // One hash context for both passes: HASH_Begin starts it afresh, and creating one is the costly part.
  if (injected_failure(NssCall::Hash)) return {};
  HashContext ctx(HASH_Create(hash_type(h)));
  if (!ctx) return {};
  auto run = [&](unsigned char x, std::initializer_list<std::string_view> data, unsigned char* out) {
    std::memset(pad, 0, block);
    std::memcpy(pad, key.data(), key.size());
    for (size_t i = 0; i < block; ++i) pad[i] ^= x;
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
  if (!ok) {
    wipe(digest);
    return {};
  }
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

CK_MECHANISM_TYPE mechanism_of(record13::AeadKind kind) {
  return kind == record13::AeadKind::AesGcm ? CKM_AES_GCM : CKM_CHACHA20_POLY1305;
}

// The softoken key object for one operation (CKA_ENCRYPT or CKA_DECRYPT); null when NSS refuses.
SymKey import_key(CK_MECHANISM_TYPE mechanism, CK_ATTRIBUTE_TYPE operation, const unsigned char* key, size_t len) {
  if (injected_failure(NssCall::KeyImport)) return nullptr;
  NssSlot slot(PK11_GetInternalSlot());
  if (!slot) return nullptr;
  SECItem item{siBuffer, const_cast<unsigned char*>(key), static_cast<unsigned>(len)};
  return SymKey(PK11_ImportSymKey(slot.get(), mechanism, PK11_OriginUnwrap, operation, &item, nullptr));
}

// `in` -> `out` under `key`: sealing appends the 16-byte tag, opening checks and removes it.
AeadResult run_aead(PK11SymKey* key, CK_MECHANISM_TYPE mechanism, bool seal, const unsigned char nonce[kNonce],
                    std::string_view aad, const unsigned char* in, size_t in_len, unsigned char* out, size_t out_max,
                    size_t* out_len) {
  unsigned char n[kNonce];
  std::memcpy(n, nonce, kNonce);
  CK_GCM_PARAMS_V3 gcm{n, kNonce, kNonce * 8, const_cast<unsigned char*>(bytes(aad)), aad.size(), kTag * 8};
  CK_SALSA20_CHACHA20_POLY1305_PARAMS chacha{n, kNonce, const_cast<unsigned char*>(bytes(aad)), aad.size()};
  SECItem params = mechanism == CKM_AES_GCM
                       ? SECItem{siBuffer, reinterpret_cast<unsigned char*>(&gcm), sizeof gcm}
                       : SECItem{siBuffer, reinterpret_cast<unsigned char*>(&chacha), sizeof chacha};
  unsigned len = 0;
  *out_len = 0;
  if (seal) {
    if (injected_failure(NssCall::Encrypt)) return AeadResult::LocalFailure;
    SECStatus rv = PK11_Encrypt(key, mechanism, &params, out, &len, static_cast<unsigned>(out_max), in,
                                static_cast<unsigned>(in_len));
    if (rv != SECSuccess || len != in_len + kTag) return AeadResult::LocalFailure;
  } else {
    if (injected_failure(NssCall::Decrypt)) return AeadResult::LocalFailure;
    SECStatus rv = PK11_Decrypt(key, mechanism, &params, out, &len, static_cast<unsigned>(out_max), in,
                                static_cast<unsigned>(in_len));
    // Softoken reports a tag that does not verify as CKR_ENCRYPTED_DATA_INVALID, which PK11_Decrypt
    // maps to SEC_ERROR_BAD_DATA; any other error is NSS unable to run the operation.
    if (rv != SECSuccess) return PR_GetError() == SEC_ERROR_BAD_DATA ? AeadResult::BadTag : AeadResult::LocalFailure;
    if (len + kTag != in_len) return AeadResult::LocalFailure;
  }
  *out_len = len;
  return AeadResult::Ok;
}

// Per-thread buffers for one record's plaintext, so a record costs no allocation; wiped after use.
std::string& open_buffer() {
  thread_local std::string buffer;
  return buffer;
}

std::string& seal_buffer() {
  thread_local std::string buffer;
  return buffer;
}

// Derived keys, held apart until every derivation step has succeeded.
struct KeySet {
  std::string secret;
  unsigned char key[32] = {};
  unsigned char iv[kNonce] = {};
  KeySet() = default;
  KeySet(const KeySet&) = delete;
  KeySet& operator=(const KeySet&) = delete;
  ~KeySet() {
    wipe(secret);
    explicit_bzero(key, sizeof key);
    explicit_bzero(iv, sizeof iv);
  }
};

// The key and IV of `secret` (RFC 8446 §7.3) into `out`; false, with `out` wiped, when a step fails.
bool derive(const Aead& aead, std::string secret, KeySet& out) {
  out.secret = std::move(secret);
  std::string k;
  std::string i;
  // Each step only after the one before succeeded, so the NSS error of the failing one is kept.
  const bool ok = out.secret.size() == hash_len(aead.hash) &&
                  (k = hkdf_expand_label(aead.hash, out.secret, "key", {}, aead.key_len)).size() == aead.key_len &&
                  (i = hkdf_expand_label(aead.hash, out.secret, "iv", {}, kNonce)).size() == kNonce;
  if (ok) {
    std::memcpy(out.key, k.data(), k.size());
    std::memcpy(out.iv, i.data(), i.size());
  } else {
    wipe(out.secret);
  }
  wipe(k);
  wipe(i);
  return ok;
}

}  // namespace

std::string hkdf_expand(TlsHash hash, std::string_view prk, std::string_view info, size_t length) {
  if (length > 255 * hash_len(hash)) return {};  // RFC 5869 §2.3
  std::string out;
  std::string block;
  for (unsigned counter = 1; out.size() < length; ++counter) {
    const char c = static_cast<char>(counter);
    std::string next = hmac(hash, prk, {block, info, std::string_view(&c, 1)});
    wipe(block);
    block = std::move(next);
    if (block.size() != hash_len(hash)) {
      wipe(out);
      return {};
    }
    out.append(block, 0, std::min(block.size(), length - out.size()));
  }
  wipe(block);
  return out;
}

std::string hkdf_expand_label(TlsHash hash, std::string_view secret, std::string_view label,
                              std::string_view context, size_t length) {
  // HkdfLabel's fields (RFC 8446 §7.1): a 16-bit length, labels of 7 to 255 bytes, a context up to 255.
  if (length > 0xffff || label.size() > 255 - 6 || context.size() > 255) return {};
  std::string info;
  put16(info, length);
  info.push_back(static_cast<char>(6 + label.size()));
  info.append("tls13 ").append(label);
  info.push_back(static_cast<char>(context.size()));
  info.append(context);
  return hkdf_expand(hash, secret, info, length);
}

namespace record13 {

namespace {

AeadResult one_shot(AeadKind kind, bool seal, std::string_view key, std::string_view nonce, std::string_view aad,
                    std::string_view in, std::string& out) {
  out.clear();
  const size_t key_len = key.size();
  if (nonce.size() != kNonce || (kind == AeadKind::AesGcm ? key_len != 16 && key_len != 32 : key_len != 32)) {
    return AeadResult::LocalFailure;
  }
  if (!seal && in.size() < kTag) return AeadResult::BadTag;
  SymKey k = import_key(mechanism_of(kind), seal ? CKA_ENCRYPT : CKA_DECRYPT, bytes(key), key_len);
  if (!k) return AeadResult::LocalFailure;
  out.resize(in.size() + kTag);
  size_t len = 0;
  AeadResult r = run_aead(k.get(), mechanism_of(kind), seal, bytes(nonce), aad, bytes(in), in.size(),
                          reinterpret_cast<unsigned char*>(out.data()), out.size(), &len);
  if (r != AeadResult::Ok) {
    wipe(out);
    return r;
  }
  out.resize(len);
  return r;
}

}  // namespace

std::string_view open_scratch() { return open_buffer(); }
std::string_view seal_scratch() { return seal_buffer(); }

AeadResult aead_seal(AeadKind kind, std::string_view key, std::string_view nonce, std::string_view aad,
                     std::string_view plain, std::string& sealed) {
  return one_shot(kind, true, key, nonce, aad, plain, sealed);
}

AeadResult aead_open(AeadKind kind, std::string_view key, std::string_view nonce, std::string_view aad,
                     std::string_view sealed, std::string& plain) {
  return one_shot(kind, false, key, nonce, aad, sealed, plain);
}

}  // namespace record13

// The keys of one direction, and the softoken key object of the current call. A direction whose
// key change failed is dead: its keys are wiped and it protects or opens nothing more.
struct Tls13Records::Direction {
  const Aead* aead = nullptr;
  std::string secret;
  unsigned char key[32] = {};
  unsigned char iv[kNonce] = {};
  uint64_t sequence = 0;
  CK_ATTRIBUTE_TYPE operation = CKA_ENCRYPT;
  SymKey live;
  bool dead = false;

  ~Direction() { kill(); }

  // Keys derived in full (derive() or next()) replace the current ones; the sequence restarts.
  void commit(KeySet& next) {
    release();
    wipe(secret);
    secret.swap(next.secret);
    std::memcpy(key, next.key, sizeof key);
    std::memcpy(iv, next.iv, sizeof iv);
    sequence = 0;
  }

  // The keys after a KeyUpdate (RFC 8446 §7.2), derived apart: the current ones stay in force until
  // commit(), so a failure here leaves no half-changed state behind.
  bool next(KeySet& out) const {
    if (dead) return false;
    std::string s = hkdf_expand_label(aead->hash, secret, "traffic upd", {}, secret.size());
    if (s.size() != secret.size()) return false;
    return derive(*aead, std::move(s), out);
  }

  void kill() {
    release();
    wipe(secret);
    explicit_bzero(key, sizeof key);
    explicit_bzero(iv, sizeof iv);
    dead = true;
  }

  void release() { live.reset(); }

  void nonce(unsigned char out[kNonce]) const {
    std::memcpy(out, iv, kNonce);
    for (int i = 0; i < 8; ++i) out[kNonce - 1 - i] ^= static_cast<unsigned char>(sequence >> (8 * i));
  }

  AeadResult crypt(std::string_view aad, const unsigned char* in, size_t in_len, unsigned char* out, size_t out_max,
                   size_t* out_len) {
    *out_len = 0;
    if (dead) return AeadResult::LocalFailure;
    if (!live) {
      live = import_key(aead->mechanism, operation, key, aead->key_len);
      if (!live) return AeadResult::LocalFailure;
    }
    unsigned char n[kNonce];
    nonce(n);
    return run_aead(live.get(), aead->mechanism, operation == CKA_ENCRYPT, n, aad, in, in_len, out, out_max, out_len);
  }
};

bool Tls13Records::supports(uint16_t suite) { return aead_of(suite) != nullptr; }

Result<Tls13Records> Tls13Records::create(uint16_t suite, TrafficSecret read, TrafficSecret write) {
  // The secrets are wiped on every way out, taken or refused.
  struct WipeArguments {
    TrafficSecret& read;
    TrafficSecret& write;
    ~WipeArguments() {
      wipe(read.secret);
      wipe(write.secret);
    }
  } wipe_arguments{read, write};
  const Aead* aead = aead_of(suite);
  if (aead == nullptr) return fail(ErrorKind::Internal, "TLS 1.3 suite " + std::to_string(suite) + " is not handled");
  if (read.secret.size() != hash_len(aead->hash) || write.secret.size() != hash_len(aead->hash)) {
    return fail(ErrorKind::Internal, "TLS 1.3 traffic secret of the wrong length");
  }
  KeySet read_keys;
  KeySet write_keys;
  if (!derive(*aead, std::move(read.secret), read_keys) || !derive(*aead, std::move(write.secret), write_keys)) {
    log::warning("tls").event("tls_local_failure").kv("reason", "cannot derive TLS 1.3 record keys: " + last_error_text());
    return fail(ErrorKind::Internal, "cannot derive TLS 1.3 record keys");
  }
  Tls13Records records;
  records.suite_ = suite;
  records.read_ = std::make_unique<Direction>();
  records.write_ = std::make_unique<Direction>();
  records.read_->aead = records.write_->aead = aead;
  records.read_->operation = CKA_DECRYPT;
  records.write_->operation = CKA_ENCRYPT;
  records.read_->commit(read_keys);
  records.write_->commit(write_keys);
  records.read_->sequence = read.sequence;
  records.write_->sequence = write.sequence;
  return records;
}

Tls13Records::Tls13Records(Tls13Records&&) noexcept = default;
Tls13Records& Tls13Records::operator=(Tls13Records&&) noexcept = default;
Tls13Records::~Tls13Records() = default;

void Tls13Records::release_keys() {
  read_->release();
  write_->release();
}

uint64_t Tls13Records::read_sequence() const { return read_ ? read_->sequence : 0; }
uint64_t Tls13Records::write_sequence() const { return write_ ? write_->sequence : 0; }

bool Tls13Records::protect(std::string_view inner, std::string& wire) {
  // A direction that failed never protects again: whatever it would send could reuse a nonce.
  if (write_->dead || write_->sequence == UINT64_MAX) return false;
  const size_t body = inner.size() + kTag;
  if (body > 0xffff) return false;
  const size_t at = wire.size();
  wire.push_back(static_cast<char>(kApplicationData));
  wire.push_back('\x03');
  wire.push_back('\x03');
  put16(wire, body);
  wire.resize(at + kHeader + body);
  auto* out = reinterpret_cast<unsigned char*>(wire.data() + at + kHeader);
  size_t len = 0;
  observe_protect({Protector::Records, std::string_view(reinterpret_cast<const char*>(write_->key), write_->aead->key_len),
                   std::string_view(reinterpret_cast<const char*>(write_->iv), kNonce), write_->sequence});
  AeadResult r = write_->crypt(std::string_view(wire.data() + at, kHeader), bytes(inner), inner.size(), out, body, &len);
  if (r != AeadResult::Ok || len != body) {
    // NSS may have got as far as the nonce: nothing more goes out under this key.
    log::warning("tls").event("tls_local_failure").kv("reason", "cannot protect a TLS 1.3 record: " + last_error_text());
    explicit_bzero(out, body);
    wire.resize(at);
    write_->kill();
    return false;
  }
  ++write_->sequence;
  return true;
}

bool Tls13Records::seal(uint8_t type, std::string_view content, std::string& wire) {
  std::string& inner = seal_buffer();
  inner.assign(content);
  inner.push_back(static_cast<char>(type));
  const bool ok = protect(inner, wire);
  explicit_bzero(inner.data(), inner.size());
  return ok;
}

Result<void> Tls13Records::key_update(bool request_peer, std::string& wire) {
  if (failed_ || closed_) return fail(ErrorKind::Protocol, "TLS connection closed");
  // The next write key first: if it cannot be derived, the current key and its sequence number are
  // still untouched, so the internal_error alert goes out under a nonce never used.
  KeySet next;
  if (!write_->next(next)) {
    return fatal(kInternalError, "cannot derive the next write key: " + last_error_text(), wire, true);
  }
  const char message[] = {static_cast<char>(kKeyUpdate), 0, 0, 1,
                          static_cast<char>(request_peer ? kUpdateRequested : kUpdateNotRequested)};
  if (!seal(kHandshake, std::string_view(message, sizeof message), wire)) {
    return fatal(kInternalError, "cannot protect our KeyUpdate", wire, true);
  }
  write_->commit(next);
  update_owed_ = false;
  return {};
}

tl::unexpected<Error> Tls13Records::fatal(uint8_t alert, std::string why, std::string& wire, bool local) {
  failed_ = true;
  if (!closed_) {
    const char message[] = {2, static_cast<char>(alert)};
    if (!seal(kAlert, std::string_view(message, sizeof message), wire)) why += " (no alert sent: the write key is gone)";
  }
  closed_ = true;
  // Nothing is protected or opened after a fatal alert: the keys go now, not when the connection does.
  read_->kill();
  write_->kill();
  if (local) log::warning("tls").event("tls_local_failure").kv("reason", why);
  return fail(local ? ErrorKind::Internal : ErrorKind::Protocol, "TLS " + std::string(alert_name(alert)) + ": " + why);
}

Result<void> Tls13Records::decode(std::string_view in, std::string& plain, std::string& wire) {
  if (failed_) return fail(ErrorKind::Protocol, "TLS connection already failed");
  struct Release {
    Tls13Records* r;
    ~Release() { r->release_keys(); }
  } release{this};
  // Complete records are read where they arrived; only an incomplete tail is copied. Bytes that
  // trickle in are appended to that tail, never copied with it again, so a record sent one byte at
  // a time costs linear work, not 2^14 copies of up to 2^14 bytes.
  const bool buffered = !partial_.empty();
  if (buffered) partial_.append(in);
  std::string_view data = buffered ? std::string_view(partial_) : in;
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
  if (peer_closed_) {
    partial_.clear();
  } else if (buffered) {
    partial_.erase(0, partial_.size() - data.size());
  } else {
    partial_.assign(data);
  }
  // One KeyUpdate of ours answers every update_requested read in this call: RFC 8446 §4.6.3 wants
  // it before our next application data, and one reply per request would let a peer make us derive
  // and encrypt once for every 22-byte record it sends.
  if (update_owed_ && !closed_) return key_update(false, wire);
  return {};
}

Result<void> Tls13Records::count_idle(std::string& wire) {
  if (++idle_records_ > kMaxIdleRecords) {
    return fatal(kUnexpectedMessage,
                 "more than " + std::to_string(kMaxIdleRecords) + " records in a row without application data", wire);
  }
  return {};
}

Result<void> Tls13Records::open_record(std::string_view header, std::string_view body, std::string& plain,
                                       std::string& wire) {
  // Shorter than the tag, it cannot be authentic. A tag alone that verifies is a record without a
  // content type, refused below as unexpected_message (RFC 8446 §5.4), as a reader that decrypts
  // first would.
  if (body.size() < kTag) return fatal(kBadRecordMac, "record too short to be protected", wire);
  if (read_->sequence == UINT64_MAX) return fatal(kUnexpectedMessage, "read sequence number exhausted", wire);
  // The plaintext (a login line, a message) is wiped when this returns, whichever way it returns.
  std::string& inner = open_buffer();
  inner.resize(body.size());
  struct Wipe {
    std::string& s;
    ~Wipe() { explicit_bzero(s.data(), s.size()); }
  } wipe_inner{inner};
  size_t len = 0;
  const uint64_t sequence = read_->sequence;
  switch (read_->crypt(header, bytes(body), body.size(), reinterpret_cast<unsigned char*>(inner.data()), inner.size(),
                       &len)) {
    case AeadResult::Ok:
      break;
    case AeadResult::BadTag:
      return fatal(kBadRecordMac, "record " + std::to_string(sequence) + " failed authentication", wire);
    case AeadResult::LocalFailure:
      return fatal(kInternalError, "NSS cannot decrypt record " + std::to_string(sequence) + ": " + last_error_text(),
                   wire, true);
  }
  ++read_->sequence;
  // RFC 8446 §5.4: TLSInnerPlaintext must not exceed 2^14 + 1 bytes, whatever share is padding.
  if (len > kMaxInnerPlaintext) {
    return fatal(kRecordOverflow, "inner plaintext of " + std::to_string(len) + " bytes (at most 2^14 + 1)", wire);
  }
  // TLSInnerPlaintext: content, type, zero padding.
  std::string_view decrypted(inner.data(), len);
  const size_t end = decrypted.find_last_not_of('\0');
  if (end == std::string_view::npos) return fatal(kUnexpectedMessage, "record with no content type", wire);
  const auto type = static_cast<uint8_t>(decrypted[end]);
  std::string_view content = decrypted.substr(0, end);
  if (type != kHandshake && !handshake_.empty()) {
    return fatal(kUnexpectedMessage, "a handshake message interrupted by another record type", wire);
  }
  switch (type) {
    case kApplicationData:
      if (content.empty()) return count_idle(wire);  // allowed (RFC 8446 §5.4), but not for free
      idle_records_ = 0;
      plain.append(content);
      return {};
    case kAlert: {
      // An empty Alert record is refused with unexpected_message, not decode_error: RFC 8446 §5.4
      // says a zero-length Handshake or Alert record MUST be answered with unexpected_message (and
      // §5.1 says alerts are never fragmented, so there is no message to decode at all). An alert
      // of another wrong size is a message that cannot be decoded (§6: decode_error).
      if (content.empty()) return fatal(kUnexpectedMessage, "empty alert record", wire);
      if (content.size() != 2) return fatal(kDecodeError, "alert of " + std::to_string(content.size()) + " bytes", wire);
      const auto description = static_cast<uint8_t>(content[1]);
      if (description == kCloseNotify) {
        peer_closed_ = true;
        return {};
      }
      if (description == kUserCanceled) return count_idle(wire);  // a close_notify follows
      failed_ = true;
      closed_ = true;  // no alert answers an alert
      read_->kill();
      write_->kill();
      return fail(ErrorKind::Protocol, "TLS peer sent alert " + std::string(alert_name(description)) + " (" +
                                           std::to_string(description) + ")");
    }
    case kHandshake: {
      if (content.empty()) return fatal(kUnexpectedMessage, "empty handshake record", wire);
      auto counted = count_idle(wire);
      if (!counted) return counted;
      return on_handshake(content, wire);
    }
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
  // RFC 8446 §4.6.3: a request_update other than 0 or 1 is answered with illegal_parameter.
  if (request != kUpdateNotRequested && request != kUpdateRequested) {
    return fatal(kIllegalParameter, "KeyUpdate request " + std::to_string(request), wire);
  }
  KeySet next;
  if (!read_->next(next)) {
    read_->kill();
    return fatal(kInternalError, "cannot derive the next read key: " + last_error_text(), wire, true);
  }
  read_->commit(next);
  if (request == kUpdateRequested) update_owed_ = true;
  return {};
}

Result<void> Tls13Records::encode(std::string_view plain, std::string& wire) {
  if (failed_ || closed_) return fail(ErrorKind::Protocol, "TLS connection closed");
  struct Release {
    Direction* d;
    ~Release() { d->release(); }
  } release{write_.get()};
  if (update_owed_) {
    auto updated = key_update(false, wire);
    if (!updated) return updated;
  }
  while (!plain.empty()) {
    if (write_->sequence >= kRecordsPerWriteKey) {
      auto updated = key_update(false, wire);
      if (!updated) return updated;
    }
    const size_t n = std::min(plain.size(), kMaxPlaintext);
    if (!seal(kApplicationData, plain.substr(0, n), wire)) {
      return fatal(kInternalError, "cannot protect a record", wire, true);
    }
    plain.remove_prefix(n);
  }
  return {};
}

void Tls13Records::close(std::string& wire) {
  if (failed_ || closed_) return;
  const char message[] = {1, static_cast<char>(kCloseNotify)};
  seal(kAlert, std::string_view(message, sizeof message), wire);
  closed_ = true;
  write_->kill();  // nothing is sent after close_notify
}

}  // namespace common::tls
