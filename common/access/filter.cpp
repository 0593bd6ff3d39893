// filter.cpp: compiles parsed rules into runs of address-only rules indexed by prefix length
// (hash per length, postings in rule order) and general rules matched in three-valued logic
// (yes / no / needs a name), so numeric decisions stay fast and DNS is asked for only when needed.
#include "common/ascii.hpp"
#include "common/access/filter.hpp"

#include <algorithm>
#include <limits>
#include <tuple>

namespace common::access {

namespace {

using common::ascii::lower;
using common::ascii::iequals;

constexpr uint8_t kNeedClient = 1;
constexpr uint8_t kNeedServer = 2;
constexpr unsigned kOtherService = 63;  // service id of every name no rule mentions
constexpr uint8_t kAllServices = 0xff;  // ServiceEntry.all in the id table
constexpr uint32_t kNoRule = std::numeric_limits<uint32_t>::max();

// Kleene logic: Maybe means "depends on a name not looked up yet"; needs says which.
struct Tri {
  enum V : uint8_t { No, Yes, Maybe } v = No;
  uint8_t needs = 0;
};
constexpr Tri kNo{Tri::No, 0};
constexpr Tri kYes{Tri::Yes, 0};

Tri tri(bool b) { return b ? kYes : kNo; }

// a EXCEPT b, where b is already the value of the rest of the chain.
Tri and_not(Tri a, Tri b) {
  if (a.v == Tri::No || b.v == Tri::Yes) return kNo;
  if (b.v == Tri::No) return a;
  return {Tri::Maybe, static_cast<uint8_t>((a.v == Tri::Maybe ? a.needs : 0) | b.needs)};
}

Tri both(Tri a, Tri b) {
  if (a.v == Tri::No || b.v == Tri::No) return kNo;
  if (a.v == Tri::Yes && b.v == Tri::Yes) return kYes;
  return {Tri::Maybe, static_cast<uint8_t>((a.v == Tri::Maybe ? a.needs : 0) |
                                           (b.v == Tri::Maybe ? b.needs : 0))};
}



void v6_halves(const net::IpAddress& a, uint64_t out[2]) {
  auto b = a.bytes();
  out[0] = out[1] = 0;
  for (size_t i = 0; i < 16; ++i) out[i / 8] = (out[i / 8] << 8) | b[i];
}

struct K128 {
  uint64_t hi, lo;
  friend bool operator==(const K128&, const K128&) = default;
  friend bool operator<(const K128& a, const K128& b) { return std::tie(a.hi, a.lo) < std::tie(b.hi, b.lo); }
};

inline uint64_t mix(uint64_t x) {
  x ^= x >> 33;
  x *= 0xff51afd7ed558ccdULL;
  x ^= x >> 33;
  return x;
}
inline uint64_t hash_key(uint32_t k) { return mix(k); }
inline uint64_t hash_key(const K128& k) { return mix(k.hi ^ mix(k.lo)); }

// Open addressing, linear probing, load <= 1/2; built once, read-only afterwards.
template <class Key>
class FlatMap {
 public:
  struct Slot {
    Key key{};
    uint32_t first = 0;
    uint32_t count = 0;  // 0: empty slot
  };

  void build(const std::vector<Slot>& entries) {
    size_t cap = 4;
    while (cap < entries.size() * 2) cap *= 2;
    slots_.assign(cap, Slot{});
    mask_ = cap - 1;
    for (const Slot& e : entries) {
      size_t i = hash_key(e.key) & mask_;
      while (slots_[i].count != 0) i = (i + 1) & mask_;
      slots_[i] = e;
    }
  }

  const Slot* find(const Key& k) const {
    size_t i = hash_key(k) & mask_;
    while (slots_[i].count != 0) {
      if (slots_[i].key == k) return &slots_[i];
      i = (i + 1) & mask_;
    }
    return nullptr;
  }

