// client_test.cpp: the TLS client context against our own ServerContext listeners on loopback:
// implicit TLS and STARTTLS, mutual TLS (the server sees our certificate verified), the facts after
// the handshake, and verification failures (another CA, a wrong name, the system roots for a
// deployment certificate) as failed handshakes, recorded but not enforced when opportunistic.
#include <catch2/catch.hpp>

#include <pk11pub.h>

#include "common/runtime/listener.hpp"
#include "common/runtime/outbound.hpp"
#include "common/tls/client.hpp"
#include "common/tls/nss.hpp"
#include "common/tls/server.hpp"
#include "tests/support/echo_session.hpp"
#include "tests/support/loop_thread.hpp"
#include "tests/support/pki.hpp"
#include "tests/support/process.hpp"

using namespace common::runtime;
using namespace common::tls;
using common::net::Endpoint;
using namespace std::chrono_literals;
namespace fs = std::filesystem;

namespace {

// One NSS for the process (NSS allows no second): mta1's database (the deployment CA, mta1's
// Server-Cert) plus intruder's certificate and key from the other CA as "Intruder-Cert".
struct World {
  test::Pki pki;
  fs::path db;
  std::unique_ptr<Nss> nss;
  World() {
    db = pki.host("mta1");
    const fs::path intruder = pki.host("intruder");
    const fs::path work = pki.tmp() / "p12";
    fs::create_directories(work);
    const std::string script =
        "set -e; cd '" + work.string() + "'; "
        "cut -d: -f2- '" + db.string() + "/password' | tr -d '\\n' > pw; "
        "cut -d: -f2- '" + intruder.string() + "/password' | tr -d '\\n' > ipw; printf p12secret > p12; "
        "pk12util -o a.p12 -n Server-Cert -d 'sql:" + intruder.string() + "' -k ipw -w p12; "
        "openssl pkcs12 -in a.p12 -passin file:p12 -nodes -out a.pem; "
        "openssl pkcs12 -export -in a.pem -name Intruder-Cert -passout file:p12 -out b.p12; "
        "pk12util -i b.p12 -d 'sql:" + db.string() + "' -k pw -w p12";
    auto r = test::run({"sh", "-c", script}, 60s);
    if (r.exit_code != 0) FAIL("preparing the NSS database: " << r.output);
    NssOptions o;
    o.db_dir = db.string();
    o.password_file = (db / "password").string();
    auto opened = Nss::init(o);
    if (!opened) FAIL(opened.error().detail);
    nss = std::move(*opened);
  }
};

World& world() {
  static World w;
  return w;
}

std::shared_ptr<ServerContext> server_context(const std::string& nickname) {
  ServerOptions o;
  o.certificates = {nickname};
  o.client_certs = ClientCerts::Optional;
  auto ctx = ServerContext::create(*world().nss, o);
  REQUIRE(ctx);
  return *ctx;
}

std::shared_ptr<ClientContext> client_context(Verify verify, const std::string& cert = "Server-Cert") {
  ClientOptions o;
  o.verify = verify;
  o.client_certificate = cert;
  auto ctx = ClientContext::create(*world().nss, o);
  if (!ctx) FAIL(ctx.error().detail);
  return *ctx;
}

// A line echo behind TLS: implicit, or STARTTLS ("+go ahead").
class TlsEchoFactory : public SessionFactory {
 public:
  TlsEchoFactory(std::shared_ptr<ServerContext> ctx, bool implicit) : ctx_(std::move(ctx)), implicit_(implicit) {}
  std::unique_ptr<Session> create(Connection& c) override {
    if (implicit_) {
      c.start_implicit_tls(ctx_->accept(c.info().id));
      return std::make_unique<test::LineEchoSession>(c, 1000, 3);
    }
    auto ctx = ctx_;
    return std::make_unique<test::LineEchoSession>(c, 1000, 3,
                                                   [ctx](std::string_view id) { return ctx->accept(id); });
  }

