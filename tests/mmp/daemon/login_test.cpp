// login_test.cpp: how postern-mmp logs users in, with real clients (openssl s_client, the
// conformance runner) against a real authserv and store over mutual TLS: client certificates
// (AUTH=EXTERNAL after STARTTLS, PREAUTH on IMAPS, revoked ones), admin proxy logins, service
// access, default and virtual domains (per listener and per SNI name), the error limit, and a
// session that outlives its access token.
#include <catch2/catch.hpp>

#include <chrono>
#include <string>
#include <thread>
#include <vector>

#include "tests/mmp/support/mmp_daemon.hpp"
#include "tests/support/pki.hpp"
#include "tests/support/process.hpp"

namespace {

using namespace std::chrono_literals;

std::string pem(const std::string& client) { return test::Pki::file("ca/clients/" + client + ".pem").string(); }
std::string key(const std::string& client) { return test::Pki::file("ca/clients/" + client + ".key").string(); }
std::string ca() { return test::Pki::file("ca/ca.pem").string(); }

// The mmp with client certificates asked for on both ports, and the users these tests need
// beside the store fixture's: a store administrator, carol (whose certificate is revoked), a user
// who may not use IMAP, and dave in the virtual domain example.org.
test::MmpDaemonOptions options(const std::string& listener_extra = "", const std::string& sections_extra = "",
                               const std::string& imap_extra = "") {
  test::MmpDaemonOptions o;
  o.listener_extra = "client_certs = \"optional\"\n" + listener_extra;
  o.sections_extra = (imap_extra.empty() ? "" : "[imap]\n" + imap_extra) + sections_extra;
  return o;
}

void add_users(test::MmpDaemon& mmp) {
  auto& auth = mmp.store().auth();
  auth.add_user("admin@example.com", "store1");
  auth.cli({"user", "set", "admin@example.com", "store_admin", "true"});
  auth.add_user("carol@example.com", "store1");
  auth.add_user("popper@example.com", "store1");
  auth.cli({"user", "set", "popper@example.com", "allowed_services", "+pop:ALL$-imap:*"});
  auth.cli({"domain", "add", "example.org"});
  auth.add_user("dave@example.org", "store1");
}

// openssl s_client with `lines` sent one a second (it reads the server between them) and its
// output, stdout and stderr. `tls`: "starttls" (-starttls imap, which sends its own CAPABILITY
// and STARTTLS first) or "implicit".
test::CommandResult s_client(int port, const std::string& tls, const std::vector<std::string>& lines,
                             const std::vector<std::string>& extra = {}) {
  std::string feed = "(sleep 1";
  for (const auto& l : lines) feed += "; printf '%s\\r\\n' '" + l + "'; sleep 1";
  feed += ")";
  std::string cmd = feed + " | timeout 30 openssl s_client -ign_eof -connect 127.0.0.1:" + std::to_string(port) +
                    " -CAfile " + ca();
  if (tls == "starttls") cmd += " -starttls imap";
  for (const auto& e : extra) cmd += " " + e;
  return test::run({"sh", "-c", cmd + " 2>&1"}, 60s);
}

std::vector<std::string> cert(const std::string& client) { return {"-cert", pem(client), "-key", key(client)}; }

bool has(const std::string& text, const std::string& needle) { return text.find(needle) != std::string::npos; }

// tests/mmp/conformance/imapconf.py against this mmp, with the variables and certificates its
// README lists for the postern target.
test::CommandResult imapconf(test::MmpDaemon& mmp, const std::vector<std::string>& scripts,
                             const std::vector<std::string>& extra = {}) {
  std::vector<std::string> argv{"python3", test::source_path("tests/mmp/conformance/imapconf.py"), "--target",
                                "postern", "--host", "127.0.0.1", "--port", std::to_string(mmp.imap_port()),
                                "--imaps-port", std::to_string(mmp.imaps_port()), "--ca", ca(), "--transcript",
                                "--var", "user=bob@example.com", "--var", "password=secret-bob",
                                "--var", "user2=user1@example.com", "--var", "password2=secret-user1",
                                "--var", "cert_user=alice@example.com", "--var", "admin_user=admin@example.com",
                                "--var", "admin_password=secret-admin"};
  for (const auto& [name, client] : {std::pair{"alice", "alice"}, {"admin", "admin"}, {"revoked", "carol"}}) {
    argv.insert(argv.end(), {"--cert", std::string(name) + "=" + pem(client) + "," + key(client)});
  }
  argv.insert(argv.end(), {"--cert", "stranger=" + test::Pki::file("other-ca/clients/stranger.pem").string() + "," +
                                          test::Pki::file("other-ca/clients/stranger.key").string()});
  argv.insert(argv.end(), extra.begin(), extra.end());
  argv.insert(argv.end(), scripts.begin(), scripts.end());
  return test::run(argv, 300s);
}


// authserv's log: logins that signed a token (a success without check_only) and check-only ones.
size_t count_lines(const std::string& log, const std::string& a, const std::string& b, bool without_c,
                   const std::string& c) {
  size_t n = 0, start = 0;
  while (start < log.size()) {
    size_t end = log.find('\n', start);
    if (end == std::string::npos) end = log.size();
    const std::string line = log.substr(start, end - start);
    if (has(line, a) && has(line, b) && has(line, c) != without_c) ++n;
    start = end + 1;
  }
  return n;
}
size_t tokens_signed(test::MmpDaemon& mmp) {
  return count_lines(mmp.store().auth().log(), "event=auth ", "result=success", true, "check_only=yes");
}
size_t checks_only(test::MmpDaemon& mmp) {
  return count_lines(mmp.store().auth().log(), "event=auth ", "result=success", false, "check_only=yes");
}

// A SCRAM-SHA-256 login with python's imaplib over implicit TLS (`sni` as server_hostname, "" for
// none), checking the server's signature; prints "scram ok" and the server's answer.
test::CommandResult scram_imaps(int port, const std::string& user, const std::string& password,
                                const std::string& sni = "") {
  static const char* script = R"PY(
import base64, hashlib, hmac, imaplib, os, ssl, sys
port, user, password, sni, ca = sys.argv[1:6]
ctx = ssl.create_default_context(cafile=ca)
ctx.check_hostname = False
bare = "n=" + user + ",r=" + base64.b64encode(os.urandom(18)).decode()
st = {"step": 0}
def step(challenge):
    st["step"] += 1
    if st["step"] == 1:
        return ("n,," + bare).encode()
    if st["step"] == 2:
        sf = challenge.decode()
        f = dict(x.split("=", 1) for x in sf.split(","))
        salted = hashlib.pbkdf2_hmac("sha256", password.encode(), base64.b64decode(f["s"]), int(f["i"]))
        ck = hmac.new(salted, b"Client Key", "sha256").digest()
        nop = "c=biws,r=" + f["r"]
        am = (bare + "," + sf + "," + nop).encode()
        sig = hmac.new(hashlib.sha256(ck).digest(), am, "sha256").digest()
        sk = hmac.new(salted, b"Server Key", "sha256").digest()
        st["v"] = "v=" + base64.b64encode(hmac.new(sk, am, "sha256").digest()).decode()
        return (nop + ",p=" + base64.b64encode(bytes(a ^ b for a, b in zip(ck, sig))).decode()).encode()
    if challenge.decode() != st["v"]:
        raise SystemExit("bad server signature: %r" % challenge)
    return b""
class Client(imaplib.IMAP4_SSL):
    def _create_socket(self, timeout):
        plain = imaplib.IMAP4._create_socket(self, timeout)
        return self.ssl_context.wrap_socket(plain, server_hostname=sni or None)
m = Client("127.0.0.1", int(port), ssl_context=ctx, timeout=20)
print(m.authenticate("SCRAM-SHA-256", step))
print("scram ok")
m.logout()
)PY";
  test::TempDir dir;
  auto path = dir.write("scram.py", script);
  return test::run({"timeout", "40", "python3", path.string(), std::to_string(port), user, password, sni, ca()}, 60s);
}
}  // namespace

