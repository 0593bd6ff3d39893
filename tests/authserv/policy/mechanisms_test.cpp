// mechanisms_test.cpp: SASL mechanisms advertised and accepted per connection state and config
// (AUTH-08 mech_list, plaintext passwords only under TLS unless allowed, -PLUS, EXTERNAL, tokens).
#include <catch2/catch.hpp>
#include <string>
#include <vector>

#include "authserv/policy/mechanisms.hpp"

using namespace authserv::policy;
using Names = std::vector<std::string>;

namespace {
ConnectionState plain_tcp() { return {}; }
ConnectionState tls(uint16_t version = kTls13, bool binding = false, bool cert = false) {
  return {true, version, binding, cert};
}
}  // namespace

TEST_CASE("advertised mechanisms per connection state") {
  struct Case {
    const char* name;
    MechanismPolicy policy;
    ConnectionState state;
    Names expected;
  };
  MechanismPolicy defaults;
  MechanismPolicy issuers;
  issuers.token_issuers_configured = true;
  MechanismPolicy clear_ok;
  clear_ok.allow_plaintext_without_tls = true;
  MechanismPolicy listed;
  listed.mech_list = {"PLAIN", "SCRAM-SHA-256", "EXTERNAL"};
  MechanismPolicy tls13_only;
  tls13_only.plaintext_min_tls_version = kTls13;

  const Case cases[] = {
      {"no TLS: no plaintext", defaults, plain_tcp(), {"SCRAM-SHA-256"}},
      {"TLS 1.2", defaults, tls(kTls12), {"SCRAM-SHA-256", "PLAIN", "LOGIN"}},
      {"TLS 1.3 with binding", defaults, tls(kTls13, true), {"SCRAM-SHA-256-PLUS", "SCRAM-SHA-256", "PLAIN", "LOGIN"}},
      {"client certificate", defaults, tls(kTls13, false, true), {"SCRAM-SHA-256", "EXTERNAL", "PLAIN", "LOGIN"}},
      {"everything",
       issuers,
       tls(kTls13, true, true),
       {"SCRAM-SHA-256-PLUS", "SCRAM-SHA-256", "EXTERNAL", "PLAIN", "LOGIN", "OAUTHBEARER", "XOAUTH2"}},
      {"issuers but no TLS", issuers, plain_tcp(), {"SCRAM-SHA-256"}},
      {"plaintext allowed without TLS", clear_ok, plain_tcp(), {"SCRAM-SHA-256", "PLAIN", "LOGIN"}},
      {"binding flag without TLS is ignored", defaults, ConnectionState{false, 0, true, true}, {"SCRAM-SHA-256"}},
      {"mech_list order and subset", listed, tls(kTls13, true, true), {"PLAIN", "SCRAM-SHA-256", "EXTERNAL"}},
      {"mech_list still needs TLS", listed, plain_tcp(), {"SCRAM-SHA-256"}},
      {"TLS 1.3 minimum for plaintext, on TLS 1.2", tls13_only, tls(kTls12), {"SCRAM-SHA-256"}},
      {"TLS 1.3 minimum for plaintext, on TLS 1.3", tls13_only, tls(kTls13), {"SCRAM-SHA-256", "PLAIN", "LOGIN"}},
  };
  for (const auto& c : cases) {
    INFO(c.name);
    CHECK(mechanisms_for(c.policy, c.state) == c.expected);
  }
}

TEST_CASE("AUTH with an unadvertised mechanism is refused for the same reason") {
  MechanismPolicy p;
  struct Case {
    const char* mech;
    ConnectionState state;
    bool allowed;
    std::string_view reason;
  };
  const Case cases[] = {
      {"PLAIN", plain_tcp(), false, "needs_tls"},
      {"login", plain_tcp(), false, "needs_tls"},
      {"plain", tls(), true, "ok"},
      {"CRAM-MD5", tls(), false, "unknown_mechanism"},
      {"DIGEST-MD5", tls(), false, "unknown_mechanism"},
      {"", tls(), false, "unknown_mechanism"},
      {"SCRAM-SHA-256-PLUS", tls(), false, "needs_channel_binding"},
      {"EXTERNAL", tls(), false, "needs_client_certificate"},
      {"EXTERNAL", ConnectionState{false, 0, false, true}, false, "needs_client_certificate"},
      {"OAUTHBEARER", tls(), false, "no_token_issuers"},
      {"XOAUTH2", plain_tcp(), false, "needs_tls"},
  };
  for (const auto& c : cases) {
    INFO(c.mech);
    auto r = mechanism_allowed(c.mech, p, c.state);
    CHECK(r.allowed == c.allowed);
    CHECK(r.reason == c.reason);
  }
  MechanismPolicy listed;
  listed.mech_list = {"SCRAM-SHA-256"};
  CHECK(mechanism_allowed("PLAIN", listed, tls()).reason == "not_enabled");
  MechanismPolicy min13;
  min13.plaintext_min_tls_version = kTls13;
  CHECK(mechanism_allowed("PLAIN", min13, tls(kTls12)).reason == "tls_too_old");
  CHECK(mechanism_allowed("SCRAM-SHA-256", min13, tls(kTls12)));  // no password on the wire
}

TEST_CASE("mech_list parsing") {
  auto ok = parse_mech_list("  scram-sha-256\tPLAIN  external ");
  REQUIRE(ok);
  CHECK(*ok == Names{"SCRAM-SHA-256", "PLAIN", "EXTERNAL"});
  CHECK(parse_mech_list("")->empty());
  auto unknown = parse_mech_list("PLAIN CRAM-MD5");
  REQUIRE_FALSE(unknown);
  CHECK(unknown.error().kind == common::ErrorKind::Config);
  CHECK(unknown.error().detail.find("CRAM-MD5") != std::string::npos);
  CHECK_FALSE(parse_mech_list("PLAIN plain"));
}
