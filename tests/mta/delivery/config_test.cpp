// config_test.cpp: the delivery tables read from TOML (values, defaults, every refusal with its key),
// dsn_destination, and the pure routing pieces: destinations, MX order with null MX, the outcome and
// RFC 3463 status of each client failure, and when the next address may be tried.
#include <catch2/catch.hpp>

#include "common/config/config.hpp"
#include "mta/delivery/config.hpp"
#include "mta/delivery/routing.hpp"
#include "mta/queue/queue.hpp"
#include "tests/support/process.hpp"

#include <atomic>
#include <set>

using namespace mta::delivery;
using namespace std::chrono_literals;
namespace sc = common::smtpclient;

namespace {

struct Parsed {
  common::config::Document doc;
  Config config;
};

Parsed parse(const std::string& text) {
  Parsed p{common::config::Document::parse(text, "mta.toml"), {}};
  read_config(p.doc.root(), p.config);
  p.doc.finish();
  return p;
}

bool has(const std::string& hay, const std::string& needle) { return hay.find(needle) != std::string::npos; }

sc::Status reply_status(sc::Failure kind, int code, uint8_t klass, uint16_t subject, uint16_t detail, std::string text) {
  sc::Status s;
  s.kind = kind;
  common::smtp::Reply r;
  r.code = code;
  r.enhanced = {klass, subject, detail};
  r.lines = {std::move(text)};
  s.reply = r;
  s.detail = "RCPT TO: " + std::to_string(code);
  return s;
}

}  // namespace

TEST_CASE("the delivery tables: values, defaults, lookups by domain", "[delivery]") {
  auto p = parse(R"(
[delivery]
poll_interval = "250ms"
max_sessions = 10
max_per_destination = 2
smtp_port = 2525
helo_name = "mta1.example.com"
connect_timeout = "5s"
greeting_timeout = "2s"
data_term_timeout = "1m"
pool_idle_timeout = "10s"
[[store_host]]
name = "Store1"
address = "127.0.0.1:225"
[[store_host]]
name = "store2"
address = "[::1]:2225"
tls = "starttls"
server_name = "store2.internal"
[[route]]
domain = "Example.NET."
host = "127.0.0.1:2526"
[[route]]
domain = ".partner.example"
host = "gw.partner.example"
[[tls_policy]]
domain = "partner.example"
starttls = "required"
verify = "ca"
server_name = "mx.partner.example"
[[tls_policy]]
domain = ".bank.example"
starttls = "required"
)");
  INFO(p.doc.problems_text());
  REQUIRE(p.doc.ok());
  const Config& c = p.config;
  CHECK(c.poll_interval == 250ms);
  CHECK(c.max_sessions == 10);
  CHECK(c.max_per_destination == 2);
  CHECK(c.smtp_port == 2525);
  CHECK(c.helo_name == "mta1.example.com");
  CHECK(c.connect_timeout == 5s);
  CHECK(c.timeouts.greeting == 2s);
  CHECK(c.timeouts.data_term == 1min);
  CHECK(c.timeouts.mail == 5min);  // RFC 5321 §4.5.3.2 default
  CHECK(c.pool.idle_timeout == 10s);
  CHECK(c.certificate == "Server-Cert");
  REQUIRE(c.store_hosts.size() == 2);
  const StoreHost* s1 = c.store_host("STORE1");
  REQUIRE(s1 != nullptr);
  CHECK(s1->implicit_tls);
  CHECK(s1->server_name == "store1");
  CHECK(s1->address.to_string() == "127.0.0.1:225");
  const StoreHost* s2 = c.store_host("store2");
  REQUIRE(s2 != nullptr);
  CHECK(!s2->implicit_tls);
  CHECK(s2->server_name == "store2.internal");
  CHECK(c.store_host("store3") == nullptr);

  const Route* r = c.route("example.net");
  REQUIRE(r != nullptr);
  CHECK(r->host == "127.0.0.1");
  CHECK(r->port == 2526);
  const Route* sub = c.route("eu.partner.example");
  REQUIRE(sub != nullptr);
  CHECK(sub->host == "gw.partner.example");
  CHECK(sub->port == 2525);  // the [delivery] smtp_port, read before the routes
  CHECK(c.route("partner.example") == nullptr);  // ".partner.example" is its subdomains only
  CHECK(c.route("other.example") == nullptr);

  const TlsPolicy* tp = c.tls_policy("PARTNER.example");
  REQUIRE(tp != nullptr);
  CHECK(tp->starttls == sc::StartTls::Required);
  CHECK(tp->verify == common::tls::Verify::DeploymentCa);
  CHECK(tp->server_name == "mx.partner.example");
  const TlsPolicy* bank = c.tls_policy("online.bank.example");
  REQUIRE(bank != nullptr);
  CHECK(bank->verify == common::tls::Verify::SystemRoots);  // required TLS is checked against public roots by default
  CHECK(c.tls_policy("example.org") == nullptr);
  CHECK(has(p.doc.effective_toml(), "smtp_port = 2525"));
}

