// authserv_test.cpp: postern-authserv as a process on a loopback port with an embedded directory
// made by postern-directory, driven through its gRPC contract: every mechanism's exchange, policy
// refusals, lookups, tokens and their renewal, admin proxy logins, bad input, mTLS.
#include <grpcpp/grpcpp.h>
#include <signal.h>

#include <catch2/catch.hpp>
#include <chrono>
#include <fstream>
#include <thread>

#include "common/authtoken/authtoken.hpp"
#include "common/grpc/credentials.hpp"
#include "common/tls/nss.hpp"
#include "proto/authserv.grpc.pb.h"
#include "tests/support/dnsmasq.hpp"
#include "tests/support/process.hpp"
#include "tests/support/scram_client.hpp"
#include "tests/support/slapd.hpp"

namespace pb = postern::authserv::v1;
using namespace std::chrono_literals;

namespace {

std::string cli_path() { return test::binary_path("authserv/directory/postern-directory"); }

class Authserv {
 public:
  // `extra_tables` go after the generated tables, `authserv_keys` into [authserv].
  explicit Authserv(std::string extra_tables = "", bool plaintext = true, std::string authserv_keys = "")
      : port_(test::free_port()) {
    db_ = (dir_.path() / "directory").string();
    password_file_ = dir_.write("pw", "correct horse\n").string();
    dir_.write("bob.pw", "bobs secret\n");
    dir_.write("carol.pw", "carols secret\n");
    cli({"domain", "add", "example.com"});
    cli({"user", "add", "alice@example.com", "--mail-host", "store1", "--password-file", password_file_});
    cli({"user", "add", "bob", "--password-file", (dir_.path() / "bob.pw").string()});
    cli({"user", "set", "bob", "status", "inactive"});
    cli({"user", "add", "carol", "--password-file", (dir_.path() / "carol.pw").string()});
    cli({"user", "set", "carol", "store_admin", "true"});
    cli({"user", "set", "alice", "allowed_services", "-pop:*"});
    cli({"user", "set", "alice", "add_address", "a.smith@example.com"});
    cli({"alias", "add", "team@example.com", "alice@example.com", "carol@example.com"});
    // A user imported from an older system with a salted SHA-512 hash (rehashed at first login).
    auto import = dir_.write("import.txt",
                             "dave@example.com\t{SSHA512}" + ssha512("daves secret", "saltsalt") + "\tstore2\n");
    cli({"import", import.string()});
    std::string cfg =
        "[daemon]\nallow_root = true\n"
        "[log]\nlevel = \"info\"\n"
        "[metrics]\nlisten = \"\"\n"
        "[authserv]\nlisten = \"127.0.0.1:" + std::to_string(port_) + "\"\n"
        "default_domain = \"example.com\"\n" + std::string(plaintext ? "plaintext = true\n" : "") + authserv_keys +
        "[directory]\nbackend = \"embedded\"\npath = \"" + db_ + "\"\n"
        "[password]\nargon2_ops = 1\nargon2_memory = \"64K\"\n"
        "[tokens]\nkey_file = \"" + (dir_.path() / "token.key").string() + "\"\n" + extra_tables;
    config_ = dir_.write("authserv.toml", cfg).string();
  }
  ~Authserv() { stop(); }

  void start() {
    process_ = std::make_unique<test::ChildProcess>(
        std::vector<std::string>{test::binary_path("authserv/postern-authserv"), "--config", config_},
        (dir_.path() / "authserv.log").string());
    auto until = std::chrono::steady_clock::now() + 20s;
    while (log().find("event=started") == std::string::npos) {
      if (!process_->running() || std::chrono::steady_clock::now() > until) FAIL("authserv did not start: " << log());
      std::this_thread::sleep_for(20ms);
    }
  }
  int stop() {
    if (!process_ || !process_->running()) return 0;
    process_->signal(SIGTERM);
    return process_->wait(20s);
  }

  void cli(std::vector<std::string> words) {
    std::vector<std::string> argv{cli_path(), "--db", db_, "--default-domain", "example.com",
                                  "--argon2-ops", "1", "--argon2-mem-kib", "64"};
    argv.insert(argv.end(), words.begin(), words.end());
    auto r = test::run(argv);
    INFO(r.output);
    REQUIRE(r.exit_code == 0);
  }

  static std::string ssha512(std::string_view password, std::string_view salt) {
    unsigned char digest[64];
    crypto_hash_sha512_state st;
    crypto_hash_sha512_init(&st);
    crypto_hash_sha512_update(&st, reinterpret_cast<const unsigned char*>(password.data()), password.size());
    crypto_hash_sha512_update(&st, reinterpret_cast<const unsigned char*>(salt.data()), salt.size());
    crypto_hash_sha512_final(&st, digest);
    return test::b64e(std::string(reinterpret_cast<char*>(digest), 64) + std::string(salt));
  }

