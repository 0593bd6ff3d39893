// names.cpp: login and address normal forms (see names.hpp).
#include "authserv/directory/names.hpp"

#include "common/ascii.hpp"

namespace authserv::directory {
namespace {

using common::ErrorKind;
using common::fail;

// Blanks and controls would let a name look like two in logs and protocol lines; NUL cuts C
// strings (LDAP, crypt) short, so an attacker could make two names compare equal downstream.
bool bad_byte(unsigned char c) { return c <= 0x20 || c == 0x7f; }

common::Result<void> check_local(std::string_view local) {
  if (local.empty()) return fail(ErrorKind::Protocol, "empty user name");
  if (local.size() > kMaxLocalPart) return fail(ErrorKind::Protocol, "user name longer than 64 bytes");
  for (char c : local) {
    if (bad_byte(static_cast<unsigned char>(c))) return fail(ErrorKind::Protocol, "user name has a blank or control byte");
  }
  return {};
}

}  // namespace

common::Result<std::string> normalize_domain(std::string_view d) {
  if (!d.empty() && d.back() == '.') d.remove_suffix(1);  // "example.com." is the same zone
  if (d.empty()) return fail(ErrorKind::Protocol, "empty domain");
  if (d.size() > kMaxDomain) return fail(ErrorKind::Protocol, "domain longer than 253 bytes");
  // Letters, digits, '-', '_' and dots between non-empty labels. IDNs arrive as A-labels.
  char prev = '.';
  for (char c : d) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                    c == '-' || c == '_' || c == '.';
    if (!ok) return fail(ErrorKind::Protocol, "domain has a byte outside letters, digits, '-', '_' and '.'");
    if (c == '.' && prev == '.') return fail(ErrorKind::Protocol, "domain has an empty label");
    prev = c;
  }
  return common::ascii::lowered(d);
}

common::Result<Login> split_login(std::string_view login, std::string_view default_domain) {
  if (login.size() > kMaxAddress) return fail(ErrorKind::Protocol, "login longer than 320 bytes");
  const size_t at = login.find('@');
  std::string_view local = login.substr(0, at);
  if (auto ok = check_local(local); !ok) return tl::unexpected(ok.error());
  std::string_view dom;
  if (at == std::string_view::npos) {
    if (default_domain.empty()) return fail(ErrorKind::Protocol, "unqualified login and no default domain");
    dom = default_domain;
  } else {
    dom = login.substr(at + 1);
    if (dom.find('@') != std::string_view::npos) return fail(ErrorKind::Protocol, "more than one '@'");
  }
  auto domain = normalize_domain(dom);
  if (!domain) return tl::unexpected(domain.error());
  return Login{common::ascii::lowered(local), std::move(*domain)};
}

common::Result<std::string> normalize_address(std::string_view address) {
  if (address.size() > kMaxAddress) return fail(ErrorKind::Protocol, "address longer than 320 bytes");
  const size_t at = address.find('@');
  if (at == std::string_view::npos) return fail(ErrorKind::Protocol, "address without a domain");
  std::string_view local = address.substr(0, at), dom = address.substr(at + 1);
  if (auto ok = check_local(local); !ok) return tl::unexpected(ok.error());
  if (dom.find('@') != std::string_view::npos) return fail(ErrorKind::Protocol, "more than one '@'");
  auto domain = normalize_domain(dom);
  if (!domain) return tl::unexpected(domain.error());
  return std::string(local) + "@" + *domain;
}

std::string address_key(std::string_view address) { return common::ascii::lowered(address); }

std::string strip_detail(std::string_view address, char delimiter) {
  const size_t at = address.rfind('@');
  if (at == std::string_view::npos || delimiter == '\0') return std::string(address);
  const size_t d = address.substr(0, at).find(delimiter);
  if (d == std::string_view::npos || d == 0) return std::string(address);
  return std::string(address.substr(0, d)) + std::string(address.substr(at));
}

}  // namespace authserv::directory
