// server_test.cpp: TLS server sessions on the runtime against real clients: openssl s_client,
// gnutls-cli, sslscan and tls_client.py (byte-level and hostile clients). Each case opens NSS on
// the shared PKI and ends by shutting NSS down, which fails if any NSS reference leaked.
#include <catch2/catch.hpp>

#include <sys/stat.h>

#include <filesystem>
#include <fstream>
#include <regex>
#include <sstream>

#include "common/log/log.hpp"
#include "tests/common/tls/tls_harness.hpp"

using namespace common::tls;
using namespace std::chrono_literals;
using tlstest::contains;
using tlstest::pki;

namespace {

std::shared_ptr<ServerContext> make_context(const Nss& nss, ServerOptions options = {}) {
  auto context = ServerContext::create(nss, options);
  INFO((context ? std::string() : context.error().detail));
  REQUIRE(context);
  return *context;
}

std::vector<std::string> trust() { return {"-CAfile", pki().ca_pem(), "-verify_return_error"}; }

std::vector<std::string> with(std::vector<std::string> a, const std::vector<std::string>& b) {
  a.insert(a.end(), b.begin(), b.end());
  return a;
}

std::vector<std::string> client_cert(const std::string& name) {
  return {"-cert", pki().client_pem(name), "-key", pki().client_key(name)};
}

// The value of `key` in a facts line ("facts |protocol=TLSv1.3|cipher=...|").
std::string fact(const std::string& output, const std::string& key) {
  std::smatch m;
  std::regex re("facts \\|(?:[^\\r\\n]*\\|)?" + key + "=([^|\\r\\n]*)\\|");
  return std::regex_search(output, m, re) ? m[1].str() : "<none>";
}

// Everything after "key: " on its line in tls_client.py's output.
std::string field(const std::string& output, const std::string& key) {
  std::istringstream in(output);
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind(key + ": ", 0) == 0) return line.substr(key.size() + 2);
  }
  return "<none>";
}

// Runs `body` with NSS open and checks that NSS shuts down cleanly afterwards.
template <class F>
void with_nss(F body) {
  auto nss = tlstest::open_nss();
  body(*nss);
  auto down = nss->shutdown();
  INFO((down ? std::string() : down.error().detail));
  CHECK(down);
}

}  // namespace

TEST_CASE("openssl completes TLS 1.3 and TLS 1.2 handshakes and the facts describe the session", "[tls]") {
  with_nss([](Nss& nss) {
    tlstest::TlsServer server(make_context(nss));
    auto r13 = tlstest::s_client(server.tls_port, with(trust(), {"-tls1_3", "-servername", "LocalHost"}),
                                 "FACTS\\r\\nQUIT\\r\\n");
    INFO(r13.output);
    CHECK(r13.exit_code == 0);
    CHECK(contains(r13.output, "Verify return code: 0 (ok)"));
    CHECK(contains(r13.output, "+ready"));  // written by the session before the handshake ended
    CHECK(fact(r13.output, "protocol") == "TLSv1.3");
    CHECK(fact(r13.output, "cipher") == "TLS_AES_128_GCM_SHA256");
    CHECK(fact(r13.output, "bits") == "128");
    CHECK(fact(r13.output, "resumed") == "0");
    CHECK(fact(r13.output, "sni") == "localhost");
    CHECK(fact(r13.output, "verified") == "0");
    CHECK(fact(r13.output, "cb").size() == 64);  // tls-exporter, 32 bytes
    CHECK(contains(r13.output, "+bye"));

    // TLS 1.2 without tickets exercises the session-ID cache (without the cache libssl3 dies with SIGFPE on the first TLS 1.2 client).
    for (int i = 0; i < 3; ++i) {
      auto r12 = tlstest::s_client(server.tls_port, with(trust(), {"-tls1_2", "-no_ticket"}), "FACTS\\r\\nQUIT\\r\\n");
      INFO(r12.output);
      CHECK(r12.exit_code == 0);
      CHECK(fact(r12.output, "protocol") == "TLSv1.2");
      CHECK(fact(r12.output, "cipher") == "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256");
      CHECK(fact(r12.output, "sni") == "");
    }
    auto again = tlstest::s_client(server.tls_port, with(trust(), {"-tls1_3"}));
    CHECK(contains(again.output, "+bye"));
  });
}

TEST_CASE("the channel binding is the client's tls-exporter value (RFC 9266)", "[tls]") {
  with_nss([](Nss& nss) {
    tlstest::TlsServer server(make_context(nss));
    for (const char* version : {"-tls1_3", "-tls1_2"}) {
      auto r = tlstest::s_client(server.tls_port,
                                 with(trust(), {version, "-keymatexport", "EXPORTER-Channel-Binding",
                                                "-keymatexportlen", "32"}),
                                 "FACTS\\r\\nQUIT\\r\\n");
      INFO(r.output);
      std::smatch m;
      std::string out = r.output;
      REQUIRE(std::regex_search(out, m, std::regex("Keying material: ([0-9A-F]+)")));
      CHECK(fact(r.output, "cb") == m[1].str());
    }
  });
}

