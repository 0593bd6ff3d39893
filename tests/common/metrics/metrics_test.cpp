// metrics_test.cpp: counters, gauges, histograms, label escaping, concurrency and the exact text
// exposition format (0.0.4) the registry renders.
#include <catch2/catch.hpp>

#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <cstdlib>
#include <map>
#include <set>
#include <sstream>
#include <thread>

#include "common/metrics/metrics.hpp"

using common::metrics::Counter;
using common::metrics::Registry;

namespace {

std::vector<std::string> lines(const std::string& text) {
  std::vector<std::string> out;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) out.push_back(line);
  return out;
}

// A checker for the text format, independent of the renderer: every line is a HELP, a TYPE or a
// sample; HELP and TYPE come once per family before its samples; a family's samples are together;
// names and label names follow the grammar; label values are properly quoted. Returns the samples
// as "name{labels}" -> value text.
std::map<std::string, std::string> check_exposition(const std::string& text) {
  std::map<std::string, std::string> samples;
  REQUIRE((text.empty() || text.back() == '\n'));
  std::set<std::string> families_seen;
  std::string current;  // family whose samples are being read
  std::map<std::string, std::string> types;
  for (auto& line : lines(text)) {
    INFO(line);
    REQUIRE_FALSE(line.empty());
    if (line.starts_with("# HELP ") || line.starts_with("# TYPE ")) {
      auto rest = line.substr(7);
      auto name = rest.substr(0, rest.find(' '));
      REQUIRE(common::metrics::valid_metric_name(name));
      if (line.starts_with("# HELP ")) {
        REQUIRE(families_seen.insert(name).second);  // HELP once, and first
        current = name;
      } else {
        REQUIRE(name == current);
        REQUIRE_FALSE(types.contains(name));
        auto type = rest.substr(name.size() + 1);
        REQUIRE((type == "counter" || type == "gauge" || type == "histogram"));
        types[name] = type;
      }
      continue;
    }
    REQUIRE(line[0] != '#');
    size_t i = 0;
    while (i < line.size() && line[i] != '{' && line[i] != ' ') ++i;
    std::string name = line.substr(0, i);
    REQUIRE(common::metrics::valid_metric_name(name));
    // A sample belongs to the current family: the name itself or, for histograms, a suffix.
    bool belongs = name == current;
    if (types[current] == "histogram") {
      belongs = name == current + "_bucket" || name == current + "_sum" || name == current + "_count";
    }
    REQUIRE(belongs);
    std::string key = name;
    if (line[i] == '{') {
      size_t j = i + 1;
      bool first = true;
      while (line.at(j) != '}') {
        if (!first) {
          REQUIRE(line[j] == ',');
          ++j;
        }
        first = false;
        size_t eq = line.find('=', j);
        REQUIRE(eq != std::string::npos);
        REQUIRE(common::metrics::valid_label_name(line.substr(j, eq - j)));
        REQUIRE(line.at(eq + 1) == '"');
        j = eq + 2;
        while (line.at(j) != '"') {
          if (line[j] == '\\') {
            REQUIRE((line.at(j + 1) == '\\' || line[j + 1] == '"' || line[j + 1] == 'n'));
            ++j;
          }
          ++j;
        }
        ++j;
      }
      key = line.substr(0, j + 1);
      i = j + 1;
    }
    REQUIRE(line.at(i) == ' ');
    std::string value = line.substr(i + 1);
    bool numeric = value == "+Inf" || value == "-Inf" || value == "NaN";
    if (!numeric) {
      char* end = nullptr;
      std::strtod(value.c_str(), &end);
      numeric = !value.empty() && *end == '\0';
    }
    REQUIRE(numeric);
    REQUIRE(samples.emplace(key, value).second);
  }
  return samples;
}

// Runs `fn` in a child process; true when the child aborted (SIGABRT).
template <class Fn>
bool aborts(Fn fn) {
  std::fflush(nullptr);
  pid_t pid = fork();
  if (pid == 0) {
    // The child's abort message is expected; keep the test output clean.
    std::freopen("/dev/null", "w", stderr);
    fn();
    std::_Exit(0);
  }
  int status = 0;
  waitpid(pid, &status, 0);
  return WIFSIGNALED(status) && WTERMSIG(status) == SIGABRT;
}

}  // namespace

