// credentials.cpp: the one adapter between NSS and gRPC's TLS credentials (grpc::experimental in
// 1.51, which later versions change: keep it behind credentials.hpp). Every gRPC include of
// common/grpc is here, and only the grpcpp headers it needs (3.5 s and 310 MB to compile at -O0
// with ASan, against ~7 s for a file including <grpcpp/grpcpp.h>).
#include "common/grpc/credentials.hpp"

#include <absl/synchronization/mutex.h>

#include <mutex>
#include <string_view>
#include <vector>

#include <grpc/grpc_security_constants.h>
#include <grpc/support/log.h>
#include <grpcpp/security/credentials.h>
#include <grpcpp/security/server_credentials.h>
#include <grpcpp/security/tls_certificate_provider.h>
#include <grpcpp/security/tls_certificate_verifier.h>
#include <grpcpp/security/tls_credentials_options.h>
#include <grpcpp/server_context.h>

#include "common/grpc/nss_identity.hpp"
#include "common/grpc/nss_peer.hpp"
#include "common/grpc/pem.hpp"
#include "common/log/log.hpp"
#include "common/metrics/metrics.hpp"

namespace common::rpc {

namespace {

namespace gx = ::grpc::experimental;
constexpr std::string_view kComp = "grpc";

std::string_view role_name(PeerRole role) { return role == PeerRole::Client ? "client" : "server"; }

// "host:port", "[v6]:port" or a bare host -> the host, for the server-name check.
std::string target_host(std::string_view target) {
  if (auto slash = target.rfind('/'); slash != std::string_view::npos) target.remove_prefix(slash + 1);  // dns:///h:p
  if (!target.empty() && target.front() == '[') {
    auto close = target.find(']');
    return std::string(target.substr(1, close == std::string_view::npos ? std::string_view::npos : close - 1));
  }
  if (auto colon = target.find(':'); colon != std::string_view::npos && target.find(':', colon + 1) == std::string_view::npos)
    return std::string(target.substr(0, colon));
  return std::string(target);
}

metrics::Counter& refused_counter(PeerRole role, std::string_view reason) {
  return metrics::default_registry()
      .counter_family("postern_grpc_peers_refused_total",
                      "gRPC TLS peers whose certificate NSS refused, by the peer's role and NSS error name",
                      {"peer", "reason"})
      .with({std::string(role_name(role)), std::string(reason)});
}

// The NSS error name ("SEC_ERROR_REVOKED_CERTIFICATE") out of error_text's "NAME (-8180): text".
std::string error_name(const PeerVerdict& v) {
  if (v.error == 0) return "unreadable_certificate";  // did not decode, or no name to check
  auto space = v.reason.find(' ');
  return v.reason.substr(0, space);
}

// Runs on gRPC's handshake threads, after OpenSSL accepted the chain against the deployment CA. It
// is synchronous: NSS needs no network here (no OCSP fetching; CRLs come from the database/cache).
class NssVerifier final : public gx::ExternalCertificateVerifier {
 public:
  // `role` is the peer's role; `expected_host` only matters for a server peer.
  NssVerifier(PeerRole role, std::string expected_host) : role_(role), expected_host_(std::move(expected_host)) {}

  bool Verify(gx::TlsCustomVerificationCheckRequest* request, std::function<void(::grpc::Status)> /*async_done*/,
              ::grpc::Status* sync_status) override {
    ::grpc::string_ref leaf = request->peer_cert();
    ::grpc::string_ref chain = request->peer_cert_full_chain();
    std::string host;
    if (role_ == PeerRole::Server) {
      ::grpc::string_ref target = request->target_name();
      host = !expected_host_.empty() ? expected_host_ : target_host(std::string_view(target.data(), target.size()));
    }
    PeerVerdict v = verify_peer(std::string_view(leaf.data(), leaf.size()), role_, host,
                                std::string_view(chain.data(), chain.size()));
    if (v.ok) {
      log::debug(kComp).phase("handshake").event("peer_verified").kv("peer", role_name(role_)).kv("subject", v.subject);
      *sync_status = ::grpc::Status::OK;
      return true;
    }
    auto line = log::warning(kComp);
    line.phase("handshake").event("peer_refused").kv("peer", role_name(role_)).kv("reason", v.reason);
    line.client_text("subject", v.subject).client_text("issuer", v.issuer);
    if (role_ == PeerRole::Server) line.client_text("expected_name", host);
    refused_counter(role_, error_name(v)).inc();
    *sync_status = ::grpc::Status(::grpc::StatusCode::UNAUTHENTICATED, "peer certificate refused: " + v.reason);
    return true;
  }

  void Cancel(gx::TlsCustomVerificationCheckRequest*) override {}  // never pending: Verify is synchronous

