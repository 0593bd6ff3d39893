// fake_authserv.cpp: the Auth callback service behind FakeAuthserv (answers on gRPC's threads; the
// real authserv hops onto its loop, which makes no difference to the client).
#include "tests/common/authclient/fake_authserv.hpp"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <functional>
#include <map>
#include <mutex>
#include <optional>

#include <catch2/catch.hpp>
#include <grpcpp/grpcpp.h>

#include "common/grpc/credentials.hpp"
#include "proto/authserv.grpc.pb.h"

namespace test {

namespace pb = postern::authserv::v1;

namespace {

std::string hex(std::string_view bytes) {
  static const char* digits = "0123456789abcdef";
  std::string out;
  for (unsigned char c : bytes) {
    out.push_back(digits[c >> 4]);
    out.push_back(digits[c & 15]);
  }
  return out;
}

pb::AuthReply failure(pb::FailureKind kind, std::string reason) {
  pb::AuthReply r;
  r.mutable_failure()->set_kind(kind);
  r.mutable_failure()->set_reason(std::move(reason));
  return r;
}
pb::AuthReply challenge(std::string bytes) {
  pb::AuthReply r;
  r.set_challenge(std::move(bytes));
  return r;
}
pb::AuthReply success(std::string additional = {}) {
  pb::AuthReply r;
  auto* u = r.mutable_success();
  u->set_canonical("alice@example.com");
  u->set_authcid("alice");
  u->set_mail_host("store1");
  u->add_addresses("alice@example.com");
  u->set_token("tok");
  u->set_token_expires_unix(2000000000);
  u->set_quota_bytes(1 << 20);
  r.set_additional_data(std::move(additional));
  return r;
}
pb::AuthReply plain_verdict(std::string_view message) {
  if (message == std::string_view("\0alice\0secret", 13)) return success();
  return failure(pb::FAILURE_CREDENTIALS, "wrong password");
}

}  // namespace

struct FakeAuthserv::Impl final : pb::Auth::CallbackService {
  // A unary call answered later by release(), or finished as cancelled when the client gives up.
  class Held final : public grpc::ServerUnaryReactor {
   public:
    Held(Impl& svc, std::function<void()> fill) : svc_(svc), fill_(std::move(fill)) {}
    void answer() {
      if (finished_.exchange(true)) return;
      fill_();
      Finish(grpc::Status::OK);
    }
    void OnCancel() override {
      if (!finished_.exchange(true)) Finish(grpc::Status::CANCELLED);
    }
    void OnDone() override {
      svc_.forget(this);
      delete this;
    }

   private:
    Impl& svc_;
    std::function<void()> fill_;
    std::atomic<bool> finished_{false};
  };

  class Exchange final : public grpc::ServerBidiReactor<pb::AuthStep, pb::AuthReply> {
   public:
    explicit Exchange(Impl& svc) : svc_(svc) { StartRead(&step_); }
    void OnReadDone(bool ok) override {
      if (!ok) {  // the client half-closed or went away
        Finish(grpc::Status::OK);
        return;
      }
      std::optional<pb::AuthReply> reply = handle();
      if (!reply) {
        StartRead(&step_);
        return;
      }
      reply_ = std::move(*reply);
      terminal_ = reply_.has_success() || reply_.has_failure();
      StartWrite(&reply_);
    }
    void OnWriteDone(bool ok) override {
      if (!ok || terminal_) {
        Finish(ok ? grpc::Status::OK : grpc::Status::CANCELLED);
        return;
      }
      StartRead(&step_);
    }
    void OnCancel() override { ++svc_.cancelled; }
    void OnDone() override {
      ++svc_.done;
      delete this;
    }

