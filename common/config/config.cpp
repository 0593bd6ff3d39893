// config.cpp: TOML reading through toml++, problem collection and the effective-config printer.
#include "common/ascii.hpp"
#include "common/config/config.hpp"

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cmath>
#include <cstring>
#include <deque>
#include <map>
#include <set>

#include <toml++/toml.h>

namespace common::config {

using std::chrono::milliseconds;

std::string Problem::to_string() const {
  std::string s = file;
  if (line > 0) {
    s += ':';
    s += std::to_string(line);
    if (column > 0) {
      s += ':';
      s += std::to_string(column);
    }
  }
  s += ": ";
  if (!key.empty()) {
    s += key;
    s += ": ";
  }
  s += message;
  return s;
}

// ---- Pure parsers --------------------------------------------------------------------------------

namespace {

using common::ascii::is_digit;


// Leading decimal digits of `text`: their value (nullopt on overflow or none) and their count.
std::pair<std::optional<uint64_t>, size_t> leading_number(std::string_view text) {
  size_t n = 0;
  uint64_t value = 0;
  bool overflow = false;
  while (n < text.size() && is_digit(text[n])) {
    auto d = static_cast<uint64_t>(text[n] - '0');
    if (value > (UINT64_MAX - d) / 10) overflow = true;
    if (!overflow) value = value * 10 + d;
    ++n;
  }
  if (n == 0 || overflow) return {std::nullopt, n};
  return {value, n};
}

// The shift of a size suffix ("" -> 0, "k" -> 10 ...), or -1.
int size_shift(std::string_view suffix) {
  if (suffix.empty()) return 0;
  if (suffix.size() != 1) return -1;
  switch (suffix[0]) {
    case 'k': case 'K': return 10;
    case 'm': case 'M': return 20;
    case 'g': case 'G': return 30;
    case 't': case 'T': return 40;
    default: return -1;
  }
}

// Milliseconds per duration unit ("" = seconds), or 0.
int64_t duration_factor(std::string_view unit) {
  if (unit.empty() || unit == "s") return 1000;
  if (unit == "ms") return 1;
  if (unit == "m") return 60'000;
  if (unit == "h") return 3'600'000;
  if (unit == "d") return 86'400'000;
  return 0;
}

// Well-formed (digits and a known unit) but maybe too large: tells "too large" from "not a size".
bool size_syntax_ok(std::string_view text) {
  auto n = leading_number(text).second;
  return n > 0 && size_shift(text.substr(n)) >= 0;
}

bool duration_syntax_ok(std::string_view text) {
  auto n = leading_number(text).second;
  return n > 0 && duration_factor(text.substr(n)) > 0;
}

}  // namespace

std::optional<uint64_t> parse_size(std::string_view text) {
  auto [number, n] = leading_number(text);
  int shift = size_shift(text.substr(n));
  if (!number || shift < 0) return std::nullopt;
  if (*number > (UINT64_MAX >> shift)) return std::nullopt;
  return *number << shift;
}

std::string format_size(uint64_t bytes) {
  if (bytes == 0) return "0";
  static constexpr std::pair<int, char> kUnits[] = {{40, 'T'}, {30, 'G'}, {20, 'M'}, {10, 'k'}};
  for (auto [shift, unit] : kUnits) {
    if ((bytes & ((uint64_t{1} << shift) - 1)) == 0) return std::to_string(bytes >> shift) + unit;
  }
  return std::to_string(bytes);
}

std::optional<milliseconds> parse_duration(std::string_view text) {
  auto [number, n] = leading_number(text);
  int64_t factor = duration_factor(text.substr(n));
  if (!number || factor == 0) return std::nullopt;
  if (*number > static_cast<uint64_t>(INT64_MAX / factor)) return std::nullopt;
  return milliseconds(static_cast<int64_t>(*number) * factor);
}

std::string format_duration(milliseconds value) {
  int64_t ms = value.count();
  if (ms == 0) return "0s";
  std::string sign = ms < 0 ? "-" : "";
  uint64_t magnitude = ms < 0 ? 0 - static_cast<uint64_t>(ms) : static_cast<uint64_t>(ms);
  static constexpr std::pair<uint64_t, const char*> kUnits[] = {
      {86'400'000, "d"}, {3'600'000, "h"}, {60'000, "m"}, {1000, "s"}, {1, "ms"}};
  for (auto [factor, unit] : kUnits) {
    if (magnitude % factor == 0) return sign + std::to_string(magnitude / factor) + unit;
  }
  return sign + std::to_string(magnitude) + "ms";  // unreachable: factor 1 divides everything
}

// ---- Document state ------------------------------------------------------------------------------

namespace detail {

struct EffTable;

// One key of the effective tree, in the order the daemon first read it.
struct EffEntry {
  enum class Kind : uint8_t { Value, Table, TableArray };
  std::string key;
  Kind kind = Kind::Value;
  std::string value;  // TOML text of the value, for Kind::Value
  bool is_default = false;
  bool unset = false;            // an optional value that is absent
  EffTable* table = nullptr;     // Kind::Table
  std::vector<EffTable*> array;  // Kind::TableArray
};

struct EffTable {
  std::vector<EffEntry> entries;

  EffEntry& at(std::string_view key) {
    for (auto& e : entries) {
      if (e.key == key) return e;
    }
    auto& e = entries.emplace_back();
    e.key = std::string(key);
    return e;
  }
};

struct SectionState {
  const toml::table* table = nullptr;  // null: absent (or not a table)
  std::string path;
  EffTable* eff = nullptr;
  std::set<std::string, std::less<>> read;
  int line = 0;  // where problems about the whole table go
  int column = 0;
};

struct DocState {
  std::string file;
  toml::table root;
  std::vector<Problem> problems;
  std::deque<EffTable> eff_tables;  // deque: entries point at tables
  std::map<std::string, SectionState, std::less<>> sections;  // by path; map nodes are stable

  void add(Problem p) {
    for (auto& q : problems) {
      if (q.line == p.line && q.column == p.column && q.key == p.key && q.message == p.message) return;
    }
    auto later = std::upper_bound(problems.begin(), problems.end(), p, [](const Problem& a, const Problem& b) {
      return std::pair(a.line, a.column) < std::pair(b.line, b.column);
    });
    problems.insert(later, std::move(p));
  }

  EffTable* new_eff() { return &eff_tables.emplace_back(); }
};

}  // namespace detail

namespace {

using detail::DocState;
using detail::EffEntry;
using detail::EffTable;
using detail::SectionState;

bool is_bare_key(std::string_view key) {
  if (key.empty()) return false;
  return std::all_of(key.begin(), key.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || is_digit(c) || c == '_' || c == '-';
  });
}

// A TOML basic string (also how values are shown in messages).
std::string quote(std::string_view s) {
  std::string out = "\"";
  for (char ch : s) {
    auto c = static_cast<unsigned char>(ch);
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\b': out += "\\b"; break;
      case '\t': out += "\\t"; break;
      case '\n': out += "\\n"; break;
      case '\f': out += "\\f"; break;
      case '\r': out += "\\r"; break;
      default:
        if (c < 0x20 || c == 0x7f) {
          static constexpr char kHex[] = "0123456789ABCDEF";
          out += "\\u00";
          out += kHex[c >> 4];
          out += kHex[c & 15];
        } else {
          out += ch;
        }
    }
  }
  out += '"';
  return out;
}

std::string key_text(std::string_view key) { return is_bare_key(key) ? std::string(key) : quote(key); }

// A value quoted for a message, cut so one problem stays one readable line.
std::string shown(std::string_view s) {
  constexpr size_t kMax = 64;
  if (s.size() <= kMax) return quote(s);
  return quote(s.substr(0, kMax)) + "...";
}

std::string key_path(const SectionState& s, std::string_view key) {
  if (s.path.empty()) return key_text(key);
  return s.path + "." + key_text(key);
}

std::string_view type_name(const toml::node& n) {
  switch (n.type()) {
    case toml::node_type::table: return "a table";
    case toml::node_type::array: return "an array";
    case toml::node_type::string: return "a string";
    case toml::node_type::integer: return "an integer";
    case toml::node_type::floating_point: return "a float";
    case toml::node_type::boolean: return "a boolean";
    case toml::node_type::date: return "a date";
    case toml::node_type::time: return "a time";
    case toml::node_type::date_time: return "a date-time";
    default: return "nothing";
  }
}

std::string format_double(double v) {
  if (std::isnan(v)) return "nan";
  if (std::isinf(v)) return v > 0 ? "inf" : "-inf";
  char buf[64];
  auto res = std::to_chars(buf, buf + sizeof buf, v);
  std::string s(buf, res.ptr);
  // TOML needs a '.' or an exponent to read a float back as a float.
  if (s.find_first_of(".e") == std::string::npos) s += ".0";
  return s;
}

// A size as TOML: a bare integer when it has no unit, else a string.
std::string size_toml(uint64_t bytes) {
  std::string s = format_size(bytes);
  if (is_digit(s.back()) && bytes <= static_cast<uint64_t>(INT64_MAX)) return s;
  return quote(s);
}

// The key's own position, for implicit tables (dotted keys) whose node has none.
toml::source_position key_position(const toml::table& table, std::string_view key) {
  auto it = table.find(key);
  if (it == table.end()) return {};
  return it->first.source().begin;
}

class Reader {
 public:
  Reader(DocState& doc, SectionState& s) : doc_(doc), s_(s) {}

  // Marks the key read and returns its node, or null when absent.
  const toml::node* lookup(std::string_view key) {
    if (!s_.read.contains(key)) s_.read.emplace(key);
    return s_.table ? s_.table->get(key) : nullptr;
  }

  void problem(std::string_view key, const toml::node* at, std::string message) {
    Problem p{doc_.file, s_.line, s_.column, key_path(s_, key), std::move(message)};
    if (at) {
      auto pos = at->source().begin;
      if (pos.line == 0 && s_.table) pos = key_position(*s_.table, key);
      if (pos.line > 0) {
        p.line = static_cast<int>(pos.line);
        p.column = static_cast<int>(pos.column);
      }
    }
    doc_.add(std::move(p));
  }

  // Same, with a different dotted key (an array element).
  void problem_at(std::string key_path_text, const toml::node& at, std::string message) {
    auto pos = at.source().begin;
    doc_.add(Problem{doc_.file, static_cast<int>(pos.line), static_cast<int>(pos.column), std::move(key_path_text),
                     std::move(message)});
  }

  void wrong_type(std::string_view key, const toml::node& n, std::string_view expected) {
    problem(key, &n, "expected " + std::string(expected) + ", got " + std::string(type_name(n)));
  }

  void record(std::string_view key, std::string value, bool is_default) {
    EffEntry& e = s_.eff->at(key);
    e.kind = EffEntry::Kind::Value;
    e.value = std::move(value);
    e.is_default = is_default;
    e.unset = false;
  }

  void record_unset(std::string_view key) {
    EffEntry& e = s_.eff->at(key);
    e.kind = EffEntry::Kind::Value;
    e.value.clear();
    e.is_default = true;
    e.unset = true;
  }

  // A string or an array of strings. Elements that are not strings become problems; `ok` says
  // whether there were none, so callers still check the good elements before dropping the list.
  struct StringItem {
    std::string text;
    const toml::node* node;
    std::string path;  // "listen" or "listen[2]"
  };
  struct StringList {
    std::vector<StringItem> items;
    bool ok = true;
  };
  StringList string_list(std::string_view key, const toml::node& n) {
    StringList out;
    if (auto* str = n.as_string()) {
      out.items.push_back({str->get(), &n, key_path(s_, key)});
      return out;
    }
    auto* arr = n.as_array();
    if (!arr) {
      wrong_type(key, n, "a string or an array of strings");
      out.ok = false;
      return out;
    }
    for (size_t i = 0; i < arr->size(); ++i) {
      const toml::node& e = *arr->get(i);
      std::string path = key_path(s_, key) + "[" + std::to_string(i) + "]";
      if (auto* str = e.as_string()) {
        out.items.push_back({str->get(), &e, std::move(path)});
      } else {
        problem_at(std::move(path), e,
                   "expected a string, got " + std::string(type_name(e)));
        out.ok = false;
      }
    }
    return out;
  }

  DocState& doc_;
  SectionState& s_;
};

std::string list_toml(const std::vector<std::string>& quoted) {
  std::string s = "[";
  for (size_t i = 0; i < quoted.size(); ++i) {
    if (i) s += ", ";
    s += quoted[i];
  }
  return s + "]";
}

size_t edit_distance(std::string_view a, std::string_view b) {
  std::vector<size_t> row(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) row[j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    size_t diag = row[0];
    row[0] = i;
    for (size_t j = 1; j <= b.size(); ++j) {
      size_t up = row[j];
      row[j] = std::min({row[j] + 1, row[j - 1] + 1, diag + (a[i - 1] == b[j - 1] ? 0 : 1)});
      diag = up;
    }
  }
  return row[b.size()];
}

}  // namespace

// ---- Section -------------------------------------------------------------------------------------

void Section::get(std::string_view key, bool& out) {
  Reader r(*doc_, *state_);
  bool used = false;
  if (const toml::node* n = r.lookup(key)) {
    if (auto* v = n->as_boolean()) {
      out = v->get();
      used = true;
    } else {
      r.wrong_type(key, *n, "a boolean");
    }
  }
  r.record(key, out ? "true" : "false", !used);
}

void Section::get(std::string_view key, std::string& out) {
  Reader r(*doc_, *state_);
  bool used = false;
  if (const toml::node* n = r.lookup(key)) {
    if (auto* v = n->as_string()) {
      out = v->get();
      used = true;
    } else {
      r.wrong_type(key, *n, "a string");
    }
  }
  r.record(key, quote(out), !used);
}

void Section::get(std::string_view key, std::optional<std::string>& out) {
  Reader r(*doc_, *state_);
  bool used = false;
  if (const toml::node* n = r.lookup(key)) {
    if (auto* v = n->as_string()) {
      out = v->get();
      used = true;
    } else {
      r.wrong_type(key, *n, "a string");
    }
  }
  if (out) {
    r.record(key, quote(*out), !used);
  } else {
    r.record_unset(key);
  }
}

void Section::get(std::string_view key, double& out, double min, double max) {
  Reader r(*doc_, *state_);
  bool used = false;
  if (const toml::node* n = r.lookup(key)) {
    std::optional<double> v;
    if (auto* f = n->as_floating_point()) v = f->get();
    if (auto* i = n->as_integer()) v = static_cast<double>(i->get());
    if (!v) {
      r.wrong_type(key, *n, "a number");
    } else if (!(*v >= min && *v <= max)) {  // also refuses nan
      r.problem(key, n, format_double(*v) + " is out of range [" + format_double(min) + ", " + format_double(max) + "]");
    } else {
      out = *v;
      used = true;
    }
  }
  r.record(key, format_double(out), !used);
}

std::optional<int64_t> Section::read_integer(std::string_view key, int64_t min, int64_t max,
                                             const std::string& shown_default) {
  Reader r(*doc_, *state_);
  std::optional<int64_t> result;
  if (const toml::node* n = r.lookup(key)) {
    if (auto* v = n->as_integer()) {
      int64_t x = v->get();
      if (x < min || x > max) {
        r.problem(key, n,
                  std::to_string(x) + " is out of range [" + std::to_string(min) + ", " + std::to_string(max) + "]");
      } else {
        result = x;
      }
    } else {
      r.wrong_type(key, *n, "an integer");
    }
  }
  r.record(key, result ? std::to_string(*result) : shown_default, !result);
  return result;
}

void Section::get(std::string_view key, std::vector<std::string>& out) {
  Reader r(*doc_, *state_);
  bool used = false;
  if (const toml::node* n = r.lookup(key)) {
    if (auto list = r.string_list(key, *n); list.ok) {
      out.clear();
      for (auto& item : list.items) out.push_back(std::move(item.text));
      used = true;
    }
  }
  std::vector<std::string> quoted;
  for (auto& s : out) quoted.push_back(quote(s));
  r.record(key, list_toml(quoted), !used);
}

void Section::get_size(std::string_view key, uint64_t& bytes, uint64_t min, uint64_t max) {
  Reader r(*doc_, *state_);
  std::optional<uint64_t> v;
  if (const toml::node* n = r.lookup(key)) {
    if (auto* i = n->as_integer()) {
      if (i->get() < 0) {
        r.problem(key, n, std::to_string(i->get()) + " is negative; sizes are 0 or more bytes");
      } else {
        v = static_cast<uint64_t>(i->get());
      }
    } else if (auto* s = n->as_string()) {
      v = parse_size(s->get());
      if (!v && size_syntax_ok(s->get())) {
        r.problem(key, n, shown(s->get()) + " is too large");
      } else if (!v) {
        r.problem(key, n,
                  shown(s->get()) +
                      " is not a size: use bytes with an optional k, M, G or T suffix (1k = 1024), e.g. \"512k\"");
      }
    } else {
      r.wrong_type(key, *n, "a size (\"10M\") or an integer");
    }
    if (v && (*v < min || *v > max)) {
      r.problem(key, n, format_size(*v) + " is out of range [" + format_size(min) + ", " + format_size(max) + "]");
      v.reset();
    }
  }
  if (v) bytes = *v;
  r.record(key, size_toml(bytes), !v);
}

std::optional<milliseconds> Section::read_duration(std::string_view key, milliseconds min, milliseconds max,
                                                   milliseconds unit, milliseconds current) {
  Reader r(*doc_, *state_);
  std::optional<milliseconds> v;
  if (const toml::node* n = r.lookup(key)) {
    if (auto* i = n->as_integer()) {
      int64_t secs = i->get();
      if (secs < 0) {
        r.problem(key, n, std::to_string(secs) + " is negative");
      } else if (secs > INT64_MAX / 1000) {
        r.problem(key, n, std::to_string(secs) + " seconds is too long");
      } else {
        v = milliseconds(secs * 1000);
      }
    } else if (auto* s = n->as_string()) {
      v = parse_duration(s->get());
      if (!v && duration_syntax_ok(s->get())) {
        r.problem(key, n, shown(s->get()) + " is too long");
      } else if (!v) {
        r.problem(key, n,
                  shown(s->get()) +
                      " is not a duration: use a number with ms, s, m, h or d (a bare number is seconds), e.g. \"30s\"");
      }
    } else {
      r.wrong_type(key, *n, "a duration (\"30s\") or an integer (seconds)");
    }
    if (v && unit.count() > 1 && v->count() % unit.count() != 0) {
      r.problem(key, n, format_duration(*v) + " is not a whole number of " + format_duration(unit));
      v.reset();
    }
    if (v && (*v < min || *v > max)) {
      r.problem(key, n,
                format_duration(*v) + " is out of range [" + format_duration(min) + ", " + format_duration(max) + "]");
      v.reset();
    }
  }
  r.record(key, quote(format_duration(v ? *v : current)), !v);
  return v;
}

void Section::get_endpoint(std::string_view key, net::Endpoint& out) {
  // Starting from a value, the optional form records it whether the key is set or not.
  std::optional<net::Endpoint> value = out;
  get_endpoint(key, value);
  out = *value;
}

void Section::get_endpoint(std::string_view key, std::optional<net::Endpoint>& out) {
  Reader r(*doc_, *state_);
  bool used = false;
  if (const toml::node* n = r.lookup(key)) {
    if (auto* s = n->as_string()) {
      if (auto ep = net::Endpoint::parse(s->get())) {
        out = *ep;
        used = true;
      } else {
        r.problem(key, n, shown(s->get()) + " is not an address:port, e.g. \"[::1]:143\", \"192.0.2.1:25\", \"*:25\"");
      }
    } else {
      r.wrong_type(key, *n, "an address string");
    }
  }
  if (out) {
    r.record(key, quote(out->to_string()), !used);
  } else {
    r.record_unset(key);
  }
}

void Section::get_endpoints(std::string_view key, std::vector<net::Endpoint>& out) {
  Reader r(*doc_, *state_);
  bool used = false;
  if (const toml::node* n = r.lookup(key)) {
    auto list = r.string_list(key, *n);
    std::vector<net::Endpoint> parsed;
    bool ok = list.ok;
    for (auto& item : list.items) {
      if (auto ep = net::Endpoint::parse(item.text)) {
        parsed.push_back(*ep);
      } else {
        r.problem_at(item.path, *item.node, shown(item.text) + " is not an address:port, e.g. \"[::1]:143\", \"*:25\"");
        ok = false;
      }
    }
    if (ok) {
      out = std::move(parsed);
      used = true;
    }
  }
  std::vector<std::string> quoted;
  for (auto& ep : out) quoted.push_back(quote(ep.to_string()));
  r.record(key, list_toml(quoted), !used);
}

void Section::get_enum(std::string_view key, std::string& out, std::initializer_list<std::string_view> allowed) {
  get_enum_impl(key, out, std::span<const std::string_view>(allowed.begin(), allowed.size()));
}

void Section::get_enum_impl(std::string_view key, std::string& out, std::span<const std::string_view> allowed) {
  Reader r(*doc_, *state_);
  bool used = false;
  if (const toml::node* n = r.lookup(key)) {
    if (auto* s = n->as_string()) {
      if (std::find(allowed.begin(), allowed.end(), s->get()) != allowed.end()) {
        out = s->get();
        used = true;
      } else {
        std::string names;
        for (auto a : allowed) {
          if (!names.empty()) names += ", ";
          names += a;
        }
        r.problem(key, n, shown(s->get()) + " is not one of: " + names);
      }
    } else {
      r.wrong_type(key, *n, "a string");
    }
  }
  r.record(key, quote(out), !used);
}

Section Section::section(std::string_view key) {
  Reader r(*doc_, *state_);
  const toml::node* n = r.lookup(key);
  std::string path = key_path(*state_, key);
  auto [it, inserted] = doc_->sections.try_emplace(path);
  SectionState& child = it->second;
  if (inserted) {
    child.path = path;
    EffEntry& e = state_->eff->at(key);
    e.kind = EffEntry::Kind::Table;
    if (!e.table) e.table = doc_->new_eff();
    child.eff = e.table;
    child.line = state_->line;  // an absent table's problems go to its parent
    child.column = state_->column;
    if (n) {
      if (auto* t = n->as_table()) {
        child.table = t;
        auto pos = t->source().begin;
        if (pos.line == 0 && state_->table) pos = key_position(*state_->table, key);
        child.line = static_cast<int>(pos.line);
        child.column = static_cast<int>(pos.column);
      } else {
        r.wrong_type(key, *n, "a table");
      }
    }
  }
  return Section(doc_, &child);
}

std::vector<Section> Section::sections(std::string_view key) {
  Reader r(*doc_, *state_);
  const toml::node* n = r.lookup(key);
  EffEntry& e = state_->eff->at(key);
  e.kind = EffEntry::Kind::TableArray;
  std::vector<Section> out;
  if (!n) return out;
  auto* arr = n->as_array();
  if (!arr) {
    r.wrong_type(key, *n, "an array of tables ([[" + key_path(*state_, key) + "]])");
    return out;
  }
  std::string base = key_path(*state_, key);
  for (size_t i = 0; i < arr->size(); ++i) {
    const toml::node& elem = *arr->get(i);
    std::string path = base + "[" + std::to_string(i) + "]";
    auto [it, inserted] = doc_->sections.try_emplace(path);
    SectionState& child = it->second;
    if (inserted) {
      child.path = path;
      if (e.array.size() <= i) e.array.push_back(doc_->new_eff());
      child.eff = e.array[i];
      auto pos = elem.source().begin;
      child.line = static_cast<int>(pos.line);
      child.column = static_cast<int>(pos.column);
      if (auto* t = elem.as_table()) {
        child.table = t;
      } else {
        r.problem_at(path, elem, "expected a table, got " + std::string(type_name(elem)));
      }
    }
    out.push_back(Section(doc_, &child));
  }
  return out;
}

bool Section::has(std::string_view key) const { return state_->table && state_->table->contains(key); }

std::vector<std::string> Section::keys() const {
  std::vector<std::string> out;
  if (state_->table) {
    for (auto&& [k, v] : *state_->table) out.push_back(std::string(k.str()));
  }
  return out;
}

void Section::finish() {
  if (!state_->table) return;
  for (auto&& [k, v] : *state_->table) {
    if (state_->read.contains(k.str())) continue;
    std::string message = "unknown key";
    // Suggest the one known key a typo away, if there is exactly one best.
    std::string_view best;
    size_t best_distance = 3;
    bool tie = false;
    for (auto& known : state_->read) {
      size_t d = edit_distance(k.str(), known);
      if (d < best_distance) {
        best = known;
        best_distance = d;
        tie = false;
      } else if (d == best_distance) {
        tie = true;
      }
    }
    if (!best.empty() && !tie && best_distance < k.str().size()) message += " (did you mean " + quote(best) + "?)";
    auto pos = k.source().begin;
    if (pos.line == 0) pos = v.source().begin;
    doc_->add(Problem{doc_->file, static_cast<int>(pos.line), static_cast<int>(pos.column), key_path(*state_, k.str()),
                      std::move(message)});
  }
}

void Section::error(std::string_view key, std::string message) {
  Reader r(*doc_, *state_);
  const toml::node* n = state_->table ? state_->table->get(key) : nullptr;
  r.problem(key, n, std::move(message));
}

const std::string& Section::path() const { return state_->path; }

// ---- Document ------------------------------------------------------------------------------------

Document::Document() : state_(std::make_unique<detail::DocState>()) {}
Document::Document(Document&&) noexcept = default;
Document& Document::operator=(Document&&) noexcept = default;
Document::~Document() = default;

Document Document::parse(std::string_view text, std::string file_name) {
  Document d;
  DocState& s = *d.state_;
  s.file = std::move(file_name);
  try {
    s.root = toml::parse(text, std::string_view(s.file));
  } catch (const toml::parse_error& e) {
    auto pos = e.source().begin;
    s.add(Problem{s.file, static_cast<int>(pos.line), static_cast<int>(pos.column), "", std::string(e.description())});
  }
  SectionState& root = s.sections[""];
  root.table = &s.root;
  root.eff = s.new_eff();
  return d;
}

Document Document::load_file(const std::string& path) {
  // Bounded so a config path pointing at /dev/zero or a log file fails fast instead of eating memory.
  constexpr size_t kMaxBytes = 16u << 20;
  std::string text;
  std::FILE* f = std::fopen(path.c_str(), "rb");
  int error = f ? 0 : errno;
  if (f) {
    char buf[65536];
    while (text.size() <= kMaxBytes) {
      size_t n = std::fread(buf, 1, sizeof buf, f);
      text.append(buf, n);
      if (n < sizeof buf) {
        if (std::ferror(f)) error = errno ? errno : EIO;
        break;
      }
    }
    std::fclose(f);
  }
  if (error == 0 && text.size() > kMaxBytes) {
    Document d = parse("", path);
    d.state_->add(Problem{path, 0, 0, "", "file is larger than 16 MiB"});
    return d;
  }
  if (error != 0) {
    Document d = parse("", path);
    d.state_->add(Problem{path, 0, 0, "", std::string("cannot read: ") + std::strerror(error)});
    return d;
  }
  return parse(text, path);
}

Section Document::root() { return Section(state_.get(), &state_->sections.at("")); }

void Document::finish() {
  for (auto& [path, s] : state_->sections) Section(state_.get(), &s).finish();
}

const std::vector<Problem>& Document::problems() const { return state_->problems; }
bool Document::ok() const { return state_->problems.empty(); }
const std::string& Document::file() const { return state_->file; }

common::Result<void> Document::status() const {
  if (ok()) return {};
  std::string detail;
  for (auto& p : state_->problems) {
    if (!detail.empty()) detail += "; ";
    detail += p.to_string();
  }
  return common::fail(common::ErrorKind::Config, std::move(detail));
}

std::string Document::problems_text() const {
  std::string out;
  for (auto& p : state_->problems) {
    out += p.to_string();
    out += '\n';
  }
  size_t n = state_->problems.size();
  out += state_->file + ": " + std::to_string(n) + (n == 1 ? " problem\n" : " problems\n");
  return out;
}

namespace {

std::string join_path(const std::string& header, const std::string& key) {
  return header.empty() ? key_text(key) : header + "." + key_text(key);
}

void emit_table(const EffTable& t, const std::string& header, std::string& out) {
  // TOML: a table's own keys come before its sub-tables. Defaults get an aligned comment.
  std::vector<std::pair<std::string, bool>> lines;
  for (auto& e : t.entries) {
    if (e.kind == EffEntry::Kind::Value && e.unset) lines.emplace_back("# " + key_text(e.key) + " is not set", false);
    if (e.kind == EffEntry::Kind::Value && !e.unset) lines.emplace_back(key_text(e.key) + " = " + e.value, e.is_default);
    if (e.kind == EffEntry::Kind::TableArray && e.array.empty()) lines.emplace_back(key_text(e.key) + " = []", true);
  }
  size_t width = 0;
  for (auto& [line, is_default] : lines) {
    if (is_default) width = std::max(width, line.size());
  }
  for (auto& [line, is_default] : lines) {
    out += line;
    if (is_default) {
      out.append(width - line.size() + 2, ' ');
      out += "# default";
    }
    out += '\n';
  }
  for (auto& e : t.entries) {
    std::string path = join_path(header, e.key);
    if (e.kind == EffEntry::Kind::Table) {
      out += "\n[" + path + "]\n";
      emit_table(*e.table, path, out);
    } else if (e.kind == EffEntry::Kind::TableArray) {
      for (auto* elem : e.array) {
        out += "\n[[" + path + "]]\n";
        emit_table(*elem, path, out);
      }
    }
  }
}

}  // namespace

std::string Document::effective_toml() const {
  std::string file = state_->file;
  std::replace_if(file.begin(), file.end(), [](char c) { return static_cast<unsigned char>(c) < 0x20; }, '?');
  std::string out = "# Effective configuration read from " + file + "\n# Keys marked \"default\" are not set in the file.\n";
  emit_table(*state_->sections.at("").eff, "", out);
  return out;
}

int check_config(const Document& doc, std::FILE* out, std::FILE* err) {
  if (!doc.ok()) {
    std::string text = doc.problems_text();
    std::fwrite(text.data(), 1, text.size(), err);
    std::fflush(err);
    return 1;
  }
  std::string text = doc.effective_toml();
  std::fwrite(text.data(), 1, text.size(), out);
  std::fflush(out);
  return 0;
}

}  // namespace common::config
