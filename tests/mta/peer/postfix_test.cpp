// postfix_test.cpp: Debian's Postfix as an Internet peer of postern-mta, both ways. Postfix relays to
// our port 25 (its relayhost) in plaintext and over STARTTLS with our certificate verified: what we
// answered 250 is in our queue with Postfix's and our Received: lines, and arrives in the store; an
// unknown local user is refused at RCPT, so Postfix bounces it and we queue nothing. Our outbound mail
// reaches Postfix's port by a [[route]]: plaintext, opportunistic STARTTLS, required STARTTLS with its
// certificate checked; a certificate without the required name or no STARTTLS keeps it queued.
#include <catch2/catch.hpp>

#include <regex>
#include <string>
#include <thread>
#include <vector>

#include "tests/mta/peer/peer_support.hpp"
#include "tests/mta/support/mta_daemon.hpp"
#include "tests/store/support/store_daemon.hpp"
#include "tests/support/postfix.hpp"
#include "tests/support/process.hpp"

using namespace std::chrono_literals;
using test::PostfixInstance;
using test::PostfixMail;
using test::PostfixOptions;
using test::peer::has;
using test::peer::send_mail;

namespace {

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

  const std::string shown = mta.queue_tool({"show", ids[0]});
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
  CHECK(mta.queue_drains(1s));
}

TEST_CASE("mail from Postfix to a local user arrives in the store", "[postfix][peer][mta][delivery]") {
  test::StoreDaemon store;
  store.start();
  test::MtaDaemon mta(store);
  mta.start();
  PostfixOptions o;
  o.relay_port = mta.smtp_port();
  bool tls = false;
  SECTION("plaintext") {}
  SECTION("over STARTTLS") {
    o.relay_tls = PostfixOptions::RelayTls::Encrypt;
    tls = true;
  }
  PostfixInstance postfix(o);
  REQUIRE(has(send_mail(postfix.port(), "someone@example.org", {"alice@example.com"}, "to the store").output, "sent"));
  INFO("maillog:\n" << postfix.log() << "\nmta log:\n" << mta.log());
  REQUIRE(postfix.wait_for_empty_queue(30s));
  // Delivered by LMTP: the message leaves our queue once the store said 250.
  REQUIRE(mta.queue_drains());
  mta.stop();
  store.stop();
  const auto inbox = store.messages("alice@example.com");
  REQUIRE(inbox.size() == 1);
  const std::string& m = inbox[0];
  INFO(m);
  CHECK(has(m, "Subject: to the store"));
  CHECK(has(m, "by postfix.test (Postfix)"));
  CHECK(has(m, "by mta1.test (Postern)"));
  CHECK(has(m, "ESMTPS") == tls);
  CHECK(has(m, "\r\n.a line that starts with a dot\r\n"));
}

namespace {

// Our mta relays for 127.0.0.1 (INTERNAL_IP) and routes peer.example to Postfix's port.
test::MtaDaemonOptions outbound_to(const PostfixInstance& postfix, const std::string& tls_policy = "") {
  test::MtaDaemonOptions o;
  o.mta_extra = "internal_networks = [\"127.0.0.1/32\"]\n";
  o.delivery_extra = "helo_name = \"mta1.test\"\n";
  o.tables = "[[route]]\ndomain = \"peer.example\"\nhost = \"127.0.0.1:" + std::to_string(postfix.port()) + "\"\n" +
             tls_policy;
  return o;
}

std::string policy(const std::string& keys) { return "[[tls_policy]]\ndomain = \"peer.example\"\n" + keys; }

}  // namespace

