// process.hpp: test helpers: temporary directories, free loopback ports, child processes that never
// outlive their test (killed and reaped in the destructor), and waiting for a port to accept.
#pragma once

#include <chrono>
#include <filesystem>
#include <string>
#include <vector>

#include <sys/types.h>

namespace test {

class TempDir {
 public:
  TempDir();
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::filesystem::path& path() const { return path_; }
  std::filesystem::path operator/(const std::string& name) const { return path_ / name; }
  // Writes a file under the directory and returns its path.
  std::filesystem::path write(const std::string& name, const std::string& content) const;

 private:
  std::filesystem::path path_;
};

// A port on 127.0.0.1 that was free a moment ago (bound to 0, read back, closed).
int free_port();
// Same for UDP (DNS servers in tests).
int free_udp_port();

// Connects to 127.0.0.1:port (or [::1] when v6) until it accepts or the deadline passes.
bool wait_for_port(int port, std::chrono::milliseconds deadline, bool v6 = false);

class ChildProcess {
 public:
  // argv[0] is looked up in PATH. stdout/stderr go to log_file when given.
  explicit ChildProcess(std::vector<std::string> argv, const std::string& log_file = "");
  ~ChildProcess();  // SIGKILL (if still running) and reap
  ChildProcess(const ChildProcess&) = delete;
  ChildProcess& operator=(const ChildProcess&) = delete;

  pid_t pid() const { return pid_; }
  bool running();
  void signal(int sig);
  // Waits for exit; returns the exit code, 128+signal when killed, -1 on timeout.
  int wait(std::chrono::milliseconds deadline);

 private:
  pid_t pid_ = -1;
  bool reaped_ = false;
  int status_ = 0;
};

struct CommandResult {
  int exit_code = -1;  // 128+signal when killed, -1 when it could not run or timed out
  std::string output;  // stdout and stderr together
};
// Runs a program (looked up in PATH) to completion, capturing its output.
CommandResult run(const std::vector<std::string>& argv,
                  std::chrono::milliseconds timeout = std::chrono::seconds(30));

// Path of a built program or a source file, for tests that start them.
std::string binary_path(const std::string& relative);
std::string source_path(const std::string& relative);
std::string read_file(const std::filesystem::path& path);

}  // namespace test