  std::unique_ptr<pb::Auth::Stub> stub(std::shared_ptr<grpc::ChannelCredentials> credentials = nullptr) const {
    if (!credentials) credentials = grpc::InsecureChannelCredentials();
    return pb::Auth::NewStub(grpc::CreateChannel(target(), credentials));
  }
  std::string target() const { return "127.0.0.1:" + std::to_string(port_); }
  std::string log() const { return test::read_file(dir_.path() / "authserv.log"); }
  std::filesystem::path dir() const { return dir_.path(); }
  const std::string& db() const { return db_; }

 private:
  test::TempDir dir_;
  int port_;
  std::string db_, password_file_, config_;
  std::unique_ptr<test::ChildProcess> process_;
};

pb::ConnectionFacts facts(std::string service = "imap", std::string tls = "TLS1.3") {
  pb::ConnectionFacts f;
  f.set_service(service);
  f.set_client_address("192.0.2.7");
  f.set_server_address("127.0.0.1");
  f.set_tls_version(tls);
  f.set_session_id("t1");
  return f;
}

// One Authenticate stream driven step by step.
class Exchange {
 public:
  explicit Exchange(pb::Auth::Stub& stub) {
    context_.set_deadline(std::chrono::system_clock::now() + 10s);
    stream_ = stub.Authenticate(&context_);
  }
  pb::AuthReply start(const std::string& mechanism, std::optional<std::string> initial,
                      pb::ConnectionFacts f = facts()) {
    pb::AuthStep step;
    auto* s = step.mutable_start();
    *s->mutable_facts() = std::move(f);
    s->set_mechanism(mechanism);
    if (initial) {
      s->set_has_initial_response(true);
      s->set_initial_response(*initial);
    }
    return send(step);
  }
  pb::AuthReply respond(const std::string& data) {
    pb::AuthStep step;
    step.set_response(data);
    return send(step);
  }
  pb::AuthReply send(const pb::AuthStep& step) {
    REQUIRE(stream_->Write(step));
    pb::AuthReply reply;
    REQUIRE(stream_->Read(&reply));
    return reply;
  }
  grpc::Status finish() {
    stream_->WritesDone();
    pb::AuthReply extra;
    while (stream_->Read(&extra)) {
    }
    return stream_->Finish();
  }

 private:
  grpc::ClientContext context_;
  std::unique_ptr<grpc::ClientReaderWriter<pb::AuthStep, pb::AuthReply>> stream_;
};

pb::AuthReply plain(pb::Auth::Stub& stub, std::string authz, std::string user, std::string password,
                    pb::ConnectionFacts f = facts()) {
  Exchange x(stub);
  auto reply = x.start("PLAIN", authz + std::string(1, '\0') + user + std::string(1, '\0') + password, std::move(f));
  CHECK(x.finish().ok());
  return reply;
}

common::authtoken::Verifier verifier_for(const Authserv& a) {
  auto pub = test::read_file(a.dir() / "token.key.pub");
  while (!pub.empty() && (pub.back() == '\n' || pub.back() == ' ')) pub.pop_back();
  auto v = common::authtoken::Verifier::from_public_keys(std::vector<std::string>{pub});
  REQUIRE(v);
  return std::move(*v);
}

int64_t now_unix() {
  return std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch()).count();
}

}  // namespace

TEST_CASE("PLAIN logs a user in and returns a token the store can verify", "[integration]") {
  Authserv a;
  a.start();
  auto stub = a.stub();
  auto reply = plain(*stub, "", "alice", "correct horse");
  REQUIRE(reply.has_success());
  CHECK(reply.success().canonical() == "alice@example.com");
  CHECK(reply.success().mail_host() == "store1");
  auto claims = verifier_for(a).verify(reply.success().token(), now_unix());
  REQUIRE(claims);
  CHECK(claims->user == "alice@example.com");
  CHECK(claims->allows_service("imap"));
  CHECK(claims->expires_at == reply.success().token_expires_unix());
  CHECK(a.log().find("event=auth") != std::string::npos);
}

TEST_CASE("wrong passwords, unknown and inactive users get one answer and distinct log reasons", "[integration]") {
  Authserv a;
  a.start();
  auto stub = a.stub();
  auto wrong = plain(*stub, "", "alice@example.com", "wrong");
  auto unknown = plain(*stub, "", "nobody@example.com", "x");
  auto inactive = plain(*stub, "", "bob", "bobs secret");
  for (const auto* r : {&wrong, &unknown, &inactive}) {
    REQUIRE(r->has_failure());
    CHECK(r->failure().kind() == pb::FAILURE_CREDENTIALS);
  }
  auto log = a.log();
  CHECK(log.find("wrong_password") != std::string::npos);
  CHECK(log.find("unknown_user") != std::string::npos);
  CHECK(log.find("inactive") != std::string::npos);
  CHECK(log.find("correct horse") == std::string::npos);
  CHECK(log.find("bobs secret") == std::string::npos);
}