   private:
    std::optional<pb::AuthReply> handle() {
      switch (step_.step_case()) {
        case pb::AuthStep::kStart: {
          auto& s = step_.start();
          mechanism_ = s.mechanism();
          // The facts and flags most exchanges leave at their defaults, only when set.
          svc_.record("start " + mechanism_ + " ir=" +
                      (s.has_initial_response() ? hex(s.initial_response()) : std::string("none")) +
                      (s.facts().default_domain().empty() ? "" : " domain=" + s.facts().default_domain()) +
                      (s.check_only() ? " check_only" : ""));
          if (mechanism_ == "PLAIN")
            return s.has_initial_response() ? plain_verdict(s.initial_response()) : challenge("");
          if (mechanism_ == "X-TWO" || mechanism_ == "X-LOOP") return challenge("step one");
          if (mechanism_ == "X-SILENT") return std::nullopt;
          return failure(pb::FAILURE_MECHANISM, "unknown mechanism");
        }
        case pb::AuthStep::kResponse:
          svc_.record("response " + hex(step_.response()));
          if (mechanism_ == "PLAIN") return plain_verdict(step_.response());
          if (mechanism_ == "X-TWO")
            return step_.response() == "r1" ? success("final words")
                                            : failure(pb::FAILURE_CREDENTIALS, "wrong answer");
          if (mechanism_ == "X-LOOP") return challenge("again");
          return std::nullopt;
        case pb::AuthStep::kAbort:
          svc_.record("abort");
          return failure(pb::FAILURE_ABORTED, "client aborted");
        default:
          return failure(pb::FAILURE_PROTOCOL, "empty step");
      }
    }

    Impl& svc_;
    pb::AuthStep step_;
    pb::AuthReply reply_;
    std::string mechanism_;
    bool terminal_ = false;
  };

  grpc::ServerUnaryReactor* answer(grpc::CallbackServerContext* ctx, const char* method, std::function<void()> fill) {
    std::lock_guard lock(mu);
    ++counts[method];
    if (!holding) {
      fill();
      auto* r = ctx->DefaultReactor();
      r->Finish(grpc::Status::OK);
      return r;
    }
    auto* r = new Held(*this, std::move(fill));
    held.push_back(r);
    return r;
  }

  grpc::ServerUnaryReactor* LookupUser(grpc::CallbackServerContext* ctx, const pb::LookupUserRequest* req,
                                       pb::LookupUserResponse* resp) override {
    {
      std::lock_guard lock(mu);
      peer = common::rpc::peer_identity(*ctx).common_name;
    }
    return answer(ctx, "LookupUser", [req, resp] {
      if (req->login() != "alice" && req->login() != "alice@example.com") return;
      resp->set_found(true);
      auto* u = resp->mutable_user();
      u->set_canonical("alice@example.com");
      u->set_status("active");
      u->set_mail_host("store1");
      u->set_allowed_services("+imap:ALL");
      u->set_quota_bytes(1 << 30);
      u->add_addresses("alice@example.com");
      u->add_addresses("a@example.com");
    });
  }
  static void recipient(const std::string& address, pb::LookupRecipientResponse* resp) {
    if (address == "alice@example.com") {
      resp->set_kind(pb::LookupRecipientResponse::USER);
      resp->set_canonical("alice@example.com");
      resp->set_mail_host("store1");
      resp->set_status("active");
    } else if (address == "team@example.com") {
      resp->set_kind(pb::LookupRecipientResponse::ALIAS);
      resp->add_targets("alice@example.com");
      resp->add_targets("bob@example.net");
    }
  }
  grpc::ServerUnaryReactor* LookupRecipient(grpc::CallbackServerContext* ctx, const pb::LookupRecipientRequest* req,
                                            pb::LookupRecipientResponse* resp) override {
    return answer(ctx, "LookupRecipient", [req, resp] { recipient(req->address(), resp); });
  }
  grpc::ServerUnaryReactor* LookupRecipients(grpc::CallbackServerContext* ctx, const pb::LookupRecipientsRequest* req,
                                             pb::LookupRecipientsResponse* resp) override {
    {
      std::lock_guard lock(mu);
      batch_sizes.push_back(req->requests_size());
      bool huge = std::any_of(req->requests().begin(), req->requests().end(),
                              [](auto& one) { return one.address() == "huge@example.com"; });
      if (huge && req->requests_size() > 1) {
        ++counts["LookupRecipients"];
        auto* r = ctx->DefaultReactor();
        r->Finish(grpc::Status(grpc::StatusCode::RESOURCE_EXHAUSTED, "answers too large for one batch"));
        return r;
      }
    }
    return answer(ctx, "LookupRecipients", [req, resp] {
      for (const auto& one : req->requests()) recipient(one.address(), resp->add_responses());
    });
  }
  grpc::ServerUnaryReactor* Mechanisms(grpc::CallbackServerContext* ctx, const pb::MechanismsRequest* req,
                                       pb::MechanismsResponse* resp) override {
    return answer(ctx, "Mechanisms", [req, resp] {
      if (!req->facts().tls_version().empty()) {
        resp->add_mechanisms("PLAIN");
        resp->add_mechanisms("LOGIN");
      }
      resp->add_mechanisms("SCRAM-SHA-256");
    });
  }
  grpc::ServerUnaryReactor* RenewToken(grpc::CallbackServerContext* ctx, const pb::RenewTokenRequest* req,
                                       pb::RenewTokenResponse* resp) override {
    return answer(ctx, "RenewToken", [req, resp] {
      if (req->token() == "t1") {
        resp->set_ok(true);
        resp->set_token("t2");
        resp->set_token_expires_unix(2000000000);
      } else {
        resp->set_reason("unknown token");
      }
    });
  }
  grpc::ServerBidiReactor<pb::AuthStep, pb::AuthReply>* Authenticate(grpc::CallbackServerContext*) override {
    {
      std::lock_guard lock(mu);
      ++counts["Authenticate"];
    }
    return new Exchange(*this);
  }

