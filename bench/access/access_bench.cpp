// access_bench.cpp: decisions per second of a 200-rule numeric filter (allow + deny; CIDR,
// net/mask, prefixes, exact IPv4, IPv6) on one thread, ours against libwrap's hosts_ctl().
// Usage: access_bench [--seconds N] [--rules N] [--keep DIR]
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <new>
#include <random>
#include <string>
#include <vector>

#include <unistd.h>

#include "common/access/filter.hpp"

#ifdef POSTERN_HAVE_LIBWRAP
#include <syslog.h>
#include <tcpd.h>
// Traditional libwrap clients define these (weak in Debian's tcpd.h).
int allow_severity = LOG_INFO;
int deny_severity = LOG_WARNING;
#endif

// Counts heap allocations, to show that evaluate() makes none.
static std::atomic<uint64_t> g_allocations{0};
void* operator new(std::size_t n) {
  g_allocations.fetch_add(1, std::memory_order_relaxed);
  if (void* p = std::malloc(n ? n : 1)) return p;
  throw std::bad_alloc();
}
void operator delete(void* p) noexcept { std::free(p); }
void operator delete(void* p, std::size_t) noexcept { std::free(p); }

namespace {

using common::access::AccessFilter;
using common::access::AccessRequest;
using common::access::Verdict;
using common::net::IpAddress;
using Clock = std::chrono::steady_clock;

struct Workload {
  std::string allow, deny;
  std::vector<IpAddress> addresses;
  std::vector<std::string> texts;  // the same addresses for libwrap
};

std::string quad(uint32_t v) {
  return std::to_string(v >> 24) + "." + std::to_string((v >> 16) & 255) + "." + std::to_string((v >> 8) & 255) +
         "." + std::to_string(v & 255);
}

// Networks live in 10.0.0.0/8, 172.16.0.0/12 and 2001:db8::/32 so random addresses hit them often.
Workload make_workload(int rules, std::mt19937& rng) {
  Workload w;
  std::vector<uint32_t> nets;
  std::vector<IpAddress> nets6;
  const char* services[] = {"imap", "imap, pop", "ALL", "pop", "imap"};
  for (int i = 0; i < rules; ++i) {
    uint32_t base = (i % 2 ? 0x0a000000u : 0xac100000u) | (rng() & 0x000fffffu);
    std::string pattern;
    char buf[64];
    switch (i % 6) {
      case 0: {  // CIDR /16../30
        unsigned len = 16 + rng() % 15;
        pattern = quad(base & (~0u << (32 - len))) + "/" + std::to_string(len);
        break;
      }
      case 1: {  // net/mask /20../28
        unsigned len = 20 + rng() % 9;
        uint32_t mask = ~0u << (32 - len);
        pattern = quad(base & mask) + "/" + quad(mask);
        break;
      }
      case 2:  // tcpd prefix "10.3.17."
        pattern = quad(base).substr(0, quad(base).rfind('.') + 1);
        break;
      case 3:  // exact addresses
        pattern = quad(base) + " " + quad(base ^ 1);
        break;
      case 4: {  // IPv6 prefixes /32../64
        std::snprintf(buf, sizeof buf, "2001:db8:%x:%x::", unsigned(rng() & 0x3), unsigned(rng() & 0x3) << 8);
        nets6.push_back(*IpAddress::parse(buf));
        pattern = "[" + std::string(buf) + "]/" + std::to_string(32 + rng() % 33);
        break;
      }
      default: {  // IPv6 exact
        std::snprintf(buf, sizeof buf, "2001:db8:%x::%x", unsigned(rng() & 0x3), unsigned(rng() & 0xf));
        nets6.push_back(*IpAddress::parse(buf));
        pattern = "[" + std::string(buf) + "]";
        break;
      }
    }
    nets.push_back(base);
    std::string line = std::string(services[i % 5]) + ": " + pattern + "\n";
    (i % 5 < 3 ? w.allow : w.deny) += line;
  }
  for (int i = 0; i < (1 << 14); ++i) {
    IpAddress a;
    switch (rng() % 5) {
      case 0: {  // IPv6 near a rule's network
        auto src = nets6.empty() ? *IpAddress::parse("2001:db8::") : nets6[rng() % nets6.size()];
        std::array<uint8_t, 16> b{};
        std::copy(src.bytes().begin(), src.bytes().end(), b.begin());
        if (rng() % 4 != 0) {
          for (size_t k = 8; k < 16; ++k) b[k] = static_cast<uint8_t>(rng());
        }
        a = IpAddress::v6(b);
        break;
      }
      case 1:
        a = IpAddress::v4(static_cast<uint32_t>(rng()));
        break;
      default:  // IPv4 near a rule's network
        a = IpAddress::v4(nets[rng() % nets.size()] ^ (rng() & 0x3ff));
        break;
    }
    w.addresses.push_back(a);
    w.texts.push_back(a.to_string());
  }
  return w;
}

}  // namespace

