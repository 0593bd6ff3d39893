// tls_harness.cpp: the shared PKI, the in-process TLS server and the client helpers (tls_harness.hpp).
#include "tests/common/tls/tls_harness.hpp"

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <catch2/catch.hpp>

#include <cstdio>
#include <fstream>
#include <functional>

#include "common/log/log.hpp"
#include "common/metrics/metrics.hpp"
#include "common/net/address.hpp"
#include "common/line/line_session.hpp"

namespace tlstest {
namespace fs = std::filesystem;
using namespace common::runtime;

namespace {

void certs(const std::vector<std::string>& args) {
  std::vector<std::string> argv{test::source_path("deploy/certs")};
  argv.insert(argv.end(), args.begin(), args.end());
  auto r = test::run(argv, std::chrono::seconds(120));
  INFO("deploy/certs " << args.front() << " output:\n" << r.output);
  REQUIRE(r.exit_code == 0);
}

Pki build_pki() {
  std::string script = test::source_path("deploy/certs");
  std::string content = test::read_file(script);
  REQUIRE_FALSE(content.empty());
  char hash[32];
  std::snprintf(hash, sizeof hash, "%016zx", std::hash<std::string>{}(content + "\nfixture-v1"));
  fs::path root = fs::path(test::binary_path("tests/common/tls")) / ("pki-" + std::string(hash));
  fs::create_directories(root.parent_path());
  int lock = ::open((root.string() + ".lock").c_str(), O_CREAT | O_RDWR, 0600);
  REQUIRE(lock >= 0);
  ::flock(lock, LOCK_EX);
  if (!fs::exists(root / "ready")) {
    // A changed deploy/certs makes a new fixture; the old ones go.
    for (const auto& entry : fs::directory_iterator(root.parent_path())) {
      std::string name = entry.path().filename().string();
      if (name.rfind("pki-", 0) == 0 && entry.path() != root && name.find(".lock") == std::string::npos) {
        fs::remove_all(entry.path());
      }
    }
    // NSS databases record their own path (pkcs11.txt), so they are made where they stay.
    fs::remove_all(root);
    fs::create_directories(root);
    std::string ca = (root / "ca").string();
    std::string host = (root / "host").string();
    std::string clients = (root / "clients").string();
    certs({"ca", "--dir", ca});
    certs({"host", "--ca", ca, "--dir", host, "--host", "localhost", "--ip", "127.0.0.1", "--rsa"});
    certs({"host", "--ca", ca, "--dir", host, "--host", "mail.example.org", "--nickname", "Other-Cert"});
    certs({"client", "--ca", ca, "--name", "alice", "--out", clients});
    certs({"client", "--ca", ca, "--name", "mallory", "--out", clients});
    certs({"crl", "--ca", ca, "--out", (root / "crl-before.pem").string()});
    certs({"revoke", "--ca", ca, "--name", "mallory"});
    certs({"crl", "--ca", ca, "--out", (root / "crl-after.pem").string()});
    std::ofstream(root / "ready") << "ok\n";
  }
  ::flock(lock, LOCK_UN);
  ::close(lock);
  return Pki{root};
}

std::string hex(const std::string& bytes) {
  static const char* digits = "0123456789ABCDEF";
  std::string out;
  for (unsigned char b : bytes) {
    out += digits[b >> 4];
    out += digits[b & 15];
  }
  return out.empty() ? "-" : out;
}

std::string facts_line(Connection& c) {
  const auto* t = c.transform();
  const auto* f = t ? t->facts() : nullptr;
  if (f == nullptr) return "facts none";
  return "facts |protocol=" + f->protocol + "|cipher=" + f->cipher + "|bits=" + std::to_string(f->cipher_bits) +
         "|resumed=" + (f->resumed ? "1" : "0") + "|sni=" + f->server_name +
         "|verified=" + (f->client_verified ? "1" : "0") + "|cb=" + hex(f->channel_binding) +
         "|der=" + std::to_string(f->client_der.size()) + "|issuer=" + f->client_issuer +
         "|subject=" + f->client_subject + "|";
}

common::line::LineSessionOptions harness_options(std::string component) {
  common::line::LineSessionOptions o;
  o.component = std::move(component);
  o.max_line = 1000;
  o.errors.max_errors = 0;  // the TLS tests count nothing; an over-long line is dropped unanswered
  return o;
}

// Implicit TLS: the greeting is written before the handshake ends, as an IMAPS server does.
class EchoSession final : public common::line::LineSession {
 public:
  EchoSession(Connection& c, TlsServer& server) : LineSession(c, kCommands, harness_options("echo")), server_(server) {}
  void on_open() override { reply("+ready\r\n"); }

