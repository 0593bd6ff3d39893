// core.cpp: SASL exchanges against the directory, login policy, tokens and lookups for authserv.
// Every attempt is logged once with its outcome; clients only ever see the generic failure kinds.
#include "authserv/service/core.hpp"

#include <sodium.h>

#include <mutex>

#include "authserv/directory/names.hpp"
#include "authserv/sasl/sasl.hpp"
#include "common/log/log.hpp"
#include "common/metrics/metrics.hpp"
#include "common/ascii.hpp"
#include "common/net/address.hpp"

namespace authserv::service {
namespace {

using common::ErrorKind;
using directory::Status;
using directory::UserRecord;

int64_t now_unix() {
  return std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch()).count();
}

common::metrics::Family<common::metrics::Counter>& auth_counter() {
  static auto& f = common::metrics::default_registry().counter_family(
      "authserv_authentications_total", "SASL exchanges by mechanism and result", {"mechanism", "result"});
  return f;
}

// Access tokens signed at login (renewals not counted): a check-only exchange signs none.
common::metrics::Counter& tokens_counter() {
  static auto& c = common::metrics::default_registry().counter(
      "authserv_login_tokens_signed_total", "access tokens signed for logins (not renewals)");
  return c;
}

Reply failure(FailureKind kind, std::string reason) {
  Reply r;
  r.kind = Reply::Kind::Failure;
  r.failure = kind;
  r.reason = std::move(reason);
  return r;
}

// The client's name as policy sees it. The front end sends the forward-confirmed name when its own
// filters looked it up. Otherwise authserv looks it up itself, once, when a rule needs it
// (`looked`); without a resolver the name counts as absent, which name-based allows fail closed on.
common::access::HostName client_name(const Facts& f, const std::optional<common::dns::ReverseResult>& looked,
                                     bool can_look) {
  using common::access::HostName;
  using Kind = common::dns::ReverseResult::Kind;
  if (!f.client_name.empty()) return HostName::verified(f.client_name);
  if (!looked) return can_look ? HostName::not_looked() : HostName::none();
  switch (looked->kind) {
    case Kind::Verified: return HostName::verified(looked->name);
    case Kind::Mismatch: return HostName::mismatch(looked->name);
    case Kind::NoName: return HostName::none();
    case Kind::TempFail: break;
  }
  return HostName::temp_fail();
}

// The version the front end's TLS layer negotiated with the client, in its one spelling
// (common::authclient::kTls12, kTls13). Any other spelling counts as no TLS, failing closed, and
// is logged: it means a front end that does not build its facts with connection_facts().
uint16_t tls_version(const Facts& f) {
  const uint16_t v = common::authclient::tls_version_number(f.tls_version);
  if (v == 0 && !f.tls_version.empty()) {
    common::log::warning("auth").session(f.session_id).phase("facts").event("unknown_tls_version")
        .kv("front_end", f.front_end).client_text("tls_version", f.tls_version).kv("effect", "treated as no TLS");
  }
  return v;
}

static_assert(common::authclient::tls_version_number(common::authclient::kTls13) == policy::kTls13);
static_assert(common::authclient::tls_version_number(common::authclient::kTls12) == policy::kTls12);

// Views into `f` and `looked`, which must outlive the result.
policy::LoginFacts login_facts(const Facts& f, const std::optional<common::dns::ReverseResult>& looked = std::nullopt,
                               bool can_look = false) {
  policy::LoginFacts lf;
  lf.service = f.service;
  if (auto a = common::net::IpAddress::parse(f.client_address)) lf.client_address = *a;
  if (auto a = common::net::IpAddress::parse(f.server_address)) lf.server_address = *a;
  lf.client_name = client_name(f, looked, can_look && lf.client_address.has_value());
  lf.server_name = common::access::HostName::none();
  lf.under_tls = common::authclient::tls_version_number(f.tls_version) != 0;
  return lf;
}

policy::ConnectionState connection_state(const Facts& f) {
  policy::ConnectionState s;
  s.tls_version = tls_version(f);
  s.under_tls = s.tls_version != 0;
  s.channel_binding = !f.channel_binding.empty() && s.tls_version == policy::kTls13;
  s.verified_client_certificate = !f.client_cert_subject.empty();
  return s;
}

// certmap's searches answered by the backend; runs on the caller's (worker) thread.
class BackendCertDirectory final : public common::tls::CertDirectory {
 public:
  explicit BackendCertDirectory(directory::Backend& backend) : backend_(backend) {}
  void search(const common::tls::CertQuery& q, std::function<void(common::Result<std::vector<Entry>>)> done) override {
    std::vector<Entry> entries;
    if (q.verify_cert) {
      auto holders = backend_.find_certificate_holders(q);
      if (!holders) return done(tl::unexpected(holders.error()));
      for (auto& h : *holders) entries.push_back(Entry{"", std::move(h.canonical), std::move(h.certificates_der)});
      return done(std::move(entries));
    }
    auto names = backend_.find_by_certificate(q);
    if (!names) return done(tl::unexpected(names.error()));
    for (auto& n : *names) entries.push_back(Entry{"", std::move(n), {}});
    done(std::move(entries));
  }

