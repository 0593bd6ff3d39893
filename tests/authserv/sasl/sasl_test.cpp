// sasl_test.cpp: PLAIN, LOGIN, SCRAM-SHA-256(-PLUS) and EXTERNAL state machines: RFC examples,
// refusals (downgrade, channel binding, unknown user), and garbage for each mechanism.
#include <sodium.h>

#include <catch2/catch.hpp>
#include <string>
#include <vector>

#include "authserv/sasl/sasl.hpp"
#include "tests/support/scram_client.hpp"

using namespace authserv::sasl;
using Kind = Step::Kind;

namespace {

using test::b64d;
using test::b64e;
std::string client_proof(std::string_view password, std::string_view salt, int iterations,
                         std::string_view auth_message) {
  return test::scram_client_proof(password, salt, iterations, auth_message);
}

const std::string kSalt = b64d("W22ZaJ0SNY7soEsUEjb6gQ==");
const std::string kSnonce = "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0";
const std::string kCnonce = "rOprNGfwEbeRWgbNEkqO";

MechanismContext ctx(std::optional<std::string> cb = std::nullopt) {
  MechanismContext c;
  c.channel_binding = std::move(cb);
  c.nonce = [] { return kSnonce; };
  return c;
}

const ScramVerifier& pencil() {
  static const ScramVerifier v = scram_keys("pencil", kSalt, 4096);
  return v;
}

// Runs client-first through server-first; returns the server-first message.
std::string scram_first(Mechanism& m, std::string_view client_first, std::optional<ScramVerifier> v) {
  auto s = m.start(client_first);
  REQUIRE(s.kind == Kind::NeedScramVerifier);
  auto c = m.scram_verifier(std::move(v));
  REQUIRE(c.kind == Kind::Challenge);
  return c.data;
}

}  // namespace

TEST_CASE("PLAIN without and with authzid") {
  auto m = make_mechanism("plain", ctx());
  REQUIRE(m);
  auto s = m->start(std::string_view("\0tim\0tanstaaftanstaaf", 21));
  REQUIRE(s.kind == Kind::NeedPasswordCheck);
  CHECK(s.authcid == "tim");
  CHECK(s.authzid.empty());
  CHECK(s.password == "tanstaaftanstaaf");
  auto ok = m->password_checked(true);
  REQUIRE(ok.kind == Kind::Success);
  CHECK(ok.authcid == "tim");
  CHECK(m->password_checked(true).kind == Kind::Failure);  // no replay after the end

  auto m2 = make_mechanism("PLAIN", ctx());
  auto c = m2->start(std::nullopt);
  REQUIRE(c.kind == Kind::Challenge);
  CHECK(c.data.empty());
  auto s2 = m2->step(std::string_view("Ursel\0Kurt\0xipj3plmq", 20));
  REQUIRE(s2.kind == Kind::NeedPasswordCheck);
  CHECK(s2.authzid == "Ursel");
  CHECK(s2.authcid == "Kurt");
  CHECK(m2->password_checked(false).kind == Kind::Failure);
}

TEST_CASE("PLAIN bad separators and encodings") {
  for (std::string bad : {std::string(""), std::string("user pass"), std::string("\0user", 5),
                          std::string("\0user\0", 6), std::string("\0\0pw", 4),
                          std::string("a\0b\0c\0d", 7), std::string("\0us\xff\0pw", 7),
                          std::string(kMaxMessage + 1, 'a')}) {
    auto m = make_mechanism("PLAIN", ctx());
    CHECK(m->start(bad).kind == Kind::Failure);
  }
}

