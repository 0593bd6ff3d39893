// auth_client.cpp: the gRPC half of the authserv client: unary calls with caching, single flight
// and batching on the common client base (common/grpc/client_base.hpp: channels, failover,
// deadlines, limits, shutdown), and the Authenticate reactor behind SaslRelay. The only file here
// that includes gRPC (each such file costs ~7 s and 360 MB to compile).
#include "common/authclient/authclient.hpp"

#include <string.h>  // explicit_bzero

#include <atomic>
#include <deque>
#include <mutex>
#include <unordered_map>
#include <utility>

#include <grpcpp/grpcpp.h>

#include "common/authclient/lookup_cache.hpp"
#include "common/grpc/client_base.hpp"
#include "common/metrics/metrics.hpp"
#include "common/runtime/loop.hpp"
#include "proto/authserv.grpc.pb.h"

namespace common::authclient {

namespace {

namespace pb = postern::authserv::v1;
using SystemClock = std::chrono::system_clock;
using namespace std::chrono_literals;

// Longest login or address we ask about (RFC 5321 §4.5.3.1.3 paths stop at 256): longer ones are
// junk a client made up, and would only fill the cache's byte budget.
constexpr size_t kMaxName = 1024;
// Recipient lookups go out as LookupRecipients calls: up to kBatchesPerTarget calls in flight per
// authserv, and the lookups that arrive meanwhile wait for the next free one, which takes up to
// kBatchLookups of them (or kBatchBytes of requests, within authserv's 64 KiB message limit). A
// lone lookup leaves at once; under load one call carries many, and each side pays the per-call
// cost once for all of them (bench/authserv: about a third of the server CPU per lookup).
constexpr size_t kBatchesPerTarget = 4;
constexpr size_t kBatchLookups = 32;
constexpr size_t kBatchBytes = 32 * 1024;

struct Metrics {
  metrics::Family<metrics::Counter>& calls = metrics::default_registry().counter_family(
      "postern_authclient_calls_total", "Unary calls to authserv by method and result", {"method", "result"});
  metrics::Family<metrics::Counter>& cache = metrics::default_registry().counter_family(
      "postern_authclient_cache_total", "Lookups by cache and how they were answered", {"cache", "result"});
  metrics::Family<metrics::Counter>& overload = metrics::default_registry().counter_family(
      "postern_authclient_overload_total", "Calls refused at once because too many were in flight", {"kind"});
  metrics::Family<metrics::Counter>& exchanges = metrics::default_registry().counter_family(
      "postern_authclient_exchanges_total", "SASL exchanges relayed to authserv by outcome", {"result"});
};
Metrics& stats_metrics() {
  static Metrics m;
  return m;
}

// --- conversions between our structs and the proto ---

void to_proto(const ConnectionFacts& f, pb::ConnectionFacts& out) {
  out.set_service(f.service);
  out.set_client_address(f.client_address);
  out.set_client_name(f.client_name);
  out.set_server_address(f.server_address);
  out.set_tls_version(f.tls_version);
  out.set_tls_cipher(f.tls_cipher);
  out.set_client_cert_subject(f.client_cert_subject);
  out.set_client_cert_issuer(f.client_cert_issuer);
  out.set_client_cert_der(f.client_cert_der);
  out.set_channel_binding(f.channel_binding);
  out.set_session_id(f.session_id);
  out.set_default_domain(f.default_domain);
}

std::vector<std::string> strings(const google::protobuf::RepeatedPtrField<std::string>& in) {
  return std::vector<std::string>(in.begin(), in.end());
}

UserInfo from_proto(const pb::UserInfo& u) {
  return UserInfo{u.canonical(),        u.status(),         u.mail_host(),      u.allowed_services(),
                  u.domain_allowed_services(), u.quota_bytes(), u.quota_messages(), u.sieve(),
                  strings(u.addresses()), u.store_admin()};
}

RecipientInfo from_proto(const pb::LookupRecipientResponse& r) {
  RecipientKind kind = RecipientKind::Unknown;
  if (r.kind() == pb::LookupRecipientResponse::USER) kind = RecipientKind::User;
  if (r.kind() == pb::LookupRecipientResponse::ALIAS) kind = RecipientKind::Alias;
  return RecipientInfo{kind, r.canonical(), r.mail_host(), r.status(), strings(r.targets()), r.quota_bytes(),
                       r.quota_messages()};
}

AuthenticatedUser from_proto(const pb::AuthenticatedUser& u) {
  return AuthenticatedUser{u.canonical(), u.authcid(), u.mail_host(), strings(u.addresses()), u.token(),
                           u.token_expires_unix(), u.quota_bytes(), u.quota_messages()};
}

FailureKind from_proto(pb::FailureKind k) {
  switch (k) {
    case pb::FAILURE_CREDENTIALS: return FailureKind::Credentials;
    case pb::FAILURE_NOT_ALLOWED: return FailureKind::NotAllowed;
    case pb::FAILURE_AUTHZ: return FailureKind::Authz;
    case pb::FAILURE_PROTOCOL: return FailureKind::Protocol;
    case pb::FAILURE_MECHANISM: return FailureKind::Mechanism;
    case pb::FAILURE_ABORTED: return FailureKind::Aborted;
    case pb::FAILURE_TEMPORARY: return FailureKind::Temporary;
    default: return FailureKind::Unspecified;
  }
}

// Heap bytes a cached value holds, roughly (for the cache's byte budget).
size_t cost(const std::string& s) { return s.size() + sizeof(std::string); }
size_t cost(const std::vector<std::string>& v) {
  size_t n = sizeof(v);
  for (auto& s : v) n += cost(s);
  return n;
}
size_t cost(const std::optional<UserInfo>& u) {
  if (!u) return 0;
  return sizeof(UserInfo) + u->canonical.size() + u->status.size() + u->mail_host.size() + u->allowed_services.size() +
         u->domain_allowed_services.size() + u->sieve.size() + cost(u->addresses);
}
size_t cost(const RecipientInfo& r) {
  return sizeof(RecipientInfo) + r.canonical.size() + r.mail_host.size() + r.status.size() + cost(r.targets);
}

// Parts joined with NULs. Only the last part of a key can come from a client (a login may hold a
// NUL), and the parts before it come from our own configuration, so two keys never collide.
std::string key_of(std::initializer_list<std::string_view> parts) {
  std::string key;
  for (auto p : parts) {
    key.append(p);
    key.push_back('\0');
  }
  return key;
}

template <class V>
struct Waiter {
  runtime::Loop* loop;
  std::weak_ptr<void> alive;
  Callback<V> done;
};

// One kind of cached lookup: its answers and the calls in flight with everyone waiting on them.
template <class V>
struct Lookups {
  Lookups(std::string_view name, size_t entries, size_t bytes) : name(name), cache(entries, bytes) {}
  std::string_view name;
  LookupCache<V> cache;
  std::unordered_map<std::string, std::vector<Waiter<V>>> flights;
};

class ExchangeCall;

// Shared by a relay and its reactor. The reactor reaches the relay's loop only through it, and
// the relay cuts it when it goes away, so a late reply touches neither a dead relay nor its loop.
struct Link {
  std::mutex mu;
  runtime::Loop* loop = nullptr;  // null once the relay is gone
  std::weak_ptr<SaslRelay::State> state;