TEST_CASE("STARTTLS: openssl -starttls smtp upgrades the plaintext dialogue", "[tls]") {
  with_nss([](Nss& nss) {
    tlstest::TlsServer server(make_context(nss));
    auto r = tlstest::s_client(server.starttls_port, with(trust(), {"-starttls", "smtp"}),
                               "EHLO client\\r\\nFACTS\\r\\nQUIT\\r\\n");
    INFO(r.output);
    CHECK(r.exit_code == 0);
    CHECK(contains(r.output, "250 PIPELINING"));  // the EHLO answer inside TLS: no STARTTLS any more
    CHECK(fact(r.output, "protocol") == "TLSv1.3");
    CHECK(contains(r.output, "221 2.0.0 bye"));
    auto commands = server.commands();
    CHECK(std::find(commands.begin(), commands.end(), "plain:STARTTLS") != commands.end());
    CHECK(std::find(commands.begin(), commands.end(), "tls:FACTS") != commands.end());
  });
}

TEST_CASE("STARTTLS: plaintext pipelined after STARTTLS is discarded, never executed (CVE-2011-0411)", "[tls]") {
  with_nss([](Nss& nss) {
    tlstest::LogCapture logs;
    tlstest::TlsServer server(make_context(nss));
    auto r = tlstest::py_client("starttls-inject", server.starttls_port, {pki().ca_pem()});
    INFO(r.output);
    REQUIRE(r.exit_code == 0);
    CHECK(field(r.output, "starttls") == "220 2.0.0 go ahead");
    CHECK(field(r.output, "plaintext-after-220") == "<none>");
    CHECK(field(r.output, "first-reply") == "250 2.0.0 ok");  // the answer to NOOP, not to INJECTED
    CHECK(field(r.output, "quit-reply") == "221 2.0.0 bye");
    auto commands = server.commands();
    for (const auto& c : commands) CHECK_FALSE(contains(c, "INJECTED"));
    CHECK(std::find(commands.begin(), commands.end(), "tls:NOOP") != commands.end());
  });
}

TEST_CASE("gnutls-cli completes a TLS 1.3 handshake", "[tls]") {
  with_nss([](Nss& nss) {
    tlstest::TlsServer server(make_context(nss));
    auto r = test::run({"sh", "-c", "printf 'FACTS\\r\\nQUIT\\r\\n' | exec gnutls-cli --x509cafile \"$0\" -p \"$1\" localhost",
                        pki().ca_pem(), std::to_string(server.tls_port)},
                       20s);
    INFO(r.output);
    CHECK(r.exit_code == 0);
    CHECK(contains(r.output, "Handshake was completed"));
    CHECK(contains(r.output, "(TLS1.3-X.509)"));
    CHECK(fact(r.output, "protocol") == "TLSv1.3");
    CHECK(contains(r.output, "+bye"));
  });
}

TEST_CASE("sslscan sees only TLS 1.2 and 1.3, only strong suites, no renegotiation", "[tls]") {
  with_nss([](Nss& nss) {
    ServerOptions o;
    o.certificates = {"Server-Cert", "Server-Cert-RSA"};
    tlstest::TlsServer server(make_context(nss, o));
    auto r = test::run({"sslscan", "--no-colour", "127.0.0.1:" + std::to_string(server.tls_port)}, 60s);
    INFO(r.output);
    REQUIRE(r.exit_code == 0);
    for (const char* off : {"SSLv2", "SSLv3", "TLSv1.0", "TLSv1.1"}) {
      CHECK(std::regex_search(r.output, std::regex(std::string(off) + " +disabled")));
    }
    CHECK(std::regex_search(r.output, std::regex("TLSv1.2 +enabled")));
    CHECK(std::regex_search(r.output, std::regex("TLSv1.3 +enabled")));
    CHECK(contains(r.output, "Session renegotiation not supported"));
    std::istringstream in(r.output);
    std::string line;
    int tls12 = 0, tls13 = 0;
    while (std::getline(in, line)) {
      std::smatch m;
      if (!std::regex_search(line, m, std::regex("^(Preferred|Accepted) +(TLSv1\\.[0-3]) +[0-9]+ bits +([A-Za-z0-9_-]+)"))) {
        continue;
      }
      INFO(line);
      const CipherSuite* suite = find_cipher(m[3].str());
      REQUIRE(suite != nullptr);
      CHECK(suite->cls() == CipherClass::Strong);
      CHECK(suite->in_default);
      (m[2] == "TLSv1.3" ? tls13 : tls12) += 1;
    }
    CHECK(tls13 == 3);
    CHECK(tls12 == 6);  // ECDSA and RSA certificates: both ECDHE families
  });
}

