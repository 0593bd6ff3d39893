// authtoken_test.cpp: access tokens: round trip, every tampered byte, keys, rotation, clock rules,
// bounds on hostile input, renewal, and the key file's creation and permission checks.
#include <sodium.h>
#include <sys/stat.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "common/authtoken/authtoken.hpp"

using namespace common::authtoken;
namespace fs = std::filesystem;

namespace {

constexpr int64_t kNow = 1'700'000'000;
constexpr std::string_view kFe = "mmp1.example.net";  // the front end sample() is bound to

Signer signer_with(unsigned char fill) {
  std::array<std::byte, 32> seed{};
  seed.fill(std::byte{fill});
  auto s = Signer::from_seed(seed);
  REQUIRE(s);
  return std::move(*s);
}

Verifier verifier_for(std::vector<std::string> keys, std::chrono::seconds skew = std::chrono::seconds(30)) {
  auto v = Verifier::from_public_keys(keys, VerifierOptions{skew});
  REQUIRE(v);
  return std::move(*v);
}

Claims sample() {
  return new_claims("alice@example.com", {"imap", "pop"}, "mmp1.example.net", kNow, std::chrono::seconds(300));
}

std::string detail_of(const common::Result<Claims>& r) { return r ? "ok" : r.error().detail; }

std::string b64url(const std::string& bytes) {
  std::string out(sodium_base64_encoded_len(bytes.size(), sodium_base64_VARIANT_URLSAFE_NO_PADDING), '\0');
  sodium_bin2base64(out.data(), out.size(), reinterpret_cast<const unsigned char*>(bytes.data()), bytes.size(),
                    sodium_base64_VARIANT_URLSAFE_NO_PADDING);
  out.pop_back();
  return out;
}

// Signs arbitrary payload bytes with the 0x11 seed, as a buggy or future authserv might.
std::string sign_raw(const std::string& payload) {
  unsigned char seed[32], pk[32], sk[64], sig[64];
  std::fill(std::begin(seed), std::end(seed), 0x11);
  crypto_sign_seed_keypair(pk, sk, seed);
  std::string input = "pt1." + b64url(payload);
  crypto_sign_detached(sig, nullptr, reinterpret_cast<const unsigned char*>(input.data()), input.size(), sk);
  return input + "." + b64url(std::string(reinterpret_cast<char*>(sig), 64));
}

struct TempDir {
  fs::path path;
  TempDir() {
    std::string tmpl = (fs::temp_directory_path() / "authtoken-test-XXXXXX").string();
    REQUIRE(::mkdtemp(tmpl.data()) != nullptr);
    path = tmpl;
  }
  ~TempDir() { fs::remove_all(path); }
};

}  // namespace

TEST_CASE("a signed token verifies and carries every claim") {
  auto signer = signer_with(0x11);
  auto claims = sample();
  auto token = signer.sign(claims);
  REQUIRE(token);
  CHECK(token->starts_with("pt1."));
  CHECK(token->size() < kMaxToken);
  CHECK(token->find_first_not_of("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.") ==
        std::string::npos);  // URL-safe
  auto v = verifier_for({signer.public_key_text()});
  auto got = v.verify(*token, kNow + 10, "mmp1.example.net");
  REQUIRE(got);
  CHECK(*got == claims);
  CHECK(got->allows_service("IMAP"));
  CHECK_FALSE(got->allows_service("smtp"));
  CHECK(signer.key_id().size() == 16);
  CHECK(claims.token_id.size() == 22);
  CHECK(sample().token_id != claims.token_id);
}

TEST_CASE("changing any byte of a token makes it fail") {
  auto signer = signer_with(0x11);
  auto token = *signer.sign(sample());
  auto v = verifier_for({signer.public_key_text()});
  for (size_t i = 0; i < token.size(); ++i) {
    for (char c : {'A', 'B', 'g', '-', '_', '.', '=', '\0'}) {
      if (token[i] == c) continue;
      auto bad = token;
      bad[i] = c;
      INFO("byte " << i << " -> " << int(c));
      CHECK_FALSE(v.verify(bad, kNow, kFe));
    }
  }
}

