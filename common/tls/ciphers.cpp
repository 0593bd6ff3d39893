// ciphers.cpp: the cipher suite catalog and the ssladjustciphersuites parser (see ciphers.hpp).
#include "common/ascii.hpp"
#include "common/tls/ciphers.hpp"

#include <algorithm>
#include <array>
#include <cctype>

namespace common::tls {
namespace {

using common::ascii::iequals;

using K = KeyExchange;
using B = BulkCipher;

// Strong suites first (the defaults, then the DHE ones "all" adds), then legacy, then broken.
constexpr CipherSuite kCatalog[] = {
    // TLS 1.3
    {0x1301, "TLS_AES_128_GCM_SHA256", "TLS_AES_128_GCM_SHA256", K::Tls13, B::AesGcm, false, true},
    {0x1302, "TLS_AES_256_GCM_SHA384", "TLS_AES_256_GCM_SHA384", K::Tls13, B::AesGcm, false, true},
    {0x1303, "TLS_CHACHA20_POLY1305_SHA256", "TLS_CHACHA20_POLY1305_SHA256", K::Tls13, B::Chacha20, false, true},
    // TLS 1.2, ECDHE + AEAD: the defaults
    {0xC02B, "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256", "ECDHE-ECDSA-AES128-GCM-SHA256", K::Ecdhe, B::AesGcm, false, true},
    {0xC02C, "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384", "ECDHE-ECDSA-AES256-GCM-SHA384", K::Ecdhe, B::AesGcm, false, true},
    {0xCCA9, "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256", "ECDHE-ECDSA-CHACHA20-POLY1305", K::Ecdhe, B::Chacha20, false, true},
    {0xC02F, "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256", "ECDHE-RSA-AES128-GCM-SHA256", K::Ecdhe, B::AesGcm, false, true},
    {0xC030, "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384", "ECDHE-RSA-AES256-GCM-SHA384", K::Ecdhe, B::AesGcm, false, true},
    {0xCCA8, "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256", "ECDHE-RSA-CHACHA20-POLY1305", K::Ecdhe, B::Chacha20, false, true},
    // TLS 1.2, DHE + AEAD: strong, not default (finite-field groups are slower; RFC 7919 groups)
    {0x009E, "TLS_DHE_RSA_WITH_AES_128_GCM_SHA256", "DHE-RSA-AES128-GCM-SHA256", K::Dhe, B::AesGcm},
    {0x009F, "TLS_DHE_RSA_WITH_AES_256_GCM_SHA384", "DHE-RSA-AES256-GCM-SHA384", K::Dhe, B::AesGcm},
    {0xCCAA, "TLS_DHE_RSA_WITH_CHACHA20_POLY1305_SHA256", "DHE-RSA-CHACHA20-POLY1305", K::Dhe, B::Chacha20},
    {0x00A2, "TLS_DHE_DSS_WITH_AES_128_GCM_SHA256", "DHE-DSS-AES128-GCM-SHA256", K::Dhe, B::AesGcm},
    {0x00A3, "TLS_DHE_DSS_WITH_AES_256_GCM_SHA384", "DHE-DSS-AES256-GCM-SHA384", K::Dhe, B::AesGcm},
    // Legacy: forward-secret CBC
    {0xC009, "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA", "ECDHE-ECDSA-AES128-SHA", K::Ecdhe, B::AesCbc},
    {0xC00A, "TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA", "ECDHE-ECDSA-AES256-SHA", K::Ecdhe, B::AesCbc},
    {0xC023, "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256", "ECDHE-ECDSA-AES128-SHA256", K::Ecdhe, B::AesCbc},
    {0xC024, "TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA384", "ECDHE-ECDSA-AES256-SHA384", K::Ecdhe, B::AesCbc},
    {0xC013, "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA", "ECDHE-RSA-AES128-SHA", K::Ecdhe, B::AesCbc},
    {0xC014, "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA", "ECDHE-RSA-AES256-SHA", K::Ecdhe, B::AesCbc},
    {0xC027, "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA256", "ECDHE-RSA-AES128-SHA256", K::Ecdhe, B::AesCbc},
    {0xC028, "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA384", "ECDHE-RSA-AES256-SHA384", K::Ecdhe, B::AesCbc},
    {0x0033, "TLS_DHE_RSA_WITH_AES_128_CBC_SHA", "DHE-RSA-AES128-SHA", K::Dhe, B::AesCbc},
    {0x0039, "TLS_DHE_RSA_WITH_AES_256_CBC_SHA", "DHE-RSA-AES256-SHA", K::Dhe, B::AesCbc},
    {0x0067, "TLS_DHE_RSA_WITH_AES_128_CBC_SHA256", "DHE-RSA-AES128-SHA256", K::Dhe, B::AesCbc},
    {0x006B, "TLS_DHE_RSA_WITH_AES_256_CBC_SHA256", "DHE-RSA-AES256-SHA256", K::Dhe, B::AesCbc},
    {0x0032, "TLS_DHE_DSS_WITH_AES_128_CBC_SHA", "DHE-DSS-AES128-SHA", K::Dhe, B::AesCbc},
    {0x0038, "TLS_DHE_DSS_WITH_AES_256_CBC_SHA", "DHE-DSS-AES256-SHA", K::Dhe, B::AesCbc},
    {0x0040, "TLS_DHE_DSS_WITH_AES_128_CBC_SHA256", "DHE-DSS-AES128-SHA256", K::Dhe, B::AesCbc},
    {0x006A, "TLS_DHE_DSS_WITH_AES_256_CBC_SHA256", "DHE-DSS-AES256-SHA256", K::Dhe, B::AesCbc},
    {0x0045, "TLS_DHE_RSA_WITH_CAMELLIA_128_CBC_SHA", "DHE-RSA-CAMELLIA128-SHA", K::Dhe, B::Camellia},
    {0x0088, "TLS_DHE_RSA_WITH_CAMELLIA_256_CBC_SHA", "DHE-RSA-CAMELLIA256-SHA", K::Dhe, B::Camellia},
    {0x0044, "TLS_DHE_DSS_WITH_CAMELLIA_128_CBC_SHA", "DHE-DSS-CAMELLIA128-SHA", K::Dhe, B::Camellia},
    {0x0087, "TLS_DHE_DSS_WITH_CAMELLIA_256_CBC_SHA", "DHE-DSS-CAMELLIA256-SHA", K::Dhe, B::Camellia},
    // Legacy: no forward secrecy (RSA key transport, static ECDH)
    {0x009C, "TLS_RSA_WITH_AES_128_GCM_SHA256", "AES128-GCM-SHA256", K::Rsa, B::AesGcm},
    {0x009D, "TLS_RSA_WITH_AES_256_GCM_SHA384", "AES256-GCM-SHA384", K::Rsa, B::AesGcm},
    {0x002F, "TLS_RSA_WITH_AES_128_CBC_SHA", "AES128-SHA", K::Rsa, B::AesCbc},
    {0x0035, "TLS_RSA_WITH_AES_256_CBC_SHA", "AES256-SHA", K::Rsa, B::AesCbc},
    {0x003C, "TLS_RSA_WITH_AES_128_CBC_SHA256", "AES128-SHA256", K::Rsa, B::AesCbc},
    {0x003D, "TLS_RSA_WITH_AES_256_CBC_SHA256", "AES256-SHA256", K::Rsa, B::AesCbc},
    {0x0041, "TLS_RSA_WITH_CAMELLIA_128_CBC_SHA", "CAMELLIA128-SHA", K::Rsa, B::Camellia},
    {0x0084, "TLS_RSA_WITH_CAMELLIA_256_CBC_SHA", "CAMELLIA256-SHA", K::Rsa, B::Camellia},
    {0x0096, "TLS_RSA_WITH_SEED_CBC_SHA", "SEED-SHA", K::Rsa, B::Seed},
    {0xC004, "TLS_ECDH_ECDSA_WITH_AES_128_CBC_SHA", "ECDH-ECDSA-AES128-SHA", K::Ecdh, B::AesCbc},
    {0xC005, "TLS_ECDH_ECDSA_WITH_AES_256_CBC_SHA", "ECDH-ECDSA-AES256-SHA", K::Ecdh, B::AesCbc},
    {0xC00E, "TLS_ECDH_RSA_WITH_AES_128_CBC_SHA", "ECDH-RSA-AES128-SHA", K::Ecdh, B::AesCbc},
    {0xC00F, "TLS_ECDH_RSA_WITH_AES_256_CBC_SHA", "ECDH-RSA-AES256-SHA", K::Ecdh, B::AesCbc},
    // Legacy: 3DES (64-bit blocks, Sweet32)
    {0xC008, "TLS_ECDHE_ECDSA_WITH_3DES_EDE_CBC_SHA", "ECDHE-ECDSA-DES-CBC3-SHA", K::Ecdhe, B::TripleDes},
    {0xC012, "TLS_ECDHE_RSA_WITH_3DES_EDE_CBC_SHA", "ECDHE-RSA-DES-CBC3-SHA", K::Ecdhe, B::TripleDes},
    {0x0016, "TLS_DHE_RSA_WITH_3DES_EDE_CBC_SHA", "DHE-RSA-DES-CBC3-SHA", K::Dhe, B::TripleDes},
    {0x0013, "TLS_DHE_DSS_WITH_3DES_EDE_CBC_SHA", "DHE-DSS-DES-CBC3-SHA", K::Dhe, B::TripleDes},
    {0xC003, "TLS_ECDH_ECDSA_WITH_3DES_EDE_CBC_SHA", "ECDH-ECDSA-DES-CBC3-SHA", K::Ecdh, B::TripleDes},
    {0xC00D, "TLS_ECDH_RSA_WITH_3DES_EDE_CBC_SHA", "ECDH-RSA-DES-CBC3-SHA", K::Ecdh, B::TripleDes},
    {0x000A, "TLS_RSA_WITH_3DES_EDE_CBC_SHA", "DES-CBC3-SHA", K::Rsa, B::TripleDes},
    // Broken: RC4 (RFC 7465), single DES, export, NULL, anonymous, MD5
    {0xC007, "TLS_ECDHE_ECDSA_WITH_RC4_128_SHA", "ECDHE-ECDSA-RC4-SHA", K::Ecdhe, B::Rc4},
    {0xC011, "TLS_ECDHE_RSA_WITH_RC4_128_SHA", "ECDHE-RSA-RC4-SHA", K::Ecdhe, B::Rc4},
    {0x0066, "TLS_DHE_DSS_WITH_RC4_128_SHA", "DHE-DSS-RC4-SHA", K::Dhe, B::Rc4},
    {0xC002, "TLS_ECDH_ECDSA_WITH_RC4_128_SHA", "ECDH-ECDSA-RC4-SHA", K::Ecdh, B::Rc4},
    {0xC00C, "TLS_ECDH_RSA_WITH_RC4_128_SHA", "ECDH-RSA-RC4-SHA", K::Ecdh, B::Rc4},
    {0x0005, "TLS_RSA_WITH_RC4_128_SHA", "RC4-SHA", K::Rsa, B::Rc4},
    {0x0004, "TLS_RSA_WITH_RC4_128_MD5", "RC4-MD5", K::Rsa, B::Rc4, true},
    {0x0015, "TLS_DHE_RSA_WITH_DES_CBC_SHA", "EDH-RSA-DES-CBC-SHA", K::Dhe, B::Des},
    {0x0012, "TLS_DHE_DSS_WITH_DES_CBC_SHA", "EDH-DSS-DES-CBC-SHA", K::Dhe, B::Des},
    {0x0009, "TLS_RSA_WITH_DES_CBC_SHA", "DES-CBC-SHA", K::Rsa, B::Des},
    {0x0003, "TLS_RSA_EXPORT_WITH_RC4_40_MD5", "EXP-RC4-MD5", K::RsaExport, B::Rc4, true},
    {0x0006, "TLS_RSA_EXPORT_WITH_RC2_CBC_40_MD5", "EXP-RC2-CBC-MD5", K::RsaExport, B::Rc2, true},
    {0x0008, "TLS_RSA_EXPORT_WITH_DES40_CBC_SHA", "EXP-DES-CBC-SHA", K::RsaExport, B::Des},
    {0x0062, "TLS_RSA_EXPORT1024_WITH_DES_CBC_SHA", "EXP1024-DES-CBC-SHA", K::RsaExport, B::Des},
    {0x0064, "TLS_RSA_EXPORT1024_WITH_RC4_56_SHA", "EXP1024-RC4-SHA", K::RsaExport, B::Rc4},
    {0xC006, "TLS_ECDHE_ECDSA_WITH_NULL_SHA", "ECDHE-ECDSA-NULL-SHA", K::Ecdhe, B::Null},
    {0xC010, "TLS_ECDHE_RSA_WITH_NULL_SHA", "ECDHE-RSA-NULL-SHA", K::Ecdhe, B::Null},
    {0xC001, "TLS_ECDH_ECDSA_WITH_NULL_SHA", "ECDH-ECDSA-NULL-SHA", K::Ecdh, B::Null},
    {0xC00B, "TLS_ECDH_RSA_WITH_NULL_SHA", "ECDH-RSA-NULL-SHA", K::Ecdh, B::Null},
    {0x0002, "TLS_RSA_WITH_NULL_SHA", "NULL-SHA", K::Rsa, B::Null},
    {0x003B, "TLS_RSA_WITH_NULL_SHA256", "NULL-SHA256", K::Rsa, B::Null},
    {0x0001, "TLS_RSA_WITH_NULL_MD5", "NULL-MD5", K::Rsa, B::Null, true},
    {0x0000, "TLS_NULL_WITH_NULL_NULL", "", K::Anon, B::Null},
    {0x0034, "TLS_DH_anon_WITH_AES_128_CBC_SHA", "ADH-AES128-SHA", K::Anon, B::AesCbc},
    {0x003A, "TLS_DH_anon_WITH_AES_256_CBC_SHA", "ADH-AES256-SHA", K::Anon, B::AesCbc},
    {0xC018, "TLS_ECDH_anon_WITH_AES_128_CBC_SHA", "AECDH-AES128-SHA", K::Anon, B::AesCbc},
    {0xC019, "TLS_ECDH_anon_WITH_AES_256_CBC_SHA", "AECDH-AES256-SHA", K::Anon, B::AesCbc},
};


bool name_char(char c) { return std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '-'; }

// Families a WEAK+FAMILY item names. Broken families are known so they get the right refusal.
enum class Family { TripleDes, Cbc, Rsa };

bool in_family(const CipherSuite& s, Family f) {
  if (s.cls() != CipherClass::Legacy) return false;
  switch (f) {
    case Family::TripleDes: return s.cipher == B::TripleDes;
    case Family::Cbc: return s.forward_secret() && (s.cipher == B::AesCbc || s.cipher == B::Camellia);
    case Family::Rsa: return s.kex == K::Rsa && (s.cipher == B::AesGcm || s.cipher == B::AesCbc);
  }
  return false;
}

std::string quoted(std::string_view s) {
  std::string out = "\"";
  for (char c : s.substr(0, 80)) out += (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) ? '?' : c;
  if (s.size() > 80) out += "...";
  return out + "\"";
}

class Adjuster {
 public:
  Adjuster() {
    for (const auto& s : kCatalog) enabled_[index(s)] = s.in_default;
  }