TEST_CASE("TLS 1.0 and 1.1 are refused, and so are weak or disabled suites", "[tls]") {
  with_nss([](Nss& nss) {
    tlstest::LogCapture logs;
    ServerOptions o;
    o.adjust_ciphers = "-TLS_CHACHA20_POLY1305_SHA256";  // a suite switched off at once (TH-26)
    tlstest::TlsServer server(make_context(nss, o));
    // Debian's OpenSSL refuses old versions itself unless the security level is lowered.
    for (const char* old : {"-tls1_1", "-tls1"}) {
      auto r = tlstest::s_client(server.tls_port, {old, "-cipher", "DEFAULT:@SECLEVEL=0"});
      INFO(r.output);
      CHECK(r.exit_code != 0);
      CHECK(contains(r.output, "alert protocol version"));
    }
    CHECK(logs.wait_for({"event=tls_failed", "SSL_ERROR_UNSUPPORTED_VERSION"}));
    auto weak = tlstest::s_client(server.tls_port, {"-tls1_2", "-cipher", "AES128-SHA"});
    INFO(weak.output);
    CHECK(weak.exit_code != 0);
    CHECK(contains(weak.output, "alert handshake failure"));
    auto legacy = tlstest::s_client(server.tls_port, {"-tls1_2", "-cipher", "ECDHE-ECDSA-AES128-SHA:DES-CBC3-SHA:@SECLEVEL=0"});
    CHECK(legacy.exit_code != 0);
    CHECK(logs.wait_for({"event=tls_failed", "SSL_ERROR_NO_CYPHER_OVERLAP"}));
    auto chacha = tlstest::s_client(server.tls_port, {"-tls1_3", "-ciphersuites", "TLS_CHACHA20_POLY1305_SHA256"});
    CHECK(chacha.exit_code != 0);
    auto aes = tlstest::s_client(server.tls_port, {"-tls1_3", "-ciphersuites", "TLS_AES_256_GCM_SHA384"},
                                 "FACTS\\r\\nQUIT\\r\\n");
    CHECK(fact(aes.output, "cipher") == "TLS_AES_256_GCM_SHA384");
  });
}

TEST_CASE("SNI picks the certificate set of the name, the key type picks within a set", "[tls]") {
  with_nss([](Nss& nss) {
    ServerOptions o;
    o.certificates = {"Server-Cert", "Server-Cert-RSA"};
    o.sni = {{"Mail.Example.Org", {"Other-Cert"}}};
    tlstest::TlsServer server(make_context(nss, o));
    auto subject = [&](std::vector<std::string> args) {
      auto r = tlstest::s_client(server.tls_port, args, "FACTS\\r\\nQUIT\\r\\n");
      INFO(r.output);
      CHECK(contains(r.output, "+bye"));
      std::smatch m;
      std::string out = r.output;
      return std::regex_search(out, m, std::regex("subject=([^\\r\\n]*)")) ? m[1].str() : std::string("<none>");
    };
    CHECK(subject({"-servername", "mail.example.org"}) == "O = Postern, CN = mail.example.org");
    CHECK(subject({"-servername", "MAIL.EXAMPLE.ORG"}) == "O = Postern, CN = mail.example.org");
    CHECK(subject({"-servername", "mail.example.org", "-tls1_2"}) == "O = Postern, CN = mail.example.org");
    CHECK(subject({"-servername", "unknown.example.net"}) == "O = Postern, CN = localhost");
    CHECK(subject({"-noservername"}) == "O = Postern, CN = localhost");
    CHECK(subject({"-tls1_2", "-cipher", "ECDHE-RSA-AES128-GCM-SHA256"}) == "O = Postern, OU = RSA, CN = localhost");
    auto r = tlstest::s_client(server.tls_port, {"-servername", "mail.example.org"}, "FACTS\\r\\nQUIT\\r\\n");
    CHECK(fact(r.output, "sni") == "mail.example.org");
  });
}

TEST_CASE("client certificates required: none is refused, a valid one is verified, a revoked one is refused",
          "[tls]") {
  with_nss([](Nss& nss) {
    tlstest::LogCapture logs;
    ServerOptions o;
    o.client_certs = ClientCerts::Required;
    REQUIRE(nss.reload_crls({pki().crl_after_revoke()}));  // the process-wide CRLs
    tlstest::TlsServer server(make_context(nss, o));

    auto none = tlstest::s_client(server.tls_port, trust(), "FACTS\\r\\nQUIT\\r\\n");
    INFO(none.output);
    CHECK_FALSE(contains(none.output, "+facts"));
    CHECK(contains(none.output, "alert certificate required"));  // TLS 1.3 alert 116
    CHECK(logs.wait_for({"event=tls_failed", "SSL_ERROR_NO_CERTIFICATE"}));
    auto none12 = tlstest::s_client(server.tls_port, with(trust(), {"-tls1_2"}), "FACTS\\r\\nQUIT\\r\\n");
    CHECK(none12.exit_code != 0);
    CHECK_FALSE(contains(none12.output, "+facts"));

    auto alice = tlstest::s_client(server.tls_port, with(trust(), client_cert("alice")), "FACTS\\r\\nQUIT\\r\\n");
    INFO(alice.output);
    CHECK(fact(alice.output, "verified") == "1");
    CHECK(fact(alice.output, "subject") == "CN=alice,O=Postern");
    CHECK(fact(alice.output, "issuer") == "CN=Postern Deployment CA,O=Postern");
    CHECK(std::stoi(fact(alice.output, "der")) > 100);
    CHECK(contains(alice.output, "+bye"));

    auto mallory = tlstest::s_client(server.tls_port, with(trust(), client_cert("mallory")), "FACTS\\r\\nQUIT\\r\\n");
    INFO(mallory.output);
    CHECK_FALSE(contains(mallory.output, "+facts"));
    CHECK(contains(mallory.output, "alert certificate revoked"));
    CHECK(logs.wait_for({"event=tls_failed", "SEC_ERROR_REVOKED_CERTIFICATE (-8180)", "CN=mallory"}));
  });
}