 private:
  std::shared_ptr<ServerContext> ctx_;
  bool implicit_;
};

struct Server {
  test::LoopThread& t;
  common::metrics::Registry registry;
  TlsEchoFactory factory;
  std::unique_ptr<Listener> listener;
  int port = 0;
  Server(test::LoopThread& loop, std::shared_ptr<ServerContext> ctx, bool implicit = true)
      : t(loop), factory(std::move(ctx), implicit) {
    auto bound = bind_endpoints({*Endpoint::parse("127.0.0.1:0")}, 1, 128);
    REQUIRE(bound);
    port = (*bound)[0][0].endpoint.port;
    ListenerOptions o;
    o.name = "tls";
    o.service = "tls";
    t.on_loop([&] {
      listener = std::make_unique<Listener>(t.connections, o, std::move((*bound)[0][0]),
                                            std::make_shared<ConnectionLimiter>(0, 0),
                                            std::make_shared<ListenerStats>("tls", registry), factory, nullptr);
      REQUIRE(listener->start());
    });
  }
  ~Server() {
    t.on_loop([&] {
      listener.reset();
      t.connections.abort_all();
    });
  }
};

struct Client {
  std::shared_ptr<test::Recording> rec = std::make_shared<test::Recording>();
  test::RecordingSession* session = nullptr;
  ClientTransform* tls = nullptr;  // the connection's: gone with it once closed
  // tls->failure() as the connection closed (shared: the connection may close after this goes).
  std::shared_ptr<std::string> failure_at_close = std::make_shared<std::string>();
  // On the loop thread.
  std::string failure() const {
    std::lock_guard lock(rec->mutex);
    if (rec->closed) return *failure_at_close;
    return tls ? tls->failure() : "";
  }
};

// Connects to `port`; with `ctx`, implicit TLS from the first byte.
void open(test::LoopThread& t, Client& client, int port, std::shared_ptr<ClientContext> ctx, ClientPeer peer) {
  ConnectOptions o;
  o.remote = *Endpoint::parse("127.0.0.1:" + std::to_string(port));
  o.connect_timeout = 5s;
  t.on_loop([&] {
    connect(
        t.connections, o,
        [&client, ctx, peer](Connection& c) {
          if (ctx) {
            auto transform = ctx->connect(c.info().id, peer);
            client.tls = transform.get();
            client.rec->at_close = [tls = client.tls, out = client.failure_at_close](Connection&) {
              *out = tls->failure();
            };
            c.start_implicit_tls(std::move(transform));
          }
          auto s = std::make_unique<test::RecordingSession>(c, client.rec);
          client.session = s.get();
          return s;
        },
        [](const common::Error& e) { FAIL("connect failed: " << e.detail); });
  });
}

}  // namespace

TEST_CASE("implicit TLS with our certificate: the server sees it verified, we see the server's", "[tls][client]") {
  test::LoopThread t;
  Server server(t, server_context("Server-Cert"));
  Client c;
  open(t, c, server.port, client_context(Verify::DeploymentCa), {"mta1", ""});
  REQUIRE(c.rec->wait_for_data("+ready"));
  t.on_loop([&] { c.session->send("TLSINFO\r\n"); });
  REQUIRE(c.rec->wait_for_data("+tls "));
  const std::string info = c.rec->text();
  INFO(info);
  CHECK(info.find("client=E=") == std::string::npos);
  CHECK(info.find("CN=mta1") != std::string::npos);  // the server verified our Server-Cert
  t.on_loop([&] {
    const SecurityFacts* f = c.session->conn().transform()->facts();
    REQUIRE(f != nullptr);
    CHECK(f->handshake_done);
    CHECK(f->protocol == "TLSv1.3");
    CHECK(!f->cipher.empty());
    CHECK(f->server_verified);
    CHECK(f->server_subject.find("CN=mta1") != std::string::npos);
    CHECK(f->server_issuer.find("Postern") != std::string::npos);
    CHECK(f->server_name == "mta1");
    CHECK(f->client_verified);
  });
}

