// authserv_test.cpp: postern-authserv as a process on a loopback port with an embedded directory
// made by postern-directory, driven through its gRPC contract: every mechanism's exchange, policy
// refusals, lookups, tokens and their renewal, admin proxy logins, bad input, mTLS, and a real TLS
// connection's facts carried by common/authclient to authserv's mechanism decisions.
#include <grpcpp/grpcpp.h>
#include <signal.h>

#include <catch2/catch.hpp>
#include <array>
#include <chrono>
#include <fstream>
#include <functional>
#include <mutex>
#include <regex>
#include <thread>

#include "common/authclient/authclient.hpp"
#include "common/authclient/connection_facts.hpp"
#include "common/authtoken/authtoken.hpp"
#include "common/grpc/credentials.hpp"
#include "common/metrics/metrics.hpp"
#include "common/net/address.hpp"
#include "common/runtime/line_framer.hpp"
#include "common/runtime/listener.hpp"
#include "common/runtime/loop.hpp"
#include "common/runtime/timer.hpp"
#include "common/tls/nss.hpp"
#include "common/tls/server.hpp"
#include "proto/authserv.grpc.pb.h"
#include "tests/common/tls/tls_harness.hpp"
#include "tests/support/dnsmasq.hpp"
#include "tests/support/line_client.hpp"
#include "tests/support/process.hpp"
#include "tests/support/scram_client.hpp"
#include "tests/support/slapd.hpp"

namespace pb = postern::authserv::v1;
using namespace std::chrono_literals;

namespace {

std::string cli_path() { return test::binary_path("authserv/directory/postern-directory"); }

class Authserv {
 public:
  // `extra_tables` go after the generated tables, `authserv_keys` into [authserv]. Plaintext gRPC
  // names no front end, so its tokens are unbound: allowed only with `unbound_tokens`, a test
  // setting.
  // `listen_host` is the gRPC port's address ("*": IPv6 and IPv4).
  explicit Authserv(std::string extra_tables = "", bool plaintext = true, std::string authserv_keys = "",
                    bool unbound_tokens = true, std::string listen_host = "127.0.0.1")
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
        "[grpc]\nlisten = \"" + listen_host + ":" + std::to_string(port_) + "\"\n" +
        std::string(plaintext ? "plaintext = true\n" : "") +
        "[authserv]\ndefault_domain = \"example.com\"\n" + authserv_keys +
        "[directory]\nbackend = \"embedded\"\npath = \"" + db_ + "\"\n"
        "[password]\nargon2_ops = 1\nargon2_memory = \"64K\"\n"
        "[tokens]\nkey_file = \"" + (dir_.path() / "token.key").string() + "\"\n" +
        (plaintext && unbound_tokens ? "allow_unbound = true\n" : "") + extra_tables;
    config_ = dir_.write("authserv.toml", cfg).string();
  }
  ~Authserv() { stop(); }

