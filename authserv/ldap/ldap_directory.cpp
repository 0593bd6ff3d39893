// ldap_directory.cpp: the libldap side of LdapDirectory: connection pools with timeouts and TLS,
// searches turned into owned entries, and the Sun Schema 2 lookups (domain first, then user).
#include "common/deleter.hpp"
#include "authserv/ldap/ldap_directory.hpp"

#include <ldap.h>
#include <sys/time.h>

#include <algorithm>
#include <charconv>
#include <condition_variable>
#include <functional>
#include <map>
#include <mutex>
#include <set>
#include <utility>

#include "authserv/directory/names.hpp"
#include "authserv/ldap/filter.hpp"
#include "common/ascii.hpp"
#include "common/text/ldap_escape.hpp"

namespace authserv::ldap {
namespace {

using common::ErrorKind;
using common::fail;
using common::Result;
using directory::BindResult;
using directory::DomainRecord;
using directory::Recipient;
using directory::RecipientKind;
using directory::Status;
using directory::UserRecord;

using common::Deleter;
using common::text::escape_filter_value;
void unbind(LDAP* ld) { ldap_unbind_ext_s(ld, nullptr, nullptr); }
using LdapHandle = std::unique_ptr<LDAP, Deleter<unbind>>;
using LdapMsg = std::unique_ptr<LDAPMessage, Deleter<ldap_msgfree>>;
void free_values(berval** v) { ldap_value_free_len(v); }
using BerValues = std::unique_ptr<berval*, Deleter<free_values>>;
void free_mem(char* p) { ldap_memfree(p); }
using LdapString = std::unique_ptr<char, Deleter<free_mem>>;

constexpr size_t kMaxPassword = 1024;  // as authserv/password: never send megabytes to a bind
constexpr size_t kGroupChunk = 32;      // member addresses per nested-group search
constexpr std::string_view kUserCertificate = "userCertificate;binary";

timeval to_timeval(std::chrono::milliseconds ms) {
  timeval tv{};
  tv.tv_sec = static_cast<time_t>(ms.count() / 1000);
  tv.tv_usec = static_cast<suseconds_t>((ms.count() % 1000) * 1000);
  return tv;
}

// Results that mean "this connection is unusable" as opposed to "the server answered no".
bool connection_lost(int rc) {
  return rc == LDAP_SERVER_DOWN || rc == LDAP_TIMEOUT || rc == LDAP_CONNECT_ERROR ||
         rc == LDAP_LOCAL_ERROR || rc == LDAP_ENCODING_ERROR || rc == LDAP_DECODING_ERROR ||
         rc == LDAP_NO_MEMORY;
}

// The server is there but cannot serve now: the client should come back later.
bool server_busy(int rc) {
  return rc == LDAP_BUSY || rc == LDAP_UNAVAILABLE || rc == LDAP_TIMELIMIT_EXCEEDED ||
         rc == LDAP_ADMINLIMIT_EXCEEDED || rc == LDAP_OTHER;
}

std::string diagnostic(LDAP* ld, int rc) {
  std::string out = ldap_err2string(rc);
  char* raw = nullptr;
  if (ld != nullptr && ldap_get_option(ld, LDAP_OPT_DIAGNOSTIC_MESSAGE, &raw) == LDAP_OPT_SUCCESS) {
    LdapString msg(raw);
    if (msg && *msg) out += std::string(" (") + msg.get() + ")";
  }
  return out;
}

common::Error ldap_error(LDAP* ld, int rc, std::string_view what) {
  ErrorKind kind = ErrorKind::Internal;
  if (connection_lost(rc) || server_busy(rc)) kind = ErrorKind::TempFail;
  if (rc == LDAP_FILTER_ERROR || rc == LDAP_INVALID_DN_SYNTAX || rc == LDAP_UNDEFINED_TYPE) {
    kind = ErrorKind::Config;  // our template, base or attribute names are wrong
  }
  return common::Error{kind, std::string(what) + ": " + diagnostic(ld, rc)};
}

std::string domain_of(std::string_view address) {
  const auto at = address.rfind('@');
  return at == std::string_view::npos ? std::string() : common::ascii::lowered(address.substr(at + 1));
}

// One entry copied out of the LDAPMessage, attribute names lowercased.
struct Entry {
  std::string dn;
  std::map<std::string, std::vector<std::string>, std::less<>> attrs;