TEST_CASE("plaintext mechanisms are neither offered nor accepted without TLS", "[integration]") {
  Authserv a;
  a.start();
  auto stub = a.stub();
  auto mechanisms = [&](pb::ConnectionFacts f) {
    grpc::ClientContext context;
    pb::MechanismsRequest request;
    *request.mutable_facts() = std::move(f);
    pb::MechanismsResponse response;
    REQUIRE(stub->Mechanisms(&context, request, &response).ok());
    return std::vector<std::string>(response.mechanisms().begin(), response.mechanisms().end());
  };
  auto clear = mechanisms(facts("imap", ""));
  CHECK(std::find(clear.begin(), clear.end(), "PLAIN") == clear.end());
  CHECK(std::find(clear.begin(), clear.end(), "SCRAM-SHA-256") != clear.end());
  auto tls = mechanisms(facts("imap", "TLS1.2"));
  CHECK(std::find(tls.begin(), tls.end(), "PLAIN") != tls.end());
  auto reply = plain(*stub, "", "alice", "correct horse", facts("imap", ""));
  REQUIRE(reply.has_failure());
  CHECK(reply.failure().kind() == pb::FAILURE_MECHANISM);
}

TEST_CASE("LOGIN asks for the name and the password in two challenges", "[integration]") {
  Authserv a;
  a.start();
  auto stub = a.stub();
  Exchange x(*stub);
  auto first = x.start("LOGIN", std::nullopt);
  REQUIRE(first.has_challenge());
  auto second = x.respond("alice");
  REQUIRE(second.has_challenge());
  auto done = x.respond("correct horse");
  REQUIRE(done.has_success());
  CHECK(done.success().canonical() == "alice@example.com");
  CHECK(x.finish().ok());
}

TEST_CASE("SCRAM-SHA-256 proves the password against the stored verifier", "[integration]") {
  Authserv a;
  a.start();
  auto stub = a.stub();
  auto run = [&](const std::string& password) {
    Exchange x(*stub);
    std::string client_first_bare = "n=alice,r=clientnonce123";
    auto server_first = x.start("SCRAM-SHA-256", "n,," + client_first_bare, facts("imap", ""));
    REQUIRE(server_first.has_challenge());
    std::string sf = server_first.challenge();
    auto field = [&](char k) {
      auto p = sf.find(std::string(1, k) + "=");
      auto e = sf.find(',', p);
      return sf.substr(p + 2, e == std::string::npos ? std::string::npos : e - p - 2);
    };
    std::string nonce = field('r'), salt = test::b64d(field('s'));
    int iterations = std::stoi(field('i'));
    std::string without_proof = "c=biws,r=" + nonce;
    std::string auth_message = client_first_bare + "," + sf + "," + without_proof;
    auto proof = test::scram_client_proof(password, salt, iterations, auth_message);
    auto final_reply = x.respond(without_proof + ",p=" + test::b64e(proof));
    x.finish();
    return final_reply;
  };
  auto good = run("correct horse");
  REQUIRE(good.has_success());
  CHECK(good.additional_data().rfind("v=", 0) == 0);
  auto bad = run("wrong");
  REQUIRE(bad.has_failure());
  CHECK(bad.failure().kind() == pb::FAILURE_CREDENTIALS);
}

TEST_CASE("a store administrator may act for a user; a user may not act for another", "[integration]") {
  Authserv a;
  a.start();
  auto stub = a.stub();
  auto admin = plain(*stub, "alice", "carol", "carols secret");
  REQUIRE(admin.has_success());
  CHECK(admin.success().canonical() == "alice@example.com");
  CHECK(admin.success().authcid() == "carol@example.com");
  auto user = plain(*stub, "carol", "alice", "correct horse");
  REQUIRE(user.has_failure());
  CHECK(user.failure().kind() == pb::FAILURE_AUTHZ);
}

TEST_CASE("the user's service filter refuses a service after a good password", "[integration]") {
  Authserv a;
  a.start();
  auto stub = a.stub();
  auto pop = plain(*stub, "", "alice", "correct horse", facts("pop"));
  REQUIRE(pop.has_failure());
  CHECK(pop.failure().kind() == pb::FAILURE_NOT_ALLOWED);
}

TEST_CASE("an imported {SSHA512} password logs in and is rehashed to argon2id with a SCRAM verifier", "[integration]") {
  Authserv a;
  a.start();
  auto stub = a.stub();
  REQUIRE(plain(*stub, "", "dave", "daves secret").has_success());
  CHECK(a.log().find("event=password_rehashed") != std::string::npos);
  REQUIRE(plain(*stub, "", "dave", "daves secret").has_success());  // the new hash verifies
}

