// connection_facts.cpp: runtime::ConnectionInfo + runtime::SecurityFacts -> ConnectionFacts.
#include "common/authclient/connection_facts.hpp"

#include "common/runtime/connection.hpp"
#include "common/runtime/transform.hpp"

namespace common::authclient {

ConnectionFacts connection_facts(const runtime::ConnectionInfo& info, const runtime::SecurityFacts* security) {
  ConnectionFacts f;
  f.service = info.service;
  f.client_address = info.peer.address.to_string();
  f.client_name = info.client_name;
  f.server_address = info.local.address.to_string();
  f.session_id = info.id;
  if (security == nullptr || !security->handshake_done) return f;
  f.tls_version = security->protocol;  // already the one spelling (kTls12, kTls13)
  f.tls_cipher = security->cipher;
  f.channel_binding = security->channel_binding;
  if (security->client_verified) {
    f.client_cert_subject = security->client_subject;
    f.client_cert_issuer = security->client_issuer;
    f.client_cert_der = security->client_der;
  }
  return f;
}

}  // namespace common::authclient
