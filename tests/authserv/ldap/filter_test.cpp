// filter_test.cpp: RFC 4515/4514 escaping and Sun filter templates, with the injection attempts a
// client could send as a login name.
#include <catch2/catch.hpp>

#include <string>

#include "authserv/ldap/filter.hpp"

using namespace std::string_literals;
namespace ldap = authserv::ldap;

TEST_CASE("filter values escape the RFC 4515 specials, controls and non-ASCII") {
  CHECK(ldap::escape_filter_value("alice") == "alice");
  CHECK(ldap::escape_filter_value("a.b-c_d@example.com") == "a.b-c_d@example.com");
  CHECK(ldap::escape_filter_value("*") == "\\2a");
  CHECK(ldap::escape_filter_value("(x)") == "\\28x\\29");
  CHECK(ldap::escape_filter_value("back\\slash") == "back\\5cslash");
  CHECK(ldap::escape_filter_value("nul\0byte"s) == "nul\\00byte");
  CHECK(ldap::escape_filter_value("tab\there\x7f") == "tab\\09here\\7f");
  CHECK(ldap::escape_filter_value("J\xc3\xbcrgen") == "J\\c3\\bcrgen");
  CHECK(ldap::escape_filter_value("") == "");
}

TEST_CASE("injection attempts stay inside one assertion value") {
  const ldap::FilterVars base{"", "", "example.com", ""};
  for (const std::string& evil : {"*)(uid=*"s, "admin)(|(uid=*"s, "*"s, "x)(objectClass=*))(&(uid=x"s,
                                 "\0*)"s, "alice)(userPassword=*"s, "\\2a"s}) {
    ldap::FilterVars v = base;
    v.uid = evil;
    auto f = ldap::expand_filter("(&(uid=%U)(objectclass=inetmailuser))", v);
    REQUIRE(f);
    INFO(*f);
    const std::string value = ldap::escape_filter_value(evil);
    // The value holds no filter syntax, so the template's structure is all there is.
    CHECK(value.find_first_of("*()"s + '\0') == std::string::npos);
    CHECK(*f == "(&(uid=" + value + ")(objectclass=inetmailuser))");
  }
}

TEST_CASE("Sun templates substitute %U %u %d %V %o and %%, escaped") {
  const ldap::FilterVars v{"al*ce", "al*ce@example.com", "exa(mple).com", "Al*ce"};
  CHECK(*ldap::expand_filter("(&(uid=%U)(objectclass=inetmailuser))", v) ==
        "(&(uid=al\\2ace)(objectclass=inetmailuser))");
  CHECK(*ldap::expand_filter("(mail=%u)", v) == "(mail=al\\2ace@example.com)");
  CHECK(*ldap::expand_filter("(mail=%U@%d)", v) == "(mail=al\\2ace@exa\\28mple\\29.com)");
  CHECK(*ldap::expand_filter("(cn=%o)", v) == "(cn=Al\\2ace)");
  CHECK(*ldap::expand_filter("uid=%U_%V", v) == "(uid=al\\2ace_exa\\28mple\\29.com)");  // Sun's compound uid
  CHECK(*ldap::expand_filter("(cn=100%%)", v) == "(cn=100%)");
  // Sun's own example has no parentheses.
  CHECK(*ldap::expand_filter("uid=%U", v) == "(uid=al\\2ace)");
}

TEST_CASE("bad templates are Config errors") {
  const ldap::FilterVars v{"a", "a@b", "b", "a"};
  for (const char* bad : {"", "(uid=%)", "(uid=%x)", "(uid=%U%"}) {
    auto f = ldap::expand_filter(bad, v);
    INFO(bad);
    REQUIRE_FALSE(f);
    CHECK(f.error().kind == common::ErrorKind::Config);
  }
}

TEST_CASE("DN values escape RFC 4514 specials and edges") {
  CHECK(ldap::escape_dn_value("alice") == "alice");
  CHECK(ldap::escape_dn_value("Smith, John") == "Smith\\, John");
  CHECK(ldap::escape_dn_value("a+b=c;d<e>f\"g\\h") == "a\\+b\\=c\\;d\\<e\\>f\\\"g\\\\h");
  CHECK(ldap::escape_dn_value(" lead") == "\\ lead");
  CHECK(ldap::escape_dn_value("trail ") == "trail\\ ");
  CHECK(ldap::escape_dn_value("#hash") == "\\#hash");
  CHECK(ldap::escape_dn_value("in#side") == "in#side");
  CHECK(ldap::escape_dn_value("nul\0"s) == "nul\\00");
  CHECK(ldap::escape_dn_value("uid=x,o=evil") == "uid\\=x\\,o\\=evil");
  CHECK(ldap::and_filter("(a=1)", "(b=2)") == "(&(a=1)(b=2))");
}
