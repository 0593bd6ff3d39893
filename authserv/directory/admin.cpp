// admin.cpp: parsing, input reading and execution of directory admin operations (see admin.hpp).
#include "authserv/directory/admin.hpp"

#include <fcntl.h>
#include <sodium.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cstring>
#include <optional>
#include <set>
#include <utility>

#include "authserv/directory/names.hpp"
#include "common/access/parser.hpp"
#include "common/ascii.hpp"
#include "common/config/config.hpp"

namespace authserv::directory {
namespace {

using common::ErrorKind;
using common::fail;
using common::Result;

template <class T>
tl::unexpected<common::Error> err(const Result<T>& r) {
  return tl::unexpected(r.error());
}

constexpr size_t kMaxSieve = 256 * 1024;
constexpr size_t kMaxImportFile = size_t{256} << 20;  // ~2.5 million lines
constexpr size_t kMaxAccessDomains = 256;

using common::ascii::iequals;

// ---------------------------------------------------------------------------------------------
// Reading inputs

// Reads all of `fd` up to `max` bytes into `out` (which may be a SecretString's buffer: reserved up
// front so growing it leaves no copies of a password behind in freed memory).
Result<void> read_fd(int fd, size_t max, std::string& out, std::string_view what) {
  out.clear();
  out.reserve(std::min<size_t>(max + 1, 1 << 20));
  char buf[4096];
  for (;;) {
    const ssize_t n = ::read(fd, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return fail(ErrorKind::Config, "reading " + std::string(what) + ": " + std::strerror(errno));
    if (n == 0) break;
    if (out.size() + static_cast<size_t>(n) > max) {
      sodium_memzero(buf, sizeof buf);
      return fail(ErrorKind::Config, std::string(what) + " is larger than " + std::to_string(max) + " bytes");
    }
    if (out.size() + static_cast<size_t>(n) > out.capacity()) out.reserve(std::min(max + 1, 2 * out.capacity() + n));
    out.append(buf, static_cast<size_t>(n));
  }
  sodium_memzero(buf, sizeof buf);
  return {};
}

Result<void> read_file(const std::string& path, size_t max, std::string& out, std::string_view what) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return fail(ErrorKind::Config, "cannot open " + path + ": " + std::strerror(errno));
  auto ok = read_fd(fd, max, out, what);
  ::close(fd);
  return ok;
}

// The first line of what was read is the password: "echo pw | postern-directory ..." works, and
// a trailing CR from a Windows editor is not part of it.
Result<void> resolve_password(PasswordInput& in, int stdin_fd) {
  if (in.from != PasswordInput::From::Stdin && in.from != PasswordInput::From::File) return {};
  std::string& buf = in.value.buffer();
  // Room for the longest allowed password, its line end, and one byte to detect overflow.
  const size_t max = password::kMaxPassword + 3;
  auto ok = in.from == PasswordInput::From::Stdin ? read_fd(stdin_fd, max, buf, "password")
                                                  : read_file(in.file, max, buf, "password file");
  if (!ok) {
    in.value.wipe();
    return ok;
  }
  const size_t nl = buf.find('\n');
  if (nl != std::string::npos) {
    sodium_memzero(buf.data() + nl, buf.size() - nl);
    buf.resize(nl);
  }
  if (!buf.empty() && buf.back() == '\r') buf.pop_back();
  in.from = PasswordInput::From::Plain;
  if (buf.empty()) return fail(ErrorKind::Config, "empty password");
  if (buf.size() > password::kMaxPassword) return fail(ErrorKind::Config, "password longer than 1024 bytes");
  return {};
}

// ---------------------------------------------------------------------------------------------
// Values

Result<std::string> valid_host(std::string_view h) {
  auto n = normalize_domain(h);
  if (!n) return fail(ErrorKind::Protocol, "bad mail host '" + std::string(h.substr(0, 64)) + "': " + n.error().detail);
  return n;
}

Result<Status> strict_status(std::string_view v) {
  for (Status s : {Status::Active, Status::Inactive, Status::Held, Status::Deleted}) {
    if (iequals(v, status_name(s))) return s;
  }
  return fail(ErrorKind::Protocol, "status must be active, inactive, hold or deleted");
}

Result<void> valid_services(std::string_view v) {
  if (v.empty()) return {};
  auto rules = common::access::parse_compact(v, "allowed_services");
  if (!rules) {
    std::string why;
    for (const auto& d : rules.error()) why += (why.empty() ? "" : "; ") + d.to_string();
    return fail(ErrorKind::Protocol, "bad allowed_services filter: " + why);
  }
  return {};
}

Result<bool> parse_bool(std::string_view v) {
  for (auto t : {"true", "yes", "on", "1"})
    if (iequals(v, t)) return true;
  for (auto f : {"false", "no", "off", "0"})
    if (iequals(v, f)) return false;
  return fail(ErrorKind::Protocol, "expected true or false");
}

Result<uint64_t> parse_count(std::string_view v) {
  uint64_t n = 0;
  const auto [end, ec] = std::from_chars(v.data(), v.data() + v.size(), n);
  if (ec != std::errc{} || end != v.data() + v.size() || v.empty()) return fail(ErrorKind::Protocol, "expected a number");
  return n;
}

// AUTH-16 host list: "none", IPs with 0 octets as wildcards, domain suffixes. Lowercased.
Result<std::vector<std::string>> parse_access_domains(std::string_view v) {
  std::vector<std::string> out;
  size_t i = 0;
  while (i < v.size()) {
    while (i < v.size() && (v[i] == ',' || v[i] == ' ')) ++i;
    size_t e = i;
    while (e < v.size() && v[e] != ',' && v[e] != ' ') ++e;
    if (e == i) break;
    const std::string tok = common::ascii::lowered(v.substr(i, e - i));
    i = e;
    if (tok.size() > kMaxDomain ||
        !std::all_of(tok.begin(), tok.end(), [](char c) {
          return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' || c == '-' || c == ':' || c == '_';
        }))
      return fail(ErrorKind::Protocol, "bad access domain '" + tok.substr(0, 64) + "'");
    if (out.size() == kMaxAccessDomains) return fail(ErrorKind::Protocol, "more than 256 access domains");
    out.push_back(tok);
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// Executing

struct Hashed {
  std::string password, scram;
};

// Argon2id for PLAIN/LOGIN and the SCRAM verifier (which cannot be derived from the argon2 hash).
Result<Hashed> hash_input(const PasswordInput& in, const AdminSettings& s) {
  using From = PasswordInput::From;
  switch (in.from) {
    case From::None: return Hashed{};
    case From::Stdin:
    case From::File: return fail(ErrorKind::Internal, "password input not read (resolve_inputs)");
    case From::Stored: {
      if (auto ok = check_stored_hash(in.value.view()); !ok) return err(ok);
      return Hashed{std::string(in.value.view()), {}};
    }
    case From::Plain: break;
  }
  if (in.value.empty()) return fail(ErrorKind::Protocol, "empty password");
  auto stored = password::hash_argon2id(in.value.view(), s.argon2);
  if (!stored) return err(stored);
  auto scram = password::make_scram_sha256(in.value.view(), s.scram_iterations);
  if (!scram) return err(scram);
  Hashed h{std::move(*stored), password::format_scram(*scram)};
  sodium_memzero(scram->stored_key.data(), scram->stored_key.size());
  sodium_memzero(scram->server_key.data(), scram->server_key.size());
  return h;
}

Result<Login> login_of(std::string_view login, const AdminSettings& s) { return split_login(login, s.default_domain); }

Result<std::vector<std::string>> one(std::string line) { return std::vector<std::string>{std::move(line)}; }

// Read-modify-write of one user in one transaction.
Result<void> update_user(LmdbDirectory& dir, const std::string& canonical,
                         const std::function<Result<void>(LmdbDirectory::Writer&, UserRecord&)>& fn) {
  return dir.write([&](LmdbDirectory::Writer& w) -> Result<void> {
    auto u = w.user(canonical);
    if (!u) return err(u);
    if (!*u) return fail(ErrorKind::Protocol, "no such user " + canonical);
    if (auto ok = fn(w, **u); !ok) return ok;
    return w.put_user(std::move(**u));
  });
}

Result<void> set_user_attribute(LmdbDirectory::Writer& w, UserRecord& u, std::string_view name,
                                std::string_view value) {
  if (name == "status") {
    auto s = strict_status(value);
    if (!s) return err(s);
    u.status = *s;
  } else if (name == "mailhost" || name == "mail_host") {
    auto h = valid_host(value);
    if (!h) return err(h);
    u.mail_host = *h;
  } else if (name == "quota") {
    auto q = parse_quota(value);
    if (!q) return err(q);
    u.quota_bytes = *q;
  } else if (name == "quota_messages") {
    auto q = iequals(value, "none") ? Result<uint64_t>(0) : parse_count(value);
    if (!q) return err(q);
    u.quota_messages = *q;
  } else if (name == "allowed_services") {
    if (auto ok = valid_services(value); !ok) return ok;
    u.allowed_services = std::string(value);
  } else if (name == "sieve") {
    if (value.size() > kMaxSieve) return fail(ErrorKind::Protocol, "sieve script larger than 256 KiB");
    u.sieve = std::string(value);
  } else if (name == "store_admin") {
    auto b = parse_bool(value);
    if (!b) return err(b);
    u.store_admin = *b;
  } else if (name == "add_address") {
    auto a = normalize_address(value);
    if (!a) return err(a);
    const std::string dom = a->substr(a->rfind('@') + 1);
    auto d = w.domain(dom);
    if (!d) return err(d);
    // Mail for a domain we do not host never reaches us, so such an address is a typo.
    if (!*d) return fail(ErrorKind::Protocol, "domain " + dom + " is not a local domain");
    const std::string key = address_key(*a);
    if (std::none_of(u.addresses.begin(), u.addresses.end(), [&](const auto& x) { return address_key(x) == key; }))
      u.addresses.push_back(*a);
  } else if (name == "remove_address") {
    const std::string key = address_key(value);
    if (key == address_key(u.mail)) return fail(ErrorKind::Protocol, "cannot remove the primary address");
    const auto it = std::find_if(u.addresses.begin(), u.addresses.end(), [&](const auto& x) { return address_key(x) == key; });
    if (it == u.addresses.end()) return fail(ErrorKind::Protocol, "user has no address " + std::string(value.substr(0, 64)));
    u.addresses.erase(it);
  } else if (name == "access_domains") {
    auto l = parse_access_domains(value);
    if (!l) return err(l);
    u.access_domains = std::move(*l);
  } else {
    return fail(ErrorKind::Protocol, "unknown attribute '" + std::string(name.substr(0, 64)) + "'");
  }
  return {};
}

std::string join(const std::vector<std::string>& v, std::string_view sep) {
  std::string out;
  for (const auto& s : v) out += (out.empty() ? "" : std::string(sep)) + s;
  return out;
}

std::string scheme_of(std::string_view stored) {
  const size_t close = stored.find('}');
  return stored.starts_with('{') && close != std::string_view::npos && close < 32 ? std::string(stored.substr(0, close + 1))
                                                                                  : "(unknown scheme)";
}

std::vector<std::string> show_lines(const UserRecord& u) {
  std::vector<std::string> out{
      "user: " + u.canonical,
      "status: " + std::string(status_name(u.status)),
      "mail: " + u.mail,
      "addresses: " + join(u.addresses, ", "),
      "mailhost: " + u.mail_host,
      "quota: " + (u.quota_bytes ? std::to_string(u.quota_bytes) : std::string("none")),
      "quota_messages: " + (u.quota_messages ? std::to_string(u.quota_messages) : std::string("none")),
      "allowed_services: " + u.allowed_services,
      "access_domains: " + join(u.access_domains, ", "),
      "store_admin: " + std::string(u.store_admin ? "true" : "false"),
      "sieve: " + (u.sieve.empty() ? std::string("none") : std::to_string(u.sieve.size()) + " bytes"),
      // Which scheme, never the value: a hash is an offline-cracking target.
      "password: " + (u.password.empty() ? std::string("none") : scheme_of(u.password)),
      "scram: " + std::string(u.scram.empty() ? "none" : "set"),
  };
  return out;
}

struct ImportEntry {
  Login login;
  std::string stored, mail_host;
};

Result<std::vector<std::string>> run_import(LmdbDirectory& dir, const admin::Import& op, const AdminSettings& s) {
  // Everything is checked before the first write, so a typo on line 90,000 leaves the directory
  // as it was.
  std::vector<ImportEntry> entries;
  entries.reserve(op.lines.size());
  std::set<std::string> domains;
  for (size_t i = 0; i < op.lines.size(); ++i) {
    std::string_view line = op.lines[i];
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    if (line.empty() || line.front() == '#') continue;
    auto where = [&](const std::string& why) {
      return fail(ErrorKind::Protocol, "line " + std::to_string(i + 1) + ": " + why);
    };
    std::vector<std::string_view> f;
    for (size_t p = 0;;) {
      const size_t t = line.find('\t', p);
      f.push_back(line.substr(p, t == std::string_view::npos ? std::string_view::npos : t - p));
      if (t == std::string_view::npos) break;
      p = t + 1;
    }
    if (f.size() < 2 || f.size() > 3) return where("expected login<TAB>stored-hash[<TAB>mailhost]");
    auto login = login_of(f[0], s);
    if (!login) return where(login.error().detail);
    if (auto ok = check_stored_hash(f[1]); !ok) return where(ok.error().detail);
    ImportEntry e{std::move(*login), std::string(f[1]), {}};
    if (f.size() == 3 && !f[2].empty()) {
      auto h = valid_host(f[2]);
      if (!h) return where(h.error().detail);
      e.mail_host = std::move(*h);
    }
    domains.insert(e.login.domain);
    entries.push_back(std::move(e));
  }
  auto known = dir.read([&](const LmdbDirectory::Reader& r) -> Result<void> {
    for (const auto& d : domains) {
      auto rec = r.domain(d);
      if (!rec) return err(rec);
      if (!*rec) return fail(ErrorKind::Protocol, "unknown domain " + d + " (add it first)");
    }
    return {};
  });
  if (!known) return err(known);
  size_t created = 0, updated = 0;
  const size_t batch = std::max<size_t>(s.import_batch, 1);
  for (size_t start = 0; start < entries.size(); start += batch) {
    const size_t end = std::min(entries.size(), start + batch);
    size_t c = 0, u = 0;
    auto ok = dir.write([&](LmdbDirectory::Writer& w) -> Result<void> {
      for (size_t i = start; i < end; ++i) {
        const auto& e = entries[i];
        const std::string canonical = e.login.canonical();
        auto old = w.user(canonical);
        if (!old) return err(old);
        UserRecord rec;
        if (*old) {
          rec = std::move(**old);
          ++u;
        } else {
          rec.canonical = canonical;
          rec.uid = e.login.uid;
          rec.domain = e.login.domain;
          rec.mail = canonical;
          ++c;
        }
        rec.password = e.stored;
        rec.scram.clear();  // the old verifier belongs to the old password
        if (!e.mail_host.empty()) rec.mail_host = e.mail_host;
        if (auto p = w.put_user(std::move(rec)); !p) return fail(p.error().kind, canonical + ": " + p.error().detail);
      }
      return {};
    });
    if (!ok) {
      return fail(ok.error().kind, ok.error().detail + " (" + std::to_string(created + updated) +
                                       " users imported before this batch)");
    }
    created += c;
    updated += u;
  }
  return one("imported " + std::to_string(created + updated) + " users (" + std::to_string(created) + " new, " +
             std::to_string(updated) + " updated)");
}

Result<std::vector<std::string>> run_list(LmdbDirectory& dir, const admin::List& op) {
  std::string only;
  if (!op.domain.empty()) {
    auto d = normalize_domain(op.domain);
    if (!d) return err(d);
    only = *d;
  }
  std::vector<std::string> out;
  auto in_scope = [&](std::string_view domain) { return only.empty() || domain == only; };
  auto ok = dir.read([&](const LmdbDirectory::Reader& r) -> Result<void> {
    if (auto e = r.each_domain([&](const DomainRecord& d) {
          if (in_scope(d.name)) out.push_back("domain " + d.name + " " + std::string(status_name(d.status)));
          return true;
        });
        !e)
      return e;
    if (auto e = r.each_user([&](const UserRecord& u) {
          if (in_scope(u.domain))
            out.push_back("user " + u.canonical + " " + std::string(status_name(u.status)) +
                          (u.mail_host.empty() ? "" : " " + u.mail_host));
          return true;
        });
        !e)
      return e;
    return r.each_alias([&](std::string_view a, const std::vector<std::string>& t) {
      if (in_scope(a.substr(a.rfind('@') + 1))) out.push_back("alias " + std::string(a) + " " + join(t, ","));
      return true;
    });
  });
  if (!ok) return err(ok);
  return out;
}

Result<std::string> alias_address(LmdbDirectory& dir, std::string_view address) {
  std::string a;
  if (address.starts_with('@')) {
    auto d = normalize_domain(address.substr(1));
    if (!d) return err(d);
    a = "@" + *d;
  } else {
    auto n = normalize_address(address);
    if (!n) return err(n);
    a = std::move(*n);
  }
  const std::string dom = a.substr(a.rfind('@') + 1);
  auto d = dir.find_domain(dom);
  if (!d) return err(d);
  if (!*d) return fail(ErrorKind::Protocol, "domain " + dom + " is not a local domain");
  return a;
}

}  // namespace

// ---------------------------------------------------------------------------------------------

SecretString& SecretString::operator=(const SecretString& o) {
  if (this != &o) {
    wipe();
    s_ = o.s_;
  }
  return *this;
}

void SecretString::wipe() {
  sodium_memzero(s_.data(), s_.size());
  s_.clear();
}

Result<uint64_t> parse_quota(std::string_view text) {
  if (iequals(text, "none")) return 0;
  auto bytes = common::config::parse_size(text);
  if (!bytes) return fail(ErrorKind::Protocol, "expected a size like 500M, 2G or a number of bytes");
  return *bytes;
}

Result<void> check_stored_hash(std::string_view stored) {
  if (stored.size() > password::kMaxStored) return fail(ErrorKind::Protocol, "stored hash longer than 1024 bytes");
  const size_t close = stored.find('}');
  if (!stored.starts_with('{') || close == std::string_view::npos)
    return fail(ErrorKind::Protocol, "stored hash without a {SCHEME} prefix (plain text is refused)");
  const std::string scheme = common::ascii::lowered(stored.substr(1, close - 1));
  const std::string_view value = stored.substr(close + 1);
  auto malformed = [&] { return fail(ErrorKind::Protocol, "malformed {" + scheme + "} value"); };
  if (scheme == "argon2") {
    if (sodium_init() < 0) return fail(ErrorKind::Internal, "sodium_init failed");
    const bool id = value.starts_with("$argon2id$"), i = value.starts_with("$argon2i$");
    if (!id && !i) return fail(ErrorKind::Protocol, "{ARGON2} must be argon2id or argon2i");
    const std::string str(value);
    // libsodium decodes the whole PHC string here (-1 = unparsable) without hashing.
    const int rc = id ? crypto_pwhash_argon2id_str_needs_rehash(str.c_str(), 1, crypto_pwhash_MEMLIMIT_MIN)
                      : crypto_pwhash_argon2i_str_needs_rehash(str.c_str(), 1, crypto_pwhash_MEMLIMIT_MIN);
    if (rc == -1) return malformed();
    // Same ceilings as password::verify, which would refuse such a hash at every login anyway.
    const size_t m = value.find("$m="), t = value.find(",t=");
    uint64_t mem = 0, ops = 0;
    if (m == std::string_view::npos || t == std::string_view::npos) return malformed();
    std::from_chars(value.data() + m + 3, value.data() + value.size(), mem);
    std::from_chars(value.data() + t + 3, value.data() + value.size(), ops);
    if (mem > (uint64_t{1} << 20) || ops > 32) return fail(ErrorKind::Protocol, "{ARGON2} cost above 1 GiB / t=32");
    return {};
  }
  if (scheme == "ssha" || scheme == "ssha256" || scheme == "ssha512") {
    // One cheap salted hash of "" tells a well-formed value from a damaged one.
    const auto v = password::verify("", stored);
    if (v == password::Verdict::Malformed || v == password::Verdict::Unsupported) return malformed();
    return {};
  }
  if (scheme == "crypt") {
    // Only the modern methods password::verify accepts; running crypt(3) here would cost a
    // bcrypt/yescrypt round per imported user.
    const bool modern = value.starts_with("$6$") || value.starts_with("$5$") || value.starts_with("$y$") ||
                        value.starts_with("$gy$") || value.starts_with("$2b$") || value.starts_with("$2y$") ||
                        value.starts_with("$2a$");
    if (!modern) return fail(ErrorKind::Protocol, "{CRYPT} must be $6$, $5$, $y$, $gy$ or $2b$ (weaker ones are refused)");
    if (value.size() >= 512 || !std::all_of(value.begin(), value.end(), [](char c) {
          return common::ascii::is_alnum(c) || c == '$' || c == '.' || c == '/' || c == '=' || c == ',';
        }))
      return malformed();
    return {};
  }
  return fail(ErrorKind::Protocol, "scheme {" + scheme + "} refused (plain text, unsalted or unknown)");
}

std::string_view admin_usage() {
  return "commands:\n"
         "  domain add DOMAIN\n"
         "  domain set DOMAIN (status|allowed_services) VALUE\n"
         "  user add LOGIN [--mail-host HOST] [--password-stdin | --password-file FILE | --hash STORED]\n"
         "  user del LOGIN\n"
         "  user passwd LOGIN (--password-stdin | --password-file FILE | --hash STORED)\n"
         "  user set LOGIN NAME VALUE   NAME: status mailhost quota quota_messages allowed_services\n"
         "                              sieve (VALUE is a file) store_admin add_address remove_address\n"
         "                              access_domains\n"
         "  user disable LOGIN\n"
         "  user show LOGIN\n"
         "  alias add ADDRESS TARGET...   (ADDRESS \"@domain\" is the domain's catch-all)\n"
         "  alias del ADDRESS\n"
         "  list [DOMAIN]\n"
         "  import FILE   lines login<TAB>stored-hash[<TAB>mailhost]; FILE \"-\" is stdin\n"
         "passwords are never taken on the command line (other users see it in ps)\n";
}

Result<AdminOp> parse_admin_args(std::span<const std::string_view> args) {
  auto usage = [](std::string why) { return fail(ErrorKind::Config, std::move(why)); };
  for (auto a : args) {
    if (a == "--password" || a.starts_with("--password=") || a == "-p")
      return usage("passwords are never taken on the command line (ps shows them): use --password-stdin or --password-file");
  }
  auto word = [&](size_t i) { return i < args.size() ? args[i] : std::string_view{}; };
  const std::string_view noun = word(0), verb = word(1);
  auto exactly = [&](size_t n) -> Result<void> {
    if (args.size() != n) return usage("wrong number of arguments for '" + std::string(noun) + " " + std::string(verb) + "'");
    return {};
  };
  // Reads "--password-stdin", "--password-file F", "--hash H", "--mail-host H" from args[from..].
  auto options = [&](size_t from, PasswordInput& pw, std::string* mail_host) -> Result<void> {
    for (size_t i = from; i < args.size(); ++i) {
      std::string_view a = args[i], val;
      const size_t eq = a.find('=');
      const bool inline_val = a.starts_with("--") && eq != std::string_view::npos;
      if (inline_val) {
        val = a.substr(eq + 1);
        a = a.substr(0, eq);
      }
      auto value = [&]() -> Result<std::string_view> {
        if (inline_val) return val;
        if (i + 1 >= args.size()) return usage(std::string(a) + " needs a value");
        return args[++i];
      };
      const bool had = pw.from != PasswordInput::From::None;
      if (a == "--password-stdin" && !inline_val) {
        if (had) return usage("more than one password source");
        pw.from = PasswordInput::From::Stdin;
      } else if (a == "--password-file" || a == "--hash") {
        if (had) return usage("more than one password source");
        auto v = value();
        if (!v) return err(v);
        if (a == "--hash") {
          pw.from = PasswordInput::From::Stored;
          pw.value = SecretString(std::string(*v));
        } else {
          pw.from = PasswordInput::From::File;
          pw.file = std::string(*v);
        }
      } else if (a == "--mail-host" && mail_host) {
        auto v = value();
        if (!v) return err(v);
        *mail_host = std::string(*v);
      } else {
        // A stray word here is most likely a password typed as an argument: say so.
        return usage("unexpected argument '" + std::string(a.starts_with("--") ? a : "...") +
                     "' (passwords go through --password-stdin or --password-file)");
      }
    }
    return {};
  };

  if (noun == "domain" && verb == "add") {
    if (auto ok = exactly(3); !ok) return err(ok);
    return admin::AddDomain{std::string(word(2))};
  }
  if (noun == "domain" && verb == "set") {
    if (auto ok = exactly(5); !ok) return err(ok);
    return admin::SetDomainAttribute{std::string(word(2)), std::string(word(3)), std::string(word(4))};
  }
  if (noun == "user") {
    if (args.size() < 3) return usage("'user " + std::string(verb) + "' needs a login");
    const std::string login(word(2));
    if (verb == "add") {
      admin::AddUser op{login, {}, {}};
      if (auto ok = options(3, op.password, &op.mail_host); !ok) return err(ok);
      return op;
    }
    if (verb == "passwd") {
      admin::SetPassword op{login, {}};
      if (auto ok = options(3, op.password, nullptr); !ok) return err(ok);
      if (op.password.from == PasswordInput::From::None) return usage("user passwd needs --password-stdin or --password-file");
      return op;
    }
    if (verb == "set") {
      if (auto ok = exactly(5); !ok) return err(ok);
      admin::SetAttribute op{login, std::string(word(3)), std::string(word(4)), {}};
      if (op.name == "sieve") op.value_file = std::exchange(op.value, {});
      return op;
    }
    if (verb == "del" || verb == "disable" || verb == "show") {
      if (auto ok = exactly(3); !ok) return err(ok);
      if (verb == "del") return admin::DeleteUser{login};
      if (verb == "disable") return admin::Disable{login};
      return admin::ShowUser{login};
    }
  }
  if (noun == "alias" && verb == "add") {
    if (args.size() < 4) return usage("alias add needs an address and at least one target");
    admin::AddAlias op{std::string(word(2)), {}};
    for (size_t i = 3; i < args.size(); ++i) op.targets.emplace_back(args[i]);
    return op;
  }
  if (noun == "alias" && verb == "del") {
    if (auto ok = exactly(3); !ok) return err(ok);
    return admin::DeleteAlias{std::string(word(2))};
  }
  if (noun == "list") {
    if (args.size() > 2) return usage("list takes at most one domain");
    return admin::List{std::string(verb)};
  }
  if (noun == "import") {
    if (args.size() != 2) return usage("import needs exactly one file");
    return admin::Import{std::string(verb), {}};
  }
  if (noun.empty()) return usage("no command");
  return usage("unknown command '" + std::string(noun.substr(0, 32)) +
               (verb.empty() ? "" : " " + std::string(verb.substr(0, 32))) + "'");
}

Result<void> resolve_inputs(AdminOp& op, int stdin_fd) {
  if (auto* a = std::get_if<admin::AddUser>(&op)) return resolve_password(a->password, stdin_fd);
  if (auto* p = std::get_if<admin::SetPassword>(&op)) return resolve_password(p->password, stdin_fd);
  if (auto* s = std::get_if<admin::SetAttribute>(&op); s && !s->value_file.empty())
    return read_file(s->value_file, kMaxSieve, s->value, "sieve script");
  if (auto* im = std::get_if<admin::Import>(&op); im && !im->file.empty()) {
    std::string text;
    auto ok = im->file == "-" ? read_fd(stdin_fd, kMaxImportFile, text, "import input")
                              : read_file(im->file, kMaxImportFile, text, "import file");
    if (!ok) return ok;
    im->lines.clear();
    for (size_t p = 0; p < text.size();) {
      size_t nl = text.find('\n', p);
      if (nl == std::string::npos) nl = text.size();
      im->lines.emplace_back(text, p, nl - p);
      p = nl + 1;
    }
  }
  return {};
}

Result<std::vector<std::string>> apply(LmdbDirectory& dir, const AdminOp& op, const AdminSettings& s) {
  using Out = Result<std::vector<std::string>>;
  return std::visit(
      [&](const auto& o) -> Out {
        using T = std::decay_t<decltype(o)>;
        if constexpr (std::is_same_v<T, admin::AddDomain>) {
          auto d = normalize_domain(o.domain);
          if (!d) return err(d);
          auto ok = dir.write([&](LmdbDirectory::Writer& w) -> Result<void> {
            auto old = w.domain(*d);
            if (!old) return err(old);
            if (*old) return fail(ErrorKind::Protocol, "domain " + *d + " exists");
            return w.put_domain(DomainRecord{*d});
          });
          if (!ok) return err(ok);
          return one("added domain " + *d);
        } else if constexpr (std::is_same_v<T, admin::SetDomainAttribute>) {
          auto d = normalize_domain(o.domain);
          if (!d) return err(d);
          auto ok = dir.write([&](LmdbDirectory::Writer& w) -> Result<void> {
            auto rec = w.domain(*d);
            if (!rec) return err(rec);
            if (!*rec) return fail(ErrorKind::Protocol, "no such domain " + *d);
            if (o.name == "status") {
              auto st = strict_status(o.value);
              if (!st) return err(st);
              (*rec)->status = *st;
            } else if (o.name == "allowed_services") {
              if (auto v = valid_services(o.value); !v) return v;
              (*rec)->allowed_services = o.value;
            } else {
              return fail(ErrorKind::Protocol, "unknown domain attribute '" + o.name.substr(0, 64) + "'");
            }
            return w.put_domain(**rec);
          });
          if (!ok) return err(ok);
          return one(*d + ": " + o.name + " set");
        } else if constexpr (std::is_same_v<T, admin::AddUser>) {
          auto login = login_of(o.login, s);
          if (!login) return err(login);
          std::string host;
          if (!o.mail_host.empty()) {
            auto h = valid_host(o.mail_host);
            if (!h) return err(h);
            host = std::move(*h);
          }
          auto hashed = hash_input(o.password, s);
          if (!hashed) return err(hashed);
          UserRecord u;
          u.uid = login->uid;
          u.domain = login->domain;
          u.canonical = u.mail = login->canonical();
          u.mail_host = std::move(host);
          u.password = std::move(hashed->password);
          u.scram = std::move(hashed->scram);
          auto ok = dir.write([&](LmdbDirectory::Writer& w) -> Result<void> {
            auto old = w.user(u.canonical);
            if (!old) return err(old);
            if (*old) return fail(ErrorKind::Protocol, "user " + u.canonical + " exists");
            return w.put_user(u);
          });
          if (!ok) return err(ok);
          return one("added user " + u.canonical);
        } else if constexpr (std::is_same_v<T, admin::SetPassword>) {
          auto login = login_of(o.login, s);
          if (!login) return err(login);
          if (o.password.from == PasswordInput::From::None) return fail(ErrorKind::Protocol, "no password given");
          auto hashed = hash_input(o.password, s);
          if (!hashed) return err(hashed);
          auto ok = update_user(dir, login->canonical(), [&](LmdbDirectory::Writer&, UserRecord& u) -> Result<void> {
            u.password = hashed->password;
            u.scram = hashed->scram;  // empty for a pre-hashed value: the old verifier must go
            return {};
          });
          if (!ok) return err(ok);
          return one("password changed for " + login->canonical());
        } else if constexpr (std::is_same_v<T, admin::SetAttribute>) {
          auto login = login_of(o.login, s);
          if (!login) return err(login);
          auto ok = update_user(dir, login->canonical(), [&](LmdbDirectory::Writer& w, UserRecord& u) {
            return set_user_attribute(w, u, o.name, o.value);
          });
          if (!ok) return err(ok);
          return one(login->canonical() + ": " + o.name + " set");
        } else if constexpr (std::is_same_v<T, admin::Disable>) {
          auto login = login_of(o.login, s);
          if (!login) return err(login);
          auto ok = update_user(dir, login->canonical(), [](LmdbDirectory::Writer&, UserRecord& u) -> Result<void> {
            u.status = Status::Inactive;
            return {};
          });
          if (!ok) return err(ok);
          return one(login->canonical() + ": status inactive");
        } else if constexpr (std::is_same_v<T, admin::DeleteUser>) {
          auto login = login_of(o.login, s);
          if (!login) return err(login);
          bool gone = false;
          auto ok = dir.write([&](LmdbDirectory::Writer& w) -> Result<void> {
            auto d = w.delete_user(login->canonical());
            if (!d) return err(d);
            gone = *d;
            return {};
          });
          if (!ok) return err(ok);
          if (!gone) return fail(ErrorKind::Protocol, "no such user " + login->canonical());
          return one("deleted user " + login->canonical());
        } else if constexpr (std::is_same_v<T, admin::ShowUser>) {
          auto login = login_of(o.login, s);
          if (!login) return err(login);
          std::optional<UserRecord> u;
          auto ok = dir.read([&](const LmdbDirectory::Reader& r) -> Result<void> {
            auto rec = r.user(login->canonical());
            if (!rec) return err(rec);
            u = std::move(*rec);
            return {};
          });
          if (!ok) return err(ok);
          if (!u) return fail(ErrorKind::Protocol, "no such user " + login->canonical());
          return show_lines(*u);
        } else if constexpr (std::is_same_v<T, admin::AddAlias>) {
          auto a = alias_address(dir, o.address);
          if (!a) return err(a);
          if (o.targets.empty()) return fail(ErrorKind::Protocol, "alias without targets");
          std::vector<std::string> targets;
          for (const auto& t : o.targets) {
            auto n = normalize_address(t);
            if (!n) return fail(ErrorKind::Protocol, "target '" + t.substr(0, 64) + "': " + n.error().detail);
            targets.push_back(std::move(*n));
          }
          size_t total = 0;
          auto ok = dir.write([&](LmdbDirectory::Writer& w) -> Result<void> {
            auto old = w.alias(*a);
            if (!old) return err(old);
            std::vector<std::string> merged = old->value_or(std::vector<std::string>{});
            for (auto& t : targets) {
              if (std::find(merged.begin(), merged.end(), t) == merged.end()) merged.push_back(t);
            }
            if (merged.size() > kMaxAliasTargets) return fail(ErrorKind::Protocol, "more than 1000 alias targets");
            total = merged.size();
            return w.put_alias(*a, merged);
          });
          if (!ok) return err(ok);
          return one("alias " + *a + ": " + std::to_string(total) + " targets");
        } else if constexpr (std::is_same_v<T, admin::DeleteAlias>) {
          const std::string a = address_key(o.address);
          bool gone = false;
          auto ok = dir.write([&](LmdbDirectory::Writer& w) -> Result<void> {
            auto d = w.delete_alias(a);
            if (!d) return err(d);
            gone = *d;
            return {};
          });
          if (!ok) return err(ok);
          if (!gone) return fail(ErrorKind::Protocol, "no such alias " + a.substr(0, 64));
          return one("deleted alias " + a);
        } else if constexpr (std::is_same_v<T, admin::List>) {
          return run_list(dir, o);
        } else {
          static_assert(std::is_same_v<T, admin::Import>);
          return run_import(dir, o, s);
        }
      },
      op);
}

}  // namespace authserv::directory