TEST_CASE("the delivery tables refuse what cannot work, naming the key", "[delivery]") {
  auto p = parse(R"(
[delivery]
max_sessions = 2
max_per_destination = 3
smtp_port = 0
poll_interval = "1ms"
certificate = ""
[[store_host]]
name = "store1"
[[store_host]]
name = "STORE1"
address = "127.0.0.1"
tls = "plain"
[[route]]
domain = "example.net"
host = "127.0.0.1:99999"
[[route]]
domain = "bad domain"
host = "x:y"
[[tls_policy]]
domain = "a.example"
starttls = "sometimes"
[[tls_policy]]
domain = "b.example"
verify = "ca"
[[tls_policy]]
domain = "b.example"
starttls = "required"
[[tls_policy]]
domain = "c.example"
starttls = "required"
verify = "maybe"
frobnicate = 1
)");
  const std::string text = p.doc.problems_text();
  INFO(text);
  CHECK(!p.doc.ok());
  CHECK(has(text, "delivery.max_per_destination: larger than max_sessions"));
  CHECK(has(text, "delivery.smtp_port"));
  CHECK(has(text, "delivery.poll_interval"));
  CHECK(has(text, "delivery.certificate"));
  CHECK(has(text, "store_host[0].address: missing"));
  CHECK(has(text, "store_host[1].name: store \"store1\" is listed twice"));
  CHECK(has(text, "store_host[1].address: needs a port"));
  CHECK(has(text, "store_host[1].tls"));
  CHECK(has(text, "route[0].host"));
  CHECK(has(text, "route[1].domain"));
  CHECK(has(text, "route[1].host"));
  CHECK(has(text, "tls_policy[0].starttls"));
  CHECK(has(text, "tls_policy[1].verify: applies only with starttls = \"required\""));
  CHECK(has(text, "tls_policy[2].domain: \"b.example\" has two TLS policies"));
  CHECK(has(text, "tls_policy[3].verify"));
  CHECK(has(text, "tls_policy[3].frobnicate"));
}

TEST_CASE("dsn_destination: our domains go to local:, others to their lower-cased domain", "[delivery]") {
  auto f = dsn_destination({"Example.com", "example.org."});
  CHECK(f("alice@example.com") == "local:example.com");
  CHECK(f("Bob@EXAMPLE.ORG") == "local:example.org");
  CHECK(f("carol@Remote.Example.NET") == "remote.example.net");
  CHECK(f("\"odd@local\"@example.com") == "local:example.com");  // the last @ separates the domain
  CHECK(f("dave@[192.0.2.1]") == "[192.0.2.1]");
  CHECK(f("nodomain") == "");  // the queue files it under "(none)"
}

TEST_CASE("destinations: stores, our domains, address literals, remote domains", "[delivery]") {
  using K = DestinationKind::Kind;
  CHECK(classify("store:Store1").kind == K::Store);
  CHECK(classify("store:Store1").name == "store1");
  CHECK(classify("store:").kind == K::Invalid);
  CHECK(classify("local:example.com").kind == K::Local);
  CHECK(classify("local:example.com").name == "example.com");
  auto v4 = classify("[192.0.2.1]");
  REQUIRE(v4.kind == K::Literal);
  CHECK(v4.address->to_string() == "192.0.2.1");
  auto v6 = classify("[IPv6:2001:db8::1]");
  REQUIRE(v6.kind == K::Literal);
  CHECK(v6.address->to_string() == "2001:db8::1");
  CHECK(classify("[2001:db8::1]").kind == K::Invalid);  // RFC 5321 §4.1.3 wants the IPv6: tag
  CHECK(classify("[ipv6:192.0.2.1]").kind == K::Invalid);
  CHECK(classify("[999.0.0.1]").kind == K::Invalid);
  CHECK(classify("Example.NET").kind == K::Remote);
  CHECK(classify("Example.NET").name == "example.net");
  CHECK(classify("").kind == K::Invalid);
  CHECK(classify("smtp:example.net").kind == K::Invalid);
}

