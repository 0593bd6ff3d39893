// credential_cache_test.cpp: the verified-credential cache alone: hits only for the exact facts
// verified, nothing for a wrong password, a changed hash or stamp, the TTL, a full cache.
#include "authserv/service/credential_cache.hpp"

#include <catch2/catch.hpp>
#include <string>

using authserv::service::CredentialCache;
using authserv::service::CredentialFacts;
using namespace std::chrono_literals;

TEST_CASE("a remembered password hits, a different one, another user or a changed hash misses") {
  CredentialCache cache(100, 3600s);
  const auto t0 = CredentialCache::Clock::now();
  CredentialFacts ok{"alice@example.com", "correct horse", "{ARGON2}$argon2id$old", ""};
  REQUIRE_FALSE(cache.verified(ok, t0));  // nothing remembered yet
  cache.remember(ok, t0);
  CHECK(cache.verified(ok, t0 + 1s));
  CHECK_FALSE(cache.verified({"alice@example.com", "correct horsE", ok.stored, ""}, t0 + 1s));
  CHECK_FALSE(cache.verified({"alice@example.com", "", ok.stored, ""}, t0 + 1s));
  CHECK_FALSE(cache.verified({"bob@example.com", "correct horse", ok.stored, ""}, t0 + 1s));
  // A password change stores a new hash: the old password's tag no longer matches.
  CHECK_FALSE(cache.verified({"alice@example.com", "correct horse", "{ARGON2}$argon2id$new", ""}, t0 + 1s));
  // LDAP: a modifyTimestamp that moved.
  CHECK_FALSE(cache.verified({"alice@example.com", "correct horse", ok.stored, "20261207120000Z"}, t0 + 1s));
  // Length-prefixed fields: moving bytes between fields changes the tag.
  CHECK_FALSE(cache.verified({"alice@example.co", "mcorrect horse", ok.stored, ""}, t0 + 1s));
  // The misses above did not disturb the entry.
  CHECK(cache.verified(ok, t0 + 2s));
  cache.forget("alice@example.com");
  CHECK_FALSE(cache.verified(ok, t0 + 2s));
}

TEST_CASE("entries expire after the TTL, and a TTL of 0 turns the cache off") {
  CredentialCache cache(100, 60s);
  const auto t0 = CredentialCache::Clock::now();
  CredentialFacts ok{"alice@example.com", "pw", "{SSHA512}x", ""};
  cache.remember(ok, t0);
  CHECK(cache.verified(ok, t0 + 59s));
  CHECK_FALSE(cache.verified(ok, t0 + 60s));
  CHECK(cache.size() == 0);  // the expired entry went on the lookup

  CredentialCache off(100, 0s);
  CHECK_FALSE(off.enabled());
  off.remember(ok, t0);
  CHECK_FALSE(off.verified(ok, t0));
  CHECK(off.size() == 0);
}

TEST_CASE("a full cache drops the oldest entry and stays correct") {
  CredentialCache cache(3, 3600s);
  const auto t0 = CredentialCache::Clock::now();
  std::string a = "a@x", b = "b@x", c = "c@x", d = "d@x";
  std::string pa = "pw-a", pb = "pw-b", pc = "pw-c", pd = "pw-d";
  cache.remember({a, pa, "h", ""}, t0);
  cache.remember({b, pb, "h", ""}, t0 + 1s);
  cache.remember({c, pc, "h", ""}, t0 + 2s);
  cache.remember({d, pd, "h", ""}, t0 + 3s);
  CHECK(cache.size() == 3);
  CHECK_FALSE(cache.verified({a, pa, "h", ""}, t0 + 4s));  // oldest out
  CHECK(cache.verified({b, pb, "h", ""}, t0 + 4s));
  CHECK(cache.verified({d, pd, "h", ""}, t0 + 4s));
  CHECK_FALSE(cache.verified({d, pa, "h", ""}, t0 + 4s));
  // Remembering again moves a user to the front and replaces its tag (one entry per user).
  std::string pb2 = "pw-b2";
  cache.remember({b, pb2, "h", ""}, t0 + 5s);
  CHECK(cache.size() == 3);
  CHECK_FALSE(cache.verified({b, pb, "h", ""}, t0 + 6s));
  CHECK(cache.verified({b, pb2, "h", ""}, t0 + 6s));
  // Bounded memory: a flood of distinct users never grows it past the entry bound.
  for (int i = 0; i < 1000; ++i) {
    std::string u = "flood" + std::to_string(i) + "@x";
    cache.remember({u, "pw", "h", ""}, t0 + 7s);
  }
  CHECK(cache.size() == 3);
  CHECK(cache.memory_bytes() <= 3 * (CredentialCache::kEntryBytes + 20));
}

TEST_CASE("a 100 KiB password is tagged like any other and never matches a short one") {
  CredentialCache cache(10, 3600s);
  const auto t0 = CredentialCache::Clock::now();
  std::string big(100 * 1024, 'p');
  cache.remember({"alice@x", big, "h", ""}, t0);
  CHECK(cache.verified({"alice@x", big, "h", ""}, t0));
  CHECK_FALSE(cache.verified({"alice@x", big.substr(0, 1024), "h", ""}, t0));
}
