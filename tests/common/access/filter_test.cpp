// filter_test.cpp: the evaluator: name states (KNOWN/UNKNOWN/LOCAL/DNSSPOOFER), the NeedClientName
// protocol and its laziness, IPv6, families, defaults, and the address index against a naive scan.
#include <catch2/catch.hpp>

#include <random>
#include <string>

#include "common/access/filter.hpp"

using namespace common::access;
using common::net::IpAddress;

namespace {

AccessFilter filter(std::string_view allow, std::string_view deny = "") {
  auto f = AccessFilter::from_files(allow, "allow", deny, "deny");
  if (!f) FAIL(f.error().at(0).to_string());
  return std::move(*f);
}

AccessRequest request(std::string_view service, std::string_view addr, HostName name = {}) {
  AccessRequest r;
  r.service = service;
  if (!addr.empty()) r.client.address = IpAddress::parse(addr);
  r.client.name = name;
  return r;
}

Verdict verdict(const AccessFilter& f, std::string_view service, std::string_view addr, HostName name = {}) {
  return f.evaluate(request(service, addr, name)).verdict;
}

}  // namespace

TEST_CASE("defaults: no rules, allows only, denies only, both", "[access][filter]") {
  AccessFilter none;
  CHECK(none.evaluate(request("imap", "192.0.2.1")).verdict == Verdict::Allow);
  CHECK(verdict(filter("imap: 10.0.0.0/8"), "imap", "192.0.2.1") == Verdict::Deny);
  CHECK(filter("imap: 10.0.0.0/8").evaluate(request("imap", "192.0.2.1")).by == DecidedBy::NoMatchAllowsOnly);
  CHECK(verdict(filter("", "imap: 10.0.0.0/8"), "imap", "192.0.2.1") == Verdict::Allow);
  CHECK(verdict(filter("imap: 10.0.0.0/8", "pop: 10.0.0.0/8"), "imap", "192.0.2.1") == Verdict::Allow);
  // "Allow filters exist" counts rules for any service, as the seed's mailAllowedServiceAccess note.
  CHECK(verdict(filter("pop: ALL"), "imap", "192.0.2.1") == Verdict::Deny);
  // Allow rules are tried before deny rules whatever the file order.
  auto f = filter("imap: 10.1.", "imap: 10.");
  CHECK(verdict(f, "imap", "10.1.2.3") == Verdict::Allow);
  CHECK(verdict(f, "imap", "10.2.2.3") == Verdict::Deny);
  CHECK(f.allow_rules() == 1);
  CHECK(f.deny_rules() == 1);
}

TEST_CASE("compact rules: '+' before '-' whatever the written order", "[access][filter]") {
  auto f = AccessFilter::from_compact("-ALL:ALL EXCEPT server1.sesta.com$+imap:10.0.0.0/8");
  REQUIRE(f);
  // The allow decides first for 10/8 although written second.
  Decision d = f->evaluate(request("imap", "10.1.1.1"));
  CHECK(d.verdict == Verdict::Allow);
  REQUIRE(d.rule);
  CHECK(d.rule->text == "+imap:10.0.0.0/8");
  CHECK(d.rule->pos.column == 35);
  // Elsewhere the deny needs the name to rule out server1.
  CHECK(f->evaluate(request("imap", "192.0.2.1")).verdict == Verdict::NeedClientName);
  CHECK(f->evaluate(request("imap", "192.0.2.1", HostName::verified("other.sesta.com"))).verdict ==
        Verdict::Deny);
  // server1 matches no rule; there are deny rules, so the default allows.
  CHECK(f->evaluate(request("pop", "192.0.2.1", HostName::verified("server1.sesta.com"))).verdict ==
        Verdict::Allow);
  // The schema reference's SSL-only example with the MMP address as the client list.
  auto ssl = AccessFilter::from_compact("+imaps,pops:*$+imap,pop:192.0.2.10");
  REQUIRE(ssl);
  CHECK(ssl->evaluate(request("imap", "192.0.2.10")).verdict == Verdict::Allow);
  CHECK(ssl->evaluate(request("imap", "192.0.2.11")).verdict == Verdict::Deny);
  CHECK(ssl->warnings().size() == 2);
}

