// scram.cpp: SCRAM-SHA-256(-PLUS) server (RFC 5802, RFC 7677, tls-exporter per RFC 9266).
// Unknown users get a deterministic fake salt so the exchange looks the same until the proof.
#include "authserv/sasl/scram.hpp"

#include "authserv/password/password.hpp"
#include "common/text/base64.hpp"

#include <sodium.h>

#include <algorithm>
#include <vector>

namespace authserv::sasl {

namespace {

using Key = std::array<std::uint8_t, 32>;

// Exchange secrets (ClientSignature, ClientKey, the proof that XORs to it, HMAC outputs) wiped when
// they leave scope, on every return path: a core dump or a later heap read must not yield them.
template <std::size_t N>
struct Wiped {
  std::uint8_t b[N] = {};
  Wiped() = default;
  Wiped(const Wiped&) = delete;
  Wiped& operator=(const Wiped&) = delete;
  ~Wiped() { sodium_memzero(b, N); }
};
struct WipeOnExit {
  std::string& s;
  ~WipeOnExit() { sodium_memzero(s.data(), s.size()); }
};

Step fail(std::string reason) { return Step(Step::Kind::Failure, std::move(reason)); }

void hmac(std::string_view key, std::string_view msg, std::uint8_t out[32]) {
  crypto_auth_hmacsha256_state st;
  crypto_auth_hmacsha256_init(&st, reinterpret_cast<const unsigned char*>(key.data()), key.size());
  crypto_auth_hmacsha256_update(&st, reinterpret_cast<const unsigned char*>(msg.data()), msg.size());
  crypto_auth_hmacsha256_final(&st, out);
  sodium_memzero(&st, sizeof st);
}

std::string_view as_sv(const std::uint8_t* p, std::size_t n) {
  return {reinterpret_cast<const char*>(p), n};
}

using common::text::base64_decode;
using common::text::base64_encode;

std::vector<std::string_view> split(std::string_view s) {
  std::vector<std::string_view> out;
  for (;;) {
    auto p = s.find(',');
    out.push_back(s.substr(0, p));
    if (p == std::string_view::npos) return out;
    s.remove_prefix(p + 1);
  }
}

// saslname (RFC 5802 §7): UTF-8 without NUL, ',' only as "=2C" and '=' only as "=3D".
std::optional<std::string> decode_saslname(std::string_view s) {
  std::string out;
  for (std::size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '\0' || s[i] == ',') return std::nullopt;
    if (s[i] == '=') {
      auto esc = s.substr(i + 1, 2);
      if (esc == "2C") out.push_back(',');
      else if (esc == "3D") out.push_back('=');
      else return std::nullopt;
      i += 2;
    } else {
      out.push_back(s[i]);
    }
  }
  if (out.empty() || !valid_utf8(out)) return std::nullopt;
  return out;
}

bool valid_nonce(std::string_view n) {
  if (n.empty()) return false;
  for (char c : n) {
    if (c < 0x21 || c > 0x7e || c == ',') return false;
  }
  return true;
}

// attr-val extension: ALPHA "=" 1*value-char.
bool valid_extension(std::string_view f) {
  if (f.size() < 3 || f[1] != '=') return false;
  auto a = static_cast<unsigned char>(f[0]);
  if (!((a >= 'a' && a <= 'z') || (a >= 'A' && a <= 'Z'))) return false;
  return f.substr(2).find('\0') == std::string_view::npos && valid_utf8(f.substr(2));
}

class Scram final : public Mechanism {
 public:
  Scram(bool plus, MechanismContext ctx) : plus_(plus), ctx_(std::move(ctx)) {}
  ~Scram() override {
    sodium_memzero(verifier_.stored_key.data(), 32);
    sodium_memzero(verifier_.server_key.data(), 32);
    sodium_memzero(ctx_.fake_salt_key.data(), ctx_.fake_salt_key.size());
  }
  std::string_view name() const override { return plus_ ? "SCRAM-SHA-256-PLUS" : "SCRAM-SHA-256"; }

  Step step(std::string_view in) override {
    if (++steps_ > kMaxSteps) return finish(fail("scram: too many steps"));
    if (in.size() > kMaxMessage) return finish(fail("scram: message too long"));
    switch (state_) {
      case State::WaitClientFirst: return finish_if_failed(client_first(in));
      case State::WaitClientFinal: return finish(client_final(in));
      default: return finish(fail("scram: unexpected message"));
    }
  }

