// address.hpp: IP addresses and host:port endpoints, parsed and printed one way across the suite.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>

#include <sys/socket.h>

namespace common::net {

class IpAddress {
 public:
  enum class Family : uint8_t { V4, V6 };

  IpAddress() = default;  // 0.0.0.0
  static IpAddress v4(uint32_t host_order);
  static IpAddress v6(const std::array<uint8_t, 16>& bytes);
  // Dotted quad or RFC 4291 text; no brackets, no zone id.
  static std::optional<IpAddress> parse(std::string_view text);
  // IPv4-mapped IPv6 (::ffff:a.b.c.d) comes back as IPv4, so filters see one form.
  static std::optional<IpAddress> from_sockaddr(const sockaddr* sa);

  Family family() const { return family_; }
  bool is_v4() const { return family_ == Family::V4; }
  // 4 bytes for IPv4, 16 for IPv6, network order.
  std::span<const uint8_t> bytes() const { return {bytes_.data(), is_v4() ? 4u : 16u}; }
  uint32_t v4_host_order() const;
  bool is_loopback() const;
  bool is_unspecified() const;
  std::string to_string() const;
  // Reverse-DNS name: 4.3.2.1.in-addr.arpa or the nibble form under ip6.arpa.
  std::string reverse_name() const;

  friend bool operator==(const IpAddress&, const IpAddress&) = default;

 private:
  Family family_ = Family::V4;
  std::array<uint8_t, 16> bytes_{};
};

// An address prefix, "192.0.2.0/24", "2001:db8::/32"; a bare address is a /32 or /128. Host bits
// below the prefix must be zero, so a typo such as "192.0.2.1/24" is refused, not widened.
struct IpNetwork {
  IpAddress base;
  unsigned prefix = 0;

  static std::optional<IpNetwork> parse(std::string_view text);
  // IPv4 networks match IPv4 addresses only (mapped addresses arrive as IPv4, see from_sockaddr).
  bool contains(const IpAddress& a) const;
  std::string to_string() const;
};

struct Endpoint {
  IpAddress address;
  uint16_t port = 0;

  // "192.0.2.1:25", "[2001:db8::1]:143", "*:25" (IPv6 any, dual stack) and "0.0.0.0:25".
  static std::optional<Endpoint> parse(std::string_view text);
  static std::optional<Endpoint> from_sockaddr(const sockaddr* sa);
  // "192.0.2.1:25" or "[::1]:143"
  std::string to_string() const;
  // Fills storage; returns the length to pass to bind/connect.
  socklen_t to_sockaddr(sockaddr_storage& storage) const;

  friend bool operator==(const Endpoint&, const Endpoint&) = default;
};

// This machine's name (gethostname), or `fallback` when it has none: the default of every
// daemon's own name in greetings, logs and Received: lines.
std::string local_host_name(std::string_view fallback = "localhost");

}  // namespace common::net
