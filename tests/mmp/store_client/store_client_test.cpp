// store_client_test.cpp: the mmp's store client against a real postern-store over mutual TLS (mta1's
// certificate, tokens from the fixture's signer), driven from a loop thread as a session drives it:
// Select, Fetch of delivered mail with pause and resume, Append then Fetch, a watch seeing a
// delivery (more on watches in watch_test.cpp), the token on every call, a stopped or silent store as TempFail within the deadline,
// failover to a second target, overload, callers that went away, and the client destroyed with
// calls in flight.
#include <catch2/catch.hpp>

#include <algorithm>
#include <atomic>
#include <map>
#include <thread>
#include <vector>

#include "mmp/store_client/config.hpp"
#include "tests/mmp/store_client/store_client_fixture.hpp"
#include "tests/support/log_capture.hpp"

using namespace test::store_client_tests;
using common::ErrorKind;

namespace {

mspb::UidRange range(uint32_t first, uint32_t last) {
  mspb::UidRange r;
  r.set_first(first);
  r.set_last(last);
  return r;
}

mspb::FetchRequest fetch_all(const mspb::MailboxRef& box, uint32_t first, uint32_t last) {
  mspb::FetchRequest f;
  *f.mutable_mailbox() = box;
  *f.add_uids() = range(first, last);
  f.set_flags(true);
  f.set_size(true);
  f.set_internal_date(true);
  f.add_sections();  // BODY[]: the whole message
  return f;
}

// The whole BODY[] of each message of a finished Fetch, by UID (pieces joined).
std::map<uint32_t, std::string> bodies(const std::vector<mspb::FetchResponse>& replies) {
  std::map<uint32_t, std::string> out;
  for (const auto& r : replies)
    for (const auto& m : r.messages())
      for (const auto& s : m.sections()) out[m.uid()] += s.data();
  return out;
}

}  // namespace

TEST_CASE("Select and Fetch of a delivered message, answered on the session's loop", "[store_client]") {
  Store store;
  store.deliver_to(kAlice);
  test::LoopThread lt;
  auto client = make_client(options_for({store.target()}));
  Session s(*client, lt);

  auto box = s.select();
  CHECK(box.status().messages() == 1);
  CHECK(box.name() == "INBOX");
  REQUIRE(box.uids_size() == 1);

  Got<void> done;
  s.arm(done);
  Stream<mspb::FetchResponse> replies;
  std::unique_ptr<FetchCall> call;
  lt.on_loop([&] {
    call = s.session->fetch(fetch_all(box.mailbox(), 1, 1), replies.cb(), done.cb());
    // Never inside the call itself.
    CHECK(replies.size() == 0);
  });
  auto ended = done.take();
  INFO((ended ? std::string() : ended.error().detail));
  REQUIRE(ended);
  CHECK(done.all_on_loop);
  REQUIRE(replies.size() >= 1);
  REQUIRE(replies.items[0].messages_size() >= 1);
  auto body = bodies(replies.items)[1];
  CHECK(body.size() == replies.items[0].messages(0).size());
  CHECK(body.find("\r\n\r\n") != std::string::npos);
  lt.on_loop([&] { call.reset(); });
}

