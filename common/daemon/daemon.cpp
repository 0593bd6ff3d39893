// daemon.cpp: run_daemon(): flags, config, binding, privilege drop, loops, the gRPC port, signals,
// drain, reload.
#include "common/daemon/daemon.hpp"

#include <sys/prctl.h>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <set>
#include <thread>

#include "common/daemon/access_admission.hpp"
#include "common/daemon/metrics_http.hpp"
#include "common/metrics/metrics.hpp"
#include "common/tls/nss.hpp"
#include "common/runtime/timer.hpp"

namespace common::daemon {

using namespace common::runtime;
namespace {

using namespace std::chrono_literals;

void read_listener(config::Section& s, DaemonApp& app, const std::vector<std::string>& services,
                   std::set<std::string>& names, ListenerConfig& l) {
  s.get("name", l.name);
  s.get("service", l.service);
  if (l.service.empty()) {
    s.error("service", "missing: one of " + [&] {
      std::string all;
      for (auto& sv : services) all += (all.empty() ? "" : ", ") + sv;
      return all;
    }());
  } else if (std::find(services.begin(), services.end(), l.service) == services.end()) {
    s.error("service", "this daemon does not speak \"" + l.service + "\"");
  }
  if (l.name.empty()) l.name = l.service;
  if (!names.insert(l.name).second) s.error("name", "listener name \"" + l.name + "\" is used twice");
  s.get_endpoints("address", l.addresses);
  if (l.addresses.empty()) s.error("address", "missing: at least one address such as \"127.0.0.1:25\"");
  s.get("backlog", l.backlog, 1, 65535);
  s.get("max_connections", l.max_connections, size_t{1}, size_t{1000000});
  s.get("max_per_ip", l.max_per_ip, size_t{0}, size_t{1000000});
  s.get_duration("idle_timeout", l.limits.idle_timeout, 1s, std::chrono::milliseconds(24h));
  s.get_duration("session_timeout", l.limits.session_timeout, 0ms, std::chrono::milliseconds(7 * 24h));
  s.get_duration("close_linger", l.limits.close_linger, 0ms, std::chrono::milliseconds(5min));
  s.get_duration("admission_timeout", l.limits.admission_timeout, 100ms, std::chrono::milliseconds(10min));
  s.get("max_admitting", l.limits.max_admitting, size_t{0}, size_t{1000000});
  s.get("max_admitting_per_ip", l.limits.max_admitting_per_ip, size_t{0}, size_t{1000000});
  uint64_t high = l.limits.write_high_water;
  s.get_size("write_buffer", high, 4096, 64ull << 20);
  l.limits.write_high_water = high;
  l.limits.write_low_water = high / 4;
  s.get_enum("tls", l.tls_mode, {{"off", TlsMode::Off}, {"starttls", TlsMode::StartTls}, {"implicit", TlsMode::Implicit}});
  s.get("certificates", l.tls_options.certificates);
  s.get_enum("client_certs", l.tls_options.client_certs,
             {{"off", tls::ClientCerts::Off}, {"optional", tls::ClientCerts::Optional},
              {"required", tls::ClientCerts::Required}});
  for (auto& sni : s.sections("sni")) {
    std::string server_name;
    std::vector<std::string> certificates;
    sni.get("name", server_name);
    sni.get("certificates", certificates);
    if (server_name.empty() || certificates.empty()) {
      sni.error("name", "an [[listener.sni]] entry needs name and certificates");
      continue;
    }
    l.tls_options.sni.emplace_back(server_name, certificates);
  }
  app.read_listener(s, l);
}

}  // namespace

void read_common_config(config::Section root, DaemonApp& app, CommonConfig& c) {
  auto d = root.section("daemon");
  d.get("user", c.privileges.user);
  d.get("group", c.privileges.group);
  d.get("chroot", c.privileges.chroot_dir);
  d.get("allow_root", c.privileges.allow_root);
  d.get("pid_file", c.pid_file);
  d.get("threads", c.threads, size_t{1}, size_t{64});
  d.get_duration("drain_timeout", c.drain_timeout, 0ms, std::chrono::milliseconds(1h));

  auto l = root.section("log");
  std::string level(log::level_name(c.log.level));
  l.get_enum("level", level, {"debug", "info", "notice", "warning", "error"});
  c.log.level = *log::parse_level(level);
  // [log.components] dns = "debug": levels for single components.
  auto components = l.section("components");
  for (const auto& name : components.keys()) {
    std::string component_level(log::level_name(c.log.level));
    components.get_enum(name, component_level, {"debug", "info", "notice", "warning", "error"});
    c.log.components[name] = *log::parse_level(component_level);
  }

  auto m = root.section("metrics");
  std::string metrics = c.metrics_listen ? c.metrics_listen->to_string() : "";
  m.get("listen", metrics);
  c.metrics_listen.reset();
  if (!metrics.empty()) {
    if (auto ep = net::Endpoint::parse(metrics)) {
      c.metrics_listen = *ep;
    } else {
      m.error("listen", "\"" + metrics + "\" is not an address such as \"127.0.0.1:9101\" (\"\" turns metrics off)");
    }
  }

  auto dns = root.section("dns");
  dns.get_endpoints("servers", c.dns.servers);
  dns.get_duration("timeout", c.dns.timeout, 100ms, std::chrono::milliseconds(60s));
  dns.get("tries", c.dns.tries, 1, 10);

  auto a = root.section("access");
  a.get("allow_files", c.allow_files);
  a.get("deny_files", c.deny_files);
  a.get("allow", c.allow_rules);
  a.get("deny", c.deny_rules);

  auto t = root.section("tls");
  t.get("db_dir", c.tls.db_dir);
  t.get("password_file", c.tls.password_file);
  t.get("crl_files", c.tls.crl_files);
  t.get("adjust_ciphers", c.tls.adjust_ciphers);
  t.get_enum("min_version", c.tls.min_version, {"1.2", "1.3"});
  t.get_duration("expiry_warning", c.tls.expiry_warning, 0ms, std::chrono::milliseconds(24h * 3650));

  auto w = root.section("workers");
  w.get("threads", c.worker_threads, size_t{1}, size_t{256});
  w.get("queue", c.worker_queue, size_t{1}, size_t{1000000});

  std::set<std::string> names;
  auto services = app.services();
  for (auto& s : root.sections("listener")) {
    ListenerConfig lc;
    read_listener(s, app, services, names, lc);
    if (lc.tls_mode != TlsMode::Off && c.tls.db_dir.empty()) {
      s.error("tls", "TLS needs [tls] db_dir: this host's NSS database (deploy/certs host)");
    }
    c.listeners.push_back(std::move(lc));
  }

  if (auto port = app.grpc_port()) {
    rpc::ServerOptions g;
    g.service = port->service;
    if (auto ep = net::Endpoint::parse(port->default_listen)) g.listen = *ep;
    auto s = root.section("grpc");
    s.get_endpoint("listen", g.listen);
    s.get("certificate", g.mtls.certificate);
    s.get("ca", g.mtls.ca);
    s.get("plaintext", g.mtls.plaintext);
    s.get("max_calls", g.max_calls, size_t{1}, size_t{1000000});
    s.get("max_calls_per_ip", g.max_calls_per_ip, size_t{0}, size_t{1000000});
    s.get_duration("max_connection_age", g.max_connection_age, std::chrono::milliseconds(1s),
                   std::chrono::milliseconds(24h * 30));
    s.get_duration("max_connection_age_grace", g.max_connection_age_grace, 0ms, std::chrono::milliseconds(24h));
    if (!g.mtls.plaintext && c.tls.db_dir.empty()) {
      s.error("plaintext", "mutual TLS needs [tls] db_dir: this host's NSS database (deploy/certs host); "
                           "plaintext = true only where peers need no authentication");
    }
    c.grpc = std::move(g);
  }
}

namespace {

bool any_tls(const CommonConfig& c) {
  return std::any_of(c.listeners.begin(), c.listeners.end(),
                     [](const ListenerConfig& l) { return l.tls_mode != TlsMode::Off; });
}

bool grpc_uses_nss(const CommonConfig& c) { return c.grpc && !c.grpc->mtls.plaintext; }

// One TLS listener's context from its options and [tls].
Result<std::shared_ptr<tls::ServerContext>> make_context(const tls::Nss& nss, const CommonConfig& c,
                                                        const ListenerConfig& l) {
  tls::ServerOptions so = l.tls_options;
  so.min_version = c.tls.min_version;
  so.adjust_ciphers = c.tls.adjust_ciphers;
  auto ctx = tls::ServerContext::create(nss, so);
  if (!ctx) return fail(ErrorKind::Config, "listener " + l.name + ": " + ctx.error().detail);
  return std::move(*ctx);
}

// Opens NSS (with [tls] crl_files, for the whole process) and makes every TLS listener's context.
// Runs before the chroot and the privilege drop: the database and its password file stay out of
// the jail and readable only by root or the owner.
Result<std::unique_ptr<tls::Nss>> start_tls(CommonConfig& c, bool app_needs_nss) {
  if (!any_tls(c) && !app_needs_nss && !grpc_uses_nss(c)) return std::unique_ptr<tls::Nss>();
  if (c.tls.db_dir.empty()) return fail(ErrorKind::Config, "[tls] db_dir is required");
  tls::NssOptions o;
  o.db_dir = c.tls.db_dir;
  o.password_file = c.tls.password_file.empty() ? c.tls.db_dir + "/password" : c.tls.password_file;
  o.crl_files = c.tls.crl_files;
  auto nss = tls::Nss::init(o);
  if (!nss) return tl::unexpected(nss.error());
  for (auto& l : c.listeners) {
    if (l.tls_mode == TlsMode::Off) continue;
    auto ctx = make_context(**nss, c, l);
    if (!ctx) {
      for (auto& made : c.listeners) made.tls.reset();  // NSS shuts down cleanly only without them
      return tl::unexpected(ctx.error());
    }
    l.tls = std::make_shared<TlsContextSlot>(std::move(*ctx));
  }
  return nss;
}

// The certificates this daemon serves: every TLS listener's (SNI ones too) and the gRPC port's.
std::vector<std::string> served_certificates(const CommonConfig& c) {
  std::set<std::string> names;
  for (const auto& l : c.listeners) {
    if (l.tls_mode == TlsMode::Off) continue;
    names.insert(l.tls_options.certificates.begin(), l.tls_options.certificates.end());
    for (const auto& [_, nicknames] : l.tls_options.sni) names.insert(nicknames.begin(), nicknames.end());
  }
  if (grpc_uses_nss(c)) names.insert(c.grpc->mtls.certificate);
  return {names.begin(), names.end()};
}

// A certificate that expires takes its listeners down with it: say so well before, and export
// when, so monitoring can alert too (postern_tls_certificate_expiry_seconds).
void check_certificate_expiry(const CommonConfig& c) {
  auto now = std::chrono::system_clock::now();
  auto& gauge = metrics::default_registry().gauge_family(
      "postern_tls_certificate_expiry_seconds", "Seconds until a certificate this daemon serves expires",
      {"nickname"});
  for (const auto& nickname : served_certificates(c)) {
    auto v = tls::certificate_validity(nickname);
    if (!v) {
      log::warning("tls").phase("certificates").event("certificate_unreadable").kv("nickname", nickname)
          .kv("reason", v.error().detail);
      continue;
    }
    auto left = std::chrono::duration_cast<std::chrono::seconds>(v->not_after - now);
    gauge.with({nickname}).set(left.count());
    if (left >= c.tls.expiry_warning) continue;
    std::time_t t = std::chrono::system_clock::to_time_t(v->not_after);
    char when[32];
    std::strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%SZ", std::gmtime(&t));
    auto line = left.count() <= 0 ? log::error("tls") : log::warning("tls");
    line.phase("certificates").event(left.count() <= 0 ? "certificate_expired" : "certificate_expiring")
        .kv("nickname", nickname).kv("subject", v->subject).kv("serial", v->serial).kv("not_after", when)
        .kv("days_left", static_cast<int64_t>(left.count() / 86400))
        .kv("action", "re-issue it (deploy/certs host, from cron) and send SIGHUP");
  }
}

// Implicit TLS: the handshake starts before the session writes its greeting (the transform holds
// the greeting until the handshake is done).
class ImplicitTlsFactory : public SessionFactory {
 public:
  ImplicitTlsFactory(std::unique_ptr<SessionFactory> inner, std::shared_ptr<TlsContextSlot> tls)
      : inner_(std::move(inner)), tls_(std::move(tls)) {}
  std::unique_ptr<Session> create(Connection& c) override {
    c.start_implicit_tls(tls_->accept(c.info().id));
    return inner_->create(c);
  }
  std::string refusal(Refusal) override { return {}; }  // plaintext bytes would break a TLS client

