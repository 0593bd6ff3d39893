// parser_test.cpp: the filter file and compact parsers: every pattern form, positions of errors,
// limits, and the same result for any split of the input (one byte at a time included).
#include <catch2/catch.hpp>

#include <random>
#include <sstream>
#include <string>

#include "common/access/parser.hpp"

using namespace common::access;

namespace {

std::string host_summary(const HostPattern& h) {
  using K = HostPattern::Kind;
  std::ostringstream o;
  switch (h.kind) {
    case K::All: return "ALL";
    case K::Local: return "LOCAL";
    case K::Known: return "KNOWN";
    case K::Unknown: return "UNKNOWN";
    case K::DnsSpoofer: return "DNSSPOOFER";
    case K::V4Net:
      o << "v4:" << (h.v4_net >> 24) << "." << ((h.v4_net >> 16) & 255) << "." << ((h.v4_net >> 8) & 255) << "."
        << (h.v4_net & 255) << "/" << int(h.prefix_len);
      return o.str();
    case K::V6Net:
      o << "v6:" << std::hex << h.v6_net[0] << ":" << h.v6_net[1] << std::dec << "/" << int(h.prefix_len);
      return o.str();
    case K::NameExact: return "name:" + h.name;
    case K::NameSuffix: return "suffix:" + h.name;
    case K::Netgroup: return "netgroup:" + h.name;
  }
  return "?";
}

std::string summary(const Rule& r) {
  std::string s = r.info.kind == RuleKind::Allow ? "+" : "-";
  for (size_t n = 0; n < r.services.size(); ++n) {
    if (n) s += " EXCEPT";
    for (const auto& e : r.services[n]) {
      s += " " + (e.all ? std::string("ALL") : e.name);
      if (e.has_host) s += "@" + host_summary(e.host);
    }
  }
  s += " :";
  for (size_t n = 0; n < r.clients.size(); ++n) {
    if (n) s += " EXCEPT";
    for (const auto& e : r.clients[n]) {
      s += " ";
      if (e.has_user) {
        switch (e.user.kind) {
          case UserPattern::Kind::All: s += "ALL"; break;
          case UserPattern::Kind::Known: s += "KNOWN"; break;
          case UserPattern::Kind::Unknown: s += "UNKNOWN"; break;
          case UserPattern::Kind::Exact: s += e.user.name; break;
        }
        s += "@";
      }
      s += host_summary(e.host);
    }
  }
  return s;
}

std::string dump(const ParseResult<RuleList>& r) {
  std::string out;
  if (!r) {
    for (const auto& e : r.error()) out += "E " + e.to_string() + "\n";
    return out;
  }
  for (const auto& rule : r->rules) out += rule.info.to_string() + " => " + summary(rule) + "\n";
  for (const auto& w : r->warnings) out += "W " + w.to_string() + "\n";
  return out;
}

std::string one(std::string_view line) {
  auto r = parse_filter(line, "f", RuleKind::Allow);
  if (!r) return "E " + r.error().at(0).to_string();
  REQUIRE(r->rules.size() == 1);
  return summary(r->rules[0]);
}

std::string first_error(std::string_view text, const AccessLimits& limits = {}) {
  auto r = parse_filter(text, "f", RuleKind::Deny, limits);
  if (r) return "no error";
  return r.error().at(0).to_string();
}

// Feeding in any split must give what the whole text gives.
void check_splits(std::string_view text, const AccessLimits& limits = {}) {
  std::string whole = dump(parse_filter(text, "f", RuleKind::Allow, limits));
  FilterParser bytewise("f", RuleKind::Allow, limits);
  for (char c : text) bytewise.feed(std::string_view(&c, 1));
  CHECK(dump(bytewise.finish()) == whole);
  std::mt19937 rng(42);
  for (int round = 0; round < 20; ++round) {
    FilterParser p("f", RuleKind::Allow, limits);
    size_t pos = 0;
    while (pos < text.size()) {
      size_t n = std::uniform_int_distribution<size_t>(0, 17)(rng);
      n = std::min(n, text.size() - pos);
      p.feed(text.substr(pos, n));
      pos += n;
    }
    CHECK(dump(p.finish()) == whole);
  }
}

}  // namespace

