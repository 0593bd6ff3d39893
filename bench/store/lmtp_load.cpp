// lmtp_load.cpp: LMTP delivery load for bench/store/run, the same client for Dovecot and postern-store:
// one thread per session, plaintext, implicit TLS or STARTTLS with a client certificate (OpenSSL).
// Usage: lmtp_load --port P [--host 127.0.0.1] [--sessions 8] [--users 4|a@x,b@y] [--messages 4000]
//                  [--size 4096] [--rcpts 1] [--pipelining] [--tls|--starttls --cert F --key F --ca F]
#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>

#include <algorithm>
#include <atomic>
#include <cctype>
#include <cerrno>
#include <charconv>
#include <chrono>
#include <cinttypes>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <latch>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "bench/cpu_time.hpp"
#include "common/result.hpp"

namespace {

using Clock = std::chrono::steady_clock;
using common::ErrorKind;
using common::Result;
using common::fail;

enum class Transport { Plain, Tls, StartTls };

struct Options {
  std::string host = "127.0.0.1";
  int port = 0;
  int sessions = 8;
  std::vector<std::string> users;  // recipient addresses
  uint64_t users_count = 4;
  std::string domain = "example.com";
  std::string sender = "bench@example.net";
  uint64_t messages = 4000;
  size_t size = 4096;  // bytes of each message as stored (before dot-stuffing), the SIZE= value
  int rcpts = 1;
  bool pipelining = false;
  bool size_param = true;  // MAIL FROM ... SIZE=n when the server announces SIZE
  Transport transport = Transport::Plain;
  std::string cert, key, ca, servername;
  int timeout_s = 60;
};

constexpr std::string_view kUsage =
    "usage: lmtp_load --port P [--host 127.0.0.1] [--sessions 8] [--users 4 | a@x,b@y] [--domain example.com]\n"
    "                 [--messages 4000] [--size 4096] [--rcpts 1] [--pipelining] [--no-size-param]\n"
    "                 [--tls | --starttls] [--cert client.pem --key client.key --ca ca.pem] [--servername NAME]\n"
    "                 [--timeout 60]\n"
    "  --users N: recipients user1@DOMAIN..userN@DOMAIN; message k goes to users k*R .. k*R+R-1 (mod N)\n"
    "  --messages: total over all sessions; each session takes the next message number until none is left\n"
    "  --size: exact bytes of each generated message (headers + body, CRLF lines of at most 78 octets)\n"
    "  --pipelining: MAIL, RCPTs and DATA in one write, and the message with the next envelope, as\n"
    "                RFC 2920 allows, when the server announces PIPELINING\n"
    "  prints one line of key=value; exits 1 if any reply was not 2xx (354 after DATA) or a session broke\n";

template <class T>
bool parse_number(std::string_view s, T& out) {
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), out);
  return ec == std::errc() && p == s.data() + s.size();
}

