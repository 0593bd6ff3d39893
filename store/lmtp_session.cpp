// lmtp_session.cpp: one LMTP connection (lmtp_session.hpp). RFC 2033 on RFC 5321's commands; every
// 250 after the data is sent only once the delivery's commit is on disk.
#include "store/lmtp_session.hpp"

#include <algorithm>
#include <ctime>

#include "common/ascii.hpp"
#include "common/authclient/connection_facts.hpp"
#include "common/metrics/metrics.hpp"
#include "common/smtp/reply.hpp"
#include "common/tls/certmap_dn.hpp"
#include "store/mime/structure.hpp"

namespace store {
namespace {

using common::line::CommandFlag;
using common::line::in_states;
using common::line::Request;
namespace smtp = common::smtp;

constexpr std::string_view kComponent = "lmtp";

common::metrics::Family<common::metrics::Counter>& deliveries() {
  static auto& family = common::metrics::default_registry().counter_family(
      "postern_store_deliveries_total", "LMTP recipients answered after the data, by outcome", {"outcome"});
  return family;
}

common::metrics::Family<common::metrics::Counter>& rejects() {
  static auto& family = common::metrics::default_registry().counter_family(
      "postern_store_lmtp_rejects_total", "LMTP commands and messages refused, by reason", {"reason"});
  return family;
}

std::string render(int code, smtp::EnhancedCode enh, std::string_view text) {
  return smtp::render_reply(code, enh, text);
}

// The certificate's CN, as the TLS layer verified it.
std::string common_name(std::string_view subject) {
  auto dn = common::tls::parse_dn(subject);
  if (!dn) return {};
  for (const auto& rdn : dn->rdns) {
    for (const auto& ava : rdn) {
      if (!ava.ber && common::tls::canonical_attr_type(ava.type) == "cn") return ava.value;
    }
  }
  return {};
}

}  // namespace

// LHLO is the only greeting (RFC 2033 §4.1); HELO and EHLO get a clear refusal rather than 500.
const common::line::LineSession::Entry LmtpSession::kCommands[] = {
    {"LHLO", handler<&LmtpSession::lhlo>, common::line::kAnyState,
     CommandFlag::PreTls | CommandFlag::LastInPipeline | CommandFlag::NeedsArguments},
    {"HELO", handler<&LmtpSession::helo>, common::line::kAnyState, CommandFlag::PreTls},
    {"EHLO", handler<&LmtpSession::helo>, common::line::kAnyState, CommandFlag::PreTls},
    {"STARTTLS", handler<&LmtpSession::starttls>, in_states(State::Greeting, State::Ready),
     CommandFlag::PreTls | CommandFlag::LastInPipeline | CommandFlag::NoArguments},
    {"MAIL", handler<&LmtpSession::mail>, in_states(State::Ready), CommandFlag::NeedsArguments},
    {"RCPT", handler<&LmtpSession::rcpt>, in_states(State::Mail, State::Rcpt), CommandFlag::NeedsArguments},
    {"DATA", handler<&LmtpSession::data>, in_states(State::Rcpt), CommandFlag::LastInPipeline | CommandFlag::NoArguments},
    {"BDAT", handler<&LmtpSession::bdat>, in_states(State::Rcpt, State::Bdat), CommandFlag::NeedsArguments},
    {"RSET", handler<&LmtpSession::rset>, common::line::kAnyState, CommandFlag::NoArguments},
    {"NOOP", handler<&LmtpSession::noop>, common::line::kAnyState, CommandFlag::PreTls | CommandFlag::CountsAsError},
    {"QUIT", handler<&LmtpSession::quit>, common::line::kAnyState,
     CommandFlag::PreTls | CommandFlag::LastInPipeline | CommandFlag::NoArguments},
};

LmtpSession::LmtpSession(common::runtime::Connection& connection, const LmtpContext& context)
    : ServerSession(connection, kCommands,
                    [&] {
                      common::line::LineSessionOptions o;
                      o.component = std::string(kComponent);
                      o.max_line = common::smtpd::kMaxDataLine;
                      o.max_command_line = 998;  // RFC 5321 §4.5.3.1.4 is 512; paths with parameters run longer
                      o.tls_required = context.tls_required;
                      o.errors.max_errors = static_cast<unsigned>(context.config->lmtp.max_errors);
                      o.errors.junk_allowance = 100;
                      return o;
                    }(),
                    {context.host_name, context.starttls}),
      context_(context) {}

void LmtpSession::count_reject(std::string_view reason) { rejects().with({reason}).inc(); }

void LmtpSession::on_open() {
  set_phase("greeting");
  reply(render(220, {}, context_.host_name + " Postern store LMTP ready"));
}

bool LmtpSession::client_allowed() {
  if (context_.config->lmtp.plaintext && !tls_on()) return true;
  const auto* facts = connection().transform() ? connection().transform()->facts() : nullptr;
  std::string name = facts && facts->client_verified ? common_name(facts->client_subject) : std::string();
  const auto& allowed = context_.config->lmtp.allowed_clients;
  const bool ok = !name.empty() && std::any_of(allowed.begin(), allowed.end(), [&](const std::string& a) {
    return common::ascii::iequals(a, name);
  });
  if (ok) {
    client_name_ = name;
    return true;
  }
  if (context_.config->lmtp.plaintext && allowed.empty()) return true;  // TLS without client checks
  count_reject("client_not_allowed");
  log_line(common::log::warning(kComponent))
      .event("client_refused")
      .kv("reason", name.empty() ? "no verified client certificate" : "certificate name not in [lmtp] allowed_clients")
      .client_text("certificate", facts ? facts->client_subject : "");
  reply(render(554, {5, 7, 1}, "Client certificate not allowed to deliver here"));
  set_state(State::Closing);
  close_session();
  return false;
}

void LmtpSession::lhlo(const Request& r) {
  if (tls_on() || !context_.tls_required) {
    if (!client_allowed()) return;
  }
  auto helo = smtp::parse_helo(r.args, true, limits());
  if (!helo) return refuse(helo.error());
  reset_transaction();
  lhlo_done_ = true;
  smtp::Capabilities caps;
  caps.domain = context_.host_name;
  caps.greeting = "Postern store";
  caps.size = context_.config->lmtp.max_message_size;
  caps.smtputf8 = true;
  caps.chunking = true;
  caps.starttls = context_.starttls && !tls_on();
  caps.xid = true;
  reply(smtp::render_ehlo(caps));
  set_state(State::Ready);
}

void LmtpSession::helo(const Request&) {
  count_error();
  count_reject("helo_in_lmtp");
  reply(render(500, {5, 5, 1}, "This is LMTP: use LHLO (RFC 2033)"));
}

void LmtpSession::starttls(const Request&) { starttls_command(); }

smtp::CommandLimits LmtpSession::limits() const {
  smtp::CommandLimits l;
  l.max_message = context_.config->lmtp.max_message_size;
  l.smtputf8 = true;
  l.xid = true;
  l.strict_helo = false;  // the client is our own mta; its name is only logged
  return l;
}

void LmtpSession::mail(const Request& r) {
  set_phase("mail");
  auto args = smtp::parse_mail(r.args, limits());
  if (!args) return refuse(args.error());
  from_ = args->path.null ? std::string() : args->path.mailbox.address();
  delivery_id_ = args->params.xid.value_or("");
  smtputf8_ = args->params.smtputf8;
  recipients_.clear();
  set_state(State::Mail);
  reply(render(250, {2, 1, 0}, "Sender OK"));
}

common::authclient::ConnectionFacts LmtpSession::facts() {
  return common::authclient::connection_facts(connection().info(),
                                              connection().transform() ? connection().transform()->facts() : nullptr);
}

void LmtpSession::rcpt(const Request& r) {
  set_phase("rcpt");
  auto args = smtp::parse_rcpt(r.args, smtputf8_, limits());
  if (!args) return refuse(args.error());
  if (recipients_.size() >= context_.config->lmtp.max_recipients) {
    count_reject("too_many_recipients");
    reply(render(452, {4, 5, 3}, "Too many recipients"));
    return;
  }
  std::string address = args->path.postmaster ? "postmaster" : args->path.mailbox.address();
  // RFC 5233 subaddress: "user+detail@domain" is user's, filed into the folder "detail" if it exists.
  std::string detail;
  const auto& sep = context_.config->lmtp.subaddress_separator;
  const std::string& local = args->path.mailbox.local;
  if (!sep.empty() && !args->path.mailbox.quoted) {
    if (auto at = local.find(sep[0]); at != std::string::npos && at > 0) detail = local.substr(at + 1);
  }
  suspend();
  lookup(address, address, detail, detail.empty());
}

// The full address first; "user+detail" unknown as such is asked again as "user".
void LmtpSession::lookup(std::string address, std::string asked, std::string detail, bool base_tried) {
  auto resume = resumer();
  context_.auth->lookup_recipient(
      *context_.loop, connection().alive(), facts(), asked,
      [this, resume, address, detail, base_tried](common::Result<common::authclient::RecipientInfo> info) mutable {
        if (!info) {
          count_reject("directory_unavailable");
          log_line(common::log::warning(kComponent)).event("lookup_failed").kv("reason", info.error().detail);
          reply(info.error().kind == common::ErrorKind::Protocol
                    ? render(501, {5, 1, 3}, "Bad recipient address")
                    : render(451, {4, 4, 3}, "Directory unavailable, try again later"));
          return resume();
        }
        if (info->kind == common::authclient::RecipientKind::Unknown && !base_tried) {
          const auto at = address.rfind('@');
          const auto cut = address.find(context_.config->lmtp.subaddress_separator[0]);
          std::string base = address.substr(0, cut) + (at == std::string::npos ? "" : address.substr(at));
          return lookup(address, base, detail, true);
        }
        accept_recipient(address, *info, detail);
        resume();
      });
}

void LmtpSession::accept_recipient(std::string address, const common::authclient::RecipientInfo& info,
                                   std::string detail) {
  using common::authclient::RecipientKind;
  if (info.kind != RecipientKind::User) {
    // Aliases are expanded by the mta; the store only holds mailboxes.
    count_reject("unknown_recipient");
    reply(render(550, {5, 1, 1}, smtp::sanitize(address) + ": no such mailbox here"));
    return;
  }
  const auto& names = context_.config->store.names;
  if (std::none_of(names.begin(), names.end(),
                   [&](const std::string& n) { return common::ascii::iequals(n, info.mail_host); })) {
    count_reject("not_on_this_store");
    log_line(common::log::warning(kComponent))
        .event("misrouted")
        .client_text("recipient", address)
        .kv("mail_host", info.mail_host);
    reply(render(550, {5, 1, 6}, smtp::sanitize(address) + ": mailbox lives on another store"));
    return;
  }
  if (info.status == "deleted" || info.status == "removed") {
    count_reject("mailbox_disabled");
    reply(render(550, {5, 2, 1}, smtp::sanitize(address) + ": mailbox disabled"));
    return;
  }
  // A mailbox already at its quota is refused here, before the data is sent (TH-03, mail bombs);
  // the exact check, with this message's size, is made again at the commit.
  auto usage = context_.store->user(info.canonical);
  if (!usage) {
    log_line(common::log::error(kComponent)).event("store_read_failed").kv("reason", usage.error().detail);
    reply(render(451, {4, 3, 0}, "Local error, try again later"));
    return;
  }
  if (*usage && ((info.quota_bytes != 0 && (*usage)->bytes_used >= info.quota_bytes) ||
                 (info.quota_messages != 0 && (*usage)->messages >= info.quota_messages))) {
    count_reject("over_quota");
    reply(render(452, {4, 2, 2}, smtp::sanitize(address) + ": mailbox full"));
    return;
  }
  recipients_.push_back(Recipient{address, info.canonical, detail, info.quota_bytes, info.quota_messages});
  set_state(State::Rcpt);
  reply(render(250, {2, 1, 5}, smtp::sanitize(address) + " OK"));
}

void LmtpSession::begin_message() {
  body_ = "Return-Path: <" + from_ + ">\r\n";
  mime_.reset();
  mime_.feed(body_);
}

void LmtpSession::on_content(std::string_view piece) {
  body_.append(piece);
  mime_.feed(piece);
}

void LmtpSession::data(const Request&) {
  smtp::DataOptions o;
  o.max_size = context_.config->lmtp.max_message_size;
  o.max_line = 998;
  o.bare = smtp::BarePolicy::Refuse;
  o.nul = smtp::NulPolicy::Refuse;
  begin_message();
  set_state(State::Data);
  begin_data(o);
}

void LmtpSession::bdat(const Request& r) {
  auto args = smtp::parse_bdat(r.args, limits());
  if (!args) return refuse(args.error());
  const bool first = state<State>() == State::Rcpt;
  if (first) {
    begin_message();
    set_state(State::Bdat);
  }
  smtp::DataOptions o;
  o.max_size = context_.config->lmtp.max_message_size;
  o.bare = smtp::BarePolicy::Keep;  // BDAT is binary-safe (RFC 3030 §2): the bytes are the message
  o.nul = smtp::NulPolicy::Keep;
  begin_bdat(*args, first, o);
}

void LmtpSession::reply_all(std::string_view line) {
  for (size_t i = 0; i < recipients_.size(); ++i) reply(line);
}

void LmtpSession::on_message_end(std::optional<smtp::SmtpError> refusal) {
  if (refusal) {
    for (size_t i = 0; i < recipients_.size(); ++i) deliveries().with({"refused"}).inc();
    reply_all(smtp::render_reply(*refusal));
    reset_transaction();
    return;
  }
  auto delivery = std::make_shared<Delivery>();
  delivery->delivery_id = delivery_id_;
  delivery->body = std::move(body_);
  delivery->structure = mime::encode(mime_.finish());
  delivery->internal_date = static_cast<int64_t>(std::time(nullptr));
  for (const auto& r : recipients_) {
    delivery->recipients.push_back(DeliveryRecipient{r.address, r.user, r.folder, r.quota_bytes, r.quota_messages});
  }
  body_.clear();
  suspend();
  const auto started = std::chrono::steady_clock::now();
  const bool queued = context_.store->deliver(
      *context_.loop, connection().alive(), delivery,
      [this, started, resume = resumer()](const common::Result<std::vector<RecipientResult>>& result) {
        delivered(result, started);
        resume();
      });
  if (!queued) {
    count_reject("store_busy");
    log_line(common::log::warning(kComponent)).event("store_busy");
    reply_all(render(451, {4, 3, 0}, "Store busy, try again later"));
    reset_transaction();
    resume();
  }
}

void LmtpSession::delivered(const common::Result<std::vector<RecipientResult>>& result,
                            std::chrono::steady_clock::time_point started) {
  const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - started);
  if (!result) {
    // Nothing of this delivery is stored (the commit failed or the write rolled back).
    const bool full = result.error().kind == common::ErrorKind::TempFail;
    log_line(common::log::error(kComponent))
        .event("delivery_failed")
        .kv("reason", result.error().detail)
        .kv("xid", delivery_id_);
    for (size_t i = 0; i < recipients_.size(); ++i) deliveries().with({"failed"}).inc();
    reply_all(full ? render(452, {4, 3, 1}, "Insufficient system storage, try again later")
                   : render(451, {4, 3, 0}, "Local error in processing, try again later"));
    reset_transaction();
    return;
  }
  std::string stored;
  for (size_t i = 0; i < recipients_.size() && i < result->size(); ++i) {
    const auto& rcpt = recipients_[i];
    const auto& r = (*result)[i];
    switch (r.outcome) {
      case RecipientOutcome::Delivered:
        deliveries().with({"delivered"}).inc();
        reply(render(250, {2, 1, 5}, smtp::sanitize(rcpt.address) + " delivered to " + r.mailbox));
        stored += (stored.empty() ? "" : ",") + r.mailbox + "/" + std::to_string(r.uid);
        break;
      case RecipientOutcome::Duplicate:
        // A retry of a delivery that was committed but whose reply never reached the client.
        deliveries().with({"duplicate"}).inc();
        reply(render(250, {2, 1, 5}, smtp::sanitize(rcpt.address) + " already delivered"));
        break;
      case RecipientOutcome::OverQuota:
        deliveries().with({"over_quota"}).inc();
        reply(render(452, {4, 2, 2}, smtp::sanitize(rcpt.address) + ": mailbox full"));
        break;
      case RecipientOutcome::Held:
        deliveries().with({"held"}).inc();
        log_line(common::log::info(kComponent))
            .event("delivery_held")
            .kv("rcpt", rcpt.address)
            .kv("reason", "mailbox " + r.mailbox + " " + kImportHoldReason);
        reply(render(451, {4, 2, 1}, smtp::sanitize(rcpt.address) + ": mailbox " + smtp::sanitize(r.mailbox) +
                                          " is being imported, try again later"));
        break;
    }
  }
  ++messages_;
  errors().reset_junk();
  log_line(common::log::info(kComponent))
      .event("delivered")
      .kv("xid", delivery_id_)
      .kv("recipients", static_cast<uint64_t>(recipients_.size()))
      .kv("stored", stored)
      .kv("size", static_cast<uint64_t>(data_report().size))
      .kv("ms", static_cast<int64_t>(ms.count()));
  reset_transaction();
}

void LmtpSession::rset(const Request&) {
  reset_transaction();
  reply(render(250, {2, 0, 0}, "OK"));
}

void LmtpSession::noop(const Request&) { reply(render(250, {2, 0, 0}, "OK")); }

void LmtpSession::quit(const Request&) {
  set_state(State::Closing);
  reply(render(221, {2, 0, 0}, context_.host_name + " closing connection"));
  close_session();
}

void LmtpSession::reset_transaction() {
  from_.clear();
  delivery_id_.clear();
  smtputf8_ = false;
  recipients_.clear();
  body_.clear();
  body_.shrink_to_fit();
  set_raw(false);
  set_phase("command");
  if (state<State>() != State::Closing) set_state(lhlo_done_ ? State::Ready : State::Greeting);
}

void LmtpSession::on_forget_plaintext() {
  lhlo_done_ = false;
  reset_transaction();
  set_state(State::Greeting);
}

}  // namespace store
