// authclient_test.cpp: AuthClient and SaslRelay against an in-process fake authserv: results on the
// caller's loop, caching with an injected clock, single flight, deadlines and a dead authserv as
// TempFail, SASL exchanges, abort and cancellation; one test over mTLS with deploy/certs databases.
#include <catch2/catch.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <functional>
#include <string>
#include <thread>
#include <vector>

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include "common/authclient/authclient.hpp"
#include "common/text/base64.hpp"
#include "common/runtime/loop.hpp"
#include "common/runtime/timer.hpp"
#include "common/tls/nss.hpp"
#include "tests/common/authclient/fake_authserv.hpp"
#include "tests/support/process.hpp"

namespace fs = std::filesystem;
using namespace std::chrono_literals;
using namespace common::authclient;
using common::text::base64_decode;
using common::text::base64_encode;
using common::ErrorKind;
using common::Result;
using common::runtime::Loop;
using common::runtime::Timer;
using Clock = std::chrono::steady_clock;

namespace {

// Cache time the test moves by hand, so TTLs need no sleeping.
struct FakeClock {
  std::atomic<int64_t> ms{1'000'000};
  std::function<Clock::time_point()> fn() {
    return [this] { return Clock::time_point(std::chrono::milliseconds(ms.load())); };
  }
  void advance(std::chrono::milliseconds d) { ms += d.count(); }
};

// Runs the loop until `done()` or `limit`; true when done.
bool run_until(Loop& loop, const std::function<bool()>& done, std::chrono::milliseconds limit = 10s) {
  if (done()) return true;
  Timer tick(loop.get());
  auto until = Clock::now() + limit;
  tick.start(1ms, [&] {
    if (done() || Clock::now() >= until) loop.stop();
  }, 1ms);
  loop.run();
  tick.stop();
  return done();
}

// Keeps the loop turning for a while (to see that nothing arrives).
void run_for(Loop& loop, std::chrono::milliseconds d) {
  auto until = Clock::now() + d;
  run_until(loop, [&] { return Clock::now() >= until; }, d + 1s);
}

// Results as the loop delivered them, with the thread each arrived on.
template <class T>
struct Got {
  std::vector<Result<T>> results;
  bool all_on_loop_thread = true;
  Callback<T> cb() {
    return [this, tid = std::this_thread::get_id()](Result<T> r) {
      all_on_loop_thread &= std::this_thread::get_id() == tid;
      results.push_back(std::move(r));
    };
  }
  size_t size() const { return results.size(); }
};

ConnectionFacts facts(std::string service = "imap", std::string tls = "TLSv1.3") {
  ConnectionFacts f;
  f.service = std::move(service);
  f.client_address = "192.0.2.7";
  f.server_address = "198.51.100.1";
  f.tls_version = std::move(tls);
  f.session_id = "7f3a01";
  return f;
}

AuthClientOptions plain_to(std::vector<std::string> targets, FakeClock* clock = nullptr) {
  AuthClientOptions o;
  o.targets = std::move(targets);
  o.tls.plaintext = true;
  if (clock) o.clock = clock->fn();
  return o;
}

std::unique_ptr<AuthClient> make_client(AuthClientOptions options) {
  auto client = AuthClient::create(std::move(options));
  INFO((client ? std::string() : client.error().detail));
  REQUIRE(client);
  return std::move(*client);
}

std::string dead_target() { return "127.0.0.1:" + std::to_string(test::free_port()); }

// One relay and what it said.
struct Relay {
  Relay(AuthClient& client, Loop& loop)
      : relay(std::make_unique<SaslRelay>(client, loop, [this](SaslOutput o) { outputs.push_back(std::move(o)); })) {}
  std::unique_ptr<SaslRelay> relay;
  std::vector<SaslOutput> outputs;
  const SaslFailure& failure(size_t i) {
    REQUIRE(outputs.size() > i);
    REQUIRE(std::holds_alternative<SaslFailure>(outputs[i]));
    return std::get<SaslFailure>(outputs[i]);
  }
  const SaslChallenge& challenge(size_t i) {
    REQUIRE(outputs.size() > i);
    REQUIRE(std::holds_alternative<SaslChallenge>(outputs[i]));
    return std::get<SaslChallenge>(outputs[i]);
  }
  const SaslSuccess& success(size_t i) {
    REQUIRE(outputs.size() > i);
    REQUIRE(std::holds_alternative<SaslSuccess>(outputs[i]));
    return std::get<SaslSuccess>(outputs[i]);
  }
};

const std::string kPlainAlice = base64_encode(std::string("\0alice\0secret", 13));
const std::string kPlainAliceHex = "00616c69636500736563726574";

}  // namespace