 private:
  void quit(const common::line::Request& r) {
    server_.record("tls:" + std::string(r.line));
    reply("+bye\r\n");
    close_session();
  }
  void facts(const common::line::Request& r) {
    server_.record("tls:" + std::string(r.line));
    reply("+" + facts_line(connection()) + "\r\n");
  }
  void echo(const common::line::Request& r) {
    server_.record("tls:" + std::string(r.line));
    reply(std::string(r.line) + "\r\n");
    // One TLS record per echoed line, not one per pipelined group: the hand-over tests count the
    // records our record layer protects.
    flush_replies();
  }
  void on_refused(common::line::Outcome, const common::line::Request&) override {}  // the catch-all takes all
  void on_line_too_long(size_t) override {}
  void on_too_many_errors() override {}

  static constexpr Entry kCommands[] = {
      {"QUIT", handler<&EchoSession::quit>},
      {"FACTS", handler<&EchoSession::facts>},
      {"", handler<&EchoSession::echo>},
  };
  TlsServer& server_;
};

// SMTP-shaped STARTTLS (RFC 3207) through the session base's start_tls: 220 in plaintext, buffered
// plaintext dropped, then TLS.
class SmtpSession final : public common::line::LineSession {
 public:
  SmtpSession(Connection& c, TlsServer& server) : LineSession(c, kCommands, harness_options("smtp")), server_(server) {}
  void on_open() override { reply("220 localhost ESMTP postern-test\r\n"); }

 private:
  void record(const common::line::Request& r) {
    server_.record(std::string(tls_on() ? "tls:" : "plain:") + std::string(r.line));
  }
  void ehlo(const common::line::Request& r) {
    record(r);
    reply(tls_on() ? "250-localhost\r\n250 PIPELINING\r\n" : "250-localhost\r\n250-PIPELINING\r\n250 STARTTLS\r\n");
  }
  void starttls(const common::line::Request& r) {
    if (tls_on()) return echo(r);
    record(r);
    set_phase("starttls");
    if (!start_tls("220 2.0.0 go ahead\r\n", server_.context().accept(connection().info().id))) {
      reply("454 4.7.0 TLS not available\r\n");
    }
    set_phase("command");
  }
  void noop(const common::line::Request& r) {
    record(r);
    reply("250 2.0.0 ok\r\n");
  }
  void facts(const common::line::Request& r) {
    record(r);
    reply("250 " + facts_line(connection()) + "\r\n");
  }
  void quit(const common::line::Request& r) {
    record(r);
    reply("221 2.0.0 bye\r\n");
    close_session();
  }
  void echo(const common::line::Request& r) {
    record(r);
    reply("250 echo " + std::string(r.line) + "\r\n");
  }
  void on_refused(common::line::Outcome, const common::line::Request&) override {}  // the catch-all takes all
  void on_line_too_long(size_t) override {}
  void on_too_many_errors() override {}
  // RFC 3207 §4.2: back to the state after the greeting. This dialogue keeps no EHLO state, so
  // that is the pipelined commands, which the base drops with the framer.

  static constexpr Entry kCommands[] = {
      {"EHLO", handler<&SmtpSession::ehlo>},
      {"STARTTLS", handler<&SmtpSession::starttls>, common::line::kAnyState, common::line::LastInPipeline},
      {"NOOP", handler<&SmtpSession::noop>},
      {"FACTS", handler<&SmtpSession::facts>},
      {"QUIT", handler<&SmtpSession::quit>},
      {"", handler<&SmtpSession::echo>},
  };
  TlsServer& server_;
};

template <class S>
class Factory : public SessionFactory {
 public:
  Factory(TlsServer& server, bool implicit_tls) : server_(server), implicit_tls_(implicit_tls) {}
  std::unique_ptr<Session> create(Connection& c) override {
    if (implicit_tls_) c.start_implicit_tls(server_.context().accept(c.info().id));
    return std::make_unique<S>(c, server_);
  }

