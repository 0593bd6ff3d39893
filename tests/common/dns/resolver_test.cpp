// resolver_test.cpp: the c-ares resolver on a libuv loop against a real dnsmasq per test that
// serves only the records below, and against a UDP socket that never answers.
#include <catch2/catch.hpp>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <atomic>
#include <functional>
#include <future>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include <uv.h>

#include "common/dns/resolver.hpp"
#include "common/dns/resolver_thread.hpp"
#include "tests/support/dnsmasq.hpp"
#include "tests/support/process.hpp"

using namespace std::chrono_literals;
using common::dns::MxRecord;
using common::dns::Resolver;
using common::dns::ResolverOptions;
using common::dns::ReverseResult;
using common::dns::Status;
using common::net::Endpoint;
using common::net::IpAddress;
using Kind = ReverseResult::Kind;

namespace {

// 311 bytes: dnsmasq sends it as two character-strings (255 + 56).
const std::string kDkim = "v=DKIM1; k=rsa; p=" + std::string(293, 'Q');
// Two strings of 300 bytes make the reply larger than 512 bytes: truncated over UDP, so c-ares
// retries over TCP.
const std::string kBigPart = std::string(300, 'b');

// Records of the test zone. --local makes dnsmasq authoritative for these zones (NXDOMAIN for
// unknown names); any other name gets REFUSED because there is no upstream server.
std::vector<std::string> zone_flags() {
  return {
      "--local=/test/",
      "--local=/in-addr.arpa/",
      "--local=/ip6.arpa/",
      // A, AAAA and the matching PTR records.
      "--host-record=mail.example.test,192.0.2.10,2001:db8::10",
      "--host-record=v4only.example.test,192.0.2.11",
      "--host-record=mx1.example.test,192.0.2.21",
      // PTR pointing at a name whose A is another address: DNSSPOOFER.
      "--ptr-record=20.2.0.192.in-addr.arpa,liar.example.test",
      "--host-record=liar.example.test,192.0.2.99",
      // Two PTR names: the first has no address, the second confirms.
      "--ptr-record=40.2.0.192.in-addr.arpa,first.example.test",
      "--ptr-record=40.2.0.192.in-addr.arpa,second.example.test",
      "--address=/second.example.test/192.0.2.40",
      // Mixed case in the PTR answer comes back lowercased.
      "--ptr-record=50.2.0.192.in-addr.arpa,MiXeD.Example.Test",
      "--address=/mixed.example.test/192.0.2.50",
      // PTR name in a zone nobody answers for: the forward step fails (REFUSED).
      "--ptr-record=60.2.0.192.in-addr.arpa,host.elsewhere.invalid",
      "--mx-host=example.test,mx2.example.test,20",
      "--mx-host=example.test,mx1.example.test,10",
      "--mx-host=example.test,mx3.example.test,30",
      "--txt-record=example.test,v=spf1 ip4:192.0.2.0/24 -all",
      "--txt-record=dkim._domainkey.example.test," + kDkim,
      "--txt-record=split.example.test,abc,def",
      "--txt-record=two.example.test,one",
      "--txt-record=two.example.test,two",
      "--txt-record=big.example.test," + kBigPart + "," + kBigPart,
      "--host-record=ready.example.test,192.0.2.1",
      // Eight PTR names, none of which points back: only kMaxVerifiedPtrNames are looked up.
      "--ptr-record=70.2.0.192.in-addr.arpa,p1.many.example.test",
      "--ptr-record=70.2.0.192.in-addr.arpa,p2.many.example.test",
      "--ptr-record=70.2.0.192.in-addr.arpa,p3.many.example.test",
      "--ptr-record=70.2.0.192.in-addr.arpa,p4.many.example.test",
      "--ptr-record=70.2.0.192.in-addr.arpa,p5.many.example.test",
      "--ptr-record=70.2.0.192.in-addr.arpa,p6.many.example.test",
      "--ptr-record=70.2.0.192.in-addr.arpa,p7.many.example.test",
      "--ptr-record=70.2.0.192.in-addr.arpa,p8.many.example.test",
      "--address=/many.example.test/192.0.2.71",
  };
}

// dnsmasq serving only zone_flags(), killed and reaped with the fixture.
class DnsServer {
 public:
  DnsServer() : dnsmasq_(zone_flags()) {}
  Endpoint endpoint() const { return *Endpoint::parse(dnsmasq_.server()); }
  std::string log() const { return dnsmasq_.log(); }

