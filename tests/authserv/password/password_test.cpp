// password_test.cpp: stored-password schemes against hashes made at test time by slappasswd and
// openssl (real peers), crypt(3) known answers, malformed input, SCRAM against RFC 7677 §3, and
// SASLprep against RFC 4013's examples and GNU SASL's gsasl (a real SCRAM client).
#include <catch2/catch.hpp>

#include <sodium.h>

#include <cctype>
#include <chrono>
#include <filesystem>
#include <string>
#include <utility>
#include <vector>

#include "authserv/password/password.hpp"
#include "authserv/password/sha1.hpp"
#include "tests/support/process.hpp"

namespace pw = authserv::password;
using pw::Verdict;

namespace {

// Cheap enough for sanitizer builds; only one test uses the default cost.
const pw::Argon2Cost kCheap{1, size_t{8} << 20};

// Runs a hashing tool and returns its last output line (the hash).
std::string tool_hash(const std::vector<std::string>& argv) {
  const auto r = test::run(argv);
  INFO(argv[0] << " output: " << r.output);
  REQUIRE(r.exit_code == 0);
  std::string out = r.output;
  while (!out.empty() && (out.back() == '\n' || out.back() == '\r')) out.pop_back();
  const auto nl = out.rfind('\n');
  return nl == std::string::npos ? out : out.substr(nl + 1);
}

std::string slappasswd(const std::string& scheme, const std::string& module, const std::string& pass) {
  std::vector<std::string> argv{"slappasswd"};
  if (!module.empty()) argv.insert(argv.end(), {"-o", "module-load=" + module});
  argv.insert(argv.end(), {"-h", scheme, "-s", pass});
  return tool_hash(argv);
}

std::string b64(const std::string& bin) {
  std::string out(sodium_base64_ENCODED_LEN(bin.size(), sodium_base64_VARIANT_ORIGINAL), '\0');
  sodium_bin2base64(out.data(), out.size(), reinterpret_cast<const unsigned char*>(bin.data()),
                    bin.size(), sodium_base64_VARIANT_ORIGINAL);
  out.pop_back();
  return out;
}

std::string unb64(const std::string& text) {
  std::string out(text.size(), '\0');
  size_t len = 0;
  REQUIRE(sodium_base642bin(reinterpret_cast<unsigned char*>(out.data()), out.size(), text.data(),
                            text.size(), nullptr, &len, nullptr,
                            sodium_base64_VARIANT_ORIGINAL) == 0);
  out.resize(len);
  return out;
}

std::string hmac256(const std::string& key, const std::string& msg) {
  unsigned char out[crypto_auth_hmacsha256_BYTES];
  crypto_auth_hmacsha256_state st;
  crypto_auth_hmacsha256_init(&st, reinterpret_cast<const unsigned char*>(key.data()), key.size());
  crypto_auth_hmacsha256_update(&st, reinterpret_cast<const unsigned char*>(msg.data()), msg.size());
  crypto_auth_hmacsha256_final(&st, out);
  return std::string(reinterpret_cast<char*>(out), sizeof out);
}

}  // namespace

TEST_CASE("slappasswd {SSHA}, {SSHA256}, {SSHA512} verify with the right password only") {
  REQUIRE(sodium_init() >= 0);
  for (const auto& [scheme, module] : std::vector<std::pair<std::string, std::string>>{
           {"{SSHA}", ""}, {"{SSHA256}", "pw-sha2"}, {"{SSHA512}", "pw-sha2"}}) {
    const std::string stored = slappasswd(scheme, module, "s3cr3t pass");
    INFO(stored);
    REQUIRE(stored.rfind(scheme, 0) == 0);
    CHECK(pw::verify("s3cr3t pass", stored) == Verdict::Match);
    CHECK(pw::verify("s3cr3t pasS", stored) == Verdict::Mismatch);
    CHECK(pw::verify("", stored) == Verdict::Mismatch);
    CHECK(pw::needs_rehash(stored));
    // Scheme names are case-insensitive in OpenLDAP.
    std::string lower = stored;
    for (size_t i = 0; i < scheme.size(); ++i) lower[i] = static_cast<char>(std::tolower(lower[i]));
    CHECK(pw::verify("s3cr3t pass", lower) == Verdict::Match);
  }
}

