// grpc_test.cpp: gRPC mutual TLS from NSS databases (TLS-29, TH-15): a Ping server in this process
// (its own NSS database) and grpc_ping_client as the other host (another database), certificates
// made by deploy/certs. Who may call is decided by NSS: the deployment CA, trust flags, the CRL.
#include <catch2/catch.hpp>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <grpcpp/grpcpp.h>

#include "common/grpc/credentials.hpp"
#include "common/grpc/nss_identity.hpp"
#include "common/grpc/nss_peer.hpp"
#include "common/grpc/pem.hpp"
#include "common/grpc/server.hpp"
#include "common/log/log.hpp"
#include "common/metrics/metrics.hpp"
#include "common/runtime/loop.hpp"
#include "common/runtime/timer.hpp"
#include "common/tls/crl.hpp"
#include "common/tls/nss.hpp"
#include "ping.grpc.pb.h"
#include "tests/support/log_capture.hpp"
#include "tests/support/pki.hpp"
#include "tests/support/process.hpp"

namespace fs = std::filesystem;
using namespace std::chrono_literals;
using common::rpc::MtlsOptions;

using test::Pki;

namespace {

void must(const test::CommandResult& r, const std::string& what) {
  INFO(what << ":\n" << r.output);
  REQUIRE(r.exit_code == 0);
}


// NSS opened from one host's database, as a daemon does at start.
std::unique_ptr<common::tls::Nss> open_nss(const fs::path& host) {
  auto nss = common::tls::Nss::init({.db_dir = host.string(), .password_file = (host / "password").string()});
  INFO((nss ? std::string() : nss.error().detail));
  REQUIRE(nss);
  return std::move(*nss);
}

// Proves nothing of ours still holds a certificate or key: NSS_Shutdown succeeds.
void shutdown_cleanly(std::unique_ptr<common::tls::Nss>& nss) {
  auto down = nss->shutdown();
  INFO((down ? std::string() : down.error().detail));
  CHECK(down);
  nss.reset();
}

// The Ping service the way a daemon writes one: the handler reads the peer on gRPC's thread, then
// hops onto the libuv loop (Loop::post), which finishes the call.
class PingService final : public postern::test::Ping::CallbackService {
 public:
  explicit PingService(common::runtime::Loop& loop) : loop_(loop) {}
  grpc::ServerUnaryReactor* Ping(grpc::CallbackServerContext* context, const postern::test::PingRequest* request,
                                 postern::test::PingReply* reply) override {
    auto* reactor = context->DefaultReactor();
    common::rpc::PeerIdentity peer = common::rpc::peer_identity(*context);
    loop_.post([this, reactor, request, reply, peer] {
      reply->set_text(request->text());
      reply->set_peer_common_name(peer.common_name);
      reply->set_peer_subject(peer.subject);
      ++calls;
      reactor->Finish(grpc::Status::OK);
    });
    return reactor;
  }
  std::atomic<int> calls{0};

 private:
  common::runtime::Loop& loop_;
};

class PingServer {
 public:
  explicit PingServer(std::shared_ptr<grpc::ServerCredentials> credentials) {
    keepalive_.start(1h, [] {}, 1h);  // the loop runs until stop(), as a daemon's does
    thread_ = std::thread([this] { loop_.run(); });
    grpc::ServerBuilder builder;
    builder.AddListeningPort("127.0.0.1:0", std::move(credentials), &port_);
    builder.RegisterService(&service_);
    server_ = builder.BuildAndStart();
    REQUIRE(server_);
    REQUIRE(port_ > 0);
  }
  ~PingServer() {
    // gRPC first: a posted Finish must still run while Shutdown waits for calls (else Shutdown waits forever).
    server_->Shutdown(std::chrono::system_clock::now() + 2s);
    server_.reset();
    loop_.stop();
    thread_.join();
  }
  std::string target() const { return "127.0.0.1:" + std::to_string(port_); }
  int calls() const { return service_.calls; }

