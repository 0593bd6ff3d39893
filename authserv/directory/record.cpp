// record.cpp: binary layout of domain, user and alias values (see record.hpp). Integers are
// LEB128 varints; strings and lists are a varint count followed by their bytes or elements.
#include "authserv/directory/record.hpp"

#include <cstdint>
#include <optional>

namespace authserv::directory::record {
namespace {

using common::ErrorKind;

void put_varint(std::string& out, uint64_t v) {
  while (v >= 0x80) {
    out.push_back(static_cast<char>((v & 0x7f) | 0x80));
    v >>= 7;
  }
  out.push_back(static_cast<char>(v));
}

void put_str(std::string& out, std::string_view s) {
  put_varint(out, s.size());
  out.append(s);
}

void put_list(std::string& out, const std::vector<std::string>& l) {
  put_varint(out, l.size());
  for (const auto& s : l) put_str(out, s);
}

// Reads from a byte range; the first failure sticks, so callers check once at the end.
class Reader {
 public:
  explicit Reader(std::string_view b) : b_(b) {}
  bool ok() const { return ok_; }
  bool at_end() const { return pos_ == b_.size(); }

  uint8_t byte() {
    if (!ok_ || pos_ >= b_.size()) return fail_u8();
    return static_cast<uint8_t>(b_[pos_++]);
  }
  uint64_t varint() {
    uint64_t v = 0;
    for (int shift = 0; shift < 64; shift += 7) {
      const uint8_t c = byte();
      if (!ok_) return 0;
      v |= uint64_t{c & 0x7fu} << shift;
      if ((c & 0x80) == 0) return v;
    }
    ok_ = false;  // more than 10 bytes: not a 64-bit value
    return 0;
  }
  std::string str() {
    const uint64_t n = varint();
    if (!ok_ || n > kMaxField || n > b_.size() - pos_) {
      ok_ = false;
      return {};
    }
    std::string s(b_.substr(pos_, n));
    pos_ += n;
    return s;
  }
  std::vector<std::string> list() {
    const uint64_t n = varint();
    // Each element takes at least one byte, so a count above what is left is damage too; checking
    // it first stops a forged count from reserving gigabytes.
    if (!ok_ || n > kMaxList || n > b_.size() - pos_) {
      ok_ = false;
      return {};
    }
    std::vector<std::string> l;
    l.reserve(n);
    for (uint64_t i = 0; i < n && ok_; ++i) l.push_back(str());
    return l;
  }

 private:
  uint8_t fail_u8() {
    ok_ = false;
    return 0;
  }
  std::string_view b_;
  size_t pos_ = 0;
  bool ok_ = true;
};

common::Error damaged(std::string_view what, std::string_view key) {
  // The key is ours (validated on write), so it is safe to log; cut it anyway.
  return common::Error{ErrorKind::Internal,
                       "damaged " + std::string(what) + " record key=" + std::string(key.substr(0, 330))};
}

std::optional<Status> status_from(uint8_t v) {
  if (v > static_cast<uint8_t>(Status::Deleted)) return std::nullopt;
  return static_cast<Status>(v);
}

constexpr uint8_t kFlagStoreAdmin = 0x01;

}  // namespace

std::string encode_domain(const DomainRecord& d) {
  std::string out;
  out.push_back(static_cast<char>(kDomainV1));
  out.push_back(static_cast<char>(d.status));
  put_str(out, d.allowed_services);
  put_str(out, d.search_filter);
  return out;
}

common::Result<DomainRecord> decode_domain(std::string_view name, std::string_view bytes) {
  Reader r(bytes);
  if (r.byte() != kDomainV1) return tl::unexpected(damaged("domain", name));
  DomainRecord d;
  d.name = std::string(name);
  const auto st = status_from(r.byte());
  d.allowed_services = r.str();
  d.search_filter = r.str();
  if (!r.ok() || !r.at_end() || !st) return tl::unexpected(damaged("domain", name));
  d.status = *st;
  return d;
}

std::string encode_user(const UserRecord& u) {
  std::string out;
  out.reserve(64 + u.password.size() + u.scram.size() + u.sieve.size());
  out.push_back(static_cast<char>(kUserV1));
  out.push_back(static_cast<char>(u.status));
  out.push_back(static_cast<char>(u.store_admin ? kFlagStoreAdmin : 0));
  put_str(out, u.mail);
  put_list(out, u.addresses);
  put_str(out, u.mail_host);
  put_str(out, u.allowed_services);
  put_list(out, u.access_domains);
  put_varint(out, u.quota_bytes);
  put_varint(out, u.quota_messages);
  put_str(out, u.sieve);
  put_str(out, u.password);
  put_str(out, u.scram);
  return out;
}

common::Result<UserRecord> decode_user(std::string_view canonical, std::string_view bytes) {
  const size_t at = canonical.rfind('@');
  if (at == std::string_view::npos || at == 0 || at + 1 == canonical.size())
    return tl::unexpected(damaged("user key", canonical));
  Reader r(bytes);
  if (r.byte() != kUserV1) return tl::unexpected(damaged("user", canonical));
  UserRecord u;
  u.canonical = std::string(canonical);
  u.uid = std::string(canonical.substr(0, at));
  u.domain = std::string(canonical.substr(at + 1));
  const auto st = status_from(r.byte());
  const uint8_t flags = r.byte();
  u.mail = r.str();
  u.addresses = r.list();
  u.mail_host = r.str();
  u.allowed_services = r.str();
  u.access_domains = r.list();
  u.quota_bytes = r.varint();
  u.quota_messages = r.varint();
  u.sieve = r.str();
  u.password = r.str();
  u.scram = r.str();
  // Unknown flag bits mean a newer writer used this tag wrongly, or damage: either way, refuse.
  if (!r.ok() || !r.at_end() || !st || (flags & ~kFlagStoreAdmin) != 0)
    return tl::unexpected(damaged("user", canonical));
  u.status = *st;
  u.store_admin = (flags & kFlagStoreAdmin) != 0;
  return u;
}

std::string encode_alias(const std::vector<std::string>& targets) {
  std::string out;
  out.push_back(static_cast<char>(kAliasV1));
  put_list(out, targets);
  return out;
}

common::Result<std::vector<std::string>> decode_alias(std::string_view address, std::string_view bytes) {
  Reader r(bytes);
  if (r.byte() != kAliasV1) return tl::unexpected(damaged("alias", address));
  auto targets = r.list();
  if (!r.ok() || !r.at_end()) return tl::unexpected(damaged("alias", address));
  return targets;
}

}  // namespace authserv::directory::record
