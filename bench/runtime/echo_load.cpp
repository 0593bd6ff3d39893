// echo_load.cpp: load generator for line-echo servers (postern-echo, socat): connections per second
// with latency, or pipelined stream throughput. One thread on epoll; stops by itself on time or count.
// Usage: echo_load --mode connect|stream --port N [--host 127.0.0.1] [--seconds S] [--count N]
//                  [--concurrency C] [--line-size B] [--window W] [--greeting] [--sources N]
#include "bench/cpu_time.hpp"
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <chrono>
#include <cinttypes>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "common/result.hpp"

namespace {

using Clock = std::chrono::steady_clock;
using common::ErrorKind;
using common::Result;
using common::fail;

enum class Mode { Connect, Stream };

struct Options {
  Mode mode = Mode::Connect;
  std::string host = "127.0.0.1";
  int port = 0;
  double seconds = 5;
  uint64_t count = 0;  // 0: bounded by time only
  int concurrency = 32;
  size_t line_size = 128;  // bytes per line including the CRLF
  int window = 16;         // lines in flight per stream connection
  bool greeting = false;   // the server sends one line first (postern-echo's "+ready <id>")
  int sources = 1;         // loopback source addresses 127.0.0.1..N, used round-robin
};

constexpr std::string_view kUsage =
    "usage: echo_load --mode connect|stream --port N [--host 127.0.0.1] [--seconds 5] [--count 0]\n"
    "                 [--concurrency 32] [--line-size 128] [--window 16] [--greeting] [--sources 1]\n"
    "  connect: each client loops connect, [read greeting], send \"ping\\r\\n\", read the echo, close\n"
    "  stream:  each connection keeps --window lines of --line-size bytes (CRLF included) in flight\n"
    "  --sources N: bind clients to 127.0.0.1..N in turn; each address has its own ephemeral ports,\n"
    "               so TIME_WAIT from earlier connections does not limit the connect rate\n";

template <class T>
bool parse_number(std::string_view s, T& out) {
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), out);
  return ec == std::errc() && p == s.data() + s.size();
}

Result<Options> parse_args(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    std::string_view a = argv[i];
    if (a == "--greeting") {
      o.greeting = true;
      continue;
    }
    if (a == "--help" || a == "-h") return fail(ErrorKind::Config, "");
    constexpr std::string_view kValued[] = {"--mode",        "--host",      "--port",   "--seconds", "--count",
                                            "--concurrency", "--line-size", "--window", "--sources"};
    if (std::find(std::begin(kValued), std::end(kValued), a) == std::end(kValued))
      return fail(ErrorKind::Config, "unknown flag " + std::string(a));
    if (i + 1 >= argc) return fail(ErrorKind::Config, std::string(a) + " needs a value");
    std::string_view v = argv[++i];
    bool ok = true;
    if (a == "--mode") {
      if (v == "connect") o.mode = Mode::Connect;
      else if (v == "stream") o.mode = Mode::Stream;
      else ok = false;
    } else if (a == "--host") {
      o.host = v;
    } else if (a == "--port") {
      ok = parse_number(v, o.port) && o.port > 0 && o.port < 65536;
    } else if (a == "--seconds") {
      ok = parse_number(v, o.seconds) && o.seconds > 0 && o.seconds <= 3600;
    } else if (a == "--count") {
      ok = parse_number(v, o.count);
    } else if (a == "--concurrency") {
      ok = parse_number(v, o.concurrency) && o.concurrency >= 1 && o.concurrency <= 100000;
    } else if (a == "--line-size") {
      ok = parse_number(v, o.line_size) && o.line_size >= 3 && o.line_size <= (1u << 20);
    } else if (a == "--sources") {
      ok = parse_number(v, o.sources) && o.sources >= 1 && o.sources <= 254;
    } else if (a == "--window") {
      ok = parse_number(v, o.window) && o.window >= 1 && o.window <= 100000;
    }
    if (!ok) return fail(ErrorKind::Config, "bad value for " + std::string(a) + ": " + std::string(v));
  }
  if (o.port == 0) return fail(ErrorKind::Config, "--port is required");
  return o;
}

// Enough descriptors for every client at once; the soft limit is often 1024.
void raise_nofile() {
  rlimit r{};
  if (getrlimit(RLIMIT_NOFILE, &r) == 0 && r.rlim_cur < r.rlim_max) {
    r.rlim_cur = r.rlim_max;
    setrlimit(RLIMIT_NOFILE, &r);
  }
}

using bench::cpu_seconds;