TEST_CASE("lookups answer users by any address, aliases expanded, and unknown", "[integration]") {
  Authserv a;
  a.start();
  auto stub = a.stub();
  auto recipient = [&](const std::string& address) {
    grpc::ClientContext context;
    pb::LookupRecipientRequest request;
    *request.mutable_facts() = facts("smtp", "");
    request.set_address(address);
    pb::LookupRecipientResponse response;
    REQUIRE(stub->LookupRecipient(&context, request, &response).ok());
    return response;
  };
  auto user = recipient("A.Smith@Example.COM");
  CHECK(user.kind() == pb::LookupRecipientResponse::USER);
  CHECK(user.canonical() == "alice@example.com");
  CHECK(user.mail_host() == "store1");
  auto alias = recipient("team@example.com");
  CHECK(alias.kind() == pb::LookupRecipientResponse::ALIAS);
  CHECK(alias.targets_size() == 2);
  CHECK(recipient("nobody@example.com").kind() == pb::LookupRecipientResponse::UNKNOWN);
  CHECK(recipient("not an address").kind() == pb::LookupRecipientResponse::UNKNOWN);

  grpc::ClientContext context;
  pb::LookupUserRequest request;
  *request.mutable_facts() = facts();
  request.set_login("bob");
  pb::LookupUserResponse response;
  REQUIRE(stub->LookupUser(&context, request, &response).ok());
  REQUIRE(response.found());
  CHECK(response.user().canonical() == "bob@example.com");
  CHECK(response.user().status() == "inactive");
}

namespace {
// One LookupRecipients call; the status and the answers.
std::pair<grpc::Status, pb::LookupRecipientsResponse> batch(pb::Auth::Stub& stub, const std::vector<std::string>& addresses) {
  grpc::ClientContext context;
  pb::LookupRecipientsRequest request;
  for (const auto& address : addresses) {
    auto* one = request.add_requests();
    *one->mutable_facts() = facts("smtp", "");
    one->set_address(address);
  }
  pb::LookupRecipientsResponse response;
  auto status = stub.LookupRecipients(&context, request, &response);
  return {status, response};
}
}  // namespace

TEST_CASE("a batch of recipient lookups is answered in order; an empty or oversize batch is refused", "[integration]") {
  Authserv a;
  a.start();
  auto stub = a.stub();
  std::vector<std::string> addresses{"team@example.com", "nobody@example.com", "A.Smith@Example.COM", "not an address"};
  for (int i = 0; i < 60; ++i) addresses.push_back(i % 2 ? "alice@example.com" : "ghost" + std::to_string(i) + "@example.com");
  auto [status, answers] = batch(*stub, addresses);
  REQUIRE(status.ok());
  REQUIRE(answers.responses_size() == static_cast<int>(addresses.size()));
  CHECK(answers.responses(0).kind() == pb::LookupRecipientResponse::ALIAS);
  CHECK(answers.responses(0).targets_size() == 2);
  CHECK(answers.responses(1).kind() == pb::LookupRecipientResponse::UNKNOWN);
  CHECK(answers.responses(2).kind() == pb::LookupRecipientResponse::USER);
  CHECK(answers.responses(2).canonical() == "alice@example.com");
  CHECK(answers.responses(3).kind() == pb::LookupRecipientResponse::UNKNOWN);
  for (int i = 0; i < 60; ++i)
    CHECK(answers.responses(4 + i).kind() ==
          (i % 2 ? pb::LookupRecipientResponse::USER : pb::LookupRecipientResponse::UNKNOWN));

  auto empty = batch(*stub, {});
  CHECK(empty.first.error_code() == grpc::StatusCode::INVALID_ARGUMENT);
  auto oversize = batch(*stub, std::vector<std::string>(257, "alice@example.com"));
  CHECK(oversize.first.error_code() == grpc::StatusCode::INVALID_ARGUMENT);
  auto largest = batch(*stub, std::vector<std::string>(256, "alice@example.com"));
  CHECK(largest.first.ok());
  CHECK(largest.second.responses_size() == 256);
}

TEST_CASE("a token is renewed until the account is disabled", "[integration]") {
  Authserv a;
  a.start();
  auto stub = a.stub();
  auto login = plain(*stub, "", "alice", "correct horse");
  REQUIRE(login.has_success());
  auto renew = [&](const std::string& token) {
    grpc::ClientContext context;
    pb::RenewTokenRequest request;
    *request.mutable_facts() = facts();
    request.set_token(token);
    pb::RenewTokenResponse response;
    REQUIRE(stub->RenewToken(&context, request, &response).ok());
    return response;
  };
  auto renewed = renew(login.success().token());
  REQUIRE(renewed.ok());
  CHECK(renewed.token() != login.success().token());
  CHECK_FALSE(renew("pt1.garbage.garbage").ok());
  a.cli({"user", "disable", "alice"});  // offline CLI on the LMDB the daemon has open
  auto refused = renew(renewed.token());
  CHECK_FALSE(refused.ok());
  CHECK(refused.reason() == "account_not_active");
}

