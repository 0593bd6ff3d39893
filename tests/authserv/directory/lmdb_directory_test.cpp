// lmdb_directory_test.cpp: every Backend call of the embedded directory against a real LMDB
// environment: users and domains, statuses, addresses, aliases (loops, depth, caps), certmap
// filters, damaged records, schema versions, and readers in another process.
#include <catch2/catch.hpp>

#include <lmdb.h>

#include <algorithm>
#include <string>
#include <vector>

#include "authserv/directory/lmdb_directory.hpp"
#include "authserv/directory/record.hpp"
#include "common/tls/certmap.hpp"
#include "tests/support/process.hpp"

namespace dir = authserv::directory;
using common::Result;
using dir::LmdbDirectory;

namespace {

struct Fixture {
  test::TempDir tmp;
  std::unique_ptr<LmdbDirectory> db = LmdbDirectory::open(tmp / "dir").value();

  void domain(const std::string& name, dir::Status st = dir::Status::Active, const std::string& svc = "") {
    REQUIRE(db->write([&](LmdbDirectory::Writer& w) { return w.put_domain({name, st, svc, ""}); }));
  }
  Result<void> user(const std::string& uid, const std::string& domain, std::vector<std::string> extra = {},
                    dir::Status st = dir::Status::Active) {
    dir::UserRecord u;
    u.uid = uid;
    u.domain = domain;
    u.canonical = u.mail = uid + "@" + domain;
    u.addresses = std::move(extra);
    u.mail_host = "store1";
    u.status = st;
    u.password = "{SSHA512}x";
    return db->write([&](LmdbDirectory::Writer& w) { return w.put_user(u); });
  }
  void alias(const std::string& address, std::vector<std::string> targets) {
    REQUIRE(db->write([&](LmdbDirectory::Writer& w) { return w.put_alias(address, targets); }));
  }
};

}  // namespace

TEST_CASE_METHOD(Fixture, "find_domain and find_user, with the domain's status and services combined") {
  CHECK(db->nonblocking());
  CHECK(db->kind() == "embedded");
  // A second open in the same process would break LMDB's per-process locks: refused.
  auto twice = LmdbDirectory::open(tmp.path() / "." / "dir");
  REQUIRE_FALSE(twice);
  CHECK(twice.error().detail.find("already open") != std::string::npos);
  domain("example.com", dir::Status::Active, "+imap:ALL");
  REQUIRE(user("alice", "example.com"));
  REQUIRE(user("held", "example.com", {}, dir::Status::Held));

  auto d = db->find_domain("Example.COM");
  REQUIRE(d);
  REQUIRE(*d);
  CHECK((*d)->allowed_services == "+imap:ALL");
  CHECK_FALSE(db->find_domain("nowhere.org").value());
  CHECK_FALSE(db->find_domain("bad domain").value());

  auto u = db->find_user("alice", "example.com");
  REQUIRE(u);
  REQUIRE(*u);
  CHECK((*u)->canonical == "alice@example.com");
  CHECK((*u)->status == dir::Status::Active);
  CHECK((*u)->domain_allowed_services == "+imap:ALL");
  CHECK((*u)->mail_host == "store1");
  CHECK((*u)->addresses == std::vector<std::string>{"alice@example.com"});
  CHECK((*u)->dn.empty());
  CHECK_FALSE(db->find_user("nobody", "example.com").value());

  // The domain's status wins when it is stricter, the user's when that one is.
  domain("example.com", dir::Status::Inactive, "+imap:ALL");
  CHECK(db->find_user("alice", "example.com").value()->status == dir::Status::Inactive);
  CHECK(db->find_user("held", "example.com").value()->status == dir::Status::Held);
  domain("example.com", dir::Status::Deleted);
  CHECK(db->find_user("held", "example.com").value()->status == dir::Status::Deleted);
}

