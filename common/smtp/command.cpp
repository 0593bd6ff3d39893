// command.cpp: RFC 5321 §4.1 command arguments: paths (§4.1.2), ESMTP parameters (§4.1.2
// esmtp-param, RFC 1870, 3030, 3461, 4954, 6152, 6531) and the small commands' checks.
#include "common/smtp/command.hpp"

#include <arpa/inet.h>

#include <charconv>
#include <vector>

#include "common/ascii.hpp"

namespace common::smtp {

namespace {

constexpr EnhancedCode kSyntax{5, 5, 2};      // RFC 3463 X.5.2: syntax error
constexpr EnhancedCode kBadArgs{5, 5, 4};     // X.5.4: invalid command arguments
constexpr EnhancedCode kBadSender{5, 1, 7};   // X.1.7: bad sender's mailbox address syntax
constexpr EnhancedCode kBadRcpt{5, 1, 3};     // X.1.3: bad destination mailbox address syntax
constexpr EnhancedCode kNonAscii{5, 6, 7};    // X.6.7 (RFC 6531 §3.5): non-ASCII address not permitted
constexpr EnhancedCode kTooBig{5, 3, 4};      // X.3.4: message too big for system

bool is_atext(char c) {
  // RFC 5322 §3.2.3 atext, as RFC 5321 §4.1.2 Atom uses it.
  if (ascii::is_alnum(c)) return true;
  switch (c) {
    case '!': case '#': case '$': case '%': case '&': case '\'': case '*': case '+': case '-':
    case '/': case '=': case '?': case '^': case '_': case '`': case '{': case '|': case '}': case '~':
      return true;
    default:
      return false;
  }
}

bool high(char c) { return static_cast<unsigned char>(c) >= 0x80; }

std::string_view trim_blanks(std::string_view s) {
  while (!s.empty() && ascii::is_blank(s.front())) s.remove_prefix(1);
  while (!s.empty() && ascii::is_blank(s.back())) s.remove_suffix(1);
  return s;
}

// sub-domain = Let-dig [Ldh-str] (RFC 5321 §4.1.2); RFC 6531 §3.3 adds U-labels, taken here as
// labels whose non-ASCII bytes count as letters (the UTF-8 itself is checked by the caller).
bool valid_domain(std::string_view d, bool utf8) {
  if (d.empty()) return false;
  size_t label = 0;
  char prev = '.';
  for (char c : d) {
    if (c == '.') {
      if (prev == '.' || prev == '-' || label == 0) return false;
      label = 0;
    } else if (ascii::is_alnum(c) || (utf8 && high(c))) {
      ++label;
    } else if (c == '-') {
      if (prev == '.') return false;
      ++label;
    } else {
      return false;
    }
    // RFC 1035 §2.3.4: a label is at most 63 octets.
    if (label > 63) return false;
    prev = c;
  }
  return prev != '.' && prev != '-';
}

bool valid_ipv4(std::string_view s) {
  // IPv4-address-literal = Snum 3("." Snum), Snum = 1*3DIGIT representing 0-255.
  int parts = 0;
  size_t at = 0;
  while (true) {
    size_t start = at;
    unsigned v = 0;
    while (at < s.size() && ascii::is_digit(s[at]) && at - start < 3) v = v * 10 + (s[at++] - '0');
    if (at == start || v > 255) return false;
    ++parts;
    if (at == s.size()) break;
    if (s[at] != '.' || parts == 4) return false;
    ++at;
  }
  return parts == 4;
}

// address-literal = "[" ( IPv4 / "IPv6:" IPv6 / Standardized-tag ":" 1*dcontent ) "]".
bool valid_literal(std::string_view lit, DomainKind& kind) {
  if (lit.size() < 3 || lit.front() != '[' || lit.back() != ']') return false;
  std::string_view in = lit.substr(1, lit.size() - 2);
  if (in.size() > 5 && ascii::iequals(in.substr(0, 5), "IPv6:")) {
    // inet_pton accepts the same four forms as RFC 5321's IPv6-addr and no zone index.
    std::string addr(in.substr(5));
    unsigned char buf[16];
    if (addr.size() > 45 || inet_pton(AF_INET6, addr.c_str(), buf) != 1) return false;
    kind = DomainKind::Ipv6;
    return true;
  }
  if (!in.empty() && ascii::is_digit(in.front())) {
    kind = DomainKind::Ipv4;
    return valid_ipv4(in);
  }
  size_t colon = in.find(':');
  if (colon == std::string_view::npos || colon == 0 || colon + 1 == in.size()) return false;
  std::string_view tag = in.substr(0, colon);
  for (char c : tag) {
    if (!ascii::is_alnum(c) && c != '-') return false;
  }
  if (!ascii::is_alnum(tag.front()) || !ascii::is_alnum(tag.back())) return false;
  for (char c : in.substr(colon + 1)) {
    auto u = static_cast<unsigned char>(c);
    if (!((u >= 33 && u <= 90) || (u >= 94 && u <= 126))) return false;  // dcontent
  }
  kind = DomainKind::General;
  return true;
}

tl::unexpected<SmtpError> path_error(bool sender, const char* what, const char* reason) {
  return refuse(501, sender ? kBadSender : kBadRcpt,
                std::string(sender ? "Bad sender address syntax: " : "Bad recipient address syntax: ") + what, reason);
}

// Index just past the '>' that closes the path starting at text[0] == '<', skipping quoted
// strings (a '>' inside "..." belongs to the local part); npos when it never closes.
size_t path_end(std::string_view text) {
  bool quoted = false;
  for (size_t i = 1; i < text.size(); ++i) {
    char c = text[i];
    if (quoted) {
      if (c == '\\') {
        ++i;
      } else if (c == '"') {
        quoted = false;
      }
    } else if (c == '"') {
      quoted = true;
    } else if (c == '>') {
      return i + 1;
    }
  }
  return std::string_view::npos;
}

SmtpResult<Path> parse_path_impl(std::string_view text, bool reverse, bool utf8_allowed, const CommandLimits& limits) {
  const bool sender = reverse;
  if (text.size() < 2 || text.front() != '<' || text.back() != '>') return path_error(sender, "angle brackets required", "path_syntax");
  if (text.size() > limits.max_path) return path_error(sender, "path too long", "path_too_long");  // §4.5.3.1.3
  Path path;
  std::string_view in = text.substr(1, text.size() - 2);
  if (in.empty()) {
    if (!reverse) return path_error(sender, "empty path", "path_null_rcpt");
    path.null = true;
    return path;
  }
  bool any_high = false;
  for (char c : in) {
    if (high(c)) any_high = true;
    // Controls and blanks never belong in a path outside a quoted string (checked there).
    if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) return path_error(sender, "control character", "path_control");
  }
  if (any_high) {
    if (!valid_utf8(in)) return path_error(sender, "invalid UTF-8", "path_bad_utf8");
    if (!utf8_allowed)
      return refuse(553, kNonAscii, "Non-ASCII address requires SMTPUTF8", "utf8_without_smtputf8");
  }
  // A-d-l ":" (source route): RFC 5321 §4.1.1.3 and Appendix C say to accept it and ignore the
  // route, delivering to the mailbox at the end; its domains still have to parse.
  if (in.front() == '@') {
    size_t colon = in.find(':');
    if (colon == std::string_view::npos) return path_error(sender, "source route without ':'", "path_route");
    std::string_view route = in.substr(0, colon);
    while (!route.empty()) {
      size_t comma = route.find(',');
      std::string_view hop = route.substr(0, comma);
      if (hop.size() < 2 || hop.front() != '@' || !valid_domain(hop.substr(1), false))
        return path_error(sender, "bad source route", "path_route");
      route = comma == std::string_view::npos ? std::string_view{} : route.substr(comma + 1);
      if (comma != std::string_view::npos && route.empty()) return path_error(sender, "bad source route", "path_route");
    }
    path.source_route = true;
    in.remove_prefix(colon + 1);
  }
  Mailbox& mb = path.mailbox;
  mb.utf8 = any_high;
  size_t at = 0;
  if (!in.empty() && in.front() == '"') {
    // Quoted-string = DQUOTE *QcontentSMTP DQUOTE; qtextSMTP is %d32-33 / %d35-91 / %d93-126,
    // quoted-pairSMTP is "\" %d32-126 (RFC 5321 §4.1.2); RFC 6531 §3.3 adds UTF-8.
    at = 1;
    bool closed = false;
    while (at < in.size()) {
      char c = in[at];
      if (c == '"') {
        closed = true;
        ++at;
        break;
      }
      if (c == '\\') {
        if (at + 1 >= in.size()) break;
        char n = in[at + 1];
        if (static_cast<unsigned char>(n) < 32 || static_cast<unsigned char>(n) > 126) return path_error(sender, "bad quoted pair", "path_local");
        at += 2;
        continue;
      }
      if (!(high(c) || (c >= 32 && c <= 126))) return path_error(sender, "bad quoted string", "path_local");
      ++at;
    }
    if (!closed) return path_error(sender, "unterminated quoted string", "path_local");
    mb.quoted = true;
  } else {
    // Dot-string = Atom *("." Atom)
    char prev = '.';
    while (at < in.size() && in[at] != '@') {
      char c = in[at];
      if (c == '.') {
        if (prev == '.') return path_error(sender, "bad local part", "path_local");
      } else if (!is_atext(c) && !high(c)) {
        return path_error(sender, "bad local part", "path_local");
      }
      prev = c;
      ++at;
    }
    if (at == 0 || prev == '.') {
      return path_error(sender, "bad local part", "path_local");
    }
  }
  mb.local = std::string(in.substr(0, at));
  if (mb.local.size() > limits.max_local) return path_error(sender, "local part too long", "local_too_long");  // §4.5.3.1.1
  if (at == in.size()) {
    // RFC 5321 §4.1.1.3: "<Postmaster>" with no domain must be accepted as a recipient.
    if (!reverse && !mb.quoted && !path.source_route && ascii::iequals(mb.local, "postmaster")) {
      path.postmaster = true;
      return path;
    }
    return path_error(sender, "domain required", "path_no_domain");
  }
  if (in[at] != '@') return path_error(sender, "'@' expected", "path_syntax");
  std::string_view dom = in.substr(at + 1);
  if (dom.size() > limits.max_domain) return path_error(sender, "domain too long", "domain_too_long");  // §4.5.3.1.2
  if (!dom.empty() && dom.front() == '[') {
    if (!valid_literal(dom, mb.kind)) return path_error(sender, "bad address literal", "path_literal");
  } else if (!valid_domain(dom, true)) {
    return path_error(sender, "bad domain", "path_domain");
  } else {
    mb.kind = DomainKind::Name;
  }
  mb.domain = std::string(dom);
  return path;
}

// One esmtp-param (RFC 5321 §4.1.2): esmtp-keyword ["=" esmtp-value].
struct Param {
  std::string_view key;
  std::string_view value;
  bool has_value = false;
};

tl::unexpected<SmtpError> param_syntax(const char* what, const char* reason) {
  return refuse(501, kBadArgs, std::string("Syntax error in parameters: ") + what, reason);
}

tl::unexpected<SmtpError> param_unknown() {
  // RFC 5321 §4.1.1.11 and §4.2.3: 555, parameters not recognized or not implemented.
  return refuse(555, kBadArgs, "Unsupported parameter", "param_unknown");
}

SmtpResult<std::vector<Param>> split_params(std::string_view rest, const CommandLimits& limits) {
  std::vector<Param> out;
  rest = trim_blanks(rest);
  while (!rest.empty()) {
    size_t sp = 0;
    while (sp < rest.size() && !ascii::is_blank(rest[sp])) ++sp;
    std::string_view tok = rest.substr(0, sp);
    rest = trim_blanks(rest.substr(sp));
    if (out.size() >= limits.max_params) return refuse(501, kBadArgs, "Too many parameters", "param_count");
    Param p;
    size_t eq = tok.find('=');
    p.key = tok.substr(0, eq);
    if (p.key.empty() || !ascii::is_alnum(p.key.front())) return param_syntax("bad keyword", "param_syntax");
    for (char c : p.key) {
      if (!ascii::is_alnum(c) && c != '-') return param_syntax("bad keyword", "param_syntax");
    }
    if (eq != std::string_view::npos) {
      p.has_value = true;
      p.value = tok.substr(eq + 1);
      if (p.value.empty()) return param_syntax("empty value", "param_syntax");
      bool any_high = false;
      for (char c : p.value) {
        auto u = static_cast<unsigned char>(c);
        if (u >= 0x80) {
          any_high = true;
        } else if (u < 33 || u > 126 || c == '=') {  // esmtp-value = 1*(%d33-60 / %d62-126)
          return param_syntax("bad value", "param_syntax");
        }
      }
      if (any_high && !valid_utf8(p.value)) return param_syntax("invalid UTF-8", "param_bad_utf8");
    }
    for (auto& q : out) {
      if (ascii::iequals(q.key, p.key)) return param_syntax("duplicate parameter", "param_duplicate");
    }
    out.push_back(p);
  }
  return out;
}

bool has_high(std::string_view s) {
  for (char c : s) {
    if (high(c)) return true;
  }
  return false;
}

// Splits "FROM:<path> params" after checking the keyword; returns the path text and the rest.
SmtpResult<std::pair<std::string_view, std::string_view>> split_path(std::string_view args, std::string_view keyword,
                                                                      bool sender, const char* usage) {
  args = trim_blanks(args);
  if (args.size() < keyword.size() || !ascii::iequals(args.substr(0, keyword.size()), keyword))
    return refuse(501, kSyntax, usage, "command_syntax");
  args.remove_prefix(keyword.size());
  // RFC 5321 has no space after the colon, but common clients send "MAIL FROM: <a@b>"; the
  // angle brackets keep that unambiguous, so it is accepted.
  while (!args.empty() && args.front() == ' ') args.remove_prefix(1);
  if (args.empty() || args.front() != '<') return path_error(sender, "angle brackets required", "path_syntax");
  size_t end = path_end(args);
  if (end == std::string_view::npos) return path_error(sender, "unterminated path", "path_syntax");
  std::string_view rest = args.substr(end);
  if (!rest.empty() && !ascii::is_blank(rest.front())) return path_error(sender, "text after path", "path_syntax");
  return std::make_pair(args.substr(0, end), rest);
}

bool printable_ascii(std::string_view s) {
  for (char c : s) {
    auto u = static_cast<unsigned char>(c);
    if (u < 0x20 || u > 0x7e) return false;
  }
  return true;
}

}  // namespace

