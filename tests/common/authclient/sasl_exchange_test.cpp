// sasl_exchange_test.cpp: the SASL relay's pure half: strict base64, "*" and "=", line limits, turn
// taking and the challenge bound, without gRPC.
#include <catch2/catch.hpp>

#include <string>

#include "common/authclient/sasl_exchange.hpp"
#include "common/text/base64.hpp"

using namespace common::authclient;
using common::text::base64_decode;
using common::text::base64_encode;
using State = SaslExchange::State;

namespace {

SaslFailure failure_of(const std::variant<SaslExchange::Start, SaslFailure>& v) {
  REQUIRE(std::holds_alternative<SaslFailure>(v));
  return std::get<SaslFailure>(v);
}
SaslFailure failure_of(const std::variant<SaslExchange::Respond, SaslFailure>& v) {
  REQUIRE(std::holds_alternative<SaslFailure>(v));
  return std::get<SaslFailure>(v);
}
std::string response_of(const std::variant<SaslExchange::Respond, SaslFailure>& v) {
  REQUIRE(std::holds_alternative<SaslExchange::Respond>(v));
  return std::get<SaslExchange::Respond>(v).bytes;
}

// An exchange that has sent its start and received one challenge.
SaslExchange awaiting_client(SaslLimits limits = {}) {
  SaslExchange x(limits);
  REQUIRE(std::holds_alternative<SaslExchange::Start>(x.start("LOGIN", std::nullopt)));
  auto out = x.server_challenge("Username:");
  REQUIRE(out);
  REQUIRE(std::get<SaslChallenge>(*out).base64 == "VXNlcm5hbWU6");
  REQUIRE(x.state() == State::AwaitingClient);
  return x;
}

}  // namespace

TEST_CASE("start: mechanism names are checked and raised, initial responses decoded", "[sasl]") {
  SECTION("an initial response") {
    SaslExchange x;
    auto v = x.start("plain", std::string("AGFsaWNlAHNlY3JldA=="));
    REQUIRE(std::holds_alternative<SaslExchange::Start>(v));
    auto& s = std::get<SaslExchange::Start>(v);
    CHECK(s.mechanism == "PLAIN");
    CHECK(s.initial_response == std::string("\0alice\0secret", 13));
    CHECK(x.state() == State::AwaitingServer);
  }
  SECTION("\"=\" is an empty initial response, which differs from none (RFC 4954 §4)") {
    SaslExchange empty;
    auto v = empty.start("EXTERNAL", std::string("="));
    REQUIRE(std::holds_alternative<SaslExchange::Start>(v));
    CHECK(std::get<SaslExchange::Start>(v).initial_response == std::string());
    SaslExchange none;
    auto w = none.start("EXTERNAL", std::nullopt);
    REQUIRE(std::holds_alternative<SaslExchange::Start>(w));
    CHECK_FALSE(std::get<SaslExchange::Start>(w).initial_response.has_value());
  }
  SECTION("bad base64 fails locally as a protocol error, without quoting the client") {
    SaslExchange x;
    auto f = failure_of(x.start("PLAIN", std::string("AGFsaWNlAHNlY3JldA")));
    CHECK(f.kind == FailureKind::Protocol);
    CHECK(f.reason.find("AGFs") == std::string::npos);
    CHECK(x.done());
    SaslExchange y;
    CHECK(failure_of(y.start("PLAIN", std::string())).kind == FailureKind::Protocol);
  }
  SECTION("malformed mechanism names") {
    for (std::string bad : {"", "PL AIN", "PLAIN\r", "SCRAM-SHA-256-PLUS-TOOLONG", "X\xC3\xA9"}) {
      SaslExchange x;
      CHECK(failure_of(x.start(bad, std::nullopt)).kind == FailureKind::Mechanism);
    }
    SaslExchange ok;
    CHECK(std::holds_alternative<SaslExchange::Start>(ok.start("SCRAM-SHA-256-PLUS", std::nullopt)));
  }
  SECTION("an initial response over the line limit") {
    SaslExchange x(SaslLimits{.max_line = 8});
    CHECK(std::holds_alternative<SaslExchange::Start>(SaslExchange(SaslLimits{.max_line = 8}).start("P", std::string("Zm9vYmFy"))));
    CHECK(failure_of(x.start("PLAIN", std::string("Zm9vYmFyYg=="))).kind == FailureKind::Protocol);
  }
  SECTION("a second start is a protocol error") {
    SaslExchange x;
    REQUIRE(std::holds_alternative<SaslExchange::Start>(x.start("PLAIN", std::nullopt)));
    CHECK(failure_of(x.start("PLAIN", std::nullopt)).kind == FailureKind::Protocol);
    CHECK(x.done());
  }
}

