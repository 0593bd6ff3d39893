// line_session_test.cpp: LineSession over real loopback sockets with a toy protocol: pipelined
// commands answered in order and in one write, suspend/resume with a pipelined tail, the
// LastInPipeline hook, raw and byte modes, the error limit across STARTTLS, pipelined plaintext
// dropped at STARTTLS, drain and timeouts, resume after the connection is gone.
#include <catch2/catch.hpp>

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <mutex>
#include <thread>

#include "common/line/line_session.hpp"
#include "common/log/log.hpp"
#include "common/metrics/metrics.hpp"
#include "common/runtime/listener.hpp"
#include "common/runtime/loop.hpp"
#include "common/runtime/timer.hpp"
#include "tests/support/line_client.hpp"

using namespace common::runtime;
using namespace common::line;
using common::net::Endpoint;
using namespace std::chrono_literals;

namespace {

constexpr char kKey = 0x5a;

std::string xored(std::string_view in) {
  std::string out(in);
  for (auto& ch : out) ch = static_cast<char>(ch ^ kKey);
  return out;
}

// Stands in for TLS and counts the writes that go through it.
class XorTransform : public Transform {
 public:
  explicit XorTransform(std::atomic<int>& encodes) : encodes_(encodes) {}
  common::Result<void> decode(std::string_view in, std::string& plain, std::string&) override {
    plain += xored(in);
    return {};
  }
  common::Result<void> encode(std::string_view plain, std::string& wire) override {
    ++encodes_;
    wire += xored(plain);
    return {};
  }
  void close(std::string&) override {}

 private:
  std::atomic<int>& encodes_;
};

struct Logs {
  Logs() {
    common::log::set_sink([this](std::string_view line) {
      std::lock_guard lock(mutex);
      lines.emplace_back(line);
    });
  }
  ~Logs() { common::log::reset_sink(); }
  bool has(const std::vector<std::string>& parts) {
    std::lock_guard lock(mutex);
    for (const auto& line : lines) {
      bool all = true;
      for (const auto& p : parts) all = all && line.find(p) != std::string::npos;
      if (all) return true;
    }
    return false;
  }
  std::mutex mutex;
  std::vector<std::string> lines;
};

// Work that answers later, on the loop (stands in for authserv or the commit writer).
struct Later {
  explicit Later(uv_loop_t* loop) : loop(loop) {}
  void run(std::chrono::milliseconds after, std::function<void()> fn) {
    timers.push_back(std::make_unique<Timer>(loop));
    timers.back()->start(after, std::move(fn));
  }
  uv_loop_t* loop;
  std::vector<std::unique_ptr<Timer>> timers;
};

struct Shared {
  Later* later = nullptr;
  std::atomic<int> encodes{0};
  std::atomic<int> late_resumes{0};
  std::atomic<int> sessions_closed{0};
};

enum class St { Ready, Busy };

class ToySession final : public LineSession {
 public:
  ToySession(Connection& c, Shared& shared, LineSessionOptions o) : LineSession(c, kCommands, std::move(o)), shared_(shared) {}
  void on_open() override {
    set_phase("greeting");
    reply("+ready\r\n");
    set_phase("command");
  }
  void on_closed(CloseReason) override { ++shared_.sessions_closed; }

 private:
  void echo(const Request& r) { reply("+" + std::string(r.args) + "\r\n"); }
  // Answers after a while, with no command of the pipeline run meanwhile.
  void slow(const Request& r) {
    suspend();
    set_state(St::Busy);
    std::string arg(r.args);  // the request's views die with this call
    shared_.later->run(50ms, [this, arg, alive = connection().alive()] {
      if (alive.expired()) return;
      reply("+slow " + arg + "\r\n");
      set_state(St::Ready);
      resume();
    });
  }
  // Work that finished at once: resume() inside the handler.
  void fast(const Request& r) {
    suspend();
    reply("+fast " + std::string(r.args) + "\r\n");
    resume();
  }
  // Never answers before the client has gone; the resumer must then do nothing.
  void hang(const Request&) {
    suspend();
    shared_.later->run(300ms, [&shared = shared_, r = resumer()] {
      ++shared.late_resumes;
      r();
    });
  }
  void last(const Request&) { reply("+last\r\n"); }
  void raw(const Request&) {
    raw_lines_ = 0;
    set_phase("data");
    set_raw(true);
    reply("+raw\r\n");
  }
  void bytes(const Request& r) {
    got_.clear();
    reply("+send\r\n");
    expect_bytes(std::stoul(std::string(r.args)));
  }
  void starttls(const Request&) {
    if (!start_tls("+go\r\n", std::make_unique<XorTransform>(shared_.encodes))) reply("-no tls\r\n");
  }
  void state(const Request&) {
    reply("+forgot " + std::to_string(forgets_) + " errors " + std::to_string(errors().count()) + "\r\n");
  }
  void quit(const Request&) {
    reply("+bye\r\n");
    close_session();
  }
  void busy_only(const Request&) { reply("+busy\r\n"); }