std::string Mailbox::local_value() const {
  if (!quoted) return local;
  std::string out;
  for (size_t i = 1; i + 1 < local.size(); ++i) {
    if (local[i] == '\\' && i + 2 < local.size()) ++i;
    out += local[i];
  }
  return out;
}

bool valid_utf8(std::string_view s) {
  size_t i = 0;
  while (i < s.size()) {
    auto c = static_cast<unsigned char>(s[i]);
    if (c < 0x80) {
      ++i;
      continue;
    }
    size_t n;
    uint32_t cp;
    if (c >= 0xc2 && c <= 0xdf) {
      n = 1;
      cp = c & 0x1f;
    } else if (c >= 0xe0 && c <= 0xef) {
      n = 2;
      cp = c & 0x0f;
    } else if (c >= 0xf0 && c <= 0xf4) {
      n = 3;
      cp = c & 0x07;
    } else {
      return false;  // continuation byte first, C0/C1 overlong lead, or beyond U+10FFFF
    }
    if (i + n >= s.size()) return false;  // truncated sequence
    for (size_t k = 1; k <= n; ++k) {
      auto b = static_cast<unsigned char>(s[i + k]);
      if ((b & 0xc0) != 0x80) return false;
      cp = (cp << 6) | (b & 0x3f);
    }
    // RFC 3629 §3: overlong forms, UTF-16 surrogates and code points past U+10FFFF are invalid.
    if ((n == 2 && cp < 0x800) || (n == 3 && (cp < 0x10000 || cp > 0x10ffff)) || (cp >= 0xd800 && cp <= 0xdfff))
      return false;
    i += n + 1;
  }
  return true;
}