TEST_CASE("counters and gauges count and registering again returns the same object", "[metrics]") {
  Registry r;
  Counter& c = r.counter("mta_connections_total", "Connections accepted.");
  c.inc();
  c.inc(41);
  CHECK(c.value() == 42);
  CHECK(&r.counter("mta_connections_total", "Other help is ignored.") == &c);
  auto& g = r.gauge("mta_sessions", "Open sessions.");
  g.set(10);
  g.add(5);
  g.sub(2);
  g.inc();
  g.dec();
  g.dec();
  CHECK(g.value() == 12);
  g.add(-20);
  CHECK(g.value() == -8);
  auto& fam = r.counter_family("mta_rejects_total", "Refusals.", {"reason"});
  CHECK(&fam == &r.counter_family("mta_rejects_total", "", {"reason"}));
  CHECK(&fam.with({"rbl"}) == &fam.with({"rbl"}));
  CHECK(&fam.with({"rbl"}) != &fam.with({"relay"}));
  CHECK(r.contains("mta_rejects_total"));
  CHECK_FALSE(r.contains("nope"));
}

TEST_CASE("render prints HELP and TYPE once per family, sorted, with exact samples", "[metrics]") {
  Registry r;
  auto& rejects = r.counter_family("mta_rejects_total", "Refusals by reason.", {"reason", "phase"});
  rejects.with({"relay", "rcpt"}).inc(3);
  rejects.with({"rbl", "connect"}).inc();
  rejects.with({"bad_command", "helo"}).inc(0);
  r.gauge("mta_sessions", "Open sessions.").set(-2);
  r.counter("a_first_total", "Sorted first.").inc(7);
  r.counter_family("unused_total", "No label sets yet: not printed.", {"x"});
  auto& h = r.histogram("mta_delivery_seconds", "Delivery time.", {0.125, 0.5, 2.5});
  h.observe(0.0625);
  h.observe(0.125);  // le is inclusive
  h.observe(0.25);
  h.observe(7);
  r.callback_gauge("mta_queue_length", "Messages queued.", [] { return 12.5; });

  CHECK(lines(r.render()) == std::vector<std::string>{
                                 "# HELP a_first_total Sorted first.",
                                 "# TYPE a_first_total counter",
                                 "a_first_total 7",
                                 "# HELP mta_delivery_seconds Delivery time.",
                                 "# TYPE mta_delivery_seconds histogram",
                                 "mta_delivery_seconds_bucket{le=\"0.125\"} 2",
                                 "mta_delivery_seconds_bucket{le=\"0.5\"} 3",
                                 "mta_delivery_seconds_bucket{le=\"2.5\"} 3",
                                 "mta_delivery_seconds_bucket{le=\"+Inf\"} 4",
                                 "mta_delivery_seconds_sum 7.4375",
                                 "mta_delivery_seconds_count 4",
                                 "# HELP mta_queue_length Messages queued.",
                                 "# TYPE mta_queue_length gauge",
                                 "mta_queue_length 12.5",
                                 "# HELP mta_rejects_total Refusals by reason.",
                                 "# TYPE mta_rejects_total counter",
                                 "mta_rejects_total{reason=\"bad_command\",phase=\"helo\"} 0",
                                 "mta_rejects_total{reason=\"rbl\",phase=\"connect\"} 1",
                                 "mta_rejects_total{reason=\"relay\",phase=\"rcpt\"} 3",
                                 "# HELP mta_sessions Open sessions.",
                                 "# TYPE mta_sessions gauge",
                                 "mta_sessions -2",
                             });
  check_exposition(r.render());
}

TEST_CASE("histogram families put le after the family's labels, buckets are cumulative", "[metrics]") {
  Registry r;
  auto& fam = r.histogram_family("rpc_seconds", "RPC latency.", {"method"}, {1, 2});
  fam.with({"Get"}).observe(0.5);
  fam.with({"Get"}).observe(1.5);
  fam.with({"Get"}).observe(1.5);
  fam.with({"Put"}).observe(std::nan(""));  // counted in +Inf only
  auto& get = fam.with({"Get"});
  CHECK(get.count() == 3);
  CHECK(get.sum() == 3.5);
  CHECK(get.bucket_count(0) == 1);
  CHECK(get.bucket_count(1) == 2);
  CHECK(get.bucket_count(2) == 0);
  CHECK(lines(r.render()) == std::vector<std::string>{
                                 "# HELP rpc_seconds RPC latency.",
                                 "# TYPE rpc_seconds histogram",
                                 "rpc_seconds_bucket{method=\"Get\",le=\"1\"} 1",
                                 "rpc_seconds_bucket{method=\"Get\",le=\"2\"} 3",
                                 "rpc_seconds_bucket{method=\"Get\",le=\"+Inf\"} 3",
                                 "rpc_seconds_sum{method=\"Get\"} 3.5",
                                 "rpc_seconds_count{method=\"Get\"} 3",
                                 "rpc_seconds_bucket{method=\"Put\",le=\"1\"} 0",
                                 "rpc_seconds_bucket{method=\"Put\",le=\"2\"} 0",
                                 "rpc_seconds_bucket{method=\"Put\",le=\"+Inf\"} 1",
                                 "rpc_seconds_sum{method=\"Put\"} NaN",
                                 "rpc_seconds_count{method=\"Put\"} 1",
                             });
  check_exposition(r.render());
}

