// sha1.hpp: SHA-1 (FIPS 180-4) for verifying imported LDAP {SSHA} hashes only; libsodium has none.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <span>

namespace authserv::password::detail {

class Sha1 {
 public:
  Sha1();
  ~Sha1();  // wipes state: it holds password bytes
  Sha1(const Sha1&) = delete;
  Sha1& operator=(const Sha1&) = delete;
  void update(std::span<const unsigned char> data);
  std::array<unsigned char, 20> finish();

 private:
  void block(const unsigned char* p);
  uint32_t h_[5];
  unsigned char buf_[64];
  size_t used_ = 0;
  uint64_t total_ = 0;
};

}  // namespace authserv::password::detail