Result<Options> parse_args(int argc, char** argv) {
  Options o;
  std::string users_arg = "4";
  for (int i = 1; i < argc; ++i) {
    std::string_view a = argv[i];
    if (a == "--help" || a == "-h") return fail(ErrorKind::Config, "");
    if (a == "--pipelining") { o.pipelining = true; continue; }
    if (a == "--no-size-param") { o.size_param = false; continue; }
    if (a == "--tls") { o.transport = Transport::Tls; continue; }
    if (a == "--starttls") { o.transport = Transport::StartTls; continue; }
    constexpr std::string_view kValued[] = {"--host", "--port",  "--sessions", "--users",      "--domain", "--sender",
                                            "--messages", "--size", "--rcpts", "--cert", "--key", "--ca",
                                            "--servername", "--timeout"};
    if (std::find(std::begin(kValued), std::end(kValued), a) == std::end(kValued))
      return fail(ErrorKind::Config, "unknown flag " + std::string(a));
    if (i + 1 >= argc) return fail(ErrorKind::Config, std::string(a) + " needs a value");
    std::string_view v = argv[++i];
    bool ok = true;
    if (a == "--host") o.host = v;
    else if (a == "--port") ok = parse_number(v, o.port) && o.port > 0 && o.port < 65536;
    else if (a == "--sessions") ok = parse_number(v, o.sessions) && o.sessions >= 1 && o.sessions <= 10000;
    else if (a == "--users") users_arg = v;
    else if (a == "--domain") o.domain = v;
    else if (a == "--sender") o.sender = v;
    else if (a == "--messages") ok = parse_number(v, o.messages) && o.messages >= 1;
    else if (a == "--size") ok = parse_number(v, o.size) && o.size >= 512 && o.size <= (size_t{256} << 20);
    else if (a == "--rcpts") ok = parse_number(v, o.rcpts) && o.rcpts >= 1 && o.rcpts <= 10000;
    else if (a == "--cert") o.cert = v;
    else if (a == "--key") o.key = v;
    else if (a == "--ca") o.ca = v;
    else if (a == "--servername") o.servername = v;
    else if (a == "--timeout") ok = parse_number(v, o.timeout_s) && o.timeout_s >= 1 && o.timeout_s <= 3600;
    if (!ok) return fail(ErrorKind::Config, "bad value for " + std::string(a) + ": " + std::string(v));
  }
  if (o.port == 0) return fail(ErrorKind::Config, "--port is required");
  if (users_arg.find('@') != std::string::npos) {
    size_t p = 0;
    while (p <= users_arg.size()) {
      size_t c = users_arg.find(',', p);
      if (c == std::string::npos) c = users_arg.size();
      if (c > p) o.users.push_back(users_arg.substr(p, c - p));
      p = c + 1;
    }
  } else {
    if (!parse_number(std::string_view(users_arg), o.users_count) || o.users_count < 1 || o.users_count > 10000000)
      return fail(ErrorKind::Config, "bad value for --users: " + users_arg);
    for (uint64_t u = 1; u <= o.users_count; ++u) o.users.push_back("user" + std::to_string(u) + "@" + o.domain);
  }
  if (o.users.empty()) return fail(ErrorKind::Config, "--users names no recipient");
  if (o.transport != Transport::Plain && (o.cert.empty() != o.key.empty()))
    return fail(ErrorKind::Config, "--cert and --key go together");
  if (o.transport == Transport::Plain && (!o.cert.empty() || !o.ca.empty()))
    return fail(ErrorKind::Config, "--cert/--key/--ca need --tls or --starttls");
  return o;
}

// ---- the message: fixed-width numbers in the headers keep every message of a run the same length,
// so the body (and its dot-stuffed wire form) is built once.
constexpr size_t kMaxLine = 78;  // RFC 5322 §2.1.1: SHOULD be no more than 78 characters, CRLF excluded
constexpr int kNumberWidth = 12;

std::string rfc5322_date() {
  char b[64];
  std::time_t t = std::time(nullptr);
  std::tm tm{};
  gmtime_r(&t, &tm);
  std::strftime(b, sizeof b, "%a, %d %b %Y %H:%M:%S +0000", &tm);
  return b;
}

std::string headers_for(const Options& o, uint64_t msg, const std::vector<std::string_view>& to) {
  char num[32];
  std::snprintf(num, sizeof num, "%0*" PRIu64, kNumberWidth, msg);
  std::string h;
  h += "From: Bench Sender <" + o.sender + ">\r\n";
  // One To: address per line keeps lines short whatever --rcpts is (folded, RFC 5322 §2.2.3).
  h += "To: ";
  for (size_t i = 0; i < to.size(); ++i) {
    if (i) h += ",\r\n ";
    h += "<";
    h += to[i];
    h += ">";
  }
  h += "\r\n";
  h += "Subject: lmtp_load message " + std::string(num) + "\r\n";
  h += "Date: " + rfc5322_date() + "\r\n";
  h += "Message-ID: <" + std::string(num) + ".lmtp_load@example.net>\r\n";
  h += "MIME-Version: 1.0\r\n";
  h += "Content-Type: text/plain; charset=us-ascii\r\n";
  h += "Content-Transfer-Encoding: 7bit\r\n";
  h += "\r\n";
  return h;
}

