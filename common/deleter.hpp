// deleter.hpp: unique_ptr deleters from a C library's free function, so every NSS, LDAP and LMDB
// handle has an owner: std::unique_ptr<LDAPMessage, common::Deleter<ldap_msgfree>>.
#pragma once

namespace common {

template <auto Fn>
struct Deleter {
  template <class T>
  void operator()(T* p) const {
    if (p) Fn(p);
  }
};

}  // namespace common
