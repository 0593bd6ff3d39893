// record.hpp: the embedded directory's value encoding: compact, versioned, length-prefixed binary.
// Pure. Decoding checks every length against what is left, so a damaged record is an error, never a
// crash or an over-read.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "authserv/directory/directory.hpp"
#include "common/result.hpp"

namespace authserv::directory::record {

// First byte of every value: which record and which layout. A new layout gets a new tag and the
// decoder keeps reading the old one, so a directory upgrades record by record.
inline constexpr unsigned char kDomainV1 = 0xD1;
inline constexpr unsigned char kUserV1 = 0xA1;
inline constexpr unsigned char kAliasV1 = 0xE1;

// Bounds applied on decode (and so on every write, since writes are decoded in tests).
inline constexpr size_t kMaxField = 1 << 20;   // one string (a Sieve script is the largest)
inline constexpr size_t kMaxList = 10000;      // addresses, access domains, alias targets

std::string encode_domain(const DomainRecord& d);  // the name is the key, not stored
common::Result<DomainRecord> decode_domain(std::string_view name, std::string_view bytes);

// Stores the user's own status (not combined with the domain's) and everything but canonical,
// uid, domain (the key) and dn (LDAP only).
std::string encode_user(const UserRecord& u);
// `canonical` is the key "uid@domain"; uid and domain are filled from it.
common::Result<UserRecord> decode_user(std::string_view canonical, std::string_view bytes);

std::string encode_alias(const std::vector<std::string>& targets);
common::Result<std::vector<std::string>> decode_alias(std::string_view address, std::string_view bytes);

}  // namespace authserv::directory::record
