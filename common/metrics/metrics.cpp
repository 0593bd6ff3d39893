// metrics.cpp: registration, the lock-free label-set lookup and the text-format renderer.
#include "common/metrics/metrics.hpp"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <cstdlib>

namespace common::metrics {

namespace {

// Longest label value kept: a client-fed label cannot make one sample line huge.
constexpr size_t kMaxLabelValue = 256;

// Registration mistakes are bugs in the daemon, found on its first start: stop loudly.
[[noreturn]] void misuse(const std::string& message) {
  std::fprintf(stderr, "metrics: %s\n", message.c_str());
  std::fflush(stderr);
  std::abort();
}

// Length of the valid UTF-8 sequence at s[i], or 0 (overlongs and surrogates are invalid).
size_t utf8_length(std::string_view s, size_t i) {
  auto at = [&](size_t k) { return static_cast<unsigned char>(s[k]); };
  unsigned char c = at(i);
  if (c < 0x80) return 1;
  size_t n = 0;
  unsigned char lo = 0x80, hi = 0xBF;
  if (c >= 0xC2 && c <= 0xDF) {
    n = 2;
  } else if (c >= 0xE0 && c <= 0xEF) {
    n = 3;
    if (c == 0xE0) lo = 0xA0;
    if (c == 0xED) hi = 0x9F;
  } else if (c >= 0xF0 && c <= 0xF4) {
    n = 4;
    if (c == 0xF0) lo = 0x90;
    if (c == 0xF4) hi = 0x8F;
  } else {
    return 0;
  }
  if (i + n > s.size()) return 0;
  if (at(i + 1) < lo || at(i + 1) > hi) return 0;
  for (size_t k = 2; k < n; ++k) {
    if (at(i + k) < 0x80 || at(i + k) > 0xBF) return 0;
  }
  return n;
}

bool clean_label_value(std::string_view s) {
  if (s.size() > kMaxLabelValue) return false;
  for (size_t i = 0; i < s.size();) {
    size_t n = utf8_length(s, i);
    if (n == 0) return false;
    i += n;
  }
  return true;
}

// Scrapers reject invalid UTF-8, so bad bytes become U+FFFD; the value is cut at a character.
std::string sanitize_label_value(std::string_view s) {
  static constexpr std::string_view kReplacement = "\xEF\xBF\xBD";
  std::string out;
  for (size_t i = 0; i < s.size();) {
    size_t n = utf8_length(s, i);
    std::string_view piece = n ? s.substr(i, n) : kReplacement;
    if (out.size() + piece.size() > kMaxLabelValue) break;
    out += piece;
    i += n ? n : 1;
  }
  return out;
}

size_t hash_values(std::span<const std::string_view> values) {
  size_t h = 0xcbf29ce484222325ull;
  for (auto v : values) h = (h ^ std::hash<std::string_view>{}(v)) * 0x100000001b3ull;
  return h;
}

void append_help(std::string& out, std::string_view help) {
  for (char c : help) {
    if (c == '\\') {
      out += "\\\\";
    } else if (c == '\n') {
      out += "\\n";
    } else {
      out += c;
    }
  }
}

std::string_view type_text(MetricType t) {
  switch (t) {
    case MetricType::Counter: return "counter";
    case MetricType::Gauge: return "gauge";
    case MetricType::Histogram: return "histogram";
  }
  return "untyped";
}

void append_header(std::string& out, const std::string& name, const std::string& help, MetricType type) {
  out += "# HELP ";
  out += name;
  out += ' ';
  append_help(out, help);
  out += "\n# TYPE ";
  out += name;
  out += ' ';
  out += type_text(type);
  out += '\n';
}

// A gauge or counter whose value is computed at scrape time.
class CallbackFamily final : public detail::FamilyBase {
 public:
  CallbackFamily(MetricType type, std::string name, std::string help, std::function<double()> fn)
      : FamilyBase(type, std::move(name), std::move(help), {}, {}), fn_(std::move(fn)) {}

  void set(std::function<double()> fn) { fn_ = std::move(fn); }

  void render(std::string& out) const override {
    append_header(out, name(), help(), type());
    out += name();
    out += ' ';
    out += format_value(fn_ ? fn_() : std::nan(""));
    out += '\n';
  }