TEST_CASE("LOGIN challenges and initial response") {
  auto m = make_mechanism("login", ctx());
  auto c1 = m->start(std::nullopt);
  REQUIRE(c1.kind == Kind::Challenge);
  CHECK(c1.data == "Username:");
  auto c2 = m->step("tim");
  REQUIRE(c2.kind == Kind::Challenge);
  CHECK(c2.data == "Password:");
  auto s = m->step("secret");
  REQUIRE(s.kind == Kind::NeedPasswordCheck);
  CHECK(s.authcid == "tim");
  CHECK(s.password == "secret");
  CHECK(m->password_checked(true).kind == Kind::Success);
  CHECK(m->step("more").kind == Kind::Failure);

  auto m2 = make_mechanism("LOGIN", ctx());
  auto p = m2->start("tim");
  REQUIRE(p.kind == Kind::Challenge);
  CHECK(p.data == "Password:");
  REQUIRE(m2->step("x").kind == Kind::NeedPasswordCheck);
  CHECK(m2->password_checked(false).kind == Kind::Failure);

  CHECK(make_mechanism("LOGIN", ctx())->start("").kind == Kind::Failure);
  CHECK(make_mechanism("LOGIN", ctx())->start(std::string_view("a\0b", 3)).kind == Kind::Failure);
  CHECK(make_mechanism("LOGIN", ctx())->start("\xc0\xaf").kind == Kind::Failure);
}

TEST_CASE("SCRAM-SHA-256 RFC 7677 section 3 exchange") {
  auto m = make_mechanism("scram-sha-256", ctx());
  REQUIRE(m);
  auto s = m->start("n,,n=user,r=" + kCnonce);
  REQUIRE(s.kind == Kind::NeedScramVerifier);
  CHECK(s.authcid == "user");
  auto sf = m->scram_verifier(pencil());
  REQUIRE(sf.kind == Kind::Challenge);
  CHECK(sf.data == "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096");
  auto fin = m->step(
      "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,"
      "p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=");
  REQUIRE(fin.kind == Kind::Success);
  CHECK(fin.data == "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=");
  CHECK(fin.authcid == "user");
  CHECK(m->step("").kind == Kind::Failure);
}

TEST_CASE("SCRAM-SHA-256 wrong proof, unknown user, bad final messages") {
  const std::string nonce = kCnonce + kSnonce;
  const std::string good_proof = "dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=";
  SECTION("wrong proof") {
    auto m = make_mechanism("SCRAM-SHA-256", ctx());
    scram_first(*m, "n,,n=user,r=" + kCnonce, scram_keys("pencil2", kSalt, 4096));
    auto f = m->step("c=biws,r=" + nonce + ",p=" + good_proof);
    CHECK(f.kind == Kind::Failure);
    CHECK(f.data == "scram: wrong proof");
  }
  SECTION("unknown user fails only at the end, with a stable fake salt") {
    auto m = make_mechanism("SCRAM-SHA-256", ctx());
    auto sf = scram_first(*m, "n,,n=nobody,r=" + kCnonce, std::nullopt);
    CHECK(sf.starts_with("r=" + nonce + ",s="));
    CHECK(sf.ends_with(",i=4096"));
    auto m2 = make_mechanism("SCRAM-SHA-256", ctx());
    CHECK(scram_first(*m2, "n,,n=nobody,r=" + kCnonce, std::nullopt) == sf);
    auto m3 = make_mechanism("SCRAM-SHA-256", ctx());
    CHECK(scram_first(*m3, "n,,n=nobody2,r=" + kCnonce, std::nullopt) != sf);
    auto f = m->step("c=biws,r=" + nonce + ",p=" + good_proof);
    CHECK(f.kind == Kind::Failure);
    CHECK(f.data == "scram: unknown user");
    auto c = ctx();
    c.fake_iterations = 10000;
    auto m4 = make_mechanism("SCRAM-SHA-256", c);
    CHECK(scram_first(*m4, "n,,n=nobody,r=" + kCnonce, std::nullopt).ends_with(",i=10000"));
  }
  for (std::string bad : {"c=biws,r=" + nonce,                                     // no proof
                          "c=biws,r=" + kCnonce + ",p=" + good_proof,              // nonce mismatch
                          "c=biws,r=" + nonce + "x,p=" + good_proof,               // nonce mismatch
                          "r=" + nonce + ",c=biws,p=" + good_proof,                // order
                          "c=eSws,r=" + nonce + ",p=" + good_proof,                // cbind "y,,"
                          "c=biws!,r=" + nonce + ",p=" + good_proof,               // bad base64
                          "c=biws,r=" + nonce + ",p=dHzbZapWIk4jUhN+Ute9",         // short proof
                          "c=biws,r=" + nonce + ",p=" + good_proof + ",x=1",       // proof not last
                          "c=biws,r=" + nonce + ",p=",                              // empty proof
                          std::string(kMaxMessage + 1, 'c')}) {
    auto m = make_mechanism("SCRAM-SHA-256", ctx());
    scram_first(*m, "n,,n=user,r=" + kCnonce, pencil());
    CHECK(m->step(bad).kind == Kind::Failure);
  }
  SECTION("extensions before the proof are tolerated; iteration count checked") {
    auto m = make_mechanism("SCRAM-SHA-256", ctx());
    m->start("n,,n=user,r=" + kCnonce);
    auto v = pencil();
    v.iterations = 100;
    CHECK(m->scram_verifier(v).kind == Kind::Failure);
  }
}