TEST_CASE("Append then Fetch, and a paused Fetch waits until resumed", "[store_client]") {
  Store store;
  for (int i = 0; i < 3; ++i) store.deliver_to(kAlice);
  test::LoopThread lt;
  auto client = make_client(options_for({store.target()}));
  Session s(*client, lt);

  // The message goes in three writes, one of them larger than one append piece.
  const std::string message = "From: a@example.org\r\nSubject: appended\r\n\r\n" + std::string(1500000, 'x') + "\r\n";
  Got<mspb::AppendResponse> appended;
  s.arm(appended);
  std::unique_ptr<AppendCall> append;
  std::atomic<int> drained{0};
  lt.on_loop([&] {
    mspb::AppendRequest::Start start;
    start.set_mailbox("INBOX");
    start.add_flags("\\Seen");
    start.set_internal_date(1700000000);
    start.set_size(message.size());
    append = s.session->append(start, appended.cb());
    append->on_drained([&] { ++drained; });
    append->write(message.substr(0, 10));
    append->write(message.substr(10, 1200000));
    append->write(message.substr(1200010));
    // Counted until gRPC has taken them (some pieces may be out already).
    CHECK(append->queued_bytes() <= message.size());
  });
  // Everything written reaches gRPC (the session would read its client again), then the end.
  const auto until = Clock::now() + 15s;
  while (drained == 0 && Clock::now() < until) std::this_thread::sleep_for(5ms);
  REQUIRE(drained >= 1);
  CHECK(appended.size() == 0);
  lt.on_loop([&] {
    CHECK(append->queued_bytes() == 0);
    append->finish();
  });
  auto a = appended.take();
  INFO((a ? std::string() : a.error().detail));
  REQUIRE(a);
  CHECK(a->uid() == 4);
  CHECK(appended.all_on_loop);
  lt.on_loop([&] { append.reset(); });

  auto box = s.select();
  REQUIRE(box.status().messages() == 4);

  SECTION("the appended message reads back whole") {
    Got<void> done;
    s.arm(done);
    Stream<mspb::FetchResponse> replies;
    std::unique_ptr<FetchCall> call;
    lt.on_loop([&] { call = s.session->fetch(fetch_all(box.mailbox(), 4, 4), replies.cb(), done.cb()); });
    REQUIRE(done.take());
    auto got = bodies(replies.items);
    CHECK(got[4] == message);
    REQUIRE(replies.items[0].messages_size() >= 1);
    CHECK(replies.items[0].messages(0).internal_date() == 1700000000);
    lt.on_loop([&] { call.reset(); });
  }
  SECTION("paused after the first reply (three messages in one), the rest comes after resume()") {
    Got<void> done;
    s.arm(done);
    Stream<mspb::FetchResponse> replies;
    std::unique_ptr<FetchCall> call;
    lt.on_loop([&] {
      auto record = replies.cb();
      call = s.session->fetch(
          fetch_all(box.mailbox(), 1, 4),
          [&, record](mspb::FetchResponse&& r) mutable {
            record(std::move(r));
            if (replies.size() == 1) call->pause();
          },
          done.cb());
    });
    REQUIRE(replies.wait([](auto& items) { return items.size() >= 1; }));
    std::this_thread::sleep_for(300ms);
    CHECK(replies.size() == 1);
    CHECK(done.size() == 0);
    lt.on_loop([&] {
      // The three delivered messages in one reply; the 1.5 MB one follows in 1 MiB pieces.
      CHECK(replies.items[0].messages_size() == 3);
      if (replies.items[0].messages_size() == 3) CHECK(replies.items[0].messages(2).uid() == 3);
      call->resume();
    });
    REQUIRE(done.take());
    CHECK(replies.size() == 3);
    auto got = bodies(replies.items);
    CHECK(got.size() == 4);
    CHECK(got[4] == message);
    lt.on_loop([&] { call.reset(); });
  }
}

TEST_CASE("a Watch sees a delivery after Ready", "[store_client][watch]") {
  Store store;
  store.deliver_to(kAlice);
  test::LoopThread lt;
  auto client = make_client(options_for({store.target()}));
  Session s(*client, lt);
  auto box = s.select();

  Stream<mspb::WatchEvent> events;
  Got<void> ended;
  s.arm(ended);
  std::unique_ptr<WatchCall> watch;
  lt.on_loop([&] {
    mspb::WatchRequest w;
    *w.mutable_mailbox() = box.mailbox();
    w.set_since_modseq(box.status().highest_modseq());
    watch = s.session->watch(w, events.cb(), ended.cb());
  });
  REQUIRE(events.wait([](auto& items) { return !items.empty() && items.back().has_ready(); }));
  lt.on_loop([&] { CHECK(watch->ready()); });
  CHECK(client->stats().watches == 1);

  store.deliver_to(kAlice);
  REQUIRE(events.wait([](auto& items) {
    for (auto& e : items)
      if (e.has_added() && e.added().uid() == 2) return true;
    return false;
  }));
  CHECK(ended.size() == 0);
  // Destroying the handle ends the stream without a word to the session.
  lt.on_loop([&] { watch.reset(); });
  const auto until = Clock::now() + 5s;
  while (client->stats().watches != 0 && Clock::now() < until) std::this_thread::sleep_for(10ms);
  CHECK(client->stats().watches == 0);
  std::this_thread::sleep_for(100ms);
  CHECK(ended.size() == 0);
}