 private:
  std::vector<Slot> slots_;
  size_t mask_ = 0;
};

struct V4Level {
  uint32_t mask;
  FlatMap<uint32_t> map;
};

struct V6Level {
  uint64_t mask[2];
  FlatMap<K128> map;
};

// Either a run of address-only rules (indexed) or one general rule.
struct Segment {
  bool indexed = false;
  uint32_t rule = 0;
  std::vector<V4Level> v4;
  std::vector<V6Level> v6;
  std::vector<uint32_t> any;       // rules whose client list has ALL, ascending
  std::vector<uint32_t> postings;  // rule indices per (length, net), ascending
};

std::string_view trim_dot(std::string_view name) {
  if (!name.empty() && name.back() == '.') name.remove_suffix(1);
  return name;
}

// tcpd host_match over our facts. Address patterns never need a name; KNOWN/UNKNOWN/LOCAL/
// DNSSPOOFER and name patterns do, and a name that failed the forward check is no name at all.
Tri match_host(const HostPattern& p, const HostFacts& f, uint8_t need) {
  using K = HostPattern::Kind;
  switch (p.kind) {
    case K::All:
      return kYes;
    case K::V4Net:
      return tri(f.address && f.address->is_v4() && (f.address->v4_host_order() & p.v4_mask) == p.v4_net);
    case K::V6Net: {
      if (!f.address || f.address->is_v4()) return kNo;
      uint64_t a[2];
      v6_halves(*f.address, a);
      return tri((a[0] & p.v6_mask[0]) == p.v6_net[0] && (a[1] & p.v6_mask[1]) == p.v6_net[1]);
    }
    case K::Netgroup:
      return kNo;  // no NIS (parser warned)
    default:
      break;
  }
  NameStatus st = f.name.status;
  std::string_view name = trim_dot(f.name.name);
  if (!f.address && st == NameStatus::NotLooked) st = NameStatus::None;  // nothing to look up
  if ((st == NameStatus::Verified || st == NameStatus::Mismatch) && name.empty()) st = NameStatus::None;
  if (st == NameStatus::NotLooked) return {Tri::Maybe, need};
  bool verified = st == NameStatus::Verified;
  switch (p.kind) {
    case K::Known:
      return tri(f.address && verified);
    case K::Unknown:
      return tri(!f.address || !verified);
    case K::Local:
      return tri(verified && name.find('.') == std::string_view::npos);
    case K::DnsSpoofer:
      return tri(st == NameStatus::Mismatch);
    case K::NameExact:
      return tri(verified && iequals(name, p.name));
    case K::NameSuffix:
      return tri(verified && name.size() > p.name.size() &&
                 iequals(name.substr(name.size() - p.name.size()), p.name));
    default:
      return kNo;
  }
}

bool match_user(const UserPattern& p, const std::optional<std::string_view>& user) {
  bool known = user && !user->empty();
  switch (p.kind) {
    case UserPattern::Kind::All:
      return true;
    case UserPattern::Kind::Known:
      return known;
    case UserPattern::Kind::Unknown:
      return !known;
    case UserPattern::Kind::Exact:
      return known && iequals(*user, p.name);
  }
  return false;
}

// Value of a chain {l0, l1, ...} = l0 EXCEPT (l1 EXCEPT (...)); each level is an OR.
template <class Entry, class Fn>
Tri match_chain(const ExceptChain<Entry>& chain, Fn&& entry_fn) {
  Tri acc = kNo;
  for (size_t n = chain.size(); n-- > 0;) {
    Tri level = kNo;
    for (size_t i = 0; i < chain[n].size(); ++i) {
      Tri t = entry_fn(n, i, chain[n][i]);
      if (t.v == Tri::Yes) {
        level = kYes;
        break;
      }
      if (t.v == Tri::Maybe) level = {Tri::Maybe, static_cast<uint8_t>(level.needs | t.needs)};
    }
    acc = (n + 1 == chain.size()) ? level : and_not(level, acc);
  }
  return acc;
}

}  // namespace

struct AccessFilter::Impl {
  struct CRule {
    Rule rule;
    std::vector<std::vector<uint8_t>> sids;  // service id per service entry, kAllServices for ALL
    bool svc_dynamic = false;                // some service entry has @host
  };
  std::vector<CRule> rules;        // Allow rules, then Deny rules
  std::vector<uint64_t> svc_bits;  // per rule: does its service list match service id n
  std::vector<std::string> services;
  std::vector<Segment> segments;

  unsigned service_id(std::string_view name) const {
    for (size_t i = 0; i < services.size(); ++i) {
      if (iequals(name, services[i])) return static_cast<unsigned>(i);
    }
    return kOtherService;
  }

