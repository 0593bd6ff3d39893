// bad_input_test.cpp: broken and hostile IMAP sent through the running daemon (the parser's unit
// tests prove the parsing; this proves the session's answer): each gets a tagged BAD or NO, or the
// session ends with BYE; the mmp stays up, and the store answers no call for any of it.
#include <catch2/catch.hpp>

#include <chrono>
#include <cstdlib>
#include <string>

#include "tests/mmp/support/mmp_daemon.hpp"
#include "tests/support/pki.hpp"
#include "tests/support/process.hpp"

namespace {

using namespace std::chrono_literals;

// gRPC's http trace makes the store log one "TRL:SVR:grpc-status" line per call it answers: the
// script counts them around each case. Only the processes started meanwhile get it.
struct TracedDaemons {
  TracedDaemons() {
    setenv("GRPC_TRACE", "http", 1);
    setenv("GRPC_VERBOSITY", "DEBUG", 1);
  }
  ~TracedDaemons() { untrace(); }
  static void untrace() {
    unsetenv("GRPC_TRACE");
    unsetenv("GRPC_VERBOSITY");
  }
};

}  // namespace

TEST_CASE("bad input through the daemon: BAD, NO or BYE, the mmp stays up, the store sees none of it",
          "[integration]") {
  TracedDaemons traced;
  test::MmpDaemon suite;
  TracedDaemons::untrace();
  REQUIRE(suite.store().deliver({"alice@example.com"}).output.find("250") != std::string::npos);
  auto r = test::run({"python3", test::source_path("tests/mmp/clients/bad_input.py"), "--port",
                      std::to_string(suite.imaps_port()), "--ca", test::Pki::file("ca/ca.pem").string(),
                      "--store-log", (suite.store().dir().path() / "store.log").string()},
                     240s);
  INFO(r.output);
  REQUIRE(r.exit_code == 0);
  auto has = [&](const std::string& line) { return r.output.find(line) != std::string::npos; };
  // The count works: a good command is a store call.
  CHECK(has("case control-status answer=c1 OK STATUS completed store-calls=1"));
  // Unbalanced literals: the extra bytes make the command BAD and the session goes on; bytes that
  // never come are waited for (the idle timer ends that), answered by nothing.
  CHECK(has("case literal-longer-than-announced answer=u1 BAD"));
  CHECK(has("then u2 OK NOOP completed store-calls=0"));
  CHECK(has("case literal-never-sent answer=<timeout> store-calls=0"));
  // 2 GiB literals: refused at the announcement (no "+" asked for them).
  CHECK(has("case literal-2gib-append answer=b1 NO [TOOBIG]"));
  CHECK(has("case literal-2gib-append-nonsync answer=b2 BAD [TOOBIG]"));
  CHECK(has("case literal-2gib-login answer=b3 BAD [TOOBIG]"));
  CHECK(has("case literal-2gib-select answer=b4 BAD [TOOBIG]"));
  // 10,000 nested parentheses.
  CHECK(has("case nested-fetch answer=n1 BAD"));
  CHECK(has("case nested-search answer=n2 BAD"));
  // Wrong state (APPEND before login is refused at its literal, before anything else).
  CHECK(has("case select-before-login answer=w1 BAD"));
  CHECK(has("case append-before-login answer=w2 NO"));
  CHECK(has("case fetch-not-selected answer=w3 BAD"));
  CHECK(has("case expunge-not-selected answer=w4 BAD"));
  CHECK(has("case login-twice answer=w5 BAD"));
  CHECK(has("case close-not-selected answer=w6 BAD"));
  // 8-bit garbage and broken modified UTF-7 in mailbox names.
  for (const char* c : {"8bit-select-quoted answer=g1 BAD", "8bit-create-atom answer=g2 BAD",
                        "8bit-status-literal answer=g3 BAD", "8bit-rename answer=g4 BAD",
                        "bad-mutf7-create answer=g5 BAD", "nul-in-name answer=g6 BAD"}) {
    CHECK(has(std::string("case ") + c));
  }
  // A flood of wrong passwords ends the session (authserv sees those, the store does not).
  CHECK(has("case login-flood answer=after"));
  CHECK(has("* BYE"));
  // Not one of them reached the store.
  size_t cases = 0;
  for (size_t at = r.output.find("case "); at != std::string::npos; at = r.output.find("case ", at + 1)) {
    const size_t end = r.output.find('\n', at);
    const std::string line = r.output.substr(at, end - at);
    if (line.find("control-status") != std::string::npos) continue;
    ++cases;
    CHECK_THAT(line, Catch::EndsWith("store-calls=0"));
  }
  CHECK(cases == 21);
  // And the mmp still serves.
  CHECK(has("after z1 OK [READ-WRITE] SELECT completed"));
  CHECK(suite.running());
  CHECK(suite.stop() == 0);
}