 private:
  PeerRole role_;
  std::string expected_host_;
};

void log_plaintext(std::string_view side) {
  log::warning(kComp)
      .phase("start")
      .event("plaintext")
      .kv("side", side)
      .kv("reason", "configured plaintext: peers are not authenticated and traffic is readable on the network");
}

// Our certificate, key and the deployment CA, checked before any peer sees them.
Result<std::shared_ptr<gx::StaticDataCertificateProvider>> provider(const MtlsOptions& options, PeerRole our_role) {
  auto roots = trusted_roots_pem(options.ca);
  if (!roots) return tl::unexpected(roots.error());
  auto own = check_own_certificate(options.certificate, our_role);
  if (!own) return tl::unexpected(own.error());
  auto identity = export_identity(options.certificate);
  if (!identity) return tl::unexpected(identity.error());
  std::vector<gx::IdentityKeyCertPair> pairs(1);
  pairs[0].private_key = std::move(identity->private_key_pem);
  pairs[0].certificate_chain = std::move(identity->certificate_chain_pem);
  auto p = std::make_shared<gx::StaticDataCertificateProvider>(*roots, pairs);
  // gRPC copied the key into its own (unzeroed) storage; ours at least does not linger.
  wipe(pairs[0].private_key);
  return p;
}

void grpc_log_to_common(gpr_log_func_args* args) {
  std::string_view message = args->message ? args->message : "";
  // OpenSSL refusing a peer before NSS is asked (no certificate, not from our CA) reaches us only as
  // this gRPC error line: give it the refusal's shape (gRPC logs it at ERROR; it is the peer's fault).
  if (message.starts_with("Handshake failed")) {
    log::warning(kComp).phase("handshake").event("handshake_failed").client_text("reason", message);
    return;
  }
  log::Level level = log::Level::Debug;
  switch (args->severity) {
    case GPR_LOG_SEVERITY_DEBUG: level = log::Level::Debug; break;
    case GPR_LOG_SEVERITY_INFO: level = log::Level::Info; break;
    case GPR_LOG_SEVERITY_ERROR: level = log::Level::Error; break;
  }
  if (!log::enabled(kComp, level)) return;
  log::Line line(level, kComp);
  line.event("grpc_core").client_text("message", message);
  if (args->file) line.kv("at", std::string(args->file) + ":" + std::to_string(args->line));
}

}  // namespace

void route_grpc_logs() {
  static std::once_flag once;
  std::call_once(once, [] {
    gpr_set_log_function(grpc_log_to_common);
    // Debian builds Abseil without NDEBUG, so every absl::Mutex inside gRPC runs deadlock-cycle
    // detection: 6-10% of authserv's CPU per lookup (bench/authserv). It only ever reports.
    absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);
  });
}

Result<std::shared_ptr<::grpc::ServerCredentials>> server_credentials(const MtlsOptions& options) {
  route_grpc_logs();
  if (options.plaintext) {
    log_plaintext("server");
    return ::grpc::InsecureServerCredentials();
  }
  auto certs = provider(options, PeerRole::Server);
  if (!certs) return tl::unexpected(certs.error());
  gx::TlsServerCredentialsOptions tls(*certs);
  tls.watch_root_certs();
  tls.watch_identity_key_cert_pairs();
  tls.set_cert_request_type(GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY);
  tls.set_certificate_verifier(gx::ExternalCertificateVerifier::Create<NssVerifier>(PeerRole::Client, std::string()));
  auto creds = gx::TlsServerCredentials(tls);
  if (!creds) return fail(ErrorKind::Internal, "gRPC refused the TLS server credentials");
  return creds;
}

Result<void> check_server_identity(const MtlsOptions& options) {
  if (options.plaintext) return {};
  auto roots = trusted_roots_pem(options.ca);
  if (!roots) return tl::unexpected(roots.error());
  auto own = check_own_certificate(options.certificate, PeerRole::Server);
  if (!own) return tl::unexpected(own.error());
  auto identity = export_identity(options.certificate);
  if (!identity) return tl::unexpected(identity.error());
  wipe(identity->private_key_pem);
  return {};
}

Result<std::shared_ptr<::grpc::ChannelCredentials>> channel_credentials(const MtlsOptions& options) {
  route_grpc_logs();
  if (options.plaintext) {
    log_plaintext("client");
    return ::grpc::InsecureChannelCredentials();
  }
  auto certs = provider(options, PeerRole::Client);
  if (!certs) return tl::unexpected(certs.error());
  gx::TlsChannelCredentialsOptions tls;
  tls.set_certificate_provider(*certs);
  tls.watch_root_certs();
  tls.watch_identity_key_cert_pairs();
  tls.set_verify_server_certs(true);
  // The verifier checks the server's name once per connection (expected_peer_name or the target's
  // host), so gRPC's per-call check of the :authority would only repeat it, or refuse calls to an
  // address whose certificate names the host differently when expected_peer_name is set.
  tls.set_check_call_host(false);
  tls.set_certificate_verifier(
      gx::ExternalCertificateVerifier::Create<NssVerifier>(PeerRole::Server, options.expected_peer_name));
  auto creds = gx::TlsCredentials(tls);
  if (!creds) return fail(ErrorKind::Internal, "gRPC refused the TLS channel credentials");
  return creds;
}

PeerIdentity peer_identity(const ::grpc::ServerContextBase& context) {
  PeerIdentity id;
  auto auth = context.auth_context();
  if (!auth || !auth->IsPeerAuthenticated()) return id;
  auto pem = auth->FindPropertyValues(GRPC_X509_PEM_CERT_PROPERTY_NAME);
  if (!pem.empty()) {
    // Every call on a channel carries the same certificate, and decoding it (CERT_NewTempCertificate
    // looks it up in the NSS database, an SQLite query) cost a sixth of the servers' CPU in
    // bench/mmp's mix. The names depend on the PEM bytes alone, so each thread keeps the last ones.
    thread_local std::string last_pem;
    thread_local CertificateNames last_names;
    const std::string_view bytes(pem.front().data(), pem.front().size());
    if (bytes != last_pem) {
      last_names = certificate_names(bytes);
      last_pem.assign(bytes);
    }
    id.common_name = last_names.common_name;
    id.subject = last_names.subject;
  }
  if (id.common_name.empty()) {
    auto cn = auth->FindPropertyValues(GRPC_X509_CN_PROPERTY_NAME);
    if (!cn.empty()) id.common_name.assign(cn.front().data(), cn.front().size());
  }
  return id;
}

}  // namespace common::rpc
