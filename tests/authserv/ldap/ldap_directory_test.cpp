// ldap_directory_test.cpp: LdapDirectory against a real slapd (tests/support/slapd) holding
// data/directory.ldif: lookups, both password modes, rehash, TLS, injection, outages, concurrency.
#include <catch2/catch.hpp>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <regex>
#include <sstream>
#include <thread>

#include "authserv/ldap/ldap_directory.hpp"
#include "authserv/password/password.hpp"
#include "tests/support/process.hpp"
#include "tests/support/scram_client.hpp"  // b64d
#include "tests/support/slapd.hpp"

using namespace std::chrono_literals;
using authserv::directory::BindResult;
using authserv::directory::RecipientKind;
using authserv::directory::Status;
using authserv::ldap::LdapDirectory;
using authserv::ldap::LdapOptions;
using authserv::ldap::PasswordCheck;
using common::ErrorKind;
namespace pw = authserv::password;

namespace {

struct Hashes {
  std::string alice, bob, carol, cert_b64;
};

std::string last_line(const test::CommandResult& r) {
  std::string out = r.output;
  while (!out.empty() && (out.back() == '\n' || out.back() == '\r')) out.pop_back();
  const auto nl = out.rfind('\n');
  return nl == std::string::npos ? out : out.substr(nl + 1);
}

// Made once per process: slappasswd and argon2id are the slow part of a test.
const Hashes& hashes() {
  static const Hashes h = [] {
    Hashes out;
    auto ssha512 = test::run({"slappasswd", "-o", "module-load=pw-sha2", "-h", "{SSHA512}", "-s", "alicepw"});
    auto ssha = test::run({"slappasswd", "-h", "{SSHA}", "-s", "bobpw"});
    REQUIRE(ssha512.exit_code == 0);
    REQUIRE(ssha.exit_code == 0);
    out.alice = last_line(ssha512);
    out.bob = last_line(ssha);
    out.carol = *pw::hash_argon2id("carolpw", pw::Argon2Cost{1, size_t{8} << 20});
    test::TempDir dir;
    auto cert = test::run({"openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                           "-nodes", "-days", "1", "-subj", "/CN=alice/emailAddress=alice@example.com",
                           "-keyout", (dir / "k.pem").string(), "-out", (dir / "c.pem").string()});
    REQUIRE(cert.exit_code == 0);
    const std::string pem = test::read_file(dir / "c.pem");
    for (const auto& line : {std::regex("-----[A-Z ]+-----"), std::regex("\n")}) {
      out.cert_b64 = std::regex_replace(out.cert_b64.empty() ? pem : out.cert_b64, line, "");
    }
    return out;
  }();
  return h;
}

std::string directory_ldif() {
  std::string ldif = test::read_file(test::source_path("tests/authserv/ldap/data/directory.ldif"));
  const auto& h = hashes();
  for (const auto& [key, value] : std::vector<std::pair<std::string, std::string>>{
           {"@ALICE_PW@", h.alice}, {"@BOB_PW@", h.bob}, {"@CAROL_PW@", h.carol}, {"@ALICE_CERT@", h.cert_b64}}) {
    for (auto pos = ldif.find(key); pos != std::string::npos; pos = ldif.find(key)) ldif.replace(pos, key.size(), value);
  }
  return ldif;
}

// A started slapd with the test directory loaded.
std::unique_ptr<test::Slapd> loaded_slapd(bool tls = false) {
  test::SlapdOptions o;
  o.tls = tls;
  auto slapd = std::make_unique<test::Slapd>(o);
  const auto r = slapd->add(directory_ldif());
  INFO(r.output);
  REQUIRE(r.exit_code == 0);
  return slapd;
}

LdapOptions options_for(const test::Slapd& slapd) {
  LdapOptions o;
  o.urls = {slapd.url()};
  o.bind_dn = "cn=authserv,o=postern";
  o.bind_password = "servicepw";
  o.base_dn = "o=postern";
  o.connect_timeout = 1000ms;
  o.op_timeout = 1000ms;
  return o;
}

std::unique_ptr<LdapDirectory> open_ok(LdapOptions o) {
  auto d = LdapDirectory::open(std::move(o));
  INFO((d ? "" : d.error().detail));
  REQUIRE(d);
  return std::move(*d);
}

authserv::directory::UserRecord user(LdapDirectory& d, std::string_view uid, std::string_view domain) {
  auto u = d.find_user(uid, domain);
  INFO((u ? "" : u.error().detail));
  REQUIRE(u);
  REQUIRE(*u);
  return **u;
}

// Server-side sockets of `port` in ESTABLISHED state (/proc/net/tcp: "local rem st ...").
int established_to(int port) {
  std::istringstream in(test::read_file("/proc/net/tcp"));
  std::string line;
  std::getline(in, line);
  int n = 0;
  char want[8];
  std::snprintf(want, sizeof want, ":%04X", port);
  while (std::getline(in, line)) {
    std::istringstream fields(line);
    std::string slot, local, remote, state;
    fields >> slot >> local >> remote >> state;
    if (local.size() > 5 && local.substr(local.size() - 5) == want && state == "01") ++n;
  }
  return n;
}

}  // namespace