 private:
  directory::Backend& backend_;
};

}  // namespace

std::shared_ptr<const common::tls::CertMap> default_certmap() {
  static const auto map = [] {
    auto parsed = common::tls::parse_certmap("certmap default default\ndefault:DNComps\ndefault:FilterComps e=mail\n", "built-in");
    return std::make_shared<const common::tls::CertMap>(std::move(*parsed));
  }();
  return map;
}

std::string describe(const Facts& f) {
  return f.client_address.empty() ? std::string("-") : f.client_address;
}

// The state of one Authenticate call. Steps are strictly sequential (the front end sends the next
// response only after our reply, and the reactor reads only after writing it), so a worker thread
// and a gRPC thread never touch this at the same time; the queue hand-offs order their accesses.
class ExchangeImpl final : public Exchange {
 public:
  ExchangeImpl(Core& core, Facts facts, bool check_only)
      : core_(core), facts_(std::move(facts)), domain_(core.default_domain(facts_)), check_only_(check_only) {}

  void start(std::string mechanism, std::optional<std::string> initial, Deliver deliver) override {
    mechanism_name_ = mechanism.substr(0, 40);
    if (facts_.service.empty()) return finish(deliver, failure(FailureKind::Protocol, "no service in request"));
    // Every login ends in a token bound to the calling front end; with no name for it (plaintext
    // gRPC, a certificate without a CN) the token would open the mailbox for any front end.
    if (facts_.front_end.empty() && !core_.settings_.allow_unbound_tokens) {
      reason_ = "unbound_front_end";
      return finish(deliver, failure(FailureKind::Temporary, "the front end has no certificate name to bind a token to"));
    }
    auto state = connection_state(facts_);
    if (auto check = policy::mechanism_allowed(mechanism, core_.mechanism_policy(), state); !check.allowed) {
      return finish(deliver, failure(FailureKind::Mechanism, std::string(check.reason)));
    }
    sasl::MechanismContext ctx;
    if (state.channel_binding) ctx.channel_binding = facts_.channel_binding;
    ctx.fake_salt_key = core_.settings_.fake_salt_key;
    ctx.fake_iterations = core_.settings_.scram_iterations;
    if (common::ascii::iequals(mechanism, "EXTERNAL") && state.verified_client_certificate) {
      return map_certificate_then_start(std::move(ctx), std::move(initial), std::move(deliver));
    }
    mechanism_ = sasl::make_mechanism(mechanism, std::move(ctx));
    if (!mechanism_) return finish(deliver, failure(FailureKind::Mechanism, "unknown mechanism"));
    std::optional<std::string_view> first;
    if (initial) first = *initial;
    handle(mechanism_->start(first), std::move(deliver));
  }

