// conformance_test.cpp: every IMAP conformance script (imapconf.py, format in README.md) run against
// each target: a private Dovecot 2.3 as the trusted reference, and the mmp.
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <memory>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <catch2/catch.hpp>

#include "tests/mmp/support/mmp_daemon.hpp"
#include "tests/support/dovecot.hpp"
#include "tests/support/pki.hpp"
#include "tests/support/process.hpp"

namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;

fs::path script_dir() { return test::source_path("tests/mmp/conformance"); }

// What a script asks of the account it runs as: the messages delivered to its INBOX first.
struct ScriptInfo {
  std::string name;
  fs::path path;
  std::vector<fs::path> deliver;
};

ScriptInfo read_script(const std::string& name) {
  ScriptInfo s{name, script_dir() / name, {}};
  std::ifstream in(s.path);
  REQUIRE(in.good());
  for (std::string line; std::getline(in, line);) {
    if (!line.starts_with("@deliver ")) continue;
    std::istringstream words(line.substr(9));
    for (std::string w; words >> w;) s.deliver.push_back(script_dir() / "messages" / w);
  }
  return s;
}

// One server the scripts run against. Adding one (the mmp) is writing a function that starts it
// and fills this in, and listing it in targets() below.
struct Target {
  std::string name;  // selects the scripts' [name] lines: dovecot, postern
  std::string host = "127.0.0.1";
  int port = 0;        // IMAP, plaintext with STARTTLS
  int imaps_port = 0;  // IMAPS, implicit TLS; 0 when the target has none
  std::string ca_file, tls_name;
  std::string source_address;                      // the runner's local address, when it matters
  std::map<std::string, std::string> certs;        // connect ... cert=NAME: "PEM,KEY"
  // Makes fresh accounts for one run of a script, delivers the script's messages to the first,
  // and returns the script's variables (README.md: user, password, user2, password2, cert_user,
  // quota_storage_kib, and for the mmp admin_user, admin_password).
  std::function<std::map<std::string, std::string>(const ScriptInfo&)> prepare;
  std::shared_ptr<void> keep;  // what must live while the target runs (the server, its files)
};

// The PEM files Dovecot and the runner read, exported from the test pki once per build tree
// (pk12util and openssl take seconds) under a lock, since ctest runs several of these processes.
const fs::path& pem_cache() {
  static const fs::path dir = [] {
    const fs::path d = fs::path(POSTERN_BINARY_DIR) / "tests/mmp-conformance-pem";
    const fs::path stamp = d / "ready";
    const fs::path pki_stamp = test::Pki::file("ready");
    struct Lock {
      int fd;
      ~Lock() {
        if (fd >= 0) ::close(fd);
      }
    } lock{::open((d.string() + ".lock").c_str(), O_CREAT | O_RDWR | O_CLOEXEC, 0600)};
    REQUIRE(lock.fd >= 0);
    REQUIRE(::flock(lock.fd, LOCK_EX) == 0);
    std::error_code ec;
    if (fs::exists(stamp, ec) && fs::last_write_time(stamp, ec) > fs::last_write_time(pki_stamp, ec)) return d;
    fs::remove_all(d, ec);
    fs::create_directories(d);
    test::Pki pki;
    test::export_host_pem(pki.host("store1"), d, "server");
    // mta2's certificate is revoked in the CA's CRL.
    test::export_host_pem(pki.host("mta2"), d, "revoked");
    // Dovecot verifies client certificates against its ssl_ca and insists on the CA's CRL there.
    std::ofstream(d / "ca-crl.pem") << test::read_file(test::Pki::file("ca/ca.pem"))
                                    << test::read_file(test::Pki::file("ca/crl.pem"));
    std::ofstream(stamp) << "pem\n";
    return d;
  }();
  return dir;
}

// A private Dovecot 2.3 configured as close to the mmp's defaults as it goes: TLS on the IMAP port
// and IMAPS, no plaintext passwords before TLS, EXTERNAL from a client certificate's e-mail
// address, the quota plugin, special-use mailboxes.
struct DovecotPeer {
  static constexpr int kQuotaKib = 10240;  // every user's STORAGE limit (RFC 9208 counts KiB)
  test::TempDir pem;
  std::unique_ptr<test::DovecotInstance> dovecot;
  int accounts = 0;

