// config.hpp: one TOML file per daemon, read through typed getters that collect every problem
// ("file:line:col: key: message") and record the value in force for `--check-config`.
#pragma once

#include <chrono>
#include <concepts>
#include <cstdint>
#include <cstdio>
#include <initializer_list>
#include <limits>
#include <memory>
#include <optional>
#include <ratio>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

#include "common/net/address.hpp"
#include "common/result.hpp"

namespace common::config {

// One thing wrong with a config file. line/column are 1-based; 0 when the problem has no place
// in the file (unreadable file, key absent).
struct Problem {
  std::string file;
  int line = 0;
  int column = 0;
  std::string key;  // dotted path: "tls.cert", "listener[1].port"; empty for syntax errors
  std::string message;

  // "file:line:col: key: message"; the parts without a value are left out.
  std::string to_string() const;
};

// ---- Pure parsers, shared with tests and other formats ------------------------------------------

// "4096", "512k", "10M", "1G", "2T": bytes; suffixes are binary multiples (1k = 1024) and
// case-insensitive. No sign, fraction, space or other suffix; nullopt on overflow of uint64.
std::optional<uint64_t> parse_size(std::string_view text);
// The shortest form parse_size() reads back exactly: "10M", "1536k", "1000".
std::string format_size(uint64_t bytes);

// "250ms", "30s", "5m", "2h", "1d"; a bare number is seconds. One number, one lowercase unit:
// no sign, fraction or compound ("1h30m" is written "90m"). nullopt on overflow.
std::optional<std::chrono::milliseconds> parse_duration(std::string_view text);
// The largest unit that is exact: "90m", "1500ms", "0s".
std::string format_duration(std::chrono::milliseconds value);

namespace detail {
struct DocState;
struct SectionState;
}  // namespace detail

// A view of one table of a Document. Every getter follows one rule: key absent -> `out` keeps its
// default; present and valid -> parsed into `out`; present and invalid (wrong type, out of range,
// bad syntax) -> a Problem is recorded and `out` keeps its default. Either way the key is marked
// as read and the value in force is recorded for Document::effective_toml().
// Sections are cheap handles; they stay valid while their Document lives.
class Section {
 public:
  void get(std::string_view key, bool& out);
  void get(std::string_view key, std::string& out);
  // Absent -> nullopt (effective_toml() shows it as a "not set" comment).
  void get(std::string_view key, std::optional<std::string>& out);
  void get(std::string_view key, double& out, double min, double max);
  // Any integer type; min and max are required because every number in a config has a range.
  template <std::integral T>
    requires(!std::same_as<T, bool>)
  void get(std::string_view key, T& out, std::type_identity_t<T> min, std::type_identity_t<T> max);
  // An array of strings; a single string is taken as a list of one.
  void get(std::string_view key, std::vector<std::string>& out);

  // A size string ("10M", see parse_size) or a plain integer (bytes).
  void get_size(std::string_view key, uint64_t& bytes, uint64_t min, uint64_t max);

  // A duration string ("30s", see parse_duration) or a plain integer (seconds). The value must be
  // a whole number of the field's unit: "250ms" is refused for a std::chrono::seconds field.
  template <class Rep, class Period>
  void get_duration(std::string_view key, std::chrono::duration<Rep, Period>& out,
                    std::type_identity_t<std::chrono::duration<Rep, Period>> min,
                    std::type_identity_t<std::chrono::duration<Rep, Period>> max);

  // "[::1]:143", "192.0.2.1:25", "*:25" (see net::Endpoint::parse).
  void get_endpoint(std::string_view key, net::Endpoint& out);
  void get_endpoint(std::string_view key, std::optional<net::Endpoint>& out);
  // One endpoint string or an array of them.
  void get_endpoints(std::string_view key, std::vector<net::Endpoint>& out);

  // A string that must be one of `allowed`.
  void get_enum(std::string_view key, std::string& out, std::initializer_list<std::string_view> allowed);
  // The same for an enum type: get_enum("client_cert", c.mode, {{"off", Off}, {"required", Required}}).
  template <class E>
  void get_enum(std::string_view key, E& out, std::initializer_list<std::pair<std::string_view, E>> names);

  // A sub-table; absent -> an empty section (its getters all keep defaults); not a table -> Problem.
  Section section(std::string_view key);
  // An array of tables ([[listener]]); absent -> none; anything else -> Problem.
  std::vector<Section> sections(std::string_view key);

  bool has(std::string_view key) const;
  // The keys present in this table, sorted; for tables whose keys are data ([log.components]).
  // Listing does not mark them read: read each through a getter.
  std::vector<std::string> keys() const;
  // Reports every key of this table that no getter read as "unknown key" (with a suggestion when
  // one known key is close). Document::finish() does this for every section; calling it here
  // earlier is harmless.
  void finish();
  // A problem found by the caller, e.g. a cross-field check. Placed at the key's value when the key
  // is present, else at the table.
  void error(std::string_view key, std::string message);

  // "" for the root, "tls", "listener[0]", "listener[0].tls".
  const std::string& path() const;

