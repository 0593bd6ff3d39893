// server.cpp: the gRPC server skeleton. Each registered service is served through a front service
// of ours whose method handlers gate the call first and only then run the daemon's own handler, so
// no interceptor or per-handler check is needed and a refused call never reaches service code.
// Written against gRPC 1.51's callback server (grpcpp/impl: MethodHandler, RpcServiceMethod).
#include "common/grpc/server.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <mutex>
#include <thread>
#include <unordered_map>

#include <google/protobuf/descriptor.h>
#include <grpc/grpc.h>
#include <grpc/grpc_security_constants.h>
#include <grpcpp/impl/rpc_service_method.h>
#include <grpcpp/impl/service_type.h>
#include <grpcpp/security/server_credentials.h>
#include <grpcpp/server.h>
#include <grpcpp/server_builder.h>
#include <grpcpp/server_context.h>

#include "common/grpc/nss_identity.hpp"
#include "common/grpc/nss_peer.hpp"
#include "common/log/log.hpp"
#include "common/metrics/metrics.hpp"
#include "common/runtime/listener.hpp"
#include "common/runtime/loop.hpp"

namespace common::rpc {

using ::grpc::internal::MethodHandler;
using ::grpc::internal::RpcMethod;
using runtime::Refusal;

struct GrpcRegistry::Method {
  std::string path;   // "/postern.authserv.v1.Auth/Mechanisms": what gRPC routes by
  std::string label;  // "postern.authserv.v1.Auth/Mechanisms": logs and metrics
  RpcMethod::RpcType type = RpcMethod::NORMAL_RPC;
  MethodHandler* inner = nullptr;  // the daemon's handler, owned by its service
};

struct GrpcRegistry::Entry {
  std::string full_name;
  std::deque<Method> methods;  // a deque: gRPC keeps pointers to the path strings
};

namespace {

constexpr std::string_view kComp = "grpc";
constexpr auto kDecisionTtl = std::chrono::minutes(1);
constexpr size_t kMaxDecisions = 4096;

// grpc::Service keeps each method's handler to itself and its subclasses (GetHandler is
// protected). A pointer to that member, formed through a subclass of ours, reads it from the
// daemon's service, which stays unchanged and keeps owning it.
struct HandlerPeek : ::grpc::Service {
  static MethodHandler* of(::grpc::Service& service, int index) {
    return (service.*(&HandlerPeek::GetHandler))(index);
  }
};

RpcMethod::RpcType rpc_type(const google::protobuf::MethodDescriptor& m) {
  if (m.client_streaming() && m.server_streaming()) return RpcMethod::BIDI_STREAMING;
  if (m.client_streaming()) return RpcMethod::CLIENT_STREAMING;
  if (m.server_streaming()) return RpcMethod::SERVER_STREAMING;
  return RpcMethod::NORMAL_RPC;
}

std::string percent_decode(std::string_view in) {
  auto hex = [](char c) -> int {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
  };
  std::string out;
  out.reserve(in.size());
  for (size_t i = 0; i < in.size(); ++i) {
    if (in[i] == '%' && i + 2 < in.size() && hex(in[i + 1]) >= 0 && hex(in[i + 2]) >= 0) {
      out.push_back(static_cast<char>(hex(in[i + 1]) * 16 + hex(in[i + 2])));
      i += 2;
    } else {
      out.push_back(in[i]);
    }
  }
  return out;
}

// The listener's names, except that a gRPC port limits calls, not connections.
std::string_view grpc_refusal_name(Refusal why) {
  return why == Refusal::TooManyConnections ? "call_limit" : runtime::refusal_name(why);
}

std::string_view refusal_text(Refusal why) {
  switch (why) {
    case Refusal::AccessDenied: return "access denied";
    case Refusal::TooManyFromIp: return "too many calls from your address";
    case Refusal::TooManyConnections: return "too many calls";
    case Refusal::Draining: return "shutting down";
  }
  return "refused";
}

::grpc_status_code refusal_code(Refusal why) {
  switch (why) {
    case Refusal::AccessDenied: return GRPC_STATUS_PERMISSION_DENIED;
    case Refusal::TooManyFromIp:
    case Refusal::TooManyConnections: return GRPC_STATUS_RESOURCE_EXHAUSTED;
    case Refusal::Draining: return GRPC_STATUS_UNAVAILABLE;
  }
  return GRPC_STATUS_PERMISSION_DENIED;
}

// One call between its arrival and the gate's verdict.
struct PendingCall {
  PendingCall(const GrpcRegistry::Method& m, const MethodHandler::HandlerParameter& p) : method(m), param(p) {}
  const GrpcRegistry::Method& method;
  const MethodHandler::HandlerParameter param;
  std::string peer_text;  // gRPC's, "ipv4:192.0.2.7:5123": one per connection
  net::Endpoint peer;
  bool holds_slot = false;           // counted by the limiter: released when the call is done
  std::atomic<bool> decided{false};  // the filter's answer and a shutdown race to decide it
};

// Shared by every server a GrpcServer builds (a rebuild keeps counts, metrics and decisions).
class Gate : public std::enable_shared_from_this<Gate> {
 public:
  Gate(const ServerOptions& o, PeerAdmission admission,
       const std::vector<std::shared_ptr<const GrpcRegistry::Entry>>& services)
      : name_(o.name),
        service_(o.service),
        local_(o.listen),
        verify_certificates_(!o.mtls.plaintext),
        admission_(admission),
        limiter_(o.max_calls, o.max_calls_per_ip),
        active_(metrics::default_registry()
                    .gauge_family("postern_grpc_calls_active", "gRPC calls in progress", {"listener"})
                    .with({name_})) {
    auto& refused = metrics::default_registry().counter_family(
        "postern_grpc_calls_refused_total", "gRPC calls refused before the service saw them, by reason",
        {"listener", "reason"});
    for (auto why : {Refusal::AccessDenied, Refusal::TooManyFromIp, Refusal::TooManyConnections, Refusal::Draining})
      refused_[static_cast<size_t>(why)] = &refused.with({name_, grpc_refusal_name(why)});
    no_address_ = &refused.with({name_, "no_peer_address"});
    certificate_refused_ = &refused.with({name_, "certificate_refused"});
    auto& calls = metrics::default_registry().counter_family("postern_grpc_calls_total",
                                                             "gRPC calls admitted, by method", {"listener", "method"});
    for (const auto& e : services)
      for (const auto& m : e->methods) calls_[&m] = &calls.with({name_, m.label});
  }

