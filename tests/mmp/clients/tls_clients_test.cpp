// tls_clients_test.cpp: command-line TLS clients as people use them against the mmp's STARTTLS
// port (openssl s_client -starttls imap, gnutls-cli --starttls-proto=imap: each does the STARTTLS
// dialogue itself, checks the server's certificate, then logs in and reads), and the STARTTLS
// command injection of CVE-2011-0411 from a raw socket.
#include <catch2/catch.hpp>

#include <chrono>
#include <string>

#include "tests/mmp/support/mmp_daemon.hpp"
#include "tests/support/pki.hpp"
#include "tests/support/process.hpp"

namespace {

using namespace std::chrono_literals;

// tls_cli.py with the commands a person would type, then `client` (its argv).
test::CommandResult type_into(const std::vector<std::string>& client) {
  std::vector<std::string> argv{"python3", test::source_path("tests/mmp/clients/tls_cli.py"), "--no-greeting",
                                "--command", "a CAPABILITY", "--command", "b LOGIN alice secret-alice",
                                "--command", "c SELECT INBOX",
                                "--command", "d UID FETCH 1 (UID RFC822.SIZE BODY.PEEK[HEADER.FIELDS (SUBJECT)])",
                                "--command", "e LOGOUT", "--"};
  argv.insert(argv.end(), client.begin(), client.end());
  return test::run(argv, 90s);
}

void check_read(const test::CommandResult& r) {
  auto has = [&](const std::string& line) { return r.output.find(line) != std::string::npos; };
  CHECK(r.exit_code == 0);
  // Inside TLS: the password mechanisms, no STARTTLS any more (RFC 9051 §6.2.1).
  CHECK(has("AUTH=PLAIN"));
  CHECK_FALSE(has("LOGINDISABLED"));
  CHECK(r.output.find("STARTTLS", r.output.find("* CAPABILITY")) == std::string::npos);
  for (const char* tag : {"a", "b", "c", "d", "e"}) CHECK(has(std::string("answer ") + tag + " OK"));
  CHECK(has("S: * 1 EXISTS"));
  CHECK(has("S: Subject: test single"));
  CHECK(has("S: * BYE Logging out"));
}

}  // namespace

TEST_CASE("openssl s_client -starttls imap verifies the mmp, logs in and reads a message", "[integration]") {
  test::MmpDaemon suite;
  REQUIRE(suite.store().deliver({"alice@example.com"}).output.find("250") != std::string::npos);
  const std::string ca = test::Pki::file("ca/ca.pem").string();
  // -verify_return_error: a certificate that does not chain to our CA or name 127.0.0.1 ends it.
  const std::vector<std::string> s_client{"openssl", "s_client", "-quiet", "-nocommands", "-starttls", "imap",
                                          "-connect", "127.0.0.1:" + std::to_string(suite.imap_port()),
                                          "-CAfile", ca, "-verify_return_error", "-verify_ip", "127.0.0.1"};
  auto r = type_into(s_client);
  INFO(r.output << suite.log());
  check_read(r);

  // With a client certificate offered (alice's, from our CA): the session is the same; the
  // certificate does not log anyone in by itself.
  auto with_cert = s_client;
  with_cert.insert(with_cert.end(), {"-cert", test::Pki::file("ca/clients/alice.pem").string(), "-key",
                                     test::Pki::file("ca/clients/alice.key").string()});
  auto c = type_into(with_cert);
  INFO(c.output);
  check_read(c);

  // A CA that did not sign the mmp's certificate: s_client refuses before any command.
  auto wrong = type_into({"openssl", "s_client", "-quiet", "-nocommands", "-starttls", "imap", "-connect",
                          "127.0.0.1:" + std::to_string(suite.imap_port()), "-CAfile",
                          test::Pki::file("other-ca/ca.pem").string(), "-verify_return_error"});
  INFO(wrong.output);
  CHECK(wrong.output.find("answer b OK") == std::string::npos);
  CHECK(suite.stop() == 0);
}

TEST_CASE("gnutls-cli --starttls-proto=imap verifies the mmp, logs in and reads a message", "[integration]") {
  test::MmpDaemon suite;
  REQUIRE(suite.store().deliver({"alice@example.com"}).output.find("250") != std::string::npos);
  auto r = type_into({"gnutls-cli", "--starttls-proto=imap", "--x509cafile=" + test::Pki::file("ca/ca.pem").string(),
                      "--port=" + std::to_string(suite.imap_port()), "127.0.0.1"});
  INFO(r.output << suite.log());
  CHECK(r.output.find("The certificate is trusted") != std::string::npos);
  check_read(r);
  CHECK(suite.stop() == 0);
}

TEST_CASE("commands pipelined behind STARTTLS are dropped, never answered inside TLS", "[integration]") {
  test::MmpDaemon suite;
  auto r = test::run({"python3", test::source_path("tests/mmp/clients/starttls_inject.py"), "--port",
                      std::to_string(suite.imap_port()), "--ca", test::Pki::file("ca/ca.pem").string()},
                     90s);
  INFO(r.output << suite.log());
  REQUIRE(r.exit_code == 0);
  auto has = [&](const std::string& line) { return r.output.find(line) != std::string::npos; };
  for (const std::string name : {"same-packet", "login"}) {
    CHECK(has(name + " starttls-answer a OK"));
    // Nothing for "b" in plaintext, nothing waiting inside TLS once it is up...
    CHECK(has(name + " plaintext-after-ok b''"));
    CHECK(has(name + " handshake ok"));
    CHECK(has(name + " after-tls b''"));
    // ...and the session is a fresh one: not logged in (AUTH= offered, as before any LOGIN).
    CHECK(has(name + " fresh c OK CAPABILITY completed"));
  }
  CHECK(r.output.find("fresh-caps * CAPABILITY IMAP4rev1") != std::string::npos);
  CHECK(r.output.find("AUTH=PLAIN", r.output.find("login fresh-caps")) != std::string::npos);
  // Plaintext after the OK and before the handshake is a broken ClientHello, not a command.
  CHECK(has("after-ok handshake failed"));
  CHECK(has("done"));
  // The mmp says what it threw away: "b CAPABILITY\r\n" and the LOGIN and SELECT lines.
  CHECK(suite.count("event=pipelined_plaintext_discarded bytes=14") == 1);
  CHECK(suite.count("event=pipelined_plaintext_discarded bytes=52") == 1);
  CHECK(suite.count("event=tls_failed reason=\"not a TLS ClientHello\"") == 1);
  CHECK(suite.count("event=login ") == 0);
  CHECK(suite.running());
  CHECK(suite.stop() == 0);
}