TEST_CASE("an expired client certificate from the deployment CA is refused and the log names the cause", "[tls]") {
  // deploy/certs never issues one, so the test signs it with the CA database itself: valid for one
  // month, starting three months ago.
  test::TempDir dir;
  const std::string d = dir.path().string();
  const std::string ca = pki().root.string() + "/ca";
  auto made = test::run(
      {"sh", "-c",
       "set -e; sed 's/^Internal (Software) Token://' \"$1/password\" > \"$2/ca.pw\"; "
       "openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout \"$2/eve.key\" "
       "-subj '/O=Postern/CN=eve' -outform DER -out \"$2/eve.csr\" 2>/dev/null; "
       "certutil -C -d \"sql:$1\" -f \"$2/ca.pw\" -c Postern-CA -i \"$2/eve.csr\" -o \"$2/eve.der\" -m 990001 "
       "-w -3 -v 1 -Z SHA256 --extKeyUsage clientAuth; "
       "openssl x509 -inform DER -in \"$2/eve.der\" -out \"$2/eve.pem\"",
       "sh", ca, d});
  INFO(made.output);
  REQUIRE(made.exit_code == 0);
  with_nss([&](Nss& nss) {
    tlstest::LogCapture logs;
    ServerOptions o;
    o.client_certs = ClientCerts::Required;
    tlstest::TlsServer server(make_context(nss, o));
    auto eve = tlstest::s_client(server.tls_port, with(trust(), {"-cert", d + "/eve.pem", "-key", d + "/eve.key"}),
                                 "FACTS\\r\\nQUIT\\r\\n");
    INFO(eve.output);
    CHECK_FALSE(contains(eve.output, "+facts"));
    CHECK(contains(eve.output, "alert certificate expired"));
    CHECK(logs.wait_for({"event=tls_failed", "SEC_ERROR_EXPIRED_CERTIFICATE", "CN=eve"}));
  });
}

TEST_CASE("client certificates optional: absence is fine, a bad certificate still fails", "[tls]") {
  with_nss([](Nss& nss) {
    ServerOptions o;
    o.client_certs = ClientCerts::Optional;
    REQUIRE(nss.reload_crls({pki().crl_after_revoke()}));  // the process-wide CRLs
    tlstest::TlsServer server(make_context(nss, o));
    auto none = tlstest::s_client(server.tls_port, trust(), "FACTS\\r\\nQUIT\\r\\n");
    INFO(none.output);
    CHECK(fact(none.output, "verified") == "0");
    CHECK(contains(none.output, "+bye"));
    auto alice = tlstest::s_client(server.tls_port, with(trust(), client_cert("alice")), "FACTS\\r\\nQUIT\\r\\n");
    CHECK(fact(alice.output, "verified") == "1");
    CHECK(fact(alice.output, "subject") == "CN=alice,O=Postern");
    auto mallory = tlstest::s_client(server.tls_port, with(trust(), client_cert("mallory")), "FACTS\\r\\nQUIT\\r\\n");
    INFO(mallory.output);
    CHECK_FALSE(contains(mallory.output, "+facts"));
    CHECK(contains(mallory.output, "alert certificate revoked"));
  });
}

TEST_CASE("client certificates optional, bad ones tolerated: a revoked one is logged and counts as none", "[tls]") {
  with_nss([](Nss& nss) {
    tlstest::LogCapture logs;
    ServerOptions o;
    o.client_certs = ClientCerts::Optional;
    o.tolerate_bad_client_cert = true;
    REQUIRE(nss.reload_crls({pki().crl_after_revoke()}));
    tlstest::TlsServer server(make_context(nss, o));
    auto mallory = tlstest::s_client(server.tls_port, with(trust(), client_cert("mallory")), "FACTS\\r\\nQUIT\\r\\n");
    INFO(mallory.output);
    CHECK(contains(mallory.output, "+facts"));
    CHECK(fact(mallory.output, "verified") == "0");
    CHECK(fact(mallory.output, "subject") == "");
    CHECK(logs.wait_for({"event=bad_client_cert", "SEC_ERROR_REVOKED_CERTIFICATE (-8180)", "CN=mallory"}));
    auto alice = tlstest::s_client(server.tls_port, with(trust(), client_cert("alice")), "FACTS\\r\\nQUIT\\r\\n");
    CHECK(fact(alice.output, "verified") == "1");
    CHECK(fact(alice.output, "subject") == "CN=alice,O=Postern");
  });
}

TEST_CASE("client certificates off: none is asked for", "[tls]") {
  with_nss([](Nss& nss) {
    tlstest::TlsServer server(make_context(nss));
    auto r = tlstest::s_client(server.tls_port, with(trust(), client_cert("alice")), "FACTS\\r\\nQUIT\\r\\n");
    INFO(r.output);
    CHECK(contains(r.output, "No client certificate CA names sent"));
    CHECK(fact(r.output, "verified") == "0");
    CHECK(fact(r.output, "subject") == "");
  });
}