TEST_CASE("every call carries the session's token, and set_token replaces it", "[store_client][token]") {
  Store store;
  test::LoopThread lt;
  auto client = make_client(options_for({store.target()}));
  Session s(*client, lt, test::access_token(kAlice, "mta1", -60s));  // expired

  Got<mspb::QuotaResponse> quota;
  s.arm(quota);
  lt.on_loop([&] { s.session->quota(quota.cb()); });
  auto refused = quota.take(0);
  REQUIRE_FALSE(refused);
  CHECK(refused.error().kind == ErrorKind::Remote);
  CHECK(refused.error().code == StoreCode::Unauthenticated);
  CHECK(refused.error().detail.find("store store1 GetQuota: UNAUTHENTICATED") != std::string::npos);

  lt.on_loop([&] {
    s.session->set_token(test::access_token(kAlice));
    s.session->quota(quota.cb());
  });
  auto ok = quota.take(1);
  INFO((ok ? std::string() : ok.error().detail));
  CHECK(ok);

  // A token of another front end is refused as the store refuses it.
  Session other(*client, lt, test::access_token(kAlice, "mmp9"));
  Got<mspb::ListMailboxesResponse> list;
  other.arm(list);
  lt.on_loop([&] { other.session->list(mspb::ListMailboxesRequest(), list.cb()); });
  auto denied = list.take();
  REQUIRE_FALSE(denied);
  CHECK(denied.error().kind == ErrorKind::Remote);
}

TEST_CASE("mailbox calls: create, list, status, rename, subscribe, copy, store, search, changes, expunge, delete",
          "[store_client]") {
  Store store;
  store.deliver_to(kAlice);
  test::LoopThread lt;
  auto client = make_client(options_for({store.target()}));
  Session s(*client, lt);

  auto call = [&](auto method, auto request, auto& got) {
    s.arm(got);
    const size_t before = got.size();
    lt.on_loop([&] { ((*s.session).*method)(request, got.cb()); });
    auto r = got.take(before);
    if (!r) UNSCOPED_INFO(r.error().detail);
    return r;
  };

  Got<mspb::MailboxChanged> changed;
  mspb::CreateMailboxRequest create;
  create.set_name("Work/Projects");
  REQUIRE(call(&StoreSession::create, create, changed));
  auto again = call(&StoreSession::create, create, changed);
  REQUIRE_FALSE(again);
  CHECK(again.error().code == StoreCode::AlreadyExists);
  CHECK(again.error().kind == ErrorKind::Remote);

  Got<mspb::ListMailboxesResponse> listed;
  mspb::ListMailboxesRequest list;
  list.add_patterns("*");
  auto all = call(&StoreSession::list, list, listed);
  REQUIRE(all);
  std::vector<std::string> names;
  for (auto& m : all->mailboxes()) names.push_back(m.name());
  CHECK(std::find(names.begin(), names.end(), "Work/Projects") != names.end());

  mspb::RenameMailboxRequest rename;
  rename.set_from("Work/Projects");
  rename.set_to("Finished");
  REQUIRE(call(&StoreSession::rename, rename, changed));
  mspb::SubscribeRequest sub;
  sub.set_name("Finished");
  sub.set_subscribe(true);
  REQUIRE(call(&StoreSession::subscribe, sub, changed));

  auto box = s.select();
  Got<mspb::StoreFlagsResponse> flagged;
  mspb::StoreFlagsRequest flags;
  *flags.mutable_mailbox() = box.mailbox();
  *flags.add_uids() = range(1, 1);
  flags.set_mode(mspb::StoreFlagsRequest::ADD);
  flags.add_flags("\\Flagged");
  auto f = call(&StoreSession::store_flags, flags, flagged);
  REQUIRE(f);
  REQUIRE(f->updated_size() == 1);

  Got<mspb::SearchResponse> searched;
  mspb::SearchRequest search;
  *search.mutable_mailbox() = box.mailbox();
  search.add_program()->set_kind(mspb::SearchKey::FLAGGED);
  auto found = call(&StoreSession::search, search, searched);
  REQUIRE(found);
  CHECK(found->count() == 1);

  Got<mspb::ChangesResponse> changes;
  mspb::ChangesRequest since;
  *since.mutable_mailbox() = box.mailbox();
  since.set_since_modseq(box.status().highest_modseq());
  auto ch = call(&StoreSession::changes, since, changes);
  REQUIRE(ch);
  CHECK(ch->changed_size() == 1);

  Got<mspb::CopyResponse> copied;
  mspb::CopyRequest copy;
  *copy.mutable_mailbox() = box.mailbox();
  *copy.add_uids() = range(1, 1);
  copy.set_target("Finished");
  copy.set_move(true);
  auto moved = call(&StoreSession::copy, copy, copied);
  REQUIRE(moved);
  CHECK(moved->target_uids_size() == 1);
  CHECK(moved->expunged_size() == 1);

  Got<mspb::MailboxEntry> status;
  mspb::StatusRequest st;
  st.set_name("Finished");
  auto finished = call(&StoreSession::status, st, status);
  REQUIRE(finished);
  CHECK(finished->status().messages() == 1);

  Got<mspb::ExpungeResponse> expunged;
  mspb::ExpungeRequest expunge;
  *expunge.mutable_mailbox() = box.mailbox();
  REQUIRE(call(&StoreSession::expunge, expunge, expunged));

  mspb::DeleteMailboxRequest del;
  del.set_name("Finished");
  REQUIRE(call(&StoreSession::remove, del, changed));
  auto gone = call(&StoreSession::status, st, status);
  REQUIRE_FALSE(gone);
  CHECK(gone.error().code == StoreCode::NotFound);
}