  const std::vector<std::string>& all(std::string_view name) const {
    static const std::vector<std::string> kNone;
    auto it = attrs.find(common::ascii::lowered(name));
    return it == attrs.end() ? kNone : it->second;
  }
  std::string first(std::string_view name) const {
    const auto& v = all(name);
    return v.empty() ? std::string() : v.front();
  }
  bool has_value(std::string_view name, std::string_view value) const {
    const auto& v = all(name);
    return std::any_of(v.begin(), v.end(), [&](const std::string& s) { return common::ascii::iequals(s, value); });
  }
};

std::vector<Entry> copy_entries(LDAP* ld, LDAPMessage* res) {
  std::vector<Entry> out;
  for (LDAPMessage* e = ldap_first_entry(ld, res); e != nullptr; e = ldap_next_entry(ld, e)) {
    Entry entry;
    if (LdapString dn(ldap_get_dn(ld, e)); dn) entry.dn = dn.get();
    BerElement* ber = nullptr;
    for (char* a = ldap_first_attribute(ld, e, &ber); a != nullptr; a = ldap_next_attribute(ld, e, ber)) {
      LdapString name(a);
      BerValues vals(ldap_get_values_len(ld, e, a));
      auto& slot = entry.attrs[common::ascii::lowered(a)];
      for (berval** v = vals.get(); v != nullptr && *v != nullptr; ++v) slot.emplace_back((*v)->bv_val, (*v)->bv_len);
    }
    if (ber != nullptr) ber_free(ber, 0);
    out.push_back(std::move(entry));
  }
  return out;
}

// Sun quotas: -1 (or any negative) means unlimited, which is our 0. Garbage is a damaged record.
Result<uint64_t> parse_quota(const std::string& v, std::string_view attr) {
  if (v.empty()) return uint64_t{0};
  int64_t n = 0;
  const auto [p, ec] = std::from_chars(v.data(), v.data() + v.size(), n);
  if (ec != std::errc() || p != v.data() + v.size()) {
    return fail(ErrorKind::Internal, std::string("damaged ") + std::string(attr) + " value");
  }
  return n < 0 ? uint64_t{0} : static_cast<uint64_t>(n);
}

}  // namespace

// A bounded set of connections, made lazily. A caller waits at most op_timeout for one.
class Pool {
 public:
  using Connect = std::function<Result<LdapHandle>()>;
  Pool(size_t max, std::chrono::milliseconds wait, Connect connect)
      : max_(max), wait_(wait), connect_(std::move(connect)) {}

  class Lease {
   public:
    Lease(Pool& pool, LdapHandle ld, bool fresh) : pool_(&pool), ld_(std::move(ld)), fresh_(fresh) {}
    Lease(Lease&& o) noexcept : pool_(std::exchange(o.pool_, nullptr)), ld_(std::move(o.ld_)), fresh_(o.fresh_), broken_(o.broken_) {}
    Lease& operator=(Lease&&) = delete;
    ~Lease() {
      if (pool_ != nullptr) pool_->release(std::move(ld_), broken_);
    }
    LDAP* get() const { return ld_.get(); }
    bool fresh() const { return fresh_; }
    void mark_broken() { broken_ = true; }

   private:
    Pool* pool_;
    LdapHandle ld_;
    bool fresh_;
    bool broken_ = false;
  };

  Result<Lease> acquire() {
    std::unique_lock lock(mu_);
    if (!cv_.wait_for(lock, wait_, [&] { return !idle_.empty() || open_ < max_; })) {
      return fail(ErrorKind::TempFail, "all directory connections busy");
    }
    if (!idle_.empty()) {
      LdapHandle ld = std::move(idle_.back());
      idle_.pop_back();
      return Lease(*this, std::move(ld), false);
    }
    ++open_;
    lock.unlock();  // connecting can take connect_timeout: never under the lock
    auto ld = connect_();
    if (!ld) {
      release(nullptr, true);
      return tl::unexpected(ld.error());
    }
    return Lease(*this, std::move(*ld), true);
  }

 private:
  void release(LdapHandle ld, bool broken) {
    {
      std::lock_guard lock(mu_);
      if (broken || !ld) {
        --open_;
      } else {
        idle_.push_back(std::move(ld));
      }
    }
    cv_.notify_one();
    // A broken handle is unbound here, outside the lock; unbind only writes, so a stopped
    // server cannot hold it up.
  }

  const size_t max_;
  const std::chrono::milliseconds wait_;
  const Connect connect_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<LdapHandle> idle_;
  size_t open_ = 0;
};

struct LdapDirectory::Impl {
  struct DomainInfo {
    DomainRecord record;
    std::string user_base;
  };

