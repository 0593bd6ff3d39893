// echo_daemon_test.cpp: the runtime proved with real sockets and a real process (postern-echo on
// run_daemon): 2,000 concurrent clients, the line limit, the idle timeout, the per-IP limit, access
// filters (numeric and DNS-based against dnsmasq), SIGHUP reload, SIGTERM drain to exit 0,
// --check-config, the privilege drop and the metrics endpoint read with curl.
#include <catch2/catch.hpp>

#include <signal.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fstream>
#include <memory>
#include <sstream>
#include <thread>

#include "tests/support/dnsmasq.hpp"
#include "tests/support/line_client.hpp"
#include "tests/support/metrics_scrape.hpp"
#include "tests/support/process.hpp"

using namespace std::chrono_literals;

namespace {

struct Options {
  int max_per_ip = 20;
  bool chroot = false;       // [daemon] chroot into the daemon's own temp dir
  std::string idle_timeout = "2s";
  std::string access;        // lines of the [access] table
  std::string dns_server;    // [dns] servers
  std::string drain_timeout = "5s";
};

class EchoDaemon {
 public:
  explicit EchoDaemon(Options o = {}) : options_(std::move(o)) {
    // The daemon runs as nobody after binding and reads its config again on SIGHUP.
    std::filesystem::permissions(dir_.path(), std::filesystem::perms(0755));
    port_ = test::free_port();
    metrics_port_ = test::free_port();
    write_config();
    start();
  }

  void write_config() {
    std::string cfg =
        "[daemon]\n"
        "user = \"nobody\"\n"
        "pid_file = \"" + (dir_ / "echo.pid").string() + "\"\n"
        "threads = 2\n"
        "drain_timeout = \"" + options_.drain_timeout + "\"\n" +
        (options_.chroot ? "chroot = \"" + dir_.path().string() + "\"\n" : std::string()) +
        "[log]\n"
        "level = \"info\"\n"
        "[metrics]\n"
        "listen = \"127.0.0.1:" + std::to_string(metrics_port_) + "\"\n";
    if (!options_.dns_server.empty()) {
      cfg += "[dns]\nservers = [\"" + options_.dns_server + "\"]\ntimeout = \"500ms\"\n";
    }
    cfg += "[access]\n" + options_.access +
           "[echo]\n"
           "max_line = 100\n"
           "[[listener]]\n"
           "name = \"echo\"\n"
           "service = \"echo\"\n"
           "address = [\"127.0.0.1:" + std::to_string(port_) + "\", \"[::1]:" + std::to_string(port_) + "\"]\n"
           "max_per_ip = " + std::to_string(options_.max_per_ip) + "\n"
           "max_connections = 5000\n"
           "idle_timeout = \"" + options_.idle_timeout + "\"\n";
    config_ = dir_.write("echo.toml", cfg).string();
  }

  void start() {
    process_ = std::make_unique<test::ChildProcess>(
        std::vector<std::string>{test::binary_path("tests/integration/postern-echo"), "--config", config_},
        (dir_ / "echo.log").string());
    // The port accepts (into the backlog) as soon as it is bound, before the chroot and the
    // privilege drop: "started" is logged once those are done.
    auto until = std::chrono::steady_clock::now() + 10s;
    while (log().find("event=started") == std::string::npos) {
      if (!process_->running() || std::chrono::steady_clock::now() > until) FAIL("postern-echo did not start: " << log());
      std::this_thread::sleep_for(10ms);
    }
  }

  int port() const { return port_; }
  const std::string& config() const { return config_; }
  std::string dir() const { return dir_.path().string(); }
  int metrics_port() const { return metrics_port_; }
  test::ChildProcess& process() { return *process_; }
  std::string log() const { return test::read_file(dir_ / "echo.log"); }
  Options& options() { return options_; }

  std::string metrics(const std::string& path = "/metrics") const {
    auto r = test::run({"curl", "-sS", "-m", "5", "http://127.0.0.1:" + std::to_string(metrics_port_) + path});
    return r.output;
  }

 private:
  test::TempDir dir_;
  Options options_;
  int port_ = 0;
  int metrics_port_ = 0;
  std::string config_;
  std::unique_ptr<test::ChildProcess> process_;
};

bool greeted(test::LineClient& c) {
  auto line = c.read_line();
  return line && line->rfind("+ready ", 0) == 0;
}

void raise_fd_limit() {
  rlimit r{};
  getrlimit(RLIMIT_NOFILE, &r);
  r.rlim_cur = r.rlim_max;
  setrlimit(RLIMIT_NOFILE, &r);
}

using test::metric_sample;

}  // namespace