  // On a gRPC thread, before the daemon's handler: decides now, or after the filter's DNS.
  void admit(const GrpcRegistry::Method& m, const MethodHandler::HandlerParameter& p) {
    auto c = std::make_shared<PendingCall>(m, p);
    c->peer_text = p.server_context->peer();
    if (draining_.load()) return refuse(*c, Refusal::Draining, {});
    auto peer = parse_peer(c->peer_text);
    if (!peer) {
      no_address_->inc();
      log::notice(kComp).session(c->peer_text).phase("admission").event("refused").kv("listener", name_)
          .kv("method", m.label).kv("reason", "no_peer_address");
      return reject(*c, GRPC_STATUS_PERMISSION_DENIED, "access denied");
    }
    c->peer = *peer;
    switch (limiter_.acquire(peer->address)) {
      case runtime::ConnectionLimiter::Verdict::TooManyFromIp: return refuse(*c, Refusal::TooManyFromIp, {});
      case runtime::ConnectionLimiter::Verdict::TooManyConnections: return refuse(*c, Refusal::TooManyConnections, {});
      case runtime::ConnectionLimiter::Verdict::Ok: break;
    }
    c->holds_slot = true;
    if (verify_certificates_ && !certificate_still_good(*c)) return;
    if (admission_.check == nullptr) return run(*c);
    enum class Next { Run, Deny, Closed, Ask } next = Next::Ask;
    std::string rule;
    uint64_t generation = 0;
    {
      std::lock_guard lock(mutex_);
      auto it = decisions_.find(c->peer_text);
      if (closed_) {
        next = Next::Closed;
      } else if (it != decisions_.end() && it->second.until > std::chrono::steady_clock::now()) {
        next = it->second.allowed ? Next::Run : Next::Deny;
        rule = it->second.rule;
      } else {
        generation = generation_;
        pending_.emplace(c.get(), c);
      }
    }
    // Handlers run outside the lock: they may start other calls.
    switch (next) {
      case Next::Run: return run(*c);
      case Next::Deny: return refuse(*c, Refusal::AccessDenied, rule);
      case Next::Closed: return refuse(*c, Refusal::Draining, {});
      case Next::Ask: break;
    }
    admission_.loop->post([self = shared_from_this(), c, generation] { self->check_on_loop(c, generation); });
  }

