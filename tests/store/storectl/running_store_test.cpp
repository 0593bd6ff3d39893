// running_store_test.cpp: postern-storectl beside a real postern-store: it reads (usage, verify,
// export) while the store runs and refuses to write, naming the process; once the store stops,
// what it delivered over LMTP exports and imports into another user byte for byte.
#include <catch2/catch.hpp>

#include "tests/store/storectl/store_snapshot.hpp"
#include "tests/store/support/store_daemon.hpp"
#include "tests/support/process.hpp"

TEST_CASE("storectl: beside a running postern-store, then after it stopped", "[storectl][integration]") {
  const std::string tool = test::binary_path("store/tools/postern-storectl");
  test::StoreDaemon store;
  store.start();
  for (int i = 0; i < 3; ++i) {
    auto sent = store.deliver({"alice@example.com"}, {"--size", std::to_string(1000 + i * 70000)});
    INFO(sent.output);
    REQUIRE(sent.exit_code == 0);
  }
  const std::string dir = (store.dir() / "store").string();
  const test::TempDir out;
  const std::string maildir = (out / "alice").string();

  auto r = test::run({tool, "--dir", dir, "usage", "alice@example.com"});
  INFO(r.output);
  CHECK(r.exit_code == 0);
  CHECK(r.output.find("alice@example.com: 3 messages") != std::string::npos);
  r = test::run({tool, "--dir", dir, "verify"});
  CHECK(r.exit_code == 0);
  CHECK(r.output.find("0 problems") != std::string::npos);
  r = test::run({tool, "--dir", dir, "export", "alice@example.com", "INBOX", "--maildir", maildir});
  CHECK(r.exit_code == 0);
  for (const std::vector<std::string>& write : std::vector<std::vector<std::string>>{
           {"user", "create", "carol@example.com"},
           {"user", "delete", "alice@example.com"},
           {"verify", "--repair"},
           {"import", "bob@example.com", "--maildir", maildir},
       }) {
    std::vector<std::string> argv{tool, "--dir", dir};
    argv.insert(argv.end(), write.begin(), write.end());
    r = test::run(argv);
    INFO(r.output);
    CHECK(r.exit_code == 1);
    CHECK(r.output.find("is open in process ") != std::string::npos);
    CHECK(r.output.find("(a running postern-store?): stop it before writing offline") != std::string::npos);
  }
  // The store took no harm from the tool beside it.
  auto sent = store.deliver({"alice@example.com"});
  REQUIRE(sent.exit_code == 0);
  REQUIRE(store.stop() == 0);

  r = test::run({tool, "--dir", dir, "user", "create", "carol@example.com"});
  INFO(r.output);
  REQUIRE(r.exit_code == 0);
  r = test::run({tool, "--dir", dir, "import", "carol@example.com", "--maildir", maildir});
  REQUIRE(r.exit_code == 0);
  CHECK(r.output.find("INBOX <- .: 3 imported, UIDs kept") != std::string::npos);
  const test::Box alice = test::snapshot(dir, "alice@example.com", "INBOX");
  const test::Box carol = test::snapshot(dir, "carol@example.com", "INBOX");
  REQUIRE(alice.messages.size() == 4);
  REQUIRE(carol.messages.size() == 3);
  CHECK(carol.record.uidvalidity == alice.record.uidvalidity);
  for (size_t i = 0; i < carol.messages.size(); ++i) CHECK(carol.messages[i] == alice.messages[i]);
  CHECK(carol.messages[2].bytes.size() > 140000);  // three body chunks
  CHECK(test::verify_problems(dir) == 0);
}
