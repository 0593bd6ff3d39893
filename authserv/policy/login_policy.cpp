// login_policy.cpp: account status, per-user/domain service filters, Netscape access domains and
// the admin proxy rule, evaluated over facts only; every refusal says why for the logs.
#include "authserv/policy/login_policy.hpp"

#include <algorithm>
#include <charconv>
#include <memory>
#include <mutex>
#include <unordered_map>
#include <vector>

#include "common/ascii.hpp"

namespace authserv::policy {

namespace {

using common::access::AccessFilter;
using common::access::AccessRequest;
using common::access::NameStatus;
using common::access::Verdict;
using directory::Status;

LoginDecision decide(Outcome o, std::string reason) { return LoginDecision{o, std::move(reason)}; }

using common::ascii::trim;

// A name as DNS compares it: lowercase, no trailing dot (and no leading dot in a list entry).
std::string dns_form(std::string_view s) {
  while (!s.empty() && s.back() == '.') s.remove_suffix(1);
  return common::ascii::lowered(s);
}

std::string client_text(const std::optional<common::net::IpAddress>& addr) {
  return addr ? addr->to_string() : std::string("(no address)");
}

// "128.123.45.0": four decimal octets; 0 is the seed's wildcard. nullopt when not of that shape.
std::optional<std::array<int, 4>> dotted_quad(std::string_view s) {
  std::array<int, 4> octets{};
  for (size_t i = 0; i < 4; ++i) {
    auto dot = s.find('.');
    auto part = i < 3 ? s.substr(0, dot) : s;
    if (part.empty() || part.size() > 3 || (i < 3 && dot == std::string_view::npos)) return std::nullopt;
    auto [end, ec] = std::from_chars(part.data(), part.data() + part.size(), octets[i]);
    if (ec != std::errc() || end != part.data() + part.size() || octets[i] > 255) return std::nullopt;
    if (i < 3) s.remove_prefix(dot + 1);
  }
  return octets;
}

bool numeric_like(std::string_view s) {
  return std::all_of(s.begin(), s.end(), [](char c) { return common::ascii::is_digit(c) || c == '.'; });
}

// `host` equals `domain` or ends with "." + domain: "rome.dispatch.com" is in "dispatch.com",
// "evildispatch.com" is not.
bool in_domain(std::string_view host, std::string_view domain) {
  if (domain.empty()) return false;
  if (host == domain) return true;
  return host.size() > domain.size() && host.ends_with(domain) && host[host.size() - domain.size() - 1] == '.';
}

std::string_view status_word(Status s) {
  // Local on purpose: directory.cpp (status_name) is not linked into this pure library.
  switch (s) {
    case Status::Active: return "active";
    case Status::Inactive: return "inactive";
    case Status::Held: return "hold";
    case Status::Deleted: return "deleted";
  }
  return "unknown";
}

AccessRequest access_request(const LoginFacts& facts, std::string_view user) {
  AccessRequest req;
  req.service = facts.service;
  req.client = {facts.client_address, facts.client_name};
  req.server = {facts.server_address, facts.server_name};
  req.user = user;  // user@host patterns in a per-user filter name the uid, as in the seed
  return req;
}

// Parsed compact filters by (source, text). Logins repeat the same few rule strings (most users
// share their domain's), so each is parsed once instead of at every login; a changed attribute is
// a new text and so a new parse, which keeps the memo exact without invalidation. Bounded: when
// full it starts over, which costs one parse per string again, never a wrong answer.
class FilterMemo {
 public:
  using Parsed = std::shared_ptr<const common::access::ParseResult<AccessFilter>>;
  Parsed get(std::string_view text, const std::string& source) {
    std::string key;
    key.reserve(source.size() + 1 + text.size());
    key.append(source).push_back('\0');
    key.append(text);
    {
      std::lock_guard lock(mutex_);
      if (auto it = memo_.find(key); it != memo_.end()) return it->second;
    }
    auto parsed = std::make_shared<const common::access::ParseResult<AccessFilter>>(AccessFilter::from_compact(text, source));
    std::lock_guard lock(mutex_);
    if (memo_.size() >= kMaxEntries || bytes_ + key.size() > kMaxBytes) {
      memo_.clear();
      bytes_ = 0;
    }
    bytes_ += key.size();
    memo_.emplace(std::move(key), parsed);
    return parsed;
  }