TEST_CASE("T-01/T-08: openssl -starttls imap with a mapped certificate sees AUTH=EXTERNAL and logs in with it",
          "[integration]") {
  test::MmpDaemon mmp(options());
  add_users(mmp);
  auto r = s_client(mmp.imap_port(), "starttls", {"b CAPABILITY", "c AUTHENTICATE EXTERNAL =", "d SELECT INBOX", "e LOGOUT"},
                    cert("alice"));
  INFO(r.output << mmp.log());
  CHECK(has(r.output, "b OK"));
  CHECK(has(r.output, "AUTH=EXTERNAL"));
  CHECK(has(r.output, "c OK"));
  CHECK(has(r.output, "d OK"));
  CHECK(has(mmp.log(), "event=client_certificate result=mapped user=alice@example.com"));
  CHECK(has(mmp.log(), "event=login user=alice@example.com mail_host=store1 mechanism=EXTERNAL"));

  // The seed's smoke test: no SASL-IR, the empty response after "+".
  auto t08 = s_client(mmp.imap_port(), "starttls", {"A AUTHENTICATE EXTERNAL", "", "B LOGOUT"}, cert("alice"));
  INFO(t08.output);
  CHECK(has(t08.output, "A OK"));

  // Without a certificate there is nobody to be: no AUTH=EXTERNAL, and EXTERNAL fails.
  auto none = s_client(mmp.imap_port(), "starttls", {"b CAPABILITY", "c AUTHENTICATE EXTERNAL =", "d LOGOUT"});
  INFO(none.output);
  CHECK(has(none.output, "b OK"));
  CHECK(has(none.output, "AUTH=PLAIN"));
  CHECK_FALSE(has(none.output, "AUTH=EXTERNAL"));
  CHECK(has(none.output, "c NO"));

  // A certificate the CA issued to a client that is no user (mta1, no e-mail): verified, unmapped.
  auto unmapped = s_client(mmp.imap_port(), "starttls", {"b CAPABILITY", "c LOGOUT"}, cert("mta1"));
  INFO(unmapped.output);
  CHECK(has(unmapped.output, "b OK"));
  CHECK_FALSE(has(unmapped.output, "AUTH=EXTERNAL"));
  CHECK(has(mmp.log(), "event=client_certificate result=unmapped"));
}

