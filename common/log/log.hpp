// log.hpp: one line per event, key=value with fixed leading keys
// (ts level daemon comp session client phase event ...), levels per component, changed on reload.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <string_view>

namespace common::log {

enum class Level : uint8_t { Debug, Info, Notice, Warning, Error };

std::optional<Level> parse_level(std::string_view name);  // debug|info|notice|warning|error
std::string_view level_name(Level level);

struct Settings {
  std::string daemon = "postern";
  Level level = Level::Info;                   // for components not named below
  std::map<std::string, Level, std::less<>> components;  // e.g. {"dns": Debug}
};

// Thread-safe; a reload calls it again with the new levels.
void configure(Settings settings);
bool enabled(std::string_view component, Level level);
// Where finished lines go (default: write(2) on stderr, one write per line). Tests capture here.
void set_sink(std::function<void(std::string_view line)> sink);
void reset_sink();

// Longest client-supplied text kept in a log line; the rest is cut with a marker.
inline constexpr size_t kMaxClientText = 160;

// Appends value to out, quoted and escaped when needed so a line always parses back the same way:
// bytes outside printable ASCII become \xNN, so a client cannot forge keys or lines.
void append_value(std::string& out, std::string_view value);

// Builds one line; the line is written when the builder goes out of scope.
// Usage: log::Line(Level::Info, "runtime").client(peer).phase("accept").event("denied").kv("rule", r);
class Line {
 public:
  Line(Level level, std::string_view component);
  ~Line();
  Line(const Line&) = delete;
  Line& operator=(const Line&) = delete;

  Line& session(std::string_view id);
  Line& client(std::string_view endpoint);
  Line& phase(std::string_view phase);
  Line& event(std::string_view event);
  Line& kv(std::string_view key, std::string_view value);
  Line& kv(std::string_view key, const char* value) { return kv(key, std::string_view(value)); }
  Line& kv(std::string_view key, int64_t value);
  Line& kv(std::string_view key, uint64_t value);
  Line& kv(std::string_view key, int value) { return kv(key, static_cast<int64_t>(value)); }
  Line& kv(std::string_view key, unsigned value) { return kv(key, static_cast<uint64_t>(value)); }
  Line& kv(std::string_view key, double value);
  // Untrusted text (a command line, a host name a client sent): sanitised and cut to kMaxClientText.
  Line& client_text(std::string_view key, std::string_view text);

 private:
  bool on_;
  Level level_;
  std::string component_;
  std::string session_, client_, phase_, event_;
  std::string extra_;
};

inline Line debug(std::string_view component) { return Line(Level::Debug, component); }
inline Line info(std::string_view component) { return Line(Level::Info, component); }
inline Line notice(std::string_view component) { return Line(Level::Notice, component); }
inline Line warning(std::string_view component) { return Line(Level::Warning, component); }
inline Line error(std::string_view component) { return Line(Level::Error, component); }

}  // namespace common::log