TEST_CASE("lookups, mechanisms and renewals come back on the caller's loop", "[authclient]") {
  test::FakeAuthserv server;
  Loop loop;
  auto client = make_client(plain_to({server.target()}));
  auto alive = std::make_shared<int>(0);

  Got<std::optional<UserInfo>> users;
  Got<RecipientInfo> recipients;
  Got<std::vector<std::string>> mechs;
  Got<TokenRenewal> renewals;
  client->lookup_user(loop, alive, facts(), "alice", users.cb());
  client->lookup_user(loop, alive, facts(), "nobody", users.cb());
  client->lookup_recipient(loop, alive, facts("smtp", ""), "alice@example.com", recipients.cb());
  client->lookup_recipient(loop, alive, facts("smtp", ""), "team@example.com", recipients.cb());
  client->lookup_recipient(loop, alive, facts("smtp", ""), "ghost@example.com", recipients.cb());
  client->mechanisms(loop, alive, facts("submission", "TLSv1.3"), mechs.cb());
  client->mechanisms(loop, alive, facts("submission", ""), mechs.cb());
  client->renew_token(loop, alive, facts(), "t1", renewals.cb());
  client->renew_token(loop, alive, facts(), "forged", renewals.cb());
  // Never inside the call, even when the answer could be immediate.
  CHECK(users.size() + recipients.size() + mechs.size() + renewals.size() == 0);
  REQUIRE(run_until(loop, [&] { return users.size() == 2 && recipients.size() == 3 && mechs.size() == 2 && renewals.size() == 2; }));
  CHECK(users.all_on_loop_thread);
  CHECK(recipients.all_on_loop_thread);

  // Order of arrival is not promised across different keys: find each answer.
  int found = 0, not_found = 0;
  for (auto& r : users.results) {
    REQUIRE(r);
    if (*r) {
      ++found;
      CHECK((*r)->canonical == "alice@example.com");
      CHECK((*r)->mail_host == "store1");
      CHECK((*r)->status == "active");
      CHECK((*r)->allowed_services == "+imap:ALL");
      CHECK((*r)->quota_bytes == (1u << 30));
      CHECK((*r)->addresses == std::vector<std::string>{"alice@example.com", "a@example.com"});
    } else {
      ++not_found;
    }
  }
  CHECK(found == 1);
  CHECK(not_found == 1);
  int user = 0, alias = 0, unknown = 0;
  for (auto& r : recipients.results) {
    REQUIRE(r);
    if (r->kind == RecipientKind::User) {
      ++user;
      CHECK(r->canonical == "alice@example.com");
    } else if (r->kind == RecipientKind::Alias) {
      ++alias;
      CHECK(r->targets == std::vector<std::string>{"alice@example.com", "bob@example.net"});
    } else {
      ++unknown;
    }
  }
  CHECK((user == 1 && alias == 1 && unknown == 1));
  std::vector<std::vector<std::string>> lists;
  for (auto& r : mechs.results) {
    REQUIRE(r);
    lists.push_back(*r);
  }
  std::sort(lists.begin(), lists.end(), [](auto& a, auto& b) { return a.size() < b.size(); });
  CHECK(lists[0] == std::vector<std::string>{"SCRAM-SHA-256"});
  CHECK(lists[1] == std::vector<std::string>{"PLAIN", "LOGIN", "SCRAM-SHA-256"});
  int renewed = 0, refused = 0;
  for (auto& r : renewals.results) {
    REQUIRE(r);
    if (r->ok) {
      ++renewed;
      CHECK(r->token == "t2");
      CHECK(r->token_expires_unix == 2000000000);
    } else {
      ++refused;
      CHECK(r->reason == "unknown token");
    }
  }
  CHECK((renewed == 1 && refused == 1));
}

TEST_CASE("answers are cached for their TTL, unknown names for the negative TTL", "[authclient][cache]") {
  test::FakeAuthserv server;
  Loop loop;
  FakeClock clock;
  auto client = make_client(plain_to({server.target()}, &clock));
  auto alive = std::make_shared<int>(0);
  Got<std::optional<UserInfo>> users;
  auto user = [&](std::string login, ConnectionFacts f = facts()) {
    size_t before = users.size();
    client->lookup_user(loop, alive, f, std::move(login), users.cb());
    REQUIRE(run_until(loop, [&] { return users.size() == before + 1; }));
    REQUIRE(users.results.back());
    return *users.results.back();
  };

  SECTION("positive answers: 30 s by default") {
    CHECK(user("alice"));
    CHECK(user("alice"));
    CHECK(server.calls("LookupUser") == 1);
    CHECK(client->stats().cache_hits == 1);
    // The client's address is not part of the key; the service is.
    ConnectionFacts other_client = facts();
    other_client.client_address = "203.0.113.9";
    CHECK(user("alice", other_client));
    CHECK(server.calls("LookupUser") == 1);
    CHECK(user("alice", facts("pop")));
    CHECK(server.calls("LookupUser") == 2);
    clock.advance(29s);
    CHECK(user("alice"));
    CHECK(server.calls("LookupUser") == 2);
    clock.advance(1s);
    CHECK(user("alice"));
    CHECK(server.calls("LookupUser") == 3);
  }
  SECTION("negative answers: 5 s by default") {
    CHECK_FALSE(user("nobody"));
    CHECK_FALSE(user("nobody"));
    CHECK(server.calls("LookupUser") == 1);
    clock.advance(4999ms);
    CHECK_FALSE(user("nobody"));
    CHECK(server.calls("LookupUser") == 1);
    clock.advance(1ms);
    CHECK_FALSE(user("nobody"));
    CHECK(server.calls("LookupUser") == 2);
  }
  SECTION("recipients and mechanisms") {
    Got<RecipientInfo> rcpt;
    Got<std::vector<std::string>> mechs;
    for (int round = 0; round < 2; ++round) {
      for (auto address : {"alice@example.com", "ghost@example.com"})
        client->lookup_recipient(loop, alive, facts("smtp", ""), address, rcpt.cb());
      // Mechanisms differ by TLS state, so both are asked once.
      client->mechanisms(loop, alive, facts("imap", ""), mechs.cb());
      client->mechanisms(loop, alive, facts("imap", "TLSv1.3"), mechs.cb());
      REQUIRE(run_until(loop, [&] { return rcpt.size() == 2u * (round + 1) && mechs.size() == 2u * (round + 1); }));
    }
    CHECK(server.calls("LookupRecipients") == 2);
    CHECK(server.calls("Mechanisms") == 2);
    clock.advance(5s);  // the unknown recipient expires, the user does not
    client->lookup_recipient(loop, alive, facts("smtp", ""), "ghost@example.com", rcpt.cb());
    client->lookup_recipient(loop, alive, facts("smtp", ""), "alice@example.com", rcpt.cb());
    REQUIRE(run_until(loop, [&] { return rcpt.size() == 6; }));
    CHECK(server.calls("LookupRecipients") == 3);
  }
  SECTION("renewals are never cached") {
    Got<TokenRenewal> renewals;
    client->renew_token(loop, alive, facts(), "t1", renewals.cb());
    REQUIRE(run_until(loop, [&] { return renewals.size() == 1; }));
    client->renew_token(loop, alive, facts(), "t1", renewals.cb());
    REQUIRE(run_until(loop, [&] { return renewals.size() == 2; }));
    CHECK(server.calls("RenewToken") == 2);
  }
}

