// tls_daemon_test.cpp: TLS wired through run_daemon: [tls] opens this host's NSS database made by
// deploy/certs, listeners with tls = "implicit" and "starttls", client certificates, STARTTLS with
// pipelined plaintext discarded, --check-config naming a missing certificate, a certificate
// re-issued by deploy/certs served after SIGHUP (open connections keep theirs), and the warning for
// a certificate about to expire. Real clients: openssl s_client and Python's ssl module.
#include <catch2/catch.hpp>

#include <signal.h>

#include <fstream>
#include <memory>
#include <thread>

#include "tests/support/process.hpp"

using namespace std::chrono_literals;

namespace {

std::string certs() { return test::source_path("deploy/certs"); }

class TlsEchoDaemon {
 public:
  // `tls_keys` go into [tls]; `host_args` are extra deploy/certs host options ("--months", "1").
  explicit TlsEchoDaemon(const std::string& nickname = "Server-Cert", const std::string& tls_keys = "",
                         std::vector<std::string> host_args = {}) {
    std::filesystem::permissions(dir_.path(), std::filesystem::perms(0755));
    auto ca = dir_ / "ca";
    auto host = dir_ / "host";
    REQUIRE(test::run({certs(), "ca", "--dir", ca.string()}, 120s).exit_code == 0);
    std::vector<std::string> issue{certs(), "host", "--ca", ca.string(), "--dir", host.string(), "--host", "localhost",
                                   "--ip", "127.0.0.1"};
    issue.insert(issue.end(), host_args.begin(), host_args.end());
    REQUIRE(test::run(issue, 120s).exit_code == 0);
    REQUIRE(test::run({certs(), "client", "--ca", ca.string(), "--name", "alice", "--out", (dir_ / "clients").string()},
                      120s)
                .exit_code == 0);
    implicit_port_ = test::free_port();
    starttls_port_ = test::free_port();
    config_ = dir_.write("echo.toml",
                         "[daemon]\nuser = \"nobody\"\n"
                         "[tls]\ndb_dir = \"" + host.string() + "\"\n" + tls_keys +
                         "[[listener]]\nname = \"echos\"\nservice = \"echo\"\ntls = \"implicit\"\n"
                         "client_certs = \"optional\"\ncertificates = [\"" + nickname + "\"]\n"
                         "address = \"127.0.0.1:" + std::to_string(implicit_port_) + "\"\n"
                         "[[listener]]\nname = \"echo\"\nservice = \"echo\"\ntls = \"starttls\"\n"
                         "address = \"127.0.0.1:" + std::to_string(starttls_port_) + "\"\n")
                  .string();
  }

  void start() {
    process_ = std::make_unique<test::ChildProcess>(
        std::vector<std::string>{test::binary_path("tests/integration/postern-echo"), "--config", config_},
        (dir_ / "echo.log").string());
    auto until = std::chrono::steady_clock::now() + 20s;
    while (log().find("event=started") == std::string::npos) {
      if (!process_->running() || std::chrono::steady_clock::now() > until) FAIL("postern-echo did not start: " << log());
      std::this_thread::sleep_for(10ms);
    }
  }

  // Lines sent over implicit TLS with openssl s_client; its whole output.
  std::string s_client(const std::string& lines, const std::string& extra = "") {
    std::string cmd = "printf '" + lines + "' | openssl s_client -connect 127.0.0.1:" + std::to_string(implicit_port_) +
                      " -servername localhost -CAfile " + (dir_ / "ca/ca.pem").string() +
                      " -verify_return_error -quiet -ign_eof " + extra + " 2>&1";
    return test::run({"bash", "-c", cmd}, 60s).output;
  }

  // The serial number of the certificate the implicit-TLS listener presents now.
  std::string served_serial() {
    return test::run({"bash", "-c", "openssl s_client -connect 127.0.0.1:" + std::to_string(implicit_port_) +
                                        " -servername localhost </dev/null 2>/dev/null | openssl x509 -noout -serial"},
                     60s)
        .output;
  }