TEST_CASE("UNKNOWN and KNOWN over every name state", "[access][filter]") {
  auto unknown = filter("", "ALL: UNKNOWN");
  auto known = filter("ALL: KNOWN", "ALL: ALL");
  struct Row {
    HostName name;
    Verdict unknown_gives, known_gives;
  };
  const Row rows[] = {
      {HostName::not_looked(), Verdict::NeedClientName, Verdict::NeedClientName},
      {HostName::none(), Verdict::Deny, Verdict::Deny},
      // During a DNS outage UNKNOWN matches all clients and KNOWN none (S2 Table 7-2).
      {HostName::temp_fail(), Verdict::Deny, Verdict::Deny},
      {HostName::verified("mail.example.com"), Verdict::Allow, Verdict::Allow},
      // A name that does not resolve back is no name: UNKNOWN matches, KNOWN does not.
      {HostName::mismatch("bank.example.com"), Verdict::Deny, Verdict::Deny},
  };
  for (const Row& r : rows) {
    INFO(static_cast<int>(r.name.status));
    CHECK(verdict(unknown, "imap", "192.0.2.1", r.name) == r.unknown_gives);
    CHECK(verdict(known, "imap", "192.0.2.1", r.name) == r.known_gives);
  }
  // No address at all (not an IP socket): UNKNOWN matches without any lookup, KNOWN never.
  CHECK(verdict(unknown, "imap", "") == Verdict::Deny);
  CHECK(verdict(known, "imap", "") == Verdict::Deny);
  CHECK(filter("ALL: KNOWN").evaluate(request("imap", "")).by == DecidedBy::NoMatchAllowsOnly);
}

TEST_CASE("LOCAL and DNSSPOOFER", "[access][filter]") {
  auto local = filter("ALL: LOCAL", "ALL: ALL");
  CHECK(verdict(local, "imap", "10.0.0.1", HostName::verified("mailhost")) == Verdict::Allow);
  CHECK(verdict(local, "imap", "10.0.0.1", HostName::verified("mailhost.")) == Verdict::Allow);
  CHECK(verdict(local, "imap", "10.0.0.1", HostName::verified("mailhost.example.com")) == Verdict::Deny);
  CHECK(verdict(local, "imap", "10.0.0.1", HostName::mismatch("mailhost")) == Verdict::Deny);
  CHECK(verdict(local, "imap", "10.0.0.1", HostName::temp_fail()) == Verdict::Deny);
  auto spoof = filter("", "ALL: DNSSPOOFER");
  // An outage proves nothing: DNSSPOOFER does not match (use UNKNOWN to fail closed).
  CHECK(verdict(spoof, "imap", "10.0.0.1", HostName::temp_fail()) == Verdict::Allow);
  CHECK(verdict(spoof, "imap", "10.0.0.1", HostName::mismatch("x.example.com")) == Verdict::Deny);
  CHECK(verdict(spoof, "imap", "", HostName::not_looked()) == Verdict::Allow);
}

TEST_CASE("a spoofed name never satisfies a name pattern", "[access][filter]") {
  auto f = filter("ALL: .example.com trusted.example.org LOCAL", "ALL: ALL");
  CHECK(verdict(f, "imap", "203.0.113.9", HostName::verified("a.example.com")) == Verdict::Allow);
  CHECK(verdict(f, "imap", "203.0.113.9", HostName::mismatch("a.example.com")) == Verdict::Deny);
  CHECK(verdict(f, "imap", "203.0.113.9", HostName::mismatch("trusted.example.org")) == Verdict::Deny);
  CHECK(verdict(f, "imap", "203.0.113.9", HostName::mismatch("localhost")) == Verdict::Deny);
  CHECK(verdict(f, "imap", "203.0.113.9", HostName::verified("TRUSTED.Example.ORG.")) == Verdict::Allow);
  CHECK(verdict(f, "imap", "203.0.113.9", HostName::verified("")) == Verdict::Deny);
}