TEST_CASE("concurrent identical lookups share one call", "[authclient][single-flight]") {
  test::FakeAuthserv server;
  Loop loop;
  auto client = make_client(plain_to({server.target()}));
  auto alive = std::make_shared<int>(0);
  Got<std::optional<UserInfo>> users;
  server.hold(true);
  for (int i = 0; i < 5; ++i) client->lookup_user(loop, alive, facts(), "alice", users.cb());
  client->lookup_user(loop, alive, facts(), "alice@example.com", users.cb());  // another key: its own call
  REQUIRE(run_until(loop, [&] { return server.held() == 2; }));
  run_for(loop, 50ms);
  CHECK(server.calls("LookupUser") == 2);
  CHECK(users.size() == 0);
  CHECK(client->stats().coalesced == 4);
  CHECK(client->stats().in_flight == 2);
  server.release();
  REQUIRE(run_until(loop, [&] { return users.size() == 6; }));
  for (auto& r : users.results) {
    REQUIRE(r);
    REQUIRE(*r);
    CHECK((*r)->canonical == "alice@example.com");
  }
  CHECK(server.calls("LookupUser") == 2);
}

TEST_CASE("a call authserv does not answer in time is TempFail and not cached", "[authclient][deadline]") {
  test::FakeAuthserv server;
  Loop loop;
  auto options = plain_to({server.target()});
  options.call_deadline = 300ms;
  auto client = make_client(options);
  auto alive = std::make_shared<int>(0);
  Got<std::optional<UserInfo>> users;
  server.hold(true);  // and never released: the fake never answers
  auto started = Clock::now();
  client->lookup_user(loop, alive, facts(), "alice", users.cb());
  client->lookup_user(loop, alive, facts(), "alice", users.cb());  // coalesced: fails with it
  REQUIRE(run_until(loop, [&] { return users.size() == 2; }));
  auto took = Clock::now() - started;
  CHECK(took >= 250ms);
  CHECK(took < 3s);
  for (auto& r : users.results) {
    REQUIRE_FALSE(r);
    CHECK(r.error().kind == ErrorKind::TempFail);
    CHECK(r.error().detail.find("DEADLINE_EXCEEDED") != std::string::npos);
  }
  server.hold(false);
  client->lookup_user(loop, alive, facts(), "alice", users.cb());
  REQUIRE(run_until(loop, [&] { return users.size() == 3; }));
  REQUIRE(users.results[2]);
  CHECK(*users.results[2]);
  CHECK(server.calls("LookupUser") == 2);
}

TEST_CASE("with authserv down every call is TempFail at once", "[authclient][down]") {
  Loop loop;
  auto client = make_client(plain_to({dead_target()}));
  auto alive = std::make_shared<int>(0);
  Got<std::optional<UserInfo>> users;
  Got<RecipientInfo> rcpt;
  Got<std::vector<std::string>> mechs;
  Got<TokenRenewal> renewals;
  auto started = Clock::now();
  client->lookup_user(loop, alive, facts(), "alice", users.cb());
  client->lookup_recipient(loop, alive, facts(), "alice@example.com", rcpt.cb());
  client->mechanisms(loop, alive, facts(), mechs.cb());
  client->renew_token(loop, alive, facts(), "t1", renewals.cb());
  REQUIRE(run_until(loop, [&] { return users.size() + rcpt.size() + mechs.size() + renewals.size() == 4; }));
  CHECK(Clock::now() - started < 2s);  // far below the 5 s deadline: a refused connection fails fast
  REQUIRE_FALSE(users.results[0]);
  CHECK(users.results[0].error().kind == ErrorKind::TempFail);
  CHECK(users.results[0].error().detail.find("UNAVAILABLE") != std::string::npos);
  REQUIRE_FALSE(rcpt.results[0]);
  CHECK(rcpt.results[0].error().kind == ErrorKind::TempFail);
  REQUIRE_FALSE(mechs.results[0]);
  CHECK(mechs.results[0].error().kind == ErrorKind::TempFail);
  REQUIRE_FALSE(renewals.results[0]);
  CHECK(renewals.results[0].error().kind == ErrorKind::TempFail);
  // Not cached: the next lookup asks again (and fails again).
  client->lookup_user(loop, alive, facts(), "alice", users.cb());
  REQUIRE(run_until(loop, [&] { return users.size() == 2; }));
  CHECK_FALSE(users.results[1]);
  CHECK(client->stats().rpcs == 5);
}

