// tls_daemon_test.cpp: TLS wired through run_daemon: [tls] opens this host's NSS database made by
// deploy/certs, listeners with tls = "implicit" and "starttls", client certificates, STARTTLS with
// pipelined plaintext discarded, and --check-config naming a missing certificate. Real clients:
// openssl s_client and Python's ssl module.
#include <catch2/catch.hpp>

#include <memory>
#include <thread>

#include "tests/support/process.hpp"

using namespace std::chrono_literals;

namespace {

std::string certs() { return test::source_path("deploy/certs"); }

class TlsEchoDaemon {
 public:
  explicit TlsEchoDaemon(const std::string& nickname = "Server-Cert") {
    std::filesystem::permissions(dir_.path(), std::filesystem::perms(0755));
    auto ca = dir_ / "ca";
    auto host = dir_ / "host";
    REQUIRE(test::run({certs(), "ca", "--dir", ca.string()}, 120s).exit_code == 0);
    REQUIRE(test::run({certs(), "host", "--ca", ca.string(), "--dir", host.string(), "--host", "localhost", "--ip",
                       "127.0.0.1"},
                      120s)
                .exit_code == 0);
    REQUIRE(test::run({certs(), "client", "--ca", ca.string(), "--name", "alice", "--out", (dir_ / "clients").string()},
                      120s)
                .exit_code == 0);
    implicit_port_ = test::free_port();
    starttls_port_ = test::free_port();
    config_ = dir_.write("echo.toml",
                         "[daemon]\nuser = \"nobody\"\n"
                         "[tls]\ndb_dir = \"" + host.string() + "\"\n"
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
