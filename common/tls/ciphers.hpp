// ciphers.hpp: the seeds' ssladjustciphersuites grammar (TLS-08) applied over our default suites
// (TLS-09). Pure: no NSS, no I/O; the server checks the result against what NSS implements.
//
// Grammar: a comma-separated list, applied left to right over the default set.
//   +NAME | NAME   enable a suite (RFC name; "SSL_" legacy prefix and OpenSSL names accepted)
//   -NAME          disable a suite
//   all | +all     enable every strong suite (AEAD with forward secrecy), "everything but weak"
//   -all           disable every suite (a site list follows: "-ALL,+TLS_AES_128_GCM_SHA256,...")
//   default        enable the default suites again
//   WEAK           allow the legacy suites named after it (non-AEAD or no forward secrecy)
//   WEAK+FAMILY    allow and enable a legacy family: 3DES, CBC (forward-secret CBC), RSA (RSA key
//                  transport with AES)
//   -WEAK          disable every legacy suite and withdraw the WEAK opt-in
// Broken suites (RC4, single DES, export, NULL, anonymous, MD5) are refused even after WEAK: the
// seed's "WEAK+DES" is an error here. Unknown names are errors, so a typo in "-NAME" cannot leave a
// suite enabled. Keywords and names are case-insensitive; spaces around items are ignored.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "common/result.hpp"

namespace common::tls {

enum class CipherClass : uint8_t {
  Strong,  // AEAD with forward secrecy (TLS 1.3, (EC)DHE + GCM/ChaCha20-Poly1305)
  Legacy,  // works, but non-AEAD or no forward secrecy: only after an explicit WEAK
  Broken,  // never enabled
};

enum class KeyExchange : uint8_t { Tls13, Ecdhe, Dhe, Ecdh, Rsa, Anon, RsaExport };
enum class BulkCipher : uint8_t { AesGcm, Chacha20, AesCbc, Camellia, Seed, TripleDes, Des, Rc4, Rc2, Null };

struct CipherSuite {
  uint16_t id;
  std::string_view name;     // the RFC/IANA name, which is also NSS's
  std::string_view openssl;  // OpenSSL's name, empty when it has none
  KeyExchange kex;
  BulkCipher cipher;
  bool md5 = false;          // MD5 record MAC
  bool in_default = false;

  bool aead() const { return cipher == BulkCipher::AesGcm || cipher == BulkCipher::Chacha20; }
  bool tls13() const { return kex == KeyExchange::Tls13; }
  bool forward_secret() const { return kex == KeyExchange::Tls13 || kex == KeyExchange::Ecdhe || kex == KeyExchange::Dhe; }
  bool uses_dhe() const { return kex == KeyExchange::Dhe; }
  CipherClass cls() const;
  // Why a suite is not strong ("no forward secrecy", "RC4 is broken (RFC 7465)"); empty when strong.
  std::string weakness() const;
};

// Every suite the grammar knows, strong first; includes broken ones so they get a clear refusal.
std::span<const CipherSuite> cipher_catalog();
// By RFC name, "SSL_"-prefixed legacy name or OpenSSL name, case-insensitive; null when unknown.
const CipherSuite* find_cipher(std::string_view name);
const CipherSuite* find_cipher(uint16_t id);

struct CipherSelection {
  std::vector<uint16_t> suites;       // enabled, in catalog order
  std::vector<std::string> warnings;  // legacy suites that ended up enabled, for the start log
  bool contains(uint16_t id) const;
  bool any_tls13() const;
  bool any_tls12() const;
  bool any_dhe() const;
};

inline constexpr size_t kMaxCipherSpec = 4096;
inline constexpr size_t kMaxCipherItems = 256;

std::vector<uint16_t> default_cipher_suites();
// An empty (or blank) spec gives the defaults. Errors are ErrorKind::Config and name the 1-based
// column of the offending item: `ssladjustciphersuites column 7: unknown cipher suite "FOO"`.
Result<CipherSelection> adjust_ciphers(std::string_view spec);

}  // namespace common::tls
