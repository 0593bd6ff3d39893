// sasl_exchange.cpp: SASL relay state machine. Reasons never quote client text:
// SASL payloads carry passwords.
#include "common/authclient/sasl_exchange.hpp"

#include "common/text/base64.hpp"

namespace common::authclient {

namespace {

using text::base64_decode;
using text::base64_encode;

constexpr size_t kMaxMechanism = 20;  // RFC 4422 §3.1

// RFC 4422 §3.1: 1-20 of A-Z 0-9 - _. Lower case is accepted and raised (IMAP and SMTP match
// mechanism names without regard to case).
std::optional<std::string> mechanism_name(std::string_view name) {
  if (name.empty() || name.size() > kMaxMechanism) return std::nullopt;
  std::string out(name);
  for (char& c : out) {
    if (c >= 'a' && c <= 'z') c = static_cast<char>(c - 'a' + 'A');
    bool ok = (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' || c == '_';
    if (!ok) return std::nullopt;
  }
  return out;
}

}  // namespace

SaslFailure SaslExchange::finish(FailureKind kind, std::string reason) {
  state_ = State::Done;
  return SaslFailure{kind, std::move(reason)};
}

std::variant<SaslExchange::Start, SaslFailure> SaslExchange::start(
    std::string_view mechanism, const std::optional<std::string>& initial_response_base64) {
  if (state_ != State::Idle) return finish(FailureKind::Protocol, "exchange already started");
  auto name = mechanism_name(mechanism);
  if (!name) return finish(FailureKind::Mechanism, "malformed mechanism name");
  Start start{std::move(*name), std::nullopt};
  if (initial_response_base64) {
    const std::string& text = *initial_response_base64;
    if (text.size() > limits_.max_line) return finish(FailureKind::Protocol, "initial response too long");
    if (text == "=") {
      start.initial_response = std::string();  // RFC 4954 §4: "=" is an empty initial response
    } else {
      // "" is not "=": the ABNF has no empty base64, and a session means "none" by nullopt.
      auto decoded = text.empty() ? std::nullopt : base64_decode(text);
      if (!decoded) return finish(FailureKind::Protocol, "initial response is not base64");
      start.initial_response = std::move(*decoded);
    }
  }
  state_ = State::AwaitingServer;
  return start;
}

std::variant<SaslExchange::Respond, SaslFailure> SaslExchange::client_line(std::string_view line) {
  // A line while authserv has not asked for one is pipelining into a SASL exchange or a confused
  // client; relaying it would let the client run ahead of the server's state machine.
  if (state_ != State::AwaitingClient) return finish(FailureKind::Protocol, "client line with no challenge outstanding");
  if (line.size() > limits_.max_line) return finish(FailureKind::Protocol, "response too long");
  if (line == "*") return finish(FailureKind::Aborted, "client aborted");
  std::optional<std::string> bytes;
  // An empty line is the empty response (RFC 4954 §4). "=" is only defined for the initial
  // response, but it is never valid base64 otherwise, so reading it as empty here is unambiguous.
  if (line.empty() || line == "=") bytes = std::string();
  else bytes = base64_decode(line);
  if (!bytes) return finish(FailureKind::Protocol, "response is not base64");
  state_ = State::AwaitingServer;
  return Respond{std::move(*bytes)};
}

std::optional<SaslOutput> SaslExchange::server_challenge(std::string_view bytes) {
  if (state_ == State::Done) return std::nullopt;
  if (state_ != State::AwaitingServer) return finish(FailureKind::Temporary, "authserv sent a challenge out of turn");
  if (++challenges_ > limits_.max_challenges) return finish(FailureKind::Protocol, "too many challenges");
  std::string text = base64_encode(bytes);
  // The client must be able to echo a line as long as our challenge; authserv never needs more.
  if (text.size() > limits_.max_line) return finish(FailureKind::Temporary, "challenge from authserv too long");
  state_ = State::AwaitingClient;
  return SaslChallenge{std::move(text)};
}

std::optional<SaslOutput> SaslExchange::server_success(AuthenticatedUser user, std::string_view additional_data) {
  if (state_ == State::Done) return std::nullopt;
  // Success is only an answer to a step of ours; one arriving while the client owes a response
  // would skip a step the mechanism requires.
  if (state_ != State::AwaitingServer) return finish(FailureKind::Temporary, "authserv sent success out of turn");
  state_ = State::Done;
  return SaslSuccess{std::move(user), additional_data.empty() ? std::string() : base64_encode(additional_data)};
}

std::optional<SaslOutput> SaslExchange::server_failure(FailureKind kind, std::string reason) {
  if (state_ == State::Done) return std::nullopt;
  // authserv always names a kind; a missing one is a bug there, and "try again later" blames no one.
  return finish(kind == FailureKind::Unspecified ? FailureKind::Temporary : kind, std::move(reason));
}

std::optional<SaslOutput> SaslExchange::transport_ended(std::string reason) {
  if (state_ == State::Done) return std::nullopt;
  return finish(FailureKind::Temporary, std::move(reason));
}

std::string_view failure_kind_name(FailureKind kind) {
  switch (kind) {
    case FailureKind::Unspecified: return "unspecified";
    case FailureKind::Credentials: return "credentials";
    case FailureKind::NotAllowed: return "not_allowed";
    case FailureKind::Authz: return "authz";
    case FailureKind::Protocol: return "protocol";
    case FailureKind::Mechanism: return "mechanism";
    case FailureKind::Aborted: return "aborted";
    case FailureKind::Temporary: return "temporary";
  }
  return "unspecified";
}

}  // namespace common::authclient
