// server.cpp: the listener's NSS model sockets and the per-connection server transform. The call
// sequence and its traps are in docs/nss-notes.md §1: the model is configured once, each
// connection imports it over a memio stub, and every NSS call is followed by moving memio's output
// to the wire (NSS writes tickets and alerts whenever it runs).
#include "common/tls/server.hpp"

#include <algorithm>
#include <atomic>
#include <climits>
#include <mutex>
#include <optional>

#include <cert.h>
#include <keyhi.h>
#include <nss.h>
#include <pk11pub.h>
#include <prerror.h>
#include <secerr.h>
#include <ssl.h>
#include <sslexp.h>
#include <sslerr.h>
#include <sslproto.h>

#include "common/ascii.hpp"
#include "common/log/log.hpp"
#include "common/tls/client_hello.hpp"
#include "common/tls/handles.hpp"
#include "common/tls/memio.hpp"
#include "common/tls/nss.hpp"
#include "common/tls/protect_observer.hpp"
#include "common/tls/record13.hpp"

namespace common::tls {
namespace {

// Plaintext a session may queue before the handshake ends (an IMAPS greeting, a banner); more is
// a session bug, not something to buffer without limit.
constexpr size_t kMaxPendingPlaintext = 256 * 1024;
constexpr size_t kReadChunk = 16 * 1024 + 256;
// Plaintext per PR_Write, so every record NSS protects fits the 4 KiB write buffer it gives each
// socket: NSS grows that buffer to the largest record ever sent and never shrinks it, so one 16 KiB
// record would cost an idle connection 12.6 KiB for the rest of its life. 22 bytes of record
// overhead per 4 KiB instead of per 16 KiB.
constexpr size_t kMaxWriteChunk = 4096 - 64;
constexpr size_t kMaxServerName = 255;

// NSS versions the TLS 1.3 record hand-over was tested on: its sequence numbers rest on the order
// in which this NSS writes records and reports secrets (ServerTransform::hand_over).
constexpr char kHandoverTestedNss[] = "3.87";
constexpr char kHandoverNextNss[] = "3.88";

// Off for the rest of the process once a self-test fails or NSS misbehaves at a hand-over.
std::atomic<bool> g_handover_forbidden{false};

// Why this NSS may not hand records over; empty when it may.
std::string untested_nss() {
  if (NSS_VersionCheck(kHandoverTestedNss) && !NSS_VersionCheck(kHandoverNextNss)) return {};
  return "NSS " + std::string(NSS_GetVersion()) + " is not a version the TLS 1.3 record hand-over was tested on (" +
         kHandoverTestedNss + ".x); records stay in NSS";
}

bool handover_allowed() {
  static const bool tested = untested_nss().empty();
  return tested && !g_handover_forbidden.load(std::memory_order_acquire);
}

void forbid_handover(const std::string& reason) {
  g_handover_forbidden.store(true, std::memory_order_release);
  log::error("tls").event("tls_handover_disabled").kv("reason", reason + "; TLS 1.3 records stay in NSS from now on");
}

std::string version_name(uint16_t v) {
  switch (v) {
    case SSL_LIBRARY_VERSION_TLS_1_0: return "TLSv1.0";
    case SSL_LIBRARY_VERSION_TLS_1_1: return "TLSv1.1";
    case SSL_LIBRARY_VERSION_TLS_1_2: return "TLSv1.2";
    case SSL_LIBRARY_VERSION_TLS_1_3: return "TLSv1.3";
    default: return "unknown";
  }
}

Result<uint16_t> parse_min_version(std::string_view text) {
  std::string v = ascii::lowered(text);
  if (v.rfind("tlsv", 0) == 0) {
    v.erase(0, 4);
  } else if (v.rfind("tls", 0) == 0) {
    v.erase(0, 3);
  }
  if (v == "1.2") return SSL_LIBRARY_VERSION_TLS_1_2;
  if (v == "1.3") return SSL_LIBRARY_VERSION_TLS_1_3;
  if (v == "1.0" || v == "1.1" || v == "1" || v == "ssl3" || v == "3.0") {
    return fail(ErrorKind::Config, "TLS minimum version \"" + std::string(text) +
                                       "\" is refused: TLS 1.0, 1.1 and SSL 3 are off (TLS-07); use 1.2 or 1.3");
  }
  return fail(ErrorKind::Config, "unknown TLS minimum version \"" + std::string(text) + "\" (use 1.2 or 1.3)");
}

std::string cert_name(const CERTName* name) {
  std::string out;
  if (char* ascii = CERT_NameToAscii(const_cast<CERTName*>(name))) {
    out = ascii;
    PORT_Free(ascii);
  }
  return out;
}

// "*.example.org" matches "mail.example.org", not "example.org" or "a.b.example.org".
bool name_matches(std::string_view pattern, std::string_view name) {
  if (pattern == name) return true;
  if (pattern.size() > 2 && pattern.substr(0, 2) == "*.") {
    auto dot = name.find('.');
    return dot != std::string_view::npos && dot > 0 && name.substr(dot + 1) == pattern.substr(2);
  }
  return false;
}

struct CertKey {
  NssCert cert;
  NssKey key;
  KeyType type;
  std::string nickname;
};

std::string_view key_type_name(KeyType t) {
  switch (t) {
    case rsaKey: return "RSA";
    case rsaPssKey: return "RSA-PSS";
    case ecKey: return "ECDSA";
    case dsaKey: return "DSA";
    default: return "other";
  }
}

Result<std::vector<CertKey>> load_certificates(const std::vector<std::string>& nicknames, const std::string& db) {
  if (nicknames.empty()) return fail(ErrorKind::Config, "no server certificate nickname configured (TLS-05)");
  std::vector<CertKey> out;
  for (const auto& nick : nicknames) {
    NssCert cert(PK11_FindCertFromNickname(nick.c_str(), nullptr));
    if (!cert) {
      return fail(ErrorKind::Config, "server certificate \"" + nick + "\" not found in the NSS database " + db + ": " +
                                         last_error_text());
    }
    NssKey key(PK11_FindKeyByAnyCert(cert.get(), nullptr));
    if (!key) {
      return fail(ErrorKind::Config, "no private key for server certificate \"" + nick + "\" in the NSS database " +
                                         db + ": " + last_error_text());
    }
    KeyType type = SECKEY_GetPrivateKeyType(key.get());
    for (const auto& other : out) {
      if (other.type == type) {
        return fail(ErrorKind::Config, "server certificates \"" + other.nickname + "\" and \"" + nick +
                                           "\" are both " + std::string(key_type_name(type)) +
                                           ": give one certificate per key type (TLS-05)");
      }
    }
    if (CERT_CheckCertValidTimes(cert.get(), PR_Now(), PR_FALSE) != secCertTimeValid) {
      log::error("tls").event("certificate_not_valid_now").kv("nickname", nick)
          .kv("reason", "expired or not yet valid");
    }
    out.push_back(CertKey{std::move(cert), std::move(key), type, nick});
  }
  return out;
}

// What a client sent where a TLS ClientHello belonged, described without its content.
struct NotTls {
  std::string_view kind;  // text, http, sslv2_hello, tls_record, binary
  std::string verb_hex;   // the command verb, hex, when it is one a mail or HTTP client sends
  std::string detail;     // record type and version for the TLS kinds, the first byte for binary
};

std::string hex_bytes(std::string_view bytes) {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string out;
  for (unsigned char b : bytes) {
    out.push_back(kDigits[b >> 4]);
    out.push_back(kDigits[b & 15]);
  }
  return out;
}

// Verbs a plaintext client opens with (SMTP, LMTP, POP3, ManageSieve, HTTP). Only these are logged:
// the first word of a line is not always a verb (the base64 line of an AUTH PLAIN sent in two
// parts, an IMAP tag), and a prefix of a credential is still a credential.
bool known_verb(std::string_view word) {
  static constexpr std::string_view kVerbs[] = {
      "EHLO", "HELO", "LHLO", "MAIL", "RCPT", "DATA", "BDAT", "RSET", "NOOP", "QUIT", "VRFY", "EXPN",
      "HELP", "AUTH", "STARTTLS", "USER", "PASS", "APOP", "STLS", "CAPA", "STAT", "LIST", "RETR", "DELE",
      "UIDL", "TOP", "AUTHENTICATE", "CAPABILITY", "LOGOUT", "GET", "HEAD", "POST", "PUT", "DELETE",
      "OPTIONS", "CONNECT", "PATCH", "TRACE", "PRI"};
  for (auto verb : kVerbs) {
    if (ascii::iequals(word, verb)) return true;
  }
  return false;
}

bool http_method(std::string_view word) {
  for (std::string_view m : {"GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "CONNECT", "PATCH", "TRACE", "PRI"}) {
    if (word == m) return true;
  }
  return false;
}

NotTls classify_not_tls(std::string_view in) {
  auto at = [&](size_t i) { return static_cast<unsigned char>(in[i]); };
  auto hex2 = [&](size_t i) { return "0x" + hex_bytes(in.substr(i, 2)); };
  // SSL 2.0 CLIENT-HELLO: a two-byte length with the top bit set, message type 1, then the version
  // (RFC 6101 appendix E.2); old scanners still open with it.
  if (in.size() >= 5 && (at(0) & 0x80) != 0 && at(2) == 1) return {"sslv2_hello", "", "version=" + hex2(3)};
  // A TLS record, but not a handshake (change_cipher_spec, alert, application_data, heartbeat).
  if (in.size() >= 3 && at(0) >= 20 && at(0) <= 24 && at(1) == 3) {
    return {"tls_record", "", "type=" + std::to_string(at(0)) + " version=" + hex2(1)};
  }
  const std::string_view first_line = in.substr(0, in.find_first_of("\r\n"));
  for (unsigned char c : first_line) {
    if ((c < 0x20 && c != '\t') || c > 0x7e) return {"binary", "", "first_byte=0x" + hex_bytes(in.substr(0, 1))};
  }
  // Never past the first space or line end: the arguments are where credentials are.
  const std::string_view word = first_line.substr(0, first_line.find_first_of(" \t"));
  NotTls text{http_method(word) ? "http" : "text", "", ""};
  if (known_verb(word)) text.verb_hex = hex_bytes(word);
  return text;
}

class ServerTransform;
void secret_hook(PRFileDesc* fd, PRUint16 epoch, SSLSecretDirection direction, PK11SymKey* secret, void* arg);

}  // namespace

struct ServerContext::State {
  ServerOptions options;
  CipherSelection ciphers;
  SSLVersionRange versions{};
  std::string db;
  PrFd model;  // default certificates; every connection is imported from it
  std::vector<std::pair<std::string, PrFd>> sni_models;  // lowercased name -> model with its certificates