TEST_CASE("a lookup finding one authserv down is answered by the next", "[authclient][failover]") {
  test::FakeAuthserv server;
  Loop loop;
  auto client = make_client(plain_to({dead_target(), server.target()}));
  auto alive = std::make_shared<int>(0);
  Got<RecipientInfo> rcpt;
  for (auto address : {"a@example.com", "b@example.com", "c@example.com", "alice@example.com"})
    client->lookup_recipient(loop, alive, facts("smtp", ""), address, rcpt.cb());
  REQUIRE(run_until(loop, [&] { return rcpt.size() == 4; }));
  for (auto& r : rcpt.results) {
    INFO((r ? std::string() : r.error().detail));
    CHECK(r);
  }
  CHECK(server.calls("LookupRecipients") == 4);
}

// One authserv allows four calls in flight: holds four single lookups in the fake, so what the
// client is asked next has to queue.
void occupy_every_call(test::FakeAuthserv& server, AuthClient& client, Loop& loop, const std::shared_ptr<int>& alive,
                       Got<RecipientInfo>& rcpt) {
  server.hold(true);
  for (int i = 0; i < 4; ++i)
    client.lookup_recipient(loop, alive, facts("smtp", ""), "first" + std::to_string(i) + "@example.com", rcpt.cb());
  REQUIRE(run_until(loop, [&] { return server.held() == 4; }));
}

TEST_CASE("recipient lookups arriving while calls are in flight share the next call", "[authclient][batch]") {
  test::FakeAuthserv server;
  Loop loop;
  auto client = make_client(plain_to({server.target()}));
  auto alive = std::make_shared<int>(0);
  Got<RecipientInfo> rcpt;
  occupy_every_call(server, *client, loop, alive, rcpt);
  std::vector<std::string> later;
  for (int i = 0; i < 40; ++i) later.push_back("later" + std::to_string(i) + "@example.com");
  later[7] = "alice@example.com";
  later[21] = "team@example.com";
  for (auto& address : later) client->lookup_recipient(loop, alive, facts("smtp", ""), address, rcpt.cb());
  run_for(loop, 50ms);
  CHECK(server.calls("LookupRecipients") == 4);
  CHECK(client->stats().in_flight == 44);
  server.hold(false);
  server.release();
  REQUIRE(run_until(loop, [&] { return rcpt.size() == 44; }));
  // The 40 that waited left in the first free calls: 32 (the most one call takes), then 8.
  auto sizes = server.batch_sizes();
  std::sort(sizes.begin(), sizes.end());
  CHECK(sizes == std::vector<int>{1, 1, 1, 1, 8, 32});
  // Each answer reached the lookup it belongs to.
  int users = 0, aliases = 0;
  for (auto& r : rcpt.results) {
    REQUIRE(r);
    if (r->kind == RecipientKind::User) {
      ++users;
      CHECK(r->canonical == "alice@example.com");
    }
    if (r->kind == RecipientKind::Alias) {
      ++aliases;
      CHECK(r->targets == std::vector<std::string>{"alice@example.com", "bob@example.net"});
    }
  }
  CHECK((users == 1 && aliases == 1));
  CHECK(client->stats().in_flight == 0);
}

TEST_CASE("a batch whose answers are too large for one message is asked again one by one", "[authclient][batch]") {
  test::FakeAuthserv server;
  Loop loop;
  auto client = make_client(plain_to({server.target()}));
  auto alive = std::make_shared<int>(0);
  Got<RecipientInfo> rcpt;
  occupy_every_call(server, *client, loop, alive, rcpt);
  // The fake refuses any batch of more than one holding this address, as authserv does when the
  // answers would pass its message limit.
  client->lookup_recipient(loop, alive, facts("smtp", ""), "huge@example.com", rcpt.cb());
  client->lookup_recipient(loop, alive, facts("smtp", ""), "alice@example.com", rcpt.cb());
  server.hold(false);
  server.release();
  REQUIRE(run_until(loop, [&] { return rcpt.size() == 6; }));
  for (auto& r : rcpt.results) {
    INFO((r ? std::string() : r.error().detail));
    CHECK(r);
  }
  CHECK(server.calls("LookupRecipient") == 2);
  CHECK(server.calls("LookupRecipients") == 5);
}

