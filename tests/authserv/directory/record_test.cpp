// record_test.cpp: the value encoding round-trips every field, and damaged values (every
// truncation, every single-byte change in the header, forged lengths) decode to errors.
#include <catch2/catch.hpp>

#include <string>

#include "authserv/directory/record.hpp"

namespace dir = authserv::directory;
namespace rec = authserv::directory::record;

namespace {

dir::UserRecord sample_user() {
  dir::UserRecord u;
  u.canonical = "alice@example.com";
  u.uid = "alice";
  u.domain = "example.com";
  u.status = dir::Status::Held;
  u.mail = "Alice@example.com";
  u.addresses = {"Alice@example.com", "a.smith@example.com"};
  u.mail_host = "store1.example.com";
  u.allowed_services = "+imap:ALL$-pop:*";
  u.access_domains = {"192.0.2.0", "example.org"};
  u.quota_bytes = uint64_t{5} << 30;
  u.quota_messages = 100000;
  static constexpr char kScript[] = "require \"fileinto\";\n\0binary";  // a NUL inside
  u.sieve = std::string(kScript, sizeof kScript - 1);
  u.store_admin = true;
  u.password = "{ARGON2}$argon2id$v=19$m=65536,t=3,p=1$c2FsdA$aGFzaA";
  u.scram = "{SCRAM-SHA-256}4096,abc,def,ghi";
  return u;
}

}  // namespace

TEST_CASE("user records round-trip") {
  const auto u = sample_user();
  auto d = rec::decode_user(u.canonical, rec::encode_user(u));
  REQUIRE(d);
  CHECK(d->canonical == u.canonical);
  CHECK(d->uid == "alice");
  CHECK(d->domain == "example.com");
  CHECK(d->status == u.status);
  CHECK(d->mail == u.mail);
  CHECK(d->addresses == u.addresses);
  CHECK(d->mail_host == u.mail_host);
  CHECK(d->allowed_services == u.allowed_services);
  CHECK(d->access_domains == u.access_domains);
  CHECK(d->quota_bytes == u.quota_bytes);
  CHECK(d->quota_messages == u.quota_messages);
  CHECK(d->sieve == u.sieve);
  CHECK(d->store_admin);
  CHECK(d->password == u.password);
  CHECK(d->scram == u.scram);

  dir::UserRecord empty;
  auto e = rec::decode_user("x@y", rec::encode_user(empty));
  REQUIRE(e);
  CHECK(e->uid == "x");
  CHECK(e->addresses.empty());
  CHECK_FALSE(e->store_admin);
}

TEST_CASE("domain and alias records round-trip") {
  dir::DomainRecord dom{"example.com", dir::Status::Inactive, "+imap:ALL", ""};
  auto d = rec::decode_domain("example.com", rec::encode_domain(dom));
  REQUIRE(d);
  CHECK(d->name == "example.com");
  CHECK(d->status == dir::Status::Inactive);
  CHECK(d->allowed_services == "+imap:ALL");

  const std::vector<std::string> targets{"a@x.org", "b@y.org"};
  auto a = rec::decode_alias("list@x.org", rec::encode_alias(targets));
  REQUIRE(a);
  CHECK(*a == targets);
}

TEST_CASE("damaged records are errors, never crashes") {
  const std::string good = rec::encode_user(sample_user());
  // Every truncation.
  for (size_t n = 0; n < good.size(); ++n) {
    auto d = rec::decode_user("alice@example.com", good.substr(0, n));
    INFO("length " << n);
    REQUIRE_FALSE(d);
    CHECK(d.error().kind == common::ErrorKind::Internal);
  }
  // Trailing garbage, a wrong tag, an unknown status, unknown flag bits.
  CHECK_FALSE(rec::decode_user("alice@example.com", good + "x"));
  std::string bad = good;
  bad[0] = static_cast<char>(rec::kDomainV1);
  CHECK_FALSE(rec::decode_user("alice@example.com", bad));
  bad = good;
  bad[1] = 9;
  CHECK_FALSE(rec::decode_user("alice@example.com", bad));
  bad = good;
  bad[2] = 0x7f;
  CHECK_FALSE(rec::decode_user("alice@example.com", bad));
  // A forged huge length and a forged huge list count.
  bad = good.substr(0, 3) + std::string("\xff\xff\xff\xff\x0f", 5) + good.substr(4);
  CHECK_FALSE(rec::decode_user("alice@example.com", bad));
  std::string alias = rec::encode_alias({"a@x"});
  alias[1] = static_cast<char>(0xff);
  CHECK_FALSE(rec::decode_alias("k", alias + std::string("\xff\xff\xff\x7f", 4)));
  // An over-long varint.
  CHECK_FALSE(rec::decode_alias("k", std::string(1, static_cast<char>(rec::kAliasV1)) + std::string(12, '\x80')));
  // A key that is not uid@domain.
  CHECK_FALSE(rec::decode_user("nodomain", good));
  // Every single-byte change either decodes (a different but valid record) or fails cleanly.
  for (size_t i = 0; i < good.size(); ++i) {
    std::string flip = good;
    flip[i] = static_cast<char>(flip[i] ^ 0x5a);
    (void)rec::decode_user("alice@example.com", flip);
  }
  CHECK_FALSE(rec::decode_domain("x", ""));
  CHECK_FALSE(rec::decode_domain("x", rec::encode_domain({"x"}) + std::string(1, '\0')));
}
