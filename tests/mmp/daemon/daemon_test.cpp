// daemon_test.cpp: postern-mmp between real mail clients (python imaplib, curl) and a real store
// and authserv, all over mutual TLS as deployed: mail delivered by LMTP is read over IMAP, logins
// go through authserv, and no password crosses the wire before TLS.
#include <catch2/catch.hpp>

#include <chrono>
#include <memory>
#include <regex>
#include <string>
#include <thread>

#include "tests/mmp/support/mmp_daemon.hpp"
#include "tests/support/pki.hpp"
#include "tests/support/process.hpp"

using namespace std::chrono_literals;

TEST_CASE("python imaplib reads over STARTTLS and IMAPS what LMTP delivered, and no LOGIN before TLS", "[integration]") {
  test::MmpDaemon suite;
  REQUIRE(suite.store().deliver({"alice@example.com"}).output.find("RCPT alice@example.com 250") != std::string::npos);
  REQUIRE(suite.store().deliver({"alice@example.com"}, {"--size", "200000"}).output.find("250") != std::string::npos);

  auto starttls = suite.imaplib("starttls", suite.imap_port(), "alice", "secret-alice");
  INFO(starttls.output << suite.log());
  REQUIRE(starttls.exit_code == 0);
  // Before TLS: STARTTLS and LOGINDISABLED, no AUTH= at all, and LOGIN refused.
  CHECK(starttls.output.find("caps-before IMAP4REV1") != std::string::npos);
  CHECK(starttls.output.find("LOGINDISABLED") != std::string::npos);
  CHECK(starttls.output.find("login-plaintext NO") != std::string::npos);
  CHECK(starttls.output.find("PRIVACYREQUIRED") != std::string::npos);
  // After TLS: authserv's mechanisms, no STARTTLS; "alice" took the default domain.
  CHECK(starttls.output.find("caps IMAP4rev1") != std::string::npos);
  CHECK(starttls.output.find("AUTH=PLAIN") != std::string::npos);
  CHECK(starttls.output.find("caps IMAP4rev1 LITERAL+ SASL-IR ID UNSELECT STARTTLS") == std::string::npos);
  CHECK(starttls.output.find("list (\\HasNoChildren) \"/\" INBOX") != std::string::npos);
  CHECK(starttls.output.find("exists 2") != std::string::npos);
  // Each message whole: the bytes read are the RFC822.SIZE announced (the second is 200 KB).
  const std::regex message_line(R"(message \d+ \(UID \d+ FLAGS \(\) RFC822\.SIZE (\d+) BODY\[\] \{\d+\} len=(\d+) \| subject)");
  size_t whole = 0;
  for (auto it = std::sregex_iterator(starttls.output.begin(), starttls.output.end(), message_line);
       it != std::sregex_iterator(); ++it) {
    CHECK((*it)[1] == (*it)[2]);
    ++whole;
  }
  CHECK(whole == 2);
  CHECK(starttls.output.find("RFC822.SIZE 200") != std::string::npos);
  // BODY[HEADER.FIELDS] without PEEK set \Seen (RFC 9051 §6.4.5); BODY.PEEK[] before it did not.
  CHECK(starttls.output.find("seen 1 (FLAGS (\\Seen))") != std::string::npos);

  auto implicit = suite.imaplib("implicit", suite.imaps_port(), "alice@example.com", "secret-alice");
  INFO(implicit.output);
  REQUIRE(implicit.exit_code == 0);
  CHECK(implicit.output.find("exists 2") != std::string::npos);
  CHECK(implicit.output.find("done") != std::string::npos);

  auto wrong = suite.imaplib("implicit", suite.imaps_port(), "alice@example.com", "not-her-password");
  CHECK(wrong.exit_code != 0);
  CHECK(wrong.output.find("AUTHENTICATIONFAILED") != std::string::npos);
  CHECK(suite.stop() == 0);
}

