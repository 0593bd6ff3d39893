// config.cpp: reading [delivery], [[store_host]], [[route]] and [[tls_policy]] (config.hpp).
#include "mta/delivery/config.hpp"

#include <algorithm>
#include <set>

#include "common/ascii.hpp"

namespace mta::delivery {
namespace {

using namespace std::chrono_literals;
using common::config::Section;
using Ms = std::chrono::milliseconds;

// A domain as a table key: lower case, no trailing dot; a leading dot (every subdomain) is kept.
std::string domain_key(std::string_view text) {
  std::string d = common::ascii::lowered(common::ascii::trim(text));
  while (!d.empty() && d.back() == '.') d.pop_back();
  return d;
}

bool plausible_domain(std::string_view d) {
  if (d.starts_with('.')) d.remove_prefix(1);
  if (d.empty() || d.size() > 253) return false;
  if (d.front() == '[' && d.back() == ']') return true;  // an address literal destination
  for (char c : d) {
    if (!common::ascii::is_alnum(c) && c != '-' && c != '.' && c != '_') return false;
  }
  return true;
}

template <class T>
const T* lookup(const std::vector<T>& items, std::string_view domain) {
  const std::string d = domain_key(domain);
  for (const auto& item : items) {
    if (item.domain == d) return &item;
  }
  // The longest ".suffix" entry that ends the domain: ".example.net" covers mx.eu.example.net.
  const T* best = nullptr;
  for (const auto& item : items) {
    if (!item.domain.starts_with('.') || d.size() <= item.domain.size() || !d.ends_with(item.domain)) continue;
    if (!best || item.domain.size() > best->domain.size()) best = &item;
  }
  return best;
}

void read_timeouts(Section& s, common::smtpclient::Timeouts& t) {
  s.get_duration("greeting_timeout", t.greeting, Ms(100), Ms(1h));
  s.get_duration("command_timeout", t.command, Ms(100), Ms(1h));
  s.get_duration("mail_timeout", t.mail, Ms(100), Ms(1h));
  s.get_duration("rcpt_timeout", t.rcpt, Ms(100), Ms(1h));
  s.get_duration("data_init_timeout", t.data_init, Ms(100), Ms(1h));
  s.get_duration("data_block_timeout", t.data_block, Ms(100), Ms(1h));
  s.get_duration("data_term_timeout", t.data_term, Ms(100), Ms(1h));
}

// "host", "host:port", "[v6]:port" or a bare IPv6 address.
bool split_host(std::string_view text, std::string& host, uint16_t& port) {
  if (text.empty()) return false;
  if (text.front() == '[') {
    const auto close = text.find(']');
    if (close == std::string_view::npos) return false;
    host.assign(text.substr(1, close - 1));
    std::string_view rest = text.substr(close + 1);
    if (rest.empty()) return !host.empty();
    if (rest.front() != ':') return false;
    text = rest.substr(1);
  } else {
    const auto colon = text.rfind(':');
    if (colon == std::string_view::npos || text.find(':') != colon) {
      host.assign(text);  // no port, or an IPv6 address without brackets
      return true;
    }
    host.assign(text.substr(0, colon));
    text = text.substr(colon + 1);
  }
  if (text.empty() || text.size() > 5) return false;
  uint32_t n = 0;
  for (char c : text) {
    if (!common::ascii::is_digit(c)) return false;
    n = n * 10 + static_cast<uint32_t>(c - '0');
  }
  if (n == 0 || n > 65535) return false;
  port = static_cast<uint16_t>(n);
  return !host.empty();
}

}  // namespace

const StoreHost* Config::store_host(std::string_view name) const {
  const std::string n = common::ascii::lowered(name);
  for (const auto& s : store_hosts) {
    if (s.name == n) return &s;
  }
  return nullptr;
}

const Route* Config::route(std::string_view domain) const { return lookup(routes, domain); }
const TlsPolicy* Config::tls_policy(std::string_view domain) const { return lookup(tls_policies, domain); }

void read_config(Section root, Config& out) {
  auto d = root.section("delivery");
  d.get_duration("poll_interval", out.poll_interval, Ms(50), Ms(1h));
  d.get("max_sessions", out.max_sessions, size_t{1}, size_t{10000});
  d.get("max_per_destination", out.max_per_destination, size_t{1}, size_t{10000});
  d.get("batch_recipients", out.batch_recipients, size_t{1}, size_t{10000});
  d.get("max_transaction_recipients", out.max_transaction_recipients, size_t{1}, size_t{10000});
  d.get("smtp_port", out.smtp_port, uint16_t{1}, uint16_t{65535});
  d.get("helo_name", out.helo_name);
  d.get("certificate", out.certificate);
  if (out.certificate.empty()) d.error("certificate", "the nickname of this host's certificate for LMTP to the stores");
  d.get_duration("connect_timeout", out.connect_timeout, Ms(100), Ms(10min));
  read_timeouts(d, out.timeouts);
  d.get("pool_max_idle", out.pool.max_idle, size_t{0}, size_t{1000});
  d.get_duration("pool_idle_timeout", out.pool.idle_timeout, Ms(100), Ms(1h));
  d.get("max_connection_transactions", out.pool.max_transactions, size_t{1}, size_t{100000});
  d.get("max_mx_addresses", out.max_mx_addresses, size_t{1}, size_t{100});
  if (out.max_per_destination > out.max_sessions) {
    d.error("max_per_destination", "larger than max_sessions (" + std::to_string(out.max_sessions) + ")");
  }

  std::set<std::string> names;
  for (auto& s : root.sections("store_host")) {
    StoreHost h;
    s.get("name", h.name);
    h.name = common::ascii::lowered(common::ascii::trim(h.name));
    if (h.name.empty()) s.error("name", "missing: the mailHost value that names this store");
    if (!h.name.empty() && !names.insert(h.name).second) s.error("name", "store \"" + h.name + "\" is listed twice");
    if (!s.has("address")) s.error("address", "missing: the store's LMTP address (\"192.0.2.10:225\")");
    s.get_endpoint("address", h.address);
    if (s.has("address") && h.address.port == 0) s.error("address", "needs a port");
    s.get_enum("tls", h.implicit_tls, {{"implicit", true}, {"starttls", false}});
    s.get("server_name", h.server_name);
    if (h.server_name.empty()) h.server_name = h.name;
    out.store_hosts.push_back(std::move(h));
  }

  std::set<std::string> routed;
  for (auto& s : root.sections("route")) {
    Route r;
    std::string domain, host;
    s.get("domain", domain);
    r.domain = domain_key(domain);
    if (!plausible_domain(r.domain)) s.error("domain", "missing or not a domain name");
    if (!r.domain.empty() && !routed.insert(r.domain).second) s.error("domain", "\"" + r.domain + "\" has two routes");
    s.get("host", host);
    r.port = out.smtp_port;
    if (host.empty() || !split_host(host, r.host, r.port)) {
      s.error("host", "missing or not \"host\", \"host:port\" or \"[address]:port\"");
    }
    out.routes.push_back(std::move(r));
  }

  std::set<std::string> policed;
  for (auto& s : root.sections("tls_policy")) {
    TlsPolicy p;
    std::string domain;
    s.get("domain", domain);
    p.domain = domain_key(domain);
    if (!plausible_domain(p.domain)) s.error("domain", "missing or not a domain name");
    if (!p.domain.empty() && !policed.insert(p.domain).second) {
      s.error("domain", "\"" + p.domain + "\" has two TLS policies");
    }
    using common::smtpclient::StartTls;
    s.get_enum("starttls", p.starttls,
               {{"opportunistic", StartTls::Opportunistic}, {"required", StartTls::Required}, {"off", StartTls::Off}});
    using common::tls::Verify;
    s.get_enum("verify", p.verify, {{"system", Verify::SystemRoots}, {"ca", Verify::DeploymentCa}, {"none", Verify::Opportunistic}});
    if (s.has("verify") && p.starttls != StartTls::Required) {
      s.error("verify", "applies only with starttls = \"required\" (opportunistic TLS never refuses a certificate)");
    }
    s.get("server_name", p.server_name);
    p.server_name = domain_key(p.server_name);
    out.tls_policies.push_back(std::move(p));
  }
}

std::function<std::string(std::string_view address)> dsn_destination(std::vector<std::string> local_domains) {
  for (auto& d : local_domains) d = domain_key(d);
  return [domains = std::move(local_domains)](std::string_view address) -> std::string {
    const auto at = address.rfind('@');
    const std::string domain = domain_key(at == std::string_view::npos ? std::string_view() : address.substr(at + 1));
    if (std::find(domains.begin(), domains.end(), domain) != domains.end()) return "local:" + domain;
    return domain;
  };
}

}  // namespace mta::delivery