// `bytes` of body in CRLF lines of at most kMaxLine octets; every 16th line starts with a dot, so the
// wire form exercises the server's dot-unstuffing (RFC 5321 §4.5.2).
std::string make_body(size_t bytes) {
  std::string b;
  b.reserve(bytes);
  uint32_t x = 0x9e3779b9u;
  size_t line = 0;
  while (b.size() < bytes) {
    size_t left = bytes - b.size();
    size_t n = std::min(kMaxLine - 2, left - 2);  // left >= 3 here, see below
    // Never leave 1 or 2 octets: they cannot form a line ending in CRLF.
    size_t after = left - n - 2;
    if (after == 1 || after == 2) n -= 3;
    std::string l;
    for (size_t i = 0; i < n; ++i) {
      x = x * 1664525u + 1013904223u;
      uint32_t r = (x >> 24) % 32;
      l += r < 26 ? static_cast<char>('a' + r) : ' ';
    }
    if (n > 0 && line % 16 == 15) l[0] = '.';
    b += l;
    b += "\r\n";
    ++line;
  }
  return b;
}

std::string dot_stuff(std::string_view body) {
  std::string w;
  w.reserve(body.size() + body.size() / 64 + 8);
  bool at_line_start = true;
  for (char c : body) {
    if (at_line_start && c == '.') w += '.';
    w += c;
    at_line_start = c == '\n';
  }
  return w;
}

// ---- the connection: a socket, optionally wrapped in OpenSSL after connect or after STARTTLS.
class Conn {
 public:
  Conn() = default;
  ~Conn() {
    if (ssl_) SSL_free(ssl_);
    if (fd_ >= 0) close(fd_);
  }
  Conn(const Conn&) = delete;
  Conn& operator=(const Conn&) = delete;