bool valid_xid(std::string_view id) {
  if (id.empty() || id.size() > 64) return false;
  for (char c : id) {
    if (!ascii::is_alnum(c) && c != '.' && c != '_' && c != ':' && c != '-') return false;
  }
  return true;
}

std::optional<std::string> xtext_decode(std::string_view text) {
  // xtext = *( xchar / hexchar ); xchar is "!".."~" except "+" and "="; hexchar is "+" and two
  // upper-case hex digits (RFC 3461 §4).
  std::string out;
  out.reserve(text.size());
  for (size_t i = 0; i < text.size(); ++i) {
    char c = text[i];
    if (c == '+') {
      if (i + 2 >= text.size()) return std::nullopt;
      char h = text[i + 1], l = text[i + 2];
      auto val = [](char x) -> int {
        if (ascii::is_digit(x)) return x - '0';
        if (x >= 'A' && x <= 'F') return x - 'A' + 10;
        return -1;
      };
      if (val(h) < 0 || val(l) < 0) return std::nullopt;
      out += static_cast<char>(val(h) * 16 + val(l));
      i += 2;
    } else if (c == '=' || c < '!' || c > '~') {
      return std::nullopt;
    } else {
      out += c;
    }
  }
  return out;
}

std::string xtext_encode(std::string_view text) {
  constexpr char kHex[] = "0123456789ABCDEF";
  std::string out;
  for (char c : text) {
    if (c == '+' || c == '=' || c < '!' || c > '~') {
      auto u = static_cast<unsigned char>(c);
      out += '+';
      out += kHex[u >> 4];
      out += kHex[u & 15];
    } else {
      out += c;
    }
  }
  return out;
}