  Result<void> apply(std::string_view item, size_t column) {
    column_ = column;
    char op = '+';
    std::string_view name = item;
    bool explicit_op = false;
    if (!name.empty() && (name[0] == '+' || name[0] == '-')) {
      op = name[0];
      name.remove_prefix(1);
      explicit_op = true;
    }
    if (name.empty()) {
      std::string what = "\"";
      what += op;
      what += "\" without a cipher suite name";
      return error(what);
    }

    // WEAK and WEAK+FAMILY (the family part may hold '+', so check before the name syntax).
    if (name.size() >= 4 && iequals(name.substr(0, 4), "WEAK") && (name.size() == 4 || name[4] == '+')) {
      if (op == '-') {
        if (name.size() != 4) return error("\"-WEAK+...\" is not valid; use -WEAK to drop every legacy suite");
        for (const auto& s : kCatalog) {
          if (s.cls() != CipherClass::Strong) enabled_[index(s)] = false;
        }
        weak_ok_ = false;
        return {};
      }
      if (explicit_op && name.size() != 4) return error("write WEAK+FAMILY without a leading '+'");
      weak_ok_ = true;
      if (name.size() == 4) return {};
      return enable_family(name.substr(5));
    }
    for (char c : name) {
      if (!name_char(c)) return error("unexpected character in " + quoted(item));
    }
    if (iequals(name, "ALL")) {
      for (const auto& s : kCatalog) {
        if (op == '-') {
          enabled_[index(s)] = false;
        } else if (s.cls() == CipherClass::Strong) {
          enabled_[index(s)] = true;
        }
      }
      return {};
    }
    if (iequals(name, "DEFAULT")) {
      for (const auto& s : kCatalog) {
        if (s.in_default) enabled_[index(s)] = op == '+';
      }
      return {};
    }
    const CipherSuite* suite = find_cipher(name);
    if (suite == nullptr) {
      return error("unknown cipher suite " + quoted(name) +
                   " (use RFC names such as TLS_AES_128_GCM_SHA256 or OpenSSL names such as ECDHE-RSA-AES128-GCM-SHA256)");
    }
    if (op == '-') {
      enabled_[index(*suite)] = false;
      return {};
    }
    switch (suite->cls()) {
      case CipherClass::Strong: break;
      case CipherClass::Legacy:
        if (!weak_ok_) {
          return error(std::string(suite->name) + " is a legacy suite (" + suite->weakness() +
                       "); put WEAK before it in the list to allow it");
        }
        break;
      case CipherClass::Broken:
        return error(std::string(suite->name) + " cannot be enabled: " + suite->weakness());
    }
    enabled_[index(*suite)] = true;
    return {};
  }

