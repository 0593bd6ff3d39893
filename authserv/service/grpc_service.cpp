// grpc_service.cpp: the Auth service over gRPC's callback API. Converts messages to Core's types
// and back; handlers never block a gRPC thread on hashing or LDAP (Core runs those on its pools).
#include "authserv/service/grpc_service.hpp"

#include <grpcpp/grpcpp.h>

#include <atomic>
#include <mutex>
#include <optional>

#include "common/grpc/server.hpp"
#include "common/log/log.hpp"
#include "proto/authserv.grpc.pb.h"

namespace authserv::service {
namespace {

namespace pb = postern::authserv::v1;

Facts to_facts(const pb::ConnectionFacts& f, std::string front_end) {
  Facts out;
  out.service = f.service();
  out.client_address = f.client_address();
  out.client_name = f.client_name();
  out.server_address = f.server_address();
  out.tls_version = f.tls_version();
  out.tls_cipher = f.tls_cipher();
  out.client_cert_subject = f.client_cert_subject();
  out.client_cert_issuer = f.client_cert_issuer();
  out.client_cert_der = f.client_cert_der();
  out.channel_binding = f.channel_binding();
  out.session_id = f.session_id();
  out.default_domain = f.default_domain();
  out.front_end = std::move(front_end);
  return out;
}

Facts to_facts(const pb::ConnectionFacts& f, const grpc::CallbackServerContext& context) {
  return to_facts(f, common::rpc::peer_identity(context).common_name);
}

pb::FailureKind to_proto(FailureKind k) {
  switch (k) {
    case FailureKind::Credentials: return pb::FAILURE_CREDENTIALS;
    case FailureKind::NotAllowed: return pb::FAILURE_NOT_ALLOWED;
    case FailureKind::Authz: return pb::FAILURE_AUTHZ;
    case FailureKind::Protocol: return pb::FAILURE_PROTOCOL;
    case FailureKind::Mechanism: return pb::FAILURE_MECHANISM;
    case FailureKind::Aborted: return pb::FAILURE_ABORTED;
    case FailureKind::Temporary: return pb::FAILURE_TEMPORARY;
    case FailureKind::Unspecified: break;
  }
  return pb::FAILURE_UNSPECIFIED;
}

void to_proto(const Reply& r, pb::AuthReply& out) {
  out.Clear();
  switch (r.kind) {
    case Reply::Kind::Challenge: out.set_challenge(r.data); break;
    case Reply::Kind::Success: {
      auto* u = out.mutable_success();
      u->set_canonical(r.user.canonical);
      u->set_authcid(r.user.authcid);
      u->set_mail_host(r.user.mail_host);
      for (const auto& a : r.user.addresses) u->add_addresses(a);
      u->set_token(r.user.token);
      u->set_token_expires_unix(r.user.token_expires);
      u->set_quota_bytes(r.user.quota_bytes);
      u->set_quota_messages(r.user.quota_messages);
      out.set_additional_data(r.data);
      break;
    }
    case Reply::Kind::Failure: {
      auto* f = out.mutable_failure();
      f->set_kind(to_proto(r.failure));
      f->set_reason(r.reason);
      break;
    }
  }
}

grpc::Status temp_fail(const common::Error& e) {
  return grpc::Status(grpc::StatusCode::UNAVAILABLE, e.kind == common::ErrorKind::TempFail ? "directory unavailable" : "lookup failed");
}

void to_proto(const directory::Recipient& r, pb::LookupRecipientResponse& out) {
  switch (r.kind) {
    case directory::RecipientKind::User:
      out.set_kind(pb::LookupRecipientResponse::USER);
      if (r.user) {
        out.set_canonical(r.user->canonical);
        out.set_mail_host(r.user->mail_host);
        out.set_status(std::string(directory::status_name(r.user->status)));
        out.set_quota_bytes(r.user->quota_bytes);
        out.set_quota_messages(r.user->quota_messages);
      }
      break;
    case directory::RecipientKind::Alias:
      out.set_kind(pb::LookupRecipientResponse::ALIAS);
      for (const auto& t : r.targets) out.add_targets(t);
      break;
    case directory::RecipientKind::Unknown:
      out.set_kind(pb::LookupRecipientResponse::UNKNOWN);
      break;
  }
}

constexpr int kMaxBatch = 256;

// One LookupRecipients call while its lookups run; the last one to answer finishes the call.
struct RecipientBatch {
  RecipientBatch(grpc::ServerUnaryReactor* r, pb::LookupRecipientsResponse* resp, size_t n, size_t max_send)
      : reactor(r), response(resp), remaining(n), max_send(max_send) {}

