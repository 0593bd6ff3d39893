// postern_directory.cpp: postern-directory, the embedded directory's admin tool. Offline: it opens
// the LMDB files itself, safely beside a running authserv (LMDB serialises the writers). Online
// (--online HOST:PORT): the same commands through authserv's admin call over mutual TLS.
#include <sodium.h>
#include <unistd.h>

#include <charconv>
#include <cstdio>
#include <algorithm>
#include <chrono>
#include <functional>
#include <span>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "authserv/directory/admin.hpp"
#include "authserv/directory/names.hpp"
#include "authserv/password/calibrate.hpp"
#include "authserv/service/admin_client.hpp"
#include "common/tls/nss.hpp"

namespace {

using authserv::directory::AdminOp;
using authserv::directory::AdminSettings;
using common::Result;

constexpr int kExitFailure = 1;
constexpr int kExitUsage = 2;

// Runs one operation somewhere: on the LMDB files here, or (later) through authserv's admin call.
using Executor = std::function<Result<std::vector<std::string>>(const AdminOp&)>;

Executor offline_executor(std::string db, AdminSettings settings) {
  return [db = std::move(db), settings = std::move(settings)](const AdminOp& op) -> Result<std::vector<std::string>> {
    auto dir = authserv::directory::LmdbDirectory::open(db);
    if (!dir) return tl::unexpected(dir.error());
    return authserv::directory::apply(**dir, op, settings);
  };
}

void usage(std::FILE* to) {
  std::fprintf(to,
               "usage: postern-directory --db DIR [--default-domain DOMAIN] [--argon2-ops N] [--argon2-mem-kib N]\n"
               "                         [--scram-iterations N] COMMAND ...\n"
               "       postern-directory --online HOST:PORT (--nss DIR | --plaintext yes) COMMAND ...\n"
               "         (--nss: this host's NSS database, whose certificate's CN authserv lists in admins)\n"
               "       postern-directory calibrate [--target-ms 50] [--memory-mib 64] [--threads N]\n"
               "         (measures argon2id on this host and prints the [password] cost for the target)\n%.*s",
               static_cast<int>(authserv::directory::admin_usage().size()), authserv::directory::admin_usage().data());
}

int usage_error(std::string_view why) {
  std::fprintf(stderr, "postern-directory: %.*s\n", static_cast<int>(why.size()), why.data());
  std::fprintf(stderr, "run 'postern-directory --help' for the commands\n");
  return kExitUsage;
}

template <class T>
bool parse_number(std::string_view s, T& out) {
  const auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), out);
  return ec == std::errc{} && end == s.data() + s.size() && !s.empty();
}

// `calibrate [--target-ms N] [--memory-mib N] [--threads N]`: measures argon2id here and prints
// the [password] lines that make one hash take about the target, with at most N MiB per hash.
int calibrate(std::span<const std::string_view> args) {
  authserv::password::CalibrationRequest req;
  uint64_t threads = std::max(1u, std::thread::hardware_concurrency());
  for (size_t i = 0; i < args.size(); i += 2) {
    uint64_t n = 0;
    if (i + 1 >= args.size() || !parse_number(args[i + 1], n) || n == 0)
      return usage_error("calibrate: " + std::string(args[i]) + " needs a positive number");
    if (args[i] == "--target-ms" && n <= 10000) {
      req.target = std::chrono::milliseconds(n);
    } else if (args[i] == "--memory-mib" && n <= 4096) {
      req.max_mem_bytes = static_cast<size_t>(n) << 20;
      req.min_mem_bytes = std::min(req.min_mem_bytes, req.max_mem_bytes);
    } else if (args[i] == "--threads" && n <= 256) {
      threads = n;
    } else {
      return usage_error("calibrate: bad option or value: " + std::string(args[i]));
    }
  }
  auto c = authserv::password::calibrate_argon2id(req);
  if (!c) {
    std::fprintf(stderr, "postern-directory: %s\n", c.error().detail.c_str());
    return kExitFailure;
  }
  const auto kib = c->cost.mem_bytes >> 10;
  const auto memory = authserv::password::compare_hash_memory(c->cost);
  const bool keep = memory.keep();
  auto ms = [](std::chrono::microseconds us) { return static_cast<double>(us.count()) / 1000.0; };
  std::printf("# argon2id t=%llu m=%llu KiB: %.1f ms of CPU per hash on this host (target %lld ms)%s\n",
              static_cast<unsigned long long>(c->cost.ops), static_cast<unsigned long long>(kib),
              ms(c->measured), static_cast<long long>(req.target.count()),
              c->below_target ? "; over the target even at the memory floor" : "");
  std::printf("# per check: %.1f ms with the memory mapped per hash (libsodium), %.1f ms kept by each hashing thread\n",
              ms(memory.per_hash), ms(memory.kept));
  const auto per_login = keep ? memory.kept : (memory.per_hash.count() ? memory.per_hash : c->measured);
  std::printf("# %llu hashing threads %s up to %llu MiB; about %.0f uncached logins/s\n",
              static_cast<unsigned long long>(threads), keep ? "keep" : "use",
              static_cast<unsigned long long>(threads * (kib >> 10)),
              per_login.count() ? static_cast<double>(threads) * 1e6 / static_cast<double>(per_login.count()) : 0.0);
  std::printf("[password]\nargon2_ops = %llu\nargon2_memory = \"%lluK\"\nhash_threads = %llu\nhash_memory = \"%s\"\n",
              static_cast<unsigned long long>(c->cost.ops), static_cast<unsigned long long>(kib),
              static_cast<unsigned long long>(threads), keep ? "kept" : "per_hash");
  return std::fflush(stdout) == 0 ? 0 : kExitFailure;
}

}  // namespace

