// lmdb_directory.hpp: the embedded directory: domains, users, addresses and aliases in one LMDB
// environment, shared by authserv (reads, rehash writes) and postern-directory (offline admin).
#pragma once

#include <cstddef>
#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "authserv/directory/directory.hpp"
#include "common/lmdb/lmdb.hpp"
#include "common/result.hpp"

namespace authserv::directory {

namespace lmdb = common::lmdb;

// The layout this build reads and writes (meta "schema_version"). Opening a directory with another
// version is refused rather than guessed at.
inline constexpr std::string_view kSchemaVersion = "1";
// find_by_certificate returns at most this many names: certmap refuses any answer with
// more than one, so the rest would only cost time on a (objectclass=*) search.
inline constexpr size_t kMaxCertMatches = 16;

// Outside the class so `Options options = {}` works as a default argument (a nested class with
// member initialisers is incomplete there).
struct LmdbOptions {
  size_t map_size = size_t{1} << 30;  // address space reserved, not disk used
  bool read_only = false;
  char detail_delimiter = '+';  // '\0': no subaddressing
};

class LmdbDirectory final : public Backend {
 public:
  using Options = LmdbOptions;

  // Creates the directory and its tables unless read_only. Any number of processes may open the
  // same directory at once (LMDB serialises writers with a lock in the lock file); a read
  // transaction begun after a commit, in any process, sees it.
  // Opening a directory this process already has open is refused: LMDB's locks are per process
  // (fcntl), and closing the second handle would silently drop the first one's.
  static common::Result<std::unique_ptr<LmdbDirectory>> open(const std::filesystem::path& dir,
                                                             Options options = {});
  ~LmdbDirectory() override;

  // Backend. Reads are short LMDB read transactions: safe on any thread, never block on writers.
  bool nonblocking() const override { return true; }
  std::string_view kind() const override { return "embedded"; }
  common::Result<std::optional<DomainRecord>> find_domain(std::string_view domain) override;
  common::Result<std::optional<UserRecord>> find_user(std::string_view uid, std::string_view domain,
                                                      std::string_view as_typed = {}) override;
  common::Result<Recipient> find_recipient(std::string_view address) override;
  // Equalities on mail, uid and cn (= uid), compared without case, all of which must hold (none:
  // every user), under a base DN that is empty or a suffix of the user's notional DN
  // "uid=<uid>,dc=<label>,...". Other attributes, multi-valued RDNs: ErrorKind::Protocol.
  common::Result<std::vector<std::string>> find_by_certificate(const common::tls::CertQuery& query) override;
  std::optional<BindResult> bind_as(const UserRecord&, std::string_view) override { return std::nullopt; }
  common::Result<void> store_password_hash(const UserRecord& user, std::string_view stored,
                                           std::string_view scram) override;

  // One read transaction's view. Records come back as stored: a user's own status, not combined.
  class Reader {
   public:
    common::Result<std::optional<DomainRecord>> domain(std::string_view name) const;
    common::Result<std::optional<UserRecord>> user(std::string_view canonical) const;
    // The canonical name of the user owning `address` (any case).
    common::Result<std::optional<std::string>> address_owner(std::string_view address) const;
    common::Result<std::optional<std::vector<std::string>>> alias(std::string_view address) const;
    // Key order; `fn` returns false to stop.
    common::Result<void> each_domain(const std::function<bool(const DomainRecord&)>& fn) const;
    common::Result<void> each_user(const std::function<bool(const UserRecord&)>& fn) const;
    // Users whose key starts with `prefix` ("alice@" finds alice in every domain).
    common::Result<void> each_user_from(std::string_view prefix,
                                        const std::function<bool(const UserRecord&)>& fn) const;
    common::Result<void> each_alias(
        const std::function<bool(std::string_view address, const std::vector<std::string>&)>& fn) const;

   protected:
    friend class LmdbDirectory;
    Reader(const LmdbDirectory& dir, lmdb::Txn& txn) : dir_(dir), txn_(txn) {}
    const LmdbDirectory& dir_;
    lmdb::Txn& txn_;
  };

  // One write transaction. Keeps the address index consistent: an address belongs to one user
  // and is never also an alias.
  class Writer : public Reader {
   public:
    common::Result<void> put_domain(const DomainRecord& d);
    // Inserts or replaces `u` (key u.canonical = u.uid@u.domain; the domain must exist). u.mail is
    // added to u.addresses when missing. Addresses the old record had and `u` lacks are released.
    common::Result<void> put_user(UserRecord u);
    common::Result<bool> delete_user(std::string_view canonical);
    // `address` is "local@domain" or "@domain" (catch-all); targets are stored as given.
    common::Result<void> put_alias(std::string_view address, const std::vector<std::string>& targets);
    common::Result<bool> delete_alias(std::string_view address);

   private:
    friend class LmdbDirectory;
    Writer(const LmdbDirectory& dir, lmdb::Txn& txn) : Reader(dir, txn) {}
  };

  common::Result<void> read(const std::function<common::Result<void>(const Reader&)>& fn) const;
  // Commits when `fn` succeeds, aborts (nothing written) when it fails. Blocks while another
  // thread or process writes.
  common::Result<void> write(const std::function<common::Result<void>(Writer&)>& fn);

  const Options& options() const { return options_; }
  const std::filesystem::path& path() const { return path_; }

 private:
  LmdbDirectory(lmdb::Env env, Options options, std::filesystem::path path, std::pair<uint64_t, uint64_t> file_id)
      : env_(std::move(env)), options_(options), path_(std::move(path)), file_id_(file_id) {}
  common::Result<void> combine_domain(const Reader& r, UserRecord& u) const;
  common::Result<std::optional<UserRecord>> user_by_address(const Reader& r, std::string_view key) const;
  common::Result<void> expand_alias(const Reader& r, const std::vector<std::string>& targets, int depth,
                                    std::vector<std::string>& seen, std::vector<std::string>& out) const;

  lmdb::Env env_;
  Options options_;
  std::filesystem::path path_;
  std::pair<uint64_t, uint64_t> file_id_;  // st_dev, st_ino of the directory: the open-once key
  MDB_dbi domains_ = 0, users_ = 0, addresses_ = 0, aliases_ = 0, meta_ = 0;
};

}  // namespace authserv::directory