TEST_CASE("a stopped store is TempFail at once, and a log line names it", "[store_client][down]") {
  Store store;
  test::LoopThread lt;
  auto client = make_client(options_for({store.target()}));
  Session s(*client, lt);
  s.select();
  REQUIRE(store.stop() == 0);

  test::LogCapture logs;
  Got<mspb::SelectResponse> got;
  s.arm(got);
  mspb::SelectRequest r;
  r.set_name("INBOX");
  const auto began = Clock::now();
  lt.on_loop([&] { s.session->select(r, got.cb()); });
  auto result = got.take();
  CHECK(Clock::now() - began < 5s);  // well below the 10 s call deadline: a refused connection
  REQUIRE_FALSE(result);
  CHECK(result.error().kind == ErrorKind::TempFail);
  CHECK(result.error().code == StoreCode::Unavailable);
  CHECK(result.error().detail.find("store store1 Select") != std::string::npos);
  CHECK(logs.wait_for({"comp=storeclient", "event=rpc_failed", "server=store1", "method=Select", "code=UNAVAILABLE"}));

  // A Watch on it ends the same way, and so does a Fetch.
  Got<void> ended, fetched;
  s.arm(ended);
  s.arm(fetched);
  Stream<mspb::WatchEvent> events;
  Stream<mspb::FetchResponse> replies;
  std::unique_ptr<WatchCall> watch;
  std::unique_ptr<FetchCall> fetch;
  lt.on_loop([&] {
    watch = s.session->watch(mspb::WatchRequest(), events.cb(), ended.cb());
    fetch = s.session->fetch(mspb::FetchRequest(), replies.cb(), fetched.cb());
  });
  auto w = ended.take();
  REQUIRE_FALSE(w);
  CHECK(w.error().kind == ErrorKind::TempFail);
  auto f = fetched.take();
  REQUIRE_FALSE(f);
  CHECK(f.error().kind == ErrorKind::TempFail);
  CHECK(events.size() == 0);
  lt.on_loop([&] {
    watch.reset();
    fetch.reset();
  });

  // Back up: the same channels serve again (gRPC's reconnect backoff is capped at 5 s).
  store.start();
  const auto until = Clock::now() + 20s;
  bool served = false;
  while (!served && Clock::now() < until) {
    Got<mspb::SelectResponse> retry;
    s.arm(retry);
    lt.on_loop([&] { s.session->select(r, retry.cb()); });
    served = bool(retry.take());
    if (!served) std::this_thread::sleep_for(200ms);
  }
  CHECK(served);
}

TEST_CASE("a store that accepts but never answers is TempFail within the deadline, Watch included",
          "[store_client][slow]") {
  SilentPort silent;
  test::LoopThread lt;
  auto o = options_for({silent.target()});
  o.call_deadline = 700ms;
  auto client = make_client(o);
  Session s(*client, lt, test::access_token(kAlice));

  Got<mspb::SelectResponse> got;
  s.arm(got);
  Got<void> ended;
  s.arm(ended);
  Stream<mspb::WatchEvent> events;
  std::unique_ptr<WatchCall> watch;
  const auto began = Clock::now();
  lt.on_loop([&] {
    mspb::SelectRequest r;
    r.set_name("INBOX");
    s.session->select(r, got.cb());
    watch = s.session->watch(mspb::WatchRequest(), events.cb(), ended.cb());
  });
  auto result = got.take();
  const auto took = Clock::now() - began;
  REQUIRE_FALSE(result);
  CHECK(result.error().kind == ErrorKind::TempFail);
  CHECK(result.error().code == StoreCode::DeadlineExceeded);
  CHECK(took >= 600ms);
  CHECK(took < 5s);
  auto w = ended.take();
  REQUIRE_FALSE(w);
  CHECK(w.error().kind == ErrorKind::TempFail);
  CHECK(w.error().detail.find("no Ready") != std::string::npos);
  CHECK(Clock::now() - began < 5s);
  lt.on_loop([&] { watch.reset(); });
}