  explicit Impl(LdapOptions o)
      : opts(std::move(o)),
        service(opts.pool_size, opts.op_timeout, [this] { return connect(true); }),
        binder(opts.pool_size, opts.op_timeout, [this] { return connect(false); }) {
    const auto& a = opts.attrs;
    user_attrs = {"objectClass", a.uid, a.mail, a.alternate_address, a.equivalent_address, a.mail_host,
                  a.user_status, a.mail_status, a.allowed_services, a.quota, a.message_quota, a.sieve,
                  a.access_domains, a.group_member, a.group_status,
                  // Operational, so only sent when asked for: bind the password cache to the
                  // entry's last change (a password changed by another tool ends the entry).
                  // modifyTimestamp has one-second resolution; OpenLDAP's entryCSN changes with
                  // every write, also twice within a second.
                  "modifyTimestamp", "entryCSN"};
    if (opts.password_check == PasswordCheck::Hash) {
      user_attrs.push_back(a.password);
      if (!a.scram.empty()) user_attrs.push_back(a.scram);
    }
    domain_attrs = {a.preferred_domain, a.domain_status, a.mail_domain_status,
                    a.domain_allowed_services, a.domain_search_filter, a.domain_base_dn};
    if (opts.domain_base.empty()) opts.domain_base = opts.base_dn;
  }

  // One connection: options, TLS, and for the service pool the service bind. Tries every URL.
  Result<LdapHandle> connect(bool service_bind) {
    std::string errors;
    for (const auto& url : opts.urls) {
      auto ld = connect_url(url, service_bind);
      if (ld) return ld;
      if (ld.error().kind == ErrorKind::Config) return ld;  // same credentials on every server
      errors += (errors.empty() ? "" : "; ") + url + ": " + ld.error().detail;
    }
    return fail(ErrorKind::TempFail, "no directory server answered: " + errors);
  }

  Result<LdapHandle> connect_url(const std::string& url, bool service_bind) {
    LDAP* raw = nullptr;
    int rc = ldap_initialize(&raw, url.c_str());
    LdapHandle ld(raw);
    if (rc != LDAP_SUCCESS || !ld) return fail(ErrorKind::Config, "bad LDAP URL " + url);
    const int v3 = LDAP_VERSION3;
    ldap_set_option(ld.get(), LDAP_OPT_PROTOCOL_VERSION, &v3);
    // Referrals would be followed with our credentials to a server we did not choose.
    ldap_set_option(ld.get(), LDAP_OPT_REFERRALS, LDAP_OPT_OFF);
    const timeval net = to_timeval(opts.connect_timeout);
    ldap_set_option(ld.get(), LDAP_OPT_NETWORK_TIMEOUT, &net);
    // The default wait of every synchronous call (binds, StartTLS, modify): a stopped server
    // costs op_timeout, not forever.
    const timeval api = to_timeval(opts.op_timeout);
    ldap_set_option(ld.get(), LDAP_OPT_TIMEOUT, &api);
    const bool ldaps = url.rfind("ldaps://", 0) == 0;
    if (ldaps || opts.start_tls) {
      if (!opts.ca_file.empty()) ldap_set_option(ld.get(), LDAP_OPT_X_TLS_CACERTFILE, opts.ca_file.c_str());
      const int demand = LDAP_OPT_X_TLS_DEMAND;
      ldap_set_option(ld.get(), LDAP_OPT_X_TLS_REQUIRE_CERT, &demand);
      const int tls12 = LDAP_OPT_X_TLS_PROTOCOL_TLS1_2;
      ldap_set_option(ld.get(), LDAP_OPT_X_TLS_PROTOCOL_MIN, &tls12);
      const int client = 0;
      // The options above only apply to a context made after them (ldap_set_option(3)).
      std::lock_guard lock(tls_ctx_mu_);
      rc = ldap_set_option(ld.get(), LDAP_OPT_X_TLS_NEWCTX, &client);
      if (rc != LDAP_OPT_SUCCESS) return fail(ErrorKind::Config, "TLS context for " + url + ": " + diagnostic(ld.get(), rc));
    }
    if (opts.start_tls && !ldaps) {
      // AUTH-12 ldaprequiretls: no fallback to plain text.
      rc = ldap_start_tls_s(ld.get(), nullptr, nullptr);
      if (rc != LDAP_SUCCESS) return fail(ErrorKind::TempFail, "StartTLS: " + diagnostic(ld.get(), rc));
    }
    if (service_bind && !opts.bind_dn.empty()) {
      berval cred{static_cast<ber_len_t>(opts.bind_password.size()), const_cast<char*>(opts.bind_password.data())};
      rc = ldap_sasl_bind_s(ld.get(), opts.bind_dn.c_str(), LDAP_SASL_SIMPLE, &cred, nullptr, nullptr, nullptr);
      if (rc == LDAP_INVALID_CREDENTIALS || rc == LDAP_INAPPROPRIATE_AUTH || rc == LDAP_INVALID_DN_SYNTAX) {
        return fail(ErrorKind::Config, "service bind as " + opts.bind_dn + ": " + diagnostic(ld.get(), rc));
      }
      if (rc != LDAP_SUCCESS) return fail(ErrorKind::TempFail, "service bind: " + diagnostic(ld.get(), rc));
    } else if (ldap_connect(ld.get()) != LDAP_SUCCESS) {
      // Anonymous handles connect now too, so a dead server is noticed here and not mid-bind.
      int err = LDAP_SERVER_DOWN;
      ldap_get_option(ld.get(), LDAP_OPT_RESULT_CODE, &err);
      return fail(ErrorKind::TempFail, "connect: " + diagnostic(ld.get(), err));
    }
    return ld;
  }

