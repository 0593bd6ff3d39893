// imap_load.cpp: the IMAP-over-TLS load client of bench/mmp/run, the same binary for every server: one
// thread on epoll with OpenSSL (as bench/tls/tls_load: a cheap client, so the one client core is
// not the limit). Modes: `logins` (connect, TLS, LOGIN, LOGOUT, again), `mix` (N logged-in clients
// looping SELECT, FETCH FLAGS ENVELOPE, FETCH BODY.PEEK[], STORE, SEARCH and optionally IDLE), and
// `hold` (N logged-in sessions kept idle until stdin closes). Prints key=value lines.
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/ssl.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <random>
#include <string>
#include <string_view>
#include <vector>

#include "bench/cpu_time.hpp"

namespace {

using Clock = std::chrono::steady_clock;

constexpr const char* kUsage =
    "usage: imap_load --port P [--host 127.0.0.1] --users FILE --mode logins|mix|hold [options]\n"
    "  --users FILE       lines \"login<TAB>password\"; client k takes user k, k+C, ... in turn\n"
    "  --auth login|plain LOGIN (default) or AUTHENTICATE PLAIN with the initial response (SASL-IR)\n"
    "  logins: --concurrency 16 --seconds 10 --warmup 2, or --once (every user exactly once, timed whole)\n"
    "  mix:    --concurrency 50 --seconds 10 --warmup 2 [--idle] [--window 20] [--seed 1]\n"
    "          each client logs in (not counted), then loops SELECT INBOX, FETCH a:b (FLAGS ENVELOPE),\n"
    "          FETCH n BODY.PEEK[], STORE n +/-FLAGS.SILENT (\\Flagged), SEARCH UNSEEN FROM \"senderK\"\n"
    "          [, IDLE + DONE]; commands/s over the window after the warm-up\n"
    "  hold:   --connections 10000 --concurrency 32 [--select INBOX] [--idle]: log in N sessions (and\n"
    "          SELECT; --idle: then IDLE, held once the server's \"+ idling\" came), print\n"
    "          \"ready N failures F\", keep them idle until stdin closes or SIGTERM, print dropped=K\n";

struct Options {
  std::string host = "127.0.0.1";
  int port = 0;
  std::string mode;
  std::string users_file;
  std::string auth = "login";
  int concurrency = 16;
  double seconds = 10;
  double warmup = 2;
  bool once = false;
  bool idle = false;
  int window = 20;
  uint64_t seed = 1;
  int connections = 10000;
  std::string select;
};

struct User {
  std::string login, password;
};

// What a client waits for. Kinds of command are the rows of the mix's report.
enum class Kind { Login, Logout, Select, FetchEnvelope, FetchBody, Store, Search, Idle, Count };
constexpr std::array<const char*, static_cast<size_t>(Kind::Count)> kKindName{
    "login", "logout", "select", "fetch_flags_envelope", "fetch_body", "store", "search", "idle"};

enum class Phase { Handshake, Greeting, Command, Held, Done };

struct Client {
  int fd = -1;
  SSL* ssl = nullptr;
  Phase phase = Phase::Handshake;
  size_t user = 0;
  std::string in;
  size_t literal_left = 0;  // bytes of a server literal still to skip
  std::string out;          // bytes SSL_write has not taken yet
  uint32_t want_events = 0;
  std::string tag;
  Kind kind = Kind::Login;
  Clock::time_point sent{}, connected{};
  bool idle_sent_done = false;
  bool logged_in = false;
  uint32_t exists = 0;
  int step = 0;
  uint64_t flips = 0;
};

volatile sig_atomic_t g_stop = 0;

std::string b64(std::string_view s) {
  std::string out(4 * ((s.size() + 2) / 3) + 1, '\0');
  int n = EVP_EncodeBlock(reinterpret_cast<unsigned char*>(out.data()), reinterpret_cast<const unsigned char*>(s.data()),
                          static_cast<int>(s.size()));
  out.resize(static_cast<size_t>(n));
  return out;
}

std::string quoted(const std::string& s) {
  std::string q = "\"";
  for (char c : s) {
    if (c == '"' || c == '\\') q += '\\';
    q += c;
  }
  return q + "\"";
}

double percentile(std::vector<uint32_t> v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  size_t i = static_cast<size_t>(p * static_cast<double>(v.size() - 1) + 0.5);
  return v[std::min(i, v.size() - 1)] / 1000.0;
}

class Load {
 public:
  Load(const Options& o, std::vector<User> users) : o_(o), users_(std::move(users)), rng_(o.seed) {
    ctx_ = SSL_CTX_new(TLS_client_method());
    // The same handshake against every server (bench/tls): TLS 1.3, X25519, AES-128-GCM, no resumption
    // and no certificate check, so the client's share of the work stays small and equal.
    SSL_CTX_set_min_proto_version(ctx_, TLS1_3_VERSION);
    SSL_CTX_set_max_proto_version(ctx_, TLS1_3_VERSION);
    SSL_CTX_set_verify(ctx_, SSL_VERIFY_NONE, nullptr);
    SSL_CTX_set_session_cache_mode(ctx_, SSL_SESS_CACHE_OFF);
    SSL_CTX_set_options(ctx_, SSL_OP_NO_TICKET);
    SSL_CTX_set_ciphersuites(ctx_, "TLS_AES_128_GCM_SHA256");
    SSL_CTX_set1_groups_list(ctx_, "X25519");
    SSL_CTX_set_mode(ctx_, SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER | SSL_MODE_ENABLE_PARTIAL_WRITE);
    epoll_ = epoll_create1(0);
    inet_pton(AF_INET, o.host.c_str(), &addr_.sin_addr);
    addr_.sin_family = AF_INET;
    addr_.sin_port = htons(static_cast<uint16_t>(o.port));
  }
  ~Load() {
    for (auto* c : clients_) free_client(c);
    SSL_CTX_free(ctx_);
    close(epoll_);
  }