TEST_CASE_METHOD(Fixture, "addresses are unique, users need their domain, and deleting frees addresses") {
  domain("example.com");
  CHECK_FALSE(user("alice", "nowhere.org"));  // unknown domain
  REQUIRE(user("alice", "example.com", {"Alice.Smith@example.com"}));
  auto dup = user("bob", "example.com", {"alice.smith@EXAMPLE.com"});
  REQUIRE_FALSE(dup);
  CHECK(dup.error().kind == common::ErrorKind::Protocol);
  CHECK(dup.error().detail.find("belongs to alice@example.com") != std::string::npos);
  CHECK_FALSE(db->find_user("bob", "example.com").value());  // the failed write left nothing

  alias("list@example.com", {"alice@example.com"});
  CHECK_FALSE(user("bob", "example.com", {"list@example.com"}));  // an alias is taken too
  CHECK_FALSE(db->write([](LmdbDirectory::Writer& w) { return w.put_alias("alice@example.com", {"x@y.org"}); }));

  // Replacing the record releases addresses it no longer lists.
  REQUIRE(user("alice", "example.com"));
  REQUIRE(user("bob", "example.com", {"alice.smith@example.com"}));
  CHECK(db->find_recipient("alice.smith@example.com").value().user->canonical == "bob@example.com");

  bool gone = false;
  REQUIRE(db->write([&](LmdbDirectory::Writer& w) -> Result<void> {
    gone = w.delete_user("bob@example.com").value();
    return {};
  }));
  CHECK(gone);
  CHECK(db->find_recipient("alice.smith@example.com").value().kind == dir::RecipientKind::Unknown);
  REQUIRE(user("carol", "example.com", {"alice.smith@example.com"}));
}

TEST_CASE_METHOD(Fixture, "find_recipient: any address, subaddress detail, aliases, catch-all, unknown") {
  domain("example.com");
  REQUIRE(user("alice", "example.com", {"a.smith@example.com"}));
  REQUIRE(user("plus", "example.com", {"plus+real@example.com"}));
  alias("postmaster@example.com", {"alice@example.com", "ext@other.org"});

  auto r = db->find_recipient("A.Smith@Example.COM");
  REQUIRE(r);
  CHECK(r->kind == dir::RecipientKind::User);
  CHECK(r->address == "A.Smith@example.com");
  REQUIRE(r->user);
  CHECK(r->user->canonical == "alice@example.com");

  CHECK(db->find_recipient("alice+tag@example.com").value().user->canonical == "alice@example.com");
  CHECK(db->find_recipient("plus+real@example.com").value().user->canonical == "plus@example.com");
  CHECK(db->find_recipient("postmaster+x@example.com").value().kind == dir::RecipientKind::Alias);

  auto a = db->find_recipient("postmaster@example.com").value();
  CHECK(a.kind == dir::RecipientKind::Alias);
  CHECK(a.targets == std::vector<std::string>{"alice@example.com", "ext@other.org"});
  CHECK_FALSE(a.user);

  CHECK(db->find_recipient("nobody@example.com").value().kind == dir::RecipientKind::Unknown);
  CHECK(db->find_recipient("alice@other.org").value().kind == dir::RecipientKind::Unknown);
  auto bad = db->find_recipient("no at sign");
  REQUIRE_FALSE(bad);
  CHECK(bad.error().kind == common::ErrorKind::Protocol);

  // The catch-all takes what no user or alias owns, never a real mailbox.
  alias("@example.com", {"alice@example.com"});
  auto c = db->find_recipient("whoever@example.com").value();
  CHECK(c.kind == dir::RecipientKind::Alias);
  CHECK(c.targets == std::vector<std::string>{"alice@example.com"});
  CHECK(db->find_recipient("a.smith@example.com").value().kind == dir::RecipientKind::User);

  // Without subaddressing, "alice+tag" is just an unknown name (here: the catch-all).
  // LMDB forbids one environment open twice in a process (closing one drops the other's locks).
  db.reset();
  auto plain = LmdbDirectory::open(tmp / "dir", {.detail_delimiter = '\0'}).value();
  CHECK(plain->find_recipient("alice+tag@example.com").value().kind == dir::RecipientKind::Alias);
}