 private:
  std::unique_ptr<SessionFactory> inner_;
  std::shared_ptr<TlsContextSlot> tls_;
};

struct Loaded {
  config::Document doc;
  CommonConfig common;
  std::unique_ptr<DaemonApp> app;
};

Loaded load(const std::string& path, const DaemonSpec& spec) {
  Loaded l{config::Document::load_file(path), {}, spec.make_app()};
  l.common.log.daemon = spec.name;
  if (!spec.default_metrics_listen.empty()) l.common.metrics_listen = net::Endpoint::parse(spec.default_metrics_listen);
  read_common_config(l.doc.root(), *l.app, l.common);
  l.app->read_config(l.doc.root());
  l.doc.finish();
  return l;
}

// Everything one loop thread owns. Members are destroyed bottom-up: listeners stop first, then the
// connections (whose sessions may use the factories), then what the factories and filters use.
struct LoopState {
  Loop loop;
  std::unique_ptr<dns::Resolver> resolver;
  std::unique_ptr<AccessAdmission> admission;
  std::vector<std::unique_ptr<SessionFactory>> factories;
  std::unique_ptr<ConnectionSet> connections;
  std::vector<std::unique_ptr<Listener>> listeners;
  LoopContext context;
  std::thread thread;
  // Touched only on this loop's thread.
  bool drain_started = false;
  bool drain_reported = false;
};

struct SharedListener {
  std::shared_ptr<ConnectionLimiter> limiter;
  std::shared_ptr<ListenerStats> stats;
};

class Daemon {
 public:
  Daemon(const DaemonSpec& spec, std::string config_path, Loaded loaded)
      : spec_(spec), config_path_(std::move(config_path)), loaded_(std::move(loaded)) {}