// Failures a run can meet; any of them (or a mismatch) makes the result "error".
struct Errors {
  uint64_t connect = 0;   // socket()/connect() failed, e.g. EADDRNOTAVAIL or ECONNREFUSED
  uint64_t reset = 0;     // read/write error on an established connection
  uint64_t eof = 0;       // the server closed before the exchange was complete
  uint64_t greeting = 0;  // first line was not "+ready ..." (e.g. "-ERR refused ...")
  uint64_t total() const { return connect + reset + eof + greeting; }
};

class LoadBase {
 public:
  explicit LoadBase(const Options& o) : opt_(o) {
    addr_.sin_family = AF_INET;
    addr_.sin_port = htons(static_cast<uint16_t>(o.port));
    host_ok_ = inet_pton(AF_INET, o.host.c_str(), &addr_.sin_addr) == 1;
    epfd_ = epoll_create1(EPOLL_CLOEXEC);
  }
  ~LoadBase() {
    if (epfd_ >= 0) close(epfd_);
  }
  LoadBase(const LoadBase&) = delete;
  LoadBase& operator=(const LoadBase&) = delete;

  Result<void> check() const {
    if (epfd_ < 0) return fail(ErrorKind::Internal, std::string("epoll_create1: ") + strerror(errno));
    if (!host_ok_) return fail(ErrorKind::Config, "--host must be a numeric IPv4 address: " + opt_.host);
    if (opt_.sources > 1 && (ntohl(addr_.sin_addr.s_addr) >> 24) != 127)
      return fail(ErrorKind::Config, "--sources needs a loopback --host");
    return {};
  }

 protected:
  // A non-blocking socket with connect() under way, registered for `events` with `tag`; -1 on error.
  int start_connect(uint32_t events, uint64_t tag) {
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
      ++errors_.connect;
      return -1;
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (opt_.sources > 1) {
      // The port is chosen at connect() time, per 4-tuple, not reserved by bind().
      setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof one);
      sockaddr_in src{};
      src.sin_family = AF_INET;
      src.sin_addr.s_addr = htonl(0x7f000001u + next_source_++ % static_cast<uint32_t>(opt_.sources));
      if (bind(fd, reinterpret_cast<const sockaddr*>(&src), sizeof src) != 0) {
        ++errors_.connect;
        close(fd);
        return -1;
      }
    }
    if (connect(fd, reinterpret_cast<const sockaddr*>(&addr_), sizeof addr_) != 0 && errno != EINPROGRESS) {
      ++errors_.connect;
      close(fd);
      return -1;
    }
    epoll_event ev{};
    ev.events = events;
    ev.data.u64 = tag;
    if (epoll_ctl(epfd_, EPOLL_CTL_ADD, fd, &ev) != 0) {
      ++errors_.connect;
      close(fd);
      return -1;
    }
    return fd;
  }

  bool connect_failed(int fd) {
    int err = 0;
    socklen_t len = sizeof err;
    if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0 || err != 0) {
      ++errors_.connect;
      return true;
    }
    return false;
  }

  void modify(int fd, uint32_t events, uint64_t tag) {
    epoll_event ev{};
    ev.events = events;
    ev.data.u64 = tag;
    epoll_ctl(epfd_, EPOLL_CTL_MOD, fd, &ev);
  }

  int wait_ms(Clock::time_point deadline) const {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
    return static_cast<int>(std::clamp<int64_t>(left + 1, 1, 100));
  }

  const Options& opt_;
  sockaddr_in addr_{};
  bool host_ok_ = false;
  uint32_t next_source_ = 0;
  int epfd_ = -1;
  Errors errors_;
  uint64_t mismatches_ = 0;
};

// connect mode: every client is one short session; a finished one is replaced at once.
class ConnectLoad : LoadBase {
 public:
  using LoadBase::check;
  using LoadBase::LoadBase;

  int run() {
    clients_.resize(static_cast<size_t>(opt_.concurrency));
    latencies_us_.reserve(1 << 20);
    const auto start = Clock::now();
    deadline_ = start + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(opt_.seconds));
    const double cpu0 = cpu_seconds();
    for (size_t i = 0; i < clients_.size(); ++i) begin(i);