TEST_CASE_METHOD(Fixture, "alias expansion: nesting, loops, depth and the target cap") {
  domain("example.com");
  REQUIRE(user("alice", "example.com"));
  REQUIRE(user("bob", "example.com"));
  alias("team@example.com", {"alice@example.com", "sub@example.com", "Bob+x@example.com"});
  alias("sub@example.com", {"bob@example.com", "team@example.com", "far@other.org"});  // loops back
  auto t = db->find_recipient("team@example.com").value();
  CHECK(t.kind == dir::RecipientKind::Alias);
  // Local users stay addresses (Bob+x is bob's, kept as written); the loop is cut.
  CHECK(t.targets == std::vector<std::string>{"alice@example.com", "bob@example.com", "far@other.org",
                                              "Bob+x@example.com"});
  auto s = db->find_recipient("sub@example.com").value();
  CHECK(s.targets == std::vector<std::string>{"bob@example.com", "alice@example.com", "Bob+x@example.com",
                                              "far@other.org"});
  alias("self@example.com", {"self@example.com"});
  CHECK(db->find_recipient("self@example.com").value().targets.empty());

  // A chain a0 -> a1 -> ... -> a11 -> end: only kMaxAliasDepth levels are followed.
  for (int i = 0; i < 12; ++i)
    alias("a" + std::to_string(i) + "@example.com",
          {"a" + std::to_string(i + 1) + "@example.com", "lvl" + std::to_string(i) + "@other.org"});
  auto chain = db->find_recipient("a0@example.com").value();
  // Depth first: the deepest level reached comes first, the top level last.
  CHECK(chain.targets.size() == static_cast<size_t>(dir::kMaxAliasDepth));
  CHECK(chain.targets.back() == "lvl0@other.org");
  CHECK(chain.targets.front() == "lvl" + std::to_string(dir::kMaxAliasDepth - 1) + "@other.org");

  // Two aliases of 800 external targets each: the expansion stops at kMaxAliasTargets.
  std::vector<std::string> big1, big2;
  for (int i = 0; i < 800; ++i) {
    big1.push_back("x" + std::to_string(i) + "@other.org");
    big2.push_back("y" + std::to_string(i) + "@other.org");
  }
  alias("big1@example.com", big1);
  alias("big2@example.com", big2);
  alias("huge@example.com", {"big1@example.com", "big2@example.com"});
  CHECK(db->find_recipient("huge@example.com").value().targets.size() == dir::kMaxAliasTargets);
}

namespace {
using Eq = common::tls::CertFilter::Equality;
// A certmap query: a base DN as text (parsed as certmap does) and the equalities of its filter.
common::tls::CertQuery query(std::string_view base, std::vector<Eq> terms) {
  common::tls::CertQuery q;
  auto dn = common::tls::parse_dn(base);
  REQUIRE(dn);
  q.base = std::move(*dn);
  q.filter.all_of = std::move(terms);
  return q;
}
}  // namespace

