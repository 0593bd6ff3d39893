// received.cpp: the Received: trace header (received.hpp).
#include "mta/trace/received.hpp"

#include <array>
#include <cstdio>
#include <vector>

namespace mta::trace {
namespace {

// The client's own words go into our header: only printable ASCII survives, and no character that
// would end the comment or the field (a forged "(...)" or CRLF could fake a trace of its own).
std::string clean(std::string_view text, size_t max = 64) {
  std::string out;
  for (char c : text.substr(0, max)) {
    const bool ok = c > 0x20 && c < 0x7f && c != '(' && c != ')' && c != '\\' && c != ';' && c != '[' && c != ']';
    out.push_back(ok ? c : '?');
  }
  return out.empty() ? "unknown" : out;
}

// RFC 3848: ESMTP, ESMTPA (AUTH), ESMTPS (TLS), ESMTPSA (both); LMTP likewise.
std::string protocol(const ReceivedFacts& f) {
  std::string p = f.lmtp ? "LMTP" : f.esmtp ? "ESMTP" : "SMTP";
  if (f.esmtp || f.lmtp) {
    if (!f.tls_version.empty()) p += "S";
    if (f.authenticated) p += "A";
  }
  return p;
}

// Folds between words so no line passes 78 characters (RFC 5322 §2.1.1).
std::string fold(const std::vector<std::string>& words) {
  std::string out;
  size_t column = 0;
  for (size_t i = 0; i < words.size(); ++i) {
    const std::string& w = words[i];
    if (i > 0) {
      if (column + 1 + w.size() > 78) {
        out += "\r\n\t";
        column = 8;
      } else {
        out += ' ';
        ++column;
      }
    }
    out += w;
    column += w.size();
  }
  return out + "\r\n";
}

}  // namespace

std::string rfc5322_date(std::time_t when) {
  static constexpr std::array<const char*, 7> kDays{"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
  static constexpr std::array<const char*, 12> kMonths{"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                                       "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
  std::tm tm{};
  gmtime_r(&when, &tm);
  char buf[64];
  std::snprintf(buf, sizeof buf, "%s, %02d %s %04d %02d:%02d:%02d +0000", kDays[static_cast<size_t>(tm.tm_wday)],
                tm.tm_mday, kMonths[static_cast<size_t>(tm.tm_mon)], tm.tm_year + 1900, tm.tm_hour, tm.tm_min,
                tm.tm_sec);
  return buf;
}

std::string received_header(const ReceivedFacts& f) {
  std::vector<std::string> words{"Received:", "from", clean(f.helo)};
  // The TCP-info comment (RFC 5321 §4.4): what we verified, whatever the HELO claimed.
  words.push_back("(" + (f.client_name.empty() ? std::string() : clean(f.client_name, 255) + " ") + "[" +
                  clean(f.client_ip, 64) + "])");
  words.insert(words.end(), {"by", clean(f.by, 255), "(Postern)", "with", protocol(f)});
  if (!f.tls_version.empty()) {
    words.insert(words.end(), {"(" + clean(f.tls_version, 16), "with", "cipher", clean(f.tls_cipher, 64) + ")"});
  }
  // The id clause is optional (RFC 5321 §4.4); the session writes the header before the queue has
  // named the message, and the log line "queued" joins the session to its queue id.
  if (!f.queue_id.empty()) words.insert(words.end(), {"id", clean(f.queue_id, 64)});
  if (!f.recipient.empty()) {
    words.push_back("for");
    words.push_back("<" + clean(f.recipient, 256) + ">");
  }
  words.back() += ";";
  const std::string date = rfc5322_date(f.when);
  // The date is one unit: fold before it, never inside.
  words.push_back(date);
  return fold(words);
}

}  // namespace mta::trace