TEST_CASE("truncated and extended tokens fail as malformed or bad signature") {
  auto signer = signer_with(0x11);
  auto token = *signer.sign(sample());
  auto v = verifier_for({signer.public_key_text()});
  for (size_t n = 0; n < token.size(); ++n) {
    INFO("prefix of " << n << " bytes");
    auto r = v.verify(token.substr(0, n), kNow, kFe);
    REQUIRE_FALSE(r);
    CHECK((r.error().detail == "malformed" || r.error().detail == "bad_signature"));
  }
  CHECK(detail_of(v.verify(token + "A", kNow, kFe)) == "malformed");
  CHECK(detail_of(v.verify(token + ".x", kNow, kFe)) == "malformed");
  CHECK(detail_of(v.verify("pt2." + token.substr(4), kNow, kFe)) == "malformed");
  CHECK(detail_of(v.verify("", kNow, kFe)) == "malformed");
}

TEST_CASE("a token from another key is unknown, and rotation accepts old and new keys") {
  auto old_key = signer_with(0x11);
  auto new_key = signer_with(0x22);
  auto old_token = *old_key.sign(sample());
  auto new_token = *new_key.sign(sample());
  CHECK(detail_of(verifier_for({new_key.public_key_text()}).verify(old_token, kNow, kFe)) == "unknown_key");
  auto both = verifier_for({old_key.public_key_text(), new_key.public_key_text(), new_key.public_key_text()});
  CHECK(both.key_count() == 2);
  CHECK(both.verify(old_token, kNow, kFe));
  CHECK(both.verify(new_token, kNow, kFe));
}

TEST_CASE("a token remembered as verified is still checked against each verifier's keys, time and front end") {
  auto old_key = signer_with(0x11);
  auto new_key = signer_with(0x22);
  auto token = *old_key.sign(sample());
  auto both = verifier_for({old_key.public_key_text(), new_key.public_key_text()});
  for (int i = 0; i < 3; ++i) CHECK(both.verify(token, kNow, kFe));
  // Another key set on the same thread: the remembered signature check is not its own.
  CHECK(detail_of(verifier_for({new_key.public_key_text()}).verify(token, kNow, kFe)) == "unknown_key");
  CHECK(detail_of(both.verify(token, kNow + 400, kFe)) == "expired");
  CHECK(detail_of(both.verify(token, kNow, "mmp2.example.net")) == "wrong_front_end");
  auto tampered = token;
  tampered[tampered.size() - 2] = tampered[tampered.size() - 2] == 'A' ? 'B' : 'A';
  CHECK(detail_of(both.verify(tampered, kNow, kFe)) == "bad_signature");
  CHECK(both.verify(token, kNow, kFe));
}

TEST_CASE("a signature moved onto another payload is a bad signature") {
  auto signer = signer_with(0x11);
  auto a = *signer.sign(sample());
  auto b = *signer.sign(sample());
  auto v = verifier_for({signer.public_key_text()});
  auto mixed = a.substr(0, a.rfind('.')) + b.substr(b.rfind('.'));
  CHECK(detail_of(v.verify(mixed, kNow, kFe)) == "bad_signature");
}

TEST_CASE("expiry and issue time allow the configured clock skew and no more") {
  auto signer = signer_with(0x11);
  auto claims = sample();  // issued kNow, expires kNow + 300
  auto token = *signer.sign(claims);
  auto v = verifier_for({signer.public_key_text()}, std::chrono::seconds(30));
  CHECK(v.verify(token, kNow + 299, kFe));
  CHECK(v.verify(token, kNow + 329, kFe));
  CHECK(detail_of(v.verify(token, kNow + 330, kFe)) == "expired");
  CHECK(v.verify(token, kNow - 30, kFe));
  CHECK(detail_of(v.verify(token, kNow - 31, kFe)) == "issued_in_future");
  auto strict = verifier_for({signer.public_key_text()}, std::chrono::seconds(0));
  CHECK(detail_of(strict.verify(token, kNow + 300, kFe)) == "expired");
  CHECK(detail_of(strict.verify(token, kNow - 1, kFe)) == "issued_in_future");
  CHECK_FALSE(Verifier::from_public_keys(std::vector<std::string>{signer.public_key_text()},
                                         VerifierOptions{std::chrono::seconds(-1)}));
}