  void fail(const common::Error& e) {
    std::lock_guard lock(mu);
    if (!error) error = e;
  }
  void one_done() {
    if (remaining.fetch_sub(1) != 1) return;
    if (error) return reactor->Finish(temp_fail(*error));
    // gRPC would refuse to send it anyway; this code tells the client to ask one by one instead.
    if (response->ByteSizeLong() > max_send)
      return reactor->Finish(grpc::Status(grpc::StatusCode::RESOURCE_EXHAUSTED, "answers too large for one batch"));
    reactor->Finish(grpc::Status::OK);
  }

  grpc::ServerUnaryReactor* reactor;
  pb::LookupRecipientsResponse* response;
  std::atomic<size_t> remaining;
  size_t max_send;
  std::mutex mu;
  std::optional<common::Error> error;
};

// One Authenticate stream: read a step, let the exchange answer, write, read the next.
class AuthenticateReactor final : public grpc::ServerBidiReactor<pb::AuthStep, pb::AuthReply> {
 public:
  AuthenticateReactor(Core& core, grpc::CallbackServerContext* context, std::atomic<size_t>& active, size_t limit)
      : core_(core), context_(context), active_(active) {
    if (active_.fetch_add(1) >= limit) {
      Finish(grpc::Status(grpc::StatusCode::RESOURCE_EXHAUSTED, "too many authentications in progress"));
      return;
    }
    StartRead(&in_);
  }

  void OnReadDone(bool ok) override {
    // Not ok: the front end closed or went away while no reply was pending.
    if (!ok) return Finish(grpc::Status::OK);
    auto deliver = [this](Reply r) { write(std::move(r)); };
    switch (in_.step_case()) {
      case pb::AuthStep::kStart: {
        if (exchange_) return write(protocol_error("second start"));
        const auto& s = in_.start();
        exchange_ = core_.begin(to_facts(s.facts(), *context_), s.check_only());
        std::optional<std::string> initial;
        if (s.has_initial_response()) initial = s.initial_response();
        return exchange_->start(s.mechanism(), std::move(initial), deliver);
      }
      case pb::AuthStep::kResponse:
        if (!exchange_) return write(protocol_error("response before start"));
        return exchange_->respond(in_.response(), deliver);
      case pb::AuthStep::kAbort:
        if (!exchange_) return write(protocol_error("abort before start"));
        return exchange_->abort(deliver);
      case pb::AuthStep::STEP_NOT_SET: break;
    }
    write(protocol_error("empty step"));
  }

  void OnWriteDone(bool ok) override {
    if (!ok) return Finish(grpc::Status(grpc::StatusCode::CANCELLED, "front end went away"));
    if (final_) return Finish(grpc::Status::OK);
    StartRead(&in_);
  }

  void OnDone() override {
    active_.fetch_sub(1);
    delete this;
  }

 private:
  static Reply protocol_error(std::string reason) {
    Reply r;
    r.failure = FailureKind::Protocol;
    r.reason = std::move(reason);
    return r;
  }
  void write(Reply r) {
    final_ = r.final();
    to_proto(r, out_);
    StartWrite(&out_);
  }

