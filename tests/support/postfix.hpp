// postfix.hpp: a standalone Debian Postfix for tests, as an Internet peer of our mta: its own
// config, queue and data directories in a temp dir, smtpd on a free loopback port (STARTTLS off,
// offered or required), a Maildir that keeps every message it accepts for its domains, and a
// relayhost that gets everything else (plaintext, opportunistic, required or verified TLS).
#pragma once

#include <sys/types.h>

#include <chrono>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "tests/support/pki.hpp"
#include "tests/support/process.hpp"

namespace test {

struct PostfixOptions {
  // myhostname: the name in its banner, EHLO and Received: lines.
  std::string hostname = "postfix.test";
  // Mail for these domains (any local part) is kept in the instance's Maildir; see messages().
  std::vector<std::string> domains = {"peer.example"};

  // smtpd: Off (no STARTTLS), Offer (STARTTLS advertised, plaintext allowed) or Require
  // (smtpd_tls_security_level = encrypt: MAIL refused before STARTTLS).
  enum class ServerTls { Off, Offer, Require };
  ServerTls server_tls = ServerTls::Off;
  // The deployment host (tests/support/pki.hpp) whose certificate smtpd presents: SANs NAME and
  // 127.0.0.1, issued by the deployment CA.
  std::string certificate_host = "mta1";

  // relay_port > 0: everything not for `domains` goes to relayhost [relay_host]:relay_port, and
  // clients on 127.0.0.0/8 may relay. Without it other domains are refused at RCPT.
  std::string relay_host = "127.0.0.1";
  int relay_port = 0;
  // The client side of the relay: None (never STARTTLS), May (opportunistic), Encrypt (STARTTLS
  // required, certificate unchecked) or Verify (required, certificate chained to the deployment CA
  // and naming relay_tls_name).
  enum class RelayTls { None, May, Encrypt, Verify };
  RelayTls relay_tls = RelayTls::None;
  std::string relay_tls_name;
  // A client certificate for the relay's TLS (a pki host name, e.g. "mta1"); none when empty.
  std::string relay_client_certificate;

  // Further main.cf lines, appended last (later lines win), e.g. "message_size_limit = 20000".
  std::vector<std::string> main_cf;
};

// One message as the virtual(8) agent filed it: it prepends Return-Path:, X-Original-To: and
// Delivered-To: (one file per recipient).
struct PostfixMail {
  std::filesystem::path file;
  std::string content;       // the whole file, LF line ends as Maildir stores them
  std::string return_path;   // without <>
  std::string delivered_to;  // the envelope recipient
  std::string header(const std::string& name) const;  // first occurrence, unfolded; "" if absent
  std::string body() const;                            // after the first empty line
};

class PostfixInstance {
 public:
  // Starts it (REQUIREs that it came up); the process must be root, as Postfix's master requires.
  explicit PostfixInstance(PostfixOptions options = {});
  // stop(), then the temp dir goes.
  ~PostfixInstance();
  PostfixInstance(const PostfixInstance&) = delete;
  PostfixInstance& operator=(const PostfixInstance&) = delete;

  int port() const { return port_; }
  const std::string& hostname() const { return options_.hostname; }
  pid_t master_pid() const;
  const std::filesystem::path& dir() const { return dir_.path(); }
  std::filesystem::path config_dir() const { return dir_ / "etc"; }
  std::filesystem::path queue_dir() const { return dir_ / "spool"; }
  // The CA that issued smtpd's certificate, for clients that verify it.
  static std::filesystem::path ca_file();

  // The maillog (postlogd writes it; every daemon's lines).
  std::string log() const;
  bool wait_for_log(const std::string& needle, std::chrono::milliseconds deadline) const;

  // Every message in the Maildir, oldest first.
  std::vector<PostfixMail> messages() const;
  // Those whose Delivered-To is `recipient` (compared without case).
  std::vector<PostfixMail> messages_for(const std::string& recipient) const;
  // Waits until at least n messages are filed; returns what is there at the deadline.
  std::vector<PostfixMail> wait_for_messages(size_t n, std::chrono::milliseconds deadline) const;

  // Queue files in incoming/, active/, deferred/ and hold/: mail it accepted and has not finished.
  size_t queued() const;
  // Waits until the queue is empty (every relayed message delivered or bounced).
  bool wait_for_empty_queue(std::chrono::milliseconds deadline) const;
  // What `postfix flush` asks of qmgr (retry deferred mail now), written to its public FIFO
  // directly: postqueue is set-gid and refuses a private config directory.
  bool flush() const;

  // SIGTERM to master (what `postfix stop` sends; master passes it on to its children), then
  // SIGKILL to master and to every leftover process of its session. Returns true when nothing had
  // to be killed. Idempotent.
  bool stop();
  bool running();

 private:
  void write_config(int port);
  void make_directories();
  void export_certificates();
  bool start_master(int port);
  std::vector<pid_t> session_processes() const;

  PostfixOptions options_;
  TempDir dir_;
  std::unique_ptr<Pki> pki_;
  int port_ = 0;
  pid_t master_pid_ = -1;
  std::unique_ptr<ChildProcess> master_;
  pid_t watchdog_pid_ = -1;  // kills master's process group if this process dies first
  int watchdog_fd_ = -1;
};

}  // namespace test
