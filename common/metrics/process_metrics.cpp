// process_metrics.cpp: the standard process_* metrics, read from /proc/self when scraped.
#include <dirent.h>
#include <fcntl.h>
#include <sys/resource.h>
#include <unistd.h>

#include <cmath>
#include <cstdlib>
#include <optional>
#include <string>
#include <vector>

#include "common/metrics/metrics.hpp"

namespace common::metrics {

namespace {

std::optional<std::string> read_small_file(const char* path) {
  int fd = ::open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return std::nullopt;
  std::string text;
  char buf[4096];
  for (;;) {
    ssize_t n = ::read(fd, buf, sizeof buf);
    if (n < 0) {
      ::close(fd);
      return std::nullopt;
    }
    if (n == 0) break;
    text.append(buf, static_cast<size_t>(n));
    if (text.size() > 65536) break;  // /proc files we read are far smaller
  }
  ::close(fd);
  return text;
}

std::vector<std::string> split_spaces(std::string_view s) {
  std::vector<std::string> out;
  size_t i = 0;
  while (i < s.size()) {
    while (i < s.size() && (s[i] == ' ' || s[i] == '\n')) ++i;
    size_t j = i;
    while (j < s.size() && s[j] != ' ' && s[j] != '\n') ++j;
    if (j > i) out.emplace_back(s.substr(i, j - i));
    i = j;
  }
  return out;
}

// /proc/self/statm field `index` (0: size, 1: resident) in bytes.
double statm_bytes(size_t index) {
  auto text = read_small_file("/proc/self/statm");
  if (!text) return std::nan("");
  auto fields = split_spaces(*text);
  if (fields.size() <= index) return std::nan("");
  return std::strtod(fields[index].c_str(), nullptr) * static_cast<double>(::sysconf(_SC_PAGESIZE));
}

double open_fds() {
  DIR* dir = ::opendir("/proc/self/fd");
  if (!dir) return std::nan("");
  double n = 0;
  while (dirent* e = ::readdir(dir)) {
    if (e->d_name[0] != '.') ++n;
  }
  ::closedir(dir);
  return n - 1;  // the directory stream's own descriptor
}

double max_fds() {
  rlimit rl{};
  if (::getrlimit(RLIMIT_NOFILE, &rl) != 0 || rl.rlim_cur == RLIM_INFINITY) return std::nan("");
  return static_cast<double>(rl.rlim_cur);
}

double cpu_seconds() {
  rusage ru{};
  if (::getrusage(RUSAGE_SELF, &ru) != 0) return std::nan("");
  auto secs = [](const timeval& tv) { return static_cast<double>(tv.tv_sec) + static_cast<double>(tv.tv_usec) / 1e6; };
  return secs(ru.ru_utime) + secs(ru.ru_stime);
}

// Boot time (/proc/stat btime) plus field 22 of /proc/self/stat, in clock ticks since boot.
double start_time_seconds() {
  auto stat = read_small_file("/proc/self/stat");
  auto sys = read_small_file("/proc/stat");
  if (!stat || !sys) return std::nan("");
  // The command name (field 2) is in parentheses and may itself hold spaces or ')'.
  size_t close = stat->rfind(')');
  if (close == std::string::npos) return std::nan("");
  auto fields = split_spaces(std::string_view(*stat).substr(close + 1));  // fields[0] is field 3
  if (fields.size() < 20) return std::nan("");
  double ticks = std::strtod(fields[19].c_str(), nullptr);
  size_t at = sys->find("\nbtime ");
  if (at == std::string::npos) return std::nan("");
  double btime = std::strtod(sys->c_str() + at + 7, nullptr);
  return btime + ticks / static_cast<double>(::sysconf(_SC_CLK_TCK));
}

}  // namespace

void register_process_metrics(Registry& registry) {
  registry.callback_gauge("process_resident_memory_bytes", "Resident memory size in bytes.",
                          [] { return statm_bytes(1); });
  registry.callback_gauge("process_virtual_memory_bytes", "Virtual memory size in bytes.",
                          [] { return statm_bytes(0); });
  registry.callback_gauge("process_open_fds", "Number of open file descriptors.", open_fds);
  registry.callback_gauge("process_max_fds", "Maximum number of open file descriptors.", max_fds);
  double start = start_time_seconds();
  registry.callback_gauge("process_start_time_seconds", "Start time of the process since unix epoch in seconds.",
                          [start] { return start; });
  registry.callback_counter("process_cpu_seconds_total", "Total user and system CPU time spent in seconds.",
                            cpu_seconds);
}

}  // namespace common::metrics