  int run();

 private:
  void install_signals();
  void begin_drain();
  void report_if_drained(LoopState& ls);
  void on_loop_drained();
  void maybe_stop();
  void stop_all_loops();
  void reload();
  void reload_tls(const CommonConfig& fresh);
  Result<void> start_grpc();

  const DaemonSpec& spec_;
  std::string config_path_;
  std::unique_ptr<tls::Nss> nss_;  // before loaded_ and loops_: NSS shuts down after every TLS object
  Loaded loaded_;
  std::vector<std::unique_ptr<LoopState>> loops_;
  std::vector<SharedListener> shared_;
  std::unique_ptr<WorkerPool> workers_;
  std::unique_ptr<MetricsEndpoint> metrics_;
  std::vector<std::unique_ptr<UvHandle<uv_signal_t>>> signals_;
  std::unique_ptr<Timer> drain_deadline_;
  std::unique_ptr<Timer> expiry_timer_;
  bool draining_ = false;
  size_t loops_drained_ = 0;
  bool grpc_drained_ = false;  // on loop 0
  bool app_drained_ = false;   // on loop 0: the app's own outbound work (DaemonApp::drain) is done
  // Last, so they go first: the server uses loop 0's access check and the app's services.
  std::unique_ptr<rpc::GrpcRegistry> grpc_registry_;
  std::unique_ptr<rpc::GrpcServer> grpc_;
};

int Daemon::run() {
  CommonConfig& c = loaded_.common;
  log::configure(c.log);
  std::signal(SIGPIPE, SIG_IGN);
  // Every connection is a descriptor; the soft default of 1024 is far below what a mail front end holds.
  rlimit nofile{};
  if (getrlimit(RLIMIT_NOFILE, &nofile) == 0 && nofile.rlim_cur < nofile.rlim_max) {
    nofile.rlim_cur = nofile.rlim_max;
    setrlimit(RLIMIT_NOFILE, &nofile);
  }

  auto fail_start = [&](const std::string& what) {
    log::error("daemon").phase("start").event("start_failed").kv("reason", what);
    std::fprintf(stderr, "%s: %s\n", spec_.name.c_str(), what.c_str());
    return 1;
  };

  auto policy = load_access_policy(c);
  if (!policy) return fail_start(policy.error().detail);

  std::optional<PidFile> pid_file;
  if (!c.pid_file.empty()) {
    auto p = PidFile::create(c.pid_file);
    if (!p) return fail_start(p.error().detail);
    pid_file.emplace(std::move(*p));
  }

  auto nss = start_tls(c, loaded_.app->needs_nss());
  if (!nss) return fail_start(nss.error().detail);
  nss_ = std::move(*nss);
  if (nss_) log::info("tls").phase("start").event("nss_ready").kv("nss", tls::Nss::version()).kv("db", c.tls.db_dir);

  // Bind everything while we may still be root.
  std::vector<std::vector<std::vector<BoundSocket>>> bound;  // [listener][endpoint][loop]
  for (const auto& l : c.listeners) {
    auto b = bind_endpoints(l.addresses, c.threads, l.backlog);
    if (!b) return fail_start("listener " + l.name + ": " + b.error().detail);
    bound.push_back(std::move(*b));
  }
  std::optional<BoundSocket> metrics_socket;
  if (c.metrics_listen) {
    auto b = bind_endpoints({*c.metrics_listen}, 1, 64);
    if (!b) return fail_start("metrics: " + b.error().detail);
    metrics_socket.emplace(std::move((*b)[0][0]));
  }

  if (auto rc = drop_privileges(c.privileges); !rc) return fail_start(rc.error().detail);
  if (auto rc = loaded_.app->start(c); !rc) return fail_start(rc.error().detail);

  workers_ = std::make_unique<WorkerPool>(c.worker_threads, c.worker_queue);
  for (const auto& l : c.listeners) {
    shared_.push_back({std::make_shared<ConnectionLimiter>(l.max_connections, l.max_per_ip),
                       std::make_shared<ListenerStats>(l.name, metrics::default_registry())});
  }

  for (size_t i = 0; i < c.threads; ++i) {
    auto ls = std::make_unique<LoopState>();
    auto resolver = dns::Resolver::create(ls->loop.get(), c.dns);
    if (resolver) {
      ls->resolver = std::move(*resolver);
    } else {
      log::warning("dns").phase("start").event("resolver_failed").kv("reason", resolver.error().detail);
    }
    ls->admission = std::make_unique<AccessAdmission>(*policy, ls->resolver.get());
    ls->connections = std::make_unique<ConnectionSet>(ls->loop.get());
    ls->context = LoopContext{i, &ls->loop, ls->connections.get(), ls->resolver.get(), workers_.get(), nss_.get()};
    if (auto rc = loaded_.app->start_loop(ls->context); !rc) return fail_start(rc.error().detail);
    for (size_t li = 0; li < c.listeners.size(); ++li) {
      const ListenerConfig& lc = c.listeners[li];
      auto factory = loaded_.app->make_factory(lc, ls->context);
      if (lc.tls_mode == TlsMode::Implicit) factory = std::make_unique<ImplicitTlsFactory>(std::move(factory), lc.tls);
      ls->factories.push_back(std::move(factory));
      for (auto& endpoint_copies : bound[li]) {
        ListenerOptions o{lc.name, lc.service, lc.backlog, lc.limits};
        auto listener = std::make_unique<Listener>(*ls->connections, std::move(o), std::move(endpoint_copies[i]),
                                                   shared_[li].limiter, shared_[li].stats, *ls->factories.back(),
                                                   ls->admission.get());
        if (auto rc = listener->start(); !rc) return fail_start(rc.error().detail);
        ls->listeners.push_back(std::move(listener));
      }
    }
    ls->connections->set_on_empty([this, loop = ls.get()] { report_if_drained(*loop); });
    loops_.push_back(std::move(ls));
  }

  if (c.grpc) {
    if (auto rc = start_grpc(); !rc) return fail_start(rc.error().detail);
  }
  if (metrics_socket) {
    metrics_ = std::make_unique<MetricsEndpoint>(loops_[0]->loop, std::move(*metrics_socket));
    if (auto rc = metrics_->start(); !rc) return fail_start(rc.error().detail);
  }
  install_signals();
  if (nss_) {
    check_certificate_expiry(c);
    expiry_timer_ = std::make_unique<Timer>(loops_[0]->loop.get());
    expiry_timer_->start(24h, [this] { check_certificate_expiry(loaded_.common); }, 24h);
    expiry_timer_->unref();
  }

  log::info("daemon").phase("start").event("started").kv("pid", static_cast<int64_t>(::getpid()))
      .kv("threads", static_cast<uint64_t>(c.threads)).kv("listeners", static_cast<uint64_t>(c.listeners.size()));

  for (size_t i = 1; i < loops_.size(); ++i) {
    loops_[i]->thread = std::thread([ls = loops_[i].get()] { ls->loop.run(); });
  }
  loops_[0]->loop.run();
  for (size_t i = 1; i < loops_.size(); ++i) loops_[i]->thread.join();

  grpc_.reset();  // already drained; its services belong to the app
  grpc_registry_.reset();
  loaded_.app->stop();
  signals_.clear();
  drain_deadline_.reset();
  expiry_timer_.reset();
  metrics_.reset();
  // Tear down each loop's state on the main thread; no loop runs any more.
  loops_.clear();
  workers_.reset();
  log::info("daemon").phase("stop").event("stopped");
  return 0;
}

// The gRPC port: the app's services behind the skeleton's gate, whose access check is loop 0's, the
// same filter (and reverse DNS) as the TCP listeners'. Started after the privilege drop, as the
// user whose sockets a SIGHUP rebuild must share the port with (SO_REUSEPORT requires the same
// user); a port below 1024 therefore needs CAP_NET_BIND_SERVICE.
Result<void> Daemon::start_grpc() {
  std::vector<Loop*> loops;
  for (auto& ls : loops_) loops.push_back(&ls->loop);
  grpc_registry_ = std::make_unique<rpc::GrpcRegistry>(std::move(loops));
  loaded_.app->register_grpc(*grpc_registry_);
  auto server = rpc::GrpcServer::start(*loaded_.common.grpc, *grpc_registry_,
                                       {&loops_[0]->loop, loops_[0]->admission.get()});
  if (!server) return tl::unexpected(server.error());
  grpc_ = std::move(*server);
  loaded_.common.grpc->listen.port = static_cast<uint16_t>(grpc_->port());
  return {};
}

void Daemon::install_signals() {
  Loop& loop0 = loops_[0]->loop;
  for (int sig : {SIGTERM, SIGINT, SIGHUP}) {
    auto h = std::make_unique<UvHandle<uv_signal_t>>();
    uv_signal_init(loop0.get(), h->get());
    h->set_initialized();
    (*h)->data = this;
    uv_signal_start(
        h->get(),
        [](uv_signal_t* s, int signum) {
          auto* self = static_cast<Daemon*>(s->data);
          if (self == nullptr) return;
          if (signum == SIGHUP) {
            self->reload();
          } else {
            self->begin_drain();
          }
        },
        sig);
    signals_.push_back(std::move(h));
  }
}

void Daemon::begin_drain() {
  if (draining_) {
    // A second SIGTERM: do not wait for slow sessions.
    log::warning("daemon").phase("drain").event("drain_forced");
    for (auto& ls : loops_) ls->loop.post([ls = ls.get()] { ls->connections->abort_all(); });
    if (grpc_) grpc_->cancel_all();
    return;
  }
  draining_ = true;
  size_t open = 0;
  for (auto& ls : loops_) open += ls->connections->size();
  log::info("daemon").phase("drain").event("draining").kv("connections", static_cast<uint64_t>(open))
      .kv("deadline_ms", static_cast<int64_t>(loaded_.common.drain_timeout.count()));
  if (metrics_) metrics_->stop();
  drain_deadline_ = std::make_unique<Timer>(loops_[0]->loop.get());
  drain_deadline_->start(loaded_.common.drain_timeout, [this] {
    log::warning("daemon").phase("drain").event("drain_deadline");
    for (auto& ls : loops_) ls->loop.post([ls = ls.get()] { ls->connections->abort_all(); });
    if (grpc_) grpc_->cancel_all();
    app_drained_ = true;  // what the app has not finished by now is given up
    maybe_stop();
  });
  // The app stops starting outbound work first, so the connections below can run out.
  loaded_.app->drain([this] {
    loops_[0]->loop.post([this] {
      app_drained_ = true;
      maybe_stop();
    });
  });
  if (grpc_) {
    // The loops keep running until gRPC is done: its handlers may still post onto them.
    grpc_->drain(loaded_.common.drain_timeout, [this] {
      loops_[0]->loop.post([this] {
        grpc_drained_ = true;
        maybe_stop();
      });
    });
  }
  for (auto& ls : loops_) {
    ls->loop.post([this, ls = ls.get()] {
      ls->drain_started = true;
      for (auto& l : ls->listeners) l->stop();
      ls->connections->drain_all();
      report_if_drained(*ls);
    });
  }
}

// On loop `ls`'s thread: tells loop 0 once that this loop has no connection left.
void Daemon::report_if_drained(LoopState& ls) {
  if (!ls.drain_started || ls.drain_reported || ls.connections->size() != 0) return;
  ls.drain_reported = true;
  loops_[0]->loop.post([this] { on_loop_drained(); });
}

void Daemon::on_loop_drained() {
  ++loops_drained_;
  maybe_stop();
}

void Daemon::maybe_stop() {
  if (loops_drained_ < loops_.size() || (grpc_ && !grpc_drained_) || !app_drained_) return;
  stop_all_loops();
}

void Daemon::stop_all_loops() {
  for (auto& ls : loops_) ls->loop.stop();
}

void Daemon::reload() {
  log::info("daemon").phase("reload").event("reloading").kv("config", config_path_);
  Loaded fresh = load(config_path_, spec_);
  if (!fresh.doc.ok()) {
    for (const auto& p : fresh.doc.problems()) {
      log::error("daemon").phase("reload").event("config_problem").kv("problem", p.to_string());
    }
    log::error("daemon").phase("reload").event("reload_rejected").kv("reason", "config has problems; old config kept");
    return;
  }
  auto policy = load_access_policy(fresh.common);
  if (!policy) {
    log::error("daemon").phase("reload").event("reload_rejected").kv("reason", policy.error().detail);
    return;
  }
  CommonConfig& old = loaded_.common;
  log::configure(fresh.common.log);
  if (fresh.common.threads != old.threads || fresh.common.metrics_listen != old.metrics_listen ||
      fresh.common.privileges.user != old.privileges.user || fresh.common.listeners.size() != old.listeners.size()) {
    log::warning("daemon").phase("reload").event("restart_needed").kv("reason", "threads, metrics, user or listeners changed");
  }
  for (size_t li = 0; li < old.listeners.size() && li < fresh.common.listeners.size(); ++li) {
    const auto& nl = fresh.common.listeners[li];
    if (nl.name != old.listeners[li].name || nl.addresses != old.listeners[li].addresses) {
      log::warning("daemon").phase("reload").event("restart_needed").kv("listener", nl.name)
          .kv("reason", "addresses changed");
      continue;
    }
    shared_[li].limiter->set_limits(nl.max_connections, nl.max_per_ip);
    for (auto& ls : loops_) {
      ls->loop.post([ls = ls.get(), name = nl.name, limits = nl.limits] {
        for (auto& l : ls->listeners) {
          if (l->options().name == name) l->set_limits(limits);
        }
      });
    }
  }
  for (auto& ls : loops_) {
    ls->loop.post([this, ls = ls.get(), p = *policy] {
      ls->admission->set_policy(p);
      // Loop 0's check decides for gRPC peers too: decisions kept under the old filter go.
      if (grpc_ && ls == loops_[0].get()) grpc_->policy_changed();
    });
  }
  // CRLs first: the TLS contexts and the gRPC server below, and every handshake from now on,
  // verify against what NSS holds after this.
  if (nss_) {
    if (fresh.common.tls.db_dir != old.tls.db_dir || fresh.common.tls.password_file != old.tls.password_file) {
      log::warning("daemon").phase("reload").event("restart_needed").kv("reason", "[tls] db_dir or password_file changed");
    }
    (void)nss_->reload_crls(fresh.common.tls.crl_files);  // logs its own failure; the old CRLs stay
    reload_tls(fresh.common);
  }
  if (grpc_ && fresh.common.grpc) {
    rpc::ServerOptions g = *fresh.common.grpc;
    if (g.listen.port == 0 && g.listen.address == old.grpc->listen.address) g.listen.port = old.grpc->listen.port;
    if (auto rc = grpc_->reload(g, old.drain_timeout); rc) {
      old.grpc = std::move(g);
    } else if (rc.error().kind == ErrorKind::Config && g.listen != old.grpc->listen) {
      log::warning("daemon").phase("reload").event("restart_needed").kv("reason", rc.error().detail);
    }
  }
  loaded_.app->reload(*fresh.app);
  // Keep the new values for the next comparison; the running app stays.
  loaded_.common.log = fresh.common.log;
  loaded_.common.tls.crl_files = fresh.common.tls.crl_files;
  loaded_.common.tls.expiry_warning = fresh.common.tls.expiry_warning;
  loaded_.common.tls.adjust_ciphers = fresh.common.tls.adjust_ciphers;
  loaded_.common.tls.min_version = fresh.common.tls.min_version;
  for (size_t li = 0; li < old.listeners.size() && li < fresh.common.listeners.size(); ++li) {
    auto& nl = fresh.common.listeners[li];
    if (nl.addresses == old.listeners[li].addresses && nl.tls_mode == old.listeners[li].tls_mode) {
      auto slot = std::move(old.listeners[li].tls);  // the sessions' factories hold this slot
      old.listeners[li] = std::move(nl);
      old.listeners[li].tls = std::move(slot);
    }
  }
  if (nss_) check_certificate_expiry(loaded_.common);
  log::info("daemon").phase("reload").event("reloaded");
}

// SIGHUP: every TLS listener gets a context made again from its (possibly changed) settings and
// the certificates the NSS database holds now, so a re-issued certificate is served from the next
// handshake on; connections keep the context they started with. A listener whose new context
// fails keeps the old one.
void Daemon::reload_tls(const CommonConfig& fresh) {
  CommonConfig& old = loaded_.common;
  for (size_t li = 0; li < old.listeners.size() && li < fresh.listeners.size(); ++li) {
    const auto& ol = old.listeners[li];
    const auto& nl = fresh.listeners[li];
    if (!ol.tls || nl.name != ol.name || nl.addresses != ol.addresses) continue;
    if (nl.tls_mode != ol.tls_mode) {
      log::warning("daemon").phase("reload").event("restart_needed").kv("listener", nl.name)
          .kv("reason", "tls mode changed");
      continue;
    }
    auto ctx = make_context(*nss_, fresh, nl);
    if (!ctx) {
      log::error("tls").phase("reload").event("tls_reload_failed").kv("listener", nl.name)
          .kv("reason", ctx.error().detail).kv("effect", "the listener keeps its current certificates");
      continue;
    }
    ol.tls->replace(std::move(*ctx));
    log::info("tls").phase("reload").event("tls_context_replaced").kv("listener", nl.name);
  }
}

void print_usage(const DaemonSpec& spec, std::FILE* out) {
  std::fprintf(out,
               "usage: %s [--config FILE] [--check-config]\n"
               "  %s\n"
               "  --config FILE    configuration (default /etc/postern/%s.toml)\n"
               "  --check-config   print the effective configuration, or every problem in it, and exit\n",
               spec.name.c_str(), spec.description.c_str(), spec.name.c_str());
}

}  // namespace

int run_daemon(int argc, char** argv, const DaemonSpec& spec) {
  std::string config_path = "/etc/postern/" + spec.name + ".toml";
  bool check_only = false;
  for (int i = 1; i < argc; ++i) {
    std::string_view a = argv[i];
    if (a == "--config" && i + 1 < argc) {
      config_path = argv[++i];
    } else if (a.rfind("--config=", 0) == 0) {
      config_path = std::string(a.substr(9));
    } else if (a == "--check-config") {
      check_only = true;
    } else if (a == "--version") {
      std::printf("%s (Postern), NSS %s\n", spec.name.c_str(), tls::Nss::version().c_str());
      return 0;
    } else if (a == "--help" || a == "-h") {
      print_usage(spec, stdout);
      return 0;
    } else {
      std::fprintf(stderr, "%s: unknown argument %s\n", spec.name.c_str(), argv[i]);
      print_usage(spec, stderr);
      return 2;
    }
  }
  Loaded loaded = load(config_path, spec);
  // From here on the process holds keys: NSS's, and the copy of the host's private key that gRPC
  // keeps for its lifetime. Not dumpable means no core file with them and no ptrace or
  // /proc/PID/mem by other processes of the same user (the drop to [daemon] user does this too, but
  // a daemon started as that user, e.g. by systemd's User=, or allowed to stay root, would not).
  ::prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
  if (check_only) {
    int rc = config::check_config(loaded.doc, stdout, stderr);
    if (rc == 0) {
      // Filter files are part of the config: a broken one fails the check too.
      if (auto policy = load_access_policy(loaded.common); !policy) {
        std::fprintf(stderr, "%s\n", policy.error().detail.c_str());
        return 1;
      }
      // Nicknames, the cipher grammar and CRL files are checked against the real database.
      auto nss = start_tls(loaded.common, loaded.app->needs_nss());
      for (auto& l : loaded.common.listeners) l.tls.reset();
      if (!nss) {
        std::fprintf(stderr, "%s\n", nss.error().detail.c_str());
        return 1;
      }
      if (grpc_uses_nss(loaded.common)) {
        if (auto ok = rpc::check_server_identity(loaded.common.grpc->mtls); !ok) {
          std::fprintf(stderr, "[grpc]: %s\n", ok.error().detail.c_str());
          return 1;
        }
      }
    }
    return rc;
  }
  if (!loaded.doc.ok()) {
    std::fputs(loaded.doc.problems_text().c_str(), stderr);
    return 1;
  }
  Daemon daemon(spec, config_path, std::move(loaded));
  return daemon.run();
}

}  // namespace common::daemon
