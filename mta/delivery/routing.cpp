// routing.cpp: destinations, MX order and outcomes (routing.hpp).
#include "mta/delivery/routing.hpp"

#include <algorithm>

#include "common/ascii.hpp"
#include "common/smtp/reply.hpp"

namespace mta::delivery {

using common::smtpclient::Failure;
using queue::Outcome;

DestinationKind classify(std::string_view destination) {
  DestinationKind k;
  auto rest = [&](std::string_view prefix) { return destination.substr(prefix.size()); };
  if (destination.starts_with("store:")) {
    k.name = common::ascii::lowered(rest("store:"));
    k.kind = k.name.empty() ? DestinationKind::Kind::Invalid : DestinationKind::Kind::Store;
    return k;
  }
  if (destination.starts_with("local:")) {
    k.name = common::ascii::lowered(rest("local:"));
    k.kind = k.name.empty() ? DestinationKind::Kind::Invalid : DestinationKind::Kind::Local;
    return k;
  }
  if (destination.size() > 2 && destination.front() == '[' && destination.back() == ']') {
    std::string_view inside = destination.substr(1, destination.size() - 2);
    k.name.assign(destination);
    // RFC 5321 §4.1.3: "[192.0.2.1]" is IPv4; IPv6 needs its "IPv6:" tag.
    if (inside.size() > 5 && common::ascii::iequals(inside.substr(0, 5), "IPv6:")) {
      auto a = common::net::IpAddress::parse(inside.substr(5));
      if (a && !a->is_v4()) k.address = a;
    } else {
      auto a = common::net::IpAddress::parse(inside);
      if (a && a->is_v4()) k.address = a;
    }
    k.kind = k.address ? DestinationKind::Kind::Literal : DestinationKind::Kind::Invalid;
    return k;
  }
  k.name = common::ascii::lowered(destination);
  k.kind = k.name.empty() || k.name.find(':') != std::string::npos ? DestinationKind::Kind::Invalid
                                                                     : DestinationKind::Kind::Remote;
  return k;
}

MxPlan plan_mx(std::vector<common::dns::MxRecord> records, const std::function<double()>& random) {
  MxPlan plan;
  std::stable_sort(records.begin(), records.end(),
                   [](const auto& a, const auto& b) { return a.preference < b.preference; });
  const bool any_real = std::any_of(records.begin(), records.end(), [](const auto& r) { return !r.host.empty(); });
  if (!records.empty() && !any_real) {
    plan.null_mx = true;  // RFC 7505 §3: "0 ." says the domain accepts no mail at all
    return plan;
  }
  // A null MX beside real ones breaks RFC 7505 §3; the real ones are what can still be tried.
  for (size_t i = 0; i < records.size();) {
    size_t j = i;
    while (j < records.size() && records[j].preference == records[i].preference) ++j;
    std::vector<std::string> group;
    for (size_t k = i; k < j; ++k) {
      if (!records[k].host.empty()) group.push_back(records[k].host);
    }
    for (size_t k = group.size(); k > 1; --k) {
      const double r = random ? std::clamp(random(), 0.0, 0.999999) : 0.0;
      std::swap(group[k - 1], group[static_cast<size_t>(r * static_cast<double>(k))]);
    }
    for (auto& h : group) {
      if (std::find(plan.hosts.begin(), plan.hosts.end(), h) == plan.hosts.end()) plan.hosts.push_back(std::move(h));
    }
    i = j;
  }
  return plan;
}

Verdict local_verdict(Outcome outcome, std::string status, std::string reply, uint16_t code) {
  Verdict v;
  v.outcome = outcome;
  v.status = std::move(status);
  v.reply = std::move(reply);
  v.code = code;
  return v;
}

Verdict verdict(const common::smtpclient::Status& s, bool final_delivery) {
  if (s.ok()) {
    return local_verdict(final_delivery ? Outcome::Delivered : Outcome::Relayed, "2.0.0",
                         final_delivery ? "delivered to the store" : "accepted by the next MTA", 250);
  }
  // Only a 5xx about the message or the recipient is final. A 5xx to STARTTLS where TLS is
  // required is our policy meeting that server (kind Tls): the mail waits, as RFC 3207 §4 wants.
  const Outcome outcome = s.kind == Failure::PermFail ? Outcome::PermFail : Outcome::TempFail;
  const char klass = outcome == Outcome::PermFail ? '5' : '4';
  Verdict v;
  v.outcome = outcome;
  if (s.reply) {
    const auto& r = *s.reply;
    v.code = static_cast<uint16_t>(r.code);
    std::string text;
    for (const auto& line : r.lines) {
      if (!text.empty()) text += ' ';
      text += line;
      if (text.size() > 400) break;
    }
    v.reply = common::smtp::sanitize(text, 400);
    v.status = r.enhanced.present() ? r.enhanced.str() : std::string(1, klass) + ".0.0";
    v.status[0] = klass;
    return v;
  }
  v.reply = s.detail;
  switch (s.kind) {
    case Failure::Connect: v.status = "4.4.1"; break;  // RFC 3463: no answer from host
    case Failure::Timeout:
    case Failure::Closed: v.status = "4.4.2"; break;   // bad connection
    case Failure::Tls: v.status = "4.7.5"; break;      // cryptographic failure
    case Failure::Protocol: v.status = "4.5.0"; break;
    case Failure::PermFail:
      // Refused before MAIL by what the server announced (smtpclient's SIZE and SMTPUTF8 checks).
      if (s.detail.find("SMTPUTF8") != std::string::npos) {
        v.status = "5.6.7";  // RFC 6531 §3.5: non-ASCII addresses not permitted there
      } else if (s.detail.find("SIZE") != std::string::npos) {
        v.status = "5.3.4";  // message too big for system
      } else {
        v.status = "5.0.0";
      }
      break;
    default: v.status = "4.0.0"; break;
  }
  return v;
}

bool try_next_address(const common::smtpclient::DeliveryResult& result) {
  if (result.offered || result.status.ok()) return false;
  return !(result.status.kind == Failure::PermFail && !result.status.reply);
}

}  // namespace mta::delivery