 private:
  test::Dnsmasq dnsmasq_;
};

// A bound UDP socket that never answers: every query to it times out.
class BlackHole {
 public:
  BlackHole() {
    fd_ = socket(AF_INET, SOCK_DGRAM, 0);
    sockaddr_in sin{};
    sin.sin_family = AF_INET;
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    REQUIRE(bind(fd_, reinterpret_cast<sockaddr*>(&sin), sizeof sin) == 0);
    socklen_t len = sizeof sin;
    getsockname(fd_, reinterpret_cast<sockaddr*>(&sin), &len);
    port_ = ntohs(sin.sin_port);
  }
  ~BlackHole() { close(fd_); }
  BlackHole(const BlackHole&) = delete;
  BlackHole& operator=(const BlackHole&) = delete;
  Endpoint endpoint() const { return *Endpoint::parse("127.0.0.1:" + std::to_string(port_)); }

 private:
  int fd_ = -1;
  int port_ = 0;
};

size_t active_handles(uv_loop_t* loop) {
  size_t n = 0;
  uv_walk(
      loop,
      [](uv_handle_t* h, void* arg) {
        if (uv_is_active(h) && !uv_is_closing(h)) ++*static_cast<size_t*>(arg);
      },
      &n);
  return n;
}

// A loop per test. Closing it fails the test if any handle was left open.
class TestLoop {
 public:
  TestLoop() { uv_loop_init(&loop_); }
  ~TestLoop() {
    uv_run(&loop_, UV_RUN_NOWAIT);  // close callbacks of handles closed last
    CHECK(uv_loop_close(&loop_) == 0);
  }
  TestLoop(const TestLoop&) = delete;
  TestLoop& operator=(const TestLoop&) = delete;
  uv_loop_t* get() { return &loop_; }

  // Runs the loop until done() or the deadline; a ticking timer keeps UV_RUN_ONCE from blocking.
  bool run_until(const std::function<bool()>& done, std::chrono::milliseconds deadline = 5s) {
    uv_timer_t tick;
    uv_timer_init(&loop_, &tick);
    uv_timer_start(&tick, [](uv_timer_t*) {}, 10, 10);
    auto until = std::chrono::steady_clock::now() + deadline;
    while (!done() && std::chrono::steady_clock::now() < until) uv_run(&loop_, UV_RUN_ONCE);
    uv_close(reinterpret_cast<uv_handle_t*>(&tick), nullptr);
    uv_run(&loop_, UV_RUN_NOWAIT);
    return done();
  }

 private:
  uv_loop_t loop_;
};

std::unique_ptr<Resolver> make_resolver(uv_loop_t* loop, const Endpoint& server,
                                        std::chrono::milliseconds timeout = 2000ms, int tries = 2) {
  ResolverOptions options;
  options.servers = {server};
  options.timeout = timeout;
  options.tries = tries;
  auto r = Resolver::create(loop, options);
  REQUIRE(r);
  return std::move(*r);
}

template <class T>
struct Got {
  int calls = 0;
  Status status = Status::TempFail;
  std::vector<T> records;
  std::function<void(Status, std::vector<T>)> cb() {
    return [this](Status s, std::vector<T> r) {
      ++calls;
      status = s;
      records = std::move(r);
    };
  }
};

struct GotReverse {
  int calls = 0;
  ReverseResult result;
  Resolver::ReverseCallback cb() {
    return [this](ReverseResult r) {
      ++calls;
      result = std::move(r);
    };
  }
};

IpAddress ip(const char* text) { return *IpAddress::parse(text); }

size_t count(const std::string& haystack, const std::string& needle) {
  size_t n = 0;
  for (size_t pos = haystack.find(needle); pos != std::string::npos; pos = haystack.find(needle, pos + 1)) ++n;
  return n;
}

}  // namespace

namespace Catch {
template <>
struct StringMaker<Status> {
  static std::string convert(Status s) { return std::string(common::dns::status_name(s)); }
};
template <>
struct StringMaker<Kind> {
  static std::string convert(Kind k) { return std::string(common::dns::kind_name(k)); }
};
template <>
struct StringMaker<IpAddress> {
  static std::string convert(const IpAddress& a) { return a.to_string(); }
};
template <>
struct StringMaker<MxRecord> {
  static std::string convert(const MxRecord& r) { return std::to_string(r.preference) + " " + r.host; }
};
}  // namespace Catch