  Core& core_;
  grpc::CallbackServerContext* context_;
  std::atomic<size_t>& active_;
  std::shared_ptr<Exchange> exchange_;
  pb::AuthStep in_;
  pb::AuthReply out_;
  bool final_ = false;
};

class AuthService final : public pb::Auth::CallbackService {
 public:
  AuthService(Core& core, AdminHandler* admin, size_t max_exchanges, size_t max_send, bool plaintext)
      : core_(core), admin_(admin), max_exchanges_(max_exchanges), max_send_(max_send), plaintext_(plaintext) {}

  grpc::ServerUnaryReactor* Mechanisms(grpc::CallbackServerContext* context, const pb::MechanismsRequest* request,
                                       pb::MechanismsResponse* response) override {
    for (auto& m : core_.mechanisms(to_facts(request->facts(), *context))) response->add_mechanisms(m);
    auto* reactor = context->DefaultReactor();
    reactor->Finish(grpc::Status::OK);
    return reactor;
  }

  grpc::ServerBidiReactor<pb::AuthStep, pb::AuthReply>* Authenticate(grpc::CallbackServerContext* context) override {
    return new AuthenticateReactor(core_, context, active_exchanges_, max_exchanges_);
  }

  grpc::ServerUnaryReactor* LookupUser(grpc::CallbackServerContext* context, const pb::LookupUserRequest* request,
                                       pb::LookupUserResponse* response) override {
    auto* reactor = context->DefaultReactor();
    core_.lookup_user(to_facts(request->facts(), *context), request->login(),
                      [reactor, response](common::Result<std::optional<directory::UserRecord>> r) {
                        if (!r) return reactor->Finish(temp_fail(r.error()));
                        if (*r) {
                          const auto& u = **r;
                          response->set_found(true);
                          auto* out = response->mutable_user();
                          out->set_canonical(u.canonical);
                          out->set_status(std::string(directory::status_name(u.status)));
                          out->set_mail_host(u.mail_host);
                          out->set_allowed_services(u.allowed_services);
                          out->set_domain_allowed_services(u.domain_allowed_services);
                          out->set_quota_bytes(u.quota_bytes);
                          out->set_quota_messages(u.quota_messages);
                          out->set_sieve(u.sieve);
                          for (const auto& a : u.addresses) out->add_addresses(a);
                          out->set_store_admin(u.store_admin);
                        }
                        reactor->Finish(grpc::Status::OK);
                      });
    return reactor;
  }

  grpc::ServerUnaryReactor* LookupRecipient(grpc::CallbackServerContext* context,
                                            const pb::LookupRecipientRequest* request,
                                            pb::LookupRecipientResponse* response) override {
    auto* reactor = context->DefaultReactor();
    core_.lookup_recipient(to_facts(request->facts(), *context), request->address(),
                           [reactor, response](common::Result<directory::Recipient> r) {
                             if (!r) return reactor->Finish(temp_fail(r.error()));
                             to_proto(*r, *response);
                             reactor->Finish(grpc::Status::OK);
                           });
    return reactor;
  }

  grpc::ServerUnaryReactor* LookupRecipients(grpc::CallbackServerContext* context,
                                             const pb::LookupRecipientsRequest* request,
                                             pb::LookupRecipientsResponse* response) override {
    auto* reactor = context->DefaultReactor();
    const int n = request->requests_size();
    if (n == 0 || n > kMaxBatch) {
      reactor->Finish(grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                                   "a batch holds 1 to " + std::to_string(kMaxBatch) + " lookups"));
      return reactor;
    }
    // Every slot exists before the first lookup starts: with a blocking backend the answers arrive
    // on pool threads at once, each writing only its own slot.
    for (int i = 0; i < n; ++i) response->add_responses();
    auto batch = std::make_shared<RecipientBatch>(reactor, response, static_cast<size_t>(n), max_send_);
    const auto front_end = common::rpc::peer_identity(*context).common_name;
    for (int i = 0; i < n; ++i) {
      const auto& one = request->requests(i);
      core_.lookup_recipient(to_facts(one.facts(), front_end), one.address(),
                             [batch, i](common::Result<directory::Recipient> r) {
                               if (r) to_proto(*r, *batch->response->mutable_responses(i));
                               else batch->fail(r.error());
                               batch->one_done();
                             });
    }
    return reactor;
  }