TEST_CASE("SCRAM fake salts: keyed by the configured key and the looked-up name, as long as real salts") {
  auto salt_of = [](const MechanismContext& c, const std::string& name, std::string_view account = {}) {
    auto m = make_mechanism("SCRAM-SHA-256", c);
    m->start("n,,n=" + name + ",r=" + kCnonce);
    auto sf = m->scram_verifier(std::nullopt, account);
    REQUIRE(sf.kind == Kind::Challenge);
    auto s = sf.data.find(",s="), i = sf.data.find(",i=");
    return b64d(sf.data.substr(s + 3, i - s - 3));
  };
  auto keyed = [](std::uint8_t fill) {
    auto c = ctx();
    c.fake_salt_key.fill(fill);
    return c;
  };
  const auto a = keyed(0x11), b = keyed(0x22);
  // A real user's verifier salt is password::kScramSaltBytes (16) long; a fake one must be too.
  CHECK(salt_of(a, "zed").size() == 16);
  CHECK(salt_of(a, "zed") == salt_of(keyed(0x11), "zed"));  // stable for one key
  CHECK(salt_of(a, "zed") != salt_of(b, "zed"));            // depends on the secret key
  CHECK(salt_of(a, "zed") != salt_of(a, "zoe"));
  // The directory's spelling decides: "Zed" and "zed@example.com" are one account to look up.
  CHECK(salt_of(a, "Zed", "zed@example.com") == salt_of(a, "zed@example.com", "zed@example.com"));
  CHECK(salt_of(a, "Zed", "zed@example.com") != salt_of(a, "Zed"));
}

TEST_CASE("SCRAM-SHA-256 client-first garbage") {
  for (const std::string& bad : std::vector<std::string>{"", "n", "n,,", "n,,n=user", "n,,n=user,r=", "x,,n=user,r=abc",
                          "n,a=,n=user,r=abc", "n,,n=us=2Xer,r=abc", "n,,n=us=er,r=abc",
                          "n,,n=,r=abc", "n,,m=foo,n=user,r=abc", "n,,r=abc,n=user",
                          "n,,n=user,r=a b", "n,,n=us\xffr,r=abc", "n,,n=user,r=abc,1=x",
                          "p=tls-exporter,,n=user,r=abc", "p=tls-unique,,n=user,r=abc",
                          std::string("n,,n=u\0s,r=abc", 14)}) {
    auto m = make_mechanism("SCRAM-SHA-256", ctx());
    INFO(bad);
    CHECK(m->start(bad).kind == Kind::Failure);
    CHECK(m->step("c=biws").kind == Kind::Failure);  // stays failed
  }
  // Escapes decode: "=2C" is ',' and "=3D" is '='; authzid is returned.
  auto m = make_mechanism("SCRAM-SHA-256", ctx());
  auto s = m->start("n,a=ad=3Dmin,n=a=2Cb,r=abc,x=ext");
  REQUIRE(s.kind == Kind::NeedScramVerifier);
  CHECK(s.authcid == "a,b");
  CHECK(s.authzid == "ad=min");
  // "y" is fine when the server has no channel binding to offer.
  CHECK(make_mechanism("SCRAM-SHA-256", ctx())->start("y,,n=user,r=abc").kind == Kind::NeedScramVerifier);
}