TEST_CASE("name checks refuse what cannot be a DNS name", "[dns]") {
  using common::dns::valid_query_name;
  CHECK(valid_query_name("mail.example.test"));
  CHECK(valid_query_name("mail.example.test."));
  CHECK(valid_query_name("_dmarc.example.test"));
  CHECK(valid_query_name(std::string(63, 'a') + ".test"));
  CHECK_FALSE(valid_query_name(std::string(64, 'a') + ".test"));
  std::string long_name;
  while (long_name.size() < 250) long_name += "abcdefghi.";
  long_name += "abcd";  // 254 bytes
  CHECK_FALSE(valid_query_name(long_name));
  CHECK(valid_query_name(long_name.substr(1)));  // 253
  CHECK_FALSE(valid_query_name(""));
  CHECK_FALSE(valid_query_name("."));
  CHECK_FALSE(valid_query_name("a..b"));
  CHECK_FALSE(valid_query_name(".a"));
  CHECK_FALSE(valid_query_name("a b.test"));
  CHECK_FALSE(valid_query_name("a\\.b.test"));
  CHECK_FALSE(valid_query_name(std::string("a\0b.test", 8)));
  CHECK_FALSE(valid_query_name("caf\xc3\xa9.test"));
}

TEST_CASE("options are checked", "[dns]") {
  TestLoop loop;
  ResolverOptions options;
  options.tries = 0;
  CHECK(Resolver::create(loop.get(), options).error().kind == common::ErrorKind::Config);
  options.tries = 2;
  options.timeout = 0ms;
  CHECK(Resolver::create(loop.get(), options).error().kind == common::ErrorKind::Config);
  options.timeout = 100ms;
  options.servers = {*Endpoint::parse("0.0.0.0:53")};
  CHECK(Resolver::create(loop.get(), options).error().kind == common::ErrorKind::Config);
  CHECK_FALSE(Resolver::create(nullptr, ResolverOptions{}));
  options.servers.clear();  // /etc/resolv.conf
  auto r = Resolver::create(loop.get(), options);
  CHECK(r);
}

TEST_CASE("A and AAAA and both together", "[dns]") {
  DnsServer server;
  TestLoop loop;
  auto resolver = make_resolver(loop.get(), server.endpoint());
  Got<IpAddress> a, aaaa, both, v4only, nope;
  resolver->a("mail.example.test", a.cb());
  resolver->aaaa("mail.example.test", aaaa.cb());
  resolver->addresses("mail.example.test", both.cb());
  resolver->addresses("v4only.example.test.", v4only.cb());
  resolver->addresses("nope.example.test", nope.cb());
  CHECK(resolver->pending() == 5);
  CHECK(a.calls == 0);  // never inside the call that started it
  REQUIRE(loop.run_until([&] { return resolver->pending() == 0; }));

  CHECK(a.calls == 1);
  CHECK(a.status == Status::Ok);
  CHECK(a.records == std::vector<IpAddress>{ip("192.0.2.10")});
  CHECK(aaaa.status == Status::Ok);
  CHECK(aaaa.records == std::vector<IpAddress>{ip("2001:db8::10")});
  CHECK(both.status == Status::Ok);
  REQUIRE(both.records.size() == 2);
  CHECK(both.records[0] == ip("192.0.2.10"));
  CHECK(both.records[1] == ip("2001:db8::10"));
  CHECK(v4only.status == Status::Ok);
  CHECK(v4only.records == std::vector<IpAddress>{ip("192.0.2.11")});
  CHECK(nope.calls == 1);
  CHECK(nope.status == Status::NotFound);
  CHECK(nope.records.empty());
  // Idle: no socket, no timer of the resolver keeps the loop alive.
  CHECK(active_handles(loop.get()) == 0);
}