TEST_CASE("beyond max_in_flight calls fail at once, but joining a call in flight still works", "[authclient][overload]") {
  test::FakeAuthserv server;
  Loop loop;
  auto options = plain_to({server.target()});
  options.max_in_flight = 2;
  auto client = make_client(options);
  auto alive = std::make_shared<int>(0);
  Got<std::optional<UserInfo>> users;
  server.hold(true);
  client->lookup_user(loop, alive, facts(), "alice", users.cb());
  client->lookup_user(loop, alive, facts(), "nobody", users.cb());
  client->lookup_user(loop, alive, facts(), "carol", users.cb());  // a third call: refused
  client->lookup_user(loop, alive, facts(), "alice", users.cb());  // joins the first
  REQUIRE(run_until(loop, [&] { return users.size() == 1; }));
  REQUIRE_FALSE(users.results[0]);
  CHECK(users.results[0].error().kind == ErrorKind::TempFail);
  CHECK(client->stats().overloaded == 1);
  REQUIRE(run_until(loop, [&] { return server.held() == 2; }));
  server.release();
  REQUIRE(run_until(loop, [&] { return users.size() == 4; }));
  for (size_t i = 1; i < 4; ++i) CHECK(users.results[i]);
  CHECK(server.calls("LookupUser") == 2);
}

TEST_CASE("a caller that went away is not called back", "[authclient][cancel]") {
  test::FakeAuthserv server;
  Loop loop;
  auto client = make_client(plain_to({server.target()}));
  auto gone = std::make_shared<int>(0);
  auto staying = std::make_shared<int>(0);
  Got<std::optional<UserInfo>> dropped, delivered;
  server.hold(true);
  client->lookup_user(loop, gone, facts(), "alice", dropped.cb());
  client->lookup_user(loop, staying, facts(), "alice", delivered.cb());  // same call, same batch of posts
  REQUIRE(run_until(loop, [&] { return server.held() == 1; }));
  gone.reset();  // the session closed while authserv was thinking
  server.release();
  REQUIRE(run_until(loop, [&] { return delivered.size() == 1; }));
  run_for(loop, 20ms);
  CHECK(dropped.size() == 0);
  // A cache hit for a caller already gone is dropped too.
  auto gone2 = std::make_shared<int>(0);
  client->lookup_user(loop, gone2, facts(), "alice", dropped.cb());
  gone2.reset();
  run_for(loop, 20ms);
  CHECK(dropped.size() == 0);
}

TEST_CASE("overlong names are refused without a call", "[authclient]") {
  test::FakeAuthserv server;
  Loop loop;
  auto client = make_client(plain_to({server.target()}));
  auto alive = std::make_shared<int>(0);
  Got<std::optional<UserInfo>> users;
  client->lookup_user(loop, alive, facts(), std::string(2000, 'a'), users.cb());
  REQUIRE(run_until(loop, [&] { return users.size() == 1; }));
  REQUIRE_FALSE(users.results[0]);
  CHECK(users.results[0].error().kind == ErrorKind::Protocol);
  CHECK(server.calls("LookupUser") == 0);
}

TEST_CASE("bad options are configuration errors", "[authclient]") {
  auto none = plain_to({});
  CHECK(AuthClient::create(none).error().kind == ErrorKind::Config);
  auto zero = plain_to({"127.0.0.1:1"});
  zero.call_deadline = 0ms;
  CHECK(AuthClient::create(zero).error().kind == ErrorKind::Config);
  // mTLS without NSS initialised: the credentials factory refuses rather than fall back.
  AuthClientOptions tls;
  tls.targets = {"127.0.0.1:1"};
  auto made = AuthClient::create(tls);
  REQUIRE_FALSE(made);
  CHECK(made.error().detail.find("NSS is not initialised") != std::string::npos);
}

// --- SASL relay ---

TEST_CASE("SASL PLAIN with an initial response", "[authclient][sasl]") {
  test::FakeAuthserv server;
  Loop loop;
  auto client = make_client(plain_to({server.target()}));
  Relay r(*client, loop);
  r.relay->start("PLAIN", kPlainAlice, facts());
  CHECK(r.outputs.empty());
  REQUIRE(run_until(loop, [&] { return !r.outputs.empty(); }));
  auto& ok = r.success(0);
  CHECK(ok.user.canonical == "alice@example.com");
  CHECK(ok.user.authcid == "alice");
  CHECK(ok.user.mail_host == "store1");
  CHECK(ok.user.token == "tok");
  CHECK(ok.user.token_expires_unix == 2000000000);
  CHECK(ok.additional_data_base64.empty());
  CHECK(r.relay->finished());
  CHECK(server.steps() == std::vector<std::string>{"start PLAIN ir=" + kPlainAliceHex});
  // The session usually drops the relay right after; the stream is already finished.
  r.relay.reset();
  REQUIRE(run_until(loop, [&] { return server.exchanges_done() == 1; }));
  CHECK(server.exchanges_cancelled() == 0);
}

TEST_CASE("the connection's default domain and a check-only start reach authserv", "[authclient][sasl]") {
  test::FakeAuthserv server;
  Loop loop;
  auto client = make_client(plain_to({server.target()}));
  Relay r(*client, loop);
  auto f = facts();
  f.default_domain = "example.org";
  r.relay->start("PLAIN", kPlainAlice, f, true);
  REQUIRE(run_until(loop, [&] { return !r.outputs.empty(); }));
  CHECK(server.steps() == std::vector<std::string>{"start PLAIN ir=" + kPlainAliceHex + " domain=example.org check_only"});
}