TEST_CASE("bucket helpers", "[metrics]") {
  CHECK(common::metrics::default_latency_buckets().front() == 0.005);
  CHECK(common::metrics::default_latency_buckets().back() == 10);
  CHECK(common::metrics::exponential_buckets(1024, 4, 4) == std::vector<double>{1024, 4096, 16384, 65536});
  Registry r;
  auto& h = r.histogram("empty_bounds", "Only +Inf.", {});
  h.observe(1);
  CHECK(lines(r.render())[2] == "empty_bounds_bucket{le=\"+Inf\"} 1");
}

TEST_CASE("label values and help text are escaped, bad UTF-8 and long values are tamed", "[metrics]") {
  Registry r;
  auto& fam = r.counter_family("esc_total", "Help with \\ backslash\nand newline \"quotes\" kept.", {"v"});
  fam.with({"a\\b"}).inc();
  fam.with({"say \"hi\""}).inc();
  fam.with({"two\nlines"}).inc();
  fam.with({"caf\xc3\xa9"}).inc();          // valid UTF-8 stays
  fam.with({"bad\xff\xfe"}).inc();          // invalid bytes become U+FFFD
  fam.with({"bad\xff\xfe"}).inc();          // ... and map to the same child
  fam.with({"\xed\xa0\x80"}).inc();         // a UTF-16 surrogate is not UTF-8
  fam.with({std::string(1000, 'x')}).inc();  // cut at 256 bytes
  fam.with({std::string(300, 'y')}).inc();
  fam.with({std::string(256, 'y') + "zzz"}).inc();  // the same after the cut
  auto text = r.render();
  auto l = lines(text);
  CHECK(l[0] == "# HELP esc_total Help with \\\\ backslash\\nand newline \"quotes\" kept.");
  CHECK(l[1] == "# TYPE esc_total counter");
  std::set<std::string> got(l.begin() + 2, l.end());
  CHECK(got == std::set<std::string>{
                   "esc_total{v=\"a\\\\b\"} 1",
                   "esc_total{v=\"say \\\"hi\\\"\"} 1",
                   "esc_total{v=\"two\\nlines\"} 1",
                   "esc_total{v=\"caf\xc3\xa9\"} 1",
                   "esc_total{v=\"bad\xef\xbf\xbd\xef\xbf\xbd\"} 2",
                   "esc_total{v=\"\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\"} 1",
                   "esc_total{v=\"" + std::string(256, 'x') + "\"} 1",
                   "esc_total{v=\"" + std::string(256, 'y') + "\"} 2",
               });
  check_exposition(text);
}

TEST_CASE("a family stops growing at its label-set limit", "[metrics]") {
  Registry r;
  auto& fam = r.counter_family("verbs_total", "Commands by verb.", {"verb"});
  fam.set_max_label_sets(3);
  for (const char* v : {"EHLO", "MAIL", "RCPT", "X1", "X2", "X3", "EHLO"}) fam.with({v}).inc();
  CHECK(fam.label_sets() == 4);  // three plus the overflow child
  CHECK(fam.with({"EHLO"}).value() == 2);
  CHECK(fam.with({"X9"}).value() == 3);
  CHECK(&fam.with({"X9"}) == &fam.with({common::metrics::kOverflowValue}));
  CHECK(r.render().find("verbs_total{verb=\"__overflow__\"} 3") != std::string::npos);
}

TEST_CASE("concurrent increments are exact and new label sets race safely", "[metrics]") {
  Registry r;
  auto& c = r.counter("hits_total", "Hits.");
  auto& fam = r.counter_family("by_key_total", "Hits by key.", {"key"});
  auto& g = r.gauge("level", "Level.");
  auto& h = r.histogram("obs", "Observations.", {1, 10});
  constexpr int kThreads = 4;
  constexpr int kIterations = 20000;
  std::atomic<bool> stop{false};
  std::atomic<int> empty_renders{0};
  std::thread scraper([&] {  // Catch assertions are not thread-safe: count, check after
    while (!stop.load()) {
      if (r.render().empty()) ++empty_renders;
    }
  });
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < kIterations; ++i) {
        c.inc();
        std::string key = "k" + std::to_string(i % 16);  // every thread creates and finds the same 16
        fam.with({key}).inc(2);
        g.add(1);
        g.sub(1);
        h.observe(i % 20);
      }
    });
  }
  for (auto& t : threads) t.join();
  stop = true;
  scraper.join();
  CHECK(empty_renders == 0);
  CHECK(c.value() == uint64_t{kThreads} * kIterations);
  CHECK(fam.label_sets() == 16);
  uint64_t total = 0;
  for (int k = 0; k < 16; ++k) total += fam.with({"k" + std::to_string(k)}).value();
  CHECK(total == uint64_t{2} * kThreads * kIterations);
  CHECK(g.value() == 0);
  CHECK(h.count() == uint64_t{kThreads} * kIterations);
  // i % 20 in 0..19: 0 and 1 go to le=1, 2..10 to le=10, 11..19 to +Inf.
  CHECK(h.bucket_count(0) == uint64_t{kThreads} * kIterations / 20 * 2);
  CHECK(h.bucket_count(1) == uint64_t{kThreads} * kIterations / 20 * 9);
  CHECK(h.bucket_count(2) == uint64_t{kThreads} * kIterations / 20 * 9);
  check_exposition(r.render());
}