  void post(std::function<void(SaslRelay::State&)> fn);
};

}  // namespace

// ---------------------------------------------------------------------------------------------

struct AuthClient::Impl : std::enable_shared_from_this<AuthClient::Impl> {
  using Rpc = rpc::Client<pb::Auth>;

  Impl(AuthClientOptions o, std::shared_ptr<Rpc> r)
      : options(std::move(o)),
        rpc(std::move(r)),
        users("users", options.cache_entries, options.cache_bytes),
        recipients("recipients", options.cache_entries, options.cache_bytes),
        // A handful of distinct answers (service x TLS state): a small fixed bound is plenty.
        mechs("mechanisms", 256, 256 * 1024) {}

  AuthClientOptions options;
  // Channels, targets, the limits (max_in_flight; max_exchanges as its streams), failure logs and
  // the shutdown wait; it also guards every post to a loop.
  std::shared_ptr<Rpc> rpc;

  mutable std::mutex mu;  // the caches, the flights and the recipient queue
  Lookups<std::optional<UserInfo>> users;
  Lookups<RecipientInfo> recipients;
  Lookups<std::vector<std::string>> mechs;

  std::atomic<uint64_t> hits{0}, coalesced{0};

  template <class V>
  void post(Waiter<V> w, Result<V> result) {
    rpc->deliver<V>(*w.loop, std::move(w.alive), std::move(w.done), std::move(result));
  }

