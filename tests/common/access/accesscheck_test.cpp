// accesscheck_test.cpp: postern-accesscheck as a built program on files in a temp dir (exit codes
// and output), plus the same entry point in-process for the finer cases.
#include <catch2/catch.hpp>

#include <sstream>
#include <string>
#include <vector>

#include "common/access/accesscheck.hpp"
#include "tests/support/process.hpp"

namespace {

struct Run {
  int code;
  std::string output;  // stdout and stderr together
};

Run run_binary(const test::TempDir& dir, std::vector<std::string> args) {
  static int n = 0;
  std::string log = (dir / ("out" + std::to_string(++n) + ".txt")).string();
  args.insert(args.begin(), test::binary_path("common/access/postern-accesscheck"));
  test::ChildProcess child(args, log);
  int code = child.wait(std::chrono::seconds(30));
  return {code, test::read_file(log)};
}

struct InProcess {
  int code;
  std::string out, err;
};

InProcess run_here(std::vector<std::string_view> args) {
  std::ostringstream out, err;
  int code = common::access::accesscheck_run(args, out, err);
  return {code, out.str(), err.str()};
}

}  // namespace

TEST_CASE("postern-accesscheck: allow, deny and the deciding rule", "[access][accesscheck]") {
  test::TempDir dir;
  auto allow = dir.write("imap.allow",
                         "# seed: Mostly Denying\nALL: LOCAL @netgroup1\n"
                         "ALL: .example.com EXCEPT externalserver.example.com\nimap: 192.0.2.0/25\n");
  auto deny = dir.write("imap.deny", "ALL: ALL\n");

  Run r = run_binary(dir, {"--allow", allow.string(), "--deny", deny.string(), "--client-name",
                           "www.example.com", "imap", "198.51.100.7"});
  CHECK(r.code == 0);
  CHECK_THAT(r.output, Catch::Contains("\nallow\n  filters: allow by"));  // warnings come first
  CHECK_THAT(r.output, Catch::Contains("filters: allow by " + allow.string() +
                                       ":3: ALL: .example.com EXCEPT externalserver.example.com"));
  CHECK_THAT(r.output, Catch::Contains(allow.string() + ":2:12: warning: netgroup @netgroup1 never matches"));

  r = run_binary(dir, {"--allow", allow.string(), "--deny", deny.string(), "--client-name",
                       "externalserver.example.com", "imap", "198.51.100.7"});
  CHECK(r.code == 1);
  CHECK_THAT(r.output, Catch::Contains("\ndeny\n  filters: deny by"));
  CHECK_THAT(r.output, Catch::Contains("filters: deny by " + deny.string() + ":1: ALL: ALL"));

  // A numeric rule decides without a name; a name rule without --client-name is told and taken as none.
  r = run_binary(dir, {"--allow=" + allow.string(), "--deny=" + deny.string(), "imap", "192.0.2.5"});
  CHECK(r.code == 0);
  CHECK_THAT(r.output, Catch::Contains("allow by " + allow.string() + ":4: imap: 192.0.2.0/25"));
  r = run_binary(dir, {"--allow", allow.string(), "--deny", deny.string(), "imap", "192.0.2.200"});
  CHECK(r.code == 1);
  CHECK_THAT(r.output, Catch::Contains("client name not given, evaluating as if the lookup found none "
                                       "(needs the client name for " +
                                       allow.string() + ":2: ALL: LOCAL @netgroup1)"));
}

