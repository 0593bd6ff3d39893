// routing.hpp: the pure decisions of delivery: what kind of destination a queue destination is, the
// order MX hosts are tried in, and how an SMTP/LMTP client status becomes the queue's outcome with
// its reply code and RFC 3463 status. No I/O.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/dns/resolver.hpp"
#include "common/net/address.hpp"
#include "common/smtpclient/client_session.hpp"
#include "mta/queue/ops.hpp"

namespace mta::delivery {

// What a queue destination (Recipient::destination) names.
struct DestinationKind {
  enum class Kind { Store, Local, Remote, Literal, Invalid };
  Kind kind = Kind::Invalid;
  std::string name;  // Store: the mailHost; Local: our domain; Remote: the domain; Literal: the text
  std::optional<common::net::IpAddress> address;  // Literal
};
// "store:<mailhost>", "local:<domain>", "[192.0.2.1]" or "[IPv6:2001:db8::1]" (RFC 5321 §4.1.3),
// or a domain.
DestinationKind classify(std::string_view destination);

// The MX hosts to try, in order: ascending preference, hosts of equal preference in a random order
// (RFC 5321 §5.1, so senders spread over them), duplicates dropped. `random` returns [0, 1).
struct MxPlan {
  bool null_mx = false;  // RFC 7505: "0 ." alone, the domain takes no mail
  std::vector<std::string> hosts;
};
MxPlan plan_mx(std::vector<common::dns::MxRecord> records, const std::function<double()>& random);

// The queue's view of one recipient's result.
struct Verdict {
  queue::Outcome outcome = queue::Outcome::TempFail;
  uint16_t code = 0;   // the server's reply code; 0 when no server said anything (connect, timeout)
  std::string status;  // RFC 3463 "5.1.1", always set
  std::string reply;   // the reply's text, or what went wrong
};
// final_delivery: the server is a store (LMTP): success is Delivered, else Relayed (the SMTP client
// does not pass NOTIFY/ORCPT on, so the next MTA never takes over the DSN duty: RFC 3461 §5.2.2).
Verdict verdict(const common::smtpclient::Status& status, bool final_delivery);

// Whether a failed transaction may go to the destination's next address: the message was never
// offered (connect, greeting, EHLO, TLS) and the refusal was about the server, not the message
// (a SIZE or SMTPUTF8 refusal before MAIL would be the same at every MX).
bool try_next_address(const common::smtpclient::DeliveryResult& result);

// A verdict of our own for a recipient no server answered for.
Verdict local_verdict(queue::Outcome outcome, std::string status, std::string reply, uint16_t code = 0);

}  // namespace mta::delivery
