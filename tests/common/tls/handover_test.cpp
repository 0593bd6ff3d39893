// handover_test.cpp: the seam where a TLS 1.3 connection leaves NSS for Tls13Records: the start-up
// self-test, every (key, nonce) NSS and our layer protect across the hand-over being unique, and
// who answers a malformed KeyUpdate on either side of it. In memory (an NSS client over memio) and
// against openssl s_client.
#include <catch2/catch.hpp>

#include <nss.h>
#include <ssl.h>
#include <sslerr.h>
#include <sslexp.h>
#include <sslproto.h>

#include <map>
#include <mutex>
#include <set>
#include <tuple>

#include "common/log/log.hpp"
#include "common/tls/handles.hpp"
#include "common/tls/memio.hpp"
#include "common/tls/protect_observer.hpp"
#include "common/tls/record13.hpp"
#include "tests/common/tls/record13_peer.hpp"
#include "tests/common/tls/tls_harness.hpp"

using namespace common::tls;
using namespace std::chrono_literals;
using tlstest::contains;
using tlstest::pki;

namespace {

template <class F>
void with_nss(F body) {
  auto nss = tlstest::open_nss();
  body(*nss);
  auto down = nss->shutdown();
  INFO((down ? std::string() : down.error().detail));
  CHECK(down);
}

std::shared_ptr<ServerContext> make_context(const Nss& nss, ServerOptions options = {}) {
  auto context = ServerContext::create(nss, options);
  INFO((context ? std::string() : context.error().detail));
  REQUIRE(context);
  return *context;
}

struct DebugLogs {
  DebugLogs() {
    common::log::Settings settings;
    settings.components["tls"] = common::log::Level::Debug;
    common::log::configure(settings);
  }
  ~DebugLogs() { common::log::configure({}); }
};

// Every record the protect observer saw, from any thread.
struct Seen {
  Protector by;
  std::string key;
  std::string iv;
  uint64_t sequence;
  bool after_release;
};
std::mutex g_seen_mutex;
std::vector<Seen> g_seen;

void collect(const ProtectedRecord& r) {
  std::lock_guard lock(g_seen_mutex);
  g_seen.push_back({r.by, std::string(r.key), std::string(r.iv), r.sequence, r.after_release});
}

struct Observing {
  Observing() {
    std::lock_guard lock(g_seen_mutex);
    g_seen.clear();
    g_protect_observer.store(collect);
  }
  ~Observing() { g_protect_observer.store(nullptr); }
  std::vector<Seen> seen() {
    std::lock_guard lock(g_seen_mutex);
    return g_seen;
  }
};

std::string nonce(const Seen& s) {
  std::string n = s.iv;
  for (int i = 0; i < 8; ++i) n[n.size() - 1 - i] ^= static_cast<char>(s.sequence >> (8 * i));
  return n;
}

SECStatus accept_any(void*, PRFileDesc*, PRBool, PRBool) { return SECSuccess; }

std::string joined(const std::vector<std::string>& lines) {
  std::string out;
  for (const auto& line : lines) out += line + "\n";
  return out;
}

// An NSS TLS 1.3 client in memory that keeps its first application traffic secrets, so a test can
// protect a record of its own making as this client would.
class MemClient {
 public:
  explicit MemClient(uint16_t suite) {
    PRFileDesc* stub = memio_create();
    REQUIRE(stub != nullptr);
    PRFileDesc* ssl = SSL_ImportFD(nullptr, stub);
    REQUIRE(ssl != nullptr);
    fd_.reset(ssl);
    memio_ = memio_state(ssl);
    const SSLVersionRange tls13{SSL_LIBRARY_VERSION_TLS_1_3, SSL_LIBRARY_VERSION_TLS_1_3};
    REQUIRE(SSL_OptionSet(ssl, SSL_HANDSHAKE_AS_CLIENT, PR_TRUE) == SECSuccess);
    REQUIRE(SSL_OptionSet(ssl, SSL_NO_CACHE, PR_TRUE) == SECSuccess);
    REQUIRE(SSL_VersionRangeSet(ssl, &tls13) == SECSuccess);
    REQUIRE(SSL_AuthCertificateHook(ssl, accept_any, nullptr) == SECSuccess);
    REQUIRE(SSL_SecretCallback(ssl, on_secret, this) == SECSuccess);
    const PRUint16* implemented = SSL_GetImplementedCiphers();
    for (PRUint16 i = 0; i < SSL_GetNumImplementedCiphers(); ++i) {
      SSL_CipherPrefSet(ssl, implemented[i], implemented[i] == suite ? PR_TRUE : PR_FALSE);
    }
    REQUIRE(SSL_ResetHandshake(ssl, PR_FALSE) == SECSuccess);
  }