  // EXTERNAL: certmap turns the verified certificate into a user before the mechanism starts.
  void map_certificate_then_start(sasl::MechanismContext ctx, std::optional<std::string> initial, Deliver deliver) {
    auto self = std::static_pointer_cast<ExchangeImpl>(shared_from_this());
    auto job = std::make_shared<std::pair<sasl::MechanismContext, std::optional<std::string>>>(std::move(ctx),
                                                                                               std::move(initial));
    bool queued = core_.run_directory([self, job, deliver] {
      BackendCertDirectory directory(self->core_.backend());
      common::tls::CertFacts cert{self->facts_.client_cert_issuer, self->facts_.client_cert_subject,
                                  self->facts_.client_cert_der};
      common::Result<std::string> mapped = common::fail(ErrorKind::Internal, "certmap gave no answer");
      auto certmap = self->core_.certmap();  // as of now: a SIGHUP may replace it meanwhile
      common::tls::map_certificate(*certmap, cert, directory,
                                   [&mapped](common::Result<std::string> r) { mapped = std::move(r); });
      if (!mapped) {
        self->reason_ = "certmap";
        auto kind = mapped.error().kind == ErrorKind::TempFail ? FailureKind::Temporary : FailureKind::Credentials;
        return self->finish(deliver, failure(kind, mapped.error().detail));
      }
      job->first.tls_identity = std::move(*mapped);
      self->mechanism_ = sasl::make_mechanism("EXTERNAL", std::move(job->first));
      std::optional<std::string_view> first;
      if (job->second) first = *job->second;
      self->handle(self->mechanism_->start(first), deliver);
    });
    if (!queued) finish(deliver, failure(FailureKind::Temporary, "directory queue full"));
  }

  void respond(std::string response, Deliver deliver) override {
    if (!mechanism_ || done_) return finish(deliver, failure(FailureKind::Protocol, "response outside an exchange"));
    handle(mechanism_->step(response), std::move(deliver));
  }

  void abort(Deliver deliver) override { finish(deliver, failure(FailureKind::Aborted, "client aborted")); }

 private:
  void handle(sasl::Step step, Deliver deliver) {
    using K = sasl::Step::Kind;
    switch (step.kind) {
      case K::Challenge: {
        Reply r;
        r.kind = Reply::Kind::Challenge;
        r.data = std::move(step.data);
        deliver(std::move(r));
        return;
      }
      case K::NeedPasswordCheck: return check_password(std::move(step), std::move(deliver));
      case K::NeedScramVerifier: return fetch_verifier(std::move(step), std::move(deliver));
      case K::NeedTokenCheck: return check_bearer_token(std::move(step), std::move(deliver));
      case K::Success: return succeed(std::move(step), std::move(deliver));
      case K::Failure:
        return finish(deliver, failure(credential_failed_ ? FailureKind::Credentials : FailureKind::Protocol,
                                       std::move(step.data)));
    }
  }

  // OAUTHBEARER / XOAUTH2: the token's signature and claims; the user it names must be the one the
  // client asked for. Cheap (one signature check), so it runs where the step arrived.
  void check_bearer_token(sasl::Step step, Deliver deliver) {
    const auto issuers = core_.token_issuers();
    bool ok = false;
    if (!issuers || issuers->empty()) {
      reason_ = "no_token_issuers";
    } else if (auto v = issuers->validate(step.password, now_unix()); !v) {
      reason_ = "token_" + v.error().detail;
    } else {
      auto asked = directory::split_login(step.authcid, domain_);
      auto named = directory::split_login(v->user, domain_);
      ok = asked && named && asked->canonical() == named->canonical();
      if (!ok) reason_ = "token_names_another_user";
    }
    credential_failed_ = !ok;
    handle(mechanism_->token_checked(ok), std::move(deliver));
  }

