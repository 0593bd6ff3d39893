// calibrate.cpp: measuring argon2id on this host for `postern-directory calibrate`.
#include "authserv/password/calibrate.hpp"

#include "authserv/password/kept_memory.hpp"

#include <sodium.h>
#include <time.h>

#include <algorithm>
#include <array>
#include <vector>

namespace authserv::password {

namespace {
// CPU time of this thread: what a hash costs the host, whatever else runs on it meanwhile (wall
// time on a shared box measures the neighbours' load as much as the hash).
std::chrono::microseconds thread_cpu() {
  timespec ts{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return std::chrono::microseconds(static_cast<int64_t>(ts.tv_sec) * 1000000 + ts.tv_nsec / 1000);
}
// Median of three: one run can be hit by another process.
template <class F>
std::chrono::microseconds median_cpu(F&& run) {
  std::vector<std::chrono::microseconds> runs;
  for (int i = 0; i < 3; ++i) {
    const auto t0 = thread_cpu();
    run();
    runs.push_back(thread_cpu() - t0);
  }
  std::sort(runs.begin(), runs.end());
  return runs[1];
}
}  // namespace

HashMemoryChoice compare_hash_memory(const Argon2Cost& cost) {
  HashMemoryChoice out;
  std::array<char, 16> pw{};
  randombytes_buf(pw.data(), pw.size());
  const auto stored = hash_argon2id(std::string_view(pw.data(), pw.size()), cost);
  if (!stored) return out;
  out.per_hash = median_cpu([&] { (void)verify("not the password", *stored); });
  KeptHashMemory kept(cost.mem_bytes);
  if (!kept.ok()) return out;
  (void)verify("not the password", *stored);  // once untimed: the area's first use
  const uint64_t before = kept.hashes();
  out.kept = median_cpu([&] { (void)verify("not the password", *stored); });
  if (kept.hashes() != before + 3) out.kept = std::chrono::microseconds(0);  // it did not run there
  return out;
}

HashTimer real_hash_timer() {
  return [](const Argon2Cost& cost) {
    std::array<char, 16> pw{};
    randombytes_buf(pw.data(), pw.size());
    std::vector<std::chrono::microseconds> runs;
    for (int i = 0; i < 3; ++i) {  // median of 3: one run can be hit by another process
      const auto t0 = thread_cpu();
      (void)hash_argon2id(std::string_view(pw.data(), pw.size()), cost);
      runs.push_back(thread_cpu() - t0);
    }
    std::sort(runs.begin(), runs.end());
    return runs[1];
  };
}

common::Result<Calibration> calibrate_argon2id(const CalibrationRequest& req, const HashTimer& timer) {
  if (req.target.count() <= 0) return common::fail(common::ErrorKind::Config, "calibrate: the target time must be positive");
  if (req.max_mem_bytes < req.min_mem_bytes || req.min_mem_bytes < crypto_pwhash_MEMLIMIT_MIN)
    return common::fail(common::ErrorKind::Config, "calibrate: the memory ceiling is below the floor");
  const auto target = std::chrono::duration_cast<std::chrono::microseconds>(req.target);
  Calibration out;
  out.cost.mem_bytes = req.max_mem_bytes & ~size_t{1023};
  out.cost.ops = 1;
  auto one = timer(out.cost);
  // One pass is over the target: time is about linear in memory, so scale it down to fit, then
  // step down by a tenth while the measurement still disagrees.
  constexpr size_t kMiB = size_t{1} << 20;
  if (one > target) {
    const double fit = static_cast<double>(out.cost.mem_bytes) * static_cast<double>(target.count()) /
                       static_cast<double>(one.count());
    out.cost.mem_bytes = std::max(req.min_mem_bytes, static_cast<size_t>(fit) / kMiB * kMiB);
    one = timer(out.cost);
  }
  while (one > target && out.cost.mem_bytes > req.min_mem_bytes) {
    out.cost.mem_bytes = std::max(req.min_mem_bytes, (out.cost.mem_bytes - out.cost.mem_bytes / 10) / kMiB * kMiB);
    one = timer(out.cost);
  }
  if (one > target) {
    out.measured = one;
    out.below_target = true;
    return out;
  }
  // Time grows linearly with the passes; start from the estimate and step down while over.
  uint64_t ops = std::clamp<uint64_t>(static_cast<uint64_t>(target.count() / std::max<int64_t>(1, one.count())), 1, 32);
  for (;;) {
    out.cost.ops = ops;
    out.measured = ops == 1 ? one : timer(out.cost);
    if (out.measured <= target || ops == 1) break;
    --ops;
  }
  return out;
}

}  // namespace authserv::password
