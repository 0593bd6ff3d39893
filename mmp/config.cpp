// config.cpp: reading [mmp], [imap], [authserv], [stores] and the listeners' virtual domains (config.hpp).
#include "mmp/config.hpp"

#include "common/ascii.hpp"
#include "common/authclient/config.hpp"
#include "common/net/address.hpp"
#include "mmp/store_client/config.hpp"

namespace mmp {

void read_config(common::config::Section root, Config& out) {
  auto m = root.section("mmp");
  m.get("host_name", out.mmp.host_name);
  if (out.mmp.host_name.empty()) out.mmp.host_name = common::net::local_host_name();
  m.get("default_domain", out.mmp.default_domain);
  out.mmp.default_domain = common::ascii::lowered(out.mmp.default_domain);
  if (out.mmp.default_domain.find('@') != std::string::npos) m.error("default_domain", "a domain, without \"@\"");
  m.get("restrict_plain_passwords", out.mmp.restrict_plain_passwords);

  auto i = root.section("imap");
  auto& l = out.imap.limits;
  i.get_size("max_line", l.max_line, 1024, 1u << 20);
  i.get_size("max_literal", l.max_literal, 1024, 16u << 20);
  i.get_size("max_message_size", l.max_message, 1024, 1ull << 31);
  i.get("max_depth", l.max_depth, size_t{8}, size_t{1000});
  i.get("max_errors", out.imap.max_errors, size_t{1}, size_t{1000});

  common::authclient::read_auth_client_config(root.section("authserv"), out.authserv);
  store_client::read_store_client_config(root.section("stores"), out.stores);
}

namespace {

void read_domain(common::config::Section s, std::optional<std::string>& domain) {
  if (!s.has("default_domain")) return;
  std::string d;
  s.get("default_domain", d);
  d = common::ascii::lowered(d);
  if (d.find('@') != std::string::npos) s.error("default_domain", "a domain, without \"@\"");
  domain = std::move(d);
}

bool name_matches(std::string_view pattern, std::string_view name) {
  if (pattern.starts_with("*.")) {
    // One label, as for certificates: "*.example.org" names a.example.org, not example.org.
    const auto dot = name.find('.');
    return dot != std::string_view::npos && dot > 0 && name.substr(dot) == pattern.substr(1);
  }
  return pattern == name;
}

}  // namespace

ListenerSettings ListenerSettings::resolved(const MmpConfig& defaults) const {
  ListenerSettings out = *this;
  if (!out.default_domain) out.default_domain = defaults.default_domain;
  if (!out.restrict_plain_passwords) out.restrict_plain_passwords = defaults.restrict_plain_passwords;
  for (auto& [name, domain] : out.sni_domains) {
    if (!domain) domain = out.default_domain;
  }
  return out;
}

const std::string* ListenerSettings::sni_domain(std::string_view server_name) const {
  for (const auto& [name, domain] : sni_domains) {
    if (domain && name_matches(name, server_name)) return &*domain;
  }
  return nullptr;
}

ListenerSettings read_listener_settings(common::config::Section listener) {
  ListenerSettings out;
  read_domain(listener, out.default_domain);
  if (listener.has("restrict_plain_passwords")) {
    bool restrict = true;
    listener.get("restrict_plain_passwords", restrict);
    out.restrict_plain_passwords = restrict;
  }
  for (auto sni : listener.sections("sni")) {
    std::string name;
    sni.get("name", name);
    std::optional<std::string> domain;
    read_domain(sni, domain);
    out.sni_domains.emplace_back(common::ascii::lowered(name), std::move(domain));
  }
  return out;
}

}  // namespace mmp