TEST_CASE("2000 concurrent clients from 100 addresses are held and echoed", "[integration]") {
  raise_fd_limit();
  EchoDaemon d;
  std::vector<std::unique_ptr<test::LineClient>> clients;
  for (int i = 0; i < 2000; ++i) {
    std::string source = "127.0.1." + std::to_string(1 + i / 20);
    clients.push_back(std::make_unique<test::LineClient>("127.0.0.1", d.port(), 10s, source));
    REQUIRE(clients.back()->connected());
  }
  for (auto& c : clients) REQUIRE(greeted(*c));
  for (size_t i = 0; i < clients.size(); ++i) clients[i]->send("client " + std::to_string(i) + "\r\n");
  for (size_t i = 0; i < clients.size(); ++i) REQUIRE(clients[i]->read_line() == "client " + std::to_string(i));
  std::string scrape = d.metrics();
  CHECK(metric_sample(scrape, "postern_connections_active{listener=\"echo\"}") == 2000);
  CHECK(metric_sample(scrape, "postern_connections_accepted_total{listener=\"echo\"}") == 2000);
  for (auto& c : clients) c->send("QUIT\r\n");
  for (auto& c : clients) REQUIRE(c->read_line() == "+bye");
}

TEST_CASE("an over-long line is answered with an error and the session survives", "[integration]") {
  EchoDaemon d;
  test::LineClient c("127.0.0.1", d.port());
  REQUIRE(greeted(c));
  c.send(std::string(100, 'a') + "\r\n" + std::string(101, 'b') + "\r\n" + std::string(100000, 'c') + "\r\nok\r\n");
  CHECK(c.read_line() == std::string(100, 'a'));
  CHECK(c.read_line() == "-ERR line too long");
  CHECK(c.read_line() == "-ERR line too long");
  CHECK(c.read_line() == "ok");
}

TEST_CASE("idle and half-open clients time out while others are served", "[integration]") {
  EchoDaemon d(Options{.idle_timeout = "1s"});
  std::vector<std::unique_ptr<test::LineClient>> silent;
  for (int i = 0; i < 50; ++i) {
    silent.push_back(std::make_unique<test::LineClient>("127.0.0.1", d.port(), 5s, "127.0.2." + std::to_string(i + 1)));
  }
  // A slow client: one byte every 300 ms keeps it alive, and its line completes.
  test::LineClient slow("127.0.0.1", d.port(), 5s, "127.0.3.1");
  REQUIRE(greeted(slow));
  for (char ch : std::string("slow")) {
    slow.send(std::string(1, ch));
    std::this_thread::sleep_for(300ms);
  }
  slow.send("\r\n");
  CHECK(slow.read_line() == "slow");
  for (auto& c : silent) {
    REQUIRE(greeted(*c));
    CHECK(c->read_line() == "-ERR idle timeout");
    CHECK(c->closed_by_peer());
  }
  test::LineClient fresh("127.0.0.1", d.port());
  REQUIRE(greeted(fresh));
}

TEST_CASE("a flood from one address meets the per-IP limit and other addresses are still served", "[integration]") {
  raise_fd_limit();
  EchoDaemon d(Options{.max_per_ip = 20});
  std::vector<std::unique_ptr<test::LineClient>> flood;
  int refused = 0;
  int accepted = 0;
  for (int i = 0; i < 300; ++i) {
    flood.push_back(std::make_unique<test::LineClient>("127.0.0.1", d.port(), 5s, "127.0.0.9"));
    auto line = flood.back()->read_line();
    REQUIRE(line);
    if (*line == "-ERR refused per_ip_limit") ++refused;
    if (line->rfind("+ready", 0) == 0) ++accepted;
  }
  CHECK(accepted == 20);
  CHECK(refused == 280);
  test::LineClient other("127.0.0.1", d.port(), 5s, "127.0.0.10");
  REQUIRE(greeted(other));
  other.send("still here\r\n");
  CHECK(other.read_line() == "still here");
  CHECK(metric_sample(d.metrics(), "postern_connections_refused_total{listener=\"echo\",reason=\"per_ip_limit\"}") == 280);
}

