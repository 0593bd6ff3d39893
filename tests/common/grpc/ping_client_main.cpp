// ping_client_main.cpp: the second host of grpc_test: opens its own NSS database, calls Ping (once,
// or --calls N times over one channel) and prints what happened, so each test sees a real client
// from another process.
//   grpc_ping_client --db DIR --target HOST:PORT [--cert NICK] [--ca NICK] [--expect-name NAME]
//                    [--plaintext] [--no-client-cert] [--attacker] [--calls N [--go FILE]]
// --go FILE: before each call after the first, wait (up to 60 s) until FILE exists, then delete
// it, so a test can change the server between two calls of one long-lived channel.
// --attacker presents the host's certificate but checks nothing about the server, as someone with a
// certificate from another CA would, so the server's refusal is what gets tested.
// Prints "OK cn=<cn> subject=<subject>" (exit 0), "RPC_ERROR code=<n> message=<text>" (exit 2),
// one line per call (the exit code is the last call's), or "SETUP_ERROR <text>" (exit 1); exit 3
// when NSS did not shut down cleanly afterwards.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <memory>
#include <string>
#include <thread>

#include <unistd.h>

#include <grpcpp/grpcpp.h>

#include "common/grpc/credentials.hpp"
#include "common/grpc/nss_identity.hpp"
#include "common/tls/nss.hpp"
#include "ping.grpc.pb.h"

namespace {

struct Args {
  std::string db, target, cert = "Server-Cert", ca = "Postern-CA", expect_name, go;
  int calls = 1;
  bool plaintext = false, no_client_cert = false, attacker = false;
};

int setup_error(const std::string& text) {
  std::cout << "SETUP_ERROR " << text << std::endl;
  return 1;
}

// Returns the process exit code; everything holding gRPC or NSS objects is gone when it returns.
int call(const Args& a) {
  std::shared_ptr<grpc::ChannelCredentials> creds;
  if (a.no_client_cert) {
    // TLS that checks the server but offers no certificate of its own.
    auto roots = common::rpc::trusted_roots_pem(a.ca);
    if (!roots) return setup_error(roots.error().detail);
    grpc::SslCredentialsOptions ssl;
    ssl.pem_root_certs = *roots;
    creds = grpc::SslCredentials(ssl);
  } else if (a.attacker) {
    auto id = common::rpc::export_identity(a.cert);
    if (!id) return setup_error(id.error().detail);
    namespace gx = grpc::experimental;
    auto provider = std::make_shared<gx::StaticDataCertificateProvider>(
        std::vector<gx::IdentityKeyCertPair>{{id->private_key_pem, id->certificate_chain_pem}});
    gx::TlsChannelCredentialsOptions tls;
    tls.set_certificate_provider(provider);
    tls.watch_identity_key_cert_pairs();
    tls.set_verify_server_certs(false);
    tls.set_check_call_host(false);
    tls.set_certificate_verifier(std::make_shared<gx::NoOpCertificateVerifier>());
    creds = gx::TlsCredentials(tls);
  } else {
    auto made = common::rpc::channel_credentials(
        {.certificate = a.cert, .ca = a.ca, .plaintext = a.plaintext, .expected_peer_name = a.expect_name});
    if (!made) return setup_error(made.error().detail);
    creds = *made;
  }
  auto channel = grpc::CreateChannel(a.target, creds);
  auto stub = postern::test::Ping::NewStub(channel);
  int rc = 0;
  for (int i = 0; i < a.calls; ++i) {
    if (i > 0 && !a.go.empty()) {
      auto until = std::chrono::steady_clock::now() + std::chrono::seconds(60);
      while (::access(a.go.c_str(), F_OK) != 0 && std::chrono::steady_clock::now() < until)
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
      ::unlink(a.go.c_str());
    }
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
    postern::test::PingRequest req;
    req.set_text("ping");
    postern::test::PingReply reply;
    grpc::Status status = stub->Ping(&ctx, req, &reply);
    if (!status.ok()) {
      std::cout << "RPC_ERROR code=" << status.error_code() << " message=" << status.error_message() << std::endl;
      rc = 2;
    } else {
      std::cout << "OK cn=" << reply.peer_common_name() << " subject=" << reply.peer_subject() << std::endl;
      rc = 0;
    }
  }
  return rc;
}

}  // namespace

int main(int argc, char** argv) {
  Args a;
  for (int i = 1; i < argc; ++i) {
    std::string k = argv[i];
    auto value = [&]() -> std::string { return i + 1 < argc ? argv[++i] : ""; };
    if (k == "--db") a.db = value();
    else if (k == "--target") a.target = value();
    else if (k == "--cert") a.cert = value();
    else if (k == "--ca") a.ca = value();
    else if (k == "--expect-name") a.expect_name = value();
    else if (k == "--plaintext") a.plaintext = true;
    else if (k == "--no-client-cert") a.no_client_cert = true;
    else if (k == "--attacker") a.attacker = true;
    else if (k == "--calls") a.calls = std::max(1, std::atoi(value().c_str()));
    else if (k == "--go") a.go = value();
    else return setup_error("unknown argument " + k);
  }
  if (a.target.empty()) return setup_error("--target is required");
  int rc = 0;
  if (a.db.empty()) {
    rc = call(a);  // plaintext needs no certificate store
  } else {
    auto nss = common::tls::Nss::init({.db_dir = a.db, .password_file = a.db + "/password"});
    if (!nss) return setup_error(nss.error().detail);
    rc = call(a);
    if (auto down = (*nss)->shutdown(); !down) {
      std::cout << "NSS_SHUTDOWN_FAILED " << down.error().detail << std::endl;
      return 3;
    }
  }
  return rc;
}
