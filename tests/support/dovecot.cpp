// dovecot.cpp: the private Dovecot of dovecot.hpp: dovecot.conf written here, master run in the
// foreground as our child (under setpriv when we are root), LMTP spoken with the line client.
#include "tests/support/dovecot.hpp"

#include <grp.h>
#include <pwd.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <catch2/catch.hpp>
#include <fstream>
#include <sstream>
#include <thread>

#include "tests/support/line_client.hpp"

namespace test {
namespace fs = std::filesystem;
using namespace std::chrono_literals;

namespace {

pid_t parent_of(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  std::string line;
  if (!std::getline(in, line)) return -1;
  const auto close = line.rfind(')');
  if (close == std::string::npos) return -1;
  std::istringstream rest(line.substr(close + 1));
  char state = '?';
  long ppid = -1;
  rest >> state >> ppid;
  return state == 'Z' ? -1 : static_cast<pid_t>(ppid);
}

void chown_tree(const fs::path& root, uid_t uid, gid_t gid) {
  if (::chown(root.c_str(), uid, gid) != 0) FAIL("chown " << root);
  for (const auto& e : fs::recursive_directory_iterator(root)) {
    if (::lchown(e.path().c_str(), uid, gid) != 0) FAIL("chown " << e.path());
  }
}

// Reads LMTP replies until the last line of one ("250 ..." rather than "250-...").
std::string reply(LineClient& c) {
  std::string last;
  for (;;) {
    auto line = c.read_line();
    if (!line) return last.empty() ? "(no reply)" : last;
    last = *line;
    if (last.size() < 4 || last[3] != '-') return last;
  }
}

}  // namespace

DovecotInstance::DovecotInstance(DovecotOptions options) : options_(std::move(options)) {
  if (!fs::exists("/usr/sbin/dovecot") || !fs::exists("/usr/lib/dovecot/imap") || !fs::exists("/usr/lib/dovecot/lmtp")) {
    FAIL("no dovecot with imap and lmtp: install dovecot-imapd and dovecot-lmtpd (deploy/lib/packages.sh)");
  }
  if (::geteuid() == 0) {
    account_ = "nobody";
    const struct group* g = getgrnam("nogroup");
    group_ = g ? "nogroup" : "nobody";
  } else {
    const passwd* pw = getpwuid(::geteuid());
    const struct group* g = getgrgid(::getegid());
    if (!pw || !g) FAIL("no account name for uid " << ::geteuid());
    account_ = pw->pw_name;
    group_ = g->gr_name;
  }
  for (const char* d : {"run", "state", "mail"}) fs::create_directories(dir_ / d);
  // The free ports may be taken again before master binds them: try others.
  for (int attempt = 0; attempt < 5; ++attempt) {
    imaps_port_ = options_.imaps ? free_port() : 0;
    if (start(free_port(), free_port())) return;
  }
  FAIL("Dovecot did not start:\n" << read_file(dir_ / "master.out") << "\n" << log());
}

DovecotInstance::~DovecotInstance() { stop(); }

void DovecotInstance::write_config(int imap_port, int lmtp_port) {
  const std::string d = dir_.path().string();
  std::ostringstream c;
  c << "# dovecot.conf of a private Dovecot for Postern's tests (tests/support/dovecot.cpp).\n"
    << "base_dir = " << d << "/run\nstate_dir = " << d << "/state\n"
    << "log_path = " << d << "/dovecot.log\ninfo_log_path = " << d << "/dovecot.log\n"
    << "protocols = imap lmtp\nlisten = 127.0.0.1\nssl = no\n"
    << "disable_plaintext_auth = no\nauth_mechanisms = plain login\n"
    // Every process as one unprivileged account: master cannot change users, nor needs to.
    << "default_internal_user = " << account_ << "\ndefault_internal_group = " << group_ << "\n"
    << "default_login_user = " << account_ << "\n"
    << "mail_location = maildir:" << d << "/mail/%n\n"
    << "namespace inbox {\n  inbox = yes\n  separator = " << options_.separator << "\n}\n"
    << "passdb {\n  driver = static\n  args = password=" << options_.password << "\n}\n"
    << "userdb {\n  driver = static\n  args = uid=" << account_ << " gid=" << group_ << " home=" << d
    << "/mail/%n\n}\n"
    << "service imap-login {\n  chroot =\n  inet_listener imap {\n    address = 127.0.0.1\n    port = " << imap_port
    << "\n  }\n  inet_listener imaps {\n    address = 127.0.0.1\n    port = " << imaps_port_ << "\n  }\n}\n"
    << "service lmtp {\n  inet_listener lmtp {\n    address = 127.0.0.1\n    port = " << lmtp_port << "\n  }\n}\n"
    << "service anvil {\n  chroot =\n}\n"
    << "service auth {\n  user = " << account_ << "\n}\n"
    << "service auth-worker {\n  user = " << account_ << "\n}\n"
    << "service stats {\n  user = " << account_ << "\n}\n";
  for (const auto& line : options_.extra) c << line << "\n";
  std::ofstream(dir_ / "dovecot.conf") << c.str();
}

bool DovecotInstance::start(int imap_port, int lmtp_port) {
  write_config(imap_port, lmtp_port);
  std::error_code ec;
  fs::remove(dir_ / "master.out", ec);
  std::vector<std::string> argv{"/usr/sbin/dovecot", "-F", "-c", (dir_ / "dovecot.conf").string()};
  if (::geteuid() == 0) {
    const passwd* pw = getpwnam(account_.c_str());
    const struct group* g = getgrnam(group_.c_str());
    if (!pw || !g) FAIL("no " << account_ << " account");
    // mkdtemp made the directory private to root.
    ::chmod(dir_.path().c_str(), 0755);
    chown_tree(dir_.path(), pw->pw_uid, g->gr_gid);
    // setpriv sets the parent-death signal after the change of user (which clears the one
    // ChildProcess set), so a test that dies takes master with it; its children leave when it goes.
    argv.insert(argv.begin(), {"setpriv", "--reuid=" + account_, "--regid=" + group_, "--clear-groups",
                               "--pdeathsig", "KILL"});
  }
  master_ = std::make_unique<ChildProcess>(argv, (dir_ / "master.out").string());
  imap_port_ = imap_port;
  lmtp_port_ = lmtp_port;
  const auto until = std::chrono::steady_clock::now() + 15s;
  bool imap = false, lmtp = false;
  while (std::chrono::steady_clock::now() < until && master_->running()) {
    imap = imap || wait_for_port(imap_port, 100ms);
    lmtp = lmtp || wait_for_port(lmtp_port, 100ms);
    if (imap && lmtp && (imaps_port_ == 0 || wait_for_port(imaps_port_, 100ms))) return true;
  }
  stop();
  return false;
}

bool DovecotInstance::running() { return master_ && master_->running(); }

std::vector<pid_t> DovecotInstance::children() const {
  std::vector<pid_t> out;
  if (!master_) return out;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator("/proc", ec)) {
    const std::string name = e.path().filename().string();
    if (name.empty() || !std::all_of(name.begin(), name.end(), ::isdigit)) continue;
    const pid_t pid = std::stoi(name);
    if (parent_of(pid) == master_->pid()) out.push_back(pid);
  }
  return out;
}

