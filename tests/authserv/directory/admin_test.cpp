// admin_test.cpp: admin argument parsing, every operation applied to a real directory, stored
// hashes that verify with authserv::password, and import (atomic validation, batches, updates).
#include <catch2/catch.hpp>

#include <sodium.h>

#include <string>
#include <vector>

#include "authserv/directory/admin.hpp"
#include "authserv/password/password.hpp"
#include "tests/support/process.hpp"

namespace dir = authserv::directory;
namespace pw = authserv::password;
using dir::AdminOp;
using dir::LmdbDirectory;

namespace {

struct Fixture {
  test::TempDir tmp;
  std::unique_ptr<LmdbDirectory> db = LmdbDirectory::open(tmp / "dir").value();
  dir::AdminSettings settings{"example.com", {1, 64 * 1024}};

  common::Result<AdminOp> parse(std::vector<std::string_view> words) { return dir::parse_admin_args(words); }
  std::vector<std::string> ok(std::vector<std::string_view> words) {
    auto op = parse(words);
    INFO(words[0] << " " << (words.size() > 1 ? words[1] : ""));
    REQUIRE(op);
    auto out = dir::apply(*db, *op, settings);
    if (!out) FAIL(out.error().detail);
    return *out;
  }
  common::Error fails(std::vector<std::string_view> words) {
    auto op = parse(words);
    REQUIRE(op);
    auto out = dir::apply(*db, *op, settings);
    REQUIRE_FALSE(out);
    return out.error();
  }
  common::Result<std::vector<std::string>> with_password(AdminOp op, std::string password) {
    if (auto* a = std::get_if<dir::admin::AddUser>(&op)) a->password = {dir::PasswordInput::From::Plain, "", dir::SecretString(password)};
    if (auto* p = std::get_if<dir::admin::SetPassword>(&op)) p->password = {dir::PasswordInput::From::Plain, "", dir::SecretString(password)};
    return dir::apply(*db, op, settings);
  }
  dir::UserRecord user(const std::string& uid) { return db->find_user(uid, "example.com").value().value(); }
};

}  // namespace

TEST_CASE("parse_admin_args: commands, options and usage errors") {
  auto p = [](std::vector<std::string_view> w) { return dir::parse_admin_args(w); };
  CHECK(std::holds_alternative<dir::admin::AddDomain>(p({"domain", "add", "x.org"}).value()));
  auto add = p({"user", "add", "alice", "--mail-host", "s1", "--password-stdin"});
  REQUIRE(add);
  const auto& a = std::get<dir::admin::AddUser>(*add);
  CHECK(a.mail_host == "s1");
  CHECK(a.password.from == dir::PasswordInput::From::Stdin);
  auto add2 = p({"user", "add", "alice", "--password-file=/tmp/pw", "--mail-host=s2"});
  REQUIRE(add2);
  CHECK(std::get<dir::admin::AddUser>(*add2).password.file == "/tmp/pw");
  CHECK(std::get<dir::admin::AddUser>(*add2).mail_host == "s2");
  CHECK(std::get<dir::admin::SetAttribute>(p({"user", "set", "a", "sieve", "/f"}).value()).value_file == "/f");
  CHECK(std::get<dir::admin::SetAttribute>(p({"user", "set", "a", "quota", "1G"}).value()).value == "1G");
  CHECK(std::get<dir::admin::AddAlias>(p({"alias", "add", "l@x", "a@x", "b@y"}).value()).targets.size() == 2);
  CHECK(std::get<dir::admin::List>(p({"list"}).value()).domain.empty());
  CHECK(std::get<dir::admin::Import>(p({"import", "f.tsv"}).value()).file == "f.tsv");
  for (auto w : std::vector<std::vector<std::string_view>>{
           {}, {"user"}, {"user", "add"}, {"user", "frob", "a"}, {"domain", "add"}, {"domain", "add", "a", "b"},
           {"user", "passwd", "alice"}, {"user", "add", "alice", "hunter2"}, {"user", "set", "a", "quota"},
           {"alias", "add", "a@x"}, {"list", "a", "b"}, {"import"}, {"user", "add", "a", "--password-stdin", "--hash", "x"},
           {"user", "add", "a", "--mail-host"}, {"frobnicate"}}) {
    auto r = dir::parse_admin_args(w);
    CHECK_FALSE(r);
    if (!r) CHECK(r.error().kind == common::ErrorKind::Config);
  }
  for (auto w : std::vector<std::vector<std::string_view>>{{"user", "add", "a", "--password", "hunter2"},
                                                           {"user", "passwd", "a", "--password=hunter2"}}) {
    auto r = dir::parse_admin_args(w);
    REQUIRE_FALSE(r);
    CHECK(r.error().detail.find("never taken on the command line") != std::string::npos);
  }
}

