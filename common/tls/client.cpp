// client.cpp: the NSS client model and the per-connection client transform over memio. The call
// sequence is the server's (server.cpp): import the model over a fresh memio stub, set the per-
// connection hooks again (hooks copied from a model keep the model's argument), and move memio's
// output to the wire after every NSS call. Records stay in NSS for the whole connection: the
// TLS 1.3 record hand-over (record13.hpp) rests on the server-side order of NSS's writes and
// secrets, which this side does not share, and an outbound connection is short-lived anyway.
#include "common/tls/client.hpp"

#include <algorithm>

#include <cert.h>
#include <keyhi.h>
#include <pk11pub.h>
#include <prerror.h>
#include <secerr.h>
#include <secmod.h>
#include <ssl.h>
#include <sslerr.h>
#include <sslproto.h>

#include "common/ascii.hpp"
#include "common/log/log.hpp"
#include "common/net/address.hpp"
#include "common/tls/handles.hpp"
#include "common/tls/memio.hpp"
#include "common/tls/nss.hpp"

namespace common::tls {
namespace {

constexpr size_t kMaxPendingPlaintext = 256 * 1024;
constexpr size_t kReadChunk = 16 * 1024 + 256;
constexpr size_t kMaxWriteChunk = 4096 - 64;  // as the server: NSS keeps its write buffer at the largest record

using CertList = std::unique_ptr<CERTCertList, Deleter<CERT_DestroyCertList>>;
using SlotList = std::unique_ptr<PK11SlotList, Deleter<PK11_FreeSlotList>>;

std::string version_name(uint16_t v) {
  switch (v) {
    case SSL_LIBRARY_VERSION_TLS_1_2: return "TLSv1.2";
    case SSL_LIBRARY_VERSION_TLS_1_3: return "TLSv1.3";
    default: return "unknown";
  }
}

std::string cert_name(const CERTName* name) {
  std::string out;
  if (char* ascii = CERT_NameToAscii(const_cast<CERTName*>(name))) {
    out = ascii;
    PORT_Free(ascii);
  }
  return out;
}

// Whether the root of `cert`'s chain comes from a built-in roots module (the public roots) rather
// than the host's database (the deployment CA).
bool anchored_in_builtins(CERTCertificate* cert) {
  CertList chain(CERT_GetCertChainFromCert(cert, PR_Now(), certUsageSSLCA));
  if (!chain || CERT_LIST_EMPTY(chain.get())) return false;
  CERTCertificate* root = CERT_LIST_TAIL(chain.get())->cert;
  SlotList slots(PK11_GetAllSlotsForCert(root, nullptr));
  if (!slots) return false;
  for (PK11SlotListElement* e = PK11_GetFirstSafe(slots.get()); e != nullptr; e = PK11_GetNextSafe(slots.get(), e, PR_FALSE)) {
    if (PK11_HasRootCerts(e->slot)) {
      PK11_FreeSlotListElement(slots.get(), e);
      return true;
    }
  }
  return false;
}

// The public roots for Verify::SystemRoots: NSS's built-in module, unless the process already has
// it (Nss opened with load_public_roots). Loaded once, for the process; NSS_Shutdown unloads it.
Result<void> ensure_builtin_roots() {
  if (SECMOD_HasRootCerts()) return {};
  char spec[] = "name=\"Postern built-in roots\" library=\"libnssckbi.so\"";
  SECMODModule* module = SECMOD_LoadUserModule(spec, nullptr, PR_FALSE);
  const bool loaded = module != nullptr && module->loaded;
  if (module != nullptr) SECMOD_DestroyModule(module);  // the module list keeps its own reference
  if (!loaded || !SECMOD_HasRootCerts()) {
    return fail(ErrorKind::Config, "cannot load NSS's built-in roots (libnssckbi.so from libnss3) for verify = "
                                   "\"system\": " + last_error_text());
  }
  log::info("tls").event("builtin_roots_loaded").kv("module", "libnssckbi.so");
  return {};
}

SECStatus auth_certificate_hook(void* arg, PRFileDesc* fd, PRBool check_sig, PRBool is_server);
SECStatus client_auth_hook(void* arg, PRFileDesc* fd, CERTDistNames*, CERTCertificate** cert, SECKEYPrivateKey** key);

}  // namespace

struct ClientContext::State {
  ClientOptions options;
  CipherSelection ciphers;
  SSLVersionRange versions{};
  PrFd model;
  NssCert cert;  // ours for mutual TLS, with its key; null when none
  NssKey key;
};

namespace {

class ClientTransformImpl final : public ClientTransform {
 public:
  ClientTransformImpl(std::shared_ptr<ClientContext> context, const ClientContext::State& state, std::string id,
                      ClientPeer peer)
      : context_(std::move(context)), state_(state), id_(std::move(id)), peer_(std::move(peer)) {
    if (peer_.expected_name.empty()) peer_.expected_name = peer_.server_name;
  }
  ~ClientTransformImpl() override { ssl_.reset(); }