  DovecotPeer() {
    for (const char* f : {"server.crt", "server.key", "revoked.crt", "revoked.key", "ca-crl.pem"}) {
      fs::copy_file(pem_cache() / f, pem / f);
    }
    // Dovecot runs as nobody when the test runs as root; mkdtemp made the directory private.
    ::chmod(pem.path().c_str(), 0755);
    for (const auto& e : fs::directory_iterator(pem.path())) ::chmod(e.path().c_str(), 0644);
    test::DovecotOptions o;
    o.imaps = true;
    const std::string d = pem.path().string();
    o.extra = {
        "ssl = yes", "disable_plaintext_auth = yes", "ssl_cert = <" + d + "/server.crt",
        "ssl_key = <" + d + "/server.key", "ssl_ca = <" + d + "/ca-crl.pem", "ssl_verify_client_cert = yes",
        "auth_ssl_username_from_cert = yes", "ssl_cert_username_field = emailAddress",
        "auth_mechanisms = plain login external",
        // EXTERNAL checks the certificate's user against the passdbs with an empty password: this
        // one, for EXTERNAL only, accepts it (the certificate was verified by then).
        "passdb {\n  driver = static\n  args = nopassword=y\n  mechanisms = external\n}",
        // A failed login waits 2 s, and later logins from the same address wait up to 15 s more
        // (anvil's auth penalty, off when the auth process cannot reach its socket): the scripts
        // test answers, not the tarpit.
        "auth_failure_delay = 0",
        "service anvil {\n  unix_listener anvil-auth-penalty {\n    mode = 0\n  }\n}",
        "mail_plugins = $mail_plugins quota",
        "protocol imap {\n  mail_plugins = $mail_plugins imap_quota\n}",
        "plugin {\n  quota = count:User quota\n  quota_rule = *:storage=" + std::to_string(kQuotaKib) +
            "k:messages=1000\n  quota_vsizes = yes\n}",
    };
    // The store gives every user these, subscribed, with their special use (store/README.md).
    std::string boxes = "namespace inbox {\n";
    for (const char* b : {"Drafts", "Sent", "Trash", "Junk", "Archive"}) {
      boxes += std::string("  mailbox ") + b + " {\n    special_use = \\" + b + "\n    auto = subscribe\n  }\n";
    }
    o.extra.push_back(boxes + "}");
    dovecot = std::make_unique<test::DovecotInstance>(o);
  }

  std::map<std::string, std::string> prepare(const ScriptInfo& s) {
    // Every user has the same password (passdb static); a fresh name is a fresh, empty Maildir.
    const std::string user = "conf" + std::to_string(++accounts);
    const std::string user2 = "conf" + std::to_string(++accounts);
    for (const auto& m : s.deliver) {
      const auto replies = dovecot->deliver("sender@example.com", {user + "@example.com"}, test::read_file(m));
      REQUIRE(replies.size() == 1);
      INFO(m << ": " << replies[0]);
      REQUIRE(replies[0].starts_with("250"));
    }
    return {{"user", user},
            {"password", dovecot->password()},
            {"user2", user2},
            {"password2", dovecot->password()},
            {"cert_user", "alice@example.com"},
            {"quota_storage_kib", std::to_string(kQuotaKib)}};
  }
};

Target dovecot_target() {
  auto peer = std::make_shared<DovecotPeer>();
  Target t;
  t.name = "dovecot";
  t.port = peer->dovecot->imap_port();
  t.imaps_port = peer->dovecot->imaps_port();
  t.ca_file = test::Pki::file("ca/ca.pem").string();
  // Dovecot counts a connection whose two ends share an address as secure and then allows
  // plaintext passwords without TLS; from another loopback address it behaves as toward a remote
  // client, which is what the scripts check.
  t.source_address = "127.0.0.2";
  t.certs["alice"] = test::Pki::file("ca/clients/alice.pem").string() + "," + test::Pki::file("ca/clients/alice.key").string();
  t.certs["revoked"] = (peer->pem / "revoked.crt").string() + "," + (peer->pem / "revoked.key").string();
  t.certs["stranger"] = test::Pki::file("other-ca/clients/stranger.pem").string() + "," +
                        test::Pki::file("other-ca/clients/stranger.key").string();
  t.prepare = [p = peer.get()](const ScriptInfo& s) { return p->prepare(s); };
  t.keep = peer;
  return t;
}

// The mmp before a store and authserv (tests/mmp/support), with the accounts the scripts ask for:
// each script runs in its own process, so conf1 and conf2 are fresh there.
struct PosternPeer {
  static constexpr int kQuotaKib = 10240;
  // Client certificates asked for on both ports, as the scripts' EXTERNAL and PREAUTH steps need.
  test::MmpDaemon mmp{test::MmpDaemonOptions{
      .listener_extra = "client_certs = \"optional\"\n",
      .store = {.extra_users = {{"conf1@example.com", "10M"}, {"conf2@example.com", "10M"}, {"admin@example.com", "none"}}}}};
  test::TempDir crlf;

  PosternPeer() { mmp.store().auth().cli({"user", "set", "admin@example.com", "store_admin", "true"}); }

