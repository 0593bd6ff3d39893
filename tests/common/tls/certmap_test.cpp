// certmap_test.cpp: DNs (parsing, escaping, equality), certmap.conf (the seeds' and manuals'
// examples, every error with its position, any split of the input), and the mapper against an
// in-memory directory that evaluates the filters an LDAP server would be sent (hostile subjects
// included), and the typed queries themselves.
#include <catch2/catch.hpp>

#include <map>
#include <random>
#include <string>
#include <vector>

#include "common/text/ldap_escape.hpp"
#include "common/tls/certmap.hpp"

using namespace common::tls;
using common::text::escape_dn_value;
using common::text::escape_filter_value;

namespace {

// ---- helpers

std::string dump_dn(const Dn& dn) {
  std::string s;
  for (const auto& rdn : dn.rdns) {
    s += "[";
    for (size_t i = 0; i < rdn.size(); ++i) {
      if (i) s += "+";
      s += rdn[i].type + (rdn[i].ber ? "#=" : "=") + escape_filter_value(rdn[i].value);
    }
    s += "]";
  }
  return s;
}

std::string dn(std::string_view text) {
  auto r = parse_dn(text);
  if (!r) return "E@" + std::to_string(r.error().offset) + ": " + r.error().message;
  return dump_dn(*r);
}

bool same_dn(std::string_view a, std::string_view b) {
  auto x = parse_dn(a);
  auto y = parse_dn(b);
  REQUIRE(x);
  REQUIRE(y);
  return dn_equal(*x, *y);
}

std::string dump_section(const CertMapSection& s) {
  auto comps = [](Comps c) { return c == Comps::Absent ? "absent" : c == Comps::Empty ? "empty" : "list"; };
  std::string out = s.name + "@" + std::to_string(s.line) + " issuer=" + (s.issuer ? s.issuer->to_string() : "-");
  out += " dn=" + std::string(comps(s.dn_comps));
  for (const auto& c : s.dn_comps_list) out += ":" + c;
  out += " filter=" + std::string(comps(s.filter_comps));
  for (const auto& c : s.filter_comps_list) out += ":" + c.cert_attr + ">" + c.ldap_attr;
  out += s.verify_cert ? " verify" : "";
  if (!s.cmap_ldap_attr.empty()) out += " cmap=" + s.cmap_ldap_attr;
  return out;
}

std::string dump(const CertMapResult<CertMap>& r) {
  std::string out;
  if (!r) {
    for (const auto& e : r.error()) out += "E " + e.to_string() + "\n";
    return out;
  }
  for (const auto& s : r->sections()) out += dump_section(s) + "\n";
  return out;
}

// Whole text, one byte at a time and random splits must all agree (CONVENTIONS: parsers).
std::string parse(std::string_view text, CertMapLimits limits = {}) {
  std::string whole = dump(parse_certmap(text, "certmap.conf", limits));
  CertMapParser bytewise("certmap.conf", limits);
  for (char c : text) bytewise.feed(std::string_view(&c, 1));
  CHECK(dump(bytewise.finish()) == whole);
  std::mt19937 rng(static_cast<unsigned>(text.size()));
  for (int round = 0; round < 4; ++round) {
    CertMapParser split("certmap.conf", limits);
    size_t i = 0;
    while (i < text.size()) {
      size_t n = std::uniform_int_distribution<size_t>(0, 9)(rng);
      split.feed(text.substr(i, n));
      i += std::min(n, text.size() - i);
    }
    CHECK(dump(split.finish()) == whole);
  }
  return whole;
}

CertMap must_parse(std::string_view text) {
  auto r = parse_certmap(text);
  INFO(dump(r));
  REQUIRE(r);
  return std::move(*r);
}

// First error only, "line:col: message".
std::string first_error(std::string_view text, CertMapLimits limits = {}) {
  std::string all = parse(text, limits);
  REQUIRE(all.rfind("E certmap.conf:", 0) == 0);
  return all.substr(15, all.find('\n') - 15);
}

// ---- an in-memory directory that runs the RFC 4515 filters it receives

struct FakeEntry {
  std::string dn;
  std::map<std::string, std::vector<std::string>> attrs;  // lowercase names
  std::vector<std::string> certs;
};

std::string unescape_filter_value(std::string_view v) {
  std::string out;
  for (size_t i = 0; i < v.size(); ++i) {
    if (v[i] == '\\') {
      REQUIRE(i + 2 < v.size() + 0);
      out += static_cast<char>(std::stoi(std::string(v.substr(i + 1, 2)), nullptr, 16));
      i += 2;
    } else {
      REQUIRE(v[i] != '*');  // a wildcard an attacker smuggled in
      REQUIRE(v[i] != '(');
      out += v[i];
    }
  }
  return out;
}

std::string fold(std::string s) {
  for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

// (&(a=v)...) / (a=v) / (a=*); anything else fails the test: the filter must be well formed.
bool eval(std::string_view f, size_t& i, const FakeEntry& e) {
  REQUIRE(i < f.size());
  REQUIRE(f[i] == '(');
  ++i;
  if (f[i] == '&') {
    ++i;
    bool all = true;
    while (i < f.size() && f[i] == '(') all = eval(f, i, e) && all;
    REQUIRE(i < f.size());
    REQUIRE(f[i] == ')');
    ++i;
    return all;
  }
  size_t eq = f.find('=', i);
  size_t close = f.find(')', i);
  REQUIRE(eq != std::string_view::npos);
  REQUIRE(close != std::string_view::npos);
  REQUIRE(eq < close);
  std::string attr = fold(std::string(f.substr(i, eq - i)));
  std::string_view raw = f.substr(eq + 1, close - eq - 1);
  i = close + 1;
  auto it = e.attrs.find(attr);
  if (raw == "*") return attr == "objectclass" || it != e.attrs.end();
  std::string want = fold(unescape_filter_value(raw));
  if (it == e.attrs.end()) return false;
  for (const auto& v : it->second) {
    if (fold(v) == want) return true;
  }
  return false;
}

bool matches_filter(std::string_view f, const FakeEntry& e) {
  size_t i = 0;
  bool r = eval(f, i, e);
  REQUIRE(i == f.size());
  return r;
}

bool under(const std::string& entry_dn, const std::string& base) {
  if (base.empty()) return true;
  auto e = parse_dn(entry_dn);
  auto b = parse_dn(base);
  REQUIRE(e);
  REQUIRE(b);
  if (b->rdns.size() > e->rdns.size()) return false;
  Dn tail;
  tail.rdns.assign(e->rdns.end() - static_cast<std::ptrdiff_t>(b->rdns.size()), e->rdns.end());
  return dn_equal(tail, *b);
}

class FakeDirectory : public CertDirectory {
 public:
  std::vector<FakeEntry> entries;
  std::vector<CertQuery> queries;
  bool deferred = false;      // answer later, from run_pending()
  bool answer_twice = false;  // a buggy directory
  std::optional<common::Error> fail_with;
  std::vector<std::function<void()>> pending;

  void add(std::string dn, std::string uid, std::string mail, std::vector<std::string> certs = {}) {
    FakeEntry e;
    auto parsed = parse_dn(dn);  // the naming attributes are in the entry, as in LDAP
    REQUIRE(parsed);
    for (const auto& rdn : parsed->rdns) {
      for (const auto& ava : rdn) e.attrs[ava.type].push_back(ava.value);
    }
    e.dn = std::move(dn);
    e.attrs["uid"] = {uid};
    e.attrs["mail"] = {std::move(mail)};
    if (uid.empty()) e.attrs.erase("uid");
    e.certs = std::move(certs);
    entries.push_back(std::move(e));
  }

  void search(const CertQuery& q, std::function<void(common::Result<std::vector<Entry>>)> done) override {
    queries.push_back(q);
    common::Result<std::vector<Entry>> result;
    if (fail_with) {
      result = tl::unexpected(*fail_with);
    } else {
      std::vector<Entry> found;
      for (const auto& e : entries) {
        if (!under(e.dn, q.base_dn()) || !matches_filter(q.filter.to_string(), e)) continue;
        auto uid = e.attrs.find("uid");
        found.push_back({e.dn, uid == e.attrs.end() ? "" : uid->second.front(), e.certs});
      }
      result = std::move(found);
    }
    auto answer = [done, result, twice = answer_twice]() {
      done(result);
      if (twice) done(result);
    };
    if (deferred) {
      pending.push_back(answer);
    } else {
      answer();
    }
  }

  void run_pending() {
    while (!pending.empty()) {
      auto p = std::move(pending.front());
      pending.erase(pending.begin());
      p();
    }
  }
};

// A query as an LDAP server receives it: the base and the filter as text.
struct QueryText {
  std::string base_dn, filter;
  bool subject_is_user_dn = false, verify_cert = false;
  std::string cmap_attr, section;
  friend bool operator==(const QueryText&, const QueryText&) = default;
  friend std::ostream& operator<<(std::ostream& o, const QueryText& q) {
    return o << "{" << q.base_dn << " | " << q.filter << " | " << q.subject_is_user_dn << q.verify_cert << " | "
             << q.cmap_attr << " | " << q.section << "}";
  }
};
QueryText text_of(const CertQuery& q) {
  return {q.base_dn(), q.filter.to_string(), q.subject_is_user_dn, q.verify_cert, q.cmap_attr, q.section};
}

struct Outcome {
  int calls = 0;
  std::string uid;
  std::string error;
};

Outcome map(const CertMap& m, const CertFacts& facts, FakeDirectory& dir) {
  Outcome o;
  map_certificate(m, facts, dir, [&o](common::Result<std::string> r) {
    ++o.calls;
    if (r) {
      o.uid = *r;
    } else {
      o.error = r.error().detail;
    }
  });
  dir.run_pending();
  CHECK(o.calls == 1);
  return o;
}

const std::string kDer = std::string("\x30\x82\x01\x0a\x02\x01\x00", 7) + "alice's certificate";

CertFacts facts(std::string issuer, std::string subject, std::string der = kDer) {
  return CertFacts{std::move(issuer), std::move(subject), std::move(der)};
}

}  // namespace

// =============================================================================================
// DNs

TEST_CASE("DN: RFC 4514 strings with escapes, aliases and multi-valued RDNs", "[certmap][dn]") {
  CHECK(dn("CN=alice,E=alice@example.com,O=Example\\, Inc.,C=US") ==
        "[cn=alice][mail=alice@example.com][o=Example, Inc.][c=US]");
  CHECK(dn("cn=a\\+b,o=q\\\"uote\\\"s,ou=back\\\\slash") == "[cn=a+b][o=q\"uote\"s][ou=back\\5cslash]");
  CHECK(dn("CN=\\2C\\2b\\c3\\A9") == "[cn=,+\\c3\\a9]");
  CHECK(dn("CN=nul\\00byte") == "[cn=nul\\00byte]");
  CHECK(dn("CN=\\ lead and trail\\ ") == "[cn= lead and trail ]");
  CHECK(dn("CN=\\#hash,O=a#b=c") == "[cn=#hash][o=a#b=c]");
  CHECK(dn("CN=a\\;b\\<c\\>d\\=e") == "[cn=a;b<c>d=e]");
  CHECK(dn("CN=alice+UID=al,O=x") == "[cn=alice+uid=al][o=x]");
  CHECK(dn("CN=") == "[cn=]");
  // Aliases for the e-mail attribute all fold to mail (389-ds certmap.c), others canonical names.
  CHECK(dn("E=a@x,email=b@x,emailAddress=c@x,MAIL=d@x,rfc822Mailbox=e@x") ==
        "[mail=a@x][mail=b@x][mail=c@x][mail=d@x][mail=e@x]");
  CHECK(dn("1.2.840.113549.1.9.1=a@x,0.9.2342.19200300.100.1.3=b@x") == "[mail=a@x][mail=b@x]");
  CHECK(dn("OID.2.5.4.3=alice,oid.0.9.2342.19200300.100.1.1=al,2.5.4.6=US") == "[cn=alice][uid=al][c=US]");
  CHECK(dn("commonName=a,S=b,userid=c,domainComponent=d,1.3.6.1.4.1.1=e,x-Custom=f") ==
        "[cn=a][st=b][uid=c][dc=d][1.3.6.1.4.1.1=e][x-custom=f]");
}

TEST_CASE("DN: what NSS and RFC 1779 writers produce", "[certmap][dn]") {
  CHECK(dn("E=alice@example.com, CN=Alice Smith, O=\"Example, Inc.\", C=US") ==
        "[mail=alice@example.com][cn=Alice Smith][o=Example, Inc.][c=US]");
  CHECK(dn("CN = alice ; O = x") == "[cn=alice][o=x]");
  CHECK(dn("  CN=alice  +  UID=al  ,  O=x  ") == "[cn=alice+uid=al][o=x]");
  CHECK(dn("O=\"quote \\\" and \\\\ inside\"") == "[o=quote \" and \\5c inside]");
  CHECK(dn("O=\"a+b;c<d>\"") == "[o=a+b;c<d>]");
  // #hex BER: character strings become their text, anything else stays BER bytes.
  CHECK(dn("CN=#0C05616C696365") == "[cn=alice]");
  CHECK(dn("CN=#130561 6c696365") == "E@11: unexpected '6' after the value");
  CHECK(dn("CN=#1605616c696365 ,O=x") == "[cn=alice][o=x]");
  CHECK(dn("serialNumber=#020101") == "[serialnumber#=\\02\\01\\01]");
  CHECK(dn("CN=#0c05616c6963") == "[cn#=\\0c\\05alic]");  // length does not match: kept as BER
  CHECK(dn("") == "");
  CHECK(dn("   ") == "");
}

TEST_CASE("DN: malformed input is an error with its offset", "[certmap][dn]") {
  CHECK(dn("CN") == "E@2: expected '=' after the attribute type");
  CHECK(dn("=x") == "E@0: expected an attribute type, found '='");
  CHECK(dn("CN=a,") == "E@5: empty RDN after the last separator");
  CHECK(dn("CN=a,,O=b") == "E@5: expected an attribute type, found ','");
  CHECK(dn("CN=a+") == "E@5: expected an attribute type at the end of the DN");
  CHECK(dn("CN=a\\") == "E@4: '\\' at the end of the DN");
  CHECK(dn("CN=a\\zz") == "E@4: invalid escape '\\' + 'z'");
  CHECK(dn("CN=a\\4") == "E@4: '\\' needs two hex digits here");
  CHECK(dn("CN=a\\4g") == "E@4: '\\' needs two hex digits here");
  CHECK(dn("CN=\"abc") == "E@3: unterminated quoted value");
  CHECK(dn("CN=\"abc\"x") == "E@8: unexpected 'x' after the value");
  CHECK(dn("CN=#abc") == "E@6: odd number of hex digits after '#'");
  CHECK(dn("CN=#") == "E@4: '#' must be followed by hex digits (BER)");
  CHECK(dn("CN=#zz") == "E@4: '#' must be followed by hex digits (BER)");
  CHECK(dn("CN=a\"b") == "E@4: unescaped '\"' in a value");
  CHECK(dn("CN=a<b") == "E@4: unescaped '<' in a value");
  CHECK(dn(std::string("CN=a\0b", 6)) == "E@4: NUL byte in a value (write it as \\00)");
  CHECK(dn(std::string("CN=\"a\0b\"", 8)) == "E@5: NUL byte in a value (write it as \\00)");
  CHECK(dn("1cn=x") == "E@0: invalid attribute type (a name like cn or an OID like 2.5.4.3)");
  CHECK(dn("01.2=x") == "E@0: invalid attribute type (a name like cn or an OID like 2.5.4.3)");
  CHECK(dn("2.5..4=x") == "E@0: invalid attribute type (a name like cn or an OID like 2.5.4.3)");
  CHECK(dn("c_n=x") == "E@1: expected '=' after the attribute type");
  CHECK(dn("\xc3\xa9=x") == "E@0: expected an attribute type, found byte 0xc3");
  CHECK(dn("CN=alice,default") == "E@16: expected '=' after the attribute type");

  DnLimits small;
  small.max_length = 16;
  small.max_rdns = 3;
  small.max_avas = 2;
  small.max_type = 4;
  CHECK(parse_dn("CN=0123456789abcd", small).error().message == "DN longer than 16 bytes");
  CHECK(parse_dn("a=1,b=2,c=3,d=4", small).error().message == "more than 3 RDNs");
  CHECK(parse_dn("a=1+b=2+c=3", small).error().message == "more than 2 values in one RDN");
  CHECK(parse_dn("abcde=1", small).error().message == "attribute type longer than 4 bytes");
  CHECK(parse_dn("a=1,b=2,c=3", small));
}

TEST_CASE("DN: to_string escapes and parses back equal", "[certmap][dn]") {
  auto d = parse_dn("E=alice@example.com,CN=\\ Alice\\, \\\"the\\\" \\\\one\\ ,O=\\#1+OU=a\\00b\\c3\\a9,C=US");
  REQUIRE(d);
  std::string s = d->to_string();
  CHECK(s == "mail=alice@example.com,cn=\\20Alice\\, \\\"the\\\" \\\\one\\20,o=\\#1+ou=a\\00b\\c3\\a9,c=US");
  auto back = parse_dn(s);
  REQUIRE(back);
  CHECK(dn_equal(*d, *back));
  CHECK(dump_dn(*d) == dump_dn(*back));
  auto ber = parse_dn("serialNumber=#020101,CN=x");
  REQUIRE(ber);
  CHECK(ber->to_string() == "serialnumber=#020101,cn=x");
  CHECK(escape_dn_value("#a b ") == "\\#a b\\20");
  CHECK(escape_dn_value("a=b") == "a=b");
}

TEST_CASE("DN: equality for issuer matching", "[certmap][dn]") {
  CHECK(same_dn("OU=United States Postal Service, O=usps, C=US", "ou=united states postal service,o=USPS,c=us"));
  CHECK(same_dn("O=Example  Inc", "o= example inc "));
  CHECK(same_dn("CN=a+UID=b,O=x", "uid=b+cn=a,o=x"));
  CHECK(same_dn("E=ca@x,O=x", "emailAddress=CA@X,O=x"));
  CHECK(same_dn("CN=#0c05616c696365", "CN=Alice"));
  CHECK(same_dn("O=\"Example, Inc.\"", "O=Example\\2c Inc."));
  CHECK_FALSE(same_dn("O=x,C=US", "C=US,O=x"));
  CHECK_FALSE(same_dn("O=x", "O=x,C=US"));
  CHECK_FALSE(same_dn("CN=a+UID=b", "CN=a,UID=b"));
  CHECK_FALSE(same_dn("CN=a+UID=b", "CN=a+UID=c"));
  CHECK_FALSE(same_dn("O=Example Inc", "O=ExampleInc"));
  CHECK_FALSE(same_dn("serialNumber=#020101", "serialNumber=#020102"));
  CHECK(same_dn("serialNumber=#020101", "2.5.4.5=#020101"));
}

// =============================================================================================
// certmap.conf

TEST_CASE("certmap.conf: the 389-ds sample with everything commented out", "[certmap][conf]") {
  // lib/ldaputil/certmap.conf: only "certmap default default" is live.
  std::string text =
      "#\n# This file configures how a certificate is mapped to an LDAP entry.\n#\n"
      "certmap default\t\tdefault\n"
      "#default:DNComps\n#default:FilterComps\te, uid\n#default:verifycert\ton\n"
      "#default:CmapLdapAttr\tcertSubjectDN\n#default:library\t<path_to_shared_lib_or_dll>\n"
      "#default:InitFn\t\t<Init function's name>\n";
  CHECK(parse(text) == "default@4 issuer=- dn=absent filter=absent\n");
}

TEST_CASE("certmap.conf: the seed's msconfig form, written as a file", "[certmap][conf]") {
  // S2 §7 "To Set Up Certificate-Based Login" step 4: dncomps "" and filtercomps "e=mail".
  CHECK(parse("certmap default default\ndefault:dncomps \"\"\ndefault:filtercomps \"e=mail\"\n") ==
        "default@1 issuer=- dn=empty filter=list:mail>mail\n");
  CHECK(parse("certmap default default\ndefault:DNComps\ndefault:FilterComps e=mail\n") ==
        "default@1 issuer=- dn=empty filter=list:mail>mail\n");
}

TEST_CASE("certmap.conf: the Sun manuals' examples", "[certmap][conf]") {
  // One default mapping: base DN from ou, o, c; filter on e and uid; verify the certificate.
  CHECK(parse("certmap default default\ndefault:DNComps ou, o, c\ndefault:FilterComps e, uid\n"
              "default:verifycert on\n") ==
        "default@1 issuer=- dn=list:ou:o:c filter=list:mail>mail:uid>uid verify\n");
  // A default plus one for the USPS CA.
  std::string two =
      "certmap default default\ndefault:DNComps\ndefault:FilterComps e, uid\n"
      "certmap usps ou=United States Postal Service, o=usps, c=US\nusps:DNComps ou,o,c\n"
      "usps:FilterComps e\nusps:verifycert on\n";
  CHECK(parse(two) ==
        "default@1 issuer=- dn=empty filter=list:mail>mail:uid>uid\n"
        "usps@4 issuer=ou=United States Postal Service,o=usps,c=US dn=list:ou:o:c filter=list:mail>mail verify\n");
  // CmapLdapAttr (the attribute that holds the certificates' subject DNs).
  CHECK(parse("certmap default default\ndefault:CmapLdapAttr certSubjectDN\n") ==
        "default@1 issuer=- dn=absent filter=absent cmap=certSubjectDN\n");
}

TEST_CASE("certmap.conf: Table 8-8 keeps absent and empty apart", "[certmap][conf]") {
  CHECK(parse("certmap default default\n") == "default@1 issuer=- dn=absent filter=absent\n");
  CHECK(parse("certmap default default\ndefault:DNComps\ndefault:FilterComps uid\n") ==
        "default@1 issuer=- dn=empty filter=list:uid>uid\n");  // empty DNComps alone: see the errors
  CHECK(parse("certmap default default\ndefault:FilterComps\n") == "default@1 issuer=- dn=absent filter=empty\n");
  CHECK(parse("certmap default default\ndefault:FilterComps   \t \n") ==
        "default@1 issuer=- dn=absent filter=empty\n");
  CHECK(parse("certmap default default\ndefault:DNComps cn o\n") ==
        "default@1 issuer=- dn=list:cn:o filter=absent\n");
  CHECK(parse("certmap default default\ndefault:FilterComps mail=mailAlternateAddress, E=mail,uid\n") ==
        "default@1 issuer=- dn=absent filter=list:mail>mailAlternateAddress:mail>mail:uid>uid\n");
  CHECK(parse("certmap default default\ndefault:FilterComps e = mail , e=mail,mail\n") ==
        "default@1 issuer=- dn=absent filter=list:mail>mail\n");
  CHECK(parse("certmap default default\ndefault:verifycert\n") == "default@1 issuer=- dn=absent filter=absent verify\n");
  CHECK(parse("certmap default default\ndefault:VerifyCert OFF\n") == "default@1 issuer=- dn=absent filter=absent\n");
  CHECK(parse("certmap default default\ndefault:CmapLdapAttr\n") == "default@1 issuer=- dn=absent filter=absent\n");
}

TEST_CASE("certmap.conf: layout is forgiving where it cannot mislead", "[certmap][conf]") {
  std::string text =
      "\xEF\xBB\xBF# BOM, CRLF, tabs, case\r\n"
      "\r\n"
      "   CERTMAP Default DEFAULT   \r\n"
      "\tdefault:  dncomps\t\r\n"
      "DEFAULT:FILTERCOMPS\tE\r\n"
      "certmap ca1 CN=Example CA\\ \r\n"
      "ca1:FilterComps uid\r\n"
      "default:CMAPLDAPATTR certSubjectDN";  // no final newline; properties of an earlier section
  CHECK(parse(text) ==
        "Default@3 issuer=- dn=empty filter=list:mail>mail cmap=certSubjectDN\n"
        "ca1@6 issuer=cn=Example CA\\20 dn=absent filter=list:uid>uid\n");
}

TEST_CASE("certmap.conf: every error with its line and column", "[certmap][conf][errors]") {
  const std::string d = "certmap default default\n";
  CHECK(first_error("") == "1:1: no default section: add the line 'certmap default default'");
  CHECK(first_error("# only\ncertmap ca O=x\nca:FilterComps e\n") ==
        "4:1: no default section: add the line 'certmap default default'");
  CHECK(first_error(d + "certmap\n") == "2:8: missing section name: expected 'certmap <name> <issuerDN>'");
  CHECK(first_error(d + "certmap ca1\n") ==
        "2:12: missing issuer DN after the section name (the default section is 'certmap default default')");
  CHECK(first_error("certmap default O=x\n") == "1:17: the default section's issuer must be the word 'default'");
  CHECK(first_error(d + "certmap ca default\n") == "2:12: only the section named 'default' may have the issuer 'default'");
  CHECK(first_error(d + "certmap ca CN=Example CA,O=Example\\, Inc,C\n") ==
        "2:43: invalid issuer DN: expected '=' after the attribute type");
  CHECK(first_error(d + "certmap ca O=\"x\n") == "2:14: invalid issuer DN: unterminated quoted value");
  CHECK(first_error(d + "certmap ca1 O=x\ncertmap CA1 O=y\n") == "3:9: section 'CA1' already declared on line 2");
  CHECK(first_error(d + "certmap default default\n") == "2:9: section 'default' already declared on line 1");
  CHECK(first_error(d + "certmap ca1 O=Example, C=US\ncertmap ca2 o=example,c=us\n") ==
        "3:13: issuer DN already mapped by section 'ca1' on line 2");
  CHECK(first_error(d + "certmap c/a O=x\n") == "2:10: invalid '/' in section name (letters, digits, - _ .)");
  CHECK(first_error(d + "ca1:DNComps cn\n") ==
        "2:1: property for undeclared section 'ca1' (declare it first: 'certmap ca1 <issuerDN>')");
  CHECK(first_error("default:DNComps\ncertmap default default\n") ==
        "1:1: property for undeclared section 'default' (declare it first: 'certmap default <issuerDN>')");
  CHECK(first_error(d + "  DNComps cn\n") == "2:3: expected 'certmap <name> <issuerDN>' or '<name>:<property> [value]'");
  CHECK(first_error(d + ":DNComps cn\n") == "2:1: missing section name before ':'");
  CHECK(first_error(d + "default:   \n") == "2:9: missing property name after 'default:'");
  CHECK(first_error(d + "default:library /usr/lib/libcertmap.so\n") ==
        "2:9: certmap plugins are not supported: Postern loads no mapping code ('library'); map with "
        "DNComps, FilterComps, CmapLdapAttr and VerifyCert");
  CHECK(first_error(d + "default:InitFn plugin_init_fn\n") ==
        "2:9: certmap plugins are not supported: Postern loads no mapping code ('InitFn'); map with "
        "DNComps, FilterComps, CmapLdapAttr and VerifyCert");
  CHECK(first_error(d + "default:SearchComps cn\n") ==
        "2:9: unknown property 'SearchComps' (known: DNComps, FilterComps, VerifyCert, CmapLdapAttr)");
  CHECK(first_error(d + "default:FilterComps e\ndefault:filtercomps uid\n") ==
        "3:9: filtercomps already set for section 'default' on line 2");
  CHECK(first_error(d + "default:VerifyCert yes\n") == "2:20: VerifyCert: VerifyCert takes 'on' or 'off'");
  CHECK(first_error(d + "default:DNComps ou, o=org\n") ==
        "2:22: DNComps: DNComps takes attribute names only ('a=b' is for FilterComps)");
  CHECK(first_error(d + "default:FilterComps e, u(id\n") == "2:25: FilterComps: unexpected '(' in the attribute list");
  CHECK(first_error(d + "default:FilterComps e=\n") ==
        "2:23: FilterComps: expected an LDAP attribute name after '=' at the end of the value");
  CHECK(first_error(d + "default:FilterComps e=m(ail\n") == "2:24: FilterComps: unexpected '(' in the attribute list");
  CHECK(first_error(d + "default:FilterComps 1x, e\n") == "2:21: FilterComps: invalid attribute name '1x'");
  CHECK(first_error(d + "default:FilterComps \"e=mail\n") == "2:21: FilterComps: unterminated quoted value");
  CHECK(first_error(d + "default:FilterComps , ,\n") ==
        "2:21: FilterComps: no attribute names (leave the value out for an empty list)");
  CHECK(first_error(d + "default:CmapLdapAttr cert subject\n") ==
        "2:22: CmapLdapAttr: CmapLdapAttr takes one LDAP attribute name");
  CHECK(first_error(d + std::string("default:DNComps c\x01n\n")) == "2:18: control byte 0x01 in the line");
  CHECK(first_error(d + "default:DNComps\n") ==
        "1:1: section 'default' searches the whole tree with no filter, so every entry matches and no one "
        "can map: set FilterComps (e.g. e=mail) or CmapLdapAttr");

  CertMapLimits limits;
  limits.max_line = 32;
  CHECK(first_error(d + "certmap ca O=" + std::string(40, 'x') + "\n", limits) == "2:33: line longer than 32 bytes (skipped)");
  limits = {};
  limits.max_sections = 2;
  CHECK(first_error(d + "certmap a O=a\ncertmap b O=b\ncertmap c O=c\n", limits) == "3:1: more than 2 sections");
  limits = {};
  limits.max_comps = 2;
  CHECK(first_error(d + "default:FilterComps cn, o, c\n", limits) ==
        "2:28: FilterComps: more than 2 attributes in the list");
}

TEST_CASE("certmap.conf: errors do not stop the parse, and their count is bounded", "[certmap][conf][errors]") {
  std::string text = "certmap default default\nbad one\ndefault:Foo\ndefault:DNComps cn\nnope\n";
  CHECK(parse(text) ==
        "E certmap.conf:2:1: expected 'certmap <name> <issuerDN>' or '<name>:<property> [value]'\n"
        "E certmap.conf:3:9: unknown property 'Foo' (known: DNComps, FilterComps, VerifyCert, CmapLdapAttr)\n"
        "E certmap.conf:5:1: expected 'certmap <name> <issuerDN>' or '<name>:<property> [value]'\n");
  CertMapLimits limits;
  limits.max_errors = 2;
  CHECK(parse(text, limits) ==
        "E certmap.conf:2:1: expected 'certmap <name> <issuerDN>' or '<name>:<property> [value]'\n"
        "E certmap.conf:3:9: unknown property 'Foo' (known: DNComps, FilterComps, VerifyCert, CmapLdapAttr)\n"
        "E certmap.conf:0:0: 1 more errors not shown\n");
  // An over-long line is skipped unread; the next line parses again.
  limits = {};
  limits.max_line = 40;
  CHECK(parse("certmap default default\n" + std::string(100000, '#') + "\ndefault:FilterComps e\n", limits) ==
        "E certmap.conf:2:41: line longer than 40 bytes (skipped)\n");
  // The BOM counts in columns.
  CHECK(first_error("\xEF\xBB\xBF" "certmap default x\n") == "1:20: the default section's issuer must be the word 'default'");
  // to_error joins them for common::Result callers.
  auto r = parse_certmap("nope\n");
  REQUIRE_FALSE(r);
  auto e = to_error(r.error());
  CHECK(e.kind == common::ErrorKind::Config);
  CHECK(e.detail ==
        "certmap.conf:1:1: expected 'certmap <name> <issuerDN>' or '<name>:<property> [value]'; "
        "certmap.conf:2:1: no default section: add the line 'certmap default default'");
}

TEST_CASE("certmap.conf: to_conf writes the effective file, which parses back the same", "[certmap][conf]") {
  std::string text =
      "certmap default default\ndefault:DNComps\ndefault:FilterComps E, uid, mail=mailAlternateAddress\n"
      "certmap usps ou=United States Postal Service, o=usps, c=US\nusps:DNComps ou,o,c\nusps:verifycert\n"
      "certmap odd CN=\\ sp\\,a\\#ce\\ ,O=\"x;y\"\nodd:FilterComps\nodd:CmapLdapAttr certSubjectDN\n";
  CertMap m = must_parse(text);
  std::string conf = m.to_conf();
  CHECK(conf ==
        "certmap default default\ndefault:DNComps\ndefault:FilterComps mail, uid, mail=mailAlternateAddress\n"
        "certmap usps ou=United States Postal Service,o=usps,c=US\nusps:DNComps ou, o, c\nusps:VerifyCert on\n"
        "certmap odd cn=\\20sp\\,a#ce\\20,o=x\\;y\nodd:FilterComps\nodd:CmapLdapAttr certSubjectDN\n");
  CertMap again = must_parse(conf);
  CHECK(again.to_conf() == conf);
}

TEST_CASE("certmap: the built-in default and sections built in code", "[certmap][conf]") {
  CertMap b = CertMap::builtin_default();
  REQUIRE(b.sections().size() == 1);
  CHECK(dump_section(b.default_section()) == "default@0 issuer=- dn=empty filter=list:mail>mail");
  CHECK(b.to_conf() == "certmap default default\ndefault:DNComps\ndefault:FilterComps mail\n");

  // The unified form (base.certmap:default.dncomps "") goes through set_property.
  CertMapSection def;
  def.name = "default";
  REQUIRE(set_property(def, "dncomps", "\"\""));
  REQUIRE(set_property(def, "filtercomps", "\"e=mail\""));
  CertMapSection ca;
  ca.name = "ca";
  ca.issuer = *parse_dn("CN=Example CA");
  REQUIRE(set_property(ca, "VERIFYCERT", "on"));
  CHECK(set_property(ca, "library", "x.so").error().message.find("certmap plugins are not supported") == 0);
  CHECK(set_property(ca, "DNComps", "cn=x").error().offset == 2);
  auto m = CertMap::build({def, ca});
  REQUIRE(m);
  CHECK(dump_section(m->section_for(*parse_dn("cn=example ca"))) == "ca@0 issuer=cn=Example CA dn=absent filter=absent verify");
  CHECK(m->section_for(*parse_dn("CN=Other CA")).name == "default");

  CertMapSection bad;
  bad.name = "x y";
  bad.issuer = *parse_dn("O=x");
  CertMapSection list;
  list.name = "list";
  list.issuer = *parse_dn("O=y");
  list.dn_comps = Comps::List;  // but no names
  auto r = CertMap::build({bad, list});
  REQUIRE_FALSE(r);
  std::string all;
  for (const auto& e : r.error()) all += e.to_string() + "\n";
  CHECK(all ==
        "certmap:0:0: invalid section name 'x y' (letters, digits, - _ .)\n"
        "certmap:0:0: section 'list': a List needs attribute names, Absent and Empty none\n"
        "certmap:0:0: no default section: add the line 'certmap default default'\n");
}

// =============================================================================================
// Mapping

namespace {

const char* kCa = "CN=Example CA, O=Example, C=US";
const char* kOtherCa = "CN=Other CA,O=Other,C=DE";

}  // namespace

TEST_CASE("map: the built-in default maps by e-mail (no certmap.conf needed)", "[certmap][map]") {
  // S4 step 4: "not necessary if the email address in your users' certificates matches".
  FakeDirectory dir;
  dir.add("uid=alice,ou=People,o=Example,c=US", "alice", "Alice@Example.com");
  dir.add("uid=bob,ou=People,o=Example,c=US", "bob", "bob@example.com");
  CertMap m = CertMap::builtin_default();
  auto o = map(m, facts(kCa, "E=alice@example.com,CN=Alice,O=Example,C=US"), dir);
  CHECK(o.uid == "alice");
  REQUIRE(dir.queries.size() == 1);
  CHECK(text_of(dir.queries[0]) == QueryText{"", "(mail=alice@example.com)", false, false, "", "default"});

  o = map(m, facts(kCa, "CN=No Mail,O=Example,C=US"), dir);
  CHECK(o.error == "reason=missing_filter_comp section=default attr=mail");
}

TEST_CASE("map: the issuer's section, else default", "[certmap][map]") {
  CertMap m = must_parse(
      "certmap default default\ndefault:DNComps\ndefault:FilterComps e, uid\n"
      "certmap example CN=Example CA,O=Example,C=US\nexample:DNComps ou, o, c\nexample:FilterComps e\n"
      "example:verifycert on\n");
  FakeDirectory dir;
  dir.add("uid=alice,ou=People,o=Example,c=US", "alice", "alice@example.com", {kDer});
  dir.entries.back().attrs["uid"] = {"alice"};
  std::string subject = "E=alice@example.com,UID=alice,CN=Alice,OU=People,O=Example,C=US";

  // The issuer written with other spacing and case still picks the example section.
  auto o = map(m, facts("cn=example ca,  o=EXAMPLE , c=us", subject), dir);
  CHECK(o.uid == "alice");
  REQUIRE(dir.queries.size() == 1);
  CHECK(text_of(dir.queries[0]) ==
        QueryText{"ou=People,o=Example,c=US", "(mail=alice@example.com)", false, true, "", "example"});

  // Another CA: the default section, whole tree, e and uid, no certificate check.
  o = map(m, facts(kOtherCa, subject, "some other DER"), dir);
  CHECK(o.uid == "alice");
  REQUIRE(dir.queries.size() == 2);
  CHECK(text_of(dir.queries[1]) == QueryText{"", "(&(mail=alice@example.com)(uid=alice))", false, false, "", "default"});

  // An issuer that does not parse is refused rather than sent to the default section.
  o = map(m, facts("CN=Example CA,O", subject), dir);
  CHECK(o.error == "reason=bad_issuer_dn offset=15 expected '=' after the attribute type");
  CHECK(dir.queries.size() == 2);
}

TEST_CASE("map: DNComps absent, empty and a list", "[certmap][map]") {
  FakeDirectory dir;
  dir.add("cn=Alice Smith,ou=People,o=Example,c=US", "alice", "alice@example.com");
  dir.add("cn=Bob,ou=People,o=Example,c=US", "bob", "bob@example.com");
  dir.add("cn=Alice Smith,ou=Staff,o=Example,c=US", "alice2", "alice@example.com");
  std::string subject = "CN=Alice Smith,OU=People,O=Example,C=US";

  SECTION("absent: the subject DN is the user's DN") {
    CertMap m = must_parse("certmap default default\n");
    auto o = map(m, facts(kCa, subject), dir);
    CHECK(o.uid == "alice");
    CHECK(text_of(dir.queries.at(0)) ==
          QueryText{"cn=Alice Smith,ou=People,o=Example,c=US", "(objectclass=*)", true, false, "", "default"});
    o = map(m, facts(kCa, "CN=Nobody,OU=People,O=Example,C=US"), dir);
    CHECK(o.error == "reason=no_entry section=default base=cn=Nobody,ou=People,o=Example,c=US filter=(objectclass=*)");
  }
  SECTION("absent, with FilterComps narrowing the subject's own subtree") {
    CertMap m = must_parse("certmap default default\ndefault:FilterComps cn\n");
    auto o = map(m, facts(kCa, subject), dir);
    CHECK(o.uid == "alice");
    CHECK(dir.queries.at(0).filter.to_string() == "(cn=Alice Smith)");
    CHECK(dir.queries.at(0).subject_is_user_dn);
  }
  SECTION("empty: the whole tree, so the filter must single the user out") {
    CertMap m = must_parse("certmap default default\ndefault:DNComps\ndefault:FilterComps e\n");
    auto o = map(m, facts(kCa, "E=bob@example.com,CN=Bob,OU=People,O=Example,C=US"), dir);
    CHECK(o.uid == "bob");
    CHECK(dir.queries.at(0).base_dn() == "");
    // alice@example.com is on two entries: refused, never guessed.
    o = map(m, facts(kCa, "E=alice@example.com,CN=Alice Smith,OU=People,O=Example,C=US"), dir);
    CHECK(o.error == "reason=ambiguous section=default entries=2 filter=(mail=alice@example.com)");
  }
  SECTION("a list: the base DN from those subject components, in the subject's order") {
    CertMap m = must_parse("certmap default default\ndefault:DNComps c, o, ou\ndefault:FilterComps e\n");
    auto o = map(m, facts(kCa, "E=alice@example.com,CN=Alice Smith,OU=People,O=Example,C=US"), dir);
    CHECK(o.uid == "alice");
    CHECK(dir.queries.at(0).base_dn() == "ou=People,o=Example,c=US");
    o = map(m, facts(kCa, "E=alice@example.com,CN=Alice Smith,OU=Staff,O=Example,C=US"), dir);
    CHECK(o.uid == "alice2");
    // A listed component the subject lacks: refused (389-ds: MAPPED_ENTRY_NOT_FOUND).
    o = map(m, facts(kCa, "E=alice@example.com,CN=Alice Smith,O=Example,C=US"), dir);
    CHECK(o.error == "reason=missing_dn_comp section=default attr=ou");
  }
  SECTION("a list keeps multi-valued RDNs together and escapes values") {
    CertMap m = must_parse("certmap default default\ndefault:DNComps cn, uid, o\ndefault:FilterComps uid\n");
    auto q = build_cert_queries(m, facts(kCa, "CN=Smith\\, Alice+UID=as+SN=Smith,OU=x,O=Ex\\+ample"));
    REQUIRE(q);
    CHECK(q->at(0).base_dn() == "cn=Smith\\, Alice+uid=as,o=Ex\\+ample");
    CHECK(q->at(0).filter.to_string() == "(uid=as)");
  }
}

TEST_CASE("map: hostile subjects cannot change the filter", "[certmap][map][security]") {
  CertMap m = must_parse("certmap default default\ndefault:DNComps\ndefault:FilterComps cn=uid, e=mail\n");
  FakeDirectory dir;
  dir.add("uid=admin,o=x", "admin", "admin@example.com");
  dir.add("uid=alice,o=x", "alice", "alice@example.com");
  struct Case {
    std::string subject;
    std::string filter;
  };
  std::vector<Case> cases = {
      {"CN=*)(uid=*,E=alice@example.com", "(&(uid=\\2a\\29\\28uid=\\2a)(mail=alice@example.com))"},
      {"CN=admin)(|(uid=*,E=*", "(&(uid=admin\\29\\28|\\28uid=\\2a)(mail=\\2a))"},
      {"CN=admin\\00,E=admin@example.com", "(&(uid=admin\\00)(mail=admin@example.com))"},
      {"CN=a\\\\2a,E=\\28x\\29@example.com", "(&(uid=a\\5c2a)(mail=\\28x\\29@example.com))"},
      {"CN=\"*\",E=#16012a", "(&(uid=\\2a)(mail=\\2a))"},
      {"CN=adm\\c3\\adn,E=admin@example.com", "(&(uid=adm\\c3\\adn)(mail=admin@example.com))"},
  };
  for (const auto& c : cases) {
    INFO(c.subject);
    dir.queries.clear();
    auto o = map(m, facts(kCa, c.subject), dir);
    REQUIRE(dir.queries.size() == 1);
    CHECK(dir.queries[0].filter.to_string() == c.filter);
    CHECK(o.uid.empty());
    CHECK(o.error.rfind("reason=no_entry ", 0) == 0);
  }
  // CmapLdapAttr puts the whole subject string in the filter: escaped the same way.
  CertMap cm = must_parse("certmap default default\ndefault:CmapLdapAttr certSubjectDN\n");
  auto q = build_cert_queries(cm, facts(kCa, "CN=*)(uid=*\\5c,O=x"));
  REQUIRE(q);
  CHECK(q->at(0).filter.to_string() == "(certSubjectDN=CN=\\2a\\29\\28uid=\\2a\\5c5c,O=x)");
  // Values that cannot be used: BER-only, empty, or no subject at all.
  CHECK(build_cert_queries(m, facts(kCa, "CN=#020101,E=a@x")).error().detail ==
        "reason=unusable_value section=default attr=cn");
  CHECK(build_cert_queries(m, facts(kCa, "CN=,E=a@x")).error().detail ==
        "reason=unusable_value section=default attr=cn");
  CHECK(build_cert_queries(m, facts(kCa, "")).error().detail == "reason=empty_subject section=default");
  auto bad = build_cert_queries(m, facts(kCa, std::string("CN=a\0)(uid=*", 12)));
  CHECK(bad.error().detail == "reason=bad_subject_dn section=default offset=4 NUL byte in a value (write it as \\00)");
  CHECK(bad.error().kind == common::ErrorKind::Protocol);
}

TEST_CASE("map: queries are typed: the subject's bytes as they are, escaped only when written for LDAP",
          "[certmap][map][security]") {
  CertMap m = must_parse("certmap default default\ndefault:DNComps ou, o\ndefault:FilterComps cn=uid, e=mail\n");
  auto q = build_cert_queries(m, facts(kCa, "CN=*)(uid=*,E=a\\00b@x,OU=P\\, Q,O=Ex"));
  REQUIRE(q);
  const auto& terms = q->at(0).filter.all_of;
  REQUIRE(terms.size() == 2);
  CHECK(terms[0] == CertFilter::Equality{"uid", "*)(uid=*"});
  CHECK(terms[1] == CertFilter::Equality{"mail", std::string("a\0b@x", 5)});
  CHECK(q->at(0).filter.to_string() == "(&(uid=\\2a\\29\\28uid=\\2a)(mail=a\\00b@x))");
  REQUIRE(q->at(0).base.rdns.size() == 2);
  CHECK(q->at(0).base.rdns[0][0].type == "ou");
  CHECK(q->at(0).base.rdns[0][0].value == "P, Q");
  CHECK(q->at(0).base_dn() == "ou=P\\, Q,o=Ex");
  CHECK(CertFilter{}.matches_everything());
  CHECK(CertFilter{}.to_string() == "(objectclass=*)");
  CHECK(CertFilter{{{"uid", "a"}}}.to_string() == "(uid=a)");
}

TEST_CASE("map: VerifyCert compares the stored certificates with the presented one", "[certmap][map]") {
  CertMap m = must_parse("certmap default default\ndefault:DNComps\ndefault:FilterComps e\ndefault:verifycert on\n");
  FakeDirectory dir;
  dir.add("uid=alice,o=x", "alice", "alice@example.com", {"old certificate", kDer});
  dir.add("uid=bob,o=x", "bob", "bob@example.com", {"bob's certificate"});
  dir.add("uid=carol,o=x", "carol", "carol@example.com");
  CHECK(map(m, facts(kCa, "E=alice@example.com"), dir).uid == "alice");
  CHECK(dir.queries.at(0).verify_cert);
  CHECK(map(m, facts(kCa, "E=bob@example.com"), dir).error == "reason=cert_mismatch section=default stored=1");
  CHECK(map(m, facts(kCa, "E=carol@example.com"), dir).error == "reason=cert_mismatch section=default stored=0");
  CHECK(map(m, facts(kCa, "E=alice@example.com", ""), dir).error == "reason=no_certificate section=default");
  // A prefix of the stored DER is not the same certificate.
  CHECK(map(m, facts(kCa, "E=alice@example.com", kDer.substr(0, 10)), dir).error ==
        "reason=cert_mismatch section=default stored=2");
}

TEST_CASE("map: CmapLdapAttr first, then DNComps/FilterComps", "[certmap][map]") {
  FakeDirectory dir;
  dir.add("uid=alice,o=x", "alice", "alice@example.com");
  dir.entries.back().attrs["certsubjectdn"] = {"E=alice@example.com,CN=Alice,O=Example,C=US"};
  dir.add("uid=bob,o=x", "bob", "bob@example.com");

  CertMap m = must_parse(
      "certmap default default\ndefault:CmapLdapAttr certSubjectDN\ndefault:DNComps\ndefault:FilterComps e\n");
  auto o = map(m, facts(kCa, "  E=alice@example.com,CN=Alice,O=Example,C=US "), dir);
  CHECK(o.uid == "alice");
  REQUIRE(dir.queries.size() == 1);
  CHECK(text_of(dir.queries[0]) == QueryText{"", "(certSubjectDN=E=alice@example.com,CN=Alice,O=Example,C=US)", false,
                                             false, "certSubjectDN", "default"});

  dir.queries.clear();
  o = map(m, facts(kCa, "E=bob@example.com,CN=Bob,O=Example,C=US"), dir);
  CHECK(o.uid == "bob");  // no certSubjectDN entry: the retry with FilterComps finds bob
  REQUIRE(dir.queries.size() == 2);
  CHECK(text_of(dir.queries[1]) == QueryText{"", "(mail=bob@example.com)", false, false, "", "default"});

  // Without FilterComps the retry would be a whole-tree (objectclass=*): none is made.
  CertMap alone = must_parse("certmap default default\ndefault:CmapLdapAttr certSubjectDN\ndefault:DNComps\n");
  dir.queries.clear();
  o = map(alone, facts(kCa, "E=bob@example.com,CN=Bob,O=Example,C=US"), dir);
  CHECK(o.error == "reason=no_entry section=default base= filter=(certSubjectDN=E=bob@example.com,CN=Bob,O=Example,C=US)");
  CHECK(dir.queries.size() == 1);
  // DNComps absent: the retry reads the subject DN's own entry.
  CertMap subj = must_parse("certmap default default\ndefault:CmapLdapAttr certSubjectDN\n");
  auto q = build_cert_queries(subj, facts(kCa, "UID=bob,O=x"));
  REQUIRE(q);
  REQUIRE(q->size() == 2);
  CHECK(text_of(q->at(1)) == QueryText{"uid=bob,o=x", "(objectclass=*)", true, false, "", "default"});
  o = map(subj, facts(kCa, "UID=bob,O=x"), dir);
  CHECK(o.uid == "bob");
}

TEST_CASE("map: zero or several entries, directory errors and late answers", "[certmap][map]") {
  CertMap m = must_parse("certmap default default\ndefault:DNComps\ndefault:FilterComps e\n");
  FakeDirectory dir;
  dir.add("uid=a1,o=x", "a1", "shared@example.com");
  dir.add("uid=a2,o=y", "a2", "shared@example.com");
  dir.add("uid=nouid,o=x", "", "nouid@example.com");
  CHECK(map(m, facts(kCa, "E=nobody@example.com"), dir).error ==
        "reason=no_entry section=default base= filter=(mail=nobody@example.com)");
  CHECK(map(m, facts(kCa, "E=shared@example.com"), dir).error ==
        "reason=ambiguous section=default entries=2 filter=(mail=shared@example.com)");
  CHECK(map(m, facts(kCa, "E=nouid@example.com"), dir).error == "reason=no_uid section=default");

  dir.fail_with = common::Error{common::ErrorKind::TempFail, "ldap: server down"};
  Outcome o;
  map_certificate(m, facts(kCa, "E=a@x"), dir, [&](common::Result<std::string> r) {
    ++o.calls;
    REQUIRE_FALSE(r);
    CHECK(r.error().kind == common::ErrorKind::TempFail);
    CHECK(r.error().detail == "ldap: server down");
  });
  CHECK(o.calls == 1);
  dir.fail_with.reset();

  // The answer arrives later: nothing happens until the directory calls back, and the CertMap
  // and facts may be gone by then.
  dir.deferred = true;
  dir.add("uid=late,o=x", "late", "late@example.com");
  Outcome late;
  {
    CertMap temp = must_parse("certmap default default\ndefault:DNComps\ndefault:FilterComps e\n");
    CertFacts f = facts(kCa, "E=late@example.com");
    map_certificate(temp, f, dir, [&](common::Result<std::string> r) {
      ++late.calls;
      late.uid = r ? *r : "";
    });
  }
  CHECK(late.calls == 0);
  dir.run_pending();
  CHECK(late.calls == 1);
  CHECK(late.uid == "late");

  // A directory that answers twice still gives one result.
  dir.deferred = false;
  dir.answer_twice = true;
  CHECK(map(m, facts(kCa, "E=late@example.com"), dir).uid == "late");
}

TEST_CASE("map: a reloaded certmap with several CAs, as the TLS layer will use it", "[certmap][map]") {
  CertMap m = must_parse(
      "# Example Corp: mail identifies users, certificates must be on file\n"
      "certmap default default\n"
      "default:DNComps\n"
      "default:FilterComps e=mail\n"
      "\n"
      "certmap partner CN=Partner Issuing CA 1, O=Partner GmbH, C=DE\n"
      "partner:DNComps\n"
      "partner:FilterComps uid\n"
      "partner:VerifyCert on\n");
  FakeDirectory dir;
  dir.add("uid=p.smith,ou=partners,o=x", "p.smith", "smith@partner.example", {"partner DER"});
  dir.add("uid=alice,ou=people,o=x", "alice", "alice@example.com");
  CHECK(map(m, facts("CN=Partner Issuing CA 1,O=Partner GmbH,C=DE", "UID=p.smith,CN=Smith,O=Partner GmbH,C=DE",
                     "partner DER"),
            dir)
            .uid == "p.smith");
  CHECK(map(m, facts("CN=Partner Issuing CA 1,O=Partner GmbH,C=DE", "UID=p.smith,CN=Smith,O=Partner GmbH,C=DE",
                     "forged DER"),
            dir)
            .error == "reason=cert_mismatch section=partner stored=1");
  // The same uid under another CA goes through default (by mail) and finds nothing.
  CHECK(map(m, facts(kOtherCa, "UID=p.smith,CN=Smith,O=Partner GmbH,C=DE"), dir).error ==
        "reason=missing_filter_comp section=default attr=mail");
  CHECK(map(m, facts(kOtherCa, "E=alice@example.com,CN=Alice"), dir).uid == "alice");
}
