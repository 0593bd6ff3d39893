// access_admission.cpp: evaluate, look up the name the filter asked for, evaluate again.
#include "common/daemon/access_admission.hpp"

#include <fstream>
#include <sstream>

#include "common/log/log.hpp"
#include "common/daemon/daemon.hpp"

namespace common::daemon {

using namespace common::runtime;
namespace {

std::string join_errors(const access::ParseErrors& errors) {
  std::string out;
  for (const auto& e : errors) out += (out.empty() ? "" : "; ") + e.to_string();
  return out;
}

Result<std::string> read_text(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return fail(ErrorKind::Config, "access filter file " + path + " cannot be read");
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

access::HostName name_from(const dns::ReverseResult& r) {
  using Kind = dns::ReverseResult::Kind;
  switch (r.kind) {
    case Kind::Verified: return access::HostName::verified(r.name);
    case Kind::Mismatch: return access::HostName::mismatch(r.name);
    case Kind::NoName: return access::HostName::none();
    case Kind::TempFail: return access::HostName::temp_fail();
  }
  return access::HostName::temp_fail();
}

// One admission in progress: owns the names the request points to while lookups run.
struct Pending {
  AccessPolicy policy;
  dns::Resolver* resolver;
  std::string service;
  net::IpAddress client, server;
  dns::ReverseResult client_name{dns::ReverseResult::Kind::TempFail, {}};
  dns::ReverseResult server_name{dns::ReverseResult::Kind::TempFail, {}};
  bool client_looked = false, server_looked = false;
  std::function<void(AdmissionCheck::Outcome)> done;

  access::AccessRequest request() const {
    access::AccessRequest r;
    r.service = service;
    r.client.address = client;
    r.server.address = server;
    if (client_looked) r.client.name = name_from(client_name);
    if (server_looked) r.server.name = name_from(server_name);
    return r;
  }
};

void step(std::shared_ptr<Pending> p) {
  access::Decision d = p->policy->evaluate(p->request());
  if (!d.needs_name()) {
    AdmissionCheck::Outcome out;
    out.allowed = d.allowed();
    out.rule = access::describe(d);
    if (p->client_looked && p->client_name.kind == dns::ReverseResult::Kind::Verified) out.client_name = p->client_name.name;
    p->done(std::move(out));
    return;
  }
  // Names are looked up once; a Need* for a name we already have would be an evaluator bug.
  bool want_client = d.needs_client_name && !p->client_looked;
  bool want_server = d.needs_server_name && !p->server_looked;
  if (!want_client && !want_server) {
    p->done({false, "internal: filter asked twice for a name", ""});
    return;
  }
  auto lookup = [p](const net::IpAddress& a, bool client) {
    auto store = [p, client](dns::ReverseResult r) {
      (client ? p->client_name : p->server_name) = std::move(r);
      (client ? p->client_looked : p->server_looked) = true;
    };
    if (p->resolver == nullptr) {
      store({dns::ReverseResult::Kind::TempFail, {}});
      return false;
    }
    p->resolver->verify_reverse(a, [p, store](dns::ReverseResult r) {
      store(std::move(r));
      step(p);
    });
    return true;
  };
  // One name at a time keeps the bookkeeping simple; most filters need only the client's.
  if (want_client) {
    if (!lookup(p->client, true)) step(p);
  } else {
    if (!lookup(p->server, false)) step(p);
  }
}

}  // namespace

Result<AccessPolicy> load_access_policy(const CommonConfig& config) {
  std::vector<access::RuleList> lists;
  std::string errors;
  auto add = [&](std::string_view text, std::string_view source, access::RuleKind kind) {
    auto parsed = access::parse_filter(text, source, kind);
    if (!parsed) {
      errors += (errors.empty() ? "" : "; ") + join_errors(parsed.error());
      return;
    }
    lists.push_back(std::move(*parsed));
  };
  auto join = [](const std::vector<std::string>& rules) {
    std::string text;
    for (const auto& r : rules) text += r + "\n";
    return text;
  };
  for (const auto& f : config.allow_files) {
    auto text = read_text(f);
    if (!text) return tl::unexpected(text.error());
    add(*text, f, access::RuleKind::Allow);
  }
  if (!config.allow_rules.empty()) add(join(config.allow_rules), "[access] allow", access::RuleKind::Allow);
  for (const auto& f : config.deny_files) {
    auto text = read_text(f);
    if (!text) return tl::unexpected(text.error());
    add(*text, f, access::RuleKind::Deny);
  }
  if (!config.deny_rules.empty()) add(join(config.deny_rules), "[access] deny", access::RuleKind::Deny);
  if (!errors.empty()) return fail(ErrorKind::Config, "access filters: " + errors);
  auto filter = access::AccessFilter::build(std::move(lists));
  if (!filter) return fail(ErrorKind::Config, "access filters: " + join_errors(filter.error()));
  for (const auto& w : filter->warnings()) {
    log::warning("access").phase("start").event("filter_warning").kv("warning", w.to_string());
  }
  return std::make_shared<const access::AccessFilter>(std::move(*filter));
}

AccessAdmission::AccessAdmission(AccessPolicy policy, dns::Resolver* resolver)
    : policy_(std::move(policy)), resolver_(resolver) {}

void AccessAdmission::check(const ConnectionInfo& info, std::function<void(Outcome)> done) {
  if (policy_->allow_rules() == 0 && policy_->deny_rules() == 0) {
    done({});
    return;
  }
  auto p = std::make_shared<Pending>();
  p->policy = policy_;  // a reload during the lookup does not change this connection's filter
  p->resolver = resolver_;
  p->service = info.service;
  p->client = info.peer.address;
  p->server = info.local.address;
  p->done = std::move(done);
  step(std::move(p));
}

}  // namespace common::daemon
