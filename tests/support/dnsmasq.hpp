// dnsmasq.hpp: a real dnsmasq on 127.0.0.1 and a free port, serving only the records a test gives
// it; killed and reaped with the object.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "tests/support/process.hpp"

namespace test {

class Dnsmasq {
 public:
  // record_flags: dnsmasq options such as "--host-record=a.test,192.0.2.1" or "--local=/test/"
  // (--local makes it answer NXDOMAIN for unknown names in that zone instead of REFUSED).
  explicit Dnsmasq(const std::vector<std::string>& record_flags);
  int port() const { return port_; }
  std::string server() const { return "127.0.0.1:" + std::to_string(port_); }
  std::string log() const;

 private:
  TempDir dir_;
  int port_ = 0;
  std::unique_ptr<ChildProcess> child_;
};

}  // namespace test