  const std::pair<std::string, PrFd>* find_sni(std::string_view name) const {
    for (const auto& entry : sni_models) {
      if (name_matches(entry.first, name)) return &entry;
    }
    return nullptr;
  }
};

namespace {

class ServerTransform final : public runtime::Transform {
 public:
  // `self_test`: the start-up check of the hand-over (self_test_suite): no client certificate
  // is asked for, the hand-over happens whatever the process allows, and success is not logged.
  ServerTransform(std::shared_ptr<ServerContext> context, const ServerContext::State& state, std::string id,
                  bool self_test = false)
      : context_(std::move(context)), state_(state), id_(std::move(id)), self_test_(self_test) {}

  ~ServerTransform() override {
    ssl_.reset();  // first: closing it may still call back into this object
    explicit_bzero(read_secret_.data(), read_secret_.size());
    explicit_bzero(write_secret_.data(), write_secret_.size());
    explicit_bzero(observed_key_.data(), observed_key_.size());
    explicit_bzero(observed_iv_.data(), observed_iv_.size());
  }

  // Builds the NSS socket; false (and failure_ set) when NSS refuses.
  bool open(PRFileDesc* model) {
    PRFileDesc* stub = memio_create();
    if (stub == nullptr) return setup_failed("PR_CreateIOLayerStub");
    PRFileDesc* ssl = SSL_ImportFD(model, stub);
    if (ssl == nullptr) {
      int err = PR_GetError();
      PR_Close(stub);
      PR_SetError(err, 0);
      return setup_failed("SSL_ImportFD");
    }
    ssl_.reset(ssl);
    memio_ = memio_state(ssl);
    memio_->owner = this;
    if (protect_observed()) memio_->on_record_out = nss_record_hook;
    if (self_test_ && (SSL_OptionSet(ssl, SSL_REQUEST_CERTIFICATE, PR_FALSE) != SECSuccess ||
                       SSL_OptionSet(ssl, SSL_REQUIRE_CERTIFICATE, SSL_REQUIRE_NEVER) != SECSuccess)) {
      return setup_failed("SSL_OptionSet(SSL_REQUEST_CERTIFICATE)");
    }
    if (SSL_ResetHandshake(ssl, PR_TRUE) != SECSuccess) return setup_failed("SSL_ResetHandshake");
    // Without the secrets the connection simply stays on NSS's record layer.
    hand_over_ = state_.options.release_nss_after_handshake && (self_test_ || handover_allowed()) &&
                 SSL_SecretCallback(ssl, secret_hook, this) == SECSuccess;
    if (hand_over_) hello_scan_.emplace();
    return true;
  }

  bool handed_over() const { return records_.has_value(); }

  // record_size_limit (RFC 8449): NSS agrees to a client's limit and keeps to it, Tls13Records
  // sends records of up to 2^14 bytes of content (a TLSInnerPlaintext of 2^14 + 1), and NSS does
  // not say what the limit was. A client that asked for smaller records (a small-footprint device)
  // stays in NSS; NSS clients and browsers ask for 2^14 + 1, no limit at all, and are handed over.
  // Our own limit is NSS's default, 2^14 + 1 (SSL_RECORD_SIZE_LIMIT is never set), which is what
  // Tls13Records accepts anyway.
  void check_record_size_limit(PRFileDesc* fd) {
    constexpr uint32_t kLargestInnerPlaintext = 16384 + 1;
    PRBool negotiated = PR_FALSE;
    std::string reason;
    if (SSL_HandshakeNegotiatedExtension(fd, ssl_record_size_limit_xtn, &negotiated) != SECSuccess) {
      reason = "SSL_HandshakeNegotiatedExtension: " + last_error_text();
    } else if (!negotiated) {
      return;
    } else if (!hello_scan_ || !hello_scan_->readable() || !hello_scan_->record_size_limit()) {
      reason = "record_size_limit negotiated, but the ClientHello was not readable";
    } else if (uint32_t limit = *hello_scan_->record_size_limit(); limit < kLargestInnerPlaintext) {
      reason = "the client asked for a record_size_limit of " + std::to_string(limit) + " (RFC 8449)";
    } else {
      return;
    }
    hand_over_ = false;
    log::debug("tls").session(id_).phase("handshake").event("tls_nss_kept").kv("reason", reason);
  }

  const std::string& failure() const { return failure_; }

  // Our KeyUpdate, for the self-test (encode() sends them by itself before the AEAD's record limit).
  Result<void> key_update(bool request_peer, std::string& wire) {
    if (!records_) return fail(ErrorKind::Internal, "the connection's records are still in NSS");
    return records_->key_update(request_peer, wire);
  }