  std::map<std::string, std::string> prepare(const ScriptInfo& s) {
    for (const auto& m : s.deliver) {
      // The files have bare LF line ends; SMTP and LMTP carry CRLF (RFC 5321 §2.3.8).
      std::string text;
      for (char ch : test::read_file(m)) {
        if (ch == '\n' && (text.empty() || text.back() != '\r')) text += '\r';
        text += ch;
      }
      const auto file = crlf.write(m.filename().string(), text);
      const auto r = mmp.store().deliver({"conf1@example.com"}, {"--data", file.string()});
      INFO(m << ": " << r.output);
      REQUIRE(r.output.find("RCPT conf1@example.com 250") != std::string::npos);
    }
    return {{"user", "conf1"},
            {"password", "secret-conf1"},
            {"user2", "conf2"},
            {"password2", "secret-conf2"},
            {"cert_user", "alice@example.com"},
            {"admin_user", "admin@example.com"},
            {"admin_password", "secret-admin"},
            {"quota_storage_kib", std::to_string(kQuotaKib)}};
  }
};

Target postern_target() {
  auto peer = std::make_shared<PosternPeer>();
  Target t;
  t.name = "postern";
  t.port = peer->mmp.imap_port();
  t.imaps_port = peer->mmp.imaps_port();
  t.ca_file = test::Pki::file("ca/ca.pem").string();
  t.certs["alice"] = test::Pki::file("ca/clients/alice.pem").string() + "," + test::Pki::file("ca/clients/alice.key").string();
  t.certs["revoked"] = (pem_cache() / "revoked.crt").string() + "," + (pem_cache() / "revoked.key").string();
  t.certs["stranger"] = test::Pki::file("other-ca/clients/stranger.pem").string() + "," +
                        test::Pki::file("other-ca/clients/stranger.key").string();
  if (fs::exists(test::Pki::file("ca/clients/admin.pem"))) {
    t.certs["admin"] = test::Pki::file("ca/clients/admin.pem").string() + "," + test::Pki::file("ca/clients/admin.key").string();
  }
  t.prepare = [p = peer.get()](const ScriptInfo& s) { return p->prepare(s); };
  t.keep = peer;
  return t;
}

// The targets every script runs against, in order.
std::vector<Target> targets() {
  std::vector<Target> out;
  out.push_back(dovecot_target());
  out.push_back(postern_target());
  return out;
}

struct RunResult {
  int exit_code;
  std::string output;
};

RunResult run_runner(const Target& t, const std::vector<std::string>& scripts, const std::map<std::string, std::string>& vars) {
  std::vector<std::string> argv{"python3", (script_dir() / "imapconf.py").string(), "--target", t.name, "--host", t.host,
                                "--port", std::to_string(t.port)};
  if (t.imaps_port) argv.insert(argv.end(), {"--imaps-port", std::to_string(t.imaps_port)});
  if (!t.ca_file.empty()) argv.insert(argv.end(), {"--ca", t.ca_file});
  if (!t.tls_name.empty()) argv.insert(argv.end(), {"--tls-name", t.tls_name});
  if (!t.source_address.empty()) argv.insert(argv.end(), {"--source", t.source_address});
  for (const auto& [name, files] : t.certs) argv.insert(argv.end(), {"--cert", name + "=" + files});
  for (const auto& [name, value] : vars) argv.insert(argv.end(), {"--var", name + "=" + value});
  argv.push_back("--transcript");
  for (const auto& s : scripts) argv.push_back(s);
  auto r = test::run(argv, 300s);
  return {r.exit_code, r.output};
}

// Scripts the mmp does not pass yet, each with what it lacks (issue 18 goes on): run against it
// and printed, not failed on. A script that passes while listed here fails the test, so the list
// only shrinks.
const std::map<std::string, std::string> kPosternGaps = {
};

void run_script(const std::string& name) {
  const ScriptInfo s = read_script(name);
  for (const Target& t : targets()) {
    const auto vars = t.prepare(s);
    const RunResult r = run_runner(t, {s.path.string()}, vars);
    if (const auto gap = kPosternGaps.find(name); t.name == "postern" && gap != kPosternGaps.end()) {
      WARN("script " << name << " against postern is a known gap (" << gap->second << "):\n" << r.output);
      CHECK(r.exit_code != 0);
      continue;
    }
    INFO("script " << name << " against " << t.name << ":\n" << r.output);
    CHECK(r.exit_code == 0);
    CHECK((r.output.find("PASS " + name) != std::string::npos || r.output.find("SKIP " + name) != std::string::npos));
  }
}

std::set<std::string>& registered() {
  static std::set<std::string> names;
  return names;
}

struct Registered {
  explicit Registered(const char* name) { registered().insert(name); }
};