TEST_CASE("T-05: IMAPS with a mapped certificate greets PREAUTH, without one or with another CA's * OK", "[integration]") {
  test::MmpDaemon mmp(options());
  add_users(mmp);
  auto r = s_client(mmp.imaps_port(), "implicit", {"a1 SELECT INBOX", "a2 LOGIN bob secret-bob", "a3 LOGOUT"},
                    cert("alice"));
  INFO(r.output << mmp.log());
  CHECK(has(r.output, "* PREAUTH [CAPABILITY IMAP4rev1"));
  CHECK(has(r.output, "logged in as alice@example.com"));
  CHECK(has(r.output, "a1 OK"));
  CHECK(has(r.output, "a2 BAD"));  // authenticated already

  auto none = s_client(mmp.imaps_port(), "implicit", {"b1 LOGIN alice secret-alice", "b2 LOGOUT"});
  INFO(none.output);
  CHECK(has(none.output, "* OK [CAPABILITY"));
  CHECK_FALSE(has(none.output, "PREAUTH"));
  CHECK(has(none.output, "b1 OK"));

  auto stranger = s_client(mmp.imaps_port(), "implicit", {"c1 AUTHENTICATE EXTERNAL =", "c2 LOGOUT"},
                           {"-cert", test::Pki::file("other-ca/clients/stranger.pem").string(), "-key",
                            test::Pki::file("other-ca/clients/stranger.key").string()});
  INFO(stranger.output);
  CHECK(has(stranger.output, "* OK [CAPABILITY"));
  CHECK(has(stranger.output, "c1 NO"));
  CHECK(has(mmp.log(), "event=bad_client_cert"));
}