TEST_CASE("postern-accesscheck: parse errors exit 2 with file:line:col", "[access][accesscheck]") {
  test::TempDir dir;
  auto bad = dir.write("bad.deny", "ALL: ALL\nimap: 10.0.0.0/33\npop: 1.2.3.4/255.0.255.0\n");
  Run r = run_binary(dir, {"--deny", bad.string(), "imap", "10.1.1.1"});
  CHECK(r.code == 2);
  CHECK_THAT(r.output, Catch::Contains(bad.string() + ":2:16: IPv4 prefix length 33 is over 32"));
  CHECK_THAT(r.output, Catch::Contains(bad.string() + ":3:14: non-contiguous netmask"));

  r = run_binary(dir, {"--rules", "+imap:ALL$pop:ALL", "imap", "10.1.1.1"});
  CHECK(r.code == 2);
  CHECK_THAT(r.output, Catch::Contains("rules:1:11: a rule starts with '+' (allow) or '-' (deny)"));

  r = run_binary(dir, {"--allow", (dir / "missing").string(), "imap", "10.1.1.1"});
  CHECK(r.code == 2);
  CHECK_THAT(r.output, Catch::Contains("cannot read"));

  r = run_binary(dir, {"imap"});
  CHECK(r.code == 2);
  CHECK_THAT(r.output, Catch::Contains("usage: postern-accesscheck"));
}

TEST_CASE("postern-accesscheck: compact rules, name states, server names", "[access][accesscheck]") {
  InProcess r = run_here({"--rules", "+imap,pop,http:*", "smtp", "10.0.0.1"});
  CHECK(r.code == 1);
  CHECK(r.out == "deny\n  rules: deny: no rule matched: default deny (allow rules but no deny rules)\n");
  r = run_here({"--rules", "+imap:ALL$+pop:ALL$+http:ALL", "POP", "[2001:db8::1]"});
  CHECK(r.code == 0);
  CHECK(r.out == "allow\n  rules: allow by rules:1: +pop:ALL\n");

  test::TempDir dir;
  auto deny = dir.write("deny", "ALL: DNSSPOOFER\nimap: UNKNOWN\n");
  std::string d = deny.string();
  r = run_here({"--deny", d, "--client-name-status", "mismatch:bank.example.com", "imap", "10.0.0.1"});
  CHECK(r.code == 1);
  CHECK_THAT(r.out, Catch::Contains("deny by " + d + ":1: ALL: DNSSPOOFER"));
  r = run_here({"--deny", d, "--client-name-status", "tempfail", "imap", "10.0.0.1"});
  CHECK(r.code == 1);
  CHECK_THAT(r.out, Catch::Contains("deny by " + d + ":2: imap: UNKNOWN"));
  r = run_here({"--deny", d, "--client-name", "mail.example.com", "imap", "10.0.0.1"});
  CHECK(r.code == 0);
  CHECK_THAT(r.out, Catch::Contains("no rule matched: default allow"));
  r = run_here({"--deny", d, "--client-name-status", "bogus", "imap", "10.0.0.1"});
  CHECK(r.code == 2);

  auto allow = dir.write("allow", "ALL@msgServer.example1.com: @.example1.com\n");
  auto all = dir.write("all", "ALL: ALL\n");
  r = run_here({"--allow", allow.string(), "--deny", all.string(), "--server", "192.0.2.1", "--server-name",
                "msgserver.example1.com", "--client-name", "pc.example1.com", "imap", "10.0.0.1"});
  CHECK(r.code == 0);
  r = run_here({"--allow", allow.string(), "--deny", all.string(), "--server", "192.0.2.1", "--client-name",
                "pc.example1.com", "imap", "10.0.0.1"});
  CHECK(r.code == 1);
  CHECK_THAT(r.out, Catch::Contains("server name not given"));

  // Files and per-user rules together: both must allow.
  r = run_here({"--deny", d, "--client-name", "mail.example.com", "--rules", "-imap:*", "--user", "joe", "imap",
                "10.0.0.1"});
  CHECK(r.code == 1);
  CHECK_THAT(r.out, Catch::Contains("filters: allow"));
  CHECK_THAT(r.out, Catch::Contains("rules: deny by rules:1: -imap:*"));

  r = run_here({"imap", "not-an-address"});
  CHECK(r.code == 2);
  r = run_here({"--bogus", "x", "imap", "10.0.0.1"});
  CHECK(r.code == 2);
  r = run_here({"imap", "unknown"});
  CHECK(r.code == 0);
  CHECK_THAT(r.err, Catch::Contains("no filters given"));
}