  // The log is appended to across restarts: wait for one more "started" than it already has.
  void start() {
    auto started = [this] {
      const std::string text = log();
      size_t n = 0;
      for (size_t p = text.find("event=started"); p != std::string::npos; p = text.find("event=started", p + 1)) ++n;
      return n;
    };
    const size_t before = started();
    process_ = std::make_unique<test::ChildProcess>(
        std::vector<std::string>{test::binary_path("authserv/postern-authserv"), "--config", config_},
        (dir_.path() / "authserv.log").string());
    auto until = std::chrono::steady_clock::now() + 20s;
    while (started() <= before) {
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
  // The same port over IPv6 loopback (listen_host "*").
  std::string target6() const { return "[::1]:" + std::to_string(port_); }
  std::unique_ptr<pb::Auth::Stub> stub_at(const std::string& where,
                                          std::shared_ptr<grpc::ChannelCredentials> credentials = nullptr) const {
    if (!credentials) credentials = grpc::InsecureChannelCredentials();
    return pb::Auth::NewStub(grpc::CreateChannel(where, credentials));
  }
  // The config as text, to edit before reload().
  std::string config_text() const { return test::read_file(config_); }
  void write_config(const std::string& text) const { std::ofstream(config_) << text; }
  // SIGHUP, then wait until the daemon logged that it reloaded (or refused to).
  void reload() {
    auto count = [this] {
      const std::string text = log();
      size_t n = 0;
      for (size_t p = text.find("event=reload"); p != std::string::npos; p = text.find("event=reload", p + 1))
        if (text.compare(p, 15, "event=reloading") != 0) ++n;
      return n;
    };
    const size_t before = count();
    process_->signal(SIGHUP);
    auto until = std::chrono::steady_clock::now() + 20s;
    while (count() <= before) {
      if (std::chrono::steady_clock::now() > until) FAIL("authserv did not reload: " << log());
      std::this_thread::sleep_for(20ms);
    }
  }
  pid_t pid() const { return process_->pid(); }
  bool running() const { return process_ && process_->running(); }
  std::filesystem::path dir_write(const std::string& name, const std::string& text) { return dir_.write(name, text); }
  // The exit code once it exits on its own (-1 on timeout).
  int wait_exit(std::chrono::milliseconds deadline) { return process_->wait(deadline); }
  std::string log() const { return test::read_file(dir_.path() / "authserv.log"); }
  std::filesystem::path dir() const { return dir_.path(); }
  const std::string& db() const { return db_; }

 private:
  test::TempDir dir_;
  int port_;
  std::string db_, password_file_, config_;
  std::unique_ptr<test::ChildProcess> process_;
};

pb::ConnectionFacts facts(std::string service = "imap", std::string tls = "TLSv1.3") {
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

// A store's verifier for `a`'s tokens; `unbound` accepts the unbound tokens of plaintext tests.
common::authtoken::Verifier verifier_for(const Authserv& a, bool unbound = true) {
  auto pub = test::read_file(a.dir() / "token.key.pub");
  while (!pub.empty() && (pub.back() == '\n' || pub.back() == ' ')) pub.pop_back();
  auto v = common::authtoken::Verifier::from_public_keys(
      std::vector<std::string>{pub}, common::authtoken::VerifierOptions{.binding = {.allow_unbound = unbound}});
  REQUIRE(v);
  return std::move(*v);
}

int64_t now_unix() {
  return std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch()).count();
}

}  // namespace

size_t count_of(const std::string& text, std::string_view what) {
  size_t n = 0;
  for (size_t p = text.find(what); p != std::string::npos; p = text.find(what, p + 1)) ++n;
  return n;
}

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
  auto tls = mechanisms(facts("imap", "TLSv1.2"));
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

namespace {
// SCRAM's server-first for `name`: {salt, iterations}. The exchange is then abandoned.
std::pair<std::string, int> scram_salt(const Authserv& a, const std::string& name) {
  auto stub = a.stub();
  Exchange x(*stub);
  auto first = x.start("SCRAM-SHA-256", "n,,n=" + name + ",r=clientnonce123", facts("imap", ""));
  REQUIRE(first.has_challenge());
  const std::string& sf = first.challenge();
  auto s = sf.find(",s="), i = sf.find(",i=");
  REQUIRE(s != std::string::npos);
  REQUIRE(i != std::string::npos);
  x.finish();
  return {test::b64d(sf.substr(s + 3, i - s - 3)), std::stoi(sf.substr(i + 3))};
}
}  // namespace

TEST_CASE("SCRAM answers unknown names like real ones, with stable fake salts the public key does not give",
          "[integration]") {
  Authserv a;
  a.start();
  const auto real = scram_salt(a, "alice");
  const auto zed = scram_salt(a, "zed");
  const auto zoe = scram_salt(a, "zoe");
  CHECK(zed.first.size() == real.first.size());  // 16 bytes, as new verifiers get
  CHECK(zed.second == real.second);               // the site's iteration count
  CHECK(zed.first != zoe.first);
  CHECK(scram_salt(a, "zed") == zed);
  CHECK(scram_salt(a, "ZED@Example.COM") == zed);  // one account to the directory, one salt

  // Whoever holds only token.key.pub (every store) cannot compute it: not from the public key.
  auto pub = test::read_file(a.dir() / "token.key.pub");
  while (!pub.empty() && pub.back() == '\n') pub.pop_back();
  std::array<unsigned char, 32> from_public{}, mac{};
  crypto_generichash(from_public.data(), from_public.size(), reinterpret_cast<const unsigned char*>(pub.data()),
                     pub.size(), reinterpret_cast<const unsigned char*>("postern-scram-fake-salt"), 23);
  for (std::string name : {"zed", "zed@example.com"}) {
    std::string msg = "scram-fake-salt:" + name;
    crypto_auth_hmacsha256_state st;
    crypto_auth_hmacsha256_init(&st, from_public.data(), from_public.size());
    crypto_auth_hmacsha256_update(&st, reinterpret_cast<const unsigned char*>(msg.data()), msg.size());
    crypto_auth_hmacsha256_final(&st, mac.data());
    CHECK(std::string(reinterpret_cast<const char*>(mac.data()), zed.first.size()) != zed.first);
  }

  // A restart, and a second authserv sharing the key file, give the same salt.
  CHECK(a.stop() == 0);
  a.start();
  CHECK(scram_salt(a, "zed") == zed);
  Authserv b;
  std::filesystem::copy_file(a.dir() / "token.key", b.dir() / "token.key");
  b.start();
  CHECK(scram_salt(b, "zed") == zed);
  CHECK(scram_salt(b, "zoe") == zoe);
}

TEST_CASE("a store administrator may act for a user, a user may not act for another", "[integration]") {
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

TEST_CASE("[sasl] proxy_allowed limits admin proxy logins to the clients it allows", "[integration]") {
  Authserv a("[sasl]\nproxy_allowed = \"+imap:198.51.100.0/24\"\n");
  a.start();
  auto stub = a.stub();
  auto inside = facts();
  inside.set_client_address("198.51.100.20");
  auto allowed = plain(*stub, "alice", "carol", "carols secret", inside);
  REQUIRE(allowed.has_success());
  CHECK(allowed.success().canonical() == "alice@example.com");
  // The admin's own login is not a proxy login: the filter does not apply to it.
  REQUIRE(plain(*stub, "", "carol", "carols secret").has_success());
  auto outside = plain(*stub, "alice", "carol", "carols secret");  // from 192.0.2.7
  REQUIRE(outside.has_failure());
  CHECK(outside.failure().kind() == pb::FAILURE_AUTHZ);
  auto pop = facts("pop");
  pop.set_client_address("198.51.100.20");
  CHECK(plain(*stub, "alice", "carol", "carols secret", pop).has_failure());
  // A rule list that does not parse is a config error naming the key.
  auto text = a.config_text();
  text.replace(text.find("198.51.100.0/24"), 15, "198.51.100.0/99");
  auto r = test::run({test::binary_path("authserv/postern-authserv"), "--config", a.dir_write("bad.toml", text).string(),
                      "--check-config"});
  CHECK(r.exit_code != 0);
  CHECK(r.output.find("proxy_allowed") != std::string::npos);
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
  a.cli({"user", "set", "alice", "quota", "2M"});
  a.cli({"user", "set", "alice", "quota_messages", "500"});
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
  // The store enforces the quota at delivery with what the lookup says.
  CHECK(user.quota_bytes() == 2u << 20);
  CHECK(user.quota_messages() == 500);
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

TEST_CASE("a batch of recipient lookups is answered in order, an empty or oversize batch is refused", "[integration]") {
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

TEST_CASE("without allow_unbound, a caller with no certificate name gets no token, minted or renewed", "[integration]") {
  Authserv a("", true, "", false);  // plaintext gRPC: authserv cannot name the front end
  a.start();
  auto stub = a.stub();
  auto login = plain(*stub, "", "alice", "correct horse");
  REQUIRE(login.has_failure());
  CHECK(login.failure().kind() == pb::FAILURE_TEMPORARY);
  CHECK(a.log().find("unbound_front_end") != std::string::npos);
  CHECK(a.log().find("event=unbound_tokens_allowed") == std::string::npos);
  // Nor is a token bound to a real front end renewed for a caller that cannot prove to be it.
  auto signer = common::authtoken::Signer::load_or_create(a.dir() / "token.key");
  REQUIRE(signer);
  auto token = signer->sign(common::authtoken::new_claims("alice@example.com", {"imap"}, "mmp1", now_unix(), 300s));
  REQUIRE(token);
  grpc::ClientContext context;
  pb::RenewTokenRequest request;
  *request.mutable_facts() = facts();
  request.set_token(*token);
  pb::RenewTokenResponse response;
  REQUIRE(stub->RenewToken(&context, request, &response).ok());
  CHECK_FALSE(response.ok());
  CHECK(response.reason() == "unbound");

  // The test setting lets it through, and says so at start.
  Authserv lax;
  lax.start();
  CHECK(lax.log().find("event=unbound_tokens_allowed") != std::string::npos);
  auto ok = plain(*lax.stub(), "", "alice", "correct horse");
  REQUIRE(ok.has_success());
  CHECK_FALSE(verifier_for(lax, false).verify(ok.success().token(), now_unix(), "mmp1"));  // a store refuses it
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
    auto claims = verifier_for(a, false).verify(reply.success().token(), now_unix(), "mmp1");
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
  // The verified-credential cache: a repeat login binds no more. A password changed in LDAP by
  // another tool moves the entry's modifyTimestamp and entryCSN, which ends the cached entry at once
  // (entryCSN also within the second modifyTimestamp cannot tell apart).
  REQUIRE(plain(*stub, "", "alice@example.com", "alicepw").has_success());
  CHECK(count_of(a.log(), "password=cached") == 1);
  REQUIRE(plain(*stub, "", "carol@example.com", "carolpw").has_success());
  REQUIRE(plain(*stub, "", "carol@example.com", "carolpw").has_success());
  CHECK(count_of(a.log(), "password=cached") == 2);
  auto changed = slapd.modify("dn: uid=carol,ou=People,o=example.com,o=postern\nchangetype: modify\n"
                              "replace: userPassword\nuserPassword: {SSHA512}" + Authserv::ssha512("carolpw2", "hgfedcba") + "\n");
  INFO(changed.output);
  REQUIRE(changed.exit_code == 0);
  auto stale = plain(*stub, "", "carol@example.com", "carolpw");
  REQUIRE(stale.has_failure());
  CHECK(stale.failure().kind() == pb::FAILURE_CREDENTIALS);
  REQUIRE(plain(*stub, "", "carol@example.com", "carolpw2").has_success());
  CHECK(count_of(a.log(), "password=cached") == 2);

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

// ---- a real TLS connection's facts, through common/authclient, to authserv's decisions

namespace {

using namespace common::runtime;

// A listener as mta and mmp run one (common/tls over the runtime), whose sessions answer "FACTS"
// by handing connection_facts() of their own connection to the test; one port with implicit TLS,
// one in plaintext.
class FactsListener {
 public:
  explicit FactsListener(std::shared_ptr<common::tls::ServerContext> context)
      : context_(std::move(context)), connections_(loop_.get()), tls_factory_(*this, true), plain_factory_(*this, false) {
    auto endpoint = *common::net::Endpoint::parse("127.0.0.1:0");
    auto bound = bind_endpoints({endpoint, endpoint}, 1, 16);
    REQUIRE(bound);
    tls_port = (*bound)[0][0].endpoint.port;
    plain_port = (*bound)[1][0].endpoint.port;
    ListenerOptions options;
    options.name = "imaps";
    options.service = "imap";
    tls_ = std::make_unique<Listener>(connections_, options, std::move((*bound)[0][0]), limiter_, stats_, tls_factory_,
                                      nullptr);
    options.name = "imap";
    plain_ = std::make_unique<Listener>(connections_, options, std::move((*bound)[1][0]), limiter_, stats_,
                                        plain_factory_, nullptr);
    REQUIRE(tls_->start());
    REQUIRE(plain_->start());
    thread_ = std::thread([this] { loop_.run(); });
  }
  ~FactsListener() {
    loop_.stop();
    thread_.join();
    tls_.reset();
    plain_.reset();
  }
  // The facts of the last connection that asked, once it has.
  std::optional<common::authclient::ConnectionFacts> take() {
    std::lock_guard lock(mutex_);
    return std::exchange(facts_, std::nullopt);
  }
  int tls_port = 0;
  int plain_port = 0;

 private:
  class FactsSession : public Session {
   public:
    FactsSession(Connection& c, FactsListener& owner) : Session(c), owner_(owner), framer_(1000) {}
    void on_data(std::string_view bytes) override {
      framer_.append(bytes);
      while (connection().open()) {
        auto frame = framer_.next();
        if (!frame) return;
        auto* line = std::get_if<LineFrame>(&*frame);
        if (line == nullptr) continue;
        if (line->text == "FACTS") {
          const auto* transform = connection().transform();
          auto f = common::authclient::connection_facts(connection().info(), transform ? transform->facts() : nullptr);
          {
            std::lock_guard lock(owner_.mutex_);
            owner_.facts_ = std::move(f);
          }
          connection().write("+ok\r\n");
        } else {
          connection().write("+bye\r\n");
          connection().close();
        }
      }
    }

   private:
    FactsListener& owner_;
    LineFramer framer_;
  };
  class Factory : public SessionFactory {
   public:
    Factory(FactsListener& owner, bool tls) : owner_(owner), tls_(tls) {}
    std::unique_ptr<Session> create(Connection& c) override {
      if (tls_) c.start_implicit_tls(owner_.context_->accept(c.info().id));
      return std::make_unique<FactsSession>(c, owner_);
    }

   private:
    FactsListener& owner_;
    bool tls_;
  };

  std::shared_ptr<common::tls::ServerContext> context_;
  Loop loop_;
  common::metrics::Registry registry_;
  ConnectionSet connections_;
  Factory tls_factory_, plain_factory_;
  std::shared_ptr<ConnectionLimiter> limiter_ = std::make_shared<ConnectionLimiter>(0, 0);
  std::shared_ptr<ListenerStats> stats_ = std::make_shared<ListenerStats>("facts", registry_);
  std::unique_ptr<Listener> tls_, plain_;
  std::thread thread_;
  std::mutex mutex_;
  std::optional<common::authclient::ConnectionFacts> facts_;
};

std::string unhex(const std::string& hex) {
  std::string out;
  for (size_t i = 0; i + 1 < hex.size(); i += 2) out += static_cast<char>(std::stoi(hex.substr(i, 2), nullptr, 16));
  return out;
}

// Runs `loop` until `done()`, at most 15 s.
bool run_until(Loop& loop, const std::function<bool()>& done) {
  Timer tick(loop.get());
  auto until = std::chrono::steady_clock::now() + 15s;
  tick.start(1ms, [&] {
    if (done() || std::chrono::steady_clock::now() >= until) loop.stop();
  }, 1ms);
  loop.run();
  tick.stop();
  return done();
}

// What authserv advertises for `facts`, asked through common/authclient as a front end asks.
std::vector<std::string> advertised(common::authclient::AuthClient& client, Loop& loop,
                                    const common::authclient::ConnectionFacts& facts) {
  auto alive = std::make_shared<int>(0);
  std::optional<common::Result<std::vector<std::string>>> got;
  client.mechanisms(loop, alive, facts, [&](common::Result<std::vector<std::string>> r) { got = std::move(r); });
  REQUIRE(run_until(loop, [&] { return got.has_value(); }));
  INFO((*got ? std::string() : got->error().detail));
  REQUIRE(*got);
  return **got;
}

// One SASL exchange relayed by common/authclient; `answer` turns each challenge into a response.
common::authclient::SaslOutput relay(common::authclient::AuthClient& client, Loop& loop, const std::string& mechanism,
                                     const std::string& initial, const common::authclient::ConnectionFacts& facts,
                                     const std::function<std::string(const std::string&)>& answer = {}) {
  std::vector<common::authclient::SaslOutput> outputs;
  common::authclient::SaslRelay r(client, loop, [&](common::authclient::SaslOutput o) { outputs.push_back(std::move(o)); });
  r.start(mechanism, test::b64e(initial), facts);
  for (size_t seen = 0;;) {
    REQUIRE(run_until(loop, [&] { return outputs.size() > seen; }));
    seen = outputs.size();
    auto* challenge = std::get_if<common::authclient::SaslChallenge>(&outputs.back());
    if (challenge == nullptr || !answer) return std::move(outputs.back());
    r.client_line(test::b64e(answer(test::b64d(challenge->base64))));
  }
}

bool has(const std::vector<std::string>& list, std::string_view name) {
  return std::find(list.begin(), list.end(), name) != list.end();
}

}  // namespace

TEST_CASE("a real TLS connection's facts reach authserv in one spelling: PLAIN under TLS, -PLUS with its binding",
          "[integration]") {
  Authserv a;
  a.start();
  auto nss = tlstest::open_nss();
  auto context = common::tls::ServerContext::create(*nss, {});
  REQUIRE(context);
  auto listener = std::make_unique<FactsListener>(*context);
  Loop loop;  // before the client: an AuthClient goes before the loops it delivers to
  common::authclient::AuthClientOptions options;
  options.targets = {a.target()};
  options.tls.plaintext = true;
  auto client = common::authclient::AuthClient::create(options);
  REQUIRE(client);

  // TLS 1.3 from openssl, which prints the tls-exporter value it computed (RFC 9266).
  auto r = tlstest::s_client(listener->tls_port,
                             {"-tls1_3", "-CAfile", tlstest::pki().ca_pem(), "-keymatexport", "EXPORTER-Channel-Binding",
                              "-keymatexportlen", "32"},
                             "FACTS\\r\\nQUIT\\r\\n");
  INFO(r.output);
  std::smatch m;
  REQUIRE(std::regex_search(r.output, m, std::regex("Keying material: ([0-9A-F]+)")));
  const std::string client_cb = unhex(m[1].str());
  auto tls13 = listener->take();
  REQUIRE(tls13);
  CHECK(tls13->tls_version == common::authclient::kTls13);
  CHECK(tls13->tls_version == "TLSv1.3");  // the TLS layer's own spelling, passed on unchanged
  CHECK(tls13->channel_binding == client_cb);
  CHECK(tls13->client_address == "127.0.0.1");
  CHECK(tls13->service == "imap");
  CHECK(tls13->client_cert_subject.empty());  // no client certificate: nothing for certmap

  auto offered = advertised(**client, loop, *tls13);
  CHECK(has(offered, "PLAIN"));
  CHECK(has(offered, "SCRAM-SHA-256-PLUS"));
  auto plain = relay(**client, loop, "PLAIN", std::string("\0alice\0correct horse", 20), *tls13);
  REQUIRE(std::holds_alternative<common::authclient::SaslSuccess>(plain));
  CHECK(std::get<common::authclient::SaslSuccess>(plain).user.canonical == "alice@example.com");

  // SCRAM-SHA-256-PLUS over the binding the client computed: authserv got the same bytes.
  const std::string gs2 = "p=tls-exporter,,", bare = "n=alice,r=clientnonce123";
  auto plus = relay(**client, loop, "SCRAM-SHA-256-PLUS", gs2 + bare, *tls13, [&](const std::string& sf) {
    auto field = [&](char k) {
      auto p = sf.find(std::string(1, k) + "=");
      auto e = sf.find(',', p);
      return sf.substr(p + 2, e == std::string::npos ? std::string::npos : e - p - 2);
    };
    std::string without_proof = "c=" + test::b64e(gs2 + client_cb) + ",r=" + field('r');
    auto proof = test::scram_client_proof("correct horse", test::b64d(field('s')), std::stoi(field('i')),
                                          bare + "," + sf + "," + without_proof);
    return without_proof + ",p=" + test::b64e(proof);
  });
  INFO(a.log());
  REQUIRE(std::holds_alternative<common::authclient::SaslSuccess>(plus));
  CHECK(std::get<common::authclient::SaslSuccess>(plus).additional_data_base64 != "");

  // TLS 1.2: PLAIN, but no -PLUS (tls-exporter is only safe to rely on in TLS 1.3 here).
  auto r12 = tlstest::s_client(listener->tls_port, {"-tls1_2", "-CAfile", tlstest::pki().ca_pem()}, "FACTS\\r\\nQUIT\\r\\n");
  INFO(r12.output);
  auto tls12 = listener->take();
  REQUIRE(tls12);
  CHECK(tls12->tls_version == "TLSv1.2");
  offered = advertised(**client, loop, *tls12);
  CHECK(has(offered, "PLAIN"));
  CHECK_FALSE(has(offered, "SCRAM-SHA-256-PLUS"));

  // Plaintext: no TLS facts, so neither PLAIN nor -PLUS.
  {
    test::LineClient c("127.0.0.1", listener->plain_port);
    REQUIRE(c.send("FACTS\r\n"));
    CHECK(c.read_line() == "+ok");
  }
  auto clear = listener->take();
  REQUIRE(clear);
  CHECK(clear->tls_version.empty());
  offered = advertised(**client, loop, *clear);
  CHECK_FALSE(has(offered, "PLAIN"));
  CHECK(has(offered, "SCRAM-SHA-256"));
  CHECK_FALSE(has(offered, "SCRAM-SHA-256-PLUS"));

  // Another spelling of the version is not TLS to authserv, and the log says why.
  auto other = *tls13;
  other.tls_version = "TLS1.3";
  CHECK_FALSE(has(advertised(**client, loop, other), "PLAIN"));
  CHECK(a.log().find("event=unknown_tls_version") != std::string::npos);

  client->reset();
  listener.reset();
  context->reset();
  CHECK(nss->shutdown());
}

// ---- authserv's port inside the daemon skeleton: access filters, reload, revocation -------------

namespace {
grpc::Status mechanisms_status(pb::Auth::Stub& stub) {
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + 10s);
  pb::MechanismsRequest request;
  *request.mutable_facts() = facts();
  pb::MechanismsResponse response;
  return stub.Mechanisms(&context, request, &response);
}

}  // namespace

TEST_CASE("an address [access] denies is refused by authserv's gRPC port before any handler runs", "[integration]") {
  Authserv a("[access]\ndeny = [\"authserv: [::1]\"]\n", true, "", true, "*");
  a.start();
  auto v4 = a.stub();
  auto v6 = a.stub_at(a.target6());
  CHECK(mechanisms_status(*v4).ok());
  auto denied = mechanisms_status(*v6);
  CHECK(denied.error_code() == grpc::StatusCode::PERMISSION_DENIED);
  CHECK(denied.error_message() == "access denied");
  {
    // A login attempt from there never reaches the SASL code: no auth line, no password check.
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() + 10s);
    auto stream = v6->Authenticate(&context);
    pb::AuthStep step;
    step.mutable_start()->set_mechanism("PLAIN");
    step.mutable_start()->set_has_initial_response(true);
    step.mutable_start()->set_initial_response(std::string("\0alice\0correct horse", 20));
    *step.mutable_start()->mutable_facts() = facts();
    stream->Write(step);
    pb::AuthReply reply;
    CHECK_FALSE(stream->Read(&reply));
    CHECK(stream->Finish().error_code() == grpc::StatusCode::PERMISSION_DENIED);
  }
  auto log = a.log();
  INFO(log);
  CHECK(log.find("event=auth ") == std::string::npos);
  CHECK(count_of(log, "comp=grpc") > 0);
  auto refused = log.find("event=refused");
  REQUIRE(refused != std::string::npos);
  auto line = log.substr(log.rfind('\n', refused) + 1, log.find('\n', refused) - log.rfind('\n', refused) - 1);
  CHECK(line.find("client=[::1]:") != std::string::npos);
  CHECK(line.find("reason=access_denied") != std::string::npos);
  CHECK(line.find("rule=\"deny by [access] deny:1") != std::string::npos);
  CHECK(line.find("method=postern.authserv.v1.Auth/Mechanisms") != std::string::npos);

  // SIGHUP with another filter: the decisions kept per connection go with the old one.
  auto text = a.config_text();
  text.replace(text.find("[::1]"), 5, "127.0.0.1");
  a.write_config(text);
  a.reload();
  CHECK(mechanisms_status(*v4).error_code() == grpc::StatusCode::PERMISSION_DENIED);
  CHECK(mechanisms_status(*v6).ok());
  // Idle channels would hear the drain's GOAWAY only at their next poll: close them first.
  v4.reset();
  v6.reset();
  CHECK(a.stop() == 0);
}

TEST_CASE("a filter naming hosts refuses gRPC peers by their verified reverse name", "[integration]") {
  test::Dnsmasq dns({"--local=/test/", "--local=/in-addr.arpa/", "--local=/ip6.arpa/", "--host-record=mx.bad.test,127.0.0.1"});
  Authserv a("[dns]\nservers = [\"" + dns.server() + "\"]\ntimeout = \"500ms\"\n"
             "[access]\ndeny = [\"authserv: .bad.test\"]\n",
             true, "", true, "*");
  a.start();
  auto denied = mechanisms_status(*a.stub());
  INFO(a.log());
  CHECK(denied.error_code() == grpc::StatusCode::PERMISSION_DENIED);
  CHECK(mechanisms_status(*a.stub_at(a.target6())).ok());  // ::1 has no name
  CHECK(a.log().find("rule=\"deny by [access] deny:1") != std::string::npos);
}

TEST_CASE("SIGHUP adopts a changed certmap.conf and new OAuth issuers without a restart", "[integration]") {
  test::TempDir conf;
  auto certmap = conf.write("certmap.conf", "certmap default default\ndefault:DNComps\ndefault:FilterComps e=mail\n");
  Authserv a("[sasl]\ncertmap = \"" + certmap.string() + "\"\n");
  a.start();
  auto stub = a.stub();
  const pid_t pid = a.pid();
  auto external = [&] {
    auto f = facts();
    f.set_client_cert_subject("E=nobody@example.org,CN=alice");
    f.set_client_cert_issuer("CN=Postern-CA,O=Postern");
    f.set_client_cert_der("not compared here");
    Exchange x(*stub);
    return x.start("EXTERNAL", std::string(), f);
  };
  unsigned char pk[crypto_sign_PUBLICKEYBYTES], sk[crypto_sign_SECRETKEYBYTES];
  crypto_sign_keypair(pk, sk);
  std::string signing_input = b64url(R"({"alg":"EdDSA","typ":"JWT"})") + "." +
                              b64url(R"({"iss":"https://idp.test","email":"alice@example.com","exp":)" +
                                     std::to_string(now_unix() + 300) + "}");
  unsigned char sig[crypto_sign_BYTES];
  crypto_sign_detached(sig, nullptr, reinterpret_cast<const unsigned char*>(signing_input.data()), signing_input.size(),
                       sk);
  const std::string token = signing_input + "." + b64url(std::string_view(reinterpret_cast<char*>(sig), sizeof sig));
  auto bearer = [&] {
    Exchange x(*stub);
    auto reply = x.start("OAUTHBEARER", "n,a=alice@example.com,\x01" "auth=Bearer " + token + "\x01\x01");
    if (reply.has_challenge()) reply = x.respond("\x01");
    return reply;
  };

  // Before: the certificate's e-mail names nobody, and no issuer is configured.
  auto unmapped = external();
  REQUIRE(unmapped.has_failure());
  CHECK(unmapped.failure().kind() == pb::FAILURE_CREDENTIALS);
  auto no_issuer = bearer();
  REQUIRE(no_issuer.has_failure());
  CHECK(no_issuer.failure().kind() == pb::FAILURE_MECHANISM);

  // The operator maps by CN now and adds the identity provider, then sends SIGHUP.
  conf.write("certmap.conf", "certmap default default\ndefault:DNComps\ndefault:FilterComps cn=uid\n");
  a.write_config(a.config_text() + "[[sasl.oauth_issuer]]\nissuer = \"https://idp.test\"\nuser_claim = \"email\"\n"
                                   "keys = [\"ed25519:" + b64url(std::string_view(reinterpret_cast<char*>(pk), sizeof pk)) +
                 "\"]\n");
  a.reload();
  INFO(a.log());
  CHECK(a.log().find("event=adopted") != std::string::npos);
  auto mapped = external();
  INFO(mapped.ShortDebugString());
  REQUIRE(mapped.has_success());
  CHECK(mapped.success().canonical() == "alice@example.com");
  auto signed_in = bearer();
  INFO(signed_in.ShortDebugString());
  REQUIRE(signed_in.has_success());
  CHECK(signed_in.success().canonical() == "alice@example.com");
  CHECK(a.pid() == pid);

  // A certmap.conf that no longer parses rejects the reload; the adopted one stays.
  conf.write("certmap.conf", "certmap default default\ndefault:NoSuchProperty x\n");
  a.reload();
  CHECK(a.log().find("event=reload_rejected") != std::string::npos);
  CHECK(external().has_success());
}

TEST_CASE("a front end revoked while connected is refused from its next call after the CRL and SIGHUP", "[integration]") {
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
  certs({"host", "--ca", d("ca"), "--dir", d("mmp2"), "--host", "mmp2", "--ip", "127.0.0.1"});
  // The host's CRL file, as deploy/certs installs it, loaded at start and on SIGHUP.
  Authserv a("[tls]\ndb_dir = \"" + d("authserv1") + "\"\ncrl_files = [\"" + d("authserv1") + "/crl.der\"]\n", false);
  a.start();
  const pid_t pid = a.pid();

  auto nss = common::tls::Nss::init({.db_dir = d("mmp1"), .password_file = d("mmp1") + "/password"});
  REQUIRE(nss);
  {
    auto credentials = common::rpc::channel_credentials({});
    REQUIRE(credentials);
    auto stub = a.stub(*credentials);  // one channel, as a front end keeps it
    REQUIRE(mechanisms_status(*stub).ok());

    certs({"revoke", "--ca", d("ca"), "--name", "mmp1"});
    certs({"import-crl", "--dir", d("authserv1"), "--crl", d("ca") + "/crl.der"});
    a.reload();
    auto refused = mechanisms_status(*stub);
    INFO(a.log());
    CHECK(refused.error_code() == grpc::StatusCode::UNAUTHENTICATED);
    CHECK(a.log().find("reason=certificate_refused") != std::string::npos);
    CHECK(a.log().find("SEC_ERROR_REVOKED_CERTIFICATE") != std::string::npos);
    // A new channel's handshake is refused too (NSS holds the new CRL for the whole process).
    CHECK_FALSE(mechanisms_status(*a.stub(*credentials)).ok());
    CHECK(a.pid() == pid);
  }
  CHECK((*nss)->shutdown());
  // Another front end, not revoked, still gets in (its own process: one NSS database each).
  auto other = test::run({cli_path(), "--online", a.target(), "--nss", d("mmp2"), "list"});
  CHECK(other.output.find("not an admin") != std::string::npos);  // authenticated, refused only as admin
  CHECK(a.stop() == 0);
}

TEST_CASE("SIGTERM gives authserv's gRPC calls [daemon] drain_timeout, then cancels them and exits 0", "[integration]") {
  Authserv a;
  auto text = a.config_text();
  text.replace(text.find("[daemon]\n"), 9, "[daemon]\ndrain_timeout = \"1500ms\"\n");
  a.write_config(text);
  a.start();
  auto stub = a.stub();
  REQUIRE(mechanisms_status(*stub).ok());
  // A LOGIN in progress: the client owes the next step, so the call stays open.
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + 30s);
  auto stream = stub->Authenticate(&context);
  pb::AuthStep step;
  step.mutable_start()->set_mechanism("LOGIN");
  *step.mutable_start()->mutable_facts() = facts();
  REQUIRE(stream->Write(step));
  pb::AuthReply reply;
  REQUIRE(stream->Read(&reply));
  REQUIRE(reply.has_challenge());

  auto started = std::chrono::steady_clock::now();
  ::kill(a.pid(), SIGTERM);
  std::this_thread::sleep_for(500ms);
  CHECK(::kill(a.pid(), 0) == 0);  // still draining: the call is in progress
  CHECK(a.wait_exit(20s) == 0);
  auto took = std::chrono::steady_clock::now() - started;
  CHECK(took >= 1400ms);
  CHECK(took < 10s);
  CHECK_FALSE(stream->Read(&reply));
  CHECK_FALSE(stream->Finish().ok());
  auto log = a.log();
  CHECK(log.find("event=draining") != std::string::npos);
  CHECK(log.find("event=drain_deadline") != std::string::npos);
  CHECK(log.find("comp=grpc phase=drain event=drained") != std::string::npos);
  CHECK(log.find("event=stopped") != std::string::npos);
}

TEST_CASE("deploy/config/authserv.toml, filled in as deploy/up does, passes --check-config", "[integration]") {
  test::TempDir state;
  auto certs = [&](std::vector<std::string> args) {
    args.insert(args.begin(), test::source_path("deploy/certs"));
    auto r = test::run(args, 120s);
    INFO(r.output);
    REQUIRE(r.exit_code == 0);
  };
  const std::string dir = state.path().string();
  certs({"ca", "--dir", dir + "/ca"});
  certs({"host", "--ca", dir + "/ca", "--dir", dir + "/nss", "--host", "localhost", "--ip", "127.0.0.1"});
  std::string text = test::read_file(test::source_path("deploy/config/authserv.toml"));
  for (const auto& [key, value] : std::vector<std::pair<std::string, std::string>>{
           {"@STATE_DIR@", dir}, {"@DOMAIN@", "example.com"}, {"@HOST_CN@", "localhost"}}) {
    for (auto p = text.find(key); p != std::string::npos; p = text.find(key)) text.replace(p, key.size(), value);
  }
  auto config = state.write("authserv.toml", text);
  auto r = test::run({test::binary_path("authserv/postern-authserv"), "--config", config.string(), "--check-config"});
  INFO(r.output);
  CHECK(r.exit_code == 0);
  CHECK(r.output.find("[grpc]") != std::string::npos);
  CHECK(r.output.find("listen = \"127.0.0.1:7560\"") != std::string::npos);
}

TEST_CASE("a repeat PLAIN login is verified from the credential cache, a wrong password still fails",
          "[integration]") {
  Authserv a;
  a.start();
  auto stub = a.stub();
  REQUIRE(plain(*stub, "", "alice", "correct horse").has_success());  // hashed, then remembered
  CHECK(count_of(a.log(), "password=cached") == 0);
  auto again = plain(*stub, "", "alice@example.com", "correct horse");
  REQUIRE(again.has_success());
  CHECK(count_of(a.log(), "password=cached") == 1);
  // A different password after a right one takes the full hash and is refused.
  auto wrong = plain(*stub, "", "alice", "correct horsf");
  REQUIRE(wrong.has_failure());
  CHECK(wrong.failure().kind() == pb::FAILURE_CREDENTIALS);
  CHECK(count_of(a.log(), "wrong_password") == 1);
  // The wrong password did not evict the right one.
  REQUIRE(plain(*stub, "", "alice", "correct horse").has_success());
  CHECK(count_of(a.log(), "password=cached") == 2);
  // Bad input: a 100 KiB password and invalid UTF-8 are refused, the daemon keeps serving.
  {
    // 100 KiB is over the gRPC request limit (64 KiB): refused by the transport, no handler runs.
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() + 10s);
    auto stream = stub->Authenticate(&context);
    pb::AuthStep step;
    auto* s = step.mutable_start();
    *s->mutable_facts() = facts();
    s->set_mechanism("PLAIN");
    s->set_has_initial_response(true);
    s->set_initial_response(std::string(1, '\0') + "alice" + std::string(1, '\0') + std::string(100 * 1024, 'x'));
    stream->Write(step);
    stream->WritesDone();
    pb::AuthReply reply;
    CHECK_FALSE(stream->Read(&reply));
    CHECK(stream->Finish().error_code() == grpc::StatusCode::RESOURCE_EXHAUSTED);
  }
  // Under the transport's limit but over SASL's (8 KiB) and the password limit: a clean refusal.
  auto huge = plain(*stub, "", "alice", std::string(60 * 1024, 'x'));
  REQUIRE(huge.has_failure());
  auto bad_utf8 = plain(*stub, "", "alice", std::string("correct horse\xff\xfe", 15));
  REQUIRE(bad_utf8.has_failure());
  CHECK(bad_utf8.failure().kind() == pb::FAILURE_PROTOCOL);  // PLAIN refuses non-UTF-8 (RFC 4616 §2)
  REQUIRE(plain(*stub, "", "alice", "correct horse").has_success());
  CHECK(a.running());
}

TEST_CASE("a password change, a disable and a delete are seen by the next login despite the cache",
          "[integration]") {
  Authserv a;
  a.start();
  auto stub = a.stub();
  REQUIRE(plain(*stub, "", "alice", "correct horse").has_success());
  REQUIRE(plain(*stub, "", "alice", "correct horse").has_success());
  REQUIRE(count_of(a.log(), "password=cached") == 1);

  a.dir_write("new.pw", "new battery\n");
  a.cli({"user", "passwd", "alice", "--password-file", (a.dir() / "new.pw").string()});
  auto old = plain(*stub, "", "alice", "correct horse");  // the old password, cached a moment ago
  REQUIRE(old.has_failure());
  CHECK(old.failure().kind() == pb::FAILURE_CREDENTIALS);
  REQUIRE(plain(*stub, "", "alice", "new battery").has_success());
  REQUIRE(plain(*stub, "", "alice", "new battery").has_success());
  CHECK(count_of(a.log(), "password=cached") == 2);

  a.cli({"user", "disable", "alice"});
  auto disabled = plain(*stub, "", "alice", "new battery");
  REQUIRE(disabled.has_failure());
  CHECK(disabled.failure().kind() == pb::FAILURE_CREDENTIALS);
  a.cli({"user", "del", "alice"});
  auto deleted = plain(*stub, "", "alice", "new battery");
  REQUIRE(deleted.has_failure());
  CHECK(deleted.failure().kind() == pb::FAILURE_CREDENTIALS);
}

TEST_CASE("[password] cache_ttl = 0 turns the credential cache off", "[integration]") {
  Authserv a;
  auto text = a.config_text();
  auto at = text.find("[password]");
  REQUIRE(at != std::string::npos);
  text.insert(text.find('\n', at) + 1, "cache_ttl = \"0s\"\n");
  a.write_config(text);
  a.start();
  auto stub = a.stub();
  REQUIRE(plain(*stub, "", "alice", "correct horse").has_success());
  REQUIRE(plain(*stub, "", "alice", "correct horse").has_success());
  CHECK(count_of(a.log(), "password=cached") == 0);
}

TEST_CASE("a flood of wrong passwords gets temporary failures at once and starves neither cached logins nor other sources",
          "[integration]") {
  Authserv a;
  auto text = a.config_text();
  auto at = text.find("[password]");
  REQUIRE(at != std::string::npos);
  text.insert(text.find('\n', at) + 1, "hash_threads = 1\nhash_queue = 8\nhash_queue_per_source = 2\n");
  a.write_config(text);
  // Carol's hash costs real time (32 MiB), so the flood keeps the one hashing thread busy.
  a.cli({"--argon2-ops", "2", "--argon2-mem-kib", "32768", "user", "passwd", "carol", "--password-file",
         (a.dir() / "carol.pw").string()});
  a.start();
  auto stub = a.stub();
  REQUIRE(plain(*stub, "", "alice", "correct horse").has_success());  // now cached

  auto from = [](std::string address) {
    auto f = facts();
    f.set_client_address(std::move(address));
    return f;
  };
  std::atomic<int> temporary{0}, credentials{0};
  std::vector<std::thread> flood;
  for (int i = 0; i < 24; ++i) {
    flood.emplace_back([&, i] {
      auto s = a.stub();
      auto r = plain(*s, "", "carol", "guess " + std::to_string(i), from("203.0.113.66"));
      if (r.has_failure() && r.failure().kind() == pb::FAILURE_TEMPORARY) ++temporary;
      if (r.has_failure() && r.failure().kind() == pb::FAILURE_CREDENTIALS) ++credentials;
    });
  }
  std::this_thread::sleep_for(100ms);
  // While the flood runs: alice's repeat login needs no hash, carol from her own address gets a turn.
  auto t0 = std::chrono::steady_clock::now();
  auto cached = plain(*stub, "", "alice", "correct horse", from("198.51.100.1"));
  auto cached_took = std::chrono::steady_clock::now() - t0;
  auto carol = plain(*stub, "", "carol", "carols secret", from("198.51.100.2"));
  for (auto& t : flood) t.join();
  CHECK(cached.has_success());
  CHECK(cached_took < 2s);
  CHECK(carol.has_success());
  CHECK(temporary + credentials == 24);
  CHECK(temporary >= 1);  // the flooding address got only its share of the queue
  CHECK(a.log().find("source_hash_share_full") != std::string::npos);
}

TEST_CASE("identical logins in flight share one hash: right, wrong and unknown alike, each with its own answer",
          "[integration]") {
  Authserv a;
  auto text = a.config_text();
  auto at = text.find("[password]");
  REQUIRE(at != std::string::npos);
  text.insert(text.find('\n', at) + 1, "hash_threads = 1\nrehash = false\n");
  a.write_config(text);
  // Carol's hash costs real time (32 MiB), so the queue holds the groups below while it runs.
  a.cli({"--argon2-ops", "2", "--argon2-mem-kib", "32768", "user", "passwd", "carol", "--password-file",
         (a.dir() / "carol.pw").string()});
  a.start();
  auto from = [](std::string address) {
    auto f = facts();
    f.set_client_address(std::move(address));
    return f;
  };
  struct Attempt {
    std::string user, password, address;
    bool good;
  };
  std::vector<Attempt> attempts;
  // Four different wrong guesses first (from elsewhere): four full hashes the groups wait behind.
  for (int i = 0; i < 4; ++i) attempts.push_back({"carol", "blocker " + std::to_string(i), "203.0.113.9", false});
  for (int i = 0; i < 5; ++i) attempts.push_back({"carol", "carols secret", "198.51.100." + std::to_string(i), true});
  for (int i = 0; i < 5; ++i) attempts.push_back({"carol", "same guess", "198.51.100.7" + std::to_string(i), false});
  for (int i = 0; i < 4; ++i) attempts.push_back({"nobody", "anything", "198.51.100.9" + std::to_string(i), false});
  std::vector<std::unique_ptr<pb::Auth::Stub>> stubs;
  for (size_t i = 0; i < attempts.size(); ++i) stubs.push_back(a.stub());
  std::vector<pb::AuthReply> replies(attempts.size());
  std::vector<std::thread> threads;
  for (size_t i = 0; i < attempts.size(); ++i) {
    threads.emplace_back([&, i] {
      // The blockers go first; the groups follow while the first of them is being hashed.
      if (i >= 4) std::this_thread::sleep_for(30ms);
      replies[i] = plain(*stubs[i], "", attempts[i].user, attempts[i].password, from(attempts[i].address));
    });
  }
  for (auto& t : threads) t.join();
  for (size_t i = 0; i < attempts.size(); ++i) {
    INFO(attempts[i].user << " / " << attempts[i].password);
    if (attempts[i].good) {
      CHECK(replies[i].has_success());
    } else {
      REQUIRE(replies[i].has_failure());
      CHECK(replies[i].failure().kind() == pb::FAILURE_CREDENTIALS);
    }
  }
  const std::string log = a.log();
  INFO(log);
  // Of 5 + 5 + 4 identical attempts, the first of each group hashes and the others wait for it:
  // 11 shared when every one arrived during the first's hash (a slow thread start may make it lead).
  const size_t shared = count_of(log, "password=shared");
  CHECK(shared >= 9);
  CHECK(shared <= 11);
  // Each waiter got its leader's verdict and reason: the wrong guess and the unknown name stay apart.
  CHECK(count_of(log, "password=shared reason=\"wrong_password") >= 3);
  CHECK(count_of(log, "unknown_user") == 4);
  // Nothing shared was remembered as a failure: the right password is now a cache hit.
  auto stub = a.stub();
  REQUIRE(plain(*stub, "", "carol", "carols secret").has_success());
  CHECK(count_of(a.log(), "password=cached") == 1);
}

TEST_CASE("[password] hash_memory = \"kept\": the hashing threads keep their argon2 memory, logins verify as before",
          "[integration]") {
  Authserv a;
  auto text = a.config_text();
  auto at = text.find("[password]");
  REQUIRE(at != std::string::npos);
  text.insert(text.find('\n', at) + 1, "hash_memory = \"kept\"\nhash_threads = 2\ncache_ttl = \"0s\"\n");
  a.write_config(text);
  a.start();
  auto stub = a.stub();
  for (int i = 0; i < 3; ++i) {  // cache off: every one is a hash in a kept area
    REQUIRE(plain(*stub, "", "alice", "correct horse").has_success());
    auto wrong = plain(*stub, "", "alice", "correct horsf");
    REQUIRE(wrong.has_failure());
    CHECK(wrong.failure().kind() == pb::FAILURE_CREDENTIALS);
  }
  auto unknown = plain(*stub, "", "nobody", "correct horse");
  REQUIRE(unknown.has_failure());
  CHECK(unknown.failure().kind() == pb::FAILURE_CREDENTIALS);
  const std::string log = a.log();
  CHECK(log.find("event=password_hashing") != std::string::npos);
  CHECK(log.find("hash_memory=kept") != std::string::npos);
  CHECK(log.find("hash_memory_unavailable") == std::string::npos);
  CHECK(count_of(log, "wrong_password") == 3);
  CHECK(count_of(log, "password=cached") == 0);
  // An unknown value is a config error naming the key.
  auto bad = text;
  bad.replace(bad.find("hash_memory = \"kept\""), 20, "hash_memory = \"warm\"");
  auto bad_file = a.dir_write("bad.toml", bad);
  auto r = test::run({test::binary_path("authserv/postern-authserv"), "--config", bad_file.string(), "--check-config"});
  CHECK(r.exit_code != 0);
  CHECK(r.output.find("hash_memory") != std::string::npos);
}

namespace {
// A SCRAM-SHA-256 login of `name` with `password` and these facts: the final reply.
pb::AuthReply scram_login(pb::Auth::Stub& stub, const std::string& name, const std::string& password,
                          pb::ConnectionFacts f) {
  Exchange x(stub);
  const std::string client_first_bare = "n=" + name + ",r=clientnonce456";
  auto server_first = x.start("SCRAM-SHA-256", "n,," + client_first_bare, std::move(f));
  REQUIRE(server_first.has_challenge());
  const std::string sf = server_first.challenge();
  auto field = [&](char k) {
    auto p = sf.find(std::string(1, k) + "=");
    auto e = sf.find(',', p);
    return sf.substr(p + 2, e == std::string::npos ? std::string::npos : e - p - 2);
  };
  const std::string without_proof = "c=biws,r=" + field('r');
  auto proof = test::scram_client_proof(password, test::b64d(field('s')), std::stoi(field('i')),
                                        client_first_bare + "," + sf + "," + without_proof);
  auto reply = x.respond(without_proof + ",p=" + test::b64e(proof));
  x.finish();
  return reply;
}
}  // namespace

TEST_CASE("the front end's default_domain qualifies bare names in every mechanism, an empty one leaves authserv's",
          "[integration]") {
  Authserv a;
  a.dir_write("erin.pw", "erins secret\n");
  a.cli({"domain", "add", "example.org"});
  a.cli({"user", "add", "erin@example.org", "--mail-host", "store3", "--password-file", (a.dir() / "erin.pw").string()});
  a.cli({"user", "add", "alice@example.org", "--mail-host", "store3", "--password-file", (a.dir() / "erin.pw").string()});
  a.start();
  auto stub = a.stub();
  auto org = [](std::string tls = "TLSv1.3") {
    auto f = facts("imap", tls);
    f.set_default_domain("example.org");
    return f;
  };
  // PLAIN: authcid and authzid.
  auto p = plain(*stub, "", "erin", "erins secret", org());
  INFO(p.failure().reason() << a.log());
  REQUIRE(p.has_success());
  CHECK(p.success().canonical() == "erin@example.org");
  CHECK_FALSE(plain(*stub, "", "erin", "erins secret").has_success());  // authserv's own: example.com
  auto same = plain(*stub, "", "alice", "erins secret", org());
  REQUIRE(same.has_success());
  CHECK(same.success().canonical() == "alice@example.org");
  auto admin = plain(*stub, "erin", "carol@example.com", "carols secret", org());
  REQUIRE(admin.has_success());
  CHECK(admin.success().canonical() == "erin@example.org");
  // SCRAM: the username is inside the proof, so only authserv can qualify it.
  auto s = scram_login(*stub, "erin", "erins secret", org(""));
  INFO(s.failure().reason());
  REQUIRE(s.has_success());
  CHECK(s.success().canonical() == "erin@example.org");
  auto home = scram_login(*stub, "alice", "correct horse", facts("imap", ""));
  REQUIRE(home.has_success());
  CHECK(home.success().canonical() == "alice@example.com");
  // EXTERNAL's authzid (the certmap's answer is the directory's canonical name, qualified already).
  auto cert = [&](std::string email) {
    auto f = org();
    f.set_client_cert_subject("E=" + email + ",CN=Someone,O=Example");
    f.set_client_cert_issuer("CN=Postern-CA,O=Postern");
    f.set_client_cert_der("not compared here");
    return f;
  };
  {
    // "erin" is erin@example.org here: herself, no proxy (with example.com it would be refused).
    Exchange x(*stub);
    auto r = x.start("EXTERNAL", std::string("erin"), cert("erin@example.org"));
    INFO(r.failure().reason() << a.log());
    REQUIRE(r.has_success());
    CHECK(r.success().canonical() == "erin@example.org");
  }
  {
    // The administrator carol acts for the bare "erin" of this connection's domain.
    Exchange x(*stub);
    auto r = x.start("EXTERNAL", std::string("erin"), cert("carol@example.com"));
    INFO(r.failure().reason() << a.log());
    REQUIRE(r.has_success());
    CHECK(r.success().canonical() == "erin@example.org");
    CHECK(r.success().authcid() == "carol@example.com");
  }
}

TEST_CASE("a check-only exchange names the user and signs no token, a login signs exactly one", "[integration]") {
  Authserv a;
  a.start();
  auto stub = a.stub();
  auto f = facts();
  f.set_client_cert_subject("E=alice@example.com,CN=Alice");
  f.set_client_cert_issuer("CN=Postern-CA,O=Postern");
  f.set_client_cert_der("not compared here");
  {
    Exchange x(*stub);
    pb::AuthStep step;
    auto* s = step.mutable_start();
    *s->mutable_facts() = f;
    s->set_mechanism("EXTERNAL");
    s->set_has_initial_response(true);
    s->set_check_only(true);
    auto r = x.send(step);
    x.finish();
    INFO(r.failure().reason() << a.log());
    REQUIRE(r.has_success());
    CHECK(r.success().canonical() == "alice@example.com");
    CHECK(r.success().token().empty());
    CHECK(r.success().token_expires_unix() == 0);
  }
  CHECK(count_of(a.log(), "check_only=yes") == 1);
  Exchange x(*stub);
  auto r = x.start("EXTERNAL", std::string(), f);
  x.finish();
  REQUIRE(r.has_success());
  CHECK_FALSE(r.success().token().empty());
  CHECK(count_of(a.log(), "check_only=yes") == 1);
}
