// handshake_crypto.cpp: the public-key work of one TLS 1.3 server handshake (ECDSA P-256 signature,
// X25519 key pair, X25519 shared secret) timed in NSS (the key from the host database, as our
// listener signs) and in OpenSSL's libcrypto (the same key in PEM, as nginx signs), side by side. It
// shows how much of the handshake-rate gap in run_tls_bench is the crypto library alone.
// Usage: handshake_crypto --db DIR --password FILE --key server.key [--cert Server-Cert] [--rounds N]
#include <time.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <memory>
#include <string>

#include <cert.h>
#include <keyhi.h>
#include <pk11pub.h>
#include <secoid.h>

#include <openssl/evp.h>
#include <openssl/pem.h>

#include "common/tls/handles.hpp"
#include "common/tls/nss.hpp"

namespace {

double cpu_now() {
  timespec ts{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) / 1e9;
}

// Microseconds of CPU per call of `op` over `rounds` calls; exits on the first failure.
double time_us(const char* what, int rounds, const std::function<bool()>& op) {
  double start = cpu_now();
  for (int i = 0; i < rounds; ++i) {
    if (!op()) {
      std::fprintf(stderr, "handshake_crypto: %s failed\n", what);
      std::exit(1);
    }
  }
  return (cpu_now() - start) * 1e6 / rounds;
}

using PubKey = std::unique_ptr<SECKEYPublicKey, common::Deleter<SECKEY_DestroyPublicKey>>;
using SymKey = std::unique_ptr<PK11SymKey, common::Deleter<PK11_FreeSymKey>>;
using Evp = std::unique_ptr<EVP_PKEY, common::Deleter<EVP_PKEY_free>>;
using EvpCtx = std::unique_ptr<EVP_PKEY_CTX, common::Deleter<EVP_PKEY_CTX_free>>;

struct Figures {
  double sign_token = 0;  // NSS only: the key as a database (token) object; OpenSSL: unused
  double sign = 0;
  double keygen = 0;
  double derive = 0;
  double total() const { return sign + keygen + derive; }
};

// X25519 key pairs in NSS, as libssl makes its key share (ssl_CreateECDHEphemeralKeyPair).
struct NssX25519 {
  SECItem params{siBuffer, nullptr, 0};
  unsigned char der[16] = {};