  Tri match_rule(uint32_t index, const AccessRequest& req, unsigned sid) const {
    const CRule& r = rules[index];
    Tri svc;
    if (!r.svc_dynamic) {
      svc = tri((svc_bits[index] >> sid) & 1);
    } else {
      svc = match_chain(r.rule.services, [&](size_t n, size_t i, const ServiceEntry& e) {
        uint8_t id = r.sids[n][i];
        if (id != kAllServices && id != sid) return kNo;
        return e.has_host ? match_host(e.host, req.server, kNeedServer) : kYes;
      });
    }
    if (svc.v == Tri::No) return kNo;
    Tri cli = match_chain(r.rule.clients, [&](size_t, size_t, const ClientEntry& e) {
      if (e.has_user && !match_user(e.user, req.user)) return kNo;
      return match_host(e.host, req.client, kNeedClient);
    });
    return both(svc, cli);
  }

  // Lowest rule index in the run whose patterns contain the address and whose services match.
  uint32_t lookup(const Segment& seg, const AccessRequest& req, unsigned sid) const {
    uint32_t best = kNoRule;
    auto scan = [&](uint32_t first, uint32_t count, const uint32_t* list) {
      for (uint32_t k = 0; k < count; ++k) {
        uint32_t idx = list[first + k];
        if (idx >= best) return;
        if ((svc_bits[idx] >> sid) & 1) {
          best = idx;
          return;
        }
      }
    };
    if (req.client.address) {
      const net::IpAddress& a = *req.client.address;
      if (a.is_v4()) {
        uint32_t v = a.v4_host_order();
        for (const V4Level& level : seg.v4) {
          if (const auto* s = level.map.find(v & level.mask)) scan(s->first, s->count, seg.postings.data());
        }
      } else {
        uint64_t h[2];
        v6_halves(a, h);
        for (const V6Level& level : seg.v6) {
          if (const auto* s = level.map.find(K128{h[0] & level.mask[0], h[1] & level.mask[1]})) {
            scan(s->first, s->count, seg.postings.data());
          }
        }
      }
    }
    scan(0, static_cast<uint32_t>(seg.any.size()), seg.any.data());
    return best;
  }

  static bool is_simple(const CRule& r) {
    if (r.svc_dynamic || r.rule.clients.size() != 1) return false;
    for (const ClientEntry& e : r.rule.clients[0]) {
      if (e.has_user) return false;
      auto k = e.host.kind;
      if (k != HostPattern::Kind::All && k != HostPattern::Kind::V4Net &&
          k != HostPattern::Kind::V6Net && k != HostPattern::Kind::Netgroup) {
        return false;
      }
    }
    return true;
  }

  void index_segment(Segment& seg, const std::vector<uint32_t>& members) {
    struct E4 {
      uint8_t len;
      uint32_t key;
      uint32_t rule;
      auto operator<=>(const E4&) const = default;
    };
    struct E6 {
      uint8_t len;
      K128 key;
      uint32_t rule;
      bool operator<(const E6& o) const { return std::tie(len, key, rule) < std::tie(o.len, o.key, o.rule); }
      bool operator==(const E6& o) const { return len == o.len && key == o.key && rule == o.rule; }
    };
    std::vector<E4> e4;
    std::vector<E6> e6;
    for (uint32_t idx : members) {
      bool any = false;
      for (const ClientEntry& e : rules[idx].rule.clients[0]) {
        const HostPattern& h = e.host;
        if (h.kind == HostPattern::Kind::All) any = true;
        if (h.kind == HostPattern::Kind::V4Net) e4.push_back({h.prefix_len, h.v4_net, idx});
        if (h.kind == HostPattern::Kind::V6Net) e6.push_back({h.prefix_len, {h.v6_net[0], h.v6_net[1]}, idx});
      }
      if (any) seg.any.push_back(idx);
    }
    std::sort(e4.begin(), e4.end());
    e4.erase(std::unique(e4.begin(), e4.end()), e4.end());
    std::sort(e6.begin(), e6.end());
    e6.erase(std::unique(e6.begin(), e6.end()), e6.end());
    // Group by length, then by key; postings keep rule order inside a key.
    for (size_t i = 0; i < e4.size();) {
      size_t j = i;
      std::vector<FlatMap<uint32_t>::Slot> slots;
      while (j < e4.size() && e4[j].len == e4[i].len) {
        size_t k = j;
        auto first = static_cast<uint32_t>(seg.postings.size());
        while (k < e4.size() && e4[k].len == e4[j].len && e4[k].key == e4[j].key) {
          seg.postings.push_back(e4[k].rule);
          ++k;
        }
        slots.push_back({e4[j].key, first, static_cast<uint32_t>(k - j)});
        j = k;
      }
      V4Level level;
      level.mask = e4[i].len == 0 ? 0 : ~uint32_t{0} << (32 - e4[i].len);
      level.map.build(slots);
      seg.v4.push_back(std::move(level));
      i = j;
    }
    for (size_t i = 0; i < e6.size();) {
      size_t j = i;
      std::vector<FlatMap<K128>::Slot> slots;
      while (j < e6.size() && e6[j].len == e6[i].len) {
        size_t k = j;
        auto first = static_cast<uint32_t>(seg.postings.size());
        while (k < e6.size() && e6[k].len == e6[j].len && e6[k].key == e6[j].key) {
          seg.postings.push_back(e6[k].rule);
          ++k;
        }
        slots.push_back({e6[j].key, first, static_cast<uint32_t>(k - j)});
        j = k;
      }
      V6Level level;
      unsigned len = e6[i].len;
      level.mask[0] = len == 0 ? 0 : (len >= 64 ? ~uint64_t{0} : ~uint64_t{0} << (64 - len));
      level.mask[1] = len <= 64 ? 0 : (len >= 128 ? ~uint64_t{0} : ~uint64_t{0} << (128 - len));
      level.map.build(slots);
      seg.v6.push_back(std::move(level));
      i = j;
    }
  }

