// kept_memory_test.cpp: argon2id checks in a thread's kept memory area (libargon2) give the same
// verdicts as libsodium on libsodium's hashes, leave the area wiped, and hand every hash they do
// not fit (another memory cost, argon2i, p > 1, a damaged string, another thread) to libsodium.
#include "authserv/password/kept_memory.hpp"

#include <catch2/catch.hpp>

#include <sodium.h>

#include <algorithm>
#include <string>
#include <thread>
#include <vector>

#include "authserv/password/password.hpp"

namespace pw = authserv::password;
using pw::KeptHashMemory;
using pw::Verdict;

namespace {

constexpr size_t kMem = size_t{8} << 20;  // cheap enough for sanitizer builds

bool wiped(const KeptHashMemory& kept) {
  const auto a = kept.area();
  return std::all_of(a.begin(), a.end(), [](unsigned char c) { return c == 0; });
}

std::string hash(const std::string& password, uint64_t ops = 1, size_t mem = kMem) {
  auto h = pw::hash_argon2id(password, pw::Argon2Cost{ops, mem});
  REQUIRE(h);
  return *h;
}

}  // namespace

TEST_CASE("in a kept area, libsodium's argon2id hashes verify as libsodium verifies them, and the area is wiped") {
  REQUIRE(sodium_init() >= 0);
  const std::string one = hash("correct horse"), two = hash("battery staple", 2), empty = hash("");
  KeptHashMemory kept(kMem);
  REQUIRE(kept.ok());
  REQUIRE(KeptHashMemory::current() == &kept);
  CHECK(wiped(kept));
  CHECK(pw::verify("correct horse", one) == Verdict::Match);
  CHECK(kept.hashes() == 1);
  CHECK(wiped(kept));
  CHECK(pw::verify("correct horsE", one) == Verdict::Mismatch);
  CHECK(pw::verify("", one) == Verdict::Mismatch);
  CHECK(pw::verify("battery staple", two) == Verdict::Match);  // t=2
  CHECK(pw::verify("battery stapler", two) == Verdict::Mismatch);
  CHECK(pw::verify("", empty) == Verdict::Match);
  CHECK(pw::verify("x", empty) == Verdict::Mismatch);
  CHECK(kept.hashes() == 7);
  CHECK(wiped(kept));
  // Many passwords: never a match for the wrong one, always for the right one.
  for (int i = 0; i < 6; ++i) {
    std::string p(1 + randombytes_uniform(40), 'a');
    for (auto& c : p) c = static_cast<char>('!' + randombytes_uniform(94));  // printable ASCII
    const std::string stored = hash(p);
    CHECK(pw::verify(p, stored) == Verdict::Match);
    std::string q = p;
    q[randombytes_uniform(static_cast<uint32_t>(q.size()))] ^= 1;
    CHECK(pw::verify(q, stored) == Verdict::Mismatch);
  }
  CHECK(kept.hashes() == 19);
  // SASLprep: a hash of the prepared form matches the unprepared spelling, through the kept area.
  const std::string ix = hash("IX");
  CHECK(pw::verify("I\xC2\xAD" "X", ix) == Verdict::Match);
  CHECK(kept.hashes() == 20);
}

TEST_CASE("hashes the kept area does not fit, or damaged ones, get libsodium's verdicts") {
  REQUIRE(sodium_init() >= 0);
  const std::string stored = hash("pw");
  REQUIRE(stored.find(",p=1$") != std::string::npos);
  auto edited = [&](std::string_view from, std::string_view to) {
    std::string s = stored;
    const auto at = s.find(from);
    REQUIRE(at != std::string::npos);
    return s.replace(at, from.size(), to);
  };
  const std::vector<std::string> odd{
      hash("pw", 1, kMem * 2),                 // another memory cost
      edited(",p=1$", ",p=2$"),                // two lanes (libargon2 would start a thread)
      edited("$v=19$", "$v=16$"),              // another version
      edited("m=8192,", "m=8192,x=1,"),        // a parameter we do not know
      stored.substr(0, stored.size() - 5),     // a shortened hash
      stored.substr(0, stored.size() - 1) + "*",  // not base64
      stored + "A",                            // a length base64 cannot have
      edited("$argon2id$", "$argon2i$"),       // argon2i: never the kept area
      stored.substr(0, stored.rfind('$')),     // no hash at all
  };
  // What libsodium alone says, on a thread without an area.
  std::vector<Verdict> libsodium(odd.size());
  std::thread([&] {
    REQUIRE(KeptHashMemory::current() == nullptr);
    for (size_t i = 0; i < odd.size(); ++i) libsodium[i] = pw::verify("pw", odd[i]);
  }).join();
  KeptHashMemory kept(kMem);
  REQUIRE(kept.ok());
  for (size_t i = 0; i < odd.size(); ++i) {
    INFO(odd[i]);
    CHECK(pw::verify("pw", odd[i]) == libsodium[i]);
    // Only the other cost is a real hash of "pw".
    CHECK((pw::verify("pw", odd[i]) == Verdict::Match) == (i == 0));
  }
  CHECK(kept.hashes() <= 4);  // at most the shortened hash, twice (libsodium takes it as well)
  const auto before = kept.hashes();
  CHECK(pw::verify("pw", stored) == Verdict::Match);
  CHECK(kept.hashes() == before + 1);
  CHECK(wiped(kept));

  // Another thread has no area: libsodium there, and this area is not touched.
  Verdict elsewhere = Verdict::Malformed;
  std::thread([&] { elsewhere = pw::verify("pw", stored); }).join();
  CHECK(elsewhere == Verdict::Match);
  CHECK(kept.hashes() == before + 1);
}

TEST_CASE("the area belongs to its thread while it lives") {
  REQUIRE(sodium_init() >= 0);
  const std::string stored = hash("pw");
  CHECK(KeptHashMemory::current() == nullptr);
  {
    KeptHashMemory kept(kMem);
    REQUIRE(kept.ok());
    CHECK(pw::verify("pw", stored) == Verdict::Match);
    CHECK(kept.hashes() == 1);
  }
  CHECK(KeptHashMemory::current() == nullptr);
  CHECK(pw::verify("pw", stored) == Verdict::Match);  // libsodium again
}