 private:
  friend class Document;
  Section(detail::DocState* doc, detail::SectionState* state) : doc_(doc), state_(state) {}

  // Cores of the templates. Each returns the parsed value when the key is present and valid;
  // `shown_default` is what effective_toml() prints when the default stays in force.
  std::optional<int64_t> read_integer(std::string_view key, int64_t min, int64_t max,
                                      const std::string& shown_default);
  std::optional<std::chrono::milliseconds> read_duration(std::string_view key, std::chrono::milliseconds min,
                                                         std::chrono::milliseconds max,
                                                         std::chrono::milliseconds unit,
                                                         std::chrono::milliseconds current);
  void get_enum_impl(std::string_view key, std::string& out, std::span<const std::string_view> allowed);

  detail::DocState* doc_;
  detail::SectionState* state_;
};

// A parsed file: the TOML tree, the problems found so far and the effective-values tree.
// Move-only; Sections point into it and must not outlive it.
class Document {
 public:
  // Syntax errors become Problems (toml++ stops at the first one); the root is then empty.
  static Document parse(std::string_view text, std::string file_name);
  // An unreadable or oversized (> 16 MiB) file is a Problem.
  static Document load_file(const std::string& path);

  Document(Document&&) noexcept;
  Document& operator=(Document&&) noexcept;
  ~Document();

  Section root();
  // Runs Section::finish() on every section that was opened. Call once, after all getters.
  void finish();

  // Sorted by line, then column; problems without a line come first.
  const std::vector<Problem>& problems() const;
  bool ok() const;
  const std::string& file() const;
  // Ok, or ErrorKind::Config with every problem joined by "; " (for a log line).
  common::Result<void> status() const;
  // One problem per line, then "FILE: N problems".
  std::string problems_text() const;

  // What --check-config prints: every key that was read, with the value in force, defaults marked
  // "# default". Valid TOML: read through the same getters it gives the same values.
  std::string effective_toml() const;

 private:
  Document();
  std::unique_ptr<detail::DocState> state_;
};

// For `<daemon> --check-config`, after loading (and finish()): prints the effective config to
// `out` and returns 0, or every problem to `err` and returns 1. The daemon exits with the result.
int check_config(const Document& doc, std::FILE* out, std::FILE* err);

// ---- Template definitions -----------------------------------------------------------------------

template <std::integral T>
  requires(!std::same_as<T, bool>)
void Section::get(std::string_view key, T& out, std::type_identity_t<T> min, std::type_identity_t<T> max) {
  // TOML integers are int64: clamp the type's range into it.
  auto to_i64 = [](T v) -> int64_t {
    if constexpr (std::is_unsigned_v<T> && sizeof(T) >= sizeof(int64_t)) {
      return v > static_cast<T>(std::numeric_limits<int64_t>::max()) ? std::numeric_limits<int64_t>::max()
                                                                     : static_cast<int64_t>(v);
    } else {
      return static_cast<int64_t>(v);
    }
  };
  if (auto v = read_integer(key, to_i64(min), to_i64(max), std::to_string(out))) out = static_cast<T>(*v);
}

template <class Rep, class Period>
void Section::get_duration(std::string_view key, std::chrono::duration<Rep, Period>& out,
                           std::type_identity_t<std::chrono::duration<Rep, Period>> min,
                           std::type_identity_t<std::chrono::duration<Rep, Period>> max) {
  using std::chrono::milliseconds;
  using D = std::chrono::duration<Rep, Period>;
  milliseconds unit{1};
  if constexpr (!std::ratio_less_v<Period, std::milli>) unit = std::chrono::duration_cast<milliseconds>(D{1});
  // Saturating, so a bound like std::chrono::seconds::max() means "no limit" instead of overflowing.
  auto to_ms = [unit](D d) -> milliseconds {
    if constexpr (std::ratio_less_v<Period, std::milli>) {
      return std::chrono::duration_cast<milliseconds>(d);
    } else {
      auto count = static_cast<int64_t>(d.count());
      if (count > std::numeric_limits<int64_t>::max() / unit.count()) return milliseconds::max();
      if (count < std::numeric_limits<int64_t>::min() / unit.count()) return milliseconds::min();
      return milliseconds(count * unit.count());
    }
  };
  if (auto v = read_duration(key, to_ms(min), to_ms(max), unit, to_ms(out))) {
    out = std::chrono::duration_cast<D>(*v);
  }
}

template <class E>
void Section::get_enum(std::string_view key, E& out, std::initializer_list<std::pair<std::string_view, E>> names) {
  std::string text;
  std::vector<std::string_view> allowed;
  for (auto& [name, value] : names) {
    allowed.push_back(name);
    if (value == out && text.empty()) text = name;
  }
  // A default outside `names` is a programming error; show it as the first name rather than crash.
  if (text.empty() && names.size() > 0) text = names.begin()->first;
  std::string before = text;
  get_enum_impl(key, text, allowed);
  if (text == before) return;
  for (auto& [name, value] : names) {
    if (name == text) out = value;
  }
}

}  // namespace common::config