TEST_CASE("MX order: preference, equal preferences shuffled, a null MX, duplicates", "[delivery]") {
  using common::dns::MxRecord;
  auto fixed = [] { return 0.0; };
  auto plan = plan_mx({{20, "b.example"}, {10, "a.example"}, {30, "c.example"}, {10, "a.example"}}, fixed);
  CHECK(!plan.null_mx);
  CHECK(plan.hosts == std::vector<std::string>{"a.example", "b.example", "c.example"});
  CHECK(plan_mx({{0, ""}}, fixed).null_mx);
  CHECK(plan_mx({{0, ""}}, fixed).hosts.empty());
  // A null MX beside a real one is broken DNS; the real one is still tried.
  auto mixed = plan_mx({{0, ""}, {10, "mx.example"}}, fixed);
  CHECK(!mixed.null_mx);
  CHECK(mixed.hosts == std::vector<std::string>{"mx.example"});
  CHECK(!plan_mx({}, fixed).null_mx);
  // Equal preferences come out in every order over many draws; the higher preference stays last.
  std::set<std::string> firsts;
  double x = 0.05;
  auto stepping = [&] { x = x + 0.31 > 1.0 ? x + 0.31 - 1.0 : x + 0.31; return x; };
  for (int i = 0; i < 50; ++i) {
    auto p = plan_mx({{10, "p.example"}, {10, "q.example"}, {10, "r.example"}, {50, "z.example"}}, stepping);
    REQUIRE(p.hosts.size() == 4);
    CHECK(p.hosts.back() == "z.example");
    firsts.insert(p.hosts.front());
  }
  CHECK(firsts.size() == 3);
}

TEST_CASE("verdicts: replies keep their code and status, failures without one get RFC 3463 statuses", "[delivery]") {
  using mta::queue::Outcome;
  auto ok = verdict(sc::Status{}, true);
  CHECK(ok.outcome == Outcome::Delivered);
  CHECK(ok.status == "2.0.0");
  CHECK(verdict(sc::Status{}, false).outcome == Outcome::Relayed);

  auto unknown = verdict(reply_status(sc::Failure::PermFail, 550, 5, 1, 1, "no such user"), false);
  CHECK(unknown.outcome == Outcome::PermFail);
  CHECK(unknown.code == 550);
  CHECK(unknown.status == "5.1.1");
  CHECK(unknown.reply == "no such user");
  auto full = verdict(reply_status(sc::Failure::TempFail, 452, 4, 2, 2, "mailbox full"), true);
  CHECK(full.outcome == Outcome::TempFail);
  CHECK(full.status == "4.2.2");
  // A 5xx to STARTTLS where TLS is required waits (kind Tls), and its status says so.
  auto starttls = verdict(reply_status(sc::Failure::Tls, 554, 5, 7, 0, "no TLS for you"), false);
  CHECK(starttls.outcome == Outcome::TempFail);
  CHECK(starttls.code == 554);
  CHECK(starttls.status == "4.7.0");
  // A reply without an enhanced code gets its class's generic one.
  auto bare = verdict(reply_status(sc::Failure::PermFail, 554, 0, 0, 0, "go away"), false);
  CHECK(bare.status == "5.0.0");
  // Control bytes in a server's text do not reach the queue.
  auto dirty = verdict(reply_status(sc::Failure::TempFail, 451, 4, 3, 0, "a\x01" "b\x7f"), false);
  CHECK(dirty.reply.find('\x01') == std::string::npos);

  auto connect = verdict(sc::Status{sc::Failure::Connect, "ECONNREFUSED (connection refused)", {}}, false);
  CHECK(connect.outcome == Outcome::TempFail);
  CHECK(connect.status == "4.4.1");
  CHECK(connect.code == 0);
  CHECK(connect.reply == "ECONNREFUSED (connection refused)");
  CHECK(verdict(sc::Status{sc::Failure::Timeout, "no reply", {}}, false).status == "4.4.2");
  CHECK(verdict(sc::Status{sc::Failure::Closed, "closed", {}}, false).status == "4.4.2");
  CHECK(verdict(sc::Status{sc::Failure::Tls, "TLS is required", {}}, false).status == "4.7.5");
  CHECK(verdict(sc::Status{sc::Failure::Protocol, "garbage", {}}, false).status == "4.5.0");
  auto size = verdict(sc::Status{sc::Failure::PermFail, "the message is larger than the server's SIZE 1000", {}}, false);
  CHECK(size.outcome == Outcome::PermFail);
  CHECK(size.status == "5.3.4");
  CHECK(verdict(sc::Status{sc::Failure::PermFail, "the message needs SMTPUTF8 and the server does not offer it", {}},
                false).status == "5.6.7");
}