  // Runs op on a pooled connection. A connection that fails is dropped; when it had sat idle
  // (the server restarted, a firewall forgot it), the op is tried once more on a new one.
  // Returns op's result code for everything but a lost connection.
  Result<int> run(Pool& pool, const std::function<int(LDAP*)>& op, std::string_view what) {
    for (int attempt = 0;; ++attempt) {
      auto lease = pool.acquire();
      if (!lease) return tl::unexpected(lease.error());
      const int rc = op(lease->get());
      if (!connection_lost(rc)) return rc;
      lease->mark_broken();
      if (rc == LDAP_SERVER_DOWN && !lease->fresh() && attempt == 0) continue;
      return tl::unexpected(ldap_error(lease->get(), rc, what));
    }
  }

  // Subtree search as the service account. A missing base is "nothing found".
  Result<std::vector<Entry>> search(const std::string& base, const std::string& filter,
                                    const std::vector<std::string>& attrs, int size_limit) {
    std::vector<char*> names;
    for (const auto& a : attrs) {
      if (!a.empty()) names.push_back(const_cast<char*>(a.c_str()));
    }
    names.push_back(nullptr);
    std::vector<Entry> entries;
    std::optional<common::Error> failure;
    auto rc = run(
        service,
        [&](LDAP* ld) {
          timeval tv = to_timeval(opts.op_timeout);
          LDAPMessage* raw = nullptr;
          const int r = ldap_search_ext_s(ld, base.c_str(), LDAP_SCOPE_SUBTREE, filter.c_str(), names.data(), 0,
                                          nullptr, nullptr, &tv, size_limit, &raw);
          LdapMsg res(raw);
          if (r == LDAP_SUCCESS || r == LDAP_SIZELIMIT_EXCEEDED) {
            entries = copy_entries(ld, res.get());
          } else if (r != LDAP_NO_SUCH_OBJECT && !connection_lost(r)) {
            failure = ldap_error(ld, r, "search");
          }
          return r;
        },
        "search");
    if (!rc) return tl::unexpected(rc.error());
    if (failure) return tl::unexpected(*failure);
    return entries;
  }

  Result<std::optional<DomainInfo>> lookup_domain(std::string_view domain) {
    const std::string name = common::ascii::lowered(domain);
    auto filter = expand_filter(opts.domain_filter, FilterVars{"", "", name, name});
    if (!filter) return tl::unexpected(filter.error());
    auto entries = search(opts.domain_base, *filter, domain_attrs, 2);
    if (!entries) return tl::unexpected(entries.error());
    const auto& a = opts.attrs;
    const Entry* pick = nullptr;
    for (const auto& e : *entries) {
      if (e.has_value(a.preferred_domain, name)) pick = &e;
    }
    if (pick == nullptr && entries->size() == 1) pick = &entries->front();
    if (pick == nullptr && !entries->empty()) {
      return fail(ErrorKind::Internal, "domain " + name + " matches several directory entries");
    }
    if (pick == nullptr) return std::optional<DomainInfo>();
    DomainInfo info;
    const std::string preferred = pick->first(a.preferred_domain);
    // An associatedDomain is an alias: the canonical names use the preferred domain.
    info.record.name = preferred.empty() ? name : common::ascii::lowered(preferred);
    info.record.status = directory::stricter(directory::parse_status(pick->first(a.domain_status)),
                                             directory::parse_status(pick->first(a.mail_domain_status)));
    info.record.allowed_services = pick->first(a.domain_allowed_services);
    info.record.search_filter = pick->first(a.domain_search_filter);
    const std::string base = pick->first(a.domain_base_dn);
    info.user_base = base.empty() ? pick->dn : base;  // Schema 2: users live under the org node
    return std::optional<DomainInfo>(std::move(info));
  }