  void set_limits(size_t max_calls, size_t per_ip) { limiter_.set_limits(max_calls, per_ip); }
  void set_plaintext(bool plaintext) { verify_certificates_ = !plaintext; }
  void start_draining() { draining_ = true; }
  bool draining() const { return draining_.load(); }

  void forget_decisions() {
    std::lock_guard lock(mutex_);
    decisions_.clear();
    certificates_.clear();
    ++generation_;
  }

  // The server is going away while its loop may no longer run: calls still waiting for the filter
  // are refused here (gRPC's shutdown would otherwise wait for them forever).
  void close() {
    std::vector<std::shared_ptr<PendingCall>> waiting;
    {
      std::lock_guard lock(mutex_);
      closed_ = true;
      for (auto& [_, c] : pending_) waiting.push_back(c);
      pending_.clear();
    }
    for (auto& c : waiting) {
      if (!c->decided.exchange(true)) refuse(*c, Refusal::Draining, {});
    }
  }

 private:
  struct Decision {
    bool allowed = false;
    std::string rule;
    std::chrono::steady_clock::time_point until;
  };

  struct CertificateVerdict {
    bool ok = false;
    std::string reason, subject;
    std::chrono::steady_clock::time_point until;
  };

  // The handshake verified the peer's certificate once, against the CRLs of that moment. A
  // connection then lives on (up to max_connection_age), so after a SIGHUP (new CRLs) its next call
  // has NSS verify the certificate again: a front end revoked since it connected is refused from
  // its next call on, without tearing down the connections of everyone else. Refuses and returns
  // false when the certificate no longer verifies.
  bool certificate_still_good(PendingCall& c) {
    CertificateVerdict v;
    bool known = false;
    {
      std::lock_guard lock(mutex_);
      auto it = certificates_.find(c.peer_text);
      if (it != certificates_.end() && it->second.until > std::chrono::steady_clock::now()) {
        v = it->second;
        known = true;
      }
    }
    if (!known) {
      uint64_t generation = 0;
      {
        std::lock_guard lock(mutex_);
        generation = generation_;
      }
      auto auth = c.param.server_context->auth_context();
      auto leaf = auth ? auth->FindPropertyValues(GRPC_X509_PEM_CERT_PROPERTY_NAME) : std::vector<::grpc::string_ref>{};
      auto chain = auth ? auth->FindPropertyValues(GRPC_X509_PEM_CERT_CHAIN_PROPERTY_NAME)
                        : std::vector<::grpc::string_ref>{};
      if (leaf.empty()) {
        v.reason = "no client certificate in the connection's TLS facts";
      } else {
        PeerVerdict nss = verify_peer(std::string_view(leaf.front().data(), leaf.front().size()), PeerRole::Client, {},
                                      chain.empty() ? std::string_view()
                                                    : std::string_view(chain.front().data(), chain.front().size()));
        v.ok = nss.ok;
        v.reason = nss.reason;
        v.subject = nss.subject;
      }
      v.until = std::chrono::steady_clock::now() + kDecisionTtl;
      std::lock_guard lock(mutex_);
      if (generation == generation_) {
        if (certificates_.size() >= kMaxDecisions) certificates_.clear();
        certificates_[c.peer_text] = v;
      }
    }
    if (v.ok) return true;
    certificate_refused_->inc();
    {
      auto line = log::warning(kComp);
      line.session(c.peer_text).client(c.peer.to_string()).phase("admission").event("refused")
          .kv("listener", name_).kv("method", c.method.label).kv("reason", "certificate_refused")
          .kv("detail", v.reason);
      line.client_text("subject", v.subject);
    }
    reject(c, GRPC_STATUS_UNAUTHENTICATED, "peer certificate refused");
    return false;
  }