TEST_CASE("simple and general forms parse", "[access][parser]") {
  CHECK(one("imap: roberts.newyork.example.com") == "+ imap : name:roberts.newyork.example.com");
  CHECK(one("pop: ALL") == "+ pop : ALL");
  CHECK(one("http: *") == "+ http : ALL");
  CHECK(one("pop@mailServer1.example.com: ALL") == "+ pop@name:mailserver1.example.com : ALL");
  CHECK(one("imap: srashad@xyz.europe.example.com") == "+ imap : srashad@name:xyz.europe.example.com");
  CHECK(one("pop, imap, http: .europe.example.com .newyork.example.com") ==
        "+ pop imap http : suffix:.europe.example.com suffix:.newyork.example.com");
  CHECK(one("pop,imap ,, http:.a.com,,.b.com") == "+ pop imap http : suffix:.a.com suffix:.b.com");
  CHECK(one("ALL: LOCAL KNOWN UNKNOWN DNSSPOOFER PARANOID") == "+ ALL : LOCAL KNOWN UNKNOWN DNSSPOOFER DNSSPOOFER");
  CHECK(one("ALL@msgServer.example1.com: @.example1.com") ==
        "+ ALL@name:msgserver.example1.com : suffix:.example1.com");
  CHECK(one("imap: KNOWN@host.example.com UNKNOWN@.example.com ALL@LOCAL *@10.") ==
        "+ imap : KNOWN@name:host.example.com UNKNOWN@suffix:.example.com ALL@LOCAL ALL@v4:10.0.0.0/8");
  CHECK(one("imap@[2001:db8::1]: ALL") == "+ imap@v6:20010db800000000:1/128 : ALL");
}

TEST_CASE("address patterns: prefix, net/mask, CIDR, exact, IPv6", "[access][parser]") {
  CHECK(one("ALL: 123.45.67.0/255.255.255.128") == "+ ALL : v4:123.45.67.0/25");
  CHECK(one("ALL: 123.45.67.0/25") == "+ ALL : v4:123.45.67.0/25");
  CHECK(one("ALL: 131.155.") == "+ ALL : v4:131.155.0.0/16");
  CHECK(one("ALL: 10.") == "+ ALL : v4:10.0.0.0/8");
  CHECK(one("ALL: 192.168.1.") == "+ ALL : v4:192.168.1.0/24");
  CHECK(one("ALL: 192.0.2.7") == "+ ALL : v4:192.0.2.7/32");
  CHECK(one("ALL: 0.0.0.0/0") == "+ ALL : v4:0.0.0.0/0");
  CHECK(one("ALL: 10.0.0.0/0.0.0.0") == "E f:1:6: net 10.0.0.0 has bits outside mask 0.0.0.0, so it could never match");
  CHECK(one("ALL: 192.0.2.1/255.255.255.255") == "+ ALL : v4:192.0.2.1/32");
  CHECK(one("ALL: [2001:db8::]/32") == "+ ALL : v6:20010db800000000:0/32");
  CHECK(one("ALL: [::1]") == "+ ALL : v6:0:1/128");
  CHECK(one("ALL: [::]/0") == "+ ALL : v6:0:0/0");
  CHECK(one("ALL: [2001:DB8:0:0:8000::]/65") == "+ ALL : v6:20010db800000000:8000000000000000/65");
}

TEST_CASE("EXCEPT chains in both lists, case-insensitive keywords", "[access][parser]") {
  CHECK(one("ALL: ALL EXCEPT isserver.example.com") == "+ ALL : ALL EXCEPT name:isserver.example.com");
  CHECK(one("ALL EXCEPT pop: contractor.example1.com, .example.com") ==
        "+ ALL EXCEPT pop : name:contractor.example1.com suffix:.example.com");
  CHECK(one("all: a.com except b.com Except c.com") == "+ ALL : name:a.com EXCEPT name:b.com EXCEPT name:c.com");
  CHECK(one("IMAP, Pop: local Unknown") == "+ imap pop : LOCAL UNKNOWN");
  CHECK(one("ALL: HOST.Example.COM") == "+ ALL : name:host.example.com");
}

