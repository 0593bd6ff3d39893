// tls_load.cpp: TLS load for run_tls_bench, the same client for every server: one thread on epoll with
// OpenSSL. `handshakes`: C connections in flight, each a full TLS 1.3 handshake (no resumption, no
// certificate check: the client's cost stays small), read the server's first bytes, close; reports
// handshakes per second. `hold`: opens N connections, completes their handshakes (and, with
// --read-first, reads the server's first bytes), prints "ready N", then keeps them idle until stdin
// closes or SIGTERM.
// Usage: tls_load --port P [--host 127.0.0.1] --mode handshakes|hold [--seconds 5] [--concurrency 16]
//                 [--connections 2000] [--tls12] [--read-first]
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/times.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

namespace {

using Clock = std::chrono::steady_clock;

struct Options {
  std::string host = "127.0.0.1";
  int port = 0;
  std::string mode = "handshakes";
  double seconds = 5;
  int concurrency = 16;
  int connections = 2000;
  bool tls12 = false;
  bool read_first = false;  // hold: a connection counts once the server's first bytes arrived
};

struct Conn {
  int fd = -1;
  SSL* ssl = nullptr;
  bool connected = false;  // TCP
  bool handshaken = false;
};

volatile sig_atomic_t g_stop = 0;

int usage() {
  std::fprintf(stderr,
               "usage: tls_load --port P [--host 127.0.0.1] --mode handshakes|hold [--seconds 5] [--concurrency 16]\n"
               "                [--connections 2000] [--tls12] [--read-first]\n");
  return 2;
}

class Load {
 public:
  explicit Load(const Options& o) : o_(o) {
    ctx_ = SSL_CTX_new(TLS_client_method());
    int version = o.tls12 ? TLS1_2_VERSION : TLS1_3_VERSION;
    SSL_CTX_set_min_proto_version(ctx_, version);
    SSL_CTX_set_max_proto_version(ctx_, version);
    SSL_CTX_set_verify(ctx_, SSL_VERIFY_NONE, nullptr);
    SSL_CTX_set_session_cache_mode(ctx_, SSL_SESS_CACHE_OFF);
    SSL_CTX_set_options(ctx_, SSL_OP_NO_TICKET);
    // The same suite and group everywhere, whatever each server prefers.
    SSL_CTX_set_ciphersuites(ctx_, "TLS_AES_128_GCM_SHA256");
    SSL_CTX_set_cipher_list(ctx_, "ECDHE-ECDSA-AES128-GCM-SHA256");
    SSL_CTX_set1_groups_list(ctx_, "X25519");
    epoll_ = epoll_create1(0);
    inet_pton(AF_INET, o.host.c_str(), &addr_.sin_addr);
    addr_.sin_family = AF_INET;
    addr_.sin_port = htons(static_cast<uint16_t>(o.port));
  }
  ~Load() {
    for (auto* c : conns_) close_conn(c);
    SSL_CTX_free(ctx_);
    close(epoll_);
  }

  int handshakes() {
    auto start = Clock::now();
    auto until = start + std::chrono::duration<double>(o_.seconds);
    tms t0{};
    times(&t0);
    for (int i = 0; i < o_.concurrency; ++i) open_conn();
    while (Clock::now() < until && !g_stop) {
      run_once(20, [&](Conn* c) {
        // Handshake done and the server's first bytes ("ok") read: count, close, start another.
        ++done_;
        close_conn(c);
        open_conn();
      });
    }
    double secs = std::chrono::duration<double>(Clock::now() - start).count();
    tms t1{};
    times(&t1);
    double cpu = static_cast<double>((t1.tms_utime - t0.tms_utime) + (t1.tms_stime - t0.tms_stime)) /
                 static_cast<double>(sysconf(_SC_CLK_TCK));
    std::printf("handshakes=%llu seconds=%.2f rate=%.0f failures=%llu client_cpu=%.0f%%\n",
                static_cast<unsigned long long>(done_), secs, static_cast<double>(done_) / secs,
                static_cast<unsigned long long>(failures_), 100.0 * cpu / secs);
    return done_ > 0 ? 0 : 1;
  }

  int hold() {
    int opened = 0;
    std::vector<Conn*> ready;
    auto deadline = Clock::now() + std::chrono::seconds(120);
    while (static_cast<int>(ready.size()) + static_cast<int>(failures_) < o_.connections && Clock::now() < deadline &&
           !g_stop) {
      while (opened < o_.connections && in_flight_ < o_.concurrency) {
        open_conn();
        ++opened;
      }
      run_once(50, [&](Conn* c) {
        --in_flight_;
        epoll_ctl(epoll_, EPOLL_CTL_DEL, c->fd, nullptr);  // idle from here on
        ready.push_back(c);
      });
    }
    std::printf("ready %zu failures %llu\n", ready.size(), static_cast<unsigned long long>(failures_));
    std::fflush(stdout);
    // Hold until stdin closes or a signal.
    pollfd p{STDIN_FILENO, POLLIN, 0};
    while (!g_stop) {
      int n = poll(&p, 1, 200);
      if (n > 0) {
        char buf[64];
        if (read(STDIN_FILENO, buf, sizeof buf) <= 0) break;
      }
    }
    return ready.empty() ? 1 : 0;
  }

