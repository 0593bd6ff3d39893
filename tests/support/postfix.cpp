// postfix.cpp: the standalone Postfix of postfix.hpp: main.cf/master.cf written here, the queue
// directories made as post-install would, master run in the foreground as our child.
#include "tests/support/postfix.hpp"

#include <fcntl.h>
#include <grp.h>
#include <pwd.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <catch2/catch.hpp>
#include <cctype>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <sstream>
#include <thread>

namespace test {
namespace fs = std::filesystem;
using namespace std::chrono_literals;

namespace {

std::string lower(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return s;
}

std::string trim(std::string s) {
  while (!s.empty() && (s.back() == '\r' || s.back() == '\n' || s.back() == ' ' || s.back() == '\t')) s.pop_back();
  size_t i = 0;
  while (i < s.size() && (s[i] == ' ' || s[i] == '\t')) ++i;
  return s.substr(i);
}

std::string strip_angles(std::string s) {
  s = trim(std::move(s));
  if (s.size() >= 2 && s.front() == '<' && s.back() == '>') s = s.substr(1, s.size() - 2);
  return s;
}

// Where Debian's postfix keeps master and the other daemons (postconf's compiled-in default).
const std::string& daemon_directory() {
  static const std::string dir = [] {
    auto r = run({"postconf", "-d", "-h", "daemon_directory"}, 10s);
    std::string d = r.exit_code == 0 ? trim(r.output) : "";
    return d.empty() ? std::string("/usr/lib/postfix/sbin") : d;
  }();
  return dir;
}

struct Account {
  uid_t uid;
  gid_t gid;
};

Account account(const char* user) {
  const passwd* pw = getpwnam(user);
  if (pw == nullptr) FAIL("no " << user << " account: is the postfix package installed?");
  return {pw->pw_uid, pw->pw_gid};
}

gid_t group_id(const char* group) {
  const struct group* gr = getgrnam(group);
  if (gr == nullptr) FAIL("no " << group << " group: is the postfix package installed?");
  return gr->gr_gid;
}

void make_dir(const fs::path& p, uid_t uid, gid_t gid, mode_t mode) {
  std::error_code ec;
  fs::create_directories(p, ec);
  if (ec) FAIL("mkdir " << p << ": " << ec.message());
  if (::chown(p.c_str(), uid, gid) != 0 || ::chmod(p.c_str(), mode) != 0) FAIL("chown/chmod " << p);
}

// Fields after the ")" of /proc/PID/stat: state, ppid, pgrp, session.
struct ProcStat {
  char state = '?';
  pid_t session = -1;
};

bool proc_stat(pid_t pid, ProcStat& out) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  std::string line;
  if (!std::getline(in, line)) return false;
  auto close = line.rfind(')');
  if (close == std::string::npos) return false;
  std::istringstream rest(line.substr(close + 1));
  long ppid = 0, pgrp = 0, session = 0;
  rest >> out.state >> ppid >> pgrp >> session;
  out.session = static_cast<pid_t>(session);
  return static_cast<bool>(rest);
}

bool environ_has(pid_t pid, const std::string& entry) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/environ", std::ios::binary);
  std::string var;
  while (std::getline(in, var, '\0')) {
    if (var == entry) return true;
  }
  return false;
}

// master drops and regains root around file operations, and any change of credentials clears the
// parent-death signal ChildProcess sets, so a killed test would leave master running. This watchdog
// sits outside the test's process tree and session, blocked reading a socket from us: "q" means we stopped
// master ourselves; EOF without it means the test died, and it kills master's process group.
pid_t start_watchdog(pid_t master, int& write_end) {
  // A socket pair rather than a pipe: send() with MSG_NOSIGNAL cannot raise SIGPIPE in the test.
  int fds[2];
  if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds) != 0) return -1;
  const std::string script = "read x; [ \"$x\" = q ] || kill -KILL -- -" + std::to_string(master);
  const pid_t pid = ::fork();
  if (pid < 0) {
    ::close(fds[0]);
    ::close(fds[1]);
    return -1;
  }
  if (pid == 0) {
    ::setsid();
    ::dup2(fds[0], STDIN_FILENO);
    const int null = ::open("/dev/null", O_WRONLY);
    if (null >= 0) {
      ::dup2(null, STDOUT_FILENO);
      ::dup2(null, STDERR_FILENO);
    }
    ::close_range(3, ~0U, 0);
    ::execl("/bin/sh", "sh", "-c", script.c_str(), static_cast<char*>(nullptr));
    ::_exit(127);
  }
  ::close(fds[0]);
  write_end = fds[1];
  return pid;
}

}  // namespace