  // PLAIN / LOGIN: the directory lookup (inline for LMDB), then the verified-credential cache; only
  // a miss goes to the hashing pool, so repeat logins never wait behind argon2id hashes. A miss
  // identical to a check already being hashed waits for that one's verdict (SharedChecks).
  void check_password(sasl::Step step, Deliver deliver) {
    auto self = std::static_pointer_cast<ExchangeImpl>(shared_from_this());
    auto job = std::make_shared<sasl::Step>(std::move(step));
    bool queued = core_.run_directory([self, job, deliver] {
      auto found = self->find_login_user(*job);
      if (!found) return self->finish(deliver, failure(FailureKind::Temporary, found.error().detail));
      auto user = std::make_shared<std::optional<UserRecord>>(std::move(*found));
      auto& cache = self->core_.password_cache();
      // An unknown name is grouped like a real one (by the name as given and the dummy hash it is
      // checked against), so two identical attempts take the same time whether the user exists.
      const auto tag = cache.tag(*user ? cache_facts(**user, job->password)
                                       : CredentialFacts{job->authcid, job->password, self->core_.dummy_hash_, "?"});
      if (*user && cache.verified((*user)->canonical, tag)) {
        self->reason_.clear();
        self->cache_hit_ = true;
        self->user_ = std::move(**user);
        self->credential_failed_ = false;
        return self->handle(self->mechanism_->password_checked(true), deliver);
      }
      const auto joined = self->core_.shared_checks_.join(
          tag, [self, user, deliver](const SharedVerdict& v) { self->take_shared(v, std::move(*user), deliver); });
      if (joined == SharedChecks::Joined::Waiting) return;
      const bool lead = joined == SharedChecks::Joined::Lead;
      const auto source = HashQueue::source_key(self->facts_.client_address);
      auto refusal = self->core_.hash_pool_.submit(source, [self, job, user, deliver, tag, lead] {
        auto verdict = self->verify_password(*job, std::move(*user));
        if (!verdict) {
          self->finish(deliver, failure(FailureKind::Temporary, verdict.error().detail));
          if (lead) self->core_.shared_checks_.finish(tag, {SharedVerdict::Kind::TempFail, verdict.error().detail});
          return;
        }
        self->credential_failed_ = !*verdict;
        // The waiters' copies of reason_ and the record: taken before handle() hands this exchange on.
        SharedVerdict shared{*verdict ? SharedVerdict::Kind::Match : SharedVerdict::Kind::Mismatch, self->reason_};
        self->handle(self->mechanism_->password_checked(*verdict), deliver);
        if (lead) self->core_.shared_checks_.finish(tag, shared);
      });
      if (refusal == HashQueue::Refusal::None) return;
      // Refused at once rather than queued without a bound: the front end answers 454 4.7.0 /
      // NO [UNAVAILABLE] and the client retries later. Attempts that joined this one meanwhile
      // get the same answer.
      const bool queue_full = refusal == HashQueue::Refusal::QueueFull;
      self->reason_ = queue_full ? "hashing_queue_full" : "source_hash_share_full";
      const std::string detail = queue_full ? "hashing queue full" : "this address has its share of the hashing queue";
      self->finish(deliver, failure(FailureKind::Temporary, detail));
      if (lead) self->core_.shared_checks_.finish(tag, {SharedVerdict::Kind::TempFail, detail});
    });
    if (!queued) finish(deliver, failure(FailureKind::Temporary, "directory queue full"));
  }

  // The verdict of an identical check that was in progress when this attempt arrived: the same
  // user, password, stored hash and change stamp, so the same answer a hash of our own would give.
  // Policy still runs on this exchange's own facts.
  void take_shared(const SharedVerdict& v, std::optional<UserRecord> user, const Deliver& deliver) {
    shared_check_ = true;
    switch (v.kind) {
      case SharedVerdict::Kind::TempFail:
        return finish(deliver, failure(FailureKind::Temporary, v.reason));
      case SharedVerdict::Kind::Mismatch:
        reason_ = v.reason;
        credential_failed_ = true;
        return handle(mechanism_->password_checked(false), deliver);
      case SharedVerdict::Kind::Match:
        reason_.clear();
        user_ = std::move(user);
        credential_failed_ = false;
        return handle(mechanism_->password_checked(true), deliver);
    }
  }

  // What the cache binds a verified password to. The stored hash changes with the password; the
  // change stamp (LDAP modifyTimestamp) with anything else on the entry.
  static CredentialFacts cache_facts(const UserRecord& user, std::string_view password) {
    return CredentialFacts{user.canonical, password, user.password, user.change_stamp};
  }

  // Only what a later change would show: a bind-mode LDAP entry without a modifyTimestamp could
  // change its password behind us, so it is never cached. Over-long passwords are refused by the
  // verifier anyway; they are not worth a tag.
  static bool cacheable(const UserRecord& user, std::string_view password) {
    return (!user.password.empty() || !user.change_stamp.empty()) && !password.empty() &&
           password.size() <= password::kMaxPassword;
  }

  common::Result<std::optional<UserRecord>> find_login_user(const sasl::Step& step) {
    auto login = directory::split_login(step.authcid, domain_);
    if (!login) return std::optional<UserRecord>();
    return core_.backend().find_user(login->uid, login->domain, step.authcid);
  }

