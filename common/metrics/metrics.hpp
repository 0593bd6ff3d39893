// metrics.hpp: counters, gauges and histograms rendered in the Prometheus text format 0.0.4.
// Updates are lock-free atomics; a mutex is taken only to create a metric or a new label set.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <functional>
#include <initializer_list>
#include <map>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

namespace common::metrics {

enum class MetricType : uint8_t { Counter, Gauge, Histogram };

class Counter {
 public:
  void inc(uint64_t n = 1) { value_.fetch_add(n, std::memory_order_relaxed); }
  uint64_t value() const { return value_.load(std::memory_order_relaxed); }

 private:
  std::atomic<uint64_t> value_{0};
};

class Gauge {
 public:
  void set(int64_t v) { value_.store(v, std::memory_order_relaxed); }
  void add(int64_t n) { value_.fetch_add(n, std::memory_order_relaxed); }
  void sub(int64_t n) { value_.fetch_sub(n, std::memory_order_relaxed); }
  void inc() { add(1); }
  void dec() { sub(1); }
  int64_t value() const { return value_.load(std::memory_order_relaxed); }

 private:
  std::atomic<int64_t> value_{0};
};

// Fixed upper bounds (each `le`, inclusive) chosen at creation, plus +Inf.
class Histogram {
 public:
  explicit Histogram(std::span<const double> bounds);
  void observe(double v);

  std::span<const double> bounds() const { return bounds_; }
  // Non-cumulative count of bucket i; i == bounds().size() is the +Inf overflow bucket.
  uint64_t bucket_count(size_t i) const { return counts_[i].load(std::memory_order_relaxed); }
  uint64_t count() const;  // the sum of all buckets, so it always equals the +Inf bucket
  double sum() const { return sum_.load(std::memory_order_relaxed); }

 private:
  std::span<const double> bounds_;  // owned by the family, which outlives this
  std::unique_ptr<std::atomic<uint64_t>[]> counts_;
  std::atomic<double> sum_{0.0};
};

// Bucket helpers. Latency in seconds: 5ms .. 10s, the Prometheus client default.
std::vector<double> default_latency_buckets();
// start, start*factor, ... (count bounds). Sizes: exponential_buckets(1024, 4, 8) = 1k .. 16M.
std::vector<double> exponential_buckets(double start, double factor, size_t count);

namespace detail {

struct ChildBase {
  virtual ~ChildBase() = default;
  std::vector<std::string> values;  // label values, already sanitised
  size_t hash = 0;
  ChildBase* next = nullptr;  // bucket chain; written once before the node is published
};

// The type-independent half of a family: registration data, the lock-free label-set lookup and
// rendering.
class FamilyBase {
 public:
  FamilyBase(MetricType type, std::string name, std::string help, std::vector<std::string> label_names,
             std::vector<double> bounds);
  virtual ~FamilyBase();
  FamilyBase(const FamilyBase&) = delete;
  FamilyBase& operator=(const FamilyBase&) = delete;

  MetricType type() const { return type_; }
  const std::string& name() const { return name_; }
  const std::string& help() const { return help_; }
  const std::vector<std::string>& label_names() const { return label_names_; }
  const std::vector<double>& bounds() const { return bounds_; }

  // Label sets beyond this share one child whose values are all kOverflowValue, so a label fed
  // by clients cannot grow memory without bound.
  void set_max_label_sets(size_t n);
  size_t label_sets() const;

  virtual void render(std::string& out) const;

 protected:
  ChildBase& find_or_create(std::span<const std::string_view> values);
  virtual std::unique_ptr<ChildBase> make_child() const = 0;
  virtual void render_child(const ChildBase& child, std::string& out) const = 0;
  // name{labels,extra_label="extra_value"} value
  void render_sample(std::string& out, std::string_view suffix, const ChildBase& child, std::string_view extra_label,
                     std::string_view extra_value, std::string_view value) const;

 private:
  ChildBase* find(std::span<const std::string_view> values, size_t hash) const;