 private:
  common::runtime::Loop loop_;
  common::runtime::Timer keepalive_{loop_.get()};
  std::thread thread_;
  PingService service_{loop_};
  std::unique_ptr<grpc::Server> server_;
  int port_ = 0;
};

struct ClientRun {
  int exit_code;
  std::string output;
  // The result line; the client's own log lines may come before it.
  bool ok() const { return exit_code == 0 && (output.rfind("OK ", 0) == 0 || output.find("\nOK ") != std::string::npos); }
};

// The other host: grpc_ping_client in its own process with its own NSS database.
ClientRun ping_from(const fs::path& host_db, const std::string& target, std::vector<std::string> extra = {}) {
  std::vector<std::string> argv{test::binary_path("tests/common/grpc/grpc_ping_client"), "--target", target};
  if (!host_db.empty()) {
    argv.push_back("--db");
    argv.push_back(host_db.string());
  }
  argv.insert(argv.end(), extra.begin(), extra.end());
  auto r = test::run(argv, 30s);
  return {r.exit_code, r.output};
}

std::shared_ptr<grpc::ServerCredentials> server_creds(const MtlsOptions& options = {}) {
  auto creds = common::rpc::server_credentials(options);
  INFO((creds ? std::string() : creds.error().detail));
  REQUIRE(creds);
  return *creds;
}

}  // namespace

TEST_CASE("a host certified by the deployment CA is accepted and the server sees who it is", "[grpc][mtls]") {
  Pki pki;
  fs::path store = pki.host("store1");
  fs::path mta = pki.host("mta1");
  test::LogCapture logs("grpc_test");
  auto nss = open_nss(store);
  {
    PingServer server(server_creds());
    ClientRun run = ping_from(mta, server.target());
    INFO(run.output << logs.all());
    CHECK(run.ok());
    CHECK(run.output.find("cn=mta1 ") != std::string::npos);
    CHECK(run.output.find("subject=CN=mta1,O=Postern") != std::string::npos);
    // Again on a new connection, and with the name the certificate carries instead of the address.
    ClientRun by_name = ping_from(mta, server.target(), {"--expect-name", "store1"});
    INFO(by_name.output);
    CHECK(by_name.ok());
    CHECK(server.calls() == 2);
    CHECK(logs.matching("event=peer_refused").empty());
    CHECK(logs.matching("event=plaintext").empty());
  }
  shutdown_cleanly(nss);
}

TEST_CASE("clients without a certificate, from another CA, or revoked are refused", "[grpc][mtls]") {
  Pki pki;
  fs::path store = pki.host("store1");  // holds the CRL that revokes mta2
  test::LogCapture logs("grpc_test");
  auto nss = open_nss(store);
  {
    PingServer server(server_creds());
    // The client only learns that the connection failed (UNAVAILABLE, code 14).
    auto refused = [&](const fs::path& client, std::vector<std::string> extra = {}) {
      ClientRun run = ping_from(client, server.target(), std::move(extra));
      INFO(run.output << logs.all());
      CHECK(run.exit_code == 2);
      CHECK(run.output.find("RPC_ERROR code=14 ") != std::string::npos);
    };
    // OpenSSL refuses these before NSS is asked; gRPC's line about it comes out as our warning.
    // ("--attacker": the client presents its certificate but does not check ours, or it would
    // refuse our server first and our server would never see its certificate.)
    auto openssl_said = [&](const std::string& reason) {
      auto lines = logs.matching("event=handshake_failed");
      INFO(logs.all());
      REQUIRE(lines.size() == 1);
      CHECK(lines[0].find("level=warning daemon=grpc_test comp=grpc phase=handshake") != std::string::npos);
      CHECK(lines[0].find(reason) != std::string::npos);
      CHECK(logs.matching("event=peer_refused").empty());
    };
    SECTION("no client certificate") {
      refused(pki.host("mta1"), {"--no-client-cert"});
      openssl_said("peer did not return a certificate");
    }
    SECTION("a certificate from another CA") {
      refused(pki.host("intruder"), {"--attacker"});
      openssl_said("certificate verify failed");
    }
    SECTION("a certificate from a CA that only shares our CA's name") {
      refused(pki.host("impostor"), {"--attacker"});
      openssl_said("certificate verify failed");
    }
    SECTION("a revoked certificate: NSS refuses it and the server logs why") {
      refused(pki.host("mta2"));
      auto lines = logs.matching("event=peer_refused");
      INFO(logs.all());
      REQUIRE(lines.size() == 1);
      CHECK(lines[0].find("level=warning") != std::string::npos);
      CHECK(lines[0].find("comp=grpc") != std::string::npos);
      CHECK(lines[0].find("peer=client") != std::string::npos);
      CHECK(lines[0].find("SEC_ERROR_REVOKED_CERTIFICATE") != std::string::npos);
      CHECK(lines[0].find("subject=\"CN=mta2,O=Postern\"") != std::string::npos);
      CHECK(common::metrics::default_registry().render().find(
                "postern_grpc_peers_refused_total{peer=\"client\",reason=\"SEC_ERROR_REVOKED_CERTIFICATE\"} 1") !=
            std::string::npos);
      // Only mta2 is on the CRL: mta1 still gets in through the same server.
      ClientRun ok = ping_from(pki.host("mta1"), server.target());
      INFO(ok.output);
      CHECK(ok.ok());
      CHECK(server.calls() == 1);
    }
  }
  shutdown_cleanly(nss);
}