TEST_CASE("comments, blank lines, continuation and CRLF", "[access][parser]") {
  std::string text =
      "# Postern allow file\n"
      "\n"
      "   \t\n"
      "  # indented comment\n"
      "imap: 10.0.0.1  # trailing comment\n"
      "pop, \\\n"
      "  imap: \\\n"
      "  .example.com\r\n"
      "http: a.example.\\\n"
      "com\n"
      "# comment \\\n"
      "continued comment\n"
      "smtp: ALL";  // no final newline
  auto r = parse_filter(text, "allow.txt", RuleKind::Allow);
  REQUIRE(r);
  REQUIRE(r->rules.size() == 4);
  CHECK(r->rules[0].info.to_string() == "allow.txt:5: imap: 10.0.0.1");
  CHECK(r->rules[0].info.pos.column == 1);
  CHECK(r->rules[1].info.to_string() == "allow.txt:6: pop,   imap:   .example.com");
  CHECK(summary(r->rules[1]) == "+ pop imap : suffix:.example.com");
  // tcpd joins continued lines without a blank.
  CHECK(summary(r->rules[2]) == "+ http : name:a.example.com");
  CHECK(r->rules[3].info.to_string() == "allow.txt:13: smtp: ALL");
  check_splits(text);
}

TEST_CASE("errors carry the physical line and column, also after continuations", "[access][parser]") {
  CHECK(first_error("imap ALL\n") == "f:1:9: missing ':' between the service list and the client list");
  CHECK(first_error("\n\nimap:\n") == "f:3:5: empty client list after ':'");
  CHECK(first_error(": ALL\n") == "f:1:1: empty service list before ':'");
  CHECK(first_error("imap: ALL EXCEPT\n") == "f:1:11: EXCEPT needs a client list after it");
  CHECK(first_error("imap: EXCEPT a.com\n") == "f:1:7: EXCEPT needs a client list before it");
  CHECK(first_error("imap EXCEPT: a.com\n") == "f:1:6: EXCEPT needs a service list after it");
  CHECK(first_error("imap: a EXCEPT EXCEPT b\n") == "f:1:16: EXCEPT needs a client list before it");
  // One error per mistake: a bad entry does not also make its EXCEPT look empty.
  auto two = parse_filter("imap: a$b EXCEPT c\n", "f", RuleKind::Allow);
  REQUIRE_FALSE(two);
  CHECK(two.error().size() == 1);
  CHECK(first_error("imap: 10.0.0.0/33\n") == "f:1:16: IPv4 prefix length 33 is over 32");
  CHECK(first_error("imap: 1.2.3.4/255.0.255.0\n") ==
        "f:1:15: non-contiguous netmask 255.0.255.0 is not supported; write the network as a.b.c.d/len");
  CHECK(first_error("imap: 1.2.3.4/255.255.255.0\n") ==
        "f:1:7: net 1.2.3.4 has bits outside mask 255.255.255.0, so it could never match");
  CHECK(first_error("imap: [2001:db8::]/129\n") == "f:1:20: IPv6 prefix length 129 is over 128");
  CHECK(first_error("imap: [2001:db8::/32\n") == "f:1:7: missing ']' in '[2001:db8::/32'");
  CHECK(first_error("imap: [2001:db8:zz::]\n") == "f:1:8: invalid IPv6 address '2001:db8:zz::'");
  CHECK(first_error("imap: [10.0.0.1]\n") == "f:1:7: IPv4 address in brackets: write 10.0.0.1 without them");
  CHECK(first_error("imap: [::1]x\n") == "f:1:12: unexpected 'x' after ']'");
  CHECK(first_error("imap: 2001:db8::1\n") ==
        "f:1:11: second ':' in a rule: write IPv6 addresses in brackets ([::1]); tcpd shell commands and "
        "options are not supported");
  CHECK(first_error("imap: ALL: /bin/echo\n").find("f:1:10: second ':'") == 0);
  CHECK(first_error("imap: 10.0.0.\n").find("no error") == 0);
  CHECK(first_error("imap: 1.2.3.4.\n") == "f:1:7: '1.2.3.4.' has four octets and a trailing dot: write 1.2.3.4 for one address");
  CHECK(first_error("imap: 1.2.3\n") == "f:1:7: '1.2.3' is not an IPv4 address (a prefix ends with a dot: 10.1.)");
  CHECK(first_error("imap: 1.2.3.256\n").find("f:1:7: '1.2.3.256' is not an IPv4") == 0);
  CHECK(first_error("imap: 010.1.1.1\n").find("f:1:7: '010.1.1.1' is not an IPv4") == 0);
  CHECK(first_error("imap: 1.2.300.\n") == "f:1:11: invalid octet '300' in address prefix");
  CHECK(first_error("imap: *.example.com\n") ==
        "f:1:7: glob wildcards (* and ?) are not supported: use ALL, .domain or an address pattern");
  CHECK(first_error("imap: /etc/hosts.list\n") == "f:1:7: file patterns (/path) are not supported");
  CHECK(first_error("imap: a..b\n") == "f:1:9: empty label in host name 'a..b'");
  CHECK(first_error("imap: a$b.com\n") == "f:1:8: invalid '$' in host name");
  CHECK(first_error("imap: .\n") == "f:1:7: '.' names no domain");
  CHECK(first_error("imap: @\n") == "f:1:7: '@' needs a netgroup name or a .domain after it");
  CHECK(first_error("imap: joe@\n") == "f:1:10: user@ needs a host after '@'");
  CHECK(first_error("imap: LOCAL@host\n") == "f:1:7: LOCAL is not a user pattern (ALL, KNOWN, UNKNOWN or a name)");
  CHECK(first_error("LOCAL: ALL\n") == "f:1:1: LOCAL matches hosts, not services");
  CHECK(first_error("@imap: ALL\n") == "f:1:1: a service list entry cannot start with '@'");
  CHECK(first_error("imap@: ALL\n") == "f:1:5: service@ needs a host after '@'");
  CHECK(first_error("im/ap: ALL\n") == "f:1:3: invalid '/' in service name");
  CHECK(first_error("imap: a@b@c\n") == "f:1:10: invalid '@' in host name");
  // Position after a continuation: the bad byte is on physical line 2, column 3.
  CHECK(first_error("imap: \\\n  a$.com\n") == "f:2:4: invalid '$' in host name");
  CHECK(first_error("ok: ALL\nimap: \\\r\n 10.0.0.0/40\n") == "f:3:11: IPv4 prefix length 40 is over 32");
}