  const runtime::SecurityFacts* facts() const override { return handshake_done_ ? &facts_ : nullptr; }
  bool peer_closed() const override { return records_ ? records_->peer_closed() : peer_closed_; }
  size_t buffered_input() const override { return records_ ? records_->buffered() : 0; }

  Result<void> decode(std::string_view in, std::string& plain, std::string& wire) override {
    if (records_) {
      auto done = records_->decode(in, plain, wire);
      if (!done) log::notice("tls").session(id_).phase("data").event("tls_failed").kv("reason", done.error().detail);
      return done;
    }
    auto done = decode_with_nss(in, plain, wire);
    if (done) hand_over();
    return done;
  }

  Result<void> encode(std::string_view plain, std::string& wire) override {
    if (records_) return records_->encode(plain, wire);
    auto done = encode_with_nss(plain, wire);
    if (done) hand_over();
    return done;
  }

  void close(std::string& wire) override {
    if (records_) {
      if (!closed_) records_->close(wire);
      closed_ = true;
      return;
    }
    if (failed_ || closed_ || !ssl_) return;
    closed_ = true;
    if (!handshake_done_) return;  // nothing is protected yet; the TCP close says it all
    PR_Shutdown(ssl_.get(), PR_SHUTDOWN_SEND);  // close_notify
    memio_->take_output(wire);
  }

  // --- NSS callbacks (found through the memio layer's owner) ---

  // A TLS 1.3 traffic secret NSS installs (epoch 3 and later carry application data). A new key
  // starts at a record boundary, where the tally of its direction restarts: for a KeyUpdate that is
  // now; the first read key arrives with the server's Finished but applies only after the client's,
  // so its tally restarts when the handshake completes (decode_with_nss).
  void on_secret(PRFileDesc* fd, PRUint16 epoch, SSLSecretDirection direction, PK11SymKey* secret) {
    if (memio_ == nullptr) return;
    const bool read = direction == ssl_secret_read;
    if (!read && memio_->on_record_out != nullptr) observe_write_key(fd, secret);
    if (epoch < 3) return;
    (read ? read_epoch_ : write_epoch_) = epoch;
    RecordTally& tally = read ? memio_->records_in : memio_->records_out;
    std::string& kept = read ? read_secret_ : write_secret_;
    explicit_bzero(kept.data(), kept.size());
    kept.clear();
    SECItem* value = nullptr;
    if (tally.at_boundary() && PK11_ExtractKeyValue(secret) == SECSuccess) value = PK11_GetKeyData(secret);
    if (value == nullptr || value->data == nullptr || value->len == 0) {
      hand_over_ = false;
      log::debug("tls").session(id_).event("tls_secret_unusable").kv("reason", last_error_text());
      return;
    }
    kept.assign(reinterpret_cast<const char*>(value->data), value->len);
    if (!read || epoch > 3) tally.restart(epoch);
  }

  // A record NSS wrote, for the protect observer (tests): the key is the newest write key, and the
  // sequence number counts from its secret on. Plaintext records (ServerHello, change_cipher_spec)
  // take no nonce.
  void on_nss_record(uint8_t type) {
    if (type != 23 || observed_key_.empty()) return;
    observe_protect({Protector::Nss, observed_key_, observed_iv_, observed_sequence_++, released_});
  }

  // NSS hands a record it would protect to this instead, once the connection's records are ours. In
  // NSS 3.87 (lib/ssl/ssl3con.c) a TLS record is protected only in ssl_ProtectRecord, reached only
  // through ssl3_SendRecord, which gives the plaintext to this callback first when one is set; so
  // the close_notify PR_Close sends takes no nonce of the write key Tls13Records goes on with. It is
  // dropped: the peer hears our layer's close_notify when the time comes.
  void on_dropped_record(PRUint16 epoch, SSLContentType type, unsigned len) {
    ++dropped_records_;
    if (type != ssl_ct_alert || len != 2) {
      // Only the close_notify is expected: anything else was for the peer and is lost.
      log::error("tls").session(id_).phase("data").event("tls_nss_record_lost")
          .kv("epoch", static_cast<unsigned>(epoch))
          .kv("type", static_cast<unsigned>(type)).kv("length", len);
    }
  }

 private:
  // Once a TLS 1.3 connection is quiet at a record boundary in both directions, its records move
  // to Tls13Records and the NSS socket is closed: the ~65 KiB NSS keeps per socket (buffers, key
  // objects, locks) is freed for the rest of the connection.
  //
  // The sequence numbers Tls13Records starts from are inferred from the order in which NSS writes
  // records and reports new secrets, which no NSS API promises; a wrong one would reuse an AEAD
  // nonce. So the hand-over is on only for NSS versions the tests passed on, only after this
  // process's self-test passed, and only when NSS's own epochs agree with the secrets and tallies.
  //
  // Records NSS read before this point are answered by NSS: that is the client's first flight
  // after its Finished, when it sends it before the connection goes quiet. NSS 3.87 answers a
  // KeyUpdate there whose request_update is neither 0 nor 1 with decode_error (tls13_HandleKeyUpdate;
  // handover_test), where RFC 8446 §4.6.3 asks for illegal_parameter, which Tls13Records sends.
  void hand_over() {
    if (!hand_over_ || !handshake_done_ || !tls13_ || closed_ || failed_ || peer_closed_ || !pending_.empty()) return;
    if (read_secret_.empty() || write_secret_.empty() || memio_->readable() != 0 ||
        !memio_->records_in.at_boundary() || !memio_->records_out.at_boundary()) {
      return;
    }
    if (auto mismatch = epochs_disagree()) {
      hand_over_ = false;
      log::warning("tls").session(id_).phase("data").event("tls_handover_refused").kv("reason", *mismatch);
      return;
    }
    TrafficSecret read{std::move(read_secret_), memio_->records_in.records};
    TrafficSecret write{std::move(write_secret_), memio_->records_out.records};
    auto records = Tls13Records::create(suite_, std::move(read), std::move(write));
    if (!records) {
      hand_over_ = false;
      log::warning("tls").session(id_).event("tls_handover_failed").kv("reason", records.error().detail);
      return;
    }
    if (SSL_RecordLayerWriteCallback(ssl_.get(), drop_record_hook, this) != SECSuccess) {
      hand_over_ = false;
      log::warning("tls").session(id_).event("tls_handover_failed")
          .kv("reason", "SSL_RecordLayerWriteCallback: " + last_error_text());
      return;
    }
    const uint64_t read_sequence = records->read_sequence();
    const uint64_t write_sequence = records->write_sequence();
    records_.emplace(std::move(*records));
    released_ = true;
    memio_->released = true;  // a record NSS still wrote would be refused, never sent
    memio_->writes_after_release = &writes_after_release_;
    memio_ = nullptr;
    ssl_.reset();
    log::debug("tls").session(id_).phase("data").event("tls_nss_released").kv("read_epoch", read_epoch_)
        .kv("write_epoch", write_epoch_).kv("read_sequence", read_sequence).kv("write_sequence", write_sequence)
        .kv("dropped", dropped_records_);
    if (writes_after_release_ != 0) {
      forbid_handover("NSS " + std::string(NSS_GetVersion()) + " wrote " + std::to_string(writes_after_release_) +
                      " record(s) past SSL_RecordLayerWriteCallback when its socket was closed");
    }
  }