  // True: the password matches a known user (user_ is set). Errors: directory outages.
  common::Result<bool> verify_password(const sasl::Step& step, std::optional<UserRecord> user) {
    auto& backend = core_.backend();
    if (!user) {
      // Same work as a real check, so response time does not reveal which names exist.
      (void)password::verify(step.password, core_.dummy_hash_);
      reason_ = directory::split_login(step.authcid, domain_) ? "unknown_user" : "bad_login_name";
      return false;
    }
    if (auto bound = backend.bind_as(*user, step.password)) {
      if (*bound == directory::BindResult::Unavailable) return common::fail(ErrorKind::TempFail, "directory bind failed");
      if (*bound == directory::BindResult::Mismatch) {
        reason_ = "wrong_password";
        return false;
      }
    } else {
      switch (password::verify(step.password, user->password)) {
        case password::Verdict::Match: break;
        case password::Verdict::Mismatch: reason_ = "wrong_password"; return false;
        case password::Verdict::Unsupported: reason_ = "unsupported_password_scheme"; return false;
        case password::Verdict::Malformed: reason_ = "malformed_password_hash"; return false;
      }
      if (auto rehashed = maybe_rehash(*user, step.password)) user->password = std::move(*rehashed);
    }
    // Remembered before policy runs: status and service rules are read from the record at every
    // login, cached or not, so a disabled account stays refused.
    if (cacheable(*user, step.password)) core_.password_cache().remember(cache_facts(*user, step.password));
    user_ = std::move(user);
    return true;
  }

  // AUTH-10: after a good login, store the current scheme and a SCRAM verifier. Failures only log.
  // Returns the hash now stored, when it changed.
  std::optional<std::string> maybe_rehash(const UserRecord& user, std::string_view password) {
    const auto& s = core_.settings_;
    if (!s.rehash || (!password::needs_rehash(user.password, s.argon2) && !user.scram.empty())) return std::nullopt;
    auto hashed = password::needs_rehash(user.password, s.argon2) ? password::hash_argon2id(password, s.argon2)
                                                                   : common::Result<std::string>(user.password);
    auto scram = password::make_scram_sha256(password, s.scram_iterations);
    if (!hashed || !scram) return std::nullopt;
    auto stored = core_.backend().store_password_hash(user, *hashed, password::format_scram(*scram));
    auto line = stored ? common::log::info("auth") : common::log::warning("auth");
    line.session(facts_.session_id).phase("rehash").event(stored ? "password_rehashed" : "rehash_failed")
        .kv("user", user.canonical);
    if (!stored) {
      line.kv("reason", stored.error().detail);
      return std::nullopt;
    }
    return std::move(*hashed);
  }

  // SCRAM: the stored verifier (never the password).
  void fetch_verifier(sasl::Step step, Deliver deliver) {
    auto self = std::static_pointer_cast<ExchangeImpl>(shared_from_this());
    auto authcid = std::make_shared<std::string>(std::move(step.authcid));
    bool queued = core_.run_directory([self, authcid, deliver] {
      auto login = directory::split_login(*authcid, self->domain_);
      std::optional<sasl::ScramVerifier> verifier;
      if (login) {
        auto found = self->core_.backend().find_user(login->uid, login->domain, *authcid);
        if (!found) return self->finish(deliver, failure(FailureKind::Temporary, found.error().detail));
        if (*found && !(*found)->scram.empty()) {
          if (auto v = password::parse_scram((*found)->scram); v && v->stored_key.size() == 32 && v->server_key.size() == 32) {
            sasl::ScramVerifier sv;
            sv.iterations = v->iterations;
            sv.salt = v->salt;
            std::copy(v->stored_key.begin(), v->stored_key.end(), sv.stored_key.begin());
            std::copy(v->server_key.begin(), v->server_key.end(), sv.server_key.begin());
            sodium_memzero(v->stored_key.data(), v->stored_key.size());
            sodium_memzero(v->server_key.data(), v->server_key.size());  // lets its holder pose as us
            verifier = std::move(sv);
            self->user_ = std::move(**found);
          }
        }
      }
      if (!verifier) self->reason_ = login ? "unknown_user_or_no_scram_verifier" : "bad_login_name";
      self->credential_failed_ = true;  // until the proof checks out
      // An unknown name's fake salt is keyed by the name as looked up, so "Zed" and
      // "zed@<default domain>" get one salt, as a real account's spellings do.
      const std::string account = login ? login->canonical() : std::string();
      self->handle(self->mechanism_->scram_verifier(std::move(verifier), account), deliver);
    });
    if (!queued) finish(deliver, failure(FailureKind::Temporary, "directory queue full"));
  }