  bool open() {
    PRFileDesc* stub = memio_create();
    if (stub == nullptr) return setup_failed("PR_CreateIOLayerStub");
    PRFileDesc* ssl = SSL_ImportFD(state_.model.get(), stub);
    if (ssl == nullptr) {
      int err = PR_GetError();
      PR_Close(stub);
      PR_SetError(err, 0);
      return setup_failed("SSL_ImportFD");
    }
    ssl_.reset(ssl);
    memio_ = memio_state(ssl);
    memio_->owner = this;
    if (SSL_AuthCertificateHook(ssl, auth_certificate_hook, this) != SECSuccess) {
      return setup_failed("SSL_AuthCertificateHook");
    }
    if (state_.cert && SSL_GetClientAuthDataHook(ssl, client_auth_hook, this) != SECSuccess) {
      return setup_failed("SSL_GetClientAuthDataHook");
    }
    // RFC 6066 §3: "Literal IPv4 and IPv6 addresses are not permitted in HostName".
    const std::string& sni = peer_.server_name;
    if (!sni.empty() && !net::IpAddress::parse(sni)) {
      if (SSL_SetURL(ssl, sni.c_str()) != SECSuccess) return setup_failed("SSL_SetURL");
      facts_.server_name = ascii::lowered(sni);
    }
    if (SSL_ResetHandshake(ssl, PR_FALSE) != SECSuccess) return setup_failed("SSL_ResetHandshake");
    return true;
  }

  const std::string& failure() const override { return failure_; }
  const runtime::SecurityFacts* facts() const override { return handshake_done_ ? &facts_ : nullptr; }
  bool peer_closed() const override { return peer_closed_; }

  Result<void> start(std::string& wire) override {
    if (failed_) return fail(ErrorKind::Protocol, failure_);
    return handshake(wire);
  }

  Result<void> decode(std::string_view in, std::string& plain, std::string& wire) override {
    if (failed_) return fail(ErrorKind::Protocol, failure_);
    if (!seen_input_ && !in.empty()) {
      seen_input_ = true;
      // A server answers a ClientHello with a handshake record (22) or an alert (21); text here is
      // a server that took our ClientHello for a command (a 500 reply), said plainly.
      const auto first = static_cast<unsigned char>(in[0]);
      if (first != 22 && first != 21) {
        log::notice("tls").session(id_).phase("handshake").event("tls_failed")
            .kv("reason", "the server did not answer with TLS").kv("length", static_cast<uint64_t>(in.size()));
        return fail_with("TLS handshake failed: the server did not answer with TLS");
      }
    }
    memio_->begin_input(in);
    struct EndInput {
      MemioState* m;
      ~EndInput() { m->end_input(); }
    } end_input{memio_};
    if (!handshake_done_) {
      auto done = handshake(wire);
      if (!done || !handshake_done_) return done;
    }
    return read_all(plain, wire);
  }

