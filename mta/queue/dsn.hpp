// dsn.hpp: the delivery status notification builder (RFC 3464 multipart/report, RFC 3461 NOTIFY,
// RET, ENVID, ORCPT; RFC 6533 for internationalized mail). Pure: no clock, no I/O.
#pragma once

#include <cstddef>
#include <span>
#include <string>
#include <string_view>

#include "mta/queue/schema.hpp"

namespace mta::queue {

// RFC 3464 §2.3.3. One DSN carries recipients of one action (the subject and the returned content
// depend on it).
enum class DsnAction { Failed, Delayed, Delivered, Relayed };
std::string_view action_name(DsnAction action);

struct DsnRecipient {
  std::string address;     // Final-Recipient
  std::string orcpt_type;  // Original-Recipient, when ORCPT was given
  std::string orcpt;
  DsnAction action = DsnAction::Failed;
  std::string status;       // RFC 3463 code, "5.1.1"; a default per action when empty
  std::string remote_mta;   // the host that gave the reply, or empty
  uint16_t code = 0;        // the reply (Diagnostic-Code: smtp; code text); 0: none
  std::string reply;
  UnixMs last_attempt = 0;      // 0: no attempt was made
  UnixMs will_retry_until = 0;  // "delayed" only
};

struct DsnOptions {
  std::string reporting_mta = "localhost";  // this host's name (Reporting-MTA, From:, Message-ID)
  std::string queue_id;                     // the original message's id (for the reader and the logs)
  std::string dsn_id;                       // the DSN's own queue id (its Message-ID)
  UnixMs now = 0;
  // A larger original comes back as headers only: a bounce must not double a huge message's cost.
  size_t max_return = size_t{10} << 20;
};

// The whole DSN message (headers and body, CRLF lines), addressed to envelope.reverse_path, which
// must not be empty (the caller drops bounces of bounces, RFC 3461 §6.2). `original` is the
// message as queued (Received: header first). Content is returned in full only for "failed"
// recipients, when RET is not HDRS and it fits max_return (RFC 3461 §4.3); headers otherwise.
std::string make_dsn(const Envelope& envelope, std::span<const DsnRecipient> recipients, const DsnOptions& options,
                     std::string_view original);

// The BODY type the DSN needs when it is queued (8BITMIME when it carries 8-bit bytes).
BodyType dsn_body_type(const Envelope& original_envelope, std::string_view dsn);

// RFC 5322 §3.3 date-time in UTC: "Tue, 02 Jan 2024 03:04:05 +0000".
std::string rfc5322_date(UnixMs when);

// Text from a remote server or a client, made safe for a header field: no control bytes (a CR LF
// in a reply would start a new field), at most `max` bytes; bytes above 0x7f kept only with utf8
// (RFC 6533 global DSNs), else replaced by '?'.
std::string header_safe(std::string_view text, bool utf8, size_t max = 400);

}  // namespace mta::queue