TEST_CASE("malformed exchanges fail cleanly and the daemon keeps serving", "[integration]") {
  Authserv a;
  a.start();
  auto stub = a.stub();
  {
    Exchange x(*stub);
    pb::AuthStep step;
    step.set_response("no start first");
    auto r = x.send(step);
    REQUIRE(r.has_failure());
    CHECK(r.failure().kind() == pb::FAILURE_PROTOCOL);
  }
  {
    Exchange x(*stub);
    auto r = x.start("CRAM-MD5", std::nullopt);
    REQUIRE(r.has_failure());
    CHECK(r.failure().kind() == pb::FAILURE_MECHANISM);
  }
  {
    Exchange x(*stub);
    auto r = x.start("PLAIN", std::string("only-one-field"));
    REQUIRE(r.has_failure());
    CHECK(r.failure().kind() == pb::FAILURE_PROTOCOL);
  }
  {
    Exchange x(*stub);
    auto r = x.start("PLAIN", std::string(20000, 'x'));
    REQUIRE(r.has_failure());
  }
  {
    // A message over the gRPC limit is refused by the transport.
    grpc::ClientContext context;
    auto stream = stub->Authenticate(&context);
    pb::AuthStep step;
    step.mutable_start()->set_mechanism("PLAIN");
    step.mutable_start()->set_initial_response(std::string(200000, 'x'));
    stream->Write(step);
    pb::AuthReply reply;
    CHECK_FALSE(stream->Read(&reply));
    CHECK_FALSE(stream->Finish().ok());
  }
  {
    // The front end goes away mid-exchange.
    Exchange x(*stub);
    REQUIRE(x.start("LOGIN", std::nullopt).has_challenge());
  }
  REQUIRE(plain(*stub, "", "alice", "correct horse").has_success());
  CHECK(a.stop() == 0);
}

TEST_CASE("rules naming hosts get the client's name from authserv's own DNS when the front end sent none", "[integration]") {
  test::Dnsmasq dns({"--local=/test/", "--local=/in-addr.arpa/",
                     "--host-record=good.test,127.0.0.77",               // PTR and A agree
                     "--ptr-record=78.0.0.127.in-addr.arpa,spoof.test",  // PTR whose A is elsewhere
                     "--address=/spoof.test/192.0.2.1",
                     "--host-record=bad.test,127.0.0.80"});
  Authserv a("[dns]\nservers = [\"" + dns.server() + "\"]\ntimeout = \"500ms\"\n");
  // erin may use IMAP from good.test only; bob (made active) may not use it from bad.test.
  a.cli({"user", "add", "erin", "--password-file", (a.dir() / "pw").string()});
  a.cli({"user", "set", "erin", "allowed_services", "+imap:good.test"});
  a.cli({"user", "set", "bob", "status", "active"});
  a.cli({"user", "set", "bob", "allowed_services", "-imap:bad.test"});
  a.cli({"user", "set", "carol", "access_domains", "good.test"});
  a.start();
  auto stub = a.stub();
  auto from = [](std::string address, std::string name = "") {
    auto f = facts();
    f.set_client_address(address);
    f.set_client_name(name);
    return f;
  };
  auto login = [&](const std::string& user, const std::string& pw, pb::ConnectionFacts f) {
    auto r = plain(*stub, "", user, pw, std::move(f));
    INFO(user << " " << r.ShortDebugString() << "\n" << a.log());
    return r.has_success() ? std::string("ok") : pb::FailureKind_Name(r.failure().kind());
  };
  CHECK(login("erin", "correct horse", from("127.0.0.77")) == "ok");                     // verified good.test
  CHECK(login("erin", "correct horse", from("127.0.0.78")) == "FAILURE_NOT_ALLOWED");    // spoofed PTR
  CHECK(login("erin", "correct horse", from("127.0.0.79")) == "FAILURE_NOT_ALLOWED");    // no PTR
  CHECK(login("bob", "bobs secret", from("127.0.0.80")) == "FAILURE_NOT_ALLOWED");       // the deny now sees bad.test
  CHECK(login("bob", "bobs secret", from("127.0.0.77")) == "ok");
  CHECK(login("carol", "carols secret", from("127.0.0.77")) == "ok");                    // Netscape access domains
  CHECK(login("carol", "carols secret", from("127.0.0.79")) == "FAILURE_NOT_ALLOWED");
  // A name the front end verified is used as sent, without a query.
  CHECK(login("erin", "correct horse", from("127.0.0.79", "good.test")) == "ok");
  CHECK(a.log().find("bad.test") != std::string::npos);
}