TEST_CASE("find_domain: preferred and associated names, status, unknown domains") {
  auto slapd = loaded_slapd();
  auto d = open_ok(options_for(*slapd));
  CHECK(d->kind() == "ldap");
  CHECK_FALSE(d->nonblocking());

  auto ex = d->find_domain("example.com");
  REQUIRE(ex);
  REQUIRE(*ex);
  CHECK((*ex)->name == "example.com");
  CHECK((*ex)->status == Status::Active);
  CHECK((*ex)->allowed_services == "+imap,pop,smtp:ALL");
  CHECK((*ex)->search_filter.empty());

  auto alias = d->find_domain("example.net");  // associatedDomain: canonical name is the preferred one
  REQUIRE(alias);
  REQUIRE(*alias);
  CHECK((*alias)->name == "example.com");

  auto filtered = d->find_domain("filtered.test");
  REQUIRE(filtered);
  REQUIRE(*filtered);
  CHECK((*filtered)->search_filter == "(&(objectclass=inetmailuser)(mail=%U@%d))");

  auto closed = d->find_domain("closed.test");
  REQUIRE(closed);
  REQUIRE(*closed);
  CHECK((*closed)->status == Status::Inactive);  // mailDomainStatus inactive, inetDomainStatus active

  for (const char* nothing : {"nowhere.test", "*", "example.com)(o=*", ""}) {
    auto r = d->find_domain(nothing);
    INFO(nothing);
    REQUIRE(r);
    CHECK_FALSE(*r);
  }
}

TEST_CASE("find_user: every attribute, statuses combined, domain filter and base") {
  auto slapd = loaded_slapd();
  auto d = open_ok(options_for(*slapd));

  const auto alice = user(*d, "alice", "example.com");
  CHECK(alice.canonical == "alice@example.com");
  CHECK(alice.uid == "alice");
  CHECK(alice.domain == "example.com");
  CHECK(alice.dn == "uid=alice,ou=People,o=example.com,o=postern");
  CHECK(alice.status == Status::Active);
  CHECK(alice.mail == "alice@example.com");
  CHECK(alice.addresses == std::vector<std::string>{"alice@example.com", "alice.liddell@example.com",
                                                    "alice@wonderland.test"});
  CHECK(alice.mail_host == "store1.example.com");
  CHECK(alice.allowed_services == "+imap:ALL$-pop:*");
  CHECK(alice.domain_allowed_services == "+imap,pop,smtp:ALL");
  CHECK(alice.access_domains == std::vector<std::string>{"192.0.2.0", "example.com"});
  CHECK(alice.quota_bytes == 1048576);
  CHECK(alice.quota_messages == 0);  // -1: unlimited
  CHECK(alice.sieve == "require \"fileinto\";\nfileinto \"Junk\";");
  CHECK(alice.password.empty());  // bind mode never reads userPassword
  CHECK_FALSE(alice.store_admin);

  // The alias domain gives the same user under the preferred domain's canonical name.
  CHECK(user(*d, "alice", "example.net").canonical == "alice@example.com");

  CHECK(user(*d, "bob", "example.com").status == Status::Active);  // "Active": case-insensitive
  CHECK(user(*d, "ivan", "example.com").status == Status::Inactive);
  CHECK(user(*d, "hank", "example.com").status == Status::Held);
  CHECK(user(*d, "dave", "example.com").status == Status::Deleted);  // deleted beats inactive
  CHECK(user(*d, "eve", "example.com").status == Status::Inactive);  // unknown value fails closed
  CHECK(user(*d, "grace", "closed.test").status == Status::Inactive);  // from the domain

  // filtered.test: inetDomainSearchFilter finds users by mail under inetDomainBaseDN.
  const auto frank = user(*d, "frank", "filtered.test");
  CHECK(frank.canonical == "u1234@filtered.test");
  CHECK(frank.dn == "uid=u1234,ou=Staff,o=filtered.test,o=postern");
  auto by_uid = d->find_user("u1234", "filtered.test");  // the default filter does not apply there
  REQUIRE(by_uid);
  CHECK_FALSE(*by_uid);

  // compound.test: Sun's "uid=%U_%V", and %o, the login exactly as the client typed it.
  CHECK(user(*d, "john", "compound.test").dn == "uid=john_compound.test,o=compound.test,o=postern");
  auto kim = d->find_user("4711", "compound.test", "4711");
  REQUIRE(kim);
  REQUIRE(*kim);
  CHECK((*kim)->dn == "uid=k77,o=compound.test,o=postern");
  auto untyped = d->find_user("4711", "compound.test");  // %o is then 4711@compound.test
  REQUIRE(untyped);
  CHECK_FALSE(*untyped);

  for (auto [uid, domain] : std::vector<std::pair<std::string, std::string>>{
           {"nobody", "example.com"}, {"plain", "example.com"}, {"alice", "nowhere.test"},
           {"alice", "filtered.test"}, {"", "example.com"}}) {
    auto r = d->find_user(uid, domain);
    INFO(uid << "@" << domain);
    REQUIRE(r);
    CHECK_FALSE(*r);
  }
}