TEST_CASE("SASL PLAIN without an initial response: empty challenge, then the response", "[authclient][sasl]") {
  test::FakeAuthserv server;
  Loop loop;
  auto client = make_client(plain_to({server.target()}));
  Relay r(*client, loop);
  r.relay->start("plain", std::nullopt, facts());
  REQUIRE(run_until(loop, [&] { return r.outputs.size() == 1; }));
  CHECK(r.challenge(0).base64 == "");
  SECTION("right password") {
    r.relay->client_line(kPlainAlice);
    REQUIRE(run_until(loop, [&] { return r.outputs.size() == 2; }));
    CHECK(r.success(1).user.canonical == "alice@example.com");
    CHECK(server.steps() == std::vector<std::string>{"start PLAIN ir=none", "response " + kPlainAliceHex});
  }
  SECTION("wrong password") {
    r.relay->client_line(base64_encode(std::string("\0alice\0guess", 12)));
    REQUIRE(run_until(loop, [&] { return r.outputs.size() == 2; }));
    CHECK(r.failure(1).kind == FailureKind::Credentials);
    CHECK(r.failure(1).reason == "wrong password");
  }
}

TEST_CASE("a two-step exchange: challenge, response, success with additional data", "[authclient][sasl]") {
  test::FakeAuthserv server;
  Loop loop;
  auto client = make_client(plain_to({server.target()}));
  Relay r(*client, loop);
  r.relay->start("X-TWO", std::string("="), facts());
  REQUIRE(run_until(loop, [&] { return r.outputs.size() == 1; }));
  CHECK(base64_decode(r.challenge(0).base64) == "step one");
  CHECK_FALSE(r.relay->finished());
  r.relay->client_line(base64_encode("r1"));
  REQUIRE(run_until(loop, [&] { return r.outputs.size() == 2; }));
  CHECK(base64_decode(r.success(1).additional_data_base64) == "final words");
  CHECK(server.steps() == std::vector<std::string>{"start X-TWO ir=", "response 7231"});
  run_for(loop, 20ms);
  CHECK(r.outputs.size() == 2);  // nothing after the outcome
}

TEST_CASE("the client aborts with \"*\", and malformed lines fail without a round trip", "[authclient][sasl]") {
  test::FakeAuthserv server;
  Loop loop;
  auto client = make_client(plain_to({server.target()}));
  Relay r(*client, loop);
  r.relay->start("X-TWO", std::nullopt, facts());
  REQUIRE(run_until(loop, [&] { return r.outputs.size() == 1; }));
  SECTION("\"*\"") {
    r.relay->client_line("*");
    REQUIRE(run_until(loop, [&] { return r.outputs.size() == 2; }));
    CHECK(r.failure(1).kind == FailureKind::Aborted);
  }
  SECTION("bad base64") {
    r.relay->client_line("cjE");
    REQUIRE(run_until(loop, [&] { return r.outputs.size() == 2; }));
    CHECK(r.failure(1).kind == FailureKind::Protocol);
  }
  SECTION("oversize") {
    r.relay->client_line(std::string(12 * 1024 + 4, 'A'));
    REQUIRE(run_until(loop, [&] { return r.outputs.size() == 2; }));
    CHECK(r.failure(1).kind == FailureKind::Protocol);
  }
  // authserv hears an abort, never the bad line, and finishes the stream.
  REQUIRE(run_until(loop, [&] { return server.exchanges_done() == 1; }));
  CHECK(server.steps() == std::vector<std::string>{"start X-TWO ir=none", "abort"});
  run_for(loop, 20ms);
  CHECK(r.outputs.size() == 2);  // authserv's "aborted" reply is not passed on a second time
}

TEST_CASE("a client line before any challenge is a protocol error", "[authclient][sasl]") {
  test::FakeAuthserv server;
  Loop loop;
  auto client = make_client(plain_to({server.target()}));
  Relay r(*client, loop);
  r.relay->start("X-SILENT", std::nullopt, facts());
  r.relay->client_line(base64_encode("eager"));
  REQUIRE(run_until(loop, [&] { return r.outputs.size() == 1; }));
  CHECK(r.failure(0).kind == FailureKind::Protocol);
  REQUIRE(run_until(loop, [&] { return server.exchanges_done() == 1; }));
  CHECK(server.steps() == std::vector<std::string>{"start X-SILENT ir=none", "abort"});
}

