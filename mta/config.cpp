// config.cpp: reading [mta], [queue], [authserv] and the mta's [[listener]] keys (config.hpp).
#include "mta/config.hpp"

#include "common/ascii.hpp"
#include "common/authclient/config.hpp"

namespace mta {
namespace {

using namespace std::chrono_literals;

void read_limits(common::config::Section& s, SessionPolicy& p) {
  s.get_size("max_message_size", p.max_message_size, 1024, 1ull << 32);
  s.get("max_recipients", p.max_recipients, size_t{1}, size_t{10000});
  s.get("max_session_recipients", p.max_session_recipients, size_t{1}, size_t{100000});
  s.get("max_messages", p.max_messages, size_t{1}, size_t{100000});
  s.get("max_errors", p.max_errors, size_t{1}, size_t{1000});
  s.get_duration("data_timeout", p.data_timeout, std::chrono::milliseconds(1s), std::chrono::milliseconds(24h));
}

template <class T>
void read_optional(common::config::Section& s, std::string_view key, std::optional<T>& out, T min, T max) {
  if (!s.has(key)) return;
  T value{};
  s.get(key, value, min, max);
  out = value;
}

}  // namespace

void read_config(common::config::Section root, Config& out) {
  auto m = root.section("mta");
  m.get("host_name", out.mta.host_name);
  if (out.mta.host_name.empty()) out.mta.host_name = common::net::local_host_name();
  m.get("local_domains", out.mta.local_domains);
  for (auto& d : out.mta.local_domains) d = common::ascii::lowered(d);
  if (out.mta.local_domains.empty()) {
    m.error("local_domains", "missing: the domains whose users this deployment holds (mail for them goes to the stores)");
  }
  std::vector<std::string> internal;
  m.get("internal_networks", internal);
  for (const auto& text : internal) {
    auto net = common::net::IpNetwork::parse(text);
    if (!net) {
      m.error("internal_networks", "not a network (\"192.0.2.0/24\", \"2001:db8::/32\"): " + text);
    } else {
      out.mta.internal_networks.push_back(*net);
    }
  }
  m.get("any_sender", out.mta.any_sender);
  m.get("subaddress_separator", out.mta.subaddress_separator);
  if (out.mta.subaddress_separator.size() > 1) m.error("subaddress_separator", "one character, or \"\"");
  m.get("reverse_lookup", out.mta.reverse_lookup);
  m.get_duration("reverse_lookup_wait", out.mta.reverse_lookup_wait, std::chrono::milliseconds(0),
                 std::chrono::milliseconds(60s));
  read_limits(m, out.mta.session);

  auto q = root.section("queue");
  q.get("dir", out.queue.dir);
  if (out.queue.dir.empty()) q.error("dir", "missing: the directory of the queue's LMDB environment");
  q.get_size("map_size", out.queue.map_size, 1ull << 20, 1ull << 44);
  q.get("max_pending_writes", out.queue.max_pending_writes, size_t{1}, size_t{1000000});
  q.get_duration("max_lifetime", out.queue.max_lifetime, std::chrono::seconds(1), std::chrono::seconds(24h * 60));
  q.get_duration("delay_warning", out.queue.delay_warning, std::chrono::seconds(0), std::chrono::seconds(24h * 30));
  std::vector<std::string> schedule;
  q.get("retry_schedule", schedule);
  for (const auto& text : schedule) {
    auto d = common::config::parse_duration(text);
    if (!d || *d < 1s) {
      q.error("retry_schedule", "not a duration of a second or more (\"5m\"): " + text);
    } else {
      out.queue.retry_schedule.push_back(std::chrono::duration_cast<std::chrono::seconds>(*d));
    }
  }

  common::authclient::read_auth_client_config(root.section("authserv"), out.authserv);
  delivery::read_config(root, out.delivery);
}

void read_listener_overrides(common::config::Section& s, ListenerOverrides& out) {
  if (s.has("auth")) {
    bool v = false;
    s.get("auth", v);
    out.auth = v;
  }
  if (s.has("require_auth")) {
    bool v = false;
    s.get("require_auth", v);
    out.require_auth = v;
  }
  if (s.has("max_message_size")) {
    uint64_t v = 0;
    s.get_size("max_message_size", v, 1024, 1ull << 32);
    out.max_message_size = v;
  }
  read_optional(s, "max_recipients", out.max_recipients, size_t{1}, size_t{10000});
  read_optional(s, "max_session_recipients", out.max_session_recipients, size_t{1}, size_t{100000});
  read_optional(s, "max_messages", out.max_messages, size_t{1}, size_t{100000});
  read_optional(s, "max_errors", out.max_errors, size_t{1}, size_t{1000});
}

SessionPolicy session_policy(const MtaConfig& mta, std::string_view service, const ListenerOverrides& o) {
  SessionPolicy p = mta.session;
  // Submission (RFC 6409) is for a site's own users: AUTH offered and required. Port 25 takes mail
  // from the Internet for local users and has no AUTH unless the operator turns it on (MTA-01).
  const bool submission = service == "submission" || service == "submissions";
  p.auth = o.auth.value_or(submission);
  p.require_auth = o.require_auth.value_or(submission);
  if (o.max_message_size) p.max_message_size = *o.max_message_size;
  if (o.max_recipients) p.max_recipients = *o.max_recipients;
  if (o.max_session_recipients) p.max_session_recipients = *o.max_session_recipients;
  if (o.max_messages) p.max_messages = *o.max_messages;
  if (o.max_errors) p.max_errors = *o.max_errors;
  return p;
}

}  // namespace mta