  void on_raw_line(const LineFrame& f) override {
    if (f.text == ".") {
      set_raw(false);
      set_phase("command");
      reply("+got " + std::to_string(raw_lines_) + "\r\n");
      return;
    }
    ++raw_lines_;
  }
  void on_bytes(std::string_view chunk, bool last) override {
    got_.append(chunk);
    if (last) reply("+bytes " + std::to_string(got_.size()) + " [" + got_ + "]\r\n");
  }
  void on_refused(Outcome o, const Request& r) override {
    reply("-" + std::string(outcome_name(o)) + " " + std::string(r.verb) + "\r\n");
  }
  void on_line_too_long(size_t) override { reply("-too long\r\n"); }
  void on_too_many_errors() override { reply("-too many errors\r\n"); }
  bool on_improper_pipelining(const Request& r, size_t buffered) override {
    reply("-pipelined " + std::string(r.verb) + " " + std::to_string(buffered) + "\r\n");
    return r.verb != "LASTX";
  }
  std::string timeout_reply(TimeoutKind k) override {
    return k == TimeoutKind::Idle ? "-idle timeout\r\n" : "-session timeout\r\n";
  }
  std::string drain_reply() override { return "-draining\r\n"; }
  void on_forget_plaintext() override { ++forgets_; }

  static constexpr Entry kCommands[] = {
      {"ECHO", handler<&ToySession::echo>, state_bit(St::Ready), NeedsArguments},
      {"SLOW", handler<&ToySession::slow>, state_bit(St::Ready)},
      {"FAST", handler<&ToySession::fast>},
      {"HANG", handler<&ToySession::hang>},
      {"LAST", handler<&ToySession::last>, kAnyState, LastInPipeline},
      {"LASTX", handler<&ToySession::last>, kAnyState, LastInPipeline},
      {"RAW", handler<&ToySession::raw>, kAnyState, NoArguments},
      {"BYTES", handler<&ToySession::bytes>, kAnyState, NeedsArguments},
      {"STARTTLS", handler<&ToySession::starttls>, kAnyState, PreTls | LastInPipeline | NoArguments},
      {"STATE", handler<&ToySession::state>, kAnyState, PreTls},
      {"BUSYONLY", handler<&ToySession::busy_only>, state_bit(St::Busy)},
      {"QUIT", handler<&ToySession::quit>, kAnyState, PreTls | NoArguments},
  };

  Shared& shared_;
  int raw_lines_ = 0;
  int forgets_ = 0;
  std::string got_;
};

class ToyFactory : public SessionFactory {
 public:
  ToyFactory(Shared& shared, LineSessionOptions o) : shared_(shared), options_(std::move(o)) {}
  std::unique_ptr<Session> create(Connection& c) override { return std::make_unique<ToySession>(c, shared_, options_); }

 private:
  Shared& shared_;
  LineSessionOptions options_;
};

LineSessionOptions toy_options() {
  LineSessionOptions o;
  o.component = "toy";
  o.max_line = 64;
  o.max_buffered = 4096;
  o.errors.max_errors = 3;
  return o;
}

struct Server {
  common::metrics::Registry registry;
  Loop loop;
  Later later{loop.get()};
  ConnectionSet connections{loop.get()};
  Shared shared;
  ToyFactory factory;
  std::shared_ptr<ListenerStats> stats = std::make_shared<ListenerStats>("toy", registry);
  std::unique_ptr<Listener> listener;
  std::thread thread;
  int port = 0;

