// search_measure_test.cpp: timed header SEARCHes (hidden, run with "[.measure]"): 200 messages with
// a real mail header each, 1,000 searches FROM x and UNSEEN FROM x, printed in microseconds,
// without and with the header cache. Run: store_search_measure_test "[.measure]"
#include <chrono>
#include <cstdio>
#include <string>

#include "tests/store/search/search_env.hpp"

using store::search::Kind;
using store::search::Program;
using store::search::SearchKey;

namespace test {

// A header as a list server and two relays leave it: about 2.5 KB, 20 fields, a DKIM signature.
inline std::string measured_message(int n) {
  std::string m;
  for (int hop = 0; hop < 3; ++hop) {
    m += "Received: from relay" + std::to_string(hop) + ".example.net (relay" + std::to_string(hop) +
         ".example.net [192.0.2." + std::to_string(10 + hop) +
         "])\r\n\tby mx.example.com (Postern) with ESMTPS id 4Xk" + std::to_string(n * 7 + hop) +
         "\r\n\tfor <alice@example.com>; Tue, 8 Dec 2026 00:" + std::to_string(10 + hop) + ":00 +0000\r\n";
  }
  m += "DKIM-Signature: v=1; a=rsa-sha256; c=relaxed/relaxed; d=lists.example.org; s=s2026;\r\n"
       "\th=from:to:cc:subject:date:message-id:list-id; bh=47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=;\r\n"
       "\tb=dzdVyOfAKCdLXdJOc9G2q8LoXSlEniSbav+yuU4zGeeruD00lszZVoG4ZHRNiYzR0LIcPvvoEh0jdGGnt\r\n"
       "\t1K3LzpzNiN6ye3C7TGSvPWJ3Kx9MwY7Gc0WmxR8yQ6sHgS8nPl4fTbAxbL3wqpF6GnJzI8LXe2Y7mSa\r\n";
  m += "From: =?UTF-8?Q?J=C3=BCrgen_Sender" + std::to_string(n % 20) + "?= <sender" + std::to_string(n % 20) +
       "@example.org>\r\n";
  m += "To: Alice Example <alice@example.com>, team <team@lists.example.org>\r\n";
  m += "Cc: Bob <bob@example.com>, =?ISO-8859-1?Q?Ren=E9?= <rene@example.fr>\r\n";
  m += "Subject: =?UTF-8?B?UmU6IFF1YXJ0ZXJseSByZXBvcnQg4oCU?= number " + std::to_string(n) +
       "\r\n\tand a folded second line\r\n";
  m += "Date: Mon, 7 Dec 2026 23:" + std::to_string(10 + n % 50) + ":00 +0100\r\n";
  m += "Message-ID: <" + std::to_string(n) + ".4a2f9@lists.example.org>\r\n";
  m += "In-Reply-To: <" + std::to_string(n - 1) + ".4a2f9@lists.example.org>\r\n";
  m += "References: <1.4a2f9@lists.example.org> <" + std::to_string(n - 1) + ".4a2f9@lists.example.org>\r\n";
  m += "List-Id: Team discussion <team.lists.example.org>\r\n";
  m += "List-Unsubscribe: <mailto:team-leave@lists.example.org>, <https://lists.example.org/u/team>\r\n";
  m += "Precedence: list\r\nMIME-Version: 1.0\r\n";
  m += "Content-Type: text/plain; charset=utf-8; format=flowed\r\nContent-Transfer-Encoding: 8bit\r\n";
  m += "X-Spam-Status: No, score=-1.2 required=5.0 tests=BAYES_00,DKIM_SIGNED,DKIM_VALID\r\n";
  m += "\r\nHello team,\r\n\r\nthe quarterly report is attached. Regards.\r\n";
  return m;
}

inline void fill_measured(SearchEnv& env, int count) {
  std::vector<SearchEnv::Message> batch;
  for (int n = 1; n <= count; ++n) batch.push_back({measured_message(n), n % 2 ? store::kSeen : 0u, {}, 1700000000});
  env.add(batch);
}

inline SearchKey text_key(Kind kind, std::string text) {
  SearchKey k;
  k.kind = kind;
  k.text = std::move(text);
  return k;
}

}  // namespace test

namespace {

// 1,000 searches of each program in one read transaction; with a cache, the first one fills it.
void measure(store::search::HeaderCache* cache) {
  test::SearchEnv env;
  test::fill_measured(env, 200);
  SearchKey unseen;
  unseen.kind = Kind::Unseen;
  SearchKey both;
  both.kind = Kind::And;
  both.operands = 2;
  const Program from{test::text_key(Kind::From, "sender8@")};
  const Program unseen_from{both, unseen, test::text_key(Kind::From, "sender8@")};
  for (const auto* p : {&from, &unseen_from}) {
    auto txn = common::lmdb::Txn::begin(env.env(), false);
    REQUIRE(txn);
    size_t found = 0;
    const auto start = std::chrono::steady_clock::now();
    for (int i = 0; i < 1000; ++i) {
      auto r = store::search::evaluate(*txn, env.dbs(), env.mailbox_id(), *p, 1700000000, {}, cache);
      REQUIRE(r);
      found = r->uids.size();
    }
    const auto us = std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::steady_clock::now() - start);
    std::printf("%s %s: 1000 searches in %lld us (%.1f us each), %zu found\n", cache ? "cached" : "uncached",
                p == &from ? "FROM" : "UNSEEN FROM", static_cast<long long>(us.count()), us.count() / 1000.0, found);
    CHECK(found == 10);
  }
  if (cache) {
    const auto s = cache->stats();
    std::printf("cache: %zu entries, %zu bytes (%zu a header), %llu hits, %llu misses\n", s.entries, s.bytes,
                s.entries ? s.bytes / s.entries : 0, static_cast<unsigned long long>(s.hits),
                static_cast<unsigned long long>(s.misses));
  }
}

}  // namespace

TEST_CASE("measure: 1,000 header searches over 200 messages, uncached", "[.measure]") { measure(nullptr); }

TEST_CASE("measure: 1,000 header searches over 200 messages, through the header cache", "[.measure]") {
  store::search::HeaderCache cache(64 << 20);
  measure(&cache);
}
