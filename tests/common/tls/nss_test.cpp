// nss_test.cpp: opening NSS: the password file (format, permissions, wrong password), a missing
// database, one instance per process, error texts, and the cipher catalog against NSS's own table.
#include <catch2/catch.hpp>

#include <sys/stat.h>

#include <filesystem>

#include <secerr.h>
#include <ssl.h>
#include <sslerr.h>

#include "common/tls/ciphers.hpp"
#include "tests/common/tls/tls_harness.hpp"

using namespace common::tls;
using tlstest::contains;
using tlstest::pki;

namespace {

std::string init_error(const NssOptions& o) {
  auto nss = Nss::init(o);
  REQUIRE_FALSE(nss);
  return nss.error().detail;
}

NssOptions options_with_password_file(const std::string& file) {
  NssOptions o;
  o.db_dir = pki().host_dir();
  o.password_file = file;
  return o;
}

}  // namespace

TEST_CASE("Nss opens the deployment database with its password file and shuts down cleanly", "[tls][nss]") {
  auto nss = tlstest::open_nss();
  CHECK(Nss::version().rfind("3.", 0) == 0);
  CHECK(nss->options().db_dir == pki().host_dir());
  auto down = nss->shutdown();
  INFO((down ? std::string() : down.error().detail));
  CHECK(down);
  CHECK(nss->shutdown());  // twice is harmless; the destructor then does nothing
}

TEST_CASE("a wrong password fails at start with a clear message, without retrying forever", "[tls][nss]") {
  test::TempDir dir;
  auto file = dir.write("password", "Internal (Software) Token:not-the-password\n");
  ::chmod(file.c_str(), 0600);
  auto detail = init_error(options_with_password_file(file.string()));
  CHECK(contains(detail, "wrong or missing password for token \"Internal (Software) Token\""));
  CHECK(contains(detail, "SEC_ERROR_BAD_PASSWORD"));
  // A file naming another token gives no password for ours.
  auto other = dir.write("other", "Some Other Token:secret\n");
  ::chmod(other.c_str(), 0600);
  CHECK(contains(init_error(options_with_password_file(other.string())), "wrong or missing password"));
  // The right password still works afterwards in the same process.
  auto nss = tlstest::open_nss();
  CHECK(nss->shutdown());
}

TEST_CASE("the password file must be private and well formed", "[tls][nss]") {
  test::TempDir dir;
  auto good = test::read_file(pki().password_file());
  auto file = dir.write("password", good);
  ::chmod(file.c_str(), 0640);
  CHECK(contains(init_error(options_with_password_file(file.string())), "readable or writable by group/other (mode 0640)"));
  ::chmod(file.c_str(), 0604);
  CHECK(contains(init_error(options_with_password_file(file.string())), "group/other"));
  auto bad = dir.write("bad", "just-a-password\n");
  ::chmod(bad.c_str(), 0600);
  CHECK(contains(init_error(options_with_password_file(bad.string())), "line 1: expected \"token:password\""));
  CHECK(contains(init_error(options_with_password_file((dir / "missing").string())), "No such file"));
  // 389-ds style with CRLF and a trailing blank line, and the "internal" alias.
  std::string password = good.substr(good.find(':') + 1);
  while (!password.empty() && (password.back() == '\n' || password.back() == '\r')) password.pop_back();
  auto crlf = dir.write("crlf", "internal:" + password + "\r\n\r\n");
  ::chmod(crlf.c_str(), 0600);
  auto nss = Nss::init(options_with_password_file(crlf.string()));
  INFO((nss ? std::string() : nss.error().detail));
  REQUIRE(nss);
  CHECK((*nss)->shutdown());
}

TEST_CASE("a missing database or password file setting is named", "[tls][nss]") {
  test::TempDir dir;
  NssOptions o;
  o.db_dir = (dir / "nowhere").string();
  CHECK(contains(init_error(o), "no NSS database in " + o.db_dir));
  o.db_dir = pki().host_dir();
  CHECK(contains(init_error(o), "needs the password of token"));
}

TEST_CASE("only one Nss per process", "[tls][nss]") {
  auto nss = tlstest::open_nss();
  NssOptions o;
  o.db_dir = pki().host_dir();
  o.password_file = pki().password_file();
  CHECK(contains(init_error(o), "already open"));
  CHECK(nss->shutdown());
}

TEST_CASE("error_text gives the NSS error name, number and text", "[tls][nss]") {
  auto nss = tlstest::open_nss();
  CHECK(error_text(SEC_ERROR_REVOKED_CERTIFICATE) ==
        "SEC_ERROR_REVOKED_CERTIFICATE (-8180): Peer's Certificate has been revoked.");
  CHECK(error_text(SSL_ERROR_NO_CYPHER_OVERLAP).rfind("SSL_ERROR_NO_CYPHER_OVERLAP (-12286): ", 0) == 0);
  CHECK(contains(error_text(12345678), "(12345678)"));
  CHECK(nss->shutdown());
}

TEST_CASE("the cipher catalog agrees with NSS: names, and every suite we may enable is implemented", "[tls][nss]") {
  auto nss = tlstest::open_nss();
  const PRUint16* implemented = SSL_GetImplementedCiphers();
  for (PRUint16 i = 0; i < SSL_GetNumImplementedCiphers(); ++i) {
    SSLCipherSuiteInfo info{};
    REQUIRE(SSL_GetCipherSuiteInfo(implemented[i], &info, sizeof info) == SECSuccess);
    INFO(info.cipherSuiteName);
    const CipherSuite* suite = find_cipher(implemented[i]);
    REQUIRE(suite != nullptr);
    CHECK(suite->name == info.cipherSuiteName);
    CHECK(suite->aead() == (info.macAlgorithm == ssl_mac_aead));
    if (suite->cls() == CipherClass::Strong) CHECK(info.effectiveKeyBits >= 128);
  }
  for (const auto& suite : cipher_catalog()) {
    if (suite.cls() == CipherClass::Broken) continue;
    INFO(suite.name);
    CHECK(std::find(implemented, implemented + SSL_GetNumImplementedCiphers(), suite.id) !=
          implemented + SSL_GetNumImplementedCiphers());
  }
  CHECK(nss->shutdown());
}