  // SIGHUP, then wait for the daemon to say it reloaded.
  void reload() {
    auto count = [this] {
      std::string text = log();
      size_t n = 0;
      for (auto p = text.find("event=reloaded"); p != std::string::npos; p = text.find("event=reloaded", p + 1)) ++n;
      return n;
    };
    size_t before = count();
    process_->signal(SIGHUP);
    auto until = std::chrono::steady_clock::now() + 20s;
    while (count() <= before) {
      if (std::chrono::steady_clock::now() > until) FAIL("postern-echo did not reload: " << log());
      std::this_thread::sleep_for(10ms);
    }
  }

  int implicit_port() const { return implicit_port_; }
  std::string dir(const std::string& sub) const { return (dir_ / sub).string(); }
  const std::string& config() const { return config_; }
  int starttls_port() const { return starttls_port_; }
  std::string log() const { return test::read_file(dir_ / "echo.log"); }

 private:
  test::TempDir dir_;
  int implicit_port_ = 0;
  int starttls_port_ = 0;
  std::string config_;
  std::unique_ptr<test::ChildProcess> process_;
};

}  // namespace

TEST_CASE("implicit TLS from the host's NSS database serves openssl s_client", "[integration][tls]") {
  TlsEchoDaemon d;
  d.start();
  std::string out = d.s_client("hello\\r\\nTLSINFO\\r\\nQUIT\\r\\n");
  INFO(out << d.log());
  CHECK(out.find("+ready") != std::string::npos);
  CHECK(out.find("hello") != std::string::npos);
  CHECK(out.find("+tls TLSv1.3") != std::string::npos);
  CHECK(out.find("client=none") != std::string::npos);
  CHECK(out.find("+bye") != std::string::npos);
  CHECK(d.log().find("event=nss_ready") != std::string::npos);
}

TEST_CASE("a client certificate from the deployment CA is verified and seen by the session", "[integration][tls]") {
  TlsEchoDaemon d;
  d.start();
  std::string out = d.s_client("TLSINFO\\r\\nQUIT\\r\\n",
                               "-cert " + d.dir("clients/alice.pem") + " -key " + d.dir("clients/alice.key"));
  INFO(out << d.log());
  CHECK(out.find("+tls TLSv1.3") != std::string::npos);
  CHECK(out.find("CN=alice") != std::string::npos);
}

TEST_CASE("STARTTLS discards plaintext pipelined behind it", "[integration][tls]") {
  TlsEchoDaemon d;
  d.start();
  auto r = test::run({"python3", test::source_path("tests/integration/starttls_client.py"), "127.0.0.1",
                      std::to_string(d.starttls_port()), d.dir("ca/ca.pem")},
                     60s);
  INFO(r.output << d.log());
  CHECK(r.exit_code == 0);
  CHECK(r.output.find("starttls: +go ahead") != std::string::npos);
  CHECK(r.output.find("version: TLSv1.3") != std::string::npos);
  CHECK(r.output.find("line: +tls TLSv1.3") != std::string::npos);  // the first line after TLS
  CHECK(r.output.find("line: after") != std::string::npos);
  CHECK(r.output.find("INJECTED") == std::string::npos);
}

TEST_CASE("a certificate nickname missing from the database fails the start and check-config", "[integration][tls]") {
  TlsEchoDaemon d("No-Such-Cert");
  auto r = test::run({test::binary_path("tests/integration/postern-echo"), "--config", d.config(), "--check-config"});
  CHECK(r.exit_code == 1);
  CHECK(r.output.find("No-Such-Cert") != std::string::npos);
  r = test::run({test::binary_path("tests/integration/postern-echo"), "--config", d.config()});
  CHECK(r.exit_code == 1);
  CHECK(r.output.find("No-Such-Cert") != std::string::npos);
  auto v = test::run({test::binary_path("tests/integration/postern-echo"), "--version"});
  CHECK(v.output.find("NSS 3.") != std::string::npos);
}

