// search_cache_test.cpp: the HeaderCache behind header SEARCHes: the same answers as without it,
// a bound it keeps by evicting, new deliveries found, bodies shared by messages with their own
// Delivered-To, another environment not served from it, many threads at once, the config key and
// the metrics.
#include <atomic>
#include <thread>

#include "common/config/config.hpp"
#include "common/metrics/metrics.hpp"
#include "store/config.hpp"
#include "tests/store/search/search_env.hpp"

namespace {

using store::search::HeaderCache;
using store::search::Kind;
using store::search::Program;
using store::search::SearchKey;
using test::SearchEnv;
using namespace test::search_keys;
using U = std::vector<uint32_t>;


std::string message(int n, const std::string& extra = "") {
  return "Return-Path: <s" + std::to_string(n) + "@example.org>\r\nFrom: Sender " + std::to_string(n) + " <s" +
         std::to_string(n) + "@example.org>\r\nTo: alice@example.com\r\nSubject: =?UTF-8?Q?caf=C3=A9_number_" +
         std::to_string(n) + "?=\r\nDate: Mon, 7 Dec 2026 10:00:00 +0000\r\n" + extra + "\r\nbody " +
         std::to_string(n) + "\r\n";
}

void fill(SearchEnv& env, int count, int first = 1) {
  std::vector<SearchEnv::Message> batch;
  for (int n = first; n < first + count; ++n) batch.push_back({message(n), n % 3 == 0 ? store::kSeen : 0u, {}, 1700000000});
  env.add(batch);
}

// The programs every test below compares with and without the cache.
std::vector<Program> programs() {
  return {
      {str(Kind::From, "s7@")},
      {str(Kind::From, "SENDER 1")},
      {str(Kind::Subject, "CAFÉ NUMBER 2")},
      {header("Delivered-To", "alice")},
      {header("date", "")},
      {header("X-Missing", "")},
      {all_of(2), key(Kind::Unseen), str(Kind::From, "example.org")},
      {key(Kind::Or), str(Kind::To, "nobody"), str(Kind::Text, "number 1")},
      {key(Kind::Not), str(Kind::Subject, "5")},
      {[] {
        SearchKey k{Kind::SentOn};
        k.day = store::search::days_from_civil(2026, 12, 7);
        return k;
      }()},
  };
}

}  // namespace

TEST_CASE("header cache: the same answers as without it, cold and warm, and hits once warm", "[search]") {
  SearchEnv env;
  fill(env, 60);
  HeaderCache cache(8 << 20);
  for (const Program& p : programs()) {
    auto plain = env.search(p);
    REQUIRE(plain);
    auto cold = env.search(p, 1700000000, &cache);
    auto warm = env.search(p, 1700000000, &cache);
    REQUIRE(cold);
    REQUIRE(warm);
    CHECK(cold->uids == plain->uids);
    CHECK(warm->uids == plain->uids);
    CHECK(warm->highest_modseq == plain->highest_modseq);
    // Warm, a header key reads no header: every one it needs is in the cache.
    CHECK(warm->stats.headers == 0);
    CHECK(warm->stats.structures == warm->stats.bodies);
  }
  auto s = cache.stats();
  CHECK(s.entries == 60);
  CHECK(s.misses == 60);  // each header decoded once, by the first program
  CHECK(s.hits > 60 * 10);
  CHECK(s.evictions == 0);
  CHECK(s.bytes <= cache.max_bytes());
  CHECK(env.uids({str(Kind::From, "s7@")}, 1700000000, &cache) == U{7});
}

TEST_CASE("header cache: UNSEEN FROM x looks at the headers of unseen messages only", "[search]") {
  SearchEnv env;
  fill(env, 30);  // every third is seen: 20 unseen
  HeaderCache cache(8 << 20);
  for (const Program& p : {Program{all_of(2), key(Kind::Unseen), str(Kind::From, "s4@")},
                           Program{all_of(2), str(Kind::From, "s4@"), key(Kind::Unseen)}}) {
    auto r = env.search(p, 1700000000, &cache);
    REQUIRE(r);
    CHECK(r->uids == U{4});
    CHECK(r->stats.messages == 30);
    CHECK(r->stats.headers + r->stats.header_hits == 20);
  }
  CHECK(cache.stats().entries == 20);
}

