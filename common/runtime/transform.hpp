// transform.hpp: the seam where TLS sits between the socket and a session. A connection without a
// transform passes bytes through; STARTTLS installs one mid-stream, implicit TLS before the first byte.
#pragma once

#include <span>
#include <string>
#include <string_view>

#include "common/result.hpp"

namespace common::runtime {

// What a session may ask of the security a transform provides: for logs, for the plaintext-password
// policy and for SASL EXTERNAL.
struct SecurityFacts {
  bool handshake_done = false;
  std::string protocol;        // "TLSv1.3"
  std::string cipher;          // "TLS_AES_128_GCM_SHA256"
  int cipher_bits = 0;
  bool resumed = false;
  std::string server_name;     // SNI the client sent, lowercased; empty when none
  bool client_verified = false;     // a client certificate was presented and verified
  std::string client_subject;  // its subject DN ("CN=alice,O=Example")
  std::string client_issuer;   // its issuer DN
  std::string client_der;      // the DER bytes, for certmap's verifycert
  std::string channel_binding; // tls-exporter (RFC 9266), 32 bytes, for SCRAM-PLUS
  // A TLS client's view of the server (outbound SMTP/LMTP, for the Received: header and logs);
  // server_name is then the name it sent in SNI.
  bool server_verified = false;     // the server's certificate was checked and passed
  std::string server_subject;       // its subject DN
  std::string server_issuer;        // its issuer DN
  std::string server_verify_error;  // why it did not pass, when the check was only recorded
};

class Transform {
 public:
  virtual ~Transform() = default;
  // Null until the transform knows (e.g. before a TLS handshake completes).
  virtual const SecurityFacts* facts() const { return nullptr; }
  // Called once, right after the transform is installed on a connection: bytes it sends before
  // reading anything (a TLS client's ClientHello) go to `wire`. An error aborts the connection.
  virtual Result<void> start(std::string& /*wire*/) { return {}; }
  // Bytes from the socket. Plaintext for the session goes to `plain`; bytes the transform itself must
  // send (handshake, alerts, tickets) go to `wire`. An error closes the connection after `wire` is sent.
  virtual Result<void> decode(std::string_view in, std::string& plain, std::string& wire) = 0;
  // Plaintext from the session, encoded for the socket into `wire`.
  virtual Result<void> encode(std::string_view plain, std::string& wire) = 0;
  // Graceful end (TLS close_notify) into `wire`.
  virtual void close(std::string& wire) = 0;
  // Peer sent end-of-stream at the transform level (TLS close_notify). A TCP end while this is
  // false is a truncation (CloseReason::Truncated), never a clean close.
  virtual bool peer_closed() const { return false; }
  // Bytes of an incomplete record held, for the log line of a truncation; 0 when unknown.
  virtual size_t buffered_input() const { return 0; }
};

}  // namespace common::runtime