  Result<CipherSelection> finish() const {
    CipherSelection out;
    for (const auto& s : kCatalog) {
      if (!enabled_[index(s)]) continue;
      out.suites.push_back(s.id);
      if (s.cls() == CipherClass::Legacy) {
        out.warnings.push_back("legacy cipher suite " + std::string(s.name) + " enabled: " + s.weakness());
      }
    }
    if (out.suites.empty()) return fail(ErrorKind::Config, "ssladjustciphersuites leaves no cipher suite enabled");
    return out;
  }

 private:
  static size_t index(const CipherSuite& s) { return static_cast<size_t>(&s - kCatalog); }

  Result<void> enable_family(std::string_view family) {
    struct Named {
      std::string_view name;
      Family family;
    };
    static constexpr Named kFamilies[] = {{"3DES", Family::TripleDes}, {"CBC", Family::Cbc}, {"RSA", Family::Rsa}};
    static constexpr std::string_view kBroken[][2] = {
        {"DES", "single DES has 56-bit keys"},      {"RC4", "RC4 is broken (RFC 7465)"},
        {"EXPORT", "export suites have 40/56-bit keys"}, {"EXP", "export suites have 40/56-bit keys"},
        {"NULL", "NULL suites do not encrypt"},     {"ANON", "anonymous suites do not authenticate the server"},
        {"MD5", "MD5 record MACs are broken"},      {"RC2", "RC2 export suites have 40-bit keys"}};
    for (const auto& f : kFamilies) {
      if (iequals(family, f.name)) {
        for (const auto& s : kCatalog) {
          if (in_family(s, f.family)) enabled_[index(s)] = true;
        }
        return {};
      }
    }
    for (const auto& b : kBroken) {
      if (iequals(family, b[0])) {
        return error("WEAK+" + std::string(b[0]) + " is refused: " + std::string(b[1]) +
                     "; such suites cannot be enabled");
      }
    }
    return error("unknown cipher family " + quoted(family) + " after WEAK+ (known: 3DES, CBC, RSA)");
  }