TEST_CASE("T-09: a revoked certificate gets no EXTERNAL and no PREAUTH, a tagged NO, and the log says why",
          "[integration]") {
  test::MmpDaemon mmp(options());
  add_users(mmp);
  auto r = s_client(mmp.imap_port(), "starttls",
                    {"A0 CAPABILITY", "A AUTHENTICATE EXTERNAL =", "B LOGIN carol secret-carol", "C LOGOUT"}, cert("carol"));
  INFO(r.output << mmp.log());
  CHECK(has(r.output, "A0 OK"));
  CHECK_FALSE(has(r.output, "AUTH=EXTERNAL"));
  CHECK(has(r.output, "A NO"));
  CHECK(has(r.output, "B OK"));  // a password still works
  auto imaps = s_client(mmp.imaps_port(), "implicit", {"b1 AUTHENTICATE EXTERNAL =", "b2 LOGOUT"}, cert("carol"));
  INFO(imaps.output);
  CHECK(has(imaps.output, "* OK"));
  CHECK_FALSE(has(imaps.output, "PREAUTH"));
  CHECK(has(imaps.output, "b1 NO"));
  const std::string log = mmp.log();
  CHECK(has(log, "event=bad_client_cert reason=\"SEC_ERROR_REVOKED_CERTIFICATE (-8180)"));
  CHECK(has(log, "CN=carol"));
  CHECK_FALSE(has(log, "event=login user=carol@example.com mail_host=store1 mechanism=EXTERNAL"));
}

TEST_CASE("the seed transcripts' conformance scripts pass against the mmp: T-01, T-02, T-05, T-09, T-10",
          "[integration]") {
  test::MmpDaemon mmp(options());
  add_users(mmp);
  const std::string dir = test::source_path("tests/mmp/conformance/");
  auto r = imapconf(mmp, {dir + "t01_starttls_external.imap", dir + "t02_admin_proxy.imap", dir + "t05_imaps_preauth.imap",
                          dir + "t09_revoked_cert.imap", dir + "t10_plaintext_refused.imap"});
  INFO(r.output << mmp.log());
  CHECK(r.exit_code == 0);
}

TEST_CASE("T-02: only a store administrator may log in as another user, with PLAIN or EXTERNAL", "[integration]") {
  test::MmpDaemon mmp(options());
  add_users(mmp);
  REQUIRE(mmp.store().deliver({"bob@example.com"}).output.find("250") != std::string::npos);
  test::TempDir dir;
  auto script = dir.write("proxy.imap",
                          "# admin proxy logins (RFC 4616 authzid)\n"
                          "@title proxy\n"
                          "connect a starttls\n"
                          "C: p AUTHENTICATE PLAIN ${b64:bob\\0admin\\0secret-admin}\n"
                          "T: OK <*>\n"
                          "C: s STATUS INBOX (MESSAGES)\n"
                          "S: * STATUS INBOX (MESSAGES 1)\n"
                          "T: OK <*>\n"
                          "connect b starttls\n"
                          "C: q AUTHENTICATE PLAIN ${b64:bob\\0alice\\0secret-alice}\n"
                          "T: NO [AUTHORIZATIONFAILED] <*>\n"
                          "C: r AUTHENTICATE PLAIN ${b64:\\0alice\\0secret-alice}\n"
                          "T: OK <*>\n");
  auto r = imapconf(mmp, {script.string()});
  INFO(r.output << mmp.log());
  CHECK(r.exit_code == 0);
  const std::string log = mmp.log();
  // The short names took [mmp] default_domain, the authzid too.
  CHECK(has(log, "event=login user=bob@example.com mail_host=store1 proxy_by=admin@example.com mechanism=PLAIN"));
  CHECK(has(log, "event=login_failed kind=authz"));
}