  void succeed(sasl::Step step, Deliver deliver) {
    credential_failed_ = false;
    if (!user_) {
      // EXTERNAL: the verified certificate named the user; find the entry.
      auto self = std::static_pointer_cast<ExchangeImpl>(shared_from_this());
      auto job = std::make_shared<sasl::Step>(std::move(step));
      bool queued = core_.run_directory([self, job, deliver] {
        auto login = directory::split_login(job->authcid, self->domain_);
        if (!login) return self->finish(deliver, failure(FailureKind::Credentials, "certificate identity is not a login name"));
        auto found = self->core_.backend().find_user(login->uid, login->domain);
        if (!found) return self->finish(deliver, failure(FailureKind::Temporary, found.error().detail));
        if (!*found) return self->finish(deliver, failure(FailureKind::Credentials, "certificate identity has no entry"));
        self->user_ = std::move(**found);
        self->authorize(std::move(*job), deliver);
      });
      if (!queued) finish(deliver, failure(FailureKind::Temporary, "directory queue full"));
      return;
    }
    authorize(std::move(step), std::move(deliver));
  }

  // The proven identity may ask to act for another user (MMP-67), then policy decides.
  void authorize(sasl::Step step, Deliver deliver) {
    UserRecord effective = *user_;
    auto facts = login_facts(facts_, looked_name_, core_.names_ != nullptr);
    auto proxy = policy::authorize_proxy(*user_, step.authzid, domain_, facts,
                                         core_.settings_.proxy_hosts.get());
    if (proxy.outcome == policy::ProxyOutcome::NeedClientName) return look_up_client_then(std::move(step), deliver);
    if (!proxy.allowed()) {
      return finish(deliver, failure(FailureKind::Authz, proxy.reason.empty() ? "authzid refused" : proxy.reason));
    }
    if (proxy.outcome == policy::ProxyOutcome::Allow) {
      auto at = proxy.target.rfind('@');
      auto found = core_.backend().find_user(proxy.target.substr(0, at), proxy.target.substr(at + 1));
      if (!found) return finish(deliver, failure(FailureKind::Temporary, found.error().detail));
      if (!*found) return finish(deliver, failure(FailureKind::Authz, "authzid has no entry"));
      effective = std::move(**found);
      proxy_for_ = effective.canonical;
    }
    auto verdict = policy::check_login(effective, facts);
    if (verdict.outcome == policy::Outcome::NeedClientName) return look_up_client_then(std::move(step), deliver);
    if (!verdict.allowed()) {
      bool status = verdict.outcome == policy::Outcome::AccountInactive ||
                    verdict.outcome == policy::Outcome::AccountHeld || verdict.outcome == policy::Outcome::AccountDeleted;
      // A disabled account gets the same answer as a wrong password (AUTH-15): only logs differ.
      return finish(deliver, failure(status ? FailureKind::Credentials : FailureKind::NotAllowed, verdict.reason));
    }
    auto claims = core_.claims_for(effective, facts_);
    Reply r;
    r.kind = Reply::Kind::Success;
    r.data = std::move(step.data);
    r.user.canonical = effective.canonical;
    r.user.authcid = user_->canonical;
    r.user.mail_host = effective.mail_host;
    r.user.addresses = effective.addresses;
    r.user.quota_bytes = effective.quota_bytes;
    r.user.quota_messages = effective.quota_messages;
    if (check_only_) return finish(deliver, std::move(r));  // the front end only asked who it would be
    auto token = core_.sign(claims);
    if (!token) return finish(deliver, failure(FailureKind::Temporary, "token: " + token.error().detail));
    tokens_counter().inc();
    r.user.token = std::move(*token);
    r.user.token_expires = claims.expires_at;
    finish(deliver, std::move(r));
  }