TEST_CASE("slappasswd {ARGON2} (argon2i from the argon2 module) verifies and needs a rehash") {
  const std::string stored = slappasswd("{ARGON2}", "argon2", "hunter2");
  INFO(stored);
  REQUIRE(stored.rfind("{ARGON2}$argon2i$", 0) == 0);
  CHECK(pw::verify("hunter2", stored) == Verdict::Match);
  CHECK(pw::verify("hunter3", stored) == Verdict::Mismatch);
  CHECK(pw::needs_rehash(stored));
}

TEST_CASE("{CRYPT} $6$ and $5$ made by openssl passwd verify") {
  for (const char* flag : {"-6", "-5"}) {
    const std::string stored = "{CRYPT}" + tool_hash({"openssl", "passwd", flag, "-salt", "saltsalt", "secret"});
    INFO(stored);
    CHECK(pw::verify("secret", stored) == Verdict::Match);
    CHECK(pw::verify("secreT", stored) == Verdict::Mismatch);
    CHECK(pw::needs_rehash(stored));
  }
}

TEST_CASE("{CRYPT} from slappasswd, and $y$/$2b$ known answers (libxcrypt via Python crypt)") {
  const std::string sha512 =
      tool_hash({"slappasswd", "-h", "{CRYPT}", "-c", "$6$%.16s", "-s", "secret"});
  INFO(sha512);
  REQUIRE(sha512.rfind("{CRYPT}$6$", 0) == 0);
  CHECK(pw::verify("secret", sha512) == Verdict::Match);
  CHECK(pw::verify("secret ", sha512) == Verdict::Mismatch);
  // slappasswd's default {CRYPT} is traditional DES: refused.
  CHECK(pw::verify("secret", slappasswd("{CRYPT}", "", "secret")) == Verdict::Unsupported);
  const std::string yes = "{CRYPT}$y$j9T$abcdefghijklmnopqrstu0$mOkpolYyJ.KNNCiMbGK4KxW4ANNbYJAkJsLwEEfdgPD";
  CHECK(pw::verify("secret", yes) == Verdict::Match);
  CHECK(pw::verify("Secret", yes) == Verdict::Mismatch);
  const std::string bcrypt = "{crypt}$2b$04$vIBvoyzDQh.lgu7xBto7DONKdTYO0biGwRtGFlkM.Jn/7EJ2QUE9W";
  CHECK(pw::verify("secret", bcrypt) == Verdict::Match);
  CHECK(pw::verify("secret!", bcrypt) == Verdict::Mismatch);
  // MD5-crypt and DES crypt are refused even with the right password.
  CHECK(pw::verify("secret", "{CRYPT}$1$abcdefgh$cHJi5PXp/ki/ktXzqlk6I1") == Verdict::Unsupported);
  CHECK(pw::verify("secret", "{CRYPT}abJnggxhB/yWI") == Verdict::Unsupported);
  // A $6$ prefix with a broken body is not a match and not a crash.
  CHECK(pw::verify("secret", "{CRYPT}$6$") != Verdict::Match);
  CHECK(pw::verify("secret", "{CRYPT}$y$!!!$") != Verdict::Match);
}

TEST_CASE("our argon2id hash verifies, has the {ARGON2} format and its cost decides rehash") {
  const auto stored = pw::hash_argon2id("correct horse", kCheap);
  REQUIRE(stored);
  CHECK(stored->rfind("{ARGON2}$argon2id$v=19$m=8192,t=1,p=1$", 0) == 0);
  CHECK(pw::verify("correct horse", *stored) == Verdict::Match);
  CHECK(pw::verify("correct horsf", *stored) == Verdict::Mismatch);
  CHECK_FALSE(pw::needs_rehash(*stored, kCheap));
  CHECK(pw::needs_rehash(*stored));  // cheaper than the default cost
  // Salted: two hashes of one password differ.
  CHECK(*pw::hash_argon2id("correct horse", kCheap) != *stored);
  CHECK_FALSE(pw::hash_argon2id("x", {0, 1024}));
  CHECK_FALSE(pw::hash_argon2id(std::string(pw::kMaxPassword + 1, 'a'), kCheap));
}