TEST_CASE("numeric access filters refuse before any session and SIGHUP reloads them", "[integration]") {
  EchoDaemon d(Options{.access = "deny = [\"echo: 127.0.0.66 [::1]\"]\n"});
  {
    test::LineClient denied("127.0.0.1", d.port(), 5s, "127.0.0.66");
    CHECK(denied.read_line() == "-ERR refused access_denied");
    CHECK(denied.closed_by_peer());
    test::LineClient denied6("::1", d.port());
    CHECK(denied6.read_line() == "-ERR refused access_denied");
    test::LineClient allowed("127.0.0.1", d.port(), 5s, "127.0.0.67");
    CHECK(greeted(allowed));
  }
  CHECK(d.log().find("rule=\"deny by [access] deny:1") != std::string::npos);
  // Reload: now 127.0.0.67 is denied and 127.0.0.66 allowed; the listener never stopped.
  d.options().access = "deny = [\"echo: 127.0.0.67\"]\n";
  d.write_config();
  d.process().signal(SIGHUP);
  bool switched = false;
  for (int i = 0; i < 100 && !switched; ++i) {
    test::LineClient probe("127.0.0.1", d.port(), 5s, "127.0.0.67");
    switched = probe.read_line() == "-ERR refused access_denied";
    if (!switched) std::this_thread::sleep_for(20ms);
  }
  INFO(d.log());
  CHECK(switched);
  test::LineClient now_allowed("127.0.0.1", d.port(), 5s, "127.0.0.66");
  CHECK(greeted(now_allowed));
  // A broken file on reload is refused and the running filter stays.
  d.options().access = "deny = [\"echo: 127.0.0.0/33\"]\n";
  d.write_config();
  d.process().signal(SIGHUP);
  for (int i = 0; i < 100 && d.log().find("reload_rejected") == std::string::npos; ++i) std::this_thread::sleep_for(20ms);
  CHECK(d.log().find("reload_rejected") != std::string::npos);
  test::LineClient still_denied("127.0.0.1", d.port(), 5s, "127.0.0.67");
  CHECK(still_denied.read_line() == "-ERR refused access_denied");
}

TEST_CASE("DNS-based filters use forward-confirmed reverse DNS from a real server", "[integration]") {
  test::Dnsmasq dns({"--local=/test/", "--local=/in-addr.arpa/",
                     "--host-record=good.test,127.0.0.77",                    // PTR and A agree
                     "--ptr-record=78.0.0.127.in-addr.arpa,spoof.test",       // PTR whose A is elsewhere
                     "--address=/spoof.test/192.0.2.1",
                     "--host-record=other.example.test,127.0.0.80"});
  // First match wins, so the numeric rule comes first: clients from 127.0.0.1 are decided without
  // DNS, while any client reaching the .good.test rule is looked up.
  EchoDaemon d(Options{.access = "allow = [\"echo: 127.0.0.1\", \"echo: .good.test\"]\n"
                                 "deny = [\"echo: DNSSPOOFER\", \"echo: UNKNOWN\"]\n",
                       .dns_server = dns.server()});
  test::LineClient verified("127.0.0.1", d.port(), 5s, "127.0.0.77");
  CHECK(greeted(verified));
  test::LineClient spoofer("127.0.0.1", d.port(), 5s, "127.0.0.78");
  CHECK(spoofer.read_line() == "-ERR refused access_denied");
  test::LineClient nameless("127.0.0.1", d.port(), 5s, "127.0.0.79");
  CHECK(nameless.read_line() == "-ERR refused access_denied");
  test::LineClient known_elsewhere("127.0.0.1", d.port(), 5s, "127.0.0.80");
  CHECK(greeted(known_elsewhere));  // no deny rule matches a verified name outside .good.test
  // A numeric allow decides without any DNS query for that client.
  test::LineClient numeric("127.0.0.1", d.port(), 5s, "127.0.0.1");
  CHECK(greeted(numeric));
  CHECK(dns.log().find("1.0.0.127.in-addr.arpa") == std::string::npos);
  std::string log = d.log();
  CHECK(log.find("DNSSPOOFER") != std::string::npos);
  CHECK(log.find("UNKNOWN") != std::string::npos);
}

TEST_CASE("SIGTERM drains open sessions and exits 0", "[integration]") {
  EchoDaemon d;
  test::LineClient a("127.0.0.1", d.port());
  test::LineClient b("::1", d.port());
  REQUIRE(greeted(a));
  REQUIRE(greeted(b));
  d.process().signal(SIGTERM);
  CHECK(a.read_line() == "+shutting down");
  CHECK(b.read_line() == "+shutting down");
  CHECK(a.closed_by_peer());
  CHECK(d.process().wait(10s) == 0);
  CHECK_FALSE(test::LineClient("127.0.0.1", d.port()).connected());
  std::string log = d.log();
  CHECK(log.find("event=draining") != std::string::npos);
  CHECK(log.find("event=stopped") != std::string::npos);
}

