// login_policy_test.cpp: account status, mailAllowedServiceAccess (seed examples, user over domain,
// the ask-for-a-name round trip), Netscape access domains (seed S3 examples) and admin proxy.
#include <catch2/catch.hpp>
#include <set>
#include <string>
#include <vector>

#include "authserv/policy/login_policy.hpp"

using namespace authserv::policy;
using authserv::directory::Status;
using authserv::directory::UserRecord;
using common::access::HostName;
using common::net::IpAddress;

namespace {

UserRecord user(std::string filter = {}, std::string domain_filter = {}) {
  UserRecord u;
  u.canonical = "alice@example.com";
  u.uid = "alice";
  u.domain = "example.com";
  u.allowed_services = std::move(filter);
  u.domain_allowed_services = std::move(domain_filter);
  return u;
}

LoginFacts facts(std::string_view service, std::string_view client = "192.0.2.7",
                 HostName name = HostName::not_looked()) {
  LoginFacts f;
  f.service = service;
  f.client_address = IpAddress::parse(client);
  f.client_name = name;
  f.server_address = IpAddress::parse("198.51.100.1");
  return f;
}

Outcome login(const UserRecord& u, const LoginFacts& f) { return check_login(u, f).outcome; }

Outcome domains(std::vector<std::string> list, std::string_view client, HostName name = HostName::not_looked()) {
  return check_access_domains(list, IpAddress::parse(client), name).outcome;
}

}  // namespace

TEST_CASE("account status fails before any other check, each with its own reason") {
  std::set<std::string> reasons;
  for (auto [status, outcome] : {std::pair{Status::Inactive, Outcome::AccountInactive},
                                 std::pair{Status::Held, Outcome::AccountHeld},
                                 std::pair{Status::Deleted, Outcome::AccountDeleted}}) {
    auto u = user("-imap:*");
    u.status = status;
    auto d = check_login(u, facts("imap"));
    CHECK(d.outcome == outcome);
    CHECK_FALSE(d.allowed());
    CHECK(d.reason.find("alice@example.com") != std::string::npos);
    reasons.insert(d.reason);
  }
  CHECK(reasons.size() == 3);
  CHECK(login(user(), facts("imap")) == Outcome::Allow);
  CHECK(outcome_name(Outcome::AccountHeld) == "account_held");
}

TEST_CASE("seed mailAllowedServiceAccess examples") {
  struct Case {
    const char* filter;
    const char* service;
    Outcome expected;
  };
  const Case cases[] = {
      // Every named service allowed; an allow list denies the services it does not name.
      {"+imap:ALL$+pop:ALL$+http:ALL", "imap", Outcome::Allow},
      {"+imap:ALL$+pop:ALL$+http:ALL", "pop", Outcome::Allow},
      {"+imap:ALL$+pop:ALL$+http:ALL", "http", Outcome::Allow},
      {"+imap:ALL$+pop:ALL$+http:ALL", "submission", Outcome::ServiceDenied},
      // "no services for this user": the named ones are denied, others fall through to allow.
      {"-imap:*$-pop:*$-http:*", "imap", Outcome::ServiceDenied},
      {"-imap:*$-pop:*$-http:*", "pop", Outcome::ServiceDenied},
      {"-imap:*$-pop:*$-http:*", "http", Outcome::ServiceDenied},
      {"-imap:*$-pop:*$-http:*", "submission", Outcome::Allow},
      {"+imap,pop,http:*", "IMAP", Outcome::Allow},
      {"+imap,pop,http:*", "pop", Outcome::Allow},
      {"+imap,pop,http:*", "smtp", Outcome::ServiceDenied},
      {"+imap:ALL$-pop:*", "imap", Outcome::Allow},
      {"+imap:ALL$-pop:*", "pop", Outcome::ServiceDenied},
      // Webmail only: IMAP from the access server hosts, which needs the client's name.
      {"+imap:access_server_host,access_server_host", "imap", Outcome::NeedClientName},
      {"+imap:access_server_host,access_server_host", "pop", Outcome::ServiceDenied},
      {"+imap:192.0.2.0/24", "imap", Outcome::Allow},
      {"+imap:10.", "imap", Outcome::ServiceDenied},
      {"", "imap", Outcome::Allow},
      {"   ", "imap", Outcome::Allow},
  };
  for (const auto& c : cases) {
    INFO(c.filter << " / " << c.service);
    auto d = check_login(user(c.filter), facts(c.service));
    CHECK(d.outcome == c.expected);
    CHECK_FALSE(d.reason.empty());
  }
}

