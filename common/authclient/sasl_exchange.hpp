// sasl_exchange.hpp: the pure half of the SASL relay: turns the client's base64 lines into steps for
// authserv and authserv's replies into protocol outputs, with RFC 4954 limits. No I/O, no gRPC.
#pragma once

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>
#include <variant>

#include "common/authclient/types.hpp"

namespace common::authclient {

struct SaslLimits {
  size_t max_line = 12 * 1024;   // RFC 4954 §4: an AUTH line or response may be 12288 octets
  unsigned max_challenges = 8;   // SCRAM needs 2; a server asking more is broken or hostile
};

// Continuations are base64 as common/text/base64.hpp reads it: strictly, so one text has one meaning.

class SaslExchange {
 public:
  enum class State { Idle, AwaitingServer, AwaitingClient, Done };

  // Send AuthStep.Start. initial_response: nullopt = none given ("AUTH PLAIN"), "" = "=" (RFC 4954).
  struct Start {
    std::string mechanism;  // upper-cased (RFC 4422 §3.1 names are upper case)
    std::optional<std::string> initial_response;
  };
  // Send AuthStep.response with these (decoded) bytes.
  struct Respond {
    std::string bytes;
  };

  explicit SaslExchange(SaslLimits limits = {}) : limits_(limits) {}

  // The AUTH / AUTHENTICATE command. A Failure needs no round trip: answer the client with it.
  std::variant<Start, SaslFailure> start(std::string_view mechanism,
                                         const std::optional<std::string>& initial_response_base64);

  // A continuation line (CRLF already stripped). A Failure ends the exchange: answer the client with
  // it and tell authserv to abort. "*" gives Failure{Aborted} (RFC 4954 §4, RFC 9051 §6.2.2).
  std::variant<Respond, SaslFailure> client_line(std::string_view line);

  // authserv's replies. nullopt: nothing to tell the client (the exchange was already over).
  std::optional<SaslOutput> server_challenge(std::string_view bytes);
  std::optional<SaslOutput> server_success(AuthenticatedUser user, std::string_view additional_data);
  std::optional<SaslOutput> server_failure(FailureKind kind, std::string reason);
  // The stream ended or broke without an outcome (authserv down, deadline): a temporary failure.
  std::optional<SaslOutput> transport_ended(std::string reason);

  State state() const { return state_; }
  bool done() const { return state_ == State::Done; }
  unsigned challenges() const { return challenges_; }

 private:
  SaslFailure finish(FailureKind kind, std::string reason);

  SaslLimits limits_;
  State state_ = State::Idle;
  unsigned challenges_ = 0;
};

}  // namespace common::authclient
