// app.cpp: the store's DaemonApp (app.hpp): reads [store], [lmtp], [mailstore] and [authserv], opens
// the LMDB environment after the privilege drop, gives each LMTP listener its sessions and serves
// the MailStore API on the gRPC port.
#include "store/app.hpp"

#include <unistd.h>

#include <fstream>
#include <sstream>

#include "common/authclient/authclient.hpp"
#include "common/log/log.hpp"
#include "common/net/address.hpp"
#include "store/config.hpp"
#include "store/lmtp_session.hpp"
#include "store/admin/admin_service.hpp"
#include "store/service/grpc_service.hpp"
#include "store/storage/maintenance.hpp"
#include "store/storage/message_store.hpp"

namespace store {
namespace {

using common::daemon::CommonConfig;
using common::daemon::ListenerConfig;
using common::daemon::TlsMode;

class StoreApp final : public common::daemon::DaemonApp {
 public:
  std::vector<std::string> services() const override { return {"lmtp"}; }
  std::optional<common::daemon::GrpcPort> grpc_port() const override {
    return common::daemon::GrpcPort{"mailstore", "127.0.0.1:7570"};
  }

  void read_config(common::config::Section root) override { store::read_config(root, config_); }

  // Mutual TLS is the default on an LMTP listener: only the deployment's mta hosts deliver here.
  void read_listener(common::config::Section& s, ListenerConfig& l) override {
    if (l.service == "lmtp" && !s.has("client_certs")) l.tls_options.client_certs = common::tls::ClientCerts::Required;
  }

  bool needs_nss() const override { return !config_.authserv.tls.plaintext; }

  common::Result<void> start(const CommonConfig& common) override {
    // [[listener]] tables are read before [lmtp], so the listeners are checked against it here.
    for (const auto& l : common.listeners) {
      if (config_.lmtp.plaintext) break;
      if (l.tls_mode == TlsMode::Off) {
        return tl::unexpected(common::Error{common::ErrorKind::Config,
                                            "listener " + l.name + ": LMTP takes mail only over mutual TLS: tls = "
                                            "\"implicit\" or \"starttls\" (or [lmtp] plaintext = true where no TLS is wanted)"});
      }
      if (l.tls_options.client_certs != common::tls::ClientCerts::Required) {
        return tl::unexpected(common::Error{common::ErrorKind::Config,
                                            "listener " + l.name + ": LMTP needs client_certs = \"required\" "
                                            "(or [lmtp] plaintext = true)"});
      }
    }
    if (config_.lmtp.plaintext) {
      common::log::warning("lmtp").phase("start").event("plaintext_lmtp")
          .kv("detail", "[lmtp] plaintext = true: deliveries are accepted without TLS or client certificates");
    }
    auto verifier = token_verifier();
    if (!verifier) return tl::unexpected(verifier.error());
    const bool grpc_plaintext = common.grpc && common.grpc->mtls.plaintext;
    if (!grpc_plaintext && config_.mailstore.allowed_clients.empty()) {
      return common::fail(common::ErrorKind::Config, "[mailstore] allowed_clients: the certificate names of the mmp "
                                                     "hosts that may open mailboxes");
    }
    MessageStoreOptions options;
    options.dir = config_.store.dir;
    options.map_size = config_.store.map_size;
    options.delivery_retention = config_.store.delivery_retention;
    options.max_pending_writes = config_.store.max_pending_writes;
    auto opened = MessageStore::open(options);
    if (!opened) return tl::unexpected(opened.error());
    store_ = std::move(*opened);
    auto auth = common::authclient::AuthClient::create(config_.authserv);
    if (!auth) return tl::unexpected(auth.error());
    auth_ = std::move(*auth);
    service::ServiceOptions service_options;
    service_options.access.allowed_clients = config_.mailstore.allowed_clients;
    service_options.access.admins = config_.mailstore.admins;
    service_options.access.plaintext = grpc_plaintext;
    service_options.limits = config_.mailstore;
    service_options.directory = auth_.get();
    grpc_ = std::make_unique<service::MailStoreGrpc>(*store_, std::move(*verifier), std::move(service_options));
    admin_ = std::make_unique<admin::StoreAdminGrpc>(
        *store_, admin::AdminOptions{config_.mailstore.admin_clients, grpc_plaintext});
    host_name_ = common::net::local_host_name("store");
    common::log::info("store").phase("start").event("store_open").kv("dir", config_.store.dir)
        .kv("names", [&] {
          std::string all;
          for (const auto& n : config_.store.names) all += (all.empty() ? "" : ",") + n;
          return all;
        }());
    return {};
  }

