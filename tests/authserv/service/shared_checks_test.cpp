// shared_checks_test.cpp: identical password attempts in flight share one check: the first leads,
// later ones wait for its verdict, a finished tag is free again, and the waiters are bounded.
#include "authserv/service/shared_checks.hpp"

#include <catch2/catch.hpp>
#include <string>
#include <vector>

using authserv::service::CredentialCache;
using authserv::service::CredentialFacts;
using authserv::service::SharedChecks;
using authserv::service::SharedVerdict;
using namespace std::chrono_literals;

TEST_CASE("the first attempt leads, identical ones wait for its verdict, other tags lead their own") {
  CredentialCache cache(10, 3600s);
  SharedChecks checks(8);
  const auto alice = cache.tag(CredentialFacts{"alice@example.com", "pw", "{ARGON2}x", ""});
  const auto guess = cache.tag(CredentialFacts{"alice@example.com", "pW", "{ARGON2}x", ""});
  std::vector<std::string> heard;
  auto waiter = [&](std::string who) {
    return [&heard, who](const SharedVerdict& v) {
      heard.push_back(who + (v.kind == SharedVerdict::Kind::Match ? ":match" : ":" + v.reason));
    };
  };
  REQUIRE(checks.join(alice, waiter("lead")) == SharedChecks::Joined::Lead);  // not stored
  CHECK(checks.join(alice, waiter("second")) == SharedChecks::Joined::Waiting);
  CHECK(checks.join(alice, waiter("third")) == SharedChecks::Joined::Waiting);
  // A different password is a different check: it never gets alice's verdict.
  CHECK(checks.join(guess, waiter("guess")) == SharedChecks::Joined::Lead);
  CHECK(checks.in_progress() == 2);
  CHECK(checks.waiting() == 2);
  CHECK(heard.empty());

  checks.finish(alice, {SharedVerdict::Kind::Match, ""});
  CHECK(heard == std::vector<std::string>{"second:match", "third:match"});
  CHECK(checks.waiting() == 0);
  // Finished: the next identical attempt leads a check of its own (it would have hit the cache).
  CHECK(checks.join(alice, waiter("later")) == SharedChecks::Joined::Lead);
  checks.finish(alice, {SharedVerdict::Kind::Match, ""});
  CHECK(heard.size() == 2);

  CHECK(checks.join(guess, waiter("guess again")) == SharedChecks::Joined::Waiting);
  checks.finish(guess, {SharedVerdict::Kind::Mismatch, "wrong_password"});
  CHECK(heard.back() == "guess again:wrong_password");
  CHECK(checks.in_progress() == 0);
  checks.finish(guess, {SharedVerdict::Kind::Mismatch, "wrong_password"});  // a second finish is a no-op
  CHECK(heard.size() == 3);
}

TEST_CASE("beyond max_waiters an identical attempt is not joined and checks on its own") {
  CredentialCache cache(10, 3600s);
  SharedChecks checks(2);
  const auto tag = cache.tag(CredentialFacts{"bob@example.com", "guess", "{ARGON2}y", ""});
  int told = 0;
  auto count = [&](const SharedVerdict& v) { told += v.kind == SharedVerdict::Kind::TempFail ? 1 : 100; };
  REQUIRE(checks.join(tag, count) == SharedChecks::Joined::Lead);
  CHECK(checks.join(tag, count) == SharedChecks::Joined::Waiting);
  CHECK(checks.join(tag, count) == SharedChecks::Joined::Waiting);
  CHECK(checks.join(tag, count) == SharedChecks::Joined::Full);
  CHECK(checks.waiting() == 2);
  // A refused lead (hashing queue full) passes its temporary failure to those who waited for it.
  checks.finish(tag, {SharedVerdict::Kind::TempFail, "hashing queue full"});
  CHECK(told == 2);
  CHECK(checks.waiting() == 0);
}

TEST_CASE("tags are keyed per process: the same facts in two caches give unrelated tags") {
  CredentialCache one(10, 3600s), two(10, 3600s);
  const CredentialFacts f{"carol@example.com", "pw", "{ARGON2}z", ""};
  CHECK(one.tag(f) == one.tag(f));
  CHECK(one.tag(f) != two.tag(f));
}