  Result<UserRecord> make_user(const Entry& e, const DomainInfo* dom, std::string_view domain,
                               std::string_view asked_uid) {
    const auto& a = opts.attrs;
    UserRecord u;
    // Entries may carry several uids; the one asked for wins, so canonical names are stable.
    const auto& uids = e.all(a.uid);
    for (const auto& v : uids) {
      if (common::ascii::iequals(v, asked_uid)) u.uid = common::ascii::lowered(v);
    }
    if (u.uid.empty() && !uids.empty()) u.uid = common::ascii::lowered(uids.front());
    if (u.uid.empty()) return fail(ErrorKind::Internal, "user entry without " + a.uid + ": " + e.dn);
    u.domain = dom != nullptr ? dom->record.name : common::ascii::lowered(domain);
    u.canonical = u.uid + "@" + u.domain;
    u.dn = e.dn;
    u.status = directory::stricter(directory::parse_status(e.first(a.user_status)),
                                   directory::parse_status(e.first(a.mail_status)));
    if (dom != nullptr) {
      u.status = directory::stricter(u.status, dom->record.status);
      u.domain_allowed_services = dom->record.allowed_services;
    }
    u.mail = e.first(a.mail);
    for (const auto* attr : {&a.mail, &a.alternate_address, &a.equivalent_address}) {
      for (const auto& v : e.all(*attr)) u.addresses.push_back(v);
    }
    u.mail_host = e.first(a.mail_host);
    u.allowed_services = e.first(a.allowed_services);
    u.access_domains = e.all(a.access_domains);
    auto quota = parse_quota(e.first(a.quota), a.quota);
    if (!quota) return tl::unexpected(quota.error());
    auto messages = parse_quota(e.first(a.message_quota), a.message_quota);
    if (!messages) return tl::unexpected(messages.error());
    u.quota_bytes = *quota;
    u.quota_messages = *messages;
    // Sun allows the script in several values (one rule each); they concatenate in order.
    for (const auto& v : e.all(a.sieve)) u.sieve += (u.sieve.empty() ? "" : "\n") + v;
    u.change_stamp = e.first("modifyTimestamp");
    if (auto csn = e.first("entryCSN"); !csn.empty()) u.change_stamp += "|" + std::string(csn);
    if (opts.password_check == PasswordCheck::Hash) {
      u.password = e.first(a.password);
      if (!a.scram.empty()) u.scram = e.first(a.scram);
    }
    u.store_admin = std::find(opts.store_admins.begin(), opts.store_admins.end(), u.canonical) !=
                    opts.store_admins.end();
    return u;
  }

  // A user found by address: its domain is the one of its primary mail (Schema 2 keeps them equal).
  Result<UserRecord> user_from_entry(const Entry& e, std::string_view fallback_domain) {
    std::string domain = domain_of(e.first(opts.attrs.mail));
    if (domain.empty()) domain = std::string(fallback_domain);
    std::optional<DomainInfo> dom;
    if (opts.search_for_domain) {
      auto d = lookup_domain(domain);
      if (!d) return tl::unexpected(d.error());
      dom = std::move(*d);
    }
    return make_user(e, dom ? &*dom : nullptr, domain, "");
  }

  std::string address_filter(std::string_view object_class, const std::vector<std::string>& addresses) {
    const auto& a = opts.attrs;
    std::string any = "(|";
    for (const auto& addr : addresses) {
      const std::string v = escape_filter_value(addr);
      for (const auto* attr : {&a.mail, &a.alternate_address, &a.equivalent_address}) {
        any += "(" + *attr + "=" + v + ")";
      }
    }
    any += ")";
    return and_filter("(objectclass=" + escape_filter_value(object_class) + ")", any);
  }

  bool is_group(const Entry& e) const { return e.has_value("objectClass", opts.attrs.group_class); }