  // Why NSS's own view of the keys in use differs from the secrets and record tallies a hand-over
  // would start from; nullopt when they agree.
  std::optional<std::string> epochs_disagree() {
    PRUint16 nss_read = 0;
    PRUint16 nss_write = 0;
    if (SSL_GetCurrentEpoch(ssl_.get(), &nss_read, &nss_write) != SECSuccess) {
      return "SSL_GetCurrentEpoch: " + last_error_text();
    }
    const RecordTally& in = memio_->records_in;
    const RecordTally& out = memio_->records_out;
    if (nss_read == read_epoch_ && nss_write == write_epoch_ && in.epoch == nss_read && out.epoch == nss_write &&
        in.unprotected == 0 && out.unprotected == 0) {
      return std::nullopt;
    }
    return "epochs disagree: NSS reads " + std::to_string(nss_read) + " and writes " + std::to_string(nss_write) +
           ", secrets read " + std::to_string(read_epoch_) + " and write " + std::to_string(write_epoch_) +
           ", tallies read " + std::to_string(in.epoch) + " (" + std::to_string(in.unprotected) +
           " unprotected) and write " + std::to_string(out.epoch) + " (" + std::to_string(out.unprotected) +
           " unprotected)";
  }

  // The key and IV of a new write secret, for the protect observer only.
  void observe_write_key(PRFileDesc* fd, PK11SymKey* secret) {
    explicit_bzero(observed_key_.data(), observed_key_.size());
    explicit_bzero(observed_iv_.data(), observed_iv_.size());
    observed_key_.clear();
    observed_iv_.clear();
    observed_sequence_ = 0;
    SSLPreliminaryChannelInfo info{};
    if (SSL_GetPreliminaryChannelInfo(fd, &info, sizeof info) != SECSuccess ||
        (info.valuesSet & ssl_preinfo_cipher_suite) == 0 || PK11_ExtractKeyValue(secret) != SECSuccess) {
      return;
    }
    const SECItem* value = PK11_GetKeyData(secret);
    if (value == nullptr || value->data == nullptr) return;
    const TlsHash hash = info.cipherSuite == TLS_AES_256_GCM_SHA384 ? TlsHash::Sha384 : TlsHash::Sha256;
    const size_t key_len = info.cipherSuite == TLS_AES_128_GCM_SHA256 ? 16 : 32;
    std::string_view raw(reinterpret_cast<const char*>(value->data), value->len);
    observed_key_ = hkdf_expand_label(hash, raw, "key", {}, key_len);
    observed_iv_ = hkdf_expand_label(hash, raw, "iv", {}, 12);
  }

  static void nss_record_hook(void* owner, uint8_t type) { static_cast<ServerTransform*>(owner)->on_nss_record(type); }

  static SECStatus drop_record_hook(PRFileDesc*, PRUint16 epoch, SSLContentType type, const PRUint8*, unsigned len,
                                    void* arg) {
    static_cast<ServerTransform*>(arg)->on_dropped_record(epoch, type, len);
    return SECSuccess;
  }

  Result<void> decode_with_nss(std::string_view in, std::string& plain, std::string& wire) {
    if (failed_) return fail(ErrorKind::Protocol, failure_);
    if (!seen_input_ && !in.empty()) {
      seen_input_ = true;
      // A TLS client starts with a handshake record (22). Anything else is usually plaintext on a
      // TLS port: say so now instead of letting NSS wait for a record length read from ASCII.
      if (static_cast<unsigned char>(in[0]) != 22) return not_tls(in);
    }
    if (hello_scan_) hello_scan_->feed(in);
    // NSS reads straight from the connection's read buffer; whatever it leaves (normally nothing)
    // is copied when this returns, so an idle connection keeps no input buffer of its own.
    memio_->begin_input(in);
    struct EndInput {
      MemioState* m;
      ~EndInput() { m->end_input(); }
    } end_input{memio_};
    if (!handshake_done_) {
      SECStatus rv = SSL_ForceHandshake(ssl_.get());
      memio_->take_output(wire);
      if (rv != SECSuccess) {
        int err = PR_GetError();
        if (err == PR_WOULD_BLOCK_ERROR) return {};
        return handshake_failed(err);
      }
      // NSS stops reading at the end of the client's Finished: what follows is under its first
      // application key.
      if (!memio_->records_in.at_boundary()) hand_over_ = false;
      memio_->records_in.restart(read_epoch_);
      auto done = on_handshake_done();
      if (!done) return done;
      if (!pending_.empty()) {
        std::string pending;
        pending.swap(pending_);
        auto sent = write_plain(pending, wire);
        if (!sent) return sent;
      }
    }
    return read_all(plain, wire);
  }

  Result<void> encode_with_nss(std::string_view plain, std::string& wire) {
    if (failed_) return fail(ErrorKind::Protocol, failure_);
    if (!handshake_done_) {
      // A greeting written at once (IMAPS, SMTPS) goes out right after the handshake.
      if (pending_.size() + plain.size() > kMaxPendingPlaintext) {
        return fail_with("more than " + std::to_string(kMaxPendingPlaintext) +
                         " bytes of plaintext queued before the TLS handshake finished");
      }
      pending_.append(plain);
      return {};
    }
    return write_plain(plain, wire);
  }

 public:
  SECStatus authenticate_client(PRFileDesc* fd, PRBool check_sig) {
    NssCert cert(SSL_PeerCertificate(fd));
    if (!cert) {
      PORT_SetError(SSL_ERROR_BAD_CERTIFICATE);
      return SECFailure;
    }
    std::string subject = cert_name(&cert->subject);
    SECStatus rv = CERT_VerifyCertificateNow(CERT_GetDefaultCertDB(), cert.get(), check_sig,
                                             certificateUsageSSLClient, SSL_RevealPinArg(fd), nullptr);
    if (rv != SECSuccess) {
      int err = PORT_GetError();
      if (err == 0) err = SSL_ERROR_BAD_CERTIFICATE;
      if (tolerating_bad_certificates()) {
        bad_certificate_tolerated(subject, err);
        return SECSuccess;
      }
      bad_client_subject_ = std::move(subject);
      PORT_SetError(err);
      return SECFailure;
    }
    record_client(cert.get());
    return SECSuccess;
  }

  bool tolerating_bad_certificates() const {
    return state_.options.client_certs == ClientCerts::Optional && state_.options.tolerate_bad_client_cert;
  }

  // The handshake goes on without a verified certificate; client_verified stays false, so nothing
  // downstream (certmap, SASL EXTERNAL) ever sees this one.
  void bad_certificate_tolerated(const std::string& subject, int err) {
    bad_cert_tolerated_ = true;
    log::notice("tls").session(id_).phase("handshake").event("bad_client_cert").kv("reason", error_text(err))
        .client_text("client_cert", subject).kv("effect", "treated as no certificate");
  }

  PRInt32 choose_server_name(PRFileDesc* fd, const SECItem* names, PRUint32 count) {
    for (PRUint32 i = 0; i < count; ++i) {
      if (names[i].data == nullptr || names[i].len == 0 || names[i].len > kMaxServerName) continue;
      std::string name = ascii::lowered(std::string_view(reinterpret_cast<const char*>(names[i].data), names[i].len));
      if (!name.empty() && name.back() == '.') name.pop_back();
      if (i == 0) sni_ = name;
      const auto* entry = state_.find_sni(name);
      if (entry == nullptr) continue;
      if (SSL_ReconfigFD(entry->second.get(), fd) == nullptr) {
        log::warning("tls").session(id_).phase("handshake").event("sni_reconfig_failed")
            .kv("reason", last_error_text());
        return SSL_SNI_SEND_ALERT;
      }
      sni_ = name;
      return static_cast<PRInt32>(i);
    }
    return SSL_SNI_CURRENT_CONFIG_IS_USED;
  }