TEST_CASE("NXDOMAIN and no data are NotFound while REFUSED is TempFail", "[dns]") {
  DnsServer server;
  TestLoop loop;
  auto resolver = make_resolver(loop.get(), server.endpoint());
  Got<IpAddress> nxdomain, nodata, refused;
  Got<MxRecord> mx_nodata;
  Got<std::string> txt_nxdomain;
  resolver->a("nope.example.test", nxdomain.cb());
  resolver->aaaa("v4only.example.test", nodata.cb());
  resolver->a("host.elsewhere.invalid", refused.cb());
  resolver->mx("mail.example.test", mx_nodata.cb());
  resolver->txt("nope.example.test", txt_nxdomain.cb());
  REQUIRE(loop.run_until([&] { return resolver->pending() == 0; }));
  CHECK(nxdomain.status == Status::NotFound);
  CHECK(nodata.status == Status::NotFound);
  CHECK(refused.status == Status::TempFail);
  CHECK(mx_nodata.status == Status::NotFound);
  CHECK(txt_nxdomain.status == Status::NotFound);
  CHECK(nxdomain.calls + nodata.calls + refused.calls + mx_nodata.calls + txt_nxdomain.calls == 5);
}

TEST_CASE("impossible names fail as NotFound without a query but still from the loop", "[dns]") {
  BlackHole hole;
  TestLoop loop;
  auto resolver = make_resolver(loop.get(), hole.endpoint());
  Got<IpAddress> too_long, backslash;
  Got<std::string> empty;
  resolver->a(std::string(254, 'a'), too_long.cb());
  resolver->addresses("evil\\.name.test", backslash.cb());
  resolver->txt("", empty.cb());
  CHECK(too_long.calls == 0);
  REQUIRE(loop.run_until([&] { return resolver->pending() == 0; }, 1s));
  CHECK(too_long.status == Status::NotFound);
  CHECK(backslash.status == Status::NotFound);
  CHECK(empty.status == Status::NotFound);
  CHECK(too_long.calls + backslash.calls + empty.calls == 3);
}

TEST_CASE("PTR for IPv4 and IPv6", "[dns]") {
  DnsServer server;
  TestLoop loop;
  auto resolver = make_resolver(loop.get(), server.endpoint());
  Got<std::string> v4, v6, two, none;
  resolver->ptr(ip("192.0.2.10"), v4.cb());
  resolver->ptr(ip("2001:db8::10"), v6.cb());
  resolver->ptr(ip("192.0.2.40"), two.cb());
  resolver->ptr(ip("192.0.2.30"), none.cb());
  REQUIRE(loop.run_until([&] { return resolver->pending() == 0; }));
  CHECK(v4.status == Status::Ok);
  CHECK(v4.records == std::vector<std::string>{"mail.example.test"});
  CHECK(v6.status == Status::Ok);
  CHECK(v6.records == std::vector<std::string>{"mail.example.test"});
  CHECK(two.status == Status::Ok);
  std::sort(two.records.begin(), two.records.end());
  CHECK(two.records == std::vector<std::string>{"first.example.test", "second.example.test"});
  CHECK(none.status == Status::NotFound);
}

TEST_CASE("MX records come sorted by preference", "[dns]") {
  DnsServer server;
  TestLoop loop;
  auto resolver = make_resolver(loop.get(), server.endpoint());
  Got<MxRecord> mx;
  resolver->mx("Example.Test", mx.cb());
  REQUIRE(loop.run_until([&] { return resolver->pending() == 0; }));
  CHECK(mx.status == Status::Ok);
  CHECK(mx.records == std::vector<MxRecord>{{10, "mx1.example.test"}, {20, "mx2.example.test"},
                                            {30, "mx3.example.test"}});
}

TEST_CASE("TXT joins the character-strings of one record", "[dns]") {
  DnsServer server;
  TestLoop loop;
  auto resolver = make_resolver(loop.get(), server.endpoint());
  Got<std::string> spf, dkim, split, two, big;
  resolver->txt("example.test", spf.cb());
  resolver->txt("dkim._domainkey.example.test", dkim.cb());
  resolver->txt("split.example.test", split.cb());
  resolver->txt("two.example.test", two.cb());
  resolver->txt("big.example.test", big.cb());
  REQUIRE(loop.run_until([&] { return resolver->pending() == 0; }));
  CHECK(spf.records == std::vector<std::string>{"v=spf1 ip4:192.0.2.0/24 -all"});
  CHECK(dkim.status == Status::Ok);
  REQUIRE(dkim.records.size() == 1);
  CHECK(dkim.records[0].size() > 255);
  CHECK(dkim.records[0] == kDkim);
  CHECK(split.records == std::vector<std::string>{"abcdef"});
  std::sort(two.records.begin(), two.records.end());
  CHECK(two.records == std::vector<std::string>{"one", "two"});
  // Truncated over UDP, fetched again over TCP.
  CHECK(big.status == Status::Ok);
  CHECK(big.records == std::vector<std::string>{kBigPart + kBigPart});
  CHECK(server.log().find("TXT") != std::string::npos);
}