TEST_CASE_METHOD(Fixture, "certificate queries: equalities on mail, uid and cn under a base DN, refusals") {
  domain("example.com");
  domain("other.org");
  REQUIRE(user("alice", "example.com", {"Alice.Smith@example.com"}));
  REQUIRE(user("alice", "other.org"));
  REQUIRE(user("st*r", "example.com"));
  auto find = [&](std::string_view base, std::vector<Eq> terms) {
    auto r = db->find_by_certificate(query(base, std::move(terms)));
    REQUIRE(r);
    auto v = *r;
    std::sort(v.begin(), v.end());
    return v;
  };
  using V = std::vector<std::string>;
  CHECK(find("", {{"mail", "alice.smith@example.com"}}) == V{"alice@example.com"});
  CHECK(find("", {{"MAIL", "ALICE@example.com"}}) == V{"alice@example.com"});
  CHECK(find("", {{"uid", "alice"}}) == V{"alice@example.com", "alice@other.org"});
  CHECK(find("", {{"cn", "alice"}}) == V{"alice@example.com", "alice@other.org"});
  CHECK(find("", {{"uid", "alice@other.org"}}) == V{"alice@other.org"});
  CHECK(find("dc=example,dc=com", {{"uid", "alice"}}) == V{"alice@example.com"});
  CHECK(find("DC=Other, DC=org", {{"uid", "alice"}}) == V{"alice@other.org"});
  CHECK(find("domainComponent=other,dc=org", {{"uid", "alice"}}) == V{"alice@other.org"});
  CHECK(find("uid=alice,dc=other,dc=org", {}) == V{"alice@other.org"});
  CHECK(find("o=Example,c=US", {{"uid", "alice"}}).empty());  // no such tree here: fail closed
  CHECK(find("cn=#020101,dc=org", {}).empty());                // a BER value names none of ours
  CHECK(find("", {{"uid", "alice"}, {"mail", "alice.smith@example.com"}}) == V{"alice@example.com"});
  CHECK(find("", {{"uid", "bob"}, {"mail", "alice@other.org"}}).empty());
  // Values are the certificate's bytes, never filter text: '*' is a character, "\2a" is three.
  CHECK(find("", {{"uid", "st*r"}}) == V{"st*r@example.com"});
  CHECK(find("", {{"uid", "st\\2ar"}}).empty());
  CHECK(find("", {{"uid", "*"}}).empty());
  CHECK(find("", {{"mail", "*)(uid=*"}}).empty());
  CHECK(find("", {}).size() == 3);
  CHECK(find("", {{"uid", "nobody"}}).empty());

  for (const auto& bad : {query("", {{"sn", "alice"}}), query("", {{"userCertificate;binary", "x"}}),
                          query("uid=alice+cn=alice,dc=other,dc=org", {})}) {
    INFO(bad.base_dn() << " " << bad.filter.to_string());
    auto r = db->find_by_certificate(bad);
    REQUIRE_FALSE(r);
    CHECK(r.error().kind == common::ErrorKind::Protocol);
  }
}

TEST_CASE_METHOD(Fixture, "passwords: bind_as defers, store_password_hash writes both strings") {
  domain("example.com");
  REQUIRE(user("alice", "example.com"));
  auto u = db->find_user("alice", "example.com").value().value();
  CHECK_FALSE(db->bind_as(u, "whatever"));
  REQUIRE(db->store_password_hash(u, "{ARGON2}$argon2id$new", "{SCRAM-SHA-256}new"));
  auto after = db->find_user("alice", "example.com").value().value();
  CHECK(after.password == "{ARGON2}$argon2id$new");
  CHECK(after.scram == "{SCRAM-SHA-256}new");
  CHECK(after.addresses == u.addresses);
  dir::UserRecord ghost;
  ghost.canonical = "ghost@example.com";
  CHECK_FALSE(db->store_password_hash(ghost, "x", "y"));

  db.reset();  // one open per process (see above)
  auto ro = LmdbDirectory::open(tmp / "dir", {.read_only = true}).value();
  CHECK(ro->find_user("alice", "example.com").value());
  auto refused = ro->store_password_hash(u, "a", "b");
  REQUIRE_FALSE(refused);
  CHECK(refused.error().kind == common::ErrorKind::Config);
}