SmtpResult<Path> parse_path(std::string_view text, bool reverse, bool utf8_allowed, const CommandLimits& limits) {
  return parse_path_impl(text, reverse, utf8_allowed, limits);
}

SmtpResult<HeloArgs> parse_helo(std::string_view args, bool extended, const CommandLimits& limits) {
  args = trim_blanks(args);
  const char* usage = extended ? "Syntax: EHLO hostname" : "Syntax: HELO hostname";
  if (args.empty()) return refuse(501, kSyntax, usage, "helo_missing");
  HeloArgs out;
  out.name = std::string(args);
  if (args.size() > limits.max_domain + 2) return refuse(501, kBadArgs, "Host name too long", "helo_too_long");
  if (!printable_ascii(args)) return refuse(501, kBadArgs, "Invalid host name", "helo_invalid");
  bool ok = false;
  if (args.front() == '[') {
    ok = extended && valid_literal(args, out.kind);
  } else if (args.size() <= limits.max_domain && valid_domain(args, false)) {
    out.kind = DomainKind::Name;
    ok = true;
  }
  if (ok) return out;
  if (!limits.strict_helo) {
    for (char c : args) {
      if (ascii::is_blank(c)) return refuse(501, kSyntax, usage, "helo_invalid");
    }
    out.kind = DomainKind::Other;
    return out;
  }
  return refuse(501, kBadArgs, "Invalid host name", "helo_invalid");
}