TEST_CASE("our outbound mail reaches Postfix by a route", "[postfix][peer][mta][delivery]") {
  test::StoreDaemon store;
  PostfixOptions po;
  std::string tls_policy;
  std::string expect_tls;  // what Postfix's Received: line says about TLS; "" for none
  SECTION("Postfix without STARTTLS: plaintext") {}
  SECTION("STARTTLS offered: opportunistic TLS by default") {
    po.server_tls = PostfixOptions::ServerTls::Offer;
    expect_tls = "using TLSv1.3";
  }
  SECTION("STARTTLS required, Postfix's certificate checked against the deployment CA") {
    po.server_tls = PostfixOptions::ServerTls::Require;
    tls_policy = policy("starttls = \"required\"\nverify = \"ca\"\nserver_name = \"mta1\"\n");
    expect_tls = "using TLSv1.3";
  }
  PostfixInstance postfix(po);
  test::MtaDaemon mta(store, outbound_to(postfix, tls_policy));
  mta.start();

  auto r = send_mail(mta.smtp_port(), "alice@example.com", {"bob@peer.example", "carol@peer.example"}, "outbound");
  INFO(r.output << "\nmta log:\n" << mta.log());
  REQUIRE(has(r.output, "sent"));
  const auto got = postfix.wait_for_messages(2, 30s);
  INFO("maillog:\n" << postfix.log());
  REQUIRE(got.size() == 2);
  const auto bob = postfix.messages_for("bob@peer.example");
  REQUIRE(bob.size() == 1);
  CHECK(postfix.messages_for("carol@peer.example").size() == 1);
  const PostfixMail& m = bob[0];
  INFO(m.content);
  CHECK(m.return_path == "alice@example.com");
  CHECK(m.header("Subject") == "outbound");
  // Postfix's trace line names our EHLO and says whether TLS was used; ours is below it.
  const std::string theirs = m.header("Received");
  CHECK(has(theirs, "from mta1.test (localhost [127.0.0.1])"));
  CHECK(has(theirs, "by postfix.test (Postfix) with ESMTP"));
  if (expect_tls.empty()) {
    CHECK_FALSE(has(theirs, "using TLS"));
  } else {
    CHECK(has(theirs, expect_tls));
  }
  CHECK(has(m.content, "by mta1.test (Postern)"));
  CHECK(has(m.body(), "\n.a line that starts with a dot"));
  // Both recipients went in one transaction.
  CHECK(postfix.wait_for_log("nrcpt=2", 5s));
  CHECK(mta.queue_drains());
}

TEST_CASE("required TLS toward Postfix keeps the mail queued when it cannot be had", "[postfix][peer][mta][delivery]") {
  test::StoreDaemon store;
  PostfixOptions po;
  std::string tls_policy;
  std::string reason;  // what our log gives as the cause of the deferral
  SECTION("Postfix offers no STARTTLS") {
    tls_policy = policy("starttls = \"required\"\n");
    reason = "TLS is required and the server does not offer STARTTLS";
  }
  SECTION("its certificate does not carry the required name") {
    po.server_tls = PostfixOptions::ServerTls::Offer;
    tls_policy = policy("starttls = \"required\"\nverify = \"ca\"\nserver_name = \"other.example\"\n");
    reason = "the certificate does not name other.example";
  }
  PostfixInstance postfix(po);
  test::MtaDaemon mta(store, outbound_to(postfix, tls_policy));
  mta.start();
  REQUIRE(has(send_mail(mta.smtp_port(), "alice@example.com", {"bob@peer.example"}, "must be private").output, "sent"));
  INFO("mta log:\n" << mta.log() << "\nmaillog:\n" << postfix.log());
  // Tried (Postfix saw our EHLO) and deferred: still ours, never in Postfix's mailbox.
  REQUIRE(postfix.wait_for_log("ehlo=1", 30s));
  std::string listed;
  for (int i = 0; i < 100; ++i) {
    listed = mta.queue_tool({"list", "--state", "deferred"});
    if (has(listed, "\n1 message")) break;
    std::this_thread::sleep_for(100ms);
  }
  INFO(listed);
  CHECK(has(listed, "\n1 message"));
  CHECK(postfix.messages().empty());
  CHECK_FALSE(has(postfix.log(), "status=sent"));
  const std::string log = mta.log();
  INFO("mta log at the end:\n" << log);
  CHECK(has(log, "event=deferred queue_id="));
  CHECK(has(log, "recipient=bob@peer.example destination=peer.example"));
  CHECK(has(log, "status=4.7.5"));
  CHECK(has(log, reason));
}
