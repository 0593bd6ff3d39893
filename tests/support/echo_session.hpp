// echo_session.hpp: a small line protocol on common/line's LineSession, used to prove the runtime
// with real sockets: "+ready" greeting, each line echoed, QUIT, STARTTLS, TLSINFO, errors for
// over-long lines, timeout and drain replies. Shared by the runtime tests, the integration daemon
// and the echo benchmark; the smallest worked example of the session base.
#pragma once

#include <functional>
#include <string>

#include "common/line/line_session.hpp"
#include "common/runtime/connection.hpp"
#include "common/runtime/listener.hpp"

namespace test {

// Makes the TLS transform for STARTTLS; empty when the listener has no TLS.
using StartTls = std::function<std::unique_ptr<common::runtime::Transform>(std::string_view connection_id)>;

class LineEchoSession final : public common::line::LineSession {
 public:
  LineEchoSession(common::runtime::Connection& c, size_t max_line, int max_errors, StartTls starttls = {})
      : LineSession(c, kCommands, options(max_line, max_errors)), starttls_(std::move(starttls)) {}

  void on_open() override { reply("+ready " + connection().info().id + "\r\n"); }

 private:
  static common::line::LineSessionOptions options(size_t max_line, int max_errors) {
    common::line::LineSessionOptions o;
    o.component = "echo";
    o.max_line = max_line;
    o.errors.max_errors = static_cast<unsigned>(max_errors);
    return o;
  }

  void echo(const common::line::Request& r) {
    out_.assign(r.line);
    out_ += "\r\n";
    reply(out_);
  }
  void quit(const common::line::Request& r) {
    if (r.has_args) return echo(r);
    reply("+bye\r\n");
    close_session();
  }
  void starttls(const common::line::Request& r) {
    // Without TLS configured, or with it on already, STARTTLS is just another line to echo.
    if (!starttls_ || tls_on() || r.has_args) return echo(r);
    set_phase("starttls");
    if (!start_tls("+go ahead\r\n", starttls_(connection().info().id))) reply("-ERR no TLS\r\n");
    set_phase("command");
  }
  void tlsinfo(const common::line::Request&) {
    auto* facts = connection().transform() ? connection().transform()->facts() : nullptr;
    reply(facts ? "+tls " + facts->protocol + " " + facts->cipher + " client=" +
                      (facts->client_verified ? facts->client_subject : "none") + "\r\n"
                : std::string("+tls none\r\n"));
  }

  // The catch-all entry takes every other line, so nothing is refused; say so if it ever is.
  void on_refused(common::line::Outcome o, const common::line::Request&) override {
    reply("-ERR " + std::string(common::line::outcome_name(o)) + "\r\n");
  }
  void on_line_too_long(size_t) override { reply("-ERR line too long\r\n"); }
  void on_too_many_errors() override { reply("-ERR too many errors\r\n"); }
  std::string timeout_reply(common::runtime::TimeoutKind kind) override {
    return kind == common::runtime::TimeoutKind::Idle ? "-ERR idle timeout\r\n" : "-ERR session timeout\r\n";
  }
  std::string drain_reply() override { return "+shutting down\r\n"; }
  // The echo learns nothing before TLS; the base drops the framer and keeps the error count, so
  // STARTTLS does not reset the limit.

  static constexpr Entry kCommands[] = {
      {"QUIT", handler<&LineEchoSession::quit>},
      {"STARTTLS", handler<&LineEchoSession::starttls>, common::line::kAnyState, common::line::LastInPipeline},
      {"TLSINFO", handler<&LineEchoSession::tlsinfo>},
      {"", handler<&LineEchoSession::echo>},
  };

  std::string out_;
  StartTls starttls_;
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
