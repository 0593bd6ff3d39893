// access_filter_fuzz.cpp: the access filter parsers (file and compact form) on arbitrary bytes; what
// parses is compiled and evaluated for a few fixed requests, names looked up on demand.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "common/access/filter.hpp"

namespace {

using namespace common::access;

void evaluate_all(const AccessFilter& filter) {
  static const char* kServices[] = {"imap", "POP", "smtp", "gopher", ""};
  static const char* kClients[] = {"10.1.2.3", "123.45.67.127", "2001:db8::1", "::1", "192.0.2.1"};
  static const HostName kNames[] = {HostName::none(), HostName::temp_fail(),
                                    HostName::verified("pc.Example.com."), HostName::mismatch("x.example.com"),
                                    HostName::verified("localhost")};
  for (int i = 0; i < 5; ++i) {
    AccessRequest req;
    req.service = kServices[i];
    req.client.address = common::net::IpAddress::parse(kClients[i]);
    req.server.address = common::net::IpAddress::parse("192.0.2.25");
    if (i % 2) req.user = "joe";
    // The ask-again protocol must end: each round fills in a name that was asked for.
    for (int round = 0; round < 3; ++round) {
      Decision d = filter.evaluate(req);
      (void)describe(d);
      if (!d.needs_name()) break;
      if (round == 2) std::abort();  // asked for a name it was already given
      if (d.needs_client_name) req.client.name = kNames[(i + round) % 5];
      if (d.needs_server_name) req.server.name = HostName::verified("msgserver.example1.com");
    }
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view text(reinterpret_cast<const char*>(data), size);
  AccessLimits limits;
  limits.max_line = 1024;
  limits.max_rules = 200;

  auto whole = parse_filter(text, "fuzz", RuleKind::Allow, limits);
  if (size <= 4096) {  // any split must give the same result
    FilterParser bytewise("fuzz", RuleKind::Allow, limits);
    for (char c : text) bytewise.feed(std::string_view(&c, 1));
    auto split = bytewise.finish();
    if (split.has_value() != whole.has_value()) std::abort();
    if (whole && split->rules.size() != whole->rules.size()) std::abort();
    if (!whole && split.error().size() != whole.error().size()) std::abort();
  }
  if (whole) {
    std::vector<RuleList> lists;
    lists.push_back(std::move(*whole));
    auto filter = AccessFilter::build(std::move(lists), limits);
    if (filter) evaluate_all(*filter);
  }
  auto compact = AccessFilter::from_compact(text, "rules", limits);
  if (compact) evaluate_all(*compact);
  return 0;
}
