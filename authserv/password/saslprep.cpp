// saslprep.cpp: RFC 4013 SASLprep of passwords through libidn's stringprep, so the bytes we hash
// are the bytes a SCRAM client hashes (RFC 5802 §2.2) whatever Unicode form the user typed.
#include <stringprep.h>
#include <idn-free.h>

#include <cstring>
#include <memory>

#include "authserv/password/internal.hpp"
#include "authserv/password/password.hpp"

namespace authserv::password {

namespace {

bool all_ascii(std::string_view s) {
  for (unsigned char c : s)
    if (c >= 0x80) return false;
  return true;
}

// libidn allocates the result with malloc; it held a password, so it is wiped before idn_free.
struct WipedIdnFree {
  void operator()(char* p) const {
    sodium_memzero(p, std::strlen(p));
    idn_free(p);
  }
};

}  // namespace

PreparedPassword::PreparedPassword(std::string_view password) : given_(password) {
  // Printable ASCII maps to itself and ASCII controls are prohibited (which keeps the bytes as
  // given below), so only non-ASCII passwords need libidn.
  if (all_ascii(password) || password.size() > kMaxPassword) return;
  std::string terminated(password);  // stringprep wants a C string
  std::unique_ptr<char, WipedIdnFree> out;
  char* raw = nullptr;
  // Stored-string rules (RFC 3454 §7): unassigned code points are refused, so a later Unicode
  // version cannot change what a stored password means.
  const bool ok = terminated.find('\0') == std::string::npos &&
                  stringprep_profile(terminated.c_str(), &raw, "SASLprep", STRINGPREP_NO_UNASSIGNED) ==
                      STRINGPREP_OK;
  out.reset(raw);
  sodium_memzero(terminated.data(), terminated.size());
  // A password SASLprep refuses (invalid UTF-8, prohibited or unassigned code points) is used as
  // given, as PostgreSQL does: refusing it would lock out a user whose password predates us.
  if (!ok || !out) return;
  prepared_.assign(out.get());
  changed_ = prepared_ != password;
  if (!changed_) {
    sodium_memzero(prepared_.data(), prepared_.size());
    prepared_.clear();
  }
}

PreparedPassword::~PreparedPassword() { sodium_memzero(prepared_.data(), prepared_.size()); }

}  // namespace authserv::password