  template <class Resp>
  using Done = std::function<void(const grpc::Status&, Resp*)>;

  // Sends each request as its own unary call (lookups are idempotent: failover is safe).
  template <class Req, class Resp, class Invoke>
  auto unary(std::string_view method, Invoke invoke) {
    return [this, method, invoke](std::shared_ptr<const Req> req, Done<Resp> done) {
      rpc->unary<Req, Resp>(method, invoke, std::move(req), rpc->deadline(), rpc->pick_target(), true,
                            std::move(done));
    };
  }

  // A cached, coalesced lookup, asked through `dispatch(request, done)`. `convert(resp)` gives the
  // value and whether it is positive (cached for positive_ttl) or negative (negative_ttl).
  template <class V, class Req, class Resp, class MakeReq, class Dispatch, class Convert>
  void lookup(Lookups<V>& lk, std::string_view method, runtime::Loop& loop, std::weak_ptr<void> alive,
              std::string key, MakeReq make_req, Dispatch dispatch, Convert convert, Callback<V> done) {
    auto& metrics = stats_metrics();
    {
      std::lock_guard lock(mu);
      Waiter<V> w{&loop, std::move(alive), std::move(done)};
      if (auto hit = lk.cache.get(key, options.clock())) {
        ++hits;
        metrics.cache.with({lk.name, "hit"}).inc();
        post(std::move(w), Result<V>(std::move(*hit)));
        return;
      }
      // Single flight: a burst of RCPTs for one address, or one user's parallel logins, share one call.
      if (auto it = lk.flights.find(key); it != lk.flights.end()) {
        ++coalesced;
        metrics.cache.with({lk.name, "coalesced"}).inc();
        it->second.push_back(std::move(w));
        return;
      }
      if (!rpc->admit()) {
        post(std::move(w), Result<V>(fail(ErrorKind::TempFail, "too many authserv calls in flight")));
        return;
      }
      metrics.cache.with({lk.name, "miss"}).inc();
      lk.flights[key].push_back(std::move(w));
    }
    auto on_done = [self = shared_from_this(), &lk, key, method, convert](const grpc::Status& status, Resp* resp) {
      Result<V> result = fail(ErrorKind::TempFail, "");
      bool positive = false;
      if (status.ok()) {
        auto [value, pos] = convert(*resp);
        result = std::move(value);
        positive = pos;
      } else {
        result = tl::unexpected(self->rpc->rpc_error(method, status));
      }
      std::lock_guard lock(self->mu);
      self->rpc->release();
      // Failures are never cached: the next lookup asks again.
      auto ttl = positive ? self->options.positive_ttl : self->options.negative_ttl;
      if (result && ttl.count() > 0) lk.cache.put(key, *result, cost(*result), self->options.clock() + ttl);
      auto waiters = lk.flights.extract(key);
      if (waiters.empty()) return;
      for (auto& w : waiters.mapped()) self->post(std::move(w), result);
    };
    dispatch(std::make_shared<const Req>(make_req()), Done<Resp>(std::move(on_done)));
  }

  // --- recipient lookups, batched (see kBatchLookups)

  struct QueuedRecipient {
    std::shared_ptr<const pb::LookupRecipientRequest> request;
    Done<pb::LookupRecipientResponse> done;
  };
  std::deque<QueuedRecipient> recipient_queue;  // under `mu`
  size_t batches_in_flight = 0;                 // under `mu`

  void enqueue_recipient(std::shared_ptr<const pb::LookupRecipientRequest> request,
                         Done<pb::LookupRecipientResponse> done) {
    std::vector<QueuedRecipient> batch;
    {
      std::lock_guard lock(mu);
      recipient_queue.push_back({std::move(request), std::move(done)});
      if (batches_in_flight >= kBatchesPerTarget * rpc->target_count()) return;  // the next free call takes it
      ++batches_in_flight;
      batch = next_batch_locked();
    }
    send_batch(std::move(batch));
  }

  std::vector<QueuedRecipient> next_batch_locked() {
    std::vector<QueuedRecipient> batch;
    size_t bytes = 0;
    while (!recipient_queue.empty() && batch.size() < kBatchLookups) {
      size_t size = recipient_queue.front().request->ByteSizeLong();
      if (!batch.empty() && bytes + size > kBatchBytes) break;
      bytes += size;
      batch.push_back(std::move(recipient_queue.front()));
      recipient_queue.pop_front();
    }
    return batch;
  }

