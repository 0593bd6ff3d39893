// env_test.cpp: a hidden test that starts the mmp, store and authserv and keeps them up while a
// file exists, so the clients' scripts beside it can be tried by hand:
//   POSTERN_ENV_FILE=/tmp/env mmp_clients_test '[.env]'
// It writes "imap <port>\nimaps <port>\nlmtp <port>\n" there and stops once the file is removed.
#include <catch2/catch.hpp>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <thread>

#include "tests/mmp/support/mmp_daemon.hpp"

TEST_CASE("an mmp kept up for trying clients by hand", "[.env]") {
  const char* file = std::getenv("POSTERN_ENV_FILE");
  REQUIRE(file != nullptr);
  test::MmpDaemon suite;
  {
    std::ofstream out(file);
    out << "imap " << suite.imap_port() << "\nimaps " << suite.imaps_port() << "\nlmtp "
        << suite.store().implicit_port() << "\nlog " << suite.store().dir().path().string() << "\n";
  }
  const auto until = std::chrono::steady_clock::now() + std::chrono::minutes(30);
  while (std::filesystem::exists(file) && std::chrono::steady_clock::now() < until) {
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
  }
}
