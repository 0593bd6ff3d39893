// session.cpp: one inbound SMTP connection (session.hpp). RFC 5321 with PIPELINING (RFC 2920),
// SIZE (RFC 1870), 8BITMIME (RFC 6152), SMTPUTF8 (RFC 6531), ENHANCEDSTATUSCODES (RFC 2034), DSN
// (RFC 3461), CHUNKING (RFC 3030), STARTTLS (RFC 3207) and AUTH (RFC 4954).
#include "mta/smtpd/session.hpp"

#include <algorithm>
#include <ctime>

#include "common/ascii.hpp"
#include "common/authclient/connection_facts.hpp"
#include "common/metrics/metrics.hpp"
#include "common/smtp/reply.hpp"
#include "mta/trace/received.hpp"

namespace mta::smtpd {
namespace {

using common::line::CommandFlag;
using common::line::in_states;
using common::line::Request;
using common::runtime::LineFrame;
namespace smtp = common::smtp;
namespace authclient = common::authclient;

constexpr std::string_view kComponent = "smtpd";
// RFC 5321 §4.5.3.1.4 says 512 with the CRLF; an AUTH initial response (RFC 4954 §4) and ESMTP
// parameters need more, and Postfix reads 2048.
constexpr size_t kMaxCommandLine = 2048;

common::metrics::Family<common::metrics::Counter>& rejects() {
  static auto& family = common::metrics::default_registry().counter_family(
      "postern_mta_smtp_rejects_total", "SMTP commands and messages refused, by reason", {"reason"});
  return family;
}

common::metrics::Family<common::metrics::Counter>& accepted() {
  static auto& family = common::metrics::default_registry().counter_family(
      "postern_mta_messages_accepted_total", "Messages committed to the queue, by listener service", {"service"});
  return family;
}

common::metrics::Family<common::metrics::Counter>& auth_results() {
  static auto& family = common::metrics::default_registry().counter_family(
      "postern_mta_auth_total", "SMTP AUTH exchanges, by result", {"result"});
  return family;
}

std::string render(int code, smtp::EnhancedCode enh, std::string_view text) {
  return smtp::render_reply(code, enh, text);
}

std::string domain_of(std::string_view address) {
  const auto at = address.rfind('@');
  return at == std::string_view::npos ? std::string() : common::ascii::lowered(address.substr(at + 1));
}

queue::BodyType body_type(const std::optional<smtp::Body>& b) {
  if (!b) return queue::BodyType::Unspecified;
  switch (*b) {
    case smtp::Body::SevenBit: return queue::BodyType::SevenBit;
    case smtp::Body::EightBitMime: return queue::BodyType::EightBitMime;
    case smtp::Body::BinaryMime: return queue::BodyType::BinaryMime;
  }
  return queue::BodyType::Unspecified;
}

queue::Ret ret_type(const std::optional<smtp::Ret>& r) {
  if (!r) return queue::Ret::Unspecified;
  return *r == smtp::Ret::Full ? queue::Ret::Full : queue::Ret::Hdrs;
}

// RFC 4422 §3.1: a mechanism name is 1..20 of upper-case letters, digits, '-' and '_'.
bool valid_mechanism(std::string_view m) {
  if (m.empty() || m.size() > 20) return false;
  return std::all_of(m.begin(), m.end(), [](char c) {
    return common::ascii::is_alnum(c) || c == '-' || c == '_';
  });
}

const ListenerOverrides& overrides_of(const Settings& s, const std::string& listener) {
  static const ListenerOverrides kNone;
  const auto found = s.overrides.find(listener);
  return found == s.overrides.end() ? kNone : found->second;
}

int64_t now_unix_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

}  // namespace

// AUTH only outside a transaction (RFC 4954 §4); MAIL only after a greeting (RFC 5321 §4.1.4).
const common::line::LineSession::Entry SmtpSession::kCommands[] = {
    {"EHLO", handler<&SmtpSession::ehlo>, common::line::kAnyState,
     CommandFlag::PreTls | CommandFlag::LastInPipeline | CommandFlag::NeedsArguments},
    {"HELO", handler<&SmtpSession::helo>, common::line::kAnyState, CommandFlag::PreTls | CommandFlag::NeedsArguments},
    {"STARTTLS", handler<&SmtpSession::starttls>, in_states(State::Greeting, State::Ready),
     CommandFlag::PreTls | CommandFlag::LastInPipeline | CommandFlag::NoArguments},
    {"AUTH", handler<&SmtpSession::auth>, in_states(State::Ready), CommandFlag::NeedsArguments},
    {"MAIL", handler<&SmtpSession::mail>, in_states(State::Ready), CommandFlag::NeedsArguments},
    {"RCPT", handler<&SmtpSession::rcpt>, in_states(State::Mail, State::Rcpt), CommandFlag::NeedsArguments},
    {"DATA", handler<&SmtpSession::data>, in_states(State::Mail, State::Rcpt),
     CommandFlag::LastInPipeline | CommandFlag::NoArguments},
    {"BDAT", handler<&SmtpSession::bdat>, in_states(State::Mail, State::Rcpt, State::Bdat), CommandFlag::NeedsArguments},
    {"RSET", handler<&SmtpSession::rset>, common::line::kAnyState, CommandFlag::NoArguments | CommandFlag::CountsAsError},
    {"NOOP", handler<&SmtpSession::noop>, common::line::kAnyState,
     CommandFlag::PreTls | CommandFlag::LastInPipeline | CommandFlag::CountsAsError},
    {"VRFY", handler<&SmtpSession::vrfy>, common::line::kAnyState,
     CommandFlag::LastInPipeline | CommandFlag::CountsAsError | CommandFlag::NeedsArguments},
    {"EXPN", handler<&SmtpSession::expn>, common::line::kAnyState,
     CommandFlag::LastInPipeline | CommandFlag::CountsAsError},
    {"HELP", handler<&SmtpSession::help>, common::line::kAnyState, CommandFlag::CountsAsError},
    {"QUIT", handler<&SmtpSession::quit>, common::line::kAnyState,
     CommandFlag::PreTls | CommandFlag::LastInPipeline | CommandFlag::NoArguments},
};

SmtpSession::SmtpSession(common::runtime::Connection& connection, const SessionContext& context)
    : SmtpSession(connection, context, context.settings->current()) {}

SmtpSession::SmtpSession(common::runtime::Connection& connection, const SessionContext& context,
                         std::shared_ptr<const Settings> settings)
    : ServerSession(connection, kCommands,
                    [&] {
                      common::line::LineSessionOptions o;
                      o.component = std::string(kComponent);
                      o.max_line = common::smtpd::kMaxDataLine;
                      o.max_command_line = kMaxCommandLine;
                      o.errors.max_errors = static_cast<unsigned>(
                          session_policy(settings->mta, context.service, overrides_of(*settings, context.listener))
                              .max_errors);
                      o.errors.junk_allowance = 20;
                      return o;
                    }(),
                    {settings->mta.host_name, context.starttls}),
      context_(context),
      settings_(std::move(settings)),
      config_(&settings_->mta),
      policy_(session_policy(settings_->mta, context.service, overrides_of(*settings_, context.listener))),
      data_timer_(context.loop->get()),
      name_timer_(context.loop->get()) {}

SmtpSession::~SmtpSession() { *alive_ = false; }

void SmtpSession::on_open() {
  set_phase("greeting");
  start_reverse_lookup();
  reply(render(220, {}, config_->host_name + " ESMTP Postern"));
}

void SmtpSession::start_reverse_lookup() {
  client_name_ = connection().info().client_name;  // the access check may have looked it up already
  if (!client_name_.empty() || !config_->reverse_lookup || context_.resolver == nullptr) return;
  reverse_pending_ = true;
  context_.resolver->verify_reverse(connection().info().peer.address,
                                    [this, alive = std::weak_ptr<bool>(alive_)](common::dns::ReverseResult r) {
                                      auto lock = alive.lock();
                                      if (!lock || !*lock) return;
                                      reverse_pending_ = false;
                                      // Only a forward-confirmed name goes into the trace header: a
                                      // PTR alone is whatever the address's owner wrote.
                                      if (r.kind == common::dns::ReverseResult::Kind::Verified) client_name_ = r.name;
                                      if (waiting_for_name_) {
                                        waiting_for_name_ = false;
                                        name_timer_.stop();
                                        commit();
                                      }
                                    });
}

policy::Channel SmtpSession::channel() {
  return policy::classify(connection().info().peer.address, config_->internal_networks, user_.has_value());
}

smtp::CommandLimits SmtpSession::limits() const {
  smtp::CommandLimits l;
  l.max_message = policy_.max_message_size;
  l.smtputf8 = true;
  l.dsn = true;
  l.auth = policy_.auth;
  l.strict_helo = false;  // Internet clients send bare words and underscores; the name is only logged
  return l;
}

authclient::ConnectionFacts SmtpSession::facts() {
  auto f = authclient::connection_facts(connection().info(),
                                        connection().transform() ? connection().transform()->facts() : nullptr);
  // mailAllowedServiceAccess names SMTP AUTH "smtp" whatever the port.
  f.service = "smtp";
  if (f.client_name.empty()) f.client_name = client_name_;
  return f;
}

void SmtpSession::count_reject(std::string_view reason) { rejects().with({reason}).inc(); }

void SmtpSession::ehlo(const Request& r) {
  auto args = smtp::parse_helo(r.args, true, limits());
  if (!args) return refuse(args.error());
  greet(*args, true);
}

void SmtpSession::helo(const Request& r) {
  auto args = smtp::parse_helo(r.args, false, limits());
  if (!args) return refuse(args.error());
  greet(*args, false);
}

// RFC 5321 §4.1.4: EHLO or HELO again resets the transaction, as RSET does.
void SmtpSession::greet(const smtp::HeloArgs& helo, bool extended) {
  set_phase("helo");
  reset_transaction();
  helo_ = helo.name;
  esmtp_ = extended;
  greeted_ = true;
  set_state(State::Ready);
  if (!extended) {
    reply(render(250, {}, config_->host_name));
    return;
  }
  // AUTH is never offered before TLS: every mechanism authserv has would then cross in clear text
  // or could be stripped by anyone on the path (RFC 3207 §6).
  if (!policy_.auth || !tls_on() || context_.auth == nullptr) return send_ehlo({});
  suspend();
  auto resume = resumer();
  context_.auth->mechanisms(*context_.loop, connection().alive(), facts(),
                            [this, resume](common::Result<std::vector<std::string>> mechanisms) {
                              if (!mechanisms) {
                                // authserv is down: no AUTH now; the client can still EHLO again.
                                log_line(common::log::warning(kComponent))
                                    .event("mechanisms_unavailable")
                                    .kv("reason", mechanisms.error().detail);
                                send_ehlo({});
                              } else {
                                send_ehlo(*mechanisms);
                              }
                              resume();
                            });
}

void SmtpSession::send_ehlo(const std::vector<std::string>& mechanisms) {
  smtp::Capabilities caps;
  caps.domain = config_->host_name;
  caps.greeting = "Hello " + smtp::sanitize(helo_, 64);
  caps.size = policy_.max_message_size;
  caps.smtputf8 = true;
  caps.chunking = true;
  caps.dsn = true;
  caps.starttls = context_.starttls && !tls_on();
  caps.auth = mechanisms;
  // Outlook Express and other old clients look only for the pre-RFC 2554 "AUTH=" form.
  if (std::find(mechanisms.begin(), mechanisms.end(), "LOGIN") != mechanisms.end()) {
    std::string legacy = "AUTH=";
    for (size_t i = 0; i < mechanisms.size(); ++i) legacy += (i ? " " : "") + mechanisms[i];
    caps.extra.push_back(legacy);
  }
  reply(smtp::render_ehlo(caps));
}

void SmtpSession::starttls(const Request&) { starttls_command(); }

void SmtpSession::auth(const Request& r) {
  set_phase("auth");
  if (!policy_.auth || context_.auth == nullptr) {
    count_error();
    count_reject("auth_not_enabled");
    reply(render(503, {5, 5, 1}, "Authentication not enabled on this port"));
    return;
  }
  if (!tls_on()) {
    // RFC 4954 §6: 538 when the mechanism needs an encrypted channel; ours all do.
    count_error();
    count_reject("auth_before_tls");
    reply(render(538, {5, 7, 11}, "Encryption required for requested authentication mechanism"));
    return;
  }
  if (user_) {
    count_error();
    reply(render(503, {5, 5, 1}, "Already authenticated"));
    return;
  }
  if (!esmtp_) {
    count_error();
    reply(render(503, {5, 5, 1}, "Send EHLO first"));
    return;
  }
  std::string_view args = common::ascii::trim(r.args);
  const auto sp = args.find(' ');
  std::string mechanism = common::ascii::uppered(args.substr(0, sp));
  std::optional<std::string> initial;
  if (sp != std::string_view::npos) initial = std::string(common::ascii::trim(args.substr(sp + 1)));
  if (!valid_mechanism(mechanism)) {
    count_error();
    count_reject("auth_bad_mechanism");
    reply(render(501, {5, 5, 4}, "Syntax error in mechanism name"));
    return;
  }
  auth_mechanism_ = mechanism;
  relay_ = std::make_unique<authclient::SaslRelay>(
      *context_.auth, *context_.loop, [this, alive = connection().alive()](authclient::SaslOutput out) {
        if (alive.expired()) return;
        on_sasl(std::move(out));
      });
  set_state(State::Auth);
  suspend();
  relay_->start(mechanism, std::move(initial), facts());
}

void SmtpSession::on_sasl(authclient::SaslOutput output) {
  if (auto* challenge = std::get_if<authclient::SaslChallenge>(&output)) {
    set_raw(true);
    reply("334 " + challenge->base64 + "\r\n");
    return resume();
  }
  set_raw(false);
  set_state(State::Ready);
  if (auto* success = std::get_if<authclient::SaslSuccess>(&output)) {
    user_ = std::move(success->user);
    auth_results().with({"success"}).inc();
    // Who sent what, for abuse tracing (MTA-20): the authenticated user, the client, the session.
    log_line(common::log::info(kComponent))
        .event("auth_success")
        .kv("user", user_->canonical)
        .kv("mechanism", auth_mechanism_)
        .kv("authcid", user_->authcid);
    if (!success->additional_data_base64.empty()) {
      // RFC 4954 §4: success data goes in a 334; the client answers with an empty line.
      set_state(State::Auth);
      set_raw(true);
      auth_final_ack_ = true;
      reply("334 " + success->additional_data_base64 + "\r\n");
      return resume();
    }
    reply(render(235, {2, 7, 0}, "Authentication successful"));
    return resume();
  }
  const auto& failure = std::get<authclient::SaslFailure>(output);
  auth_results().with({authclient::failure_kind_name(failure.kind)}).inc();
  count_error();
  count_reject("auth_failed");
  log_line(common::log::notice(kComponent))
      .event("auth_failed")
      .kv("mechanism", auth_mechanism_)
      .kv("kind", authclient::failure_kind_name(failure.kind))
      .kv("reason", failure.reason);
  using authclient::FailureKind;
  switch (failure.kind) {
    case FailureKind::Mechanism: reply(render(504, {5, 5, 4}, "Unrecognized authentication type")); break;
    case FailureKind::Protocol: reply(render(501, {5, 5, 2}, "Cannot decode response")); break;
    case FailureKind::Aborted: reply(render(501, {5, 0, 0}, "Authentication aborted")); break;
    case FailureKind::Temporary: reply(render(454, {4, 7, 0}, "Temporary authentication failure")); break;
    case FailureKind::Unspecified:
    case FailureKind::Credentials:
    case FailureKind::NotAllowed:
    case FailureKind::Authz: reply(render(535, {5, 7, 8}, "Authentication credentials invalid")); break;
  }
  resume();
}

void SmtpSession::auth_line(std::string_view line) {
  if (auth_final_ack_) {
    auth_final_ack_ = false;
    set_raw(false);
    set_state(State::Ready);
    if (line.empty()) {
      reply(render(235, {2, 7, 0}, "Authentication successful"));
    } else {
      // The client refused the server's proof (SCRAM server-final): it does not trust us as this user.
      user_.reset();
      count_error();
      reply(render(501, {5, 0, 0}, "Authentication aborted"));
    }
    return;
  }
  suspend();
  relay_->client_line(line);
}

void SmtpSession::mail(const Request& r) {
  set_phase("mail");
  if (policy_.require_auth && !user_) {
    count_error();
    count_reject("auth_required");
    reply(render(530, {5, 7, 0}, "Authentication required"));
    return;
  }
  if (messages_ >= policy_.max_messages) {
    count_reject("too_many_messages");
    log_line(common::log::notice(kComponent)).event("limit").kv("limit", "max_messages")
        .kv("value", static_cast<uint64_t>(policy_.max_messages));
    reply(render(421, {4, 7, 0}, config_->host_name + " too many messages in one session, closing"));
    set_state(State::Closing);
    close_session();
    return;
  }
  auto args = smtp::parse_mail(r.args, limits());
  if (!args) return refuse(args.error());
  if (args->params.body == smtp::Body::BinaryMime) {
    // BINARYMIME is not announced; parse_mail already refuses it then. Kept here against a change there.
    return refuse(smtp::SmtpError{555, {5, 5, 4}, "BODY=BINARYMIME not supported", "binarymime"});
  }
  if (user_ && !policy::sender_allowed(args->path.null ? "" : args->path.mailbox.address(), user_->addresses,
                                       config_->any_sender)) {
    // MTA-13 VerifyIdentity: a stolen password must not send as anyone else.
    count_error();
    count_reject("sender_not_owned");
    log_line(common::log::notice(kComponent))
        .event("sender_refused")
        .kv("user", user_->canonical)
        .client_text("from", args->path.mailbox.address());
    reply(render(553, {5, 7, 1}, "Sender address not owned by the authenticated user"));
    return;
  }
  reset_transaction();
  mail_ = std::move(*args);
  set_state(State::Mail);
  reply(render(250, {2, 1, 0}, "Sender OK"));
}

void SmtpSession::rcpt(const Request& r) {
  set_phase("rcpt");
  auto args = smtp::parse_rcpt(r.args, mail_.params.smtputf8, limits());
  if (!args) return refuse(args.error());
  // RFC 5321 §4.5.3.1.10: 452 for too many recipients; the client sends the rest later.
  if (client_recipients_ >= policy_.max_recipients) {
    count_reject("too_many_recipients");
    if (!recipient_limit_logged_) {  // once per transaction: a client may send thousands more
      recipient_limit_logged_ = true;
      log_line(common::log::notice(kComponent)).event("limit").kv("limit", "max_recipients")
          .kv("value", static_cast<uint64_t>(policy_.max_recipients));
    }
    reply(render(452, {4, 5, 3}, "Too many recipients"));
    return;
  }
  if (session_recipients_ >= policy_.max_session_recipients) {
    count_error();
    count_reject("too_many_session_recipients");
    log_line(common::log::notice(kComponent)).event("limit").kv("limit", "max_session_recipients")
        .kv("value", static_cast<uint64_t>(policy_.max_session_recipients));
    reply(render(452, {4, 5, 3}, "Too many recipients in this session"));
    return;
  }
  std::string address;
  std::string domain;
  if (args->path.postmaster) {
    // RFC 5321 §4.5.1: <Postmaster> without a domain must be accepted; it is our first domain's.
    domain = config_->local_domains.front();
    address = "postmaster@" + domain;
  } else {
    address = args->path.mailbox.address();
    domain = common::ascii::lowered(args->path.mailbox.domain);
  }
  if (args->path.mailbox.kind == smtp::DomainKind::Name && policy::is_local_domain(domain, config_->local_domains)) {
    if (context_.auth == nullptr) {
      return refuse_recipient(451, {4, 3, 0}, "Directory unavailable, try again later", "directory_unavailable");
    }
    suspend();
    return look_up(address, address, std::move(*args), false);
  }
  const auto verdict = policy::recipient_verdict(channel(), policy::RecipientClass::Remote);
  if (verdict != policy::Verdict::Accept) {
    count_error();
    log_line(common::log::notice(kComponent))
        .event("relay_denied")
        .kv("channel", policy::channel_name(channel()))
        .client_text("recipient", address);
    return refuse_recipient(554, {5, 7, 1}, smtp::sanitize(address) + ": Relay access denied", "relay_denied");
  }
  add_recipient(address, domain, *args);
  ++client_recipients_;
  ++session_recipients_;
  reply(render(250, {2, 1, 5}, smtp::sanitize(address) + " OK"));
}

void SmtpSession::refuse_recipient(int code, smtp::EnhancedCode enh, std::string text, const char* reason) {
  count_reject(reason);
  reply(render(code, enh, text));
}

// The full address first; "user+detail" unknown as such is asked again as "user" (RFC 5233).
void SmtpSession::look_up(std::string address, std::string asked, smtp::RcptArgs rcpt, bool base_tried) {
  auto resume = resumer();
  context_.auth->lookup_recipient(
      *context_.loop, connection().alive(), facts(), asked,
      [this, resume, address, rcpt = std::move(rcpt), base_tried](common::Result<authclient::RecipientInfo> info) mutable {
        if (!info) {
          log_line(common::log::warning(kComponent)).event("lookup_failed").kv("reason", info.error().detail);
          if (info.error().kind == common::ErrorKind::Protocol) {
            count_error();
            refuse_recipient(501, {5, 1, 3}, "Bad recipient address", "bad_recipient");
          } else {
            refuse_recipient(451, {4, 4, 3}, "Directory unavailable, try again later", "directory_unavailable");
          }
          return resume();
        }
        const auto& sep = config_->subaddress_separator;
        if (info->kind == authclient::RecipientKind::Unknown && !base_tried && !sep.empty() && !rcpt.path.mailbox.quoted) {
          const auto at = address.rfind('@');
          const auto cut = address.find(sep[0]);
          if (cut != std::string::npos && cut > 0 && at != std::string::npos && cut < at) {
            return look_up(address, address.substr(0, cut) + address.substr(at), std::move(rcpt), true);
          }
        }
        recipient_found(address, *info, rcpt);
        resume();
      });
}

void SmtpSession::recipient_found(const std::string& address, const authclient::RecipientInfo& info,
                                  const smtp::RcptArgs& rcpt) {
  using authclient::RecipientKind;
  switch (info.kind) {
    case RecipientKind::Unknown:
      // Refused now rather than bounced later: a bounce of spam goes to a forged sender (backscatter).
      count_error();
      log_line(common::log::info(kComponent)).event("unknown_recipient").client_text("recipient", address);
      return refuse_recipient(550, {5, 1, 1}, smtp::sanitize(address) + ": Recipient address rejected: User unknown",
                              "unknown_recipient");
    case RecipientKind::User:
      if (info.status == "deleted" || info.status == "removed") {
        return refuse_recipient(550, {5, 2, 1}, smtp::sanitize(address) + ": Mailbox disabled", "mailbox_disabled");
      }
      if (info.mail_host.empty()) {
        log_line(common::log::error(kComponent)).event("no_mail_host").kv("user", info.canonical);
        return refuse_recipient(451, {4, 3, 0}, "Local configuration error, try again later", "no_mail_host");
      }
      add_recipient(address, "store:" + common::ascii::lowered(info.mail_host), rcpt);
      break;
    case RecipientKind::Alias: {
      if (info.targets.empty()) {
        return refuse_recipient(550, {5, 1, 1}, smtp::sanitize(address) + ": Recipient address rejected: User unknown",
                                "unknown_recipient");
      }
      // Each target is queued on its own; local ones are looked up when they are delivered, so
      // an alias expands without a lookup per target here. ORCPT keeps the address the sender used.
      for (const auto& target : info.targets) {
        const std::string domain = domain_of(target);
        const bool local = policy::is_local_domain(domain, config_->local_domains);
        add_recipient(target, local ? "local:" + domain : domain, rcpt, address);
      }
      break;
    }
  }
  ++client_recipients_;
  ++session_recipients_;
  reply(render(250, {2, 1, 5}, smtp::sanitize(address) + " OK"));
}

void SmtpSession::add_recipient(std::string address, std::string destination, const smtp::RcptArgs& rcpt,
                                std::string orcpt) {
  queue::Recipient r;
  r.address = std::move(address);
  r.destination = std::move(destination);
  r.notify = rcpt.params.notify;
  if (rcpt.params.orcpt) {
    r.orcpt_type = rcpt.params.orcpt_type.value_or("rfc822");
    r.orcpt = *rcpt.params.orcpt;
  } else if (!orcpt.empty()) {
    r.orcpt_type = "rfc822";
    r.orcpt = std::move(orcpt);
  }
  recipients_.push_back(std::move(r));
  set_state(State::Rcpt);
}

// A DATA or BDAT message as a whole may take data_timeout, however slowly it trickles in.
void SmtpSession::start_data_timer() {
  data_timer_.start(policy_.data_timeout, [this] {
    count_reject("data_timeout");
    log_line(common::log::notice(kComponent))
        .event("data_timeout")
        .kv("received", static_cast<uint64_t>(data_report().size));
    set_state(State::Closing);
    reply(render(421, {4, 4, 2}, config_->host_name + " timeout reading the message, closing connection"));
    close_session(common::runtime::CloseReason::Local);
  });
}

void SmtpSession::on_content(std::string_view piece) {
  if (!bdat_refusal_) content_.append(piece);
}

void SmtpSession::data(const Request&) {
  if (recipients_.empty()) {
    // RFC 2920 §3.1: with every RCPT refused, a pipelined DATA is refused too.
    count_error();
    refuse_recipient(554, {5, 5, 1}, "No valid recipients", "no_valid_recipients");
    return;
  }
  smtp::DataOptions o;
  o.max_size = policy_.max_message_size;
  o.max_line = 998;
  // A bare LF or CR is made a line end in the stored message but never ends the data: the data
  // ends only at CRLF.CRLF, so nothing can be smuggled past a relay that reads it another way.
  o.bare = smtp::BarePolicy::Convert;
  o.nul = smtp::NulPolicy::Refuse;
  content_.clear();
  set_state(State::Data);
  start_data_timer();
  begin_data(o);
}

void SmtpSession::on_other_raw_line(const LineFrame& line) {
  if (state<State>() == State::Auth) auth_line(line.text);
}

void SmtpSession::on_command_line_too_long(size_t length) {
  if (state<State>() == State::Auth) {
    // A SASL response over the limit: the exchange ends (RFC 4954 §4 allows 12288 octets).
    auth_final_ack_ = false;
    relay_.reset();
    set_raw(false);
    set_state(State::Ready);
    count_error();
  }
  ServerSession::on_command_line_too_long(length);
}

std::string_view SmtpSession::wrong_state_text() const {
  return state<State>() == State::Greeting ? "Send HELO or EHLO first" : "Bad sequence of commands";
}

void SmtpSession::bdat(const Request& r) {
  auto args = smtp::parse_bdat(r.args, limits());
  if (!args) return refuse(args.error());
  const bool first = state<State>() != State::Bdat;
  if (first) {
    content_.clear();
    bdat_refusal_.reset();
    if (recipients_.empty()) {
      // The chunk is read all the same (its size is known), then refused, like DATA's 554.
      bdat_refusal_ = smtp::SmtpError{554, {5, 5, 1}, "No valid recipients", "no_valid_recipients"};
    }
    set_state(State::Bdat);
    start_data_timer();
  }
  smtp::DataOptions o;
  o.max_size = policy_.max_message_size;
  o.max_line = 998;
  // BDAT is counted (RFC 3030 §2): its bytes are the message, line endings included.
  o.bare = smtp::BarePolicy::Keep;
  o.nul = smtp::NulPolicy::Refuse;
  begin_bdat(*args, first, o);
}

void SmtpSession::on_chunk_done(uint64_t size) {
  if (!bdat_refusal_) return ServerSession::on_chunk_done(size);
  // RFC 3030 §2: a failed BDAT fails the transaction; the client sends RSET or MAIL again.
  count_error();
  count_reject(bdat_refusal_->reason);
  reply(smtp::render_reply(*bdat_refusal_));
}

void SmtpSession::on_message_end(std::optional<smtp::SmtpError> refusal) {
  data_timer_.stop();
  if (bdat_refusal_) {
    // The transaction had failed before its content: that is the answer, whatever the content was.
    count_error();
    count_reject(bdat_refusal_->reason);
    refusal = bdat_refusal_;
  }
  if (refusal) {
    reply(smtp::render_reply(*refusal));
    reset_transaction();
    return;
  }
  suspend();
  if (reverse_pending_) {
    // The client's name belongs in the trace header; wait for it a little, then go on without it.
    waiting_for_name_ = true;
    name_timer_.start(config_->reverse_lookup_wait, [this] {
      waiting_for_name_ = false;
      commit();
    });
    return;
  }
  commit();
}

std::string SmtpSession::received_header() {
  trace::ReceivedFacts f;
  f.helo = helo_;
  f.client_name = client_name_;
  f.client_ip = connection().info().peer.address.to_string();
  f.by = config_->host_name;
  if (recipients_.size() == 1) f.recipient = recipients_.front().address;
  f.esmtp = esmtp_;
  if (const auto* t = connection().transform(); t && t->facts() && t->facts()->handshake_done) {
    f.tls_version = t->facts()->protocol;
    f.tls_cipher = t->facts()->cipher;
  }
  f.authenticated = user_.has_value();
  f.when = std::time(nullptr);
  return trace::received_header(f);
}

void SmtpSession::commit() {
  queue::Message m;
  auto& e = m.envelope;
  e.reverse_path = mail_.path.null ? std::string() : mail_.path.mailbox.address();
  e.size_param = mail_.params.size;
  e.body = body_type(mail_.params.body);
  e.smtputf8 = mail_.params.smtputf8;
  e.ret = ret_type(mail_.params.ret);
  e.envid = mail_.params.envid.value_or("");
  const auto& info = connection().info();
  e.client.address = info.peer.to_string();
  e.client.name = client_name_;
  e.client.helo = helo_;
  if (const auto* t = connection().transform(); t && t->facts() && t->facts()->handshake_done) {
    e.client.tls = t->facts()->protocol + " " + t->facts()->cipher;
  }
  if (user_) e.client.auth_user = user_->canonical;
  e.arrival = now_unix_ms();
  m.received = received_header();
  m.content = std::move(content_);
  content_.clear();
  m.recipients = recipients_;
  const auto started = std::chrono::steady_clock::now();
  const bool queued_now = context_.queue->enqueue(
      *context_.loop, connection().alive(), std::move(m),
      [this, started, resume = resumer()](common::Result<std::string> id) {
        queued(id, started);
        resume();
      });
  if (!queued_now) {
    count_reject("queue_busy");
    log_line(common::log::warning(kComponent)).event("queue_busy");
    reply(render(451, {4, 3, 0}, "Queue busy, try again later"));
    reset_transaction();
    resume();
  }
}

void SmtpSession::queued(const common::Result<std::string>& id, std::chrono::steady_clock::time_point started) {
  const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - started);
  if (!id) {
    // Nothing of the message is in the queue (the commit failed as a whole).
    const bool full = id.error().kind == common::ErrorKind::TempFail;
    count_reject(full ? "queue_full" : "queue_failed");
    log_line(common::log::error(kComponent)).event("enqueue_failed").kv("reason", id.error().detail);
    reply(full ? render(452, {4, 3, 1}, "Insufficient system storage, try again later")
               : render(451, {4, 3, 0}, "Local error in processing, try again later"));
    reset_transaction();
    return;
  }
  ++messages_;
  errors().reset_junk();
  accepted().with({connection().info().service}).inc();
  log_line(common::log::info(kComponent))
      .event("queued")
      .kv("queue_id", *id)
      .client_text("from", mail_.path.null ? "<>" : mail_.path.mailbox.address())
      .kv("recipients", static_cast<uint64_t>(recipients_.size()))
      .kv("size", data_report().size)
      .kv("channel", policy::channel_name(channel()))
      .kv("client_name", client_name_.empty() ? "unknown" : client_name_)
      .kv("user", user_ ? user_->canonical : "-")
      .kv("ms", static_cast<int64_t>(ms.count()));
  reply(render(250, {2, 0, 0}, "Ok: queued as " + *id));
  reset_transaction();
  if (context_.on_queued) context_.on_queued();
}