int main(int argc, char** argv) {
  if (sodium_init() < 0) {
    std::fprintf(stderr, "postern-directory: libsodium failed to start\n");
    return kExitFailure;
  }
  std::vector<std::string_view> args(argv + 1, argv + argc);
  std::string db, online, nss_dir;
  bool plaintext = false;
  AdminSettings settings;
  size_t i = 0;
  for (; i < args.size() && args[i].starts_with("-"); ++i) {
    const std::string_view a = args[i];
    if (a == "-h" || a == "--help") {
      usage(stdout);
      return 0;
    }
    if (i + 1 >= args.size()) return usage_error(std::string(a) + " needs a value");
    const std::string_view v = args[++i];
    uint64_t n = 0;
    if (a == "--db") {
      db = std::string(v);
    } else if (a == "--online") {
      online = std::string(v);
    } else if (a == "--nss") {
      nss_dir = std::string(v);
    } else if (a == "--plaintext" && v == "yes") {
      plaintext = true;
    } else if (a == "--default-domain") {
      settings.default_domain = std::string(v);
    } else if (a == "--argon2-ops" && parse_number(v, n) && n >= crypto_pwhash_OPSLIMIT_MIN) {
      settings.argon2.ops = n;
    } else if (a == "--argon2-mem-kib" && parse_number(v, n) && n * 1024 >= crypto_pwhash_MEMLIMIT_MIN &&
               n <= (uint64_t{4} << 20)) {
      settings.argon2.mem_bytes = static_cast<size_t>(n) * 1024;
    } else if (a == "--scram-iterations" && parse_number(v, n) && n >= authserv::password::kScramMinIterations &&
               n <= authserv::password::kScramMaxIterations) {
      settings.scram_iterations = static_cast<uint32_t>(n);
    } else {
      return usage_error("bad option or value: " + std::string(a) + " " + std::string(v.substr(0, 64)));
    }
  }
  if (i < args.size() && args[i] == "calibrate") return calibrate(std::span<const std::string_view>(args).subspan(i + 1));
  if (db.empty() == online.empty()) return usage_error("give --db DIR (offline) or --online HOST:PORT");
  if (!online.empty() && nss_dir.empty() && !plaintext) return usage_error("--online needs --nss DIR");
  if (!settings.default_domain.empty()) {
    auto d = authserv::directory::normalize_domain(settings.default_domain);
    if (!d) return usage_error("bad --default-domain: " + d.error().detail);
    settings.default_domain = *d;
  }
  const std::span<const std::string_view> words(args.data() + i, args.size() - i);
  auto op = authserv::directory::parse_admin_args(words);
  if (!op) return usage_error(op.error().detail);

  if (auto ok = authserv::directory::resolve_inputs(*op, STDIN_FILENO); !ok) {
    std::fprintf(stderr, "postern-directory: %s\n", ok.error().detail.c_str());
    return kExitFailure;
  }
  Result<std::vector<std::string>> out = common::fail(common::ErrorKind::Internal, "not run");
  if (online.empty()) {
    out = offline_executor(db, settings)(*op);
  } else {
    std::unique_ptr<common::tls::Nss> nss;
    if (!plaintext) {
      auto opened = common::tls::Nss::init({.db_dir = nss_dir, .password_file = nss_dir + "/password"});
      if (!opened) {
        std::fprintf(stderr, "postern-directory: %s\n", opened.error().detail.c_str());
        return kExitFailure;
      }
      nss = std::move(*opened);
    }
    common::rpc::MtlsOptions mtls;
    mtls.plaintext = plaintext;
    out = authserv::service::run_online(online, mtls, words, *op);
  }
  op = AdminOp{};  // destroys (and so wipes) any password the operation held
  if (!out) {
    std::fprintf(stderr, "postern-directory: error: %s\n", out.error().detail.c_str());
    return kExitFailure;
  }
  for (const auto& line : *out) std::printf("%s\n", line.c_str());
  return std::fflush(stdout) == 0 ? 0 : kExitFailure;
}
