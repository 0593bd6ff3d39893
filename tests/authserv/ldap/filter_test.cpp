// filter_test.cpp: Sun filter templates, with the injection attempts a client could send as a login
// name. The escaping itself (common/text/ldap_escape) is tested in tests/common/text.
#include <catch2/catch.hpp>

#include <string>

#include "authserv/ldap/filter.hpp"
#include "common/text/ldap_escape.hpp"

using namespace std::string_literals;
namespace ldap = authserv::ldap;

TEST_CASE("injection attempts stay inside one assertion value") {
  const ldap::FilterVars base{"", "", "example.com", ""};
  for (const std::string& evil : {"*)(uid=*"s, "admin)(|(uid=*"s, "*"s, "x)(objectClass=*))(&(uid=x"s,
                                 "\0*)"s, "alice)(userPassword=*"s, "\\2a"s}) {
    ldap::FilterVars v = base;
    v.uid = evil;
    auto f = ldap::expand_filter("(&(uid=%U)(objectclass=inetmailuser))", v);
    REQUIRE(f);
    INFO(*f);
    const std::string value = common::text::escape_filter_value(evil);
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

TEST_CASE("and_filter joins two filters") { CHECK(ldap::and_filter("(a=1)", "(b=2)") == "(&(a=1)(b=2))"); }