TEST_CASE("NeedClientName is asked only when a name rule could decide", "[access][filter]") {
  auto f = filter("imap: 10.0.0.0/8\nimap: .example.com\npop: 192.0.2.0/24 EXCEPT .bad.example.com", "ALL: ALL");
  // Purely numeric match first: no lookup.
  CHECK(verdict(f, "imap", "10.1.2.3") == Verdict::Allow);
  // The name rule comes next for anyone else.
  Decision d = f.evaluate(request("imap", "192.0.2.1"));
  CHECK(d.verdict == Verdict::NeedClientName);
  CHECK(d.needs_client_name);
  CHECK_FALSE(d.needs_server_name);
  REQUIRE(d.rule);
  CHECK(d.rule->pos.line == 2);
  CHECK(describe(d) == "needs the client name for allow:2: imap: .example.com");
  // After the lookup the caller calls again.
  auto r = request("imap", "192.0.2.1", HostName::verified("www.example.com"));
  CHECK(f.evaluate(r).verdict == Verdict::Allow);
  r.client.name = HostName::none();
  d = f.evaluate(r);
  CHECK(d.verdict == Verdict::Deny);
  CHECK(describe(d) == "deny by deny:1: ALL: ALL");
  // A rule for another service is ruled out without the name.
  CHECK(verdict(f, "smtp", "198.51.100.1") == Verdict::Deny);
  // EXCEPT with a name: the address outside 192.0.2/24 makes the rule false with no lookup.
  CHECK(verdict(f, "pop", "198.51.100.1") == Verdict::Deny);
  CHECK(verdict(f, "pop", "192.0.2.9") == Verdict::NeedClientName);
  CHECK(verdict(f, "pop", "192.0.2.9", HostName::verified("x.bad.example.com")) == Verdict::Deny);
  CHECK(verdict(f, "pop", "192.0.2.9", HostName::verified("x.good.example.com")) == Verdict::Allow);
  // user@host with a user that does not match needs no lookup either.
  auto u = filter("imap: joe@.example.com", "ALL: ALL");
  auto req = request("imap", "192.0.2.1");
  req.user = "ann";
  CHECK(u.evaluate(req).verdict == Verdict::Deny);
  req.user = "JOE";
  CHECK(u.evaluate(req).verdict == Verdict::NeedClientName);
}

TEST_CASE("numeric-only filters never ask for names", "[access][filter]") {
  auto f = filter("ALL: 10. 172.16.0.0/255.240.0.0 [2001:db8::]/32 [::1] 192.0.2.7 @ops",
                  "ALL: ALL EXCEPT 198.51.100.0/24\nimap: [fe80::]/10");
  std::mt19937 rng(7);
  for (int i = 0; i < 2000; ++i) {
    std::array<uint8_t, 16> b{};
    for (auto& x : b) x = static_cast<uint8_t>(rng());
    IpAddress a = (i % 2) ? IpAddress::v4(static_cast<uint32_t>(rng())) : IpAddress::v6(b);
    AccessRequest r;
    r.service = (i % 3) ? "imap" : "pop";
    r.client.address = a;
    CHECK_FALSE(f.evaluate(r).needs_name());
  }
}