  Step scram_verifier(std::optional<ScramVerifier> v, std::string_view account) override {
    if (state_ != State::WaitVerifier) return finish(fail("scram: unexpected verifier"));
    if (v) {
      // The keys are arrays: copied, not moved, so the caller's copy is wiped here.
      struct WipeKeys {
        ScramVerifier& v;
        ~WipeKeys() {
          sodium_memzero(v.stored_key.data(), v.stored_key.size());
          sodium_memzero(v.server_key.data(), v.server_key.size());
        }
      } wipe{*v};
      if (v->iterations < kScramMinIterations || v->iterations > kScramMaxIterations)
        return finish(fail("scram: stored iteration count out of range"));
      if (v->salt.empty()) return finish(fail("scram: stored salt empty"));
      verifier_ = *v;
    } else {
      // Unknown user: same shape of answer as for a real one (RFC 5802 §9 last paragraph): a salt
      // as long as new verifiers' and the site's iteration count. The salt is keyed by the name as
      // the directory would look it up, so spellings of one unknown name ("Zed", "zed@domain")
      // share a salt exactly as they would for a real account.
      static_assert(password::kScramSaltBytes <= 32);
      unknown_ = true;
      Wiped<32> mac;
      hmac(as_sv(fake_salt_key().data(), 32), "scram-fake-salt:" + std::string(account.empty() ? user_ : account),
           mac.b);
      verifier_.salt.assign(reinterpret_cast<const char*>(mac.b), password::kScramSaltBytes);
      verifier_.iterations = std::clamp(ctx_.fake_iterations, kScramMinIterations, kScramMaxIterations);
      randombytes_buf(verifier_.stored_key.data(), 32);
      randombytes_buf(verifier_.server_key.data(), 32);
    }
    auto snonce = ctx_.nonce ? ctx_.nonce() : random_nonce();
    if (!valid_nonce(snonce)) return finish(fail("scram: bad server nonce"));
    nonce_ = client_nonce_ + snonce;
    server_first_ = "r=" + nonce_ + ",s=" + base64_encode(verifier_.salt) +
                    ",i=" + std::to_string(verifier_.iterations);
    state_ = State::WaitClientFinal;
    return Step(Step::Kind::Challenge, server_first_);
  }

 private:
  enum class State { WaitClientFirst, WaitVerifier, WaitClientFinal, Done };

  // An all-zero key (not configured) would let anyone compute the fake salts and so tell
  // unknown users apart; fall back to a random key for the life of the process.
  const Key& fake_salt_key() const {
    static const Key process_key = [] {
      Key k;
      randombytes_buf(k.data(), k.size());
      return k;
    }();
    for (auto b : ctx_.fake_salt_key) {
      if (b != 0) return ctx_.fake_salt_key;
    }
    return process_key;
  }

  Step finish(Step s) {
    state_ = State::Done;
    return s;
  }
  Step finish_if_failed(Step s) {
    if (s.kind == Step::Kind::Failure) state_ = State::Done;
    return s;
  }

  Step client_first(std::string_view in) {
    auto f = split(in);
    if (f.size() < 4) return fail("scram: client-first too short");
    // gs2-cbind-flag (RFC 5802 §6 downgrade rules).
    if (f[0] == "n") {
      if (plus_) return fail("scram: -PLUS selected but client sent n");
    } else if (f[0] == "y") {
      if (plus_) return fail("scram: -PLUS selected but client sent y");
      if (ctx_.channel_binding) return fail("scram: y flag while server supports channel binding (downgrade)");
    } else if (f[0].starts_with("p=")) {
      if (!plus_) return fail("scram: channel binding requested with non-PLUS mechanism");
      if (f[0] != "p=tls-exporter") return fail("scram: unsupported channel binding type");
      if (!ctx_.channel_binding) return fail("scram: no channel binding data");
      cb_used_ = true;
    } else {
      return fail("scram: bad gs2-cbind-flag");
    }
    if (!f[1].empty()) {
      if (!f[1].starts_with("a=")) return fail("scram: bad authzid field");
      auto a = decode_saslname(f[1].substr(2));
      if (!a) return fail("scram: bad authzid");
      authzid_ = std::move(*a);
    }
    gs2_header_ = std::string(in.substr(0, f[0].size() + f[1].size() + 2));
    if (f[2].starts_with("m=")) return fail("scram: unsupported mandatory extension");
    if (!f[2].starts_with("n=")) return fail("scram: missing username");
    auto u = decode_saslname(f[2].substr(2));
    if (!u) return fail("scram: bad username");
    if (!f[3].starts_with("r=")) return fail("scram: missing nonce");
    if (!valid_nonce(f[3].substr(2))) return fail("scram: bad client nonce");
    for (std::size_t i = 4; i < f.size(); ++i) {
      if (!valid_extension(f[i])) return fail("scram: bad extension in client-first");
    }
    user_ = std::move(*u);
    client_nonce_ = f[3].substr(2);
    client_first_bare_ = in.substr(gs2_header_.size());
    state_ = State::WaitVerifier;
    Step s(Step::Kind::NeedScramVerifier, {});
    s.authcid = user_;
    s.authzid = authzid_;
    return s;
  }