TEST_CASE("a user not allowed IMAP is refused and the log says so, and a flood of failed logins ends the session",
          "[integration]") {
  test::MmpDaemon mmp(options("", "", "max_errors = 3\n"));
  add_users(mmp);
  test::TempDir dir;
  auto script = dir.write("refused.imap",
                          "# service access, then the error limit\n"
                          "@title refused\n"
                          "connect a tls\n"
                          "C: a1 LOGIN popper secret-popper\n"
                          "T: NO [AUTHENTICATIONFAILED] <*>\n"
                          "C: a2 LOGIN alice wrong\n"
                          "T: NO [AUTHENTICATIONFAILED] <*>\n"
                          "C: a3 LOGIN alice wrong-again\n"
                          "T: NO [AUTHENTICATIONFAILED] <*>\n"
                          "S: * BYE <*>\n"
                          "closed\n");
  auto r = imapconf(mmp, {script.string()});
  INFO(r.output << mmp.log() << mmp.store().auth().log());
  CHECK(r.exit_code == 0);
  CHECK(has(mmp.log(), "event=login_failed kind=not_allowed"));
  CHECK(has(mmp.log(), "event=too_many_errors errors=3"));
  CHECK(has(mmp.store().auth().log(), "popper@example.com"));
}

TEST_CASE("MMP-08/09: default domains by listener and by SNI name, each SNI name with its own certificate",
          "[integration]") {
  const int org_port = test::free_port();
  test::MmpDaemon mmp(options("[[listener.sni]]\nname = \"mail.example.org\"\ncertificates = [\"Example-Org\"]\n"
                              "default_domain = \"example.org\"\n",
                              "[[listener]]\nname = \"imaps-org\"\nservice = \"imap\"\naddress = \"127.0.0.1:" +
                                  std::to_string(org_port) + "\"\ntls = \"implicit\"\ndefault_domain = \"example.org\"\n"));
  add_users(mmp);
  // No SNI: [mmp] default_domain (example.com); dave is not there.
  auto plain = s_client(mmp.imaps_port(), "implicit",
                        {"a1 LOGIN dave secret-dave", "a2 AUTHENTICATE PLAIN AGFsaWNlAHNlY3JldC1hbGljZQ==", "a3 LOGOUT"});
  INFO(plain.output << mmp.log());
  CHECK(has(plain.output, "a1 NO"));
  CHECK(has(plain.output, "a2 OK"));  // "\0alice\0secret-alice": alice@example.com
  CHECK(has(plain.output, "subject=O = Postern, CN = mmp1"));
  // SNI mail.example.org: its certificate and its domain.
  auto sni = s_client(mmp.imaps_port(), "implicit", {"b1 LOGIN dave secret-dave", "b2 LOGOUT"},
                      {"-servername", "mail.example.org", "-verify_hostname", "mail.example.org", "-verify_return_error"});
  INFO(sni.output);
  CHECK(has(sni.output, "subject=O = Postern, CN = mail.example.org"));
  CHECK(has(sni.output, "b1 OK"));
  // A listener of its own (the domain's address): its default_domain.
  auto listener = s_client(org_port, "implicit", {"c1 LOGIN dave secret-dave", "c2 LOGOUT"});
  INFO(listener.output);
  CHECK(has(listener.output, "c1 OK"));
  CHECK(has(mmp.log(), "event=login user=dave@example.org"));
  // SCRAM's username is inside its proof, so authserv qualifies it with the domain the mmp sends
  // in the connection facts: the SNI name's, the listener's, and without SNI [mmp]'s (no dave).
  auto scram_sni = scram_imaps(mmp.imaps_port(), "dave", "secret-dave", "mail.example.org");
  INFO(scram_sni.output << mmp.store().auth().log());
  CHECK(has(scram_sni.output, "scram ok"));
  auto scram_listener = scram_imaps(org_port, "dave", "secret-dave");
  INFO(scram_listener.output);
  CHECK(has(scram_listener.output, "scram ok"));
  auto scram_home = scram_imaps(mmp.imaps_port(), "dave", "secret-dave");
  INFO(scram_home.output);
  CHECK_FALSE(has(scram_home.output, "scram ok"));
  CHECK(has(scram_home.output, "AUTHENTICATIONFAILED"));
  auto alice = scram_imaps(mmp.imaps_port(), "alice", "secret-alice");
  INFO(alice.output);
  CHECK(has(alice.output, "scram ok"));
  CHECK(has(mmp.log(), "event=login user=alice@example.com"));
  // EXTERNAL's authorization id, after STARTTLS with SNI: the administrator acts for the bare
  // "dave" (ZGF2ZQ==) of example.org.
  auto external = s_client(mmp.imap_port(), "starttls", {"e1 AUTHENTICATE EXTERNAL ZGF2ZQ==", "e2 LOGOUT"},
                           {"-servername", "mail.example.org", "-cert", pem("admin"), "-key", key("admin")});
  INFO(external.output);
  CHECK(has(external.output, "e1 OK"));
  CHECK(has(mmp.log(), "event=login user=dave@example.org mail_host=store1 proxy_by=admin@example.com"));
}