    std::vector<epoll_event> events(clients_.size());
    while (!done()) {
      // Clients whose connect() failed at once are retried here, not in a tight loop.
      for (size_t i : std::exchange(retry_, {})) begin(i);
      int n = epoll_wait(epfd_, events.data(), static_cast<int>(events.size()), wait_ms(deadline_));
      if (n < 0 && errno != EINTR) break;
      for (int k = 0; k < n; ++k) on_event(events[static_cast<size_t>(k)].data.u64, events[static_cast<size_t>(k)].events);
    }
    const double elapsed = std::chrono::duration<double>(Clock::now() - start).count();
    const double cpu = cpu_seconds() - cpu0;
    uint64_t unfinished = 0;
    for (auto& c : clients_) {
      if (c.fd >= 0) {
        ++unfinished;
        close(c.fd);
      }
    }
    const uint64_t done_count = latencies_us_.size();
    const bool ok = mismatches_ == 0 && errors_.total() == 0 && done_count > 0;
    std::printf(
        "echo_load mode=connect result=%s concurrency=%d sources=%d greeting=%d seconds=%.2f completed=%" PRIu64
        " conn_per_s=%.1f p50_us=%u p99_us=%u max_us=%u mismatches=%" PRIu64 " errors=%" PRIu64
        " connect_errors=%" PRIu64 " resets=%" PRIu64 " early_eof=%" PRIu64 " bad_greeting=%" PRIu64
        " unfinished=%" PRIu64 " client_cpu=%.2f\n",
        ok ? "ok" : "error", opt_.concurrency, opt_.sources, opt_.greeting ? 1 : 0, elapsed, done_count,
        static_cast<double>(done_count) / elapsed, percentile(0.50), percentile(0.99), percentile(1.0), mismatches_,
        errors_.total(), errors_.connect, errors_.reset, errors_.eof, errors_.greeting, unfinished, cpu / elapsed);
    return ok ? 0 : 1;
  }

 private:
  enum class Phase { Idle, Connecting, Greeting, Echo };
  struct Client {
    int fd = -1;
    Phase phase = Phase::Idle;
    Clock::time_point started;
    size_t have = 0;
    char buf[512];
  };
  static constexpr std::string_view kPing = "ping\r\n";

  bool done() const {
    return Clock::now() >= deadline_ || (opt_.count != 0 && latencies_us_.size() >= opt_.count);
  }

  void begin(size_t i) {
    auto& c = clients_[i];
    c.have = 0;
    c.phase = Phase::Connecting;
    c.started = Clock::now();
    c.fd = start_connect(EPOLLOUT, i);
    if (c.fd < 0) {
      c.phase = Phase::Idle;
      retry_.push_back(i);
    }
  }

  void finish(size_t i, bool completed) {
    auto& c = clients_[i];
    if (completed) {
      auto us = std::chrono::duration_cast<std::chrono::microseconds>(Clock::now() - c.started).count();
      latencies_us_.push_back(static_cast<uint32_t>(std::min<int64_t>(us, UINT32_MAX)));
    }
    close(c.fd);
    c.fd = -1;
    c.phase = Phase::Idle;
    if (!done()) begin(i);
  }

  bool send_ping(size_t i) {
    auto& c = clients_[i];
    // A fresh socket's send buffer always takes six bytes; a short write is a failed connection.
    if (send(c.fd, kPing.data(), kPing.size(), MSG_NOSIGNAL) != static_cast<ssize_t>(kPing.size())) {
      ++errors_.reset;
      finish(i, false);
      return false;
    }
    c.phase = Phase::Echo;
    return true;
  }

  void on_event(uint64_t i, uint32_t ev) {
    auto& c = clients_[i];
    if (c.phase == Phase::Connecting) {
      if (connect_failed(c.fd)) return finish(i, false);
      modify(c.fd, EPOLLIN, i);
      if (opt_.greeting) {
        c.phase = Phase::Greeting;
      } else if (!send_ping(i)) {
        return;
      }
      if (!(ev & EPOLLIN)) return;
    }
    ssize_t n = recv(c.fd, c.buf + c.have, sizeof c.buf - c.have, 0);
    if (n < 0) {
      if (errno == EAGAIN || errno == EINTR) return;
      ++errors_.reset;
      return finish(i, false);
    }
    if (n == 0) {
      ++errors_.eof;
      return finish(i, false);
    }
    c.have += static_cast<size_t>(n);
    std::string_view got(c.buf, c.have);
    if (c.phase == Phase::Greeting) {
      auto lf = got.find('\n');
      if (lf == std::string_view::npos) {
        if (c.have == sizeof c.buf) {
          ++errors_.greeting;
          finish(i, false);
        }
        return;
      }
      if (!got.starts_with("+ready")) {
        ++errors_.greeting;
        return finish(i, false);
      }
      // Nothing may follow the greeting before we speak; anything that does is checked as echo.
      std::memmove(c.buf, c.buf + lf + 1, c.have - lf - 1);
      c.have -= lf + 1;
      if (!send_ping(i)) return;
      got = std::string_view(c.buf, c.have);
    }
    if (c.phase == Phase::Echo) {
      auto lf = got.find('\n');
      if (lf == std::string_view::npos && c.have < sizeof c.buf) return;
      if (got != kPing) ++mismatches_;
      finish(i, true);
    }
  }

  unsigned percentile(double p) {
    if (latencies_us_.empty()) return 0;
    auto k = static_cast<size_t>(p * static_cast<double>(latencies_us_.size() - 1));
    std::nth_element(latencies_us_.begin(), latencies_us_.begin() + static_cast<ptrdiff_t>(k), latencies_us_.end());
    return latencies_us_[k];
  }

  std::vector<Client> clients_;
  std::vector<size_t> retry_;
  std::vector<uint32_t> latencies_us_;
  Clock::time_point deadline_;
};

