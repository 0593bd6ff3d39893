// accesscheck.cpp: argument handling and report of postern-accesscheck. Files are streamed through
// FilterParser in chunks, so a huge or hostile file costs no more than the parser's limits.
#include "common/access/accesscheck.hpp"

#include <array>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <optional>
#include <string>
#include <vector>

#include "common/access/filter.hpp"

namespace common::access {

namespace {

constexpr std::string_view kUsage =
    "usage: postern-accesscheck [--allow FILE] [--deny FILE] [--rules '+imap:ALL$-pop:*']\n"
    "         [--client-name NAME | --client-name-status none|tempfail|mismatch:NAME]\n"
    "         [--user USER] [--server ADDR] [--server-name NAME] SERVICE CLIENT_ADDRESS\n"
    "Prints allow or deny and the rule that decided; exits 0 (allow), 1 (deny), 2 (error).\n"
    "CLIENT_ADDRESS is an IPv4 or IPv6 address ([::1] works too) or 'unknown'.\n"
    "A name that a rule needs but that was not given is evaluated as 'no PTR record'.\n";

struct Options {
  std::optional<std::string> allow, deny, rules;
  std::optional<std::string> client_name, client_status, user, server, server_name;
  std::vector<std::string> positional;
};

std::optional<Options> parse_args(std::span<const std::string_view> args, std::ostream& err) {
  Options o;
  for (size_t i = 0; i < args.size(); ++i) {
    std::string_view a = args[i];
    if (a == "-h" || a == "--help") return std::nullopt;
    if (a.size() < 2 || a.substr(0, 2) != "--") {
      o.positional.emplace_back(a);
      continue;
    }
    std::string_view key = a, value;
    bool inline_value = false;
    if (size_t eq = a.find('='); eq != std::string_view::npos) {
      key = a.substr(0, eq);
      value = a.substr(eq + 1);
      inline_value = true;
    }
    std::optional<std::string>* slot = nullptr;
    if (key == "--allow") slot = &o.allow;
    if (key == "--deny") slot = &o.deny;
    if (key == "--rules") slot = &o.rules;
    if (key == "--client-name") slot = &o.client_name;
    if (key == "--client-name-status") slot = &o.client_status;
    if (key == "--user") slot = &o.user;
    if (key == "--server") slot = &o.server;
    if (key == "--server-name") slot = &o.server_name;
    if (slot == nullptr) {
      err << "postern-accesscheck: unknown option " << key << "\n";
      return std::nullopt;
    }
    if (!inline_value) {
      if (i + 1 >= args.size()) {
        err << "postern-accesscheck: " << key << " needs a value\n";
        return std::nullopt;
      }
      value = args[++i];
    }
    if (slot->has_value()) {
      err << "postern-accesscheck: " << key << " given twice\n";
      return std::nullopt;
    }
    *slot = std::string(value);
  }
  if (o.client_name && o.client_status) {
    err << "postern-accesscheck: --client-name and --client-name-status exclude each other\n";
    return std::nullopt;
  }
  if (o.positional.size() != 2) {
    err << "postern-accesscheck: expected SERVICE and CLIENT_ADDRESS\n";
    return std::nullopt;
  }
  return o;
}

// Reads a file through the incremental parser; false (message printed) if it cannot be read.
bool read_filter(const std::string& path, RuleKind kind, std::ostream& err,
                 std::optional<ParseResult<RuleList>>& out) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    err << "postern-accesscheck: cannot read " << path << ": " << std::strerror(errno) << "\n";
    return false;
  }
  FilterParser parser(path, kind);
  std::array<char, 8192> buf;
  while (in) {
    in.read(buf.data(), buf.size());
    parser.feed(std::string_view(buf.data(), static_cast<size_t>(in.gcount())));
  }
  if (in.bad()) {
    err << "postern-accesscheck: error reading " << path << "\n";
    return false;
  }
  out = parser.finish();
  return true;
}

std::optional<net::IpAddress> parse_address(std::string_view text) {
  if (text.size() > 2 && text.front() == '[' && text.back() == ']') text = text.substr(1, text.size() - 2);
  return net::IpAddress::parse(text);
}

