// online.hpp: postern-storectl's online target: a running store's StoreAdmin gRPC service
// (proto/storeadmin.proto, store/admin/), over mutual TLS with this host's certificate from its NSS
// database, so writes run on the store's own group-commit writer and reach its Watch streams.
#pragma once

#include <map>
#include <memory>
#include <string>

#include "common/grpc/credentials.hpp"
#include "store/tools/target.hpp"

namespace store::tools {

struct OnlineOptions {
  std::string target;              // HOST:PORT, the store's [grpc] listen
  common::rpc::MtlsOptions mtls;   // NSS must be open (common::tls::Nss) unless mtls.plaintext
  uint32_t import_idle_seconds = 60;  // the store gives an import up after this long without a batch
};

class OnlineTarget final : public Target {
 public:
  static OpResult<std::unique_ptr<OnlineTarget>> open(const OnlineOptions& options);
  ~OnlineTarget() override;

  std::string describe() const override;
  OpResult<UserRecord> create_user(std::string_view user) override;
  OpResult<void> rename_user(std::string_view from, std::string_view to) override;
  OpResult<ops::DeletedUser> delete_user(std::string_view user) override;
  OpResult<std::vector<UserUsage>> usage(std::optional<std::string_view> user) override;
  OpResult<ops::VerifyReport> verify(bool repair) override;
  OpResult<void> export_mailbox(std::string_view user, std::string_view mailbox,
                                const std::function<OpResult<void>(const ExportedMailbox&)>& begin,
                                const std::function<OpResult<void>(const ExportedMessage&)>& message) override;
  OpResult<ImportStart> begin_import(std::string_view user, std::string_view mailbox,
                                     uint32_t source_uidvalidity) override;
  OpResult<ImportBatchResult> import_batch(std::string_view user, const ImportStart& start,
                                           std::vector<ImportMessage>&& batch) override;
  OpResult<void> finish_import(std::string_view user, const ImportStart& start, uint32_t source_uidnext) override;
  OpResult<void> subscribe(std::string_view user, const std::vector<std::string>& mailboxes) override;

  struct Impl;

 private:
  explicit OnlineTarget(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace store::tools