TEST_CASE("a filter that needs the client name is asked again with it") {
  auto u = user("+imap:access_server_host,access_server_host");
  auto first = check_login(u, facts("imap"));
  REQUIRE(first.outcome == Outcome::NeedClientName);
  CHECK(first.needs_name());
  CHECK(login(u, facts("imap", "192.0.2.7", HostName::verified("access_server_host"))) == Outcome::Allow);
  CHECK(login(u, facts("imap", "192.0.2.7", HostName::verified("ACCESS_SERVER_HOST."))) == Outcome::Allow);
  CHECK(login(u, facts("imap", "192.0.2.7", HostName::verified("other.example.net"))) == Outcome::ServiceDenied);
  CHECK(login(u, facts("imap", "192.0.2.7", HostName::none())) == Outcome::ServiceDenied);
  // A PTR that does not resolve back is no name at all.
  CHECK(login(u, facts("imap", "192.0.2.7", HostName::mismatch("access_server_host"))) == Outcome::ServiceDenied);
}

TEST_CASE("the user's filter replaces the domain's, and a domain filter applies to users without one") {
  CHECK(login(user("", "-imap:*"), facts("imap")) == Outcome::ServiceDenied);
  CHECK(login(user("+imap:ALL", "-imap:*"), facts("imap")) == Outcome::Allow);
  CHECK(login(user("-pop:*", "-imap:*"), facts("imap")) == Outcome::Allow);
  auto d = check_login(user("", "-imap:*"), facts("imap"));
  CHECK(d.reason.find("domain example.com") != std::string::npos);
  d = check_login(user("-imap:*", ""), facts("imap"));
  CHECK(d.reason.find("user alice@example.com") != std::string::npos);
}

TEST_CASE("an unparsable filter denies the service") {
  for (const char* bad : {"imap:ALL", "+imap", "+:ALL", "+imap:ALL EXCEPT"}) {
    INFO(bad);
    auto d = check_login(user(bad), facts("imap"));
    CHECK(d.outcome == Outcome::ServiceDenied);
    CHECK(d.reason.find("bad") != std::string::npos);
  }
}

TEST_CASE("service@host rules ask for the server name") {
  auto u = user("+imap@mail.example.com:ALL");
  CHECK(login(u, facts("imap")) == Outcome::NeedServerName);
  auto f = facts("imap");
  f.server_name = HostName::verified("mail.example.com");
  CHECK(login(u, f) == Outcome::Allow);
  f.server_name = HostName::verified("other.example.com");
  CHECK(login(u, f) == Outcome::ServiceDenied);
}

TEST_CASE("access domains: the seed's example list") {
  const std::vector<std::string> list{"sunnyvale.dispatch.com", "128.123.45.0", "math.csusj.edu"};
  for (auto ip : {"128.123.45.22", "128.123.45.67", "128.123.45.82"}) {
    INFO(ip);
    CHECK(domains(list, ip) == Outcome::Allow);  // numeric: no name needed
  }
  for (auto host : {"sunnyvale.dispatch.com", "complex.math.csusj.edu", "fourier.math.csusj.edu"}) {
    INFO(host);
    CHECK(domains(list, "203.0.113.9", HostName::verified(host)) == Outcome::Allow);
  }
  for (auto host : {"newark.dispatch.com", "laser.ece.csusj.edu"}) {
    INFO(host);
    CHECK(domains(list, "203.0.113.9", HostName::verified(host)) == Outcome::HostDenied);
  }
  for (auto ip : {"128.123.46.22", "128.124.45.67"}) {
    INFO(ip);
    CHECK(domains(list, ip) == Outcome::NeedClientName);  // the names in the list might match
    CHECK(domains(list, ip, HostName::none()) == Outcome::HostDenied);
  }
}

TEST_CASE("access domains: the algorithm's steps") {
  CHECK(domains({}, "192.0.2.7") == Outcome::Allow);
  CHECK(domains({"", " "}, "192.0.2.7") == Outcome::Allow);
  CHECK(domains({"none"}, "192.0.2.7") == Outcome::HostDenied);
  CHECK(domains({"192.0.2.7", "NONE"}, "192.0.2.7") == Outcome::HostDenied);  // none wins
  // Domain suffixes at label boundaries: rome.dispatch.com is in dispatch.com and com.
  for (auto entry : {"rome.dispatch.com", "dispatch.com", "com", "Dispatch.COM.", ".dispatch.com"}) {
    INFO(entry);
    CHECK(domains({entry}, "192.0.2.7", HostName::verified("rome.dispatch.com")) == Outcome::Allow);
  }
  CHECK(domains({"dispatch.com"}, "192.0.2.7", HostName::verified("romedispatch.com")) == Outcome::HostDenied);
  CHECK(domains({"rome.dispatch.com"}, "192.0.2.7", HostName::verified("dispatch.com")) == Outcome::HostDenied);
  CHECK(domains({"dispatch.com"}, "192.0.2.7", HostName::mismatch("rome.dispatch.com")) == Outcome::HostDenied);
  CHECK(domains({"dispatch.com"}, "192.0.2.7", HostName::temp_fail()) == Outcome::HostDenied);
  // Zero octets are wildcards anywhere; comparison is numeric.
  CHECK(domains({"10.0.0.5"}, "10.1.2.5") == Outcome::Allow);
  CHECK(domains({"10.0.0.5"}, "10.1.2.6") == Outcome::HostDenied);
  CHECK(domains({"010.000.000.005"}, "10.1.2.5") == Outcome::Allow);
  CHECK(domains({"0.0.0.0"}, "203.0.113.1") == Outcome::Allow);
  CHECK(domains({"128.123.45.0"}, "2001:db8::1") == Outcome::HostDenied);
  CHECK(domains({"2001:db8::1"}, "2001:db8::1") == Outcome::Allow);
  // Half addresses are neither addresses nor names: never a match, never a DNS lookup.
  CHECK(domains({"128.123.45"}, "128.123.45.1") == Outcome::HostDenied);
  CHECK(domains({"256.1.1.1"}, "128.123.45.1") == Outcome::HostDenied);
  // Several entries in one value.
  CHECK(domains({"192.0.2.1, 128.123.45.0"}, "128.123.45.9") == Outcome::Allow);
  // No address (not an IP socket): names cannot be looked up.
  CHECK(check_access_domains(std::vector<std::string>{"dispatch.com"}, std::nullopt, HostName::not_looked()).outcome ==
        Outcome::HostDenied);
}