TEST_CASE("process metrics are present and plausible", "[metrics]") {
  Registry r;
  common::metrics::register_process_metrics(r);
  common::metrics::register_process_metrics(r);  // again: harmless
  auto samples = check_exposition(r.render());
  auto value = [&](const std::string& name) {
    INFO(name);
    REQUIRE(samples.contains(name));
    return std::strtod(samples[name].c_str(), nullptr);
  };
  CHECK(value("process_resident_memory_bytes") > 1e6);
  CHECK(value("process_virtual_memory_bytes") >= value("process_resident_memory_bytes"));
  CHECK(value("process_open_fds") >= 1);
  CHECK(value("process_open_fds") < value("process_max_fds"));
  double now = std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
  CHECK(value("process_start_time_seconds") <= now + 1);
  CHECK(value("process_start_time_seconds") > now - 3600);
  CHECK(value("process_cpu_seconds_total") >= 0);
  CHECK(r.render().find("# TYPE process_cpu_seconds_total counter") != std::string::npos);
  CHECK(r.render().find("# TYPE process_open_fds gauge") != std::string::npos);
  CHECK(&common::metrics::default_registry() == &common::metrics::default_registry());
}

TEST_CASE("names, values and registration misuse", "[metrics]") {
  using common::metrics::format_value;
  using common::metrics::valid_label_name;
  using common::metrics::valid_metric_name;
  CHECK(valid_metric_name("mta_rejects_total"));
  CHECK(valid_metric_name("ns:sub:metric_1"));
  CHECK(valid_metric_name("_x"));
  CHECK_FALSE(valid_metric_name(""));
  CHECK_FALSE(valid_metric_name("1abc"));
  CHECK_FALSE(valid_metric_name("has-dash"));
  CHECK_FALSE(valid_metric_name("has space"));
  CHECK(valid_label_name("reason"));
  CHECK(valid_label_name("_x"));
  CHECK_FALSE(valid_label_name("__reserved"));
  CHECK_FALSE(valid_label_name("a:b"));
  CHECK_FALSE(valid_label_name("9"));
  CHECK(format_value(1) == "1");
  CHECK(format_value(0.25) == "0.25");
  CHECK(format_value(-3.5) == "-3.5");
  CHECK(format_value(1e21) == "1e+21");
  CHECK(format_value(INFINITY) == "+Inf");
  CHECK(format_value(-INFINITY) == "-Inf");
  CHECK(format_value(std::nan("")) == "NaN");

  CHECK(aborts([] {
    Registry r;
    r.counter("x_total", "");
    r.gauge("x_total", "");
  }));
  CHECK(aborts([] {
    Registry r;
    r.counter_family("x_total", "", {"a"});
    r.counter_family("x_total", "", {"b"});
  }));
  CHECK(aborts([] {
    Registry r;
    r.histogram("h", "", {1, 2});
    r.histogram("h", "", {1, 3});
  }));
  CHECK(aborts([] { Registry().counter("bad-name", ""); }));
  CHECK(aborts([] { Registry().counter_family("x", "", {"__x"}); }));
  CHECK(aborts([] { Registry().counter_family("x", "", {"a", "a"}); }));
  CHECK(aborts([] { Registry().histogram_family("x", "", {"le"}, {1}); }));
  CHECK(aborts([] { Registry().histogram("x", "", {2, 1}); }));
  CHECK(aborts([] { Registry().histogram("x", "", {1, INFINITY}); }));
  CHECK(aborts([] {
    Registry r;
    r.counter_family("x", "", {"a", "b"}).with({"only one"});
  }));
  CHECK(aborts([] {
    Registry r;
    r.counter("x", "");
    r.callback_gauge("x", "", [] { return 1.0; });
  }));
  CHECK_FALSE(aborts([] {
    Registry r;
    r.callback_gauge("x", "", [] { return 1.0; });
    r.callback_gauge("x", "", [] { return 2.0; });  // replaces the function
    if (r.render() != "# HELP x \n# TYPE x gauge\nx 2\n") std::abort();
  }));
}