TEST_CASE("searchfordomain off: users straight under base_dn with the default filter") {
  auto slapd = loaded_slapd();
  auto o = options_for(*slapd);
  o.search_for_domain = false;
  o.store_admins = {"bob@example.com"};
  auto d = open_ok(o);
  const auto grace = user(*d, "grace", "closed.test");
  CHECK(grace.status == Status::Active);  // no domain entry consulted
  CHECK(user(*d, "bob", "example.com").store_admin);
  // No domain filter either: u1234 is found by uid, in any domain name asked.
  CHECK(user(*d, "u1234", "filtered.test").canonical == "u1234@filtered.test");
}

TEST_CASE("find_recipient: users by any address, groups expanded, detail stripped, unknowns") {
  auto slapd = loaded_slapd();
  auto d = open_ok(options_for(*slapd));

  for (const char* address : {"alice@example.com", "alice.liddell@example.com", "alice@wonderland.test",
                              "ALICE@EXAMPLE.COM", "alice+lists@example.com"}) {
    auto r = d->find_recipient(address);
    INFO(address << (r ? "" : r.error().detail));
    REQUIRE(r);
    CHECK(r->kind == RecipientKind::User);
    REQUIRE(r->user);
    CHECK(r->user->canonical == "alice@example.com");
    CHECK(r->user->mail_host == "store1.example.com");
  }
  auto upper = d->find_recipient("Alice@EXAMPLE.COM");
  REQUIRE(upper);
  CHECK(upper->address == "Alice@example.com");  // local part kept, domain lowercased
  auto detail = d->find_recipient("alice+lists@example.com");
  REQUIRE(detail);
  CHECK(detail->address == "alice+lists@example.com");

  auto frank = d->find_recipient("frank@filtered.test");
  REQUIRE(frank);
  REQUIRE(frank->user);
  CHECK(frank->user->canonical == "u1234@filtered.test");

  auto grace = d->find_recipient("grace@closed.test");
  REQUIRE(grace);
  REQUIRE(grace->user);
  CHECK(grace->user->status == Status::Inactive);

  // staff -> alice, bob, all(-> carol, staff (loop), ALICE (dup)), friend@remote.test
  for (const char* address : {"staff@example.com", "team@example.com"}) {
    auto staff = d->find_recipient(address);
    INFO(address);
    REQUIRE(staff);
    CHECK(staff->kind == RecipientKind::Alias);
    CHECK(staff->targets ==
          std::vector<std::string>{"alice@example.com", "bob@example.com", "friend@remote.test", "carol@example.com"});
  }
  auto all = d->find_recipient("all@example.com");
  REQUIRE(all);
  CHECK(all->kind == RecipientKind::Alias);
  CHECK(all->targets == std::vector<std::string>{"carol@example.com", "ALICE@example.com", "bob@example.com",
                                                 "friend@remote.test"});

  for (const char* nothing : {"nobody@example.com", "old@example.com", "plain@example.com", "+@example.com",
                              "nobody+x@example.com", "noat", "@example.com", "alice@"}) {
    auto r = d->find_recipient(nothing);
    INFO(nothing);
    REQUIRE(r);
    CHECK(r->kind == RecipientKind::Unknown);
  }

  auto o = options_for(*slapd);
  o.detail_delimiter = '\0';
  auto strict = open_ok(o);
  auto r = strict->find_recipient("alice+lists@example.com");
  REQUIRE(r);
  CHECK(r->kind == RecipientKind::Unknown);
}