TEST_CASE("EXTERNAL maps the front end's verified client certificate to a user through certmap", "[integration]") {
  // The default section maps by e-mail; the partner CA's section also asks for VerifyCert.
  test::TempDir conf;
  auto certmap = conf.write("certmap.conf",
                            "certmap default default\ndefault:DNComps\ndefault:FilterComps e=mail\n"
                            "certmap partner CN=Partner-CA\npartner:DNComps\npartner:FilterComps e=mail\n"
                            "partner:VerifyCert on\n");
  Authserv a("[sasl]\ncertmap = \"" + certmap.string() + "\"\n");
  a.start();
  auto stub = a.stub();
  auto cert = [](std::string subject, std::string issuer = "CN=Postern-CA,O=Postern") {
    auto f = facts();
    f.set_client_cert_subject(subject);
    f.set_client_cert_issuer(issuer);
    f.set_client_cert_der("not compared here");
    return f;
  };
  {
    // The embedded directory stores no certificates, so VerifyCert cannot pass: refused, and why.
    Exchange x(*stub);
    auto r = x.start("EXTERNAL", std::string(), cert("E=alice@example.com,CN=Alice", "CN=Partner-CA"));
    REQUIRE(r.has_failure());
    CHECK(r.failure().kind() == pb::FAILURE_CREDENTIALS);
    CHECK(a.log().find("VerifyCert needs certificates stored in the directory") != std::string::npos);
  }
  {
    Exchange x(*stub);
    auto r = x.start("EXTERNAL", std::string(), cert("E=a.smith@example.com,CN=Alice Smith,O=Example"));
    INFO(r.failure().reason() << "\n" << a.log());
    REQUIRE(r.has_success());
    CHECK(r.success().canonical() == "alice@example.com");
  }
  {
    Exchange x(*stub);
    auto r = x.start("EXTERNAL", std::string(), cert("E=stranger@example.org,CN=Stranger"));
    REQUIRE(r.has_failure());
    CHECK(r.failure().kind() == pb::FAILURE_CREDENTIALS);
  }
  {
    // Not an admin: may not name another user as authorization id.
    Exchange x(*stub);
    auto r = x.start("EXTERNAL", std::string("carol"), cert("E=alice@example.com,CN=Alice"));
    REQUIRE(r.has_failure());
    CHECK(r.failure().kind() == pb::FAILURE_AUTHZ);
  }
  {
    // Without a verified certificate EXTERNAL is not even a mechanism.
    Exchange x(*stub);
    auto r = x.start("EXTERNAL", std::string());
    REQUIRE(r.has_failure());
    CHECK(r.failure().kind() == pb::FAILURE_MECHANISM);
  }
}

TEST_CASE("over mutual TLS only front ends of the deployment CA get in, and admins may edit the directory", "[integration]") {
  test::TempDir pki;
  auto certs = [&](std::vector<std::string> args) {
    args.insert(args.begin(), test::source_path("deploy/certs"));
    auto r = test::run(args, 120s);
    INFO(r.output);
    REQUIRE(r.exit_code == 0);
  };
  auto d = [&](const char* name) { return (pki.path() / name).string(); };
  certs({"ca", "--dir", d("ca")});
  certs({"host", "--ca", d("ca"), "--dir", d("authserv1"), "--host", "authserv1", "--ip", "127.0.0.1"});
  certs({"host", "--ca", d("ca"), "--dir", d("mmp1"), "--host", "mmp1", "--ip", "127.0.0.1"});

  std::string tls = "[tls]\ndb_dir = \"" + d("authserv1") + "\"\n";
  Authserv a(tls, false, "admins = [\"mmp1\"]\n");
  a.start();
  Authserv other(tls, false, "admins = [\"ops1\"]\n");
  other.start();

  auto nss = common::tls::Nss::init({.db_dir = d("mmp1"), .password_file = d("mmp1") + "/password"});
  REQUIRE(nss);
  {
    auto credentials = common::rpc::channel_credentials({});
    REQUIRE(credentials);
    auto stub = a.stub(*credentials);
    auto reply = plain(*stub, "", "alice", "correct horse");
    REQUIRE(reply.has_success());
    auto claims = verifier_for(a).verify(reply.success().token(), now_unix(), "mmp1");
    REQUIRE(claims);
    CHECK(claims->front_end == "mmp1");

    // Admin calls need the caller's CN in [authserv] admins (postern-directory --online).
    grpc::ClientContext context;
    pb::AdminRequest request;
    for (auto w : {"user", "add", "erin", "--password-stdin"}) request.add_args(w);
    request.set_secret("erins secret");
    pb::AdminResponse response;
    REQUIRE(stub->Admin(&context, request, &response).ok());
    INFO(response.error());
    CHECK(response.ok());
    CHECK(plain(*stub, "", "erin", "erins secret").has_success());

    // The same through postern-directory --online with this host's database.
    auto pw = pki.write("frank.pw", "franks secret\n");
    auto cli = test::run({cli_path(), "--online", a.target(), "--nss", d("mmp1"), "user", "add", "frank",
                          "--password-file", pw.string()});
    INFO(cli.output);
    CHECK(cli.exit_code == 0);
    CHECK(plain(*stub, "", "frank", "franks secret").has_success());
    auto listed = test::run({cli_path(), "--online", a.target(), "--nss", d("mmp1"), "list", "example.com"});
    CHECK(listed.output.find("frank@example.com") != std::string::npos);
    auto denied = test::run({cli_path(), "--online", other.target(), "--nss", d("mmp1"), "list"});
    CHECK(denied.exit_code == 1);

    grpc::ClientContext refused_context;
    pb::AdminRequest list;
    list.add_args("list");
    CHECK(other.stub(*credentials)->Admin(&refused_context, list, &response).error_code() ==
          grpc::StatusCode::PERMISSION_DENIED);
  }
  {
    // TLS, but no client certificate: the handshake is refused.
    grpc::SslCredentialsOptions o;
    o.pem_root_certs = test::read_file(pki.path() / "ca" / "ca.pem");
    auto stub = a.stub(grpc::SslCredentials(o));
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() + 5s);
    pb::MechanismsRequest request;
    pb::MechanismsResponse response;
    CHECK_FALSE(stub->Mechanisms(&context, request, &response).ok());
  }
  {
    // Plaintext to an mTLS port: refused.
    auto stub = a.stub();
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() + 5s);
    pb::MechanismsRequest request;
    pb::MechanismsResponse response;
    CHECK_FALSE(stub->Mechanisms(&context, request, &response).ok());
  }
  CHECK(a.stop() == 0);
  CHECK(other.stop() == 0);
  CHECK((*nss)->shutdown());
}

