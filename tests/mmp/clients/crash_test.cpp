// crash_test.cpp: SIGKILL under APPEND load. Every APPEND the mmp answered OK [APPENDUID v u] was
// committed by the store, so it must be there, byte for byte, after the store (or the mmp) dies
// and comes back; APPENDs in flight get NO or lose their connection, never an OK without the
// message. And a message cut off mid-literal by the mmp's death leaves nothing half-written.
#include <catch2/catch.hpp>

#include <chrono>
#include <csignal>
#include <filesystem>
#include <fstream>
#include <functional>
#include <memory>
#include <string>
#include <thread>

#include "tests/mmp/support/mmp_daemon.hpp"
#include "tests/support/pki.hpp"
#include "tests/support/process.hpp"

namespace {

using namespace std::chrono_literals;

std::vector<std::string> script(test::MmpDaemon& suite, const std::string& mode) {
  return {"python3", test::source_path("tests/mmp/clients/append_load.py"), mode, "--port",
          std::to_string(suite.imaps_port()), "--ca", test::Pki::file("ca/ca.pem").string()};
}

size_t count_in(const std::string& text, const std::string& needle) {
  size_t n = 0;
  for (size_t at = text.find(needle); at != std::string::npos; at = text.find(needle, at + 1)) ++n;
  return n;
}

// Waits until the results file holds at least `n` APPENDs answered OK (false after `deadline`).
bool wait_oks(const std::filesystem::path& results, size_t n, std::chrono::seconds deadline) {
  const auto until = std::chrono::steady_clock::now() + deadline;
  while (std::chrono::steady_clock::now() < until) {
    if (count_in(test::read_file(results), "result=OK ") >= n) return true;
    std::this_thread::sleep_for(100ms);
  }
  return false;
}

// The load running while `crash` kills something and brings it back; then the checks.
void under_load(test::MmpDaemon& suite, const std::function<void()>& crash) {
  test::TempDir work;
  const auto results = work / "results";
  const auto stop = work / "stop";
  std::ofstream(results).flush();
  auto argv = script(suite, "load");
  argv.insert(argv.end(), {"--clients", "4", "--stop-file", stop.string(), "--out", results.string()});
  test::ChildProcess load(argv, (work / "load.log").string());
  REQUIRE(wait_oks(results, 40, 60s));
  crash();
  // The clients reconnect and go on: 40 more OKs after the crash.
  const size_t before = count_in(test::read_file(results), "result=OK ");
  CHECK(wait_oks(results, before + 40, 90s));
  std::ofstream(stop).flush();
  CHECK(load.wait(60s) == 0);
  const std::string answers = test::read_file(results);
  INFO(test::read_file(work / "load.log") << suite.log());
  // Every answer is OK with APPENDUID, NO, or a cut connection; never OK without a UID, or BAD.
  CHECK(count_in(answers, "result=OK-without-appenduid") == 0);
  CHECK(count_in(answers, "result=BAD") == 0);
  CHECK(count_in(answers, "result=OK ") + count_in(answers, "result=NO ") + count_in(answers, "result=BYE ") +
            count_in(answers, "result=EOF ") ==
        count_in(answers, "append "));
  // The crash hit APPENDs in flight: some were refused or cut off.
  CHECK(count_in(answers, "result=NO ") + count_in(answers, "result=BYE ") + count_in(answers, "result=EOF ") > 0);
  auto verify = script(suite, "verify");
  verify.insert(verify.end(), {"--results", results.string()});
  auto v = test::run(verify, 240s);
  INFO(v.output);
  REQUIRE(v.exit_code == 0);
  const std::string oks = std::to_string(count_in(answers, "result=OK "));
  WARN(v.output.substr(0, v.output.find("\nverified")));
  CHECK(v.output.find("verified ok=" + oks + " present=" + oks + " mismatched=0 missing=0") != std::string::npos);
}

}  // namespace

TEST_CASE("kill -9 of the store under APPEND load: every OK [APPENDUID] message survives, byte for byte",
          "[integration]") {
  test::MmpDaemon suite;
  under_load(suite, [&] {
    suite.store().kill9();
    // While it is down the mmp answers at once (NO [UNAVAILABLE] or BYE), it does not hang.
    std::this_thread::sleep_for(1s);
    suite.store().start();
  });
  CHECK(suite.store().stop() == 0);
  CHECK(suite.store().structures_decode());
  suite.store().start();
  CHECK(suite.stop() == 0);
}

TEST_CASE("kill -9 of the mmp under APPEND load and mid-literal: OKs survive, nothing half-written appears",
          "[integration]") {
  test::MmpDaemon suite;
  under_load(suite, [&] {
    suite.kill9();
    suite.start();
  });

  // A 4 MiB APPEND cut off halfway by the mmp's death: the store never commits it.
  test::TempDir work;
  auto partial = script(suite, "partial");
  partial.insert(partial.end(), {"--marker", "cut-off-append"});
  test::ChildProcess sender(partial, (work / "partial.log").string());
  const auto until = std::chrono::steady_clock::now() + 60s;
  while (test::read_file(work / "partial.log").find("half-sent") == std::string::npos &&
         std::chrono::steady_clock::now() < until) {
    std::this_thread::sleep_for(50ms);
  }
  REQUIRE(test::read_file(work / "partial.log").find("half-sent") != std::string::npos);
  std::this_thread::sleep_for(500ms);  // the half reaches the store as the APPEND's first pieces
  suite.kill9();
  CHECK(sender.wait(30s) == 0);
  INFO(test::read_file(work / "partial.log"));
  CHECK(test::read_file(work / "partial.log").find("cut ") != std::string::npos);
  suite.start();
  auto counted = script(suite, "count");
  counted.insert(counted.end(), {"--marker", "cut-off-append"});
  auto c = test::run(counted, 60s);
  INFO(c.output << suite.store().log());
  CHECK(c.output.find("count 0") != std::string::npos);
  // And nothing of it is in the store's files either (read while it is stopped).
  REQUIRE(suite.stop() == 0);
  REQUIRE(suite.store().stop() == 0);
  size_t cut = 0;
  for (const auto& m : suite.store().messages("alice@example.com")) {
    if (m.find("cut-off-append") != std::string::npos) ++cut;
  }
  CHECK(cut == 0);
  CHECK(suite.store().structures_decode());
}