  NssX25519() {
    SECOidData* oid = SECOID_FindOIDByTag(SEC_OID_CURVE25519);
    der[0] = SEC_ASN1_OBJECT_ID;
    der[1] = static_cast<unsigned char>(oid->oid.len);
    std::memcpy(der + 2, oid->oid.data, oid->oid.len);
    params = {siBuffer, der, oid->oid.len + 2};
  }
  common::tls::NssKey make(PubKey& pub) const {
    SECKEYPublicKey* p = nullptr;
    common::tls::NssKey key(SECKEY_CreateECPrivateKey(const_cast<SECItem*>(&params), &p, nullptr));
    pub.reset(p);
    return key;
  }
};

Figures time_nss(const std::string& db, const std::string& password, const std::string& nickname, int rounds) {
  auto nss = common::tls::Nss::init({db, password});
  if (!nss) {
    std::fprintf(stderr, "handshake_crypto: %s\n", nss.error().detail.c_str());
    std::exit(1);
  }
  Figures f;
  {
    common::tls::NssCert cert(PK11_FindCertFromNickname(nickname.c_str(), nullptr));
    common::tls::NssKey key(cert ? PK11_FindKeyByAnyCert(cert.get(), nullptr) : nullptr);
    if (!key) {
      std::fprintf(stderr, "handshake_crypto: no key for %s\n", nickname.c_str());
      std::exit(1);
    }
    unsigned char digest[32] = {1, 2, 3};
    unsigned char signature[80];
    SECItem hash{siBuffer, digest, sizeof digest};
    auto sign_with = [&](SECKEYPrivateKey* k) {
      return [&, k] {
        SECItem sig{siBuffer, signature, sizeof signature};
        ++digest[0];
        return PK11_SignWithMechanism(k, CKM_ECDSA, nullptr, &sig, &hash) == SECSuccess;
      };
    };
    f.sign_token = time_us("NSS ECDSA sign (token key)", rounds, sign_with(key.get()));
    // The faster case, counted in the total: the key copied into a softoken session object once,
    // which costs about what a TLS handshake's signature costs in run_tls_bench's profile.
    common::tls::NssSlot slot(PK11_GetInternalSlot());
    common::tls::NssKey session(PK11_CopyTokenPrivKeyToSessionPrivKey(slot.get(), key.get()));
    if (!session) {
      std::fprintf(stderr, "handshake_crypto: cannot copy the key into a session object\n");
      std::exit(1);
    }
    f.sign = time_us("NSS ECDSA sign (session key)", rounds, sign_with(session.get()));
    NssX25519 x25519;
    PubKey peer_pub;
    auto peer = x25519.make(peer_pub);
    f.keygen = time_us("NSS X25519 key pair", rounds, [&] {
      PubKey pub;
      return x25519.make(pub) != nullptr;
    });
    PubKey mine_pub;
    auto mine = x25519.make(mine_pub);
    f.derive = time_us("NSS X25519 derive", rounds, [&] {
      SymKey shared(PK11_PubDeriveWithKDF(mine.get(), peer_pub.get(), PR_FALSE, nullptr, nullptr, CKM_ECDH1_DERIVE,
                                          CKM_HKDF_DERIVE, CKA_DERIVE, 0, CKD_NULL, nullptr, nullptr));
      return shared != nullptr;
    });
  }
  (void)(*nss)->shutdown();
  return f;
}

Evp x25519_pair() { return Evp(EVP_PKEY_Q_keygen(nullptr, nullptr, "X25519")); }

Figures time_openssl(const std::string& key_file, int rounds) {
  Figures f;
  FILE* in = std::fopen(key_file.c_str(), "r");
  Evp key(in ? PEM_read_PrivateKey(in, nullptr, nullptr, nullptr) : nullptr);
  if (in) std::fclose(in);
  if (!key) {
    std::fprintf(stderr, "handshake_crypto: cannot read %s\n", key_file.c_str());
    std::exit(1);
  }
  unsigned char digest[32] = {1, 2, 3};
  unsigned char signature[80];
  EvpCtx sign(EVP_PKEY_CTX_new(key.get(), nullptr));
  if (!sign || EVP_PKEY_sign_init(sign.get()) <= 0) std::exit(1);
  f.sign = time_us("OpenSSL ECDSA sign", rounds, [&] {
    size_t len = sizeof signature;
    ++digest[0];
    return EVP_PKEY_sign(sign.get(), signature, &len, digest, sizeof digest) > 0;
  });
  f.keygen = time_us("OpenSSL X25519 key pair", rounds, [&] { return x25519_pair() != nullptr; });
  Evp mine = x25519_pair();
  Evp peer = x25519_pair();
  f.derive = time_us("OpenSSL X25519 derive", rounds, [&] {
    EvpCtx ctx(EVP_PKEY_CTX_new(mine.get(), nullptr));
    unsigned char secret[32];
    size_t len = sizeof secret;
    return ctx && EVP_PKEY_derive_init(ctx.get()) > 0 && EVP_PKEY_derive_set_peer(ctx.get(), peer.get()) > 0 &&
           EVP_PKEY_derive(ctx.get(), secret, &len) > 0;
  });
  return f;
}

}  // namespace

int main(int argc, char** argv) {
  std::string db, password, key_file, nickname = "Server-Cert";
  int rounds = 2000;
  for (int i = 1; i + 1 < argc; i += 2) {
    std::string k = argv[i];
    if (k == "--db") db = argv[i + 1];
    else if (k == "--password") password = argv[i + 1];
    else if (k == "--key") key_file = argv[i + 1];
    else if (k == "--cert") nickname = argv[i + 1];
    else if (k == "--rounds") rounds = std::atoi(argv[i + 1]);
  }
  if (db.empty() || password.empty() || key_file.empty() || rounds <= 0) {
    std::fprintf(stderr, "usage: handshake_crypto --db DIR --password FILE --key server.key [--cert Server-Cert] "
                         "[--rounds N]\n");
    return 2;
  }
  Figures nss = time_nss(db, password, nickname, rounds);
  Figures ossl = time_openssl(key_file, rounds);
  std::printf("%-40s %12s %12s %8s\n", "CPU per operation, us", "NSS", "OpenSSL", "ratio");
  auto row = [](const char* name, double a, double b) { std::printf("%-40s %12.1f %12.1f %7.2fx\n", name, a, b, a / b); };
  row("ECDSA P-256 signature, NSS key in database", nss.sign_token, ossl.sign);
  row("ECDSA P-256 signature (CertificateVerify)", nss.sign, ossl.sign);
  row("X25519 key pair (key share)", nss.keygen, ossl.keygen);
  row("X25519 shared secret", nss.derive, ossl.derive);
  row("public-key work of one handshake", nss.total(), ossl.total());
  return 0;
}