  int logins() {
    const double cpu0 = bench::cpu_seconds();
    start_ = Clock::now();
    if (o_.once) {
      window_from_ = start_;
      window_to_ = Clock::time_point::max();
    } else {
      window_from_ = start_ + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(o_.warmup));
      window_to_ = window_from_ + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(o_.seconds));
    }
    const int n = o_.once ? std::min<int>(o_.concurrency, static_cast<int>(users_.size())) : o_.concurrency;
    for (int i = 0; i < n; ++i) open_client();
    Clock::time_point last_done = start_;
    while (!g_stop) {
      if (!o_.once && Clock::now() >= window_to_) break;
      if (o_.once && live_ == 0) break;
      poll_once(50);
      if (counted_ > 0) last_done = last_counted_;
    }
    const double secs = o_.once ? std::chrono::duration<double>(last_done - start_).count() : o_.seconds;
    const double cpu = bench::cpu_seconds() - cpu0;
    const double wall = std::chrono::duration<double>(Clock::now() - start_).count();
    std::printf("mode=logins result=%s logins=%llu seconds=%.2f rate=%.1f failures=%llu p50_ms=%.1f p99_ms=%.1f "
                "client_cpu=%.0f%%\n",
                failures_ == 0 && counted_ > 0 ? "ok" : "error", static_cast<unsigned long long>(counted_), secs,
                secs > 0 ? static_cast<double>(counted_) / secs : 0.0, static_cast<unsigned long long>(failures_),
                percentile(lat_[static_cast<size_t>(Kind::Logout)], 0.5),
                percentile(lat_[static_cast<size_t>(Kind::Logout)], 0.99), 100.0 * cpu / wall);
    return failures_ == 0 && counted_ > 0 ? 0 : 1;
  }

  int mix() {
    const double cpu0 = bench::cpu_seconds();
    start_ = Clock::now();
    window_from_ = window_to_ = Clock::time_point::max();  // set once every client has logged in
    for (int i = 0; i < o_.concurrency; ++i) open_client();
    const auto login_deadline = start_ + std::chrono::seconds(600);
    while (!g_stop && logged_in_ < o_.concurrency) {
      if (live_ == 0 || Clock::now() > login_deadline) {
        std::printf("mode=mix result=error logged_in=%d failures=%llu\n", logged_in_,
                    static_cast<unsigned long long>(failures_));
        return 1;
      }
      poll_once(50);
    }
    const auto began = Clock::now();
    window_from_ = began + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(o_.warmup));
    window_to_ = window_from_ + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(o_.seconds));
    double cpu_from = 0;
    bool in_window = false;
    while (!g_stop && Clock::now() < window_to_) {
      if (!in_window && Clock::now() >= window_from_) {
        in_window = true;
        cpu_from = bench::cpu_seconds();
      }
      poll_once(20);
    }
    const double cpu = bench::cpu_seconds() - (in_window ? cpu_from : cpu0);
    const bool ok = failures_ == 0 && counted_ > 0;
    std::printf("mode=mix result=%s clients=%d commands=%llu seconds=%.2f rate=%.1f failures=%llu client_cpu=%.0f%%\n",
                ok ? "ok" : "error", o_.concurrency, static_cast<unsigned long long>(counted_), o_.seconds,
                static_cast<double>(counted_) / o_.seconds, static_cast<unsigned long long>(failures_),
                100.0 * cpu / o_.seconds);
    for (size_t k = static_cast<size_t>(Kind::Select); k < static_cast<size_t>(Kind::Count); ++k) {
      if (lat_[k].empty()) continue;
      std::printf("kind=%s n=%zu rate=%.1f p50_ms=%.2f p99_ms=%.2f\n", kKindName[k], lat_[k].size(),
                  static_cast<double>(lat_[k].size()) / o_.seconds, percentile(lat_[k], 0.5), percentile(lat_[k], 0.99));
    }
    return ok ? 0 : 1;
  }

  int hold() {
    start_ = Clock::now();
    window_from_ = start_;
    window_to_ = Clock::time_point::max();
    int opened = 0;
    const auto deadline = start_ + std::chrono::seconds(1800);
    while (!g_stop && held_ + static_cast<int>(failures_) < o_.connections && Clock::now() < deadline) {
      while (opened < o_.connections && live_ - held_ < o_.concurrency) {
        open_client();
        ++opened;
      }
      poll_once(50);
    }
    const double secs = std::chrono::duration<double>(Clock::now() - start_).count();
    std::printf("ready %d failures %llu seconds %.1f\n", held_, static_cast<unsigned long long>(failures_), secs);
    std::fflush(stdout);
    // Idle from here on: a held session that the server closes counts as dropped.
    pollfd p{STDIN_FILENO, POLLIN, 0};
    while (!g_stop) {
      poll_once(0);
      int n = poll(&p, 1, 200);
      if (n > 0) {
        char buf[64];
        if (read(STDIN_FILENO, buf, sizeof buf) <= 0) break;
      }
    }
    std::printf("dropped=%llu\n", static_cast<unsigned long long>(dropped_));
    return held_ > 0 ? 0 : 1;
  }

 private:
  void open_client() {
    if (o_.once && next_user_ >= users_.size()) return;
    auto* c = new Client();
    c->user = next_user_++ % users_.size();
    c->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    int one = 1;
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    c->connected = Clock::now();
    int rc = connect(c->fd, reinterpret_cast<sockaddr*>(&addr_), sizeof addr_);
    if (rc != 0 && errno != EINPROGRESS) {
      note_failure("connect: " + std::string(std::strerror(errno)));
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
    c->want_events = ev.events;
    epoll_ctl(epoll_, EPOLL_CTL_ADD, c->fd, &ev);
    clients_.push_back(c);
    ++live_;
  }

  void free_client(Client* c) {
    if (c->ssl) {
      SSL_set_shutdown(c->ssl, SSL_SENT_SHUTDOWN | SSL_RECEIVED_SHUTDOWN);
      SSL_free(c->ssl);
    }
    if (c->fd >= 0) close(c->fd);
    delete c;
  }

  // Closes a client; in logins and mix modes another takes its place while the run goes on.
  void finish(Client* c, bool replace) {
    if (c->phase == Phase::Held) --held_;
    c->phase = Phase::Done;
    epoll_ctl(epoll_, EPOLL_CTL_DEL, c->fd, nullptr);
    for (auto& p : clients_) {
      if (p == c) {
        p = clients_.back();
        clients_.pop_back();
        break;
      }
    }
    --live_;
    dead_.push_back(c);  // freed after this poll round: its events may still be in the batch
    if (replace && !g_stop && (o_.mode == "logins" || o_.mode == "mix") && Clock::now() < window_to_) open_client();
  }

  void note_failure(const std::string& why) {
    ++failures_;
    if (failures_ <= 5) std::fprintf(stderr, "imap_load: %s\n", why.c_str());
  }

  void fail(Client* c, const std::string& why) {
    if (c->phase == Phase::Held) {
      ++dropped_;
      if (dropped_ <= 3) std::fprintf(stderr, "imap_load: a held session ended: %s\n", why.c_str());
    } else {
      unsigned long e = ERR_get_error();
      note_failure(why + (e ? std::string(" (") + ERR_error_string(e, nullptr) + ")" : ""));
    }
    ERR_clear_error();
    // A mix client that failed is replaced so the run keeps its concurrency; it logs in again.
    if (c->logged_in && o_.mode == "mix") --logged_in_;
    finish(c, true);
  }

  void poll_once(int timeout_ms) {
    epoll_event events[256];
    int n = epoll_wait(epoll_, events, 256, timeout_ms);
    for (int i = 0; i < n; ++i) {
      auto* c = static_cast<Client*>(events[i].data.ptr);
      if (c->phase != Phase::Done) drive(c);
    }
    for (auto* c : dead_) free_client(c);
    dead_.clear();
  }

  void want(Client* c, uint32_t what) {
    what |= EPOLLIN;
    if (what == c->want_events) return;
    epoll_event ev{};
    ev.events = what;
    ev.data.ptr = c;
    c->want_events = what;
    epoll_ctl(epoll_, EPOLL_CTL_MOD, c->fd, &ev);
  }

  void drive(Client* c) {
    if (c->phase == Phase::Handshake) {
      int rc = SSL_do_handshake(c->ssl);
      if (rc != 1) {
        int err = SSL_get_error(c->ssl, rc);
        if (err == SSL_ERROR_WANT_READ || err == SSL_ERROR_WANT_WRITE) {
          want(c, err == SSL_ERROR_WANT_WRITE ? static_cast<uint32_t>(EPOLLOUT) : 0u);
          return;
        }
        fail(c, "TLS handshake failed");
        return;
      }
      c->phase = Phase::Greeting;
      want(c, 0);
    }
    if (!flush(c)) return;
    char buf[16384];
    for (;;) {
      int n = SSL_read(c->ssl, buf, sizeof buf);
      if (n > 0) {
        c->in.append(buf, static_cast<size_t>(n));
        continue;
      }
      int err = SSL_get_error(c->ssl, n);
      if (err == SSL_ERROR_WANT_READ) break;
      if (err == SSL_ERROR_WANT_WRITE) {
        want(c, EPOLLOUT);
        break;
      }
      // The server closed. After LOGOUT's OK that is the end of a login; anything else is a failure.
      if (!c->in.empty()) parse(c);
      if (c->phase != Phase::Done) fail(c, "server closed the connection");
      return;
    }
    parse(c);
  }

  bool flush(Client* c) {
    while (!c->out.empty()) {
      int n = SSL_write(c->ssl, c->out.data(), static_cast<int>(c->out.size()));
      if (n > 0) {
        c->out.erase(0, static_cast<size_t>(n));
        continue;
      }
      int err = SSL_get_error(c->ssl, n);
      if (err == SSL_ERROR_WANT_WRITE || err == SSL_ERROR_WANT_READ) {
        want(c, err == SSL_ERROR_WANT_WRITE ? static_cast<uint32_t>(EPOLLOUT) : 0u);
        return true;
      }
      fail(c, "write failed");
      return false;
    }
    want(c, 0);
    return true;
  }

  // Lines of the server's responses; a literal's bytes are skipped by count, so message text
  // never looks like a tagged reply.
  void parse(Client* c) {
    size_t pos = 0;
    while (c->phase != Phase::Done) {
      if (c->literal_left > 0) {
        size_t take = std::min(c->literal_left, c->in.size() - pos);
        c->literal_left -= take;
        pos += take;
        if (c->literal_left > 0) break;
      }
      size_t eol = c->in.find("\r\n", pos);
      if (eol == std::string::npos) break;
      std::string_view line(c->in.data() + pos, eol - pos);
      pos = eol + 2;
      if (!line.empty() && line.back() == '}') {
        size_t open = line.rfind('{');
        if (open != std::string_view::npos) c->literal_left = std::strtoull(line.data() + open + 1, nullptr, 10);
      }
      on_line(c, line);
    }
    if (c->phase != Phase::Done) c->in.erase(0, pos);
  }

  void on_line(Client* c, std::string_view line) {
    if (c->phase == Phase::Greeting) {
      if (line.starts_with("* OK")) {
        c->phase = Phase::Command;
        send_login(c);
      } else {
        fail(c, "greeting: " + std::string(line));
      }
      return;
    }
    if (c->phase == Phase::Held) return;  // nothing is expected; an untagged BYE ends in a close
    if (line.starts_with("* ")) {
      // "* N EXISTS"
      if (line.ends_with(" EXISTS")) c->exists = static_cast<uint32_t>(std::strtoul(line.data() + 2, nullptr, 10));
      return;
    }
    if (line.starts_with("+")) {
      if (o_.mode == "hold" && c->kind == Kind::Idle) {  // in IDLE until the end: that is the session held
        c->phase = Phase::Held;
        ++held_;
        return;
      }
      if (c->kind == Kind::Idle && !c->idle_sent_done) {
        c->idle_sent_done = true;
        c->out += "DONE\r\n";
        flush(c);
      }
      return;
    }
    if (line.size() <= c->tag.size() || !line.starts_with(c->tag) || line[c->tag.size()] != ' ') return;
    std::string_view status = line.substr(c->tag.size() + 1);
    if (!status.starts_with("OK")) {
      fail(c, std::string(kKindName[static_cast<size_t>(c->kind)]) + " answered: " + std::string(line));
      return;
    }
    const auto now = Clock::now();
    const Kind done = c->kind;
    if (o_.mode == "logins") {
      if (done == Kind::Login) {
        send(c, Kind::Logout, "LOGOUT");
        return;
      }
      if (now >= window_from_ && now < window_to_) {
        ++counted_;
        last_counted_ = now;
        lat_[static_cast<size_t>(Kind::Logout)].push_back(
            static_cast<uint32_t>(std::chrono::duration_cast<std::chrono::microseconds>(now - c->connected).count()));
      }
      finish(c, true);
      return;
    }
    if (o_.mode == "hold") {
      if (done == Kind::Login && !o_.select.empty()) {
        send(c, Kind::Select, "SELECT " + quoted(o_.select));
        return;
      }
      if (done == Kind::Select && o_.idle) {
        send(c, Kind::Idle, "IDLE");
        return;
      }
      c->phase = Phase::Held;
      ++held_;
      return;
    }
    // mix
    if (done == Kind::Login) {
      c->logged_in = true;
      ++logged_in_;
    } else if (now >= window_from_ && now < window_to_) {
      ++counted_;
      lat_[static_cast<size_t>(done)].push_back(
          static_cast<uint32_t>(std::chrono::duration_cast<std::chrono::microseconds>(now - c->sent).count()));
    }
    next_mix_command(c);
  }

  void send_login(Client* c) {
    const User& u = users_[c->user];
    if (o_.auth == "plain") {
      send(c, Kind::Login, "AUTHENTICATE PLAIN " + b64(std::string(1, '\0') + u.login + '\0' + u.password));
    } else {
      send(c, Kind::Login, "LOGIN " + quoted(u.login) + " " + quoted(u.password));
    }
  }

  void send(Client* c, Kind kind, const std::string& command) {
    c->tag = std::string("t") += std::to_string(++tags_);
    c->kind = kind;
    c->sent = Clock::now();
    c->out += c->tag + " " + command + "\r\n";
    flush(c);
  }

  uint32_t pick(uint32_t lo, uint32_t hi) { return std::uniform_int_distribution<uint32_t>(lo, hi)(rng_); }

  void next_mix_command(Client* c) {
    const int steps = o_.idle ? 6 : 5;
    const int step = c->step++ % steps;
    const uint32_t n = std::max<uint32_t>(c->exists, 1);
    switch (step) {
      case 0:
        send(c, Kind::Select, "SELECT INBOX");
        return;
      case 1: {
        const uint32_t w = std::min<uint32_t>(static_cast<uint32_t>(o_.window), n);
        const uint32_t from = pick(1, n - w + 1);
        send(c, Kind::FetchEnvelope,
             "FETCH " + std::to_string(from) + ":" + std::to_string(from + w - 1) + " (FLAGS ENVELOPE)");
        return;
      }
      case 2:
        send(c, Kind::FetchBody, "FETCH " + std::to_string(pick(1, n)) + " BODY.PEEK[]");
        return;
      case 3:
        send(c, Kind::Store, "STORE " + std::to_string(pick(1, n)) + ((c->flips++ % 2) ? " -" : " +") +
                                 "FLAGS.SILENT (\\Flagged)");
        return;
      case 4:
        send(c, Kind::Search, "SEARCH UNSEEN FROM \"sender" + std::to_string(pick(0, 19)) + "@\"");
        return;
      default:
        c->idle_sent_done = false;
        send(c, Kind::Idle, "IDLE");
        return;
    }
  }

  Options o_;
  std::vector<User> users_;
  std::mt19937_64 rng_;
  SSL_CTX* ctx_ = nullptr;
  int epoll_ = -1;
  sockaddr_in addr_{};
  std::vector<Client*> clients_, dead_;
  size_t next_user_ = 0;
  uint64_t tags_ = 0;
  int live_ = 0, held_ = 0, logged_in_ = 0;
  unsigned long long counted_ = 0, failures_ = 0, dropped_ = 0;
  Clock::time_point start_{}, window_from_{}, window_to_{}, last_counted_{};
  std::array<std::vector<uint32_t>, static_cast<size_t>(Kind::Count)> lat_;
};

}  // namespace

