// config_test.cpp: the mmp's virtual domains as its config reads them: [[listener]] and
// [[listener.sni]] default_domain and restrict_plain_passwords over [mmp]'s, and SNI name matching.
#include <catch2/catch.hpp>

#include "common/config/config.hpp"
#include "mmp/config.hpp"

namespace {

struct Read {
  mmp::Config config;
  std::vector<mmp::ListenerSettings> listeners;
  bool ok = false;
  std::string problems;
};

Read read(const std::string& text) {
  Read r;
  auto doc = common::config::Document::parse(text, "mmp.toml");
  auto root = doc.root();
  for (auto l : root.sections("listener")) {
    std::string ignored;
    l.get("name", ignored);
    auto settings = mmp::read_listener_settings(l);
    for (auto sni : l.sections("sni")) {
      std::vector<std::string> certificates;  // read by the daemon skeleton
      sni.get("certificates", certificates);
    }
    r.listeners.push_back(settings);
  }
  mmp::read_config(root, r.config);
  doc.finish();
  r.ok = doc.ok();
  r.problems = doc.problems_text();
  for (auto& l : r.listeners) l = l.resolved(r.config.mmp);
  return r;
}

}  // namespace

TEST_CASE("a listener's default_domain and restrict_plain_passwords win over [mmp]'s, an SNI name's over both",
          "[unit]") {
  auto r = read(
      "[mmp]\nhost_name = \"mmp.test\"\ndefault_domain = \"Example.COM\"\n"
      "[[listener]]\nname = \"imap\"\n"
      "[[listener]]\nname = \"org\"\ndefault_domain = \"example.org\"\nrestrict_plain_passwords = false\n"
      "[[listener.sni]]\nname = \"Mail.Example.NET\"\ncertificates = [\"Net\"]\ndefault_domain = \"example.net\"\n"
      "[[listener.sni]]\nname = \"*.example.info\"\ncertificates = [\"Info\"]\ndefault_domain = \"example.info\"\n"
      "[[listener.sni]]\nname = \"other.example\"\ncertificates = [\"Other\"]\n");
  INFO(r.problems);
  REQUIRE(r.ok);
  REQUIRE(r.listeners.size() == 2);
  CHECK(*r.listeners[0].default_domain == "example.com");
  CHECK(*r.listeners[0].restrict_plain_passwords);
  CHECK(r.listeners[0].sni_domain("mail.example.net") == nullptr);
  const auto& org = r.listeners[1];
  CHECK(*org.default_domain == "example.org");
  CHECK_FALSE(*org.restrict_plain_passwords);
  REQUIRE(org.sni_domain("mail.example.net") != nullptr);
  CHECK(*org.sni_domain("mail.example.net") == "example.net");
  // "*." covers one label only, as for certificates.
  REQUIRE(org.sni_domain("imap.example.info") != nullptr);
  CHECK(*org.sni_domain("imap.example.info") == "example.info");
  CHECK(org.sni_domain("example.info") == nullptr);
  CHECK(org.sni_domain("a.b.example.info") == nullptr);
  // An SNI entry without default_domain takes its listener's.
  REQUIRE(org.sni_domain("other.example") != nullptr);
  CHECK(*org.sni_domain("other.example") == "example.org");
  CHECK(org.sni_domain("unknown.example") == nullptr);
}

TEST_CASE("a default_domain with \"@\" is refused, naming the key", "[unit]") {
  auto r = read("[[listener]]\nname = \"imap\"\ndefault_domain = \"user@example.org\"\n");
  CHECK_FALSE(r.ok);
  CHECK(r.problems.find("default_domain") != std::string::npos);
}