  // Runs `done` of each lookup in `batch` outside `mu` (they take it), then sends what queued meanwhile.
  void send_batch(std::vector<QueuedRecipient> batch) {
    auto request = std::make_shared<pb::LookupRecipientsRequest>();
    for (auto& q : batch) *request->add_requests() = *q.request;
    auto invoke = [](auto* stub, auto* ctx, auto* req, auto* resp, auto cb) {
      stub->LookupRecipients(ctx, req, resp, std::move(cb));
    };
    rpc->unary<pb::LookupRecipientsRequest, pb::LookupRecipientsResponse>(
        "LookupRecipients", invoke, std::shared_ptr<const pb::LookupRecipientsRequest>(std::move(request)),
        rpc->deadline(), rpc->pick_target(), true,
        [self = shared_from_this(), batch = std::move(batch)](const grpc::Status& status,
                                                              pb::LookupRecipientsResponse* resp) mutable {
          self->batch_answered(std::move(batch), status, resp);
        });
  }

  void batch_answered(std::vector<QueuedRecipient> batch, const grpc::Status& status,
                      pb::LookupRecipientsResponse* resp) {
    if (status.ok() && resp->responses_size() == static_cast<int>(batch.size())) {
      for (size_t i = 0; i < batch.size(); ++i) batch[i].done(status, resp->mutable_responses(static_cast<int>(i)));
    } else if (status.error_code() == grpc::StatusCode::RESOURCE_EXHAUSTED && batch.size() > 1) {
      // The answers together were too large for one message (big aliases): ask one by one.
      auto invoke = [](auto* stub, auto* ctx, auto* req, auto* r, auto cb) {
        stub->LookupRecipient(ctx, req, r, std::move(cb));
      };
      auto one = unary<pb::LookupRecipientRequest, pb::LookupRecipientResponse>("LookupRecipient", invoke);
      for (auto& q : batch) one(std::move(q.request), std::move(q.done));
    } else {
      grpc::Status failed = status.ok() ? grpc::Status(grpc::StatusCode::INTERNAL, "answers do not match the lookups")
                                        : status;
      for (auto& q : batch) q.done(failed, nullptr);
    }
    std::vector<QueuedRecipient> next;
    {
      std::lock_guard lock(mu);
      if (recipient_queue.empty()) {
        --batches_in_flight;
        return;
      }
      next = next_batch_locked();
    }
    send_batch(std::move(next));
  }
};

// ---------------------------------------------------------------------------------------------

Result<std::unique_ptr<AuthClient>> AuthClient::create(AuthClientOptions options) {
  if (options.targets.empty()) return fail(ErrorKind::Config, "authclient: no authserv target");
  for (auto& t : options.targets)
    if (t.empty()) return fail(ErrorKind::Config, "authclient: empty authserv target");
  if (options.call_deadline.count() <= 0 || options.exchange_deadline.count() <= 0)
    return fail(ErrorKind::Config, "authclient: deadlines must be positive");
  if (options.max_in_flight == 0 || options.max_exchanges == 0)
    return fail(ErrorKind::Config, "authclient: max_in_flight and max_exchanges must be positive");
  if (!options.clock) options.clock = [] { return std::chrono::steady_clock::now(); };

  auto& metrics = stats_metrics();
  rpc::ClientOptions base;
  base.component = "authclient";
  base.service = "authserv";
  base.targets = options.targets;
  base.tls = options.tls;
  base.call_deadline = options.call_deadline;
  base.max_in_flight = options.max_in_flight;
  base.max_streams = options.max_exchanges;
  base.calls_metric = &metrics.calls;
  base.overload_metric = &metrics.overload;
  base.stream_kind = "exchange";
  auto client = Impl::Rpc::create(std::move(base));
  if (!client) return tl::unexpected(client.error());
  return std::unique_ptr<AuthClient>(new AuthClient(std::make_shared<Impl>(std::move(options), std::move(*client))));
}

AuthClient::AuthClient(std::shared_ptr<Impl> impl) : impl_(std::move(impl)) {}

// Cancels what is in flight and waits until gRPC has let go of every call object (streams wait
// for their relays, which should be gone by now), so that the channels close on this thread.
AuthClient::~AuthClient() { impl_->rpc->close(); }

AuthClientStats AuthClient::stats() const {
  const auto base = impl_->rpc->stats();
  return AuthClientStats{base.rpcs, impl_->hits.load(), impl_->coalesced.load(), base.overloaded, base.in_flight,
                         base.streams};
}

// Cache keys hold what the answer depends on: the name asked about, the service, since authserv
// enforces policy itself and may answer per service, and the connection's default domain, which a
// bare name takes (one "dave" is two users on two virtual domains). Not the client's address: lookups return the
// user's access filters for the front end to apply, so the answer is the same for every client,
// and keying on it would only split the cache per source.
void AuthClient::lookup_user(runtime::Loop& loop, std::weak_ptr<void> alive, const ConnectionFacts& facts,
                             std::string login, Callback<std::optional<UserInfo>> done) {
  using V = std::optional<UserInfo>;
  if (login.size() > kMaxName) {
    loop.post([alive, done] {
      if (alive.lock()) done(fail(ErrorKind::Protocol, "login too long"));
    });
    return;
  }
  std::string key = key_of({facts.service, login, facts.default_domain});
  impl_->lookup<V, pb::LookupUserRequest, pb::LookupUserResponse>(
      impl_->users, "LookupUser", loop, std::move(alive), std::move(key),
      [&] {
        pb::LookupUserRequest req;
        to_proto(facts, *req.mutable_facts());
        req.set_login(login);
        return req;
      },
      impl_->unary<pb::LookupUserRequest, pb::LookupUserResponse>(
          "LookupUser",
          [](auto* stub, auto* ctx, auto* req, auto* resp, auto cb) { stub->LookupUser(ctx, req, resp, std::move(cb)); }),
      [](const pb::LookupUserResponse& r) -> std::pair<V, bool> {
        if (!r.found()) return {std::nullopt, false};
        return {from_proto(r.user()), true};
      },
      std::move(done));
}

void AuthClient::lookup_recipient(runtime::Loop& loop, std::weak_ptr<void> alive, const ConnectionFacts& facts,
                                  std::string address, Callback<RecipientInfo> done) {
  if (address.size() > kMaxName) {
    loop.post([alive, done] {
      if (alive.lock()) done(fail(ErrorKind::Protocol, "address too long"));
    });
    return;
  }
  std::string key = key_of({facts.service, address});
  impl_->lookup<RecipientInfo, pb::LookupRecipientRequest, pb::LookupRecipientResponse>(
      impl_->recipients, "LookupRecipient", loop, std::move(alive), std::move(key),
      [&] {
        pb::LookupRecipientRequest req;
        to_proto(facts, *req.mutable_facts());
        req.set_address(address);
        return req;
      },
      [impl = impl_.get()](auto req, auto done) { impl->enqueue_recipient(std::move(req), std::move(done)); },
      [](const pb::LookupRecipientResponse& r) -> std::pair<RecipientInfo, bool> {
        RecipientInfo info = from_proto(r);
        bool known = info.kind != RecipientKind::Unknown;
        return {std::move(info), known};
      },
      std::move(done));
}

// Mechanisms depend on the service, the listener, whether TLS is up, and whether a client
// certificate (EXTERNAL) or channel binding (SCRAM-PLUS) is available; not on who the client is.
void AuthClient::mechanisms(runtime::Loop& loop, std::weak_ptr<void> alive, const ConnectionFacts& facts,
                            Callback<std::vector<std::string>> done) {
  using V = std::vector<std::string>;
  std::string key = key_of({facts.service, facts.server_address, facts.tls_version,
                            facts.client_cert_der.empty() ? "" : "cert", facts.channel_binding.empty() ? "" : "cb"});
  impl_->lookup<V, pb::MechanismsRequest, pb::MechanismsResponse>(
      impl_->mechs, "Mechanisms", loop, std::move(alive), std::move(key),
      [&] {
        pb::MechanismsRequest req;
        to_proto(facts, *req.mutable_facts());
        return req;
      },
      impl_->unary<pb::MechanismsRequest, pb::MechanismsResponse>(
          "Mechanisms",
          [](auto* stub, auto* ctx, auto* req, auto* resp, auto cb) { stub->Mechanisms(ctx, req, resp, std::move(cb)); }),
      [](const pb::MechanismsResponse& r) -> std::pair<V, bool> { return {strings(r.mechanisms()), true}; },
      std::move(done));
}

void AuthClient::renew_token(runtime::Loop& loop, std::weak_ptr<void> alive, const ConnectionFacts& facts,
                             std::string token, Callback<TokenRenewal> done) {
  Impl& impl = *impl_;
  if (!impl.rpc->admit()) {
    impl.post(Waiter<TokenRenewal>{&loop, std::move(alive), std::move(done)},
              Result<TokenRenewal>(fail(ErrorKind::TempFail, "too many authserv calls in flight")));
    return;
  }
  auto req = std::make_shared<pb::RenewTokenRequest>();
  to_proto(facts, *req->mutable_facts());
  req->set_token(std::move(token));
  auto on_done = [self = impl_, w = Waiter<TokenRenewal>{&loop, std::move(alive), std::move(done)}](
                     const grpc::Status& status, pb::RenewTokenResponse* resp) mutable {
    Result<TokenRenewal> result = fail(ErrorKind::TempFail, "");
    if (status.ok())
      result = TokenRenewal{resp->ok(), resp->token(), resp->token_expires_unix(), resp->reason()};
    else
      result = tl::unexpected(self->rpc->rpc_error("RenewToken", status));
    self->rpc->release();
    self->post(std::move(w), std::move(result));
  };
  impl.rpc->unary<pb::RenewTokenRequest, pb::RenewTokenResponse>(
      "RenewToken",
      [](auto* stub, auto* ctx, auto* req, auto* resp, auto cb) { stub->RenewToken(ctx, req, resp, std::move(cb)); },
      std::shared_ptr<const pb::RenewTokenRequest>(std::move(req)), impl.rpc->deadline(), impl.rpc->pick_target(),
      true, std::function<void(const grpc::Status&, pb::RenewTokenResponse*)>(std::move(on_done)));
}

// ---------------------------------------------------------------------------------------------
// SaslRelay: the loop-side state, and the reactor on gRPC's threads.

struct SaslRelay::State {
  State(std::shared_ptr<AuthClient::Impl> c, runtime::Loop& l, OutputFn o)
      : client(std::move(c)), loop(l), out(std::move(o)), exchange(client->options.sasl) {}
  std::shared_ptr<AuthClient::Impl> client;
  runtime::Loop& loop;
  OutputFn out;
  SaslExchange exchange;
  std::shared_ptr<Link> link;
  // The reactor, valid while we hold it (AddHold): it cannot finish, so writing to it is safe. Null
  // once released; after that only the reactor itself touches it.
  ExchangeCall* call = nullptr;
  std::string target;  // for logs
  size_t target_index = 0;
  // The opening step, kept until authserv answers it: a stream that fails before any reply is
  // sent again to the next authserv. It may hold an initial response (a password): wiped then.
  std::optional<pb::AuthStep> unanswered_start;
  size_t tries = 0;    // authservs the opening step went to
  bool gone = false;   // the relay was destroyed (possibly from inside `out`)
};

namespace {

void Link::post(std::function<void(SaslRelay::State&)> fn) {
  std::lock_guard lock(mu);
  if (loop == nullptr) return;
  loop->post([weak = state, fn = std::move(fn)] {
    if (auto s = weak.lock(); s && !s->gone) fn(*s);
  });
}

// Loop-side handlers of what the reactor reports (defined below).
void on_reply(SaslRelay::State& s, const pb::AuthReply& reply);
void release_call(SaslRelay::State& s);
void on_done(SaslRelay::State& s, const grpc::Status& status);

class ExchangeCall final : public grpc::ClientBidiReactor<pb::AuthStep, pb::AuthReply> {
 public:
  // open_call() claims the ticket (a stream, against max_exchanges); it counts us out when we are
  // deleted.
  ExchangeCall(std::chrono::milliseconds deadline, std::shared_ptr<Link> link) : link_(std::move(link)) {
    ctx_.set_deadline(SystemClock::now() + deadline);
  }
  rpc::ClientCore::Ticket& ticket() { return ticket_; }

