// log_capture.hpp: the log lines of this process (common/log), from any thread (gRPC logs from its
// own), captured for the duration of a test so it can look for an event.
#pragma once

#include <chrono>
#include <mutex>
#include <string>
#include <vector>

namespace test {

class LogCapture {
 public:
  // With a daemon name, also sets the log's daemon= and level info first.
  explicit LogCapture(const std::string& daemon = "");
  ~LogCapture();
  LogCapture(const LogCapture&) = delete;
  LogCapture& operator=(const LogCapture&) = delete;

  std::vector<std::string> lines() const;
  std::vector<std::string> matching(const std::string& needle) const;
  std::string all() const;
  // Waits up to `deadline` for a line containing every part.
  bool wait_for(const std::vector<std::string>& parts, std::chrono::milliseconds deadline = std::chrono::seconds(5));

 private:
  mutable std::mutex mutex_;
  std::vector<std::string> lines_;
};

}  // namespace test