bool DovecotInstance::stop() {
  if (!master_) return true;
  bool clean = true;
  const std::vector<pid_t> kids = children();
  master_->signal(SIGTERM);
  if (master_->wait(5s) < 0) {
    clean = false;
    std::fprintf(stderr, "dovecot: master ignored SIGTERM for 5 s; killing it\n");
    master_->signal(SIGKILL);
    master_->wait(5s);
  }
  master_.reset();
  // Children leave once master is gone; any still there after a moment is killed.
  const auto until = std::chrono::steady_clock::now() + 3s;
  auto alive = [&] {
    std::vector<pid_t> left;
    for (pid_t k : kids) {
      if (::kill(k, 0) == 0 && parent_of(k) > 0) left.push_back(k);
    }
    return left;
  };
  std::vector<pid_t> left = alive();
  while (!left.empty() && std::chrono::steady_clock::now() < until) {
    std::this_thread::sleep_for(20ms);
    left = alive();
  }
  for (pid_t k : left) {
    clean = false;
    std::fprintf(stderr, "dovecot: process %d outlived master; killing it\n", static_cast<int>(k));
    ::kill(k, SIGKILL);
  }
  return clean;
}

std::string DovecotInstance::log() const {
  return fs::exists(dir_ / "dovecot.log") ? read_file(dir_ / "dovecot.log") : std::string();
}

std::vector<std::string> DovecotInstance::deliver(const std::string& from, const std::vector<std::string>& recipients,
                                                  const std::string& message) {
  LineClient c("127.0.0.1", lmtp_port_, 15s);
  REQUIRE(c.connected());
  const std::string greeting = reply(c);
  REQUIRE(greeting.starts_with("220"));
  auto command = [&](const std::string& line) {
    REQUIRE(c.send(line + "\r\n"));
    return reply(c);
  };
  REQUIRE(command("LHLO tests.example").starts_with("250"));
  const std::string mail = command("MAIL FROM:<" + from + ">");
  if (!mail.starts_with("250")) return {mail};
  std::vector<std::string> accepted;
  for (const auto& r : recipients) {
    const std::string rcpt = command("RCPT TO:<" + r + ">");
    if (rcpt.starts_with("250")) accepted.push_back(r);
  }
  if (accepted.empty()) return {"no recipient accepted"};
  const std::string data = command("DATA");
  if (!data.starts_with("354")) return {data};
  // RFC 5321 §4.5.2: a line starting with "." gets another; the message must end in CRLF.
  std::string stuffed;
  size_t at = 0;
  while (at < message.size()) {
    size_t nl = message.find('\n', at);
    if (nl == std::string::npos) nl = message.size();
    std::string line = message.substr(at, nl - at);
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (!line.empty() && line[0] == '.') stuffed += ".";
    stuffed += line + "\r\n";
    at = nl + 1;
  }
  REQUIRE(c.send(stuffed + ".\r\n"));
  std::vector<std::string> out;
  for (size_t i = 0; i < accepted.size(); ++i) out.push_back(reply(c));
  c.send("QUIT\r\n");
  return out;
}

CommandResult DovecotInstance::imap(const std::vector<std::string>& args, const std::string& user) {
  std::vector<std::string> argv{"python3", source_path("tests/support/imap_client.py")};
  argv.insert(argv.end(), args.begin(), args.end());
  argv.insert(argv.end(), {"--port", std::to_string(imap_port_), "--user", user, "--password", options_.password});
  return run(argv, std::chrono::seconds(60));
}

}  // namespace test