TEST_CASE("Nss::reload_crls: a CRL published later takes effect, a broken file keeps the old CRLs", "[tls]") {
  with_nss([](Nss& nss) {
    test::TempDir dir;
    auto crl = dir / "crl.pem";
    std::filesystem::copy_file(pki().crl_before_revoke(), crl);
    ServerOptions o;
    o.client_certs = ClientCerts::Required;
    REQUIRE(nss.reload_crls({crl.string()}));
    tlstest::TlsServer server(make_context(nss, o));
    auto before = tlstest::s_client(server.tls_port, with(trust(), client_cert("mallory")), "FACTS\\r\\nQUIT\\r\\n");
    CHECK(fact(before.output, "subject") == "CN=mallory,O=Postern");

    std::filesystem::copy_file(pki().crl_after_revoke(), crl, std::filesystem::copy_options::overwrite_existing);
    common::Result<void> reloaded;
    reloaded = nss.reload_crls({crl.string()});
    REQUIRE(reloaded);
    auto after = tlstest::s_client(server.tls_port, with(trust(), client_cert("mallory")), "FACTS\\r\\nQUIT\\r\\n");
    INFO(after.output);
    CHECK(contains(after.output, "alert certificate revoked"));

    dir.write("crl.pem", "-----BEGIN X509 CRL-----\nbm90IGEgY3Js\n-----END X509 CRL-----\n");
    reloaded = nss.reload_crls({crl.string()});
    CHECK_FALSE(reloaded);
    CHECK(contains(reloaded.error().detail, crl.string()));
    auto still = tlstest::s_client(server.tls_port, with(trust(), client_cert("mallory")), "FACTS\\r\\nQUIT\\r\\n");
    CHECK(contains(still.output, "alert certificate revoked"));
    auto alice = tlstest::s_client(server.tls_port, with(trust(), client_cert("alice")), "FACTS\\r\\nQUIT\\r\\n");
    CHECK(fact(alice.output, "verified") == "1");
  });
}

TEST_CASE("sessions resume: TLS 1.3 tickets and TLS 1.2 session IDs", "[tls]") {
  with_nss([](Nss& nss) {
    test::TempDir dir;
    tlstest::TlsServer server(make_context(nss));
    for (std::vector<std::string> version : {std::vector<std::string>{"-tls1_3"}, {"-tls1_2", "-no_ticket"}, {"-tls1_2"}}) {
      auto sess = (dir / "session").string();
      auto first = tlstest::s_client(server.tls_port, with(with(trust(), version), {"-sess_out", sess}));
      INFO(first.output);
      CHECK(contains(first.output, "New, TLSv1."));
      auto second = tlstest::s_client(server.tls_port, with(with(trust(), version), {"-sess_in", sess}),
                                      "FACTS\\r\\nQUIT\\r\\n");
      INFO(second.output);
      CHECK(contains(second.output, "Reused, TLSv1."));
      CHECK(fact(second.output, "resumed") == "1");
    }
  });
}

TEST_CASE("a resumed session is checked again: a client certificate revoked since is refused", "[tls]") {
  with_nss([](Nss& nss) {
    tlstest::LogCapture logs;
    test::TempDir dir;
    auto crl = dir / "crl.pem";
    std::filesystem::copy_file(pki().crl_before_revoke(), crl);
    ServerOptions o;
    o.client_certs = ClientCerts::Required;
    REQUIRE(nss.reload_crls({crl.string()}));
    tlstest::TlsServer server(make_context(nss, o));
    auto sess = (dir / "session").string();
    auto first = tlstest::s_client(server.tls_port, with(with(trust(), client_cert("mallory")), {"-sess_out", sess}));
    INFO(first.output);
    CHECK(contains(first.output, "+bye"));
    auto resumed = tlstest::s_client(server.tls_port, with(with(trust(), client_cert("mallory")), {"-sess_in", sess}),
                                     "FACTS\\r\\nQUIT\\r\\n");
    INFO(resumed.output);
    CHECK(contains(resumed.output, "Reused, TLSv1.3"));
    CHECK(fact(resumed.output, "subject") == "CN=mallory,O=Postern");

    std::filesystem::copy_file(pki().crl_after_revoke(), crl, std::filesystem::copy_options::overwrite_existing);
    common::Result<void> reloaded;
    reloaded = nss.reload_crls({crl.string()});
    REQUIRE(reloaded);
    auto refused = tlstest::s_client(server.tls_port, with(with(trust(), client_cert("mallory")), {"-sess_in", sess}),
                                     "FACTS\\r\\nQUIT\\r\\n");
    INFO(refused.output);
    CHECK_FALSE(contains(refused.output, "+facts"));
    // Refused by the check after resumption, not by a fresh full handshake.
    CHECK(logs.wait_for({"event=tls_failed", "SEC_ERROR_REVOKED_CERTIFICATE", "resumed=yes"}));
  });
}

TEST_CASE("a handshake sent one byte per TCP segment completes, and the close sends close_notify", "[tls]") {
  with_nss([](Nss& nss) {
    tlstest::TlsServer server(make_context(nss));
    auto r = tlstest::py_client("bytewise", server.tls_port, {pki().ca_pem()});
    INFO(r.output);
    REQUIRE(r.exit_code == 0);
    CHECK(field(r.output, "protocol") == "TLSv1.3");
    CHECK(std::stoi(field(r.output, "segments")) > 200);
    CHECK(field(r.output, "greeting") == "+ready");
    CHECK(field(r.output, "reply") == "hello bytes");
    CHECK(field(r.output, "close_notify") == "yes");
  });
}

// Lines of one component at debug level while it lives (the hand-over to Tls13Records logs there).
struct DebugLogs {
  explicit DebugLogs(const std::string& component) {
    common::log::Settings settings;
    settings.components[component] = common::log::Level::Debug;
    common::log::configure(settings);
  }
  ~DebugLogs() { common::log::configure({}); }
};