namespace {
// A certmap query: a base DN as text (parsed as certmap does) and the equalities of its filter.
common::tls::CertQuery query(std::string_view base, std::vector<common::tls::CertFilter::Equality> terms) {
  common::tls::CertQuery q;
  auto dn = common::tls::parse_dn(base);
  REQUIRE(dn);
  q.base = std::move(*dn);
  q.filter.all_of = std::move(terms);
  return q;
}
}  // namespace

TEST_CASE("find_by_certificate returns canonical names of mail users only, with certificates on request") {
  auto slapd = loaded_slapd();
  auto d = open_ok(options_for(*slapd));
  auto r = d->find_by_certificate(query("", {{"mail", "alice@example.com"}}));
  REQUIRE(r);
  CHECK(*r == std::vector<std::string>{"alice@example.com"});
  r = d->find_by_certificate(query("ou=People,o=example.com,o=postern", {{"uid", "alice"}}));
  REQUIRE(r);
  CHECK(*r == std::vector<std::string>{"alice@example.com"});
  r = d->find_by_certificate(query("", {{"mail", "frank@filtered.test"}}));
  REQUIRE(r);
  CHECK(*r == std::vector<std::string>{"u1234@filtered.test"});
  r = d->find_by_certificate(query("", {{"mail", "plain@example.com"}}));  // not a mail user
  REQUIRE(r);
  CHECK(r->empty());
  // VerifyCert's form: the entry's stored certificates come along, as DER.
  auto holders = d->find_certificate_holders(query("", {{"mail", "alice@example.com"}}));
  REQUIRE(holders);
  REQUIRE(holders->size() == 1);
  CHECK(holders->front().canonical == "alice@example.com");
  CHECK(holders->front().certificates_der == std::vector<std::string>{test::b64d(hashes().cert_b64)});
  holders = d->find_certificate_holders(query("", {{"mail", "frank@filtered.test"}}));  // none stored
  REQUIRE(holders);
  REQUIRE(holders->size() == 1);
  CHECK(holders->front().certificates_der.empty());
  r = d->find_by_certificate(query("o=nowhere,o=postern", {{"mail", "alice@example.com"}}));  // missing base
  REQUIRE(r);
  CHECK(r->empty());
  // A subject's filter syntax reaches slapd escaped: it matches itself only, never every entry.
  for (std::string evil : {"*", "*)(uid=*", "alice@example.com)(|(mail=*"}) {
    INFO(evil);
    r = d->find_by_certificate(query("", {{"mail", evil}}));
    REQUIRE(r);
    CHECK(r->empty());
  }
}