TEST_CASE("service@host: server names and addresses", "[access][filter]") {
  auto f = filter("imap@192.0.2.1: ALL\nALL@msgServer.example1.com: 10.\npop@[2001:db8::25]: ALL", "ALL: ALL");
  auto r = request("imap", "198.51.100.1");
  r.server.address = IpAddress::parse("192.0.2.1");
  CHECK(f.evaluate(r).verdict == Verdict::Allow);
  r.server.address = IpAddress::parse("192.0.2.2");
  // Rule 1 fails on the server address; rule 2's client 10/8 fails without the server name.
  CHECK(f.evaluate(r).verdict == Verdict::Deny);
  r = request("imap", "10.1.1.1");
  r.server.address = IpAddress::parse("192.0.2.2");
  Decision d = f.evaluate(r);
  CHECK(d.verdict == Verdict::NeedServerName);
  CHECK(d.needs_server_name);
  CHECK_FALSE(d.needs_client_name);
  CHECK(describe(d) == "needs the server name for allow:2: ALL@msgServer.example1.com: 10.");
  r.server.name = HostName::verified("MSGSERVER.example1.com");
  CHECK(f.evaluate(r).verdict == Verdict::Allow);
  r.server.name = HostName::verified("other.example1.com");
  CHECK(f.evaluate(r).verdict == Verdict::Deny);
  r = request("pop", "10.1.1.1");
  r.server.address = IpAddress::parse("2001:db8::25");
  r.server.name = HostName::none();
  CHECK(f.evaluate(r).verdict == Verdict::Allow);
  // Both names at once.
  auto both = filter("ALL@mail.example.com: .example.com", "ALL: ALL");
  r = request("imap", "10.1.1.1");
  r.server.address = IpAddress::parse("192.0.2.25");
  d = both.evaluate(r);
  CHECK(d.verdict == Verdict::NeedClientName);
  CHECK(d.needs_client_name);
  CHECK(d.needs_server_name);
  CHECK(describe(d) == "needs the client and server names for allow:1: ALL@mail.example.com: .example.com");
  // Without a server address there is nothing to look up: the name counts as none.
  CHECK(both.evaluate(request("imap", "10.1.1.1", HostName::verified("a.example.com"))).verdict == Verdict::Deny);
}

TEST_CASE("IPv6 patterns and families never cross-match", "[access][filter]") {
  auto f = filter("ALL: [2001:db8::]/32 [::1] [fe80::1:0:0:0]/80", "ALL: ALL");
  CHECK(verdict(f, "imap", "2001:db8:ffff::1") == Verdict::Allow);
  CHECK(verdict(f, "imap", "2001:db9::1") == Verdict::Deny);
  CHECK(verdict(f, "imap", "::1") == Verdict::Allow);
  CHECK(verdict(f, "imap", "::2") == Verdict::Deny);
  CHECK(verdict(f, "imap", "fe80::1:0:ffff:1") == Verdict::Allow);
  CHECK(verdict(f, "imap", "fe80::2:0:0:0") == Verdict::Deny);
  CHECK(verdict(f, "imap", "127.0.0.1") == Verdict::Deny);
  auto any6 = filter("ALL: [::]/0", "ALL: ALL");
  CHECK(verdict(any6, "imap", "10.0.0.1") == Verdict::Deny);
  CHECK(verdict(any6, "imap", "2001:db8::1") == Verdict::Allow);
  auto any4 = filter("ALL: 0.0.0.0/0", "ALL: ALL");
  CHECK(verdict(any4, "imap", "10.0.0.1") == Verdict::Allow);
  CHECK(verdict(any4, "imap", "::ffff:10.0.0.1") == Verdict::Deny);  // parsed v6 stays v6
  CHECK(verdict(any4, "imap", "::") == Verdict::Deny);
  auto mapped = AccessFilter::from_files("ALL: [::ffff:10.0.0.0]/104", "allow", "ALL: ALL", "deny");
  REQUIRE(mapped);
  CHECK(mapped->warnings().size() == 1);
  CHECK(mapped->evaluate(request("imap", "10.0.0.1")).verdict == Verdict::Deny);
}

TEST_CASE("services and names compare case-insensitively", "[access][filter]") {
  auto f = filter("IMAP, Pop: 10.\nALL EXCEPT POP: .Example.COM", "ALL: ALL");
  CHECK(verdict(f, "imap", "10.0.0.1") == Verdict::Allow);
  CHECK(verdict(f, "IMAP", "10.0.0.1") == Verdict::Allow);
  CHECK(verdict(f, "pOp", "10.0.0.1") == Verdict::Allow);
  CHECK(verdict(f, "http", "10.0.0.1", HostName::verified("A.EXAMPLE.com")) == Verdict::Allow);
  CHECK(verdict(f, "POP", "192.0.2.1", HostName::verified("a.example.com")) == Verdict::Deny);
  // A service no rule names is matched only by ALL.
  CHECK(verdict(f, "gopher", "10.0.0.1", HostName::verified("a.example.com")) == Verdict::Allow);
  CHECK(verdict(f, "", "10.0.0.1", HostName::none()) == Verdict::Deny);
}