  Result<void> encode(std::string_view plain, std::string& wire) override {
    if (failed_) return fail(ErrorKind::Protocol, failure_);
    if (!handshake_done_) {
      // EHLO written at once after STARTTLS goes out when the handshake is done.
      if (pending_.size() + plain.size() > kMaxPendingPlaintext) {
        return fail_with("more than " + std::to_string(kMaxPendingPlaintext) +
                         " bytes of plaintext queued before the TLS handshake finished");
      }
      pending_.append(plain);
      return {};
    }
    return write_plain(plain, wire);
  }

  void close(std::string& wire) override {
    if (failed_ || closed_ || !ssl_) return;
    closed_ = true;
    if (!handshake_done_) return;
    PR_Shutdown(ssl_.get(), PR_SHUTDOWN_SEND);  // close_notify
    memio_->take_output(wire);
  }

  // --- NSS callbacks ---

  SECStatus authenticate_server(PRFileDesc* fd, PRBool check_sig) {
    NssCert cert(SSL_PeerCertificate(fd));
    if (!cert) {
      PORT_SetError(SSL_ERROR_BAD_CERTIFICATE);
      return SECFailure;
    }
    facts_.server_subject = cert_name(&cert->subject);
    facts_.server_issuer = cert_name(&cert->issuer);
    const Verify mode = state_.options.verify;
    int err = 0;
    std::string problem;
    if (CERT_VerifyCertificateNow(CERT_GetDefaultCertDB(), cert.get(), check_sig, certificateUsageSSLServer,
                                  SSL_RevealPinArg(fd), nullptr) != SECSuccess) {
      err = PORT_GetError();
      problem = error_text(err != 0 ? err : SEC_ERROR_UNTRUSTED_CERT);
    } else if (mode == Verify::DeploymentCa && anchored_in_builtins(cert.get())) {
      err = SEC_ERROR_UNTRUSTED_ISSUER;
      problem = "the certificate chains to a public root, not to the deployment CA";
    } else if (mode == Verify::SystemRoots && !anchored_in_builtins(cert.get())) {
      err = SEC_ERROR_UNTRUSTED_ISSUER;
      problem = "the certificate does not chain to a public root of the system trust store";
    } else if (!peer_.expected_name.empty() && CERT_VerifyCertName(cert.get(), peer_.expected_name.c_str()) != SECSuccess) {
      err = SSL_ERROR_BAD_CERT_DOMAIN;
      problem = "the certificate does not name " + peer_.expected_name;
    }
    if (problem.empty()) {
      facts_.server_verified = true;
      return SECSuccess;
    }
    facts_.server_verify_error = problem;
    if (mode == Verify::Opportunistic) return SECSuccess;  // RFC 7435: recorded, not enforced
    verify_problem_ = problem;
    PORT_SetError(err);
    return SECFailure;
  }

  SECStatus client_credentials(CERTCertificate** cert, SECKEYPrivateKey** key) {
    if (!state_.cert || !state_.key) return SECFailure;  // handshake goes on without one
    *cert = CERT_DupCertificate(state_.cert.get());
    *key = SECKEY_CopyPrivateKey(state_.key.get());
    if (*key == nullptr) {
      CERT_DestroyCertificate(*cert);
      *cert = nullptr;
      return SECFailure;
    }
    facts_.client_subject = cert_name(&state_.cert->subject);
    return SECSuccess;
  }

 private:
  Result<void> handshake(std::string& wire) {
    SECStatus rv = SSL_ForceHandshake(ssl_.get());
    memio_->take_output(wire);
    if (rv != SECSuccess) {
      int err = PR_GetError();
      if (err == PR_WOULD_BLOCK_ERROR) return {};
      return handshake_failed(err);
    }
    on_handshake_done();
    if (!pending_.empty()) {
      std::string pending;
      pending.swap(pending_);
      return write_plain(pending, wire);
    }
    return {};
  }