SmtpResult<MailArgs> parse_mail(std::string_view args, const CommandLimits& limits) {
  auto split = split_path(args, "FROM:", true, "Syntax: MAIL FROM:<address>");
  if (!split) return tl::unexpected(split.error());
  auto params = split_params(split->second, limits);
  if (!params) return tl::unexpected(params.error());
  MailArgs out;
  // RFC 6531 §3.4: SMTPUTF8 on this MAIL is what allows UTF-8 in its own path, so it is read first.
  for (auto& p : *params) {
    if (ascii::iequals(p.key, "SMTPUTF8")) {
      if (!limits.smtputf8) return param_unknown();
      if (p.has_value) return param_syntax("SMTPUTF8 takes no value", "param_syntax");
      out.params.smtputf8 = true;
    }
  }
  auto path = parse_path_impl(split->first, true, out.params.smtputf8, limits);
  if (!path) return tl::unexpected(path.error());
  out.path = std::move(*path);
  for (auto& p : *params) {
    if (ascii::iequals(p.key, "SMTPUTF8")) continue;
    if (has_high(p.value) && !out.params.smtputf8)
      return refuse(553, kNonAscii, "Non-ASCII parameter requires SMTPUTF8", "utf8_without_smtputf8");
    if (ascii::iequals(p.key, "SIZE")) {
      // RFC 1870 §3: SIZE=1*20DIGIT; a declared size over our limit is refused here (§6.1), before
      // any byte of the message is sent.
      if (!limits.size) return param_unknown();
      if (!p.has_value || p.value.size() > 20) return param_syntax("bad SIZE", "param_syntax");
      uint64_t n = 0;
      auto [ptr, ec] = std::from_chars(p.value.data(), p.value.data() + p.value.size(), n);
      if (ptr != p.value.data() + p.value.size() && ec != std::errc::result_out_of_range)
        return param_syntax("bad SIZE", "param_syntax");
      bool overflow = ec == std::errc::result_out_of_range;
      if (limits.max_message && (overflow || n > limits.max_message))
        return refuse(552, kTooBig, "Message size exceeds fixed maximum message size", "size_declared");
      if (overflow) return param_syntax("bad SIZE", "param_syntax");
      out.params.size = n;
    } else if (ascii::iequals(p.key, "BODY")) {
      if (!p.has_value) return param_syntax("bad BODY", "param_syntax");
      if (ascii::iequals(p.value, "7BIT")) {
        out.params.body = Body::SevenBit;
      } else if (ascii::iequals(p.value, "8BITMIME")) {
        if (!limits.eightbitmime) return param_unknown();
        out.params.body = Body::EightBitMime;
      } else if (ascii::iequals(p.value, "BINARYMIME")) {
        if (!limits.binarymime) return param_unknown();
        out.params.body = Body::BinaryMime;
      } else {
        return param_syntax("bad BODY", "param_syntax");
      }
    } else if (ascii::iequals(p.key, "RET")) {
      if (!limits.dsn) return param_unknown();
      if (ascii::iequals(p.value, "FULL")) {
        out.params.ret = Ret::Full;
      } else if (ascii::iequals(p.value, "HDRS")) {
        out.params.ret = Ret::Hdrs;
      } else {
        return param_syntax("bad RET", "param_syntax");
      }
    } else if (ascii::iequals(p.key, "ENVID")) {
      // RFC 3461 §4.4: xtext of printable ASCII, at most 100 characters.
      if (!limits.dsn) return param_unknown();
      auto v = xtext_decode(p.value);
      if (!p.has_value || p.value.size() > 100 || !v || !printable_ascii(*v)) return param_syntax("bad ENVID", "param_syntax");
      out.params.envid = std::move(*v);
    } else if (ascii::iequals(p.key, "AUTH")) {
      // RFC 4954 §5: AUTH=<> or AUTH=xtext(addr-spec).
      if (!limits.auth) return param_unknown();
      auto v = xtext_decode(p.value);
      if (!p.has_value || p.value.size() > 500 || !v || v->empty()) return param_syntax("bad AUTH", "param_syntax");
      out.params.auth = std::move(*v);
    } else if (ascii::iequals(p.key, "XID")) {
      if (!limits.xid) return param_unknown();
      if (!valid_xid(p.value)) return param_syntax("bad XID", "param_syntax");
      out.params.xid = std::string(p.value);
    } else {
      return param_unknown();
    }
  }
  return out;
}