  static constexpr size_t kBuckets = 64;
  MetricType type_;
  std::string name_;
  std::string help_;
  std::vector<std::string> label_names_;
  std::vector<double> bounds_;
  std::array<std::atomic<ChildBase*>, kBuckets> heads_{};
  mutable std::mutex mu_;  // guards children_ and creation
  std::vector<std::unique_ptr<ChildBase>> children_;
  size_t max_label_sets_ = 10000;
  ChildBase* overflow_ = nullptr;
};

}  // namespace detail

inline constexpr std::string_view kOverflowValue = "__overflow__";

// All metrics of one name: one child per set of label values. A metric without labels is a
// family with one child. Children never move or die before the registry: cache the references.
template <class M>
class Family final : public detail::FamilyBase {
 public:
  using FamilyBase::FamilyBase;

  // Values in the order of the label names; their count must match (else abort: a bug).
  // Any bytes are fine: invalid UTF-8 becomes U+FFFD and values are cut at 256 bytes.
  M& with(std::initializer_list<std::string_view> values) {
    return with(std::span<const std::string_view>(values.begin(), values.size()));
  }
  M& with(std::span<const std::string_view> values) {
    return static_cast<Child&>(find_or_create(values)).metric;
  }

 private:
  struct Child : detail::ChildBase {
    explicit Child(const Family& f) : metric(make(f)) {}
    static M make(const Family& f) {
      if constexpr (std::is_same_v<M, Histogram>) {
        return M(f.bounds());
      } else {
        (void)f;
        return M();
      }
    }
    M metric;
  };
  std::unique_ptr<detail::ChildBase> make_child() const override { return std::make_unique<Child>(*this); }
  void render_child(const detail::ChildBase& child, std::string& out) const override;
};

template <>
void Family<Counter>::render_child(const detail::ChildBase& child, std::string& out) const;
template <>
void Family<Gauge>::render_child(const detail::ChildBase& child, std::string& out) const;
template <>
void Family<Histogram>::render_child(const detail::ChildBase& child, std::string& out) const;

class Registry {
 public:
  Registry();
  ~Registry();
  Registry(const Registry&) = delete;
  Registry& operator=(const Registry&) = delete;

  // Registering a name again with the same type, label names (and buckets) returns the same
  // object; any other reuse of a name, or a name or label name outside the Prometheus grammar,
  // is a programming error and aborts with a message. The first help text is kept.
  Counter& counter(std::string name, std::string help);
  Family<Counter>& counter_family(std::string name, std::string help, std::vector<std::string> label_names);
  Gauge& gauge(std::string name, std::string help);
  Family<Gauge>& gauge_family(std::string name, std::string help, std::vector<std::string> label_names);
  // Bounds must be finite and strictly increasing; +Inf is always added.
  Histogram& histogram(std::string name, std::string help, std::vector<double> bounds);
  Family<Histogram>& histogram_family(std::string name, std::string help, std::vector<std::string> label_names,
                                      std::vector<double> bounds);

  // Values computed when scraped (process RSS, queue length). Called under the registry lock:
  // `fn` must not register metrics. Registering the same name again replaces the function.
  void callback_gauge(std::string name, std::string help, std::function<double()> fn);
  void callback_counter(std::string name, std::string help, std::function<double()> fn);

  bool contains(std::string_view name) const;

  // Text format 0.0.4: families sorted by name, each with # HELP and # TYPE once, children sorted
  // by label values; families with labels but no children yet are left out.
  std::string render() const;

 private:
  detail::FamilyBase& add(MetricType type, std::string name, std::string help, std::vector<std::string> label_names,
                          std::vector<double> bounds);
  void add_callback(MetricType type, std::string name, std::string help, std::function<double()> fn);

  mutable std::mutex mu_;
  std::map<std::string, std::unique_ptr<detail::FamilyBase>, std::less<>> families_;
};

// The process-wide registry the daemon skeleton serves.
Registry& default_registry();

// process_resident_memory_bytes, process_virtual_memory_bytes, process_open_fds,
// process_max_fds, process_start_time_seconds, process_cpu_seconds_total (from /proc/self and
// getrusage). Calling it again is harmless.
void register_process_metrics(Registry& registry);

// Exposed for tests and other text formats.
bool valid_metric_name(std::string_view name);  // [a-zA-Z_:][a-zA-Z0-9_:]*
bool valid_label_name(std::string_view name);   // [a-zA-Z_][a-zA-Z0-9_]*, not starting "__"
// Appends a label value escaped for the text format: \ -> \\, " -> \", newline -> \n.
void append_label_value(std::string& out, std::string_view value);
// Go-style shortest form; +Inf, -Inf, NaN.
std::string format_value(double v);

}  // namespace common::metrics