  // A rule needs the client's name and the front end sent none: forward-confirmed reverse DNS on
  // the resolver thread, then authorize again through run_directory (it may search the directory:
  // on the pool for LDAP, inline on the resolver thread for LMDB, which never blocks).
  void look_up_client_then(sasl::Step step, Deliver deliver) {
    auto self = std::static_pointer_cast<ExchangeImpl>(shared_from_this());
    auto address = common::net::IpAddress::parse(facts_.client_address);
    // Cannot happen: policy asks only for a name it may have looked up and has not.
    if (looked_name_ || !core_.names_ || !address)
      return finish(deliver, failure(FailureKind::NotAllowed, "client name needed but cannot be looked up"));
    auto job = std::make_shared<sasl::Step>(std::move(step));
    core_.names_->verify_reverse(*address, [self, job, deliver](common::dns::ReverseResult r) {
      self->looked_name_ = std::move(r);
      bool queued = self->core_.run_directory([self, job, deliver] { self->authorize(std::move(*job), deliver); });
      if (!queued) self->finish(deliver, failure(FailureKind::Temporary, "directory queue full"));
    });
  }

  void finish(const Deliver& deliver, Reply r) {
    if (done_.exchange(true)) return;
    std::string_view result = r.kind == Reply::Kind::Success ? "success" : common::authclient::failure_kind_name(r.failure);
    std::string_view mech = mechanism_ ? mechanism_->name() : std::string_view("-");
    auth_counter().with({mech, result}).inc();
    {
      // Written when `line` goes out of scope: before the reply, so the log never lags the client.
      auto line = r.kind == Reply::Kind::Success ? common::log::info("auth") : common::log::notice("auth");
      line.session(facts_.session_id).client(describe(facts_)).phase("authenticate").event("auth")
          .kv("service", facts_.service).kv("front_end", facts_.front_end).client_text("mechanism", mechanism_name_)
          .kv("result", result);
      if (user_) line.kv("user", user_->canonical);
      if (cache_hit_) line.kv("password", "cached");
      if (shared_check_) line.kv("password", "shared");
      if (!proxy_for_.empty()) line.kv("proxy_for", proxy_for_);
      if (check_only_) line.kv("check_only", "yes");
      if (r.kind == Reply::Kind::Failure) {
        // The mechanism's reason says what was malformed; ours says which credential check failed.
        line.client_text("reason", reason_.empty() ? r.reason : reason_ + ": " + r.reason);
      }
    }
    deliver(std::move(r));
  }

  Core& core_;
  Facts facts_;
  std::string domain_;  // what unqualified names take: the front end's for this connection, or ours
  bool check_only_ = false;  // answer who the client would be; sign no token
  std::string mechanism_name_;
  std::unique_ptr<sasl::Mechanism> mechanism_;
  std::optional<UserRecord> user_;
  std::optional<common::dns::ReverseResult> looked_name_;  // set once authserv looked the client up
  std::string reason_;
  std::string proxy_for_;
  bool credential_failed_ = false;
  bool cache_hit_ = false;  // the password was verified from the credential cache
  bool shared_check_ = false;  // the verdict came from an identical check in progress (SharedChecks)
  std::atomic<bool> done_{false};
};

Core::Core(std::unique_ptr<directory::Backend> backend, Settings settings, common::authtoken::Signer signer,
           size_t hash_threads, size_t hash_queue, size_t directory_threads, size_t directory_queue)
    : backend_(std::move(backend)),
      settings_(std::move(settings)),
      signer_(std::move(signer)),
      own_tokens_(*common::authtoken::Verifier::from_public_keys(
          std::vector<std::string>{signer_.public_key_text()},
          common::authtoken::VerifierOptions{.binding = {.allow_unbound = settings_.allow_unbound_tokens}})),
      password_cache_(settings_.password_cache_entries, settings_.password_cache_ttl),
      shared_checks_(hash_queue),
      hash_pool_(hash_threads, hash_queue, settings_.hash_queue_per_source,
                 settings_.keep_hash_memory ? settings_.argon2.mem_bytes : 0),
      directory_pool_(backend_->nonblocking() ? 1 : directory_threads, directory_queue) {
  std::array<unsigned char, 24> random{};
  randombytes_buf(random.data(), random.size());
  auto dummy = password::hash_argon2id(std::string_view(reinterpret_cast<const char*>(random.data()), random.size()),
                                       settings_.argon2);
  dummy_hash_ = dummy ? *dummy : std::string();
  if (settings_.allow_unbound_tokens) {
    common::log::warning("authserv").phase("start").event("unbound_tokens_allowed")
        .kv("effect", "tokens may be bound to no front end; [tokens] allow_unbound is for tests only");
  }
}