TEST_CASE("header cache: bounded in bytes, evicts and still hits over a mailbox bigger than it", "[search]") {
  SearchEnv env;
  fill(env, 200);
  // Measure one entry, then give the cache room for about 50.
  size_t one = 0;
  {
    HeaderCache probe(1 << 20);
    REQUIRE(env.uids({str(Kind::From, "s1@")}, 1700000000, &probe) == U{1});
    one = probe.stats().bytes / 200;
    REQUIRE(one > 100);
  }
  HeaderCache cache(one * 50 + one / 2);
  for (int round = 0; round < 4; ++round) {
    auto from = env.search({str(Kind::From, "s17@")}, 1700000000, &cache);
    REQUIRE(from);
    CHECK(from->uids == U{17});
    CHECK(env.uids({str(Kind::Subject, "number 19")}, 1700000000, &cache) ==
          U{19, 190, 191, 192, 193, 194, 195, 196, 197, 198, 199});
    const auto s = cache.stats();
    CHECK(s.bytes <= cache.max_bytes());
    CHECK(s.entries <= 52);
    CHECK(s.entries >= 45);
    // Full, it takes one miss in eight, in the place of another: the mailbox, four times the
    // budget, is still found from the cache in good part (strict LRU would find none of it).
    if (round > 0) {
      CHECK(s.evictions > 0);
      CHECK(s.not_admitted > 0);
      CHECK(from->stats.header_hits >= 25);
      CHECK(from->stats.header_hits + from->stats.headers == 200);
    }
  }

  // A header bigger than the whole budget is decoded but not kept.
  HeaderCache tiny(one / 2);
  CHECK(env.uids({str(Kind::From, "s5@")}, 1700000000, &tiny) == U{5});
  CHECK(tiny.stats().entries == 0);
  CHECK(tiny.stats().bytes == 0);
  // 0 keeps nothing, and is not bound to any environment.
  HeaderCache none(0);
  CHECK(env.uids({str(Kind::From, "s5@")}, 1700000000, &none) == U{5});
  CHECK(none.stats().entries == 0);
}

TEST_CASE("header cache: a message delivered after a search is found by the next one", "[search]") {
  SearchEnv env;
  fill(env, 20);
  HeaderCache cache(8 << 20);
  CHECK(env.uids({str(Kind::From, "newcomer@")}, 1700000000, &cache).empty());
  CHECK(env.uids({str(Kind::From, "s3@")}, 1700000000, &cache) == U{3});
  const uint32_t uid = env.add(
      "Return-Path: <newcomer@example.net>\r\nFrom: Newcomer <newcomer@example.net>\r\nSubject: s3@ lookalike\r\n"
      "\r\nhello\r\n");
  CHECK(env.uids({str(Kind::From, "newcomer@")}, 1700000000, &cache) == U{uid});
  CHECK(env.uids({str(Kind::From, "s3@")}, 1700000000, &cache) == U{3});
  CHECK(env.uids({str(Kind::Subject, "s3@")}, 1700000000, &cache) == U{uid});
  // A flag change rewrites the message record, not its body: the entry stays right.
  env.touch(3);
  CHECK(env.uids({all_of(2), key(Kind::Seen), str(Kind::From, "s3@")}, 1700000000, &cache) == U{3});
}

TEST_CASE("header cache: messages sharing a body keep their own Delivered-To", "[search]") {
  SearchEnv env;
  fill(env, 3);
  HeaderCache cache(8 << 20);
  CHECK(env.uids({str(Kind::From, "s2@")}, 1700000000, &cache) == U{2});
  const uint32_t copy = env.add_sharing(2, "Delivered-To: bob@example.com\r\n");
  const uint32_t dated = env.add_sharing(2, "Delivered-To: carol@example.com\r\nDate: Tue, 1 Jan 2030 00:00:00 +0000\r\n");
  for (HeaderCache* c : {static_cast<HeaderCache*>(nullptr), &cache, &cache}) {
    CHECK(env.uids({str(Kind::From, "s2@")}, 1700000000, c) == U{2, copy, dated});
    CHECK(env.uids({header("Delivered-To", "bob@")}, 1700000000, c) == U{copy});
    CHECK(env.uids({header("Delivered-To", "alice@")}, 1700000000, c) == U{1, 2, 3});
    CHECK(env.uids({str(Kind::Text, "carol@")}, 1700000000, c) == U{dated});
    // The first Date: field decides, the prefix's before the body's.
    SearchKey on{Kind::SentOn};
    on.day = store::search::days_from_civil(2030, 1, 1);
    CHECK(env.uids({on}, 1700000000, c) == U{dated});
  }
  CHECK(cache.stats().entries == 3);  // one per body, not per message
}

