// app.cpp: the mta's DaemonApp (app.hpp): reads [mta], [queue], [authserv] and the listener keys,
// opens the queue after the privilege drop, runs the deliverer on loop 0 and gives each SMTP
// listener its sessions.
#include "mta/app.hpp"

#include <map>

#include "common/authclient/authclient.hpp"
#include "common/log/log.hpp"
#include "common/metrics/metrics.hpp"
#include "mta/config.hpp"
#include "mta/delivery/deliverer.hpp"
#include "mta/queue/queue.hpp"
#include "mta/smtpd/session.hpp"

namespace mta {
namespace {

using common::daemon::CommonConfig;
using common::daemon::ListenerConfig;
using common::daemon::TlsMode;

common::Error config_error(std::string text) { return common::Error{common::ErrorKind::Config, std::move(text)}; }

class MtaApp final : public common::daemon::DaemonApp {
 public:
  // smtp: transfer (25); submission: 587 with STARTTLS; submissions: 465, implicit TLS (RFC 8314).
  std::vector<std::string> services() const override { return {"smtp", "submission", "submissions"}; }

  void read_config(common::config::Section root) override { mta::read_config(root, config_); }

  void read_listener(common::config::Section& s, ListenerConfig& l) override {
    read_listener_overrides(s, overrides_[l.name]);
  }

  // Outbound mutual TLS to the stores needs this host's NSS database even without a TLS listener.
  bool needs_nss() const override { return true; }

  common::Result<void> start(const CommonConfig& common) override {
    for (const auto& l : common.listeners) {
      if (l.service == "submissions" && l.tls_mode != TlsMode::Implicit) {
        return tl::unexpected(config_error("listener " + l.name + ": service \"submissions\" is implicit TLS "
                                           "(RFC 8314): set tls = \"implicit\""));
      }
      const auto policy = session_policy(config_.mta, l.service, overrides_[l.name]);
      if (policy.auth && l.tls_mode == TlsMode::Off) {
        // AUTH is offered only under TLS, so a plaintext listener with AUTH could never use it.
        return tl::unexpected(config_error("listener " + l.name + ": AUTH needs TLS: set tls = \"starttls\" or "
                                           "\"implicit\", or auth = false"));
      }
    }
    queue::QueueOptions options;
    options.dir = config_.queue.dir;
    options.map_size = config_.queue.map_size;
    options.max_pending_writes = config_.queue.max_pending_writes;
    options.policy.max_queue_lifetime = config_.queue.max_lifetime;
    options.policy.delay_warning = config_.queue.delay_warning;
    if (!config_.queue.retry_schedule.empty()) options.policy.retry_schedule = config_.queue.retry_schedule;
    options.policy.reporting_mta = config_.mta.host_name;
    options.policy.dsn_destination = delivery::dsn_destination(config_.mta.local_domains);
    options.registry = &common::metrics::default_registry();
    options.recover_leases = true;  // one mta per queue directory: a lease still held is a killed predecessor's
    // With leases recovered at start, a lease only has to outlast the slowest transaction the SMTP
    // client allows (RFC 5321's timeouts add up to over 20 minutes); a result reported after it ran
    // out would be dropped and the message sent twice.
    options.policy.lease = std::chrono::hours(1);
    auto opened = queue::Queue::open(std::move(options));
    if (!opened) return tl::unexpected(opened.error());
    queue_ = std::move(*opened);
    auto auth = common::authclient::AuthClient::create(config_.authserv);
    if (!auth) return tl::unexpected(auth.error());
    auth_ = std::move(*auth);
    settings_ = std::make_shared<smtpd::SettingsSlot>(
        std::make_shared<const smtpd::Settings>(smtpd::Settings{config_.mta, overrides_}));
    common::log::info("mta").phase("start").event("queue_open").kv("dir", config_.queue.dir);
    return {};
  }

  // The deliverer runs on loop 0; sessions on every loop wake it after a commit.
  common::Result<void> start_loop(common::daemon::LoopContext& ctx) override {
    if (ctx.index != 0) return {};
    delivery::Context d;
    d.loop = ctx.loop;
    d.connections = ctx.connections;
    d.resolver = ctx.resolver;
    d.queue = queue_.get();
    d.auth = auth_.get();
    d.config = &config_.delivery;
    d.local_domains = config_.mta.local_domains;
    d.host_name = config_.mta.host_name;
    d.nss = ctx.nss;
    auto deliverer = delivery::Deliverer::create(std::move(d));
    if (!deliverer) return tl::unexpected(deliverer.error());
    deliverer_ = std::move(*deliverer);
    wake_ = deliverer_->waker();
    return {};
  }

  std::unique_ptr<common::runtime::SessionFactory> make_factory(const ListenerConfig& listener,
                                                                common::daemon::LoopContext& ctx) override {
    smtpd::SessionContext context;
    context.settings = settings_;
    context.listener = listener.name;
    context.service = listener.service;
    context.queue = queue_.get();
    context.auth = auth_.get();
    context.loop = ctx.loop;
    context.resolver = ctx.resolver;
    if (listener.tls_mode == TlsMode::StartTls) context.starttls = listener.tls;
    context.on_queued = wake_;
    return std::make_unique<smtpd::SmtpFactory>(std::move(context));
  }

  // SIGHUP: [mta] (local domains, INTERNAL_IP, limits, sender rules) and the listeners' own keys
  // apply to the sessions that start from now on. [queue], [authserv] and the delivery tables are
  // read at start only.
  void reload(common::daemon::DaemonApp& fresh) override {
    auto* app = dynamic_cast<MtaApp*>(&fresh);
    if (app == nullptr || !settings_) return;
    settings_->replace(std::make_shared<const smtpd::Settings>(smtpd::Settings{app->config_.mta, app->overrides_}));
    common::log::info("mta").phase("reload").event("settings_reloaded")
        .kv("local_domains", static_cast<uint64_t>(app->config_.mta.local_domains.size()))
        .kv("internal_networks", static_cast<uint64_t>(app->config_.mta.internal_networks.size()));
  }

  void drain(std::function<void()> drained) override {
    if (!deliverer_) return drained();
    deliverer_->stop(std::move(drained));
  }

  void stop() override {
    // The sessions are gone and the loops no longer run: the deliverer first (its sessions and
    // timers belong to loop 0), authserv's client before the loops it posts to, then the queue
    // finishes what its writer holds.
    deliverer_.reset();
    auth_.reset();
    queue_.reset();
  }

 private:
  Config config_;
  std::map<std::string, ListenerOverrides> overrides_;
  std::shared_ptr<smtpd::SettingsSlot> settings_;
  std::unique_ptr<queue::Queue> queue_;
  std::unique_ptr<common::authclient::AuthClient> auth_;
  std::unique_ptr<delivery::Deliverer> deliverer_;
  std::function<void()> wake_;
};

}  // namespace

std::unique_ptr<common::daemon::DaemonApp> make_app() { return std::make_unique<MtaApp>(); }

}  // namespace mta
