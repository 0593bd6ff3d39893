// dsn.cpp: RFC 3464 delivery status notifications (dsn.hpp).
#include "mta/queue/dsn.hpp"

#include <ctime>

namespace mta::queue {
namespace {

bool has_8bit(std::string_view s) {
  for (unsigned char c : s) {
    if (c >= 0x80) return true;
  }
  return false;
}

// The header block of a message, its blank line excluded; all of it when there is no body.
std::string_view header_block(std::string_view message) {
  for (size_t i = 0; i < message.size(); ++i) {
    if (message[i] != '\n') continue;
    if (i + 1 < message.size() && message[i + 1] == '\n') return message.substr(0, i + 1);
    if (i + 2 < message.size() && message[i + 1] == '\r' && message[i + 2] == '\n') return message.substr(0, i + 1);
  }
  return message;
}

// Appends text with every line ended by CRLF (a bare LF or CR in stored content becomes CRLF), so
// the report is valid RFC 5322 whatever the original's line ends.
void append_crlf_lines(std::string& out, std::string_view text) {
  for (size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    if (c == '\r') {
      out += "\r\n";
      if (i + 1 < text.size() && text[i + 1] == '\n') ++i;
    } else if (c == '\n') {
      out += "\r\n";
    } else {
      out.push_back(c);
    }
  }
  if (!out.ends_with("\r\n")) out += "\r\n";
}

std::string address_field(std::string_view type, std::string_view address, bool global) {
  // RFC 6533 §3: a non-ASCII address is of type utf-8; RFC 3464 §2.1.2 "rfc822" otherwise.
  std::string t(type.empty() ? (has_8bit(address) ? "utf-8" : "rfc822") : type);
  return header_safe(t, false, 64) + "; " + header_safe(address, global, 998 - 64);
}

std::string_view default_status(DsnAction action) {
  switch (action) {
    case DsnAction::Failed: return "5.0.0";
    case DsnAction::Delayed: return "4.0.0";
    case DsnAction::Delivered:
    case DsnAction::Relayed: return "2.0.0";
  }
  return "5.0.0";
}

bool valid_status(std::string_view s) {
  // RFC 3463 §2: class "." subject "." detail, digits only, class 2, 4 or 5.
  if (s.size() < 5 || (s[0] != '2' && s[0] != '4' && s[0] != '5') || s[1] != '.') return false;
  int dots = 0;
  size_t run = 0;
  for (size_t i = 2; i < s.size(); ++i) {
    if (s[i] == '.') {
      if (run == 0 || run > 3) return false;
      ++dots;
      run = 0;
    } else if (s[i] >= '0' && s[i] <= '9') {
      ++run;
    } else {
      return false;
    }
  }
  return dots == 1 && run > 0 && run <= 3;
}

// A status must agree with the action: success for delivered/relayed, a transient one for delayed;
// a failure may carry the last transient status when the queue lifetime ran out (RFC 3464 §2.3.4
// reports what was last seen; the Action says it is final).
bool status_fits(const DsnRecipient& r) {
  if (!valid_status(r.status)) return false;
  switch (r.action) {
    case DsnAction::Failed: return r.status[0] == '5' || r.status[0] == '4';
    case DsnAction::Delayed: return r.status[0] == '4';
    case DsnAction::Delivered:
    case DsnAction::Relayed: return r.status[0] == '2';
  }
  return false;
}

// The reply as the server gave it: "452 4.2.2 mailbox full" (RFC 3464 §2.3.6 smtp diagnostic).
std::string diagnostic(const DsnRecipient& r) {
  std::string out = std::to_string(r.code) + " ";
  const std::string reply = header_safe(r.reply, false, 400);
  if (valid_status(r.status) && !reply.starts_with(r.status)) out += r.status + " ";
  return out + reply;
}

}  // namespace

std::string_view action_name(DsnAction action) {
  switch (action) {
    case DsnAction::Failed: return "failed";
    case DsnAction::Delayed: return "delayed";
    case DsnAction::Delivered: return "delivered";
    case DsnAction::Relayed: return "relayed";
  }
  return "failed";
}

std::string header_safe(std::string_view text, bool utf8, size_t max) {
  std::string out;
  out.reserve(std::min(text.size(), max));
  for (unsigned char c : text) {
    if (c < 0x20 || c == 0x7f) {
      out.push_back(' ');
    } else if (c >= 0x80 && !utf8) {
      out.push_back('?');
    } else {
      out.push_back(static_cast<char>(c));
    }
  }
  if (out.size() > max) {
    size_t cut = max;
    // Never split a UTF-8 sequence: back up over continuation bytes.
    while (cut > 0 && (static_cast<unsigned char>(out[cut]) & 0xc0) == 0x80) --cut;
    out.resize(cut);
  }
  return out;
}

std::string rfc5322_date(UnixMs when) {
  const std::time_t t = static_cast<std::time_t>(when / 1000);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[64];
  std::strftime(buf, sizeof buf, "%a, %d %b %Y %H:%M:%S +0000", &tm);
  return buf;
}

BodyType dsn_body_type(const Envelope& original_envelope, std::string_view dsn) {
  if (!has_8bit(dsn) && dsn.find('\0') == std::string_view::npos) return BodyType::SevenBit;
  return original_envelope.body == BodyType::BinaryMime ? BodyType::BinaryMime : BodyType::EightBitMime;
}

std::string make_dsn(const Envelope& envelope, std::span<const DsnRecipient> recipients, const DsnOptions& options,
                     std::string_view original) {
  const DsnAction action = recipients.empty() ? DsnAction::Failed : recipients.front().action;
  bool global = envelope.smtputf8 || has_8bit(envelope.reverse_path);
  for (const auto& r : recipients) global = global || has_8bit(r.address) || has_8bit(r.orcpt);
  const std::string mta = header_safe(options.reporting_mta, false, 255);

  // RFC 3461 §4.3: RET=HDRS asks for headers only; the full content goes back only with a failure
  // (a delay or success notice is not a bounce), and only while it is not huge.
  const bool full = action == DsnAction::Failed && envelope.ret != Ret::Hdrs && original.size() <= options.max_return;
  std::string_view returned = full ? original : header_block(original);
  if (returned.size() > options.max_return) returned = returned.substr(0, options.max_return);

  // RFC 2046 §5.1.1: the boundary must not occur in any enclosed part.
  std::string boundary = "=_postern_" + options.queue_id + "_" + options.dsn_id;
  for (int n = 0; returned.find(boundary) != std::string_view::npos; ++n) boundary += "_" + std::to_string(n);

  std::string out;
  out.reserve(returned.size() + 4096);
  out += "From: Mail Delivery System <MAILER-DAEMON@" + mta + ">\r\n";
  out += "To: <" + header_safe(envelope.reverse_path, global, 998) + ">\r\n";
  switch (action) {
    case DsnAction::Failed: out += "Subject: Undelivered Mail Returned to Sender\r\n"; break;
    case DsnAction::Delayed: out += "Subject: Delayed Mail (still being retried)\r\n"; break;
    case DsnAction::Delivered:
    case DsnAction::Relayed: out += "Subject: Successful Mail Delivery Report\r\n"; break;
  }
  out += "Date: " + rfc5322_date(options.now) + "\r\n";
  out += "Message-ID: <" + options.dsn_id + ".dsn@" + mta + ">\r\n";
  // RFC 3834 §5: marks the message as automatic, so responders (vacation, lists) do not answer it.
  out += "Auto-Submitted: auto-replied\r\n";
  out += "MIME-Version: 1.0\r\n";
  // RFC 6522 §3: the report type names the machine-readable part that follows.
  out += "Content-Type: multipart/report; report-type=";
  out += global ? "global-delivery-status" : "delivery-status";
  out += ";\r\n\tboundary=\"" + boundary + "\"\r\n";
  out += "\r\nThis is a MIME-encapsulated message.\r\n\r\n";

  // Part 1: for people.
  out += "--" + boundary + "\r\n";
  out += global ? "Content-Type: text/plain; charset=utf-8\r\n" : "Content-Type: text/plain; charset=us-ascii\r\n";
  out += "Content-Description: Notification\r\n\r\n";
  out += "This is the mail system at " + mta + ".\r\n\r\n";
  switch (action) {
    case DsnAction::Failed:
      out += "Your message could not be delivered to one or more recipients.\r\n"
             "It is attached below. The mail system gave up on:\r\n\r\n";
      break;
    case DsnAction::Delayed:
      out += "Your message has not been delivered yet to the recipients below.\r\n"
             "The mail system is still trying; you do not need to send it again.\r\n\r\n";
      break;
    case DsnAction::Delivered:
    case DsnAction::Relayed:
      out += "Your message was delivered to the recipients below, as you asked to be told.\r\n\r\n";
      break;
  }
  for (const auto& r : recipients) {
    out += "  <" + header_safe(r.address, global, 500) + ">";
    if (r.code != 0) out += ": " + diagnostic(r);
    if (!r.remote_mta.empty()) out += " (from " + header_safe(r.remote_mta, false, 255) + ")";
    if (r.action == DsnAction::Delayed && r.will_retry_until != 0) {
      out += " (retried until " + rfc5322_date(r.will_retry_until) + ")";
    }
    out += "\r\n";
  }

  // Part 2: RFC 3464 §2.2 per-message fields, then §2.3 per-recipient fields, groups separated by a
  // blank line.
  out += "\r\n--" + boundary + "\r\n";
  out += global ? "Content-Type: message/global-delivery-status\r\n" : "Content-Type: message/delivery-status\r\n";
  out += "Content-Description: Delivery report\r\n\r\n";
  out += "Reporting-MTA: dns; " + mta + "\r\n";
  // RFC 3461 §4.4: ENVID is given back as the sender sent it (xtext-decoded), so it can match it.
  if (!envelope.envid.empty()) out += "Original-Envelope-Id: " + header_safe(envelope.envid, false, 100) + "\r\n";
  if (!options.queue_id.empty()) out += "X-Postern-Queue-ID: " + options.queue_id + "\r\n";
  if (envelope.arrival != 0) out += "Arrival-Date: " + rfc5322_date(envelope.arrival) + "\r\n";
  for (const auto& r : recipients) {
    out += "\r\n";
    // RFC 3464 §2.3.1: Original-Recipient only when ORCPT was given, exactly as given.
    if (!r.orcpt.empty()) out += "Original-Recipient: " + address_field(r.orcpt_type, r.orcpt, global) + "\r\n";
    out += "Final-Recipient: " + address_field("", r.address, global) + "\r\n";
    out += "Action: " + std::string(action_name(r.action)) + "\r\n";
    out += "Status: " + std::string(status_fits(r) ? std::string_view(r.status) : default_status(r.action)) + "\r\n";
    if (!r.remote_mta.empty()) out += "Remote-MTA: dns; " + header_safe(r.remote_mta, false, 255) + "\r\n";
    if (r.code != 0) out += "Diagnostic-Code: smtp; " + diagnostic(r) + "\r\n";
    if (r.last_attempt != 0) out += "Last-Attempt-Date: " + rfc5322_date(r.last_attempt) + "\r\n";
    if (r.action == DsnAction::Delayed && r.will_retry_until != 0) {
      out += "Will-Retry-Until: " + rfc5322_date(r.will_retry_until) + "\r\n";
    }
  }

  // Part 3: the original, whole or its headers (RFC 6522 §4 text/rfc822-headers; RFC 6533 §3
  // message/global and message/global-headers when it may carry UTF-8 headers).
  out += "\r\n--" + boundary + "\r\n";
  if (full) {
    out += global ? "Content-Type: message/global\r\n" : "Content-Type: message/rfc822\r\n";
    out += "Content-Description: Undelivered Message\r\n";
  } else {
    out += global ? "Content-Type: message/global-headers\r\n" : "Content-Type: text/rfc822-headers\r\n";
    out += "Content-Description: Message Headers\r\n";
  }
  // RFC 3030 §3: BINARYMIME content is kept byte for byte (line ends are not rewritten).
  const bool binary = full && envelope.body == BodyType::BinaryMime;
  if (binary) {
    out += "Content-Transfer-Encoding: binary\r\n\r\n";
    out.append(returned);
    if (!out.ends_with("\r\n")) out += "\r\n";
  } else {
    if (has_8bit(returned)) out += "Content-Transfer-Encoding: 8bit\r\n";
    out += "\r\n";
    append_crlf_lines(out, returned);
  }
  out += "\r\n--" + boundary + "--\r\n";
  return out;
}

}  // namespace mta::queue
