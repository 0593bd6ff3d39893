// mailstore_load.cpp: the load client of bench/store/run_mailstore: fills a mailbox over LMTP with a
// seeded, reproducible set of messages, then drives postern-store's MailStore gRPC API (mutual TLS
// from an NSS database, access tokens signed with authserv's key) from N sessions, or holds N Watch
// streams open and reads the store's memory. Prints one key=value line per phase.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <grpcpp/grpcpp.h>

#include <algorithm>
#include <atomic>
#include <barrier>
#include <charconv>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <fstream>
#include <map>
#include <memory>
#include <mutex>
#include <random>
#include <sstream>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "bench/cpu_time.hpp"
#include "common/authtoken/authtoken.hpp"
#include "common/grpc/credentials.hpp"
#include "common/tls/nss.hpp"
#include "proto/mailstore.grpc.pb.h"

namespace {

namespace pb = postern::mailstore::v1;
using Clock = std::chrono::steady_clock;

constexpr const char* kUsage =
    "usage: mailstore_load fill  --lmtp-port P --rcpt ADDR [--messages 10000] [--sessions 8] [--seed 1]\n"
    "         LMTP (plaintext, envelope pipelined) of the seeded message set: ~2-8 KiB text/plain, every\n"
    "         50th a 64 KiB multipart with a base64 attachment\n"
    "       mailstore_load api   --target HOST:PORT --nss DIR --token-key FILE --user ADDR --front-end CN\n"
    "                            [--phases fetch,body,search-flags,search-header,search-body,select,status]\n"
    "                            [--sessions 50] [--channels 5] [--seconds 8] [--warmup 2]\n"
    "                            [--messages 10000] [--seed 1] [--server-pid PID] [--body-search-calls 1]\n"
    "         each session a thread with blocking calls; session i uses channel i % channels, each channel\n"
    "         its own HTTP/2 connection; search expectations are recomputed from --messages and --seed;\n"
    "         search-body is not timed but counted: every session makes --body-search-calls at once\n"
    "       mailstore_load watch --target ... --nss ... --token-key ... --user ... --front-end ...\n"
    "                            --server-pid PID [--watches 10000] [--channels 10] [--rounds 2]\n"
    "                            [--lmtp-port P --rcpt ADDR]\n"
    "         opens N Watch streams on INBOX (callback API), reads the store's smaps_rollup idle, with\n"
    "         them open and after they are cancelled, --rounds times; with --lmtp-port, times one delivery reaching all\n";

// ---------------------------------------------------------------------------------------------
// Options

struct Options {
  std::string mode;
  int lmtp_port = 0;
  std::string rcpt;
  uint64_t messages = 10000;
  int sessions = 0;  // default per mode
  uint64_t seed = 1;
  std::string target, nss, token_key, user, front_end;
  std::string phases = "fetch,body,search-flags,search-header,search-body,select,status";
  int channels = 0;
  double seconds = 8, warmup = 2;
  int server_pid = 0;
  int watches = 10000;
  int body_search_calls = 1;  // per session
  int watch_rounds = 2;
};

template <class T>
bool parse_number(std::string_view s, T& out) {
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), out);
  return ec == std::errc() && p == s.data() + s.size();
}

bool parse_args(int argc, char** argv, Options& o, std::string& error) {
  if (argc < 2) return false;
  o.mode = argv[1];
  if (o.mode != "fill" && o.mode != "api" && o.mode != "watch") {
    error = "unknown mode " + o.mode;
    return false;
  }
  for (int i = 2; i < argc; ++i) {
    std::string_view a = argv[i];
    if (a == "--help" || a == "-h") return false;
    if (i + 1 >= argc) {
      error = std::string(a) + " needs a value";
      return false;
    }
    std::string_view v = argv[++i];
    bool ok = true;
    if (a == "--lmtp-port") ok = parse_number(v, o.lmtp_port) && o.lmtp_port > 0 && o.lmtp_port < 65536;
    else if (a == "--rcpt") o.rcpt = v;
    else if (a == "--messages") ok = parse_number(v, o.messages) && o.messages >= 100 && o.messages <= 10000000;
    else if (a == "--sessions") ok = parse_number(v, o.sessions) && o.sessions >= 1 && o.sessions <= 10000;
    else if (a == "--seed") ok = parse_number(v, o.seed);
    else if (a == "--target") o.target = v;
    else if (a == "--nss") o.nss = v;
    else if (a == "--token-key") o.token_key = v;
    else if (a == "--user") o.user = v;
    else if (a == "--front-end") o.front_end = v;
    else if (a == "--phases") o.phases = v;
    else if (a == "--channels") ok = parse_number(v, o.channels) && o.channels >= 1 && o.channels <= 1000;
    else if (a == "--seconds") ok = (o.seconds = std::atof(std::string(v).c_str())) > 0;
    else if (a == "--warmup") ok = (o.warmup = std::atof(std::string(v).c_str())) >= 0;
    else if (a == "--server-pid") ok = parse_number(v, o.server_pid) && o.server_pid > 0;
    else if (a == "--body-search-calls") ok = parse_number(v, o.body_search_calls) && o.body_search_calls >= 1;
    else if (a == "--rounds") ok = parse_number(v, o.watch_rounds) && o.watch_rounds >= 1 && o.watch_rounds <= 100;
    else if (a == "--watches") ok = parse_number(v, o.watches) && o.watches >= 1 && o.watches <= 1000000;
    else {
      error = "unknown flag " + std::string(a);
      return false;
    }
    if (!ok) {
      error = "bad value for " + std::string(a) + ": " + std::string(v);
      return false;
    }
  }
  if (o.mode == "fill" && (o.lmtp_port == 0 || o.rcpt.empty())) {
    error = "fill needs --lmtp-port and --rcpt";
    return false;
  }
  if (o.mode != "fill" && (o.target.empty() || o.nss.empty() || o.token_key.empty() || o.user.empty() ||
                           o.front_end.empty())) {
    error = o.mode + " needs --target, --nss, --token-key, --user and --front-end";
    return false;
  }
  if (o.mode == "watch" && o.server_pid == 0) {
    error = "watch needs --server-pid";
    return false;
  }
  if (o.sessions == 0) o.sessions = o.mode == "fill" ? 8 : 50;
  if (o.channels == 0) o.channels = o.mode == "watch" ? 10 : 5;
  return true;
}

