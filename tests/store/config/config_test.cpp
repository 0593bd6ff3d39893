// config_test.cpp: the store's [store] maintenance keys read from TOML (values, defaults, each
// refusal naming its key), and deploy/config/store.toml documenting the defaults the code has.
#include <catch2/catch.hpp>

#include <sstream>

#include "common/config/config.hpp"
#include "store/config.hpp"
#include "tests/support/process.hpp"

using namespace std::chrono_literals;

namespace {

struct Parsed {
  common::config::Document doc;
  store::Config config;
};

Parsed parse(const std::string& text) {
  Parsed p{common::config::Document::parse(text, "store.toml"), {}};
  read_config(p.doc.root(), p.config);
  p.doc.finish();
  return p;
}

const std::string kBase = "[lmtp]\nplaintext = true\n[store]\ndir = \"/var/lib/postern/store\"\n";

bool has(const std::string& hay, const std::string& needle) { return hay.find(needle) != std::string::npos; }

void check_defaults(const store::MaintenanceOptions& m) {
  const store::MaintenanceOptions d;
  CHECK(m.poll == d.poll);
  CHECK(m.pause == d.pause);
  CHECK(m.free.messages == d.free.messages);
  CHECK(m.free.chunks == d.free.chunks);
  CHECK(m.prune.keep == d.prune.keep);
  CHECK(m.prune_every == d.prune_every);
  CHECK(m.prune.mailboxes == d.prune.mailboxes);
  CHECK(m.prune.entries == d.prune.entries);
}

}  // namespace

TEST_CASE("[store] maintenance keys: absent keep MaintenanceOptions' defaults, present are read", "[config]") {
  {
    auto p = parse(kBase);
    INFO(p.doc.problems_text());
    REQUIRE(p.doc.ok());
    check_defaults(p.config.store.maintenance);
  }
  auto p = parse(kBase + R"(
maintenance_poll = "500ms"
maintenance_pause = "0s"
free_batch_messages = 250
free_batch_chunks = 1024
expunge_history_keep = 2000
expunge_prune_every = "15m"
prune_batch_mailboxes = 50
prune_batch_entries = 300
)");
  INFO(p.doc.problems_text());
  REQUIRE(p.doc.ok());
  const auto& m = p.config.store.maintenance;
  CHECK(m.poll == 500ms);
  CHECK(m.pause == 0ms);
  CHECK(m.free.messages == 250);
  CHECK(m.free.chunks == 1024);
  CHECK(m.prune.keep == 2000);
  CHECK(m.prune_every == 15min);
  CHECK(m.prune.mailboxes == 50);
  CHECK(m.prune.entries == 300);
  CHECK(has(p.doc.effective_toml(), "expunge_prune_every = \"15m\""));
  CHECK(has(p.doc.effective_toml(), "free_batch_chunks = 1024"));
}

TEST_CASE("[store] maintenance keys out of range are refused, each naming its key", "[config]") {
  auto p = parse(kBase + R"(
maintenance_poll = "10ms"
maintenance_pause = "1m"
free_batch_messages = 0
free_batch_chunks = 1000000
expunge_history_keep = -1
expunge_prune_every = "30d"
prune_batch_mailboxes = 0
prune_batch_entries = 100001
)");
  REQUIRE_FALSE(p.doc.ok());
  const std::string text = p.doc.problems_text();
  INFO(text);
  for (const char* key : {"maintenance_poll", "maintenance_pause", "free_batch_messages", "free_batch_chunks",
                          "expunge_history_keep", "expunge_prune_every", "prune_batch_mailboxes",
                          "prune_batch_entries"}) {
    CHECK(has(text, std::string("store.") + key));
  }
  CHECK(p.doc.problems().size() == 8);
  // A refused value leaves the default in force.
  check_defaults(p.config.store.maintenance);

  auto one = parse(kBase + "free_batch_messages = 0\n");
  CHECK(one.doc.problems().size() == 1);
  CHECK(has(one.doc.problems_text(), "store.free_batch_messages"));
  auto typo = parse(kBase + "expunge_prune_every = \"an hour\"\n");
  CHECK(has(typo.doc.problems_text(), "store.expunge_prune_every"));
}

TEST_CASE("deploy/config/store.toml documents the maintenance defaults the store has", "[config]") {
  // Its commented "# key = value" lines under [store], uncommented, must give the defaults.
  std::istringstream in(test::read_file(test::source_path("deploy/config/store.toml")));
  std::string uncommented, table;
  int found = 0;
  for (std::string line; std::getline(in, line);) {
    if (line.starts_with("[")) table = line;
    if (table != "[store]" || !line.starts_with("# ")) continue;
    for (const char* key : {"maintenance_poll ", "maintenance_pause ", "free_batch_messages ", "free_batch_chunks ",
                            "expunge_history_keep ", "expunge_prune_every ", "prune_batch_mailboxes ",
                            "prune_batch_entries "}) {
      if (line.substr(2).starts_with(key)) {
        uncommented += line.substr(2) + "\n";
        found += 1;
      }
    }
  }
  INFO(uncommented);
  CHECK(found == 8);
  auto p = parse(kBase + uncommented);
  INFO(p.doc.problems_text());
  REQUIRE(p.doc.ok());
  check_defaults(p.config.store.maintenance);
}