  // Freeing deleted mailboxes in batches and pruning expunge history, on the writer, driven from
  // loop 0's timer, paced as [store] says.
  common::Result<void> start_loop(common::daemon::LoopContext& ctx) override {
    if (ctx.index == 0) maintenance_ = Maintenance::start(*ctx.loop, *store_, config_.store.maintenance);
    return {};
  }

  void register_grpc(common::rpc::GrpcRegistry& registry) override {
    grpc_->register_with(registry);
    admin_->register_with(registry);
  }

  std::unique_ptr<common::runtime::SessionFactory> make_factory(const ListenerConfig& listener,
                                                                common::daemon::LoopContext& ctx) override {
    LmtpContext context;
    context.config = &config_;
    context.store = store_.get();
    context.auth = auth_.get();
    context.loop = ctx.loop;
    context.host_name = host_name_;
    if (listener.tls_mode == TlsMode::StartTls) {
      context.starttls = listener.tls;
      context.tls_required = !config_.lmtp.plaintext;
    }
    return std::make_unique<LmtpFactory>(std::move(context));
  }

  void drain(std::function<void()> drained) override {
    if (grpc_) grpc_->end_watches();
    drained();
  }

  void stop() override {
    // The sessions are gone; authserv's client goes before the loops it posts to, then the store
    // finishes what its writer holds.
    admin_.reset();
    grpc_.reset();
    maintenance_.reset();
    auth_.reset();
    store_.reset();
  }

 private:
  Config config_;
  std::string host_name_;
  std::unique_ptr<MessageStore> store_;
  std::unique_ptr<Maintenance> maintenance_;
  std::unique_ptr<common::authclient::AuthClient> auth_;
  std::unique_ptr<service::MailStoreGrpc> grpc_;
  std::unique_ptr<admin::StoreAdminGrpc> admin_;

  // [mailstore] token_keys: each an "ed25519:..." text or a file holding one (authserv's
  // <key_file>.pub).
  common::Result<common::authtoken::Verifier> token_verifier() const {
    if (config_.mailstore.token_keys.empty()) {
      return common::fail(common::ErrorKind::Config, "[mailstore] token_keys: authserv's public key (the .pub file "
                                                     "beside its [tokens] key_file), to verify access tokens");
    }
    std::vector<std::string> texts;
    for (const auto& key : config_.mailstore.token_keys) {
      if (key.starts_with("ed25519:")) {
        texts.push_back(key);
        continue;
      }
      std::ifstream in(key);
      std::stringstream text;
      text << in.rdbuf();
      if (!in) return common::fail(common::ErrorKind::Config, "[mailstore] token_keys: cannot read " + key);
      std::string value = text.str();
      while (!value.empty() && (value.back() == '\n' || value.back() == '\r' || value.back() == ' ')) value.pop_back();
      texts.push_back(std::move(value));
    }
    common::authtoken::VerifierOptions options;
    options.clock_skew = config_.mailstore.token_clock_skew;
    auto verifier = common::authtoken::Verifier::from_public_keys(texts, options);
    if (!verifier) return common::fail(common::ErrorKind::Config, "[mailstore] token_keys: " + verifier.error().detail);
    return verifier;
  }
};

}  // namespace

std::unique_ptr<common::daemon::DaemonApp> make_app() { return std::make_unique<StoreApp>(); }

}  // namespace store