TEST_CASE_METHOD(Fixture, "users: add with a password that verifies, passwd, show without credentials, delete") {
  ok({"domain", "add", "Example.COM"});
  CHECK(fails({"domain", "add", "example.com"}).detail.find("exists") != std::string::npos);
  REQUIRE(with_password(parse({"user", "add", "Alice", "--mail-host", "Store1.example.com"}).value(), "correct horse"));
  auto u = user("alice");
  CHECK(u.mail == "alice@example.com");
  CHECK(u.mail_host == "store1.example.com");
  CHECK(u.password.starts_with("{ARGON2}$argon2id$"));
  CHECK(pw::verify("correct horse", u.password) == pw::Verdict::Match);
  CHECK(pw::verify("wrong horse", u.password) == pw::Verdict::Mismatch);
  auto scram = pw::parse_scram(u.scram);
  REQUIRE(scram);
  auto again = pw::derive_scram_sha256("correct horse", scram->salt, scram->iterations).value();
  CHECK(again.stored_key == scram->stored_key);
  CHECK(fails({"user", "add", "alice"}).detail.find("exists") != std::string::npos);
  CHECK(fails({"user", "add", "bob@nowhere.org"}).detail.find("unknown domain") != std::string::npos);

  REQUIRE(with_password(parse({"user", "passwd", "alice", "--password-stdin"}).value(), "new secret"));
  u = user("alice");
  CHECK(pw::verify("new secret", u.password) == pw::Verdict::Match);
  CHECK(pw::verify("correct horse", u.password) == pw::Verdict::Mismatch);
  CHECK(pw::parse_scram(u.scram));

  // A pre-hashed password replaces the SCRAM verifier (it belonged to the old password).
  const std::string ssha = "{SSHA512}YWJjZGVmZ2hpamtsbW5vcHFyc3R1dnd4eXphYmNkZWZnaGlqa2xtbm9wcXJzdHV2d3h5emFiY2RlZmdoaWprbG0=";
  ok({"user", "passwd", "alice", "--hash", ssha});
  CHECK(user("alice").password == ssha);
  CHECK(user("alice").scram.empty());
  CHECK(fails({"user", "passwd", "alice", "--hash", "{CLEARTEXT}secret"}).detail.find("refused") != std::string::npos);
  CHECK(fails({"user", "passwd", "alice", "--hash", "secret"}).kind == common::ErrorKind::Protocol);

  auto shown = ok({"user", "show", "alice"});
  std::string all;
  for (const auto& l : shown) all += l + "\n";
  CHECK(all.find("user: alice@example.com") != std::string::npos);
  CHECK(all.find("password: {SSHA512}\n") != std::string::npos);
  CHECK(all.find("YWJj") == std::string::npos);

  ok({"user", "disable", "alice"});
  CHECK(user("alice").status == dir::Status::Inactive);
  ok({"user", "del", "alice"});
  CHECK_FALSE(db->find_user("alice", "example.com").value());
  CHECK(fails({"user", "del", "alice"}).detail.find("no such user") != std::string::npos);
  CHECK(fails({"user", "show", "alice"}).detail.find("no such user") != std::string::npos);
}