 private:
  bool setup_failed(const char* what) {
    failed_ = true;
    failure_ = std::string("cannot set up TLS: ") + what + ": " + last_error_text();
    log::error("tls").session(id_).phase("accept").event("tls_setup_failed").kv("reason", failure_);
    return false;
  }

  tl::unexpected<Error> fail_with(std::string why) {
    failed_ = true;
    failure_ = std::move(why);
    return fail(ErrorKind::Protocol, failure_);
  }

  tl::unexpected<Error> handshake_failed(int err) {
    std::string reason = error_text(err);
    auto line = log::notice("tls");
    line.session(id_).phase("handshake").event("tls_failed").kv("reason", reason);
    if (!bad_client_subject_.empty()) line.client_text("client_cert", bad_client_subject_);
    if (!sni_.empty()) line.client_text("sni", sni_);
    if (rechecking_resumed_) line.kv("resumed", "yes");
    return fail_with("TLS handshake failed: " + reason);
  }

  // Logs what arrived by kind and length, never as given: after STARTTLS it may be a pipelined
  // "AUTH PLAIN <base64>" carrying a password (RFC 4616).
  tl::unexpected<Error> not_tls(std::string_view in) {
    const NotTls seen = classify_not_tls(in);
    auto line = log::notice("tls");
    line.session(id_).phase("handshake").event("tls_failed").kv("reason", "not a TLS ClientHello")
        .kv("kind", seen.kind).kv("length", static_cast<uint64_t>(in.size()));
    if (!seen.verb_hex.empty()) line.kv("verb_hex", seen.verb_hex);
    if (!seen.detail.empty()) line.kv("detail", seen.detail);
    return fail_with("TLS handshake failed: the client did not start with a TLS handshake record");
  }

  void record_client(CERTCertificate* cert) {
    facts_.client_verified = true;
    facts_.client_subject = cert_name(&cert->subject);
    facts_.client_issuer = cert_name(&cert->issuer);
    facts_.client_der.assign(reinterpret_cast<const char*>(cert->derCert.data), cert->derCert.len);
  }

  Result<void> on_handshake_done() {
    handshake_done_ = true;
    PRFileDesc* fd = ssl_.get();
    SSLChannelInfo channel{};
    if (SSL_GetChannelInfo(fd, &channel, sizeof channel) == SECSuccess) {
      facts_.protocol = version_name(channel.protocolVersion);
      tls13_ = channel.protocolVersion == SSL_LIBRARY_VERSION_TLS_1_3 && Tls13Records::supports(channel.cipherSuite);
      suite_ = channel.cipherSuite;
      if (tls13_ && hand_over_) check_record_size_limit(fd);
      hello_scan_.reset();
      facts_.resumed = channel.resumed;
      SSLCipherSuiteInfo suite{};
      if (SSL_GetCipherSuiteInfo(channel.cipherSuite, &suite, sizeof suite) == SECSuccess) {
        facts_.cipher = suite.cipherSuiteName;
        facts_.cipher_bits = suite.effectiveKeyBits;
      }
      // tls-exporter (RFC 9266) for SCRAM-PLUS: TLS 1.3, or TLS 1.2 with the extended master secret.
      if (channel.protocolVersion >= SSL_LIBRARY_VERSION_TLS_1_3 || channel.extendedMasterSecretUsed) {
        static constexpr char kLabel[] = "EXPORTER-Channel-Binding";
        unsigned char binding[32];
        if (SSL_ExportKeyingMaterial(fd, kLabel, sizeof kLabel - 1, PR_FALSE, nullptr, 0, binding, sizeof binding) ==
            SECSuccess) {
          facts_.channel_binding.assign(reinterpret_cast<const char*>(binding), sizeof binding);
        }
      }
    }
    facts_.server_name = sni_;
    if (NssItem name{SSL_GetNegotiatedHostInfo(fd)}) {
      if (name->len > 0 && name->len <= kMaxServerName) {
        facts_.server_name = ascii::lowered(std::string_view(reinterpret_cast<const char*>(name->data), name->len));
      }
    }
    // A resumed session skips the certificate hook: check its client certificate again now, so a
    // certificate revoked since the full handshake does not live on through tickets.
    if (!facts_.client_verified && state_.options.client_certs != ClientCerts::Off && !self_test_) {
      rechecking_resumed_ = facts_.resumed;
      NssCert cert(SSL_PeerCertificate(fd));
      if (cert) {
        if (CERT_VerifyCertificateNow(CERT_GetDefaultCertDB(), cert.get(), PR_TRUE, certificateUsageSSLClient,
                                      SSL_RevealPinArg(fd), nullptr) != SECSuccess) {
          int err = PORT_GetError();
          if (err == 0) err = SSL_ERROR_BAD_CERTIFICATE;
          if (tolerating_bad_certificates()) {
            if (!bad_cert_tolerated_) bad_certificate_tolerated(cert_name(&cert->subject), err);
          } else {
            bad_client_subject_ = cert_name(&cert->subject);
            handshake_done_ = false;
            return handshake_failed(err);
          }
        } else {
          record_client(cert.get());
        }
      } else if (state_.options.client_certs == ClientCerts::Required) {
        handshake_done_ = false;
        return handshake_failed(SSL_ERROR_NO_CERTIFICATE);
      }
    }
    facts_.handshake_done = true;
    if (self_test_) return {};
    auto line = log::info("tls");
    line.session(id_).phase("handshake").event("tls_established").kv("protocol", facts_.protocol)
        .kv("cipher", facts_.cipher).kv("bits", facts_.cipher_bits).kv("resumed", facts_.resumed ? "yes" : "no");
    if (!facts_.server_name.empty()) line.client_text("sni", facts_.server_name);
    if (facts_.client_verified) line.client_text("client_cert", facts_.client_subject);
    return {};
  }

  Result<void> write_plain(std::string_view data, std::string& wire) {
    while (!data.empty()) {
      auto chunk = static_cast<PRInt32>(std::min<size_t>(data.size(), kMaxWriteChunk));
      PRInt32 n = PR_Write(ssl_.get(), data.data(), chunk);
      memio_->take_output(wire);
      if (n < 0) {
        int err = PR_GetError();
        return fail_with("TLS write failed: " + error_text(err));
      }
      data.remove_prefix(static_cast<size_t>(n));
    }
    return {};
  }

  // PR_Read may return part of what is buffered: read until it would block, or data waits for the next packet.
  Result<void> read_all(std::string& plain, std::string& wire) {
    char buffer[kReadChunk];
    for (;;) {
      PRInt32 n = PR_Read(ssl_.get(), buffer, sizeof buffer);
      memio_->take_output(wire);
      if (n > 0) {
        plain.append(buffer, static_cast<size_t>(n));
        continue;
      }
      if (n == 0) {
        peer_closed_ = true;  // close_notify
        return {};
      }
      int err = PR_GetError();
      if (err == PR_WOULD_BLOCK_ERROR) return {};
      std::string reason = error_text(err);
      log::notice("tls").session(id_).phase("data").event("tls_failed").kv("reason", reason);
      return fail_with("TLS read failed: " + reason);
    }
  }