SmtpResult<RcptArgs> parse_rcpt(std::string_view args, bool smtputf8, const CommandLimits& limits) {
  auto split = split_path(args, "TO:", false, "Syntax: RCPT TO:<address>");
  if (!split) return tl::unexpected(split.error());
  auto params = split_params(split->second, limits);
  if (!params) return tl::unexpected(params.error());
  RcptArgs out;
  auto path = parse_path_impl(split->first, false, smtputf8, limits);
  if (!path) return tl::unexpected(path.error());
  out.path = std::move(*path);
  for (auto& p : *params) {
    if (has_high(p.value) && !smtputf8)
      return refuse(553, kNonAscii, "Non-ASCII parameter requires SMTPUTF8", "utf8_without_smtputf8");
    if (ascii::iequals(p.key, "NOTIFY")) {
      // RFC 3461 §4.1: "NEVER" alone, or a comma list of SUCCESS, FAILURE, DELAY.
      if (!limits.dsn) return param_unknown();
      if (!p.has_value) return param_syntax("bad NOTIFY", "param_syntax");
      std::string_view list = p.value;
      uint8_t bits = 0;
      while (true) {
        size_t comma = list.find(',');
        std::string_view item = list.substr(0, comma);
        uint8_t bit = ascii::iequals(item, "NEVER")     ? kNotifyNever
                      : ascii::iequals(item, "SUCCESS") ? kNotifySuccess
                      : ascii::iequals(item, "FAILURE") ? kNotifyFailure
                      : ascii::iequals(item, "DELAY")   ? kNotifyDelay
                                                        : 0;
        if (bit == 0 || (bits & bit)) return param_syntax("bad NOTIFY", "param_syntax");
        bits |= bit;
        if (comma == std::string_view::npos) break;
        list.remove_prefix(comma + 1);
      }
      if ((bits & kNotifyNever) && bits != kNotifyNever) return param_syntax("NOTIFY=NEVER with others", "param_syntax");
      out.params.notify = bits;
    } else if (ascii::iequals(p.key, "ORCPT")) {
      // RFC 3461 §4.2: addr-type ";" xtext, at most 500 characters. The "utf-8" type
      // (RFC 6533 §3) carries its address as utf-8-addr-xtext or, with SMTPUTF8, raw UTF-8:
      // it is kept as sent.
      if (!limits.dsn) return param_unknown();
      size_t semi = p.value.find(';');
      if (!p.has_value || p.value.size() > 500 || semi == std::string_view::npos || semi == 0 || semi + 1 == p.value.size())
        return param_syntax("bad ORCPT", "param_syntax");
      std::string_view type = p.value.substr(0, semi);
      for (char c : type) {
        if (!is_atext(c)) return param_syntax("bad ORCPT", "param_syntax");
      }
      std::string_view addr = p.value.substr(semi + 1);
      if (ascii::iequals(type, "utf-8")) {
        out.params.orcpt = std::string(addr);
      } else {
        auto v = xtext_decode(addr);
        if (!v) return param_syntax("bad ORCPT", "param_syntax");
        out.params.orcpt = std::move(*v);
      }
      out.params.orcpt_type = std::string(type);
    } else {
      return param_unknown();
    }
  }
  return out;
}