TEST_CASE("header cache: one environment's cache does not answer for another", "[search]") {
  // The same body ids in both, with other senders: a cache keyed by body id alone would lie.
  SearchEnv first, second;
  fill(first, 10, 1);
  fill(second, 10, 101);
  HeaderCache cache(8 << 20);
  CHECK(first.uids({str(Kind::From, "s4@")}, 1700000000, &cache) == U{4});
  CHECK(second.uids({str(Kind::From, "s4@")}, 1700000000, &cache).empty());
  CHECK(second.uids({str(Kind::From, "s104@")}, 1700000000, &cache) == U{4});
  auto r = second.search({str(Kind::From, "s104@")}, 1700000000, &cache);
  REQUIRE(r);
  CHECK(r->stats.header_hits == 0);
  CHECK(cache.stats().entries == 10);
}

TEST_CASE("header cache: read threads share one cache while it evicts", "[search]") {
  SearchEnv env;
  fill(env, 120);
  size_t one = 0;
  {
    HeaderCache probe(1 << 20);
    env.uids({str(Kind::From, "x")}, 1700000000, &probe);
    one = probe.stats().bytes / 120;
  }
  HeaderCache cache(one * 40);
  const std::vector<Program> ps = programs();
  std::vector<U> expected;
  for (const Program& p : ps) expected.push_back(env.uids(p));
  std::atomic<int> wrong{0}, failed{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 30; ++i) {
        const size_t k = static_cast<size_t>(t * 7 + i) % ps.size();
        auto txn = common::lmdb::Txn::begin(env.env(), false);
        if (!txn) {
          ++failed;
          continue;
        }
        auto r = store::search::evaluate(*txn, env.dbs(), env.mailbox_id(), ps[k], 1700000000, {}, &cache);
        if (!r) {
          ++failed;
        } else if (r->uids != expected[k]) {
          ++wrong;
        }
      }
    });
  }
  for (auto& th : threads) th.join();
  CHECK(failed == 0);
  CHECK(wrong == 0);
  const auto s = cache.stats();
  CHECK(s.bytes <= cache.max_bytes());
  CHECK(s.hits > 0);
  CHECK(s.evictions > 0);
}

TEST_CASE("header cache: [mailstore] search_cache_size and the metrics", "[search]") {
  auto read = [](const std::string& extra) {
    auto doc = common::config::Document::parse(
        "[lmtp]\nplaintext = true\n[store]\ndir = \"/var/lib/postern/store\"\n[mailstore]\n" + extra, "store.toml");
    store::Config config;
    store::read_config(doc.root(), config);
    doc.finish();
    return std::make_pair(doc.ok() ? "" : doc.problems_text(), config.mailstore.search_cache_size);
  };
  CHECK(read("") == std::make_pair(std::string(), uint64_t{64} << 20));
  CHECK(read("search_cache_size = \"256M\"\n") == std::make_pair(std::string(), uint64_t{256} << 20));
  CHECK(read("search_cache_size = 0\n") == std::make_pair(std::string(), uint64_t{0}));
  CHECK(read("search_cache_size = \"1T\"\n").first.find("search_cache_size") != std::string::npos);
  CHECK(read("search_cache_size = -1\n").first.find("search_cache_size") != std::string::npos);

  SearchEnv env;
  fill(env, 5);
  HeaderCache cache(1 << 20);
  env.uids({str(Kind::From, "s1@")}, 1700000000, &cache);
  env.uids({str(Kind::From, "s1@")}, 1700000000, &cache);
  const std::string text = common::metrics::default_registry().render();
  CHECK(text.find("postern_store_search_header_cache_lookups_total{result=\"hit\"}") != std::string::npos);
  CHECK(text.find("postern_store_search_header_cache_lookups_total{result=\"miss\"}") != std::string::npos);
  CHECK(text.find("postern_store_search_header_cache_bytes") != std::string::npos);
  CHECK(text.find("postern_store_search_header_cache_evictions_total") != std::string::npos);
}