  void compile() {
    svc_bits.assign(rules.size(), 0);
    for (size_t idx = 0; idx < rules.size(); ++idx) {
      CRule& r = rules[idx];
      for (const auto& level : r.rule.services) {
        for (const ServiceEntry& e : level) r.svc_dynamic |= e.has_host;
      }
      if (r.svc_dynamic) continue;
      auto static_match = [&](unsigned sid) {
        return match_chain(r.rule.services, [&](size_t n, size_t i, const ServiceEntry&) {
                 uint8_t id = r.sids[n][i];
                 return tri(id == kAllServices || id == sid);
               }).v == Tri::Yes;
      };
      for (unsigned sid = 0; sid < services.size(); ++sid) {
        if (static_match(sid)) svc_bits[idx] |= uint64_t{1} << sid;
      }
      if (static_match(kOtherService)) svc_bits[idx] |= uint64_t{1} << kOtherService;
    }
    std::vector<uint32_t> run;
    auto flush = [&] {
      if (run.empty()) return;
      Segment seg;
      seg.indexed = true;
      index_segment(seg, run);
      segments.push_back(std::move(seg));
      run.clear();
    };
    for (uint32_t idx = 0; idx < rules.size(); ++idx) {
      if (is_simple(rules[idx])) {
        run.push_back(idx);
        continue;
      }
      flush();
      Segment seg;
      seg.rule = idx;
      segments.push_back(std::move(seg));
    }
    flush();
  }
};

AccessFilter::AccessFilter() : impl_(std::make_unique<Impl>()) {}
AccessFilter::~AccessFilter() = default;
AccessFilter::AccessFilter(AccessFilter&&) noexcept = default;
AccessFilter& AccessFilter::operator=(AccessFilter&&) noexcept = default;

ParseResult<AccessFilter> AccessFilter::build(std::vector<RuleList> lists, const AccessLimits& limits) {
  AccessFilter f;
  Impl& impl = *f.impl_;
  size_t max_names = std::min<size_t>(limits.max_service_names, kOtherService);
  for (RuleKind kind : {RuleKind::Allow, RuleKind::Deny}) {
    for (RuleList& list : lists) {
      for (Rule& rule : list.rules) {
        if (rule.info.kind != kind) continue;
        Impl::CRule cr;
        for (const auto& level : rule.services) {
          auto& ids = cr.sids.emplace_back();
          for (const ServiceEntry& e : level) {
            if (e.all) {
              ids.push_back(kAllServices);
              continue;
            }
            auto it = std::find(impl.services.begin(), impl.services.end(), e.name);
            if (it == impl.services.end()) {
              if (impl.services.size() >= max_names) {
                return tl::unexpected(ParseErrors{
                    {rule.info.source, rule.info.pos,
                     "more than " + std::to_string(max_names) + " distinct service names"}});
              }
              it = impl.services.insert(impl.services.end(), e.name);
            }
            ids.push_back(static_cast<uint8_t>(it - impl.services.begin()));
          }
        }
        (kind == RuleKind::Allow ? f.allow_count_ : f.deny_count_)++;
        cr.rule = std::move(rule);
        impl.rules.push_back(std::move(cr));
      }
    }
  }
  for (RuleList& list : lists) {
    for (Diagnostic& w : list.warnings) f.warnings_.push_back(std::move(w));
  }
  impl.compile();
  return f;
}

ParseResult<AccessFilter> AccessFilter::from_files(std::string_view allow_text, std::string_view allow_name,
                                                   std::string_view deny_text, std::string_view deny_name,
                                                   const AccessLimits& limits) {
  auto allow = parse_filter(allow_text, allow_name, RuleKind::Allow, limits);
  auto deny = parse_filter(deny_text, deny_name, RuleKind::Deny, limits);
  if (!allow || !deny) {
    ParseErrors errors;
    if (!allow) errors = std::move(allow.error());
    if (!deny) errors.insert(errors.end(), deny.error().begin(), deny.error().end());
    return tl::unexpected(std::move(errors));
  }
  std::vector<RuleList> lists;
  lists.push_back(std::move(*allow));
  lists.push_back(std::move(*deny));
  return build(std::move(lists), limits);
}

ParseResult<AccessFilter> AccessFilter::from_compact(std::string_view rules, std::string_view source,
                                                     const AccessLimits& limits) {
  auto list = parse_compact(rules, source, limits);
  if (!list) return tl::unexpected(std::move(list.error()));
  std::vector<RuleList> lists;
  lists.push_back(std::move(*list));
  return build(std::move(lists), limits);
}

Decision AccessFilter::evaluate(const AccessRequest& request) const {
  const Impl& impl = *impl_;
  unsigned sid = impl.service_id(request.service);
  Decision d;
  auto decided = [&](uint32_t idx) {
    const Rule& r = impl.rules[idx].rule;
    d.by = DecidedBy::Rule;
    d.rule = &r.info;
    d.verdict = r.info.kind == RuleKind::Allow ? Verdict::Allow : Verdict::Deny;
    return d;
  };
  for (const Segment& seg : impl.segments) {
    if (seg.indexed) {
      uint32_t idx = impl.lookup(seg, request, sid);
      if (idx != kNoRule) return decided(idx);
      continue;
    }
    Tri t = impl.match_rule(seg.rule, request, sid);
    if (t.v == Tri::No) continue;
    if (t.v == Tri::Yes) return decided(seg.rule);
    // This rule would decide if it matched, so its names are needed before anything later counts.
    d.by = DecidedBy::Rule;
    d.rule = &impl.rules[seg.rule].rule.info;
    d.needs_client_name = (t.needs & kNeedClient) != 0;
    d.needs_server_name = (t.needs & kNeedServer) != 0;
    d.verdict = d.needs_client_name ? Verdict::NeedClientName : Verdict::NeedServerName;
    return d;
  }
  if (allow_count_ > 0 && deny_count_ == 0) {
    d.by = DecidedBy::NoMatchAllowsOnly;
    d.verdict = Verdict::Deny;
  } else {
    d.by = DecidedBy::NoMatch;
    d.verdict = Verdict::Allow;
  }
  return d;
}

std::string describe(const Decision& d) {
  switch (d.verdict) {
    case Verdict::NeedClientName:
    case Verdict::NeedServerName: {
      std::string what = d.needs_client_name && d.needs_server_name ? "the client and server names"
                         : d.needs_client_name                      ? "the client name"
                                                                    : "the server name";
      return "needs " + what + " for " + (d.rule ? d.rule->to_string() : std::string("a rule"));
    }
    case Verdict::Allow:
    case Verdict::Deny:
      break;
  }
  std::string verdict = d.verdict == Verdict::Allow ? "allow" : "deny";
  switch (d.by) {
    case DecidedBy::Rule:
      return verdict + " by " + (d.rule ? d.rule->to_string() : std::string("?"));
    case DecidedBy::NoMatch:
      return verdict + ": no rule matched: default allow";
    case DecidedBy::NoMatchAllowsOnly:
      return verdict + ": no rule matched: default deny (allow rules but no deny rules)";
  }
  return verdict;
}

}  // namespace common::access