size_t count(const std::string& haystack, const std::string& needle) {
  size_t n = 0;
  for (size_t at = haystack.find(needle); at != std::string::npos; at = haystack.find(needle, at + 1)) ++n;
  return n;
}

TEST_CASE("TLS 1.3 records leave NSS after the handshake: KeyUpdate, every suite, bulk data, forged records",
          "[tls]") {
  with_nss([](Nss& nss) {
    DebugLogs debug("tls");
    tlstest::LogCapture logs;
    tlstest::TlsServer server(make_context(nss));
    for (std::string suite : {"TLS_AES_128_GCM_SHA256", "TLS_AES_256_GCM_SHA384", "TLS_CHACHA20_POLY1305_SHA256"}) {
      // s_client takes "K" (KeyUpdate, update requested) and "k" (not requested) as commands only
      // when the line is read alone and -ign_eof is off.
      std::string script =
          "(printf 'FACTS\\r\\n'; sleep 0.3; printf 'K\\n'; sleep 0.3; printf 'requested\\r\\n'; sleep 0.3; "
          "printf 'k\\n'; sleep 0.3; printf 'unrequested\\r\\nQUIT\\r\\n'; sleep 2) | exec openssl s_client "
          "-connect 127.0.0.1:" + std::to_string(server.tls_port) + " -no_ign_eof -msg -tls1_3 -ciphersuites " +
          suite + " -CAfile " + pki().ca_pem() + " -verify_return_error";
      auto r = test::run({"sh", "-c", script}, 20s);
      INFO(r.output);
      CHECK(r.exit_code == 0);
      CHECK(fact(r.output, "cipher") == suite);
      CHECK(count(r.output, ">>> TLS 1.3, Handshake [length 0005], KeyUpdate") == 2);
      CHECK(count(r.output, "<<< TLS 1.3, Handshake [length 0005], KeyUpdate") == 1);  // answers the request only
      CHECK(contains(r.output, "requested\r\n"));
      CHECK(contains(r.output, "unrequested\r\n"));
      CHECK(contains(r.output, "+bye"));
    }
    CHECK(logs.wait_for({"event=tls_nss_released", "read_sequence=", "write_sequence="}));

    auto bulk = tlstest::py_client("bulk", server.tls_port, {pki().ca_pem(), "1500"});
    INFO(bulk.output);
    CHECK(field(bulk.output, "protocol") == "TLSv1.3");
    CHECK(field(bulk.output, "echoed") == "1500");  // about 1 MB each way
    CHECK(field(bulk.output, "last") == "+bye");

    auto forged = tlstest::py_client("tamper", server.tls_port, {pki().ca_pem()});
    INFO(forged.output);
    CHECK(field(forged.output, "reply") == "before");
    CHECK(contains(field(forged.output, "alert"), "BAD_RECORD_MAC"));
    CHECK(logs.wait_for({"event=tls_failed", "bad_record_mac"}));

    auto half = tlstest::py_client("half-record", server.tls_port, {pki().ca_pem()});
    INFO(half.output);
    CHECK(field(half.output, "reply") == "before");
    for (int i = 0; i < 200 && server.open_connections() > 0; ++i) std::this_thread::sleep_for(10ms);
    CHECK(server.open_connections() == 0);
  });
}

TEST_CASE("with release_nss_after_handshake off, TLS 1.3 records stay in NSS", "[tls]") {
  with_nss([](Nss& nss) {
    DebugLogs debug("tls");
    tlstest::LogCapture logs;
    ServerOptions o;
    o.release_nss_after_handshake = false;
    tlstest::TlsServer server(make_context(nss, o));
    auto bulk = tlstest::py_client("bulk", server.tls_port, {pki().ca_pem(), "200"});
    INFO(bulk.output);
    CHECK(field(bulk.output, "echoed") == "200");
    CHECK(field(bulk.output, "last") == "+bye");
    for (const auto& line : logs.lines()) CHECK_FALSE(contains(line, "tls_nss_released"));
  });
}

TEST_CASE("hostile clients: garbage, a ClientHello then silence, a reset mid-handshake", "[tls]") {
  with_nss([](Nss& nss) {
    tlstest::LogCapture logs;
    tlstest::TlsServer server(make_context(nss), 1s);
    auto garbage = tlstest::py_client("garbage", server.tls_port);
    INFO(garbage.output);
    CHECK(field(garbage.output, "closed") == "yes");
    CHECK(std::stod(field(garbage.output, "seconds")) < 0.9);  // at once, not at the idle timeout
    // The kind, the verb in hex and the length; never the request itself.
    CHECK(logs.wait_for({"event=tls_failed", "not a TLS ClientHello", "kind=http", "verb_hex=474554", "length=35"}));
    for (const auto& line : logs.lines()) {
      CHECK_FALSE(contains(line, "HTTP/1.0"));
      CHECK_FALSE(contains(line, "Host"));
    }

    auto silent = tlstest::py_client("hello-silence", server.tls_port);
    INFO(silent.output);
    CHECK(field(silent.output, "closed") == "yes");
    CHECK(std::stoi(field(silent.output, "received")) > 0);  // the server's flight came first
    CHECK(std::stod(field(silent.output, "seconds")) >= 0.8);  // then the idle timeout

    for (int i = 0; i < 10; ++i) {
      auto reset = tlstest::py_client("disconnect-mid", server.tls_port);
      INFO(reset.output);
      CHECK(field(reset.output, "reset") == "yes");
    }
    for (int i = 0; i < 200 && server.open_connections() > 0; ++i) std::this_thread::sleep_for(10ms);
    CHECK(server.open_connections() == 0);
    // Still serving.
    auto ok = tlstest::s_client(server.tls_port, trust());
    CHECK(contains(ok.output, "+bye"));
  });
}

