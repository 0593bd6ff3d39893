// echo_daemon.cpp: postern-echo, a line-echo daemon on common::run_daemon. It exists to prove the
// runtime end to end (integration tests, the echo benchmark); it is not part of the suite.
#include "common/daemon/daemon.hpp"
#include "tests/support/echo_session.hpp"

namespace {

class EchoApp : public common::daemon::DaemonApp {
 public:
  std::vector<std::string> services() const override { return {"echo"}; }
  void read_config(common::config::Section root) override {
    auto e = root.section("echo");
    e.get("max_line", max_line_, size_t{16}, size_t{1} << 20);
    e.get("max_errors", max_errors_, 1, 1000);
  }
  std::unique_ptr<common::runtime::SessionFactory> make_factory(const common::daemon::ListenerConfig& listener,
                                                                 common::daemon::LoopContext&) override {
    test::StartTls starttls;
    if (listener.tls_mode == common::daemon::TlsMode::StartTls) {
      starttls = [tls = listener.tls](std::string_view id) { return tls->accept(id); };
    }
    return std::make_unique<test::LineEchoFactory>(max_line_, max_errors_, std::move(starttls));
  }

 private:
  size_t max_line_ = 1000;
  int max_errors_ = 3;
};

}  // namespace

int main(int argc, char** argv) {
  return common::daemon::run_daemon(
      argc, argv,
      {"postern-echo", "line-echo test daemon on the Postern runtime", "", [] { return std::make_unique<EchoApp>(); }});
}
