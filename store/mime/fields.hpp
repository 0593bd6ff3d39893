// fields.hpp: the header fields BODYSTRUCTURE and ENVELOPE are made of (RFC 2045 Content-*,
// RFC 2231 parameters, RFC 5322 addresses) and their IMAP spelling (RFC 3501 §4.3, §7.4.2). Pure.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace store::mime {

// A header value as IMAP carries it: line breaks of folding removed (RFC 5322 §2.2.3 unfolding),
// white space trimmed at both ends, NUL (which no IMAP string may hold) as U+FFFD.
std::string clean_value(std::string_view raw);

// RFC 3501 §4.3: NIL, a quoted string, or a literal when the text has 8-bit bytes, CR or LF.
void append_string(std::string& out, std::string_view s);
void append_nstring(std::string& out, const std::optional<std::string>& s);

struct Param {
  std::string name;  // lowercased (parameter names are case-insensitive, RFC 2045 §5.1)
  std::string value;
  friend bool operator==(const Param&, const Param&) = default;
};

// "; name=value" lists of Content-Type and Content-Disposition, with RFC 2231 continuations
// joined. As Dovecot and Cyrus serve them, an extended value ("name*=utf-8''%E2%82%AC") stays
// percent-encoded under the name "name*": BODYSTRUCTURE carries the text, clients decode it.
std::vector<Param> parse_params(std::string_view text);

struct ContentType {
  std::string type;     // as the header spells it
  std::string subtype;
  std::vector<Param> params;
  bool valid = false;   // false: no header or no "type/subtype", the RFC 2045 §5.2 default applies
};
ContentType parse_content_type(std::string_view value);

struct Disposition {
  std::string type;
  std::vector<Param> params;
};
std::optional<Disposition> parse_disposition(std::string_view value);

// Content-Language (RFC 3282): the tags in order.
std::vector<std::string> parse_language(std::string_view value);

// The mechanism token of Content-Transfer-Encoding; nullopt when the value is not a token.
std::optional<std::string> parse_encoding(std::string_view value);

// One item of an ENVELOPE address list (RFC 3501 §7.4.2): a mailbox, or a group's start
// (mailbox = group name, host NIL) or end (all NIL).
struct Address {
  std::optional<std::string> name;
  std::optional<std::string> adl;
  std::optional<std::string> mailbox;
  std::optional<std::string> host;
  friend bool operator==(const Address&, const Address&) = default;
};

// RFC 5322 §3.4 address lists with groups and the obsolete forms of §4.4 (routes, phrases with
// dots, CFWS between the pieces of an addr-spec). Display names keep RFC 2047 encoded words as
// they are, as IMAP requires; a missing local part or domain becomes Dovecot's MISSING_MAILBOX /
// MISSING_DOMAIN, since a NIL host would read as the start of a group.
std::vector<Address> parse_addresses(std::string_view value);
void append_address_list(std::string& out, const std::vector<Address>& list);

struct EnvelopeFields {
  std::optional<std::string> date, subject, from, sender, reply_to, to, cc, bcc, in_reply_to, message_id;
};
// The ENVELOPE of RFC 3501 §7.4.2, with Sender and Reply-To defaulting to From when absent or empty.
std::string render_envelope(const EnvelopeFields& f);

}  // namespace store::mime
