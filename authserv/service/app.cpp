// app.cpp: authserv's config tables ([authserv] [directory] [ldap] [password] [sasl] [tokens]),
// start-up (backend, token key), its Auth service for the gRPC port run_daemon serves ([grpc]),
// SIGHUP (certmap and token issuers) and shutdown.
#include "authserv/service/app.hpp"

#include <sodium.h>

#include <fstream>
#include <sstream>
#include <thread>

#include "authserv/directory/lmdb_directory.hpp"
#include "authserv/ldap/ldap_directory.hpp"
#include "authserv/service/admin_handler.hpp"
#include "authserv/service/core.hpp"
#include "authserv/service/grpc_service.hpp"
#include "common/log/log.hpp"

namespace authserv::service {
namespace {

using common::config::Section;

struct AuthservConfig {
  ServiceOptions service;
  std::vector<std::string> admins;
  std::string backend = "embedded";
  std::string directory_path;
  ldap::LdapOptions ldap;
  std::string ldap_bind_password_file;
  std::string token_key;
  std::string certmap_file;
  Settings settings;
  size_t hash_threads = std::max<size_t>(1, std::thread::hardware_concurrency());
  size_t hash_queue = 256;
  size_t directory_threads = 8;
  size_t directory_queue = 4096;
};

void read_ldap(Section l, AuthservConfig& c) {
  auto& o = c.ldap;
  l.get("urls", o.urls);
  l.get("start_tls", o.start_tls);
  l.get("ca_file", o.ca_file);
  l.get("bind_dn", o.bind_dn);
  l.get("bind_password_file", c.ldap_bind_password_file);
  l.get("base_dn", o.base_dn);
  l.get("domain_base", o.domain_base);
  l.get("search_for_domain", o.search_for_domain);
  l.get("user_filter", o.user_filter);
  l.get("pool_size", o.pool_size, size_t{1}, size_t{256});
  l.get_duration("connect_timeout", o.connect_timeout, std::chrono::milliseconds(100), std::chrono::milliseconds(60000));
  l.get_duration("operation_timeout", o.op_timeout, std::chrono::milliseconds(100), std::chrono::milliseconds(60000));
  l.get_enum("password_check", o.password_check,
             {{"bind", ldap::PasswordCheck::Bind}, {"hash", ldap::PasswordCheck::Hash}});
  l.get("rehash", o.allow_rehash);
  l.get("store_admins", o.store_admins);
  if (c.backend == "ldap" && o.urls.empty()) l.error("urls", "the ldap backend needs at least one URL");
}

class AuthservApp final : public common::daemon::DaemonApp {
 public:
  std::vector<std::string> services() const override { return {}; }
  std::optional<common::daemon::GrpcPort> grpc_port() const override {
    return common::daemon::GrpcPort{"authserv", "127.0.0.1:7560"};
  }