TEST_CASE("bind mode: the directory checks passwords of every scheme") {
  auto slapd = loaded_slapd();
  auto d = open_ok(options_for(*slapd));
  const auto alice = user(*d, "alice", "example.com");  // {SSHA512}
  const auto bob = user(*d, "bob", "example.com");      // {SSHA}
  const auto carol = user(*d, "carol", "example.com");  // {ARGON2}
  CHECK(d->bind_as(alice, "alicepw") == BindResult::Match);
  CHECK(d->bind_as(alice, "alicepW") == BindResult::Mismatch);
  CHECK(d->bind_as(bob, "bobpw") == BindResult::Match);
  CHECK(d->bind_as(bob, "alicepw") == BindResult::Mismatch);
  CHECK(d->bind_as(carol, "carolpw") == BindResult::Match);
  CHECK(d->bind_as(carol, "carolpw ") == BindResult::Mismatch);
  // An empty password would be an unauthenticated bind, which slapd "accepts".
  CHECK(d->bind_as(alice, "") == BindResult::Mismatch);
  CHECK(d->bind_as(user(*d, "hank", "example.com"), "anything") == BindResult::Mismatch);  // no password
  auto ghost = alice;
  ghost.dn = "uid=ghost,ou=People,o=example.com,o=postern";
  CHECK(d->bind_as(ghost, "alicepw") == BindResult::Mismatch);
  ghost.dn = "not a dn";
  CHECK(d->bind_as(ghost, "alicepw") == BindResult::Mismatch);
  CHECK(d->bind_as(alice, std::string(5000, 'x')) == BindResult::Mismatch);
  // Binds between checks do not leak into the next one on the same pooled connection.
  CHECK(d->bind_as(alice, "alicepw") == BindResult::Match);
  CHECK(d->bind_as(bob, "wrong") == BindResult::Mismatch);
}

TEST_CASE("hash mode returns the stored userPassword, and authserv's verifier accepts it") {
  auto slapd = loaded_slapd();
  auto o = options_for(*slapd);
  o.password_check = PasswordCheck::Hash;
  auto d = open_ok(o);
  const auto alice = user(*d, "alice", "example.com");
  const auto bob = user(*d, "bob", "example.com");
  const auto carol = user(*d, "carol", "example.com");
  CHECK(alice.password == hashes().alice);
  CHECK(bob.password == hashes().bob);
  CHECK(carol.password == hashes().carol);
  CHECK(pw::verify("alicepw", alice.password) == pw::Verdict::Match);
  CHECK(pw::verify("bobpw", bob.password) == pw::Verdict::Match);
  CHECK(pw::verify("carolpw", carol.password) == pw::Verdict::Match);
  CHECK_FALSE(d->bind_as(alice, "alicepw"));  // not this backend's job in hash mode
  CHECK(user(*d, "hank", "example.com").password.empty());
}

TEST_CASE("rehash replaces userPassword when allowed - refusals are errors, not crashes") {
  auto slapd = loaded_slapd();
  auto o = options_for(*slapd);
  o.password_check = PasswordCheck::Hash;
  auto off = open_ok(o);
  const auto bob = user(*off, "bob", "example.com");
  auto refused = off->store_password_hash(bob, "{SSHA}x", "");
  REQUIRE_FALSE(refused);
  CHECK(refused.error().kind == ErrorKind::Config);

  o.allow_rehash = true;
  auto d = open_ok(o);
  const auto argon = *pw::hash_argon2id("bobpw", pw::Argon2Cost{1, size_t{8} << 20});
  auto stored = d->store_password_hash(bob, argon, "");
  INFO((stored ? "" : stored.error().detail));
  REQUIRE(stored);
  CHECK(user(*d, "bob", "example.com").password == argon);
  // slapd's argon2 module takes the new value in a bind.
  auto binder = open_ok(options_for(*slapd));
  CHECK(binder->bind_as(bob, "bobpw") == BindResult::Match);
  CHECK(binder->bind_as(bob, "bobpx") == BindResult::Mismatch);

  // A read-only service account: insufficientAccess comes back as a Remote error.
  o.bind_dn = "cn=reader,o=postern";
  o.bind_password = "readerpw";
  auto reader = open_ok(o);
  auto denied = reader->store_password_hash(bob, "{SSHA}abc", "");
  REQUIRE_FALSE(denied);
  CHECK(denied.error().kind == ErrorKind::Remote);
  CHECK(user(*d, "bob", "example.com").password == argon);
  // The reader can still look users up.
  CHECK(user(*reader, "bob", "example.com").canonical == "bob@example.com");
}

