// lmdb_directory.cpp: the embedded directory over LMDB: tables, the address index, alias expansion
// and certmap searches.
#include "authserv/directory/lmdb_directory.hpp"

#include <sys/stat.h>

#include <algorithm>
#include <mutex>
#include <set>
#include <system_error>

#include "authserv/directory/names.hpp"
#include "authserv/directory/record.hpp"
#include "common/ascii.hpp"

namespace authserv::directory {
namespace {

using common::ErrorKind;
using common::fail;
using common::Result;

constexpr std::string_view kSchemaKey = "schema_version";

template <class T>
tl::unexpected<common::Error> err(const Result<T>& r) {
  return tl::unexpected(r.error());
}

// Directories open in this process, by (st_dev, st_ino) so another spelling of the path matches.
std::mutex open_mutex;
std::set<std::pair<uint64_t, uint64_t>> open_dirs;

bool contains(const std::vector<std::string>& v, std::string_view s) {
  return std::find(v.begin(), v.end(), s) != v.end();
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// Opening

Result<std::unique_ptr<LmdbDirectory>> LmdbDirectory::open(const std::filesystem::path& dir, Options options) {
  if (!options.read_only) {
    std::error_code ec;
    std::filesystem::create_directories(dir, ec);
    if (ec) return fail(ErrorKind::Config, "cannot create " + dir.string() + ": " + ec.message());
    // The directory holds password hashes: owner only, whatever the umask.
    std::filesystem::permissions(dir, std::filesystem::perms::owner_all, ec);
  }
  struct stat st {};
  if (::stat(dir.c_str(), &st) != 0 || !S_ISDIR(st.st_mode))
    return fail(ErrorKind::Config, dir.string() + " is not a directory");
  const std::pair<uint64_t, uint64_t> id{st.st_dev, st.st_ino};
  {
    std::lock_guard lock(open_mutex);
    if (!open_dirs.insert(id).second) return fail(ErrorKind::Config, dir.string() + " is already open in this process");
  }
  // Every failure below must release the claim.
  struct Claim {
    std::pair<uint64_t, uint64_t> id;
    bool keep = false;
    ~Claim() {
      if (keep) return;
      std::lock_guard lock(open_mutex);
      open_dirs.erase(id);
    }
  } claim{id};
  MDB_env* raw = nullptr;
  if (int rc = mdb_env_create(&raw); rc != 0) return tl::unexpected(lmdb::error("mdb_env_create", rc));
  lmdb::Env env(raw);
  if (int rc = mdb_env_set_maxdbs(raw, 8); rc != 0) return tl::unexpected(lmdb::error("mdb_env_set_maxdbs", rc));
  // gRPC threads each hold a read transaction while they answer; the default 126 is too few.
  if (int rc = mdb_env_set_maxreaders(raw, 1024); rc != 0)
    return tl::unexpected(lmdb::error("mdb_env_set_maxreaders", rc));
  if (int rc = mdb_env_set_mapsize(raw, options.map_size); rc != 0)
    return tl::unexpected(lmdb::error("mdb_env_set_mapsize", rc));
  // MDB_NOTLS: a read transaction is not tied to its thread, so any gRPC thread may use one.
  // No MDB_NOSYNC: an admin change is on disk when the CLI says so.
  const unsigned flags = MDB_NOTLS | (options.read_only ? MDB_RDONLY : 0u);
  if (int rc = mdb_env_open(raw, dir.c_str(), flags, 0600); rc != 0)
    return fail(ErrorKind::Config, "cannot open directory " + dir.string() + ": " + mdb_strerror(rc));
  int dead = 0;
  mdb_reader_check(raw, &dead);  // slots left by crashed processes would pin old pages

  std::unique_ptr<LmdbDirectory> d(new LmdbDirectory(std::move(env), options, dir, id));
  claim.keep = true;  // ~LmdbDirectory releases it from here on
  auto txn = lmdb::Txn::begin(raw, !options.read_only);
  if (!txn) return err(txn);
  const struct {
    const char* name;
    MDB_dbi* dbi;
  } tables[] = {{"meta", &d->meta_}, {"domains", &d->domains_}, {"users", &d->users_},
                {"addresses", &d->addresses_}, {"aliases", &d->aliases_}};
  for (const auto& t : tables) {
    const int rc = mdb_dbi_open(txn->get(), t.name, options.read_only ? 0 : MDB_CREATE, t.dbi);
    if (rc == MDB_NOTFOUND)
      return fail(ErrorKind::Config, dir.string() + " is not a postern directory (no table " + t.name + ")");
    if (rc != 0) return tl::unexpected(lmdb::error("mdb_dbi_open", rc));
  }
  auto version = txn->get(d->meta_, kSchemaKey);
  if (!version) return err(version);
  if (!*version) {
    if (options.read_only) return fail(ErrorKind::Config, dir.string() + " has no schema version");
    if (auto ok = txn->put(d->meta_, kSchemaKey, kSchemaVersion); !ok) return err(ok);
  } else if (**version != kSchemaVersion) {
    return fail(ErrorKind::Config, dir.string() + " has directory schema version " +
                                       std::string((*version)->substr(0, 16)) + "; this build knows " +
                                       std::string(kSchemaVersion));
  }
  // Committing (a read transaction too) makes the table handles usable by later transactions.
  if (auto ok = txn->commit(); !ok) return err(ok);
  return d;
}

LmdbDirectory::~LmdbDirectory() {
  env_.reset();  // close before another open of the same directory may begin
  std::lock_guard lock(open_mutex);
  open_dirs.erase(file_id_);
}

Result<void> LmdbDirectory::read(const std::function<Result<void>(const Reader&)>& fn) const {
  auto txn = lmdb::Txn::begin(env_.get(), false);
  if (!txn) return err(txn);
  return fn(Reader(*this, *txn));
}

Result<void> LmdbDirectory::write(const std::function<Result<void>(Writer&)>& fn) {
  if (options_.read_only) return fail(ErrorKind::Config, "directory opened read-only");
  auto txn = lmdb::Txn::begin(env_.get(), true);
  if (!txn) return err(txn);
  Writer w(*this, *txn);
  if (auto ok = fn(w); !ok) return ok;  // ~Txn aborts
  return txn->commit();
}

// ---------------------------------------------------------------------------------------------
// Reader

Result<std::optional<DomainRecord>> LmdbDirectory::Reader::domain(std::string_view name) const {
  auto v = txn_.get(dir_.domains_, name);
  if (!v) return err(v);
  if (!*v) return std::optional<DomainRecord>{};
  auto d = record::decode_domain(name, **v);
  if (!d) return err(d);
  return std::optional<DomainRecord>{std::move(*d)};
}

Result<std::optional<UserRecord>> LmdbDirectory::Reader::user(std::string_view canonical) const {
  auto v = txn_.get(dir_.users_, canonical);
  if (!v) return err(v);
  if (!*v) return std::optional<UserRecord>{};
  auto u = record::decode_user(canonical, **v);
  if (!u) return err(u);
  return std::optional<UserRecord>{std::move(*u)};
}

Result<std::optional<std::string>> LmdbDirectory::Reader::address_owner(std::string_view address) const {
  const std::string key = address_key(address);
  auto v = txn_.get(dir_.addresses_, key);
  if (!v) return err(v);
  if (!*v) return std::optional<std::string>{};
  return std::optional<std::string>{std::string(**v)};
}

Result<std::optional<std::vector<std::string>>> LmdbDirectory::Reader::alias(std::string_view address) const {
  const std::string key = address_key(address);
  auto v = txn_.get(dir_.aliases_, key);
  if (!v) return err(v);
  if (!*v) return std::optional<std::vector<std::string>>{};
  auto targets = record::decode_alias(key, **v);
  if (!targets) return err(targets);
  return std::optional<std::vector<std::string>>{std::move(*targets)};
}

Result<void> LmdbDirectory::Reader::each_domain(const std::function<bool(const DomainRecord&)>& fn) const {
  auto cur = lmdb::Cursor::open(txn_, dir_.domains_);
  if (!cur) return err(cur);
  for (auto e = cur->seek(""); ; e = cur->next()) {
    if (!e) return err(e);
    if (!*e) return {};
    auto d = record::decode_domain((*e)->first, (*e)->second);
    if (!d) return err(d);
    if (!fn(*d)) return {};
  }
}

Result<void> LmdbDirectory::Reader::each_user(const std::function<bool(const UserRecord&)>& fn) const {
  return each_user_from("", fn);
}

Result<void> LmdbDirectory::Reader::each_user_from(std::string_view prefix,
                                                   const std::function<bool(const UserRecord&)>& fn) const {
  auto cur = lmdb::Cursor::open(txn_, dir_.users_);
  if (!cur) return err(cur);
  for (auto e = cur->seek(prefix); ; e = cur->next()) {
    if (!e) return err(e);
    if (!*e || !(*e)->first.starts_with(prefix)) return {};
    auto u = record::decode_user((*e)->first, (*e)->second);
    if (!u) return err(u);
    if (!fn(*u)) return {};
  }
}

Result<void> LmdbDirectory::Reader::each_alias(
    const std::function<bool(std::string_view, const std::vector<std::string>&)>& fn) const {
  auto cur = lmdb::Cursor::open(txn_, dir_.aliases_);
  if (!cur) return err(cur);
  for (auto e = cur->seek(""); ; e = cur->next()) {
    if (!e) return err(e);
    if (!*e) return {};
    auto targets = record::decode_alias((*e)->first, (*e)->second);
    if (!targets) return err(targets);
    if (!fn((*e)->first, *targets)) return {};
  }
}

// ---------------------------------------------------------------------------------------------
// Writer

Result<void> LmdbDirectory::Writer::put_domain(const DomainRecord& d) {
  return txn_.put(dir_.domains_, d.name, record::encode_domain(d));
}

Result<void> LmdbDirectory::Writer::put_user(UserRecord u) {
  if (u.uid.empty() || u.domain.empty() || u.canonical != u.uid + "@" + u.domain)
    return fail(ErrorKind::Protocol, "user record without a canonical uid@domain");
  auto dom = domain(u.domain);
  if (!dom) return err(dom);
  if (!*dom) return fail(ErrorKind::Protocol, "unknown domain " + u.domain + " (add it first)");
  if (!u.mail.empty() && !contains(u.addresses, u.mail)) u.addresses.insert(u.addresses.begin(), u.mail);
  auto old = user(u.canonical);
  if (!old) return err(old);
  // Claim every address first, so a conflict leaves the index untouched (the caller's Txn aborts
  // anyway; this keeps the error message about the first conflict).
  for (const auto& a : u.addresses) {
    const std::string key = address_key(a);
    auto owner = address_owner(key);
    if (!owner) return err(owner);
    if (*owner && **owner != u.canonical) return fail(ErrorKind::Protocol, "address " + a + " belongs to " + **owner);
    auto al = alias(key);
    if (!al) return err(al);
    if (*al) return fail(ErrorKind::Protocol, "address " + a + " is an alias");
    if (!*owner) {
      if (auto ok = txn_.put(dir_.addresses_, key, u.canonical); !ok) return ok;
    }
  }
  if (*old) {
    std::vector<std::string> keep;
    for (const auto& a : u.addresses) keep.push_back(address_key(a));
    for (const auto& a : (*old)->addresses) {
      const std::string key = address_key(a);
      if (contains(keep, key)) continue;
      if (auto ok = txn_.del(dir_.addresses_, key); !ok) return err(ok);
    }
  }
  return txn_.put(dir_.users_, u.canonical, record::encode_user(u));
}

Result<bool> LmdbDirectory::Writer::delete_user(std::string_view canonical) {
  auto old = user(canonical);
  if (!old) return err(old);
  if (!*old) return false;
  for (const auto& a : (*old)->addresses) {
    auto owner = address_owner(a);
    if (!owner) return err(owner);
    if (*owner && **owner == canonical) {
      if (auto ok = txn_.del(dir_.addresses_, address_key(a)); !ok) return err(ok);
    }
  }
  return txn_.del(dir_.users_, canonical);
}

Result<void> LmdbDirectory::Writer::put_alias(std::string_view address, const std::vector<std::string>& targets) {
  const std::string key = address_key(address);
  auto owner = address_owner(key);
  if (!owner) return err(owner);
  if (*owner) return fail(ErrorKind::Protocol, "address " + std::string(address) + " belongs to user " + **owner);
  return txn_.put(dir_.aliases_, key, record::encode_alias(targets));
}

Result<bool> LmdbDirectory::Writer::delete_alias(std::string_view address) {
  return txn_.del(dir_.aliases_, address_key(address));
}

// ---------------------------------------------------------------------------------------------
// Backend

Result<void> LmdbDirectory::combine_domain(const Reader& r, UserRecord& u) const {
  auto d = r.domain(u.domain);
  if (!d) return err(d);
  // put_user refuses users of unknown domains, so this is damage (or a hand-edited database):
  // failing closed beats treating the user as unrestricted.
  if (!*d) return fail(ErrorKind::Internal, "user " + u.canonical + " has no domain record");
  u.status = stricter(u.status, (*d)->status);
  u.domain_allowed_services = (*d)->allowed_services;
  return {};
}

Result<std::optional<DomainRecord>> LmdbDirectory::find_domain(std::string_view domain) {
  auto name = normalize_domain(domain);
  if (!name) return std::optional<DomainRecord>{};  // no such name can be stored
  std::optional<DomainRecord> out;
  auto ok = read([&](const Reader& r) -> Result<void> {
    auto d = r.domain(*name);
    if (!d) return err(d);
    out = std::move(*d);
    return {};
  });
  if (!ok) return err(ok);
  return out;
}

Result<std::optional<UserRecord>> LmdbDirectory::find_user(std::string_view uid, std::string_view domain,
                                                           std::string_view /*as_typed: no filters here*/) {
  const std::string key = common::ascii::lowered(uid) + "@" + common::ascii::lowered(domain);
  std::optional<UserRecord> out;
  auto ok = read([&](const Reader& r) -> Result<void> {
    auto u = r.user(key);
    if (!u) return err(u);
    if (!*u) return {};
    if (auto c = combine_domain(r, **u); !c) return c;
    out = std::move(*u);
    return {};
  });
  if (!ok) return err(ok);
  return out;
}

Result<std::optional<UserRecord>> LmdbDirectory::user_by_address(const Reader& r, std::string_view key) const {
  auto owner = r.address_owner(key);
  if (!owner) return err(owner);
  if (!*owner) return std::optional<UserRecord>{};
  auto u = r.user(**owner);
  if (!u) return err(u);
  if (!*u) return fail(ErrorKind::Internal, "address " + std::string(key) + " points at missing user " + **owner);
  if (auto c = combine_domain(r, **u); !c) return tl::unexpected(c.error());
  return u;
}

Result<void> LmdbDirectory::expand_alias(const Reader& r, const std::vector<std::string>& targets, int depth,
                                         std::vector<std::string>& seen, std::vector<std::string>& out) const {
  for (const auto& t : targets) {
    if (out.size() >= kMaxAliasTargets) return {};
    const std::string key = address_key(t);
    const std::string base = strip_detail(key, options_.detail_delimiter);
    // A local user stays an address: delivery routes it by the user's mailHost.
    auto owner = r.address_owner(key);
    if (!owner) return err(owner);
    if (!*owner && base != key) {
      owner = r.address_owner(base);
      if (!owner) return err(owner);
    }
    if (!*owner) {
      auto nested = r.alias(key);
      if (!nested) return err(nested);
      if (*nested) {
        // Loops and chains deeper than kMaxAliasDepth are cut: the mail goes to the targets
        // found so far instead of circling (RFC 5321 §3.9 leaves loop detection to us).
        if (depth < kMaxAliasDepth && !contains(seen, key)) {
          seen.push_back(key);
          if (auto ok = expand_alias(r, **nested, depth + 1, seen, out); !ok) return ok;
        }
        continue;
      }
    }
    if (!contains(out, t)) out.push_back(t);
  }
  return {};
}

Result<Recipient> LmdbDirectory::find_recipient(std::string_view address) {
  auto norm = normalize_address(address);
  if (!norm) return err(norm);
  Recipient rcpt;
  rcpt.address = *norm;
  const std::string key = address_key(*norm);
  const std::string base = strip_detail(key, options_.detail_delimiter);
  const std::string catch_all = key.substr(key.rfind('@'));
  auto ok = read([&](const Reader& r) -> Result<void> {
    // Exact address, then without the detail, then the domain's catch-all: a user who really owns
    // "a+b@x" gets it, and a catch-all never hides a real mailbox.
    for (const std::string* k : {&key, &base, &catch_all}) {
      if (k == &base && base == key) continue;
      if (k != &catch_all) {
        auto u = user_by_address(r, *k);
        if (!u) return err(u);
        if (*u) {
          rcpt.kind = RecipientKind::User;
          rcpt.user = std::move(*u);
          return {};
        }
      }
      auto targets = r.alias(*k);
      if (!targets) return err(targets);
      if (*targets) {
        rcpt.kind = RecipientKind::Alias;
        std::vector<std::string> seen{*k};
        return expand_alias(r, **targets, 1, seen, rcpt.targets);
      }
    }
    return {};
  });
  if (!ok) return err(ok);
  return rcpt;
}

Result<std::vector<std::string>> LmdbDirectory::find_by_certificate(const common::tls::CertQuery& query) {
  // The query arrives typed: its values are the certificate's bytes, compared here as they are,
  // so no filter text is parsed back. Attribute names compare without case, as LDAP's do.
  struct Term {
    enum class Attr { Mail, Uid } attr;
    std::string value;  // lowercased: mail, uid and cn match without case (caseIgnore)
  };
  std::vector<Term> terms;
  const Term* mail = nullptr;
  const Term* uid = nullptr;
  for (const auto& e : query.filter.all_of) {
    const std::string attr = common::ascii::lowered(e.attr);
    if (attr == "mail") {
      terms.push_back({Term::Attr::Mail, common::ascii::lowered(e.value)});
    } else if (attr == "uid" || attr == "cn") {
      terms.push_back({Term::Attr::Uid, common::ascii::lowered(e.value)});
    } else {
      return fail(ErrorKind::Protocol, "unsupported certificate query: attribute " + attr.substr(0, 64));
    }
  }
  for (const auto& t : terms) (t.attr == Term::Attr::Mail ? mail : uid) = &t;
  // The base as (type, lowercased value) pairs; the types are canonical already ("userid" is uid).
  std::vector<std::pair<std::string, std::string>> base;
  for (const auto& rdn : query.base.rdns) {
    if (rdn.size() != 1) return fail(ErrorKind::Protocol, "multi-valued RDN in base DN");
    // A BER value names no user of ours: nothing can be under it.
    if (rdn.front().ber) return std::vector<std::string>{};
    base.emplace_back(rdn.front().type, common::ascii::lowered(rdn.front().value));
  }
  // A user matches when every term holds and the base DN is a suffix of "uid=<uid>,dc=...".
  auto matches = [&](const UserRecord& u) {
    for (const auto& t : terms) {
      const std::string& v = t.value;
      if (t.attr == Term::Attr::Mail) {
        if (address_key(u.mail) != v &&
            std::none_of(u.addresses.begin(), u.addresses.end(), [&](const auto& a) { return address_key(a) == v; }))
          return false;
      } else if (v != u.uid && v != u.canonical) {
        return false;
      }
    }
    std::vector<std::pair<std::string, std::string>> dn{{"uid", u.uid}};
    for (size_t s = 0, e; s <= u.domain.size(); s = e + 1) {
      e = u.domain.find('.', s);
      if (e == std::string::npos) e = u.domain.size();
      dn.emplace_back("dc", u.domain.substr(s, e - s));
    }
    return base.size() <= dn.size() && std::equal(base.rbegin(), base.rend(), dn.rbegin());
  };
  std::vector<std::string> out;
  auto visit = [&](const UserRecord& u) {
    if (matches(u)) out.push_back(u.canonical);
    return out.size() < kMaxCertMatches;
  };
  auto ok = read([&](const Reader& r) -> Result<void> {
    // Use the address index or the uid prefix of the key when the filter allows; scan otherwise.
    if (mail) {
      auto u = user_by_address(r, mail->value);
      if (!u) return err(u);
      if (*u) visit(**u);
      return {};
    }
    if (uid) {
      const std::string& v = uid->value;
      if (v.find('@') != std::string::npos) {
        auto u = r.user(v);
        if (!u) return err(u);
        if (*u) visit(**u);
        return {};
      }
      return r.each_user_from(v + "@", visit);
    }
    return r.each_user(visit);
  });
  if (!ok) return err(ok);
  return out;
}

Result<void> LmdbDirectory::store_password_hash(const UserRecord& user, std::string_view stored,
                                                std::string_view scram) {
  return write([&](Writer& w) -> Result<void> {
    auto u = w.user(user.canonical);
    if (!u) return err(u);
    if (!*u) return fail(ErrorKind::Protocol, "no such user " + user.canonical);
    (*u)->password = std::string(stored);
    (*u)->scram = std::string(scram);
    return w.put_user(std::move(**u));
  });
}

}  // namespace authserv::directory