  void on_handshake_done() {
    handshake_done_ = true;
    PRFileDesc* fd = ssl_.get();
    SSLChannelInfo channel{};
    if (SSL_GetChannelInfo(fd, &channel, sizeof channel) == SECSuccess) {
      facts_.protocol = version_name(channel.protocolVersion);
      facts_.resumed = channel.resumed;
      SSLCipherSuiteInfo suite{};
      if (SSL_GetCipherSuiteInfo(channel.cipherSuite, &suite, sizeof suite) == SECSuccess) {
        facts_.cipher = suite.cipherSuiteName;
        facts_.cipher_bits = suite.effectiveKeyBits;
      }
    }
    facts_.client_verified = !facts_.client_subject.empty();  // we presented ours
    facts_.handshake_done = true;
    auto line = log::info("tls");
    line.session(id_).phase("handshake").event("tls_established").kv("side", "client")
        .kv("protocol", facts_.protocol).kv("cipher", facts_.cipher).kv("bits", facts_.cipher_bits)
        .kv("verify", verify_name(state_.options.verify)).kv("verified", facts_.server_verified ? "yes" : "no");
    line.client_text("server_cert", facts_.server_subject);
    if (!facts_.server_verify_error.empty()) line.client_text("verify_error", facts_.server_verify_error);
  }

  Result<void> write_plain(std::string_view data, std::string& wire) {
    while (!data.empty()) {
      auto chunk = static_cast<PRInt32>(std::min<size_t>(data.size(), kMaxWriteChunk));
      PRInt32 n = PR_Write(ssl_.get(), data.data(), chunk);
      memio_->take_output(wire);
      if (n < 0) return fail_with("TLS write failed: " + error_text(PR_GetError()));
      data.remove_prefix(static_cast<size_t>(n));
    }
    return {};
  }

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
        peer_closed_ = true;
        return {};
      }
      int err = PR_GetError();
      if (err == PR_WOULD_BLOCK_ERROR) return {};
      std::string reason = error_text(err);
      log::notice("tls").session(id_).phase("data").event("tls_failed").kv("side", "client").kv("reason", reason);
      return fail_with("TLS read failed: " + reason);
    }
  }

  bool setup_failed(const char* what) {
    failed_ = true;
    failure_ = std::string("cannot set up TLS: ") + what + ": " + last_error_text();
    log::error("tls").session(id_).phase("connect").event("tls_setup_failed").kv("reason", failure_);
    return false;
  }

  tl::unexpected<Error> fail_with(std::string why) {
    failed_ = true;
    failure_ = std::move(why);
    return fail(ErrorKind::Protocol, failure_);
  }

  tl::unexpected<Error> handshake_failed(int err) {
    std::string reason = error_text(err);
    if (!verify_problem_.empty() && verify_problem_ != reason) reason = verify_problem_ + " (" + reason + ")";
    auto line = log::notice("tls");
    line.session(id_).phase("handshake").event("tls_failed").kv("side", "client").kv("reason", reason);
    if (!facts_.server_subject.empty()) line.client_text("server_cert", facts_.server_subject);
    return fail_with("TLS handshake failed: " + reason);
  }

  std::shared_ptr<ClientContext> context_;  // keeps the model alive
  const ClientContext::State& state_;
  std::string id_;
  ClientPeer peer_;
  PrFd ssl_;
  MemioState* memio_ = nullptr;  // owned by the stub under ssl_
  runtime::SecurityFacts facts_;
  std::string pending_;
  std::string failure_;
  std::string verify_problem_;
  bool seen_input_ = false;
  bool handshake_done_ = false;
  bool peer_closed_ = false;
  bool closed_ = false;
  bool failed_ = false;
};