TEST_CASE("damaged records and unknown schema versions are refused, not crashed on") {
  test::TempDir tmp;
  const auto path = tmp / "dir";
  {
    auto db = LmdbDirectory::open(path).value();
    REQUIRE(db->write([](LmdbDirectory::Writer& w) { return w.put_domain({"example.com"}); }));
  }
  // Write garbage behind the directory's back, with the raw LMDB API.
  auto raw_put = [&](const char* table, std::string key, std::string value) {
    MDB_env* env = nullptr;
    REQUIRE(mdb_env_create(&env) == 0);
    mdb_env_set_maxdbs(env, 8);
    REQUIRE(mdb_env_open(env, path.c_str(), 0, 0600) == 0);
    MDB_txn* txn = nullptr;
    REQUIRE(mdb_txn_begin(env, nullptr, 0, &txn) == 0);
    MDB_dbi dbi;
    REQUIRE(mdb_dbi_open(txn, table, 0, &dbi) == 0);
    MDB_val k{key.size(), key.data()}, v{value.size(), value.data()};
    REQUIRE(mdb_put(txn, dbi, &k, &v, 0) == 0);
    REQUIRE(mdb_txn_commit(txn) == 0);
    mdb_env_close(env);
  };
  raw_put("users", "broken@example.com", "\xA1\x00");
  raw_put("addresses", "broken@example.com", "broken@example.com");
  raw_put("aliases", "bad@example.com", "\xE1\x05");
  {
    auto db = LmdbDirectory::open(path).value();
    auto u = db->find_user("broken", "example.com");
    REQUIRE_FALSE(u);
    CHECK(u.error().kind == common::ErrorKind::Internal);
    auto r = db->find_recipient("broken@example.com");
    REQUIRE_FALSE(r);
    CHECK(r.error().kind == common::ErrorKind::Internal);
    auto a = db->find_recipient("bad@example.com");
    REQUIRE_FALSE(a);
    CHECK(a.error().kind == common::ErrorKind::Internal);
  }
  raw_put("meta", "schema_version", "99");
  auto refused = LmdbDirectory::open(path);
  REQUIRE_FALSE(refused);
  CHECK(refused.error().kind == common::ErrorKind::Config);
  CHECK(refused.error().detail.find("99") != std::string::npos);

  auto missing = LmdbDirectory::open(tmp / "nothing", {.read_only = true});
  REQUIRE_FALSE(missing);
}

TEST_CASE("another process writes while this one holds the environment and a read transaction") {
  test::TempDir tmp;
  const auto path = (tmp / "dir").string();
  auto db = LmdbDirectory::open(path).value();
  REQUIRE(db->write([](LmdbDirectory::Writer& w) { return w.put_domain({"example.com"}); }));
  const std::string cli = test::binary_path("authserv/directory/postern-directory");

  REQUIRE(db->read([&](const LmdbDirectory::Reader& r) -> Result<void> {
    // The CLI commits while our snapshot is open: we keep seeing the old state...
    auto out = test::run({cli, "--db", path, "user", "add", "alice@example.com", "--hash", "{SSHA512}" + std::string(
        "YWJjZGVmZ2hpamtsbW5vcHFyc3R1dnd4eXphYmNkZWZnaGlqa2xtbm9wcXJzdHV2d3h5emFiY2RlZmdoaWprbG0=")});
    INFO(out.output);
    CHECK(out.exit_code == 0);
    CHECK_FALSE(r.user("alice@example.com").value());
    return {};
  }));
  // ...and a new read transaction sees the commit.
  auto u = db->find_user("alice", "example.com");
  REQUIRE(u);
  REQUIRE(*u);
  CHECK((*u)->password.starts_with("{SSHA512}"));

  // Several writer processes at once: LMDB serialises them, none is lost.
  std::vector<std::unique_ptr<test::ChildProcess>> kids;
  for (int i = 0; i < 6; ++i)
    kids.push_back(std::make_unique<test::ChildProcess>(std::vector<std::string>{
        cli, "--db", path, "user", "add", "u" + std::to_string(i) + "@example.com"}));
  for (auto& k : kids) CHECK(k->wait(std::chrono::seconds(30)) == 0);
  for (int i = 0; i < 6; ++i) CHECK(db->find_user("u" + std::to_string(i), "example.com").value());
  // This process writes too, while the CLI has the environment open in between.
  REQUIRE(db->write([](LmdbDirectory::Writer& w) { return w.put_domain({"other.org"}); }));
  auto list = test::run({cli, "--db", path, "list", "other.org"});
  CHECK(list.output == "domain other.org active\n");
}