TEST_CASE("garbage bytes, NULs and huge lines are errors, never crashes", "[access][parser]") {
  CHECK(first_error(std::string("imap: a\0b\n", 10)) == "f:1:8: NUL byte in rule");
  CHECK(first_error("imap: caf\xc3\xa9.com\n") == "f:1:10: invalid byte 0xc3 in rule");
  CHECK(first_error("imap: a\x7f\n") == "f:1:8: invalid byte 0x7f in rule");
  CHECK(first_error("imap: a\x01\n") == "f:1:8: invalid byte 0x01 in rule");
  // A NUL inside a comment is harmless.
  CHECK(first_error(std::string("# a\0b\nimap: ALL\n", 16)) == "no error");

  AccessLimits limits;
  limits.max_line = 100;
  std::string huge = "imap: " + std::string(500, 'a') + "\nsecond line no colon\n";
  auto r = parse_filter(huge, "f", RuleKind::Allow, limits);
  REQUIRE_FALSE(r);
  REQUIRE(r.error().size() == 2);
  CHECK(r.error()[0].to_string() == "f:1:101: line longer than 100 bytes");
  CHECK(r.error()[1].to_string() == "f:2:21: missing ':' between the service list and the client list");
  check_splits(huge, limits);
  // Continuations count toward the limit, so endless backslash lines cannot grow memory.
  std::string cont;
  for (int i = 0; i < 60; ++i) cont += "\\\n";
  cont += "imap: ALL\n";
  CHECK(first_error(cont, limits) == "f:51:1: line longer than 100 bytes");
  std::string ten_mb(10 << 20, 'x');
  CHECK(first_error(ten_mb) == "f:1:4097: line longer than 4096 bytes");
}

