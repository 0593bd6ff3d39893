// admin_handler.hpp: the Admin call on the embedded directory: postern-directory's command words
// parsed by the CLI's own parser, with the inputs the CLI read locally put back in.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "authserv/directory/admin.hpp"
#include "authserv/service/core.hpp"
#include "authserv/service/grpc_service.hpp"

namespace authserv::service {

// What the CLI read for an operation (resolve_inputs) travels beside the words, never in them.
struct AdminInputs {
  std::string secret;              // password (--password-stdin / --password-file)
  std::string value;               // a value read from a file (Sieve script)
  std::vector<std::string> lines;  // import file lines
};
// Client side, after resolve_inputs: moves the read inputs out of `op`.
AdminInputs take_inputs(directory::AdminOp& op);
// Server side, after parse_admin_args: puts them back where resolve_inputs would have.
common::Result<void> give_inputs(directory::AdminOp& op, AdminInputs inputs);

std::unique_ptr<AdminHandler> make_admin_handler(directory::LmdbDirectory& directory, const Settings& settings);

}  // namespace authserv::service
