// parser.cpp: tokenizer and pattern classifier for access filters. Every malformed input becomes a
// Diagnostic with its position; nothing here allocates beyond the limits in AccessLimits.
#include "common/ascii.hpp"
#include "common/access/parser.hpp"

#include <algorithm>
#include <array>
#include <bit>
#include <charconv>
#include <optional>
#include <span>

#include "common/net/address.hpp"

namespace common::access {

std::string Diagnostic::to_string() const {
  return source + ":" + std::to_string(pos.line) + ":" + std::to_string(pos.column) + ": " +
         message;
}

std::string RuleInfo::to_string() const {
  return source + ":" + std::to_string(pos.line) + ": " + text;
}

namespace {

using common::ascii::lower;
using common::ascii::lowered;
using common::ascii::iequals;
using common::ascii::is_digit;
using common::ascii::is_alnum;

// tcpd separates list entries with blanks and/or commas (", \t\r\n").
bool is_separator(char c) {
  return c == ' ' || c == '\t' || c == ',' || c == '\r' || c == '\n' || c == '\f' || c == '\v';
}

bool is_bad_byte(char c) {
  auto u = static_cast<unsigned char>(c);
  return (u < 0x20 && !is_separator(c)) || u >= 0x7f;
}





using ascii::describe_byte;

// Collects diagnostics within their limits.
struct Sink {
  std::string_view source;
  const AccessLimits& limits;
  ParseErrors& errors;
  size_t& error_count;
  std::vector<Diagnostic>& warnings;