std::string PostfixMail::header(const std::string& name) const {
  const std::string want = lower(name) + ":";
  std::istringstream in(content);
  std::string line, value;
  bool found = false;
  while (std::getline(in, line)) {
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (line.empty()) break;
    if (found) {
      if (line[0] == ' ' || line[0] == '\t') {
        value += " " + trim(line);
        continue;
      }
      return value;
    }
    if (lower(line.substr(0, want.size())) == want) {
      found = true;
      value = trim(line.substr(want.size()));
    }
  }
  return found ? value : "";
}

std::string PostfixMail::body() const {
  auto at = content.find("\n\n");
  if (at == std::string::npos) {
    at = content.find("\r\n\r\n");
    return at == std::string::npos ? "" : content.substr(at + 4);
  }
  return content.substr(at + 2);
}

fs::path PostfixInstance::ca_file() { return Pki::file("ca/ca.pem"); }

PostfixInstance::PostfixInstance(PostfixOptions options) : options_(std::move(options)) {
  if (::geteuid() != 0) FAIL("Postfix's master runs only as root; run this test as root");
  if (!fs::exists(daemon_directory() + "/master")) {
    FAIL("no " << daemon_directory() << "/master: install the postfix package (deploy/lib/packages.sh)");
  }
  // The daemons run as the postfix account and virtual(8) files mail as it: they must reach the
  // directories below, which mkdtemp made private.
  ::chmod(dir_.path().c_str(), 0755);
  make_directories();
  const bool server_tls = options_.server_tls != PostfixOptions::ServerTls::Off;
  if (server_tls || !options_.relay_client_certificate.empty()) export_certificates();
  // The free port may be taken again before master binds it: try another.
  for (int attempt = 0; attempt < 5; ++attempt) {
    if (start_master(free_port())) return;
  }
  FAIL("Postfix did not start; master's output: " << read_file(dir_ / "master.out") << "\nmaillog:\n" << log());
}

PostfixInstance::~PostfixInstance() { stop(); }

void PostfixInstance::make_directories() {
  const Account postfix = account("postfix");
  const gid_t postdrop = group_id("postdrop");
  make_dir(dir_ / "etc", 0, 0, 0755);
  make_dir(dir_ / "data", postfix.uid, postfix.gid, 0700);
  make_dir(dir_ / "mail", postfix.uid, postfix.gid, 0755);
  // The queue as postfix-files lays it out (what `postfix check` would create).
  const fs::path q = queue_dir();
  make_dir(q, 0, 0, 0755);
  make_dir(q / "pid", 0, 0, 0755);
  for (const char* d : {"active", "bounce", "corrupt", "defer", "deferred", "flush", "hold", "incoming", "private",
                        "saved", "trace"}) {
    make_dir(q / d, postfix.uid, 0, 0700);
  }
  make_dir(q / "maildrop", postfix.uid, postdrop, 0730);
  make_dir(q / "public", postfix.uid, postdrop, 0710);
}

void PostfixInstance::export_certificates() {
  pki_ = std::make_unique<Pki>();
  const fs::path tls = dir_ / "tls";
  export_host_pem(pki_->host(options_.certificate_host), tls, "server");
  if (!options_.relay_client_certificate.empty()) {
    export_host_pem(pki_->host(options_.relay_client_certificate), tls, "client");
  }
}

