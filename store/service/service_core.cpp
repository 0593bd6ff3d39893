// service_core.cpp: the access check every MailStore call starts with (service_core.hpp).
#include "store/service/service_core.hpp"

#include "common/log/log.hpp"

namespace store::service {
namespace {

grpc::Status refused(const AccessRefused& r) {
  return grpc::Status(r.code == Denial::Unauthenticated ? grpc::StatusCode::UNAUTHENTICATED
                                                        : grpc::StatusCode::PERMISSION_DENIED,
                      r.detail);
}

}  // namespace

void ServiceCore::open(grpc::CallbackServerContext* context, std::string_view method, Opened next) {
  const auto& metadata = context->client_metadata();
  auto value = [&](const char* key) -> std::string_view {
    auto it = metadata.find(key);
    return it == metadata.end() ? std::string_view() : std::string_view(it->second.data(), it->second.size());
  };
  open(common::rpc::peer_identity(*context).common_name, context->peer(), value("postern-token"), value("postern-user"),
       method, std::move(next));
}

void ServiceCore::open(std::string_view peer, std::string_view address, std::string_view token, std::string_view user,
                       std::string_view method, Opened next) {
  auto caller = check_access(verifier, options.access, peer, token, user, now_unix());
  if (!caller) {
    common::log::warning("mailstore").event("refused").kv("method", method).kv("client", peer)
        .kv("peer", address).kv("reason", caller.error().detail);
    return next(tl::unexpected(refused(caller.error())));
  }
  quotas.prepare(caller->user, [method = std::string(method), caller = *caller,
                                next = std::move(next)](tl::expected<void, QuotaRefused> prepared) {
    if (prepared) return next(caller);
    const auto& [why, detail] = prepared.error();
    common::log::warning("mailstore").event(why == QuotaRefusal::UnknownUser ? "refused" : "user_unavailable")
        .kv("method", method).kv("user", caller.user).kv("reason", detail);
    switch (why) {
      case QuotaRefusal::UnknownUser: return next(tl::unexpected(grpc::Status(grpc::StatusCode::PERMISSION_DENIED, detail)));
      case QuotaRefusal::DirectoryUnavailable:
        return next(tl::unexpected(grpc::Status(grpc::StatusCode::UNAVAILABLE, detail + ": try again later")));
      case QuotaRefusal::StoreError: break;
    }
    next(tl::unexpected(grpc::Status(grpc::StatusCode::INTERNAL, "store error")));
  });
}

}  // namespace store::service
