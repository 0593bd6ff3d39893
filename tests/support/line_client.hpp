// line_client.hpp: a blocking TCP line client for tests (timeouts on every read).
#pragma once

#include <chrono>
#include <optional>
#include <string>

namespace test {

class LineClient {
 public:
  // Connects to host:port ("127.0.0.1" or "::1"), from `source` when given (e.g. "127.0.0.7", to
  // look like another client); check connected().
  LineClient(const std::string& host, int port, std::chrono::milliseconds timeout = std::chrono::seconds(5),
             const std::string& source = "");
  ~LineClient();
  LineClient(const LineClient&) = delete;
  LineClient& operator=(const LineClient&) = delete;

  bool connected() const { return fd_ >= 0; }
  bool send(const std::string& bytes);
  // A line without CRLF; nothing on timeout or EOF.
  std::optional<std::string> read_line();
  // True when the server closed (EOF or reset) within the timeout.
  bool closed_by_peer();
  int fd() const { return fd_; }

 private:
  int fd_ = -1;
  std::string buffer_;
};

}  // namespace test