TEST_CASE("check_login applies access domains after the service filter") {
  auto u = user("+imap:ALL");
  u.access_domains = {"dispatch.com"};
  CHECK(login(u, facts("imap")) == Outcome::NeedClientName);
  CHECK(login(u, facts("imap", "192.0.2.7", HostName::verified("rome.dispatch.com"))) == Outcome::Allow);
  auto d = check_login(u, facts("imap", "192.0.2.7", HostName::verified("evil.example")));
  CHECK(d.outcome == Outcome::HostDenied);
  CHECK(d.reason.find("evil.example") != std::string::npos);
  CHECK(login(u, facts("pop", "192.0.2.7", HostName::verified("rome.dispatch.com"))) == Outcome::ServiceDenied);
  u.access_domains = {"none"};
  CHECK(login(u, facts("imap")) == Outcome::HostDenied);
}

TEST_CASE("proxy authorization: admins may act for others, everyone for themselves") {
  auto admin = user();
  admin.canonical = "admin@example.com";
  admin.uid = "admin";
  admin.store_admin = true;
  auto plain = user();
  auto f = facts("imap");

  CHECK(authorize_proxy(plain, "", "example.com", f).outcome == ProxyOutcome::Self);
  CHECK(authorize_proxy(plain, "alice", "example.com", f).outcome == ProxyOutcome::Self);
  CHECK(authorize_proxy(plain, "Alice@Example.COM").outcome == ProxyOutcome::Self);
  CHECK(authorize_proxy(plain, "bob@example.com").outcome == ProxyOutcome::NotAdmin);
  auto refused = authorize_proxy(plain, "cnewman", "example.com", f);  // MMP-67: "YWRtaW4=" by a non-admin
  CHECK(refused.outcome == ProxyOutcome::NotAdmin);
  CHECK_FALSE(refused.allowed());
  CHECK(refused.target == "cnewman@example.com");

  auto ok = authorize_proxy(admin, "CNewman", "Example.com", f);
  CHECK(ok.outcome == ProxyOutcome::Allow);
  CHECK(ok.allowed());
  CHECK(ok.target == "cnewman@example.com");
  CHECK(authorize_proxy(admin, "bob@other.org", "example.com", f).target == "bob@other.org");

  for (std::string bad : {std::string("@example.com"), std::string("bob@"), std::string("a@b@c"),
                          std::string("bob smith"), std::string("bob\r\n"), std::string(400, 'x')}) {
    INFO(bad);
    CHECK(authorize_proxy(admin, bad, "example.com", f).outcome == ProxyOutcome::BadAuthzid);
  }
}

TEST_CASE("proxy authorization honours the proxy host filter") {
  auto admin = user();
  admin.canonical = "admin@example.com";
  admin.uid = "admin";
  admin.store_admin = true;
  auto filter = common::access::AccessFilter::from_compact("+imap:192.0.2.0/24 .webmail.example.com");
  REQUIRE(filter);
  CHECK(authorize_proxy(admin, "bob", "example.com", facts("imap", "192.0.2.7"), &*filter).outcome ==
        ProxyOutcome::Allow);
  CHECK(authorize_proxy(admin, "bob", "example.com", facts("imap", "203.0.113.5"), &*filter).outcome ==
        ProxyOutcome::NeedClientName);
  CHECK(authorize_proxy(admin, "bob", "example.com",
                        facts("imap", "203.0.113.5", HostName::verified("a.webmail.example.com")), &*filter)
            .outcome == ProxyOutcome::Allow);
  auto d = authorize_proxy(admin, "bob", "example.com", facts("imap", "203.0.113.5", HostName::none()), &*filter);
  CHECK(d.outcome == ProxyOutcome::HostDenied);
  CHECK(d.reason.find("203.0.113.5") != std::string::npos);
  // Acting as oneself never consults the filter.
  CHECK(authorize_proxy(admin, "admin", "example.com", facts("imap", "203.0.113.5", HostName::none()), &*filter)
            .outcome == ProxyOutcome::Self);
}
