// admin_handler.cpp: runs postern-directory operations that arrive over gRPC on the LMDB directory.
#include "authserv/service/admin_handler.hpp"

#include <sodium.h>

#include "proto/authserv.pb.h"

namespace authserv::service {
namespace {

using directory::PasswordInput;

bool reads_password(const PasswordInput& p) {
  return p.from == PasswordInput::From::Stdin || p.from == PasswordInput::From::File ||
         p.from == PasswordInput::From::Plain;
}

void wipe(std::string& s) {
  if (!s.empty()) sodium_memzero(s.data(), s.size());
  s.clear();
}

class LmdbAdminHandler final : public AdminHandler {
 public:
  LmdbAdminHandler(directory::LmdbDirectory& dir, const Settings& s) : dir_(dir) {
    settings_.default_domain = s.default_domain;
    settings_.argon2 = s.argon2;
    settings_.scram_iterations = s.scram_iterations;
  }

  std::string handle(const std::string& serialized) override {
    postern::authserv::v1::AdminRequest request;
    postern::authserv::v1::AdminResponse response;
    if (!request.ParseFromString(serialized)) {
      response.set_error("malformed request");
      return response.SerializeAsString();
    }
    std::vector<std::string_view> words(request.args().begin(), request.args().end());
    auto op = directory::parse_admin_args(words);
    AdminInputs inputs{request.secret(), request.value(), {request.lines().begin(), request.lines().end()}};
    wipe(*request.mutable_secret());
    common::Result<std::vector<std::string>> lines = common::fail(common::ErrorKind::Protocol, "");
    if (!op) {
      lines = tl::unexpected(op.error());
    } else if (auto given = give_inputs(*op, std::move(inputs)); !given) {
      lines = tl::unexpected(given.error());
    } else {
      lines = directory::apply(dir_, *op, settings_);
    }
    if (lines) {
      response.set_ok(true);
      for (auto& l : *lines) response.add_lines(std::move(l));
    } else {
      response.set_error(lines.error().detail);
    }
    return response.SerializeAsString();
  }

 private:
  directory::LmdbDirectory& dir_;
  directory::AdminSettings settings_;
};

}  // namespace

AdminInputs take_inputs(directory::AdminOp& op) {
  AdminInputs in;
  std::visit(
      [&](auto& o) {
        using T = std::decay_t<decltype(o)>;
        if constexpr (std::is_same_v<T, directory::admin::AddUser> || std::is_same_v<T, directory::admin::SetPassword>) {
          if (reads_password(o.password)) in.secret.assign(o.password.value.view());
        } else if constexpr (std::is_same_v<T, directory::admin::SetAttribute>) {
          if (!o.value_file.empty()) in.value = o.value;
        } else if constexpr (std::is_same_v<T, directory::admin::Import>) {
          in.lines = std::move(o.lines);
        }
      },
      op);
  return in;
}

common::Result<void> give_inputs(directory::AdminOp& op, AdminInputs in) {
  common::Result<void> result;
  std::visit(
      [&](auto& o) {
        using T = std::decay_t<decltype(o)>;
        if constexpr (std::is_same_v<T, directory::admin::AddUser> || std::is_same_v<T, directory::admin::SetPassword>) {
          if (reads_password(o.password)) {
            if (in.secret.empty()) {
              result = common::fail(common::ErrorKind::Protocol, "no password sent");
              return;
            }
            o.password.from = PasswordInput::From::Plain;
            o.password.file.clear();
            o.password.value = directory::SecretString(std::move(in.secret));
          }
        } else if constexpr (std::is_same_v<T, directory::admin::SetAttribute>) {
          if (!o.value_file.empty()) {
            o.value = std::move(in.value);
            o.value_file.clear();
          }
        } else if constexpr (std::is_same_v<T, directory::admin::Import>) {
          o.lines = std::move(in.lines);
          o.file.clear();
        }
      },
      op);
  wipe(in.secret);
  return result;
}

std::unique_ptr<AdminHandler> make_admin_handler(directory::LmdbDirectory& directory, const Settings& settings) {
  return std::make_unique<LmdbAdminHandler>(directory, settings);
}

}  // namespace authserv::service
