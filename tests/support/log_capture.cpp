// log_capture.cpp: the log capture for tests (log_capture.hpp).
#include "tests/support/log_capture.hpp"

#include <thread>

#include "common/log/log.hpp"

namespace test {

LogCapture::LogCapture(const std::string& daemon) {
  if (!daemon.empty()) common::log::configure({.daemon = daemon, .level = common::log::Level::Info});
  common::log::set_sink([this](std::string_view line) {
    std::lock_guard lock(mutex_);
    lines_.emplace_back(line);
  });
}

LogCapture::~LogCapture() { common::log::reset_sink(); }

std::vector<std::string> LogCapture::lines() const {
  std::lock_guard lock(mutex_);
  return lines_;
}

std::vector<std::string> LogCapture::matching(const std::string& needle) const {
  std::vector<std::string> out;
  for (auto& l : lines())
    if (l.find(needle) != std::string::npos) out.push_back(l);
  return out;
}

std::string LogCapture::all() const {
  std::string out;
  for (auto& l : lines()) out += l;
  return out;
}

bool LogCapture::wait_for(const std::vector<std::string>& parts, std::chrono::milliseconds deadline) {
  const auto until = std::chrono::steady_clock::now() + deadline;
  for (;;) {
    for (const auto& line : lines()) {
      bool every = true;
      for (const auto& p : parts) every = every && line.find(p) != std::string::npos;
      if (every) return true;
    }
    if (std::chrono::steady_clock::now() >= until) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
}

}  // namespace test
