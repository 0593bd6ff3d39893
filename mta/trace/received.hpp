// received.hpp: the Received: trace header the mta puts on every message it accepts (RFC 5321
// §4.4, RFC 3848 protocol keywords), from what the session verified: the client's address, its
// forward-confirmed name, the HELO name as given, TLS, the authenticated user. Pure.
#pragma once

#include <cstdint>
#include <ctime>
#include <string>

namespace mta::trace {

struct ReceivedFacts {
  std::string helo;         // as the client sent it (sanitized here: it is the client's word)
  std::string client_name;  // forward-confirmed reverse name, empty when none
  std::string client_ip;    // "192.0.2.7" or "2001:db8::7"
  std::string by;           // our host name
  std::string queue_id;     // empty: no id clause
  std::string recipient;    // named only when the message has one recipient (RFC 5321 §7.6)
  bool esmtp = true;        // EHLO rather than HELO
  bool lmtp = false;
  std::string tls_version;  // "TLSv1.3"; empty: no TLS
  std::string tls_cipher;
  bool authenticated = false;  // the user is not named: who logged in is for our logs only
  std::time_t when = 0;
};

// The whole header field, folded at 78 columns, ending in CRLF.
std::string received_header(const ReceivedFacts& facts);

// RFC 5322 §3.3 date-time in UTC: "Mon, 07 Dec 2026 00:40:00 +0000".
std::string rfc5322_date(std::time_t when);

}  // namespace mta::trace