TEST_CASE("the next address is tried only for a message the server never saw", "[delivery]") {
  sc::DeliveryResult r;
  r.status = sc::Status{sc::Failure::Connect, "refused", {}};
  CHECK(try_next_address(r));
  r.status = sc::Status{sc::Failure::Timeout, "no greeting", {}};
  CHECK(try_next_address(r));
  r.status = reply_status(sc::Failure::PermFail, 554, 5, 0, 0, "no service");  // a 5xx greeting
  CHECK(try_next_address(r));
  r.status = sc::Status{sc::Failure::PermFail, "larger than SIZE", {}};  // the same everywhere
  CHECK(!try_next_address(r));
  r.status = sc::Status{sc::Failure::Timeout, "no reply after the data", {}};
  r.offered = true;  // it may have been delivered: never a second copy elsewhere
  CHECK(!try_next_address(r));
  r.status = sc::Status{};
  r.offered = false;
  CHECK(!try_next_address(r));
}

TEST_CASE("due_destinations: each destination with due mail once, earliest first, leased and held ones out",
          "[delivery][queue]") {
  using namespace mta::queue;
  test::TempDir tmp;
  auto clock = std::make_shared<std::atomic<UnixMs>>(1'700'000'000'000);
  QueueOptions o;
  o.dir = (tmp / "queue").string();
  o.map_size = size_t{64} << 20;
  o.clock = [clock] { return clock->load(); };
  auto q = Queue::open(o);
  REQUIRE(q);
  auto enqueue = [&](std::vector<std::pair<std::string, std::string>> rcpts) {
    Message m;
    m.envelope.reverse_path = "sender@example.org";
    m.content = "Subject: x\r\n\r\nbody\r\n";
    for (auto& [address, destination] : rcpts) {
      Recipient r;
      r.address = address;
      r.destination = destination;
      m.recipients.push_back(r);
    }
    auto id = (*q)->enqueue_and_wait(m);
    REQUIRE(id);
    *clock += 1000;
    return *id;
  };
  enqueue({{"a@b.example", "b.example"}, {"b@b.example", "b.example"}});
  enqueue({{"x@a.example", "a.example"}, {"y@b.example", "b.example"}});
  const std::string held = enqueue({{"z@c.example", "c.example"}});
  enqueue({{"alice@example.com", "store:store1"}});
  REQUIRE((*q)->hold(held));
  auto due = (*q)->due_destinations(clock->load());
  REQUIRE(due);
  std::vector<std::string> names;
  for (auto& d : *due) names.push_back(d.destination);
  CHECK(names == std::vector<std::string>{"b.example", "a.example", "store:store1"});
  CHECK((*due)[0].earliest < (*due)[1].earliest);
  // Nothing is due before its time.
  CHECK((*q)->due_destinations(1'600'000'000'000)->empty());
  CHECK((*q)->due_destinations(clock->load(), 1)->size() == 1);
  auto leased = (*q)->take_due_and_wait(clock->load(), 10, "b.example");
  REQUIRE(leased);
  CHECK(leased->recipients.size() == 3);
  due = (*q)->due_destinations(clock->load());
  REQUIRE(due);
  REQUIRE(due->size() == 2);
  CHECK((*due)[0].destination == "a.example");
  CHECK((*due)[1].destination == "store:store1");
  // b.example failed as a whole: its other due mail waits out the backoff too, until a flush.
  const std::string later = enqueue({{"c@b.example", "b.example"}});
  DeliveryResult failed;
  failed.queue_id = leased->recipients[0].queue_id;
  failed.index = leased->recipients[0].index;
  failed.lease = leased->recipients[0].recipient.lease;
  failed.outcome = Outcome::TempFail;
  failed.status = "4.4.1";
  failed.destination_failed = true;
  REQUIRE((*q)->report_and_wait(clock->load(), {failed}));
  auto names_now = [&] {
    std::vector<std::string> out;
    auto now_due = (*q)->due_destinations(clock->load());
    REQUIRE(now_due);
    for (auto& d : *now_due) out.push_back(d.destination);
    return out;
  };
  CHECK(names_now() == std::vector<std::string>{"a.example", "store:store1"});
  REQUIRE((*q)->flush(later, clock->load()));
  CHECK(names_now() == std::vector<std::string>{"a.example", "store:store1", "b.example"});
}