  void read_config(Section root) override {
    auto& c = config_;
    auto a = root.section("authserv");
    // The port is the skeleton's now, configured like every daemon's gRPC port.
    for (const char* moved : {"listen", "certificate", "ca", "plaintext"}) {
      if (!a.has(moved)) continue;
      std::string ignored;
      bool ignored_flag = false;
      if (std::string_view(moved) == "plaintext") a.get(moved, ignored_flag);
      else a.get(moved, ignored);
      a.error(moved, std::string("moved to [grpc] ") + moved);
    }
    a.get("admins", c.settings.admins);
    a.get("default_domain", c.settings.default_domain);
    a.get("max_exchanges", c.service.max_exchanges, size_t{1}, size_t{1000000});

    auto d = root.section("directory");
    d.get_enum("backend", c.backend, {"embedded", "ldap"});
    d.get("path", c.directory_path);
    d.get("threads", c.directory_threads, size_t{1}, size_t{256});
    d.get("queue", c.directory_queue, size_t{1}, size_t{1000000});
    if (c.backend == "embedded" && c.directory_path.empty()) d.error("path", "the embedded directory needs a path");
    read_ldap(root.section("ldap"), c);

    auto p = root.section("password");
    p.get("argon2_ops", c.settings.argon2.ops, uint64_t{1}, uint64_t{32});
    uint64_t mem = c.settings.argon2.mem_bytes;
    p.get_size("argon2_memory", mem, uint64_t{8} << 10, uint64_t{1} << 30);
    c.settings.argon2.mem_bytes = static_cast<size_t>(mem);
    p.get("rehash", c.settings.rehash);
    p.get("scram_iterations", c.settings.scram_iterations, password::kScramMinIterations, password::kScramMaxIterations);
    p.get("hash_threads", c.hash_threads, size_t{1}, size_t{256});
    p.get("hash_queue", c.hash_queue, size_t{1}, size_t{100000});
    p.get_duration("cache_ttl", c.settings.password_cache_ttl, std::chrono::seconds(0), std::chrono::seconds(86400));
    p.get("cache_size", c.settings.password_cache_entries, size_t{1}, size_t{10000000});
    p.get("hash_queue_per_source", c.settings.hash_queue_per_source, size_t{0}, size_t{100000});
    p.get_enum("hash_memory", c.settings.keep_hash_memory, {{"per_hash", false}, {"kept", true}});

    auto s = root.section("sasl");
    // AUTH-08 mech_list: "SCRAM-SHA-256 PLAIN ..."; empty: every mechanism this connection supports.
    std::string mech_list;
    s.get("mechanisms", mech_list);
    if (auto parsed = policy::parse_mech_list(mech_list)) {
      c.settings.mechanisms.mech_list = std::move(*parsed);
    } else {
      s.error("mechanisms", parsed.error().detail);
    }
    s.get("allow_plaintext_without_tls", c.settings.mechanisms.allow_plaintext_without_tls);
    std::vector<oauth::Issuer> issuers;
    for (auto is : s.sections("oauth_issuer")) {
      oauth::Issuer issuer;
      is.get("issuer", issuer.issuer);
      is.get("audiences", issuer.audiences);
      is.get("user_claim", issuer.user_claim);
      is.get("keys", issuer.keys);
      is.get_duration("leeway", issuer.leeway, std::chrono::seconds(0), std::chrono::seconds(3600));
      issuers.push_back(std::move(issuer));
    }
    if (auto v = oauth::TokenValidator::create(std::move(issuers))) {
      c.settings.token_issuers = std::make_shared<const oauth::TokenValidator>(std::move(*v));
      c.settings.mechanisms.token_issuers_configured = !c.settings.token_issuers->empty();
    } else {
      s.error("oauth_issuer", v.error().detail);
    }
    std::string proxy_allowed;
    s.get("proxy_allowed", proxy_allowed);
    if (!proxy_allowed.empty()) {
      if (auto f = common::access::AccessFilter::from_compact(proxy_allowed, "proxy_allowed")) {
        c.settings.proxy_hosts = std::make_shared<const common::access::AccessFilter>(std::move(*f));
      } else {
        s.error("proxy_allowed", f.error().empty() ? std::string("not a rule list") : f.error().front().to_string());
      }
    }
    std::string& certmap_file = c.certmap_file;
    s.get("certmap", certmap_file);
    c.settings.certmap = default_certmap();
    if (!certmap_file.empty()) {
      std::ifstream in(certmap_file);
      std::stringstream text;
      text << in.rdbuf();
      auto map = in ? common::tls::parse_certmap(text.str(), certmap_file)
                    : common::tls::CertMapResult<common::tls::CertMap>(tl::unexpected(common::tls::CertMapErrors{}));
      if (!in) {
        s.error("certmap", "cannot read " + certmap_file);
      } else if (!map) {
        s.error("certmap", common::tls::to_error(map.error()).detail);
      } else {
        c.settings.certmap = std::make_shared<const common::tls::CertMap>(std::move(*map));
      }
    }
    std::string min_tls = "any";
    s.get_enum("plaintext_min_tls", min_tls, {"any", "1.2", "1.3"});
    c.settings.mechanisms.plaintext_min_tls_version = min_tls == "1.3" ? policy::kTls13 : min_tls == "1.2" ? policy::kTls12 : 0;

    auto t = root.section("tokens");
    t.get("key_file", c.token_key);
    t.get("allow_unbound", c.settings.allow_unbound_tokens);  // tests only: tokens for front ends with no name
    t.get_duration("ttl", c.settings.token_ttl, std::chrono::seconds(60), std::chrono::seconds(86400));
    t.get_duration("max_session", c.settings.max_session, std::chrono::seconds(60), std::chrono::seconds(86400 * 90));
    if (c.token_key.empty()) t.error("key_file", "authserv needs a token signing key file (created if absent)");
  }

