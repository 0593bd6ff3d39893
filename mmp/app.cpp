// app.cpp: the mmp's DaemonApp (app.hpp): reads [mmp], [imap], [authserv] and [stores], makes the
// two gRPC clients at start (shared by every loop's sessions) and gives each IMAP listener its
// sessions.
#include "mmp/app.hpp"

#include <map>

#include "common/authclient/authclient.hpp"
#include "common/log/log.hpp"
#include "mmp/config.hpp"
#include "mmp/imap_session.hpp"
#include "mmp/store_client/store_client.hpp"

namespace mmp {
namespace {

using common::daemon::CommonConfig;
using common::daemon::ListenerConfig;
using common::daemon::TlsMode;

class MmpApp final : public common::daemon::DaemonApp {
 public:
  // One "imap" service covers 143 and 993, so one access-filter rule covers both (the Sun MMP's
  // rule); the listener's tls key says which is which.
  std::vector<std::string> services() const override { return {"imap"}; }

  void read_config(common::config::Section root) override { mmp::read_config(root, *config_); }

  void read_listener(common::config::Section& section, ListenerConfig& listener) override {
    listener_settings_[listener.name] = read_listener_settings(section);
    // A mail client whose certificate fails verification is told nothing by TLS: it logs in with a
    // password, and EXTERNAL and PREAUTH are simply not there (the Sun MMP's behaviour).
    listener.tls_options.tolerate_bad_client_cert = true;
  }

  // The stores and authserv are reached over mutual TLS with this host's certificate.
  bool needs_nss() const override { return true; }

  common::Result<void> start(const CommonConfig&) override {
    auto auth = common::authclient::AuthClient::create(config_->authserv);
    if (!auth) return tl::unexpected(auth.error());
    auth_ = std::move(*auth);
    auto stores = store_client::StoreClient::create(config_->stores);
    if (!stores) return tl::unexpected(stores.error());
    stores_ = std::move(*stores);
    return {};
  }

  std::unique_ptr<common::runtime::SessionFactory> make_factory(const ListenerConfig& listener,
                                                                common::daemon::LoopContext& ctx) override {
    ImapContext context;
    context.config = config_;
    context.auth = auth_.get();
    context.stores = stores_.get();
    context.loop = ctx.loop;
    context.listener = listener.name;
    if (listener.tls_mode == TlsMode::StartTls) context.starttls = listener.tls;
    context.implicit_tls = listener.tls_mode == TlsMode::Implicit;
    context.client_certs = listener.tls_mode != TlsMode::Off && listener.tls_options.client_certs != common::tls::ClientCerts::Off;
    auto found = listener_settings_.find(listener.name);
    context.settings = std::make_shared<const ListenerSettings>(
        (found != listener_settings_.end() ? found->second : ListenerSettings{}).resolved(config_->mmp));
    return std::make_unique<ImapFactory>(std::move(context));
  }

  void stop() override {
    // The sessions are gone: the clients close their channels on this thread, before the loops.
    stores_.reset();
    auth_.reset();
  }

 private:
  std::shared_ptr<Config> config_ = std::make_shared<Config>();
  std::map<std::string, ListenerSettings> listener_settings_;  // by listener name
  std::unique_ptr<common::authclient::AuthClient> auth_;
  std::unique_ptr<store_client::StoreClient> stores_;
};

}  // namespace

std::unique_ptr<common::daemon::DaemonApp> make_app() { return std::make_unique<MmpApp>(); }

}  // namespace mmp