TEST_CASE("a CRL held only in NSS's memory (common::tls::CachedCrls) refuses too", "[grpc][mtls]") {
  Pki pki;
  fs::path server_db = pki.host("mta1");  // made before mta2 was revoked: no CRL in its database
  test::LogCapture logs("grpc_test");
  auto nss = open_nss(server_db);
  {
    // What a daemon does with HOSTDIR/crl.der at start and on SIGHUP (CERT_CacheCRL).
    auto crls = common::tls::CachedCrls::load({Pki::file("ca/crl.der").string()});
    INFO((crls ? std::string() : crls.error().detail));
    REQUIRE(crls);
    PingServer server(server_creds());
    ClientRun run = ping_from(pki.host("mta2"), server.target());
    INFO(run.output << logs.all());
    CHECK(run.exit_code == 2);
    auto lines = logs.matching("event=peer_refused");
    REQUIRE(lines.size() == 1);
    CHECK(lines[0].find("SEC_ERROR_REVOKED_CERTIFICATE") != std::string::npos);
    ClientRun ok = ping_from(pki.host("store1"), server.target());
    INFO(ok.output);
    CHECK(ok.ok());
  }
  shutdown_cleanly(nss);
}

TEST_CASE("the client refuses a server from another CA or with another name", "[grpc][mtls]") {
  Pki pki;
  fs::path mta = pki.host("mta1");
  SECTION("servers certified by another CA, or by a CA that only shares our CA's name") {
    for (const char* rogue : {"intruder", "impostor"}) {
      test::LogCapture logs("grpc_test");
      auto nss = open_nss(pki.host(rogue));
      {
        PingServer server(server_creds());
        ClientRun run = ping_from(mta, server.target());
        INFO(rogue << ": " << run.output);
        CHECK(run.exit_code == 2);
        CHECK(run.output.find("RPC_ERROR code=14 ") != std::string::npos);
        // The client's OpenSSL refused the server's chain (not from the client's Postern-CA).
        CHECK(run.output.find("event=handshake_failed") != std::string::npos);
        CHECK(run.output.find("certificate verify failed") != std::string::npos);
        CHECK(server.calls() == 0);
      }
      shutdown_cleanly(nss);
    }
  }
  SECTION("a server whose certificate does not carry the expected name") {
    test::LogCapture logs("grpc_test");
    auto nss = open_nss(pki.host("store1"));
    {
      PingServer server(server_creds());
      ClientRun wrong = ping_from(mta, server.target(), {"--expect-name", "store9.example.net"});
      INFO(wrong.output);
      CHECK(wrong.exit_code == 2);
      CHECK(wrong.output.find("RPC_ERROR code=14 ") != std::string::npos);
      // The client logged NSS's reason on its side.
      CHECK(wrong.output.find("event=peer_refused peer=server") != std::string::npos);
      CHECK(wrong.output.find("SSL_ERROR_BAD_CERT_DOMAIN") != std::string::npos);
      CHECK(server.calls() == 0);
    }
    shutdown_cleanly(nss);
  }
}