void PostfixInstance::write_config(int port) {
  using O = PostfixOptions;
  const Account postfix = account("postfix");
  const fs::path d = dir_.path();
  std::ostringstream m;
  std::string domains;
  for (const auto& dom : options_.domains) domains += (domains.empty() ? "" : ", ") + dom;
  const bool relay = options_.relay_port > 0;
  m << "# main.cf of a standalone Postfix for Postern's tests (tests/support/postfix.cpp).\n"
    << "compatibility_level = 3.6\n"
    << "queue_directory = " << queue_dir().string() << "\n"
    << "data_directory = " << (d / "data").string() << "\n"
    << "mail_owner = postfix\nsetgid_group = postdrop\n"
    << "myhostname = " << options_.hostname << "\n"
    << "myorigin = $myhostname\nmydestination =\nappend_dot_mydomain = no\n"
    << "inet_interfaces = loopback-only\ninet_protocols = ipv4\nmynetworks = 127.0.0.0/8\n"
    << "maillog_file = " << (d / "maillog").string() << "\n"
    << "maillog_file_prefixes = " << d.string() << "\n"
    << "alias_maps =\nalias_database =\nbiff = no\nsmtputf8_enable = yes\n"
    // Every message for our domains lands in one Maildir, one file per recipient.
    << "virtual_mailbox_domains = " << domains << "\n"
    << "virtual_mailbox_base = " << (d / "mail").string() << "\n"
    << "virtual_mailbox_maps = static:inbox/\n"
    << "virtual_uid_maps = static:" << postfix.uid << "\nvirtual_gid_maps = static:" << postfix.gid << "\n"
    << "virtual_minimum_uid = 1\n"
    // Tests must neither hang nor wait minutes for a retry.
    << "smtpd_timeout = 15s\nsmtpd_starttls_timeout = 15s\nsmtpd_error_sleep_time = 0\n"
    << "smtp_connect_timeout = 5s\nsmtp_helo_timeout = 15s\nsmtp_mail_timeout = 15s\nsmtp_rcpt_timeout = 15s\n"
    << "smtp_data_init_timeout = 15s\nsmtp_data_xfer_timeout = 15s\nsmtp_data_done_timeout = 15s\n"
    << "smtp_starttls_timeout = 15s\nsmtp_quit_timeout = 5s\n"
    << "queue_run_delay = 1s\nminimal_backoff_time = 1s\nmaximal_backoff_time = 2s\n"
    << "maximal_queue_lifetime = 1h\nbounce_queue_lifetime = 1h\ndelay_warning_time = 0\n"
    // Hermetic: no DNS, ever (the relayhost is an address literal).
    << "smtp_dns_support_level = disabled\nsmtp_host_lookup = native\n";
  if (relay) {
    m << "relayhost = [" << options_.relay_host << "]:" << options_.relay_port << "\n"
      << "smtpd_relay_restrictions = permit_mynetworks, reject_unauth_destination\n";
  } else {
    // Nothing leaves: mail for other domains is refused at RCPT, and bounces fail at once.
    m << "smtpd_relay_restrictions = reject_unauth_destination\n"
      << "default_transport = error:5.7.1 this Postfix test instance relays nothing\n";
  }
  const fs::path tls = d / "tls";
  if (options_.server_tls != O::ServerTls::Off) {
    m << "smtpd_tls_security_level = " << (options_.server_tls == O::ServerTls::Require ? "encrypt" : "may") << "\n"
      << "smtpd_tls_cert_file = " << (tls / "server.crt").string() << "\n"
      << "smtpd_tls_key_file = " << (tls / "server.key").string() << "\n"
      << "smtpd_tls_CAfile = " << ca_file().string() << "\n"
      << "smtpd_tls_received_header = yes\nsmtpd_tls_loglevel = 1\n";
  } else {
    m << "smtpd_tls_security_level = none\n";
  }
  switch (options_.relay_tls) {
    case O::RelayTls::None: m << "smtp_tls_security_level = none\n"; break;
    case O::RelayTls::May: m << "smtp_tls_security_level = may\n"; break;
    case O::RelayTls::Encrypt: m << "smtp_tls_security_level = encrypt\n"; break;
    case O::RelayTls::Verify: {
      // "secure" with match= names the certificate must carry; the policy key is the nexthop.
      std::ofstream(d / "etc" / "tls_policy") << "[" << options_.relay_host << "]:" << options_.relay_port
                                              << " secure match=" << options_.relay_tls_name << "\n";
      m << "smtp_tls_security_level = secure\n"
        << "smtp_tls_policy_maps = texthash:" << (d / "etc" / "tls_policy").string() << "\n";
      break;
    }
  }
  if (options_.relay_tls != O::RelayTls::None) {
    m << "smtp_tls_CAfile = " << ca_file().string() << "\nsmtp_tls_loglevel = 1\n";
    if (!options_.relay_client_certificate.empty()) {
      m << "smtp_tls_cert_file = " << (tls / "client.crt").string() << "\n"
        << "smtp_tls_key_file = " << (tls / "client.key").string() << "\n";
    }
  }
  for (const auto& line : options_.main_cf) m << line << "\n";
  std::ofstream(d / "etc" / "main.cf") << m.str();

  // master.cf: Debian's services without chroot (nothing is copied into the queue directory), and
  // smtpd on our loopback port only.
  std::ofstream(d / "etc" / "master.cf")
      << "# master.cf of a standalone Postfix for Postern's tests.\n"
      << "127.0.0.1:" << port << " inet n - n - - smtpd\n"
      << "pickup    unix  n - n 60    1 pickup\n"
         "cleanup   unix  n - n -     0 cleanup\n"
         "qmgr      unix  n - n 300   1 qmgr\n"
         "tlsmgr    unix  - - n 1000? 1 tlsmgr\n"
         "rewrite   unix  - - n -     - trivial-rewrite\n"
         "bounce    unix  - - n -     0 bounce\n"
         "defer     unix  - - n -     0 bounce\n"
         "trace     unix  - - n -     0 bounce\n"
         "verify    unix  - - n -     1 verify\n"
         "flush     unix  n - n 1000? 0 flush\n"
         "proxymap  unix  - - n -     - proxymap\n"
         "proxywrite unix - - n -     1 proxymap\n"
         "smtp      unix  - - n -     - smtp\n"
         "relay     unix  - - n -     - smtp\n"
         "showq     unix  n - n -     - showq\n"
         "error     unix  - - n -     - error\n"
         "retry     unix  - - n -     - error\n"
         "discard   unix  - - n -     - discard\n"
         "local     unix  - n n -     - local\n"
         "virtual   unix  - n n -     - virtual\n"
         "lmtp      unix  - - n -     - lmtp\n"
         "anvil     unix  - - n -     1 anvil\n"
         "scache    unix  - - n -     1 scache\n"
         "postlog   unix-dgram n - n - 1 postlogd\n";
}