  tl::unexpected<Error> error(const std::string& what) const {
    return fail(ErrorKind::Config, "ssladjustciphersuites column " + std::to_string(column_) + ": " + what);
  }

  std::array<bool, std::size(kCatalog)> enabled_{};
  bool weak_ok_ = false;
  size_t column_ = 0;
};

}  // namespace

CipherClass CipherSuite::cls() const {
  switch (cipher) {
    case B::Rc4:
    case B::Des:
    case B::Rc2:
    case B::Null: return CipherClass::Broken;
    default: break;
  }
  if (kex == K::Anon || kex == K::RsaExport || md5) return CipherClass::Broken;
  if (aead() && forward_secret()) return CipherClass::Strong;
  return CipherClass::Legacy;
}

std::string CipherSuite::weakness() const {
  switch (cipher) {
    case B::Rc4: return "RC4 is broken (RFC 7465)";
    case B::Des: return "single DES and DES40 have 56 or fewer key bits";
    case B::Rc2: return "RC2-40 export encryption is broken";
    case B::Null: return "NULL suites do not encrypt";
    default: break;
  }
  if (kex == K::RsaExport) return "export suites are broken";
  if (kex == K::Anon) return "anonymous suites do not authenticate the server";
  if (md5) return "MD5 record MACs are broken";
  std::string out;
  if (!forward_secret()) out = "no forward secrecy";
  if (!aead()) {
    if (!out.empty()) out += ", ";
    out += cipher == B::TripleDes ? "3DES with 64-bit blocks (Sweet32), not AEAD" : "CBC mode, not AEAD";
  }
  return out;
}

std::span<const CipherSuite> cipher_catalog() { return kCatalog; }

const CipherSuite* find_cipher(std::string_view name) {
  std::string tls_name;
  if (name.size() > 4 && iequals(name.substr(0, 4), "SSL_")) {
    tls_name = "TLS_" + std::string(name.substr(4));
  }
  for (const auto& s : kCatalog) {
    if (iequals(name, s.name) || (!s.openssl.empty() && iequals(name, s.openssl)) ||
        (!tls_name.empty() && iequals(tls_name, s.name))) {
      return &s;
    }
  }
  return nullptr;
}

const CipherSuite* find_cipher(uint16_t id) {
  for (const auto& s : kCatalog) {
    if (s.id == id) return &s;
  }
  return nullptr;
}

bool CipherSelection::contains(uint16_t id) const {
  return std::find(suites.begin(), suites.end(), id) != suites.end();
}

bool CipherSelection::any_tls13() const {
  return std::any_of(suites.begin(), suites.end(), [](uint16_t id) { return find_cipher(id)->tls13(); });
}

bool CipherSelection::any_tls12() const {
  return std::any_of(suites.begin(), suites.end(), [](uint16_t id) { return !find_cipher(id)->tls13(); });
}

bool CipherSelection::any_dhe() const {
  return std::any_of(suites.begin(), suites.end(), [](uint16_t id) { return find_cipher(id)->uses_dhe(); });
}

std::vector<uint16_t> default_cipher_suites() {
  std::vector<uint16_t> out;
  for (const auto& s : kCatalog) {
    if (s.in_default) out.push_back(s.id);
  }
  return out;
}

Result<CipherSelection> adjust_ciphers(std::string_view spec) {
  if (spec.size() > kMaxCipherSpec) {
    return fail(ErrorKind::Config, "ssladjustciphersuites is longer than " + std::to_string(kMaxCipherSpec) + " bytes");
  }
  Adjuster adjuster;
  size_t items = 0;
  size_t pos = 0;
  while (pos <= spec.size()) {
    size_t comma = spec.find(',', pos);
    if (comma == std::string_view::npos) comma = spec.size();
    std::string_view item = spec.substr(pos, comma - pos);
    size_t lead = item.find_first_not_of(" \t");
    if (lead != std::string_view::npos) {
      size_t trail = item.find_last_not_of(" \t");
      item = item.substr(lead, trail - lead + 1);
      if (++items > kMaxCipherItems) {
        return fail(ErrorKind::Config,
                    "ssladjustciphersuites has more than " + std::to_string(kMaxCipherItems) + " items");
      }
      auto applied = adjuster.apply(item, pos + lead + 1);
      if (!applied) return tl::unexpected(applied.error());
    }
    pos = comma + 1;
  }
  return adjuster.finish();
}

}  // namespace common::tls
