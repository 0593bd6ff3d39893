// crl.cpp: CRL files into NSS's CRL cache. The cache keeps a pointer to our SECItem, so each DER
// lives in a process-wide table until the last user lets go (CERT_UncacheCRL gets the same item).
#include "common/tls/crl.hpp"

#include <fstream>
#include <map>
#include <mutex>
#include <sstream>

#include <cert.h>
#include <certdb.h>
#include <nssb64.h>
#include <secitem.h>

#include "common/log/log.hpp"
#include "common/tls/handles.hpp"
#include "common/tls/nss.hpp"

namespace common::tls {
namespace {

using CrlPtr = std::unique_ptr<CERTSignedCrl, Deleter<SEC_DestroyCrl>>;

struct Entry {
  std::string der;
  SECItem item{};
  int refs = 0;
};

struct Registry {
  std::mutex mutex;
  std::map<std::string, std::unique_ptr<Entry>> entries;  // by DER
};

Registry& registry() {
  static Registry r;
  return r;
}

Result<void> acquire(const std::string& der) {
  auto& r = registry();
  std::lock_guard lock(r.mutex);
  auto it = r.entries.find(der);
  if (it != r.entries.end()) {
    ++it->second->refs;
    return {};
  }
  auto entry = std::make_unique<Entry>();
  entry->der = der;
  entry->item.type = siBuffer;
  entry->item.data = reinterpret_cast<unsigned char*>(entry->der.data());
  entry->item.len = static_cast<unsigned>(entry->der.size());
  if (CERT_CacheCRL(CERT_GetDefaultCertDB(), &entry->item) != SECSuccess) {
    return fail(ErrorKind::Config, "cannot cache the CRL: " + last_error_text());
  }
  entry->refs = 1;
  r.entries.emplace(der, std::move(entry));
  return {};
}

void release_one(const std::string& der) {
  auto& r = registry();
  std::lock_guard lock(r.mutex);
  auto it = r.entries.find(der);
  if (it == r.entries.end()) return;
  if (--it->second->refs > 0) return;
  if (CERT_UncacheCRL(CERT_GetDefaultCertDB(), &it->second->item) != SECSuccess) {
    log::warning("tls").event("crl_uncache_failed").kv("reason", last_error_text());
  }
  r.entries.erase(it);
}

// Checks that the bytes are a CRL and says who issued it, for errors and the log.
Result<std::string> describe_crl(const std::string& der, const std::string& path) {
  SECItem item{siBuffer, reinterpret_cast<unsigned char*>(const_cast<char*>(der.data())),
               static_cast<unsigned>(der.size())};
  CrlPtr crl(CERT_DecodeDERCrlWithFlags(nullptr, &item, SEC_CRL_TYPE,
                                        CRL_DECODE_DEFAULT_OPTIONS | CRL_DECODE_DONT_COPY_DER));
  if (!crl) return fail(ErrorKind::Config, "CRL file " + path + " holds no valid CRL: " + last_error_text());
  std::string issuer;
  if (char* name = CERT_NameToAscii(&crl->crl.name)) {
    issuer = name;
    PORT_Free(name);
  }
  return issuer;
}

}  // namespace

Result<std::vector<std::string>> read_crl_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return fail(ErrorKind::Config, "cannot read CRL file " + path);
  std::stringstream ss;
  ss << in.rdbuf();
  std::string data = ss.str();
  if (data.size() > 64u * 1024 * 1024) return fail(ErrorKind::Config, "CRL file " + path + " is larger than 64 MiB");
  std::vector<std::string> ders;
  static const std::string kBegin = "-----BEGIN X509 CRL-----";
  static const std::string kEnd = "-----END X509 CRL-----";
  if (data.find(kBegin) == std::string::npos) {
    ders.push_back(std::move(data));
  } else {
    size_t pos = 0;
    while ((pos = data.find(kBegin, pos)) != std::string::npos) {
      size_t body = pos + kBegin.size();
      size_t end = data.find(kEnd, body);
      if (end == std::string::npos) return fail(ErrorKind::Config, "CRL file " + path + ": PEM block without END line");
      NssItem der(NSSBase64_DecodeBuffer(nullptr, nullptr, data.data() + body, static_cast<unsigned>(end - body)));
      if (!der) return fail(ErrorKind::Config, "CRL file " + path + ": bad base64 in a PEM block");
      ders.emplace_back(reinterpret_cast<const char*>(der->data), der->len);
      pos = end + kEnd.size();
    }
  }
  for (const auto& der : ders) {
    auto issuer = describe_crl(der, path);
    if (!issuer) return tl::unexpected(issuer.error());
  }
  return ders;
}

CachedCrls::~CachedCrls() { release(); }

CachedCrls& CachedCrls::operator=(CachedCrls&& other) noexcept {
  if (this != &other) {
    release();
    ders_ = std::move(other.ders_);
    other.ders_.clear();
  }
  return *this;
}

void CachedCrls::release() {
  for (const auto& der : ders_) release_one(der);
  ders_.clear();
}

Result<CachedCrls> CachedCrls::load(const std::vector<std::string>& files) {
  CachedCrls out;
  for (const auto& file : files) {
    auto ders = read_crl_file(file);
    if (!ders) return tl::unexpected(ders.error());
    for (auto& der : *ders) {
      auto cached = acquire(der);
      if (!cached) return fail(ErrorKind::Config, "CRL file " + file + ": " + cached.error().detail);
      out.ders_.push_back(std::move(der));
    }
    log::info("tls").event("crl_loaded").kv("file", file).kv("crls", static_cast<uint64_t>(ders->size()));
  }
  return out;
}

}  // namespace common::tls