// stream mode: long-lived pipelined connections. Line k of a connection is a rotation (by k mod
// kPeriod) of one printable pattern, so a lost, repeated, reordered or corrupted line fails memcmp.
class StreamLoad : LoadBase {
 public:
  using LoadBase::check;
  using LoadBase::LoadBase;

  int run() {
    const size_t body = opt_.line_size - 2;
    pattern_.resize(body + kPeriod);
    for (size_t j = 0; j < pattern_.size(); ++j) pattern_[j] = static_cast<char>('!' + j % kPeriod);
    conns_.resize(static_cast<size_t>(opt_.concurrency));
    for (size_t i = 0; i < conns_.size(); ++i) {
      auto& c = conns_[i];
      c.greeting = opt_.greeting;
      c.in.resize(std::max<size_t>(65536, 2 * opt_.line_size + 1024));
      // Edge-triggered: `writable` remembers an EPOLLOUT until a send says EAGAIN.
      c.fd = start_connect(EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET, i);
      if (c.fd < 0) {
        std::fprintf(stderr, "echo_load: connect to %s:%d failed: %s\n", opt_.host.c_str(), opt_.port,
                     strerror(errno));
        return 1;
      }
      ++alive_;
    }
    const auto start = Clock::now();
    const auto deadline =
        start + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(opt_.seconds));
    const double cpu0 = cpu_seconds();
    std::vector<epoll_event> events(conns_.size());
    while (Clock::now() < deadline && (opt_.count == 0 || lines_ < opt_.count) && alive_ > 0) {
      int n = epoll_wait(epfd_, events.data(), static_cast<int>(events.size()), wait_ms(deadline));
      if (n < 0 && errno != EINTR) break;
      for (int k = 0; k < n; ++k) on_event(events[static_cast<size_t>(k)].data.u64, events[static_cast<size_t>(k)].events);
    }
    const double elapsed = std::chrono::duration<double>(Clock::now() - start).count();
    const double cpu = cpu_seconds() - cpu0;
    for (auto& c : conns_)
      if (c.fd >= 0) close(c.fd);
    const bool ok = mismatches_ == 0 && errors_.total() == 0 && lines_ > 0;
    std::printf(
        "echo_load mode=stream result=%s concurrency=%d window=%d line_size=%zu greeting=%d seconds=%.2f"
        " lines=%" PRIu64 " lines_per_s=%.0f tx_MBps=%.2f rx_MBps=%.2f mismatches=%" PRIu64 " errors=%" PRIu64
        " connect_errors=%" PRIu64 " resets=%" PRIu64 " early_eof=%" PRIu64 " bad_greeting=%" PRIu64
        " client_cpu=%.2f\n",
        ok ? "ok" : "error", opt_.concurrency, opt_.window, opt_.line_size, opt_.greeting ? 1 : 0, elapsed, lines_,
        static_cast<double>(lines_) / elapsed, static_cast<double>(tx_bytes_) / elapsed / 1e6,
        static_cast<double>(rx_bytes_) / elapsed / 1e6, mismatches_, errors_.total(), errors_.connect,
        errors_.reset, errors_.eof, errors_.greeting, cpu / elapsed);
    return ok ? 0 : 1;
  }

 private:
  static constexpr size_t kPeriod = 89;  // prime, so rotations repeat only every 89 lines
  struct Conn {
    int fd = -1;
    bool connected = false;
    bool greeting = false;  // still waiting for the server's first line
    bool writable = false;
    uint64_t queued = 0;  // lines put into `out`
    uint64_t echoed = 0;  // lines received back and checked
    std::string out;
    size_t out_off = 0;
    std::vector<char> in;  // fixed size, set at start
    size_t in_len = 0;
    size_t in_off = 0;  // start of the first unchecked byte
  };

  void drop(Conn& c) {
    close(c.fd);
    c.fd = -1;
    --alive_;
  }

  void on_event(uint64_t i, uint32_t ev) {
    auto& c = conns_[i];
    if (c.fd < 0) return;
    if (!c.connected) {
      if (connect_failed(c.fd)) return drop(c);
      c.connected = true;
    }
    if (ev & EPOLLOUT) c.writable = true;
    if (ev & (EPOLLIN | EPOLLRDHUP | EPOLLERR | EPOLLHUP)) {
      if (!read_all(c)) return;
    }
    write_all(c);
  }

  // Reads until EAGAIN and checks every complete line; false when the connection is gone.
  bool read_all(Conn& c) {
    for (;;) {
      if (c.in_off > 0) {  // keep only the partial line
        std::memmove(c.in.data(), c.in.data() + c.in_off, c.in_len - c.in_off);
        c.in_len -= c.in_off;
        c.in_off = 0;
      }
      if (c.in_len == c.in.size()) {  // a full buffer without LF: not our line; drop it
        ++mismatches_;
        c.in_len = 0;
      }
      ssize_t n = recv(c.fd, c.in.data() + c.in_len, c.in.size() - c.in_len, 0);
      if (n < 0) {
        if (errno == EAGAIN || errno == EINTR) break;
        ++errors_.reset;
        drop(c);
        return false;
      }
      if (n == 0) {
        ++errors_.eof;
        drop(c);
        return false;
      }
      c.in_len += static_cast<size_t>(n);
      check_lines(c);
    }
    return true;
  }

  void check_lines(Conn& c) {
    for (;;) {
      const char* begin = c.in.data() + c.in_off;
      size_t left = c.in_len - c.in_off;
      const char* lf = static_cast<const char*>(std::memchr(begin, '\n', left));
      if (lf == nullptr) return;
      size_t len = static_cast<size_t>(lf - begin) + 1;
      c.in_off += len;
      std::string_view line(begin, len);
      if (c.greeting) {
        c.greeting = false;
        if (!line.starts_with("+ready")) ++errors_.greeting;
        continue;
      }
      const size_t body = opt_.line_size - 2;
      if (len != opt_.line_size || line.substr(body) != "\r\n" ||
          std::memcmp(begin, pattern_.data() + c.echoed % kPeriod, body) != 0) {
        ++mismatches_;
      }
      ++c.echoed;
      ++lines_;
      rx_bytes_ += len;
    }
  }

  void write_all(Conn& c) {
    if (c.greeting) return;  // nothing is sent before the greeting, as a real client would wait
    while (c.writable) {
      const uint64_t window = static_cast<uint64_t>(opt_.window);
      while (c.queued - c.echoed < window) {
        const size_t body = opt_.line_size - 2;
        c.out.append(pattern_.data() + c.queued % kPeriod, body);
        c.out += "\r\n";
        ++c.queued;
      }
      if (c.out_off == c.out.size()) return;
      ssize_t n = send(c.fd, c.out.data() + c.out_off, c.out.size() - c.out_off, MSG_NOSIGNAL);
      if (n < 0) {
        if (errno == EAGAIN) c.writable = false;
        else if (errno != EINTR) {
          ++errors_.reset;
          drop(c);
        }
        return;
      }
      tx_bytes_ += static_cast<uint64_t>(n);
      c.out_off += static_cast<size_t>(n);
      if (c.out_off == c.out.size()) {
        c.out.clear();
        c.out_off = 0;
      }
    }
  }

  std::string pattern_;
  std::vector<Conn> conns_;
  int alive_ = 0;  // connections not dropped
  uint64_t lines_ = 0, rx_bytes_ = 0, tx_bytes_ = 0;
};

}  // namespace

int main(int argc, char** argv) {
  auto opt = parse_args(argc, argv);
  if (!opt) {
    if (!opt.error().detail.empty()) std::fprintf(stderr, "echo_load: %s\n", opt.error().detail.c_str());
    std::fputs(kUsage.data(), stderr);
    return 2;
  }
  signal(SIGPIPE, SIG_IGN);
  raise_nofile();
  if (opt->mode == Mode::Connect) {
    ConnectLoad load(*opt);
    if (auto ok = load.check(); !ok) {
      std::fprintf(stderr, "echo_load: %s\n", ok.error().detail.c_str());
      return 2;
    }
    return load.run();
  }
  StreamLoad load(*opt);
  if (auto ok = load.check(); !ok) {
    std::fprintf(stderr, "echo_load: %s\n", ok.error().detail.c_str());
    return 2;
  }
  return load.run();
}
