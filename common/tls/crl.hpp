// crl.hpp: CRL files (DER or PEM) held in NSS's in-memory CRL cache (CERT_CacheCRL), so client
// certificate checks see revocations without writing to the database (TLS-17).
#pragma once

#include <string>
#include <vector>

#include "common/result.hpp"

namespace common::tls {

// The DER CRLs in a file: one DER CRL, or any number of PEM "X509 CRL" blocks. Each is decoded once
// to reject garbage early.
Result<std::vector<std::string>> read_crl_file(const std::string& path);

// A set of cached CRLs; CRLs are shared process-wide (reference-counted by content), since NSS's
// cache is. Destroying the set uncaches what only it held. NSS must outlive it.
class CachedCrls {
 public:
  CachedCrls() = default;
  ~CachedCrls();
  CachedCrls(const CachedCrls&) = delete;
  CachedCrls& operator=(const CachedCrls&) = delete;
  CachedCrls(CachedCrls&& other) noexcept : ders_(std::move(other.ders_)) { other.ders_.clear(); }
  CachedCrls& operator=(CachedCrls&& other) noexcept;

  // Reads and caches every file; all or nothing.
  static Result<CachedCrls> load(const std::vector<std::string>& files);
  size_t size() const { return ders_.size(); }

 private:
  void release();
  std::vector<std::string> ders_;
};

}  // namespace common::tls