TEST_CASE("client lines: responses decoded, \"*\" aborts, empty and \"=\" are empty responses", "[sasl]") {
  SECTION("a response") {
    auto x = awaiting_client();
    CHECK(response_of(x.client_line("YWxpY2U=")) == "alice");
    CHECK(x.state() == State::AwaitingServer);
  }
  SECTION("an empty line and \"=\"") {
    auto x = awaiting_client();
    CHECK(response_of(x.client_line("")) == "");
    auto y = awaiting_client();
    CHECK(response_of(y.client_line("=")) == "");
  }
  SECTION("\"*\"") {
    auto x = awaiting_client();
    CHECK(failure_of(x.client_line("*")).kind == FailureKind::Aborted);
    CHECK(x.done());
    // Whatever authserv says after that is not for the client any more.
    CHECK_FALSE(x.server_failure(FailureKind::Aborted, "aborted"));
  }
  SECTION("bad base64") {
    for (std::string bad : {"YWxpY2U", "YWxp Y2U=", "YWxpY2U=\r", "**", "* "}) {
      auto x = awaiting_client();
      CHECK(failure_of(x.client_line(bad)).kind == FailureKind::Protocol);
      CHECK(x.done());
    }
  }
  SECTION("a line over the limit; one at the limit passes") {
    auto x = awaiting_client(SaslLimits{.max_line = 12});
    CHECK(failure_of(x.client_line("YWxpY2VhbGljZQ==")).kind == FailureKind::Protocol);
    auto y = awaiting_client(SaslLimits{.max_line = 12});
    CHECK(response_of(y.client_line("YWxpY2VhbGlj")) == "alicealic");
  }
  SECTION("the default limit is 12 KiB of base64") {
    std::string at_limit(12 * 1024, 'A');
    auto x = awaiting_client();
    CHECK(response_of(x.client_line(at_limit)).size() == 9 * 1024);
    auto y = awaiting_client();
    CHECK(failure_of(y.client_line(at_limit + "AAAA")).kind == FailureKind::Protocol);
  }
}

TEST_CASE("a client line with no challenge outstanding is a protocol error", "[sasl]") {
  SECTION("before start") {
    SaslExchange x;
    CHECK(failure_of(x.client_line("YWxpY2U=")).kind == FailureKind::Protocol);
  }
  SECTION("while authserv has the turn") {
    SaslExchange x;
    REQUIRE(std::holds_alternative<SaslExchange::Start>(x.start("PLAIN", std::nullopt)));
    CHECK(failure_of(x.client_line("YWxpY2U=")).kind == FailureKind::Protocol);
    CHECK(x.done());
  }
  SECTION("a second line for one challenge") {
    auto x = awaiting_client();
    REQUIRE(response_of(x.client_line("YWxpY2U=")) == "alice");
    CHECK(failure_of(x.client_line("c2VjcmV0")).kind == FailureKind::Protocol);
  }
  SECTION("after the outcome") {
    SaslExchange x;
    REQUIRE(std::holds_alternative<SaslExchange::Start>(x.start("PLAIN", std::string("AGFsaWNlAHNlY3JldA=="))));
    REQUIRE(x.server_success(AuthenticatedUser{.canonical = "alice@example.com"}, ""));
    CHECK(failure_of(x.client_line("*")).kind == FailureKind::Protocol);
  }
}

TEST_CASE("challenges are counted and bounded", "[sasl]") {
  SaslExchange x(SaslLimits{.max_challenges = 3});
  REQUIRE(std::holds_alternative<SaslExchange::Start>(x.start("X-LOOP", std::nullopt)));
  for (int i = 0; i < 3; ++i) {
    auto c = x.server_challenge("more");
    REQUIRE(c);
    REQUIRE(std::holds_alternative<SaslChallenge>(*c));
    REQUIRE(response_of(x.client_line("")) == "");
  }
  auto fourth = x.server_challenge("more");
  REQUIRE(fourth);
  REQUIRE(std::holds_alternative<SaslFailure>(*fourth));
  CHECK(std::get<SaslFailure>(*fourth).kind == FailureKind::Protocol);
  CHECK(x.done());
  CHECK(x.challenges() == 4);
}

TEST_CASE("authserv outcomes, replies out of turn, and a stream that ends early", "[sasl]") {
  SECTION("success with additional data (SCRAM server-final)") {
    auto x = awaiting_client();
    REQUIRE(response_of(x.client_line("YWxpY2U=")) == "alice");
    auto out = x.server_success(AuthenticatedUser{.canonical = "alice@example.com", .token = "tok"}, "v=abc");
    REQUIRE(out);
    auto& s = std::get<SaslSuccess>(*out);
    CHECK(s.user.canonical == "alice@example.com");
    CHECK(s.additional_data_base64 == "dj1hYmM=");
    CHECK(x.done());
    CHECK_FALSE(x.transport_ended("stream closed"));  // nothing more for the client
  }
  SECTION("failure keeps authserv's kind; an unspecified one becomes temporary") {
    SaslExchange x;
    REQUIRE(std::holds_alternative<SaslExchange::Start>(x.start("PLAIN", std::string("="))));
    auto out = x.server_failure(FailureKind::Credentials, "wrong password");
    REQUIRE(out);
    CHECK(std::get<SaslFailure>(*out).kind == FailureKind::Credentials);
    CHECK(std::get<SaslFailure>(*out).reason == "wrong password");
    SaslExchange y;
    REQUIRE(std::holds_alternative<SaslExchange::Start>(y.start("PLAIN", std::string("="))));
    CHECK(std::get<SaslFailure>(*y.server_failure(FailureKind::Unspecified, "")).kind == FailureKind::Temporary);
  }
  SECTION("a challenge or success while the client owes a response is authserv's fault") {
    auto x = awaiting_client();
    CHECK(std::get<SaslFailure>(*x.server_challenge("again")).kind == FailureKind::Temporary);
    auto y = awaiting_client();
    CHECK(std::get<SaslFailure>(*y.server_success({}, "")).kind == FailureKind::Temporary);
  }
  SECTION("the stream ends without an outcome") {
    auto x = awaiting_client();
    auto out = x.transport_ended("authserv unreachable");
    REQUIRE(out);
    CHECK(std::get<SaslFailure>(*out).kind == FailureKind::Temporary);
    CHECK(x.done());
  }
  SECTION("a challenge too long to relay in one line") {
    SaslExchange x(SaslLimits{.max_line = 8});
    REQUIRE(std::holds_alternative<SaslExchange::Start>(x.start("X", std::nullopt)));
    CHECK(std::get<SaslFailure>(*x.server_challenge("1234567")).kind == FailureKind::Temporary);
  }
}
