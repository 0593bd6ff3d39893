// sasl_relay_fuzz.cpp: the front end's SASL relay state machine (common/authclient SaslExchange) on
// hostile client lines interleaved with authserv replies. Byte 0 drives authserv's side; the rest is
// split at '\n': the first piece is "MECH[ initial]", the others are client lines.
// Invariants: never crash; no step is sent after the exchange is done; a decoded response is never
// larger than its line; challenges stay within the limit.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "common/authclient/sasl_exchange.hpp"

using namespace common::authclient;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size < 1) return 0;
  const std::uint8_t server = data[0];
  std::string_view rest(reinterpret_cast<const char*>(data + 1), size - 1);
  auto next_piece = [&rest]() {
    auto nl = rest.find('\n');
    std::string_view piece = rest.substr(0, nl);
    rest = nl == std::string_view::npos ? std::string_view() : rest.substr(nl + 1);
    return piece;
  };

  SaslLimits limits;
  SaslExchange x(limits);
  std::string_view command = next_piece();
  auto space = command.find(' ');
  std::optional<std::string> initial;
  if (space != std::string_view::npos) initial = std::string(command.substr(space + 1));
  auto started = x.start(command.substr(0, space), initial);
  if (std::holds_alternative<SaslFailure>(started)) {
    if (!x.done()) std::abort();
    return 0;
  }
  for (int round = 0; !x.done() && round < 64; ++round) {
    // authserv answers: a challenge mostly, sometimes success or failure.
    const int pick = (server >> (round % 8)) & 3;
    std::optional<SaslOutput> out;
    if (pick == 0 && round > 2) {
      out = x.server_success(AuthenticatedUser{}, "v=fuzz");
    } else if (pick == 1 && round > 1) {
      out = x.server_failure(FailureKind::Credentials, "fuzz");
    } else {
      out = x.server_challenge("challenge");
    }
    if (x.challenges() > limits.max_challenges) std::abort();
    if (x.done()) break;
    if (rest.empty()) {
      x.transport_ended("fuzz input ended");
      break;
    }
    std::string_view line = next_piece();
    auto reply = x.client_line(line);
    if (auto* r = std::get_if<SaslExchange::Respond>(&reply); r != nullptr && r->bytes.size() > line.size()) std::abort();
  }
  // Once done, nothing more may go to authserv.
  if (x.done() && std::holds_alternative<SaslExchange::Respond>(x.client_line("AAAA"))) std::abort();
  return 0;
}
