// fetch_test.cpp: FETCH over many messages through postern-mmp and a real store, which sends
// several messages per Fetch reply (the mmp writes each reply's FETCH responses at once): python
// imaplib and a raw client that stops reading check 200 messages byte for byte
// (tests/mmp/daemon/imap_fetch_many.py).
#include <catch2/catch.hpp>

#include <chrono>
#include <string>

#include "tests/mmp/support/mmp_daemon.hpp"
#include "tests/support/pki.hpp"
#include "tests/support/process.hpp"

using namespace std::chrono_literals;

TEST_CASE("FETCH 1:200 (FLAGS ENVELOPE BODY.PEEK[]) gives every message whole and in order, a 2.5 MB one among them",
          "[integration]") {
  test::MmpDaemon suite;
  auto r = test::run({"python3", test::source_path("tests/mmp/daemon/imap_fetch_many.py"), "--port",
                      std::to_string(suite.imaps_port()), "--ca", test::Pki::file("ca/ca.pem").string(), "--user",
                      "alice@example.com", "--password", "secret-alice"},
                     240s);
  INFO(r.output << suite.log());
  REQUIRE(r.exit_code == 0);
  CHECK(r.output.find("ok fetch flags envelope body 200") != std::string::npos);
  CHECK(r.output.find("ok fetch flags envelope 200") != std::string::npos);
  CHECK(r.output.find("ok fetch text seen 50") != std::string::npos);
  CHECK(r.output.find("ok raw fetch") != std::string::npos);
  CHECK(r.output.find("ok raw two sections") != std::string::npos);
  CHECK(r.output.find("done") != std::string::npos);
  CHECK(suite.stop() == 0);
}