TEST_CASE("a store with one dead target is served by the next, for reads", "[store_client][failover]") {
  Store store;
  store.deliver_to(kAlice);
  test::LoopThread lt;
  auto client = make_client(options_for({dead_target(), store.target()}));
  Session s(*client, lt);
  for (int i = 0; i < 4; ++i) CHECK(s.select().status().messages() == 1);
  // The first went to the dead target first (round robin starts there) and was sent again.
  CHECK(client->stats().rpcs > 4);
  CHECK(client->targets_for("store1").value().size() == 2);
}

TEST_CASE("beyond max_in_flight a call fails at once with TempFail", "[store_client][overload]") {
  SilentPort silent;
  test::LoopThread lt;
  auto o = options_for({silent.target()});
  o.max_in_flight = 2;
  o.call_deadline = 2s;
  auto client = make_client(o);
  Session s(*client, lt);
  Got<mspb::MailboxEntry> got;
  s.arm(got);
  lt.on_loop([&] {
    for (int i = 0; i < 3; ++i) s.session->status(mspb::StatusRequest(), got.cb());
  });
  auto first = got.take(0);  // the refused one, long before the deadline of the others
  REQUIRE_FALSE(first);
  CHECK(first.error().kind == ErrorKind::TempFail);
  CHECK(first.error().detail.find("too many calls") != std::string::npos);
  CHECK(got.size() == 1);
  CHECK(client->stats().overloaded == 1);
  REQUIRE(got.wait(3));
}

TEST_CASE("a session that went away is never called back", "[store_client][cancel]") {
  Store store;
  store.deliver_to(kAlice);
  test::LoopThread lt;
  auto client = make_client(options_for({store.target()}));
  Session s(*client, lt);
  auto box = s.select();

  std::atomic<int> calls{0};
  std::unique_ptr<FetchCall> fetch;
  lt.on_loop([&] {
    mspb::SelectRequest r;
    r.set_name("INBOX");
    s.session->select(r, [&](auto) { ++calls; });
    s.session->quota([&](auto) { ++calls; });
    // The handle stays (a careless owner), but the connection is gone.
    fetch = s.session->fetch(fetch_all(box.mailbox(), 1, 1), [&](auto&&) { ++calls; }, [&](auto) { ++calls; });
    s.alive.reset();
  });
  std::this_thread::sleep_for(1s);
  CHECK(calls == 0);
  // The unary calls still completed at the store; nothing is left in flight but the fetch, which
  // waits for a loop that will not ask for its next reply.
  CHECK(client->stats().in_flight <= 1);
  lt.on_loop([&] { fetch.reset(); });
  const auto until = Clock::now() + 5s;
  while (client->stats().in_flight != 0 && Clock::now() < until) std::this_thread::sleep_for(10ms);
  CHECK(client->stats().in_flight == 0);
  CHECK(calls == 0);
}