 private:
  static constexpr size_t kMaxEntries = 50000;
  static constexpr size_t kMaxBytes = size_t{32} << 20;
  std::mutex mutex_;
  std::unordered_map<std::string, Parsed> memo_;
  size_t bytes_ = 0;
};

FilterMemo& filter_memo() {
  static FilterMemo memo;
  return memo;
}

LoginDecision check_service_filter(const directory::UserRecord& user, const LoginFacts& facts) {
  const bool own = !trim(user.allowed_services).empty();
  std::string_view text = own ? user.allowed_services : user.domain_allowed_services;
  if (trim(text).empty()) return decide(Outcome::Allow, "no service filter");
  std::string source = own ? "user " + user.canonical + " mailAllowedServiceAccess"
                           : "domain " + user.domain + " mailAllowedServiceAccess";
  auto parsed = filter_memo().get(text, source);
  const auto& filter = *parsed;
  if (!filter) {
    std::string why = filter.error().empty() ? "unparsable" : filter.error().front().to_string();
    return decide(Outcome::ServiceDenied, "service " + std::string(facts.service) + " denied: bad " + why);
  }
  auto d = filter->evaluate(access_request(facts, user.uid));
  switch (d.verdict) {
    case Verdict::Allow:
      return decide(Outcome::Allow, common::access::describe(d));
    case Verdict::Deny:
      return decide(Outcome::ServiceDenied,
                    "service " + std::string(facts.service) + " denied by " + source + ": " +
                        common::access::describe(d));
    case Verdict::NeedClientName:
      return decide(Outcome::NeedClientName, source + " " + common::access::describe(d));
    case Verdict::NeedServerName:
      return decide(Outcome::NeedServerName, source + " " + common::access::describe(d));
  }
  return decide(Outcome::ServiceDenied, "unreachable verdict");
}

}  // namespace

std::string_view outcome_name(Outcome o) {
  switch (o) {
    case Outcome::Allow: return "allow";
    case Outcome::AccountInactive: return "account_inactive";
    case Outcome::AccountHeld: return "account_held";
    case Outcome::AccountDeleted: return "account_deleted";
    case Outcome::ServiceDenied: return "service_denied";
    case Outcome::HostDenied: return "host_denied";
    case Outcome::NeedClientName: return "need_client_name";
    case Outcome::NeedServerName: return "need_server_name";
  }
  return "unknown";
}

LoginDecision check_access_domains(std::span<const std::string> access_domains,
                                   const std::optional<common::net::IpAddress>& client_address,
                                   const common::access::HostName& client_name) {
  std::vector<std::string> entries;
  for (const auto& raw : access_domains) {
    std::string_view rest = raw;
    while (!rest.empty()) {
      auto end = rest.find_first_of(" \t,\r\n");
      auto word = rest.substr(0, end);
      rest = end == std::string_view::npos ? std::string_view{} : rest.substr(end + 1);
      while (!word.empty() && word.front() == '.') word.remove_prefix(1);
      if (!word.empty()) entries.push_back(dns_form(word));
    }
  }
  // Steps 1 and 2: empty allows, "none" anywhere denies.
  if (entries.empty()) return decide(Outcome::Allow, "no access domains");
  if (std::find(entries.begin(), entries.end(), "none") != entries.end())
    return decide(Outcome::HostDenied, "access domains: none");

  // Step 3: addresses, numerically, without DNS.
  bool has_names = false;
  for (const auto& e : entries) {
    if (auto quad = dotted_quad(e)) {
      if (!client_address || !client_address->is_v4()) continue;
      auto b = client_address->bytes();
      bool match = true;
      for (size_t i = 0; i < 4; ++i) match = match && ((*quad)[i] == 0 || (*quad)[i] == b[i]);
      if (match) return decide(Outcome::Allow, "access domain " + e + " matches " + client_text(client_address));
    } else if (e.find(':') != std::string::npos) {  // an IPv6 address, compared exactly
      auto v6 = common::net::IpAddress::parse(e);
      if (v6 && client_address && *v6 == *client_address)
        return decide(Outcome::Allow, "access domain " + e + " matches " + client_text(client_address));
    } else if (!numeric_like(e)) {
      has_names = true;  // "128.123.45" or "1.2.3.4.5" is neither an address nor a name: never matches
    }
  }

  // Step 4: names against the forward-confirmed reverse name only: a PTR alone is the client's word.
  if (has_names) {
    NameStatus status = client_name.status;
    if (status == NameStatus::NotLooked && client_address)
      return decide(Outcome::NeedClientName, "access domains need the client name of " + client_text(client_address));
    if (status == NameStatus::Verified) {
      std::string host = dns_form(client_name.name);
      for (const auto& e : entries) {
        if (!numeric_like(e) && e.find(':') == std::string::npos && in_domain(host, e))
          return decide(Outcome::Allow, "access domain " + e + " matches " + host);
      }
    }
  }
  // Step 5.
  std::string who = client_text(client_address);
  if (client_name.status == NameStatus::Verified) who += " (" + dns_form(client_name.name) + ")";
  return decide(Outcome::HostDenied, "client " + who + " not in the user's access domains");
}

LoginDecision check_login(const directory::UserRecord& user, const LoginFacts& facts) {
  switch (user.status) {
    case Status::Active: break;
    case Status::Inactive:
      return decide(Outcome::AccountInactive, "account " + user.canonical + " is " + std::string(status_word(user.status)));
    case Status::Held:
      return decide(Outcome::AccountHeld, "account " + user.canonical + " is on " + std::string(status_word(user.status)));
    case Status::Deleted:
      return decide(Outcome::AccountDeleted, "account " + user.canonical + " is " + std::string(status_word(user.status)));
  }
  if (auto service = check_service_filter(user, facts); !service.allowed()) return service;
  if (auto hosts = check_access_domains(user.access_domains, facts.client_address, facts.client_name);
      !hosts.allowed())
    return hosts;
  return decide(Outcome::Allow, "login allowed for " + user.canonical + " to " + std::string(facts.service) +
                                    (facts.under_tls ? " over TLS" : " without TLS"));
}

ProxyDecision authorize_proxy(const directory::UserRecord& authenticated, std::string_view requested_authzid,
                              std::string_view default_domain, const LoginFacts& facts,
                              const common::access::AccessFilter* proxy_hosts) {
  auto answer = [](ProxyOutcome o, std::string target, std::string reason) {
    return ProxyDecision{o, std::move(target), std::move(reason)};
  };
  if (requested_authzid.empty()) return answer(ProxyOutcome::Self, authenticated.canonical, "no authzid");

  const auto at = requested_authzid.find('@');
  const bool bad_bytes = std::any_of(requested_authzid.begin(), requested_authzid.end(), [](char c) {
    auto u = static_cast<unsigned char>(c);
    return u <= 0x20 || u == 0x7f;
  });
  if (requested_authzid.size() > kMaxAuthzid || bad_bytes || at == 0 ||
      (at != std::string_view::npos &&
       (at + 1 == requested_authzid.size() || requested_authzid.find('@', at + 1) != std::string_view::npos)))
    return answer(ProxyOutcome::BadAuthzid, {}, "malformed authzid");

  std::string target = common::ascii::lowered(requested_authzid);
  if (at == std::string_view::npos && !default_domain.empty()) target += "@" + dns_form(default_domain);
  if (common::ascii::iequals(target, authenticated.canonical))
    return answer(ProxyOutcome::Self, authenticated.canonical, "authzid is the authcid");

  if (!authenticated.store_admin)
    return answer(ProxyOutcome::NotAdmin, target,
                  authenticated.canonical + " is not a store administrator and may not act as " + target);
  if (proxy_hosts) {
    auto d = proxy_hosts->evaluate(access_request(facts, authenticated.uid));
    if (d.verdict == Verdict::NeedClientName)
      return answer(ProxyOutcome::NeedClientName, target, "proxy host filter " + common::access::describe(d));
    if (d.verdict == Verdict::NeedServerName)
      return answer(ProxyOutcome::NeedServerName, target, "proxy host filter " + common::access::describe(d));
    if (d.verdict == Verdict::Deny)
      return answer(ProxyOutcome::HostDenied, target,
                    "admin proxy by " + authenticated.canonical + " from " + client_text(facts.client_address) +
                        " refused: " + common::access::describe(d));
  }
  return answer(ProxyOutcome::Allow, target, "store administrator " + authenticated.canonical + " acts as " + target);
}

}  // namespace authserv::policy
