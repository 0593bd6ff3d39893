// seed_examples_test.cpp: every filter example of the seeds' "How Client Access Filters Work"
// chapter (S2 §7 with example.com, S4 with siroe.com) with the outcome the seed states.
#include <catch2/catch.hpp>

#include <string>
#include <vector>

#include "common/access/filter.hpp"

using namespace common::access;

namespace {

// Name facts as a short string: "" not looked up, "none", "tempfail", "=name" verified, "!name" mismatch.
HostName name_from(const std::string& spec) {
  if (spec.empty()) return HostName::not_looked();
  if (spec == "none") return HostName::none();
  if (spec == "tempfail") return HostName::temp_fail();
  if (spec[0] == '=') return HostName::verified(std::string_view(spec).substr(1));
  return HostName::mismatch(std::string_view(spec).substr(1));
}

struct Req {
  std::string service;
  std::string client;  // address
  std::string client_name;
  std::string user;  // "" = no user
  std::string server_name = "";
  std::string server = "192.0.2.1";
};

// 'A' allow, 'D' deny, 'C' needs the client name, 'S' needs the server name.
struct Expect {
  char verdict;
  const char* source;  // "allow", "deny", "rules"; nullptr for the default
  uint32_t line;
};

struct Case {
  const char* title;
  const char* allow;    // allow file text (S2/S4 use example/siroe; the test runs both)
  const char* deny;     // deny file text
  const char* compact;  // or a compact string (allow/deny ignored when set)
  Req req;
  Expect expect;
};

// The seeds' examples. S2 writes example.com where S4 writes siroe.com; each row runs with both.
const std::vector<Case> kCases = {
    // Filter Syntax: "If these are Allow filters, the first one grants the host roberts... access
    // to the IMAP service, and the second and third grant all clients access to POP and HTTP".
    {"allow: imap for roberts", "imap: roberts.newyork.example.com\npop: ALL\nhttp: ALL\n", "", nullptr,
     {"imap", "198.51.100.7", "=roberts.newyork.example.com"}, {'A', "allow", 1}},
    {"allow: pop for all, no DNS", "imap: roberts.newyork.example.com\npop: ALL\nhttp: ALL\n", "", nullptr,
     {"pop", "198.51.100.7", ""}, {'A', "allow", 2}},
    {"allow: http for all", "imap: roberts.newyork.example.com\npop: ALL\nhttp: ALL\n", "", nullptr,
     {"HTTP", "2001:db8::7", ""}, {'A', "allow", 3}},
    {"allow: imap from elsewhere, allows only", "imap: roberts.newyork.example.com\npop: ALL\nhttp: ALL\n", "",
     nullptr, {"imap", "198.51.100.8", "=other.newyork.example.com"}, {'D', nullptr, 0}},
    {"allow: imap needs the name", "imap: roberts.newyork.example.com\npop: ALL\nhttp: ALL\n", "", nullptr,
     {"imap", "198.51.100.8", ""}, {'C', "allow", 1}},
    // "If they are Deny filters, they deny those clients access to those services."
    {"deny: imap for roberts", "", "imap: roberts.newyork.example.com\npop: ALL\nhttp: ALL\n", nullptr,
     {"imap", "198.51.100.7", "=Roberts.NewYork.example.COM."}, {'D', "deny", 1}},
    {"deny: pop for all", "", "imap: roberts.newyork.example.com\npop: ALL\nhttp: ALL\n", nullptr,
     {"pop", "198.51.100.7", ""}, {'D', "deny", 2}},
    {"deny: http for all", "", "imap: roberts.newyork.example.com\npop: ALL\nhttp: ALL\n", nullptr,
     {"http", "198.51.100.7", "none"}, {'D', "deny", 3}},
    {"deny: imap from elsewhere", "", "imap: roberts.newyork.example.com\npop: ALL\nhttp: ALL\n", nullptr,
     {"imap", "198.51.100.8", "none"}, {'A', nullptr, 0}},

    // serviceSpec: clientSpec. As Deny filters, the first denies all clients the service on the
    // host mailServer1 (the seed says "SMTP" but the rule names pop), the second denies the user
    // srashad at xyz.europe the IMAP service.
    {"deny: pop@mailServer1", "", "pop@mailServer1.example.com: ALL\nimap: srashad@xyz.europe.example.com\n",
     nullptr, {"pop", "198.51.100.7", "", "", "=mailserver1.example.com"}, {'D', "deny", 1}},
    {"deny: pop on another server", "", "pop@mailServer1.example.com: ALL\nimap: srashad@xyz.europe.example.com\n",
     nullptr, {"pop", "198.51.100.7", "", "", "=mailServer2.example.com"}, {'A', nullptr, 0}},
    {"deny: pop@server needs the server name", "",
     "pop@mailServer1.example.com: ALL\nimap: srashad@xyz.europe.example.com\n", nullptr,
     {"pop", "198.51.100.7", "", "", ""}, {'S', "deny", 1}},
    {"deny: srashad at xyz", "", "pop@mailServer1.example.com: ALL\nimap: srashad@xyz.europe.example.com\n",
     nullptr, {"imap", "198.51.100.7", "=xyz.europe.example.com", "srashad"}, {'D', "deny", 2}},
    {"deny: another user at xyz", "", "pop@mailServer1.example.com: ALL\nimap: srashad@xyz.europe.example.com\n",
     nullptr, {"imap", "198.51.100.7", "=xyz.europe.example.com", "roberts"}, {'A', nullptr, 0}},
    {"deny: srashad elsewhere", "", "pop@mailServer1.example.com: ALL\nimap: srashad@xyz.europe.example.com\n",
     nullptr, {"imap", "198.51.100.7", "=abc.europe.example.com", "srashad"}, {'A', nullptr, 0}},
    {"deny: user unknown (no identd)", "", "pop@mailServer1.example.com: ALL\nimap: srashad@xyz.europe.example.com\n",
     nullptr, {"imap", "198.51.100.7", "", ""}, {'A', nullptr, 0}},

    // serviceList: clientList. "As an Allow filter, it grants access to POP, IMAP and HTTP to all
    // clients in either of the domains europe.example.com and newyork.example.com."
    {"allow: pop from europe", "pop, imap, http: .europe.example.com .newyork.example.com\n", "", nullptr,
     {"pop", "198.51.100.7", "=a.europe.example.com"}, {'A', "allow", 1}},
    {"allow: imap from newyork", "pop, imap, http: .europe.example.com .newyork.example.com\n", "", nullptr,
     {"imap", "198.51.100.7", "=b.c.newyork.example.com"}, {'A', "allow", 1}},
    {"allow: http from newyork", "pop, imap, http: .europe.example.com .newyork.example.com\n", "", nullptr,
     {"http", "198.51.100.7", "=b.newyork.example.com"}, {'A', "allow", 1}},
    {"allow: smtp is not in the list", "pop, imap, http: .europe.example.com .newyork.example.com\n", "", nullptr,
     {"smtp", "198.51.100.7", "=a.europe.example.com"}, {'D', nullptr, 0}},
    {"allow: the domain itself is not inside it", "pop, imap, http: .europe.example.com .newyork.example.com\n", "",
     nullptr, {"pop", "198.51.100.7", "=europe.example.com"}, {'D', nullptr, 0}},
    {"allow: suffix only on a label boundary", "pop, imap, http: .europe.example.com .newyork.example.com\n", "",
     nullptr, {"pop", "198.51.100.7", "=xeurope.example.com"}, {'D', nullptr, 0}},

    // The compact form: "+imap,pop,http:*" enables the services for all clients.
    {"compact +imap,pop,http:* imap", "", "", "+imap,pop,http:*", {"imap", "198.51.100.7", ""}, {'A', "rules", 1}},
    {"compact +imap,pop,http:* http", "", "", "+imap,pop,http:*", {"http", "2001:db8::1", ""}, {'A', "rules", 1}},
    {"compact +imap,pop,http:* smtp", "", "", "+imap,pop,http:*", {"smtp", "198.51.100.7", ""}, {'D', nullptr, 0}},
    {"compact one service per rule pop", "", "", "+imap:ALL$+pop:ALL$+http:ALL", {"pop", "198.51.100.7", ""},
     {'A', "rules", 1}},
    {"compact one service per rule sieve", "", "", "+imap:ALL$+pop:ALL$+http:ALL", {"sieve", "198.51.100.7", ""},
     {'D', nullptr, 0}},
    // "-imap:*$-pop:*$-http:*" disallows all (those) services for a user.
    {"compact deny all imap", "", "", "-imap:*$-pop:*$-http:*", {"imap", "198.51.100.7", ""}, {'D', "rules", 1}},
    {"compact deny all http", "", "", "-imap:*$-pop:*$-http:*", {"http", "198.51.100.7", ""}, {'D', "rules", 1}},
    {"compact deny all, smtp not named", "", "", "-imap:*$-pop:*$-http:*", {"smtp", "198.51.100.7", ""},
     {'A', nullptr, 0}},

    // EXCEPT: "ALL: ALL EXCEPT isserver" as a Deny filter denies every client but isserver.
    {"except: isserver passes", "", "ALL: ALL EXCEPT isserver.example.com\n", nullptr,
     {"imap", "198.51.100.7", "=isserver.example.com"}, {'A', nullptr, 0}},
    {"except: others denied", "", "ALL: ALL EXCEPT isserver.example.com\n", nullptr,
     {"imap", "198.51.100.7", "=www.example.com"}, {'D', "deny", 1}},
    {"except: no PTR is not isserver", "", "ALL: ALL EXCEPT isserver.example.com\n", nullptr,
     {"imap", "198.51.100.7", "none"}, {'D', "deny", 1}},
    {"except: needs the name", "", "ALL: ALL EXCEPT isserver.example.com\n", nullptr,
     {"imap", "198.51.100.7", ""}, {'C', "deny", 1}},
    // list1 EXCEPT list2 EXCEPT list3 = list1 EXCEPT (list2 EXCEPT list3).
    {"nested except: list1", "", "ALL: .example.com EXCEPT .sales.example.com EXCEPT boss.sales.example.com\n",
     nullptr, {"imap", "198.51.100.7", "=www.example.com"}, {'D', "deny", 1}},
    {"nested except: list2", "", "ALL: .example.com EXCEPT .sales.example.com EXCEPT boss.sales.example.com\n",
     nullptr, {"imap", "198.51.100.7", "=joe.sales.example.com"}, {'A', nullptr, 0}},
    {"nested except: list3", "", "ALL: .example.com EXCEPT .sales.example.com EXCEPT boss.sales.example.com\n",
     nullptr, {"imap", "198.51.100.7", "=boss.sales.example.com"}, {'D', "deny", 1}},

    // Mostly Denying: deny "ALL: ALL"; allows "ALL: LOCAL @netgroup1" and
    // "ALL: .example.com EXCEPT externalserver.example.com".
    {"mostly denying: local host", "ALL: LOCAL @netgroup1\nALL: .example.com EXCEPT externalserver.example.com\n",
     "ALL: ALL\n", nullptr, {"imap", "10.1.2.3", "=mailhost"}, {'A', "allow", 1}},
    {"mostly denying: in the domain", "ALL: LOCAL @netgroup1\nALL: .example.com EXCEPT externalserver.example.com\n",
     "ALL: ALL\n", nullptr, {"pop", "10.1.2.3", "=www.example.com"}, {'A', "allow", 2}},
    {"mostly denying: the excepted host", "ALL: LOCAL @netgroup1\nALL: .example.com EXCEPT externalserver.example.com\n",
     "ALL: ALL\n", nullptr, {"pop", "10.1.2.3", "=externalserver.example.com"}, {'D', "deny", 1}},
    {"mostly denying: outsider", "ALL: LOCAL @netgroup1\nALL: .example.com EXCEPT externalserver.example.com\n",
     "ALL: ALL\n", nullptr, {"pop", "10.1.2.3", "=mail.other.org"}, {'D', "deny", 1}},
    {"mostly denying: no PTR", "ALL: LOCAL @netgroup1\nALL: .example.com EXCEPT externalserver.example.com\n",
     "ALL: ALL\n", nullptr, {"pop", "10.1.2.3", "none"}, {'D', "deny", 1}},
    {"mostly denying: needs the name", "ALL: LOCAL @netgroup1\nALL: .example.com EXCEPT externalserver.example.com\n",
     "ALL: ALL\n", nullptr, {"pop", "10.1.2.3", ""}, {'C', "allow", 1}},

    // Mostly Allowing: denies "ALL: externalserver.example1.com, .example.asia.com" and
    // "ALL EXCEPT pop: contractor.example1.com, .example.com" (the second permits nothing but POP).
    {"mostly allowing: external host", "",
     "ALL: externalserver.example1.com, .example.asia.com\nALL EXCEPT pop: contractor.example1.com, .example.com\n",
     nullptr, {"pop", "10.1.2.3", "=externalserver.example1.com"}, {'D', "deny", 1}},
    {"mostly allowing: asia domain", "",
     "ALL: externalserver.example1.com, .example.asia.com\nALL EXCEPT pop: contractor.example1.com, .example.com\n",
     nullptr, {"imap", "10.1.2.3", "=a.example.asia.com"}, {'D', "deny", 1}},
    {"mostly allowing: contractor pop", "",
     "ALL: externalserver.example1.com, .example.asia.com\nALL EXCEPT pop: contractor.example1.com, .example.com\n",
     nullptr, {"pop", "10.1.2.3", "=contractor.example1.com"}, {'A', nullptr, 0}},
    {"mostly allowing: contractor imap", "",
     "ALL: externalserver.example1.com, .example.asia.com\nALL EXCEPT pop: contractor.example1.com, .example.com\n",
     nullptr, {"imap", "10.1.2.3", "=contractor.example1.com"}, {'D', "deny", 2}},
    {"mostly allowing: domain pop", "",
     "ALL: externalserver.example1.com, .example.asia.com\nALL EXCEPT pop: contractor.example1.com, .example.com\n",
     nullptr, {"pop", "10.1.2.3", "=x.example.com"}, {'A', nullptr, 0}},
    {"mostly allowing: domain http", "",
     "ALL: externalserver.example1.com, .example.asia.com\nALL EXCEPT pop: contractor.example1.com, .example.com\n",
     nullptr, {"http", "10.1.2.3", "=x.example.com"}, {'D', "deny", 2}},
    {"mostly allowing: anyone else", "",
     "ALL: externalserver.example1.com, .example.asia.com\nALL EXCEPT pop: contractor.example1.com, .example.com\n",
     nullptr, {"imap", "10.1.2.3", "=mail.other.org"}, {'A', nullptr, 0}},

    // Denying Access to Spoofed Domains: deny "ALL: DNSSPOOFER".
    {"dnsspoofer: mismatch denied", "", "ALL: DNSSPOOFER\n", nullptr,
     {"imap", "203.0.113.5", "!bank.example.com"}, {'D', "deny", 1}},
    {"dnsspoofer: verified passes", "", "ALL: DNSSPOOFER\n", nullptr,
     {"imap", "203.0.113.5", "=mail.example.com"}, {'A', nullptr, 0}},
    {"dnsspoofer: no PTR is no spoof", "", "ALL: DNSSPOOFER\n", nullptr, {"imap", "203.0.113.5", "none"},
     {'A', nullptr, 0}},
    {"dnsspoofer: needs the name", "", "ALL: DNSSPOOFER\n", nullptr, {"imap", "203.0.113.5", ""},
     {'C', "deny", 1}},

    // Controlling Access to Virtual Domains: allows "ALL@msgServer.example1.com: @.example1.com"
    // (and example2) with deny "ALL: ALL": only hosts of domainN reach msgServer.exampleN.com.
    {"virtual: domain1 to server1",
     "ALL@msgServer.example1.com: @.example1.com\nALL@msgServer.example2.com: @.example2.com\n", "ALL: ALL\n",
     nullptr, {"imap", "10.1.2.3", "=pc.example1.com", "", "=msgserver.example1.com"}, {'A', "allow", 1}},
    {"virtual: domain2 to server1",
     "ALL@msgServer.example1.com: @.example1.com\nALL@msgServer.example2.com: @.example2.com\n", "ALL: ALL\n",
     nullptr, {"imap", "10.1.2.3", "=pc.example2.com", "", "=msgserver.example1.com"}, {'D', "deny", 1}},
    {"virtual: domain2 to server2",
     "ALL@msgServer.example1.com: @.example1.com\nALL@msgServer.example2.com: @.example2.com\n", "ALL: ALL\n",
     nullptr, {"pop", "10.1.2.3", "=pc.example2.com", "", "=msgServer.example2.com"}, {'A', "allow", 2}},
    {"virtual: domain1 to server2",
     "ALL@msgServer.example1.com: @.example1.com\nALL@msgServer.example2.com: @.example2.com\n", "ALL: ALL\n",
     nullptr, {"pop", "10.1.2.3", "=pc.example1.com", "", "=msgServer.example2.com"}, {'D', "deny", 1}},
    {"virtual: needs both names",
     "ALL@msgServer.example1.com: @.example1.com\nALL@msgServer.example2.com: @.example2.com\n", "ALL: ALL\n",
     nullptr, {"pop", "10.1.2.3", "", "", ""}, {'C', "allow", 1}},

    // Wildcard Patterns: 123.45.67.0/255.255.255.128 and 123.45.67.0/25 match .0 through .127.
    {"net/mask low end", "", "ALL: 123.45.67.0/255.255.255.128\n", nullptr, {"imap", "123.45.67.0", ""},
     {'D', "deny", 1}},
    {"net/mask high end", "", "ALL: 123.45.67.0/255.255.255.128\n", nullptr, {"imap", "123.45.67.127", ""},
     {'D', "deny", 1}},
    {"net/mask just past", "", "ALL: 123.45.67.0/255.255.255.128\n", nullptr, {"imap", "123.45.67.128", ""},
     {'A', nullptr, 0}},
    {"net/mask just before", "", "ALL: 123.45.67.0/255.255.255.128\n", nullptr, {"imap", "123.45.66.255", ""},
     {'A', nullptr, 0}},
    {"cidr low end", "", "ALL: 123.45.67.0/25\n", nullptr, {"imap", "123.45.67.0", ""}, {'D', "deny", 1}},
    {"cidr high end", "", "ALL: 123.45.67.0/25\n", nullptr, {"imap", "123.45.67.127", ""}, {'D', "deny", 1}},
    {"cidr just past", "", "ALL: 123.45.67.0/25\n", nullptr, {"imap", "123.45.67.128", ""}, {'A', nullptr, 0}},
    {"cidr top of /24", "", "ALL: 123.45.67.0/25\n", nullptr, {"imap", "123.45.67.255", ""}, {'A', nullptr, 0}},
    {"cidr next net", "", "ALL: 123.45.67.0/25\n", nullptr, {"imap", "123.45.68.0", ""}, {'A', nullptr, 0}},
    {"cidr as allow with deny all", "ALL: 123.45.67.0/25\n", "ALL: ALL\n", nullptr, {"imap", "123.45.67.64", ""},
     {'A', "allow", 1}},
    {"cidr as allow, outside", "ALL: 123.45.67.0/25\n", "ALL: ALL\n", nullptr, {"imap", "123.45.67.200", ""},
     {'D', "deny", 1}},
};

std::string replace_all(std::string s, const std::string& from, const std::string& to) {
  for (size_t pos = 0; (pos = s.find(from, pos)) != std::string::npos; pos += to.size()) {
    s.replace(pos, from.size(), to);
  }
  return s;
}

void run_case(const Case& c, const std::string& domain) {
  auto sub = [&](const std::string& s) { return replace_all(s, "example", domain); };
  INFO(c.title << " [" << domain << "]");
  ParseResult<AccessFilter> filter =
      c.compact ? AccessFilter::from_compact(c.compact)
                : AccessFilter::from_files(sub(c.allow), "allow", sub(c.deny), "deny");
  REQUIRE(filter);
  std::string client_name = sub(c.req.client_name), server_name = sub(c.req.server_name);
  std::string user = c.req.user;
  AccessRequest req;
  req.service = c.req.service;
  req.client.address = common::net::IpAddress::parse(c.req.client);
  REQUIRE(req.client.address);
  req.client.name = name_from(client_name);
  req.server.address = common::net::IpAddress::parse(c.req.server);
  req.server.name = name_from(server_name);
  if (!user.empty()) req.user = user;
  Decision d = filter->evaluate(req);
  INFO(describe(d));
  char got = d.verdict == Verdict::Allow            ? 'A'
             : d.verdict == Verdict::Deny           ? 'D'
             : d.verdict == Verdict::NeedClientName ? 'C'
                                                    : 'S';
  CHECK(got == c.expect.verdict);
  if (c.expect.source == nullptr) {
    CHECK(d.rule == nullptr);
    CHECK(d.by != DecidedBy::Rule);
  } else {
    REQUIRE(d.rule != nullptr);
    CHECK(d.rule->source == c.expect.source);
    CHECK(d.rule->pos.line == c.expect.line);
  }
}

}  // namespace

