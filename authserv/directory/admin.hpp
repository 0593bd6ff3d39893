// admin.hpp: directory administration as data: the operations postern-directory runs offline on
// the LMDB files (and authserv's admin call will run online), their argument parser, and apply().
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "authserv/directory/lmdb_directory.hpp"
#include "authserv/password/password.hpp"
#include "common/result.hpp"

namespace authserv::directory {

// A string that is wiped (sodium_memzero) when it is destroyed or reassigned.
class SecretString {
 public:
  SecretString() = default;
  explicit SecretString(std::string s) : s_(std::move(s)) {}
  SecretString(const SecretString& o) : s_(o.s_) {}
  SecretString& operator=(const SecretString& o);
  ~SecretString() { wipe(); }
  std::string_view view() const { return s_; }
  bool empty() const { return s_.empty(); }
  std::string& buffer() { return s_; }  // for readers that fill it in place
  void wipe();

 private:
  std::string s_;
};

// Where a password comes from. Never the command line: other users see it in ps(1).
struct PasswordInput {
  enum class From : uint8_t { None, Stdin, File, Plain, Stored };
  From from = From::None;
  std::string file;    // From::File
  SecretString value;  // Plain: the password (after resolve_inputs); Stored: "{ARGON2}..." etc.
};

namespace admin {
struct AddDomain { std::string domain; };
struct SetDomainAttribute { std::string domain, name, value; };  // status, allowed_services
struct AddUser { std::string login; PasswordInput password; std::string mail_host; };
struct DeleteUser { std::string login; };
struct SetPassword { std::string login; PasswordInput password; };
// Names: status, mailhost, quota, quota_messages, allowed_services, sieve, store_admin,
// add_address, remove_address, access_domains. `value_file` set: resolve_inputs reads the value
// from that file (sieve scripts).
struct SetAttribute { std::string login, name, value, value_file; };
struct ShowUser { std::string login; };
struct Disable { std::string login; };
struct AddAlias { std::string address; std::vector<std::string> targets; };  // "@domain": catch-all
struct DeleteAlias { std::string address; };
struct List { std::string domain; };  // "" = everything
// Lines "login<TAB>stored-hash[<TAB>mailhost]"; '#' comments and blank lines skipped. `file`
// set: resolve_inputs reads the lines ("-" = stdin).
struct Import { std::string file; std::vector<std::string> lines; };
}  // namespace admin

using AdminOp = std::variant<admin::AddDomain, admin::SetDomainAttribute, admin::AddUser, admin::DeleteUser,
                             admin::SetPassword, admin::SetAttribute, admin::ShowUser, admin::Disable,
                             admin::AddAlias, admin::DeleteAlias, admin::List, admin::Import>;

struct AdminSettings {
  std::string default_domain;  // for unqualified logins (AUTH-07)
  password::Argon2Cost argon2;
  uint32_t scram_iterations = password::kScramMinIterations;
  size_t import_batch = 5000;  // users per write transaction (one fsync each)
};

// The command words after the global options, e.g. {"user", "add", "alice", "--password-stdin"}.
// Any failure is a usage error (ErrorKind::Config) whose detail says what was wrong.
common::Result<AdminOp> parse_admin_args(std::span<const std::string_view> args);
std::string_view admin_usage();

// Reads what parse_admin_args left as a reference: a password from `stdin_fd` (its first line) or
// a file, a Sieve script file, an import file. Bounded sizes. Not pure: the CLI calls it before
// apply, an online client before sending the operation.
common::Result<void> resolve_inputs(AdminOp& op, int stdin_fd);

// Validates and performs one operation; returns the lines to show the operator. Passwords are
// hashed (argon2id and a SCRAM-SHA-256 verifier) before the write transaction, so the writer lock
// is never held during hashing.
common::Result<std::vector<std::string>> apply(LmdbDirectory& dir, const AdminOp& op, const AdminSettings& settings);

// Checks a pre-hashed value without hashing anything costly: {ARGON2} (argon2id/argon2i, cost
// within what verify accepts), {SSHA}, {SSHA256}, {SSHA512}, modern {CRYPT}. Plain text and
// unsalted schemes are refused (ErrorKind::Protocol).
common::Result<void> check_stored_hash(std::string_view stored);

// A quota: "none" or "0" for none, else a size in the config files' one grammar ("100M", "2G",
// "512k", "1T": binary multiples, or plain bytes; common::config::parse_size).
common::Result<uint64_t> parse_quota(std::string_view text);

}  // namespace authserv::directory