  Result<void> connect_to(const sockaddr_storage& addr, socklen_t len, int timeout_s) {
    fd_ = socket(addr.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd_ < 0) return fail(ErrorKind::Connect, std::string("socket: ") + std::strerror(errno));
    timeval tv{timeout_s, 0};
    setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(fd_, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    int one = 1;
    setsockopt(fd_, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (::connect(fd_, reinterpret_cast<const sockaddr*>(&addr), len) != 0)
      return fail(ErrorKind::Connect, std::string("connect: ") + std::strerror(errno));
    return {};
  }

  Result<void> start_tls(SSL_CTX* ctx, const std::string& servername) {
    ssl_ = SSL_new(ctx);
    if (!ssl_) return fail(ErrorKind::Internal, "SSL_new failed");
    SSL_set_fd(ssl_, fd_);
    if (!servername.empty()) {
      SSL_set_tlsext_host_name(ssl_, servername.c_str());
      SSL_set1_host(ssl_, servername.c_str());
    }
    if (SSL_connect(ssl_) != 1) return fail(ErrorKind::Remote, "TLS handshake failed: " + ssl_errors());
    return {};
  }

  Result<void> write_all(std::string_view data) {
    while (!data.empty()) {
      ssize_t n;
      if (ssl_) {
        size_t w = 0;
        n = SSL_write_ex(ssl_, data.data(), data.size(), &w) == 1 ? static_cast<ssize_t>(w) : -1;
        if (n < 0) return fail(ErrorKind::Remote, "TLS write failed: " + ssl_errors());
      } else {
        n = ::send(fd_, data.data(), data.size(), MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) return fail(ErrorKind::Remote, std::string("send: ") + std::strerror(errno));
      }
      data.remove_prefix(static_cast<size_t>(n));
    }
    return {};
  }

  // One reply (RFC 5321 §4.2.1: "ddd-text" lines, then "ddd text"); returns its code and text.
  struct Reply {
    int code = 0;
    std::string text;  // every line, CRLF-joined, for messages and LHLO keywords
  };
  Result<Reply> read_reply() {
    Reply r;
    for (int lines = 0; lines < 200; ++lines) {
      auto line = read_line();
      if (!line) return tl::unexpected(line.error());
      const std::string& l = *line;
      if (l.size() < 3 || !std::isdigit(static_cast<unsigned char>(l[0])) ||
          !std::isdigit(static_cast<unsigned char>(l[1])) || !std::isdigit(static_cast<unsigned char>(l[2])) ||
          (l.size() > 3 && l[3] != ' ' && l[3] != '-'))
        return fail(ErrorKind::Protocol, "malformed reply line: " + l.substr(0, 120));
      int code = (l[0] - '0') * 100 + (l[1] - '0') * 10 + (l[2] - '0');
      if (lines > 0 && code != r.code) return fail(ErrorKind::Protocol, "reply code changed in a multi-line reply");
      r.code = code;
      if (!r.text.empty()) r.text += "\n";
      r.text += l;
      if (l.size() == 3 || l[3] == ' ') return r;
    }
    return fail(ErrorKind::Protocol, "reply of more than 200 lines");
  }

  // After STARTTLS: nothing the server sent in plaintext may be read as if protected.
  bool has_buffered() const { return pos_ < buf_.size(); }

 private:
  Result<std::string> read_line() {
    for (;;) {
      size_t nl = buf_.find('\n', pos_);
      if (nl != std::string::npos) {
        size_t end = nl > pos_ && buf_[nl - 1] == '\r' ? nl - 1 : nl;
        std::string l = buf_.substr(pos_, end - pos_);
        pos_ = nl + 1;
        if (pos_ > 65536) {
          buf_.erase(0, pos_);
          pos_ = 0;
        }
        return l;
      }
      if (buf_.size() - pos_ > 8192) return fail(ErrorKind::Protocol, "reply line over 8192 octets");
      char tmp[16384];
      ssize_t n;
      if (ssl_) {
        size_t got = 0;
        int rc = SSL_read_ex(ssl_, tmp, sizeof tmp, &got);
        if (rc != 1) {
          int e = SSL_get_error(ssl_, rc);
          if (e == SSL_ERROR_ZERO_RETURN) return fail(ErrorKind::Remote, "server closed the connection (close_notify)");
          return fail(ErrorKind::Remote, "TLS read failed: " + ssl_errors() + " " + std::strerror(errno));
        }
        n = static_cast<ssize_t>(got);
      } else {
        n = ::recv(fd_, tmp, sizeof tmp, 0);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return fail(ErrorKind::Remote, "reply timed out");
        if (n < 0) return fail(ErrorKind::Remote, std::string("recv: ") + std::strerror(errno));
        if (n == 0) return fail(ErrorKind::Remote, "server closed the connection");
      }
      buf_.append(tmp, static_cast<size_t>(n));
    }
  }

  static std::string ssl_errors() {
    std::string s;
    while (unsigned long e = ERR_get_error()) {
      char b[256];
      ERR_error_string_n(e, b, sizeof b);
      if (!s.empty()) s += "; ";
      s += b;
    }
    return s.empty() ? "(no OpenSSL error)" : s;
  }

  int fd_ = -1;
  SSL* ssl_ = nullptr;
  std::string buf_;
  size_t pos_ = 0;
};

// ---- the run
struct Shared {
  const Options& o;
  sockaddr_storage addr{};
  socklen_t addr_len = 0;
  SSL_CTX* ctx = nullptr;
  std::atomic<uint64_t> next{0};
  std::atomic<uint64_t> delivered{0};  // recipients that got 2xx after the data
  std::atomic<uint64_t> messages_ok{0};
  std::atomic<uint64_t> failures{0};  // recipients or messages refused, or lost with a broken session
  std::atomic<uint64_t> broken_sessions{0};
  std::atomic<bool> server_pipelining{true};
  std::latch ready;
  std::mutex mu;
  std::vector<double> latencies_ms;
  std::string first_error;

  Shared(const Options& opt) : o(opt), ready(opt.sessions + 1) {}

  void note_error(const std::string& what) {
    std::lock_guard<std::mutex> lk(mu);
    if (first_error.empty()) first_error = what;
    std::fprintf(stderr, "lmtp_load: %s\n", what.c_str());
  }
};

bool has_keyword(const std::string& lhlo_text, std::string_view kw) {
  // Lines "250-KEYWORD params" / "250 KEYWORD"; compare the keyword case-insensitively.
  size_t p = 0;
  while (p < lhlo_text.size()) {
    size_t e = lhlo_text.find('\n', p);
    if (e == std::string::npos) e = lhlo_text.size();
    std::string_view l(lhlo_text.data() + p, e - p);
    if (l.size() > 4) {
      std::string_view k = l.substr(4);
      k = k.substr(0, k.find(' '));
      if (k.size() == kw.size() &&
          std::equal(k.begin(), k.end(), kw.begin(), [](char a, char b) { return std::toupper(a) == std::toupper(b); }))
        return true;
    }
    p = e + 1;
  }
  return false;
}

class Session {
 public:
  Session(Shared& s, int id) : s_(s), id_(id) {}

  void run() {
    // Every session connects and says LHLO before the clock starts.
    auto r = setup();
    s_.ready.arrive_and_wait();
    if (!r) {
      s_.note_error("session " + std::to_string(id_) + ": " + r.error().detail);
      s_.broken_sessions++;
      return;
    }
    auto d = deliver_all();
    if (!d) {
      s_.note_error("session " + std::to_string(id_) + ": " + d.error().detail);
      s_.broken_sessions++;
      // The message in hand is lost; so are the ones no session will now take (counted in main).
      s_.failures += static_cast<uint64_t>(s_.o.rcpts);
    } else {
      if (auto q = quit(); !q) s_.note_error("session " + std::to_string(id_) + ": QUIT: " + q.error().detail);
    }
    std::lock_guard<std::mutex> lk(s_.mu);
    s_.latencies_ms.insert(s_.latencies_ms.end(), lat_.begin(), lat_.end());
  }

 private:
  Result<void> expect(int code_class, std::string_view what, Conn::Reply* out = nullptr) {
    auto r = conn_.read_reply();
    if (!r) return tl::unexpected(r.error());
    if (r->code / 100 != code_class)
      return fail(ErrorKind::Remote, std::string(what) + " got: " + r->text.substr(0, 200));
    if (out) *out = std::move(*r);
    return {};
  }

  Result<void> lhlo() {
    if (auto w = conn_.write_all("LHLO lmtp-load.example.net\r\n"); !w) return w;
    Conn::Reply r;
    if (auto e = expect(2, "LHLO", &r); !e) return e;
    pipelining_ = s_.o.pipelining && has_keyword(r.text, "PIPELINING");
    if (s_.o.pipelining && !pipelining_) s_.server_pipelining = false;
    size_ = s_.o.size_param && has_keyword(r.text, "SIZE");
    starttls_offered_ = has_keyword(r.text, "STARTTLS");
    return {};
  }

  Result<void> setup() {
    if (auto c = conn_.connect_to(s_.addr, s_.addr_len, s_.o.timeout_s); !c) return c;
    if (s_.o.transport == Transport::Tls)
      if (auto t = conn_.start_tls(s_.ctx, s_.o.servername); !t) return t;
    if (auto g = expect(2, "greeting"); !g) return g;
    if (auto l = lhlo(); !l) return l;
    if (s_.o.transport == Transport::StartTls) {
      if (!starttls_offered_) return fail(ErrorKind::Remote, "server does not announce STARTTLS");
      if (auto w = conn_.write_all("STARTTLS\r\n"); !w) return w;
      if (auto e = expect(2, "STARTTLS"); !e) return e;
      // RFC 3207 §4.2: anything the server sent after its 220 before the handshake is an injection.
      if (conn_.has_buffered()) return fail(ErrorKind::Protocol, "server sent data after 220 to STARTTLS");
      if (auto t = conn_.start_tls(s_.ctx, s_.o.servername); !t) return t;
      if (auto l = lhlo(); !l) return l;  // RFC 3207 §4.2: forget what was learned before
    }
    return {};
  }

  std::string envelope(uint64_t msg, std::vector<std::string_view>& to) {
    const auto& users = s_.o.users;
    to.clear();
    for (int j = 0; j < s_.o.rcpts; ++j) to.push_back(users[(msg * s_.o.rcpts + j) % users.size()]);
    std::string e = "MAIL FROM:<" + s_.o.sender + ">";
    if (size_) e += " SIZE=" + std::to_string(s_.o.size);
    e += "\r\n";
    for (auto t : to) {
      e += "RCPT TO:<";
      e += t;
      e += ">\r\n";
    }
    e += "DATA\r\n";
    return e;
  }

  // Reads the replies to MAIL, the RCPTs and DATA; returns how many recipients were accepted, or
  // -1 when DATA was refused (nothing to send).
  Result<int> read_envelope_replies() {
    auto m = conn_.read_reply();
    if (!m) return tl::unexpected(m.error());
    bool mail_ok = m->code / 100 == 2;
    if (!mail_ok) note_refusal("MAIL", m->text);
    int accepted = 0;
    for (int j = 0; j < s_.o.rcpts; ++j) {
      auto r = conn_.read_reply();
      if (!r) return tl::unexpected(r.error());
      if (r->code / 100 == 2) {
        ++accepted;
      } else {
        note_refusal("RCPT", r->text);
        s_.failures++;
      }
    }
    auto d = conn_.read_reply();
    if (!d) return tl::unexpected(d.error());
    if (d->code != 354) {
      if (mail_ok && accepted > 0) note_refusal("DATA", d->text);
      s_.failures += static_cast<uint64_t>(accepted);
      return -1;
    }
    if (!mail_ok || accepted == 0)
      return fail(ErrorKind::Protocol, "server answered 354 to DATA without a sender and a recipient");
    return accepted;
  }

  // RFC 2033 §4.2: after the data, one reply per recipient that was accepted.
  Result<void> read_data_replies(int accepted, Clock::time_point started) {
    int ok = 0;
    for (int j = 0; j < accepted; ++j) {
      auto r = conn_.read_reply();
      if (!r) return tl::unexpected(r.error());
      if (r->code / 100 == 2) {
        ++ok;
      } else {
        note_refusal("end of data", r->text);
        s_.failures++;
      }
    }
    s_.delivered += static_cast<uint64_t>(ok);
    if (ok == s_.o.rcpts) s_.messages_ok++;
    lat_.push_back(std::chrono::duration<double, std::milli>(Clock::now() - started).count());
    return {};
  }

  Result<void> deliver_all() {
    std::vector<std::string_view> to;
    uint64_t msg = s_.next++;
    if (msg >= s_.o.messages) return {};
    std::string out = envelope(msg, to);
    Clock::time_point started = Clock::now();
    for (;;) {
      if (!pipelining_) {
        // One command, one reply: send each line of the envelope on its own.
        size_t p = 0;
        std::vector<std::string_view> lines;
        while (p < out.size()) {
          size_t e = out.find("\r\n", p) + 2;
          lines.emplace_back(out.data() + p, e - p);
          p = e;
        }
        int accepted = 0;
        bool mail_ok = false, data_ok = false;
        for (size_t i = 0; i < lines.size(); ++i) {
          if (auto w = conn_.write_all(lines[i]); !w) return w;
          auto r = conn_.read_reply();
          if (!r) return tl::unexpected(r.error());
          if (i == 0) {
            mail_ok = r->code / 100 == 2;
            if (!mail_ok) {
              note_refusal("MAIL", r->text);
              s_.failures += static_cast<uint64_t>(s_.o.rcpts);
              break;
            }
          } else if (i + 1 < lines.size()) {
            if (r->code / 100 == 2) {
              ++accepted;
            } else {
              note_refusal("RCPT", r->text);
              s_.failures++;
            }
            if (i + 2 == lines.size() && accepted == 0) break;  // no DATA without a recipient
          } else {
            data_ok = r->code == 354;
            if (!data_ok) {
              note_refusal("DATA", r->text);
              s_.failures += static_cast<uint64_t>(accepted);
            }
          }
        }
        if (data_ok) {
          if (auto w = conn_.write_all(message_wire(msg, to)); !w) return w;
          if (auto d = read_data_replies(accepted, started); !d) return d;
        } else {
          if (auto r = rset(); !r) return r;
        }
        msg = s_.next++;
        if (msg >= s_.o.messages) return {};
        out = envelope(msg, to);
        started = Clock::now();
        continue;
      }

      // Pipelined: the envelope group, then the data with the next envelope behind it (RFC 2920 §3.1:
      // message content may be the first "command" of a group; DATA ends one).
      if (auto w = conn_.write_all(out); !w) return w;
      for (;;) {
        auto acc = read_envelope_replies();
        if (!acc) return tl::unexpected(acc.error());
        uint64_t next = s_.next++;
        bool more = next < s_.o.messages;
        std::vector<std::string_view> next_to;
        if (*acc < 0) {
          // Nothing was sent after DATA; the transaction may hold state (a sender): reset it.
          if (auto r = rset(); !r) return r;
          if (!more) return {};
          msg = next;
          out = envelope(msg, to);
          started = Clock::now();
          break;  // back to the outer loop: write the new envelope
        }
        std::string data = message_wire(msg, to);
        std::string next_env;
        if (more) {
          next_env = envelope(next, next_to);
          data += next_env;
        }
        if (auto w = conn_.write_all(data); !w) return w;
        Clock::time_point next_started = Clock::now();
        if (auto d = read_data_replies(*acc, started); !d) return d;
        if (!more) return {};
        msg = next;
        to = std::move(next_to);
        started = next_started;
      }
    }
  }

  // The headers, then a body that makes the message exactly --size octets, dot-stuffed, and the
  // terminating ".". Header lengths differ only with the To: addresses (user9 and user10), so the
  // few wire bodies a run needs are built once.
  std::string message_wire(uint64_t msg, const std::vector<std::string_view>& to) {
    std::string h = headers_for(s_.o, msg, to);
    size_t body = s_.o.size - std::min(s_.o.size, h.size());
    auto it = bodies_.find(body);
    if (it == bodies_.end()) {
      std::string b = body >= 3 || body == 0 ? make_body(body) : std::string();
      it = bodies_.emplace(body, dot_stuff(b) + ".\r\n").first;
    }
    h += it->second;
    return h;
  }

  Result<void> rset() {
    if (auto w = conn_.write_all("RSET\r\n"); !w) return w;
    return expect(2, "RSET");
  }

  Result<void> quit() {
    if (auto w = conn_.write_all("QUIT\r\n"); !w) return w;
    return expect(2, "QUIT");
  }

  void note_refusal(std::string_view what, const std::string& text) {
    ++refusals_;
    if (refusals_ <= 3) s_.note_error("session " + std::to_string(id_) + ": " + std::string(what) + " refused: " + text.substr(0, 200));
  }

  Shared& s_;
  int id_;
  Conn conn_;
  bool pipelining_ = false;
  bool size_ = false;
  bool starttls_offered_ = false;
  int refusals_ = 0;
  std::vector<double> lat_;
  std::map<size_t, std::string> bodies_;
};

Result<void> resolve(Shared& s) {
  addrinfo hints{};
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* res = nullptr;
  std::string port = std::to_string(s.o.port);
  if (int rc = getaddrinfo(s.o.host.c_str(), port.c_str(), &hints, &res); rc != 0)
    return fail(ErrorKind::Config, "cannot resolve " + s.o.host + ": " + gai_strerror(rc));
  std::memcpy(&s.addr, res->ai_addr, res->ai_addrlen);
  s.addr_len = res->ai_addrlen;
  freeaddrinfo(res);
  return {};
}

Result<void> make_tls(Shared& s) {
  if (s.o.transport == Transport::Plain) return {};
  s.ctx = SSL_CTX_new(TLS_client_method());
  if (!s.ctx) return fail(ErrorKind::Internal, "SSL_CTX_new failed");
  SSL_CTX_set_min_proto_version(s.ctx, TLS1_2_VERSION);
  // Sessions of a benchmark run are long; resumption would not change the figures.
  SSL_CTX_set_session_cache_mode(s.ctx, SSL_SESS_CACHE_OFF);
  if (!s.o.cert.empty()) {
    if (SSL_CTX_use_certificate_chain_file(s.ctx, s.o.cert.c_str()) != 1)
      return fail(ErrorKind::Config, "cannot load --cert " + s.o.cert);
    if (SSL_CTX_use_PrivateKey_file(s.ctx, s.o.key.c_str(), SSL_FILETYPE_PEM) != 1)
      return fail(ErrorKind::Config, "cannot load --key " + s.o.key);
    if (SSL_CTX_check_private_key(s.ctx) != 1) return fail(ErrorKind::Config, "--key does not match --cert");
  }
  if (!s.o.ca.empty()) {
    if (SSL_CTX_load_verify_locations(s.ctx, s.o.ca.c_str(), nullptr) != 1)
      return fail(ErrorKind::Config, "cannot load --ca " + s.o.ca);
    SSL_CTX_set_verify(s.ctx, SSL_VERIFY_PEER, nullptr);
  } else {
    SSL_CTX_set_verify(s.ctx, SSL_VERIFY_NONE, nullptr);
  }
  return {};
}

double percentile(std::vector<double>& v, double p) {
  if (v.empty()) return 0;
  size_t k = std::min(v.size() - 1, static_cast<size_t>(p * static_cast<double>(v.size() - 1) + 0.5));
  std::nth_element(v.begin(), v.begin() + static_cast<long>(k), v.end());
  return v[k];
}

}  // namespace

int main(int argc, char** argv) {
  auto opt = parse_args(argc, argv);
  if (!opt) {
    if (!opt.error().detail.empty()) std::fprintf(stderr, "lmtp_load: %s\n", opt.error().detail.c_str());
    std::fputs(kUsage.data(), stderr);
    return 2;
  }
  signal(SIGPIPE, SIG_IGN);
  Shared s(*opt);
  if (auto r = resolve(s); !r) {
    std::fprintf(stderr, "lmtp_load: %s\n", r.error().detail.c_str());
    return 2;
  }
  if (auto r = make_tls(s); !r) {
    std::fprintf(stderr, "lmtp_load: %s\n", r.error().detail.c_str());
    return 2;
  }
  // Each message must fit its headers: the longest header block is the one with the longest To: set.
  {
    size_t longest = 0;
    for (const auto& u : opt->users) longest = std::max(longest, u.size());
    std::vector<std::string_view> to(static_cast<size_t>(opt->rcpts), std::string_view());
    std::string filler(longest, 'x');
    for (auto& t : to) t = filler;
    size_t h = headers_for(*opt, 0, to).size();
    if (h + 3 > opt->size) {
      std::fprintf(stderr, "lmtp_load: --size %zu is smaller than the headers (%zu octets) and a line\n", opt->size, h);
      return 2;
    }
  }
  std::vector<std::thread> threads;
  std::vector<std::unique_ptr<Session>> sessions;
  for (int i = 0; i < opt->sessions; ++i) sessions.push_back(std::make_unique<Session>(s, i));
  for (auto& se : sessions) threads.emplace_back([&se] { se->run(); });
  s.ready.arrive_and_wait();
  const auto t0 = Clock::now();
  const double cpu0 = bench::cpu_seconds();
  for (auto& t : threads) t.join();
  const double secs = std::chrono::duration<double>(Clock::now() - t0).count();
  const double cpu = bench::cpu_seconds() - cpu0;
  if (s.ctx) SSL_CTX_free(s.ctx);
  // Messages no session took because sessions broke are failures too.
  const uint64_t taken = std::min<uint64_t>(s.next.load(), opt->messages);
  if (taken < opt->messages) s.failures += (opt->messages - taken) * static_cast<uint64_t>(opt->rcpts);
  const uint64_t failures = s.failures.load();
  const bool ok = failures == 0 && s.broken_sessions.load() == 0;
  auto& lat = s.latencies_ms;
  const double p50 = percentile(lat, 0.50), p99 = percentile(lat, 0.99);
  const char* transport = opt->transport == Transport::Tls ? "tls" : opt->transport == Transport::StartTls ? "starttls" : "plain";
  std::printf(
      "result=%s messages=%" PRIu64 " messages_ok=%" PRIu64 " deliveries=%" PRIu64 " failures=%" PRIu64
      " broken_sessions=%" PRIu64 " seconds=%.3f msg_per_s=%.1f deliveries_per_s=%.1f p50_ms=%.2f p99_ms=%.2f"
      " sessions=%d users=%zu rcpts=%d size=%zu pipelining=%s transport=%s client_cpu=%.0f\n",
      ok ? "ok" : "error", opt->messages, s.messages_ok.load(), s.delivered.load(), failures,
      s.broken_sessions.load(), secs, static_cast<double>(s.messages_ok.load()) / secs,
      static_cast<double>(s.delivered.load()) / secs, p50, p99, opt->sessions, opt->users.size(), opt->rcpts,
      opt->size, !opt->pipelining ? "off" : s.server_pipelining ? "on" : "not-offered", transport,
      100.0 * cpu / secs);
  if (!ok) {
    std::fprintf(stderr, "lmtp_load: FAILED: %" PRIu64 " refused or lost deliveries, %" PRIu64 " broken sessions; first: %s\n",
                 failures, s.broken_sessions.load(), s.first_error.c_str());
    return 1;
  }
  return 0;
}