TEST_CASE("plaintext only when asked for, and then with a warning", "[grpc][plaintext]") {
  Pki pki;
  fs::path store = pki.host("store1");
  fs::path mta = pki.host("mta1");
  test::LogCapture logs("grpc_test");
  auto nss = open_nss(store);
  {
    PingServer plain(server_creds({.plaintext = true}));
    auto warned = logs.matching("event=plaintext");
    REQUIRE(warned.size() == 1);
    CHECK(warned[0].find("level=warning") != std::string::npos);
    CHECK(warned[0].find("side=server") != std::string::npos);

    ClientRun run = ping_from({}, plain.target(), {"--plaintext"});
    INFO(run.output);
    CHECK(run.ok());
    CHECK(run.output.find("cn= subject=") != std::string::npos);  // nobody was authenticated
    CHECK(run.output.find("event=plaintext") != std::string::npos);  // the client warned too

    ClientRun tls_to_plain = ping_from(mta, plain.target());
    INFO(tls_to_plain.output);
    CHECK(tls_to_plain.exit_code == 2);

    PingServer tls(server_creds());
    ClientRun plain_to_tls = ping_from({}, tls.target(), {"--plaintext"});
    INFO(plain_to_tls.output);
    CHECK(plain_to_tls.exit_code == 2);
    CHECK(tls.calls() == 0);
    CHECK(logs.matching("event=plaintext").size() == 1);  // the TLS server did not warn
  }
  shutdown_cleanly(nss);
}