  explicit Server(LineSessionOptions o = toy_options(), std::chrono::milliseconds idle = 5s)
      : factory(shared, std::move(o)) {
    shared.later = &later;
    auto bound = bind_endpoints({*Endpoint::parse("127.0.0.1:0")}, 1, 16);
    REQUIRE(bound);
    port = (*bound)[0][0].endpoint.port;
    ListenerOptions lo;
    lo.name = "toy";
    lo.service = "toy";
    lo.limits.idle_timeout = idle;
    listener = std::make_unique<Listener>(connections, lo, std::move((*bound)[0][0]),
                                          std::make_shared<ConnectionLimiter>(0, 0), stats, factory, nullptr);
    REQUIRE(listener->start());
    thread = std::thread([this] { loop.run(); });
  }
  ~Server() {
    loop.stop();
    thread.join();
  }
  template <class F>
  void on_loop(F fn) {
    std::atomic<bool> done{false};
    loop.post([&] {
      fn();
      done = true;
    });
    while (!done) std::this_thread::sleep_for(1ms);
  }
};

// Sends `bytes` one byte per segment, so the server reads them one at a time.
void send_bytewise(test::LineClient& c, const std::string& bytes) {
  int one = 1;
  setsockopt(c.fd(), IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  for (char ch : bytes) {
    REQUIRE(c.send(std::string(1, ch)));
    std::this_thread::sleep_for(200us);
  }
}

std::vector<std::string> read_lines(test::LineClient& c, size_t n) {
  std::vector<std::string> out;
  for (size_t i = 0; i < n; ++i) {
    auto l = c.read_line();
    if (!l) break;
    out.push_back(*l);
  }
  return out;
}

// Reads raw bytes (for the XOR "TLS", whose output is not line-safe before decoding).
std::string read_raw(int fd, size_t n) {
  std::string out;
  while (out.size() < n) {
    char buf[4096];
    ssize_t got = ::recv(fd, buf, std::min(sizeof buf, n - out.size()), 0);
    if (got <= 0) break;
    out.append(buf, static_cast<size_t>(got));
  }
  return out;
}

// As many bytes as `want` holds, in plaintext or through the XOR "TLS", compared with it.
#define CHECK_PLAIN(fd, want)                      \
  do {                                             \
    std::string want_ = (want);                    \
    CHECK(read_raw((fd), want_.size()) == want_);  \
  } while (0)
#define CHECK_XORED(fd, want)                             \
  do {                                                    \
    std::string want_ = (want);                           \
    CHECK(xored(read_raw((fd), want_.size())) == want_);  \
  } while (0)

const std::string kPipeline = "ECHO 1\r\nSLOW 2\r\nECHO 3\r\nFAST 4\r\nRAW\r\na\r\n.b\r\n.\r\nBYTES 5\r\nab\r\ncECHO 6\r\n";
const std::vector<std::string> kPipelineReplies{"+1", "+slow 2", "+3", "+fast 4", "+raw", "+got 2",
                                                "+send", "+bytes 5 [ab", "c]", "+6"};

}  // namespace

TEST_CASE("a pipelined group is answered in order through suspend, raw and byte modes, in any split",
          "[line][session]") {
  Server s;
  for (bool bytewise : {false, true}) {
    test::LineClient c("127.0.0.1", s.port);
    REQUIRE(c.read_line() == "+ready");
    if (bytewise) {
      send_bytewise(c, kPipeline);
    } else {
      REQUIRE(c.send(kPipeline));
    }
    CHECK(read_lines(c, kPipelineReplies.size()) == kPipelineReplies);
    c.send("QUIT\r\n");
    CHECK(c.read_line() == "+bye");
    CHECK(c.closed_by_peer());
  }
}

TEST_CASE("while suspended no pipelined command runs, so it sees the state the suspended one ends in",
          "[line][session]") {
  Server s;
  test::LineClient c("127.0.0.1", s.port);
  c.read_line();
  // BUSYONLY is allowed only while SLOW is in flight; it must run after SLOW's answer, so it is refused.
  c.send("SLOW x\r\nBUSYONLY\r\n");
  CHECK(c.read_line() == "+slow x");
  CHECK(c.read_line() == "-wrong_state BUSYONLY");
}

TEST_CASE("replies to a pipelined group go out as one write", "[line][session]") {
  Server s;
  test::LineClient c("127.0.0.1", s.port);
  c.read_line();
  c.send("STARTTLS\r\n");
  CHECK_PLAIN(c.fd(), "+go\r\n");
  int before = s.shared.encodes;
  c.send(xored("ECHO a\r\nECHO b\r\nECHO c\r\nFAST d\r\nECHO e\r\n"));
  CHECK_XORED(c.fd(), "+a\r\n+b\r\n+c\r\n+fast d\r\n+e\r\n");
  CHECK(s.shared.encodes - before == 1);
}

TEST_CASE("a LastInPipeline command with input behind it goes to the hook, which may skip it", "[line][session]") {
  Logs logs;
  Server s;
  test::LineClient c("127.0.0.1", s.port);
  c.read_line();
  c.send("LAST\r\n");
  CHECK(c.read_line() == "+last");
  c.send("LAST\r\nECHO x\r\n");
  CHECK(c.read_line() == "-pipelined LAST 8");
  CHECK(c.read_line() == "+last");
  CHECK(c.read_line() == "+x");
  c.send("LASTX\r\nECHO y\r\n");
  CHECK(c.read_line() == "-pipelined LASTX 8");
  CHECK(c.read_line() == "+y");  // LASTX itself skipped
  CHECK(logs.has({"comp=toy", "phase=command", "event=improper_pipelining", "verb=LAST"}));
}

TEST_CASE("refusals and over-long lines count, at the limit the protocol's reply ends the session",
          "[line][session]") {
  Logs logs;
  Server s;
  test::LineClient c("127.0.0.1", s.port);
  c.read_line();
  c.send("BOGUS\r\n" + std::string(100, 'x') + "\r\nRAW now\r\nECHO never\r\n");
  CHECK(c.read_line() == "-unknown BOGUS");
  CHECK(c.read_line() == "-too long");
  CHECK(c.read_line() == "-bad_arguments RAW");
  CHECK(c.read_line() == "-too many errors");
  CHECK(c.closed_by_peer());
  CHECK(logs.has({"event=command_refused", "outcome=unknown", "verb=BOGUS"}));
  CHECK(logs.has({"event=line_too_long", "length=100"}));
  CHECK(logs.has({"event=too_many_errors", "errors=3"}));
}

TEST_CASE("a long line in raw mode is the protocol's to judge and does not count", "[line][session]") {
  Server s;
  test::LineClient c("127.0.0.1", s.port);
  c.read_line();
  std::string lines = "RAW\r\n";
  for (int i = 0; i < 5; ++i) lines += std::string(100, 'y') + "\r\n";
  c.send(lines + "ok\r\n.\r\nSTATE\r\n");
  CHECK(c.read_line() == "+raw");
  for (int i = 0; i < 5; ++i) CHECK(c.read_line() == "-too long");
  CHECK(c.read_line() == "+got 1");
  CHECK(c.read_line() == "+forgot 0 errors 0");
}

TEST_CASE("STARTTLS drops pipelined plaintext and the protocol's plaintext state, errors keep counting",
          "[line][session]") {
  Logs logs;
  Server s;
  test::LineClient c("127.0.0.1", s.port);
  c.read_line();
  // Replies queued before STARTTLS go out first, in plaintext; INJECTED never runs.
  c.send("BOGUS\r\nECHO a\r\nSTARTTLS\r\nECHO injected\r\n");
  // The LastInPipeline hook sees the injection first (SMTP would log "improper pipelining").
  CHECK_PLAIN(c.fd(), "-unknown BOGUS\r\n+a\r\n-pipelined STARTTLS 15\r\n+go\r\n");
  c.send(xored("STATE\r\nSTARTTLS\r\nBOGUS\r\n"));
  CHECK_XORED(c.fd(), "+forgot 1 errors 1\r\n-pipelined STARTTLS 7\r\n-no tls\r\n-unknown BOGUS\r\n");
  c.send(xored("BOGUS\r\n"));
  CHECK_XORED(c.fd(), "-unknown BOGUS\r\n-too many errors\r\n");
  CHECK(logs.has({"phase=starttls", "event=pipelined_plaintext_discarded", "bytes=15"}));
  CHECK(s.stats->starttls_discarded.value() == 1);
}

TEST_CASE("TLS required: only PreTls commands before STARTTLS", "[line][session]") {
  auto o = toy_options();
  o.tls_required = true;
  o.errors.max_errors = 10;
  Server s(o);
  test::LineClient c("127.0.0.1", s.port);
  c.read_line();
  c.send("ECHO a\r\nSTATE\r\nSTARTTLS\r\n");
  CHECK_PLAIN(c.fd(), "-tls_required ECHO\r\n+forgot 0 errors 1\r\n+go\r\n");
  c.send(xored("ECHO b\r\n"));
  CHECK_XORED(c.fd(), "+b\r\n");
}

TEST_CASE("a client that pipelines while a command is suspended cannot make the server buffer without bound",
          "[line][session]") {
  Server s;
  test::LineClient c("127.0.0.1", s.port, 2s);
  c.read_line();
  c.send("HANG\r\n");
  std::this_thread::sleep_for(20ms);
  std::string chunk;
  for (int i = 0; i < 1024; ++i) chunk += "ECHO 0123456789012345678901234567890\r\n";
  size_t sent = 0;
  while (sent < (64u << 20)) {
    ssize_t n = ::send(c.fd(), chunk.data(), chunk.size(), MSG_NOSIGNAL);
    if (n <= 0) break;  // SO_SNDTIMEO: the server stopped reading
    sent += static_cast<size_t>(n);
    if (static_cast<size_t>(n) < chunk.size()) break;
  }
  CHECK(sent < (64u << 20));
}

TEST_CASE("a half-closing client still gets the answers to what it pipelined", "[line][session]") {
  Server s;
  test::LineClient c("127.0.0.1", s.port);
  c.read_line();
  c.send("SLOW 1\r\nECHO 2\r\n");
  ::shutdown(c.fd(), SHUT_WR);
  CHECK(c.read_line() == "+slow 1");
  CHECK(c.read_line() == "+2");
  CHECK(c.closed_by_peer());
}

TEST_CASE("a resume after the connection is gone does nothing", "[line][session]") {
  Server s;
  {
    test::LineClient c("127.0.0.1", s.port);
    c.read_line();
    c.send("HANG\r\nECHO after\r\n");
    std::this_thread::sleep_for(20ms);
    linger l{1, 0};  // close with a reset: the server aborts at once
    setsockopt(c.fd(), SOL_SOCKET, SO_LINGER, &l, sizeof l);
  }
  for (int i = 0; i < 100 && s.shared.late_resumes == 0; ++i) std::this_thread::sleep_for(10ms);
  CHECK(s.shared.late_resumes == 1);
  CHECK(s.shared.sessions_closed == 1);
  test::LineClient again("127.0.0.1", s.port);
  CHECK(again.read_line() == "+ready");
}

TEST_CASE("drain waits for the suspended command, then the protocol's reply closes", "[line][session]") {
  Logs logs;
  Server s;
  test::LineClient c("127.0.0.1", s.port);
  c.read_line();
  c.send("SLOW 1\r\n");
  std::this_thread::sleep_for(10ms);
  s.on_loop([&] { s.connections.drain_all(); });
  CHECK(c.read_line() == "+slow 1");
  CHECK(c.read_line() == "-draining");
  CHECK(c.closed_by_peer());
  CHECK(logs.has({"comp=toy", "event=drain"}));
}

TEST_CASE("an idle session gets the protocol's timeout reply, logged with its phase", "[line][session]") {
  Logs logs;
  Server s(toy_options(), 150ms);
  test::LineClient c("127.0.0.1", s.port);
  c.read_line();
  c.send("RAW\r\n");
  CHECK(c.read_line() == "+raw");
  CHECK(c.read_line() == "-idle timeout");
  CHECK(c.closed_by_peer());
  CHECK(logs.has({"phase=data", "event=timeout", "kind=idle"}));
}