  // Group members, groups inside expanded level by level (one search per kGroupChunk addresses),
  // each group once (loops), at most kMaxAliasDepth levels and kMaxAliasTargets targets.
  Result<std::vector<std::string>> expand_group(const Entry& root) {
    const auto& a = opts.attrs;
    std::set<std::string> seen_groups{root.dn};
    std::set<std::string> seen_targets;
    std::vector<std::string> targets;
    std::vector<std::string> frontier = root.all(a.group_member);
    const std::vector<std::string> group_attrs{"objectClass", a.mail, a.alternate_address,
                                               a.equivalent_address, a.group_member, a.group_status};
    for (int depth = 1; depth <= directory::kMaxAliasDepth && !frontier.empty(); ++depth) {
      std::set<std::string> group_addresses;  // lowercased addresses of groups on this level
      std::vector<std::string> next;
      for (size_t i = 0; i < frontier.size(); i += kGroupChunk) {
        const std::vector<std::string> chunk(frontier.begin() + static_cast<std::ptrdiff_t>(i),
                                             frontier.begin() + static_cast<std::ptrdiff_t>(std::min(frontier.size(), i + kGroupChunk)));
        auto groups = search(opts.base_dn, address_filter(a.group_class, chunk), group_attrs,
                             static_cast<int>(kGroupChunk * 2));
        if (!groups) return tl::unexpected(groups.error());
        for (const auto& g : *groups) {
          for (const auto* attr : {&a.mail, &a.alternate_address, &a.equivalent_address}) {
            for (const auto& v : g.all(*attr)) group_addresses.insert(directory::address_key(v));
          }
          const bool active = directory::parse_status(g.first(a.group_status)) == Status::Active;
          if (seen_groups.insert(g.dn).second && active) {
            for (const auto& m : g.all(a.group_member)) next.push_back(m);
          }
        }
      }
      for (const auto& m : frontier) {
        const std::string key = directory::address_key(m);
        if (group_addresses.count(key) != 0 || !seen_targets.insert(key).second) continue;
        if (targets.size() == directory::kMaxAliasTargets) return targets;
        targets.push_back(m);
      }
      frontier = std::move(next);
    }
    return targets;
  }

  // One address: a user by any of its addresses, an active group, or nothing.
  Result<Recipient> resolve(const std::string& address) {
    auto entries = search(opts.base_dn,
                          "(|" + address_filter("inetMailUser", {address}) +
                              address_filter(opts.attrs.group_class, {address}) + ")",
                          user_attrs, 2);
    if (!entries) return tl::unexpected(entries.error());
    Recipient r;
    r.address = address;
    if (entries->empty()) return r;
    if (entries->size() > 1) return fail(ErrorKind::Internal, "address " + address + " matches several entries");
    const Entry& e = entries->front();
    if (is_group(e)) {
      if (directory::parse_status(e.first(opts.attrs.group_status)) != Status::Active) return r;
      auto targets = expand_group(e);
      if (!targets) return tl::unexpected(targets.error());
      r.kind = RecipientKind::Alias;
      r.targets = std::move(*targets);
      return r;
    }
    auto user = user_from_entry(e, domain_of(address));
    if (!user) return tl::unexpected(user.error());
    r.kind = RecipientKind::User;
    r.user = std::move(*user);
    return r;
  }

