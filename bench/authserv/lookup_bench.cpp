// lookup_bench.cpp: load client for run_authserv_bench: recipient lookups through gRPC (raw calls
// with a fixed number in flight, or the front ends' own client, common/authclient) against the
// equivalent LDAP search on slapd (libldap async, ldap_search_ext + ldap_result over a few
// connections), PLAIN Authenticate, and the generator of the shared data set (postern-directory import file, slapadd LDIF, shuffled address list).
// Usage: lookup_bench gen|grpc|front|ldap|auth [--flag value]...   (lookup_bench --help)
#include "bench/cpu_time.hpp"
#include <grpcpp/grpcpp.h>
#include <ldap.h>
#include <sodium.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <charconv>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <random>
#include <sstream>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "authserv/password/password.hpp"
#include "common/authclient/authclient.hpp"
#include "common/runtime/loop.hpp"
#include "common/runtime/timer.hpp"
#include "proto/authserv.grpc.pb.h"

namespace {

namespace pb = postern::authserv::v1;
using Clock = std::chrono::steady_clock;

constexpr const char* kUsage =
    "usage: lookup_bench gen  --out DIR [--users 100000] [--domain bench.example] [--base o=postern]\n"
    "                         [--addresses 200000] [--unknown-pct 10] [--seed 1]\n"
    "         writes DIR/import.txt (login<TAB>{SSHA512}<TAB>mailhost), DIR/slapd.ldif, and\n"
    "         DIR/addresses.txt (address<TAB>1|0: expected to exist or not), shuffled\n"
    "       lookup_bench grpc --target HOST:PORT --addresses FILE [--calls 200000] [--warmup 5000]\n"
    "                         [--inflight 64] [--channels 2] [--api cq|callback]\n"
    "         (cq: async completion queue on this thread, the default; callback: gRPC's callback API)\n"
    "       lookup_bench front --target HOST:PORT --addresses FILE [--calls 200000] [--warmup 5000]\n"
    "                         [--inflight 64]\n"
    "         (recipient lookups through common/authclient, the front ends' client, cache off)\n"
    "       lookup_bench ldap --url ldap://HOST:PORT --base DN --bind-dn DN --password PW\n"
    "                         --addresses FILE [--calls 200000] [--warmup 5000] [--inflight 64]\n"
    "                         [--connections 4]\n"
    "       lookup_bench auth --target HOST:PORT --users FILE (login<TAB>password[<TAB>1|0]) [--calls 60]\n"
    "                         [--warmup 4] [--inflight 16] [--local-hashes 3]\n"
    "       lookup_bench dovecot --socket PATH (Dovecot's auth-client) --users FILE [--calls 60] ...\n"
    "       lookup_bench logins --out DIR [--users 200] [--population 20] [--calls 1000] [--repeat 0.9]\n"
    "         (argon2id users for both sides and an attempt script; auth/dovecot/logins take\n"
    "         [--argon2-ops N] [--argon2-mem-kib N], the cost of the hashes)\n"
    "       grpc, ldap, auth, dovecot also take [--server-pid PID] [--server-cpu N]: the server's CPU time and\n"
    "         its core's busy share over the measured calls (not the warm-up)\n"
    "Each run prints one line of key=value: result, calls, seconds, rate (calls/s), found, unknown,\n"
    "errors (failed calls or answers that contradict the data set), p50_us, p99_us, client_cpu (%),\n"
    "and with --server-pid: server_cpu_s, server_us_per_call; with --server-cpu: server_core (%).\n";

// --flag value pairs after the mode word.
class Flags {
 public:
  bool parse(int argc, char** argv, int from) {
    for (int i = from; i < argc; i += 2) {
      std::string_view k = argv[i];
      if (!k.starts_with("--") || i + 1 >= argc) {
        std::fprintf(stderr, "lookup_bench: expected --flag value at '%s'\n", argv[i]);
        return false;
      }
      values_[std::string(k.substr(2))] = argv[i + 1];
    }
    return true;
  }
  std::string str(const std::string& k, std::string def = "") const {
    auto it = values_.find(k);
    used_.push_back(k);
    return it == values_.end() ? def : it->second;
  }
  uint64_t num(const std::string& k, uint64_t def) const {
    auto it = values_.find(k);
    used_.push_back(k);
    if (it == values_.end()) return def;
    uint64_t v = 0;
    const auto& s = it->second;
    auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
    if (ec != std::errc{} || end != s.data() + s.size()) {
      std::fprintf(stderr, "lookup_bench: --%s wants a number, not '%s'\n", k.c_str(), s.c_str());
      std::exit(2);
    }
    return v;
  }
  // After all reads: any flag nobody asked for is a typo.
  bool all_used() const {
    for (const auto& [k, v] : values_) {
      if (std::find(used_.begin(), used_.end(), k) == used_.end()) {
        std::fprintf(stderr, "lookup_bench: unknown flag --%s\n", k.c_str());
        return false;
      }
    }
    return true;
  }

 private:
  std::map<std::string, std::string> values_;
  mutable std::vector<std::string> used_;
};

std::string need(const Flags& f, const std::string& k) {
  auto v = f.str(k);
  if (v.empty()) {
    std::fprintf(stderr, "lookup_bench: --%s is required\n%s", k.c_str(), kUsage);
    std::exit(2);
  }
  return v;
}

struct Target {
  std::string address;
  bool exists = false;
};

std::vector<Target> read_addresses(const std::string& file) {
  std::ifstream in(file);
  std::vector<Target> out;
  for (std::string line; std::getline(in, line);) {
    auto tab = line.find('\t');
    if (line.empty() || tab == std::string::npos) continue;
    out.push_back({line.substr(0, tab), line.substr(tab + 1) == "1"});
  }
  if (out.empty()) {
    std::fprintf(stderr, "lookup_bench: no addresses in %s\n", file.c_str());
    std::exit(2);
  }
  return out;
}

using bench::cpu_seconds;

// Counters shared by the completion paths of one run; latencies indexed by call number.
struct Tally {
  explicit Tally(uint64_t calls) : latency_us(calls, 0) {}
  std::atomic<uint64_t> next{0};  // calls handed out
  std::atomic<uint64_t> done{0};
  std::atomic<uint64_t> found{0}, unknown{0}, errors{0};
  std::vector<uint32_t> latency_us;
  std::mutex mu;
  std::condition_variable cv;
  std::string first_error;