TEST_CASE("the front end must be the one the token was issued to") {
  auto signer = signer_with(0x11);
  auto token = *signer.sign(sample());
  auto v = verifier_for({signer.public_key_text()});
  CHECK(detail_of(v.verify(token, kNow, "mmp2.example.net")) == "wrong_front_end");
  CHECK(detail_of(v.verify(token, kNow, "MMP1.example.net")) == "wrong_front_end");
  CHECK(v.verify(token, kNow, "mmp1.example.net"));
}

TEST_CASE("tokens bound to no front end are neither signed nor accepted unless a test config allows them") {
  auto signer = signer_with(0x11);
  auto unbound = sample();
  unbound.front_end.clear();
  auto refused = signer.sign(unbound);
  REQUIRE_FALSE(refused);
  CHECK(refused.error().detail.find("no front end") != std::string::npos);

  auto v = verifier_for({signer.public_key_text()});
  auto bound = *signer.sign(sample());
  // A caller that does not know which front end asks (plaintext gRPC, a certificate without a CN)
  // cannot tell whose token it holds.
  CHECK(detail_of(v.verify(bound, kNow)) == "unbound");
  CHECK(detail_of(v.verify(bound, kNow, "")) == "unbound");

  std::array<std::byte, 32> seed{};
  seed.fill(std::byte{0x11});
  auto lax = Signer::from_seed(seed, BindingPolicy{.allow_unbound = true});
  REQUIRE(lax);
  auto unbound_token = lax->sign(unbound);
  REQUIRE(unbound_token);
  CHECK(detail_of(v.verify(*unbound_token, kNow, kFe)) == "unbound");  // same key, strict verifier
  CHECK(detail_of(v.verify(*unbound_token, kNow)) == "unbound");

  auto tests_only = Verifier::from_public_keys(std::vector<std::string>{signer.public_key_text()},
                                               VerifierOptions{.binding = {.allow_unbound = true}});
  REQUIRE(tests_only);
  CHECK(tests_only->verify(*unbound_token, kNow));
  CHECK(tests_only->verify(bound, kNow));  // no front end named: no check
  CHECK(detail_of(tests_only->verify(*unbound_token, kNow, kFe)) == "wrong_front_end");
  CHECK(detail_of(tests_only->verify(bound, kNow, "mmp2.example.net")) == "wrong_front_end");
}

TEST_CASE("claims out of bounds are refused at signing, and the largest allowed fit in 2 KiB") {
  auto signer = signer_with(0x11);
  auto c = sample();
  c.user = std::string(kMaxUser, 'u');
  c.front_end = std::string(kMaxFrontEnd, 'f');
  c.services.assign(kMaxServices, std::string(kMaxServiceName, 's'));
  c.token_id = std::string(kMaxTokenId, 't');
  auto token = signer.sign(c);
  REQUIRE(token);
  CHECK(token->size() <= kMaxToken);
  CHECK(*verifier_for({signer.public_key_text()}).verify(*token, kNow, c.front_end) == c);

  auto refused = [&](auto mutate) {
    auto bad = sample();
    mutate(bad);
    return !signer.sign(bad);
  };
  CHECK(refused([](Claims& b) { b.user.clear(); }));
  CHECK(refused([](Claims& b) { b.user = std::string(kMaxUser + 1, 'u'); }));
  CHECK(refused([](Claims& b) { b.user = "bad\nuser"; }));
  CHECK(refused([](Claims& b) { b.front_end = std::string(kMaxFrontEnd + 1, 'f'); }));
  CHECK(refused([](Claims& b) { b.services.assign(kMaxServices + 1, "imap"); }));
  CHECK(refused([](Claims& b) { b.services = {"IMAP"}; }));
  CHECK(refused([](Claims& b) { b.services = {""}; }));
  CHECK(refused([](Claims& b) { b.token_id = "has space"; }));
  CHECK(refused([](Claims& b) { b.expires_at = b.issued_at; }));
  CHECK(refused([](Claims& b) { b.session_started_at = b.issued_at + 1; }));
}