std::string format_path(const Path& path) {
  if (path.null) return "<>";
  return "<" + path.mailbox.address() + ">";
}

std::string format_mail(const MailArgs& mail) {
  const MailParams& p = mail.params;
  std::string out = "MAIL FROM:" + format_path(mail.path);
  if (p.size) out += " SIZE=" + std::to_string(*p.size);
  if (p.body) {
    out += *p.body == Body::SevenBit ? " BODY=7BIT" : *p.body == Body::EightBitMime ? " BODY=8BITMIME" : " BODY=BINARYMIME";
  }
  if (p.smtputf8) out += " SMTPUTF8";
  if (p.ret) out += *p.ret == Ret::Full ? " RET=FULL" : " RET=HDRS";
  if (p.envid) out += " ENVID=" + xtext_encode(*p.envid);
  if (p.auth) out += " AUTH=" + (*p.auth == "<>" ? std::string("<>") : xtext_encode(*p.auth));
  if (p.xid) out += " XID=" + *p.xid;
  out += "\r\n";
  return out;
}

std::string format_rcpt(const RcptArgs& rcpt) {
  const RcptParams& p = rcpt.params;
  std::string out = "RCPT TO:" + format_path(rcpt.path);
  if (p.notify) {
    std::string list;
    if (p.notify & kNotifyNever) list = "NEVER";
    if (p.notify & kNotifySuccess) list += "SUCCESS,";
    if (p.notify & kNotifyFailure) list += "FAILURE,";
    if (p.notify & kNotifyDelay) list += "DELAY,";
    if (list.back() == ',') list.pop_back();
    out += " NOTIFY=" + list;
  }
  if (p.orcpt && p.orcpt_type) {
    // The utf-8 type's address is already in its own encoding (RFC 6533 §3), kept as parsed.
    out += " ORCPT=" + *p.orcpt_type + ";" + (ascii::iequals(*p.orcpt_type, "utf-8") ? *p.orcpt : xtext_encode(*p.orcpt));
  }
  out += "\r\n";
  return out;
}