TEST_CASE_METHOD(Fixture, "user set: every attribute, validated") {
  ok({"domain", "add", "example.com"});
  ok({"domain", "add", "example.net"});
  ok({"user", "add", "alice"});
  ok({"user", "add", "bob"});
  ok({"user", "set", "alice", "quota", "100M"});
  CHECK(user("alice").quota_bytes == 100u << 20);
  ok({"user", "set", "alice", "quota", "2G"});
  CHECK(user("alice").quota_bytes == uint64_t{2} << 30);
  ok({"user", "set", "alice", "quota", "12345"});
  CHECK(user("alice").quota_bytes == 12345);
  ok({"user", "set", "alice", "quota", "none"});
  CHECK(user("alice").quota_bytes == 0);
  ok({"user", "set", "alice", "quota_messages", "5000"});
  CHECK(user("alice").quota_messages == 5000);
  ok({"user", "set", "alice", "status", "Hold"});
  CHECK(user("alice").status == dir::Status::Held);
  ok({"user", "set", "alice", "mailhost", "Store2"});
  CHECK(user("alice").mail_host == "store2");
  ok({"user", "set", "alice", "allowed_services", "+imap:ALL$-pop:*"});
  CHECK(user("alice").allowed_services == "+imap:ALL$-pop:*");
  ok({"user", "set", "alice", "store_admin", "true"});
  CHECK(user("alice").store_admin);
  ok({"user", "set", "alice", "access_domains", "128.123.45.0, Dispatch.com"});
  CHECK(user("alice").access_domains == std::vector<std::string>{"128.123.45.0", "dispatch.com"});
  ok({"user", "set", "alice", "add_address", "A.Smith@Example.NET"});
  CHECK(db->find_recipient("a.smith@example.net").value().user->canonical == "alice@example.com");
  CHECK(fails({"user", "set", "bob", "add_address", "a.smith@example.net"}).detail.find("belongs to") != std::string::npos);
  CHECK(fails({"user", "set", "bob", "add_address", "b@elsewhere.org"}).detail.find("not a local domain") != std::string::npos);
  ok({"user", "set", "alice", "remove_address", "a.smith@example.net"});
  CHECK(db->find_recipient("a.smith@example.net").value().kind == dir::RecipientKind::Unknown);
  CHECK(fails({"user", "set", "alice", "remove_address", "alice@example.com"}).detail.find("primary") != std::string::npos);

  for (auto [name, value] : std::vector<std::pair<std::string_view, std::string_view>>{
           {"quota", "lots"}, {"quota", "99999999999999999999"}, {"quota", "20000000000T"}, {"status", "actve"},
           {"mailhost", "bad host"}, {"allowed_services", "+imap"}, {"store_admin", "maybe"},
           {"access_domains", "a;b"}, {"colour", "blue"}, {"quota_messages", "-1"}}) {
    INFO(name << "=" << value);
    CHECK(fails({"user", "set", "alice", name, value}).kind == common::ErrorKind::Protocol);
  }
  CHECK(fails({"user", "set", "nobody", "quota", "1M"}).detail.find("no such user") != std::string::npos);

  // Sieve comes from a file through resolve_inputs.
  const auto script = tmp.write("s.sieve", "require \"fileinto\";\nfileinto \"x\";\n");
  auto op = parse({"user", "set", "alice", "sieve", script.c_str()}).value();
  REQUIRE(dir::resolve_inputs(op, -1));
  REQUIRE(dir::apply(*db, op, settings));
  CHECK(user("alice").sieve == "require \"fileinto\";\nfileinto \"x\";\n");

  ok({"domain", "set", "example.com", "status", "inactive"});
  ok({"domain", "set", "example.com", "allowed_services", "+imap:ALL"});
  CHECK(db->find_user("bob", "example.com").value()->status == dir::Status::Inactive);
  CHECK(db->find_user("bob", "example.com").value()->domain_allowed_services == "+imap:ALL");
  CHECK(fails({"domain", "set", "example.com", "status", "bogus"}).kind == common::ErrorKind::Protocol);
}

TEST_CASE_METHOD(Fixture, "aliases and list") {
  ok({"domain", "add", "example.com"});
  ok({"user", "add", "alice"});
  ok({"alias", "add", "postmaster@example.com", "alice@example.com"});
  ok({"alias", "add", "postmaster@example.com", "ext@other.org", "alice@example.com"});  // merged
  CHECK(db->find_recipient("postmaster@example.com").value().targets ==
        std::vector<std::string>{"alice@example.com", "ext@other.org"});
  ok({"alias", "add", "@example.com", "alice@example.com"});
  CHECK(fails({"alias", "add", "alice@example.com", "x@y.org"}).detail.find("belongs to") != std::string::npos);
  CHECK(fails({"alias", "add", "x@other.org", "alice@example.com"}).detail.find("not a local domain") != std::string::npos);
  CHECK(fails({"alias", "add", "l@example.com", "not an address"}).kind == common::ErrorKind::Protocol);
  CHECK(ok({"list", "example.com"}) == std::vector<std::string>{
                                           "domain example.com active", "user alice@example.com active",
                                           "alias @example.com alice@example.com",
                                           "alias postmaster@example.com alice@example.com,ext@other.org"});
  CHECK(ok({"list", "other.org"}).empty());
  ok({"alias", "del", "@example.com"});
  CHECK(fails({"alias", "del", "@example.com"}).detail.find("no such alias") != std::string::npos);
  CHECK(ok({"list"}).size() == 3);
}