TEST_CASE("authserv's failures and limits reach the session as failures", "[authclient][sasl]") {
  test::FakeAuthserv server;
  Loop loop;
  auto options = plain_to({server.target()});
  options.sasl.max_challenges = 2;
  options.exchange_deadline = 300ms;
  auto client = make_client(options);
  Relay r(*client, loop);
  SECTION("unknown mechanism") {
    r.relay->start("CRAM-MD5", std::nullopt, facts());
    REQUIRE(run_until(loop, [&] { return r.outputs.size() == 1; }));
    CHECK(r.failure(0).kind == FailureKind::Mechanism);
  }
  SECTION("too many challenges") {
    r.relay->start("X-LOOP", std::nullopt, facts());
    for (size_t i = 0; i < 2; ++i) {
      REQUIRE(run_until(loop, [&] { return r.outputs.size() == i + 1; }));
      r.challenge(i);
      r.relay->client_line("");
    }
    REQUIRE(run_until(loop, [&] { return r.outputs.size() == 3; }));
    CHECK(r.failure(2).kind == FailureKind::Protocol);
    REQUIRE(run_until(loop, [&] { return server.exchanges_done() == 1; }));
    CHECK(server.steps().back() == "abort");
  }
  SECTION("the exchange deadline") {
    auto started = Clock::now();
    r.relay->start("X-SILENT", std::nullopt, facts());
    REQUIRE(run_until(loop, [&] { return r.outputs.size() == 1; }));
    CHECK(Clock::now() - started >= 250ms);
    CHECK(r.failure(0).kind == FailureKind::Temporary);
    CHECK(r.failure(0).reason.find("deadline") != std::string::npos);
  }
  SECTION("a malformed mechanism never reaches authserv") {
    r.relay->start("PLAIN PLAIN", std::nullopt, facts());
    REQUIRE(run_until(loop, [&] { return r.outputs.size() == 1; }));
    CHECK(r.failure(0).kind == FailureKind::Mechanism);
    CHECK(server.calls("Authenticate") == 0);
  }
}

TEST_CASE("SASL with authserv down is a temporary failure", "[authclient][sasl][down]") {
  Loop loop;
  auto client = make_client(plain_to({dead_target()}));
  Relay r(*client, loop);
  auto started = Clock::now();
  r.relay->start("PLAIN", kPlainAlice, facts());
  REQUIRE(run_until(loop, [&] { return r.outputs.size() == 1; }));
  CHECK(Clock::now() - started < 2s);
  CHECK(r.failure(0).kind == FailureKind::Temporary);
  CHECK(r.failure(0).reason.find("UNAVAILABLE") != std::string::npos);
}

TEST_CASE("a SASL exchange finding one authserv down is opened again on the next", "[authclient][sasl][failover]") {
  test::FakeAuthserv server;
  Loop loop;
  auto client = make_client(plain_to({dead_target(), server.target()}));
  // Round robin starts at the dead one; every exchange still succeeds, each reaching authserv once.
  for (int i = 0; i < 3; ++i) {
    Relay r(*client, loop);
    r.relay->start("PLAIN", kPlainAlice, facts());
    REQUIRE(run_until(loop, [&] { return !r.outputs.empty(); }));
    CHECK(r.success(0).user.canonical == "alice@example.com");
  }
  CHECK(server.steps() == std::vector<std::string>(3, "start PLAIN ir=" + kPlainAliceHex));

  // Every authserv down: each is tried once, then a temporary failure.
  auto none = make_client(plain_to({dead_target(), dead_target()}));
  Relay r(*none, loop);
  auto started = Clock::now();
  r.relay->start("PLAIN", kPlainAlice, facts());
  REQUIRE(run_until(loop, [&] { return r.outputs.size() == 1; }));
  CHECK(Clock::now() - started < 3s);
  CHECK(r.failure(0).kind == FailureKind::Temporary);
}

TEST_CASE("destroying the relay mid-exchange cancels it without a callback", "[authclient][sasl][cancel]") {
  test::FakeAuthserv server;
  Loop loop;
  auto client = make_client(plain_to({server.target()}));
  Relay r(*client, loop);
  bool reached_server = true;
  SECTION("while authserv has the turn") {
    r.relay->start("X-SILENT", std::nullopt, facts());
    REQUIRE(run_until(loop, [&] { return server.steps().size() == 1; }));
  }
  SECTION("while the client owes a response") {
    r.relay->start("X-TWO", std::nullopt, facts());
    REQUIRE(run_until(loop, [&] { return r.outputs.size() == 1; }));
  }
  SECTION("before anything arrived") {
    r.relay->start("X-TWO", std::nullopt, facts());
    reached_server = false;  // perhaps: the cancellation may overtake the call
  }
  size_t before = r.outputs.size();
  r.relay.reset();
  if (reached_server) {
    REQUIRE(run_until(loop, [&] { return server.exchanges_done() == 1; }));
    CHECK(server.exchanges_cancelled() == 1);
  }
  run_for(loop, 50ms);
  CHECK(r.outputs.size() == before);
  // The client goes away at once: ~AuthClient finds no stream left to wait for.
  auto started = Clock::now();
  client.reset();
  CHECK(Clock::now() - started < 1s);
}

TEST_CASE("a session may drop the relay from inside its output callback", "[authclient][sasl]") {
  test::FakeAuthserv server;
  Loop loop;
  auto client = make_client(plain_to({server.target()}));
  std::unique_ptr<SaslRelay> relay;
  int outputs = 0;
  relay = std::make_unique<SaslRelay>(*client, loop, [&](SaslOutput o) {
    ++outputs;
    if (std::holds_alternative<SaslChallenge>(o)) relay.reset();  // e.g. the connection closed
  });
  relay->start("X-TWO", std::nullopt, facts());
  REQUIRE(run_until(loop, [&] { return relay == nullptr; }));
  REQUIRE(run_until(loop, [&] { return server.exchanges_done() == 1; }));
  run_for(loop, 20ms);
  CHECK(outputs == 1);
}