TEST_CASE("SIGHUP serves a certificate deploy/certs re-issued, and connections open before keep theirs", "[integration][tls]") {
  TlsEchoDaemon d;
  d.start();
  std::string before = d.served_serial();
  REQUIRE(before.rfind("serial=", 0) == 0);
  // A connection that stays open across the reload: greeted, then it waits for the go file.
  const std::string go = d.dir("go");
  const std::string script =
      "import os, socket, ssl, sys, time\n"
      "ctx = ssl.create_default_context(cafile=sys.argv[2])\n"
      "s = ctx.wrap_socket(socket.create_connection(('127.0.0.1', int(sys.argv[1]))), server_hostname='localhost')\n"
      "f = s.makefile('rwb')\n"
      "print('greeting:', f.readline().decode().strip(), flush=True)\n"
      "while not os.path.exists(sys.argv[3]): time.sleep(0.01)\n"
      "f.write(b'still here\\r\\n'); f.flush()\n"
      "print('echo:', f.readline().decode().strip(), flush=True)\n";
  test::ChildProcess open_connection({"python3", "-c", script, std::to_string(d.implicit_port()), d.dir("ca/ca.pem"), go},
                                     d.dir("open.out"));
  auto until = std::chrono::steady_clock::now() + 20s;
  while (test::read_file(d.dir("open.out")).find("greeting: +ready") == std::string::npos) {
    if (!open_connection.running() || std::chrono::steady_clock::now() > until) FAIL(test::read_file(d.dir("open.out")));
    std::this_thread::sleep_for(10ms);
  }

  // What cron does before the certificate expires (--force stands in for "expires within 30 days").
  auto reissued = test::run({certs(), "host", "--ca", d.dir("ca"), "--dir", d.dir("host"), "--host", "localhost",
                             "--ip", "127.0.0.1", "--force"},
                            120s);
  INFO(reissued.output);
  REQUIRE(reissued.exit_code == 0);
  d.reload();
  std::string after = d.served_serial();
  INFO(d.log());
  CHECK(after.rfind("serial=", 0) == 0);
  CHECK(after != before);
  CHECK(d.log().find("event=tls_context_replaced listener=echos") != std::string::npos);
  std::string out = d.s_client("hello\\r\\nQUIT\\r\\n");
  CHECK(out.find("hello") != std::string::npos);

  std::ofstream(go) << "go\n";
  CHECK(open_connection.wait(20s) == 0);
  CHECK(test::read_file(d.dir("open.out")).find("echo: still here") != std::string::npos);
}

TEST_CASE("a served certificate that expires within [tls] expiry_warning is warned about at start and on SIGHUP",
          "[integration][tls]") {
  TlsEchoDaemon d("Server-Cert", "expiry_warning = \"60d\"\n", {"--months", "1"});
  d.start();
  auto warned = [&] {
    std::string text = d.log();
    size_t n = 0;
    for (auto p = text.find("event=certificate_expiring"); p != std::string::npos;
         p = text.find("event=certificate_expiring", p + 1))
      ++n;
    return n;
  };
  INFO(d.log());
  REQUIRE(warned() == 1);
  auto log = d.log();
  auto line = log.substr(log.find("event=certificate_expiring"));
  line = line.substr(0, line.find('\n'));
  CHECK(log.find("level=warning daemon=postern-echo comp=tls phase=certificates event=certificate_expiring") !=
        std::string::npos);
  CHECK(line.find("nickname=Server-Cert") != std::string::npos);
  CHECK(line.find("days_left=") != std::string::npos);
  CHECK(line.find("subject=\"CN=localhost,O=Postern\"") != std::string::npos);
  d.reload();
  CHECK(warned() == 2);
}

TEST_CASE("a certificate with years left is not warned about", "[integration][tls]") {
  TlsEchoDaemon d;
  d.start();
  CHECK(d.log().find("event=certificate_expiring") == std::string::npos);
}