 private:
  std::unique_ptr<detail::ChildBase> make_child() const override { return nullptr; }
  void render_child(const detail::ChildBase&, std::string&) const override {}
  std::function<double()> fn_;
};

}  // namespace

// ---- Names and values ----------------------------------------------------------------------------

bool valid_metric_name(std::string_view name) {
  if (name.empty()) return false;
  for (size_t i = 0; i < name.size(); ++i) {
    char c = name[i];
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || c == ':' || (i > 0 && c >= '0' && c <= '9');
    if (!ok) return false;
  }
  return true;
}

bool valid_label_name(std::string_view name) {
  if (name.empty() || name.starts_with("__")) return false;
  for (size_t i = 0; i < name.size(); ++i) {
    char c = name[i];
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || (i > 0 && c >= '0' && c <= '9');
    if (!ok) return false;
  }
  return true;
}

void append_label_value(std::string& out, std::string_view value) {
  for (char c : value) {
    if (c == '\\') {
      out += "\\\\";
    } else if (c == '"') {
      out += "\\\"";
    } else if (c == '\n') {
      out += "\\n";
    } else {
      out += c;
    }
  }
}

std::string format_value(double v) {
  if (std::isnan(v)) return "NaN";
  if (std::isinf(v)) return v > 0 ? "+Inf" : "-Inf";
  char buf[64];
  auto res = std::to_chars(buf, buf + sizeof buf, v);
  return std::string(buf, res.ptr);
}

// ---- Histogram -----------------------------------------------------------------------------------

Histogram::Histogram(std::span<const double> bounds)
    : bounds_(bounds), counts_(std::make_unique<std::atomic<uint64_t>[]>(bounds.size() + 1)) {}

void Histogram::observe(double v) {
  // First bound >= v: `le` is inclusive. NaN belongs to no finite bucket.
  size_t i = std::isnan(v) ? bounds_.size()
                           : static_cast<size_t>(std::lower_bound(bounds_.begin(), bounds_.end(), v) - bounds_.begin());
  counts_[i].fetch_add(1, std::memory_order_relaxed);
  sum_.fetch_add(v, std::memory_order_relaxed);
}

uint64_t Histogram::count() const {
  uint64_t n = 0;
  for (size_t i = 0; i <= bounds_.size(); ++i) n += bucket_count(i);
  return n;
}

std::vector<double> default_latency_buckets() { return {0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10}; }

std::vector<double> exponential_buckets(double start, double factor, size_t count) {
  std::vector<double> out;
  double v = start;
  for (size_t i = 0; i < count; ++i, v *= factor) out.push_back(v);
  return out;
}

// ---- FamilyBase ----------------------------------------------------------------------------------

namespace detail {

FamilyBase::FamilyBase(MetricType type, std::string name, std::string help, std::vector<std::string> label_names,
                       std::vector<double> bounds)
    : type_(type),
      name_(std::move(name)),
      help_(std::move(help)),
      label_names_(std::move(label_names)),
      bounds_(std::move(bounds)) {}

FamilyBase::~FamilyBase() = default;

void FamilyBase::set_max_label_sets(size_t n) {
  std::lock_guard lock(mu_);
  max_label_sets_ = std::max<size_t>(n, 1);
}

size_t FamilyBase::label_sets() const {
  std::lock_guard lock(mu_);
  return children_.size();
}

ChildBase* FamilyBase::find(std::span<const std::string_view> values, size_t hash) const {
  for (ChildBase* c = heads_[hash % kBuckets].load(std::memory_order_acquire); c; c = c->next) {
    if (c->hash == hash && std::equal(values.begin(), values.end(), c->values.begin(), c->values.end())) return c;
  }
  return nullptr;
}

ChildBase& FamilyBase::find_or_create(std::span<const std::string_view> values) {
  if (values.size() != label_names_.size()) {
    misuse(name_ + ": " + std::to_string(values.size()) + " label values for " + std::to_string(label_names_.size()) +
           " label names");
  }
  std::vector<std::string> sanitized;
  std::vector<std::string_view> views;
  if (!std::all_of(values.begin(), values.end(), clean_label_value)) {
    for (auto v : values) sanitized.push_back(sanitize_label_value(v));
    views.assign(sanitized.begin(), sanitized.end());
    values = views;
  }
  size_t hash = hash_values(values);
  if (ChildBase* c = find(values, hash)) return *c;  // the common case: no lock

  std::lock_guard lock(mu_);
  if (ChildBase* c = find(values, hash)) return *c;
  std::vector<std::string_view> overflow;
  if (children_.size() >= max_label_sets_) {
    if (overflow_) return *overflow_;
    overflow.assign(label_names_.size(), kOverflowValue);
    values = overflow;
    hash = hash_values(values);
    if (ChildBase* c = find(values, hash)) return *(overflow_ = c);
  }
  std::unique_ptr<ChildBase> child = make_child();
  child->values.assign(values.begin(), values.end());
  child->hash = hash;
  auto& head = heads_[hash % kBuckets];
  child->next = head.load(std::memory_order_relaxed);
  ChildBase* raw = child.get();
  children_.push_back(std::move(child));
  head.store(raw, std::memory_order_release);  // publish: readers see a fully built child
  if (children_.size() > max_label_sets_) overflow_ = raw;
  return *raw;
}

void FamilyBase::render(std::string& out) const {
  std::vector<const ChildBase*> children;
  {
    std::lock_guard lock(mu_);
    for (auto& c : children_) children.push_back(c.get());
  }
  if (children.empty()) return;
  std::sort(children.begin(), children.end(),
            [](const ChildBase* a, const ChildBase* b) { return a->values < b->values; });
  append_header(out, name_, help_, type_);
  for (auto* c : children) render_child(*c, out);
}

void FamilyBase::render_sample(std::string& out, std::string_view suffix, const ChildBase& child,
                               std::string_view extra_label, std::string_view extra_value, std::string_view value) const {
  out += name_;
  out += suffix;
  if (!label_names_.empty() || !extra_label.empty()) {
    out += '{';
    for (size_t i = 0; i < label_names_.size(); ++i) {
      if (i) out += ',';
      out += label_names_[i];
      out += "=\"";
      append_label_value(out, child.values[i]);
      out += '"';
    }
    if (!extra_label.empty()) {
      if (!label_names_.empty()) out += ',';
      out += extra_label;
      out += "=\"";
      append_label_value(out, extra_value);
      out += '"';
    }
    out += '}';
  }
  out += ' ';
  out += value;
  out += '\n';
}

}  // namespace detail

template <>
void Family<Counter>::render_child(const detail::ChildBase& child, std::string& out) const {
  render_sample(out, "", child, "", "", std::to_string(static_cast<const Child&>(child).metric.value()));
}

template <>
void Family<Gauge>::render_child(const detail::ChildBase& child, std::string& out) const {
  render_sample(out, "", child, "", "", std::to_string(static_cast<const Child&>(child).metric.value()));
}

template <>
void Family<Histogram>::render_child(const detail::ChildBase& child, std::string& out) const {
  const Histogram& h = static_cast<const Child&>(child).metric;
  // Buckets are stored apart and summed here, so buckets stay cumulative and +Inf == _count even
  // while observations race with the scrape.
  uint64_t cumulative = 0;
  for (size_t i = 0; i < h.bounds().size(); ++i) {
    cumulative += h.bucket_count(i);
    render_sample(out, "_bucket", child, "le", format_value(h.bounds()[i]), std::to_string(cumulative));
  }
  cumulative += h.bucket_count(h.bounds().size());
  render_sample(out, "_bucket", child, "le", "+Inf", std::to_string(cumulative));
  render_sample(out, "_sum", child, "", "", format_value(h.sum()));
  render_sample(out, "_count", child, "", "", std::to_string(cumulative));
}

// ---- Registry ------------------------------------------------------------------------------------

Registry::Registry() = default;
Registry::~Registry() = default;

detail::FamilyBase& Registry::add(MetricType type, std::string name, std::string help,
                                  std::vector<std::string> label_names, std::vector<double> bounds) {
  if (!valid_metric_name(name)) misuse("invalid metric name \"" + name + "\"");
  for (size_t i = 0; i < label_names.size(); ++i) {
    const auto& l = label_names[i];
    if (!valid_label_name(l)) misuse(name + ": invalid label name \"" + l + "\"");
    if (type == MetricType::Histogram && l == "le") misuse(name + ": \"le\" is reserved in histograms");
    if (std::find(label_names.begin(), label_names.begin() + static_cast<ptrdiff_t>(i), l) !=
        label_names.begin() + static_cast<ptrdiff_t>(i)) {
      misuse(name + ": label \"" + l + "\" given twice");
    }
  }
  for (size_t i = 0; i < bounds.size(); ++i) {
    if (!std::isfinite(bounds[i]) || (i > 0 && !(bounds[i] > bounds[i - 1]))) {
      misuse(name + ": histogram bounds must be finite and strictly increasing");
    }
  }

  std::lock_guard lock(mu_);
  if (auto it = families_.find(name); it != families_.end()) {
    detail::FamilyBase& f = *it->second;
    if (f.type() != type || f.label_names() != label_names || f.bounds() != bounds ||
        dynamic_cast<CallbackFamily*>(&f) != nullptr) {
      misuse("metric \"" + name + "\" registered twice with a different type, labels or buckets");
    }
    return f;
  }
  std::unique_ptr<detail::FamilyBase> f;
  switch (type) {
    case MetricType::Counter:
      f = std::make_unique<Family<Counter>>(type, name, std::move(help), std::move(label_names), std::move(bounds));
      break;
    case MetricType::Gauge:
      f = std::make_unique<Family<Gauge>>(type, name, std::move(help), std::move(label_names), std::move(bounds));
      break;
    case MetricType::Histogram:
      f = std::make_unique<Family<Histogram>>(type, name, std::move(help), std::move(label_names), std::move(bounds));
      break;
  }
  auto& ref = *f;
  families_.emplace(std::move(name), std::move(f));
  return ref;
}

Counter& Registry::counter(std::string name, std::string help) {
  return counter_family(std::move(name), std::move(help), {}).with({});
}

Family<Counter>& Registry::counter_family(std::string name, std::string help, std::vector<std::string> label_names) {
  return static_cast<Family<Counter>&>(
      add(MetricType::Counter, std::move(name), std::move(help), std::move(label_names), {}));
}

Gauge& Registry::gauge(std::string name, std::string help) {
  return gauge_family(std::move(name), std::move(help), {}).with({});
}

Family<Gauge>& Registry::gauge_family(std::string name, std::string help, std::vector<std::string> label_names) {
  return static_cast<Family<Gauge>&>(
      add(MetricType::Gauge, std::move(name), std::move(help), std::move(label_names), {}));
}

Histogram& Registry::histogram(std::string name, std::string help, std::vector<double> bounds) {
  return histogram_family(std::move(name), std::move(help), {}, std::move(bounds)).with({});
}

Family<Histogram>& Registry::histogram_family(std::string name, std::string help,
                                              std::vector<std::string> label_names, std::vector<double> bounds) {
  return static_cast<Family<Histogram>&>(
      add(MetricType::Histogram, std::move(name), std::move(help), std::move(label_names), std::move(bounds)));
}

void Registry::add_callback(MetricType type, std::string name, std::string help, std::function<double()> fn) {
  if (!valid_metric_name(name)) misuse("invalid metric name \"" + name + "\"");
  std::lock_guard lock(mu_);
  if (auto it = families_.find(name); it != families_.end()) {
    auto* cb = dynamic_cast<CallbackFamily*>(it->second.get());
    if (!cb || cb->type() != type) misuse("metric \"" + name + "\" registered twice with a different type");
    cb->set(std::move(fn));
    return;
  }
  auto f = std::make_unique<CallbackFamily>(type, name, std::move(help), std::move(fn));
  families_.emplace(std::move(name), std::move(f));
}

void Registry::callback_gauge(std::string name, std::string help, std::function<double()> fn) {
  add_callback(MetricType::Gauge, std::move(name), std::move(help), std::move(fn));
}

void Registry::callback_counter(std::string name, std::string help, std::function<double()> fn) {
  add_callback(MetricType::Counter, std::move(name), std::move(help), std::move(fn));
}

bool Registry::contains(std::string_view name) const {
  std::lock_guard lock(mu_);
  return families_.find(name) != families_.end();
}

std::string Registry::render() const {
  std::string out;
  std::lock_guard lock(mu_);
  for (auto& [name, family] : families_) family->render(out);
  return out;
}

Registry& default_registry() {
  // Never destroyed: metric references cached in other statics stay valid through exit.
  static Registry* registry = new Registry;
  return *registry;
}

}  // namespace common::metrics