  void check_on_loop(const std::shared_ptr<PendingCall>& c, uint64_t generation) {
    if (c->decided.load()) return;  // close() refused it; the check may be gone
    runtime::ConnectionInfo info;
    info.id = c->peer_text;
    info.listener = name_;
    info.service = service_;
    info.peer = c->peer;
    // For a wildcard listen address this is the wildcard: rules naming our own host then see no
    // address of ours (gRPC does not tell a call which local address it came in on).
    info.local = local_;
    admission_.check->check(info, [self = shared_from_this(), c, generation](runtime::AdmissionCheck::Outcome o) {
      self->remember(c->peer_text, o, generation);
      {
        std::lock_guard lock(self->mutex_);
        self->pending_.erase(c.get());
      }
      if (c->decided.exchange(true)) return;
      if (o.allowed) return self->run(*c);
      self->refuse(*c, Refusal::AccessDenied, o.rule);
    });
  }

  void remember(const std::string& peer, const runtime::AdmissionCheck::Outcome& o, uint64_t generation) {
    std::lock_guard lock(mutex_);
    if (generation != generation_) return;  // decided under a filter that has been replaced since
    auto now = std::chrono::steady_clock::now();
    if (decisions_.size() >= kMaxDecisions) {
      std::erase_if(decisions_, [now](const auto& d) { return d.second.until <= now; });
      if (decisions_.size() >= kMaxDecisions) decisions_.clear();
    }
    decisions_[peer] = Decision{o.allowed, o.rule, now + kDecisionTtl};
    log::debug(kComp).session(peer).phase("admission").event(o.allowed ? "admitted" : "denied")
        .kv("listener", name_).kv("rule", o.rule);
  }

  std::function<void()> requester_for(const PendingCall& c) {
    auto inner = c.param.call_requester;
    if (!c.holds_slot) return inner;
    return [self = shared_from_this(), address = c.peer.address, inner] {
      self->limiter_.release(address);
      if (inner) inner();
    };
  }

  void run(PendingCall& c) {
    if (auto it = calls_.find(&c.method); it != calls_.end()) it->second->inc();
    active_.inc();
    auto requester = requester_for(c);
    MethodHandler::HandlerParameter p(c.param.call, c.param.server_context, c.param.request, c.param.status,
                                      c.param.internal_data, [this, self = shared_from_this(), requester] {
                                        active_.dec();
                                        if (requester) requester();
                                      });
    c.method.inner->RunHandler(p);
  }

  void refuse(PendingCall& c, Refusal why, std::string_view rule) {
    refused_[static_cast<size_t>(why)]->inc();
    {
      // Written before the client can hear of the refusal.
      auto line = log::notice(kComp);
      line.session(c.peer_text).phase("admission").event("refused").kv("listener", name_)
          .kv("method", c.method.label).kv("reason", grpc_refusal_name(why));
      if (c.peer.port != 0) line.client(c.peer.to_string());
      if (!rule.empty()) line.kv("rule", rule);
    }
    reject(c, refusal_code(why), refusal_text(why));
  }

  // The client gets `code` now; the daemon's handler is then run with a failed request status, so
  // gRPC finishes the call with a stock reactor and never calls the service's method.
  void reject(PendingCall& c, ::grpc_status_code code, std::string_view message) {
    std::string text(message);
    ::grpc_call_cancel_with_status(c.param.server_context->c_call(), code, text.c_str(), nullptr);
    MethodHandler::HandlerParameter p(c.param.call, c.param.server_context, c.param.request,
                                      ::grpc::Status(::grpc::StatusCode::CANCELLED, text), c.param.internal_data,
                                      requester_for(c));
    c.method.inner->RunHandler(p);
  }

  const std::string name_;
  const std::string service_;
  const net::Endpoint local_;
  std::atomic<bool> verify_certificates_;
  const PeerAdmission admission_;
  runtime::ConnectionLimiter limiter_;
  std::atomic<bool> draining_{false};
  metrics::Gauge& active_;
  std::array<metrics::Counter*, 4> refused_{};
  metrics::Counter* no_address_ = nullptr;
  metrics::Counter* certificate_refused_ = nullptr;
  std::unordered_map<const GrpcRegistry::Method*, metrics::Counter*> calls_;