TEST_CASE("verify_reverse gives Verified or Mismatch or NoName or TempFail", "[dns]") {
  DnsServer server;
  TestLoop loop;
  auto resolver = make_resolver(loop.get(), server.endpoint());
  GotReverse v4, v6, liar, second, mixed, none, forward_fails;
  resolver->verify_reverse(ip("192.0.2.10"), v4.cb());
  resolver->verify_reverse(ip("2001:db8::10"), v6.cb());
  resolver->verify_reverse(ip("192.0.2.20"), liar.cb());
  resolver->verify_reverse(ip("192.0.2.40"), second.cb());
  resolver->verify_reverse(ip("192.0.2.50"), mixed.cb());
  resolver->verify_reverse(ip("192.0.2.30"), none.cb());
  resolver->verify_reverse(ip("192.0.2.60"), forward_fails.cb());
  CHECK(resolver->pending() == 7);
  REQUIRE(loop.run_until([&] { return resolver->pending() == 0; }));

  CHECK(v4.calls == 1);
  CHECK(v4.result.kind == Kind::Verified);
  CHECK(v4.result.name == "mail.example.test");
  CHECK(v6.result.kind == Kind::Verified);
  CHECK(v6.result.name == "mail.example.test");
  CHECK(liar.result.kind == Kind::Mismatch);
  CHECK(liar.result.name == "liar.example.test");
  CHECK(second.result.kind == Kind::Verified);
  CHECK(second.result.name == "second.example.test");
  CHECK(mixed.result.kind == Kind::Verified);
  CHECK(mixed.result.name == "mixed.example.test");
  CHECK(none.result.kind == Kind::NoName);
  CHECK(none.result.name.empty());
  CHECK(forward_fails.result.kind == Kind::TempFail);
  CHECK(forward_fails.result.name == "host.elsewhere.invalid");
  for (auto* g : {&v4, &v6, &liar, &second, &mixed, &none, &forward_fails}) CHECK(g->calls == 1);
}

TEST_CASE("verify_reverse checks at most four PTR names", "[dns]") {
  DnsServer server;
  TestLoop loop;
  auto resolver = make_resolver(loop.get(), server.endpoint());
  GotReverse many;
  Got<std::string> names;
  resolver->ptr(ip("192.0.2.70"), names.cb());
  resolver->verify_reverse(ip("192.0.2.70"), many.cb());
  REQUIRE(loop.run_until([&] { return resolver->pending() == 0; }));
  CHECK(names.records.size() == 8);
  CHECK(many.result.kind == Kind::Mismatch);
  CHECK(many.result.name.ends_with(".many.example.test"));
  CHECK(count(server.log(), "query[A] p") == common::dns::kMaxVerifiedPtrNames);
}

TEST_CASE("a server that never answers gives TempFail after the timeout", "[dns]") {
  BlackHole hole;
  TestLoop loop;
  auto resolver = make_resolver(loop.get(), hole.endpoint(), 100ms, 1);
  GotReverse reverse;
  Got<IpAddress> a;
  Got<MxRecord> mx;
  auto start = std::chrono::steady_clock::now();
  resolver->verify_reverse(ip("192.0.2.10"), reverse.cb());
  resolver->a("mail.example.test", a.cb());
  resolver->mx("example.test", mx.cb());
  REQUIRE(loop.run_until([&] { return resolver->pending() == 0; }, 3s));
  auto took = std::chrono::steady_clock::now() - start;
  CHECK(took >= 90ms);
  CHECK(took < 2s);
  CHECK(reverse.calls == 1);
  CHECK(reverse.result.kind == Kind::TempFail);
  CHECK(a.status == Status::TempFail);
  CHECK(mx.status == Status::TempFail);
  CHECK(active_handles(loop.get()) == 0);
}

