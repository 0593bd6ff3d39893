// log_test.cpp: line format, fixed key order, levels per component, sanitising client text.
#include <catch2/catch.hpp>

#include <string>
#include <vector>

#include "common/log/log.hpp"

namespace lg = common::log;

namespace {
struct Capture {
  std::vector<std::string> lines;
  Capture() {
    lg::set_sink([this](std::string_view l) { lines.emplace_back(l); });
  }
  ~Capture() { lg::reset_sink(); }
};
}  // namespace

TEST_CASE("lines have fixed leading keys in order", "[log]") {
  lg::configure({.daemon = "mta"});
  Capture cap;
  lg::info("smtp").event("accepted").kv("n", 3).client("192.0.2.7:51234").session("7f3a").phase("accept");
  REQUIRE(cap.lines.size() == 1);
  const std::string& l = cap.lines[0];
  CHECK(l.rfind("ts=", 0) == 0);
  CHECK(l.back() == '\n');
  auto pos = [&](const char* k) { return l.find(k); };
  CHECK(pos(" level=info") < pos(" daemon=mta"));
  CHECK(pos(" daemon=mta") < pos(" comp=smtp"));
  CHECK(pos(" comp=smtp") < pos(" session=7f3a"));
  CHECK(pos(" session=7f3a") < pos(" client=192.0.2.7:51234"));
  CHECK(pos(" client=") < pos(" phase=accept"));
  CHECK(pos(" phase=accept") < pos(" event=accepted"));
  CHECK(pos(" event=accepted") < pos(" n=3"));
}

TEST_CASE("levels are per component and change on reconfigure", "[log]") {
  Capture cap;
  lg::configure({.daemon = "x", .level = lg::Level::Warning, .components = {{"dns", lg::Level::Debug}}});
  lg::info("runtime").event("dropped");
  lg::debug("dns").event("kept");
  CHECK(cap.lines.size() == 1);
  CHECK(lg::enabled("dns", lg::Level::Debug));
  CHECK_FALSE(lg::enabled("runtime", lg::Level::Notice));
  lg::configure({.daemon = "x", .level = lg::Level::Debug});
  lg::debug("runtime").event("now_kept");
  CHECK(cap.lines.size() == 2);
  CHECK(lg::parse_level("warning") == lg::Level::Warning);
  CHECK_FALSE(lg::parse_level("loud"));
  lg::configure({});
}

TEST_CASE("client text cannot forge keys or lines and is cut", "[log]") {
  lg::configure({.daemon = "mta"});
  Capture cap;
  lg::info("smtp").client_text("cmd", "EHLO x\r\nlevel=error event=forged \"q\" \xff");
  REQUIRE(cap.lines.size() == 1);
  const std::string& l = cap.lines[0];
  CHECK(l.find('\r') == std::string::npos);
  CHECK(l.find('\n') == l.size() - 1);
  CHECK(l.find("cmd=\"EHLO x\\x0d\\x0alevel=error event=forged \\\"q\\\" \\xff\"") != std::string::npos);
  cap.lines.clear();
  lg::info("smtp").client_text("cmd", std::string(500, 'A'));
  CHECK(cap.lines[0].find(std::string(lg::kMaxClientText, 'A') + "...") != std::string::npos);
  CHECK(cap.lines[0].find(std::string(lg::kMaxClientText + 1, 'A')) == std::string::npos);
}

TEST_CASE("empty values are quoted so lines parse back", "[log]") {
  std::string out;
  lg::append_value(out, "");
  CHECK(out == "\"\"");
  out.clear();
  lg::append_value(out, "plain-value_1.2");
  CHECK(out == "plain-value_1.2");
}