TEST_CASE("oversize and signed-but-malformed payloads are malformed") {
  auto signer = signer_with(0x11);
  auto v = verifier_for({signer.public_key_text()});
  CHECK(detail_of(v.verify("pt1." + std::string(kMaxToken, 'A'), kNow, kFe)) == "malformed");

  std::array<uint8_t, kKeyIdBytes> id{};
  auto hex = signer.key_id();
  for (size_t i = 0; i < id.size(); ++i) id[i] = static_cast<uint8_t>(std::stoi(hex.substr(2 * i, 2), nullptr, 16));
  auto payload = detail::encode_payload(sample(), id);
  REQUIRE(payload);
  CHECK(v.verify(sign_raw(*payload), kNow, kFe));                            // the raw signer matches
  CHECK(detail_of(v.verify(sign_raw(*payload + "x"), kNow, kFe)) == "malformed");  // trailing byte
  CHECK(detail_of(v.verify(sign_raw(payload->substr(0, payload->size() - 1)), kNow, kFe)) == "malformed");
  auto many = *payload;
  REQUIRE(many[many.size() - 10] == 2);
  many[many.size() - 10] = 3;  // one service more than present
  CHECK(detail_of(v.verify(sign_raw(many), kNow, kFe)) == "malformed");
  many[many.size() - 10] = 33;  // the service count, before "\x04imap\x03pop": above the bound
  CHECK(detail_of(v.verify(sign_raw(many), kNow, kFe)) == "malformed");
  CHECK(detail_of(v.verify(sign_raw(std::string(payload->data(), kKeyIdBytes)), kNow, kFe)) == "malformed");
}

TEST_CASE("public keys must be 'ed25519:' and 32 bytes of base64url") {
  auto text = signer_with(0x11).public_key_text();
  CHECK(Verifier::from_public_keys(std::vector<std::string>{"  " + text + "\n"}));
  for (std::string bad : {std::string(), std::string("ed25519:"), text.substr(8), "ed25519:" + text.substr(9),
                          text + "AA", "ED25519:" + text.substr(8), text.substr(0, text.size() - 1) + "=",
                          text + "="}) {
    INFO(bad);
    CHECK_FALSE(Verifier::from_public_keys(std::vector<std::string>{bad}));
  }
  CHECK_FALSE(Verifier::from_public_keys(std::vector<std::string>{}));
}

TEST_CASE("renewal extends up to the maximum session lifetime, then stops") {
  using std::chrono::seconds;
  auto c = sample();  // session started kNow
  auto r = renew(c, kNow + 200, seconds(300), seconds(3600));
  REQUIRE(r);
  CHECK(r->issued_at == kNow + 200);
  CHECK(r->expires_at == kNow + 500);
  CHECK(r->session_started_at == kNow);
  CHECK(r->user == c.user);
  CHECK(r->services == c.services);
  CHECK(r->front_end == c.front_end);
  CHECK(r->token_id != c.token_id);

  auto late = renew(*r, kNow + 3500, seconds(300), seconds(3600));
  REQUIRE(late);
  CHECK(late->expires_at == kNow + 3600);  // capped by the session
  CHECK_FALSE(renew(*late, kNow + 3600, seconds(300), seconds(3600)));
  CHECK_FALSE(renew(c, kNow - 1, seconds(300), seconds(3600)));

  auto signer = signer_with(0x11);
  CHECK(verifier_for({signer.public_key_text()}).verify(*signer.sign(*late), kNow + 3590, kFe));
}

