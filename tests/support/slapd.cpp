// slapd.cpp: the Slapd fixture: writes slapd.conf, makes TLS certificates with openssl, starts
// /usr/sbin/slapd in the foreground as a ChildProcess (never outlives the test) and waits for it.
#include "tests/support/slapd.hpp"

#include <catch2/catch.hpp>

#include <signal.h>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <thread>

namespace test {
namespace {

void require_ok(const CommandResult& r, const std::string& what) {
  INFO(what << ": " << r.output);
  REQUIRE(r.exit_code == 0);
}

}  // namespace

Slapd::Slapd(SlapdOptions options) : options_(std::move(options)) {
  std::filesystem::create_directory(dir_ / "db");
  if (options_.tls) make_certificates();
  start();
}

Slapd::~Slapd() {
  if (process_) process_->signal(SIGCONT);  // leave no stopped process behind, even for a moment
}

std::string Slapd::url() const { return "ldap://127.0.0.1:" + std::to_string(port_); }
std::string Slapd::ldaps_url() const {
  return options_.tls ? "ldaps://127.0.0.1:" + std::to_string(tls_port_) : "";
}
std::string Slapd::ca_file() const { return options_.tls ? (dir_ / "ca.pem").string() : ""; }
std::string Slapd::other_ca_file() const { return options_.tls ? (dir_ / "other-ca.pem").string() : ""; }

void Slapd::make_certificates() {
  const auto p = [&](const char* name) { return (dir_ / name).string(); };
  for (const char* ca : {"ca", "other-ca"}) {
    const std::string name = ca;
    require_ok(run({"openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                    "-nodes", "-days", "2", "-subj", "/CN=Postern test " + name, "-keyout",
                    p((name + ".key").c_str()), "-out", p((name + ".pem").c_str())}),
               "openssl CA");
  }
  dir_.write("server.ext", "subjectAltName=IP:127.0.0.1,DNS:localhost\n"
                           "extendedKeyUsage=serverAuth\n");
  require_ok(run({"openssl", "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
                  "-subj", "/CN=127.0.0.1", "-keyout", p("server.key"), "-out", p("server.csr")}),
             "openssl server key");
  require_ok(run({"openssl", "x509", "-req", "-in", p("server.csr"), "-CA", p("ca.pem"), "-CAkey", p("ca.key"),
                  "-CAcreateserial", "-days", "2", "-extfile", p("server.ext"), "-out", p("server.pem")}),
             "openssl server certificate");
}

void Slapd::write_config() {
  const std::string& s = options_.suffix;
  std::string acl = options_.acl;
  if (acl.empty()) {
    acl = "access to attrs=userPassword\n"
          "  by dn.exact=\"cn=authserv," + s + "\" write\n"
          "  by dn.exact=\"cn=reader," + s + "\" read\n"
          "  by self write\n"
          "  by anonymous auth\n"
          "  by * none\n"
          "access to *\n"
          "  by dn.exact=\"cn=authserv," + s + "\" read\n"
          "  by dn.exact=\"cn=reader," + s + "\" read\n"
          "  by self read\n"
          "  by anonymous auth\n"
          "  by * none\n";
  }
  std::string tls;
  if (options_.tls) {
    tls = "TLSCACertificateFile " + ca_file() + "\n"
          "TLSCertificateFile " + (dir_ / "server.pem").string() + "\n"
          "TLSCertificateKeyFile " + (dir_ / "server.key").string() + "\n";
  }
  dir_.write("slapd.conf",
             "include /etc/ldap/schema/core.schema\n"
             "include /etc/ldap/schema/cosine.schema\n"
             "include /etc/ldap/schema/inetorgperson.schema\n"
             "include " + source_path("deploy/ldap/postern-mail.schema") + "\n"
             "pidfile " + (dir_ / "slapd.pid").string() + "\n"
             "modulepath /usr/lib/ldap\n"
             "moduleload back_mdb\n"
             "moduleload argon2\n"
             "moduleload pw-sha2\n" +
             tls +
             "database mdb\n"
             "maxsize 67108864\n"
             "suffix \"" + s + "\"\n"
             "rootdn \"cn=admin," + s + "\"\n"
             "rootpw " + kRootPassword + "\n"
             "directory " + (dir_ / "db").string() + "\n"
             "index objectClass,uid,mail,mailAlternateAddress,mailEquivalentAddress eq\n"
             "index sunPreferredDomain,associatedDomain eq\n" +
             options_.extra_config + acl);
}

void Slapd::start() {
  if (process_) return;
  write_config();
  // free_port() can race with another test grabbing the port; slapd then exits: try again.
  for (int attempt = 0; attempt < 5; ++attempt) {
    if (port_ == 0 || attempt > 0) {
      port_ = free_port();
      if (options_.tls) tls_port_ = free_port();
    }
    std::string listen = "ldap://127.0.0.1:" + std::to_string(port_) + "/";
    if (options_.tls) listen += " ldaps://127.0.0.1:" + std::to_string(tls_port_) + "/";
    process_ = std::make_unique<ChildProcess>(
        std::vector<std::string>{"/usr/sbin/slapd", "-f", (dir_ / "slapd.conf").string(), "-h", listen, "-d", "0"},
        (dir_ / "slapd.log").string());
    const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(15);
    bool up = false;
    while (!up && process_->running() && std::chrono::steady_clock::now() < until) {
      up = wait_for_port(port_, std::chrono::milliseconds(200)) &&
           (!options_.tls || wait_for_port(tls_port_, std::chrono::milliseconds(200)));
    }
    if (up) {
      // Listening is not serving yet: wait for an answer to a real request.
      for (int i = 0; i < 50; ++i) {
        if (run({"ldapwhoami", "-x", "-H", url()}, std::chrono::seconds(5)).exit_code == 0) return;
        std::this_thread::sleep_for(std::chrono::milliseconds(50));
      }
    }
    process_.reset();
    if (read_file(dir_ / "slapd.log").find("Address already in use") == std::string::npos) break;
  }
  INFO("slapd log: " << read_file(dir_ / "slapd.log"));
  FAIL("slapd did not start");
}

void Slapd::stop() {
  if (!process_) return;
  process_->signal(SIGCONT);
  process_->signal(SIGTERM);
  if (process_->wait(std::chrono::seconds(10)) < 0) process_->signal(SIGKILL);
  process_.reset();
}

void Slapd::pause() {
  if (!process_) return;
  process_->signal(SIGSTOP);
  // The stop is asynchronous: a request sent right after kill() could still be answered. Wait
  // until every thread of slapd is stopped (state T in /proc).
  const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(5);
  const std::string task_dir = "/proc/" + std::to_string(process_->pid()) + "/task";
  while (std::chrono::steady_clock::now() < until) {
    bool all_stopped = true;
    std::error_code ec;
    for (const auto& task : std::filesystem::directory_iterator(task_dir, ec)) {
      std::string stat = read_file(task.path() / "stat");
      auto close = stat.rfind(')');
      if (close == std::string::npos || close + 2 >= stat.size() || stat[close + 2] != 'T') all_stopped = false;
    }
    if (!ec && all_stopped) return;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
}

void Slapd::resume() {
  if (process_) process_->signal(SIGCONT);
}

CommandResult Slapd::ldap_tool(const std::string& tool, const std::string& ldif) const {
  static std::atomic<int> counter{0};
  const auto file = dir_.write("input-" + std::to_string(++counter) + ".ldif", ldif);
  return run({tool, "-x", "-H", url(), "-D", root_dn(), "-w", kRootPassword, "-f", file.string()});
}

CommandResult Slapd::add(const std::string& ldif) const { return ldap_tool("ldapadd", ldif); }
CommandResult Slapd::modify(const std::string& ldif) const { return ldap_tool("ldapmodify", ldif); }

}  // namespace test