TEST_CASE("slapd's argon2 module accepts our argon2id hash in a simple bind") {
  // slappasswd has no verify mode, so a throwaway slapd holds our hash as its rootpw.
  const auto stored = pw::hash_argon2id("hunter2", kCheap);
  REQUIRE(stored);
  test::TempDir dir;
  std::filesystem::create_directory(dir / "db");
  const auto conf = dir.write("slapd.conf",
                              "include /etc/ldap/schema/core.schema\n"
                              "modulepath /usr/lib/ldap\n"
                              "moduleload back_mdb\n"
                              "moduleload argon2\n"
                              "database mdb\n"
                              "suffix \"dc=test\"\n"
                              "rootdn \"cn=admin,dc=test\"\n"
                              "rootpw " + *stored + "\n"
                              "directory " + (dir / "db").string() + "\n");
  const int port = test::free_port();
  const std::string url = "ldap://127.0.0.1:" + std::to_string(port);
  test::ChildProcess slapd({"/usr/sbin/slapd", "-f", conf.string(), "-h", url + "/", "-d", "0"},
                           (dir / "slapd.log").string());
  REQUIRE(test::wait_for_port(port, std::chrono::seconds(10)));
  const auto good = test::run({"ldapwhoami", "-x", "-H", url, "-D", "cn=admin,dc=test", "-w", "hunter2"});
  INFO(good.output);
  CHECK(good.exit_code == 0);
  CHECK(good.output.find("dn:cn=admin,dc=test") != std::string::npos);
  const auto bad = test::run({"ldapwhoami", "-x", "-H", url, "-D", "cn=admin,dc=test", "-w", "hunter3"});
  INFO(bad.output);
  CHECK(bad.exit_code == 49);  // invalidCredentials
}

TEST_CASE("argon2id at the default cost") {
  const auto stored = pw::hash_argon2id("hunter2");
  REQUIRE(stored);
  CHECK(stored->rfind("{ARGON2}$argon2id$v=19$m=65536,t=3,p=1$", 0) == 0);
  CHECK(pw::verify("hunter2", *stored) == Verdict::Match);
  CHECK_FALSE(pw::needs_rehash(*stored));
}

TEST_CASE("unsalted, plain and unknown schemes are Unsupported") {
  CHECK(pw::verify("secret", "secret") == Verdict::Unsupported);
  CHECK(pw::verify("secret", "{CLEARTEXT}secret") == Verdict::Unsupported);
  CHECK(pw::verify("secret", "{PLAIN}secret") == Verdict::Unsupported);
  CHECK(pw::verify("secret", slappasswd("{SHA}", "", "secret")) == Verdict::Unsupported);
  CHECK(pw::verify("secret", slappasswd("{MD5}", "", "secret")) == Verdict::Unsupported);
  CHECK(pw::verify("secret", "{NOPE}abc") == Verdict::Unsupported);
  std::string long_scheme(1000, 'S');  // built in steps: GCC 12 -Wrestrict false positive (PR 105651)
  long_scheme.front() = '{';
  long_scheme += "}x";
  CHECK(pw::verify("secret", long_scheme) == Verdict::Unsupported);
  CHECK(pw::verify("secret", "") == Verdict::Unsupported);
  CHECK(pw::verify("secret", "{ARGON2}$argon2d$v=19$m=4096,t=3,p=1$c2FsdHNhbHQ$aGFzaA") ==
        Verdict::Unsupported);
  // Costs that would let one login pin gigabytes or minutes of CPU are refused unhashed.
  CHECK(pw::verify("secret", "{ARGON2}$argon2id$v=19$m=4194304,t=3,p=1$c2FsdHNhbHRzYWx0$"
                             "aGFzaGhhc2hoYXNoaGFzaGhhc2hoYXNoaGFzaGhhc2g") == Verdict::Unsupported);
  CHECK(pw::verify("secret", "{ARGON2}$argon2i$v=19$m=4096,t=1000000,p=1$c2FsdHNhbHRzYWx0$"
                             "aGFzaGhhc2hoYXNoaGFzaGhhc2hoYXNoaGFzaGhhc2g") == Verdict::Unsupported);
  CHECK(pw::needs_rehash("secret"));
  CHECK(pw::needs_rehash(""));
}

