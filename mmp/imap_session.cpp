// imap_session.cpp: the IMAP session (imap_session.hpp). One command runs at a time: the parser
// pauses after each, and the next is read only once this one is answered, so replies keep the
// order of commands and a client cannot make us buffer more than the parser's bounds.
#include "mmp/imap_session.hpp"

#include <algorithm>
#include <utility>

#include "common/ascii.hpp"
#include "common/authclient/connection_facts.hpp"
#include "common/log/log.hpp"
#include "common/text/base64.hpp"
#include "mmp/imap/encode.hpp"
#include "mmp/imap/mutf7.hpp"
#include "mmp/imap_replies.hpp"

namespace mmp {
namespace {

namespace pb = postern::mailstore::v1;
using imap::Condition;
using store_client::StoreCode;
using store_client::StoreError;

imap::ParserOptions parser_options(const Config& config) {
  imap::ParserOptions o;
  o.limits = config.imap.limits;
  o.literal_plus = true;
  o.multiappend = true;  // RFC 3502: imap_append.cpp streams every message into one store Append
  return o;
}

}  // namespace

// RFC 5530 response codes for what the store said.
std::string_view code_for(const StoreError& e) {
  if (e.kind == common::ErrorKind::TempFail) return "UNAVAILABLE";
  switch (e.code) {
    case StoreCode::NotFound: return "NONEXISTENT";
    case StoreCode::AlreadyExists: return "ALREADYEXISTS";
    case StoreCode::ResourceExhausted:
      // The store's quota refusals say so; its other limits, and its gRPC gate refusing the mmp's
      // calls past max_calls_per_ip, are no news about the user's quota.
      return e.message.find("quota") != std::string::npos ? "OVERQUOTA" : "LIMIT";
    case StoreCode::PermissionDenied:
    case StoreCode::Unauthenticated: return "NOPERM";
    case StoreCode::InvalidArgument: return "CANNOT";
    default: return "SERVERBUG";
  }
}

std::string text_for(const StoreError& e) {
  if (e.kind == common::ErrorKind::TempFail) return "The mail store is not available, try again later";
  if (e.code == StoreCode::NotFound) return "No such mailbox";
  return e.message.empty() ? std::string("The mail store refused the command") : e.message;
}

void ImapSession::store_failed(std::string_view tag, const StoreError& e) {
  done(tag, Condition::No, code_for(e), text_for(e));
}

ImapSession::ImapSession(common::runtime::Connection& connection, ImapContext context)
    : StartTlsSession(connection),
      context_(std::move(context)),
      config_(*context_.config),
      parser_(parser_options(config_)) {
  parser_.set_message_limit(0);  // no APPEND before login (refused before its bytes)
}

ImapSession::~ImapSession() = default;

void ImapSession::on_open() {
  // IMAPS: the greeting (PREAUTH or OK, with authserv's AUTH= list) waits for the handshake, which
  // on_transform_ready() reports. Commands are not read before it.
  if (context_.implicit_tls) {
    waiting_ = true;
    return;
  }
  greet({});
}

void ImapSession::greet(const std::vector<std::string>& mechanisms) {
  // RFC 9051 §7.1: the capabilities in the greeting save a round trip. On 143 AUTH= waits for
  // CAPABILITY, since authserv's list depends on the TLS handshake, which has not run yet.
  write(imap::status_line("*", Condition::Ok, "CAPABILITY " + capabilities(mechanisms),
                          config_.mmp.host_name + " Postern IMAP4rev1 ready"));
}

void ImapSession::on_transform_ready() {
  if (!context_.implicit_tls || state_ != State::NotAuthenticated || closing_) return;
  mechanisms_then([this](std::vector<std::string> mechanisms) {
    // RFC 9051 §7.1.4: a connection authenticated by external means (the certificate) greets
    // PREAUTH and starts in the authenticated state; otherwise the client logs in as usual.
    if (cert_state_ == CertState::Mapped && cert_user_ && open_mailbox(*cert_user_, "EXTERNAL")) {
      write(imap::status_line("*", Condition::Preauth, "CAPABILITY " + capabilities({}),
                              config_.mmp.host_name + " Postern IMAP4rev1 ready, logged in as " + user_));
    } else {
      greet(mechanisms);
    }
    cert_user_.reset();
    waiting_ = false;
    pump();
  });
}

void ImapSession::mechanisms_then(std::function<void(std::vector<std::string>)> then) {
  context_.auth->mechanisms(
      *context_.loop, connection().alive(), facts(),
      [this, then = std::move(then)](common::Result<std::vector<std::string>> mechanisms) {
        // authserv not answering: no AUTH= this time, LOGIN still works once it is back.
        auto list = std::make_shared<std::vector<std::string>>(mechanisms ? std::move(*mechanisms)
                                                                          : std::vector<std::string>{});
        if (std::find(list->begin(), list->end(), "EXTERNAL") == list->end()) return then(std::move(*list));
        // Offered only once the certificate maps to a user who may log in here.
        map_certificate([this, list, then] {
          if (cert_state_ != CertState::Mapped) list->erase(std::find(list->begin(), list->end(), "EXTERNAL"));
          then(std::move(*list));
        });
      });
}

const std::string& ImapSession::default_domain() const {
  auto* t = const_cast<ImapSession*>(this)->connection().transform();
  const auto* security = t ? t->facts() : nullptr;
  if (security && security->handshake_done && !security->server_name.empty()) {
    if (const std::string* d = context_.settings->sni_domain(security->server_name)) return *d;
  }
  return *context_.settings->default_domain;
}

bool ImapSession::restrict_plain() const { return *context_.settings->restrict_plain_passwords; }

bool ImapSession::certificate_verified() const {
  auto* t = const_cast<ImapSession*>(this)->connection().transform();
  const auto* security = t ? t->facts() : nullptr;
  return security && security->handshake_done && security->client_verified;
}

void ImapSession::map_certificate(std::function<void()> then) {
  if (cert_state_ == CertState::Unknown && !certificate_verified()) cert_state_ = CertState::Unmapped;
  if (cert_state_ != CertState::Unknown) return then();
  // The certificate is mapped once per connection, by authserv's certmap and login policy: an
  // EXTERNAL exchange with no authorization identity. EXTERNAL is then offered only if it would
  // succeed (RFC 4422 §3.1), and IMAPS can greet PREAUTH. On IMAPS the one mapping is the
  // greeting's (no command is read before it), and a mapped certificate logs in there and then
  // (PREAUTH), so that exchange is a real login with a token, and PREAUTH costs no second round
  // trip. After STARTTLS it only asks who the certificate would be (check_only: no token is
  // signed for a session that then logs in with a password); AUTHENTICATE EXTERNAL is a login
  // exchange of its own.
  const bool check_only = !context_.implicit_tls;
  cert_state_ = CertState::Mapping;
  cert_relay_ = std::make_unique<common::authclient::SaslRelay>(
      *context_.auth, *context_.loop, [this, then = std::move(then)](common::authclient::SaslOutput out) {
        using namespace common::authclient;
        cert_relay_.reset();
        auto line = common::log::info(kImapComponent);
        line.session(connection().info().id).event("client_certificate");
        if (auto* success = std::get_if<SaslSuccess>(&out)) {
          cert_state_ = CertState::Mapped;
          cert_user_ = std::move(success->user);
          line.kv("result", "mapped").kv("user", cert_user_->canonical);
        } else {
          cert_state_ = CertState::Unmapped;
          line.kv("result", "unmapped");
          if (auto* failure = std::get_if<SaslFailure>(&out)) {
            line.kv("kind", failure_kind_name(failure->kind)).client_text("reason", failure->reason);
          }
        }
        then();
      });
  cert_relay_->start("EXTERNAL", std::string("="), facts(), check_only);
}

void ImapSession::on_data(std::string_view bytes) {
  if (closing_) return;
  parser_.feed(bytes, events_);
  pump();
}

void ImapSession::pump() {
  while (!waiting_ && !closing_) {
    if (next_event_ < events_.size()) {
      imap::Event event = std::move(events_[next_event_++]);
      handle(event);
      continue;
    }
    events_.clear();
    next_event_ = 0;
    if (!parser_.paused()) break;
    parser_.resume(events_);
    if (events_.empty()) break;
  }
  if (waiting_ || append_blocked_) {
    connection().pause_reading();
  } else if (!closing_) {
    connection().resume_reading();
  }
}

void ImapSession::handle(imap::Event& event) {
  if (auto* c = std::get_if<imap::Command>(&event)) return command(*c);
  if (auto* e = std::get_if<imap::ParseError>(&event)) return parse_error(*e);
  if (auto* k = std::get_if<imap::Continue>(&event)) {
    if (k->message && appending_ && !appending_->refusal.empty()) {
      // Refused before its bytes (RFC 9051 §4.3): the client sends no literal.
      parser_.cancel_literal();
      append_.reset();
      bad(k->tag, appending_->refusal);
      appending_.reset();
      return;
    }
    write(imap::continuation("Ready for literal data"));
    return;
  }
  if (auto* a = std::get_if<imap::AppendStart>(&event)) return append_start(*a);
  if (auto* d = std::get_if<imap::AppendData>(&event)) return append_data(*d);
  if (auto* r = std::get_if<imap::SaslResponse>(&event)) {
    if (sasl_verified_) {
      auto user = std::move(*sasl_verified_);
      sasl_verified_.reset();
      parser_.end_sasl();
      const std::string tag = std::exchange(sasl_tag_, {});
      if (r->cancel) return bad(tag, "Authentication cancelled");
      if (!r->text.empty()) return bad(tag, "The answer to the server's last SASL message must be empty");
      waiting_ = true;
      return logged_in(tag, user, sasl_mechanism_);
    }
    if (!relay_) return;
    if (!r->cancel && !common::text::base64_decode(r->text)) {
      // RFC 9051 §6.2.2: a response that is not base64 is rejected with BAD; authserv never sees it.
      relay_.reset();
      parser_.end_sasl();
      return bad(std::exchange(sasl_tag_, {}), "That SASL response is not base64");
    }
    waiting_ = true;
    relay_->client_line(r->cancel ? std::string_view("*") : std::string_view(r->text));
    return;
  }
  if (auto* i = std::get_if<imap::IdleEnd>(&event)) return idle_end(*i);
}

void ImapSession::parse_error(const imap::ParseError& e) {
  if (appending_) {
    // An APPEND refused after (part of) its message: cancelling the stream commits nothing.
    append_.reset();
    appending_.reset();
  }
  write(imap::parse_error_line(e));
  common::log::info(kImapComponent).session(connection().info().id).event("parse_error").client_text("reason", e.text);
  if (e.fatal) {
    write(imap::status_line("*", Condition::Bye, "", "Too much that is not IMAP"));
    closing_ = true;
    connection().close();
    return;
  }
  count_error();
}

void ImapSession::count_error() {
  if (++errors_ < config_.imap.max_errors) return;
  common::log::warning(kImapComponent).session(connection().info().id).event("too_many_errors").kv("errors", uint64_t{errors_});
  write(imap::status_line("*", Condition::Bye, "", "Too many errors"));
  closing_ = true;
  connection().close();
}

void ImapSession::write(std::string_view bytes) { connection().write(bytes); }

void ImapSession::bad(std::string_view tag, std::string_view text) {
  write(imap::status_line(tag, Condition::Bad, "", text));
  count_error();
}

void ImapSession::wait() { waiting_ = true; }

void ImapSession::done(std::string_view tag, Condition condition, std::string_view code, std::string_view text) {
  write(imap::status_line(tag, condition, code, text));
  waiting_ = false;
  pump();
}

bool ImapSession::tls_on() const {
  // The transform is there from the first byte on an implicit-TLS port and from STARTTLS on (the
  // plaintext read before it is dropped): every command the session reads has come through TLS.
  return const_cast<ImapSession*>(this)->connection().transform() != nullptr;
}

common::authclient::ConnectionFacts ImapSession::facts() const {
  auto& c = const_cast<ImapSession*>(this)->connection();
  auto f = common::authclient::connection_facts(c.info(), c.transform() ? c.transform()->facts() : nullptr);
  f.service = "imap";
  // Virtual domains (MMP-08/09): authserv qualifies every bare name, whatever the mechanism (SCRAM's
  // username is inside its proof, so only authserv can), with the listener's or SNI name's domain.
  f.default_domain = default_domain();
  return f;
}

std::string ImapSession::capabilities(const std::vector<std::string>& mechanisms) const {
  std::string caps = "IMAP4rev1 IMAP4rev2 LITERAL+ SASL-IR ID UNSELECT NAMESPACE UIDPLUS MOVE ESEARCH QUOTA IDLE ENABLE CONDSTORE QRESYNC SEARCHRES"
                     " LIST-EXTENDED LIST-STATUS SPECIAL-USE CREATE-SPECIAL-USE CHILDREN BINARY";
  caps += append_capabilities();
  if (state_ == State::NotAuthenticated) {
    if (context_.starttls && !tls_on()) caps += " STARTTLS";
    if (restrict_plain() && !tls_on()) {
      caps += " LOGINDISABLED";
    } else {
      for (const auto& m : mechanisms) caps += " AUTH=" + m;
    }
  }
  return caps;
}

void ImapSession::command(imap::Command& c) {
  using imap::Verb;
  const bool unauth = state_ == State::NotAuthenticated;
  const bool authed = state_ == State::Authenticated || state_ == State::Selected;
  const bool selected = state_ == State::Selected;
  auto wrong_state = [&] { bad(c.tag, std::string(imap::verb_name(c.verb)) + " is not allowed now"); };
  switch (c.verb) {
    case Verb::Capability: return capability(c);
    case Verb::Noop:
    case Verb::Check:
      if (selected) return poll(c.tag, imap::verb_name(c.verb));
      write(imap::status_line(c.tag, Condition::Ok, "", std::string(imap::verb_name(c.verb)) + " completed"));
      return;
    case Verb::Logout: return logout(c);
    case Verb::Id:
      // RFC 2971 §3.1: the server's own fields, or NIL; the client's are only logged.
      write("* ID NIL\r\n");
      write(imap::status_line(c.tag, Condition::Ok, "", "ID completed"));
      return;
    case Verb::StartTls: return unauth ? starttls(c) : wrong_state();
    case Verb::Login: return unauth ? login(c) : wrong_state();
    case Verb::Authenticate: return unauth ? authenticate(c) : wrong_state();
    case Verb::Select:
    case Verb::Examine: return authed ? select(c) : wrong_state();
    case Verb::List: return authed ? list(c) : wrong_state();
    case Verb::Status: return authed ? status(c) : wrong_state();
    case Verb::Fetch: return selected ? fetch(c) : wrong_state();
    case Verb::Store: return selected ? store(c) : wrong_state();
    case Verb::Expunge: return selected ? expunge(c) : wrong_state();
    case Verb::Search: return selected ? search(c) : wrong_state();
    case Verb::Copy:
    case Verb::Move: return selected ? copy(c) : wrong_state();
    case Verb::Create:
    case Verb::Delete:
    case Verb::Rename:
    case Verb::Subscribe:
    case Verb::Unsubscribe: return authed ? manage(c) : wrong_state();
    case Verb::Lsub: return authed ? list(c) : wrong_state();
    case Verb::Namespace:
      if (!authed) return wrong_state();
      // RFC 2342: one personal namespace, "/" as the hierarchy delimiter, no others.
      write("* NAMESPACE ((\"\" \"/\")) NIL NIL\r\n");
      write(imap::status_line(c.tag, Condition::Ok, "", "NAMESPACE completed"));
      return;
    case Verb::Append: return authed ? append_command(c) : wrong_state();
    case Verb::GetQuota:
    case Verb::GetQuotaRoot: return authed ? quota(c) : wrong_state();
    case Verb::Close:
    case Verb::Unselect: return selected ? close_mailbox(c) : wrong_state();
    case Verb::Idle: return authed ? idle(c) : wrong_state();
    // RFC 5161 §3.1: ENABLE only in the authenticated state, before a mailbox is selected.
    case Verb::Enable: return state_ == State::Authenticated ? enable(c) : wrong_state();
    default:
      if (unauth) return wrong_state();
      write(imap::status_line(c.tag, Condition::No, "CANNOT",
                              std::string(imap::verb_name(c.verb)) + " is not available on this server yet"));
      return;
  }
}

void ImapSession::capability(const imap::Command& c) {
  const bool ask = state_ == State::NotAuthenticated && (tls_on() || !restrict_plain());
  if (!ask) {
    write("* CAPABILITY " + capabilities({}) + "\r\n");
    write(imap::status_line(c.tag, Condition::Ok, "", "CAPABILITY completed"));
    return;
  }
  wait();
  mechanisms_then([this, tag = c.tag](std::vector<std::string> mechanisms) { capability_reply(tag, mechanisms); });
}

void ImapSession::capability_reply(const std::string& tag, const std::vector<std::string>& mechanisms) {
  write("* CAPABILITY " + capabilities(mechanisms) + "\r\n");
  done(tag, Condition::Ok, "", "CAPABILITY completed");
}

void ImapSession::starttls(const imap::Command& c) {
  if (!context_.starttls || tls_on()) return bad(c.tag, "STARTTLS is not offered here");
  // The parser paused after STARTTLS; start_tls drops whatever the client pipelined behind it.
  start_tls(imap::status_line(c.tag, Condition::Ok, "", "Begin TLS negotiation now"),
            context_.starttls->accept(connection().info().id));
}

size_t ImapSession::forget_plaintext() {
  const size_t dropped = parser_.buffered();
  parser_.reset();
  events_.clear();
  next_event_ = 0;
  relay_.reset();
  return dropped;
}

void ImapSession::login(const imap::Command& c) {
  const auto& a = std::get<imap::LoginArgs>(c.args);
  if (restrict_plain() && !tls_on()) {
    write(imap::status_line(c.tag, Condition::No, "PRIVACYREQUIRED", "LOGIN needs TLS: use STARTTLS first"));
    return count_error();
  }
  // LOGIN is PLAIN without an authorization id (RFC 4616), relayed to authserv like AUTHENTICATE;
  // authserv gives a name without "@" this connection's default domain (facts()).
  const std::string plain = std::string(1, '\0') + a.user + std::string(1, '\0') + a.password;
  sasl_start(c.tag, "PLAIN", common::text::base64_encode(plain));
  sasl_mechanism_ = "LOGIN";  // the command, for the login line
}

void ImapSession::authenticate(const imap::Command& c) {
  const auto& a = std::get<imap::AuthenticateArgs>(c.args);
  if (restrict_plain() && !tls_on()) {
    write(imap::status_line(c.tag, Condition::No, "PRIVACYREQUIRED", "AUTHENTICATE needs TLS: use STARTTLS first"));
    return count_error();
  }
  std::optional<std::string> initial = a.initial_response;
  if (initial && initial->empty()) initial = "=";  // RFC 4959 §3: "=" is an empty initial response
  const std::string mechanism = common::ascii::uppered(a.mechanism);
  // EXTERNAL too goes to authserv as its own exchange, which maps the certificate again and signs
  // the token: the capability check's mapping carried none.
  cert_user_.reset();
  sasl_start(c.tag, mechanism, std::move(initial));
}

void ImapSession::sasl_start(const std::string& tag, const std::string& mechanism,
                             std::optional<std::string> initial_base64) {
  sasl_tag_ = tag;
  sasl_mechanism_ = mechanism;
  wait();
  relay_ = std::make_unique<common::authclient::SaslRelay>(
      *context_.auth, *context_.loop, [this](common::authclient::SaslOutput out) { sasl_output(std::move(out)); });
  relay_->start(mechanism, std::move(initial_base64), facts());
}

void ImapSession::login_refused(const std::string& tag, std::string_view code, std::string_view text) {
  // The tagged NO first: a failure that reaches max_errors then ends the session with BYE.
  write(imap::status_line(tag, Condition::No, code, text));
  count_error();
  if (closing_) return;
  waiting_ = false;
  pump();
}

void ImapSession::sasl_output(common::authclient::SaslOutput output) {
  using namespace common::authclient;
  if (auto* challenge = std::get_if<SaslChallenge>(&output)) {
    write(imap::continuation(challenge->base64));
    parser_.expect_sasl(sasl_tag_);
    waiting_ = false;
    pump();
    return;
  }
  parser_.end_sasl();
  relay_.reset();
  const std::string tag = std::move(sasl_tag_);
  if (auto* failure = std::get_if<SaslFailure>(&output)) {
    common::log::info(kImapComponent).session(connection().info().id).event("login_failed")
        .kv("kind", failure_kind_name(failure->kind)).client_text("reason", failure->reason);
    switch (failure->kind) {
      case FailureKind::Temporary:
        done(tag, Condition::No, "UNAVAILABLE", "Authentication is not available now, try again later");
        return;
      case FailureKind::Authz:
        return login_refused(tag, "AUTHORIZATIONFAILED", "Not authorized to login as specified user");
      case FailureKind::Aborted: done(tag, Condition::Bad, "", "Authentication cancelled"); return;
      case FailureKind::Mechanism:
      case FailureKind::Protocol:
        return login_refused(tag, "CANNOT", "That authentication mechanism or exchange is not accepted");
      default:
        // Wrong credentials, a disabled account and a service the user may not use (authserv's
        // not_allowed, logged above) get one answer: telling them apart would confirm the password.
        return login_refused(tag, "AUTHENTICATIONFAILED", "Authentication failed");
    }
  }
  auto& success = std::get<SaslSuccess>(output);
  if (!success.additional_data_base64.empty()) {
    // IMAP's tagged OK carries no SASL data (RFC 9051 §6.2.2): the server's last message (SCRAM's
    // server-final with its signature, RFC 5802 §5) goes out as a challenge, and the client's empty
    // answer completes the login (RFC 4422 §5). A client that never checks it would not notice.
    write(imap::continuation(success.additional_data_base64));
    sasl_verified_ = std::move(success.user);
    sasl_tag_ = tag;
    parser_.expect_sasl(sasl_tag_);
    waiting_ = false;
    pump();
    return;
  }
  logged_in(tag, success.user, sasl_mechanism_);
}

bool ImapSession::open_mailbox(const common::authclient::AuthenticatedUser& user, std::string_view mechanism) {
  auto opened = context_.stores->open(user.mail_host, *context_.loop, connection().alive(),
                                      store_client::StoreCredentials{user.token, ""});
  if (!opened) {
    common::log::warning(kImapComponent).session(connection().info().id).event("store_unavailable")
        .kv("user", user.canonical).kv("mail_host", user.mail_host).kv("reason", opened.error().detail);
    return false;
  }
  store_ = std::move(*opened);
  user_ = user.canonical;
  state_ = State::Authenticated;
  parser_.set_message_limit(config_.imap.limits.max_message);
  auto line = common::log::info(kImapComponent);
  line.session(connection().info().id).event("login").kv("user", user_).kv("mail_host", user.mail_host);
  // An administrator acting for the user (RFC 4616 authzid): both names, for the audit trail.
  if (!user.authcid.empty() && user.authcid != user.canonical) line.kv("proxy_by", user.authcid);
  if (!mechanism.empty()) line.kv("mechanism", mechanism);
  token_ = user.token;
  schedule_renewal(user.token_expires_unix);
  return true;
}

void ImapSession::logged_in(const std::string& tag, const common::authclient::AuthenticatedUser& user,
                            std::string_view mechanism) {
  if (!open_mailbox(user, mechanism)) {
    done(tag, Condition::No, "UNAVAILABLE", "Your mailbox is not available now, try again later");
    return;
  }
  done(tag, Condition::Ok, "CAPABILITY " + capabilities({}), "Logged in");
}

int64_t ImapSession::now_unix() {
  return std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch()).count();
}