TEST_CASE_METHOD(Fixture, "stored hash checks are cheap and strict") {
  const auto argon = pw::hash_argon2id("pw", {1, 64 * 1024}).value();
  CHECK(dir::check_stored_hash(argon));
  CHECK(dir::check_stored_hash("{argon2}" + argon.substr(8)));
  CHECK(dir::check_stored_hash("{SSHA}YWJjZGVmZ2hpamtsbW5vcHFyc3R1dnd4eXo="));
  CHECK(dir::check_stored_hash("{CRYPT}$6$saltsalt$abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789./abcdefghijklmnopqrstuv"));
  for (std::string bad : std::vector<std::string>{"", "plain", "{CLEARTEXT}x", "{SHA}x", "{MD5}x", "{CRYPT}abDES", "{CRYPT}$1$md5$x",
                          "{ARGON2}$argon2d$v=19$m=8,t=1,p=1$c2FsdHNhbHQ$aGFzaA", "{ARGON2}garbage",
                          "{ARGON2}$argon2id$v=19$m=65536,t=1,p=1$!!$??", "{SSHA512}not base64!",
                          "{SSHA512}YWJj", "{ARGON2}$argon2id$v=19$m=4194304,t=1,p=1$c2FsdHNhbHRzYWx0$" + std::string(43, 'A')}) {
    INFO(bad);
    CHECK_FALSE(dir::check_stored_hash(bad));
  }
  // Quotas read sizes as the config files do (one grammar for "500M" in the suite).
  CHECK(dir::parse_quota("1K").value() == 1024);
  CHECK(dir::parse_quota("500M").value() == 500u << 20);
  CHECK(dir::parse_quota("2t").value() == uint64_t{2} << 40);
  CHECK(dir::parse_quota("0").value() == 0);
  CHECK(dir::parse_quota("None").value() == 0);
  for (std::string bad : {"", "M", "1.5G", " 1K", "1K ", "1KB", "-1", "99999999999999999999"}) {
    INFO(bad);
    CHECK_FALSE(dir::parse_quota(bad));
  }
}

TEST_CASE_METHOD(Fixture, "import: validation before any write, batches, updates keep other fields") {
  ok({"domain", "add", "example.com"});
  const auto argon = pw::hash_argon2id("imported pw", {1, 64 * 1024}).value();
  settings.import_batch = 3;  // several transactions even for this small file
  dir::admin::Import bad{"", {"a1\t" + argon, "a2\t{CLEARTEXT}x", "a3\t" + argon}};
  auto refused = dir::apply(*db, bad, settings);
  REQUIRE_FALSE(refused);
  CHECK(refused.error().detail.find("line 2") != std::string::npos);
  CHECK_FALSE(db->find_user("a1", "example.com").value());  // nothing written
  auto unknown = dir::apply(*db, dir::admin::Import{"", {"x@nowhere.org\t" + argon}}, settings);
  REQUIRE_FALSE(unknown);
  CHECK(unknown.error().detail.find("unknown domain") != std::string::npos);

  ok({"user", "add", "a1"});
  ok({"user", "set", "a1", "quota", "1G"});
  dir::admin::Import im{"", {"# comment", "", "a1\t" + argon + "\tstore9", "a2@Example.com\t" + argon, "a3\t" + argon,
                             "a4\t" + argon + "\r", "a5\t" + argon + "\tstore2"}};
  auto out = dir::apply(*db, im, settings);
  REQUIRE(out);
  CHECK(out->front() == "imported 5 users (4 new, 1 updated)");
  CHECK(user("a1").quota_bytes == uint64_t{1} << 30);
  CHECK(user("a1").mail_host == "store9");
  CHECK(user("a5").mail_host == "store2");
  CHECK(pw::verify("imported pw", user("a4").password) == pw::Verdict::Match);
  CHECK(db->find_recipient("a3@example.com").value().kind == dir::RecipientKind::User);

  for (std::string line : std::vector<std::string>{"onlylogin", "a\tb\tc\td", "bad login\t" + argon, "a6\t" + argon + "\tbad host"}) {
    INFO(line);
    CHECK_FALSE(dir::apply(*db, dir::admin::Import{"", {line}}, settings));
  }
}

TEST_CASE("resolve_inputs reads the first line of a password file and bounds it") {
  test::TempDir tmp;
  dir::admin::AddUser add{"alice", {dir::PasswordInput::From::File, (tmp.write("pw", "s3cret\r\nignored\n")).string(), {}}, ""};
  AdminOp op = add;
  REQUIRE(dir::resolve_inputs(op, -1));
  const auto& p = std::get<dir::admin::AddUser>(op).password;
  CHECK(p.from == dir::PasswordInput::From::Plain);
  CHECK(p.value.view() == "s3cret");

  AdminOp big = dir::admin::SetPassword{"alice", {dir::PasswordInput::From::File, tmp.write("big", std::string(5000, 'x')).string(), {}}};
  CHECK_FALSE(dir::resolve_inputs(big, -1));
  AdminOp empty = dir::admin::SetPassword{"alice", {dir::PasswordInput::From::File, tmp.write("empty", "\n").string(), {}}};
  CHECK_FALSE(dir::resolve_inputs(empty, -1));
  AdminOp missing = dir::admin::SetPassword{"alice", {dir::PasswordInput::From::File, (tmp / "none").string(), {}}};
  CHECK_FALSE(dir::resolve_inputs(missing, -1));

  dir::SecretString s(std::string("wipe me"));
  s.wipe();
  CHECK(s.empty());
}