void print_warnings(const std::vector<Diagnostic>& warnings, std::ostream& err) {
  for (const Diagnostic& w : warnings) {
    err << w.source << ":" << w.pos.line << ":" << w.pos.column << ": warning: " << w.message << "\n";
  }
}

}  // namespace

int accesscheck_run(std::span<const std::string_view> args, std::ostream& out, std::ostream& err) {
  auto opts = parse_args(args, err);
  if (!opts) {
    err << kUsage;
    return 2;
  }
  AccessRequest req;
  req.service = opts->positional[0];
  std::string_view client_text = opts->positional[1];
  if (client_text != "unknown") {
    req.client.address = parse_address(client_text);
    if (!req.client.address) {
      err << "postern-accesscheck: '" << client_text << "' is not an IP address\n";
      return 2;
    }
  }
  if (opts->client_name) {
    req.client.name = HostName::verified(*opts->client_name);
  } else if (opts->client_status) {
    std::string_view s = *opts->client_status;
    if (s == "none") {
      req.client.name = HostName::none();
    } else if (s == "tempfail") {
      req.client.name = HostName::temp_fail();
    } else if (s.substr(0, 9) == "mismatch:" && s.size() > 9) {
      req.client.name = HostName::mismatch(s.substr(9));
    } else {
      err << "postern-accesscheck: --client-name-status is none, tempfail or mismatch:NAME\n";
      return 2;
    }
  }
  if (opts->server) {
    req.server.address = parse_address(*opts->server);
    if (!req.server.address) {
      err << "postern-accesscheck: '" << *opts->server << "' is not an IP address\n";
      return 2;
    }
  }
  if (opts->server_name) req.server.name = HostName::verified(*opts->server_name);
  if (opts->user) req.user = *opts->user;

  // Read and compile: the files form one filter set, --rules (a per-user attribute) another.
  ParseErrors errors;
  std::vector<std::pair<std::string, AccessFilter>> sets;
  if (opts->allow || opts->deny || !opts->rules) {
    std::vector<RuleList> lists;
    for (auto [path, kind] : {std::pair{&opts->allow, RuleKind::Allow}, std::pair{&opts->deny, RuleKind::Deny}}) {
      if (!path->has_value()) continue;
      std::optional<ParseResult<RuleList>> parsed;
      if (!read_filter(**path, kind, err, parsed)) return 2;
      if (!*parsed) {
        errors.insert(errors.end(), parsed->error().begin(), parsed->error().end());
      } else {
        lists.push_back(std::move(**parsed));
      }
    }
    if (!opts->allow && !opts->deny) err << "postern-accesscheck: warning: no filters given\n";
    if (errors.empty()) {
      auto f = AccessFilter::build(std::move(lists));
      if (!f) {
        errors = std::move(f.error());
      } else {
        sets.emplace_back("filters", std::move(*f));
      }
    }
  }
  if (opts->rules) {
    auto f = AccessFilter::from_compact(*opts->rules, "rules");
    if (!f) {
      errors.insert(errors.end(), f.error().begin(), f.error().end());
    } else {
      sets.emplace_back("rules", std::move(*f));
    }
  }
  if (!errors.empty()) {
    for (const Diagnostic& e : errors) err << e.to_string() << "\n";
    return 2;
  }

  bool allowed = true;
  std::vector<std::string> lines;
  for (auto& [label, filter] : sets) {
    print_warnings(filter.warnings(), err);
    AccessRequest r = req;
    Decision d = filter.evaluate(r);
    // Like tcpdmatch without DNS: a name we were not given is taken as "no PTR record".
    for (int round = 0; round < 3 && d.needs_name(); ++round) {
      if (d.needs_client_name) {
        lines.push_back(label + ": client name not given, evaluating as if the lookup found none (" +
                        describe(d) + ")");
        r.client.name = HostName::none();
      }
      if (d.needs_server_name) {
        lines.push_back(label + ": server name not given, evaluating as if the lookup found none (" +
                        describe(d) + ")");
        r.server.name = HostName::none();
      }
      d = filter.evaluate(r);
    }
    allowed = allowed && d.allowed();
    lines.push_back(label + ": " + describe(d));
  }
  out << (allowed ? "allow" : "deny") << "\n";
  for (const std::string& l : lines) out << "  " << l << "\n";
  return allowed ? 0 : 1;
}

}  // namespace common::access