TEST_CASE("the key file is created 0600 with a .pub twin and read back") {
  TempDir dir;
  auto key = dir.path / "token.key";
  auto first = Signer::load_or_create(key);
  REQUIRE(first);
  struct stat st {};
  REQUIRE(::stat(key.c_str(), &st) == 0);
  CHECK((st.st_mode & 0777) == 0600);
  CHECK(st.st_size == 32);
  std::ifstream pub(dir.path / "token.key.pub");
  std::string line;
  std::getline(pub, line);
  CHECK(line == first->public_key_text());
  CHECK_FALSE(fs::exists(dir.path / "token.key.tmp"));

  auto again = Signer::load_or_create(key);
  REQUIRE(again);
  CHECK(again->public_key_text() == first->public_key_text());
  CHECK(again->key_id() == first->key_id());
  auto token = *first->sign(sample());
  CHECK(verifier_for({again->public_key_text()}).verify(token, kNow, kFe));
}

TEST_CASE("a key file others can read, of the wrong size, or behind a symlink is refused") {
  TempDir dir;
  auto key = dir.path / "token.key";
  REQUIRE(Signer::load_or_create(key));
  for (auto mode : {0640, 0604, 0660, 0602}) {
    fs::permissions(key, static_cast<fs::perms>(mode));
    auto r = Signer::load_or_create(key);
    REQUIRE_FALSE(r);
    CHECK(r.error().kind == common::ErrorKind::Config);
    CHECK(r.error().detail.find("group or others") != std::string::npos);
  }
  fs::permissions(key, static_cast<fs::perms>(0400));
  CHECK(Signer::load_or_create(key));  // read-only for the owner is fine

  auto short_key = dir.path / "short.key";
  { std::ofstream(short_key) << "too short"; }
  fs::permissions(short_key, static_cast<fs::perms>(0600));
  CHECK_FALSE(Signer::load_or_create(short_key));

  auto link = dir.path / "link.key";
  fs::create_symlink(key, link);
  CHECK_FALSE(Signer::load_or_create(link));

  CHECK_FALSE(Signer::load_or_create(dir.path / "missing-dir" / "token.key"));
}

TEST_CASE("derived keys come from the secret seed: stable per key file, not from the public key") {
  TempDir dir;
  auto key = dir.path / "token.key";
  auto first = Signer::load_or_create(key);
  REQUIRE(first);
  std::array<uint8_t, 32> k1{}, k2{}, other_id{}, other_ctx{};
  REQUIRE(first->derive_key("scramfks", 1, k1));
  // A restart, or a second authserv given a copy of the key file, derives the same key.
  auto copy = dir.path / "copy.key";
  fs::copy_file(key, copy);
  auto second = Signer::load_or_create(copy);
  REQUIRE(second);
  REQUIRE(second->derive_key("scramfks", 1, k2));
  CHECK(k1 == k2);
  REQUIRE(first->derive_key("scramfks", 2, other_id));
  REQUIRE(first->derive_key("otheruse", 1, other_ctx));
  CHECK(k1 != other_id);
  CHECK(k1 != other_ctx);

  // It is libsodium's KDF keyed by the seed in the 0600 file...
  std::ifstream in(key, std::ios::binary);
  std::array<unsigned char, 32> seed{};
  in.read(reinterpret_cast<char*>(seed.data()), seed.size());
  REQUIRE(in.gcount() == 32);
  std::array<uint8_t, 32> expected{};
  REQUIRE(crypto_kdf_derive_from_key(expected.data(), expected.size(), 1, "scramfks", seed.data()) == 0);
  CHECK(k1 == expected);
  // ...and not the hash of the public key that every store holds (what authserv once used).
  auto pub = first->public_key_text();
  std::array<uint8_t, 32> from_public{};
  crypto_generichash(from_public.data(), from_public.size(), reinterpret_cast<const unsigned char*>(pub.data()),
                     pub.size(), reinterpret_cast<const unsigned char*>("postern-scram-fake-salt"), 23);
  CHECK(k1 != from_public);
  sodium_memzero(seed.data(), seed.size());

  CHECK_FALSE(first->derive_key("short", 1, k2));
  CHECK_FALSE(first->derive_key("nine char", 1, k2));
  Signer moved = std::move(*first);
  CHECK_FALSE(first->derive_key("scramfks", 1, k2));  // NOLINT(bugprone-use-after-move): must refuse
  CHECK(moved.derive_key("scramfks", 1, k2));
  CHECK(k2 == k1);
}