TEST_CASE("python imaplib works on mailboxes: flags, search, copy, move, expunge, NOOP news, quota", "[integration]") {
  test::MmpDaemon suite;
  for (int i = 0; i < 3; ++i) {
    REQUIRE(suite.store().deliver({"small@example.com"}).output.find("250") != std::string::npos);
  }
  auto r = test::run({"python3", test::source_path("tests/mmp/daemon/imap_ops.py"), "--port",
                      std::to_string(suite.imaps_port()), "--lmtp-port", std::to_string(suite.store().implicit_port()),
                      "--ca", test::Pki::file("ca/ca.pem").string(), "--cert",
                      test::Pki::file("ca/clients/mta1.pem").string(), "--key",
                      test::Pki::file("ca/clients/mta1.key").string(), "--user", "small@example.com", "--password",
                      "secret-small", "--lmtp-client", test::source_path("tests/store/lmtp_client.py")},
                     90s);
  INFO(r.output << suite.log());
  REQUIRE(r.exit_code == 0);
  auto has = [&](const std::string& line) { return r.output.find(line) != std::string::npos; };
  CHECK(has("create OK"));
  CHECK(has("create-again NO [b'[ALREADYEXISTS]"));
  CHECK(has("search-all OK [b'1 2 3']"));
  CHECK(has("search-subject OK [b'1 2 3']"));
  CHECK(has("esearch OK [b'(TAG"));
  CHECK(has("MIN 1 MAX 3 COUNT 3"));
  CHECK(has(R"(store OK [b'1 (FLAGS (\\Flagged $Work))'])"));
  CHECK(has("search-flagged OK [b'1']"));
  CHECK(has("copy OK [b'[COPYUID"));
  CHECK(has("copy-missing NO [b'[TRYCREATE]"));
  CHECK(has("move OK"));
  CHECK(has("move-untagged [b'2']"));
  CHECK(has("status-work OK [b'Work (MESSAGES 2 UIDNEXT 3 UNSEEN 2)']"));
  CHECK(has("expunge OK [b'1']"));
  CHECK(has("search-after OK [b'1']"));
  CHECK(has("noop-exists [b'2']"));
  CHECK(has("arrived during the session"));
  CHECK(has("rename OK"));
  CHECK(has("Projects"));
  CHECK(has(R"(quota OK [[b'INBOX ""'], [b'"" (STORAGE 4 10)'])"));
  CHECK(has("namespace OK [b'((\"\" \"/\")) NIL NIL']"));
  CHECK(has("close OK"));
  CHECK(has("delete OK"));
  CHECK(has("list-after OK"));
  CHECK(r.output.find("Projects", r.output.find("list-after")) == std::string::npos);
  // APPEND: committed before the OK (APPENDUID), TRYCREATE for a missing mailbox, and over the
  // 10K quota refused while the client still sends (the rest is read and dropped, the session goes on).
  CHECK(has("append OK [b'[APPENDUID "));
  CHECK(has("append-missing NO [b'[TRYCREATE]"));
  CHECK(has("append-big NO [b'[OVERQUOTA]"));
  CHECK(has("select-after OK [b'3']"));
  CHECK(has(R"(FLAGS (\\Flagged) BODY[HEADER.FIELDS (SUBJECT)] {21}', b'Subject: appended)"));
  CHECK(has("done"));
}

TEST_CASE("curl reads a message over IMAPS and over STARTTLS", "[integration]") {
  test::MmpDaemon suite;
  REQUIRE(suite.store().deliver({"bob@example.com"}).output.find("250") != std::string::npos);
  const std::string ca = test::Pki::file("ca/ca.pem").string();
  for (const auto& [url, extra] : {std::pair{"imaps://127.0.0.1:" + std::to_string(suite.imaps_port()), ""},
                                   std::pair{"imap://127.0.0.1:" + std::to_string(suite.imap_port()), "--ssl-reqd"}}) {
    std::vector<std::string> argv{"curl", "-sS", "--max-time", "30", "--cacert", ca, "--user",
                                  "bob@example.com:secret-bob", url + "/INBOX;UID=1"};
    if (*extra) argv.insert(argv.begin() + 1, extra);
    auto r = test::run(argv, 60s);
    INFO(url << "\n" << r.output << suite.log());
    CHECK(r.exit_code == 0);
    CHECK(r.output.find("Subject:") != std::string::npos);
    CHECK(r.output.find("Delivered-To: bob@example.com") != std::string::npos);
  }
  // Without the password nothing is read.
  auto refused = test::run({"curl", "-sS", "--max-time", "30", "--cacert", ca, "--user", "bob@example.com:wrong",
                            "imaps://127.0.0.1:" + std::to_string(suite.imaps_port()) + "/INBOX;UID=1"},
                           60s);
  CHECK(refused.exit_code != 0);
  CHECK(refused.output.find("Subject:") == std::string::npos);
}