// ---------------------------------------------------------------------------------------------
// The message set: message i's sender, body token and size come from a hash of (seed, i), so the
// api mode knows how many messages each FROM or BODY search must find without asking the store.

uint64_t splitmix(uint64_t x) {
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

constexpr int kSenders = 100;
constexpr int kTokens = 1000;
constexpr size_t kBigSize = 64 * 1024;

struct Plan {
  uint64_t hash;
  int sender;  // From: sender%03d@example.org
  int token;   // "kw%04d" once in the text
  bool big;
  size_t size;  // octets as sent (before dot-stuffing)
};

Plan plan(uint64_t seed, uint64_t i) {
  Plan p;
  p.hash = splitmix(seed * 0x100000001b3ull + i);
  p.sender = static_cast<int>(p.hash % kSenders);
  p.token = static_cast<int>((p.hash >> 8) % kTokens);
  p.big = i % 50 == 7;
  p.size = p.big ? kBigSize : 2048 + static_cast<size_t>((p.hash >> 24) % 6145);
  return p;
}

constexpr const char* kWords[] = {
    "the",     "quarterly", "report",  "meeting", "budget",   "review",  "project", "deadline", "team",
    "please",  "attached",  "find",    "update",  "customer", "server",  "mail",    "storage",  "thanks",
    "regards", "schedule",  "monday",  "friday",  "invoice",  "release", "version", "notes",    "draft",
    "agenda",  "minutes",   "office",  "travel",  "expense",  "account", "support", "ticket",   "status",
    "weekly",  "summary",   "numbers", "figures", "question", "answer",  "issue",   "change",   "request",
    "approve", "contract",  "partner", "market",  "product",  "design",  "test",    "results",  "plan"};
constexpr size_t kWordCount = sizeof(kWords) / sizeof(kWords[0]);

std::string rfc5322_date(int64_t t) {
  char b[64];
  std::time_t tt = static_cast<std::time_t>(t);
  std::tm tm{};
  gmtime_r(&tt, &tm);
  std::strftime(b, sizeof b, "%a, %d %b %Y %H:%M:%S +0000", &tm);
  return b;
}

// Text lines of words (at most 76 octets + CRLF) until `out` is `target` octets long; the token
// goes into the first line. `target - out.size()` must be at least 40.
void text_lines(std::string& out, size_t target, std::mt19937_64& rng, const std::string& token) {
  std::string line = token;
  while (out.size() + line.size() + 2 < target) {
    const size_t left = target - out.size() - 2;  // room for the line before its CRLF
    const char* w = kWords[rng() % kWordCount];
    const size_t add = std::strlen(w) + 1;
    if (line.size() + add > 76 || line.size() + add > left) {
      // Close this line unless what would be left could not form a line of its own.
      if (left - line.size() < 4 && left >= line.size()) break;
      out += line;
      out += "\r\n";
      line.clear();
      continue;
    }
    line += ' ';
    line += w;
  }
  // The last line takes exactly what is left.
  const size_t left = target - out.size() - 2;
  if (line.size() > left) line.resize(left);
  while (line.size() < left) line += 'z';
  out += line;
  out += "\r\n";
}

std::string make_message(uint64_t seed, uint64_t i, const std::string& rcpt) {
  const Plan p = plan(seed, i);
  std::mt19937_64 rng(p.hash);
  char token[16];
  std::snprintf(token, sizeof token, "kw%04d", p.token);
  const int64_t date = 1780000000 - static_cast<int64_t>(i) * 1800;  // 2026, back in time
  std::string m;
  m.reserve(p.size + 256);
  char sender[64];
  std::snprintf(sender, sizeof sender, "sender%03d@example.org", p.sender);
  m += "From: Sender " + std::to_string(p.sender) + " <" + sender + ">\r\n";
  m += "To: Bench User <" + rcpt + ">\r\n";
  m += "Subject: " + std::string(kWords[rng() % kWordCount]) + " " + kWords[rng() % kWordCount] + " #" +
       std::to_string(i) + "\r\n";
  m += "Date: " + rfc5322_date(date) + "\r\n";
  m += "Message-ID: <" + std::to_string(i) + "." + std::to_string(p.hash % 1000000) + "@bench.example.org>\r\n";
  m += "MIME-Version: 1.0\r\n";
  if (!p.big) {
    m += "Content-Type: text/plain; charset=us-ascii\r\n\r\n";
    text_lines(m, p.size, rng, token);
    return m;
  }
  const std::string boundary = "=_bench_" + std::to_string(i);
  m += "Content-Type: multipart/mixed; boundary=\"" + boundary + "\"\r\n\r\n";
  m += "--" + boundary + "\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\n";
  text_lines(m, m.size() + 2000, rng, token);
  m += "--" + boundary + "\r\nContent-Type: application/octet-stream; name=\"data.bin\"\r\n"
       "Content-Transfer-Encoding: base64\r\nContent-Disposition: attachment; filename=\"data.bin\"\r\n\r\n";
  const std::string close = "--" + boundary + "--\r\n";
  static constexpr char kB64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  // 76-character base64 lines until the closing delimiter fills the message exactly.
  while (m.size() + 78 + close.size() <= p.size) {
    for (int c = 0; c < 76; ++c) m += kB64[rng() % 64];
    m += "\r\n";
  }
  const size_t left = p.size - m.size() - close.size();
  if (left >= 6) {
    for (size_t c = 0; c < (left - 2) / 4 * 4; ++c) m += kB64[rng() % 64];
    while (m.size() + 2 + close.size() < p.size) m += '=';  // padding-shaped tail to the exact size
    m += "\r\n";
  }
  m += close;
  return m;
}

// ---------------------------------------------------------------------------------------------
// LMTP (RFC 2033), plaintext: the fill and the one delivery of the watch mode.

class LmtpConnection {
 public:
  ~LmtpConnection() {
    if (fd_ >= 0) ::close(fd_);
  }
  bool connect(int port, std::string& error) {
    fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    timeval tv{60, 0};
    setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(fd_, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    int one = 1;
    setsockopt(fd_, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(static_cast<uint16_t>(port));
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (::connect(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
      error = std::string("connect: ") + std::strerror(errno);
      return false;
    }
    if (!expect('2', error)) return false;
    return send("LHLO bench.example.org\r\n", error) && expect('2', error);
  }
  // One message to one recipient: the envelope in one write, then the data.
  bool deliver(const std::string& from, const std::string& rcpt, const std::string& message, std::string& error) {
    if (!send("MAIL FROM:<" + from + ">\r\nRCPT TO:<" + rcpt + ">\r\nDATA\r\n", error)) return false;
    if (!expect('2', error) || !expect('2', error) || !expect('3', error)) return false;
    std::string wire;
    wire.reserve(message.size() + 64);
    bool line_start = true;
    for (char c : message) {
      if (line_start && c == '.') wire += '.';  // RFC 5321 §4.5.2
      wire += c;
      line_start = c == '\n';
    }
    wire += ".\r\n";
    return send(wire, error) && expect('2', error);
  }
  void quit() {
    std::string ignored;
    send("QUIT\r\n", ignored);
  }

 private:
  bool send(const std::string& s, std::string& error) {
    size_t off = 0;
    while (off < s.size()) {
      ssize_t n = ::send(fd_, s.data() + off, s.size() - off, MSG_NOSIGNAL);
      if (n <= 0) {
        error = std::string("send: ") + std::strerror(errno);
        return false;
      }
      off += static_cast<size_t>(n);
    }
    return true;
  }
  bool line(std::string& out, std::string& error) {
    for (;;) {
      size_t nl = buf_.find("\r\n");
      if (nl != std::string::npos) {
        out = buf_.substr(0, nl);
        buf_.erase(0, nl + 2);
        return true;
      }
      char b[4096];
      ssize_t n = ::recv(fd_, b, sizeof b, 0);
      if (n <= 0) {
        error = n == 0 ? "connection closed" : std::string("recv: ") + std::strerror(errno);
        return false;
      }
      buf_.append(b, static_cast<size_t>(n));
    }
  }
  // One (possibly multi-line) reply whose code starts with `digit`.
  bool expect(char digit, std::string& error) {
    std::string l;
    do {
      if (!line(l, error)) return false;
    } while (l.size() > 3 && l[3] == '-');
    if (l.empty() || l[0] != digit) {
      error = "unexpected reply: " + l;
      return false;
    }
    return true;
  }
  int fd_ = -1;
  std::string buf_;
};

double percentile(std::vector<double>& v, double q) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  size_t k = static_cast<size_t>(q * static_cast<double>(v.size() - 1) + 0.5);
  return v[std::min(k, v.size() - 1)];
}

int run_fill(const Options& o) {
  std::atomic<uint64_t> next{0}, ok{0}, bytes{0}, failures{0};
  std::mutex mu;
  std::string first_error;
  std::vector<double> latencies;
  std::vector<std::thread> threads;
  const auto t0 = Clock::now();
  for (int s = 0; s < o.sessions; ++s) {
    threads.emplace_back([&] {
      std::vector<double> mine;
      std::string error;
      LmtpConnection c;
      if (c.connect(o.lmtp_port, error)) {
        for (uint64_t i; (i = next.fetch_add(1)) < o.messages;) {
          const std::string m = make_message(o.seed, i, o.rcpt);
          const Plan p = plan(o.seed, i);
          char from[64];
          std::snprintf(from, sizeof from, "sender%03d@example.org", p.sender);
          const auto start = Clock::now();
          if (!c.deliver(from, o.rcpt, m, error)) break;
          mine.push_back(std::chrono::duration<double, std::milli>(Clock::now() - start).count());
          ok.fetch_add(1);
          bytes.fetch_add(m.size());
        }
        c.quit();
      }
      std::lock_guard lock(mu);
      latencies.insert(latencies.end(), mine.begin(), mine.end());
      if (!error.empty()) {
        failures.fetch_add(1);
        if (first_error.empty()) first_error = error;
      }
    });
  }
  for (auto& t : threads) t.join();
  const double secs = std::chrono::duration<double>(Clock::now() - t0).count();
  const bool good = ok.load() == o.messages && failures.load() == 0;
  std::printf("phase=fill messages=%llu messages_ok=%llu sessions=%d seconds=%.2f msg_per_s=%.0f mib_per_s=%.1f "
              "p50_ms=%.1f p99_ms=%.1f result=%s\n",
              static_cast<unsigned long long>(o.messages), static_cast<unsigned long long>(ok.load()), o.sessions, secs,
              static_cast<double>(ok.load()) / secs, static_cast<double>(bytes.load()) / secs / 1048576.0,
              percentile(latencies, 0.5), percentile(latencies, 0.99), good ? "ok" : "error");
  if (!first_error.empty()) std::fprintf(stderr, "mailstore_load fill: %s\n", first_error.c_str());
  return good ? 0 : 1;
}

// ---------------------------------------------------------------------------------------------
// gRPC side

struct ProcMemory {
  long rss_kib = 0, pss_kib = 0, anon_kib = 0;
  int threads = 0;
};

ProcMemory read_memory(int pid) {
  ProcMemory m;
  // The first line of smaps_rollup is the address range; then "Key:   value kB" lines.
  std::ifstream smaps("/proc/" + std::to_string(pid) + "/smaps_rollup");
  std::string line;
  while (std::getline(smaps, line)) {
    if (line.rfind("Rss:", 0) == 0) m.rss_kib = std::atol(line.c_str() + 4);
    else if (line.rfind("Pss:", 0) == 0) m.pss_kib = std::atol(line.c_str() + 4);
    else if (line.rfind("Anonymous:", 0) == 0) m.anon_kib = std::atol(line.c_str() + 10);
  }
  std::ifstream status("/proc/" + std::to_string(pid) + "/status");
  while (std::getline(status, line)) {
    if (line.rfind("Threads:", 0) == 0) m.threads = std::atoi(line.c_str() + 8);
  }
  return m;
}

// The server's CPU seconds (user + system) from /proc/PID/stat; 0 without a pid.
double server_cpu(int pid) {
  if (pid == 0) return 0;
  std::ifstream f("/proc/" + std::to_string(pid) + "/stat");
  std::string s((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  size_t p = s.rfind(')');
  if (p == std::string::npos) return 0;
  std::istringstream in(s.substr(p + 2));
  std::string field;
  unsigned long long utime = 0, stime = 0;
  for (int i = 3; i <= 15 && in >> field; ++i) {
    if (i == 14) utime = std::stoull(field);
    if (i == 15) stime = std::stoull(field);
  }
  return static_cast<double>(utime + stime) / static_cast<double>(sysconf(_SC_CLK_TCK));
}

struct Client {
  const Options& o;
  common::authtoken::Signer signer;
  std::vector<std::shared_ptr<grpc::Channel>> channels;
  std::vector<std::unique_ptr<pb::MailStore::Stub>> stubs;

  std::string token() const {
    auto claims = common::authtoken::new_claims(o.user, {"imap"}, o.front_end, static_cast<int64_t>(std::time(nullptr)),
                                                std::chrono::hours(2));
    auto t = signer.sign(claims);
    if (!t) {
      std::fprintf(stderr, "mailstore_load: cannot sign a token: %s\n", t.error().detail.c_str());
      std::exit(2);
    }
    return *t;
  }
  pb::MailStore::Stub& stub(size_t session) { return *stubs[session % stubs.size()]; }
};

std::unique_ptr<grpc::ClientContext> context_for(const std::string& token, std::chrono::seconds deadline) {
  auto c = std::make_unique<grpc::ClientContext>();
  if (deadline.count() > 0) c->set_deadline(std::chrono::system_clock::now() + deadline);
  c->AddMetadata("postern-token", token);
  return c;
}

std::unique_ptr<Client> make_client(const Options& o, std::unique_ptr<common::tls::Nss>& nss) {
  common::tls::NssOptions no;
  no.db_dir = o.nss;
  no.password_file = o.nss + "/password";
  auto opened = common::tls::Nss::init(no);
  if (!opened) {
    std::fprintf(stderr, "mailstore_load: NSS: %s\n", opened.error().detail.c_str());
    std::exit(2);
  }
  nss = std::move(*opened);
  auto signer = common::authtoken::Signer::load_or_create(o.token_key);
  if (!signer) {
    std::fprintf(stderr, "mailstore_load: token key %s: %s\n", o.token_key.c_str(), signer.error().detail.c_str());
    std::exit(2);
  }
  auto creds = common::rpc::channel_credentials({});
  if (!creds) {
    std::fprintf(stderr, "mailstore_load: channel credentials: %s\n", creds.error().detail.c_str());
    std::exit(2);
  }
  auto c = std::unique_ptr<Client>(new Client{o, std::move(*signer), {}, {}});
  for (int i = 0; i < o.channels; ++i) {
    grpc::ChannelArguments args;
    args.SetMaxReceiveMessageSize(64 << 20);
    // Each channel its own subchannel, so its own TCP connection and TLS session (channels with
    // equal arguments would otherwise share one connection).
    args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
    auto ch = grpc::CreateCustomChannel(o.target, *creds, args);
    if (!ch->WaitForConnected(std::chrono::system_clock::now() + std::chrono::seconds(20))) {
      std::fprintf(stderr, "mailstore_load: channel %d did not connect to %s\n", i, o.target.c_str());
      std::exit(2);
    }
    c->stubs.push_back(pb::MailStore::NewStub(ch));
    c->channels.push_back(std::move(ch));
  }
  return c;
}

struct Session {
  size_t index = 0;
  std::string token;
  pb::MailboxRef mailbox;
  std::vector<uint32_t> uids;
  uint64_t highest_modseq = 0;
};

bool select_inbox(Client& client, Session& s, std::string& error) {
  pb::SelectRequest r;
  r.set_name("INBOX");
  pb::SelectResponse out;
  auto ctx = context_for(s.token, std::chrono::seconds(30));
  auto st = client.stub(s.index).Select(ctx.get(), r, &out);
  if (!st.ok()) {
    error = "Select: " + std::to_string(st.error_code()) + " " + st.error_message();
    return false;
  }
  s.mailbox = out.mailbox();
  s.highest_modseq = out.status().highest_modseq();
  s.uids.clear();
  for (const auto& range : out.uids()) {
    for (uint64_t u = range.first(); u <= range.last(); ++u) s.uids.push_back(static_cast<uint32_t>(u));
  }
  return true;
}

// One call of a phase: true on success; `items` messages or matches, `bytes` of data received.
using CallFn = std::function<bool(Session&, std::mt19937_64&, uint64_t& items, uint64_t& bytes, std::string& error)>;

struct PhaseOutcome {
  uint64_t calls = 0, errors = 0, items = 0, bytes = 0;
  std::vector<double> latencies_ms;
  std::string first_error;
};

// Timed (fixed_calls == 0): every session calls in a loop; after the warm-up, the calls that end
// inside the window are counted (closed loop: throughput = completions / window). Fixed: every
// session makes `fixed_calls` calls at once and the window runs from the start to the last reply,
// for calls so slow that 50 of them in flight would not finish inside a short window.
void run_phase(Client& client, std::vector<Session>& sessions, const std::string& name, const CallFn& call,
               const std::string& extra, int fixed_calls = 0) {
  const Options& o = client.o;
  std::vector<PhaseOutcome> out(sessions.size());
  const auto start = Clock::now() + std::chrono::milliseconds(200);
  const auto measure_from =
      fixed_calls > 0 ? start
                      : start + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(o.warmup));
  const auto measure_to =
      fixed_calls > 0 ? Clock::time_point::max()
                      : measure_from + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(o.seconds));
  std::vector<std::thread> threads;
  for (size_t i = 0; i < sessions.size(); ++i) {
    threads.emplace_back([&, i] {
      std::mt19937_64 rng(splitmix(o.seed * 7919 + i + std::hash<std::string>{}(name)));
      std::this_thread::sleep_until(start);
      PhaseOutcome& r = out[i];
      for (int made = 0; fixed_calls > 0 ? made < fixed_calls : Clock::now() < measure_to; ++made) {
        uint64_t items = 0, bytes = 0;
        std::string error;
        const auto t = Clock::now();
        const bool ok = call(sessions[i], rng, items, bytes, error);
        const auto end = Clock::now();
        if (end < measure_from || end > measure_to) continue;  // warm-up, or past the window
        ++r.calls;
        if (!ok) {
          ++r.errors;
          if (r.first_error.empty()) r.first_error = error;
          continue;
        }
        r.items += items;
        r.bytes += bytes;
        r.latencies_ms.push_back(std::chrono::duration<double, std::milli>(end - t).count());
      }
    });
  }
  // Beside the load, one more session sends a Status every 20 ms: how long a cheap call waits
  // while the phase's calls occupy the store.
  std::atomic<bool> probing{true};
  std::vector<double> probe_ms;
  std::thread probe([&] {
    Session ps;
    ps.index = sessions.size();
    ps.token = client.token();
    std::this_thread::sleep_until(measure_from);
    while (probing.load()) {
      pb::StatusRequest r;
      r.set_name("INBOX");
      pb::MailboxEntry entry;
      auto ctx = context_for(ps.token, std::chrono::seconds(120));
      const auto t = Clock::now();
      auto st = client.stub(ps.index).Status(ctx.get(), r, &entry);
      if (st.ok()) probe_ms.push_back(std::chrono::duration<double, std::milli>(Clock::now() - t).count());
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
  });
  std::this_thread::sleep_until(measure_from);
  const double scpu0 = server_cpu(o.server_pid), ccpu0 = bench::cpu_seconds();
  double seconds = o.seconds, scpu = 0, ccpu = 0;
  if (fixed_calls > 0) {
    for (auto& t : threads) t.join();
    seconds = std::chrono::duration<double>(Clock::now() - measure_from).count();
    scpu = server_cpu(o.server_pid) - scpu0;
    ccpu = bench::cpu_seconds() - ccpu0;
  } else {
    std::this_thread::sleep_until(measure_to);
    scpu = server_cpu(o.server_pid) - scpu0;
    ccpu = bench::cpu_seconds() - ccpu0;
    for (auto& t : threads) t.join();
  }
  probing.store(false);
  probe.join();
  const double probe_max = probe_ms.empty() ? 0 : *std::max_element(probe_ms.begin(), probe_ms.end());
  PhaseOutcome all;
  for (auto& r : out) {
    all.calls += r.calls;
    all.errors += r.errors;
    all.items += r.items;
    all.bytes += r.bytes;
    all.latencies_ms.insert(all.latencies_ms.end(), r.latencies_ms.begin(), r.latencies_ms.end());
    if (all.first_error.empty()) all.first_error = r.first_error;
  }
  const double ok_calls = static_cast<double>(all.calls - all.errors);
  std::printf("phase=%s sessions=%zu channels=%d seconds=%.1f fixed_calls=%d calls=%llu errors=%llu calls_per_s=%.1f "
              "items_per_call=%.1f mib_per_s=%.2f p50_ms=%.2f p99_ms=%.2f server_cpu_ms_per_call=%.3f "
              "server_cores=%.2f client_cores=%.2f probe_calls=%zu probe_p50_ms=%.1f probe_max_ms=%.1f %sresult=%s\n",
              name.c_str(), sessions.size(), o.channels, seconds, fixed_calls, static_cast<unsigned long long>(all.calls),
              static_cast<unsigned long long>(all.errors), ok_calls / seconds,
              ok_calls > 0 ? static_cast<double>(all.items) / ok_calls : 0.0,
              static_cast<double>(all.bytes) / seconds / 1048576.0, percentile(all.latencies_ms, 0.5),
              percentile(all.latencies_ms, 0.99), ok_calls > 0 ? scpu * 1000 / ok_calls : 0.0, scpu / seconds,
              ccpu / seconds, probe_ms.size(), percentile(probe_ms, 0.5), probe_max, extra.c_str(),
              all.errors == 0 && all.calls > 0 ? "ok" : "error");
  std::fflush(stdout);
  if (!all.first_error.empty()) std::fprintf(stderr, "mailstore_load %s: %s\n", name.c_str(), all.first_error.c_str());
}

pb::UidRange range(uint32_t first, uint32_t last) {
  pb::UidRange r;
  r.set_first(first);
  r.set_last(last);
  return r;
}

std::string status_text(const grpc::Status& st) {
  return std::to_string(st.error_code()) + " " + st.error_message();
}

// Every message entry of the stream, in order, whatever reply each came in.
bool fetch_all(Client& client, Session& s, const pb::FetchRequest& request, std::vector<pb::FetchedMessage>& out,
               std::string& error) {
  auto ctx = context_for(s.token, std::chrono::seconds(60));
  auto reader = client.stub(s.index).Fetch(ctx.get(), request);
  pb::FetchResponse r;
  while (reader->Read(&r)) {
    for (auto& m : *r.mutable_messages()) out.push_back(std::move(m));
  }
  auto st = reader->Finish();
  if (!st.ok()) {
    error = "Fetch: " + status_text(st);
    return false;
  }
  return true;
}

// A search program of one key.
pb::SearchRequest search_request(const Session& s, pb::SearchKey::Kind kind, const std::string& text) {
  pb::SearchRequest r;
  *r.mutable_mailbox() = s.mailbox;
  auto* k = r.add_program();
  k->set_kind(kind);
  if (!text.empty()) k->set_text(text);
  return r;
}

int run_api(const Options& o) {
  std::unique_ptr<common::tls::Nss> nss;
  auto client = make_client(o, nss);
  std::vector<Session> sessions(static_cast<size_t>(o.sessions));
  for (size_t i = 0; i < sessions.size(); ++i) {
    sessions[i].index = i;
    sessions[i].token = client->token();
    std::string error;
    if (!select_inbox(*client, sessions[i], error)) {
      std::fprintf(stderr, "mailstore_load: session %zu: %s\n", i, error.c_str());
      return 1;
    }
  }
  const size_t n = sessions[0].uids.size();
  if (n < 100) {
    std::fprintf(stderr, "mailstore_load: INBOX holds %zu messages, fewer than a window of 100\n", n);
    return 1;
  }
  // The big messages, by their size (UID order is the order the deliveries committed in).
  std::vector<uint32_t> big;
  {
    pb::FetchRequest r;
    *r.mutable_mailbox() = sessions[0].mailbox;
    *r.add_uids() = range(1, UINT32_MAX);
    r.set_size(true);
    std::vector<pb::FetchedMessage> all;
    std::string error;
    if (!fetch_all(*client, sessions[0], r, all, error)) {
      std::fprintf(stderr, "mailstore_load: %s\n", error.c_str());
      return 1;
    }
    for (const auto& m : all) {
      if (m.size() >= kBigSize) big.push_back(m.uid());
    }
  }
  // What each FROM and BODY search must find, from the same message set the fill sent.
  std::vector<uint32_t> by_sender(kSenders), by_token(kTokens);
  for (uint64_t i = 0; i < o.messages; ++i) {
    const Plan p = plan(o.seed, i);
    ++by_sender[static_cast<size_t>(p.sender)];
    ++by_token[static_cast<size_t>(p.token)];
  }
  const bool counts_known = n == o.messages;
  int failed = 0;
  std::printf("mailbox messages=%zu big=%zu counts_checked=%d\n", n, big.size(), counts_known ? 1 : 0);

  bool search_served = true;
  std::stringstream phases(o.phases);
  for (std::string phase; std::getline(phases, phase, ',');) {
    CallFn fn;
    std::string extra;
    int fixed_calls = 0;
    if (phase == "fetch") {
      fn = [&](Session& s, std::mt19937_64& rng, uint64_t& items, uint64_t& bytes, std::string& error) {
        const size_t first = rng() % (s.uids.size() - 99);
        pb::FetchRequest r;
        *r.mutable_mailbox() = s.mailbox;
        *r.add_uids() = range(s.uids[first], s.uids[first + 99]);
        r.set_flags(true);
        r.set_envelope(true);
        std::vector<pb::FetchedMessage> out;
        if (!fetch_all(*client, s, r, out, error)) return false;
        for (const auto& m : out) {
          if (m.envelope().empty() || !m.has_flags()) {
            error = "uid " + std::to_string(m.uid()) + " came without its envelope or flags";
            return false;
          }
          bytes += m.ByteSizeLong();
        }
        items = out.size();
        if (out.size() != 100) {
          error = "a window of 100 UIDs gave " + std::to_string(out.size()) + " messages";
          return false;
        }
        return true;
      };
    } else if (phase == "body") {
      if (big.empty()) {
        std::fprintf(stderr, "mailstore_load: no 64 KiB message in INBOX\n");
        ++failed;
        continue;
      }
      fn = [&](Session& s, std::mt19937_64& rng, uint64_t& items, uint64_t& bytes, std::string& error) {
        const uint32_t uid = big[rng() % big.size()];
        pb::FetchRequest r;
        *r.mutable_mailbox() = s.mailbox;
        *r.add_uids() = range(uid, uid);
        r.set_size(true);
        r.add_sections();  // BODY[]: the whole message
        std::vector<pb::FetchedMessage> out;
        if (!fetch_all(*client, s, r, out, error)) return false;
        uint64_t size = 0, got = 0;
        bool last = false;
        for (const auto& m : out) {
          if (m.size() != 0) size = m.size();
          for (const auto& piece : m.sections()) {
            got += piece.data().size();
            last = last || piece.last();
          }
        }
        if (got != size || !last || size < kBigSize) {
          error = "BODY[] of uid " + std::to_string(uid) + ": " + std::to_string(got) + " octets of RFC822.SIZE " +
                  std::to_string(size);
          return false;
        }
        items = 1;
        bytes = got;
        return true;
      };
    } else if (phase.rfind("search-", 0) == 0) {
      if (!search_served) continue;
      // Searches are slow compared with fetches: fewer sessions would do, but the point is 50 at once.
      pb::SearchKey::Kind kind = phase == "search-flags"    ? pb::SearchKey::UNSEEN
                                 : phase == "search-header" ? pb::SearchKey::FROM
                                                            : pb::SearchKey::BODY;
      // One probe first: a store without the Search RPC answers UNIMPLEMENTED.
      {
        auto ctx = context_for(sessions[0].token, std::chrono::seconds(60));
        pb::SearchResponse resp;
        auto st = client->stub(0).Search(ctx.get(), search_request(sessions[0], pb::SearchKey::ALL, ""), &resp);
        if (st.error_code() == grpc::StatusCode::UNIMPLEMENTED) {
          std::printf("phase=search result=not_served\n");
          search_served = false;
          continue;
        }
      }
      extra = "matches_checked=" + std::to_string(counts_known ? 1 : 0) + " ";
      // A BODY search reads every text part of the mailbox: 50 in flight take longer than a window.
      if (kind == pb::SearchKey::BODY) fixed_calls = o.body_search_calls;
      fn = [&, kind](Session& s, std::mt19937_64& rng, uint64_t& items, uint64_t&, std::string& error) {
        std::string text;
        uint32_t expected = static_cast<uint32_t>(n);
        if (kind == pb::SearchKey::FROM) {
          const int who = static_cast<int>(rng() % kSenders);
          char b[32];
          std::snprintf(b, sizeof b, "sender%03d@", who);
          text = b;
          expected = by_sender[static_cast<size_t>(who)];
        } else if (kind == pb::SearchKey::BODY) {
          const int t = static_cast<int>(rng() % kTokens);
          char b[16];
          std::snprintf(b, sizeof b, "kw%04d", t);
          text = b;
          expected = by_token[static_cast<size_t>(t)];
        }
        auto ctx = context_for(s.token, std::chrono::seconds(120));
        pb::SearchResponse resp;
        auto st = client->stub(s.index).Search(ctx.get(), search_request(s, kind, text), &resp);
        if (!st.ok()) {
          error = "Search: " + status_text(st);
          return false;
        }
        items = resp.count();
        if (counts_known && resp.count() != expected) {
          error = "search " + phase + " \"" + text + "\" found " + std::to_string(resp.count()) + ", expected " +
                  std::to_string(expected);
          return false;
        }
        return true;
      };
    } else if (phase == "select") {
      fn = [&](Session& s, std::mt19937_64&, uint64_t& items, uint64_t&, std::string& error) {
        Session fresh;
        fresh.index = s.index;
        fresh.token = s.token;
        if (!select_inbox(*client, fresh, error)) return false;
        items = fresh.uids.size();
        if (items != n) {
          error = "Select listed " + std::to_string(items) + " UIDs, not " + std::to_string(n);
          return false;
        }
        return true;
      };
    } else if (phase == "status") {
      fn = [&](Session& s, std::mt19937_64&, uint64_t& items, uint64_t&, std::string& error) {
        pb::StatusRequest r;
        r.set_name("INBOX");
        pb::MailboxEntry out;
        auto ctx = context_for(s.token, std::chrono::seconds(30));
        auto st = client->stub(s.index).Status(ctx.get(), r, &out);
        if (!st.ok()) {
          error = "Status: " + status_text(st);
          return false;
        }
        items = out.status().messages();
        return true;
      };
    } else {
      std::fprintf(stderr, "mailstore_load: unknown phase %s\n", phase.c_str());
      return 2;
    }
    if (fixed_calls > 0) {
      // One call alone first, so the mailbox's pages are mapped before the measured calls.
      uint64_t items = 0, bytes = 0;
      std::string error;
      std::mt19937_64 rng(o.seed);
      if (!fn(sessions[0], rng, items, bytes, error)) std::fprintf(stderr, "mailstore_load %s: %s\n", phase.c_str(), error.c_str());
    }
    run_phase(*client, sessions, phase, fn, extra, fixed_calls);
  }
  return failed;
}

// ---------------------------------------------------------------------------------------------
// Watch: N streams held open with the callback API.

struct WatchCounters {
  std::atomic<int> ready{0}, added{0}, done{0}, early_end{0};
  // When the first and the latest `added` event arrived (Clock ticks): the fan-out's span, timed
  // where each event is read rather than where the waiting thread wakes.
  std::atomic<int64_t> first_added{0}, last_added{0};
  std::mutex mu;
  std::condition_variable cv;
  std::string first_status;
  void bump() { cv.notify_all(); }
};

class WatchStream final : public grpc::ClientReadReactor<pb::WatchEvent> {
 public:
  WatchStream(pb::MailStore::Stub& stub, const std::string& token, const pb::MailboxRef& mailbox, uint64_t since,
              WatchCounters& counters)
      : counters_(counters) {
    context_.AddMetadata("postern-token", token);
    *request_.mutable_mailbox() = mailbox;
    request_.set_since_modseq(since);
    stub.async()->Watch(&context_, &request_, this);
    StartRead(&event_);
    StartCall();
  }
  void cancel() {
    cancelling_.store(true);
    context_.TryCancel();
  }
  void OnReadDone(bool ok) override {
    if (!ok) return;  // OnDone follows with the status
    if (event_.has_ready() && !ready_) {
      ready_ = true;
      counters_.ready.fetch_add(1);
      counters_.bump();
    } else if (event_.has_added()) {
      const int64_t now = Clock::now().time_since_epoch().count();
      int64_t none = 0;
      counters_.first_added.compare_exchange_strong(none, now);
      for (int64_t seen = counters_.last_added.load(); seen < now && !counters_.last_added.compare_exchange_weak(seen, now);) {
      }
      counters_.added.fetch_add(1);
      counters_.bump();
    }
    StartRead(&event_);
  }
  void OnDone(const grpc::Status& s) override {
    if (!cancelling_.load()) {
      counters_.early_end.fetch_add(1);
      std::lock_guard lock(counters_.mu);
      if (counters_.first_status.empty()) counters_.first_status = status_text(s);
    }
    counters_.done.fetch_add(1);
    counters_.bump();
  }

 private:
  WatchCounters& counters_;
  grpc::ClientContext context_;
  pb::WatchRequest request_;
  pb::WatchEvent event_;
  bool ready_ = false;
  std::atomic<bool> cancelling_{false};
};

template <class Pred>
bool wait_for(WatchCounters& c, std::chrono::seconds limit, Pred pred) {
  std::unique_lock lock(c.mu);
  return c.cv.wait_for(lock, limit, pred);
}

void print_memory(const char* label, const ProcMemory& m) {
  std::printf("%s_rss_kib=%ld %s_pss_kib=%ld %s_anon_kib=%ld %s_threads=%d ", label, m.rss_kib, label, m.pss_kib, label,
              m.anon_kib, label, m.threads);
}

struct WatchRound {
  int ready = 0, ended_early = 0, fanout_got = 0;
  bool all_ready = false, all_done = false;
  double open_s = 0, open_cpu = 0, fanout_ms = -1, lmtp_ms = -1;
  // From the LMTP 250 to the first and to the last watcher's event (negative: before the 250).
  double first_after_250_ms = 0, last_after_250_ms = -1;
  ProcMemory held, after;
  std::string first_status;
};

// Opens o.watches streams, waits for every Ready, reads the store's memory, has one delivery
// reach them all, cancels them and reads the memory again.
WatchRound watch_round(const Options& o, Client& client, const Session& s, const std::vector<std::string>& tokens,
                       uint64_t message_number) {
  WatchRound r;
  WatchCounters counters;
  std::vector<std::unique_ptr<WatchStream>> streams;
  streams.reserve(static_cast<size_t>(o.watches));
  const auto t0 = Clock::now();
  const double scpu0 = server_cpu(o.server_pid);
  for (int i = 0; i < o.watches; ++i) {
    // At most 1000 opens outstanding, as logins arrive over time rather than all in one packet.
    if (i - counters.ready.load() - counters.done.load() >= 1000) {
      wait_for(counters, std::chrono::seconds(60), [&] { return i - counters.ready.load() - counters.done.load() < 1000; });
    }
    streams.push_back(std::make_unique<WatchStream>(client.stub(static_cast<size_t>(i)), tokens[static_cast<size_t>(i)],
                                                    s.mailbox, s.highest_modseq, counters));
  }
  r.all_ready = wait_for(counters, std::chrono::seconds(120), [&] {
    return counters.ready.load() + counters.early_end.load() >= o.watches;
  });
  r.open_s = std::chrono::duration<double>(Clock::now() - t0).count();
  r.open_cpu = server_cpu(o.server_pid) - scpu0;
  std::this_thread::sleep_for(std::chrono::seconds(2));
  r.held = read_memory(o.server_pid);

  // One delivery, fanned out to every watcher.
  if (o.lmtp_port != 0 && !o.rcpt.empty()) {
    LmtpConnection c;
    std::string error;
    const int before = counters.added.load();
    const auto d0 = Clock::now();
    if (c.connect(o.lmtp_port, error) &&
        c.deliver("sender000@example.org", o.rcpt, make_message(o.seed, message_number, o.rcpt), error)) {
      const auto replied = Clock::now();
      r.lmtp_ms = std::chrono::duration<double, std::milli>(replied - d0).count();
      wait_for(counters, std::chrono::seconds(60),
               [&] { return counters.added.load() - before >= counters.ready.load(); });
      r.fanout_got = counters.added.load() - before;
      auto at = [](int64_t ticks) { return Clock::time_point(Clock::duration(ticks)); };
      using ms = std::chrono::duration<double, std::milli>;
      if (r.fanout_got > 0) {
        r.fanout_ms = ms(at(counters.last_added.load()) - d0).count();
        r.first_after_250_ms = ms(at(counters.first_added.load()) - replied).count();
        r.last_after_250_ms = ms(at(counters.last_added.load()) - replied).count();
      }
      c.quit();
    } else {
      std::fprintf(stderr, "mailstore_load: the delivery to the watched INBOX failed: %s\n", error.c_str());
    }
  }

  for (auto& st : streams) st->cancel();
  r.all_done = wait_for(counters, std::chrono::seconds(60), [&] { return counters.done.load() >= o.watches; });
  std::this_thread::sleep_for(std::chrono::seconds(2));
  r.after = read_memory(o.server_pid);
  r.ready = counters.ready.load();
  r.ended_early = counters.early_end.load();
  {
    std::lock_guard lock(counters.mu);
    r.first_status = counters.first_status;
  }
  if (!r.all_done) {
    std::fprintf(stderr, "mailstore_load watch: %d of %d streams not done 60 s after the cancel\n",
                 o.watches - counters.done.load(), o.watches);
    // gRPC still holds the reactors: leave them, and leave without destructors.
    std::fflush(stdout);
    std::fflush(stderr);
    std::_Exit(1);
  }
  return r;
}

int run_watch(const Options& o) {
  std::unique_ptr<common::tls::Nss> nss;
  auto client = make_client(o, nss);
  Session s;
  s.token = client->token();
  std::string error;
  if (!select_inbox(*client, s, error)) {
    std::fprintf(stderr, "mailstore_load: %s\n", error.c_str());
    return 1;
  }
  // Each stream its own token, as each IMAP session that idles has its own login.
  std::vector<std::string> tokens;
  tokens.reserve(static_cast<size_t>(o.watches));
  for (int i = 0; i < o.watches; ++i) tokens.push_back(client->token());

  std::this_thread::sleep_for(std::chrono::seconds(1));
  const ProcMemory idle = read_memory(o.server_pid);
  // Several rounds: memory that the first round leaves behind and later ones do not add to is the
  // allocator keeping freed pages; memory that grows with every round is held per stream.
  std::vector<WatchRound> rounds;
  for (int n = 0; n < o.watch_rounds; ++n) {
    if (n > 0 && !select_inbox(*client, s, error)) {
      std::fprintf(stderr, "mailstore_load: %s\n", error.c_str());
      return 1;
    }
    rounds.push_back(watch_round(o, *client, s, tokens, o.messages + 1 + static_cast<uint64_t>(n)));
  }
  const WatchRound& first = rounds.front();
  const WatchRound& second = rounds.size() > 1 ? rounds[1] : rounds.front();
  const WatchRound& last = rounds.back();

  bool good = true;
  std::string trend;  // anonymous KiB with the streams open / after the cancel, per round
  for (const WatchRound& round : rounds) {
    const WatchRound* r = &round;
    trend += (trend.empty() ? "" : ",") + std::to_string(r->held.anon_kib) + "/" + std::to_string(r->after.anon_kib);
    good = good && r->all_ready && r->ready == o.watches && r->ended_early == 0 && r->all_done &&
           (o.lmtp_port == 0 || r->fanout_got >= r->ready);
    if (!r->first_status.empty()) {
      std::fprintf(stderr, "mailstore_load watch: %d streams ended before the cancel; the first with %s\n",
                   r->ended_early, r->first_status.c_str());
    }
  }
  const int ready = first.ready;
  std::printf("phase=watch watches=%d channels=%d ready=%d ended_early=%d open_s=%.2f opens_per_s=%.0f "
              "server_cpu_ms_per_open=%.3f ",
              o.watches, o.channels, ready, first.ended_early + second.ended_early, first.open_s, ready / first.open_s,
              ready > 0 ? first.open_cpu * 1000 / ready : 0.0);
  print_memory("idle", idle);
  print_memory("held", first.held);
  print_memory("after", first.after);
  print_memory("held2", second.held);
  print_memory("after2", second.after);
  print_memory("held_last", last.held);
  print_memory("after_last", last.after);
  std::printf("rounds=%zu rounds_anon_kib=%s ", rounds.size(), trend.c_str());
  std::printf("per_watch_rss_b=%.0f per_watch_pss_b=%.0f per_watch_anon_b=%.0f fanout_events=%d lmtp_ms=%.1f "
              "fanout_ms=%.1f fanout2_ms=%.1f first_after_250_ms=%.1f last_after_250_ms=%.1f last2_after_250_ms=%.1f "
              "result=%s\n",
              ready > 0 ? (first.held.rss_kib - idle.rss_kib) * 1024.0 / ready : 0.0,
              ready > 0 ? (first.held.pss_kib - idle.pss_kib) * 1024.0 / ready : 0.0,
              ready > 0 ? (first.held.anon_kib - idle.anon_kib) * 1024.0 / ready : 0.0, first.fanout_got, first.lmtp_ms,
              first.fanout_ms, second.fanout_ms, first.first_after_250_ms, first.last_after_250_ms,
              second.last_after_250_ms, good ? "ok" : "error");
  std::fflush(stdout);
  return good ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
  Options o;
  std::string error;
  if (!parse_args(argc, argv, o, error)) {
    if (!error.empty()) std::fprintf(stderr, "mailstore_load: %s\n", error.c_str());
    std::fputs(kUsage, stderr);
    return 2;
  }
  signal(SIGPIPE, SIG_IGN);
  if (o.mode == "fill") return run_fill(o);
  // Many streams and channels: lift the descriptor limit as far as the hard limit allows.
  rlimit rl{};
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
  }
  common::rpc::route_grpc_logs();
  return o.mode == "api" ? run_api(o) : run_watch(o);
}