TEST_CASE("the exported key belongs to the certificate, and export errors are clear", "[grpc][identity]") {
  Pki pki;
  fs::path store = pki.host("store1");
  // A certificate whose key NSS must never give out: certutil -G can make the key unextractable,
  // -S then certifies it. certutil -f wants the bare password, not the "token:password" line.
  std::string password = test::read_file(store / "password");
  password = password.substr(password.find(':') + 1);
  while (!password.empty() && (password.back() == '\n' || password.back() == '\r')) password.pop_back();
  fs::path pw = pki.tmp().write("pw.txt", password + "\n");
  std::string random(64, '\0');
  for (auto& c : random) c = static_cast<char>(::random());
  fs::path noise = pki.tmp().write("noise", random);
  std::string db = "sql:" + store.string();
  must(test::run({"certutil", "-G", "-d", db, "-f", pw.string(), "-z", noise.string(), "-k", "ec", "-q", "nistp256",
                  "--keyAttrFlags", "token,private,sensitive,unextractable"}),
       "certutil -G unextractable");
  auto keys = test::run({"certutil", "-K", "-d", db, "-f", pw.string()});
  must(keys, "certutil -K");
  auto orphan = keys.output.find("(orphan)");
  REQUIRE(orphan != std::string::npos);
  auto line_start = keys.output.rfind('\n', orphan) + 1;
  std::string key_id;
  {
    std::istringstream fields(keys.output.substr(line_start, orphan - line_start));
    std::string f;
    while (fields >> f) key_id = f;  // "< 0> ec <id> (orphan)": the last field before "(orphan)"
  }
  must(test::run({"certutil", "-S", "-d", db, "-f", pw.string(), "-z", noise.string(), "-n", "Locked", "-s",
                  "CN=locked", "-x", "-t", ",,", "-k", key_id}),
       "certutil -S Locked");
  auto nss = open_nss(store);
  {
    auto id = common::rpc::export_identity("Server-Cert");
    INFO((id ? std::string() : id.error().detail));
    REQUIRE(id);
    CHECK(id->private_key_pem.rfind("-----BEGIN PRIVATE KEY-----\n", 0) == 0);
    CHECK(id->certificate_chain_pem.rfind("-----BEGIN CERTIFICATE-----\n", 0) == 0);
    auto roots = common::rpc::trusted_roots_pem("Postern-CA");
    REQUIRE(roots);

    // OpenSSL, independently: the key's public half is the certificate's SPKI (compared by SHA-256).
    fs::path key = pki.tmp().write("key.pem", id->private_key_pem);
    fs::path cert = pki.tmp().write("cert.pem", id->certificate_chain_pem);
    fs::path root = pki.tmp().write("root.pem", *roots);
    auto spki_of_key = test::run({"sh", "-c", "openssl pkey -in " + key.string() +
                                                  " -pubout -outform DER | openssl dgst -sha256 -r"});
    auto spki_of_cert = test::run({"sh", "-c", "openssl x509 -in " + cert.string() +
                                                   " -noout -pubkey | openssl pkey -pubin -outform DER | "
                                                   "openssl dgst -sha256 -r"});
    must(spki_of_key, "openssl pkey");
    must(spki_of_cert, "openssl x509");
    CHECK(spki_of_key.output.size() > 64);
    CHECK(spki_of_key.output == spki_of_cert.output);
    // The chain verifies against the exported root with OpenSSL too.
    must(test::run({"openssl", "verify", "-CAfile", root.string(), cert.string()}), "openssl verify");
    common::rpc::wipe(id->private_key_pem);

    auto missing = common::rpc::export_identity("No-Such-Cert");
    REQUIRE_FALSE(missing);
    CHECK(missing.error().kind == common::ErrorKind::Config);
    CHECK(missing.error().detail.find("\"No-Such-Cert\" not found") != std::string::npos);

    auto locked = common::rpc::export_identity("Locked");
    REQUIRE_FALSE(locked);
    CHECK(locked.error().detail.find("private key of \"Locked\" is marked unextractable") != std::string::npos);

    auto not_ca = common::rpc::trusted_roots_pem("Server-Cert");
    REQUIRE_FALSE(not_ca);
    CHECK(not_ca.error().detail.find("not a CA") != std::string::npos);

    // Own-certificate check at start: the host certificate verifies as server and as client.
    CHECK(common::rpc::check_own_certificate("Server-Cert", common::rpc::PeerRole::Server));
    CHECK(common::rpc::check_own_certificate("Server-Cert", common::rpc::PeerRole::Client));
    auto bad = common::rpc::server_credentials({.certificate = "No-Such-Cert"});
    REQUIRE_FALSE(bad);
    CHECK(bad.error().detail.find("No-Such-Cert") != std::string::npos);

    // The verifier's NSS half, without gRPC: our own chain as a peer would send it.
    auto as_client = common::rpc::verify_peer(id->certificate_chain_pem, common::rpc::PeerRole::Client, "");
    CHECK(as_client.ok);
    CHECK(as_client.common_name == "store1");
    auto as_server = common::rpc::verify_peer(id->certificate_chain_pem, common::rpc::PeerRole::Server, "127.0.0.1");
    CHECK(as_server.ok);
    auto wrong_name = common::rpc::verify_peer(id->certificate_chain_pem, common::rpc::PeerRole::Server, "evil.test");
    CHECK_FALSE(wrong_name.ok);
    CHECK(wrong_name.reason.find("SSL_ERROR_BAD_CERT_DOMAIN") != std::string::npos);
    auto garbage = common::rpc::verify_peer("not a certificate", common::rpc::PeerRole::Client, "");
    CHECK_FALSE(garbage.ok);
  }
  shutdown_cleanly(nss);
}

TEST_CASE("without NSS the factories fail instead of guessing", "[grpc][identity]") {
  auto creds = common::rpc::server_credentials({});
  REQUIRE_FALSE(creds);
  CHECK(creds.error().detail.find("NSS is not initialised") != std::string::npos);
}

// ---- The daemon skeleton's server (common::rpc::GrpcServer) over mTLS --------------------------