SmtpResult<BdatArgs> parse_bdat(std::string_view args, const CommandLimits& limits) {
  // bdat-cmd = "BDAT" SP chunk-size [ SP end-marker ] CR LF; chunk-size = 1*DIGIT;
  // end-marker = "LAST" (RFC 3030 §2).
  args = trim_blanks(args);
  size_t n = 0;
  while (n < args.size() && ascii::is_digit(args[n])) ++n;
  if (n == 0 || n > 20) return refuse(501, kBadArgs, "Syntax: BDAT size [LAST]", "bdat_syntax", true);
  BdatArgs out;
  auto [ptr, ec] = std::from_chars(args.data(), args.data() + n, out.size);
  if (ec != std::errc() || out.size > limits.max_chunk)
    return refuse(552, kTooBig, "Chunk exceeds fixed maximum size", "bdat_too_big", true);
  std::string_view rest = args.substr(n);
  if (!rest.empty()) {
    if (!ascii::is_blank(rest.front()) || !ascii::iequals(trim_blanks(rest), "LAST"))
      return refuse(501, kBadArgs, "Syntax: BDAT size [LAST]", "bdat_syntax", true);
    out.last = true;
  }
  return out;
}

SmtpResult<void> parse_no_args(std::string_view args) {
  if (!trim_blanks(args).empty()) return refuse(501, kBadArgs, "Syntax error (no parameters allowed)", "unexpected_args");
  return {};
}

SmtpResult<std::string_view> parse_string_arg(std::string_view args, bool required, bool utf8) {
  args = trim_blanks(args);
  if (args.empty() && required) return refuse(501, kBadArgs, "Argument required", "missing_args");
  for (char c : args) {
    auto u = static_cast<unsigned char>(c);
    if (u < 0x20 || u == 0x7f || (u >= 0x80 && !utf8)) return refuse(501, kBadArgs, "Invalid argument", "bad_args");
  }
  if (utf8 && !valid_utf8(args)) return refuse(501, kBadArgs, "Invalid UTF-8", "bad_args");
  return args;
}

}  // namespace common::smtp