namespace {
std::string b64url(std::string_view in) {
  std::string out(sodium_base64_encoded_len(in.size(), sodium_base64_VARIANT_URLSAFE_NO_PADDING), '\0');
  sodium_bin2base64(out.data(), out.size(), reinterpret_cast<const unsigned char*>(in.data()), in.size(),
                    sodium_base64_VARIANT_URLSAFE_NO_PADDING);
  out.resize(out.size() - 1);
  return out;
}
}  // namespace

TEST_CASE("OAUTHBEARER and XOAUTH2 accept a signed token from a configured issuer for its own user", "[integration]") {
  unsigned char pk[crypto_sign_PUBLICKEYBYTES], sk[crypto_sign_SECRETKEYBYTES];
  crypto_sign_keypair(pk, sk);
  Authserv a("[[sasl.oauth_issuer]]\nissuer = \"https://idp.test\"\nuser_claim = \"email\"\nkeys = [\"ed25519:" +
             b64url(std::string_view(reinterpret_cast<char*>(pk), sizeof pk)) + "\"]\n");
  a.start();
  auto stub = a.stub();
  auto jwt = [&](std::string email, int64_t exp) {
    std::string signing_input = b64url(R"({"alg":"EdDSA","typ":"JWT"})") + "." +
                                b64url(R"({"iss":"https://idp.test","email":")" + email + R"(","exp":)" +
                                       std::to_string(exp) + "}");
    unsigned char sig[crypto_sign_BYTES];
    crypto_sign_detached(sig, nullptr, reinterpret_cast<const unsigned char*>(signing_input.data()),
                         signing_input.size(), sk);
    return signing_input + "." + b64url(std::string_view(reinterpret_cast<char*>(sig), sizeof sig));
  };
  auto bearer = [&](std::string mechanism, std::string user, std::string token) {
    std::string message = mechanism == "XOAUTH2" ? "user=" + user + "\x01" + "auth=Bearer " + token + "\x01\x01"
                                                 : "n,a=" + user + ",\x01" + "auth=Bearer " + token + "\x01\x01";
    Exchange x(*stub);
    auto reply = x.start(mechanism, message);
    // A refused token gets the RFC 7628 §3.2.2 error challenge; the client acknowledges with %x01.
    if (reply.has_challenge()) reply = x.respond("\x01");
    return reply;
  };
  auto good = jwt("alice@example.com", now_unix() + 300);
  auto ok = bearer("OAUTHBEARER", "alice@example.com", good);
  REQUIRE(ok.has_success());
  CHECK(ok.success().canonical() == "alice@example.com");
  CHECK(bearer("XOAUTH2", "alice", good).has_success());
  // The token names alice: it cannot open carol's mailbox.
  auto other = bearer("XOAUTH2", "carol@example.com", good);
  REQUIRE(other.has_failure());
  CHECK(other.failure().kind() == pb::FAILURE_CREDENTIALS);
  auto expired = bearer("OAUTHBEARER", "alice@example.com", jwt("alice@example.com", now_unix() - 3600));
  REQUIRE(expired.has_failure());
  CHECK(expired.failure().kind() == pb::FAILURE_CREDENTIALS);
  auto log = a.log();
  CHECK(log.find("token_names_another_user") != std::string::npos);
  CHECK(log.find("token_expired") != std::string::npos);
  CHECK(log.find(good) == std::string::npos);  // tokens are credentials: never logged
}

// A throwaway certificate from openssl, as DER.
std::string openssl_certificate_der(const std::string& subject) {
  test::TempDir dir;
  auto made = test::run({"openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
                         "-days", "1", "-subj", subject, "-keyout", (dir.path() / "k.pem").string(), "-outform", "DER",
                         "-out", (dir.path() / "c.der").string()});
  INFO(made.output);
  REQUIRE(made.exit_code == 0);
  return test::read_file(dir.path() / "c.der");
}