namespace {

// GrpcServer as run_daemon runs it: the Ping service registered through the registry, its loop on a
// thread of its own; no access check (server_test.cpp covers the gate's filter side).
class SkeletonServer {
 public:
  explicit SkeletonServer(common::rpc::ServerOptions o) : options_(std::move(o)) {
    keepalive_.start(1h, [] {}, 1h);
    thread_ = std::thread([this] { loop_.run(); });
    registry_.add<postern::test::Ping>(service_);
    auto s = common::rpc::GrpcServer::start(options_, registry_, {});
    INFO((s ? std::string() : s.error().detail));
    REQUIRE(s);
    server_ = std::move(*s);
  }
  ~SkeletonServer() {
    server_.reset();
    loop_.post([this] { keepalive_.stop(); });
    loop_.stop();
    thread_.join();
  }
  std::string target() const { return "127.0.0.1:" + std::to_string(server_->port()); }
  common::rpc::GrpcServer& server() { return *server_; }
  const common::rpc::ServerOptions& options() const { return options_; }
  int calls() const { return service_.calls; }

 private:
  common::rpc::ServerOptions options_;
  common::runtime::Loop loop_;
  common::runtime::Timer keepalive_{loop_.get()};
  std::thread thread_;
  common::rpc::GrpcRegistry registry_{{&loop_}};
  PingService service_{loop_};
  std::unique_ptr<common::rpc::GrpcServer> server_;
};

common::rpc::ServerOptions mtls_options(std::string name) {
  common::rpc::ServerOptions o;
  o.name = std::move(name);
  o.service = "ping";
  o.listen = *common::net::Endpoint::parse("127.0.0.1:0");
  return o;
}

// A client with one long-lived channel that makes `calls` calls; each after the first waits for
// go() (grpc_ping_client --go).
class SlowClient {
 public:
  SlowClient(const fs::path& db, const std::string& target, int calls, const test::TempDir& dir, std::string name)
      : go_((dir.path() / (name + ".go")).string()), log_((dir.path() / (name + ".out")).string()) {
    process_ = std::make_unique<test::ChildProcess>(
        std::vector<std::string>{test::binary_path("tests/common/grpc/grpc_ping_client"), "--db", db.string(),
                                 "--target", target, "--calls", std::to_string(calls), "--go", go_},
        log_);
  }
  // The result lines so far, waiting until there are `n`.
  std::vector<std::string> results(size_t n) {
    std::vector<std::string> lines;
    for (int i = 0; i < 3000; ++i) {
      lines.clear();
      std::istringstream in(test::read_file(log_));
      for (std::string l; std::getline(in, l);)
        if (l.rfind("OK ", 0) == 0 || l.rfind("RPC_ERROR ", 0) == 0 || l.rfind("SETUP_ERROR ", 0) == 0) lines.push_back(l);
      if (lines.size() >= n || !process_->running()) break;
      std::this_thread::sleep_for(10ms);
    }
    return lines;
  }
  void go() { std::ofstream(go_) << "go\n"; }
  int wait() { return process_->wait(30s); }
  std::string output() const { return test::read_file(log_); }

 private:
  std::string go_, log_;
  std::unique_ptr<test::ChildProcess> process_;
};

// The serial number of the certificate a TLS server presents, as openssl s_client sees it.
std::string served_serial(int port) {
  auto r = test::run({"sh", "-c", "openssl s_client -connect 127.0.0.1:" + std::to_string(port) +
                                      " -alpn h2 </dev/null 2>/dev/null | openssl x509 -noout -serial"});
  return r.output;
}

}  // namespace