TEST_CASE("SCRAM-SHA-256-PLUS channel binding and downgrade") {
  const std::string cb = "\x01\x02" "exporter-bytes-32-of-them-here..";
  const std::string gs2 = "p=tls-exporter,,";
  auto run = [&](std::string_view cbind_input) {
    auto m = make_mechanism("SCRAM-SHA-256-PLUS", ctx(cb));
    REQUIRE(m);
    const std::string cfb = "n=user,r=" + kCnonce;
    auto sf = scram_first(*m, gs2 + cfb, pencil());
    std::string without_proof = "c=" + b64e(cbind_input) + ",r=" + kCnonce + kSnonce;
    auto proof = client_proof("pencil", kSalt, 4096, cfb + "," + sf + "," + without_proof);
    return m->step(without_proof + ",p=" + b64e(proof));
  };
  auto ok = run(gs2 + cb);
  CHECK(ok.kind == Kind::Success);
  CHECK(ok.data.starts_with("v="));
  auto bad = run(gs2 + "different-binding");
  CHECK(bad.kind == Kind::Failure);
  CHECK(bad.data == "scram: channel binding mismatch");
  CHECK(run(gs2).kind == Kind::Failure);

  CHECK_FALSE(make_mechanism("SCRAM-SHA-256-PLUS", ctx()));  // no TLS 1.3 exporter: not offered
  CHECK(make_mechanism("SCRAM-SHA-256-PLUS", ctx(cb))->start("n,,n=user,r=abc").kind == Kind::Failure);
  CHECK(make_mechanism("SCRAM-SHA-256-PLUS", ctx(cb))->start("y,,n=user,r=abc").kind == Kind::Failure);
  // Non-PLUS chosen while the server advertises PLUS: "y" means a stripped mechanism list.
  auto y = make_mechanism("SCRAM-SHA-256", ctx(cb))->start("y,,n=user,r=abc");
  CHECK(y.kind == Kind::Failure);
  CHECK(make_mechanism("SCRAM-SHA-256", ctx(cb))->start("n,,n=user,r=abc").kind == Kind::NeedScramVerifier);
  CHECK(make_mechanism("SCRAM-SHA-256", ctx(cb))->start(gs2 + "n=user,r=abc").kind == Kind::Failure);
}

TEST_CASE("scram_keys matches the RFC 7677 exchange with an independent client") {
  const std::string cfb = "n=user,r=" + kCnonce;
  const std::string sf = "r=" + kCnonce + kSnonce + ",s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096";
  const std::string wp = "c=biws,r=" + kCnonce + kSnonce;
  CHECK(b64e(client_proof("pencil", kSalt, 4096, cfb + "," + sf + "," + wp)) ==
        "dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=");
}

TEST_CASE("EXTERNAL with and without authzid and identity") {
  MechanismContext c = ctx();
  c.tls_identity = "alice@example.net";
  auto m = make_mechanism("external", c);
  REQUIRE(m);
  auto s = m->start("");
  REQUIRE(s.kind == Kind::Success);
  CHECK(s.authcid == "alice@example.net");
  CHECK(s.authzid.empty());

  auto m2 = make_mechanism("EXTERNAL", c);
  REQUIRE(m2->start(std::nullopt).kind == Kind::Challenge);
  auto s2 = m2->step("shared@example.net");
  REQUIRE(s2.kind == Kind::Success);
  CHECK(s2.authzid == "shared@example.net");

  CHECK_FALSE(make_mechanism("EXTERNAL", ctx()));
  c.tls_identity = "";
  CHECK(make_mechanism("EXTERNAL", c)->start("").kind == Kind::Failure);
  c.tls_identity = "alice";
  CHECK(make_mechanism("EXTERNAL", c)->start(std::string_view("a\0b", 3)).kind == Kind::Failure);
  CHECK(make_mechanism("EXTERNAL", c)->start("\xed\xa0\x80").kind == Kind::Failure);
}

TEST_CASE("mechanism table and factory") {
  CHECK_FALSE(make_mechanism("CRAM-MD5", ctx()));
  CHECK_FALSE(make_mechanism("", ctx()));
  int plaintext = 0;
  for (auto& info : mechanisms()) {
    if (info.plaintext) ++plaintext;
    MechanismContext c = ctx("cb");
    c.tls_identity = "id";
    auto m = make_mechanism(info.name, c);
    REQUIRE(m);
    CHECK(m->name() == info.name);
  }
  CHECK(plaintext == 4);  // PLAIN, LOGIN, OAUTHBEARER, XOAUTH2
}

