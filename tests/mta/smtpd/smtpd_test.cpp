// smtpd_test.cpp: postern-mta's SMTP listeners with real clients (swaks, python smtplib): the queue
// takes what was answered 250, the relay matrix, AUTH only under TLS and only on submission by
// default, sender identity, the limits and bad input.
#include <catch2/catch.hpp>

#include <string>
#include <vector>

#include "mta/queue/queue.hpp"
#include "tests/mta/support/mta_daemon.hpp"
#include "tests/store/support/store_daemon.hpp"
#include "tests/support/process.hpp"

using namespace std::chrono_literals;

namespace {

bool contains(const std::string& haystack, const std::string& needle) { return haystack.find(needle) != std::string::npos; }

// swaks against one of the mta's ports; `tls`: "" (none), "starttls" or "implicit".
test::CommandResult swaks(int port, const std::string& tls, std::vector<std::string> extra) {
  std::vector<std::string> argv{"swaks", "--server", "127.0.0.1", "--port", std::to_string(port),
                                "--helo", "client.example.org", "--timeout", "20"};
  if (tls == "starttls") argv.push_back("--tls");
  if (tls == "implicit") argv.push_back("--tls-on-connect");
  argv.insert(argv.end(), extra.begin(), extra.end());
  return test::run(argv, 60s);
}

std::string queue_tool(const test::MtaDaemon& mta, std::vector<std::string> args) {
  std::vector<std::string> argv{test::binary_path("mta/queue/postern-queue"), "--dir", mta.queue_dir()};
  argv.insert(argv.end(), args.begin(), args.end());
  return test::run(argv, 30s).output;
}

}  // namespace

TEST_CASE("port 25 takes mail for a local user from anyone, after the queue's commit", "[integration][mta]") {
  test::StoreDaemon store;
  test::MtaDaemon mta(store);
  mta.start();
  auto r = swaks(mta.smtp_port(), "", {"--from", "someone@example.org", "--to", "alice@example.com"});
  INFO(r.output << mta.log());
  REQUIRE(contains(r.output, "<-  250 2.0.0 Ok: queued as "));
  CHECK(contains(r.output, "250-PIPELINING"));
  CHECK(contains(r.output, "250 STARTTLS"));
  CHECK(contains(r.output, "250-SIZE 52428800"));
  CHECK(contains(r.output, "250-CHUNKING"));
  CHECK(contains(r.output, "250-DSN"));
  CHECK_FALSE(contains(r.output, "AUTH"));
  CHECK(mta.count("comp=smtpd") > 0);
  CHECK(mta.count("phase=commit event=queued") == 1);
  // postern-queue reads the queue beside the running mta.
  const std::string list = queue_tool(mta, {"list"});
  INFO(list);
  CHECK(contains(list, "someone@example.org"));
}