#define CONFORMANCE_CONCAT2(a, b) a##b
#define CONFORMANCE_CONCAT(a, b) CONFORMANCE_CONCAT2(a, b)
// One ctest test per script, each its own process with its own Dovecot.
#define CONFORMANCE_SCRIPT(file)                                                 \
  const Registered CONFORMANCE_CONCAT(registered_, __LINE__){file};              \
  TEST_CASE("script " file, "[conformance]") { run_script(file); }

CONFORMANCE_SCRIPT("capability.imap")
CONFORMANCE_SCRIPT("starttls.imap")
CONFORMANCE_SCRIPT("authenticate.imap")
CONFORMANCE_SCRIPT("t10_plaintext_refused.imap")
CONFORMANCE_SCRIPT("enable.imap")
CONFORMANCE_SCRIPT("select.imap")
CONFORMANCE_SCRIPT("mailboxes.imap")
CONFORMANCE_SCRIPT("list.imap")
CONFORMANCE_SCRIPT("status.imap")
CONFORMANCE_SCRIPT("append.imap")
CONFORMANCE_SCRIPT("multiappend.imap")
CONFORMANCE_SCRIPT("idle.imap")
CONFORMANCE_SCRIPT("expunge.imap")
CONFORMANCE_SCRIPT("search.imap")
CONFORMANCE_SCRIPT("fetch.imap")
CONFORMANCE_SCRIPT("store.imap")
CONFORMANCE_SCRIPT("copy_move.imap")
CONFORMANCE_SCRIPT("condstore.imap")
CONFORMANCE_SCRIPT("qresync.imap")
CONFORMANCE_SCRIPT("quota.imap")
CONFORMANCE_SCRIPT("id.imap")
CONFORMANCE_SCRIPT("errors.imap")
CONFORMANCE_SCRIPT("untagged.imap")
CONFORMANCE_SCRIPT("t01_starttls_external.imap")
CONFORMANCE_SCRIPT("t02_admin_proxy.imap")
CONFORMANCE_SCRIPT("t05_imaps_preauth.imap")
CONFORMANCE_SCRIPT("t09_revoked_cert.imap")

TEST_CASE("every script in the folder has its test case and parses", "[conformance]") {
  std::set<std::string> files;
  std::vector<std::string> paths;
  for (const auto& e : fs::directory_iterator(script_dir())) {
    if (e.path().extension() == ".imap") {
      files.insert(e.path().filename().string());
      paths.push_back(e.path().string());
    }
  }
  CHECK(files == registered());
  std::vector<std::string> argv{"python3", (script_dir() / "imapconf.py").string(), "--check"};
  for (const auto& e : fs::directory_iterator(script_dir() / "selftest")) paths.push_back(e.path().string());
  argv.insert(argv.end(), paths.begin(), paths.end());
  const auto r = test::run(argv, 60s);
  INFO(r.output);
  CHECK(r.exit_code == 0);
}

// The runner itself must fail when a server does not answer as a script says: each script in
// selftest/ expects something Dovecot does not do, and the runner must say which expectation failed.
TEST_CASE("the runner reports a server that differs from the script", "[conformance]") {
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"wrong_status.imap", "expected the tagged reply (T:"},
      {"missing_untagged.imap", "expected (S:, in order"},
      {"forbidden_untagged.imap", "must not appear (S!:"},
      {"missing_capability.imap", "capability XYZZY missing"},
      {"unordered_missing.imap", "expected (S~:, any order"},
      {"not_closed.imap", "did not close the connection"},
  };
  Target t = dovecot_target();
  for (const auto& [file, phrase] : cases) {
    ScriptInfo s = read_script("selftest/" + file);
    const RunResult r = run_runner(t, {s.path.string()}, t.prepare(s));
    INFO(file << ":\n" << r.output);
    CHECK(r.exit_code == 1);
    CHECK(r.output.find(phrase) != std::string::npos);
  }
}

// A difference between servers must say why: a [target] line without a comment, an only block
// without a reason, and a step that checks nothing are script errors (exit code 2).
TEST_CASE("the runner refuses a script that does not say why servers differ", "[conformance]") {
  test::TempDir dir;
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"connect a\nC: a1 NOOP\nT[postern]: OK <*>\n", "needs a comment above it"},
      {"only postern\nconnect a\nend\n", "only needs \"-- <why>\""},
      {"connect a\nC: a1 NOOP\n", "needs T:, +:, closed"},
      {"connect a\nC: a1 NOOP\nX: nothing\nT: OK <*>\n", "unknown line kind"},
  };
  for (const auto& [text, phrase] : cases) {
    const auto file = dir.write("bad.imap", text);
    const auto r = test::run({"python3", (script_dir() / "imapconf.py").string(), "--check", file.string()}, 30s);
    INFO(text << "\n" << r.output);
    CHECK(r.exit_code == 2);
    CHECK(r.output.find(phrase) != std::string::npos);
  }
}

}  // namespace