TEST_CASE("beyond max_exchanges a new exchange fails at once", "[authclient][sasl][overload]") {
  test::FakeAuthserv server;
  Loop loop;
  auto options = plain_to({server.target()});
  options.max_exchanges = 1;
  auto client = make_client(options);
  Relay first(*client, loop), second(*client, loop);
  first.relay->start("X-SILENT", std::nullopt, facts());
  second.relay->start("PLAIN", kPlainAlice, facts());
  REQUIRE(run_until(loop, [&] { return second.outputs.size() == 1; }));
  CHECK(second.failure(0).kind == FailureKind::Temporary);
  CHECK(first.outputs.empty());
  CHECK(client->stats().exchanges == 1);
  first.relay.reset();
  REQUIRE(run_until(loop, [&] { return client->stats().exchanges == 0; }));
  // The slot is free again.
  Relay third(*client, loop);
  third.relay->start("PLAIN", kPlainAlice, facts());
  REQUIRE(run_until(loop, [&] { return third.outputs.size() == 1; }));
  third.success(0);
}

// --- mTLS ---

namespace {

// The deployment's certificates made by deploy/certs once per build tree (each run takes seconds):
// the CA and host store1 (Server-Cert for "store1" and 127.0.0.1), copied per test.
fs::path pki_host() {
  static const fs::path cache = [] {
    fs::path dir = fs::path(POSTERN_BINARY_DIR) / "tests/common/authclient/pki";
    fs::path stamp = dir / "ready";
    // Several test processes may start at once: one builds, the others wait.
    struct Lock {
      int fd;
      ~Lock() {
        if (fd >= 0) ::close(fd);
      }
    } lock{::open((dir.string() + ".lock").c_str(), O_CREAT | O_RDWR | O_CLOEXEC, 0600)};
    REQUIRE(lock.fd >= 0);
    REQUIRE(::flock(lock.fd, LOCK_EX) == 0);
    std::error_code ec;
    bool fresh = fs::exists(stamp, ec) &&
                 fs::last_write_time(stamp, ec) > fs::last_write_time(test::source_path("deploy/certs"), ec);
    if (!fresh) {
      fs::remove_all(dir, ec);
      fs::create_directories(dir);
      auto certs = [&](std::vector<std::string> args) {
        args.insert(args.begin(), test::source_path("deploy/certs"));
        auto r = test::run(args, 120s);
        INFO(r.output);
        REQUIRE(r.exit_code == 0);
      };
      certs({"ca", "--dir", (dir / "ca").string()});
      certs({"host", "--ca", (dir / "ca").string(), "--dir", (dir / "store1").string(), "--host", "store1", "--ip",
             "127.0.0.1"});
      std::ofstream(stamp) << "ready\n";
    }
    return dir / "store1";
  }();
  return cache;
}

}  // namespace

TEST_CASE("over mTLS from an NSS database: lookups and a SASL exchange", "[authclient][mtls]") {
  test::TempDir tmp;
  fs::path host = tmp / "store1";
  fs::copy(pki_host(), host, fs::copy_options::recursive);
  auto nss = common::tls::Nss::init({.db_dir = host.string(), .password_file = (host / "password").string()});
  INFO((nss ? std::string() : nss.error().detail));
  REQUIRE(nss);
  {
    // One host plays both tiers: the fake authserv and the front end share the database.
    test::FakeAuthserv server(/*plaintext=*/false);
    Loop loop;
    AuthClientOptions options;
    options.targets = {server.target()};  // 127.0.0.1: the certificate carries it as an IP name
    auto client = make_client(options);
    auto alive = std::make_shared<int>(0);
    Got<std::optional<UserInfo>> users;
    client->lookup_user(loop, alive, facts(), "alice", users.cb());
    REQUIRE(run_until(loop, [&] { return users.size() == 1; }));
    INFO((users.results[0] ? std::string() : users.results[0].error().detail));
    REQUIRE(users.results[0]);
    CHECK(*users.results[0]);
    CHECK(server.last_peer() == "store1");  // the server saw our certificate

    Relay r(*client, loop);
    r.relay->start("PLAIN", kPlainAlice, facts());
    REQUIRE(run_until(loop, [&] { return r.outputs.size() == 1; }));
    CHECK(r.success(0).user.canonical == "alice@example.com");

    // A server expecting another name is refused by NSS: TempFail, as with authserv down.
    AuthClientOptions wrong = options;
    wrong.tls.expected_peer_name = "authserv9.example.net";
    auto impostor = make_client(wrong);
    client->lookup_user(loop, alive, facts(), "nobody", users.cb());
    impostor->lookup_user(loop, alive, facts(), "carol", users.cb());
    REQUIRE(run_until(loop, [&] { return users.size() == 3; }));
    int failures = 0;
    for (size_t i = 1; i < 3; ++i)
      if (!users.results[i]) {
        ++failures;
        CHECK(users.results[i].error().kind == ErrorKind::TempFail);
      }
    CHECK(failures == 1);
  }
  auto down = (*nss)->shutdown();
  INFO((down ? std::string() : down.error().detail));
  CHECK(down);
}