  // The hold keeps OnDone back until the relay releases us, so it may write at any time before.
  void begin(pb::Auth::Stub& stub, pb::AuthStep start) {
    stub.async()->Authenticate(&ctx_, this);
    AddHold();
    StartRead(&reply_);
    write(std::move(start));
    StartCall();
  }
  // nullopt: half-close (WritesDone). Queued while a write is in progress (one at a time).
  void write(std::optional<pb::AuthStep> step) {
    {
      std::lock_guard lock(mu_);
      if (busy_) {
        queue_.push_back(std::move(step));
        return;
      }
      busy_ = true;
      current_ = std::move(step);
    }
    issue();  // not under mu_: a reaction may run inline and take it
  }
  void cancel() { ctx_.TryCancel(); }
  void release() { RemoveHold(); }

  void OnWriteDone(bool ok) override { next_write(ok); }
  void OnWritesDoneDone(bool ok) override { next_write(ok); }

  void OnReadDone(bool ok) override {
    if (!ok) {
      // authserv finished or the stream broke: let go so OnDone can bring the status.
      link_->post([](SaslRelay::State& s) { release_call(s); });
      return;
    }
    link_->post([reply = std::move(reply_)](SaslRelay::State& s) { on_reply(s, reply); });
    reply_.Clear();
    StartRead(&reply_);
  }