TEST_CASE("a session longer than its access token keeps working: the mmp renews it through authserv", "[integration]") {
  test::MmpDaemon mmp(options());
  REQUIRE(mmp.store().deliver({"bob@example.com"}).output.find("250") != std::string::npos);
  // authserv's shortest token life.
  mmp.store().auth().stop();
  mmp.store().auth().set_tokens_extra("ttl = \"60s\"\n");
  mmp.store().auth().start();
  test::TempDir dir;
  auto script = dir.write("renew.imap",
                          "# a session past its token's 60 s\n"
                          "@title renew\n"
                          "@timeout 30\n"
                          "connect a tls login\n"
                          "C: a1 SELECT INBOX\n"
                          "T: OK <*>\n"
                          "sleep 25\n"
                          "C: n1 NOOP\n"
                          "T: OK <*>\n"
                          "sleep 25\n"
                          "C: n2 NOOP\n"
                          "T: OK <*>\n"
                          "sleep 20\n"
                          "C: a2 FETCH 1 (BODY.PEEK[HEADER.FIELDS (DELIVERED-TO)])\n"
                          "S: * 1 FETCH <*>bob@example.com<*>\n"
                          "T: OK <*>\n"
                          "C: a3 STATUS INBOX (MESSAGES)\n"
                          "S: * STATUS INBOX (MESSAGES 1)\n"
                          "T: OK <*>\n");
  // gRPC reconnects to the restarted authserv with its back-off (seconds): wait until a login
  // goes through before the timed script starts.
  for (int i = 0; i < 30; ++i) {
    if (mmp.imaplib("implicit", mmp.imaps_port(), "bob@example.com", "secret-bob").exit_code == 0) break;
    std::this_thread::sleep_for(1s);
  }
  auto r = imapconf(mmp, {script.string()});
  INFO(r.output << mmp.log());
  CHECK(r.exit_code == 0);
  CHECK(has(mmp.log(), "event=token_renewed"));
}