TEST_CASE("STARTTLS on an outbound connection: plaintext exchange, then TLS from the next byte", "[tls][client]") {
  test::LoopThread t;
  auto server_ctx = server_context("Server-Cert");
  Server server(t, server_ctx, false);
  Client c;
  open(t, c, server.port, nullptr, {});
  REQUIRE(c.rec->wait_for_data("+ready"));
  t.on_loop([&] { c.session->send("STARTTLS\r\n"); });
  REQUIRE(c.rec->wait_for_data("+go ahead\r\n"));
  auto ctx = client_context(Verify::DeploymentCa);
  t.on_loop([&] {
    auto transform = ctx->connect(c.session->conn().info().id, {"mta1", ""});
    c.tls = transform.get();
    REQUIRE(c.session->upgrade(std::move(transform)));
    c.session->send("TLSINFO\r\n");  // held until the handshake is done
  });
  REQUIRE(c.rec->wait_for_data("+tls TLSv1.3"));
  CHECK(c.rec->text().find("CN=mta1") != std::string::npos);
}

TEST_CASE("verification failures end the handshake, opportunistic only records them", "[tls][client]") {
  test::LoopThread t;
  SECTION("a certificate of another CA") {
    Server server(t, server_context("Intruder-Cert"));
    Client c;
    open(t, c, server.port, client_context(Verify::DeploymentCa), {"intruder", ""});
    REQUIRE(c.rec->wait_closed());
    CHECK(*c.rec->closed == CloseReason::TransformError);
    CHECK(!c.rec->opened == false);
    t.on_loop([&] {
      INFO(c.failure());
      CHECK(c.failure().find("TLS handshake failed") != std::string::npos);
      CHECK(c.failure().find("ISSUER") != std::string::npos);
    });
  }
  SECTION("a name the certificate does not carry") {
    Server server(t, server_context("Server-Cert"));
    Client c;
    open(t, c, server.port, client_context(Verify::DeploymentCa), {"", "store9.example.com"});
    REQUIRE(c.rec->wait_closed());
    CHECK(*c.rec->closed == CloseReason::TransformError);
    t.on_loop([&] {
      INFO(c.failure());
      CHECK(c.failure().find("does not name store9.example.com") != std::string::npos);
    });
  }
  SECTION("opportunistic: another CA is recorded, the session goes on") {
    Server server(t, server_context("Intruder-Cert"));
    Client c;
    open(t, c, server.port, client_context(Verify::Opportunistic, ""), {"intruder", ""});
    REQUIRE(c.rec->wait_for_data("+ready"));
    t.on_loop([&] {
      const SecurityFacts* f = c.session->conn().transform()->facts();
      REQUIRE(f != nullptr);
      CHECK(!f->server_verified);
      CHECK(!f->server_verify_error.empty());
      CHECK(f->server_subject.find("intruder") != std::string::npos);
      CHECK(!f->client_verified);
    });
  }
  SECTION("the system roots: our deployment CA is not one of them") {
    auto system = client_context(Verify::SystemRoots, "");
    CHECK(SECMOD_HasRootCerts());  // libnssckbi.so loaded
    Server server(t, server_context("Server-Cert"));
    Client c;
    open(t, c, server.port, system, {"mta1", ""});
    REQUIRE(c.rec->wait_closed());
    t.on_loop([&] {
      INFO(c.failure());
      CHECK(c.failure().find("public root") != std::string::npos);
    });
    // With the public roots loaded in the process, the deployment CA mode still passes ours only.
    Client d;
    open(t, d, server.port, client_context(Verify::DeploymentCa), {"mta1", ""});
    REQUIRE(d.rec->wait_for_data("+ready"));
  }
}