TEST_CASE("injection attempts find nothing and raise no errors") {
  auto slapd = loaded_slapd();
  auto d = open_ok(options_for(*slapd));
  const std::vector<std::string> evil{"*",       "*)(uid=*",  "admin)(|(uid=*", "alice)(objectClass=*",
                                      "al*",     "*)(|(mail=*", std::string("alice\0x", 7), "\\2a",
                                      "alice*",  "(uid=alice)", "alice)(!(uid=x)", "\xff\xfe"};
  for (const auto& e : evil) {
    INFO("value: " << e);
    auto u = d->find_user(e, "example.com");
    REQUIRE(u);
    CHECK_FALSE(*u);
    auto dom = d->find_domain(e);
    REQUIRE(dom);
    CHECK_FALSE(*dom);
    auto r = d->find_recipient(e + "@example.com");
    REQUIRE(r);
    CHECK(r->kind == RecipientKind::Unknown);
    auto in_domain = d->find_user("alice", e);
    REQUIRE(in_domain);
    CHECK_FALSE(*in_domain);
  }
  // A domain template that the attacker's value would otherwise widen.
  auto frank = d->find_user("*", "filtered.test");
  REQUIRE(frank);
  CHECK_FALSE(*frank);
}

TEST_CASE("StartTLS and ldaps with the right CA - a wrong CA or no TLS is refused") {
  auto slapd = loaded_slapd(true);
  auto o = options_for(*slapd);
  o.ca_file = slapd->ca_file();

  SECTION("StartTLS") {
    o.start_tls = true;
    auto d = open_ok(o);
    CHECK(user(*d, "alice", "example.com").canonical == "alice@example.com");
    CHECK(d->bind_as(user(*d, "alice", "example.com"), "alicepw") == BindResult::Match);
  }
  SECTION("ldaps") {
    o.urls = {slapd->ldaps_url()};
    auto d = open_ok(o);
    CHECK(user(*d, "bob", "example.com").canonical == "bob@example.com");
    CHECK(d->bind_as(user(*d, "bob", "example.com"), "bobpw") == BindResult::Match);
  }
  SECTION("a CA that did not sign the server certificate") {
    o.ca_file = slapd->other_ca_file();
    o.start_tls = true;
    auto st = LdapDirectory::open(o);
    REQUIRE_FALSE(st);
    CHECK(st.error().kind == ErrorKind::TempFail);
    o.start_tls = false;
    o.urls = {slapd->ldaps_url()};
    auto ssl = LdapDirectory::open(o);
    REQUIRE_FALSE(ssl);
    CHECK(ssl.error().kind == ErrorKind::TempFail);
  }
}

TEST_CASE("StartTLS required against a server without TLS: refused, never plain text") {
  auto slapd = loaded_slapd(false);
  auto o = options_for(*slapd);
  o.start_tls = true;
  auto d = LdapDirectory::open(o);
  REQUIRE_FALSE(d);
  INFO(d.error().detail);
  CHECK(d.error().detail.find("StartTLS") != std::string::npos);
}

TEST_CASE("open: bad options and a wrong service password are Config errors") {
  auto slapd = loaded_slapd();
  auto bad = [&](auto change) {
    auto o = options_for(*slapd);
    change(o);
    auto d = LdapDirectory::open(o);
    REQUIRE_FALSE(d);
    return d.error().kind;
  };
  CHECK(bad([](LdapOptions& o) { o.urls.clear(); }) == ErrorKind::Config);
  CHECK(bad([](LdapOptions& o) { o.urls = {"http://127.0.0.1/"}; }) == ErrorKind::Config);
  CHECK(bad([](LdapOptions& o) { o.base_dn.clear(); }) == ErrorKind::Config);
  CHECK(bad([](LdapOptions& o) { o.pool_size = 0; }) == ErrorKind::Config);
  CHECK(bad([](LdapOptions& o) { o.op_timeout = 0ms; }) == ErrorKind::Config);
  CHECK(bad([](LdapOptions& o) { o.user_filter = "(uid=%Q)"; }) == ErrorKind::Config);
  CHECK(bad([](LdapOptions& o) { o.bind_password = "wrong"; }) == ErrorKind::Config);
}