SECStatus auth_certificate_hook(void* arg, PRFileDesc* fd, PRBool check_sig, PRBool is_server) {
  if (arg == nullptr || is_server) {
    PORT_SetError(SEC_ERROR_LIBRARY_FAILURE);
    return SECFailure;
  }
  return static_cast<ClientTransformImpl*>(arg)->authenticate_server(fd, check_sig);
}

SECStatus client_auth_hook(void* arg, PRFileDesc*, CERTDistNames*, CERTCertificate** cert, SECKEYPrivateKey** key) {
  if (arg == nullptr) return SECFailure;
  return static_cast<ClientTransformImpl*>(arg)->client_credentials(cert, key);
}

Result<void> check(SECStatus rv, const std::string& what) {
  if (rv == SECSuccess) return {};
  return fail(ErrorKind::Config, what + ": " + last_error_text());
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
  return fail(ErrorKind::Config, "TLS client minimum version \"" + std::string(text) +
                                     "\" is refused: use 1.2 or 1.3 (1.0, 1.1 and SSL 3 are off)");
}

}  // namespace

std::string_view verify_name(Verify mode) {
  switch (mode) {
    case Verify::Opportunistic: return "opportunistic";
    case Verify::DeploymentCa: return "deployment-ca";
    case Verify::SystemRoots: return "system";
  }
  return "opportunistic";
}

Result<Verify> parse_verify(std::string_view text) {
  std::string v = ascii::lowered(text);
  if (v == "opportunistic" || v == "none") return Verify::Opportunistic;
  if (v == "deployment-ca" || v == "deployment" || v == "ca") return Verify::DeploymentCa;
  if (v == "system" || v == "system-roots") return Verify::SystemRoots;
  return fail(ErrorKind::Config, "TLS verify must be opportunistic, deployment-ca or system, not \"" +
                                     std::string(text) + "\"");
}

ClientContext::ClientContext() : state_(std::make_unique<State>()) {}
ClientContext::~ClientContext() = default;