  void OnDone(const grpc::Status& status) override {
    link_->post([status](SaslRelay::State& s) { on_done(s, status); });
    delete this;
  }

 private:
  void issue() {
    if (current_) StartWrite(&*current_);
    else StartWritesDone();
  }
  void next_write(bool ok) {
    {
      std::lock_guard lock(mu_);
      if (!ok) queue_.clear();  // the stream is broken; the read side reports it
      if (queue_.empty()) {
        busy_ = false;
        return;
      }
      current_ = std::move(queue_.front());
      queue_.pop_front();
    }
    issue();
  }

  rpc::ClientCore::Ticket ticket_;  // first: destroyed after the context
  std::shared_ptr<Link> link_;
  grpc::ClientContext ctx_;
  pb::AuthReply reply_;
  std::mutex mu_;
  bool busy_ = false;
  std::optional<pb::AuthStep> current_;
  std::deque<std::optional<pb::AuthStep>> queue_;
};

// The last thing done with `s`: the session may destroy the relay from inside `out`.
void emit(SaslRelay::State& s, SaslOutput output) {
  if (s.exchange.done()) {
    std::string_view result = "success";
    if (auto* f = std::get_if<SaslFailure>(&output)) result = failure_kind_name(f->kind);
    stats_metrics().exchanges.with({result}).inc();
  }
  s.out(std::move(output));
}

// Outputs decided inside start()/client_line() go through the loop, so the session is never
// re-entered from its own call.
void post_output(SaslRelay::State& s, SaslOutput output) {
  s.loop.post([state = s.link->state, output = std::move(output)]() mutable {
    if (auto st = state.lock(); st && !st->gone) emit(*st, std::move(output));
  });
}

// Let the reactor finish (it then deletes itself); we never touch it again.
void release_call(SaslRelay::State& s) {
  if (s.call == nullptr) return;
  std::exchange(s.call, nullptr)->release();
}

// The exchange ended on our side: tell authserv, so it logs an aborted attempt, and half-close.
void abort_call(SaslRelay::State& s) {
  if (s.call == nullptr) return;
  pb::AuthStep abort;
  abort.set_abort(true);
  s.call->write(std::move(abort));
  s.call->write(std::nullopt);
  release_call(s);
}

void forget_start(SaslRelay::State& s) {
  if (!s.unanswered_start) return;
  auto* start = s.unanswered_start->mutable_start();
  if (!start->initial_response().empty())
    explicit_bzero(start->mutable_initial_response()->data(), start->initial_response().size());
  s.unanswered_start.reset();
}

// Sends the opening step on a new stream to authserv `index`; false when max_exchanges is reached.
bool open_call(SaslRelay::State& s, size_t index, pb::AuthStep start) {
  auto& impl = *s.client;
  auto* call = new ExchangeCall(impl.options.exchange_deadline, s.link);
  if (!impl.rpc->claim(call->ticket(), {}, /*stream=*/true)) {
    delete call;  // never started: gRPC knows nothing of it
    return false;
  }
  s.target = impl.rpc->target_name(index);
  s.target_index = index;
  ++s.tries;
  s.call = call;
  s.call->begin(impl.rpc->stub(index), std::move(start));
  return true;
}

// The stream failed before authserv answered anything, so nothing of the exchange happened there
// that the next authserv would repeat: try it, once per authserv.
bool retry_elsewhere(SaslRelay::State& s, const grpc::Status& status) {
  auto& impl = *s.client;
  if (status.error_code() != grpc::StatusCode::UNAVAILABLE || !s.unanswered_start || s.gone ||
      s.tries >= impl.rpc->target_count())
    return false;
  impl.rpc->log_failure("Authenticate", s.target, status);
  return open_call(s, impl.rpc->pick_target_after(s.target_index), *s.unanswered_start);
}

void on_reply(SaslRelay::State& s, const pb::AuthReply& reply) {
  forget_start(s);
  std::optional<SaslOutput> out;
  bool outcome_from_server = false;
  switch (reply.reply_case()) {
    case pb::AuthReply::kChallenge:
      out = s.exchange.server_challenge(reply.challenge());
      break;
    case pb::AuthReply::kSuccess:
      out = s.exchange.server_success(from_proto(reply.success()), reply.additional_data());
      outcome_from_server = true;
      break;
    case pb::AuthReply::kFailure:
      out = s.exchange.server_failure(from_proto(reply.failure().kind()), reply.failure().reason());
      outcome_from_server = true;
      break;
    default:
      out = s.exchange.server_failure(FailureKind::Temporary, "authserv sent an empty reply");
      break;
  }
  if (!out) return;
  if (s.exchange.done()) {
    if (outcome_from_server) release_call(s);  // authserv finishes the stream itself
    else abort_call(s);                   // e.g. too many challenges: we end it
  }
  emit(s, std::move(*out));
}

void on_done(SaslRelay::State& s, const grpc::Status& status) {
  if (retry_elsewhere(s, status)) return;
  forget_start(s);
  std::string reason;
  switch (status.error_code()) {
    case grpc::StatusCode::OK: reason = "authserv ended the exchange without an outcome"; break;
    case grpc::StatusCode::DEADLINE_EXCEEDED: reason = "authserv exchange deadline exceeded"; break;
    default: reason = s.client->rpc->rpc_error("Authenticate", status).detail;
  }
  if (auto out = s.exchange.transport_ended(std::move(reason))) {
    if (!status.ok()) s.client->rpc->log_failure("Authenticate", s.target, status);
    emit(s, std::move(*out));
  }
}

}  // namespace

SaslRelay::SaslRelay(AuthClient& client, runtime::Loop& loop, OutputFn on_output)
    : state_(std::make_shared<State>(client.impl_, loop, std::move(on_output))) {
  state_->link = std::make_shared<Link>();
  state_->link->loop = &loop;
  state_->link->state = state_;
}

SaslRelay::~SaslRelay() {
  State& s = *state_;
  s.gone = true;
  {
    std::lock_guard lock(s.link->mu);
    s.link->loop = nullptr;
  }
  if (s.call != nullptr) {
    // Mid-exchange: authserv sees the cancellation; the reactor finishes and frees itself.
    s.call->cancel();
    release_call(s);
  }
}

void SaslRelay::start(std::string_view mechanism, std::optional<std::string> initial_response_base64,
                      const ConnectionFacts& facts, bool check_only) {
  State& s = *state_;
  auto step = s.exchange.start(mechanism, initial_response_base64);
  if (auto* failure = std::get_if<SaslFailure>(&step)) {
    abort_call(s);  // start() called twice: the first exchange ends too
    post_output(s, std::move(*failure));
    return;
  }
  auto& start = std::get<SaslExchange::Start>(step);
  pb::AuthStep msg;
  auto* m = msg.mutable_start();
  to_proto(facts, *m->mutable_facts());
  m->set_mechanism(start.mechanism);
  m->set_has_initial_response(start.initial_response.has_value());
  m->set_check_only(check_only);
  if (start.initial_response) m->set_initial_response(std::move(*start.initial_response));

  auto& impl = *s.client;
  forget_start(s);
  s.tries = 0;
  if (impl.rpc->target_count() > 1) s.unanswered_start = msg;
  if (!open_call(s, impl.rpc->pick_target(), std::move(msg))) {
    forget_start(s);
    if (auto out = s.exchange.transport_ended("too many SASL exchanges in flight")) post_output(s, std::move(*out));
  }
}

void SaslRelay::client_line(std::string_view line) {
  State& s = *state_;
  auto step = s.exchange.client_line(line);
  if (auto* respond = std::get_if<SaslExchange::Respond>(&step)) {
    if (s.call == nullptr) {
      // authserv's side already ended; its status is on the way and will be the outcome.
      return;
    }
    pb::AuthStep msg;
    msg.set_response(std::move(respond->bytes));
    s.call->write(std::move(msg));
    return;
  }
  abort_call(s);
  post_output(s, std::move(std::get<SaslFailure>(step)));
}

bool SaslRelay::finished() const { return state_->exchange.done(); }

}  // namespace common::authclient