TEST_CASE("a store that is down gives NO [UNAVAILABLE] at once, and the mmp stays up", "[integration]") {
  test::MmpDaemon suite;
  REQUIRE(suite.store().stop() == 0);
  auto r = suite.imaplib("implicit", suite.imaps_port(), "alice@example.com", "secret-alice");
  INFO(r.output << suite.log());
  CHECK(r.exit_code != 0);
  CHECK(r.output.find("UNAVAILABLE") != std::string::npos);
  suite.store().start();
  // gRPC reconnects with its back-off (the client's max_reconnect_backoff): give it that long.
  test::CommandResult again;
  for (int attempt = 0; attempt < 20; ++attempt) {
    again = suite.imaplib("implicit", suite.imaps_port(), "alice@example.com", "secret-alice");
    if (again.exit_code == 0) break;
    std::this_thread::sleep_for(1s);
  }
  INFO(again.output);
  CHECK(again.exit_code == 0);
}

namespace {

std::vector<std::string> idle_script(test::MmpDaemon& suite, const std::string& mode, const std::string& user,
                                     const std::string& password) {
  return {"python3", test::source_path("tests/mmp/daemon/imap_idle.py"), "--mode", mode, "--port",
          std::to_string(suite.imaps_port()), "--lmtp-port", std::to_string(suite.store().implicit_port()), "--ca",
          test::Pki::file("ca/ca.pem").string(), "--cert", test::Pki::file("ca/clients/mta1.pem").string(), "--key",
          test::Pki::file("ca/clients/mta1.key").string(), "--user", user, "--password", password, "--lmtp-client",
          test::source_path("tests/store/lmtp_client.py"), "--timeout", "90"};
}

bool wait_for_text(const std::filesystem::path& file, const std::string& needle, std::chrono::milliseconds deadline) {
  const auto end = std::chrono::steady_clock::now() + deadline;
  while (std::chrono::steady_clock::now() < end) {
    if (test::read_file(file).find(needle) != std::string::npos) return true;
    std::this_thread::sleep_for(100ms);
  }
  return false;
}

}  // namespace

TEST_CASE("IDLE: a delivery, another session's flags and expunge arrive untagged before DONE", "[integration]") {
  test::MmpDaemon suite;
  auto r = test::run(idle_script(suite, "changes", "bob@example.com", "secret-bob"), 120s);
  INFO(r.output << suite.log());
  REQUIRE(r.exit_code == 0);
  auto has = [&](const std::string& line) { return r.output.find(line) != std::string::npos; };
  CHECK(has("idle-start + idling"));
  CHECK(has("idle-delivery * 4 EXISTS"));
  CHECK(has("idle-flags * 1 FETCH (FLAGS (\\Flagged))"));
  CHECK(has("idle-expunge * 2 EXPUNGE"));
  CHECK(has("idle-done i1 OK"));
  // The session's numbers follow what IDLE told: message 2 (UID 2) is gone.
  CHECK(has("fetch-after OK [b'1 (UID 1)', b'2 (UID 3)', b'3 (UID 4)']"));
  CHECK(has("idle2-end i2 BAD"));
  CHECK(has("noop-after OK"));
  CHECK(has("enable OK [b'QRESYNC']"));
  CHECK(has("qidle-vanished * VANISHED 4"));  // message 3 is UID 4 since UID 2 went
  CHECK(has("qidle-done q1 OK"));
  CHECK(has("auth-idle-done n1 OK"));
  CHECK(has("done"));
  // Each DONE cancels its Watch: that is not logged as a failed call to the store.
  CHECK(suite.count("method=Watch") == 0);
}

