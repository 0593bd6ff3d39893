// record13_faults_test.cpp: the TLS 1.3 record layer when NSS itself fails: a hash, a key import, an
// encrypt or a decrypt made to fail on its Nth call, for every N a whole connection reaches. Each
// time the connection ends as internal_error (never blamed on the peer as bad_record_mac), the
// failure is logged, no (key, nonce) pair is used twice, and a side that failed sends nothing more.
#include <catch2/catch.hpp>

#include <nss.h>

#include <functional>
#include <set>
#include <string>
#include <vector>

#include "common/log/log.hpp"
#include "common/tls/protect_observer.hpp"
#include "common/tls/record13.hpp"
#include "common/tls/record13_internal.hpp"

namespace {

using common::ErrorKind;
using common::Result;
using common::tls::ProtectedRecord;
using common::tls::Tls13Records;
namespace r13 = common::tls::record13;

constexpr uint16_t kAes128 = 0x1301;
constexpr uint16_t kAes256 = 0x1302;
constexpr uint16_t kChaCha = 0x1303;

void nss_without_db() {
  static bool ready = NSS_NoDB_Init(nullptr) == SECSuccess;
  REQUIRE(ready);
}

// Every record protected in one run, by key, IV and sequence number: a repeat is a nonce reused.
std::set<std::string>* g_protected = nullptr;
bool g_reused = false;

void on_protect(const ProtectedRecord& r) {
  std::string id(r.key);
  id.append(r.iv);
  for (int i = 0; i < 8; ++i) id.push_back(static_cast<char>(r.sequence >> (8 * i)));
  if (g_protected && !g_protected->insert(id).second) g_reused = true;
}

struct Outcome {
  bool failed = false;         // a call of the server's failed
  std::string error;           // the first failure's text
  ErrorKind kind = ErrorKind::Protocol;
  std::string client_saw;      // what the client made of the server's records, when it refused them
  std::string delivered;       // plaintext the client read
  bool reused = false;         // a (key, nonce) pair protected twice
  bool quiet_after = true;     // the server sent nothing once it had failed
  bool later_calls_fail = true;
  bool logged = false;         // a tls_local_failure line
};

// A connection's life on the server side (data both ways, a KeyUpdate each way, requested, and the
// close) with the `nth` call of `call` failing; the client is our own layer, with faults paused.
Outcome run(uint16_t suite, r13::NssCall call, unsigned nth) {
  nss_without_db();
  Outcome out;
  std::set<std::string> seen;
  g_protected = &seen;
  g_reused = false;
  common::tls::g_protect_observer.store(on_protect);
  std::vector<std::string> lines;
  common::log::set_sink([&](std::string_view line) { lines.emplace_back(line); });
  struct Restore {
    ~Restore() {
      common::tls::g_protect_observer.store(nullptr);
      g_protected = nullptr;
      common::log::reset_sink();
      r13::disarm_faults();
    }
  } restore;

  const size_t len = suite == kAes256 ? 48 : 32;
  const std::string c2s(len, 'c');
  const std::string s2c(len, 's');
  r13::pause_faults(true);
  r13::fail_nth_call(call, nth);
  r13::pause_faults(true);
  auto client = Tls13Records::create(suite, {s2c, 0}, {c2s, 0});
  REQUIRE(client);
  r13::pause_faults(false);
  // The write side starts at sequence 0, so an alert sealed at a sequence reset to 0 under the same
  // key would repeat the server's first nonce.
  auto server = Tls13Records::create(suite, {c2s, 0}, {s2c, 0});
  std::string client_answer;  // the client's reply to a KeyUpdate we asked for
  auto as_client = [&](const std::function<void(std::string&)>& f) {
    r13::pause_faults(true);
    std::string wire = std::move(client_answer);
    client_answer.clear();
    f(wire);
    r13::pause_faults(false);
    return wire;
  };
  // One call of the server's; what it sends goes to the client at once.
  auto step = [&](const std::function<Result<void>(std::string&)>& f) {
    std::string wire;
    auto r = f(wire);
    if (out.failed) {
      if (!wire.empty()) out.quiet_after = false;
      if (r) out.later_calls_fail = false;
      return;
    }
    r13::pause_faults(true);
    std::string plain;
    auto read = client->decode(wire, plain, client_answer);
    if (!read && out.client_saw.empty()) out.client_saw = read.error().detail;
    out.delivered += plain;
    r13::pause_faults(false);
    if (!r) {
      out.failed = true;
      out.error = r.error().detail;
      out.kind = r.error().kind;
    }
  };

  if (!server) {
    out.failed = true;
    out.error = server.error().detail;
    out.kind = server.error().kind;
  } else {
    std::string plain;
    auto decode = [&](std::string in) {
      step([&](std::string& wire) { return server->decode(in, plain, wire); });
    };
    auto encode = [&](std::string_view text) { step([&](std::string& wire) { return server->encode(text, wire); }); };
    // The client's own calls fail once the server's alert has ended it; the server must then see
    // nothing new, so their results do not matter.
    decode(as_client([&](std::string& w) { (void)client->encode("a1 LOGIN alice secret\r\n", w); }));
    encode("a1 OK\r\n");
    decode(as_client([&](std::string& w) {
      (void)client->key_update(true, w);
      (void)client->encode("a2 NOOP\r\n", w);
    }));
    encode("a2 OK\r\n");
    step([&](std::string& wire) { return server->key_update(true, wire); });
    decode(as_client([&](std::string& w) { (void)client->encode("a3 LOGOUT\r\n", w); }));
    encode("* BYE\r\n");
    decode(as_client([&](std::string& w) { client->close(w); }));
    std::string last;
    server->close(last);  // sends nothing once failed
    if (out.failed && !last.empty()) out.quiet_after = false;
    if (!out.failed && !last.empty()) step([&](std::string& wire) {
      wire = last;
      return Result<void>{};
    });
    if (!out.failed) CHECK(plain == "a1 LOGIN alice secret\r\na2 NOOP\r\na3 LOGOUT\r\n");
  }
  for (const auto& line : lines) {
    if (line.find("tls_local_failure") != std::string::npos) out.logged = true;
  }
  out.reused = g_reused;
  return out;
}

const char* name(r13::NssCall call) {
  switch (call) {
    case r13::NssCall::Hash: return "hash";
    case r13::NssCall::KeyImport: return "key import";
    case r13::NssCall::Encrypt: return "encrypt";
    case r13::NssCall::Decrypt: return "decrypt";
  }
  return "?";
}

}  // namespace

