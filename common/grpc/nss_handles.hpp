// nss_handles.hpp: the owning NSS wrappers common/grpc needs beyond common/tls/handles.hpp, so no
// reference can leak (a leaked certificate or key makes NSS_Shutdown fail with SEC_ERROR_BUSY).
#pragma once

#include <memory>

#include "common/tls/handles.hpp"

namespace common::rpc::nss {

using tls::Deleter;
using Cert = tls::NssCert;
using PrivateKey = tls::NssKey;
using Slot = tls::NssSlot;
using CertList = std::unique_ptr<CERTCertificateList, Deleter<CERT_DestroyCertificateList>>;
using SymKey = std::unique_ptr<PK11SymKey, Deleter<PK11_FreeSymKey>>;

// SECItems NSS allocated that may hold key material: zeroed before they are freed.
struct ZeroedItemDeleter {
  void operator()(SECItem* item) const {
    if (item) SECITEM_ZfreeItem(item, PR_TRUE);
  }
};
using ZeroedItem = std::unique_ptr<SECItem, ZeroedItemDeleter>;

// Strings NSS allocated with PORT_Alloc (CERT_NameToAscii, CERT_GetCommonName).
struct PortDeleter {
  void operator()(char* p) const {
    if (p) PORT_Free(p);
  }
};
using PortString = std::unique_ptr<char, PortDeleter>;

}  // namespace common::rpc::nss
