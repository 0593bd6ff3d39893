// calibrate.hpp: finding the argon2id cost that takes a target time on this host within a memory
// ceiling per hash (`postern-directory calibrate`). The hash is the cost of every uncached login,
// so it is measured, not guessed: the same cost takes 3x longer on a slow VM than on a laptop.
#pragma once

#include <chrono>
#include <cstddef>
#include <functional>
#include <string>

#include "authserv/password/password.hpp"
#include "common/result.hpp"

namespace authserv::password {

struct CalibrationRequest {
  std::chrono::milliseconds target{50};
  size_t max_mem_bytes = size_t{64} << 20;  // per hash; hash_threads of them may run at once
  size_t min_mem_bytes = size_t{19} << 20;  // OWASP's argon2id floor (19 MiB, t=2)
};

struct Calibration {
  Argon2Cost cost;
  std::chrono::microseconds measured{0};  // median of the final measurement
  bool below_target = false;  // even the smallest cost takes longer than the target
};

// How long one hash at `cost` takes; the default runs hash_argon2id three times and takes the
// median of its thread CPU time. Tests pass a model.
using HashTimer = std::function<std::chrono::microseconds(const Argon2Cost&)>;
HashTimer real_hash_timer();

// Memory first (it is what makes GPU guessing expensive): the ceiling, scaled down when one pass
// alone is over the target, never below the floor; then as many passes as fit the target.
common::Result<Calibration> calibrate_argon2id(const CalibrationRequest& request, const HashTimer& timer = real_hash_timer());

// [password] hash_memory: the same check at `cost` both ways on this host, each the median thread
// CPU time of three wrong-password verifications. per_hash: libsodium maps, faults in and unmaps
// the memory for every hash; kept: libargon2 in a KeptHashMemory the thread keeps. Which is
// cheaper depends on the host: libsodium's code is faster (AVX2), but on a VM the page work per
// hash can cost as much again (bench/authserv/README.md).
struct HashMemoryChoice {
  std::chrono::microseconds per_hash{0}, kept{0};
  // By more than a tenth: otherwise libsodium's per-hash mapping, which holds no memory between
  // logins.
  bool keep() const { return kept.count() > 0 && kept * 10 < per_hash * 9; }
};
HashMemoryChoice compare_hash_memory(const Argon2Cost& cost);

}  // namespace authserv::password