bool PostfixInstance::start_master(int port) {
  write_config(port);
  std::error_code ec;
  fs::remove(dir_ / "master.out", ec);
  // master in the foreground (no -w): it stays our child, so ChildProcess's parent-death signal
  // takes it down with a crashed test, and its daemons exit when they see master gone.
  master_ = std::make_unique<ChildProcess>(
      std::vector<std::string>{daemon_directory() + "/master", "-c", config_dir().string()},
      (dir_ / "master.out").string());
  master_pid_ = master_->pid();
  watchdog_pid_ = start_watchdog(master_pid_, watchdog_fd_);
  port_ = port;
  const auto until = std::chrono::steady_clock::now() + 15s;
  while (std::chrono::steady_clock::now() < until) {
    if (!master_->running()) break;
    if (wait_for_port(port, 100ms)) return true;
  }
  stop();
  port_ = 0;
  return false;
}

pid_t PostfixInstance::master_pid() const { return master_pid_; }

bool PostfixInstance::running() { return master_ && master_->running(); }

std::vector<pid_t> PostfixInstance::session_processes() const {
  std::vector<pid_t> out;
  if (master_pid_ <= 0) return out;
  const std::string env = "MAIL_CONFIG=" + config_dir().string();
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator("/proc", ec)) {
    const std::string name = entry.path().filename().string();
    if (name.empty() || !std::all_of(name.begin(), name.end(), ::isdigit)) continue;
    const pid_t pid = std::stoi(name);
    if (pid == master_pid_) continue;
    ProcStat st;
    if (!proc_stat(pid, st) || st.state == 'Z') continue;
    if (st.session == master_pid_ || environ_has(pid, env)) out.push_back(pid);
  }
  return out;
}

bool PostfixInstance::stop() {
  if (!master_) return true;
  bool clean = true;
  master_->signal(SIGTERM);
  if (master_->wait(5s) < 0) {
    clean = false;
    std::fprintf(stderr, "postfix: master %d ignored SIGTERM for 5 s; killing it\n", static_cast<int>(master_pid_));
    master_->signal(SIGKILL);
    master_->wait(5s);
  }
  // The daemons leave on their own once master is gone; give them a moment, then kill by pid.
  auto until = std::chrono::steady_clock::now() + 3s;
  std::vector<pid_t> left = session_processes();
  while (!left.empty() && std::chrono::steady_clock::now() < until) {
    std::this_thread::sleep_for(20ms);
    left = session_processes();
  }
  if (!left.empty()) {
    clean = false;
    for (pid_t pid : left) {
      std::fprintf(stderr, "postfix: process %d outlived master; killing it\n", static_cast<int>(pid));
      ::kill(pid, SIGKILL);
    }
    until = std::chrono::steady_clock::now() + 5s;
    while (!session_processes().empty() && std::chrono::steady_clock::now() < until) std::this_thread::sleep_for(20ms);
  }
  master_.reset();
  if (watchdog_pid_ > 0) {
    if (::send(watchdog_fd_, "q\n", 2, MSG_NOSIGNAL) != 2) clean = false;
    ::close(watchdog_fd_);
    int status = 0;
    ::waitpid(watchdog_pid_, &status, 0);
    watchdog_pid_ = -1;
    watchdog_fd_ = -1;
  }
  return clean;
}