TEST_CASE("user patterns", "[access][filter]") {
  auto f = filter("imap: KNOWN@10.\npop: UNKNOWN@10.\nhttp: Joe@10. ALL@192.0.2.", "ALL: ALL");
  auto r = request("imap", "10.0.0.1");
  CHECK(f.evaluate(r).verdict == Verdict::Deny);
  r.user = "ann";
  CHECK(f.evaluate(r).verdict == Verdict::Allow);
  r.user = "";
  CHECK(f.evaluate(r).verdict == Verdict::Deny);
  r = request("pop", "10.0.0.1");
  CHECK(f.evaluate(r).verdict == Verdict::Allow);
  r.user = "ann";
  CHECK(f.evaluate(r).verdict == Verdict::Deny);
  r = request("http", "10.0.0.1");
  r.user = "JOE";
  CHECK(f.evaluate(r).verdict == Verdict::Allow);
  r.user = "joel";
  CHECK(f.evaluate(r).verdict == Verdict::Deny);
  r = request("http", "192.0.2.200");
  CHECK(f.evaluate(r).verdict == Verdict::Allow);
}

TEST_CASE("@netgroup never matches, @.domain is the domain", "[access][filter]") {
  auto f = filter("ALL: @staff\nALL: @.example1.com", "ALL: ALL");
  CHECK(verdict(f, "imap", "10.0.0.1", HostName::verified("staff")) == Verdict::Deny);
  CHECK(verdict(f, "imap", "10.0.0.1", HostName::verified("pc.example1.com")) == Verdict::Allow);
  CHECK(verdict(f, "imap", "10.0.0.1", HostName::verified("example1.com")) == Verdict::Deny);
}

TEST_CASE("general rules between indexed runs keep the first-match order", "[access][filter]") {
  auto f = filter(
      "imap: 10.1.\n"
      "imap: 10.0.0.0/8 EXCEPT 10.2.0.0/16\n"  // general (EXCEPT)
      "pop: 10.\n",
      "imap, pop: 10.\n"
      "ALL: .example.com\n"
      "ALL: 10.");
  Decision d = f.evaluate(request("imap", "10.2.0.1"));
  CHECK(d.verdict == Verdict::Deny);
  CHECK(d.rule->to_string() == "deny:1: imap, pop: 10.");
  d = f.evaluate(request("imap", "10.3.0.1"));
  CHECK(d.verdict == Verdict::Allow);
  CHECK(d.rule->pos.line == 2);
  d = f.evaluate(request("smtp", "10.3.0.1"));
  CHECK(d.verdict == Verdict::NeedClientName);
  d = f.evaluate(request("smtp", "10.3.0.1", HostName::none()));
  CHECK(d.rule->to_string() == "deny:3: ALL: 10.");
}

namespace {

// A naive scan over the parsed rules, for numeric rules only, as the reference for the index.
bool naive_host(const HostPattern& h, const IpAddress& a) {
  if (h.kind == HostPattern::Kind::All) return true;
  if (h.kind == HostPattern::Kind::V4Net) return a.is_v4() && (a.v4_host_order() & h.v4_mask) == h.v4_net;
  if (h.kind == HostPattern::Kind::V6Net) {
    if (a.is_v4()) return false;
    auto b = a.bytes();
    for (unsigned bit = 0; bit < h.prefix_len; ++bit) {
      uint64_t half = h.v6_net[bit / 64];
      bool want = (half >> (63 - bit % 64)) & 1;
      bool have = (b[bit / 8] >> (7 - bit % 8)) & 1;
      if (want != have) return false;
    }
    return true;
  }
  return false;
}

}  // namespace

