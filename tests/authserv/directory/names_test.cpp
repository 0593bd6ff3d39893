// names_test.cpp: login splitting and address normal forms, as tables of good and bad input;
// plus status names and their combination.
#include <catch2/catch.hpp>

#include <string>

#include "authserv/directory/directory.hpp"
#include "authserv/directory/names.hpp"

namespace dir = authserv::directory;

TEST_CASE("split_login accepts and normalises good logins") {
  struct Row {
    std::string login, default_domain, uid, domain;
  };
  const Row rows[] = {
      {"alice", "example.com", "alice", "example.com"},
      {"Alice", "Example.COM", "alice", "example.com"},
      {"alice@Example.COM", "", "alice", "example.com"},
      {"alice@example.com.", "", "alice", "example.com"},
      {"alice@other.org", "example.com", "alice", "other.org"},
      {"a.b-c_d+e@x.y", "", "a.b-c_d+e", "x.y"},
      {"o'brien@x.org", "", "o'brien", "x.org"},
      {"cn=x,(*)\\@x.org", "", "cn=x,(*)\\", "x.org"},  // LDAP specials: the LDAP code escapes them
      {std::string(64, 'a') + "@x.org", "", std::string(64, 'a'), "x.org"},
  };
  for (const auto& r : rows) {
    INFO(r.login);
    auto l = dir::split_login(r.login, r.default_domain);
    REQUIRE(l);
    CHECK(l->uid == r.uid);
    CHECK(l->domain == r.domain);
    CHECK(l->canonical() == r.uid + "@" + r.domain);
  }
}

TEST_CASE("split_login refuses bad logins") {
  std::string long_domain;
  while (long_domain.size() < 260) long_domain += "abcdefghi.";
  long_domain += "com";
  const std::string rows[] = {
      "",
      "@example.com",
      "alice@",
      "alice@@example.com",
      "a@b@example.com",
      "al ice@example.com",
      "alice\t@example.com",
      std::string("al\0ice@example.com", 18),
      "alice\r\n@example.com",
      "alice\x7f@example.com",
      "alice@exa mple.com",
      "alice@exa..mple.com",
      "alice@.example.com",
      "alice@exam(ple.com",
      std::string(65, 'a') + "@x.org",
      "alice@" + long_domain,
      std::string(400, 'a'),
  };
  for (const auto& r : rows) {
    INFO(r);
    auto l = dir::split_login(r, "example.com");
    CHECK_FALSE(l);
    if (!l) CHECK(l.error().kind == common::ErrorKind::Protocol);
  }
  CHECK_FALSE(dir::split_login("alice", ""));  // unqualified, no default domain
  CHECK_FALSE(dir::split_login("alice", "bad domain"));
}

TEST_CASE("addresses keep the local part's case, keys and details fold") {
  CHECK(dir::normalize_address("Alice@Example.COM").value() == "Alice@example.com");
  CHECK_FALSE(dir::normalize_address("alice"));
  CHECK_FALSE(dir::normalize_address("alice@x@y"));
  CHECK(dir::address_key("Alice@Example.COM") == "alice@example.com");
  CHECK(dir::strip_detail("alice+tag@example.com", '+') == "alice@example.com");
  CHECK(dir::strip_detail("alice+a+b@example.com", '+') == "alice@example.com");
  CHECK(dir::strip_detail("alice@example.com", '+') == "alice@example.com");
  CHECK(dir::strip_detail("+list@example.com", '+') == "+list@example.com");
  CHECK(dir::strip_detail("alice-tag@example.com", '-') == "alice@example.com");
  CHECK(dir::strip_detail("alice+tag@example.com", '\0') == "alice+tag@example.com");
}

TEST_CASE("status names parse case-insensitively and unknown values fail closed") {
  using dir::Status;
  CHECK(dir::parse_status("") == Status::Active);
  CHECK(dir::parse_status("Active") == Status::Active);
  CHECK(dir::parse_status("INACTIVE") == Status::Inactive);
  CHECK(dir::parse_status("hold") == Status::Held);
  CHECK(dir::parse_status("deleted") == Status::Deleted);
  CHECK(dir::parse_status("actve") == Status::Inactive);
  CHECK(dir::parse_status(" active ") == Status::Active);
  for (auto s : {Status::Active, Status::Inactive, Status::Held, Status::Deleted})
    CHECK(dir::parse_status(dir::status_name(s)) == s);
  CHECK(dir::stricter(Status::Active, Status::Inactive) == Status::Inactive);
  CHECK(dir::stricter(Status::Held, Status::Inactive) == Status::Held);
  CHECK(dir::stricter(Status::Held, Status::Deleted) == Status::Deleted);
  CHECK(dir::stricter(Status::Active, Status::Active) == Status::Active);
}