int main(int argc, char** argv) {
  double seconds = 3;
  int rules = 200;
  std::string keep;
  for (int i = 1; i + 1 < argc; i += 2) {
    if (std::strcmp(argv[i], "--seconds") == 0) seconds = std::atof(argv[i + 1]);
    if (std::strcmp(argv[i], "--rules") == 0) rules = std::atoi(argv[i + 1]);
    if (std::strcmp(argv[i], "--keep") == 0) keep = argv[i + 1];
  }
  std::mt19937 rng(20240601);
  Workload w = make_workload(rules, rng);
  auto filter = AccessFilter::from_files(w.allow, "bench.allow", w.deny, "bench.deny");
  if (!filter) {
    std::fprintf(stderr, "%s\n", filter.error().at(0).to_string().c_str());
    return 2;
  }
  std::printf("rules: %zu allow + %zu deny; %zu client addresses (4/5 IPv4), service imap\n",
              filter->allow_rules(), filter->deny_rules(), w.addresses.size());

  // Ours: one thread, the request reused, nothing allocated per decision.
  AccessRequest req;
  req.service = "imap";
  std::vector<uint8_t> ours(w.addresses.size());
  uint64_t n = 0, allowed = 0, by_rule = 0;
  uint64_t allocations_before = g_allocations.load();
  auto start = Clock::now();
  auto deadline = start + std::chrono::duration<double>(seconds);
  while (Clock::now() < deadline) {
    for (int k = 0; k < 4096; ++k, ++n) {
      size_t i = n & (w.addresses.size() - 1);
      req.client.address = w.addresses[i];
      auto d = filter->evaluate(req);
      bool ok = d.verdict == Verdict::Allow;
      ours[i] = ok;
      allowed += ok;
      by_rule += d.rule != nullptr;
    }
  }
  double ours_secs = std::chrono::duration<double>(Clock::now() - start).count();
  uint64_t allocations = g_allocations.load() - allocations_before;
  double ours_rate = static_cast<double>(n) / ours_secs;
  std::printf("postern access: %12.0f decisions/s  (%llu decisions, %.1f%% allowed, %.1f%% by a rule)\n",
              ours_rate, static_cast<unsigned long long>(n),
              100.0 * static_cast<double>(allowed) / static_cast<double>(n),
              100.0 * static_cast<double>(by_rule) / static_cast<double>(n));
  std::printf("heap allocations while evaluating: %llu\n", static_cast<unsigned long long>(allocations));

#ifdef POSTERN_HAVE_LIBWRAP
  // libwrap reads hosts.allow/hosts.deny on every call; point it at the same rules.
  std::filesystem::path dir = keep.empty() ? std::filesystem::temp_directory_path() /
                                                 ("access_bench." + std::to_string(getpid()))
                                           : std::filesystem::path(keep);
  std::filesystem::create_directories(dir);
  std::string allow_path = (dir / "hosts.allow").string(), deny_path = (dir / "hosts.deny").string();
  std::ofstream(allow_path) << w.allow;
  std::ofstream(deny_path) << w.deny;
  hosts_allow_table = allow_path.data();
  hosts_deny_table = deny_path.data();
  char daemon[] = "imap";
  char unknown_name[] = STRING_UNKNOWN;
  uint64_t m = 0, agree = 0, compared = 0;
  start = Clock::now();
  deadline = start + std::chrono::duration<double>(seconds);
  while (Clock::now() < deadline) {
    for (int k = 0; k < 64; ++k, ++m) {
      size_t i = m & (w.addresses.size() - 1);
      bool ok = hosts_ctl(daemon, unknown_name, w.texts[i].data(), unknown_name) != 0;
      if (m < w.addresses.size()) {
        ++compared;
        agree += ok == (ours[i] != 0);
        if (ok != (ours[i] != 0) && compared - agree <= 5) {
          std::printf("  disagree on %s: libwrap %s, ours %s\n", w.texts[i].c_str(), ok ? "allow" : "deny",
                      ours[i] ? "allow" : "deny");
        }
      }
    }
  }
  double wrap_secs = std::chrono::duration<double>(Clock::now() - start).count();
  double wrap_rate = static_cast<double>(m) / wrap_secs;
  std::printf("libwrap hosts_ctl: %9.0f decisions/s  (%llu decisions; it parses both files per call)\n",
              wrap_rate, static_cast<unsigned long long>(m));
  std::printf("ratio: %.0fx\n", ours_rate / wrap_rate);
  std::printf("agreement: %llu of %llu decisions identical\n", static_cast<unsigned long long>(agree),
              static_cast<unsigned long long>(compared));
  if (keep.empty()) std::filesystem::remove_all(dir);
#else
  (void)keep;
  std::printf("libwrap: not built (install libwrap0-dev and re-run cmake)\n");
#endif
  return 0;
}