TEST_CASE("damaged stored values are Malformed, never a crash") {
  const std::string ssha = slappasswd("{SSHA}", "", "secret");
  const std::string argon = *pw::hash_argon2id("secret", kCheap);
  const std::vector<std::string> bad{
      ssha.substr(0, ssha.size() - 3),          // truncated base64
      "{SSHA}" + b64(std::string(20, 'x')),     // digest without a salt
      "{SSHA}" + b64(std::string(10, 'x')),     // too short
      "{SSHA}" + b64(std::string(200, 'x')),    // salt longer than any real one
      "{SSHA512}" + b64(std::string(40, 'x')),  // SHA-1 length under a SHA-512 tag
      "{SSHA}@@@@",
      "{SSHA}",
      "{ARGON2}",
      "{ARGON2}$argon2id$",
      "{ARGON2}$argon2id$v=19$m=65536,t=3,p=1$$",
      argon.substr(0, argon.size() - 10),
      "{ARGON2}garbage",
      "{SSHA}" + std::string(5000, 'A'),  // huge
      std::string(100000, '{'),
  };
  for (const auto& s : bad) {
    INFO(s.substr(0, 120));
    const Verdict v = pw::verify("secret", s);
    CHECK(v == Verdict::Malformed);
    CHECK(pw::needs_rehash(s));
  }
  // A huge password never matches and costs no hashing.
  CHECK(pw::verify(std::string(1 << 20, 'a'), argon) == Verdict::Mismatch);
  // An embedded NUL does not truncate the password.
  CHECK(pw::verify(std::string("secret\0x", 8), ssha) == Verdict::Mismatch);
}

TEST_CASE("SHA-1 known answers (FIPS 180-2 appendix A)") {
  auto hex = [](const std::string& in) {
    authserv::password::detail::Sha1 h;
    h.update({reinterpret_cast<const unsigned char*>(in.data()), in.size()});
    const auto d = h.finish();
    char out[41];
    sodium_bin2hex(out, sizeof out, d.data(), d.size());
    return std::string(out);
  };
  CHECK(hex("abc") == "a9993e364706816aba3e25717850c26c9cd0d89d");
  CHECK(hex("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq") ==
        "84983e441c3bd26ebaae4aa1f95129e5e54670f1");
  CHECK(hex(std::string(1000000, 'a')) == "34aa973cd4c4daa4f61eeb2bdbad27316534016f");
  CHECK(hex("") == "da39a3ee5e6b4b0d3255bfef95601890afd80709");
  // Any split of the input gives the same digest (one byte at a time across block edges).
  const std::string msg = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
  authserv::password::detail::Sha1 h;
  for (char c : msg) h.update({reinterpret_cast<const unsigned char*>(&c), 1});
  const auto d = h.finish();
  char out[41];
  sodium_bin2hex(out, sizeof out, d.data(), d.size());
  CHECK(std::string(out) == "84983e441c3bd26ebaae4aa1f95129e5e54670f1");
}

