// mbsync_test.cpp: Debian's mbsync (isync) keeps a local Maildir and the user's INBOX behind the
// mmp in step over STARTTLS: mail delivered by LMTP comes down whole, mail written offline goes up by
// APPEND, flags and deletions travel both ways, and a sync with nothing new changes nothing.
#include <catch2/catch.hpp>

#include <chrono>
#include <string>

#include "tests/mmp/support/mmp_daemon.hpp"
#include "tests/support/pki.hpp"
#include "tests/support/process.hpp"

namespace {

using namespace std::chrono_literals;

test::CommandResult mbsync(test::MmpDaemon& suite, const test::TempDir& work, const std::string& user,
                           const std::string& password, std::vector<std::string> extra = {}) {
  std::vector<std::string> argv{"python3", test::source_path("tests/mmp/clients/mbsync_sync.py"), "--port",
                                std::to_string(suite.imaps_port()), "--ca", test::Pki::file("ca/ca.pem").string(),
                                "--user", user, "--password", password, "--workdir", work.path().string()};
  // --port stays the IMAPS one: imaplib checks the server side there, and the pin comes from it.
  argv.insert(argv.end(), extra.begin(), extra.end());
  return test::run(argv, 300s);
}

}  // namespace

TEST_CASE("mbsync synchronises INBOX both ways through the mmp, and a second sync is a no-op", "[integration]") {
  test::MmpDaemon suite;
  for (int i = 0; i < 2; ++i) {
    REQUIRE(suite.store().deliver({"bob@example.com"}).output.find("250") != std::string::npos);
  }
  test::TempDir work;
  auto r = mbsync(suite, work, "bob@example.com", "secret-bob",
                  {"--ssl-type", "STARTTLS", "--mbsync-port", std::to_string(suite.imap_port())});
  INFO(r.output << suite.log());
  REQUIRE(r.exit_code == 0);
  auto has = [&](const std::string& line) { return r.output.find(line) != std::string::npos; };
  // Down: both delivered messages, byte for byte (mbsync's own X-TUID header aside).
  // After STARTTLS mbsync asks CAPABILITY again (RFC 9051 §6.2.1) and finds AUTH=PLAIN there.
  CHECK(has("sync1 rc=0 cmds=STARTTLS CAPABILITY AUTHENTICATE NAMESPACE LIST SELECT UID-FETCH UID-FETCH CLOSE LOGOUT"));
  CHECK(has("pulled 2 same-bytes=2"));
  // Up: the offline message by APPEND (UIDPLUS gives mbsync its UID), byte for byte.
  CHECK(has("sync2 rc=0 cmds=STARTTLS CAPABILITY AUTHENTICATE NAMESPACE LIST SELECT UID-FETCH APPEND CLOSE LOGOUT"));
  CHECK(has("pushed uid=3 same-bytes=1"));
  // Flags: \Flagged set in the Maildir reaches the server, \Answered set on the server the Maildir.
  CHECK(has("sync3 rc=0"));
  CHECK(has("server-flags 1 \\Flagged"));
  CHECK(has("local-flags 2 R"));
  // Deletions: trashed locally is expunged on the server (CLOSE), expunged on the server is removed
  // locally; the message written offline stays on both sides.
  CHECK(has("sync4 rc=0"));
  CHECK(has("server-gone 1"));
  CHECK(has("local-gone 1"));
  CHECK(has("server-left 1 local-left 1"));
  // Nothing new: mbsync only looks (no APPEND, STORE or body FETCH) and neither side changes.
  CHECK(has("noop rc=0 cmds=STARTTLS CAPABILITY AUTHENTICATE NAMESPACE LIST SELECT UID-FETCH CLOSE LOGOUT local-same=1 server-same=1"));
  CHECK(has("done"));
  CHECK(suite.stop() == 0);
}

// On IMAPS the greeting's "[CAPABILITY ...]" must hold AUTH= too: mbsync, like other clients,
// takes the greeting's list as the whole one (RFC 9051 §7.1: it saves the round trip), asks no
// CAPABILITY, and without AUTH= stops with "server supports no acceptable authentication mechanism".
TEST_CASE("mbsync logs in over IMAPS with the capabilities of the greeting", "[integration]") {
  test::MmpDaemon suite;
  test::TempDir work;
  auto r = mbsync(suite, work, "alice@example.com", "secret-alice", {"--only-login"});
  INFO(r.output);
  REQUIRE(r.exit_code == 0);
  CHECK(r.output.find("login rc=0") != std::string::npos);
  CHECK(r.output.find("no acceptable authentication mechanism") == std::string::npos);
}

// SCRAM's server-final message (RFC 5802 §3, "v=" proves the server knew the verifier) is
// additional data with success; IMAP has no place for it in the tagged OK, so RFC 4422 §5 and
// RFC 9051 §6.2.2 want it sent as a "+" continuation answered by an empty line before the OK.
// cyrus-sasl inside mbsync checks it: without it, "SASL reported failure despite successful IMAP
// authentication".
TEST_CASE("mbsync's SCRAM-SHA-256 login gets the server-final message", "[integration]") {
  test::MmpDaemon suite;
  test::TempDir work;
  auto r = mbsync(suite, work, "alice@example.com", "secret-alice",
                  {"--only-login", "--auth-mechs", "SCRAM-SHA-256", "--ssl-type", "STARTTLS", "--mbsync-port",
                   std::to_string(suite.imap_port())});
  INFO(r.output);
  REQUIRE(r.exit_code == 0);
  CHECK(r.output.find("login rc=0") != std::string::npos);
  CHECK(r.output.find("SASL reported failure") == std::string::npos);
}
