// lookup_cache_test.cpp: the lookup cache expires by TTL and stays within its entry and byte bounds,
// evicting the least recently used.
#include <catch2/catch.hpp>

#include <string>

#include "common/authclient/lookup_cache.hpp"

using common::authclient::LookupCache;
using namespace std::chrono_literals;
using TP = std::chrono::steady_clock::time_point;

TEST_CASE("entries expire at their TTL", "[cache]") {
  LookupCache<std::string> cache(10, 1 << 20);
  TP t0{};
  cache.put("alice", "store1", 6, t0 + 30s);
  CHECK(cache.get("alice", t0) == "store1");
  CHECK(cache.get("alice", t0 + 29s) == "store1");
  CHECK_FALSE(cache.get("alice", t0 + 30s));
  CHECK(cache.size() == 0);  // dropped when found expired
  CHECK(cache.bytes() == 0);
  CHECK_FALSE(cache.get("bob", t0));
}

TEST_CASE("the least recently used entry goes first when the entry bound is reached", "[cache]") {
  LookupCache<int> cache(3, 1 << 20);
  TP t0{}, later = t0 + 1h;
  cache.put("a", 1, 0, later);
  cache.put("b", 2, 0, later);
  cache.put("c", 3, 0, later);
  REQUIRE(cache.get("a", t0) == 1);  // "b" is now the oldest
  cache.put("d", 4, 0, later);
  CHECK(cache.size() == 3);
  CHECK_FALSE(cache.get("b", t0));
  CHECK(cache.get("a", t0) == 1);
  CHECK(cache.get("c", t0) == 3);
  CHECK(cache.get("d", t0) == 4);
  // Replacing a key keeps one entry and the new value.
  cache.put("a", 10, 0, later);
  CHECK(cache.size() == 3);
  CHECK(cache.get("a", t0) == 10);
}

TEST_CASE("the byte bound holds however large the values are", "[cache]") {
  LookupCache<std::string> cache(1000, 4096);
  TP t0{}, later = t0 + 1h;
  for (int i = 0; i < 100; ++i) {
    std::string v(1000, 'x');
    cache.put("user" + std::to_string(i), v, v.size(), later);
    CHECK(cache.bytes() <= 4096);
  }
  CHECK(cache.size() == 3);  // each entry is ~1.1 KB with its key and bookkeeping
  CHECK(cache.get("user99", t0));
  CHECK_FALSE(cache.get("user0", t0));
  // A value larger than the whole budget is not cached and evicts nothing.
  cache.put("huge", std::string(5000, 'y'), 5000, later);
  CHECK_FALSE(cache.get("huge", t0));
  CHECK(cache.size() == 3);
  cache.clear();
  CHECK(cache.size() == 0);
  CHECK(cache.bytes() == 0);
}

TEST_CASE("a zero-entry cache caches nothing", "[cache]") {
  LookupCache<int> cache(0, 1 << 20);
  cache.put("a", 1, 0, TP{} + 1h);
  CHECK_FALSE(cache.get("a", TP{}));
}
