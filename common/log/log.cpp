// log.cpp: formatting and the process-wide sink of structured log lines.
#include "common/log/log.hpp"

#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <ctime>
#include <mutex>
#include <shared_mutex>

namespace common::log {
namespace {

struct State {
  std::shared_mutex mutex;
  Settings settings;
  std::function<void(std::string_view)> sink;
};

State& state() {
  static State s;
  return s;
}

void write_stderr(std::string_view line) {
  const char* p = line.data();
  size_t left = line.size();
  while (left > 0) {
    ssize_t n = ::write(STDERR_FILENO, p, left);
    if (n < 0) {
      if (errno == EINTR) continue;
      return;  // nowhere left to report a failing log
    }
    p += n;
    left -= static_cast<size_t>(n);
  }
}

void append_timestamp(std::string& out) {
  auto now = std::chrono::system_clock::now();
  auto secs = std::chrono::system_clock::to_time_t(now);
  auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(now.time_since_epoch()).count() % 1000;
  std::tm tm{};
  gmtime_r(&secs, &tm);
  char buf[64];
  std::snprintf(buf, sizeof buf, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900, tm.tm_mon + 1,
                tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, static_cast<int>(ms));
  out += buf;
}

bool needs_quotes(std::string_view v) {
  if (v.empty()) return true;
  for (unsigned char c : v) {
    if (c <= ' ' || c >= 0x7f || c == '"' || c == '=' || c == '\\') return true;
  }
  return false;
}

void append_pair(std::string& out, std::string_view key, std::string_view value) {
  out += ' ';
  out += key;
  out += '=';
  append_value(out, value);
}

}  // namespace

std::optional<Level> parse_level(std::string_view name) {
  if (name == "debug") return Level::Debug;
  if (name == "info") return Level::Info;
  if (name == "notice") return Level::Notice;
  if (name == "warning" || name == "warn") return Level::Warning;
  if (name == "error") return Level::Error;
  return std::nullopt;
}

std::string_view level_name(Level level) {
  switch (level) {
    case Level::Debug: return "debug";
    case Level::Info: return "info";
    case Level::Notice: return "notice";
    case Level::Warning: return "warning";
    case Level::Error: return "error";
  }
  return "info";
}

void configure(Settings settings) {
  std::unique_lock lock(state().mutex);
  state().settings = std::move(settings);
}

bool enabled(std::string_view component, Level level) {
  std::shared_lock lock(state().mutex);
  const Settings& s = state().settings;
  auto it = s.components.find(component);
  Level threshold = it == s.components.end() ? s.level : it->second;
  return level >= threshold;
}

void set_sink(std::function<void(std::string_view)> sink) {
  std::unique_lock lock(state().mutex);
  state().sink = std::move(sink);
}

void reset_sink() { set_sink(nullptr); }

void append_value(std::string& out, std::string_view value) {
  if (!needs_quotes(value)) {
    out += value;
    return;
  }
  static constexpr char kHex[] = "0123456789abcdef";
  out += '"';
  for (unsigned char c : value) {
    if (c == '"' || c == '\\') {
      out += '\\';
      out += static_cast<char>(c);
    } else if (c < ' ' || c >= 0x7f) {
      out += "\\x";
      out += kHex[c >> 4];
      out += kHex[c & 0xf];
    } else {
      out += static_cast<char>(c);
    }
  }
  out += '"';
}

Line::Line(Level level, std::string_view component)
    : on_(enabled(component, level)), level_(level), component_(on_ ? component : std::string_view{}) {}

Line::~Line() {
  if (!on_) return;
  std::string out;
  out.reserve(160 + extra_.size());
  out += "ts=";
  append_timestamp(out);
  append_pair(out, "level", level_name(level_));
  std::function<void(std::string_view)> sink;
  {
    std::shared_lock lock(state().mutex);
    append_pair(out, "daemon", state().settings.daemon);
    sink = state().sink;
  }
  append_pair(out, "comp", component_);
  if (!session_.empty()) append_pair(out, "session", session_);
  if (!client_.empty()) append_pair(out, "client", client_);
  if (!phase_.empty()) append_pair(out, "phase", phase_);
  if (!event_.empty()) append_pair(out, "event", event_);
  out += extra_;
  out += '\n';
  if (sink) {
    sink(out);
  } else {
    write_stderr(out);
  }
}

Line& Line::session(std::string_view id) {
  if (on_) session_ = id;
  return *this;
}
Line& Line::client(std::string_view endpoint) {
  if (on_) client_ = endpoint;
  return *this;
}
Line& Line::phase(std::string_view phase) {
  if (on_) phase_ = phase;
  return *this;
}
Line& Line::event(std::string_view event) {
  if (on_) event_ = event;
  return *this;
}
Line& Line::kv(std::string_view key, std::string_view value) {
  if (on_) append_pair(extra_, key, value);
  return *this;
}
Line& Line::kv(std::string_view key, int64_t value) {
  if (on_) append_pair(extra_, key, std::to_string(value));
  return *this;
}
Line& Line::kv(std::string_view key, uint64_t value) {
  if (on_) append_pair(extra_, key, std::to_string(value));
  return *this;
}
Line& Line::kv(std::string_view key, double value) {
  if (on_) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "%.6g", value);
    append_pair(extra_, key, buf);
  }
  return *this;
}
Line& Line::client_text(std::string_view key, std::string_view text) {
  if (!on_) return *this;
  if (text.size() <= kMaxClientText) return kv(key, text);
  std::string cut(text.substr(0, kMaxClientText));
  cut += "...";
  return kv(key, cut);
}

}  // namespace common::log