Core::~Core() = default;

void Core::adopt(std::shared_ptr<const common::tls::CertMap> certmap,
                 std::shared_ptr<const oauth::TokenValidator> token_issuers) {
  std::lock_guard lock(live_mutex_);
  settings_.certmap = std::move(certmap);
  settings_.token_issuers = std::move(token_issuers);
  settings_.mechanisms.token_issuers_configured = settings_.token_issuers && !settings_.token_issuers->empty();
}

std::shared_ptr<const common::tls::CertMap> Core::certmap() const {
  std::lock_guard lock(live_mutex_);
  return settings_.certmap;
}

std::shared_ptr<const oauth::TokenValidator> Core::token_issuers() const {
  std::lock_guard lock(live_mutex_);
  return settings_.token_issuers;
}

policy::MechanismPolicy Core::mechanism_policy() const {
  std::lock_guard lock(live_mutex_);
  return settings_.mechanisms;
}

std::vector<std::string> Core::mechanisms(const Facts& facts) const {
  return policy::mechanisms_for(mechanism_policy(), connection_state(facts));
}

std::shared_ptr<Exchange> Core::begin(Facts facts, bool check_only) {
  return std::make_shared<ExchangeImpl>(*this, std::move(facts), check_only);
}

const std::string& Core::default_domain(const Facts& facts) const {
  return facts.default_domain.empty() ? settings_.default_domain : facts.default_domain;
}

bool Core::run_directory(std::function<void()> work) {
  if (backend_->nonblocking()) {
    work();
    return true;
  }
  return directory_pool_.submit(std::move(work));
}

bool Core::run_hashing(std::function<void()> work, std::string_view source) {
  return hash_pool_.submit(source, std::move(work)) == HashQueue::Refusal::None;
}

void Core::lookup_user(const Facts& facts, std::string login, UserDone done) {
  bool queued = run_directory([this, domain = default_domain(facts), login = std::move(login), done] {
    auto parts = directory::split_login(login, domain);
    if (!parts) return done(std::optional<UserRecord>());
    done(backend_->find_user(parts->uid, parts->domain, login));
  });
  if (!queued) done(common::fail(ErrorKind::TempFail, "directory queue full"));
}

void Core::lookup_recipient(const Facts&, std::string address, RecipientDone done) {
  bool queued = run_directory([this, address = std::move(address), done] {
    auto normal = directory::normalize_address(address);
    if (!normal) {
      directory::Recipient unknown;
      unknown.address = address;
      return done(std::move(unknown));
    }
    done(backend_->find_recipient(*normal));
  });
  if (!queued) done(common::fail(ErrorKind::TempFail, "directory queue full"));
}

common::authtoken::Claims Core::claims_for(const UserRecord& user, const Facts& facts) const {
  return common::authtoken::new_claims(user.canonical, {facts.service}, facts.front_end, now_unix(),
                                       std::min(settings_.token_ttl, settings_.max_session));
}

void Core::renew_token(const Facts& facts, std::string token, RenewDone done) {
  // "unbound" when the caller has no certificate name or the token names no front end.
  auto claims = own_tokens_.verify(token, now_unix(), facts.front_end);
  if (!claims) return done(tl::unexpected(claims.error()));
  auto renewed = common::authtoken::renew(*claims, now_unix(), settings_.token_ttl, settings_.max_session);
  if (!renewed) return done(common::fail(ErrorKind::Protocol, "session_lifetime_over"));
  // The account may have been disabled since the login (a compromise: STO-08); renewal is where
  // long sessions learn it.
  bool queued = run_directory([this, renewed = std::move(*renewed), done] {
    auto at = renewed.user.rfind('@');
    auto found = backend_->find_user(renewed.user.substr(0, at), at == std::string::npos ? "" : renewed.user.substr(at + 1));
    if (!found) return done(tl::unexpected(found.error()));
    if (!*found || (*found)->status != Status::Active) return done(common::fail(ErrorKind::Protocol, "account_not_active"));
    auto token = sign(renewed);
    if (!token) return done(tl::unexpected(token.error()));
    done(Renewal{std::move(*token), renewed.expires_at});
  });
  if (!queued) done(common::fail(ErrorKind::TempFail, "directory queue full"));
}

}  // namespace authserv::service