TEST_CASE("500 concurrent lookups all complete", "[dns]") {
  DnsServer server;
  TestLoop loop;
  // A burst this size overflows a loopback UDP receive buffer (212992 bytes by default), so some
  // queries are lost and c-ares sends them again after the timeout: keep it short here.
  auto resolver = make_resolver(loop.get(), server.endpoint(), 200ms, 4);
  constexpr int kLookups = 500;
  int ok = 0, not_found = 0, other = 0;
  for (int i = 0; i < kLookups; ++i) {
    auto cb = [&](Status s, std::vector<IpAddress> r) {
      if (s == Status::Ok && r == std::vector<IpAddress>{ip("192.0.2.10")}) ++ok;
      else if (s == Status::NotFound) ++not_found;
      else ++other;
    };
    if (i % 5 == 4) resolver->a("n" + std::to_string(i) + ".example.test", cb);
    else resolver->a("mail.example.test", cb);
  }
  CHECK(resolver->pending() == kLookups);
  REQUIRE(loop.run_until([&] { return resolver->pending() == 0; }));
  CHECK(ok == kLookups * 4 / 5);
  CHECK(not_found == kLookups / 5);
  CHECK(other == 0);
  CHECK(active_handles(loop.get()) == 0);
}

TEST_CASE("destroying the resolver cancels lookups in flight with TempFail", "[dns]") {
  BlackHole hole;
  TestLoop loop;
  auto resolver = make_resolver(loop.get(), hole.endpoint(), 5000ms, 2);
  Got<IpAddress> a, both;
  Got<std::string> ptr, txt;
  Got<MxRecord> mx;
  GotReverse reverse;
  resolver->a("mail.example.test", a.cb());
  resolver->addresses("mail.example.test", both.cb());
  resolver->ptr(ip("192.0.2.10"), ptr.cb());
  resolver->txt("example.test", txt.cb());
  resolver->mx("example.test", mx.cb());
  resolver->verify_reverse(ip("192.0.2.10"), reverse.cb());
  uv_run(loop.get(), UV_RUN_NOWAIT);  // queries are on the wire
  CHECK(resolver->pending() == 6);
  CHECK(active_handles(loop.get()) > 0);

  resolver.reset();
  CHECK(a.calls == 1);
  CHECK(a.status == Status::TempFail);
  CHECK(both.calls == 1);
  CHECK(both.status == Status::TempFail);
  CHECK(ptr.calls == 1);
  CHECK(ptr.status == Status::TempFail);
  CHECK(txt.calls == 1);
  CHECK(mx.calls == 1);
  CHECK(reverse.calls == 1);
  CHECK(reverse.result.kind == Kind::TempFail);
  // Every handle is closed: the loop runs out at once instead of waiting for the 5 s timeout.
  auto start = std::chrono::steady_clock::now();
  CHECK(uv_run(loop.get(), UV_RUN_DEFAULT) == 0);
  CHECK(std::chrono::steady_clock::now() - start < 1s);
}

TEST_CASE("a callback may destroy the resolver and the others still get exactly one TempFail", "[dns]") {
  BlackHole hole;
  TestLoop loop;
  auto resolver = make_resolver(loop.get(), hole.endpoint(), 5000ms, 2);
  Got<IpAddress> in_flight;
  GotReverse reverse;
  int killer_calls = 0;
  int started_during_shutdown = 0;
  Status late_status = Status::Ok;
  resolver->a("mail.example.test", in_flight.cb());
  resolver->verify_reverse(ip("192.0.2.10"), reverse.cb());
  // An impossible name fails on the next loop iteration, while the others wait for the hole.
  resolver->a("", [&](Status, std::vector<IpAddress>) {
    ++killer_calls;
    resolver.reset();
  });
  // A callback run by the destructor that starts another lookup: it fails at once.
  Resolver* raw = resolver.get();
  resolver->txt("example.test", [&, raw](Status, std::vector<std::string>) {
    raw->a("mail.example.test", [&](Status s, std::vector<IpAddress>) {
      ++started_during_shutdown;
      late_status = s;
    });
  });
  REQUIRE(loop.run_until([&] { return resolver == nullptr; }, 2s));
  CHECK(killer_calls == 1);
  CHECK(in_flight.calls == 1);
  CHECK(in_flight.status == Status::TempFail);
  CHECK(reverse.calls == 1);
  CHECK(reverse.result.kind == Kind::TempFail);
  CHECK(started_during_shutdown == 1);
  CHECK(late_status == Status::TempFail);
  CHECK(uv_run(loop.get(), UV_RUN_DEFAULT) == 0);
}

