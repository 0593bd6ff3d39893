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
  o.multiappend = false;
  return o;
}

}  // namespace

// RFC 5530 response codes for what the store said.
std::string_view code_for(const StoreError& e) {
  if (e.kind == common::ErrorKind::TempFail) return "UNAVAILABLE";
  switch (e.code) {
    case StoreCode::NotFound: return "NONEXISTENT";
    case StoreCode::AlreadyExists: return "ALREADYEXISTS";
    case StoreCode::ResourceExhausted: return "OVERQUOTA";
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
  // RFC 9051 §7.1: the capabilities in the greeting save a round trip; AUTH= waits for CAPABILITY,
  // since authserv's list depends on the TLS handshake, which has not run yet.
  write(imap::status_line("*", Condition::Ok, "CAPABILITY " + capabilities({}), config_.mmp.host_name + " Postern IMAP4rev1 ready"));
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
  return f;
}

std::string ImapSession::capabilities(const std::vector<std::string>& mechanisms) const {
  std::string caps = "IMAP4rev1 LITERAL+ SASL-IR ID UNSELECT NAMESPACE UIDPLUS MOVE ESEARCH QUOTA IDLE ENABLE CONDSTORE QRESYNC SEARCHRES";
  if (state_ == State::NotAuthenticated) {
    if (context_.starttls && !tls_on()) caps += " STARTTLS";
    if (config_.mmp.restrict_plain_passwords && !tls_on()) {
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
  const bool ask = state_ == State::NotAuthenticated && (tls_on() || !config_.mmp.restrict_plain_passwords);
  if (!ask) {
    write("* CAPABILITY " + capabilities({}) + "\r\n");
    write(imap::status_line(c.tag, Condition::Ok, "", "CAPABILITY completed"));
    return;
  }
  wait();
  context_.auth->mechanisms(*context_.loop, connection().alive(), facts(),
                            [this, tag = c.tag](common::Result<std::vector<std::string>> mechanisms) {
                              // authserv not answering: no AUTH= this time, LOGIN still works once it is back.
                              write("* CAPABILITY " + capabilities(mechanisms ? *mechanisms : std::vector<std::string>{}) +
                                    "\r\n");
                              done(tag, Condition::Ok, "", "CAPABILITY completed");
                            });
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
  if (config_.mmp.restrict_plain_passwords && !tls_on()) {
    write(imap::status_line(c.tag, Condition::No, "PRIVACYREQUIRED", "LOGIN needs TLS: use STARTTLS first"));
    return count_error();
  }
  std::string user = a.user;
  if (user.find('@') == std::string::npos && !config_.mmp.default_domain.empty()) user += "@" + config_.mmp.default_domain;
  // LOGIN is PLAIN without an authorization id (RFC 4616), relayed to authserv like AUTHENTICATE.
  const std::string plain = std::string(1, '\0') + user + std::string(1, '\0') + a.password;
  sasl_start(c.tag, "PLAIN", common::text::base64_encode(plain));
}

void ImapSession::authenticate(const imap::Command& c) {
  const auto& a = std::get<imap::AuthenticateArgs>(c.args);
  if (config_.mmp.restrict_plain_passwords && !tls_on()) {
    write(imap::status_line(c.tag, Condition::No, "PRIVACYREQUIRED", "AUTHENTICATE needs TLS: use STARTTLS first"));
    return count_error();
  }
  std::optional<std::string> initial = a.initial_response;
  if (initial && initial->empty()) initial = "=";  // RFC 4959 §3: "=" is an empty initial response
  sasl_start(c.tag, common::ascii::uppered(a.mechanism), std::move(initial));
}

void ImapSession::sasl_start(const std::string& tag, const std::string& mechanism,
                             std::optional<std::string> initial_base64) {
  sasl_tag_ = tag;
  wait();
  relay_ = std::make_unique<common::authclient::SaslRelay>(
      *context_.auth, *context_.loop, [this](common::authclient::SaslOutput out) { sasl_output(std::move(out)); });
  relay_->start(mechanism, std::move(initial_base64), facts());
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
        count_error();
        done(tag, Condition::No, "AUTHORIZATIONFAILED", "Not authorized to login as specified user");
        return;
      case FailureKind::Aborted: done(tag, Condition::Bad, "", "Authentication cancelled"); return;
      case FailureKind::Mechanism:
      case FailureKind::Protocol:
        count_error();
        done(tag, Condition::No, "CANNOT", "That authentication mechanism or exchange is not accepted");
        return;
      default:
        count_error();
        done(tag, Condition::No, "AUTHENTICATIONFAILED", "Authentication failed");
        return;
    }
  }
  auto& success = std::get<SaslSuccess>(output);
  auto opened = context_.stores->open(success.user.mail_host, *context_.loop, connection().alive(),
                                      store_client::StoreCredentials{success.user.token, ""});
  if (!opened) {
    common::log::warning(kImapComponent).session(connection().info().id).event("store_unavailable")
        .kv("user", success.user.canonical).kv("mail_host", success.user.mail_host).kv("reason", opened.error().detail);
    done(tag, Condition::No, "UNAVAILABLE", "Your mailbox is not available now, try again later");
    return;
  }
  store_ = std::move(*opened);
  user_ = success.user.canonical;
  state_ = State::Authenticated;
  parser_.set_message_limit(config_.imap.limits.max_message);
  common::log::info(kImapComponent).session(connection().info().id).event("login").kv("user", user_)
      .kv("mail_host", success.user.mail_host);
  done(tag, Condition::Ok, "CAPABILITY " + capabilities({}), "Logged in");
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
  fetch_.reset();
  append_.reset();  // a message cut short is never committed
  relay_.reset();
}

}  // namespace mmp