  void record(std::string step) {
    std::lock_guard lock(mu);
    steps.push_back(std::move(step));
  }
  void forget(Held* r) {
    std::lock_guard lock(mu);
    std::erase(held, r);
  }

  // Recursive: answering a held call may run its OnDone (and so forget()) on this thread.
  mutable std::recursive_mutex mu;
  std::map<std::string, int, std::less<>> counts;
  bool holding = false;
  std::vector<Held*> held;
  std::vector<int> batch_sizes;
  std::vector<std::string> steps;
  std::string peer;
  std::atomic<int> cancelled{0};
  std::atomic<int> done{0};
  std::unique_ptr<grpc::Server> server;
  int port = 0;
};

FakeAuthserv::FakeAuthserv(bool plaintext) : impl_(std::make_unique<Impl>()) {
  auto creds = common::rpc::server_credentials({.plaintext = plaintext});
  INFO((creds ? std::string() : creds.error().detail));
  REQUIRE(creds);
  grpc::ServerBuilder builder;
  builder.AddListeningPort("127.0.0.1:0", *creds, &impl_->port);
  builder.RegisterService(impl_.get());
  impl_->server = builder.BuildAndStart();
  REQUIRE(impl_->server);
  REQUIRE(impl_->port > 0);
}

FakeAuthserv::~FakeAuthserv() {
  // Held calls are cancelled by the shutdown deadline; their reactors finish themselves.
  impl_->server->Shutdown(std::chrono::system_clock::now() + std::chrono::milliseconds(200));
  impl_->server.reset();
}

std::string FakeAuthserv::target() const { return "127.0.0.1:" + std::to_string(impl_->port); }

int FakeAuthserv::calls(std::string_view method) const {
  std::lock_guard lock(impl_->mu);
  auto it = impl_->counts.find(method);
  return it == impl_->counts.end() ? 0 : it->second;
}

void FakeAuthserv::hold(bool on) {
  std::lock_guard lock(impl_->mu);
  impl_->holding = on;
}

void FakeAuthserv::release() {
  std::lock_guard lock(impl_->mu);
  auto held = std::move(impl_->held);
  impl_->held.clear();
  // Still under the lock: a held call the client cancelled meanwhile cannot be freed (its OnDone
  // waits in forget()), and answer() ignores it as already finished.
  for (auto* r : held) r->answer();
}

std::vector<int> FakeAuthserv::batch_sizes() const {
  std::lock_guard lock(impl_->mu);
  return impl_->batch_sizes;
}

int FakeAuthserv::held() const {
  std::lock_guard lock(impl_->mu);
  return static_cast<int>(impl_->held.size());
}

int FakeAuthserv::exchanges_cancelled() const { return impl_->cancelled; }
int FakeAuthserv::exchanges_done() const { return impl_->done; }

std::vector<std::string> FakeAuthserv::steps() const {
  std::lock_guard lock(impl_->mu);
  return impl_->steps;
}

std::string FakeAuthserv::last_peer() const {
  std::lock_guard lock(impl_->mu);
  return impl_->peer;
}

}  // namespace test