  std::mutex mutex_;  // what follows
  bool closed_ = false;
  uint64_t generation_ = 0;
  std::unordered_map<std::string, Decision> decisions_;  // by peer text, i.e. per connection
  std::unordered_map<std::string, CertificateVerdict> certificates_;  // the same
  std::unordered_map<PendingCall*, std::shared_ptr<PendingCall>> pending_;
};

class GatedHandler final : public MethodHandler {
 public:
  GatedHandler(const GrpcRegistry::Method& method, std::shared_ptr<Gate> gate)
      : method_(method), gate_(std::move(gate)) {}
  void RunHandler(const HandlerParameter& param) override { gate_->admit(method_, param); }
  void* Deserialize(grpc_call* call, grpc_byte_buffer* req, ::grpc::Status* status, void** handler_data) override {
    return method_.inner->Deserialize(call, req, status, handler_data);
  }

 private:
  const GrpcRegistry::Method& method_;
  std::shared_ptr<Gate> gate_;
};

// What one gRPC server serves for one registered service: its methods, each behind the gate. A
// grpc::Service can belong to one server only (each server tags its methods), so every build gets
// fronts of its own while the daemon's service and handlers stay the same.
class FrontService final : public ::grpc::Service {
 public:
  FrontService(const GrpcRegistry::Entry& entry, const std::shared_ptr<Gate>& gate) {
    int index = 0;
    for (const auto& m : entry.methods) {
      AddMethod(new ::grpc::internal::RpcServiceMethod(m.path.c_str(), m.type, nullptr));
      MarkMethodCallback(index++, new GatedHandler(m, gate));
    }
  }
};

// One built server with its fronts (the fronts must outlive the server).
struct Built {
  std::vector<std::unique_ptr<FrontService>> fronts;
  std::unique_ptr<::grpc::Server> server;
};

// SO_REUSEPORT (which gRPC sets, and a rebuild needs) would let us share the port with any other
// process of this user without a word; a plain bind first proves the port is free.
Result<void> probe_port(const net::Endpoint& ep) {
  if (ep.port == 0) return {};
  int fd = ::socket(ep.address.is_v4() ? AF_INET : AF_INET6, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return fail(ErrorKind::Config, "socket: " + std::string(std::strerror(errno)));
  int one = 1;
  ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  if (!ep.address.is_v4()) {
    int v6only = ep.address.is_unspecified() ? 0 : 1;
    ::setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &v6only, sizeof v6only);
  }
  sockaddr_storage ss;
  socklen_t len = ep.to_sockaddr(ss);
  int rc = ::bind(fd, reinterpret_cast<sockaddr*>(&ss), len);
  int err = errno;
  ::close(fd);
  if (rc != 0) return fail(ErrorKind::Config, "gRPC: bind " + ep.to_string() + ": " + std::strerror(err) + " (port in use?)");
  return {};
}

}  // namespace

// ---- GrpcRegistry -----------------------------------------------------------------------------

GrpcRegistry::GrpcRegistry(std::vector<runtime::Loop*> loops) : loops_(std::move(loops)) {}
GrpcRegistry::~GrpcRegistry() = default;

void GrpcRegistry::add(::grpc::Service& service, std::string_view full_name) {
  auto refuse = [&](std::string why) {
    if (error_.empty()) error_ = "gRPC service " + std::string(full_name) + ": " + why;
  };
  // The gate hands each call on from a gRPC thread or a loop; only callback handlers allow that.
  if (!service.has_callback_methods() || service.has_synchronous_methods() || service.has_async_methods() ||
      service.has_generic_methods())
    return refuse("every method must use the callback API (...::CallbackService)");
  const auto* descriptor =
      google::protobuf::DescriptorPool::generated_pool()->FindServiceByName(std::string(full_name));
  if (descriptor == nullptr) return refuse("no such service in the linked descriptors");
  for (const auto& other : services_)
    if (other->full_name == full_name) return refuse("registered twice");
  auto entry = std::make_shared<Entry>();
  entry->full_name = std::string(full_name);
  // Generated services number their methods in the order of the .proto, as the descriptor does.
  for (int i = 0; i < descriptor->method_count(); ++i) {
    const auto* m = descriptor->method(i);
    Method method;
    method.label = entry->full_name + "/" + m->name();
    method.path = "/" + method.label;
    method.type = rpc_type(*m);
    method.inner = HandlerPeek::of(service, i);
    if (method.inner == nullptr) return refuse("method " + m->name() + " has no handler");
    entry->methods.push_back(std::move(method));
  }
  services_.push_back(std::move(entry));
}

void GrpcRegistry::set_message_limits(size_t max_receive, size_t max_send) {
  max_receive_ = max_receive;
  max_send_ = max_send;
}

void GrpcRegistry::post(size_t index, std::function<void()> work) { loop(index).post(std::move(work)); }

runtime::Loop& GrpcRegistry::loop(size_t index) { return *loops_.at(index % loops_.size()); }

// ---- GrpcServer -------------------------------------------------------------------------------

struct GrpcServer::Impl {
  ServerOptions options;
  std::vector<std::shared_ptr<const GrpcRegistry::Entry>> services;
  size_t max_receive = 0, max_send = 0;
  std::shared_ptr<Gate> gate;
  std::string address;  // what gRPC binds, with the port it got
  int port = 0;
  std::string identity;  // the certificate chain and CA the running server was built with

