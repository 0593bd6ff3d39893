// silent_dns.cpp: the never-answering DNS server of silent_dns.hpp.
#include "tests/support/silent_dns.hpp"

#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <catch2/catch.hpp>

namespace test {

SilentDns::SilentDns() {
  fd_ = ::socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  REQUIRE(fd_ >= 0);
  sockaddr_in sin{};
  sin.sin_family = AF_INET;
  sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  REQUIRE(::bind(fd_, reinterpret_cast<sockaddr*>(&sin), sizeof sin) == 0);
  socklen_t len = sizeof sin;
  REQUIRE(::getsockname(fd_, reinterpret_cast<sockaddr*>(&sin), &len) == 0);
  port_ = ntohs(sin.sin_port);
}

SilentDns::~SilentDns() {
  if (fd_ >= 0) ::close(fd_);
}

size_t SilentDns::queries() {
  char buf[1500];
  while (::recv(fd_, buf, sizeof buf, MSG_DONTWAIT) >= 0) ++queries_;
  return queries_;
}

}  // namespace test