TEST_CASE("a mapped certificate costs no token until the session logs in with it: one token per login",
          "[integration]") {
  test::MmpDaemon mmp(options());
  add_users(mmp);
  // STARTTLS, AUTH=EXTERNAL offered (a check-only mapping), then a password login: one token.
  auto r = s_client(mmp.imap_port(), "starttls", {"b CAPABILITY", "c LOGIN bob secret-bob", "d LOGOUT"}, cert("alice"));
  INFO(r.output << mmp.log() << mmp.store().auth().log());
  CHECK(has(r.output, "AUTH=EXTERNAL"));
  CHECK(has(r.output, "c OK"));
  CHECK(has(mmp.log(), "event=client_certificate result=mapped user=alice@example.com"));
  CHECK(checks_only(mmp) == 1);
  CHECK(tokens_signed(mmp) == 1);
  // AUTHENTICATE EXTERNAL after the check: its own exchange, one token.
  auto e = s_client(mmp.imap_port(), "starttls", {"b CAPABILITY", "c AUTHENTICATE EXTERNAL =", "d SELECT INBOX", "e LOGOUT"},
                    cert("alice"));
  INFO(e.output);
  CHECK(has(e.output, "c OK"));
  CHECK(has(e.output, "d OK"));
  CHECK(checks_only(mmp) == 2);
  CHECK(tokens_signed(mmp) == 2);
  // IMAPS: the greeting's mapping is the PREAUTH login itself, one exchange and one token.
  auto p = s_client(mmp.imaps_port(), "implicit", {"a1 SELECT INBOX", "a2 LOGOUT"}, cert("alice"));
  INFO(p.output);
  CHECK(has(p.output, "* PREAUTH"));
  CHECK(has(p.output, "a1 OK"));
  CHECK(checks_only(mmp) == 2);
  CHECK(tokens_signed(mmp) == 3);
}

// MMP-67 says admin proxy logins work over IMAP (STARTTLS), POP3 and Submission, "not on IMAPS
// (PREAUTH leaves no room)": the reason is the certificate's PREAUTH, which logs the administrator
// in as itself before any command. So an administrator's mapped certificate on IMAPS is a PREAUTH
// as the administrator (AUTHENTICATE is then BAD, RFC 9051 §6.2), while a password login with an
// authorization id on IMAPS, where no PREAUTH happened, is the same SASL PLAIN as after STARTTLS,
// with the same store-administrator check and [sasl] proxy_allowed filter.
TEST_CASE("MMP-67 on IMAPS: an administrator's certificate is PREAUTH as itself, PLAIN with an authzid proxies",
          "[integration]") {
  test::MmpDaemon mmp(options());
  add_users(mmp);
  REQUIRE(mmp.store().deliver({"bob@example.com"}).output.find("250") != std::string::npos);
  // (a) the certificate: PREAUTH as admin@example.com, no way to become bob.
  auto a = s_client(mmp.imaps_port(), "implicit", {"a1 AUTHENTICATE EXTERNAL Ym9i", "a2 STATUS INBOX (MESSAGES)", "a3 LOGOUT"},
                    cert("admin"));
  INFO(a.output << mmp.log());
  CHECK(has(a.output, "* PREAUTH"));
  CHECK(has(a.output, "logged in as admin@example.com"));
  CHECK(has(a.output, "a1 BAD"));
  CHECK_FALSE(has(a.output, "MESSAGES 1"));  // not bob's INBOX
  CHECK_FALSE(has(mmp.log(), "proxy_by=admin@example.com"));
  // (b) no certificate: PLAIN with the authzid bob, by the administrator's password.
  auto b = s_client(mmp.imaps_port(), "implicit",
                    {"b1 AUTHENTICATE PLAIN Ym9iAGFkbWluAHNlY3JldC1hZG1pbg==", "b2 STATUS INBOX (MESSAGES)", "b3 LOGOUT"});
  INFO(b.output);
  CHECK(has(b.output, "* OK [CAPABILITY"));
  CHECK(has(b.output, "b1 OK"));
  CHECK(has(b.output, "* STATUS INBOX (MESSAGES 1)"));
  CHECK(has(mmp.log(), "event=login user=bob@example.com mail_host=store1 proxy_by=admin@example.com"));
  // ... and a user who is no administrator may not: alice for bob.
  auto c = s_client(mmp.imaps_port(), "implicit", {"c1 AUTHENTICATE PLAIN Ym9iAGFsaWNlAHNlY3JldC1hbGljZQ==", "c2 LOGOUT"});
  INFO(c.output);
  CHECK(has(c.output, "c1 NO [AUTHORIZATIONFAILED]"));
}