  grpc::ServerUnaryReactor* RenewToken(grpc::CallbackServerContext* context, const pb::RenewTokenRequest* request,
                                       pb::RenewTokenResponse* response) override {
    auto* reactor = context->DefaultReactor();
    auto facts = to_facts(request->facts(), *context);
    core_.renew_token(facts, request->token(), [reactor, response, facts](common::Result<Core::Renewal> r) {
      if (r) {
        response->set_ok(true);
        response->set_token(r->token);
        response->set_token_expires_unix(r->expires);
      } else if (r.error().kind == common::ErrorKind::TempFail) {
        return reactor->Finish(temp_fail(r.error()));
      } else {
        response->set_reason(r.error().detail);
        common::log::notice("auth").session(facts.session_id).phase("renew").event("renew_refused")
            .kv("front_end", facts.front_end).client_text("reason", r.error().detail);
      }
      reactor->Finish(grpc::Status::OK);
    });
    return reactor;
  }

  grpc::ServerUnaryReactor* Admin(grpc::CallbackServerContext* context, const pb::AdminRequest* request,
                                  pb::AdminResponse* response) override {
    auto* reactor = context->DefaultReactor();
    auto peer = common::rpc::peer_identity(*context).common_name;
    const auto& admins = core_.settings().admins;
    bool allowed = plaintext_ ? context->peer().starts_with("ipv4:127.") || context->peer().starts_with("ipv6:[::1]")
                              : std::find(admins.begin(), admins.end(), peer) != admins.end();
    if (!allowed || admin_ == nullptr) {
      common::log::warning("admin").phase("admin").event("admin_refused").kv("peer", peer.empty() ? context->peer() : peer);
      reactor->Finish(grpc::Status(grpc::StatusCode::PERMISSION_DENIED,
                                   admin_ == nullptr ? "this directory is not editable through authserv" : "not an admin"));
      return reactor;
    }
    auto serialized = std::make_shared<std::string>(request->SerializeAsString());
    bool queued = core_.run_hashing([this, reactor, response, serialized, peer] {
      std::string answer = admin_->handle(*serialized);
      if (!response->ParseFromString(answer)) response->set_error("internal: bad admin answer");
      common::log::info("admin").phase("admin").event("admin_call").kv("peer", peer).kv("ok", response->ok() ? "yes" : "no");
      reactor->Finish(grpc::Status::OK);
    }, "admin:" + peer);
    if (!queued) reactor->Finish(grpc::Status(grpc::StatusCode::RESOURCE_EXHAUSTED, "busy"));
    return reactor;
  }

 private:
  Core& core_;
  AdminHandler* admin_;
  size_t max_exchanges_;
  size_t max_send_;
  bool plaintext_;
  std::atomic<size_t> active_exchanges_{0};
};

}  // namespace

struct AuthGrpc::Impl {
  Impl(Core& core, AdminHandler* admin, const ServiceOptions& o)
      : service(core, admin, o.max_exchanges, kMaxReply, o.plaintext) {}
  AuthService service;
};

AuthGrpc::AuthGrpc(Core& core, AdminHandler* admin, ServiceOptions options)
    : impl_(std::make_unique<Impl>(core, admin, options)) {}
AuthGrpc::~AuthGrpc() = default;

void AuthGrpc::register_with(common::rpc::GrpcRegistry& registry) {
  registry.add<pb::Auth>(impl_->service);
  registry.set_message_limits(kMaxRequest, kMaxReply);
}

}  // namespace authserv::service