TEST_CASE("rule, entry, token and error counts are bounded", "[access][parser]") {
  AccessLimits limits;
  limits.max_rules = 3;
  CHECK(first_error("a: ALL\nb: ALL\nc: ALL\nd: ALL\n", limits) == "f:4:1: more than 3 rules");
  limits = {};
  limits.max_list_entries = 4;
  CHECK(first_error("imap: a b c\nimap, pop: a b c d\n", limits) == "f:2:16: more than 4 entries in one rule");
  CHECK(first_error("imap: " + std::string(300, 'a') + "\n") == "f:1:7: pattern longer than 260 bytes");
  std::string many;
  for (int i = 0; i < 40; ++i) many += "bad line\n";
  auto r = parse_filter(many, "f", RuleKind::Allow);
  REQUIRE_FALSE(r);
  CHECK(r.error().size() == 17);
  CHECK(r.error().back().message == "24 more errors not shown");
  check_splits(many);
}

TEST_CASE("host name limits", "[access][parser]") {
  CHECK(first_error("imap: " + std::string(64, 'a') + ".com\n") == "f:1:70: host name label longer than 63 bytes");
  std::string long_name;
  for (int i = 0; i < 4; ++i) long_name += std::string(62, 'a') + ".";  // 255 bytes: over 253, under 260
  long_name += "com";
  CHECK(first_error("imap: " + long_name + "\n") == "f:1:7: host name longer than 253 bytes");
}

TEST_CASE("warnings: unknown services, netgroups, host bits, mapped IPv6, trailing dots", "[access][parser]") {
  auto r = parse_filter(
      "imaps, pop3, Foo: @netgroup1 10.1.2.3/8 [::ffff:10.0.0.0]/104 [2001:db8::1]/32 host.example.com.\n"
      "ens, authserv, mailstore, sieve, lmtp, submission, smtp: ALL\n",
      "w", RuleKind::Allow);
  REQUIRE(r);
  std::string d = dump(r);
  CHECK_THAT(d, Catch::Contains("W w:1:1: unknown service 'imaps': it never matches"));
  CHECK_THAT(d, Catch::Contains("W w:1:8: unknown service 'pop3': did you mean 'pop'?"));
  CHECK_THAT(d, Catch::Contains("W w:1:14: unknown service 'foo' (known:"));
  CHECK_THAT(d, Catch::Contains("W w:1:19: netgroup @netgroup1 never matches"));
  CHECK_THAT(d, Catch::Contains("W w:1:30: host bits set in 10.1.2.3/8: only the first 8 bits are compared"));
  CHECK_THAT(d, Catch::Contains("W w:1:41: IPv4-mapped pattern [::ffff:10.0.0.0]/104 never matches"));
  CHECK_THAT(d, Catch::Contains("W w:1:63: host bits set in [2001:db8::1]/32"));
  CHECK_THAT(d, Catch::Contains("W w:1:96: trailing dot: 'host.example.com.' is taken as the absolute name"));
  CHECK(r->warnings.size() == 8);  // line 2 names only our services
  CHECK(summary(r->rules[0]) ==
        "+ imaps pop3 foo : netgroup:netgroup1 v4:10.0.0.0/8 v6:0:ffff0a000000/104 v6:20010db800000000:0/32 "
        "name:host.example.com");
}