TEST_CASE("server down: TempFail fast - failover to a second URL - recovery after restart") {
  auto slapd = loaded_slapd();
  auto o = options_for(*slapd);
  o.urls = {"ldap://127.0.0.1:" + std::to_string(test::free_port()), slapd->url()};  // first one dead
  auto d = open_ok(o);
  CHECK(user(*d, "alice", "example.com").canonical == "alice@example.com");

  slapd->stop();
  const auto start = std::chrono::steady_clock::now();
  auto u = d->find_user("alice", "example.com");
  REQUIRE_FALSE(u);
  CHECK(u.error().kind == ErrorKind::TempFail);
  auto r = d->find_recipient("alice@example.com");
  REQUIRE_FALSE(r);
  CHECK(r.error().kind == ErrorKind::TempFail);
  CHECK(std::chrono::steady_clock::now() - start < 5s);
  auto record = authserv::directory::UserRecord{};
  record.dn = "uid=alice,ou=People,o=example.com,o=postern";
  CHECK(d->bind_as(record, "alicepw") == BindResult::Unavailable);
  auto opened = LdapDirectory::open(o);
  REQUIRE_FALSE(opened);
  CHECK(opened.error().kind == ErrorKind::TempFail);

  slapd->start();
  auto back = d->find_user("alice", "example.com");
  INFO((back ? "" : back.error().detail));
  REQUIRE(back);
  CHECK(*back);
  CHECK(d->bind_as(record, "alicepw") == BindResult::Match);
}

TEST_CASE("server paused: TempFail within the operation timeout, then recovery after resume") {
  auto slapd = loaded_slapd();
  auto o = options_for(*slapd);
  o.op_timeout = 500ms;
  auto d = open_ok(o);
  const auto alice = user(*d, "alice", "example.com");
  REQUIRE(d->bind_as(alice, "alicepw") == BindResult::Match);

  slapd->pause();
  for (int i = 0; i < 3; ++i) {  // pooled connections and new ones alike
    const auto start = std::chrono::steady_clock::now();
    auto u = d->find_user("alice", "example.com");
    const auto took = std::chrono::steady_clock::now() - start;
    REQUIRE_FALSE(u);
    CHECK(u.error().kind == ErrorKind::TempFail);
    CHECK(took < 2s);
  }
  const auto start = std::chrono::steady_clock::now();
  CHECK(d->bind_as(alice, "alicepw") == BindResult::Unavailable);
  CHECK(std::chrono::steady_clock::now() - start < 2s);

  slapd->resume();
  auto back = d->find_user("alice", "example.com");
  INFO((back ? "" : back.error().detail));
  REQUIRE(back);
  CHECK(*back);
  CHECK(d->bind_as(alice, "alicepw") == BindResult::Match);
}

TEST_CASE("the pool serves many threads at once and reuses its connections") {
  auto slapd = loaded_slapd();
  auto o = options_for(*slapd);
  o.pool_size = 3;
  auto d = open_ok(o);
  std::atomic<int> ok{0}, wrong{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 6; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 150; ++i) {
        const bool even = (i + t) % 2 == 0;
        auto u = d->find_user(even ? "alice" : "bob", "example.com");
        if (u && *u && (*u)->canonical == (even ? "alice@example.com" : "bob@example.com")) {
          ++ok;
        } else {
          ++wrong;
        }
        if (i % 25 == 0) {
          auto r = d->find_recipient("staff@example.com");
          if (!r || r->targets.size() != 4) ++wrong;
        }
      }
    });
  }
  for (auto& t : threads) t.join();
  CHECK(ok == 900);
  CHECK(wrong == 0);
  // The connections were reused: slapd holds at most pool_size of ours.
  const int port = std::stoi(slapd->url().substr(slapd->url().rfind(':') + 1));
  CHECK(established_to(port) <= 3);
  CHECK(established_to(port) >= 1);
}

TEST_CASE("the cn=config form of the schema loads into slapd") {
  test::TempDir dir;
  std::filesystem::create_directories(dir / "config");
  const auto ldif = dir.write("config.ldif",
                              "dn: cn=config\nobjectClass: olcGlobal\ncn: config\n\n"
                              "dn: cn=schema,cn=config\nobjectClass: olcSchemaConfig\ncn: schema\n\n" +
                                  test::read_file("/etc/ldap/schema/core.ldif") + "\n" +
                                  test::read_file("/etc/ldap/schema/cosine.ldif") + "\n" +
                                  test::read_file("/etc/ldap/schema/inetorgperson.ldif") + "\n" +
                                  test::read_file(test::source_path("deploy/ldap/postern-mail.ldif")));
  auto add = test::run({"slapadd", "-n", "0", "-F", (dir / "config").string(), "-l", ldif.string()});
  INFO(add.output);
  REQUIRE(add.exit_code == 0);
  auto check = test::run({"slaptest", "-F", (dir / "config").string()});
  INFO(check.output);
  CHECK(check.exit_code == 0);
}
