// address.cpp: parsing and printing of IP addresses and endpoints with inet_pton/inet_ntop.
#include "common/net/address.hpp"

#include <arpa/inet.h>
#include <unistd.h>
#include <netinet/in.h>

#include <charconv>
#include <cstring>

namespace common::net {

IpAddress IpAddress::v4(uint32_t host_order) {
  IpAddress a;
  a.family_ = Family::V4;
  uint32_t n = htonl(host_order);
  std::memcpy(a.bytes_.data(), &n, 4);
  return a;
}

IpAddress IpAddress::v6(const std::array<uint8_t, 16>& bytes) {
  IpAddress a;
  a.family_ = Family::V6;
  a.bytes_ = bytes;
  return a;
}

std::optional<IpAddress> IpAddress::parse(std::string_view text) {
  if (text.empty() || text.size() > INET6_ADDRSTRLEN) return std::nullopt;
  char buf[INET6_ADDRSTRLEN + 1];
  std::memcpy(buf, text.data(), text.size());
  buf[text.size()] = '\0';
  IpAddress a;
  if (inet_pton(AF_INET, buf, a.bytes_.data()) == 1) {
    a.family_ = Family::V4;
    return a;
  }
  if (inet_pton(AF_INET6, buf, a.bytes_.data()) == 1) {
    a.family_ = Family::V6;
    return a;
  }
  return std::nullopt;
}

std::optional<IpAddress> IpAddress::from_sockaddr(const sockaddr* sa) {
  if (sa == nullptr) return std::nullopt;
  IpAddress a;
  if (sa->sa_family == AF_INET) {
    const auto* in = reinterpret_cast<const sockaddr_in*>(sa);
    a.family_ = Family::V4;
    std::memcpy(a.bytes_.data(), &in->sin_addr, 4);
    return a;
  }
  if (sa->sa_family == AF_INET6) {
    const auto* in6 = reinterpret_cast<const sockaddr_in6*>(sa);
    if (IN6_IS_ADDR_V4MAPPED(&in6->sin6_addr)) {
      a.family_ = Family::V4;
      std::memcpy(a.bytes_.data(), in6->sin6_addr.s6_addr + 12, 4);
    } else {
      a.family_ = Family::V6;
      std::memcpy(a.bytes_.data(), in6->sin6_addr.s6_addr, 16);
    }
    return a;
  }
  return std::nullopt;
}

uint32_t IpAddress::v4_host_order() const {
  uint32_t n;
  std::memcpy(&n, bytes_.data(), 4);
  return ntohl(n);
}

bool IpAddress::is_loopback() const {
  if (is_v4()) return bytes_[0] == 127;
  static constexpr std::array<uint8_t, 16> kLoop{0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1};
  return bytes_ == kLoop;
}

bool IpAddress::is_unspecified() const {
  for (uint8_t b : bytes()) {
    if (b != 0) return false;
  }
  return true;
}

std::string IpAddress::to_string() const {
  char buf[INET6_ADDRSTRLEN];
  inet_ntop(is_v4() ? AF_INET : AF_INET6, bytes_.data(), buf, sizeof buf);
  return buf;
}

std::string IpAddress::reverse_name() const {
  std::string out;
  if (is_v4()) {
    for (int i = 3; i >= 0; --i) {
      out += std::to_string(bytes_[i]);
      out += '.';
    }
    return out + "in-addr.arpa";
  }
  static constexpr char kHex[] = "0123456789abcdef";
  for (int i = 15; i >= 0; --i) {
    out += kHex[bytes_[i] & 0xf];
    out += '.';
    out += kHex[bytes_[i] >> 4];
    out += '.';
  }
  return out + "ip6.arpa";
}

std::optional<Endpoint> Endpoint::parse(std::string_view text) {
  std::string_view host;
  std::string_view port_text;
  if (!text.empty() && text.front() == '[') {
    auto close = text.find(']');
    if (close == std::string_view::npos || close + 1 >= text.size() || text[close + 1] != ':') {
      return std::nullopt;
    }
    host = text.substr(1, close - 1);
    port_text = text.substr(close + 2);
    if (host.find(':') == std::string_view::npos) return std::nullopt;  // brackets are for IPv6
  } else {
    auto colon = text.rfind(':');
    if (colon == std::string_view::npos) return std::nullopt;
    host = text.substr(0, colon);
    port_text = text.substr(colon + 1);
    if (host.find(':') != std::string_view::npos) return std::nullopt;  // bare IPv6 needs brackets
  }
  unsigned port = 0;
  auto [end, ec] = std::from_chars(port_text.data(), port_text.data() + port_text.size(), port);
  if (ec != std::errc{} || end != port_text.data() + port_text.size() || port > 65535) {
    return std::nullopt;
  }
  Endpoint ep;
  ep.port = static_cast<uint16_t>(port);
  if (host == "*") {
    ep.address = IpAddress::v6({});
    return ep;
  }
  auto addr = IpAddress::parse(host);
  if (!addr) return std::nullopt;
  ep.address = *addr;
  return ep;
}

std::optional<Endpoint> Endpoint::from_sockaddr(const sockaddr* sa) {
  auto addr = IpAddress::from_sockaddr(sa);
  if (!addr) return std::nullopt;
  Endpoint ep;
  ep.address = *addr;
  ep.port = sa->sa_family == AF_INET ? ntohs(reinterpret_cast<const sockaddr_in*>(sa)->sin_port)
                                     : ntohs(reinterpret_cast<const sockaddr_in6*>(sa)->sin6_port);
  return ep;
}

std::string Endpoint::to_string() const {
  // Appends only: GCC 12 warns falsely (-Wrestrict, PR 105329) on "[" + std::string.
  std::string out;
  out.reserve(INET6_ADDRSTRLEN + 8);
  if (!address.is_v4()) out.push_back('[');
  out.append(address.to_string());
  if (!address.is_v4()) out.push_back(']');
  out.push_back(':');
  out.append(std::to_string(port));
  return out;
}

socklen_t Endpoint::to_sockaddr(sockaddr_storage& storage) const {
  std::memset(&storage, 0, sizeof storage);
  if (address.is_v4()) {
    auto* in = reinterpret_cast<sockaddr_in*>(&storage);
    in->sin_family = AF_INET;
    in->sin_port = htons(port);
    std::memcpy(&in->sin_addr, address.bytes().data(), 4);
    return sizeof(sockaddr_in);
  }
  auto* in6 = reinterpret_cast<sockaddr_in6*>(&storage);
  in6->sin6_family = AF_INET6;
  in6->sin6_port = htons(port);
  std::memcpy(&in6->sin6_addr, address.bytes().data(), 16);
  return sizeof(sockaddr_in6);
}

std::optional<IpNetwork> IpNetwork::parse(std::string_view text) {
  const auto slash = text.find('/');
  auto base = IpAddress::parse(text.substr(0, slash));
  if (!base) return std::nullopt;
  const unsigned width = base->is_v4() ? 32 : 128;
  unsigned prefix = width;
  if (slash != std::string_view::npos) {
    std::string_view digits = text.substr(slash + 1);
    if (digits.empty() || digits.size() > 3) return std::nullopt;
    prefix = 0;
    for (char c : digits) {
      if (c < '0' || c > '9') return std::nullopt;
      prefix = prefix * 10 + static_cast<unsigned>(c - '0');
    }
    if (prefix > width) return std::nullopt;
  }
  IpNetwork net{*base, prefix};
  if (!net.contains(*base)) return std::nullopt;
  // Host bits set: the base must be the network itself.
  auto bytes = base->bytes();
  for (unsigned bit = prefix; bit < width; ++bit) {
    if (bytes[bit / 8] & (0x80u >> (bit % 8))) return std::nullopt;
  }
  return net;
}

bool IpNetwork::contains(const IpAddress& a) const {
  if (a.family() != base.family()) return false;
  auto x = a.bytes();
  auto y = base.bytes();
  for (unsigned bit = 0; bit < prefix; ++bit) {
    const uint8_t mask = static_cast<uint8_t>(0x80u >> (bit % 8));
    if ((x[bit / 8] & mask) != (y[bit / 8] & mask)) return false;
  }
  return true;
}

std::string IpNetwork::to_string() const { return base.to_string() + "/" + std::to_string(prefix); }

std::string local_host_name(std::string_view fallback) {
  char host[256] = {};
  if (gethostname(host, sizeof host - 1) != 0 || host[0] == '\0') return std::string(fallback);
  return host;
}

}  // namespace common::net