void ImapSession::schedule_renewal(int64_t expires_unix) {
  // The store refuses a call whose token has lapsed, so a session longer than the token renews it
  // through authserv two thirds into its life (authserv also ends it there for a disabled account
  // or a session past its maximum lifetime). A token that lapses without renewal ends the session.
  if (expires_unix <= 0) return;
  const int64_t left = expires_unix - now_unix();
  const int64_t after = std::max<int64_t>(1, left * 2 / 3);
  if (!renew_timer_) renew_timer_ = std::make_unique<common::runtime::Timer>(connection().loop());
  token_expires_ = expires_unix;
  renew_timer_->start(std::chrono::seconds(after), [this] { renew_token(); });
}

void ImapSession::renew_token() {
  if (closing_ || !store_) return;
  context_.auth->renew_token(
      *context_.loop, connection().alive(), facts(), token_,
      [this](common::Result<common::authclient::TokenRenewal> r) {
        if (closing_ || !store_) return;
        const std::string& session = connection().info().id;
        if (r && r->ok) {
          common::log::info(kImapComponent).session(session).event("token_renewed").kv("user", user_)
              .kv("expires_in", static_cast<uint64_t>(std::max<int64_t>(0, r->token_expires_unix - now_unix())));
          token_ = r->token;
          store_->set_token(r->token);
          schedule_renewal(r->token_expires_unix);
          return;
        }
        const int64_t left = token_expires_ - now_unix();
        if (!r && left > 10) {
          // authserv unreachable for now: try again while the token still holds.
          common::log::warning(kImapComponent).session(session).event("token_renewal_failed").kv("user", user_)
              .kv("reason", r.error().detail).kv("retry_in", uint64_t{10});
          renew_timer_->start(std::chrono::seconds(std::min<int64_t>(10, left / 2)), [this] { renew_token(); });
          return;
        }
        common::log::notice(kImapComponent).session(session).event("session_ended").kv("user", user_)
            .kv("reason", r ? "renewal refused: " + r->reason : "renewal failed: " + r.error().detail);
        write(imap::status_line("*", Condition::Bye, "", "Session expired, please log in again"));
        closing_ = true;
        connection().close();
      });
}

void ImapSession::logout(const imap::Command& c) {
  write(imap::status_line("*", Condition::Bye, "", "Logging out"));
  write(imap::status_line(c.tag, Condition::Ok, "", "LOGOUT completed"));
  state_ = State::Logout;
  closing_ = true;
  connection().close();
}

void ImapSession::on_timeout(common::runtime::TimeoutKind kind) {
  write(imap::status_line("*", Condition::Bye, "",
                          kind == common::runtime::TimeoutKind::Idle ? "Autologout; idle for too long" : "Session too long"));
  closing_ = true;
  connection().close(common::runtime::CloseReason::Timeout);
}

void ImapSession::on_drain() {
  write(imap::status_line("*", Condition::Bye, "", "Server shutting down"));
  closing_ = true;
  connection().close(common::runtime::CloseReason::Drain);
}

void ImapSession::on_closed(common::runtime::CloseReason) {
  closing_ = true;
  cert_relay_.reset();
  if (renew_timer_) renew_timer_->stop();
  fetch_.reset();
  append_.reset();  // a message cut short is never committed
  relay_.reset();
}

}  // namespace mmp