TEST_CASE("callbacks may start new lookups and may outlive their owner", "[dns]") {
  DnsServer server;
  TestLoop loop;
  auto resolver = make_resolver(loop.get(), server.endpoint());

  // MX, then the address of the best exchanger, from inside the MX callback.
  std::optional<IpAddress> best;
  resolver->mx("example.test", [&](Status s, std::vector<MxRecord> mx) {
    REQUIRE(s == Status::Ok);
    resolver->a(mx.front().host, [&](Status s2, std::vector<IpAddress> addrs) {
      if (s2 == Status::Ok && !addrs.empty()) best = addrs.front();
    });
  });

  // A chain of sequential lookups: each one closes c-ares' socket and the next opens a new one,
  // usually with the same fd number.
  int chain = 0;
  std::function<void(Status, std::vector<IpAddress>)> next = [&](Status s, std::vector<IpAddress>) {
    CHECK(s == Status::Ok);
    if (++chain < 30) resolver->a("mail.example.test", next);
  };
  resolver->a("mail.example.test", next);

  // A session that dies before its answer: the caller's weak_ptr guard drops the result.
  struct Session {
    int answers = 0;
  };
  auto session = std::make_shared<Session>();
  int dropped = 0;
  resolver->verify_reverse(ip("192.0.2.10"), [weak = std::weak_ptr<Session>(session), &dropped](ReverseResult) {
    auto s = weak.lock();
    if (!s) {
      ++dropped;
      return;
    }
    ++s->answers;
  });
  session.reset();

  REQUIRE(loop.run_until([&] { return resolver->pending() == 0 && best && chain == 30; }));
  CHECK(*best == ip("192.0.2.21"));
  CHECK(dropped == 1);
}

TEST_CASE("a new resolver may reuse the fd of one just destroyed", "[dns]") {
  DnsServer server;
  TestLoop loop;
  auto resolver = make_resolver(loop.get(), server.endpoint());
  Got<IpAddress> first, second;
  resolver->a("mail.example.test", first.cb());
  uv_run(loop.get(), UV_RUN_NOWAIT);
  // The old uv_poll is still closing when the new channel opens a socket, likely the same fd.
  resolver.reset();
  CHECK(first.calls == 1);  // its answer if it was already in, else TempFail
  resolver = make_resolver(loop.get(), server.endpoint());
  resolver->a("mail.example.test", second.cb());
  REQUIRE(loop.run_until([&] { return resolver->pending() == 0; }));
  CHECK(second.status == Status::Ok);
  CHECK(second.records == std::vector<IpAddress>{ip("192.0.2.10")});
}

TEST_CASE("ResolverThread answers calls from other threads, and cancels what is in flight when destroyed", "[dns]") {
  DnsServer server;
  ResolverOptions options;
  options.servers = {server.endpoint()};
  auto names = common::dns::ResolverThread::start(options);
  REQUIRE(names);
  std::promise<common::dns::ReverseResult> verified;
  (*names)->verify_reverse(ip("192.0.2.10"), [&](common::dns::ReverseResult r) { verified.set_value(std::move(r)); });
  auto answer = verified.get_future();
  REQUIRE(answer.wait_for(5s) == std::future_status::ready);
  const auto r = answer.get();
  CHECK(r.kind == Kind::Verified);
  CHECK(r.name == "mail.example.test");

  BlackHole hole;
  options.servers = {hole.endpoint()};
  options.timeout = 10s;
  auto stuck = common::dns::ResolverThread::start(options);
  REQUIRE(stuck);
  std::atomic<int> calls{0};
  std::atomic<bool> tempfail{false};
  (*stuck)->verify_reverse(ip("192.0.2.10"), [&](common::dns::ReverseResult r) {
    ++calls;
    tempfail = r.kind == Kind::TempFail;
  });
  std::this_thread::sleep_for(100ms);  // the query is out, its answer 10 s away
  const auto before = std::chrono::steady_clock::now();
  stuck->reset();
  CHECK(std::chrono::steady_clock::now() - before < 5s);
  CHECK(calls == 1);
  CHECK(tempfail);
}