  // Server bytes in, the handshake or reads run; returns the NSS error of a failure, 0 otherwise.
  int step(std::string_view from_server, std::string& to_server) {
    memio_->begin_input(from_server);
    int error = 0;
    if (!done_) {
      if (SSL_ForceHandshake(fd_.get()) == SECSuccess) {
        done_ = true;
      } else if (PR_GetError() != PR_WOULD_BLOCK_ERROR) {
        error = PR_GetError();
      }
    }
    char buffer[4096];
    while (done_ && error == 0) {
      PRInt32 n = PR_Read(fd_.get(), buffer, sizeof buffer);
      if (n > 0) {
        read_.append(buffer, static_cast<size_t>(n));
        continue;
      }
      if (n < 0 && PR_GetError() != PR_WOULD_BLOCK_ERROR) error = PR_GetError();
      break;
    }
    memio_->take_output(to_server);
    memio_->end_input();
    return error;
  }

  bool done() const { return done_; }
  const std::string& read() const { return read_; }
  std::string write_secret, read_secret;  // epoch 3

 private:
  static void on_secret(PRFileDesc*, PRUint16 epoch, SSLSecretDirection dir, PK11SymKey* key, void* arg) {
    if (epoch != 3 || PK11_ExtractKeyValue(key) != SECSuccess) return;
    const SECItem* value = PK11_GetKeyData(key);
    auto* self = static_cast<MemClient*>(arg);
    (dir == ssl_secret_write ? self->write_secret : self->read_secret)
        .assign(reinterpret_cast<const char*>(value->data), value->len);
  }

  PrFd fd_;
  MemioState* memio_ = nullptr;
  bool done_ = false;
  std::string read_;
};

// A KeyUpdate (RFC 8446 §4.6.3) whose request_update is 2, neither of the two values there are,
// protected under the client's first application key at `sequence`.
std::string bad_key_update(const MemClient& client, uint16_t suite, uint64_t sequence) {
  REQUIRE_FALSE(client.write_secret.empty());
  auto crafter = Tls13Records::create(suite, {client.read_secret, 0}, {client.write_secret, sequence});
  REQUIRE(crafter);
  std::string record;
  REQUIRE(Tls13RecordsPeer::send_record(*crafter, 22, std::string("\x18\x00\x00\x01\x02", 5), record));
  return record;
}

}  // namespace

TEST_CASE("the hand-over is on for this NSS and its start-up self-test passes for every TLS 1.3 suite", "[tls]") {
  with_nss([](Nss& nss) {
    DebugLogs debug;
    tlstest::LogCapture logs;
    // The versions the hand-over is allowed on: a new one must pass these tests before it joins.
    CHECK(std::string(NSS_GetVersion()).rfind("3.87", 0) == 0);
    auto context = make_context(nss);
    CHECK(ServerContext::handover_enabled());
    CHECK(logs.wait_for({"event=tls_context_ready", "handover=on"}));
    CHECK(logs.wait_for({"event=tls_handover_checked", "TLS_AES_128_GCM_SHA256", "TLS_CHACHA20_POLY1305_SHA256",
                         "TLS_AES_256_GCM_SHA384"}));
    auto again = context->self_test_handover();
    INFO((again ? std::string() : again.error().detail));
    CHECK(again);
    for (const auto& line : logs.lines()) {
      CHECK_FALSE(contains(line, "tls_handover_disabled"));
      CHECK_FALSE(contains(line, "tls_handover_refused"));
      CHECK_FALSE(contains(line, "tls_nss_record_lost"));
      CHECK_FALSE(contains(line, "tls_established"));  // the self-test's connections are not logged
    }
    // Its connection asks for no client certificate, whatever the context requires of clients.
    ServerOptions required;
    required.client_certs = ClientCerts::Required;
    auto strict = make_context(nss, required);
    auto strict_check = strict->self_test_handover();
    INFO((strict_check ? std::string() : strict_check.error().detail));
    CHECK(strict_check);
    CHECK(ServerContext::handover_enabled());
    ServerOptions off;
    off.release_nss_after_handshake = false;
    auto kept = make_context(nss, off);
    CHECK(logs.wait_for({"event=tls_context_ready", "handover=off"}));
  });
}