TEST_CASE("every seed filter example decides as the seed says (S2 example.com)", "[access][seed]") {
  for (const Case& c : kCases) run_case(c, "example");
}

TEST_CASE("every seed filter example decides as the seed says (S4 siroe.com)", "[access][seed]") {
  for (const Case& c : kCases) run_case(c, "siroe");
}

TEST_CASE("seed examples: a name lookup turns NeedClientName into the stated outcome", "[access][seed]") {
  auto f = AccessFilter::from_files("ALL: LOCAL @netgroup1\nALL: .example.com EXCEPT externalserver.example.com\n",
                                    "allow", "ALL: ALL\n", "deny");
  REQUIRE(f);
  AccessRequest req;
  req.service = "imap";
  req.client.address = common::net::IpAddress::parse("10.9.8.7");
  Decision d = f->evaluate(req);
  REQUIRE(d.verdict == Verdict::NeedClientName);
  CHECK(d.needs_client_name);
  CHECK_FALSE(d.needs_server_name);
  req.client.name = HostName::verified("www.example.com");
  d = f->evaluate(req);
  CHECK(d.verdict == Verdict::Allow);
  REQUIRE(d.rule);
  CHECK(d.rule->text == "ALL: .example.com EXCEPT externalserver.example.com");
  CHECK(d.rule->to_string() == "allow:2: ALL: .example.com EXCEPT externalserver.example.com");
}

TEST_CASE("seed examples: the netgroup of Mostly Denying parses with a warning", "[access][seed]") {
  auto f = AccessFilter::from_files("ALL: LOCAL @netgroup1\n", "allow", "ALL: ALL\n", "deny");
  REQUIRE(f);
  REQUIRE(f->warnings().size() == 1);
  CHECK(f->warnings()[0].to_string().find("allow:1:12: netgroup @netgroup1 never matches") == 0);
}
