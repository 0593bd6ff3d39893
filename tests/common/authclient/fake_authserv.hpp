// fake_authserv.hpp: an in-process Auth service with canned answers for the authclient tests; it
// counts calls, can hold unary answers back, and scripts a few SASL mechanisms. No gRPC in here.
#pragma once

#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace test {

// Canned data:
//   LookupUser: "alice" and "alice@example.com" -> alice@example.com on store1; others not found.
//   LookupRecipient(s): alice@example.com -> USER; team@example.com -> ALIAS (alice@example.com,
//     bob@example.net); others UNKNOWN. A LookupRecipients batch of more than one that holds
//     huge@example.com fails with RESOURCE_EXHAUSTED (answers too large for one message).
//   Mechanisms: without TLS "SCRAM-SHA-256"; under TLS "PLAIN", "LOGIN", "SCRAM-SHA-256".
//   RenewToken: "t1" -> ok "t2"; others refused ("unknown token").
//   Authenticate: PLAIN ("\0alice\0secret" succeeds; without an initial response an empty challenge
//     first); X-TWO (challenge "step one", then "r1" succeeds with additional data "final words");
//     X-LOOP (challenges forever); X-SILENT (never answers); others FAILURE_MECHANISM; abort ->
//     FAILURE_ABORTED.
class FakeAuthserv {
 public:
  // On 127.0.0.1:0; mTLS from the process's NSS database (common::rpc::server_credentials) unless
  // plaintext.
  explicit FakeAuthserv(bool plaintext = true);
  ~FakeAuthserv();  // shuts the server down; held calls are cancelled
  FakeAuthserv(const FakeAuthserv&) = delete;
  FakeAuthserv& operator=(const FakeAuthserv&) = delete;

  std::string target() const;
  int calls(std::string_view method) const;  // "LookupUser", "Authenticate", ...
  // While on, unary calls are answered only by release() (or cancelled by the client's deadline).
  void hold(bool on);
  void release();
  int held() const;
  std::vector<int> batch_sizes() const;  // lookups in each LookupRecipients call, in arrival order
  int exchanges_cancelled() const;  // Authenticate streams the client cancelled
  int exchanges_done() const;       // Authenticate streams finished (any way)
  // What the Authenticate streams received, in order: "start PLAIN ir=<hex>" ("ir=none" without an
  // initial response), "response <hex>", "abort".
  std::vector<std::string> steps() const;
  std::string last_peer() const;  // the client certificate's CN of the last LookupUser

  struct Impl;

 private:
  std::unique_ptr<Impl> impl_;
};

}  // namespace test
