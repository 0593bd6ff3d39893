// silent_dns.hpp: a DNS server that never answers: a UDP socket on 127.0.0.1 that takes queries and
// drops them, for tests of what a daemon does while its resolver hangs (slow or dead DNS).
#pragma once

#include <string>

namespace test {

class SilentDns {
 public:
  SilentDns();  // FAILs the test when no socket can be bound
  ~SilentDns();
  SilentDns(const SilentDns&) = delete;
  SilentDns& operator=(const SilentDns&) = delete;
  int port() const { return port_; }
  std::string server() const { return "127.0.0.1:" + std::to_string(port_); }
  // Queries received so far (read without blocking; each is consumed and dropped).
  size_t queries();

 private:
  int fd_ = -1;
  int port_ = 0;
  size_t queries_ = 0;
};

}  // namespace test