  std::shared_ptr<ServerContext> context_;  // keeps the models (and state_) alive
  const ServerContext::State& state_;
  std::string id_;
  PrFd ssl_;                     // null once records_ has taken over
  MemioState* memio_ = nullptr;  // owned by the stub under ssl_
  std::optional<Tls13Records> records_;
  std::string read_secret_;   // the newest TLS 1.3 traffic secrets, until records_ takes them
  std::string write_secret_;
  std::optional<ClientHelloScan> hello_scan_;  // until the handshake is done, when a hand-over may follow
  uint16_t read_epoch_ = 0;   // their NSS epochs (3 for the first application keys)
  uint16_t write_epoch_ = 0;
  bool self_test_ = false;
  bool released_ = false;             // NSS's socket has given its records to records_
  uint64_t dropped_records_ = 0;      // what NSS wanted to send after that (its close_notify)
  uint64_t writes_after_release_ = 0;  // what it wrote to memio after that anyway: must stay 0
  std::string observed_key_;  // the protect observer's view of NSS's write key (tests only)
  std::string observed_iv_;
  uint64_t observed_sequence_ = 0;
  uint16_t suite_ = 0;
  bool tls13_ = false;
  bool hand_over_ = false;
  std::string pending_;
  runtime::SecurityFacts facts_;
  std::string sni_;
  bool bad_cert_tolerated_ = false;  // logged once, the connection goes on unverified
  std::string bad_client_subject_;
  std::string failure_;
  bool seen_input_ = false;
  bool rechecking_resumed_ = false;
  bool handshake_done_ = false;
  bool peer_closed_ = false;
  bool closed_ = false;
  bool failed_ = false;
};

ServerTransform* owner_of(PRFileDesc* fd) {
  MemioState* state = memio_state(fd);
  return state ? static_cast<ServerTransform*>(state->owner) : nullptr;
}

void secret_hook(PRFileDesc* fd, PRUint16 epoch, SSLSecretDirection direction, PK11SymKey* secret, void* arg) {
  static_cast<ServerTransform*>(arg)->on_secret(fd, epoch, direction, secret);
}

// Set on every model with no argument: SSL_ReconfigFD (SNI) copies hooks from the model, so the
// connection is found through its memio layer instead of a hook argument.
SECStatus auth_certificate_hook(void*, PRFileDesc* fd, PRBool check_sig, PRBool is_server) {
  ServerTransform* t = owner_of(fd);
  if (t == nullptr || !is_server) {
    PORT_SetError(SEC_ERROR_LIBRARY_FAILURE);
    return SECFailure;
  }
  return t->authenticate_client(fd, check_sig);
}

PRInt32 sni_hook(PRFileDesc* fd, const SECItem* names, PRUint32 count, void*) {
  ServerTransform* t = owner_of(fd);
  if (t == nullptr) return SSL_SNI_CURRENT_CONFIG_IS_USED;
  return t->choose_server_name(fd, names, count);
}

// --- The start-up self-test of the hand-over ---

// The self-test checks records, not the certificate (which need not name anything it could ask for).
SECStatus accept_any_certificate(void*, PRFileDesc*, PRBool, PRBool) { return SECSuccess; }

// An NSS TLS 1.3 client over memio, in memory with a server transform: an independent reader of
// every record our layer protects.
class SelfTestClient {
 public:
  Result<void> open(uint16_t suite) {
    PRFileDesc* stub = memio_create();
    if (stub == nullptr) return fail(ErrorKind::Internal, "PR_CreateIOLayerStub: " + last_error_text());
    PRFileDesc* ssl = SSL_ImportFD(nullptr, stub);
    if (ssl == nullptr) {
      std::string why = last_error_text();
      PR_Close(stub);
      return fail(ErrorKind::Internal, "SSL_ImportFD: " + why);
    }
    fd_.reset(ssl);
    memio_ = memio_state(ssl);
    const SSLVersionRange tls13{SSL_LIBRARY_VERSION_TLS_1_3, SSL_LIBRARY_VERSION_TLS_1_3};
    bool ok = SSL_OptionSet(ssl, SSL_SECURITY, PR_TRUE) == SECSuccess &&
              SSL_OptionSet(ssl, SSL_HANDSHAKE_AS_CLIENT, PR_TRUE) == SECSuccess &&
              SSL_OptionSet(ssl, SSL_HANDSHAKE_AS_SERVER, PR_FALSE) == SECSuccess &&
              SSL_OptionSet(ssl, SSL_NO_CACHE, PR_TRUE) == SECSuccess &&
              SSL_VersionRangeSet(ssl, &tls13) == SECSuccess &&
              SSL_AuthCertificateHook(ssl, accept_any_certificate, nullptr) == SECSuccess;
    const PRUint16* implemented = SSL_GetImplementedCiphers();
    for (PRUint16 i = 0; ok && i < SSL_GetNumImplementedCiphers(); ++i) {
      const PRBool on = implemented[i] == suite ? PR_TRUE : PR_FALSE;
      ok = SSL_CipherPrefSet(ssl, implemented[i], on) == SECSuccess || on == PR_FALSE;
    }
    if (!ok || SSL_ResetHandshake(ssl, PR_FALSE) != SECSuccess) {
      return fail(ErrorKind::Internal, "cannot set up the NSS client: " + last_error_text());
    }
    return {};
  }

  // The server's bytes in; the handshake runs or records are read. What the client sends goes to
  // `to_server`, the plaintext it reads to `plain`.
  Result<void> step(std::string_view from_server, std::string& plain, std::string& to_server) {
    memio_->begin_input(from_server);
    struct EndInput {
      MemioState* m;
      ~EndInput() { m->end_input(); }
    } end_input{memio_};
    if (!handshake_done_) {
      SECStatus rv = SSL_ForceHandshake(fd_.get());
      memio_->take_output(to_server);
      if (rv != SECSuccess) {
        if (PR_GetError() == PR_WOULD_BLOCK_ERROR) return {};
        return fail(ErrorKind::Protocol, "client handshake: " + last_error_text());
      }
      handshake_done_ = true;
    }
    char buffer[kReadChunk];
    for (;;) {
      PRInt32 n = PR_Read(fd_.get(), buffer, sizeof buffer);
      memio_->take_output(to_server);
      if (n > 0) {
        plain.append(buffer, static_cast<size_t>(n));
        continue;
      }
      if (n == 0) {
        closed_ = true;
        return {};
      }
      if (PR_GetError() == PR_WOULD_BLOCK_ERROR) return {};
      return fail(ErrorKind::Protocol, "client read: " + last_error_text());
    }
  }

  Result<void> write(std::string_view data, std::string& to_server) {
    while (!data.empty()) {
      PRInt32 n = PR_Write(fd_.get(), data.data(), static_cast<PRInt32>(data.size()));
      memio_->take_output(to_server);
      if (n <= 0) return fail(ErrorKind::Protocol, "client write: " + last_error_text());
      data.remove_prefix(static_cast<size_t>(n));
    }
    return {};
  }

  Result<void> key_update(std::string& to_server) {
    SECStatus rv = SSL_KeyUpdate(fd_.get(), PR_TRUE);
    memio_->take_output(to_server);
    if (rv != SECSuccess) return fail(ErrorKind::Protocol, "client KeyUpdate: " + last_error_text());
    return {};
  }

  bool handshake_done() const { return handshake_done_; }
  bool closed() const { return closed_; }
  PRFileDesc* fd() const { return fd_.get(); }