 private:
  void open_conn() {
    auto* c = new Conn();
    c->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    int one = 1;
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    int rc = connect(c->fd, reinterpret_cast<sockaddr*>(&addr_), sizeof addr_);
    if (rc != 0 && errno != EINPROGRESS) {
      ++failures_;
      close(c->fd);
      delete c;
      return;
    }
    c->ssl = SSL_new(ctx_);
    SSL_set_fd(c->ssl, c->fd);
    SSL_set_connect_state(c->ssl);
    SSL_set_tlsext_host_name(c->ssl, "localhost");
    epoll_event ev{};
    ev.events = EPOLLIN | EPOLLOUT;
    ev.data.ptr = c;
    epoll_ctl(epoll_, EPOLL_CTL_ADD, c->fd, &ev);
    conns_.push_back(c);
    ++in_flight_;
  }

  void close_conn(Conn* c) {
    if (c->fd < 0) return;
    // Like s_time: no close_notify, just the socket close.
    SSL_set_shutdown(c->ssl, SSL_SENT_SHUTDOWN | SSL_RECEIVED_SHUTDOWN);
    SSL_free(c->ssl);
    close(c->fd);
    c->fd = -1;
    for (auto& p : conns_) {
      if (p == c) {
        p = conns_.back();
        conns_.pop_back();
        break;
      }
    }
    delete c;
  }

  template <class F>
  void run_once(int timeout_ms, F on_ready) {
    epoll_event events[256];
    int n = epoll_wait(epoll_, events, 256, timeout_ms);
    for (int i = 0; i < n; ++i) {
      auto* c = static_cast<Conn*>(events[i].data.ptr);
      step(c, on_ready);
    }
  }

  template <class F>
  void step(Conn* c, F& on_ready) {
    if (!c->handshaken) {
      int rc = SSL_do_handshake(c->ssl);
      if (rc == 1) {
        c->handshaken = true;
        if (o_.mode == "hold" && !o_.read_first) {
          on_ready(c);
          return;
        }
      } else {
        int err = SSL_get_error(c->ssl, rc);
        if (err == SSL_ERROR_WANT_READ || err == SSL_ERROR_WANT_WRITE) {
          want(c, err == SSL_ERROR_WANT_READ ? EPOLLIN : EPOLLOUT);
          return;
        }
        fail(c);
        return;
      }
    }
    // The server speaks first ("ok"): reading it also takes in its session tickets.
    char buf[256];
    int n = SSL_read(c->ssl, buf, sizeof buf);
    if (n > 0) {
      on_ready(c);
      return;
    }
    int err = SSL_get_error(c->ssl, n);
    if (err == SSL_ERROR_WANT_READ || err == SSL_ERROR_WANT_WRITE) {
      want(c, err == SSL_ERROR_WANT_READ ? EPOLLIN : EPOLLOUT);
      return;
    }
    fail(c);
  }

  void want(Conn* c, uint32_t what) {
    epoll_event ev{};
    ev.events = what;
    ev.data.ptr = c;
    epoll_ctl(epoll_, EPOLL_CTL_MOD, c->fd, &ev);
  }

  void fail(Conn* c) {
    ++failures_;
    if (failures_ <= 3) {
      unsigned long e = ERR_get_error();
      std::fprintf(stderr, "tls_load: connection failed: %s\n", e ? ERR_error_string(e, nullptr) : "closed");
    }
    ERR_clear_error();
    --in_flight_;
    close_conn(c);
    if (o_.mode == "handshakes") open_conn();
  }

  Options o_;
  SSL_CTX* ctx_ = nullptr;
  int epoll_ = -1;
  sockaddr_in addr_{};
  std::vector<Conn*> conns_;
  unsigned long long done_ = 0;
  unsigned long long failures_ = 0;
  int in_flight_ = 0;
};

}  // namespace

int main(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    std::string key = argv[i];
    auto value = [&]() -> std::string { return i + 1 < argc ? argv[++i] : ""; };
    if (key == "--host") {
      o.host = value();
    } else if (key == "--port") {
      o.port = std::atoi(value().c_str());
    } else if (key == "--mode") {
      o.mode = value();
    } else if (key == "--seconds") {
      o.seconds = std::atof(value().c_str());
    } else if (key == "--concurrency") {
      o.concurrency = std::atoi(value().c_str());
    } else if (key == "--connections") {
      o.connections = std::atoi(value().c_str());
    } else if (key == "--tls12") {
      o.tls12 = true;
    } else if (key == "--read-first") {
      o.read_first = true;
    } else {
      return usage();
    }
  }
  if (o.port <= 0 || (o.mode != "handshakes" && o.mode != "hold")) return usage();
  rlimit nofile{};
  if (getrlimit(RLIMIT_NOFILE, &nofile) == 0) {  // as many descriptors as allowed: thousands of clients
    nofile.rlim_cur = nofile.rlim_max;
    setrlimit(RLIMIT_NOFILE, &nofile);
  }
  signal(SIGPIPE, SIG_IGN);
  struct sigaction sa{};
  sa.sa_handler = [](int) { g_stop = 1; };
  sigaction(SIGTERM, &sa, nullptr);
  sigaction(SIGINT, &sa, nullptr);
  Load load(o);
  return o.mode == "handshakes" ? load.handshakes() : load.hold();
}
