// dnsmasq.cpp: starting dnsmasq for tests and waiting until it answers.
#include "tests/support/dnsmasq.hpp"

#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <chrono>
#include <thread>

namespace test {
namespace {

// One synchronous UDP query (ready.example.test/A); true when any reply arrives.
bool dns_answers(int port) {
  int fd = socket(AF_INET, SOCK_DGRAM, 0);
  if (fd < 0) return false;
  timeval tv{0, 100 * 1000};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  static const unsigned char kQuery[] = {0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0,
                                         5, 'r', 'e', 'a', 'd', 'y', 7, 'e', 'x', 'a', 'm', 'p', 'l', 'e',
                                         4, 't', 'e', 's', 't', 0, 0, 1, 0, 1};
  sockaddr_in sin{};
  sin.sin_family = AF_INET;
  sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  sin.sin_port = htons(static_cast<uint16_t>(port));
  unsigned char reply[512];
  bool ok = sendto(fd, kQuery, sizeof kQuery, 0, reinterpret_cast<sockaddr*>(&sin), sizeof sin) > 0 &&
            recv(fd, reply, sizeof reply, 0) >= 12;
  close(fd);
  return ok;
}

}  // namespace

Dnsmasq::Dnsmasq(const std::vector<std::string>& record_flags) {
  using namespace std::chrono_literals;
  // The free port may be taken before dnsmasq binds it (UDP or the TCP twin): try another.
  for (int attempt = 0; attempt < 5 && !child_; ++attempt) {
    int port = free_udp_port();
    std::vector<std::string> argv = {
        "dnsmasq", "--keep-in-foreground", "--no-resolv", "--no-hosts", "--no-poll",
        "--bind-interfaces", "--listen-address=127.0.0.1", "--port=" + std::to_string(port),
        "--conf-file=/dev/null", "--pid-file=" + (dir_ / "dnsmasq.pid").string(), "--user=root",
        "--log-facility=-", "--log-queries", "--cache-size=0"};
    for (const auto& flag : record_flags) argv.push_back(flag);
    auto child = std::make_unique<ChildProcess>(argv, (dir_ / "dnsmasq.log").string());
    auto until = std::chrono::steady_clock::now() + 5s;
    while (child->running() && std::chrono::steady_clock::now() < until) {
      if (dns_answers(port)) {
        port_ = port;
        child_ = std::move(child);
        break;
      }
      std::this_thread::sleep_for(10ms);
    }
  }
  if (!child_) FAIL("dnsmasq did not start: " << read_file(dir_ / "dnsmasq.log"));
}

std::string Dnsmasq::log() const { return read_file(dir_ / "dnsmasq.log"); }

}  // namespace test