  void error(Position pos, std::string message) {
    ++error_count;
    if (errors.size() < limits.max_errors) {
      errors.push_back({std::string(source), pos, std::move(message)});
    }
  }
  void warn(Position pos, std::string message) {
    if (warnings.size() < limits.max_warnings) {
      warnings.push_back({std::string(source), pos, std::move(message)});
    }
  }
};

struct PosMap {
  std::span<const LinePiece> pieces;
  Position at(size_t offset) const {
    const LinePiece* p = &pieces.front();
    for (const auto& piece : pieces) {
      if (piece.offset <= offset) p = &piece;
    }
    return {p->line, static_cast<uint32_t>(p->column + (offset - p->offset))};
  }
};

struct Token {
  std::string_view text;
  size_t offset;  // in the logical line
};

// One token's text plus the means to point at any of its bytes.
struct TokenCtx {
  std::string_view text;
  size_t offset;
  const PosMap& map;
  Position at(size_t k) const { return map.at(offset + k); }
  TokenCtx sub(size_t from) const { return {text.substr(from), offset + from, map}; }
};

// Decimal 0..max without sign or leading zeros ("0" itself is fine); used for octets and lengths.
std::optional<unsigned> parse_decimal(std::string_view s, unsigned max) {
  if (s.empty() || s.size() > 3 || (s.size() > 1 && s[0] == '0')) return std::nullopt;
  unsigned v = 0;
  for (char c : s) {
    if (!is_digit(c)) return std::nullopt;
    v = v * 10 + static_cast<unsigned>(c - '0');
  }
  if (v > max) return std::nullopt;
  return v;
}

// Dotted quad, strict: four decimal octets, no leading zeros (inet_aton would read 010 as octal).
std::optional<uint32_t> parse_quad(std::string_view s) {
  uint32_t v = 0;
  for (int i = 0; i < 4; ++i) {
    size_t dot = s.find('.');
    std::string_view part = (i < 3) ? s.substr(0, dot) : s;
    if (i < 3 && dot == std::string_view::npos) return std::nullopt;
    auto octet = parse_decimal(part, 255);
    if (!octet) return std::nullopt;
    v = (v << 8) | *octet;
    if (i < 3) s.remove_prefix(dot + 1);
  }
  return v;
}

uint32_t v4_mask(unsigned len) { return len == 0 ? 0 : ~uint32_t{0} << (32 - len); }

void v6_mask(unsigned len, uint64_t out[2]) {
  out[0] = len == 0 ? 0 : (len >= 64 ? ~uint64_t{0} : ~uint64_t{0} << (64 - len));
  out[1] = len <= 64 ? 0 : (len >= 128 ? ~uint64_t{0} : ~uint64_t{0} << (128 - len));
}

bool is_host_keyword(std::string_view t) {
  return iequals(t, "LOCAL") || iequals(t, "KNOWN") || iequals(t, "UNKNOWN") ||
         iequals(t, "DNSSPOOFER") || iequals(t, "PARANOID");
}

// Host name (RFC 1123 letters, digits, hyphen; '_' tolerated as real DNS data has it).
bool check_host_name(const TokenCtx& t, Sink& sink) {
  std::string_view s = t.text;
  if (s.size() > 253) {
    sink.error(t.at(0), "host name longer than 253 bytes");
    return false;
  }
  size_t label = 0;
  for (size_t i = 0; i < s.size(); ++i) {
    char c = s[i];
    if (c == '.') {
      if (label == 0) {
        sink.error(t.at(i), "empty label in host name '" + std::string(s) + "'");
        return false;
      }
      label = 0;
      continue;
    }
    if (!is_alnum(c) && c != '-' && c != '_') {
      sink.error(t.at(i), "invalid " + describe_byte(c) + " in host name");
      return false;
    }
    if (++label > 63) {
      sink.error(t.at(i), "host name label longer than 63 bytes");
      return false;
    }
  }
  if (label == 0) {
    sink.error(t.at(s.size() == 0 ? 0 : s.size() - 1), "empty label in host name");
    return false;
  }
  return true;
}

std::optional<HostPattern> parse_host(const TokenCtx& t, Sink& sink);

std::optional<HostPattern> parse_v6(const TokenCtx& t, Sink& sink) {
  std::string_view s = t.text;
  size_t close = s.find(']');
  if (close == std::string_view::npos) {
    sink.error(t.at(0), "missing ']' after IPv6 address");
    return std::nullopt;
  }
  std::string_view inner = s.substr(1, close - 1);
  std::string_view rest = s.substr(close + 1);
  auto addr = net::IpAddress::parse(inner);
  if (!addr) {
    sink.error(t.at(1), "invalid IPv6 address '" + std::string(inner) + "'");
    return std::nullopt;
  }
  if (addr->is_v4()) {
    sink.error(t.at(0), "IPv4 address in brackets: write " + std::string(inner) + " without them");
    return std::nullopt;
  }
  unsigned len = 128;
  if (!rest.empty()) {
    if (rest[0] != '/') {
      sink.error(t.at(close + 1), "unexpected " + describe_byte(rest[0]) + " after ']'");
      return std::nullopt;
    }
    auto l = parse_decimal(rest.substr(1), 999);
    if (!l) {
      sink.error(t.at(close + 2), "invalid IPv6 prefix length '" + std::string(rest.substr(1)) + "'");
      return std::nullopt;
    }
    if (*l > 128) {
      sink.error(t.at(close + 2), "IPv6 prefix length " + std::to_string(*l) + " is over 128");
      return std::nullopt;
    }
    len = *l;
  }
  HostPattern p;
  p.kind = HostPattern::Kind::V6Net;
  p.prefix_len = static_cast<uint8_t>(len);
  auto b = addr->bytes();
  uint64_t half[2] = {0, 0};
  for (int i = 0; i < 16; ++i) half[i / 8] = (half[i / 8] << 8) | b[static_cast<size_t>(i)];
  v6_mask(len, p.v6_mask);
  p.v6_net[0] = half[0] & p.v6_mask[0];
  p.v6_net[1] = half[1] & p.v6_mask[1];
  if (p.v6_net[0] != half[0] || p.v6_net[1] != half[1]) {
    sink.warn(t.at(0), "host bits set in " + std::string(s) + ": only the first " +
                           std::to_string(len) + " bits are compared");
  }
  // Clients arrive unmapped (IpAddress::from_sockaddr), and families never cross-match.
  if (half[0] == 0 && (half[1] >> 32) == 0xffff && len >= 96) {
    sink.warn(t.at(0), "IPv4-mapped pattern " + std::string(s) +
                           " never matches: IPv4 clients are matched as IPv4, write a.b.c.d");
  }
  return p;
}

std::optional<HostPattern> parse_v4_slash(const TokenCtx& t, size_t slash, Sink& sink) {
  std::string_view s = t.text;
  std::string_view net_text = s.substr(0, slash);
  std::string_view right = s.substr(slash + 1);
  auto net = parse_quad(net_text);
  if (!net) {
    sink.error(t.at(0), "'" + std::string(net_text) + "' before '/' is not an IPv4 address a.b.c.d");
    return std::nullopt;
  }
  HostPattern p;
  p.kind = HostPattern::Kind::V4Net;
  if (right.find('.') != std::string_view::npos) {  // net/mask (S2 §7 Wildcard Patterns)
    auto mask = parse_quad(right);
    if (!mask) {
      sink.error(t.at(slash + 1), "invalid netmask '" + std::string(right) + "'");
      return std::nullopt;
    }
    uint32_t inv = ~*mask;
    if ((inv & (inv + 1)) != 0) {  // ones then zeros only: inv must be 2^k - 1
      sink.error(t.at(slash + 1), "non-contiguous netmask " + std::string(right) +
                                      " is not supported; write the network as a.b.c.d/len");
      return std::nullopt;
    }
    if ((*net & ~*mask) != 0) {
      // The seed matches when net == addr & mask, so such a rule could never match.
      sink.error(t.at(0), "net " + std::string(net_text) + " has bits outside mask " +
                              std::string(right) + ", so it could never match");
      return std::nullopt;
    }
    p.v4_mask = *mask;
    p.prefix_len = static_cast<uint8_t>(32 - std::popcount(inv));
  } else {  // CIDR: the seed masks both sides, so host bits in n.n.n.n are ignored
    auto len = parse_decimal(right, 999);
    if (!len) {
      sink.error(t.at(slash + 1), "invalid prefix length '" + std::string(right) + "'");
      return std::nullopt;
    }
    if (*len > 32) {
      sink.error(t.at(slash + 1), "IPv4 prefix length " + std::to_string(*len) + " is over 32");
      return std::nullopt;
    }
    p.prefix_len = static_cast<uint8_t>(*len);
    p.v4_mask = v4_mask(*len);
    if ((*net & ~p.v4_mask) != 0) {
      sink.warn(t.at(0), "host bits set in " + std::string(s) + ": only the first " +
                             std::to_string(*len) + " bits are compared");
    }
  }
  p.v4_net = *net & p.v4_mask;
  return p;
}

std::optional<HostPattern> parse_host(const TokenCtx& t, Sink& sink) {
  std::string_view s = t.text;
  HostPattern p;
  if (s.empty()) {
    sink.error(t.at(0), "empty host pattern");
    return std::nullopt;
  }
  if (s[0] == '@') {
    std::string_view group = s.substr(1);
    if (group.empty()) {
      sink.error(t.at(0), "'@' needs a netgroup name or a .domain after it");
      return std::nullopt;
    }
    if (group[0] == '.') {
      // "@.example1.com" (seed: virtual domains): empty user part plus a domain pattern. tcpd
      // would look up a netgroup called ".example1.com"; the seed says it admits the hosts of
      // that domain, and a netgroup name never starts with a dot, so we read it as the domain.
      auto inner = parse_host(t.sub(1), sink);
      if (inner && inner->kind != HostPattern::Kind::NameSuffix) {
        sink.error(t.at(1), "expected a .domain after '@'");
        return std::nullopt;
      }
      return inner;
    }
    for (size_t i = 0; i < group.size(); ++i) {
      char c = group[i];
      if (!is_alnum(c) && c != '-' && c != '_' && c != '.') {
        sink.error(t.at(i + 1), "invalid " + describe_byte(c) + " in netgroup name");
        return std::nullopt;
      }
    }
    p.kind = HostPattern::Kind::Netgroup;
    p.name = std::string(group);  // NIS netgroup names are case-sensitive (hosts_access(5))
    sink.warn(t.at(0), "netgroup " + std::string(s) + " never matches: NIS netgroups are not supported");
    return p;
  }
  if (s == "*" || iequals(s, "ALL")) return p;
  if (iequals(s, "LOCAL")) {
    p.kind = HostPattern::Kind::Local;
    return p;
  }
  if (iequals(s, "KNOWN")) {
    p.kind = HostPattern::Kind::Known;
    return p;
  }
  if (iequals(s, "UNKNOWN")) {
    p.kind = HostPattern::Kind::Unknown;
    return p;
  }
  if (iequals(s, "DNSSPOOFER") || iequals(s, "PARANOID")) {  // PARANOID: tcpd's name for it
    p.kind = HostPattern::Kind::DnsSpoofer;
    return p;
  }
  if (iequals(s, "EXCEPT")) {
    sink.error(t.at(0), "EXCEPT must stand alone between two lists");
    return std::nullopt;
  }
  if (s[0] == '[') return parse_v6(t, sink);
  if (s.find_first_of("*?") != std::string_view::npos) {
    sink.error(t.at(s.find_first_of("*?")),
               "glob wildcards (* and ?) are not supported: use ALL, .domain or an address pattern");
    return std::nullopt;
  }
  if (s[0] == '/') {
    sink.error(t.at(0), "file patterns (/path) are not supported");
    return std::nullopt;
  }
  if (size_t slash = s.find('/'); slash != std::string_view::npos) return parse_v4_slash(t, slash, sink);
  if (s[0] == '.') {  // domain suffix, matched on a label boundary
    std::string_view body = s.substr(1);
    if (!body.empty() && body.back() == '.') body.remove_suffix(1);  // absolute form
    if (body.empty()) {
      sink.error(t.at(0), "'" + std::string(s) + "' names no domain");
      return std::nullopt;
    }
    if (!check_host_name({body, t.offset + 1, t.map}, sink)) return std::nullopt;
    p.kind = HostPattern::Kind::NameSuffix;
    p.name = "." + lowered(body);
    return p;
  }
  bool numeric = std::all_of(s.begin(), s.end(), [](char c) { return is_digit(c) || c == '.'; });
  if (numeric) {
    if (s.back() == '.') {  // tcpd address prefix "131.155." on octet boundaries
      std::string_view body = s.substr(0, s.size() - 1);
      uint32_t v = 0;
      unsigned octets = 0;
      size_t pos = 0;
      while (true) {
        size_t dot = body.find('.', pos);
        std::string_view part = body.substr(pos, dot == std::string_view::npos ? body.npos : dot - pos);
        auto o = parse_decimal(part, 255);
        if (!o) {
          sink.error(t.at(pos), "invalid octet '" + std::string(part) + "' in address prefix");
          return std::nullopt;
        }
        v = (v << 8) | *o;
        ++octets;
        if (dot == std::string_view::npos) break;
        pos = dot + 1;
      }
      if (octets > 3) {
        sink.error(t.at(0), "'" + std::string(s) + "' has four octets and a trailing dot: write " +
                                std::string(body) + " for one address");
        return std::nullopt;
      }
      p.kind = HostPattern::Kind::V4Net;
      p.prefix_len = static_cast<uint8_t>(8 * octets);
      p.v4_mask = v4_mask(8 * octets);
      p.v4_net = v << (32 - 8 * octets);
      return p;
    }
    auto v = parse_quad(s);
    if (!v) {
      sink.error(t.at(0), "'" + std::string(s) +
                              "' is not an IPv4 address (a prefix ends with a dot: 10.1.)");
      return std::nullopt;
    }
    p.kind = HostPattern::Kind::V4Net;
    p.prefix_len = 32;
    p.v4_mask = ~uint32_t{0};
    p.v4_net = *v;
    return p;
  }
  std::string_view name = s;
  if (name.back() == '.') {
    // tcpd reads "host.example.com." as a name prefix, which would also match
    // "host.example.com.attacker.net"; we take it as the absolute name instead.
    name.remove_suffix(1);
    sink.warn(t.at(s.size() - 1), "trailing dot: '" + std::string(s) +
                                      "' is taken as the absolute name, not as a tcpd name prefix");
  }
  if (!check_host_name({name, t.offset, t.map}, sink)) return std::nullopt;
  p.kind = HostPattern::Kind::NameExact;
  p.name = lowered(name);
  return p;
}

bool is_known_service(std::string_view name) {
  for (const char* k : kKnownServices) {
    if (name == k) return true;
  }
  return false;
}

std::optional<ServiceEntry> parse_service(const TokenCtx& t, Sink& sink) {
  std::string_view s = t.text;
  ServiceEntry e;
  if (s[0] == '@') {
    sink.error(t.at(0), "a service list entry cannot start with '@'");
    return std::nullopt;
  }
  std::string_view name = s;
  if (size_t at = s.find('@'); at != std::string_view::npos) {
    name = s.substr(0, at);
    if (at + 1 == s.size()) {
      sink.error(t.at(at), "service@ needs a host after '@'");
      return std::nullopt;
    }
    auto host = parse_host(t.sub(at + 1), sink);
    if (!host) return std::nullopt;
    e.has_host = true;
    e.host = std::move(*host);
  }
  if (name == "*" || iequals(name, "ALL")) {
    e.all = true;
    return e;
  }
  if (is_host_keyword(name)) {
    sink.error(t.at(0), std::string(name) + " matches hosts, not services");
    return std::nullopt;
  }
  if (name.size() > 64) {
    sink.error(t.at(0), "service name longer than 64 bytes");
    return std::nullopt;
  }
  for (size_t i = 0; i < name.size(); ++i) {
    char c = name[i];
    if (!is_alnum(c) && c != '-' && c != '_' && c != '.' && c != '+') {
      sink.error(t.at(i), "invalid " + describe_byte(c) + " in service name");
      return std::nullopt;
    }
  }
  e.name = lowered(name);
  if (!is_known_service(e.name)) {
    std::string msg = "unknown service '" + e.name + "'";
    if (e.name == "imaps" || e.name == "pops" || e.name == "pop3s" || e.name == "smtps") {
      msg += ": it never matches, as our service names do not depend on TLS ('imap' covers 143 "
             "and 993, 'pop' 110 and 995)";
    } else if (e.name == "pop3") {
      msg += ": did you mean 'pop'?";
    } else if (e.name == "imap4") {
      msg += ": did you mean 'imap'?";
    } else {
      msg += " (known: smtp submission imap pop lmtp sieve ens authserv mailstore http)";
    }
    sink.warn(t.at(0), std::move(msg));
  }
  return e;
}

std::optional<ClientEntry> parse_client(const TokenCtx& t, Sink& sink) {
  std::string_view s = t.text;
  ClientEntry e;
  size_t at = s[0] == '@' ? std::string_view::npos : s.find('@');
  if (at == std::string_view::npos) {
    auto host = parse_host(t, sink);
    if (!host) return std::nullopt;
    e.host = std::move(*host);
    return e;
  }
  std::string_view user = s.substr(0, at);
  if (at + 1 == s.size()) {
    sink.error(t.at(at), "user@ needs a host after '@'");
    return std::nullopt;
  }
  e.has_user = true;
  if (user == "*" || iequals(user, "ALL")) {
    e.user.kind = UserPattern::Kind::All;
  } else if (iequals(user, "KNOWN")) {
    e.user.kind = UserPattern::Kind::Known;
  } else if (iequals(user, "UNKNOWN")) {
    e.user.kind = UserPattern::Kind::Unknown;
  } else if (is_host_keyword(user)) {
    sink.error(t.at(0), std::string(user) + " is not a user pattern (ALL, KNOWN, UNKNOWN or a name)");
    return std::nullopt;
  } else {
    if (user.size() > 64) {
      sink.error(t.at(0), "user name longer than 64 bytes");
      return std::nullopt;
    }
    for (size_t i = 0; i < user.size(); ++i) {
      char c = user[i];
      if (!is_alnum(c) && std::string_view("._-+=%!~").find(c) == std::string_view::npos) {
        sink.error(t.at(i), "invalid " + describe_byte(c) + " in user name");
        return std::nullopt;
      }
    }
    e.user.kind = UserPattern::Kind::Exact;
    e.user.name = lowered(user);
  }
  auto host = parse_host(t.sub(at + 1), sink);
  if (!host) return std::nullopt;
  e.host = std::move(*host);
  return e;
}

// Splits tokens at EXCEPT into the levels of a right-associative chain.
template <class Entry, class ParseFn>
std::optional<ExceptChain<Entry>> parse_chain(std::span<const Token> tokens, const PosMap& map,
                                              std::string_view what, ParseFn parse, Sink& sink) {
  ExceptChain<Entry> chain(1);
  bool ok = true;
  size_t in_level = 0;  // tokens in the current level, parsed or not
  const Token* last_except = nullptr;
  for (const Token& tok : tokens) {
    if (iequals(tok.text, "EXCEPT")) {
      if (in_level == 0) {
        sink.error(map.at(tok.offset), "EXCEPT needs a " + std::string(what) + " list before it");
        return std::nullopt;
      }
      chain.emplace_back();
      in_level = 0;
      last_except = &tok;
      continue;
    }
    ++in_level;
    auto entry = parse(TokenCtx{tok.text, tok.offset, map}, sink);
    if (!entry) {
      ok = false;
      continue;
    }
    chain.back().push_back(std::move(*entry));
  }
  if (last_except != nullptr && in_level == 0) {
    sink.error(map.at(last_except->offset), "EXCEPT needs a " + std::string(what) + " list after it");
    return std::nullopt;
  }
  if (!ok) return std::nullopt;
  return chain;
}

// One rule: "serviceList : clientList". `text` is a logical line; errors go to sink.
// Comments exist in files only: in a compact string '#' is just a bad byte in a pattern.
std::optional<Rule> parse_rule(std::string_view text, std::span<const LinePiece> pieces,
                               RuleKind kind, bool comments, const AccessLimits& limits, Sink& sink) {
  PosMap map{pieces};
  std::vector<Token> services, clients;
  size_t colon = std::string_view::npos;
  size_t first = std::string_view::npos, end = 0;
  size_t i = 0;
  size_t count = 0;
  while (i < text.size()) {
    char c = text[i];
    if (is_separator(c)) {
      ++i;
      continue;
    }
    if (c == '#' && comments) break;  // a comment runs to the end of the line
    if (first == std::string_view::npos) first = i;
    if (c == ':') {
      if (colon != std::string_view::npos) {
        sink.error(map.at(i), "second ':' in a rule: write IPv6 addresses in brackets ([::1]); "
                              "tcpd shell commands and options are not supported");
        return std::nullopt;
      }
      colon = i++;
      end = i;
      continue;
    }
    size_t start = i;
    bool bracket = false;
    while (i < text.size()) {
      c = text[i];
      if (is_bad_byte(c)) {
        sink.error(map.at(i), c == '\0' ? std::string("NUL byte in rule")
                                        : "invalid " + describe_byte(c) + " in rule");
        return std::nullopt;
      }
      if (bracket) {
        if (c == ']') bracket = false;
        if (is_separator(c)) break;
      } else {
        if (is_separator(c) || c == ':') break;
        if (c == '[') bracket = true;
      }
      ++i;
    }
    if (bracket) {
      sink.error(map.at(start), "missing ']' in '" + std::string(text.substr(start, i - start)) + "'");
      return std::nullopt;
    }
    if (i - start > limits.max_token) {
      sink.error(map.at(start), "pattern longer than " + std::to_string(limits.max_token) + " bytes");
      return std::nullopt;
    }
    if (++count > limits.max_list_entries) {
      sink.error(map.at(start), "more than " + std::to_string(limits.max_list_entries) +
                                    " entries in one rule");
      return std::nullopt;
    }
    (colon == std::string_view::npos ? services : clients).push_back({text.substr(start, i - start), start});
    end = i;
  }
  if (first == std::string_view::npos) return std::nullopt;  // blank or comment
  if (colon == std::string_view::npos) {
    sink.error(map.at(end), "missing ':' between the service list and the client list");
    return std::nullopt;
  }
  if (services.empty()) {
    sink.error(map.at(colon), "empty service list before ':'");
    return std::nullopt;
  }
  if (clients.empty()) {
    sink.error(map.at(colon), "empty client list after ':'");
    return std::nullopt;
  }
  auto svc = parse_chain<ServiceEntry>(services, map, "service", parse_service, sink);
  auto cli = parse_chain<ClientEntry>(clients, map, "client", parse_client, sink);
  if (!svc || !cli) return std::nullopt;
  Rule rule;
  rule.info.kind = kind;
  rule.info.source = std::string(sink.source);
  rule.info.pos = map.at(first);
  rule.info.text = std::string(text.substr(first, end - first));
  rule.services = std::move(*svc);
  rule.clients = std::move(*cli);
  return rule;
}

}  // namespace

FilterParser::FilterParser(std::string source, RuleKind kind, AccessLimits limits)
    : source_(std::move(source)), kind_(kind), limits_(limits) {}

void FilterParser::feed(std::string_view bytes) {
  for (char c : bytes) {
    if (c == '\n') {
      end_physical_line();
      ++line_;
      column_ = 0;
      continue;
    }
    ++column_;
    ++raw_bytes_;
    before_last_ = last_;
    last_ = c;
    if (overflow_) continue;
    if (raw_bytes_ > limits_.max_line) {
      overflow_ = true;
      Sink sink{source_, limits_, errors_, error_count_, out_.warnings};
      sink.error({line_, column_}, "line longer than " + std::to_string(limits_.max_line) + " bytes");
      physical_.clear();
      physical_.shrink_to_fit();
      logical_.clear();
      logical_.shrink_to_fit();
      pieces_.clear();
      continue;
    }
    physical_.push_back(c);
  }
}

bool FilterParser::end_physical_line() {
  bool continued = last_ == '\\' || (last_ == '\r' && before_last_ == '\\');
  if (!overflow_) {
    std::string_view p = physical_;
    if (!p.empty() && p.back() == '\r') p.remove_suffix(1);  // CRLF files
    if (continued) p.remove_suffix(1);                         // tcpd joins without a blank
    pieces_.push_back({static_cast<uint32_t>(logical_.size()), line_, 1});
    logical_.append(p);
  }
  physical_.clear();
  last_ = before_last_ = 0;
  if (continued) {
    ++raw_bytes_;  // the newline counts toward the logical line's length
    return true;
  }
  end_logical_line();
  return false;
}

void FilterParser::end_logical_line() {
  if (!overflow_ && !logical_.empty()) {
    Sink sink{source_, limits_, errors_, error_count_, out_.warnings};
    auto rule = parse_rule(logical_, pieces_, kind_, true, limits_, sink);
    if (rule) {
      if (out_.rules.size() >= limits_.max_rules) {
        sink.error(rule->info.pos, "more than " + std::to_string(limits_.max_rules) + " rules");
      } else {
        out_.rules.push_back(std::move(*rule));
      }
    }
  }
  logical_.clear();
  pieces_.clear();
  raw_bytes_ = 0;
  overflow_ = false;
}

ParseResult<RuleList> FilterParser::finish() {
  if (raw_bytes_ > 0 || !logical_.empty() || overflow_) {
    if (end_physical_line()) end_logical_line();  // a backslash at the very end
  }
  if (error_count_ > errors_.size()) {
    errors_.push_back({source_, errors_.empty() ? Position{} : errors_.back().pos,
                       std::to_string(error_count_ - errors_.size()) + " more errors not shown"});
  }
  if (!errors_.empty()) return tl::unexpected(std::move(errors_));
  return std::move(out_);
}

ParseResult<RuleList> parse_filter(std::string_view text, std::string_view source, RuleKind kind,
                                   const AccessLimits& limits) {
  FilterParser parser(std::string(source), kind, limits);
  parser.feed(text);
  return parser.finish();
}

ParseResult<RuleList> parse_compact(std::string_view text, std::string_view source,
                                    const AccessLimits& limits) {
  RuleList out;
  ParseErrors errors;
  size_t error_count = 0;
  Sink sink{source, limits, errors, error_count, out.warnings};
  if (text.size() > limits.max_compact) {
    sink.error({1, static_cast<uint32_t>(limits.max_compact + 1)},
               "rules longer than " + std::to_string(limits.max_compact) + " bytes");
    return tl::unexpected(std::move(errors));
  }
  auto blank = [](char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\n'; };
  bool all_blank = std::all_of(text.begin(), text.end(), blank);
  size_t start = 0;
  bool bracket = false;
  for (size_t i = 0; i <= text.size(); ++i) {
    if (i < text.size()) {
      char c = text[i];
      if (c == '[') bracket = true;
      if (c == ']') bracket = false;
      if (c != '$' || bracket) continue;
    }
    size_t segment = start, b = start, e = i;
    start = i + 1;
    while (b < e && blank(text[b])) ++b;
    while (e > b && blank(text[e - 1])) --e;
    if (b == e) {
      if (!all_blank) sink.warn({1, static_cast<uint32_t>(segment + 1)}, "empty rule skipped");
      continue;
    }
    if (e - b > limits.max_line) {
      sink.error({1, static_cast<uint32_t>(b + 1)}, "rule longer than " + std::to_string(limits.max_line) + " bytes");
      continue;
    }
    char sign = text[b];
    if (sign != '+' && sign != '-') {
      sink.error({1, static_cast<uint32_t>(b + 1)}, "a rule starts with '+' (allow) or '-' (deny), not " +
                                                        describe_byte(sign));
      continue;
    }
    LinePiece piece{0, 1, static_cast<uint32_t>(b + 2)};
    size_t errors_before = error_count;
    auto rule = parse_rule(text.substr(b + 1, e - b - 1), std::span<const LinePiece>(&piece, 1),
                           sign == '+' ? RuleKind::Allow : RuleKind::Deny, false, limits, sink);
    if (!rule) {
      if (error_count == errors_before) {
        sink.error({1, static_cast<uint32_t>(b + 1)}, "nothing after the rule's sign");
      }
      continue;
    }
    if (out.rules.size() >= limits.max_rules) {
      sink.error({1, static_cast<uint32_t>(b + 1)}, "more than " + std::to_string(limits.max_rules) + " rules");
      break;
    }
    rule->info.pos = {1, static_cast<uint32_t>(b + 1)};
    rule->info.text = std::string(text.substr(b, e - b));
    out.rules.push_back(std::move(*rule));
  }
  if (error_count > errors.size()) {
    errors.push_back({std::string(source), errors.empty() ? Position{} : errors.back().pos,
                      std::to_string(error_count - errors.size()) + " more errors not shown"});
  }
  if (!errors.empty()) return tl::unexpected(std::move(errors));
  return out;
}

}  // namespace common::access