TEST_CASE("no key and nonce pair is used twice by NSS and our layer: hand-over, KeyUpdates both ways, close",
          "[tls]") {
  Observing observer;
  with_nss([&](Nss& nss) {
    DebugLogs debug;
    tlstest::LogCapture logs;
    // create() runs the self-test (in memory, every suite, a KeyUpdate each way) under the observer.
    auto context = make_context(nss);
    INFO(joined(logs.lines()));
    REQUIRE(ServerContext::handover_enabled());
    {
      tlstest::TlsServer server(context);
      std::string script =
          "(printf 'FACTS\\r\\n'; sleep 0.3; printf 'K\\n'; sleep 0.3; printf 'requested\\r\\n'; sleep 0.3; "
          "printf 'k\\n'; sleep 0.3; printf 'unrequested\\r\\nQUIT\\r\\n'; sleep 1) | exec openssl s_client "
          "-connect 127.0.0.1:" + std::to_string(server.tls_port) + " -no_ign_eof -tls1_3 -CAfile " + pki().ca_pem();
      auto r = test::run({"sh", "-c", script}, 20s);
      INFO(r.output);
      CHECK(contains(r.output, "requested\r\n"));
      CHECK(contains(r.output, "+bye"));
      auto bulk = tlstest::py_client("bulk", server.tls_port, {pki().ca_pem(), "300"});
      INFO(bulk.output);
      CHECK(contains(bulk.output, "echoed: 300"));
      // A connection that stays in NSS (TLS 1.2 has no hand-over) closes through NSS.
      auto r12 = tlstest::s_client(server.tls_port, {"-tls1_2"});
      CHECK(contains(r12.output, "+bye"));
      CHECK(logs.wait_for({"event=tls_nss_released", "dropped=1"}));
    }
    const auto seen = observer.seen();
    std::set<std::pair<std::string, uint64_t>> key_sequence;
    std::set<std::pair<std::string, std::string>> key_nonce;
    std::map<std::string, std::pair<uint64_t, uint64_t>> nss_span;      // key -> [first, last] sequence
    std::map<std::string, std::pair<uint64_t, uint64_t>> records_span;  //
    size_t by_nss = 0, ours = 0;
    for (const auto& s : seen) {
      CHECK_FALSE(s.after_release);
      CHECK(key_sequence.insert({s.key, s.sequence}).second);
      CHECK(key_nonce.insert({s.key, nonce(s)}).second);
      auto& span = (s.by == Protector::Nss ? nss_span : records_span);
      auto [it, fresh] = span.try_emplace(s.key, s.sequence, s.sequence);
      if (!fresh) {
        it->second.first = std::min(it->second.first, s.sequence);
        it->second.second = std::max(it->second.second, s.sequence);
      }
      ++(s.by == Protector::Nss ? by_nss : ours);
    }
    INFO("NSS protected " << by_nss << " records, Tls13Records " << ours);
    CHECK(by_nss >= 8);
    CHECK(ours > 100);
    // The seam: keys both sides used. On each, our first record follows NSS's last one.
    size_t seams = 0;
    for (const auto& [key, span] : records_span) {
      auto other = nss_span.find(key);
      if (other == nss_span.end()) continue;
      ++seams;
      CHECK(span.first == other->second.second + 1);
    }
    CHECK(seams >= 5);  // three suites in the self-test, openssl's and the bulk connection
    CHECK(records_span.size() >= 12);  // the self-test alone: three keys for each of three suites
  });
}

TEST_CASE("a KeyUpdate with request_update 2: NSS answers decode_error before the hand-over, our layer "
          "illegal_parameter after it", "[tls]") {
  with_nss([](Nss& nss) {
    DebugLogs debug;
    tlstest::LogCapture logs;
    auto context = make_context(nss);
    INFO(joined(logs.lines()));
    REQUIRE(ServerContext::handover_enabled());
    const uint16_t suite = TLS_AES_128_GCM_SHA256;

    // Sent right behind the client's Finished, it reaches NSS before the connection goes quiet.
    {
      MemClient client(suite);
      auto server = context->accept("early");
      std::string to_server, to_client, plain;
      REQUIRE(client.step("", to_server) == 0);
      REQUIRE(server->decode(to_server, plain, to_client));
      to_server.clear();
      REQUIRE(client.step(to_client, to_server) == 0);
      REQUIRE(client.done());
      to_client.clear();
      auto answered = server->decode(to_server + bad_key_update(client, suite, 0), plain, to_client);
      REQUIRE_FALSE(answered);
      CHECK(contains(answered.error().detail, "SSL_ERROR_RX_MALFORMED_KEY_UPDATE"));
      to_server.clear();
      CHECK(client.step(to_client, to_server) == SSL_ERROR_DECODE_ERROR_ALERT);
    }
    // Once the connection went quiet, Tls13Records has it.
    {
      MemClient client(suite);
      auto server = context->accept("late");
      std::string to_server, to_client, plain;
      for (int i = 0; i < 4; ++i) {
        REQUIRE(client.step(to_client, to_server) == 0);
        to_client.clear();
        REQUIRE(server->decode(to_server, plain, to_client));
        to_server.clear();
      }
      REQUIRE(client.done());
      CHECK(logs.wait_for({"session=late", "event=tls_nss_released"}));
      auto answered = server->decode(bad_key_update(client, suite, 0), plain, to_client);
      REQUIRE_FALSE(answered);
      CHECK(contains(answered.error().detail, "illegal_parameter"));
      CHECK(client.step(to_client, to_server) == SSL_ERROR_ILLEGAL_PARAMETER_ALERT);
    }
  });
}
