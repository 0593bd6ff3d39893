// postfix_test.cpp: Debian's Postfix as an Internet peer of postern-mta: Postfix relays to our port 25
// (its relayhost) in plaintext and over STARTTLS with our certificate verified; what we answered 250 is
// in our queue with Postfix's and our Received: lines; an unknown local user is refused at RCPT, so
// Postfix bounces it and we queue nothing.
#include <catch2/catch.hpp>

#include <regex>
#include <string>
#include <vector>

#include "tests/mta/peer/peer_support.hpp"
#include "tests/mta/support/mta_daemon.hpp"
#include "tests/store/support/store_daemon.hpp"
#include "tests/support/postfix.hpp"
#include "tests/support/process.hpp"

using namespace std::chrono_literals;
using test::PostfixInstance;
using test::PostfixOptions;
using test::peer::has;
using test::peer::send_mail;

namespace {

std::string queue_tool(const test::MtaDaemon& mta, std::vector<std::string> args) {
  std::vector<std::string> argv{test::binary_path("mta/queue/postern-queue"), "--dir", mta.queue_dir()};
  argv.insert(argv.end(), args.begin(), args.end());
  return test::run(argv, 30s).output;
}

// The queue ids our mta gave in its 250 replies, as Postfix logged them ("status=sent (250 ...
// queued as ID)").
std::vector<std::string> our_queue_ids(const PostfixInstance& postfix) {
  static const std::regex kSent(R"(status=sent \(250 [0-9.]+ Ok: queued as ([A-Za-z0-9]+)\))");
  std::vector<std::string> ids;
  const std::string log = postfix.log();
  for (std::sregex_iterator it(log.begin(), log.end(), kSent), end; it != end; ++it) ids.push_back((*it)[1]);
  return ids;
}

}  // namespace

TEST_CASE("Postfix relays to our port 25, in plaintext and over STARTTLS", "[postfix][peer][mta]") {
  test::StoreDaemon store;
  test::MtaDaemon mta(store);
  mta.start();
  PostfixOptions o;
  o.relay_port = mta.smtp_port();
  bool tls = false;
  SECTION("plaintext") { o.relay_tls = PostfixOptions::RelayTls::None; }
  SECTION("STARTTLS required, our certificate checked against the deployment CA and the name mta1") {
    o.relay_tls = PostfixOptions::RelayTls::Verify;
    o.relay_tls_name = "mta1";
    tls = true;
  }
  PostfixInstance postfix(o);

  auto r = send_mail(postfix.port(), "someone@example.org", {"alice@example.com", "bob@example.com"}, "from postfix");
  INFO(r.output);
  REQUIRE(has(r.output, "sent"));
  INFO("maillog:\n" << postfix.log() << "\nmta log:\n" << mta.log());
  REQUIRE(postfix.wait_for_empty_queue(30s));
  // Both recipients in one transaction, both accepted: one queue id in the two status=sent lines.
  const auto ids = our_queue_ids(postfix);
  REQUIRE(ids.size() == 2);
  CHECK(ids[0] == ids[1]);
  CHECK(has(postfix.log(), "relay=127.0.0.1[127.0.0.1]:" + std::to_string(mta.smtp_port())));
  if (tls) {
    CHECK(has(postfix.log(), "Verified TLS connection established to 127.0.0.1[127.0.0.1]:" +
                                 std::to_string(mta.smtp_port()) + ": TLSv1.3"));
  } else {
    CHECK_FALSE(has(postfix.log(), "TLS connection established"));
  }
  CHECK(mta.count("phase=commit event=queued") == 1);

  const std::string shown = queue_tool(mta, {"show", ids[0]});
  INFO(shown);
  CHECK(has(shown, "from:      <someone@example.org>"));
  CHECK(has(shown, "<alice@example.com>"));
  CHECK(has(shown, "<bob@example.com>"));
  CHECK(has(shown, "destination=store:store1"));
  CHECK(has(shown, "helo=postfix.test"));
  CHECK(has(shown, tls ? "tls=TLSv1.3" : "tls=-"));
  // Postfix's trace line is below ours (RFC 5321 §4.4: each hop prepends).
  const auto ours = shown.find("by mta1.test");
  const auto theirs = shown.find("by postfix.test (Postfix)");
  CHECK(ours != std::string::npos);
  CHECK(theirs != std::string::npos);
  CHECK(ours < theirs);
  CHECK(has(shown, tls ? "with ESMTPS" : "with ESMTP"));
}

TEST_CASE("an unknown local user is refused at RCPT: Postfix bounces, we queue nothing", "[postfix][peer][mta]") {
  test::StoreDaemon store;
  test::MtaDaemon mta(store);
  mta.start();
  PostfixOptions o;
  o.relay_port = mta.smtp_port();
  PostfixInstance postfix(o);
  REQUIRE(has(send_mail(postfix.port(), "someone@example.org", {"nobody@example.com"}, "unknown").output, "sent"));
  INFO("maillog:\n" << postfix.log() << "\nmta log:\n" << mta.log());
  REQUIRE(postfix.wait_for_log("to=<nobody@example.com>", 30s));
  CHECK(postfix.wait_for_log("said: 550 5.1.1", 5s));
  CHECK(has(postfix.log(), "status=bounced"));
  CHECK(mta.count("event=queued") == 0);
  CHECK(has(queue_tool(mta, {"list"}), "0 messages"));
}
