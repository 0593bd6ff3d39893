// admin_client.cpp: the gRPC side of postern-directory --online.
#include "authserv/service/admin_client.hpp"

#include <grpcpp/grpcpp.h>
#include <sodium.h>

#include "authserv/service/admin_handler.hpp"
#include "proto/authserv.grpc.pb.h"

namespace authserv::service {

common::Result<std::vector<std::string>> run_online(const std::string& target, const common::rpc::MtlsOptions& options,
                                                    std::span<const std::string_view> words, directory::AdminOp& op) {
  auto credentials = common::rpc::channel_credentials(options);
  if (!credentials) return tl::unexpected(credentials.error());
  auto stub = postern::authserv::v1::Auth::NewStub(grpc::CreateChannel(target, *credentials));
  postern::authserv::v1::AdminRequest request;
  for (auto w : words) request.add_args(std::string(w));
  AdminInputs inputs = take_inputs(op);
  request.set_secret(inputs.secret);
  request.set_value(inputs.value);
  for (auto& l : inputs.lines) request.add_lines(std::move(l));
  if (!inputs.secret.empty()) sodium_memzero(inputs.secret.data(), inputs.secret.size());

  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + std::chrono::minutes(5));  // imports hash nothing, but are big
  postern::authserv::v1::AdminResponse response;
  auto status = stub->Admin(&context, request, &response);
  auto* secret = request.mutable_secret();
  if (!secret->empty()) sodium_memzero(secret->data(), secret->size());
  if (!status.ok()) {
    return common::fail(common::ErrorKind::Remote, "authserv " + target + ": " + status.error_message());
  }
  if (!response.ok()) return common::fail(common::ErrorKind::Remote, response.error());
  return std::vector<std::string>(response.lines().begin(), response.lines().end());
}

}  // namespace authserv::service