 private:
  PrFd fd_;
  MemioState* memio_ = nullptr;
  bool handshake_done_ = false;
  bool closed_ = false;
};

std::string test_pattern(size_t size, char seed) {
  std::string out(size, '\0');
  for (size_t i = 0; i < size; ++i) out[i] = static_cast<char>(seed + i % 61);
  return out;
}

// One TLS 1.3 connection with `suite` between a server transform of this context and an NSS client:
// the handshake, data both ways (more than one record), a KeyUpdate from each side with an update
// requested (so each side also answers one), data both ways after each, and our close_notify. The
// client must read every byte; a record under a wrong key or sequence number fails its tag.
Result<void> self_test_suite(const std::shared_ptr<ServerContext>& context, const ServerContext::State& state,
                             uint16_t suite) {
  ServerTransform server(context, state, "tls-selftest", true);
  if (!server.open(state.model.get())) return fail(ErrorKind::Internal, server.failure());
  SelfTestClient client;
  if (auto opened = client.open(suite); !opened) return opened;
  std::string to_server, to_client, server_read, client_read;
  // Moves bytes both ways until neither side has anything more to say.
  auto settle = [&]() -> Result<void> {
    for (int round = 0; round < 32; ++round) {
      std::string in;
      in.swap(to_client);
      if (auto done = client.step(in, client_read, to_server); !done) return done;
      if (round > 0 && to_server.empty() && to_client.empty()) return {};
      in.clear();
      in.swap(to_server);
      if (auto done = server.decode(in, server_read, to_client); !done) {
        return fail(ErrorKind::Protocol, "server: " + done.error().detail);
      }
    }
    return fail(ErrorKind::Internal, "the connection does not settle");
  };
  auto both_ways = [&](const char* when, char seed) -> Result<void> {
    const std::string down = test_pattern(20000, seed);
    const std::string up = test_pattern(17000, static_cast<char>(seed + 1));
    if (auto sent = server.encode(down, to_client); !sent) {
      return fail(ErrorKind::Protocol, "server: " + sent.error().detail);
    }
    if (auto sent = client.write(up, to_server); !sent) return sent;
    if (auto settled = settle(); !settled) return settled;
    if (client_read != down || server_read != up) {
      return fail(ErrorKind::Protocol, std::string("data ") + when + " arrived changed: the client read " +
                                           std::to_string(client_read.size()) + " of " + std::to_string(down.size()) +
                                           " bytes, the server " + std::to_string(server_read.size()) + " of " +
                                           std::to_string(up.size()));
    }
    client_read.clear();
    server_read.clear();
    return {};
  };
  if (auto settled = settle(); !settled) return settled;
  if (!client.handshake_done() || server.facts() == nullptr) return fail(ErrorKind::Protocol, "no handshake");
  if (!server.handed_over()) return fail(ErrorKind::Protocol, "the records were not handed over");
  if (auto ok = both_ways("after the hand-over", 'A'); !ok) return ok;
  if (auto updated = client.key_update(to_server); !updated) return updated;
  if (auto ok = both_ways("after the client's KeyUpdate", 'a'); !ok) return ok;
  if (auto updated = server.key_update(true, to_client); !updated) {
    return fail(ErrorKind::Protocol, "server KeyUpdate: " + updated.error().detail);
  }
  if (auto ok = both_ways("after the server's KeyUpdate", '0'); !ok) return ok;
  server.close(to_client);
  if (auto settled = settle(); !settled) return settled;
  if (!client.closed()) return fail(ErrorKind::Protocol, "the client saw no close_notify");
  // Two new keys each way: one asked for, one given in answer.
  PRUint16 read_epoch = 0;
  PRUint16 write_epoch = 0;
  if (SSL_GetCurrentEpoch(client.fd(), &read_epoch, &write_epoch) != SECSuccess || read_epoch != 5 ||
      write_epoch != 5) {
    return fail(ErrorKind::Protocol, "the client ended at read epoch " + std::to_string(read_epoch) +
                                         " and write epoch " + std::to_string(write_epoch) + ", not 5 and 5");
  }
  return {};
}

Result<void> check(SECStatus rv, const std::string& what) {
  if (rv == SECSuccess) return {};
  return fail(ErrorKind::Config, what + ": " + last_error_text());
}

Result<PrFd> make_model(const ServerContext::State& state, const std::vector<std::string>& nicknames) {
  auto certs = load_certificates(nicknames, state.db);
  if (!certs) return tl::unexpected(certs.error());
  PrFd model(SSL_ImportFD(nullptr, memio_create_model()));
  if (!model) return fail(ErrorKind::Internal, "cannot create the NSS model socket: " + last_error_text());
  PRFileDesc* fd = model.get();
  const auto& o = state.options;
  struct Opt {
    PRInt32 option;
    PRIntn value;
    const char* name;
  };
  const bool request = o.client_certs != ClientCerts::Off;
  // Not SSL_NO_LOCKS, although each socket stays on one loop thread and its ~1.3 KB of locks
  // protect nothing: NSS 3.87's SSL3_SendAlert asks ssl_HaveSSL3HandshakeLock() whatever noLocks
  // says, and dereferences the missing monitor (SIGSEGV on the first close_notify; tls_test).
  const Opt opts[] = {
      {SSL_SECURITY, PR_TRUE, "SSL_SECURITY"},
      {SSL_HANDSHAKE_AS_SERVER, PR_TRUE, "SSL_HANDSHAKE_AS_SERVER"},
      {SSL_HANDSHAKE_AS_CLIENT, PR_FALSE, "SSL_HANDSHAKE_AS_CLIENT"},
      {SSL_NO_CACHE, PR_FALSE, "SSL_NO_CACHE"},
      {SSL_ENABLE_SESSION_TICKETS, PR_TRUE, "SSL_ENABLE_SESSION_TICKETS"},  // TLS-12
      // TLS-10: no renegotiation at all, so the RFC 5746 injection attack has nothing to inject into.
      // Requiring the RFC 5746 signal as well would only refuse clients that omit it (sslscan's
      // TLS 1.2 probe does, and then reports TLS 1.2 as disabled) without adding protection.
      {SSL_ENABLE_RENEGOTIATION, SSL_RENEGOTIATE_NEVER, "SSL_ENABLE_RENEGOTIATION"},
      {SSL_REQUIRE_SAFE_NEGOTIATION, PR_FALSE, "SSL_REQUIRE_SAFE_NEGOTIATION"},
      {SSL_ENABLE_EXTENDED_MASTER_SECRET, PR_TRUE, "SSL_ENABLE_EXTENDED_MASTER_SECRET"},
      {SSL_ENABLE_0RTT_DATA, PR_FALSE, "SSL_ENABLE_0RTT_DATA"},  // replayable; no mail protocol needs it
      {SSL_ENABLE_SERVER_DHE, state.ciphers.any_dhe() ? PR_TRUE : PR_FALSE, "SSL_ENABLE_SERVER_DHE"},
      {SSL_REQUEST_CERTIFICATE, request ? PR_TRUE : PR_FALSE, "SSL_REQUEST_CERTIFICATE"},
      // NO_ERROR: asked for, absence allowed; a certificate that fails the hook still fails.
      {SSL_REQUIRE_CERTIFICATE,
       o.client_certs == ClientCerts::Required ? SSL_REQUIRE_ALWAYS
                                               : (request ? SSL_REQUIRE_NO_ERROR : SSL_REQUIRE_NEVER),
       "SSL_REQUIRE_CERTIFICATE"},
  };
  for (const auto& opt : opts) {
    auto ok = check(SSL_OptionSet(fd, opt.option, opt.value), std::string("SSL_OptionSet(") + opt.name + ")");
    if (!ok) return tl::unexpected(ok.error());
  }
  if (auto ok = check(SSL_VersionRangeSet(fd, &state.versions), "SSL_VersionRangeSet"); !ok) {
    return tl::unexpected(ok.error());
  }
  const PRUint16* implemented = SSL_GetImplementedCiphers();
  for (PRUint16 i = 0; i < SSL_GetNumImplementedCiphers(); ++i) {
    PRUint16 id = implemented[i];
    bool on = state.ciphers.contains(id);
    if (SSL_CipherPrefSet(fd, id, on ? PR_TRUE : PR_FALSE) != SECSuccess && on) {
      return fail(ErrorKind::Config, "cannot enable cipher suite " + std::string(find_cipher(id)->name) + ": " +
                                         last_error_text());
    }
  }
  std::vector<SSLNamedGroup> groups{ssl_grp_ec_curve25519, ssl_grp_ec_secp256r1, ssl_grp_ec_secp384r1};
  if (state.ciphers.any_dhe()) {
    groups.push_back(ssl_grp_ffdhe_2048);
    groups.push_back(ssl_grp_ffdhe_3072);
  }
  if (auto ok = check(SSL_NamedGroupConfig(fd, groups.data(), static_cast<unsigned>(groups.size())),
                      "SSL_NamedGroupConfig");
      !ok) {
    return tl::unexpected(ok.error());
  }
  for (const auto& c : *certs) {
    if (SSL_ConfigServerCert(fd, c.cert.get(), c.key.get(), nullptr, 0) != SECSuccess) {
      return fail(ErrorKind::Config, "cannot use server certificate \"" + c.nickname + "\": " + last_error_text());
    }
  }
  if (auto ok = check(SSL_AuthCertificateHook(fd, auth_certificate_hook, nullptr), "SSL_AuthCertificateHook"); !ok) {
    return tl::unexpected(ok.error());
  }
  return model;
}

}  // namespace

std::string_view client_certs_name(ClientCerts mode) {
  switch (mode) {
    case ClientCerts::Off: return "off";
    case ClientCerts::Optional: return "optional";
    case ClientCerts::Required: return "required";
  }
  return "off";
}

Result<ClientCerts> parse_client_certs(std::string_view text) {
  std::string v = ascii::lowered(text);
  if (v == "off" || v == "no" || v == "none") return ClientCerts::Off;
  if (v == "optional" || v == "request") return ClientCerts::Optional;
  if (v == "required" || v == "require") return ClientCerts::Required;
  return fail(ErrorKind::Config, "client certificates must be off, optional or required, not \"" + std::string(text) +
                                     "\"");
}

ServerContext::ServerContext() : state_(std::make_unique<State>()) {}

ServerContext::~ServerContext() = default;

Result<std::shared_ptr<ServerContext>> ServerContext::create(const Nss& nss, const ServerOptions& options) {
  std::shared_ptr<ServerContext> context(new ServerContext());
  State& s = *context->state_;
  s.options = options;
  s.db = nss.options().db_dir;

  auto min = parse_min_version(options.min_version);
  if (!min) return tl::unexpected(min.error());
  auto ciphers = adjust_ciphers(options.adjust_ciphers);
  if (!ciphers) return tl::unexpected(ciphers.error());
  s.ciphers = std::move(*ciphers);
  for (const auto& w : s.ciphers.warnings) log::warning("tls").event("cipher_policy").kv("reason", w);
  const PRUint16* implemented = SSL_GetImplementedCiphers();
  const PRUint16* implemented_end = implemented + SSL_GetNumImplementedCiphers();
  for (uint16_t id : s.ciphers.suites) {
    if (std::find(implemented, implemented_end, id) == implemented_end) {
      return fail(ErrorKind::Config, "cipher suite " + std::string(find_cipher(id)->name) +
                                         " is not implemented by NSS " + Nss::version());
    }
  }
  s.versions = {*min, SSL_LIBRARY_VERSION_TLS_1_3};
  if (!s.ciphers.any_tls13()) {
    if (*min == SSL_LIBRARY_VERSION_TLS_1_3) {
      return fail(ErrorKind::Config, "TLS 1.3 is the minimum but ssladjustciphersuites leaves no TLS 1.3 suite");
    }
    s.versions.max = SSL_LIBRARY_VERSION_TLS_1_2;
    log::warning("tls").event("cipher_policy").kv("reason", "no TLS 1.3 suite enabled: TLS 1.3 is off");
  }
  if (!s.ciphers.any_tls12() && s.versions.min < SSL_LIBRARY_VERSION_TLS_1_3) {
    s.versions.min = SSL_LIBRARY_VERSION_TLS_1_3;
    log::warning("tls").event("cipher_policy").kv("reason", "no TLS 1.2 suite enabled: TLS 1.2 is off");
  }

  auto model = make_model(s, options.certificates);
  if (!model) return tl::unexpected(model.error());
  s.model = std::move(*model);
  // Every handshake goes through the hook: it records the name the client asked for, and switches
  // to that name's certificates when it has its own.
  if (auto ok = check(SSL_SNISocketConfigHook(s.model.get(), sni_hook, nullptr), "SSL_SNISocketConfigHook"); !ok) {
    return tl::unexpected(ok.error());
  }
  for (const auto& [name, nicknames] : options.sni) {
    std::string key = ascii::lowered(name);
    if (!key.empty() && key.back() == '.') key.pop_back();
    if (key.empty() || key.size() > kMaxServerName) {
      return fail(ErrorKind::Config, "bad SNI server name \"" + name + "\"");
    }
    for (const auto& existing : s.sni_models) {
      if (existing.first == key) return fail(ErrorKind::Config, "SNI server name \"" + name + "\" is listed twice");
    }
    auto sni_model = make_model(s, nicknames);
    if (!sni_model) {
      return fail(sni_model.error().kind, "SNI name \"" + name + "\": " + sni_model.error().detail);
    }
    s.sni_models.emplace_back(std::move(key), std::move(*sni_model));
  }
  if (options.release_nss_after_handshake && s.versions.max == SSL_LIBRARY_VERSION_TLS_1_3) {
    if (std::string untested = untested_nss(); !untested.empty()) {
      static std::once_flag said;
      std::call_once(said, [&] { log::warning("tls").event("tls_handover_off").kv("reason", untested); });
    } else if (handover_allowed()) {
      if (auto tested = context->self_test_handover(); !tested) forbid_handover(tested.error().detail);
    }
  }

  std::string nicknames;
  for (const auto& n : options.certificates) nicknames += (nicknames.empty() ? "" : ",") + n;
  log::info("tls").event("tls_context_ready").kv("certificates", nicknames)
      .kv("sni_names", static_cast<uint64_t>(s.sni_models.size()))
      .kv("min_version", version_name(s.versions.min)).kv("max_version", version_name(s.versions.max))
      .kv("suites", static_cast<uint64_t>(s.ciphers.suites.size()))
      .kv("client_certs", client_certs_name(options.client_certs))
      .kv("handover", options.release_nss_after_handshake && handover_allowed() ? "on" : "off");
  return context;
}

Result<void> ServerContext::self_test_handover() {
  std::string checked;
  for (uint16_t suite : state_->ciphers.suites) {
    if (!Tls13Records::supports(suite)) continue;
    const CipherSuite* info = find_cipher(suite);
    const std::string name = info != nullptr ? std::string(info->name) : std::to_string(suite);
    if (auto ok = self_test_suite(shared_from_this(), *state_, suite); !ok) {
      return fail(ErrorKind::Internal, "the TLS 1.3 record hand-over self-test failed with " + name + " on NSS " +
                                           NSS_GetVersion() + ": " + ok.error().detail);
    }
    checked += (checked.empty() ? "" : ",") + name;
  }
  if (!checked.empty()) log::debug("tls").event("tls_handover_checked").kv("suites", checked);
  return {};
}

bool ServerContext::handover_enabled() { return handover_allowed(); }

std::unique_ptr<runtime::Transform> ServerContext::accept(std::string_view connection_id) {
  auto transform = std::make_unique<ServerTransform>(shared_from_this(), *state_, std::string(connection_id));
  transform->open(state_->model.get());
  return transform;
}

const ServerOptions& ServerContext::options() const { return state_->options; }

const CipherSelection& ServerContext::ciphers() const { return state_->ciphers; }

}  // namespace common::tls
