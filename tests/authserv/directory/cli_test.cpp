// cli_test.cpp: postern-directory end to end through the built binary: commands, exit codes (0 ok,
// 1 failure, 2 usage), passwords only from stdin or a file, and a 10,000-user import.
#include <catch2/catch.hpp>

#include <chrono>
#include <string>
#include <vector>

#include "authserv/directory/lmdb_directory.hpp"
#include "authserv/password/password.hpp"
#include "tests/support/process.hpp"

namespace dir = authserv::directory;
namespace pw = authserv::password;

namespace {

struct Cli {
  test::TempDir tmp;
  std::string bin = test::binary_path("authserv/directory/postern-directory");
  std::string db = (tmp / "dir").string();

  test::CommandResult run(std::vector<std::string> words) {
    std::vector<std::string> argv{bin, "--db", db, "--default-domain", "example.com", "--argon2-ops", "1",
                                  "--argon2-mem-kib", "64"};
    argv.insert(argv.end(), words.begin(), words.end());
    return test::run(argv, std::chrono::seconds(120));
  }
  // Through a shell so the password reaches the tool on its stdin.
  test::CommandResult piped(const std::string& input, const std::string& words) {
    return test::run({"sh", "-c", "printf '%s\\n' '" + input + "' | '" + bin + "' --db '" + db +
                                      "' --default-domain example.com --argon2-ops 1 --argon2-mem-kib 64 " + words});
  }
  dir::UserRecord user(const std::string& uid) {
    auto d = dir::LmdbDirectory::open(db, {.read_only = true}).value();
    return d->find_user(uid, "example.com").value().value();
  }
};

}  // namespace

TEST_CASE_METHOD(Cli, "postern-directory: domain, user, passwd, set, show, list, alias, delete") {
  auto r = run({"domain", "add", "example.com"});
  INFO(r.output);
  REQUIRE(r.exit_code == 0);
  CHECK(r.output == "added domain example.com\n");

  r = piped("first pw", "user add alice --mail-host store1 --password-stdin");
  INFO(r.output);
  REQUIRE(r.exit_code == 0);
  CHECK(pw::verify("first pw", user("alice").password) == pw::Verdict::Match);

  const auto pwfile = tmp.write("pw", "second pw\n");
  r = run({"user", "passwd", "alice", "--password-file", pwfile.string()});
  REQUIRE(r.exit_code == 0);
  CHECK(pw::verify("second pw", user("alice").password) == pw::Verdict::Match);
  CHECK(pw::verify("first pw", user("alice").password) == pw::Verdict::Mismatch);

  CHECK(run({"user", "set", "alice", "quota", "100M"}).exit_code == 0);
  CHECK(run({"user", "set", "alice", "add_address", "a.smith@example.com"}).exit_code == 0);
  const auto sieve = tmp.write("s", "keep;\n");
  CHECK(run({"user", "set", "alice", "sieve", sieve.string()}).exit_code == 0);
  CHECK(user("alice").sieve == "keep;\n");
  CHECK(user("alice").quota_bytes == 100u << 20);

  r = run({"user", "show", "alice"});
  REQUIRE(r.exit_code == 0);
  CHECK(r.output.find("addresses: alice@example.com, a.smith@example.com") != std::string::npos);
  CHECK(r.output.find("quota: 104857600") != std::string::npos);
  CHECK(r.output.find("password: {ARGON2}\n") != std::string::npos);
  CHECK(r.output.find("$argon2id$") == std::string::npos);
  CHECK(r.output.find("SCRAM-SHA-256}") == std::string::npos);

  CHECK(run({"alias", "add", "postmaster", "alice@example.com"}).exit_code == 1);  // needs a domain
  CHECK(run({"alias", "add", "postmaster@example.com", "alice@example.com"}).exit_code == 0);
  CHECK(run({"user", "disable", "alice"}).exit_code == 0);
  CHECK(user("alice").status == dir::Status::Inactive);
  r = run({"list"});
  CHECK(r.output == "domain example.com active\nuser alice@example.com inactive store1\n"
                    "alias postmaster@example.com alice@example.com\n");
  CHECK(run({"alias", "del", "postmaster@example.com"}).exit_code == 0);
  CHECK(run({"user", "del", "alice"}).exit_code == 0);
  CHECK(run({"list", "example.com"}).output == "domain example.com active\n");
}

TEST_CASE_METHOD(Cli, "postern-directory: usage errors exit 2, failures exit 1, passwords never on the command line") {
  REQUIRE(run({"domain", "add", "example.com"}).exit_code == 0);
  for (auto words : std::vector<std::vector<std::string>>{
           {}, {"user"}, {"frob"}, {"user", "add"}, {"user", "passwd", "alice"}, {"list", "a", "b"},
           {"user", "add", "alice", "hunter2"}}) {
    auto r = run(words);
    INFO(r.output);
    CHECK(r.exit_code == 2);
  }
  auto r = run({"user", "add", "alice", "--password", "hunter2"});
  CHECK(r.exit_code == 2);
  CHECK(r.output.find("never taken on the command line") != std::string::npos);
  CHECK(r.output.find("hunter2") == std::string::npos);
  CHECK(test::run({bin, "domain", "add", "x.org"}).exit_code == 2);                 // no --db
  CHECK(test::run({bin, "--db", db, "--argon2-ops", "0", "list"}).exit_code == 2);  // below libsodium's minimum
  CHECK(test::run({bin, "--help"}).exit_code == 0);

  CHECK(run({"user", "add", "bob@nowhere.org"}).exit_code == 1);
  CHECK(run({"user", "del", "nobody"}).exit_code == 1);
  CHECK(run({"user", "passwd", "nobody", "--password-file", (tmp / "missing").string()}).exit_code == 1);
  const auto notdir = tmp.write("plainfile", "x");
  CHECK(test::run({bin, "--db", notdir.string(), "list"}).exit_code == 1);
  r = piped("", "user add carol --password-stdin");
  CHECK(r.exit_code == 1);
  CHECK(r.output.find("empty password") != std::string::npos);
}

TEST_CASE_METHOD(Cli, "postern-directory: importing 10,000 users takes seconds") {
  REQUIRE(run({"domain", "add", "example.com"}).exit_code == 0);
  const auto hash = pw::hash_argon2id("bulk pw", {1, 64 * 1024}).value();
  std::string text;
  for (int i = 0; i < 10000; ++i) text += "user" + std::to_string(i) + "\t" + hash + "\tstore" + std::to_string(i % 4) + "\n";
  const auto file = tmp.write("users.tsv", text);
  const auto start = std::chrono::steady_clock::now();
  auto r = run({"import", file.string()});
  const auto took = std::chrono::steady_clock::now() - start;
  INFO(r.output);
  REQUIRE(r.exit_code == 0);
  CHECK(r.output == "imported 10000 users (10000 new, 0 updated)\n");
  WARN("10,000-user import: " << std::chrono::duration_cast<std::chrono::milliseconds>(took).count() << " ms");
  CHECK(took < std::chrono::seconds(20));  // Debug build on a shared 2-core host; release is far faster
  CHECK(user("user9999").mail_host == "store3");
  CHECK(pw::verify("bulk pw", user("user1234").password) == pw::Verdict::Match);
  // Re-importing updates in place.
  r = run({"import", file.string()});
  CHECK(r.output == "imported 10000 users (0 new, 10000 updated)\n");
}