TEST_CASE("destroying the client with calls in flight cancels them without callbacks", "[store_client][shutdown]") {
  Store store;
  store.deliver_to(kAlice);
  SilentPort silent;
  test::LoopThread lt;
  auto o = options_for({store.target()});
  o.stores["hung"] = {silent.target()};
  auto client = make_client(o);
  Session s(*client, lt);
  Session hung(*client, lt, test::access_token(kAlice), "hung");
  auto box = s.select();

  std::atomic<int> calls{0};
  std::unique_ptr<WatchCall> watch;
  std::unique_ptr<FetchCall> fetch;
  Stream<mspb::WatchEvent> events;
  lt.on_loop([&] {
    mspb::WatchRequest w;
    *w.mutable_mailbox() = box.mailbox();
    w.set_since_modseq(box.status().highest_modseq());
    watch = s.session->watch(w, events.cb(), [&](auto) { ++calls; });
    for (int i = 0; i < 5; ++i) hung.session->quota([&](auto) { ++calls; });
    fetch = hung.session->fetch(fetch_all(box.mailbox(), 1, 1), [&](auto&&) { ++calls; }, [&](auto) { ++calls; });
  });
  REQUIRE(events.wait([](auto& items) { return !items.empty() && items.back().has_ready(); }));
  CHECK(client->stats().in_flight == 6);

  const auto began = Clock::now();
  client.reset();
  CHECK(Clock::now() - began < 3s);
  std::this_thread::sleep_for(200ms);
  CHECK(calls == 0);
  // The handles and sessions outlive the client here; using and dropping them is harmless.
  lt.on_loop([&] {
    s.session->quota([&](auto) { ++calls; });
    watch.reset();
    fetch.reset();
  });
  std::this_thread::sleep_for(100ms);
  CHECK(calls == 0);
}

TEST_CASE("store names and addresses become targets", "[store_client][targets]") {
  test::nss_host();
  StoreClientOptions o;
  o.stores["Store1"] = {"10.0.0.5", "store1b.example.net:7600", "[2001:db8::5]"};
  o.default_port = 7571;
  auto client = make_client(o);
  CHECK(client->targets_for("STORE1").value() ==
        std::vector<std::string>{"10.0.0.5:7571", "store1b.example.net:7600", "[2001:db8::5]:7571"});
  CHECK(client->targets_for("store2.example.net").value() == std::vector<std::string>{"store2.example.net:7571"});
  CHECK(client->targets_for("2001:db8::9").value() == std::vector<std::string>{"[2001:db8::9]:7571"});
  const std::vector<std::string> bad_names{"",       "store 1", "a/b",        "host:0",
                                           "host:99999", "host:x", "[::1", "[zz::1]", "-a.example",
                                           std::string("nul\0host", 8)};
  for (const auto& bad : bad_names) {
    auto t = client->targets_for(bad);
    INFO(bad);
    REQUIRE_FALSE(t);
    CHECK(t.error().kind == ErrorKind::Config);
  }
  // A session cannot be opened on a store with no usable name.
  test::LoopThread lt;
  auto alive = std::make_shared<int>(0);
  auto refused = client->open("bad name", lt.loop, alive, {});
  REQUIRE_FALSE(refused);
  CHECK(refused.error().kind == ErrorKind::Config);

  StoreClientOptions broken;
  broken.stores["s"] = {"host:none"};
  CHECK(StoreClient::create(broken).error().kind == ErrorKind::Config);
}

TEST_CASE("the store client's config table: stores, ports, deadlines, limits", "[store_client][config]") {
  auto doc = common::config::Document::parse(R"(
[mailstore]
certificate = "Mmp-Cert"
default_port = 7600
call_deadline = "3s"
watch_deadline = "10m"
max_in_flight = 50
[mailstore.stores]
Store1 = ["10.0.0.5", "10.0.0.6:7601"]
store2 = "store2.example.net"
)",
                                             "mmp.toml");
  StoreClientOptions o;
  read_store_client_config(doc.root().section("mailstore"), o);
  doc.finish();
  INFO(doc.problems_text());
  REQUIRE(doc.ok());
  CHECK(o.tls.certificate == "Mmp-Cert");
  CHECK(o.default_port == 7600);
  CHECK(o.call_deadline == 3s);
  CHECK(o.watch_deadline == 10min);
  CHECK(o.max_in_flight == 50);
  CHECK(o.stores.at("store1") == std::vector<std::string>{"10.0.0.5", "10.0.0.6:7601"});
  CHECK(o.stores.at("store2") == std::vector<std::string>{"store2.example.net"});

  auto bad = common::config::Document::parse(R"(
[mailstore]
default_port = 0
colour = "blue"
[mailstore.stores]
store1 = []
store2 = "store two"
)",
                                             "mmp.toml");
  StoreClientOptions b;
  read_store_client_config(bad.root().section("mailstore"), b);
  bad.finish();
  const std::string text = bad.problems_text();
  CHECK(text.find("default_port") != std::string::npos);
  CHECK(text.find("colour") != std::string::npos);
  CHECK(text.find("store1") != std::string::npos);
  CHECK(text.find("not a host name") != std::string::npos);
  CHECK(b.stores.empty());
}