TEST_CASE("the daemon runs as the configured user after binding", "[integration]") {
  EchoDaemon d;
  std::string status = test::read_file("/proc/" + std::to_string(d.process().pid()) + "/status");
  auto at = status.find("\nUid:");
  REQUIRE(at != std::string::npos);
  std::istringstream uids(status.substr(at + 5));
  for (int i = 0; i < 4; ++i) {  // nobody: real, effective, saved, fs
    long uid = -1;
    uids >> uid;
    CHECK(uid == 65534);
  }
}

TEST_CASE("a daemon that dropped privileges still dies with the process that started it", "[integration]") {
  // The test harness's guarantee: no daemon outlives its test, even when the test process dies
  // without running destructors.
  int fds[2];
  REQUIRE(pipe(fds) == 0);
  prctl(PR_SET_CHILD_SUBREAPER, 1);  // the orphaned daemon becomes our child, so we can reap it
  pid_t middle = fork();
  REQUIRE(middle >= 0);
  if (middle == 0) {
    close(fds[0]);
    auto* d = new EchoDaemon();  // never destroyed: this process ends with _exit below
    pid_t daemon_pid = d->process().pid();
    (void)!write(fds[1], &daemon_pid, sizeof daemon_pid);
    _exit(0);
  }
  close(fds[1]);
  pid_t daemon_pid = 0;
  REQUIRE(read(fds[0], &daemon_pid, sizeof daemon_pid) == sizeof daemon_pid);
  close(fds[0]);
  int status = 0;
  waitpid(middle, &status, 0);
  bool gone = false;
  for (int i = 0; i < 200 && !gone; ++i) {
    gone = waitpid(daemon_pid, &status, WNOHANG) == daemon_pid;
    if (!gone) std::this_thread::sleep_for(10ms);
  }
  if (!gone) kill(daemon_pid, SIGKILL);
  CHECK(gone);
}

TEST_CASE("a chrooted daemon serves from inside its jail", "[integration]") {
  EchoDaemon d(Options{.chroot = true});
  auto pid = std::to_string(d.process().pid());
  CHECK(std::filesystem::read_symlink("/proc/" + pid + "/root") == std::filesystem::path(d.dir()));
  test::LineClient c("127.0.0.1", d.port());
  REQUIRE(greeted(c));
  c.send("jailed\r\n");
  CHECK(c.read_line() == "jailed");
}

TEST_CASE("a second instance fails on the locked pid file and binds nothing", "[integration]") {
  EchoDaemon d;
  auto r = test::run({test::binary_path("tests/integration/postern-echo"), "--config", d.config()});
  CHECK(r.exit_code == 1);
  CHECK(r.output.find("already running as pid " + std::to_string(d.process().pid())) != std::string::npos);
  test::LineClient c("127.0.0.1", d.port());
  CHECK(greeted(c));
}

TEST_CASE("metrics are served in the Prometheus text format", "[integration]") {
  EchoDaemon d;
  {
    test::LineClient c("127.0.0.1", d.port());
    REQUIRE(greeted(c));
  }
  std::string scrape = d.metrics();
  CHECK(scrape.find("# TYPE postern_connections_accepted_total counter") != std::string::npos);
  CHECK(metric_sample(scrape, "postern_connections_accepted_total{listener=\"echo\"}") >= 1);
  CHECK(metric_sample(scrape, "process_resident_memory_bytes") > 0);
  auto head = test::run({"curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}", "-m", "5",
                         "http://127.0.0.1:" + std::to_string(d.metrics_port()) + "/other"});
  CHECK(head.output == "404");
}