  LdapOptions opts;
  Pool service;  // bound as the service account: searches and rehash writes
  Pool binder;   // anonymous until a user bind: password checks only, never searches
  std::vector<std::string> user_attrs;
  std::vector<std::string> domain_attrs;
  static inline std::mutex tls_ctx_mu_;  // TLS library context set-up is not documented thread-safe
};

LdapDirectory::LdapDirectory(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
LdapDirectory::~LdapDirectory() = default;

Result<std::unique_ptr<LdapDirectory>> LdapDirectory::open(LdapOptions options) {
  if (options.urls.empty()) return fail(ErrorKind::Config, "ldap: no urls");
  for (const auto& url : options.urls) {
    if (url.rfind("ldap://", 0) != 0 && url.rfind("ldaps://", 0) != 0 && url.rfind("ldapi://", 0) != 0) {
      return fail(ErrorKind::Config, "ldap: url must be ldap://, ldaps:// or ldapi://: " + url);
    }
    if (!ldap_is_ldap_url(url.c_str())) return fail(ErrorKind::Config, "ldap: bad url " + url);
  }
  if (options.base_dn.empty()) return fail(ErrorKind::Config, "ldap: base_dn is required");
  if (options.pool_size == 0 || options.pool_size > 256) return fail(ErrorKind::Config, "ldap: pool_size out of range");
  if (options.connect_timeout.count() <= 0 || options.op_timeout.count() <= 0) {
    return fail(ErrorKind::Config, "ldap: timeouts must be positive");
  }
  if (options.size_limit <= 0) return fail(ErrorKind::Config, "ldap: size_limit must be positive");
  // Templates are checked now, not on the first login.
  for (const auto* templ : {&options.user_filter, &options.domain_filter}) {
    if (auto f = expand_filter(*templ, FilterVars{"u", "u@d", "d", "u"}); !f) return tl::unexpected(f.error());
  }
  auto impl = std::make_unique<Impl>(std::move(options));
  {
    auto lease = impl->service.acquire();
    if (!lease) return tl::unexpected(lease.error());
  }
  return std::unique_ptr<LdapDirectory>(new LdapDirectory(std::move(impl)));
}

Result<std::optional<DomainRecord>> LdapDirectory::find_domain(std::string_view domain) {
  if (domain.empty()) return std::optional<DomainRecord>();
  auto info = impl_->lookup_domain(domain);
  if (!info) return tl::unexpected(info.error());
  if (!*info) return std::optional<DomainRecord>();
  return std::optional<DomainRecord>(std::move((*info)->record));
}

Result<std::optional<UserRecord>> LdapDirectory::find_user(std::string_view uid, std::string_view domain,
                                                           std::string_view as_typed) {
  if (uid.empty() || domain.empty()) return std::optional<UserRecord>();
  const auto& o = impl_->opts;
  std::optional<Impl::DomainInfo> dom;
  std::string base = o.base_dn;
  std::string templ = o.user_filter;
  if (o.search_for_domain) {
    auto d = impl_->lookup_domain(domain);
    if (!d) return tl::unexpected(d.error());
    if (!*d) return std::optional<UserRecord>();  // no such domain, so no such user
    dom = std::move(*d);
    base = dom->user_base;
    if (!dom->record.search_filter.empty()) templ = dom->record.search_filter;
  }
  const std::string login = std::string(uid) + "@" + std::string(domain);
  auto filter = expand_filter(templ, FilterVars{uid, login, domain, as_typed.empty() ? login : as_typed});
  if (!filter) return tl::unexpected(filter.error());
  auto entries = impl_->search(base, *filter, impl_->user_attrs, 2);
  if (!entries) return tl::unexpected(entries.error());
  if (entries->empty()) return std::optional<UserRecord>();
  // Two entries for one login: refuse rather than pick one (Sun does the same).
  if (entries->size() > 1) return fail(ErrorKind::Internal, "login " + login + " matches several entries");
  auto user = impl_->make_user(entries->front(), dom ? &*dom : nullptr, domain, uid);
  if (!user) return tl::unexpected(user.error());
  return std::optional<UserRecord>(std::move(*user));
}

Result<Recipient> LdapDirectory::find_recipient(std::string_view address) {
  Recipient unknown;
  const auto at = address.rfind('@');
  if (at == std::string_view::npos || at == 0 || at + 1 == address.size()) {
    unknown.address = std::string(address);
    return unknown;
  }
  const std::string normalized = std::string(address.substr(0, at + 1)) + common::ascii::lowered(address.substr(at + 1));
  auto r = impl_->resolve(normalized);
  if (!r) return r;
  if (r->kind == RecipientKind::Unknown && impl_->opts.detail_delimiter != '\0') {
    const std::string stripped = directory::strip_detail(normalized, impl_->opts.detail_delimiter);
    if (stripped != normalized) {
      r = impl_->resolve(stripped);
      if (!r) return r;
    }
  }
  r->address = normalized;  // as asked: the detail stays for delivery (fileinto by detail)
  return r;
}

Result<std::vector<std::string>> LdapDirectory::find_by_certificate(const common::tls::CertQuery& query) {
  auto holders = find_holders(query.base_dn(), query.filter.to_string(), false);
  if (!holders) return tl::unexpected(holders.error());
  std::vector<std::string> names;
  for (auto& h : *holders) names.push_back(std::move(h.canonical));
  return names;
}

Result<std::vector<directory::Backend::CertificateHolder>> LdapDirectory::find_certificate_holders(
    const common::tls::CertQuery& query) {
  return find_holders(query.base_dn(), query.filter.to_string(), true);
}

Result<std::vector<directory::Backend::CertificateHolder>> LdapDirectory::find_holders(std::string_view base_dn,
                                                                            std::string_view filter,
                                                                            bool with_certificates) {
  // `filter` is CertFilter::to_string(): always one parenthesised filter, every value escaped.
  // Only mail users can log in; a group or a service account with the same mail cannot.
  const std::string f = and_filter("(objectclass=inetmailuser)", filter);
  const auto& o = impl_->opts;
  std::vector<std::string> attrs{o.attrs.uid, o.attrs.mail};
  // ";binary": the DER as stored, the form RFC 4523 and Sun's VerifyCert compare.
  if (with_certificates) attrs.push_back(std::string(kUserCertificate));
  auto entries = impl_->search(base_dn.empty() ? o.base_dn : std::string(base_dn), f, attrs, o.size_limit);
  if (!entries) return tl::unexpected(entries.error());
  std::vector<CertificateHolder> holders;
  std::map<std::string, std::string> preferred;  // domain -> canonical domain, per call
  for (const auto& e : *entries) {
    const std::string uid = common::ascii::lowered(e.first(o.attrs.uid));
    std::string domain = domain_of(e.first(o.attrs.mail));
    if (uid.empty() || domain.empty()) continue;
    if (o.search_for_domain) {
      auto it = preferred.find(domain);
      if (it == preferred.end()) {
        auto d = impl_->lookup_domain(domain);
        if (!d) return tl::unexpected(d.error());
        it = preferred.emplace(domain, *d ? (*d)->record.name : domain).first;
      }
      domain = it->second;
    }
    CertificateHolder holder{uid + "@" + domain, {}};
    if (with_certificates) holder.certificates_der = e.all(kUserCertificate);
    holders.push_back(std::move(holder));
  }
  return holders;
}

std::optional<BindResult> LdapDirectory::bind_as(const UserRecord& user, std::string_view password) {
  if (impl_->opts.password_check != PasswordCheck::Bind) return std::nullopt;
  // RFC 4513 §5.1.2: a simple bind with an empty password is an unauthenticated bind, which
  // servers answer with success. It must never count as a login.
  if (user.dn.empty() || password.empty() || password.size() > kMaxPassword) return BindResult::Mismatch;
  int bind_rc = LDAP_OTHER;
  auto rc = impl_->run(
      impl_->binder,
      [&](LDAP* ld) {
        berval cred{static_cast<ber_len_t>(password.size()), const_cast<char*>(password.data())};
        bind_rc = ldap_sasl_bind_s(ld, user.dn.c_str(), LDAP_SASL_SIMPLE, &cred, nullptr, nullptr, nullptr);
        return bind_rc;
      },
      "user bind");
  if (!rc) return BindResult::Unavailable;
  if (bind_rc == LDAP_SUCCESS) return BindResult::Match;
  if (server_busy(bind_rc)) return BindResult::Unavailable;
  // invalidCredentials, and also unwillingToPerform / inappropriateAuthentication (no password
  // on the entry, account locked by a password policy): all a failed login.
  return BindResult::Mismatch;
}

Result<void> LdapDirectory::store_password_hash(const UserRecord& user, std::string_view stored,
                                                std::string_view scram) {
  const auto& o = impl_->opts;
  if (!o.allow_rehash) return fail(ErrorKind::Config, "ldap: rehash not allowed by configuration");
  if (user.dn.empty() || stored.empty()) return fail(ErrorKind::Internal, "rehash without a DN or a hash");
  std::string password(stored);
  std::string verifier(scram);
  char* password_vals[] = {password.data(), nullptr};
  char* scram_vals[] = {verifier.data(), nullptr};
  LDAPMod password_mod{};
  password_mod.mod_op = LDAP_MOD_REPLACE;
  password_mod.mod_type = const_cast<char*>(o.attrs.password.c_str());
  password_mod.mod_values = password_vals;
  LDAPMod scram_mod{};
  scram_mod.mod_op = LDAP_MOD_REPLACE;
  scram_mod.mod_type = const_cast<char*>(o.attrs.scram.c_str());
  scram_mod.mod_values = scram_vals;
  std::vector<LDAPMod*> mods{&password_mod};
  if (!o.attrs.scram.empty() && !verifier.empty()) mods.push_back(&scram_mod);
  mods.push_back(nullptr);
  std::optional<common::Error> refused;
  auto rc = impl_->run(
      impl_->service,
      [&](LDAP* ld) {
        const int r = ldap_modify_ext_s(ld, user.dn.c_str(), mods.data(), nullptr, nullptr);
        if (r != LDAP_SUCCESS && !connection_lost(r)) {
          refused = ldap_error(ld, r, "rehash of " + user.dn);
          // insufficientAccess and friends: the directory said no; the login stands.
          if (refused->kind == ErrorKind::Internal) refused->kind = ErrorKind::Remote;
        }
        return r;
      },
      "rehash");
  if (!rc) return tl::unexpected(rc.error());
  if (refused) return tl::unexpected(*refused);
  return {};
}

}  // namespace authserv::ldap
