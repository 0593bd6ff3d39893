// replay_test.cpp: real clients' command sequences replayed against the mmp: OfflineIMAP's
// (recorded through record_proxy.py: four syncs of a Maildir, with APPEND, flags and expunge) and
// Thunderbird's start-up and reading (written from its documented behaviour). Every tagged answer
// must be the one recorded (OK where none was), and every response well-formed.
#include <catch2/catch.hpp>

#include <chrono>
#include <regex>
#include <string>

#include "tests/mmp/support/mmp_daemon.hpp"
#include "tests/support/pki.hpp"
#include "tests/support/process.hpp"

namespace {

using namespace std::chrono_literals;

test::CommandResult replay(test::MmpDaemon& suite, const std::string& capture) {
  return test::run({"python3", test::source_path("tests/mmp/clients/replay_capture.py"), "--show", "--port",
                    std::to_string(suite.imaps_port()), "--ca", test::Pki::file("ca/ca.pem").string(),
                    test::source_path("tests/mmp/clients/captures/" + capture)},
                   180s);
}

}  // namespace

TEST_CASE("OfflineIMAP's recorded syncs replay against the mmp with the same answers", "[integration]") {
  test::MmpDaemon suite;
  // As when it was recorded: three messages in user3's INBOX (UIDs 1 to 3).
  for (int i = 0; i < 3; ++i) {
    REQUIRE(suite.store().deliver({"user3@example.com"}).output.find("250") != std::string::npos);
  }
  auto r = replay(suite, "offlineimap.txt");
  INFO(r.output << suite.log());
  REQUIRE(r.exit_code == 0);
  CHECK(r.output.find("summary commands=51 ok=51 mismatch=0 malformed=0") != std::string::npos);
  CHECK(r.output.find("connection 4") != std::string::npos);
  CHECK(suite.stop() == 0);
}

TEST_CASE("Thunderbird's start-up sequence replays against the mmp", "[integration]") {
  test::MmpDaemon suite;
  // Message 1 is larger than Thunderbird's 16 KiB chunks, so the second chunk is a partial one.
  REQUIRE(suite.store().deliver({"alice@example.com"}, {"--size", "20000"}).output.find("250") != std::string::npos);
  for (int i = 0; i < 2; ++i) {
    REQUIRE(suite.store().deliver({"alice@example.com"}).output.find("250") != std::string::npos);
  }
  auto r = replay(suite, "thunderbird.txt");
  INFO(r.output << suite.log());
  REQUIRE(r.exit_code == 0);
  // Everything but the "#?" commands answers OK; those say in the output whether the mmp has them.
  CHECK(r.output.find("mismatch=0 malformed=0") != std::string::npos);
  CHECK(r.output.find("summary commands=25 ok=20") != std::string::npos);
  for (const char* tag : {"2", "3", "4", "6", "10", "12", "13", "14", "15", "16", "19", "23", "25"}) {
    CHECK(r.output.find(std::string("answer ") + tag + " OK") != std::string::npos);
  }
  // The body in 16 KiB chunks: the first whole, the second what is left of RFC822.SIZE.
  std::smatch size, second;
  const std::regex first_chunk(R"(S: \* 1 FETCH \(UID 1 RFC822\.SIZE (\d+) BODY\[\]<0> \{16384\})");
  const std::regex second_chunk(R"(S: \* 1 FETCH \(UID 1 BODY\[\]<16384> \{(\d+)\})");
  REQUIRE(std::regex_search(r.output, size, first_chunk));
  REQUIRE(std::regex_search(r.output, second, second_chunk));
  CHECK(std::stoul(second[1].str()) == std::stoul(size[1].str()) - 16384);
  // The flag set is seen, the deleted message expunged by UID.
  CHECK(r.output.find("S: * 1 FETCH (UID 1 FLAGS (\\Seen)") != std::string::npos);
  CHECK(r.output.find("S: * 2 EXPUNGE") != std::string::npos);
  CHECK(suite.stop() == 0);
}