TEST_CASE("SCRAM-SHA-256 keys reproduce the RFC 7677 section 3 exchange") {
  const std::string salt = unb64("W22ZaJ0SNY7soEsUEjb6gQ==");
  const auto v = pw::derive_scram_sha256("pencil", salt, 4096);
  REQUIRE(v);
  CHECK(v->iterations == 4096);
  CHECK(v->salt == salt);
  const std::string auth_message =
      "n=user,r=rOprNGfwEbeRWgbNEkqO,"
      "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096,"
      "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0";
  // ServerSignature = HMAC(ServerKey, AuthMessage): the RFC's "v=" value.
  CHECK(b64(hmac256(v->server_key, auth_message)) == "6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=");
  // Server-side proof check: ClientKey = ClientProof XOR HMAC(StoredKey, AuthMessage);
  // H(ClientKey) must equal StoredKey.
  const std::string proof = unb64("dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=");
  const std::string client_sig = hmac256(v->stored_key, auth_message);
  REQUIRE(proof.size() == client_sig.size());
  std::string client_key(proof.size(), '\0');
  for (size_t i = 0; i < proof.size(); ++i) client_key[i] = static_cast<char>(proof[i] ^ client_sig[i]);
  unsigned char h[crypto_hash_sha256_BYTES];
  crypto_hash_sha256(h, reinterpret_cast<const unsigned char*>(client_key.data()), client_key.size());
  CHECK(std::string(reinterpret_cast<char*>(h), sizeof h) == v->stored_key);
  // A different password gives different keys.
  CHECK(pw::derive_scram_sha256("pencil2", salt, 4096)->stored_key != v->stored_key);
}

TEST_CASE("SCRAM verifier format and parse round trip, garbage refused") {
  const auto v = pw::make_scram_sha256("pencil");
  REQUIRE(v);
  CHECK(v->salt.size() == 16);
  CHECK(v->stored_key.size() == 32);
  const std::string text = pw::format_scram(*v);
  CHECK(text.rfind("{SCRAM-SHA-256}4096,", 0) == 0);
  const auto back = pw::parse_scram(text);
  REQUIRE(back);
  CHECK(back->iterations == v->iterations);
  CHECK(back->salt == v->salt);
  CHECK(back->stored_key == v->stored_key);
  CHECK(back->server_key == v->server_key);
  CHECK(pw::format_scram(*back) == text);
  // Random salts differ.
  CHECK(pw::make_scram_sha256("pencil")->salt != v->salt);
  // The RFC 7677 verifier in Dovecot form parses.
  const auto rfc = pw::derive_scram_sha256("pencil", unb64("W22ZaJ0SNY7soEsUEjb6gQ=="), 4096);
  REQUIRE(pw::parse_scram(pw::format_scram(*rfc)));
  CHECK(pw::parse_scram(pw::format_scram(*rfc))->server_key == rfc->server_key);

  const std::string key = b64(std::string(32, 'k'));
  const std::string salt = b64(std::string(16, 's'));
  for (const std::string& bad : std::vector<std::string>{
           "", "{SCRAM-SHA-256}", "{SCRAM-SHA-1}4096," + salt + "," + key + "," + key,
           "{SCRAM-SHA-256}4096," + salt + "," + key,                       // 3 fields
           "{SCRAM-SHA-256}4096," + salt + "," + key + "," + key + ",x",    // 5 fields
           "{SCRAM-SHA-256}abc," + salt + "," + key + "," + key,
           "{SCRAM-SHA-256}-1," + salt + "," + key + "," + key,
           "{SCRAM-SHA-256}99999999999," + salt + "," + key + "," + key,   // overflow
           "{SCRAM-SHA-256}1," + salt + "," + key + "," + key,             // too few iterations
           "{SCRAM-SHA-256}4096,," + key + "," + key,
           "{SCRAM-SHA-256}4096," + salt + "," + key.substr(0, 20) + "," + key,
           "{SCRAM-SHA-256}4096," + salt + "," + key + "," + b64(std::string(31, 'k')),
           "{SCRAM-SHA-256}4096," + salt + "," + key + "," + key + "=",
           "{SCRAM-SHA-256}4096," + b64(std::string(500, 's')) + "," + key + "," + key,
           "{SCRAM-SHA-256}4096," + std::string(100000, 'A')}) {
    INFO(bad.substr(0, 120));
    CHECK_FALSE(pw::parse_scram(bad));
  }
  CHECK_FALSE(pw::make_scram_sha256("x", 1));
  CHECK(pw::verify("pencil", text) == Verdict::Unsupported);  // not a PLAIN-checkable hash
}