TEST_CASE("the address index agrees with a naive scan on random rules", "[access][filter]") {
  std::mt19937 rng(1234);
  const char* services[] = {"imap", "pop", "http", "ALL", "smtp"};
  for (int round = 0; round < 30; ++round) {
    std::string allow, deny;
    // A small address space so that random addresses hit rules often.
    auto v4 = [&] { return "10." + std::to_string(rng() % 4) + "." + std::to_string(rng() % 4) + "." + std::to_string(rng() % 8); };
    for (int i = 0; i < 60; ++i) {
      std::string svc = services[rng() % 5];
      if (rng() % 4 == 0) svc += ", " + std::string(services[rng() % 5]);
      std::string pat;
      switch (rng() % 7) {
        case 0: pat = v4(); break;
        case 1: pat = "10." + std::to_string(rng() % 4) + "."; break;
        case 2: pat = "10." + std::to_string(rng() % 4) + "." + std::to_string(rng() % 4) + ".0/" + std::to_string(22 + rng() % 11); break;
        case 3: pat = "10." + std::to_string(rng() % 4) + ".0.0/255.255.252.0"; break;
        case 4: pat = "[2001:db8::" + std::to_string(rng() % 8) + "]/" + std::to_string(125 + rng() % 4); break;
        case 5: pat = "[2001:db8::]/" + std::to_string(rng() % 129); break;
        default: pat = rng() % 8 == 0 ? "ALL" : v4() + " " + v4(); break;
      }
      ((rng() % 2) ? allow : deny) += svc + ": " + pat + "\n";
    }
    auto parsed_allow = parse_filter(allow, "allow", RuleKind::Allow);
    auto parsed_deny = parse_filter(deny, "deny", RuleKind::Deny);
    REQUIRE(parsed_allow);
    REQUIRE(parsed_deny);
    auto f = filter(allow, deny);
    std::vector<const Rule*> order;
    for (const Rule& r : parsed_allow->rules) order.push_back(&r);
    for (const Rule& r : parsed_deny->rules) order.push_back(&r);
    for (int i = 0; i < 300; ++i) {
      IpAddress a = (rng() % 3)
                        ? IpAddress::v4((10u << 24) | ((rng() % 4) << 16) | ((rng() % 4) << 8) | (rng() % 8))
                        : *IpAddress::parse("2001:db8::" + std::to_string(rng() % 8));
      std::string svc = services[rng() % 5];
      if (svc == "ALL") svc = "lmtp";
      const Rule* want = nullptr;
      for (const Rule* r : order) {
        bool svc_ok = false;
        for (const auto& e : r->services[0]) svc_ok |= e.all || e.name == svc;
        bool host_ok = false;
        for (const auto& e : r->clients[0]) host_ok |= naive_host(e.host, a);
        if (svc_ok && host_ok) {
          want = r;
          break;
        }
      }
      AccessRequest req;
      req.service = svc;
      req.client.address = a;
      Decision d = f.evaluate(req);
      INFO(allow << "----\n" << deny << "address " << a.to_string() << " service " << svc);
      REQUIRE_FALSE(d.needs_name());
      if (want == nullptr) {
        CHECK(d.rule == nullptr);
      } else {
        REQUIRE(d.rule != nullptr);
        CHECK(d.rule->to_string() == want->info.to_string());
        CHECK(d.rule->kind == want->info.kind);
      }
    }
  }
}

TEST_CASE("more distinct service names than the limit is an error", "[access][filter]") {
  std::string text;
  for (int i = 0; i < 70; ++i) text += "svc" + std::to_string(i) + ": ALL\n";
  AccessLimits limits;
  limits.max_warnings = 1;
  auto f = AccessFilter::from_files(text, "allow", "", "deny", limits);
  REQUIRE_FALSE(f);
  CHECK(f.error()[0].to_string() == "allow:64:1: more than 63 distinct service names");
}
