// handles.hpp: owning wrappers for the NSS and NSPR handles common/tls uses. A leaked certificate or
// key reference makes NSS_Shutdown fail with SEC_ERROR_BUSY, so none is raw.
#pragma once

#include "common/deleter.hpp"
#include <memory>

#include <cert.h>
#include <keyhi.h>
#include <pk11pub.h>
#include <prio.h>
#include <secitem.h>

namespace common::tls {

using common::Deleter;

using NssCert = std::unique_ptr<CERTCertificate, Deleter<CERT_DestroyCertificate>>;
using NssKey = std::unique_ptr<SECKEYPrivateKey, Deleter<SECKEY_DestroyPrivateKey>>;
using NssSlot = std::unique_ptr<PK11SlotInfo, Deleter<PK11_FreeSlot>>;
// A whole NSPR layer stack (SSL over memio): PR_Close closes every layer.
using PrFd = std::unique_ptr<PRFileDesc, Deleter<PR_Close>>;

// A SECItem NSS allocated (the item and its data).
struct SecItemDeleter {
  void operator()(SECItem* item) const {
    if (item) SECITEM_FreeItem(item, PR_TRUE);
  }
};
using NssItem = std::unique_ptr<SECItem, SecItemDeleter>;

}  // namespace common::tls