TEST_CASE("with the LDAP backend, logins bind as the user and lookups search the Sun schema", "[integration]") {
  test::Slapd slapd;
  // Alice's entry holds her certificate, for certmap's VerifyCert.
  const std::string alice_der = openssl_certificate_der("/CN=alice/emailAddress=alice@example.com");
  std::string ldif = test::read_file(test::source_path("tests/authserv/ldap/data/directory.ldif"));
  for (const auto& [key, value] : std::vector<std::pair<std::string, std::string>>{
           {"@ALICE_PW@", "{SSHA512}" + Authserv::ssha512("alicepw", "12345678")},
           {"@BOB_PW@", "{SSHA512}" + Authserv::ssha512("bobpw", "87654321")},
           {"@CAROL_PW@", "{SSHA512}" + Authserv::ssha512("carolpw", "abcdefgh")},
           {"@ALICE_CERT@", test::b64e(alice_der)}}) {
    for (auto pos = ldif.find(key); pos != std::string::npos; pos = ldif.find(key)) ldif.replace(pos, key.size(), value);
  }
  auto added = slapd.add(ldif);
  INFO(added.output);
  REQUIRE(added.exit_code == 0);

  test::TempDir secrets;
  auto bind_pw = secrets.write("bind.pw", "servicepw\n");
  auto certmap = secrets.write("certmap.conf",
                               "certmap default default\ndefault:DNComps\ndefault:FilterComps e=mail\n"
                               "default:VerifyCert on\n");
  Authserv a("[ldap]\nurls = [\"" + slapd.url() + "\"]\nbind_dn = \"cn=authserv,o=postern\"\n"
             "bind_password_file = \"" + bind_pw.string() + "\"\nbase_dn = \"o=postern\"\n"
             "password_check = \"bind\"\noperation_timeout = \"1s\"\n"
             "[sasl]\ncertmap = \"" + certmap.string() + "\"\n");
  // The generated config names the embedded backend: switch it.
  {
    auto path = a.dir() / "authserv.toml";
    auto text = test::read_file(path);
    text.replace(text.find("backend = \"embedded\""), 20, "backend = \"ldap\"    ");
    std::ofstream(path) << text;
  }
  a.start();
  auto stub = a.stub();
  auto ok = plain(*stub, "", "alice@example.com", "alicepw");
  INFO(a.log());
  REQUIRE(ok.has_success());
  CHECK(ok.success().canonical() == "alice@example.com");
  CHECK(ok.success().mail_host() == "store1.example.com");
  auto wrong = plain(*stub, "", "alice@example.com", "nope");
  REQUIRE(wrong.has_failure());
  CHECK(wrong.failure().kind() == pb::FAILURE_CREDENTIALS);
  // Injection in the login name finds nobody and fails like any unknown user.
  auto injected = plain(*stub, "", "*)(uid=*", "alicepw");
  REQUIRE(injected.has_failure());
  CHECK(injected.failure().kind() == pb::FAILURE_CREDENTIALS);

  grpc::ClientContext context;
  pb::LookupRecipientRequest request;
  *request.mutable_facts() = facts("smtp", "");
  request.set_address("alice.liddell@example.com");
  pb::LookupRecipientResponse response;
  REQUIRE(stub->LookupRecipient(&context, request, &response).ok());
  CHECK(response.kind() == pb::LookupRecipientResponse::USER);
  CHECK(response.canonical() == "alice@example.com");
  // A batch: its lookups run on the directory pool at once, each answer in its own place.
  std::vector<std::string> addresses;
  for (int i = 0; i < 24; ++i) addresses.push_back(i % 3 ? "nobody" + std::to_string(i) + "@example.com" : "alice.liddell@example.com");
  auto [status, answers] = batch(*stub, addresses);
  REQUIRE(status.ok());
  REQUIRE(answers.responses_size() == 24);
  for (int i = 0; i < 24; ++i)
    CHECK(answers.responses(i).kind() == (i % 3 ? pb::LookupRecipientResponse::UNKNOWN : pb::LookupRecipientResponse::USER));

  // EXTERNAL with VerifyCert on: the presented certificate must be the one in alice's entry.
  auto external = [&](const std::string& der) {
    auto f = facts();
    f.set_client_cert_subject("E=alice@example.com,CN=alice");
    f.set_client_cert_issuer("E=alice@example.com,CN=alice");
    f.set_client_cert_der(der);
    Exchange x(*stub);
    return x.start("EXTERNAL", std::string(), f);
  };
  auto same = external(alice_der);
  INFO(same.failure().reason() << "\n" << a.log());
  REQUIRE(same.has_success());
  CHECK(same.success().canonical() == "alice@example.com");
  // Same subject, another key: certmap finds alice's entry, but her stored certificate differs.
  auto other_cert = external(openssl_certificate_der("/CN=alice/emailAddress=alice@example.com"));
  REQUIRE(other_cert.has_failure());
  CHECK(other_cert.failure().kind() == pb::FAILURE_CREDENTIALS);
  CHECK(a.log().find("cert_mismatch") != std::string::npos);

  // The directory stops answering: a clear temporary failure, not a hang or a crash.
  slapd.pause();
  auto down = plain(*stub, "", "alice@example.com", "alicepw");
  REQUIRE(down.has_failure());
  CHECK(down.failure().kind() == pb::FAILURE_TEMPORARY);
  CHECK(batch(*stub, {"alice.liddell@example.com", "nobody@example.com"}).first.error_code() ==
        grpc::StatusCode::UNAVAILABLE);
  slapd.resume();
  CHECK(plain(*stub, "", "alice@example.com", "alicepw").has_success());
}