TEST_CASE("IDLE outlives its Watch's deadline, ends at the idle timeout, and a store that goes away is a BYE", "[integration]") {
  // Watches of 2 s: each IDLE below sees several end by their deadline and be opened again.
  test::MmpDaemonOptions options;
  options.sections_extra = "[stores]\nwatch_deadline = \"2s\"\n";
  test::MmpDaemon suite(options);
  test::TempDir dir;

  // IDLE without DONE: the listener's idle timeout (30 s here) logs the client out with BYE.
  {
    const auto out = dir.path() / "timeout.out";
    test::ChildProcess client(idle_script(suite, "wait", "alice@example.com", "secret-alice"), out.string());
    REQUIRE(wait_for_text(out, "idling", 30s));
    // A delivery after the first watches ended by their deadline still reaches the idling client
    // (had the session not watched again, it would have said BYE).
    std::this_thread::sleep_for(5s);
    REQUIRE(suite.store().deliver({"alice@example.com"}).output.find("250") != std::string::npos);
    CHECK(wait_for_text(out, "wait * 1 EXISTS", 10s));
    CHECK(client.wait(60s) == 0);
    const std::string text = test::read_file(out);
    INFO(text << suite.log());
    CHECK(text.find("wait * BYE Autologout") != std::string::npos);
    CHECK(text.find("closed after") != std::string::npos);
  }

  // The store stops while a client idles: BYE [UNAVAILABLE] at once, never a silent hang.
  {
    const auto out = dir.path() / "store.out";
    test::ChildProcess client(idle_script(suite, "wait", "alice@example.com", "secret-alice"), out.string());
    REQUIRE(wait_for_text(out, "idling", 30s));
    REQUIRE(suite.store().stop() == 0);
    CHECK(client.wait(20s) == 0);
    const std::string text = test::read_file(out);
    INFO(text << suite.log());
    CHECK(text.find("wait * BYE [UNAVAILABLE]") != std::string::npos);
    CHECK(suite.count("event=idle_ended") == 1);
  }
}

TEST_CASE("SEARCHRES: SEARCH RETURN (SAVE) and $ in FETCH, STORE, SEARCH, COPY", "[integration]") {
  test::MmpDaemon suite;
  for (int i = 0; i < 3; ++i) {
    REQUIRE(suite.store().deliver({"bob@example.com"}).output.find("250") != std::string::npos);
  }
  auto r = test::run({"python3", test::source_path("tests/mmp/daemon/imap_searchres.py"), "--port",
                      std::to_string(suite.imaps_port()), "--ca", test::Pki::file("ca/ca.pem").string(), "--user",
                      "bob@example.com", "--password", "secret-bob"},
                     60s);
  INFO(r.output << suite.log());
  REQUIRE(r.exit_code == 0);
  auto has = [&](const std::string& line) { return r.output.find(line) != std::string::npos; };
  CHECK(has("SEARCHRES"));
  // Nothing saved yet: "$" is empty, so nothing is fetched (RFC 5182 §2.1).
  CHECK(has("fetch-before OK [b'FETCH completed'] esearch=None fetch=None"));
  // SAVE alone: no ESEARCH response.
  CHECK(has("save OK [b'SEARCH completed'] esearch=None"));
  CHECK(has("fetch-saved OK [b'FETCH completed'] esearch=None fetch=[b'2 (UID 2)', b'3 (UID 3)']"));
  CHECK(has("search-saved OK [b'SEARCH completed'] esearch=[b'(TAG \""));
  CHECK(has("ALL 2:3']"));
  CHECK(has("COUNT 2']"));
  CHECK(has("copy-saved OK [b'[COPYUID"));
  CHECK(has("fetch-min OK [b'FETCH completed'] esearch=None fetch=[b'1 (UID 1)']"));
  // The two copies into INBOX, the selected mailbox, were told (EXISTS) before COPY's OK, so MAX
  // is the second copy's UID.
  CHECK(has("save-max OK [b'SEARCH completed'] esearch=[b'(TAG"));
  CHECK(has("UID MAX 5']"));
  CHECK(has("fetch-max OK [b'FETCH completed'] esearch=None fetch=[b'5 (UID 5 FLAGS (\\\\Flagged))']"));
  // The saved message was expunged: "$" names nothing now.
  CHECK(has("fetch-after-expunge OK [b'FETCH completed'] esearch=None fetch=None"));
  CHECK(has("done"));
}