std::string PostfixInstance::log() const {
  return fs::exists(dir_ / "maillog") ? read_file(dir_ / "maillog") : std::string();
}

bool PostfixInstance::wait_for_log(const std::string& needle, std::chrono::milliseconds deadline) const {
  const auto until = std::chrono::steady_clock::now() + deadline;
  do {
    if (log().find(needle) != std::string::npos) return true;
    std::this_thread::sleep_for(20ms);
  } while (std::chrono::steady_clock::now() < until);
  return false;
}

std::vector<PostfixMail> PostfixInstance::messages() const {
  std::vector<std::pair<fs::file_time_type, fs::path>> files;
  std::error_code ec;
  for (const char* sub : {"new", "cur"}) {
    const fs::path dir = dir_ / "mail" / "inbox" / sub;
    if (!fs::exists(dir, ec)) continue;
    for (const auto& e : fs::directory_iterator(dir, ec)) {
      if (e.is_regular_file(ec)) files.emplace_back(e.last_write_time(ec), e.path());
    }
  }
  std::sort(files.begin(), files.end());
  std::vector<PostfixMail> out;
  for (const auto& [when, path] : files) {
    PostfixMail msg;
    msg.file = path;
    msg.content = read_file(path);
    msg.return_path = strip_angles(msg.header("Return-Path"));
    msg.delivered_to = strip_angles(msg.header("Delivered-To"));
    out.push_back(std::move(msg));
  }
  return out;
}

std::vector<PostfixMail> PostfixInstance::messages_for(const std::string& recipient) const {
  std::vector<PostfixMail> out;
  for (auto& m : messages()) {
    if (lower(m.delivered_to) == lower(recipient)) out.push_back(std::move(m));
  }
  return out;
}

std::vector<PostfixMail> PostfixInstance::wait_for_messages(size_t n, std::chrono::milliseconds deadline) const {
  const auto until = std::chrono::steady_clock::now() + deadline;
  auto got = messages();
  while (got.size() < n && std::chrono::steady_clock::now() < until) {
    std::this_thread::sleep_for(20ms);
    got = messages();
  }
  return got;
}

size_t PostfixInstance::queued() const {
  size_t n = 0;
  for (const char* sub : {"incoming", "active", "deferred", "hold"}) {
    std::error_code ec;
    const fs::path dir = queue_dir() / sub;
    for (auto it = fs::recursive_directory_iterator(dir, ec); !ec && it != fs::recursive_directory_iterator();
         it.increment(ec)) {
      if (it->is_regular_file(ec)) ++n;
    }
  }
  return n;
}

bool PostfixInstance::wait_for_empty_queue(std::chrono::milliseconds deadline) const {
  const auto until = std::chrono::steady_clock::now() + deadline;
  do {
    if (queued() == 0) return true;
    std::this_thread::sleep_for(20ms);
  } while (std::chrono::steady_clock::now() < until);
  return false;
}

bool PostfixInstance::flush() const {
  // qmgr's triggers: flush dead destinations, scan deferred, ignore time stamps, scan incoming.
  // Debian runs qmgr as a "unix" service (a stream socket in public/); older layouts use a FIFO.
  static constexpr char kTrigger[] = "FDAI";
  const fs::path where = queue_dir() / "public" / "qmgr";
  std::error_code ec;
  int fd = -1;
  if (fs::is_fifo(where, ec)) {
    fd = ::open(where.c_str(), O_WRONLY | O_NONBLOCK | O_CLOEXEC);
  } else {
    sockaddr_un sun{};
    sun.sun_family = AF_UNIX;
    if (where.string().size() >= sizeof sun.sun_path) return false;
    std::memcpy(sun.sun_path, where.c_str(), where.string().size());
    fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd >= 0 && ::connect(fd, reinterpret_cast<sockaddr*>(&sun), sizeof sun) != 0) {
      ::close(fd);
      fd = -1;
    }
  }
  if (fd < 0) return false;
  const bool ok = ::write(fd, kTrigger, 4) == 4;
  ::close(fd);
  return ok;
}

}  // namespace test
