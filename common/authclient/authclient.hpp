// authclient.hpp: how mta and mmp talk to authserv (gRPC over mTLS): cached user and recipient
// lookups, mechanism lists, token renewal, and SaslRelay for one AUTH exchange. No gRPC in here.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/authclient/sasl_exchange.hpp"
#include "common/authclient/types.hpp"
#include "common/grpc/credentials.hpp"
#include "common/result.hpp"

namespace common::runtime {
class Loop;
}

namespace common::authclient {

struct AuthClientOptions {
  // "host:port" of authserv instances. Calls are spread round robin over the reachable ones; a
  // lookup that finds its instance unavailable is retried once on the next.
  std::vector<std::string> targets{"127.0.0.1:7560"};
  rpc::MtlsOptions tls;
  std::chrono::milliseconds call_deadline{std::chrono::seconds(5)};       // each unary call
  std::chrono::milliseconds exchange_deadline{std::chrono::seconds(60)};  // a whole SASL exchange
  std::chrono::milliseconds positive_ttl{std::chrono::seconds(30)};       // 0: no caching
  std::chrono::milliseconds negative_ttl{std::chrono::seconds(5)};        // unknown user or recipient
  size_t cache_entries = 10000;           // per cache (users, recipients)
  size_t cache_bytes = 16 * 1024 * 1024;  // per cache
  // Beyond these, calls fail at once with TempFail instead of queueing behind a slow authserv.
  size_t max_in_flight = 256;   // unary calls (coalesced lookups count once)
  size_t max_exchanges = 1024;  // open SASL exchanges (each may wait a minute for the client)
  SaslLimits sasl;
  // Cache time; tests inject one. Deadlines always use the real clock.
  std::function<std::chrono::steady_clock::time_point()> clock;
};

template <class T>
using Callback = std::function<void(Result<T>)>;

struct AuthClientStats {
  uint64_t rpcs = 0;        // unary calls sent (retries included)
  uint64_t cache_hits = 0;
  uint64_t coalesced = 0;   // lookups that joined a call already in flight
  uint64_t overloaded = 0;  // refused by max_in_flight or max_exchanges
  size_t in_flight = 0;     // unary calls now
  size_t exchanges = 0;     // Authenticate streams now (until gRPC has finished each)
};

// One per daemon, shared by all its loops (thread-safe). Every callback runs on the Loop passed to
// the call, through Loop::post, never inside the call itself, and only while `alive` can still be
// locked (pass Connection::alive()): a session that went away is never called back.
// Errors: TempFail when authserv is unreachable, slow or overloaded (never cached); Remote when it
// refused the request itself; Protocol for a login or address too long to ask about.
// Destroy it after the sessions and relays that use it and before the loops it delivers to;
// callbacks of calls still in flight at that point are dropped. The destructor cancels them and
// waits (up to 5 s) until gRPC has let go of each, so that its channels are closed on this thread.
// A relay that outlives it keeps a stream open: that is logged and the channels are leaked.
class AuthClient {
 public:
  static Result<std::unique_ptr<AuthClient>> create(AuthClientOptions options);
  ~AuthClient();
  AuthClient(const AuthClient&) = delete;
  AuthClient& operator=(const AuthClient&) = delete;

  // nullopt: no such user (cached for negative_ttl).
  void lookup_user(runtime::Loop& loop, std::weak_ptr<void> alive, const ConnectionFacts& facts, std::string login,
                   Callback<std::optional<UserInfo>> done);
  // RecipientKind::Unknown is cached for negative_ttl.
  void lookup_recipient(runtime::Loop& loop, std::weak_ptr<void> alive, const ConnectionFacts& facts,
                        std::string address, Callback<RecipientInfo> done);
  // What to advertise on this connection, in preference order; empty: no AUTH here.
  void mechanisms(runtime::Loop& loop, std::weak_ptr<void> alive, const ConnectionFacts& facts,
                  Callback<std::vector<std::string>> done);
  // Never cached and never coalesced: each renewal returns a new token.
  void renew_token(runtime::Loop& loop, std::weak_ptr<void> alive, const ConnectionFacts& facts, std::string token,
                   Callback<TokenRenewal> done);

  AuthClientStats stats() const;

  struct Impl;

 private:
  friend class SaslRelay;
  explicit AuthClient(std::shared_ptr<Impl> impl);
  std::shared_ptr<Impl> impl_;
};

// One per AUTH (SMTP) or AUTHENTICATE (IMAP) command: relays the steps over authserv's
// Authenticate stream. Use from the loop thread only. Outputs arrive through `on_output` on that
// loop, never inside start() or client_line(), and never after the relay is destroyed; the last
// output is a SaslSuccess or a SaslFailure. Destroying the relay mid-exchange cancels the stream.
class SaslRelay {
 public:
  using OutputFn = std::function<void(SaslOutput)>;

  SaslRelay(AuthClient& client, runtime::Loop& loop, OutputFn on_output);
  ~SaslRelay();
  SaslRelay(const SaslRelay&) = delete;
  SaslRelay& operator=(const SaslRelay&) = delete;

  // initial_response_base64: nullopt when the command had none; "=" for an empty one (RFC 4954).
  // check_only: authserv only says whether it would succeed; a SaslSuccess then has no token
  // (the connect-time certificate check, so no token is signed for a session that never uses it).
  void start(std::string_view mechanism, std::optional<std::string> initial_response_base64,
             const ConnectionFacts& facts, bool check_only = false);
  // A continuation line without CRLF: base64, "" (empty response) or "*" (abort).
  void client_line(std::string_view line);
  // True once the outcome is decided (it may still be on its way to on_output).
  bool finished() const;

  struct State;

 private:
  std::shared_ptr<State> state_;
};

}  // namespace common::authclient
