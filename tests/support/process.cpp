// process.cpp: the test helpers of process.hpp on plain POSIX calls.
#include "tests/support/process.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <fstream>
#include <random>
#include <sstream>
#include <stdexcept>
#include <thread>

namespace test {

TempDir::TempDir() {
  std::string templ = (std::filesystem::temp_directory_path() / "postern-test-XXXXXX").string();
  if (mkdtemp(templ.data()) == nullptr) throw std::runtime_error("mkdtemp failed");
  path_ = templ;
}

TempDir::~TempDir() {
  std::error_code ec;
  std::filesystem::remove_all(path_, ec);
}

std::filesystem::path TempDir::write(const std::string& name, const std::string& content) const {
  auto p = path_ / name;
  std::filesystem::create_directories(p.parent_path());
  std::ofstream out(p, std::ios::binary);
  out << content;
  return p;
}

static bool can_bind(int type, uint16_t port, int* chosen) {
  int fd = socket(AF_INET, type, 0);
  sockaddr_in sin{};
  sin.sin_family = AF_INET;
  sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  sin.sin_port = htons(port);
  const bool ok = bind(fd, reinterpret_cast<sockaddr*>(&sin), sizeof sin) == 0;
  if (ok) {
    socklen_t len = sizeof sin;
    getsockname(fd, reinterpret_cast<sockaddr*>(&sin), &len);
    *chosen = ntohs(sin.sin_port);
  }
  close(fd);
  return ok;
}

// A port below Linux's ephemeral range (32768 and up): the kernel hands ports of that range to
// the outgoing connections every test makes, and one of them could take a port a daemon was
// about to bind ("Address already in use"). Random, so concurrent tests rarely pick the same.
static int bound_port(int type) {
  static std::mt19937 random(std::random_device{}() ^ static_cast<unsigned>(getpid()));
  std::uniform_int_distribution<int> pick(20000, 32767);
  int chosen = 0;
  for (int attempt = 0; attempt < 100; ++attempt) {
    if (can_bind(type, static_cast<uint16_t>(pick(random)), &chosen)) return chosen;
  }
  if (!can_bind(type, 0, &chosen)) throw std::runtime_error("bind to port 0 failed");
  return chosen;
}

int free_port() { return bound_port(SOCK_STREAM); }
int free_udp_port() { return bound_port(SOCK_DGRAM); }

bool wait_for_port(int port, std::chrono::milliseconds deadline, bool v6) {
  auto until = std::chrono::steady_clock::now() + deadline;
  while (std::chrono::steady_clock::now() < until) {
    int fd = socket(v6 ? AF_INET6 : AF_INET, SOCK_STREAM, 0);
    int rc;
    if (v6) {
      sockaddr_in6 sin6{};
      sin6.sin6_family = AF_INET6;
      sin6.sin6_addr = in6addr_loopback;
      sin6.sin6_port = htons(static_cast<uint16_t>(port));
      rc = connect(fd, reinterpret_cast<sockaddr*>(&sin6), sizeof sin6);
    } else {
      sockaddr_in sin{};
      sin.sin_family = AF_INET;
      sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
      sin.sin_port = htons(static_cast<uint16_t>(port));
      rc = connect(fd, reinterpret_cast<sockaddr*>(&sin), sizeof sin);
    }
    close(fd);
    if (rc == 0) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return false;
}

ChildProcess::ChildProcess(std::vector<std::string> argv, const std::string& log_file) {
  std::vector<char*> args;
  for (auto& a : argv) args.push_back(a.data());
  args.push_back(nullptr);
  pid_ = fork();
  if (pid_ < 0) throw std::runtime_error("fork failed");
  if (pid_ == 0) {
    prctl(PR_SET_PDEATHSIG, SIGKILL);  // a crashed test leaves no daemon behind
    if (!log_file.empty()) {
      int fd = open(log_file.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0600);
      if (fd >= 0) {
        dup2(fd, STDOUT_FILENO);
        dup2(fd, STDERR_FILENO);
        close(fd);
      }
    }
    execvp(args[0], args.data());
    std::fprintf(stderr, "exec %s: %s\n", args[0], std::strerror(errno));
    _exit(127);
  }
}

ChildProcess::~ChildProcess() {
  if (pid_ > 0 && !reaped_) {
    kill(pid_, SIGKILL);
    waitpid(pid_, &status_, 0);
  }
}

bool ChildProcess::running() {
  if (reaped_) return false;
  pid_t r = waitpid(pid_, &status_, WNOHANG);
  if (r == pid_) reaped_ = true;
  return !reaped_;
}

void ChildProcess::signal(int sig) {
  if (!reaped_) kill(pid_, sig);
}

int ChildProcess::wait(std::chrono::milliseconds deadline) {
  auto until = std::chrono::steady_clock::now() + deadline;
  while (running()) {
    if (std::chrono::steady_clock::now() >= until) return -1;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  if (WIFEXITED(status_)) return WEXITSTATUS(status_);
  if (WIFSIGNALED(status_)) return 128 + WTERMSIG(status_);
  return -1;
}

CommandResult run(const std::vector<std::string>& argv, std::chrono::milliseconds timeout) {
  TempDir dir;
  auto out = dir / "output";
  CommandResult r;
  {
    ChildProcess child(argv, out.string());
    r.exit_code = child.wait(timeout);
  }
  r.output = read_file(out);
  return r;
}

std::string binary_path(const std::string& relative) { return std::string(POSTERN_BINARY_DIR) + "/" + relative; }
std::string source_path(const std::string& relative) { return std::string(POSTERN_SOURCE_DIR) + "/" + relative; }

std::string read_file(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

}  // namespace test
