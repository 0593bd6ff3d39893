// calibrate_test.cpp: the argon2id calibration against a modelled host (time linear in passes and
// memory), and once against the real one with a tiny budget.
#include "authserv/password/calibrate.hpp"

#include <catch2/catch.hpp>

using namespace authserv::password;
using namespace std::chrono_literals;

namespace {
// microseconds per pass per MiB
HashTimer model(double us_per_pass_mib, int* calls = nullptr) {
  return [=](const Argon2Cost& c) {
    if (calls) ++*calls;
    return std::chrono::microseconds(static_cast<int64_t>(us_per_pass_mib * static_cast<double>(c.ops) *
                                                          static_cast<double>(c.mem_bytes >> 20)));
  };
}
}  // namespace

TEST_CASE("a fast host gets the full memory and as many passes as fit the target") {
  CalibrationRequest req;  // 50 ms, 64 MiB
  int calls = 0;
  auto c = calibrate_argon2id(req, model(100, &calls));  // 6.4 ms per pass at 64 MiB
  REQUIRE(c);
  CHECK(c->cost.mem_bytes == size_t{64} << 20);
  CHECK(c->cost.ops == 7);  // 44.8 ms; 8 passes would be 51.2
  CHECK(c->measured <= 50ms);
  CHECK_FALSE(c->below_target);
  CHECK(calls <= 4);
}

TEST_CASE("a slow host scales the memory down to fit one pass, never below the floor") {
  CalibrationRequest req;
  auto c = calibrate_argon2id(req, model(1000, nullptr));  // 64 ms per pass at 64 MiB
  REQUIRE(c);
  CHECK(c->cost.mem_bytes == size_t{50} << 20);
  CHECK(c->cost.ops == 1);
  CHECK(c->measured == 50ms);
  auto slow = calibrate_argon2id(req, model(10000, nullptr));  // even 32 MiB takes 320 ms
  REQUIRE(slow);
  CHECK(slow->below_target);
  CHECK(slow->cost.mem_bytes >= req.min_mem_bytes);
}

TEST_CASE("bad requests are refused, the real host gives a usable cost") {
  CalibrationRequest bad;
  bad.target = 0ms;
  CHECK_FALSE(calibrate_argon2id(bad, model(100)));
  CalibrationRequest upside_down;
  upside_down.max_mem_bytes = size_t{1} << 20;
  CHECK_FALSE(calibrate_argon2id(upside_down, model(100)));

  CalibrationRequest tiny;
  tiny.target = 20ms;
  tiny.max_mem_bytes = size_t{1} << 20;
  tiny.min_mem_bytes = size_t{256} << 10;
  auto real = calibrate_argon2id(tiny);
  REQUIRE(real);
  CHECK(real->cost.ops >= 1);
  CHECK(real->cost.mem_bytes >= tiny.min_mem_bytes);
  CHECK(real->cost.mem_bytes <= tiny.max_mem_bytes);
  CHECK(hash_argon2id("x", real->cost));
}

TEST_CASE("hash_memory: both ways are measured on the real host, and kept wins only by a tenth") {
  const Argon2Cost cost{1, size_t{4} << 20};
  auto choice = compare_hash_memory(cost);
  CHECK(choice.per_hash.count() > 0);
  CHECK(choice.kept.count() > 0);  // the kept area was used (it counts its hashes)
  HashMemoryChoice close{std::chrono::microseconds(1000), std::chrono::microseconds(950)};
  CHECK_FALSE(close.keep());
  HashMemoryChoice clear{std::chrono::microseconds(1000), std::chrono::microseconds(800)};
  CHECK(clear.keep());
  HashMemoryChoice unmeasured{std::chrono::microseconds(1000), std::chrono::microseconds(0)};
  CHECK_FALSE(unmeasured.keep());
}