  Step client_final(std::string_view in) {
    auto pos = in.rfind(",p=");
    if (pos == std::string_view::npos) return fail("scram: missing proof");
    auto without_proof = in.substr(0, pos);
    auto proof_b64 = in.substr(pos + 3);
    auto f = split(without_proof);
    if (f.size() < 2) return fail("scram: client-final too short");
    if (!f[0].starts_with("c=")) return fail("scram: missing channel binding attribute");
    auto cbind = base64_decode(f[0].substr(2));
    if (!cbind) return fail("scram: bad channel binding base64");
    std::string expected = gs2_header_;
    if (cb_used_) expected += *ctx_.channel_binding;
    if (*cbind != expected) return fail("scram: channel binding mismatch");
    if (!f[1].starts_with("r=")) return fail("scram: missing nonce in client-final");
    if (f[1].substr(2) != nonce_) return fail("scram: nonce mismatch");
    for (std::size_t i = 2; i < f.size(); ++i) {
      if (!valid_extension(f[i])) return fail("scram: bad extension in client-final");
    }
    auto proof = base64_decode(proof_b64);
    if (!proof) return fail("scram: bad proof");
    WipeOnExit wipe_proof{*proof};  // ClientProof XOR ClientSignature is the ClientKey
    if (proof->size() != 32) return fail("scram: bad proof");

    std::string auth_message = client_first_bare_ + "," + server_first_ + "," + std::string(without_proof);
    Wiped<32> client_sig, client_key, stored;
    hmac(as_sv(verifier_.stored_key.data(), 32), auth_message, client_sig.b);
    for (int i = 0; i < 32; ++i) client_key.b[i] = static_cast<std::uint8_t>((*proof)[i]) ^ client_sig.b[i];
    crypto_hash_sha256(stored.b, client_key.b, 32);
    bool ok = sodium_memcmp(stored.b, verifier_.stored_key.data(), 32) == 0;
    if (unknown_) return fail("scram: unknown user");
    if (!ok) return fail("scram: wrong proof");
    Wiped<32> server_sig;
    hmac(as_sv(verifier_.server_key.data(), 32), auth_message, server_sig.b);
    Step s(Step::Kind::Success, "v=" + base64_encode(as_sv(server_sig.b, 32)));
    s.authcid = user_;
    s.authzid = authzid_;
    return s;
  }

  bool plus_;
  MechanismContext ctx_;
  State state_ = State::WaitClientFirst;
  int steps_ = 0;
  bool cb_used_ = false;
  bool unknown_ = false;
  std::string gs2_header_, authzid_, user_, client_nonce_, client_first_bare_, nonce_, server_first_;
  ScramVerifier verifier_;
};

}  // namespace

std::string random_nonce() {
  if (sodium_init() < 0) return {};  // an empty nonce fails the exchange, never a weak one
  std::uint8_t raw[18];
  randombytes_buf(raw, sizeof raw);
  return base64_encode(as_sv(raw, sizeof raw));
}

ScramVerifier scram_keys(std::string_view password, std::string_view salt, std::uint32_t iterations) {
  // One PBKDF2 for the suite: the password library's, which also writes the stored verifiers.
  ScramVerifier v;
  auto derived = authserv::password::derive_scram_sha256(password, salt, iterations);
  if (!derived || derived->stored_key.size() != 32 || derived->server_key.size() != 32) {
    return v;  // iterations 0: refused by every exchange (below kScramMinIterations)
  }
  v.iterations = derived->iterations;
  v.salt = derived->salt;
  std::copy_n(derived->stored_key.begin(), 32, v.stored_key.begin());
  std::copy_n(derived->server_key.begin(), 32, v.server_key.begin());
  sodium_memzero(derived->stored_key.data(), derived->stored_key.size());
  sodium_memzero(derived->server_key.data(), derived->server_key.size());
  return v;
}

std::unique_ptr<Mechanism> make_scram_sha256(bool plus, MechanismContext ctx) {
  if (plus && !ctx.channel_binding) return nullptr;
  if (sodium_init() < 0) return nullptr;  // idempotent; randombytes_buf needs it
  return std::make_unique<Scram>(plus, std::move(ctx));
}

}  // namespace authserv::sasl
