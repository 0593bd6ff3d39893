// server.cpp: the listener's NSS model sockets and the per-connection server transform. The call
// sequence and its pitfalls are in notes/tech-findings.md §1: the model is configured once, each
// connection imports it over a memio stub, and every NSS call is followed by moving memio's output
// to the wire (pitfall 5).
#include "common/tls/server.hpp"

#include <algorithm>
#include <cctype>
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

#include "common/log/log.hpp"
#include "common/tls/crl.hpp"
#include "common/tls/handles.hpp"
#include "common/tls/memio.hpp"
#include "common/tls/nss.hpp"
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

std::string lower(std::string_view s) {
  std::string out(s);
  for (auto& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
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
  std::string v = lower(text);
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
  std::mutex crl_mutex;
  CachedCrls crls;

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
  ServerTransform(std::shared_ptr<ServerContext> context, const ServerContext::State& state, std::string id)
      : context_(std::move(context)), state_(state), id_(std::move(id)) {}

  ~ServerTransform() override {
    explicit_bzero(read_secret_.data(), read_secret_.size());
    explicit_bzero(write_secret_.data(), write_secret_.size());
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
    if (SSL_ResetHandshake(ssl, PR_TRUE) != SECSuccess) return setup_failed("SSL_ResetHandshake");
    // Without the secrets the connection simply stays on NSS's record layer.
    hand_over_ = state_.options.release_nss_after_handshake &&
                 SSL_SecretCallback(ssl, secret_hook, this) == SECSuccess;
    return true;
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
  void on_secret(PRUint16 epoch, SSLSecretDirection direction, PK11SymKey* secret) {
    if (epoch < 3 || memio_ == nullptr) return;
    const bool read = direction == ssl_secret_read;
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
    if (!read || epoch > 3) tally.restart();
  }

 private:
  // Once a TLS 1.3 connection is quiet at a record boundary in both directions, its records move
  // to Tls13Records and the NSS socket is closed: the ~65 KiB NSS keeps per socket (buffers, key
  // objects, locks) is freed for the rest of the connection. NSS's own close_notify from PR_Close
  // goes into the discarded memio buffer, never to the peer.
  void hand_over() {
    if (!hand_over_ || !handshake_done_ || !tls13_ || closed_ || failed_ || peer_closed_ || !pending_.empty()) return;
    if (read_secret_.empty() || write_secret_.empty() || memio_->readable() != 0 ||
        !memio_->records_in.at_boundary() || !memio_->records_out.at_boundary()) {
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
    log::debug("tls").session(id_).phase("data").event("tls_nss_released")
        .kv("read_sequence", records->read_sequence()).kv("write_sequence", records->write_sequence());
    records_.emplace(std::move(*records));
    memio_ = nullptr;
    ssl_.reset();
  }

  Result<void> decode_with_nss(std::string_view in, std::string& plain, std::string& wire) {
    if (failed_) return fail(ErrorKind::Protocol, failure_);
    if (!seen_input_ && !in.empty()) {
      seen_input_ = true;
      // A TLS client starts with a handshake record (22). Anything else is usually plaintext on a
      // TLS port: say so now instead of letting NSS wait for a record length read from ASCII.
      if (static_cast<unsigned char>(in[0]) != 22) return not_tls(in);
    }
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
      memio_->records_in.restart();
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
      bad_client_subject_ = std::move(subject);
      PORT_SetError(err != 0 ? err : SSL_ERROR_BAD_CERTIFICATE);
      return SECFailure;
    }
    record_client(cert.get());
    return SECSuccess;
  }

  PRInt32 choose_server_name(PRFileDesc* fd, const SECItem* names, PRUint32 count) {
    for (PRUint32 i = 0; i < count; ++i) {
      if (names[i].data == nullptr || names[i].len == 0 || names[i].len > kMaxServerName) continue;
      std::string name = lower(std::string_view(reinterpret_cast<const char*>(names[i].data), names[i].len));
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

  tl::unexpected<Error> not_tls(std::string_view in) {
    log::notice("tls").session(id_).phase("handshake").event("tls_failed")
        .kv("reason", "not a TLS ClientHello").client_text("start", in.substr(0, 40));
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
        facts_.server_name = lower(std::string_view(reinterpret_cast<const char*>(name->data), name->len));
      }
    }
    // A resumed session skips the certificate hook: check its client certificate again now, so a
    // certificate revoked since the full handshake does not live on through tickets.
    if (!facts_.client_verified && state_.options.client_certs != ClientCerts::Off) {
      rechecking_resumed_ = facts_.resumed;
      NssCert cert(SSL_PeerCertificate(fd));
      if (cert) {
        if (CERT_VerifyCertificateNow(CERT_GetDefaultCertDB(), cert.get(), PR_TRUE, certificateUsageSSLClient,
                                      SSL_RevealPinArg(fd), nullptr) != SECSuccess) {
          int err = PORT_GetError();
          bad_client_subject_ = cert_name(&cert->subject);
          handshake_done_ = false;
          return handshake_failed(err != 0 ? err : SSL_ERROR_BAD_CERTIFICATE);
        }
        record_client(cert.get());
      } else if (state_.options.client_certs == ClientCerts::Required) {
        handshake_done_ = false;
        return handshake_failed(SSL_ERROR_NO_CERTIFICATE);
      }
    }
    facts_.handshake_done = true;
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

  // PR_Read may return part of what is buffered: read until it would block (pitfall 4).
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
  uint16_t suite_ = 0;
  bool tls13_ = false;
  bool hand_over_ = false;
  std::string pending_;
  runtime::SecurityFacts facts_;
  std::string sni_;
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

void secret_hook(PRFileDesc*, PRUint16 epoch, SSLSecretDirection direction, PK11SymKey* secret, void* arg) {
  static_cast<ServerTransform*>(arg)->on_secret(epoch, direction, secret);
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
  std::string v = lower(text);
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
    std::string key = lower(name);
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
  auto crls = CachedCrls::load(options.crl_files);
  if (!crls) return tl::unexpected(crls.error());
  s.crls = std::move(*crls);

  std::string nicknames;
  for (const auto& n : options.certificates) nicknames += (nicknames.empty() ? "" : ",") + n;
  log::info("tls").event("tls_context_ready").kv("certificates", nicknames)
      .kv("sni_names", static_cast<uint64_t>(s.sni_models.size()))
      .kv("min_version", version_name(s.versions.min)).kv("max_version", version_name(s.versions.max))
      .kv("suites", static_cast<uint64_t>(s.ciphers.suites.size()))
      .kv("client_certs", client_certs_name(options.client_certs))
      .kv("crls", static_cast<uint64_t>(s.crls.size()));
  return context;
}

std::unique_ptr<runtime::Transform> ServerContext::accept(std::string_view connection_id) {
  auto transform = std::make_unique<ServerTransform>(shared_from_this(), *state_, std::string(connection_id));
  transform->open(state_->model.get());
  return transform;
}

Result<void> ServerContext::reload_crls() {
  auto fresh = CachedCrls::load(state_->options.crl_files);
  if (!fresh) {
    log::error("tls").event("crl_reload_failed").kv("reason", fresh.error().detail);
    return tl::unexpected(fresh.error());
  }
  std::lock_guard lock(state_->crl_mutex);
  state_->crls = std::move(*fresh);  // the new ones are cached before the old ones go
  return {};
}

const ServerOptions& ServerContext::options() const { return state_->options; }

const CipherSelection& ServerContext::ciphers() const { return state_->ciphers; }

}  // namespace common::tls