TEST_CASE("the compact +/- form", "[access][parser]") {
  auto r = parse_compact("+imap,pop,http:*");
  REQUIRE(r);
  REQUIRE(r->rules.size() == 1);
  CHECK(summary(r->rules[0]) == "+ imap pop http : ALL");
  CHECK(r->rules[0].info.to_string() == "rules:1: +imap,pop,http:*");

  r = parse_compact("+imap:ALL$+pop:ALL$+http:ALL");
  REQUIRE(r);
  REQUIRE(r->rules.size() == 3);
  CHECK(r->rules[2].info.text == "+http:ALL");
  CHECK(r->rules[2].info.pos.column == 20);

  r = parse_compact("-imap:*$-pop:*$-http:*");
  REQUIRE(r);
  REQUIRE(r->rules.size() == 3);
  CHECK(summary(r->rules[1]) == "- pop : ALL");

  r = parse_compact(" -ALL:ALL EXCEPT server1.sesta.com $ +imap: [2001:db8::]/32, 10.0.0.0/8 $");
  REQUIRE(r);
  REQUIRE(r->rules.size() == 2);
  CHECK(summary(r->rules[0]) == "- ALL : ALL EXCEPT name:server1.sesta.com");
  CHECK(summary(r->rules[1]) == "+ imap : v6:20010db800000000:0/32 v4:10.0.0.0/8");
  REQUIRE(r->warnings.size() == 1);
  CHECK(r->warnings[0].to_string() == "rules:1:74: empty rule skipped");

  CHECK(parse_compact("")->rules.empty());
  CHECK(parse_compact("  ")->warnings.empty());

  auto bad = parse_compact("+imap:ALL$imap:ALL");
  REQUIRE_FALSE(bad);
  CHECK(bad.error()[0].to_string() == "rules:1:11: a rule starts with '+' (allow) or '-' (deny), not 'i'");
  bad = parse_compact("+imap:ALL$-pop:10.0.0.0/99");
  REQUIRE_FALSE(bad);
  CHECK(bad.error()[0].to_string() == "rules:1:25: IPv4 prefix length 99 is over 32");
  bad = parse_compact("+imap: a.com#x");
  REQUIRE_FALSE(bad);
  CHECK(bad.error()[0].to_string() == "rules:1:13: invalid '#' in host name");
  bad = parse_compact("+");
  REQUIRE_FALSE(bad);
  CHECK(bad.error()[0].to_string() == "rules:1:1: nothing after the rule's sign");
  bad = parse_compact("+imap");
  REQUIRE_FALSE(bad);
  CHECK(bad.error()[0].message == "missing ':' between the service list and the client list");
  AccessLimits limits;
  limits.max_compact = 10;
  bad = parse_compact("+imap:ALL$+pop:ALL", "rules", limits);
  REQUIRE_FALSE(bad);
  CHECK(bad.error()[0].message == "rules longer than 10 bytes");
}

TEST_CASE("splits: every form fed in arbitrary pieces gives the same rules", "[access][parser]") {
  check_splits(
      "imap: roberts.newyork.example.com\npop: ALL\nhttp: ALL\n"
      "pop@mailServer1.example.com: ALL\nimap: srashad@xyz.europe.example.com\n"
      "pop, imap, http: .europe.example.com .newyork.example.com\n"
      "ALL: ALL EXCEPT isserver.example.com\nALL: LOCAL @netgroup1\n"
      "ALL: .example.com EXCEPT externalserver.example.com\n"
      "ALL EXCEPT pop: contractor.example1.com, .example.com\nALL: DNSSPOOFER\n"
      "ALL@msgServer.example1.com: @.example1.com\n"
      "ALL: 123.45.67.0/255.255.255.128 123.45.67.0/25 [2001:db8::]/32 [::1] 10. 192.0.2.1\r\n"
      "imap: \\\n 10.0.0.0/8 \\\r\n EXCEPT 10.1.\n"
      "bad: 10.0.0.0/33\n");
}
