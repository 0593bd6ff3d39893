// core.hpp: authserv's logic without gRPC: SASL exchanges driven against the directory, the login
// policy and the token signer; lookups. The gRPC adapter (grpc_service.cpp) only converts messages.
#pragma once

#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "authserv/directory/directory.hpp"
#include "common/access/filter.hpp"
#include "authserv/oauth/token_validator.hpp"
#include "authserv/password/password.hpp"
#include "authserv/policy/login_policy.hpp"
#include "authserv/policy/mechanisms.hpp"
#include "authserv/service/credential_cache.hpp"
#include "authserv/service/hash_queue.hpp"
#include "authserv/service/shared_checks.hpp"
#include "common/authclient/types.hpp"
#include "common/authtoken/authtoken.hpp"
#include "common/dns/resolver_thread.hpp"
#include "common/result.hpp"
#include "common/runtime/worker_pool.hpp"
#include "common/tls/certmap.hpp"

namespace authserv::service {

// The front end's view of the client connection (proto ConnectionFacts) plus who the front end is.
struct Facts {
  std::string service;
  std::string client_address;
  std::string client_name;  // forward-confirmed by the front end; "" = not looked up / none
  std::string server_address;
  std::string tls_version;  // "" = no TLS, else common::authclient::kTls12 or kTls13
  std::string tls_cipher;
  std::string client_cert_subject;
  std::string client_cert_issuer;
  std::string client_cert_der;
  std::string channel_binding;
  std::string session_id;
  std::string default_domain;  // the front end's for this connection (listener / SNI); "" = Settings'
  std::string front_end;  // CN of the calling front end's certificate (gRPC peer)
};

// The proto's failure kinds, as the front ends' client library names them.
using FailureKind = common::authclient::FailureKind;

struct Authenticated {
  std::string canonical, authcid, mail_host;
  std::vector<std::string> addresses;
  std::string token;
  int64_t token_expires = 0;
  uint64_t quota_bytes = 0, quota_messages = 0;
};

// One message back to the front end.
struct Reply {
  enum class Kind : uint8_t { Challenge, Success, Failure } kind = Kind::Failure;
  std::string data;  // Challenge: the challenge; Success: additional data (SCRAM server-final)
  Authenticated user;
  FailureKind failure = FailureKind::Unspecified;
  std::string reason;  // for logs
  bool final() const { return kind != Kind::Challenge; }
};

// libsodium KDF context (8 bytes) of the fake-salt key derived from the token signing seed.
inline constexpr std::string_view kFakeSaltContext = "scramfks";

struct Settings {
  std::string default_domain;
  password::Argon2Cost argon2;
  bool rehash = true;  // AUTH-10: re-store the password as {ARGON2} (and add a SCRAM verifier)
  uint32_t scram_iterations = password::kScramMinIterations;
  // [password] cache_ttl / cache_size: the verified-credential cache (0 s: off).
  std::chrono::seconds password_cache_ttl{std::chrono::hours(1)};
  size_t password_cache_entries = 100000;
  // [password] hash_queue_per_source: how many of the hash queue's places one client address (an
  // IPv6 /64) may hold; 0: an eighth of hash_queue (at least 1).
  size_t hash_queue_per_source = 0;
  // [password] hash_memory = "kept": every hashing thread keeps one argon2 memory area of
  // argon2.mem_bytes for its life, instead of libsodium mapping and unmapping one per hash.
  bool keep_hash_memory = false;
  // Keys SCRAM's fake salts for unknown users (stable per name); a sub-key of the token signing
  // seed (Signer::derive_key with kFakeSaltContext), never of anything public.
  std::array<uint8_t, 32> fake_salt_key{};
  std::chrono::seconds token_ttl{std::chrono::hours(1)};
  // [tokens] allow_unbound, for tests only: mint and renew tokens for a front end that has no
  // certificate name (plaintext gRPC). Such a token opens the mailbox for any front end.
  bool allow_unbound_tokens = false;
  std::chrono::seconds max_session{std::chrono::hours(24 * 7)};
  policy::MechanismPolicy mechanisms;
  std::vector<std::string> admins;  // front-end CNs allowed to make Admin calls
  // AUTH-14: certificate -> user for EXTERNAL. Without a certmap.conf, the certificate's e-mail
  // address must be one of the user's addresses (the seeds' "no certmap needed" case).
  std::shared_ptr<const common::tls::CertMap> certmap;
  // [sasl] proxy_allowed: the clients (service, address, name) from which a store administrator
  // may act for another user (Sun's proxydomainallowed); null: from anywhere.
  std::shared_ptr<const common::access::AccessFilter> proxy_hosts;
  // OAUTHBEARER / XOAUTH2 token issuers; null or empty: the bearer mechanisms are not offered.
  std::shared_ptr<const oauth::TokenValidator> token_issuers;
};

// The certmap used when none is configured.
std::shared_ptr<const common::tls::CertMap> default_certmap();

class Core;

// One Authenticate call. Callbacks may run on a worker thread or inside the call that caused them;
// exactly one reply per start()/respond(), and none after a final one.
class Exchange : public std::enable_shared_from_this<Exchange> {
 public:
  using Deliver = std::function<void(Reply)>;
  virtual ~Exchange() = default;
  virtual void start(std::string mechanism, std::optional<std::string> initial, Deliver deliver) = 0;
  virtual void respond(std::string response, Deliver deliver) = 0;
  virtual void abort(Deliver deliver) = 0;
};

class Core {
 public:
  // `signer` signs access tokens; the pools bound hashing (tens of MiB each) and blocking directory
  // calls so a flood queues nothing unbounded.
  Core(std::unique_ptr<directory::Backend> backend, Settings settings, common::authtoken::Signer signer,
       size_t hash_threads, size_t hash_queue, size_t directory_threads, size_t directory_queue);
  ~Core();

