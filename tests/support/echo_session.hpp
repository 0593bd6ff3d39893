// echo_session.hpp: a small line protocol on the runtime, used to prove the runtime with real
// sockets: "+ready" greeting, each line echoed, QUIT, errors for over-long lines, timeout and drain
// replies. Shared by the runtime tests, the integration daemon and the echo benchmark.
#pragma once

#include <functional>
#include <string>

#include "common/runtime/connection.hpp"
#include "common/runtime/line_framer.hpp"
#include "common/runtime/listener.hpp"

namespace test {

// Makes the TLS transform for STARTTLS; empty when the listener has no TLS.
using StartTls = std::function<std::unique_ptr<common::runtime::Transform>(std::string_view connection_id)>;

class LineEchoSession : public common::runtime::StartTlsSession {
 public:
  LineEchoSession(common::runtime::Connection& c, size_t max_line, int max_errors, StartTls starttls = {})
      : StartTlsSession(c), framer_(max_line), max_errors_(max_errors), starttls_(std::move(starttls)) {}

  void on_open() override { connection().write("+ready " + connection().info().id + "\r\n"); }

  void on_data(std::string_view bytes) override {
    framer_.append(bytes);
    pump();
  }

  void on_writable() override { pump(); }

  void on_timeout(common::runtime::TimeoutKind kind) override {
    connection().write(kind == common::runtime::TimeoutKind::Idle ? "-ERR idle timeout\r\n"
                                                                  : "-ERR session timeout\r\n");
    connection().close(common::runtime::CloseReason::Timeout);
  }

  void on_drain() override {
    connection().write("+shutting down\r\n");
    connection().close(common::runtime::CloseReason::Drain);
  }

  // The echo learns nothing before TLS; the error count survives it, so STARTTLS does not reset the limit.
  size_t forget_plaintext() override {
    size_t held = framer_.buffered();
    framer_.reset();
    return held;
  }

 private:
  void pump() {
    using namespace common::runtime;
    // While output is blocked the framer keeps the rest; reading is paused by the connection.
    while (connection().open() && !connection().write_blocked()) {
      auto frame = framer_.next();
      if (!frame) return;
      if (auto* line = std::get_if<LineFrame>(&*frame)) {
        if (line->text == "QUIT") {
          connection().write("+bye\r\n");
          connection().close();
          return;
        }
        if (line->text == "STARTTLS" && starttls_ && !connection().transform()) {
          if (!start_tls("+go ahead\r\n", starttls_(connection().info().id))) connection().write("-ERR no TLS\r\n");
          return;
        }
        if (line->text == "TLSINFO") {
          auto* facts = connection().transform() ? connection().transform()->facts() : nullptr;
          connection().write(facts ? "+tls " + facts->protocol + " " + facts->cipher + " client=" +
                                         (facts->client_verified ? facts->client_subject : "none") + "\r\n"
                                   : std::string("+tls none\r\n"));
          continue;
        }
        out_.assign(line->text);
        out_ += "\r\n";
        connection().write(out_);
      } else if (std::holds_alternative<LineTooLong>(*frame)) {
        connection().write("-ERR line too long\r\n");
        if (++errors_ >= max_errors_) {
          connection().write("-ERR too many errors\r\n");
          connection().close();
          return;
        }
      }
    }
  }

  common::runtime::LineFramer framer_;
  std::string out_;
  int max_errors_;
  StartTls starttls_;
  int errors_ = 0;
};

class LineEchoFactory : public common::runtime::SessionFactory {
 public:
  explicit LineEchoFactory(size_t max_line = 1000, int max_errors = 3, StartTls starttls = {})
      : max_line_(max_line), max_errors_(max_errors), starttls_(std::move(starttls)) {}
  std::unique_ptr<common::runtime::Session> create(common::runtime::Connection& c) override {
    return std::make_unique<LineEchoSession>(c, max_line_, max_errors_, starttls_);
  }
  std::string refusal(common::runtime::Refusal why) override {
    return "-ERR refused " + std::string(common::runtime::refusal_name(why)) + "\r\n";
  }

 private:
  size_t max_line_;
  int max_errors_;
  StartTls starttls_;
};

}  // namespace test