void SmtpSession::rset(const Request&) {
  reset_transaction();
  reply(render(250, {2, 0, 0}, "OK"));
}

void SmtpSession::noop(const Request&) { reply(render(250, {2, 0, 0}, "OK")); }

// VRFY and EXPN would tell a harvester which addresses exist (RFC 5321 §3.5.3 allows 252).
void SmtpSession::vrfy(const Request&) {
  reply(render(252, {2, 5, 2}, "Cannot VRFY user, but will accept message and attempt delivery"));
}

void SmtpSession::expn(const Request&) { reply(render(502, {5, 5, 1}, "EXPN not available")); }

void SmtpSession::help(const Request&) {
  reply(render(214, {2, 0, 0}, "See RFC 5321 (https://www.rfc-editor.org/rfc/rfc5321)"));
}

void SmtpSession::quit(const Request&) {
  set_state(State::Closing);
  reply(render(221, {2, 0, 0}, config_->host_name + " closing connection"));
  close_session();
}

void SmtpSession::reset_transaction() {
  data_timer_.stop();
  mail_ = {};
  recipients_.clear();
  client_recipients_ = 0;
  recipient_limit_logged_ = false;
  content_.clear();
  content_.shrink_to_fit();
  bdat_refusal_.reset();
  set_raw(false);
  set_phase("command");
  const auto s = state<State>();
  if (s != State::Closing && s != State::Auth) set_state(greeted_ ? State::Ready : State::Greeting);
}

// RFC 3207 §4.2: after TLS the client greets again and everything learnt before is forgotten.
void SmtpSession::on_forget_plaintext() {
  set_state(State::Greeting);
  reset_transaction();
  helo_.clear();
  esmtp_ = false;
  greeted_ = false;
  user_.reset();
  relay_.reset();
  auth_final_ack_ = false;
  set_state(State::Greeting);
}

}  // namespace mta::smtpd