  // Not certmap, token_issuers or mechanisms: adopt() replaces those while calls run; read them
  // through the accessors below.
  const Settings& settings() const { return settings_; }
  // SIGHUP: certmap.conf and the OAuth issuers as read again; exchanges started from now on use
  // them (one in progress keeps what it read). Thread-safe.
  void adopt(std::shared_ptr<const common::tls::CertMap> certmap,
             std::shared_ptr<const oauth::TokenValidator> token_issuers);
  std::shared_ptr<const common::tls::CertMap> certmap() const;
  std::shared_ptr<const oauth::TokenValidator> token_issuers() const;
  policy::MechanismPolicy mechanism_policy() const;
  std::string key_id() const { return signer_.key_id(); }
  directory::Backend& backend() { return *backend_; }
  CredentialCache& password_cache() { return password_cache_; }

  std::vector<std::string> mechanisms(const Facts& facts) const;
  // check_only: a success names the user but carries no token (AuthStep.Start.check_only).
  std::shared_ptr<Exchange> begin(Facts facts, bool check_only = false);
  // The domain unqualified names take on this connection: the front end's, else [authserv]'s.
  const std::string& default_domain(const Facts& facts) const;

  using UserDone = std::function<void(common::Result<std::optional<directory::UserRecord>>)>;
  void lookup_user(const Facts& facts, std::string login, UserDone done);
  using RecipientDone = std::function<void(common::Result<directory::Recipient>)>;
  void lookup_recipient(const Facts& facts, std::string address, RecipientDone done);

  struct Renewal {
    std::string token;
    int64_t expires = 0;
  };
  using RenewDone = std::function<void(common::Result<Renewal>)>;
  void renew_token(const Facts& facts, std::string token, RenewDone done);

  // Runs blocking work: on the directory pool for blocking backends, inline for LMDB. False when
  // the pool is full.
  bool run_directory(std::function<void()> work);
  // `source` is the client address the fair share is counted by (HashQueue::source_key).
  bool run_hashing(std::function<void()> work, std::string_view source = "");
  // Lets policy look up a client's name when a rule needs one the front end did not send.
  void use_dns(std::unique_ptr<common::dns::ResolverThread> names) { names_ = std::move(names); }

  // Signs a token for a successful login.
  common::authtoken::Claims claims_for(const directory::UserRecord& user, const Facts& facts) const;
  common::Result<std::string> sign(const common::authtoken::Claims& claims) const { return signer_.sign(claims); }

 private:
  friend class ExchangeImpl;
  std::unique_ptr<directory::Backend> backend_;
  Settings settings_;
  common::authtoken::Signer signer_;
  common::authtoken::Verifier own_tokens_;
  CredentialCache password_cache_;
  // Before the pool, so it outlives the hashing threads that finish its checks.
  SharedChecks shared_checks_;
  HashQueue hash_pool_;
  common::runtime::WorkerPool directory_pool_;
  std::string dummy_hash_;  // verified for unknown users, so timing does not tell them apart
  mutable std::mutex live_mutex_;  // settings_.certmap, .token_issuers, .mechanisms (adopt())
  // Last, so it goes first: lookups it cancels hand their exchanges to the pools, still alive.
  std::unique_ptr<common::dns::ResolverThread> names_;
};

// Normalised "where did this come from" for log lines.
std::string describe(const Facts& facts);

}  // namespace authserv::service