int main(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    std::string key = argv[i];
    auto value = [&]() -> std::string { return i + 1 < argc ? argv[++i] : ""; };
    if (key == "--host") o.host = value();
    else if (key == "--port") o.port = std::atoi(value().c_str());
    else if (key == "--mode") o.mode = value();
    else if (key == "--users") o.users_file = value();
    else if (key == "--auth") o.auth = value();
    else if (key == "--concurrency") o.concurrency = std::atoi(value().c_str());
    else if (key == "--seconds") o.seconds = std::atof(value().c_str());
    else if (key == "--warmup") o.warmup = std::atof(value().c_str());
    else if (key == "--once") o.once = true;
    else if (key == "--idle") o.idle = true;
    else if (key == "--window") o.window = std::atoi(value().c_str());
    else if (key == "--seed") o.seed = std::strtoull(value().c_str(), nullptr, 10);
    else if (key == "--connections") o.connections = std::atoi(value().c_str());
    else if (key == "--select") o.select = value();
    else {
      std::fputs(kUsage, stderr);
      return 2;
    }
  }
  if (o.mode == "hold" && o.idle && o.select.empty()) o.select = "INBOX";  // IDLE watches the selected mailbox
  if (o.port <= 0 || o.users_file.empty() || (o.mode != "logins" && o.mode != "mix" && o.mode != "hold") ||
      (o.auth != "login" && o.auth != "plain") || o.concurrency < 1 || o.seconds <= 0 || o.window < 1) {
    std::fputs(kUsage, stderr);
    return 2;
  }
  std::vector<User> users;
  std::ifstream f(o.users_file);
  for (std::string line; std::getline(f, line);) {
    auto tab = line.find('\t');
    if (tab == std::string::npos) continue;
    auto tab2 = line.find('\t', tab + 1);
    users.push_back({line.substr(0, tab), line.substr(tab + 1, tab2 == std::string::npos ? tab2 : tab2 - tab - 1)});
  }
  if (users.empty()) {
    std::fprintf(stderr, "imap_load: no users in %s\n", o.users_file.c_str());
    return 2;
  }
  rlimit nofile{};
  if (getrlimit(RLIMIT_NOFILE, &nofile) == 0) {  // thousands of held sessions
    nofile.rlim_cur = nofile.rlim_max;
    setrlimit(RLIMIT_NOFILE, &nofile);
  }
  signal(SIGPIPE, SIG_IGN);
  struct sigaction sa{};
  sa.sa_handler = [](int) { g_stop = 1; };
  sigaction(SIGTERM, &sa, nullptr);
  sigaction(SIGINT, &sa, nullptr);
  Load load(o, std::move(users));
  if (o.mode == "logins") return load.logins();
  if (o.mode == "mix") return load.mix();
  return load.hold();
}