TEST_CASE("byte-level garbage never crashes and always ends") {
  for (auto& info : mechanisms()) {
    for (unsigned seed = 0; seed < 200; ++seed) {
      MechanismContext c = ctx("cb");
      c.tls_identity = "id";
      auto m = make_mechanism(info.name, c);
      std::string junk(seed % 64, '\0');
      for (std::size_t i = 0; i < junk.size(); ++i) junk[i] = static_cast<char>((seed * 131 + i * 17) & 0xff);
      auto s = m->start(junk);
      for (int i = 0; i < kMaxSteps + 2 && s.kind == Kind::Challenge; ++i) s = m->step(junk);
      if (s.kind == Kind::NeedPasswordCheck) s = m->password_checked(false);
      if (s.kind == Kind::NeedScramVerifier) s = m->scram_verifier(std::nullopt);
      if (s.kind == Kind::NeedTokenCheck) s = m->token_checked(false);
      if (s.kind == Kind::Challenge) s = m->step(junk);  // bearer error challenge
      // EXTERNAL rightly accepts any UTF-8 authzid; the others can never succeed on junk.
      if (!info.needs_tls_identity) CHECK(s.kind != Kind::Success);
      CHECK(s.kind != Kind::Challenge);
    }
  }
}

TEST_CASE("OAUTHBEARER RFC 7628 section 4.1 and the error exchange") {
  const std::string msg =
      "n,a=user@example.com,\x01host=server.example.com\x01port=143\x01"
      "auth=Bearer vF9dft4qmTc2Nvb3RlckBhbHRhdmlzdGEuY29tCg==\x01\x01";
  auto m = make_mechanism("oauthbearer", ctx());
  REQUIRE(m);
  auto s = m->start(msg);
  REQUIRE(s.kind == Kind::NeedTokenCheck);
  CHECK(s.authcid == "user@example.com");
  CHECK(s.password == "vF9dft4qmTc2Nvb3RlckBhbHRhdmlzdGEuY29tCg==");
  CHECK(m->token_checked(true).kind == Kind::Success);

  auto m2 = make_mechanism("OAUTHBEARER", ctx());
  REQUIRE(m2->start(msg).kind == Kind::NeedTokenCheck);
  auto e = m2->token_checked(false);
  REQUIRE(e.kind == Kind::Challenge);
  CHECK(e.data.find("invalid_token") != std::string::npos);
  auto f = m2->step("\x01");
  CHECK(f.kind == Kind::Failure);
  CHECK(f.data == "bearer: token rejected");

  for (std::string bad : {std::string("p=tls-exporter,a=u,\x01" "auth=Bearer abc\x01\x01"),
                          std::string("n,a=u,\x01" "auth=Bearer abc\x01"),         // no terminator
                          std::string("n,a=u,\x01" "auth=Basic abc\x01\x01"),      // not Bearer
                          std::string("n,a=u,\x01" "auth=Bearer a b\x01\x01"),     // bad token
                          std::string("n,a=u,\x01" "host=x\x01\x01"),              // no auth
                          std::string("n,,\x01" "auth=Bearer abc\x01\x01"),         // no user
                          std::string("n,a=u,\x01" "auth=Bearer abc\x01\x01junk"),
                          std::string("n,a=u,\x01" "=x\x01" "auth=Bearer abc\x01\x01")}) {
    CHECK(make_mechanism("OAUTHBEARER", ctx())->start(bad).kind == Kind::Failure);
  }
}

TEST_CASE("XOAUTH2") {
  auto m = make_mechanism("XOAUTH2", ctx());
  auto s = m->start(std::string("user=someuser@example.com\x01" "auth=Bearer ya29.vF9dft4qmTc2Nvb3RlckBhbHRhdmlzdGEuY29tCg\x01\x01"));
  REQUIRE(s.kind == Kind::NeedTokenCheck);
  CHECK(s.authcid == "someuser@example.com");
  CHECK(m->token_checked(true).kind == Kind::Success);
  CHECK(make_mechanism("XOAUTH2", ctx())->start(std::string("auth=Bearer abc\x01\x01")).kind == Kind::Failure);
}
