// peer_support.hpp: what the Postfix peer tests share: a message through python's smtplib and a
// python SMTP peer (tests/support/smtp_peer.py) that keeps what it receives.
#pragma once

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include <catch2/catch.hpp>

#include "tests/support/pki.hpp"
#include "tests/support/postfix.hpp"
#include "tests/support/process.hpp"

namespace test::peer {

namespace fs = std::filesystem;
using namespace std::chrono_literals;

inline bool has(const std::string& hay, const std::string& needle) { return hay.find(needle) != std::string::npos; }

// One message through python's smtplib; prints the server's replies so a test can look at refusals.
// tls: "none", "starttls" (verified against the deployment CA as NAME) or "starttls-noverify".
inline test::CommandResult send_mail(int port, const std::string& from, const std::vector<std::string>& to,
                                     const std::string& subject, const std::string& tls = "none",
                                     const std::string& name = "mta1") {
  static const char* kScript = R"PY(
import smtplib, ssl, sys
port, sender, tls, name, ca, subject = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5], sys.argv[6]
rcpts = sys.argv[7:]
msg = ("From: %s\r\nTo: %s\r\nSubject: %s\r\nMessage-ID: <%s@client.test>\r\n\r\n"
       "Hello from smtplib.\r\n.a line that starts with a dot\r\n" % (sender, ", ".join(rcpts), subject, subject.replace(" ", "-")))
s = smtplib.SMTP("127.0.0.1", port, local_hostname="client.test", timeout=20)
s.ehlo()
if tls != "none":
    ctx = ssl.create_default_context(cafile=ca)
    if tls == "starttls-noverify":
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    s._host = name  # smtplib checks the certificate against the host it connected to
    s.starttls(context=ctx)
    s.ehlo()
    print("tls", s.sock.version())
try:
    refused = s.sendmail(sender, rcpts, msg)
    for r, (code, text) in refused.items():
        print("refused", r, code, text.decode())
    print("sent")
except smtplib.SMTPException as e:
    print("error", repr(e))
s.quit()
)PY";
  std::vector<std::string> argv{"python3",  "-c", kScript,  std::to_string(port), from, tls, name,
                                test::PostfixInstance::ca_file().string(), subject};
  argv.insert(argv.end(), to.begin(), to.end());
  return test::run(argv, 60s);
}

// A python SMTP peer (tests/support/smtp_peer.py) on a port it picked (or the one given); what it kept, message by
// message.
struct Kept {
  std::string data;
  std::string helo, tls, mail;
  std::vector<std::string> rcpts;
};

class Sink {
 public:
  explicit Sink(bool starttls, int fixed_port = 0) {
    std::vector<std::string> argv{"python3", test::source_path("tests/support/smtp_peer.py"), "--port-file",
                                  (dir_ / "port").string(), "--out", (dir_ / "kept").string(), "--lifetime", "300",
                                  "--port", std::to_string(fixed_port)};
    if (starttls) {
      test::export_host_pem(pki_.host("mta1"), dir_ / "tls", "sink");
      argv.insert(argv.end(), {"--starttls", "yes", "--cert", (dir_ / "tls" / "sink.crt").string(), "--key",
                               (dir_ / "tls" / "sink.key").string()});
    }
    process_ = std::make_unique<test::ChildProcess>(argv, (dir_ / "sink.log").string());
    const auto until = std::chrono::steady_clock::now() + 10s;
    while (!fs::exists(dir_ / "port")) {
      if (std::chrono::steady_clock::now() > until || !process_->running()) {
        FAIL("the sink did not start: " << test::read_file(dir_ / "sink.log"));
      }
      std::this_thread::sleep_for(20ms);
    }
    port = std::stoi(test::read_file(dir_ / "port"));
  }

  std::vector<Kept> kept() const {
    std::vector<fs::path> envs;
    std::error_code ec;
    for (const auto& e : fs::directory_iterator(dir_ / "kept", ec)) {
      if (e.path().extension() == ".env") envs.push_back(e.path());
    }
    std::sort(envs.begin(), envs.end());
    std::vector<Kept> out;
    for (const auto& env : envs) {
      Kept k;
      k.data = test::read_file(fs::path(env).replace_extension(".eml"));
      std::ifstream in(env);
      std::string key, value;
      while (in >> key && std::getline(in >> std::ws, value)) {
        if (key == "helo") k.helo = value;
        else if (key == "tls") k.tls = value;
        else if (key == "mail") k.mail = value;
        else if (key == "rcpt") k.rcpts.push_back(value);
      }
      out.push_back(std::move(k));
    }
    return out;
  }

  std::vector<Kept> wait_for(size_t n, std::chrono::milliseconds deadline = 30s) const {
    const auto until = std::chrono::steady_clock::now() + deadline;
    auto got = kept();
    while (got.size() < n && std::chrono::steady_clock::now() < until) {
      std::this_thread::sleep_for(50ms);
      got = kept();
    }
    return got;
  }

  std::string log() const { return test::read_file(dir_ / "sink.log"); }
  int port = 0;

 private:
  test::Pki pki_;
  test::TempDir dir_;
  std::unique_ptr<test::ChildProcess> process_;
};

}  // namespace test::peer