TEST_CASE("check-config prints the effective config or every problem", "[integration]") {
  test::TempDir dir;
  auto good = dir.write("good.toml",
                        "[daemon]\nuser = \"nobody\"\n[[listener]]\nservice = \"echo\"\naddress = \"127.0.0.1:7000\"\n");
  auto r = test::run({test::binary_path("tests/integration/postern-echo"), "--config", good.string(), "--check-config"});
  INFO(r.output);
  CHECK(r.exit_code == 0);
  CHECK(r.output.find("max_per_ip = 20") != std::string::npos);
  CHECK(r.output.find("idle_timeout = \"5m\"") != std::string::npos);

  auto bad = dir.write("bad.toml",
                       "[daemon]\nuser = \"nobody\"\nthreads = 0\n[[listener]]\nservice = \"smtp\"\n"
                       "address = \"127.0.0.1:99999\"\nmax_per_ipp = 3\n");
  r = test::run({test::binary_path("tests/integration/postern-echo"), "--config", bad.string(), "--check-config"});
  INFO(r.output);
  CHECK(r.exit_code == 1);
  CHECK(r.output.find("bad.toml:3") != std::string::npos);   // threads out of range
  CHECK(r.output.find("bad.toml:5") != std::string::npos);   // a service this daemon does not speak
  CHECK(r.output.find("bad.toml:6") != std::string::npos);   // bad address
  CHECK(r.output.find("max_per_ipp") != std::string::npos);  // unknown key

  auto bad_filter = dir.write("filter.toml",
                              "[daemon]\nuser = \"nobody\"\n[access]\ndeny = [\"echo: 10.0.0.0/33\"]\n"
                              "[[listener]]\nservice = \"echo\"\naddress = \"127.0.0.1:7000\"\n");
  r = test::run({test::binary_path("tests/integration/postern-echo"), "--config", bad_filter.string(), "--check-config"});
  CHECK(r.exit_code == 1);
  CHECK(r.output.find("[access] deny:1") != std::string::npos);

  // Starting with a broken config fails at once with the problems, and binds nothing.
  r = test::run({test::binary_path("tests/integration/postern-echo"), "--config", bad.string()});
  CHECK(r.exit_code == 1);
  r = test::run({test::binary_path("tests/integration/postern-echo"), "--config", (dir / "missing.toml").string()});
  CHECK(r.exit_code == 1);
  CHECK(r.output.find("missing.toml") != std::string::npos);
}

TEST_CASE("a daemon started as its service user is not dumpable: that user cannot read its memory", "[integration]") {
  // As under systemd's User=: the daemon never drops privileges itself. Processes of the same user
  // may read /proc/PID/environ (or mem, or ptrace it) of a dumpable process; not of this one. (The
  // tests run as root, which may still read a daemon's /proc, so the other tests are unaffected.)
  test::TempDir dir;
  std::filesystem::permissions(dir.path(), std::filesystem::perms(0755));
  int port = test::free_port();
  auto config = dir.write("echo.toml", "[log]\nlevel = \"info\"\n[metrics]\nlisten = \"\"\n"
                                       "[[listener]]\nservice = \"echo\"\naddress = \"127.0.0.1:" +
                                           std::to_string(port) + "\"\n");
  std::filesystem::permissions(config, std::filesystem::perms(0644));
  const std::vector<std::string> as_nobody{"setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"};
  auto argv = as_nobody;
  argv.insert(argv.end(), {test::binary_path("tests/integration/postern-echo"), "--config", config.string()});
  test::ChildProcess daemon(argv, (dir.path() / "echo.log").string());
  auto until = std::chrono::steady_clock::now() + 10s;
  while (test::read_file(dir.path() / "echo.log").find("event=started") == std::string::npos) {
    if (!daemon.running() || std::chrono::steady_clock::now() > until)
      FAIL("postern-echo did not start: " << test::read_file(dir.path() / "echo.log"));
    std::this_thread::sleep_for(10ms);
  }
  auto read_as_nobody = [&](pid_t pid) {
    auto cmd = as_nobody;
    cmd.insert(cmd.end(), {"cat", "/proc/" + std::to_string(pid) + "/environ"});
    return test::run(cmd);
  };
  auto refused = read_as_nobody(daemon.pid());
  INFO(refused.output);
  CHECK(refused.exit_code != 0);
  CHECK(refused.output.find("Permission denied") != std::string::npos);
  // The same read of an ordinary process of that user works, so the refusal is the daemon's doing.
  auto sleeper_argv = as_nobody;
  sleeper_argv.insert(sleeper_argv.end(), {"sleep", "30"});
  test::ChildProcess sleeper(sleeper_argv);
  std::this_thread::sleep_for(200ms);  // setpriv has exec'd sleep
  CHECK(read_as_nobody(sleeper.pid()).exit_code == 0);
  daemon.signal(SIGTERM);
  CHECK(daemon.wait(10s) == 0);
}