  common::Result<void> start(const common::daemon::CommonConfig& common_config) override {
    auto& c = config_;
    auto signer =
        common::authtoken::Signer::load_or_create(c.token_key, {.allow_unbound = c.settings.allow_unbound_tokens});
    if (!signer) return common::fail(common::ErrorKind::Config, "tokens: " + signer.error().detail);
    // SCRAM's fake salts for unknown names must survive restarts and match across authservs (a
    // changing salt tells an attacker the name does not exist), and only a holder of the secret
    // may compute them (RFC 5802 §9), so their key is a sub-key of the signing seed, not of the
    // public key every store holds.
    if (auto k = signer->derive_key(kFakeSaltContext, 1, c.settings.fake_salt_key); !k)
      return common::fail(common::ErrorKind::Config, "tokens: " + k.error().detail);

    std::unique_ptr<directory::Backend> backend;
    if (c.backend == "embedded") {
      auto db = directory::LmdbDirectory::open(c.directory_path, {});
      if (!db) return common::fail(common::ErrorKind::Config, "directory: " + db.error().detail);
      embedded_ = db->get();
      backend = std::move(*db);
    } else {
      if (!c.ldap_bind_password_file.empty()) {
        auto secret = read_secret(c.ldap_bind_password_file);
        if (!secret) return tl::unexpected(secret.error());
        c.ldap.bind_password = std::move(*secret);
      }
      auto db = ldap::LdapDirectory::open(c.ldap);
      sodium_memzero(c.ldap.bind_password.data(), c.ldap.bind_password.size());
      if (!db) return common::fail(common::ErrorKind::Config, "ldap: " + db.error().detail);
      backend = std::move(*db);
    }
    core_ = std::make_unique<Core>(std::move(backend), c.settings, std::move(*signer), c.hash_threads, c.hash_queue,
                                   c.directory_threads, c.directory_queue);
    // The cost every new hash (and the unknown-user dummy) is made with, so an operator sees what
    // `postern-directory calibrate` proposed actually took effect.
    common::log::info("authserv").phase("start").event("password_hashing")
        .kv("argon2_ops", std::to_string(c.settings.argon2.ops))
        .kv("argon2_memory_kib", std::to_string(c.settings.argon2.mem_bytes >> 10))
        .kv("hash_threads", std::to_string(c.hash_threads)).kv("hash_queue", std::to_string(c.hash_queue))
        .kv("hash_memory", c.settings.keep_hash_memory ? "kept" : "per_hash")
        .kv("cache_ttl_s", std::to_string(c.settings.password_cache_ttl.count()))
        .kv("cache_size", std::to_string(c.settings.password_cache_entries));
    // [dns], as every daemon reads it: for mailAllowedServiceAccess and access-domain names.
    if (auto names = common::dns::ResolverThread::start(common_config.dns)) {
      core_->use_dns(std::move(*names));
    } else {
      common::log::warning("dns").phase("start").event("resolver_failed").kv("reason", names.error().detail)
          .kv("effect", "rules naming hosts see no client name unless the front end sends it");
    }
    if (embedded_) admin_ = make_admin_handler(*embedded_, c.settings);
    c.service.plaintext = common_config.grpc && common_config.grpc->mtls.plaintext;
    grpc_ = std::make_unique<AuthGrpc>(*core_, admin_.get(), c.service);
    common::log::info("authserv").phase("start").event("ready").kv("backend", core_->backend().kind())
        .kv("token_key_id", core_->key_id());
    return {};
  }

  std::unique_ptr<common::runtime::SessionFactory> make_factory(const common::daemon::ListenerConfig&,
                                                                common::daemon::LoopContext&) override {
    return nullptr;  // services() is empty: no [[listener]] can exist
  }

  void register_grpc(common::rpc::GrpcRegistry& registry) override { grpc_->register_with(registry); }

  // SIGHUP: certmap.conf and [[sasl.oauth_issuer]] as the fresh app read them (a file that failed
  // to parse rejected the whole reload before this). The rest needs a restart.
  void reload(common::daemon::DaemonApp& fresh_app) override {
    auto& fresh = static_cast<AuthservApp&>(fresh_app).config_;
    core_->adopt(fresh.settings.certmap, fresh.settings.token_issuers);
    common::log::info("authserv").phase("reload").event("adopted").kv("certmap", fresh.certmap_file.empty() ? "built-in" : fresh.certmap_file)
        .kv("token_issuers", fresh.settings.token_issuers && !fresh.settings.token_issuers->empty() ? "yes" : "no");
  }

  void stop() override {
    // run_daemon shut the gRPC server down before this; the service goes first, then what it used.
    grpc_.reset();
    admin_.reset();
    core_.reset();
  }

 private:
  static common::Result<std::string> read_secret(const std::string& path) {
    std::FILE* f = std::fopen(path.c_str(), "re");
    if (f == nullptr) return common::fail(common::ErrorKind::Config, "cannot read " + path);
    std::string s(4096, '\0');
    size_t n = std::fread(s.data(), 1, s.size(), f);
    std::fclose(f);
    s.resize(n);
    while (!s.empty() && (s.back() == '\n' || s.back() == '\r')) s.pop_back();
    return s;
  }

  AuthservConfig config_;
  directory::LmdbDirectory* embedded_ = nullptr;
  std::unique_ptr<Core> core_;
  std::unique_ptr<AdminHandler> admin_;
  std::unique_ptr<AuthGrpc> grpc_;
};

}  // namespace

std::unique_ptr<common::daemon::DaemonApp> make_app() { return std::make_unique<AuthservApp>(); }

}  // namespace authserv::service