TEST_CASE("ServerContext::create refuses bad settings with a message naming them", "[tls]") {
  with_nss([](Nss& nss) {
    auto error = [&](ServerOptions o) {
      auto c = ServerContext::create(nss, o);
      REQUIRE_FALSE(c);
      return c.error().detail;
    };
    ServerOptions o;
    o.certificates = {"No-Such-Cert"};
    CHECK(contains(error(o), "\"No-Such-Cert\" not found"));
    o.certificates = {"Server-Cert", "Other-Cert"};
    CHECK(contains(error(o), "one certificate per key type"));
    o = {};
    o.certificates = {};
    CHECK(contains(error(o), "no server certificate"));
    o = {};
    o.adjust_ciphers = "all,+BOGUS";
    CHECK(contains(error(o), "column 5: unknown cipher suite \"BOGUS\""));
    o = {};
    o.min_version = "1.1";
    CHECK(contains(error(o), "refused"));
    o = {};
    o.min_version = "1.3";
    o.adjust_ciphers = "-ALL,+ECDHE-ECDSA-AES128-GCM-SHA256";
    CHECK(contains(error(o), "no TLS 1.3 suite"));
    o = {};
    o.sni = {{"mail.example.org", {"Missing-Cert"}}};
    CHECK(contains(error(o), "SNI name \"mail.example.org\""));
    auto crl_error = [&](std::string file) {
      auto r = nss.reload_crls({file});
      REQUIRE_FALSE(r);
      return r.error().detail;
    };
    CHECK(contains(crl_error("/nonexistent/crl.der"), "/nonexistent/crl.der"));
    test::TempDir dir;
    CHECK(contains(crl_error(dir.write("bad.der", "not a crl").string()), "holds no valid CRL"));
    // A good one still works after all that.
    auto ok = ServerContext::create(nss, ServerOptions{});
    CHECK(ok);
  });
}

TEST_CASE("TLS 1.3 only, and a cipher list without TLS 1.3 suites, negotiate what they say", "[tls]") {
  with_nss([](Nss& nss) {
    ServerOptions o;
    o.min_version = "1.3";
    tlstest::TlsServer server13(make_context(nss, o));
    auto r = tlstest::s_client(server13.tls_port, {"-tls1_2"});
    CHECK(contains(r.output, "alert protocol version"));
    o = {};
    o.adjust_ciphers = "-ALL,+ECDHE-ECDSA-AES256-GCM-SHA384";
    tlstest::TlsServer server12(make_context(nss, o));
    auto r12 = tlstest::s_client(server12.tls_port, trust(), "FACTS\\r\\nQUIT\\r\\n");
    INFO(r12.output);
    CHECK(fact(r12.output, "protocol") == "TLSv1.2");
    CHECK(fact(r12.output, "cipher") == "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384");
  });
}

TEST_CASE("client-started renegotiation is refused (TLS-10)", "[tls]") {
  with_nss([](Nss& nss) {
    tlstest::LogCapture logs;
    tlstest::TlsServer server(make_context(nss));
    // s_client renegotiates when a line is just "R" (only without -ign_eof); the session must not
    // survive it.
    auto r = test::run({"sh", "-c",
                        "(sleep 0.3; printf 'R\\n'; sleep 0.5; printf 'FACTS\\r\\n'; sleep 0.5) | "
                        "exec openssl s_client -connect \"127.0.0.1:$0\" -tls1_2",
                        std::to_string(server.tls_port)},
                       20s);
    INFO(r.output);
    CHECK(contains(r.output, "RENEGOTIATING"));
    CHECK_FALSE(contains(r.output, "+facts"));
    CHECK(logs.wait_for({"event=tls_failed", "RENEGOTIATION"}));
  });
}

// gnutls-cli -d 5 prints every record it reads: the content type and length of each TLSInnerPlaintext
// content it decrypted, "Application Data(23)" or "Handshake(22)" and so on.
std::vector<std::pair<int, int>> decrypted_records(const std::string& output) {
  std::vector<std::pair<int, int>> records;
  std::regex re("Decrypted Packet\\[[0-9]+\\] [A-Za-z ]+\\(([0-9]+)\\) with\\s+length: ([0-9]+)");
  for (auto it = std::sregex_iterator(output.begin(), output.end(), re); it != std::sregex_iterator(); ++it) {
    records.emplace_back(std::stoi((*it)[1].str()), std::stoi((*it)[2].str()));
  }
  return records;
}