Result<std::shared_ptr<ClientContext>> ClientContext::create(const Nss&, const ClientOptions& options) {
  std::shared_ptr<ClientContext> context(new ClientContext());
  State& s = *context->state_;
  s.options = options;
  auto min = parse_min_version(options.min_version);
  if (!min) return tl::unexpected(min.error());
  auto ciphers = adjust_ciphers(options.adjust_ciphers);
  if (!ciphers) return tl::unexpected(ciphers.error());
  s.ciphers = std::move(*ciphers);
  s.versions = {*min, SSL_LIBRARY_VERSION_TLS_1_3};
  if (!s.ciphers.any_tls13()) {
    if (*min == SSL_LIBRARY_VERSION_TLS_1_3) {
      return fail(ErrorKind::Config, "TLS 1.3 is the minimum but ssladjustciphersuites leaves no TLS 1.3 suite");
    }
    s.versions.max = SSL_LIBRARY_VERSION_TLS_1_2;
  }
  if (!s.ciphers.any_tls12() && s.versions.min < SSL_LIBRARY_VERSION_TLS_1_3) s.versions.min = SSL_LIBRARY_VERSION_TLS_1_3;
  if (options.verify == Verify::SystemRoots) {
    if (auto loaded = ensure_builtin_roots(); !loaded) return tl::unexpected(loaded.error());
  }
  if (!options.client_certificate.empty()) {
    s.cert.reset(PK11_FindCertFromNickname(options.client_certificate.c_str(), nullptr));
    if (!s.cert) {
      return fail(ErrorKind::Config, "client certificate \"" + options.client_certificate +
                                         "\" not found in the NSS database: " + last_error_text());
    }
    s.key.reset(PK11_FindKeyByAnyCert(s.cert.get(), nullptr));
    if (!s.key) {
      return fail(ErrorKind::Config, "no private key for client certificate \"" + options.client_certificate +
                                         "\": " + last_error_text());
    }
  }

  PrFd model(SSL_ImportFD(nullptr, memio_create_model()));
  if (!model) return fail(ErrorKind::Internal, "cannot create the NSS client model socket: " + last_error_text());
  PRFileDesc* fd = model.get();
  struct Opt {
    PRInt32 option;
    PRIntn value;
    const char* name;
  };
  const Opt opts[] = {
      {SSL_SECURITY, PR_TRUE, "SSL_SECURITY"},
      {SSL_HANDSHAKE_AS_CLIENT, PR_TRUE, "SSL_HANDSHAKE_AS_CLIENT"},
      {SSL_HANDSHAKE_AS_SERVER, PR_FALSE, "SSL_HANDSHAKE_AS_SERVER"},
      // No client session cache: NSS keys it by the peer address, and memio reports the same
      // unspecified address for every connection, so a session (and the verification its facts
      // say was done) could be offered to another server. Reused connections come from the pool.
      {SSL_NO_CACHE, PR_TRUE, "SSL_NO_CACHE"},
      {SSL_ENABLE_SESSION_TICKETS, PR_FALSE, "SSL_ENABLE_SESSION_TICKETS"},
      {SSL_ENABLE_RENEGOTIATION, SSL_RENEGOTIATE_NEVER, "SSL_ENABLE_RENEGOTIATION"},
      {SSL_ENABLE_EXTENDED_MASTER_SECRET, PR_TRUE, "SSL_ENABLE_EXTENDED_MASTER_SECRET"},
      {SSL_ENABLE_0RTT_DATA, PR_FALSE, "SSL_ENABLE_0RTT_DATA"},
      {SSL_ENABLE_FALSE_START, PR_FALSE, "SSL_ENABLE_FALSE_START"},  // nothing is sent before the check
  };
  for (const auto& opt : opts) {
    auto ok = check(SSL_OptionSet(fd, opt.option, opt.value), std::string("SSL_OptionSet(") + opt.name + ")");
    if (!ok) return tl::unexpected(ok.error());
  }
  if (auto ok = check(SSL_VersionRangeSet(fd, &s.versions), "SSL_VersionRangeSet"); !ok) return tl::unexpected(ok.error());
  const PRUint16* implemented = SSL_GetImplementedCiphers();
  for (PRUint16 i = 0; i < SSL_GetNumImplementedCiphers(); ++i) {
    PRUint16 id = implemented[i];
    bool on = s.ciphers.contains(id);
    if (SSL_CipherPrefSet(fd, id, on ? PR_TRUE : PR_FALSE) != SECSuccess && on) {
      return fail(ErrorKind::Config, "cannot enable cipher suite " + std::to_string(id) + ": " + last_error_text());
    }
  }
  std::vector<SSLNamedGroup> groups{ssl_grp_ec_curve25519, ssl_grp_ec_secp256r1, ssl_grp_ec_secp384r1};
  if (s.ciphers.any_dhe()) {
    groups.push_back(ssl_grp_ffdhe_2048);
    groups.push_back(ssl_grp_ffdhe_3072);
  }
  if (auto ok = check(SSL_NamedGroupConfig(fd, groups.data(), static_cast<unsigned>(groups.size())),
                      "SSL_NamedGroupConfig");
      !ok) {
    return tl::unexpected(ok.error());
  }
  s.model = std::move(model);
  log::info("tls").event("tls_client_context_ready").kv("verify", verify_name(options.verify))
      .kv("client_certificate", options.client_certificate.empty() ? "none" : options.client_certificate)
      .kv("min_version", version_name(s.versions.min)).kv("max_version", version_name(s.versions.max));
  return context;
}

std::unique_ptr<ClientTransform> ClientContext::connect(std::string_view connection_id, const ClientPeer& peer) {
  auto transform =
      std::make_unique<ClientTransformImpl>(shared_from_this(), *state_, std::string(connection_id), peer);
  transform->open();
  return transform;
}

const ClientOptions& ClientContext::options() const { return state_->options; }

}  // namespace common::tls