  std::mutex mutex;  // what follows
  std::condition_variable retired;
  std::shared_ptr<Built> current;
  std::vector<std::shared_ptr<Built>> retiring;  // replaced by a rebuild, shutting down
  std::vector<std::thread> threads;              // their shutdowns, and the drain

  // What the server would present and trust if built now; "" for plaintext.
  Result<std::string> identity_now() const {
    if (options.mtls.plaintext) return std::string();
    auto chain = certificate_chain_pem(options.mtls.certificate);
    if (!chain) return tl::unexpected(chain.error());
    auto roots = trusted_roots_pem(options.mtls.ca);
    if (!roots) return tl::unexpected(roots.error());
    return *chain + *roots;
  }

  Result<std::shared_ptr<Built>> build(const std::string& where, int* bound) {
    auto now = identity_now();
    if (!now) return tl::unexpected(now.error());
    auto credentials = server_credentials(options.mtls);
    if (!credentials) return tl::unexpected(credentials.error());
    auto b = std::make_shared<Built>();
    ::grpc::ServerBuilder builder;
    builder.AddListeningPort(where, *credentials, bound);
    for (const auto& entry : services) {
      b->fronts.push_back(std::make_unique<FrontService>(*entry, gate));
      builder.RegisterService(b->fronts.back().get());
    }
    builder.SetMaxReceiveMessageSize(static_cast<int>(std::min<size_t>(max_receive, INT32_MAX)));
    builder.SetMaxSendMessageSize(static_cast<int>(std::min<size_t>(max_send, INT32_MAX)));
    auto ms = [](std::chrono::milliseconds d) { return static_cast<int>(std::min<int64_t>(d.count(), INT32_MAX)); };
    builder.AddChannelArgument(GRPC_ARG_MAX_CONNECTION_AGE_MS, ms(options.max_connection_age));
    builder.AddChannelArgument(GRPC_ARG_MAX_CONNECTION_AGE_GRACE_MS, ms(options.max_connection_age_grace));
    // The next server of a rebuild binds the same address while this one still listens.
    builder.AddChannelArgument(GRPC_ARG_ALLOW_REUSEPORT, 1);
    b->server = builder.BuildAndStart();
    if (!b->server || *bound == 0) return fail(ErrorKind::Config, "gRPC cannot listen on " + where);
    identity = std::move(*now);
    gate->set_plaintext(options.mtls.plaintext);
    return b;
  }

  // Called with `mutex` held.
  void retire(std::shared_ptr<Built> old, std::chrono::milliseconds grace) {
    retiring.push_back(old);
    threads.emplace_back([this, old, grace] {
      old->server->Shutdown(std::chrono::system_clock::now() + grace);
      std::lock_guard lock(mutex);
      std::erase(retiring, old);
      retired.notify_all();
    });
  }