  void record(uint64_t i, Clock::time_point t0) {
    latency_us[i] = static_cast<uint32_t>(
        std::min<int64_t>(UINT32_MAX, std::chrono::duration_cast<std::chrono::microseconds>(Clock::now() - t0).count()));
  }
  void error(const std::string& why) {
    errors.fetch_add(1);
    std::lock_guard lock(mu);
    if (first_error.empty()) first_error = why;
  }
  // Under the lock: the waiter may destroy this Tally as soon as it sees the last call done.
  void finish_one() {
    std::lock_guard lock(mu);
    if (done.fetch_add(1) + 1 == latency_us.size()) cv.notify_all();
  }
  void wait() {
    std::unique_lock lock(mu);
    cv.wait(lock, [&] { return done.load() == latency_us.size(); });
  }
};

// The server under test, watched over the measured phase only (not the warm-up): its CPU time
// from /proc/PID/stat, and how busy its core was from /proc/stat.
struct ServerWatch {
  long pid = 0;
  int cpu = -1;
};

ServerWatch watch(const Flags& f) {
  ServerWatch w;
  w.pid = static_cast<long>(f.num("server-pid", 0));
  w.cpu = f.str("server-cpu").empty() ? -1 : static_cast<int>(f.num("server-cpu", 0));
  return w;
}

uint64_t process_ticks(long pid) {  // utime + stime of all its threads
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  std::string all((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  const auto paren = all.rfind(')');
  if (paren == std::string::npos) return 0;
  std::istringstream fields(all.substr(paren + 2));
  std::string f;
  uint64_t utime = 0, stime = 0;
  for (int k = 3; k <= 15 && fields >> f; ++k) {  // field 3 is the state; 14 utime, 15 stime
    if (k == 14) utime = std::stoull(f);
    if (k == 15) stime = std::stoull(f);
  }
  return utime + stime;
}

std::pair<uint64_t, uint64_t> core_ticks(int cpu) {  // total, idle + iowait
  std::ifstream in("/proc/stat");
  const std::string want = "cpu" + std::to_string(cpu);
  for (std::string line; std::getline(in, line);) {
    std::istringstream fields(line);
    std::string name;
    fields >> name;
    if (name != want) continue;
    uint64_t v[8] = {};
    for (auto& x : v) fields >> x;
    uint64_t total = 0;
    for (auto x : v) total += x;
    return {total, v[3] + v[4]};
  }
  return {0, 0};
}

struct RunResult {
  uint64_t calls = 0, found = 0, unknown = 0, errors = 0;
  double seconds = 0, cpu = 0;
  double server_cpu = -1;  // seconds; -1: not watched
  int server_core = -1;    // % busy; -1: not watched
  uint32_t p50 = 0, p99 = 0;
  std::string first_error;
};

// Runs `calls` calls through `run_calls` (which starts them and returns once all completed),
// timing wall and CPU clock around it.
RunResult measure(uint64_t calls, const std::function<void(Tally&)>& run_calls, const ServerWatch& w = {}) {
  Tally t(calls);
  const uint64_t s0 = w.pid > 0 ? process_ticks(w.pid) : 0;
  const auto k0 = w.cpu >= 0 ? core_ticks(w.cpu) : std::pair<uint64_t, uint64_t>{};
  const double c0 = cpu_seconds();
  const auto w0 = Clock::now();
  if (calls > 0) run_calls(t);
  RunResult r;
  r.seconds = std::chrono::duration<double>(Clock::now() - w0).count();
  r.cpu = cpu_seconds() - c0;
  if (w.pid > 0) r.server_cpu = static_cast<double>(process_ticks(w.pid) - s0) / static_cast<double>(sysconf(_SC_CLK_TCK));
  if (w.cpu >= 0) {
    const auto k1 = core_ticks(w.cpu);
    const uint64_t total = k1.first - k0.first, idle = k1.second - k0.second;
    r.server_core = total > 0 ? static_cast<int>(100 * (total - idle) / total) : 0;
  }
  r.calls = calls;
  r.found = t.found;
  r.unknown = t.unknown;
  r.errors = t.errors;
  r.first_error = t.first_error;
  if (calls > 0) {
    auto& l = t.latency_us;
    std::nth_element(l.begin(), l.begin() + static_cast<std::ptrdiff_t>(calls / 2), l.end());
    r.p50 = l[calls / 2];
    const auto i99 = std::min<uint64_t>(calls - 1, calls * 99 / 100);
    std::nth_element(l.begin(), l.begin() + static_cast<std::ptrdiff_t>(i99), l.end());
    r.p99 = l[i99];
  }
  return r;
}

void print(const char* mode, const RunResult& r, const std::string& extra) {
  const double rate = r.seconds > 0 ? static_cast<double>(r.calls) / r.seconds : 0.0;
  std::string server;
  if (r.server_cpu >= 0) {
    char b[96];
    std::snprintf(b, sizeof b, " server_cpu_s=%.2f server_us_per_call=%.1f", r.server_cpu,
                  r.calls > 0 ? 1e6 * r.server_cpu / static_cast<double>(r.calls) : 0.0);
    server += b;
  }
  if (r.server_core >= 0) server += " server_core=" + std::to_string(r.server_core);
  std::printf("lookup_bench mode=%s result=%s calls=%llu seconds=%.3f rate=%.*f found=%llu unknown=%llu errors=%llu "
              "p50_us=%u p99_us=%u client_cpu=%.0f%s %s\n",
              mode, r.errors == 0 ? "ok" : "error", static_cast<unsigned long long>(r.calls), r.seconds,
              rate < 100 ? 2 : 0, rate, static_cast<unsigned long long>(r.found),
              static_cast<unsigned long long>(r.unknown), static_cast<unsigned long long>(r.errors), r.p50, r.p99,
              r.seconds > 0 ? 100.0 * r.cpu / r.seconds : 0.0, server.c_str(), extra.c_str());
  if (!r.first_error.empty()) std::fprintf(stderr, "lookup_bench: first error: %s\n", r.first_error.c_str());
  std::fflush(stdout);
}

pb::ConnectionFacts facts(const char* service) {
  pb::ConnectionFacts f;
  f.set_service(service);
  f.set_client_address("192.0.2.7");
  f.set_server_address("127.0.0.1");
  f.set_tls_version("TLSv1.3");  // PLAIN is refused on connections that are not under TLS
  f.set_tls_cipher("TLS_AES_128_GCM_SHA256");
  f.set_session_id("bench");
  return f;
}

// Distinct channel arguments give each channel its own subchannel, so its own TCP connection.
std::vector<std::unique_ptr<pb::Auth::Stub>> stubs(const std::string& target, uint64_t channels) {
  std::vector<std::unique_ptr<pb::Auth::Stub>> out;
  for (uint64_t i = 0; i < std::max<uint64_t>(channels, 1); ++i) {
    grpc::ChannelArguments args;
    args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
    args.SetInt("postern.bench_channel", static_cast<int>(i));
    auto ch = grpc::CreateCustomChannel(target, grpc::InsecureChannelCredentials(), args);
    if (!ch->WaitForConnected(std::chrono::system_clock::now() + std::chrono::seconds(10))) {
      std::fprintf(stderr, "lookup_bench: cannot connect to %s\n", target.c_str());
      std::exit(1);
    }
    out.push_back(pb::Auth::NewStub(ch));
  }
  return out;
}

// ---- gRPC LookupRecipient: `inflight` unary calls through the callback API; each completion
// starts the next call from gRPC's callback thread (--api callback).
struct LookupCall {
  grpc::ClientContext ctx;
  pb::LookupRecipientRequest req;
  pb::LookupRecipientResponse resp;
};

void start_lookup(Tally& t, const std::vector<Target>& targets, std::vector<std::unique_ptr<pb::Auth::Stub>>& st,
                  const pb::ConnectionFacts& f) {
  const uint64_t i = t.next.fetch_add(1);
  if (i >= t.latency_us.size()) return;
  auto* call = new LookupCall;
  const Target& target = targets[i % targets.size()];
  *call->req.mutable_facts() = f;
  call->req.set_address(target.address);
  call->ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
  const auto t0 = Clock::now();
  st[i % st.size()]->async()->LookupRecipient(
      &call->ctx, &call->req, &call->resp, [&t, &targets, &st, &f, call, i, t0, &target](grpc::Status s) {
        t.record(i, t0);
        if (!s.ok()) {
          t.error("rpc " + std::to_string(static_cast<int>(s.error_code())) + ": " + s.error_message());
        } else {
          const bool user = call->resp.kind() == pb::LookupRecipientResponse::USER;
          (user ? t.found : t.unknown).fetch_add(1);
          if (user != target.exists) t.error(target.address + ": answer contradicts the data set");
        }
        delete call;
        start_lookup(t, targets, st, f);
        t.finish_one();
      });
}

// The same through a completion queue driven by this one thread: no hand-off to gRPC's callback
// threads, so less client CPU per call (one client core must be able to outrun the server).
struct CqCall {
  grpc::ClientContext ctx;
  pb::LookupRecipientRequest req;
  pb::LookupRecipientResponse resp;
  grpc::Status status;
  uint64_t i = 0;
  Clock::time_point t0;
  std::unique_ptr<grpc::ClientAsyncResponseReader<pb::LookupRecipientResponse>> rpc;
};

void run_cq(Tally& t, const std::vector<Target>& targets, std::vector<std::unique_ptr<pb::Auth::Stub>>& st,
            const pb::ConnectionFacts& f, uint64_t inflight) {
  grpc::CompletionQueue cq;
  auto issue = [&] {
    const uint64_t i = t.next.fetch_add(1);
    if (i >= t.latency_us.size()) return;
    auto* c = new CqCall;
    c->i = i;
    *c->req.mutable_facts() = f;
    c->req.set_address(targets[i % targets.size()].address);
    c->ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
    c->t0 = Clock::now();
    c->rpc = st[i % st.size()]->AsyncLookupRecipient(&c->ctx, c->req, &cq);
    c->rpc->Finish(&c->resp, &c->status, c);
  };
  for (uint64_t k = 0; k < inflight; ++k) issue();
  while (t.done.load() < t.latency_us.size()) {
    void* tag = nullptr;
    bool ok = false;
    if (!cq.Next(&tag, &ok)) break;
    std::unique_ptr<CqCall> c(static_cast<CqCall*>(tag));
    t.record(c->i, c->t0);
    const Target& target = targets[c->i % targets.size()];
    if (!ok || !c->status.ok()) {
      t.error("rpc " + std::to_string(static_cast<int>(c->status.error_code())) + ": " + c->status.error_message());
    } else {
      const bool user = c->resp.kind() == pb::LookupRecipientResponse::USER;
      (user ? t.found : t.unknown).fetch_add(1);
      if (user != target.exists) t.error(target.address + ": answer contradicts the data set");
    }
    issue();
    t.finish_one();
  }
  cq.Shutdown();
  void* tag = nullptr;
  bool ok = false;
  while (cq.Next(&tag, &ok)) delete static_cast<CqCall*>(tag);
}

// LookupRecipients: `inflight` lookups in flight as calls of `batch` lookups each (cq, this thread).
struct BatchCall {
  grpc::ClientContext ctx;
  pb::LookupRecipientsRequest req;
  pb::LookupRecipientsResponse resp;
  grpc::Status status;
  std::vector<uint64_t> ids;
  Clock::time_point t0;
  std::unique_ptr<grpc::ClientAsyncResponseReader<pb::LookupRecipientsResponse>> rpc;
};

void run_batched(Tally& t, const std::vector<Target>& targets, std::vector<std::unique_ptr<pb::Auth::Stub>>& st,
                 const pb::ConnectionFacts& f, uint64_t inflight, uint64_t batch) {
  grpc::CompletionQueue cq;
  uint64_t calls = 0;
  auto issue = [&] {
    auto c = std::make_unique<BatchCall>();
    for (uint64_t k = 0; k < batch; ++k) {
      const uint64_t i = t.next.fetch_add(1);
      if (i >= t.latency_us.size()) break;
      c->ids.push_back(i);
      auto* one = c->req.add_requests();
      *one->mutable_facts() = f;
      one->set_address(targets[i % targets.size()].address);
    }
    if (c->ids.empty()) return;
    c->ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
    c->t0 = Clock::now();
    c->rpc = st[calls++ % st.size()]->AsyncLookupRecipients(&c->ctx, c->req, &cq);
    auto* raw = c.release();
    raw->rpc->Finish(&raw->resp, &raw->status, raw);
  };
  for (uint64_t k = 0; k < std::max<uint64_t>(1, inflight / batch); ++k) issue();
  while (t.done.load() < t.latency_us.size()) {
    void* tag = nullptr;
    bool ok = false;
    if (!cq.Next(&tag, &ok)) break;
    std::unique_ptr<BatchCall> c(static_cast<BatchCall*>(tag));
    for (size_t k = 0; k < c->ids.size(); ++k) {
      const uint64_t i = c->ids[k];
      t.record(i, c->t0);
      const Target& target = targets[i % targets.size()];
      if (!ok || !c->status.ok() || c->resp.responses_size() != static_cast<int>(c->ids.size())) {
        t.error("rpc " + std::to_string(static_cast<int>(c->status.error_code())) + ": " + c->status.error_message());
      } else {
        const bool user = c->resp.responses(static_cast<int>(k)).kind() == pb::LookupRecipientResponse::USER;
        (user ? t.found : t.unknown).fetch_add(1);
        if (user != target.exists) t.error(target.address + ": answer contradicts the data set");
      }
      t.finish_one();
    }
    issue();
  }
  cq.Shutdown();
  void* tag = nullptr;
  bool ok = false;
  while (cq.Next(&tag, &ok)) delete static_cast<BatchCall*>(tag);
}

int run_grpc(const Flags& fl) {
  const auto target = need(fl, "target");
  const auto targets = read_addresses(need(fl, "addresses"));
  const uint64_t calls = fl.num("calls", 200000), warmup = fl.num("warmup", 5000);
  const uint64_t inflight = std::max<uint64_t>(1, fl.num("inflight", 64)), channels = fl.num("channels", 2);
  const std::string api = fl.str("api", "cq");
  const uint64_t batch = fl.num("batch", 0);
  if (api != "cq" && api != "callback") {
    std::fprintf(stderr, "lookup_bench: --api is cq or callback\n");
    return 2;
  }
  const auto w = watch(fl);
  if (!fl.all_used()) return 2;
  auto st = stubs(target, channels);
  const auto f = facts("smtp");
  auto go = [&](Tally& t) {
    if (batch > 0) return run_batched(t, targets, st, f, inflight, batch);
    if (api == "cq") return run_cq(t, targets, st, f, inflight);
    for (uint64_t k = 0; k < inflight; ++k) start_lookup(t, targets, st, f);
    t.wait();
  };
  measure(warmup, go);
  auto r = measure(calls, go, w);
  print("grpc", r, "inflight=" + std::to_string(inflight) + " channels=" + std::to_string(st.size()) + " api=" + api);
  return r.errors == 0 ? 0 : 1;
}

// ---- The front ends' own client (common/authclient, as mta calls it at RCPT time): `inflight`
// lookups outstanding from one loop, its cache off, so every lookup reaches authserv. It sends
// them as LookupRecipients calls, gathering what arrives while its calls are in flight.
int run_front(const Flags& fl) {
  const auto target = need(fl, "target");
  const auto targets = read_addresses(need(fl, "addresses"));
  const uint64_t calls = fl.num("calls", 200000), warmup = fl.num("warmup", 5000);
  const uint64_t inflight = std::max<uint64_t>(1, fl.num("inflight", 64));
  const auto w = watch(fl);
  if (!fl.all_used()) return 2;
  namespace ac = common::authclient;
  ac::AuthClientOptions options;
  options.targets = {target};
  options.tls.plaintext = true;
  options.positive_ttl = options.negative_ttl = std::chrono::milliseconds(0);
  options.max_in_flight = std::max<size_t>(inflight, 256);
  options.call_deadline = std::chrono::seconds(30);
  auto client = ac::AuthClient::create(options);
  if (!client) {
    std::fprintf(stderr, "lookup_bench: %s\n", client.error().detail.c_str());
    return 1;
  }
  common::runtime::Loop loop;
  auto alive = std::make_shared<int>(0);
  ac::ConnectionFacts f;
  f.service = "smtp";
  f.client_address = "192.0.2.7";
  f.server_address = "127.0.0.1";
  f.session_id = "bench";
  auto go = [&](Tally& t) {
    std::vector<Clock::time_point> started(t.latency_us.size());
    std::function<void()> issue = [&] {
      const uint64_t i = t.next.fetch_add(1);
      if (i >= t.latency_us.size()) return;
      const Target& one = targets[i % targets.size()];
      started[i] = Clock::now();
      (*client)->lookup_recipient(loop, alive, f, one.address, [&, i](common::Result<ac::RecipientInfo> r) {
        t.record(i, started[i]);
        if (!r) {
          t.error(r.error().detail);
        } else {
          const bool user = r->kind == ac::RecipientKind::User;
          (user ? t.found : t.unknown).fetch_add(1);
          if (user != one.exists) t.error(one.address + ": answer contradicts the data set");
        }
        if (t.done.fetch_add(1) + 1 == t.latency_us.size()) return loop.stop();
        issue();
      });
    };
    // Answers arrive as posts from gRPC's threads, which alone do not keep the loop running.
    common::runtime::Timer keep_running(loop.get());
    keep_running.start(std::chrono::seconds(1), [] {}, std::chrono::seconds(1));
    for (uint64_t k = 0; k < inflight; ++k) issue();
    loop.run();
    keep_running.stop();
  };
  measure(warmup, go);
  auto r = measure(calls, go, w);
  auto stats = (*client)->stats();
  print("front", r, "inflight=" + std::to_string(inflight) + " rpcs=" + std::to_string(stats.rpcs));
  return r.errors == 0 ? 0 : 1;
}

// ---- LDAP: one thread per connection (they share the client core), each keeping its share of
// the searches outstanding with ldap_search_ext and collecting them with ldap_result.
std::string escape_filter(std::string_view v) {  // RFC 4515 §3
  std::string out;
  for (unsigned char c : v) {
    if (c == '*' || c == '(' || c == ')' || c == '\\' || c == 0 || c >= 0x80) {
      char buf[4];
      std::snprintf(buf, sizeof buf, "\\%02x", c);
      out += buf;
    } else {
      out += static_cast<char>(c);
    }
  }
  return out;
}

// What authserv's LDAP backend asks for on a user entry (authserv/ldap/ldap_directory.cpp
// user_attrs, password_check = bind).
const char* kUserAttrs[] = {"objectClass", "uid", "mail", "mailAlternateAddress", "mailEquivalentAddress",
                            "mailHost", "inetUserStatus", "mailUserStatus", "mailAllowedServiceAccess",
                            "mailQuota", "mailMsgQuota", "mailSieveRuleSource", "mailAccessDomain",
                            "mgrpRFC822MailMember", "inetMailGroupStatus", nullptr};

LDAP* ldap_connect(const std::string& url, const std::string& dn, const std::string& password) {
  LDAP* ld = nullptr;
  if (ldap_initialize(&ld, url.c_str()) != LDAP_SUCCESS) return nullptr;
  int version = LDAP_VERSION3;
  ldap_set_option(ld, LDAP_OPT_PROTOCOL_VERSION, &version);
  berval cred{static_cast<ber_len_t>(password.size()), const_cast<char*>(password.data())};
  const int rc = ldap_sasl_bind_s(ld, dn.c_str(), LDAP_SASL_SIMPLE, &cred, nullptr, nullptr, nullptr);
  if (rc != LDAP_SUCCESS) {
    std::fprintf(stderr, "lookup_bench: bind as %s to %s: %s\n", dn.c_str(), url.c_str(), ldap_err2string(rc));
    ldap_unbind_ext_s(ld, nullptr, nullptr);
    return nullptr;
  }
  return ld;
}

void ldap_worker(LDAP* ld, const std::string& base, const std::vector<Target>& targets, uint64_t window, Tally& t) {
  struct Pending {
    uint64_t i;
    Clock::time_point t0;
  };
  std::map<int, Pending> pending;
  auto issue = [&]() -> bool {
    const uint64_t i = t.next.fetch_add(1);
    if (i >= t.latency_us.size()) return false;
    const std::string a = escape_filter(targets[i % targets.size()].address);
    const std::string filter = "(|(mail=" + a + ")(mailAlternateAddress=" + a + ")(mailEquivalentAddress=" + a + "))";
    int msgid = 0;
    const auto t0 = Clock::now();
    const int rc = ldap_search_ext(ld, base.c_str(), LDAP_SCOPE_SUBTREE, filter.c_str(), const_cast<char**>(kUserAttrs),
                                   0, nullptr, nullptr, nullptr, 2, &msgid);
    if (rc != LDAP_SUCCESS) {
      t.record(i, t0);
      t.error(std::string("ldap_search_ext: ") + ldap_err2string(rc));
      t.finish_one();
      return true;
    }
    pending.emplace(msgid, Pending{i, t0});
    return true;
  };
  bool more = true;
  while (more && pending.size() < window) more = issue();
  while (!pending.empty()) {
    LDAPMessage* res = nullptr;
    timeval tv{30, 0};
    const int type = ldap_result(ld, LDAP_RES_ANY, LDAP_MSG_ALL, &tv, &res);
    if (type <= 0) {
      // A dead or stuck connection: everything outstanding on it fails.
      for (auto& [id, p] : pending) {
        t.record(p.i, p.t0);
        t.error(type == 0 ? "ldap_result timed out" : "ldap_result failed");
        t.finish_one();
      }
      pending.clear();
      if (res) ldap_msgfree(res);
      break;
    }
    auto it = pending.find(ldap_msgid(res));
    if (it == pending.end()) {
      ldap_msgfree(res);
      continue;
    }
    const Pending p = it->second;
    pending.erase(it);
    t.record(p.i, p.t0);
    // Read the entry the way the backend does: every attribute's values.
    int entries = 0;
    int result_code = LDAP_OTHER;
    for (LDAPMessage* m = ldap_first_message(ld, res); m != nullptr; m = ldap_next_message(ld, m)) {
      const int mt = ldap_msgtype(m);
      if (mt == LDAP_RES_SEARCH_ENTRY) {
        ++entries;
        BerElement* ber = nullptr;
        for (char* attr = ldap_first_attribute(ld, m, &ber); attr != nullptr; attr = ldap_next_attribute(ld, m, ber)) {
          berval** vals = ldap_get_values_len(ld, m, attr);
          if (vals) ldap_value_free_len(vals);
          ldap_memfree(attr);
        }
        if (ber) ber_free(ber, 0);
      } else if (mt == LDAP_RES_SEARCH_RESULT) {
        ldap_parse_result(ld, m, &result_code, nullptr, nullptr, nullptr, nullptr, 0);
      }
    }
    ldap_msgfree(res);
    const Target& target = targets[p.i % targets.size()];
    if (result_code != LDAP_SUCCESS) {
      t.error(std::string("search: ") + ldap_err2string(result_code));
    } else {
      (entries > 0 ? t.found : t.unknown).fetch_add(1);
      if ((entries == 1) != target.exists) t.error(target.address + ": answer contradicts the data set");
    }
    t.finish_one();
    if (more) more = issue();
  }
}

int run_ldap(const Flags& fl) {
  const auto url = need(fl, "url"), base = need(fl, "base"), dn = need(fl, "bind-dn"), pw = need(fl, "password");
  const auto targets = read_addresses(need(fl, "addresses"));
  const uint64_t calls = fl.num("calls", 200000), warmup = fl.num("warmup", 5000);
  const uint64_t inflight = std::max<uint64_t>(1, fl.num("inflight", 64));
  const uint64_t conns = std::clamp<uint64_t>(fl.num("connections", 4), 1, inflight);
  const auto w = watch(fl);
  if (!fl.all_used()) return 2;
  std::vector<LDAP*> lds;
  for (uint64_t i = 0; i < conns; ++i) {
    LDAP* ld = ldap_connect(url, dn, pw);
    if (!ld) return 1;
    lds.push_back(ld);
  }
  auto go = [&](Tally& t) {
    std::vector<std::thread> threads;
    for (uint64_t c = 0; c < conns; ++c) {
      // Split the window so the total in flight is exactly `inflight`.
      const uint64_t window = inflight / conns + (c < inflight % conns ? 1 : 0);
      threads.emplace_back([&, c, window] { ldap_worker(lds[c], base, targets, window, t); });
    }
    for (auto& th : threads) th.join();
  };
  measure(warmup, go);
  auto r = measure(calls, go, w);
  for (LDAP* ld : lds) ldap_unbind_ext_s(ld, nullptr, nullptr);
  print("ldap", r, "inflight=" + std::to_string(inflight) + " connections=" + std::to_string(conns));
  return r.errors == 0 ? 0 : 1;
}

// ---- PLAIN Authenticate: one bidi stream per login (Start with the initial response, read the
// verdict, close), through the callback API.
class AuthCall final : public grpc::ClientBidiReactor<pb::AuthStep, pb::AuthReply> {
 public:
  AuthCall(pb::Auth::Stub& stub, const std::string& login, const std::string& password, std::function<void(bool, std::string)> done)
      : done_(std::move(done)) {
    ctx_.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(300));
    auto* s = step_.mutable_start();
    *s->mutable_facts() = facts("imap");
    s->set_mechanism("PLAIN");
    s->set_has_initial_response(true);
    s->set_initial_response(std::string(1, '\0') + login + std::string(1, '\0') + password);
    stub.async()->Authenticate(&ctx_, this);
    StartWrite(&step_);
    StartRead(&reply_);
    StartCall();
  }
  void OnWriteDone(bool ok) override {
    if (ok) StartWritesDone();
  }
  void OnReadDone(bool ok) override {
    if (!ok) {
      why_ = "no reply";
    } else if (reply_.has_success()) {
      success_ = true;
    } else if (reply_.has_failure()) {
      why_ = "failure " + std::to_string(reply_.failure().kind()) + ": " + reply_.failure().reason();
    } else {
      why_ = "a challenge to PLAIN with an initial response";
    }
  }
  void OnDone(const grpc::Status& s) override {
    if (!s.ok()) {
      success_ = false;
      why_ = "rpc " + std::to_string(static_cast<int>(s.error_code())) + ": " + s.error_message();
    }
    done_(success_, why_);
    delete this;
  }

 private:
  grpc::ClientContext ctx_;
  pb::AuthStep step_;
  pb::AuthReply reply_;
  bool success_ = false;
  std::string why_;
  std::function<void(bool, std::string)> done_;
};

struct Login {
  std::string login, password;
  bool good = true;  // the attempt file's third column: 0 = a wrong password, refused is right
};

// login<TAB>password[<TAB>1|0] lines: an attempt script (lookup_bench logins writes one).
std::vector<Login> read_logins(const std::string& file) {
  std::vector<Login> users;
  std::ifstream in(file);
  for (std::string line; std::getline(in, line);) {
    auto tab = line.find('\t');
    if (tab == std::string::npos) continue;
    auto tab2 = line.find('\t', tab + 1);
    Login l{line.substr(0, tab), line.substr(tab + 1, tab2 == std::string::npos ? std::string::npos : tab2 - tab - 1)};
    if (tab2 != std::string::npos) l.good = line.substr(tab2 + 1) != "0";
    users.push_back(std::move(l));
  }
  return users;
}

// The verdict against the script: a right password must succeed, a wrong one must be refused.
void score(Tally& t, const Login& u, bool ok, const std::string& why) {
  if (ok == u.good) {
    (ok ? t.found : t.unknown).fetch_add(1);
  } else {
    t.error(u.login + (u.good ? ": " + why : ": a wrong password was accepted"));
  }
}

void start_auth(Tally& t, const std::vector<Login>& users, uint64_t base, std::vector<std::unique_ptr<pb::Auth::Stub>>& st) {
  const uint64_t i = t.next.fetch_add(1);
  if (i >= t.latency_us.size()) return;
  const Login& u = users[(base + i) % users.size()];
  const auto t0 = Clock::now();
  new AuthCall(*st[i % st.size()], u.login, u.password, [&t, &users, &st, i, t0, &u, base](bool ok, std::string why) {
    t.record(i, t0);
    score(t, u, ok, why);
    start_auth(t, users, base, st);
    t.finish_one();
  });
}

// The cost of one argon2id hash at `cost` on this (the client's) core, for scale.
double local_hash_ms(uint64_t n, const authserv::password::Argon2Cost& cost) {
  if (n == 0) return 0;
  const auto h0 = Clock::now();
  for (uint64_t k = 0; k < n; ++k) (void)authserv::password::hash_argon2id("bench password", cost);
  return std::chrono::duration<double, std::milli>(Clock::now() - h0).count() / static_cast<double>(n);
}

authserv::password::Argon2Cost cost_flags(const Flags& fl) {
  authserv::password::Argon2Cost cost;
  cost.ops = fl.num("argon2-ops", cost.ops);
  cost.mem_bytes = static_cast<size_t>(fl.num("argon2-mem-kib", cost.mem_bytes >> 10)) << 10;
  return cost;
}

// Warm-up runs the script's first --warmup lines (first logins that fill both sides' caches), the
// measured phase the --calls lines after them.
int run_auth(const Flags& fl) {
  const auto target = need(fl, "target");
  const uint64_t calls = fl.num("calls", 60), warmup = fl.num("warmup", 4);
  const uint64_t inflight = std::max<uint64_t>(1, fl.num("inflight", 16));
  const uint64_t local = fl.num("local-hashes", 3);
  const auto cost = cost_flags(fl);
  std::vector<Login> users = read_logins(need(fl, "users"));
  const auto w = watch(fl);
  if (!fl.all_used()) return 2;
  if (users.empty()) {
    std::fprintf(stderr, "lookup_bench: no users for auth\n");
    return 2;
  }
  const double local_ms = local_hash_ms(local, cost);
  auto st = stubs(target, 1);
  auto go = [&](uint64_t base) {
    return [&, base](Tally& t) {
      for (uint64_t k = 0; k < inflight; ++k) start_auth(t, users, base, st);
      t.wait();
    };
  };
  measure(warmup, go(0));
  auto r = measure(calls, go(warmup), w);
  char extra[256];
  std::snprintf(extra, sizeof extra, "inflight=%llu argon2_ops=%llu argon2_mem_kib=%zu local_hash_ms=%.1f",
                static_cast<unsigned long long>(inflight), static_cast<unsigned long long>(cost.ops),
                cost.mem_bytes >> 10, local_ms);
  print("auth", r, extra);
  return r.errors == 0 ? 0 : 1;
}

// ---- Dovecot's auth-client protocol (doc: "Dovecot Authentication Protocol" v1.2) on its UNIX
// socket: the same script, the same in-flight count, one connection per in-flight login.
class DovecotAuthConn {
 public:
  explicit DovecotAuthConn(const std::string& path) {
    fd_ = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_un sa{};
    sa.sun_family = AF_UNIX;
    std::snprintf(sa.sun_path, sizeof sa.sun_path, "%s", path.c_str());
    if (fd_ < 0 || ::connect(fd_, reinterpret_cast<sockaddr*>(&sa), sizeof sa) != 0) {
      std::fprintf(stderr, "lookup_bench: cannot connect to %s\n", path.c_str());
      std::exit(1);
    }
    send("VERSION\t1\t2\nCPID\t" + std::to_string(::getpid() * 100 + next_cpid_++) + "\n");
    for (;;) {  // the server's handshake ends with DONE
      auto line = read_line();
      if (!line || *line == "DONE") break;
    }
  }
  ~DovecotAuthConn() {
    if (fd_ >= 0) ::close(fd_);
  }
  // True for OK, false for FAIL; `why` gets the line otherwise.
  bool plain(uint64_t id, const std::string& login, const std::string& password, std::string& why) {
    const std::string resp = std::string(1, '\0') + login + std::string(1, '\0') + password;
    std::string b64(sodium_base64_ENCODED_LEN(resp.size(), sodium_base64_VARIANT_ORIGINAL), '\0');
    sodium_bin2base64(b64.data(), b64.size(), reinterpret_cast<const unsigned char*>(resp.data()), resp.size(),
                      sodium_base64_VARIANT_ORIGINAL);
    b64.resize(std::strlen(b64.c_str()));
    send("AUTH\t" + std::to_string(id) + "\tPLAIN\tservice=imap\tsecured\tlip=127.0.0.1\trip=192.0.2.7\tresp=" + b64 + "\n");
    auto line = read_line();
    if (!line) {
      why = "connection closed";
      return false;
    }
    if (line->starts_with("OK\t")) return true;
    why = line->substr(0, 200);
    return false;
  }

 private:
  void send(const std::string& s) {
    for (size_t off = 0; off < s.size();) {
      const ssize_t n = ::write(fd_, s.data() + off, s.size() - off);
      if (n <= 0) return;
      off += static_cast<size_t>(n);
    }
  }
  std::optional<std::string> read_line() {
    for (;;) {
      if (auto nl = buf_.find('\n'); nl != std::string::npos) {
        std::string line = buf_.substr(0, nl);
        buf_.erase(0, nl + 1);
        return line;
      }
      char tmp[4096];
      const ssize_t n = ::read(fd_, tmp, sizeof tmp);
      if (n <= 0) return std::nullopt;
      buf_.append(tmp, static_cast<size_t>(n));
    }
  }
  static inline std::atomic<int> next_cpid_{0};
  int fd_ = -1;
  std::string buf_;
};

int run_dovecot(const Flags& fl) {
  const auto socket_path = need(fl, "socket");
  const uint64_t calls = fl.num("calls", 60), warmup = fl.num("warmup", 4);
  const uint64_t inflight = std::max<uint64_t>(1, fl.num("inflight", 16));
  const uint64_t local = fl.num("local-hashes", 3);
  const auto cost = cost_flags(fl);
  std::vector<Login> users = read_logins(need(fl, "users"));
  const auto w = watch(fl);
  if (!fl.all_used()) return 2;
  if (users.empty()) return 2;
  const double local_ms = local_hash_ms(local, cost);
  std::vector<std::unique_ptr<DovecotAuthConn>> conns;
  for (uint64_t k = 0; k < inflight; ++k) conns.push_back(std::make_unique<DovecotAuthConn>(socket_path));
  auto go = [&](uint64_t base) {
    return [&, base](Tally& t) {
      std::vector<std::thread> threads;
      for (uint64_t k = 0; k < inflight; ++k) {
        threads.emplace_back([&, k] {
          for (;;) {
            const uint64_t i = t.next.fetch_add(1);
            if (i >= t.latency_us.size()) return;
            const Login& u = users[(base + i) % users.size()];
            const auto t0 = Clock::now();
            std::string why;
            const bool ok = conns[k]->plain(base + i + 1, u.login, u.password, why);
            t.record(i, t0);
            score(t, u, ok, why);
            t.finish_one();
          }
        });
      }
      for (auto& th : threads) th.join();
    };
  };
  measure(warmup, go(0));
  auto r = measure(calls, go(warmup), w);
  char extra[256];
  std::snprintf(extra, sizeof extra, "inflight=%llu argon2_ops=%llu argon2_mem_kib=%zu local_hash_ms=%.1f",
                static_cast<unsigned long long>(inflight), static_cast<unsigned long long>(cost.ops),
                cost.mem_bytes >> 10, local_ms);
  print("dovecot", r, extra);
  return r.errors == 0 ? 0 : 1;
}

// ---- logins: N users with real argon2id hashes (both sides' files) and an attempt script:
// --population first logins (the warm-up), then --calls attempts of which --repeat (0.9) repeat a
// password that worked, the rest half first logins of users not seen yet, half wrong passwords.
int run_logins(const Flags& fl) {
  const std::string out = need(fl, "out");
  const uint64_t users = fl.num("users", 200), population = fl.num("population", 20), calls = fl.num("calls", 1000);
  const double repeat = std::stod(fl.str("repeat").empty() ? "0.9" : fl.str("repeat"));
  const auto cost = cost_flags(fl);
  const uint64_t threads = std::max<uint64_t>(1, fl.num("threads", 2));
  if (!fl.all_used()) return 2;
  std::vector<std::string> hashes(users);
  std::vector<std::thread> pool;
  std::atomic<uint64_t> next{0};
  for (uint64_t k = 0; k < threads; ++k) {
    pool.emplace_back([&] {
      for (uint64_t i; (i = next.fetch_add(1)) < users;) {
        auto h = authserv::password::hash_argon2id("pw" + std::to_string(i), cost);
        if (h) hashes[i] = *h;
      }
    });
  }
  for (auto& t : pool) t.join();
  std::ofstream import(out + "/logins_import.txt"), passwd(out + "/dovecot.passwd"), script(out + "/logins.txt");
  for (uint64_t i = 0; i < users; ++i) {
    if (hashes[i].empty()) return 1;
    const std::string login = "l" + std::to_string(i) + "@bench.example";
    import << login << '\t' << hashes[i] << "\tstore1\n";
    // Dovecot names the same PHC string {ARGON2ID}; ours {ARGON2}.
    passwd << login << ":{ARGON2ID}" << hashes[i].substr(hashes[i].find('$')) << "\n";
  }
  std::mt19937_64 rng(17);
  std::uniform_real_distribution<double> u01(0, 1);
  uint64_t fresh = 0;
  auto line = [&](uint64_t i, bool good) {
    script << "l" << i << "@bench.example\t" << (good ? "pw" + std::to_string(i) : "wrong" + std::to_string(rng() % 1000))
           << '\t' << (good ? 1 : 0) << '\n';
  };
  for (; fresh < std::min(population, users); ++fresh) line(fresh, true);
  uint64_t first = 0, wrong = 0;
  for (uint64_t c = 0; c < calls; ++c) {
    const uint64_t seen = rng() % fresh;
    if (u01(rng) < repeat) {
      line(seen, true);
    } else if (rng() % 2 == 0 && fresh < users) {
      line(fresh++, true);
      ++first;
    } else {
      line(seen, false);
      ++wrong;
    }
  }
  std::printf("logins users=%llu population=%llu calls=%llu first=%llu wrong=%llu argon2_ops=%llu argon2_mem_kib=%zu\n",
              static_cast<unsigned long long>(users), static_cast<unsigned long long>(population),
              static_cast<unsigned long long>(calls), static_cast<unsigned long long>(first),
              static_cast<unsigned long long>(wrong), static_cast<unsigned long long>(cost.ops), cost.mem_bytes >> 10);
  return 0;
}

// ---- gen: the same users for both directories, pre-hashed with {SSHA512} (a bulk import does not
// pay argon2id per user; neither side checks passwords in the lookup benchmark).
std::string ssha512(const std::string& password) {
  unsigned char salt[8];
  randombytes_buf(salt, sizeof salt);
  unsigned char buf[64 + sizeof salt];
  crypto_hash_sha512_state st;
  crypto_hash_sha512_init(&st);
  crypto_hash_sha512_update(&st, reinterpret_cast<const unsigned char*>(password.data()), password.size());
  crypto_hash_sha512_update(&st, salt, sizeof salt);
  crypto_hash_sha512_final(&st, buf);
  std::copy(salt, salt + sizeof salt, buf + 64);
  char b64[sodium_base64_ENCODED_LEN(sizeof buf, sodium_base64_VARIANT_ORIGINAL)];
  sodium_bin2base64(b64, sizeof b64, buf, sizeof buf, sodium_base64_VARIANT_ORIGINAL);
  return std::string("{SSHA512}") + b64;
}

int run_gen(const Flags& fl) {
  const std::string out = need(fl, "out");
  const uint64_t users = fl.num("users", 100000), addresses = fl.num("addresses", 200000);
  const uint64_t unknown_pct = std::min<uint64_t>(100, fl.num("unknown-pct", 10));
  const std::string domain = fl.str("domain", "bench.example"), base = fl.str("base", "o=postern");
  const uint64_t seed = fl.num("seed", 1);
  if (!fl.all_used()) return 2;
  auto uid = [](uint64_t i) {
    char b[16];
    std::snprintf(b, sizeof b, "u%06llu", static_cast<unsigned long long>(i));
    return std::string(b);
  };
  std::ofstream imp(out + "/import.txt"), ldif(out + "/slapd.ldif"), addr(out + "/addresses.txt");
  const std::string dom_dn = "o=" + domain + "," + base, people = "ou=People," + dom_dn;
  const std::string top = base.substr(base.find('=') + 1);
  ldif << "dn: " << base << "\nobjectClass: organization\no: " << top << "\n\n"
       << "dn: " << dom_dn << "\nobjectClass: organization\nobjectClass: sunManagedOrganization\n"
       << "objectClass: mailDomain\no: " << domain << "\nsunPreferredDomain: " << domain
       << "\nassociatedDomain: " << domain << "\ninetDomainStatus: active\nmailDomainStatus: active\n\n"
       << "dn: " << people << "\nobjectClass: organizationalUnit\nou: People\n\n";
  for (uint64_t i = 1; i <= users; ++i) {
    const std::string u = uid(i), mail = u + "@" + domain, host = "store" + std::to_string(i % 4 + 1) + "." + domain;
    const std::string hash = ssha512("pw-" + u);
    imp << mail << '\t' << hash << '\t' << host << '\n';
    ldif << "dn: uid=" << u << "," << people << "\nobjectClass: inetOrgPerson\nobjectClass: inetUser\n"
         << "objectClass: inetLocalMailRecipient\nobjectClass: inetMailUser\nuid: " << u << "\ncn: User " << u
         << "\nsn: " << u << "\nmail: " << mail << "\nmailHost: " << host
         << "\ninetUserStatus: active\nmailUserStatus: active\nuserPassword: " << hash << "\n\n";
  }
  std::mt19937_64 rng(seed);
  std::uniform_int_distribution<uint64_t> pick(1, users), pct(0, 99), stranger(1, 10 * users);
  for (uint64_t k = 0; k < addresses; ++k) {
    if (pct(rng) < unknown_pct) {
      addr << "nobody" << stranger(rng) << "@" << domain << "\t0\n";
    } else {
      addr << uid(pick(rng)) << "@" << domain << "\t1\n";
    }
  }
  imp.close();
  ldif.close();
  addr.close();
  if (!imp || !ldif || !addr) {
    std::fprintf(stderr, "lookup_bench: cannot write into %s\n", out.c_str());
    return 1;
  }
  std::printf("lookup_bench mode=gen result=ok users=%llu addresses=%llu unknown_pct=%llu\n",
              static_cast<unsigned long long>(users), static_cast<unsigned long long>(addresses),
              static_cast<unsigned long long>(unknown_pct));
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2 || std::string_view(argv[1]) == "--help" || std::string_view(argv[1]) == "-h") {
    std::fputs(kUsage, argc < 2 ? stderr : stdout);
    return argc < 2 ? 2 : 0;
  }
  if (sodium_init() < 0) {
    std::fprintf(stderr, "lookup_bench: libsodium failed to start\n");
    return 1;
  }
  Flags fl;
  if (!fl.parse(argc, argv, 2)) return 2;
  const std::string_view mode = argv[1];
  if (mode == "gen") return run_gen(fl);
  if (mode == "grpc") return run_grpc(fl);
  if (mode == "front") return run_front(fl);
  if (mode == "ldap") return run_ldap(fl);
  if (mode == "auth") return run_auth(fl);
  if (mode == "dovecot") return run_dovecot(fl);
  if (mode == "logins") return run_logins(fl);
  std::fprintf(stderr, "lookup_bench: unknown mode %s\n%s", argv[1], kUsage);
  return 2;
}