TEST_CASE("a client that asks for records of at most 512 bytes (record_size_limit) gets no larger ones", "[tls]") {
  with_nss([](Nss& nss) {
    DebugLogs debug("tls");
    tlstest::LogCapture logs;
    tlstest::TlsServer server(make_context(nss));
    // An 800-byte line in two writes, as gnutls-cli sends at most one record per read of its input;
    // the echo is one write of 802 bytes.
    const std::string half(400, 'r');
    auto talk = [&](const std::string& options) {
      return test::run({"sh", "-c",
                        "(printf 'FACTS\\r\\n'; sleep 0.3; printf '%s' \"$2\"; sleep 0.3; printf '%s\\r\\n' \"$2\"; "
                        "sleep 0.3; printf 'QUIT\\r\\n'; sleep 0.5) | exec gnutls-cli -d 5 " + options +
                            " --x509cafile \"$0\" -p \"$1\" localhost",
                        pki().ca_pem(), std::to_string(server.tls_port), half},
                       20s);
    };
    auto limited = talk("--recordsize=512");
    INFO(limited.output);
    CHECK(limited.exit_code == 0);
    CHECK(contains(limited.output, "Sending extension Record Size Limit/28"));
    CHECK(contains(limited.output, "+bye"));
    // GnuTLS asks for 513: RFC 8449 §4 counts the TLS 1.3 content type byte in the limit, so every
    // record may carry 512 bytes of content, no more.
    std::vector<int> data;
    for (auto [type, length] : decrypted_records(limited.output)) {
      if (type == 23) data.push_back(length);
      CHECK(length <= 512);
    }
    // The 802-byte echo in two records.
    const std::vector<int> split{512, 290};
    CHECK(std::search(data.begin(), data.end(), split.begin(), split.end()) != data.end());
    std::string lines;
    for (const auto& line : logs.lines()) lines += line + "\n";
    INFO(lines);
    CHECK(logs.wait_for({"event=tls_nss_kept", "record_size_limit of 513"}));

    // Without a smaller limit the connection leaves NSS as usual, and records may be larger.
    auto usual = talk("");
    INFO(usual.output);
    CHECK(contains(usual.output, "+bye"));
    auto records = decrypted_records(usual.output);
    CHECK(std::find(records.begin(), records.end(), std::pair<int, int>(23, 802)) != records.end());
    CHECK(logs.wait_for({"event=tls_nss_released"}));
  });
}

std::string to_hex(const std::string& bytes) {
  static const char* digits = "0123456789abcdef";
  std::string out;
  for (unsigned char b : bytes) {
    out += digits[b >> 4];
    out += digits[b & 15];
  }
  return out;
}

TEST_CASE("plaintext where TLS belongs is logged by kind, verb and length, never as sent", "[tls]") {
  with_nss([](Nss& nss) {
    tlstest::LogCapture logs;
    tlstest::TlsServer server(make_context(nss), 1s);
    // "\0alice\0secret" (RFC 4616), the password an SMTP client pipelines behind STARTTLS.
    const std::string credentials = "AGFsaWNlAHNlY3JldA==";
    auto refused = [&](const std::string& mode, int port, const std::string& bytes) {
      auto r = tlstest::py_client(mode, port, {to_hex(bytes)});
      INFO(mode << ": " << r.output);
      CHECK(field(r.output, "closed") == "yes");
      return logs.wait_for({"event=tls_failed", "not a TLS ClientHello", "length=" + std::to_string(bytes.size())});
    };
    const std::string auth = "AUTH PLAIN " + credentials + "\r\nQUIT\r\n";
    CHECK(refused("starttls-raw", server.starttls_port, auth));
    CHECK(logs.wait_for(
        {"event=tls_failed", "kind=text", "verb_hex=41555448", "length=" + std::to_string(auth.size())}));
    CHECK(refused("raw", server.tls_port, "auth plain " + credentials + "\r\n"));
    CHECK(logs.wait_for({"event=tls_failed", "kind=text", "verb_hex=61757468"}));
    // The base64 line alone (AUTH PLAIN sent in two parts): the first word is no verb, none is shown.
    CHECK(refused("starttls-raw", server.starttls_port, credentials + "\r\n"));
    // IMAP: the tag comes first and the password after the space.
    CHECK(refused("raw", server.tls_port, "a1 LOGIN alice secret\r\n"));
    // Not text: an SSL 2.0 CLIENT-HELLO, a TLS alert record, binary.
    CHECK(refused("raw", server.tls_port, std::string("\x80\x2e\x01\x03\x01\x00\x15\x00\x00\x00\x10", 11) +
                                              std::string(37, 'x')));
    CHECK(logs.wait_for({"event=tls_failed", "kind=sslv2_hello", "detail=\"version=0x0301\""}));
    CHECK(refused("raw", server.tls_port, std::string("\x15\x03\x03\x00\x02\x02\x28", 7)));
    CHECK(logs.wait_for({"event=tls_failed", "kind=tls_record", "type=21 version=0x0303"}));
    CHECK(refused("raw", server.tls_port, std::string("\x00\x01\x02secret\xff", 10)));
    CHECK(logs.wait_for({"event=tls_failed", "kind=binary", "first_byte=0x00"}));
    size_t failures = 0;
    for (const auto& line : logs.lines()) {
      INFO(line);
      for (const std::string& secret : {credentials, to_hex(credentials), std::string("PLAIN"), std::string("plain"),
                                        to_hex("PLAIN"), to_hex("plain"), std::string("AGFsaWNl"), to_hex("AGFsaWNl"),
                                        std::string("secret"), to_hex("secret"), std::string("alice"),
                                        to_hex("alice"), std::string("LOGIN"), to_hex("LOGIN")}) {
        CHECK_FALSE(contains(line, secret));
      }
      if (contains(line, "not a TLS ClientHello")) ++failures;
    }
    CHECK(failures == 7);
  });
}