TEST_CASE("the Nth hash, key import, encrypt or decrypt failing ends the connection as internal_error, "
          "with no nonce reused",
          "[tls][record13]") {
  for (uint16_t suite : {kAes128, kAes256, kChaCha}) {
    for (auto call : {r13::NssCall::Hash, r13::NssCall::KeyImport, r13::NssCall::Encrypt, r13::NssCall::Decrypt}) {
      Outcome clean = run(suite, call, 0);
      REQUIRE_FALSE(clean.failed);
      CHECK_FALSE(clean.reused);
      CHECK(clean.client_saw.empty());
      CHECK(clean.delivered == "a1 OK\r\na2 OK\r\n* BYE\r\n");
      for (unsigned nth = 1;; ++nth) {
        INFO("suite " << suite << ", " << name(call) << " call " << nth << " fails");
        Outcome o = run(suite, call, nth);
        if (!o.failed) {
          // Past the server's last call of that kind: a clean run again, after at least one failure.
          CHECK(nth > 1);
          CHECK(o.delivered == "a1 OK\r\na2 OK\r\n* BYE\r\n");
          break;
        }
        CHECK(o.kind == ErrorKind::Internal);
        CHECK(o.error.find("bad_record_mac") == std::string::npos);
        if (o.error.find("record keys") == std::string::npos) CHECK(o.error.find("internal_error") != std::string::npos);
        CHECK(o.logged);
        CHECK_FALSE(o.reused);
        CHECK(o.quiet_after);
        CHECK(o.later_calls_fail);
        // Whatever the server sent the client could open: data, or the internal_error alert.
        if (!o.client_saw.empty()) CHECK(o.client_saw.find("peer sent alert internal_error") != std::string::npos);
        REQUIRE(nth < 200);
      }
    }
  }
}

TEST_CASE("a read key that cannot be derived after the peer's KeyUpdate: internal_error under the intact write key",
          "[tls][record13]") {
  nss_without_db();
  auto server = Tls13Records::create(kAes128, {std::string(32, 'c'), 0}, {std::string(32, 's'), 0});
  auto client = Tls13Records::create(kAes128, {std::string(32, 's'), 0}, {std::string(32, 'c'), 0});
  REQUIRE(server);
  REQUIRE(client);
  std::string wire;
  REQUIRE(server->encode("* OK\r\n", wire));  // write sequence 0 is used
  std::string plain;
  std::string back;
  REQUIRE(client->decode(wire, plain, back));
  std::string update;
  REQUIRE(client->key_update(false, update));
  // The KeyUpdate's derivation is "traffic upd", then "key" and "iv": the first hash context fails.
  r13::fail_nth_call(r13::NssCall::Hash, 1);
  std::string answer;
  auto r = server->decode(update, plain, answer);
  r13::disarm_faults();
  REQUIRE_FALSE(r);
  CHECK(r.error().detail.find("internal_error") != std::string::npos);
  CHECK(r.error().detail.find("next read key") != std::string::npos);
  REQUIRE_FALSE(answer.empty());
  auto seen = client->decode(answer, plain, back);
  REQUIRE_FALSE(seen);
  CHECK(seen.error().detail.find("peer sent alert internal_error") != std::string::npos);
  std::string after;
  CHECK_FALSE(server->encode("more", after));
  CHECK(after.empty());
}

TEST_CASE("a tag that does not verify is the peer's bad_record_mac, NSS unable to decrypt is our internal_error",
          "[tls][record13]") {
  nss_without_db();
  for (uint16_t suite : {kAes128, kChaCha}) {
    auto make = [&] {
      auto s = Tls13Records::create(suite, {std::string(32, 'c'), 0}, {std::string(32, 's'), 0});
      REQUIRE(s);
      return std::move(*s);
    };
    auto client = Tls13Records::create(suite, {std::string(32, 's'), 0}, {std::string(32, 'c'), 0});
    REQUIRE(client);
    std::string record;
    REQUIRE(client->encode("a1 LOGIN alice secret\r\n", record));
    std::string tampered = record;
    tampered.back() ^= 0x01;
    std::string plain;
    std::string wire;
    auto server = make();
    auto bad = server.decode(tampered, plain, wire);
    REQUIRE_FALSE(bad);
    CHECK(bad.error().kind == ErrorKind::Protocol);
    CHECK(bad.error().detail.find("bad_record_mac") != std::string::npos);

    auto again = make();
    r13::fail_nth_call(r13::NssCall::Decrypt, 1);
    wire.clear();
    auto local = again.decode(record, plain, wire);
    r13::disarm_faults();
    REQUIRE_FALSE(local);
    CHECK(local.error().kind == ErrorKind::Internal);
    CHECK(local.error().detail.find("internal_error") != std::string::npos);
    CHECK(local.error().detail.find("bad_record_mac") == std::string::npos);
    CHECK(plain.empty());
  }
}
