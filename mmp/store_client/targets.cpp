// targets.cpp: store names and configured addresses as gRPC targets (targets.hpp).
#include "mmp/store_client/targets.hpp"

#include <algorithm>
#include <charconv>
#include <optional>

#include "common/ascii.hpp"

namespace mmp::store_client {

namespace {

using common::ErrorKind;
using common::fail;

bool hex_or(char c, std::string_view also) {
  return common::ascii::is_hex(c) || also.find(c) != std::string_view::npos;
}

// An IPv6 literal as gRPC's resolver reads it inside brackets; the resolver itself checks the rest.
bool ipv6_chars(std::string_view s) {
  return s.size() >= 2 && s.size() <= 45 && s.find(':') != std::string_view::npos &&
         std::all_of(s.begin(), s.end(), [](char c) { return hex_or(c, ":."); });
}

// RFC 1123 host names (and IPv4 literals, which are of the same characters); the underscore is
// kept because internal DNS zones use it.
bool host_name(std::string_view s) {
  if (s.empty() || s.size() > 253 || s.front() == '-' || s.front() == '.' || s.back() == '-') return false;
  return std::all_of(s.begin(), s.end(),
                     [](char c) { return common::ascii::is_alnum(c) || c == '-' || c == '.' || c == '_'; });
}

std::optional<uint16_t> port_of(std::string_view s) {
  unsigned value = 0;
  auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), value);
  if (s.empty() || ec != std::errc() || end != s.data() + s.size() || value == 0 || value > 65535) return std::nullopt;
  return static_cast<uint16_t>(value);
}

}  // namespace

common::Result<std::string> store_target(std::string_view text, uint16_t default_port) {
  auto bad = [&](std::string_view why) {
    return fail(ErrorKind::Config, "store address \"" + std::string(text.substr(0, 80)) + "\": " + std::string(why));
  };
  if (text.empty()) return bad("empty");
  std::string_view host = text;
  uint16_t port = default_port;
  bool v6 = false;
  if (text.front() == '[') {
    const size_t close = text.find(']');
    if (close == std::string_view::npos) return bad("no closing ]");
    host = text.substr(1, close - 1);
    std::string_view rest = text.substr(close + 1);
    if (!rest.empty()) {
      if (rest.front() != ':') return bad("text after ]");
      auto p = port_of(rest.substr(1));
      if (!p) return bad("bad port");
      port = *p;
    }
    if (!ipv6_chars(host)) return bad("not an IPv6 address");
    v6 = true;
  } else if (std::count(text.begin(), text.end(), ':') > 1) {
    if (!ipv6_chars(text)) return bad("not an IPv6 address");
    v6 = true;
  } else if (const size_t colon = text.find(':'); colon != std::string_view::npos) {
    host = text.substr(0, colon);
    auto p = port_of(text.substr(colon + 1));
    if (!p) return bad("bad port");
    port = *p;
  }
  if (!v6 && !host_name(host)) return bad("not a host name");
  if (port == 0) return bad("no port");
  const std::string h = common::ascii::lowered(host);
  return (v6 ? "[" + h + "]" : h) + ":" + std::to_string(port);
}

}  // namespace mmp::store_client