  std::vector<std::shared_ptr<Built>> all_servers() {
    std::lock_guard lock(mutex);
    auto out = retiring;
    if (current) out.push_back(current);
    return out;
  }
};

GrpcServer::GrpcServer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

Result<std::unique_ptr<GrpcServer>> GrpcServer::start(ServerOptions options, const GrpcRegistry& registry,
                                                      PeerAdmission admission) {
  if (!registry.error_.empty()) return fail(ErrorKind::Internal, registry.error_);
  if (registry.services_.empty()) return fail(ErrorKind::Internal, "gRPC: the daemon registered no service");
  if (admission.check != nullptr && admission.loop == nullptr)
    return fail(ErrorKind::Internal, "gRPC: an admission check needs its loop");
  if (auto free = probe_port(options.listen); !free) return tl::unexpected(free.error());
  auto impl = std::make_unique<Impl>();
  impl->options = std::move(options);
  impl->services = registry.services_;
  impl->max_receive = registry.max_receive_;
  impl->max_send = registry.max_send_;
  impl->gate = std::make_shared<Gate>(impl->options, admission, impl->services);
  auto built = impl->build(impl->options.listen.to_string(), &impl->port);
  if (!built) return tl::unexpected(built.error());
  impl->current = std::move(*built);
  net::Endpoint bound = impl->options.listen;
  bound.port = static_cast<uint16_t>(impl->port);
  impl->address = bound.to_string();
  std::string names;
  for (const auto& s : impl->services) names += (names.empty() ? "" : ",") + s->full_name;
  log::info(kComp).phase("start").event("listening").kv("listener", impl->options.name)
      .kv("address", impl->address).kv("service", impl->options.service).kv("services", names)
      .kv("mtls", impl->options.mtls.plaintext ? "no" : "yes")
      .kv("max_connection_age_ms", static_cast<int64_t>(impl->options.max_connection_age.count()));
  return std::unique_ptr<GrpcServer>(new GrpcServer(std::move(impl)));
}

GrpcServer::~GrpcServer() {
  impl_->gate->start_draining();
  impl_->gate->close();
  for (auto& b : impl_->all_servers()) ::grpc_server_cancel_all_calls(b->server->c_server());
  std::shared_ptr<Built> current;
  {
    std::lock_guard lock(impl_->mutex);
    current = impl_->current;
  }
  if (current) current->server->Shutdown(std::chrono::system_clock::now());
  std::vector<std::thread> threads;
  {
    std::lock_guard lock(impl_->mutex);
    threads.swap(impl_->threads);
  }
  for (auto& t : threads) t.join();  // the gate refuses everything now: no rebuild or drain adds one
  impl_->current.reset();
}

int GrpcServer::port() const { return impl_->port; }

const ServerOptions& GrpcServer::options() const { return impl_->options; }

void GrpcServer::set_limits(size_t max_calls, size_t max_calls_per_ip) {
  impl_->options.max_calls = max_calls;
  impl_->options.max_calls_per_ip = max_calls_per_ip;
  impl_->gate->set_limits(max_calls, max_calls_per_ip);
}

void GrpcServer::policy_changed() { impl_->gate->forget_decisions(); }

Result<void> GrpcServer::rebuild(ServerOptions options, std::chrono::milliseconds grace) {
  if (impl_->gate->draining()) return fail(ErrorKind::TempFail, "gRPC: draining, not rebuilt");
  if (options.listen != impl_->options.listen)
    return fail(ErrorKind::Config, "gRPC listen address changed from " + impl_->options.listen.to_string() + " to " +
                                       options.listen.to_string() + ": restart the daemon for that");
  ServerOptions previous = impl_->options;
  impl_->options = std::move(options);
  int bound = 0;
  auto fresh = impl_->build(impl_->address, &bound);
  if (!fresh) {
    impl_->options = std::move(previous);
    log::error(kComp).phase("reload").event("rebuild_failed").kv("listener", impl_->options.name)
        .kv("reason", fresh.error().detail).kv("effect", "the running server keeps its credentials");
    return tl::unexpected(fresh.error());
  }
  set_limits(impl_->options.max_calls, impl_->options.max_calls_per_ip);
  {
    std::lock_guard lock(impl_->mutex);
    auto old = std::move(impl_->current);
    impl_->current = std::move(*fresh);
    impl_->retire(std::move(old), grace);
  }
  log::info(kComp).phase("reload").event("rebuilt").kv("listener", impl_->options.name).kv("address", impl_->address)
      .kv("grace_ms", static_cast<int64_t>(grace.count()));
  return {};
}

Result<bool> GrpcServer::reload(ServerOptions options, std::chrono::milliseconds grace) {
  if (options.listen != impl_->options.listen)
    return fail(ErrorKind::Config, "gRPC listen address changed from " + impl_->options.listen.to_string() + " to " +
                                       options.listen.to_string() + ": restart the daemon for that");
  set_limits(options.max_calls, options.max_calls_per_ip);
  // Every connection's next call is checked again: the access filter and, against the CRLs NSS
  // holds now, the peer's certificate.
  impl_->gate->forget_decisions();
  const auto& old = impl_->options;
  bool same_settings = options.mtls.plaintext == old.mtls.plaintext && options.mtls.certificate == old.mtls.certificate &&
                       options.mtls.ca == old.mtls.ca && options.max_connection_age == old.max_connection_age &&
                       options.max_connection_age_grace == old.max_connection_age_grace;
  if (same_settings) {
    ServerOptions probe = options;
    std::swap(probe, impl_->options);
    auto now = impl_->identity_now();
    std::swap(probe, impl_->options);
    if (!now) {
      log::error(kComp).phase("reload").event("identity_unreadable").kv("listener", old.name)
          .kv("reason", now.error().detail).kv("effect", "the running server keeps its credentials");
      return tl::unexpected(now.error());
    }
    // A new server costs the calls that race its predecessor's shutdown (gRPC cancels what arrives
    // after Shutdown began), so it is built only when it would serve something new.
    if (*now == impl_->identity) {
      impl_->options = std::move(options);
      return false;
    }
    log::info(kComp).phase("reload").event("certificate_changed").kv("listener", old.name)
        .kv("certificate", options.mtls.certificate);
  }
  if (auto rc = rebuild(std::move(options), grace); !rc) return tl::unexpected(rc.error());
  return true;
}

void GrpcServer::drain(std::chrono::milliseconds grace, std::function<void()> done) {
  impl_->gate->start_draining();
  std::lock_guard lock(impl_->mutex);
  impl_->threads.emplace_back([impl = impl_.get(), grace, done = std::move(done)] {
    std::shared_ptr<Built> current;
    {
      std::lock_guard lock(impl->mutex);
      current = impl->current;
    }
    if (current) current->server->Shutdown(std::chrono::system_clock::now() + grace);
    {
      std::unique_lock lock(impl->mutex);
      impl->retired.wait(lock, [impl] { return impl->retiring.empty(); });
    }
    log::info(kComp).phase("drain").event("drained").kv("listener", impl->options.name);
    if (done) done();
  });
}

void GrpcServer::cancel_all() {
  for (auto& b : impl_->all_servers()) ::grpc_server_cancel_all_calls(b->server->c_server());
}

std::optional<net::Endpoint> parse_peer(std::string_view peer) {
  std::string text = percent_decode(peer);
  std::string_view rest = text;
  if (rest.starts_with("ipv4:") || rest.starts_with("ipv6:")) {
    rest.remove_prefix(5);
  } else {
    return std::nullopt;
  }
  auto ep = net::Endpoint::parse(rest);
  if (!ep) return std::nullopt;
  if (!ep->address.is_v4()) {
    sockaddr_in6 sa{};
    sa.sin6_family = AF_INET6;
    std::memcpy(&sa.sin6_addr, ep->address.bytes().data(), 16);
    if (auto plain = net::IpAddress::from_sockaddr(reinterpret_cast<const sockaddr*>(&sa))) ep->address = *plain;
  }
  return ep;
}

}  // namespace common::rpc