TEST_CASE("{CRYPT} edge cases: NUL in the password, over-long setting") {
  const std::string yes = "{CRYPT}$y$j9T$abcdefghijklmnopqrstu0$mOkpolYyJ.KNNCiMbGK4KxW4ANNbYJAkJsLwEEfdgPD";
  CHECK(pw::verify(std::string("secret\0tail", 11), yes) == Verdict::Mismatch);
  CHECK(pw::verify("secret", "{CRYPT}$6$" + std::string(500, 'a')) == Verdict::Malformed);
  CHECK(pw::verify("secret", std::string("{CRYPT}$6$ab\0cd", 15)) == Verdict::Malformed);
}

TEST_CASE("SASLprep: the RFC 4013 section 3 examples, refused strings are used as given") {
  const auto prepared = [](const std::string& in) { return std::string(pw::PreparedPassword(in).view()); };
  CHECK(prepared("I\xC2\xADX") == "IX");        // SOFT HYPHEN maps to nothing
  CHECK(prepared("user") == "user");
  CHECK(prepared("USER") == "USER");            // no case folding
  CHECK(prepared("\xC2\xAA") == "a");           // FEMININE ORDINAL INDICATOR, NFKC
  CHECK(prepared("\xE2\x85\xA8") == "IX");      // ROMAN NUMERAL NINE, NFKC
  CHECK(prepared("a\xC2\xA0" "b") == "a b");    // NO-BREAK SPACE maps to SPACE
  CHECK(pw::PreparedPassword("I\xC2\xADX").changed());
  CHECK_FALSE(pw::PreparedPassword("pencil").changed());
  // Refused by SASLprep, so kept as given: a control character, bidi mixing (RFC 4013 example 7),
  // an unassigned code point (U+0221 in Unicode 3.2), invalid UTF-8.
  for (const std::string& refused : {std::string("a\x07" "b"), std::string("\xD8\xA7" "1"),
                                     std::string("\xC8\xA1"), std::string("\xFF\xFEpw")}) {
    const pw::PreparedPassword p(refused);
    CHECK_FALSE(p.changed());
    CHECK(p.view() == refused);
  }
}

TEST_CASE("SASLprep'd SCRAM verifiers match GNU SASL's (gsasl --mkpasswd, a real SCRAM client)") {
  const std::string salt = "0123456789abcdef";
  // The same password typed three ways is one verifier on both sides; ASCII as given.
  for (const std::string& password : {std::string("pencil"), std::string("I\xC2\xADX"), std::string("\xE2\x85\xA8"),
                                      std::string("p\xC3\xA4ssw\xC3\xB6rd \xE2\x82\xAC")}) {
    INFO(password);
    const auto ours = pw::derive_scram_sha256(password, salt, 4096);
    REQUIRE(ours);
    CHECK(pw::format_scram(*ours) == tool_hash({"gsasl", "--mkpasswd", "--mechanism", "SCRAM-SHA-256", "--password",
                                                password, "--iteration-count", "4096", "--salt", b64(salt)}));
  }
  CHECK(pw::format_scram(*pw::derive_scram_sha256("I\xC2\xADX", salt, 4096)) ==
        pw::format_scram(*pw::derive_scram_sha256("IX", salt, 4096)));
}

TEST_CASE("PLAIN checks compare SASLprep'd passwords, and still accept hashes made without SASLprep") {
  // Ours: hashed prepared, so every form the user may type matches.
  const auto ours = pw::hash_argon2id("I\xC2\xADX", kCheap);
  REQUIRE(ours);
  CHECK(pw::verify("IX", *ours) == Verdict::Match);
  CHECK(pw::verify("\xE2\x85\xA8", *ours) == Verdict::Match);
  CHECK(pw::verify("I\xC2\xADX", *ours) == Verdict::Match);
  CHECK(pw::verify("ix", *ours) == Verdict::Mismatch);
  // slappasswd hashes the bytes as given: the exact bytes still log in.
  const std::string ssha = slappasswd("{SSHA}", "", "\xE2\x85\xA8");
  CHECK(pw::verify("\xE2\x85\xA8", ssha) == Verdict::Match);
  CHECK(pw::verify("I\xC2\xADY", ssha) == Verdict::Mismatch);
}