TEST_CASE("a front end revoked after it connected is refused from its next call after the reload", "[grpc][mtls][skeleton]") {
  Pki pki;
  fs::path server_db = pki.host("mta1");  // no CRL in it: mta2 gets in at first
  test::LogCapture logs("grpc_test");
  auto nss = open_nss(server_db);
  {
    SkeletonServer s(mtls_options("revoke"));
    SlowClient revoked(pki.host("mta2"), s.target(), 2, pki.tmp(), "mta2");
    SlowClient good(pki.host("store1"), s.target(), 2, pki.tmp(), "store1");
    auto first = revoked.results(1);
    INFO(revoked.output() << logs.all());
    REQUIRE(first.size() == 1);
    CHECK(first[0].rfind("OK cn=mta2 ", 0) == 0);
    REQUIRE(good.results(1).size() == 1);

    // The operator publishes the CRL and sends SIGHUP: CRLs first, then the server.
    auto crls = common::tls::CachedCrls::load({Pki::file("ca/crl.der").string()});
    REQUIRE(crls);
    auto reloaded = s.server().reload(s.options(), 5s);
    REQUIRE(reloaded);
    CHECK_FALSE(*reloaded);  // same certificate: the server and its connections stay
    revoked.go();
    good.go();
    auto both = revoked.results(2);
    REQUIRE(both.size() == 2);
    CHECK(both[1].rfind("RPC_ERROR code=16 ", 0) == 0);  // UNAUTHENTICATED, on the same channel
    CHECK(revoked.wait() == 2);
    auto fine = good.results(2);
    REQUIRE(fine.size() == 2);
    CHECK(fine[1].rfind("OK cn=store1 ", 0) == 0);
    CHECK(good.wait() == 0);
    auto lines = logs.matching("reason=certificate_refused");
    REQUIRE(lines.size() == 1);
    CHECK(lines[0].find("SEC_ERROR_REVOKED_CERTIFICATE") != std::string::npos);
    CHECK(lines[0].find("subject=\"CN=mta2,O=Postern\"") != std::string::npos);
    CHECK(lines[0].find("client=127.0.0.1:") != std::string::npos);
    CHECK(s.calls() == 3);  // the refused call never reached the service
  }
  shutdown_cleanly(nss);
}

TEST_CASE("a long-lived channel is handshaken again after max_connection_age", "[grpc][mtls][skeleton]") {
  Pki pki;
  fs::path server_db = pki.host("mta1");
  test::LogCapture logs("grpc_test");
  auto nss = open_nss(server_db);
  {
    auto o = mtls_options("age");
    o.max_connection_age = 1s;
    o.max_connection_age_grace = 1s;
    SkeletonServer s(o);
    SlowClient revoked(pki.host("mta2"), s.target(), 2, pki.tmp(), "mta2");
    auto first = revoked.results(1);
    INFO(revoked.output() << logs.all());
    REQUIRE(first.size() == 1);
    CHECK(first[0].rfind("OK ", 0) == 0);
    // The CRL arrives but nobody reloads: only the connection's age makes the channel reconnect,
    // and the new handshake is where NSS refuses it.
    auto crls = common::tls::CachedCrls::load({Pki::file("ca/crl.der").string()});
    REQUIRE(crls);
    std::this_thread::sleep_for(3s);
    revoked.go();
    auto both = revoked.results(2);
    REQUIRE(both.size() == 2);
    CHECK(both[1].rfind("RPC_ERROR code=14 ", 0) == 0);
    CHECK(logs.matching("event=peer_refused").size() >= 1);
    CHECK(s.calls() == 1);
  }
  shutdown_cleanly(nss);
}

TEST_CASE("a certificate re-issued by deploy/certs is served after the reload, without a restart", "[grpc][mtls][skeleton]") {
  Pki pki;
  fs::path ca = pki.host("ca");  // a copy: issuing writes to the CA directory
  fs::path server_db = pki.host("store1");
  test::LogCapture logs("grpc_test");
  auto nss = open_nss(server_db);
  {
    SkeletonServer s(mtls_options("rotate"));
    std::string before = served_serial(s.server().port());
    REQUIRE(before.rfind("serial=", 0) == 0);
    auto reissued = test::run({test::source_path("deploy/certs"), "host", "--ca", ca.string(), "--dir",
                               server_db.string(), "--host", "store1", "--ip", "127.0.0.1", "--force"},
                              120s);
    INFO(reissued.output);
    REQUIRE(reissued.exit_code == 0);
    auto reloaded = s.server().reload(s.options(), 5s);
    INFO((reloaded ? std::string() : reloaded.error().detail) << logs.all());
    REQUIRE(reloaded);
    CHECK(*reloaded);
    std::string after = served_serial(s.server().port());
    CHECK(after.rfind("serial=", 0) == 0);
    CHECK(after != before);
    CHECK(logs.matching("event=certificate_changed").size() == 1);
    ClientRun run = ping_from(pki.host("mta1"), s.target());
    INFO(run.output);
    CHECK(run.ok());
  }
  shutdown_cleanly(nss);
}