 private:
  TlsServer& server_;
  bool implicit_tls_;
};

}  // namespace

const Pki& pki() {
  static const Pki p = build_pki();
  return p;
}

std::unique_ptr<common::tls::Nss> open_nss() {
  common::tls::NssOptions o;
  o.db_dir = pki().host_dir();
  o.password_file = pki().password_file();
  auto nss = common::tls::Nss::init(o);
  INFO((nss ? std::string() : nss.error().detail));
  REQUIRE(nss);
  return std::move(*nss);
}


struct TlsServer::Parts {
  Parts(uv_loop_t* loop, TlsServer& server) : connections(loop), echo(server, true), smtp(server, false) {}
  common::metrics::Registry registry;
  ConnectionSet connections;
  Factory<EchoSession> echo;
  Factory<SmtpSession> smtp;
  std::shared_ptr<ConnectionLimiter> limiter = std::make_shared<ConnectionLimiter>(0, 0);
  std::shared_ptr<ListenerStats> tls_stats = std::make_shared<ListenerStats>("tls", registry);
  std::shared_ptr<ListenerStats> smtp_stats = std::make_shared<ListenerStats>("smtp", registry);
  std::unique_ptr<Listener> tls_listener;
  std::unique_ptr<Listener> smtp_listener;
};

TlsServer::TlsServer(std::shared_ptr<common::tls::ServerContext> context, std::chrono::milliseconds idle_timeout)
    : context_(std::move(context)), parts_(std::make_unique<Parts>(loop_.get(), *this)) {
  auto endpoint = *common::net::Endpoint::parse("127.0.0.1:0");
  auto bound = bind_endpoints({endpoint, endpoint}, 1, 128);
  REQUIRE(bound);
  tls_port = (*bound)[0][0].endpoint.port;
  starttls_port = (*bound)[1][0].endpoint.port;
  ListenerOptions tls_options;
  tls_options.name = "imaps";
  tls_options.service = "imap";
  tls_options.limits.idle_timeout = idle_timeout;
  ListenerOptions smtp_options = tls_options;
  smtp_options.name = "submission";
  smtp_options.service = "submission";
  parts_->tls_listener = std::make_unique<Listener>(parts_->connections, tls_options, std::move((*bound)[0][0]),
                                                    parts_->limiter, parts_->tls_stats, parts_->echo, nullptr);
  parts_->smtp_listener = std::make_unique<Listener>(parts_->connections, smtp_options, std::move((*bound)[1][0]),
                                                     parts_->limiter, parts_->smtp_stats, parts_->smtp, nullptr);
  REQUIRE(parts_->tls_listener->start());
  REQUIRE(parts_->smtp_listener->start());
  thread_ = std::thread([this] { loop_.run(); });
}

TlsServer::~TlsServer() {
  loop_.stop();
  thread_.join();
  parts_.reset();  // closes every connection (and its NSS socket) on this thread
}

std::vector<std::string> TlsServer::commands() const {
  std::lock_guard lock(mutex_);
  return commands_;
}

void TlsServer::record(std::string command) {
  std::lock_guard lock(mutex_);
  commands_.push_back(std::move(command));
}

size_t TlsServer::open_connections() {
  size_t n = 0;
  on_loop([&] { n = parts_->connections.size(); });
  return n;
}

test::CommandResult s_client(int port, const std::vector<std::string>& args, const std::string& input) {
  std::vector<std::string> argv{"sh", "-c", "printf '%b' \"$0\" | exec openssl s_client \"$@\"", input,
                                "-connect", "127.0.0.1:" + std::to_string(port), "-ign_eof"};
  argv.insert(argv.end(), args.begin(), args.end());
  return test::run(argv, std::chrono::seconds(20));
}

test::CommandResult py_client(const std::string& mode, int port, const std::vector<std::string>& args) {
  std::vector<std::string> argv{"python3", test::source_path("tests/common/tls/tls_client.py"), mode, "127.0.0.1",
                                std::to_string(port)};
  argv.insert(argv.end(), args.begin(), args.end());
  return test::run(argv, std::chrono::seconds(20));
}

bool contains(const std::string& haystack, const std::string& needle) {
  return haystack.find(needle) != std::string::npos;
}

}  // namespace tlstest
