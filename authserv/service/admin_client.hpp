// admin_client.hpp: postern-directory --online: one admin operation sent to a running authserv
// over mutual TLS, so a directory on another host (or behind authserv only) can be edited.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "authserv/directory/admin.hpp"
#include "common/grpc/credentials.hpp"

namespace authserv::service {

// `words` are the command words as typed; `op` is their parse with inputs already read
// (resolve_inputs): the secrets travel beside the words, never in them. Needs NSS opened from the
// caller's host database unless options.plaintext.
common::Result<std::vector<std::string>> run_online(const std::string& target, const common::rpc::MtlsOptions& options,
                                                    std::span<const std::string_view> words, directory::AdminOp& op);

}  // namespace authserv::service
