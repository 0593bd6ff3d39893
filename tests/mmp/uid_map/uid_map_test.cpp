// uid_map_test.cpp: mmp::UidMap (the selected mailbox's UIDs as runs) checked against a vector of
// UIDs doing the same things: numbering both ways, appends, removals, sequence ranges to UIDs.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cstdint>
#include <random>
#include <vector>

#include "mmp/uid_map.hpp"

namespace {

using Range = mmp::UidMap::Range;

std::vector<Range> to_ranges(const std::vector<uint32_t>& uids) {
  std::vector<Range> out;
  for (uint32_t u : uids) {
    if (!out.empty() && out.back().last + 1 == u) {
      out.back().last = u;
    } else {
      out.push_back({u, u});
    }
  }
  return out;
}

void same(const mmp::UidMap& map, const std::vector<uint32_t>& model) {
  REQUIRE(map.size() == model.size());
  CHECK(map.last_uid() == (model.empty() ? 0 : model.back()));
  CHECK(map.runs() == to_ranges(model).size());
  for (size_t i = 0; i < model.size(); ++i) {
    REQUIRE(map.uid_at(static_cast<uint32_t>(i + 1)) == model[i]);
    REQUIRE(map.seq_of(model[i]) == i + 1);
  }
  CHECK(map.uid_at(0) == 0);
  CHECK(map.uid_at(static_cast<uint32_t>(model.size() + 1)) == 0);
  // UIDs in the gaps and around are not there.
  const uint32_t top = model.empty() ? 10 : model.back() + 3;
  for (uint32_t u = 0; u <= top; ++u) {
    if (!std::binary_search(model.begin(), model.end(), u)) REQUIRE(map.seq_of(u) == 0);
  }
}

}  // namespace

TEST_CASE("UidMap numbers UIDs both ways as the vector does", "[mmp][uid_map]") {
  mmp::UidMap map;
  same(map, {});
  const std::vector<uint32_t> model{1, 2, 3, 7, 8, 20, 21, 22, 23, 40};
  map.assign(to_ranges(model));
  same(map, model);
  // Adjacent ranges given apart are one run; a range out of order is dropped.
  std::vector<Range> split{{1, 3}, {4, 6}, {10, 10}, {5, 9}};
  map.assign(split);
  same(map, {1, 2, 3, 4, 5, 6, 10});
  CHECK(map.runs() == 2);
}

TEST_CASE("UidMap appends, removes and maps sequence ranges", "[mmp][uid_map]") {
  mmp::UidMap map;
  std::vector<uint32_t> model;
  CHECK(map.push_back(5));
  CHECK(map.push_back(6));
  CHECK_FALSE(map.push_back(6));  // not above the last
  CHECK_FALSE(map.push_back(2));
  CHECK_FALSE(map.push_back(0));
  CHECK(map.push_back(9));
  model = {5, 6, 9};
  same(map, model);

  std::vector<uint32_t> gone{1, 6, 7};  // 1 and 7 are not held: ignored
  map.remove(gone);
  model = {5, 9};
  same(map, model);

  std::vector<Range> out;
  map.uids_of(1, 2, out);
  REQUIRE(out.size() == 2);
  CHECK((out[0].first == 5 && out[0].last == 5 && out[1].first == 9 && out[1].last == 9));
  out.clear();
  map.uids_of(2, 100, out);  // clipped to the size
  REQUIRE(out.size() == 1);
  CHECK((out[0].first == 9 && out[0].last == 9));
  out.clear();
  map.uids_of(3, 4, out);
  CHECK(out.empty());

  // The largest UID there is, removed and appended.
  map.assign(std::vector<Range>{{UINT32_MAX - 2, UINT32_MAX}});
  std::vector<uint32_t> top{UINT32_MAX};
  map.remove(top);
  CHECK(map.size() == 2);
  CHECK(map.last_uid() == UINT32_MAX - 1);
  CHECK(map.push_back(UINT32_MAX));
  CHECK(map.seq_of(UINT32_MAX) == 3);
}

TEST_CASE("UidMap follows a vector through random appends and removals", "[mmp][uid_map]") {
  std::mt19937 rng(20261207);
  for (int round = 0; round < 40; ++round) {
    std::vector<uint32_t> model;
    uint32_t next = 1 + rng() % 5;
    for (int i = 0; i < 300; ++i) {
      model.push_back(next);
      next += (rng() % 4 == 0) ? 1 + rng() % 6 : 1;
    }
    mmp::UidMap map;
    map.assign(to_ranges(model));
    same(map, model);
    for (int step = 0; step < 20; ++step) {
      if (rng() % 2) {
        std::vector<uint32_t> gone;
        for (uint32_t u : model) {
          if (rng() % 10 == 0) gone.push_back(u);
        }
        if (rng() % 3 == 0) gone.push_back(next + 100);  // not held
        map.remove(gone);
        std::vector<uint32_t> kept;
        std::set_difference(model.begin(), model.end(), gone.begin(), gone.end(), std::back_inserter(kept));
        model = kept;
      } else {
        next += rng() % 3;
        CHECK(map.push_back(next));
        model.push_back(next++);
      }
      same(map, model);
      // A random UID range gives the UIDs held in it, however wide.
      {
        const uint32_t a = rng() % (next + 10), b = (rng() % 8 == 0) ? UINT32_MAX : a + rng() % 100;
        std::vector<uint32_t> got, want;
        map.held(a, b, got);
        for (uint32_t u : model) {
          if (u >= a && u <= b) want.push_back(u);
        }
        REQUIRE(got == want);
      }
      // A random sequence range gives the UIDs of those positions.
      if (!model.empty()) {
        const uint32_t a = 1 + rng() % model.size(), b = a + rng() % 50;
        std::vector<Range> out;
        map.uids_of(a, b, out);
        std::vector<uint32_t> want(model.begin() + (a - 1), model.begin() + std::min<size_t>(b, model.size()));
        std::vector<uint32_t> got;
        for (const auto& r : out) {
          for (uint64_t u = r.first; u <= r.last; ++u) got.push_back(static_cast<uint32_t>(u));
        }
        REQUIRE(got == want);
      }
    }
  }
}

TEST_CASE("UidMap costs a few bytes for a mailbox without gaps", "[mmp][uid_map]") {
  mmp::UidMap map;
  map.assign(std::vector<Range>{{1, 100000}});
  CHECK(map.size() == 100000);
  CHECK(map.runs() == 1);
  CHECK(map.heap_bytes() <= 16);
  CHECK(map.uid_at(54321) == 54321);
}
