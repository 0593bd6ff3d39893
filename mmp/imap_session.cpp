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

namespace mmp {
namespace {

namespace pb = postern::mailstore::v1;
using imap::Condition;
using store_client::StoreCode;
using store_client::StoreError;

constexpr std::string_view kComponent = "imap";

imap::ParserOptions parser_options(const Config& config) {
  imap::ParserOptions o;
  o.limits = config.imap.limits;
  o.literal_plus = true;
  o.multiappend = false;
  return o;
}

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

pb::Section section_for(const imap::BodySection& s) {
  pb::Section out;
  for (uint32_t p : s.section.part) out.add_part(p);
  out.set_text(static_cast<pb::Section::Text>(s.section.text));
  for (const auto& f : s.section.fields) out.add_fields(f);
  using Item = imap::BodySection::Item;
  out.set_binary(s.item == Item::Binary || s.item == Item::BinarySize);
  out.set_size_only(s.item == Item::BinarySize);
  if (s.partial) {
    out.set_partial(true);
    out.set_offset(s.partial->offset);
    out.set_length(s.partial->length);
  }
  return out;
}

}  // namespace

ImapSession::ImapSession(common::runtime::Connection& connection, ImapContext context)
    : StartTlsSession(connection),
      context_(std::move(context)),
      config_(*context_.config),
      parser_(parser_options(config_)) {
  parser_.set_message_limit(0);  // no APPEND before login (refused before its bytes)
}

ImapSession::~ImapSession() = default;

void ImapSession::on_open() {
  write(imap::status_line("*", Condition::Ok, "", config_.mmp.host_name + " Postern IMAP4rev1 ready"));
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
    waiting_ = true;
    relay_->client_line(r->cancel ? std::string_view("*") : std::string_view(r->text));
    return;
  }
  // IdleEnd needs an accepted IDLE, and IDLE is not offered yet.
}

void ImapSession::parse_error(const imap::ParseError& e) {
  if (appending_) {
    // An APPEND refused after (part of) its message: cancelling the stream commits nothing.
    append_.reset();
    appending_.reset();
  }
  write(imap::parse_error_line(e));
  common::log::info(kComponent).session(connection().info().id).event("parse_error").client_text("reason", e.text);
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
  common::log::warning(kComponent).session(connection().info().id).event("too_many_errors").kv("errors", uint64_t{errors_});
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
  const auto* t = const_cast<ImapSession*>(this)->connection().transform();
  return t != nullptr && t->facts() != nullptr && t->facts()->handshake_done;
}

common::authclient::ConnectionFacts ImapSession::facts() const {
  auto& c = const_cast<ImapSession*>(this)->connection();
  auto f = common::authclient::connection_facts(c.info(), c.transform() ? c.transform()->facts() : nullptr);
  f.service = "imap";
  return f;
}

std::string ImapSession::capabilities(const std::vector<std::string>& mechanisms) const {
  std::string caps = "IMAP4rev1 LITERAL+ SASL-IR ID UNSELECT NAMESPACE UIDPLUS MOVE ESEARCH QUOTA";
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
    common::log::info(kComponent).session(connection().info().id).event("login_failed")
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
    common::log::warning(kComponent).session(connection().info().id).event("store_unavailable")
        .kv("user", success.user.canonical).kv("mail_host", success.user.mail_host).kv("reason", opened.error().detail);
    done(tag, Condition::No, "UNAVAILABLE", "Your mailbox is not available now, try again later");
    return;
  }
  store_ = std::move(*opened);
  user_ = success.user.canonical;
  state_ = State::Authenticated;
  parser_.set_message_limit(config_.imap.limits.max_message);
  common::log::info(kComponent).session(connection().info().id).event("login").kv("user", user_)
      .kv("mail_host", success.user.mail_host);
  done(tag, Condition::Ok, "CAPABILITY " + capabilities({}), "Logged in");
}

std::string ImapSession::mailbox_name(std::string_view wire, std::string_view tag, bool& ok) {
  auto name = imap::mailbox_from_wire(wire, false);
  ok = static_cast<bool>(name);
  if (!ok) {
    write(imap::status_line(tag, Condition::Bad, "", "That mailbox name is not valid modified UTF-7"));
    count_error();
    return {};
  }
  return *name;
}

void ImapSession::select(const imap::Command& c) {
  const auto& a = std::get<imap::SelectArgs>(c.args);
  bool ok = false;
  std::string name = mailbox_name(a.mailbox, c.tag, ok);
  if (!ok) return;
  if (selected_) {
    // RFC 9051 §6.3.2: selecting closes the mailbox selected before, without expunging.
    selected_.reset();
    state_ = State::Authenticated;
    write(imap::status_line("*", Condition::Ok, "CLOSED", "Previous mailbox is now closed"));
  }
  const bool read_only = c.verb == imap::Verb::Examine;
  pb::SelectRequest request;
  request.set_name(name);
  wait();
  store_->select(std::move(request), [this, tag = c.tag, read_only](store_client::StoreResult<pb::SelectResponse> r) {
    if (!r) return done(tag, Condition::No, code_for(r.error()), text_for(r.error()));
    auto box = std::make_unique<Selected>();
    box->ref = r->mailbox();
    box->name = r->name();
    box->read_only = read_only;
    box->highest_modseq = r->status().highest_modseq();
    for (const auto& range : r->uids()) {
      for (uint64_t u = range.first(); u <= range.last(); ++u) box->uids.push_back(static_cast<uint32_t>(u));
    }
    std::vector<std::string> flags(r->flags().begin(), r->flags().end());
    std::string out = "* FLAGS ";
    imap::append_flag_list(out, flags);
    out += "\r\n";
    std::string permanent = "PERMANENTFLAGS ";
    std::vector<std::string> allowed;
    if (!read_only) {
      allowed = flags;
      if (r->keywords_allowed()) allowed.push_back("\\*");
    }
    imap::append_flag_list(permanent, allowed);
    out += imap::status_line("*", Condition::Ok, permanent, read_only ? "No permanent flags" : "Flags permitted");
    out += "* " + std::to_string(box->uids.size()) + " EXISTS\r\n";
    out += "* 0 RECENT\r\n";  // IMAP4rev1 clients expect it; nothing is \Recent here
    if (r->first_unseen_uid() != 0) {
      const auto it = std::lower_bound(box->uids.begin(), box->uids.end(), r->first_unseen_uid());
      if (it != box->uids.end() && *it == r->first_unseen_uid()) {
        out += imap::status_line("*", Condition::Ok, "UNSEEN " + std::to_string(it - box->uids.begin() + 1),
                                 "First unseen message");
      }
    }
    out += imap::status_line("*", Condition::Ok, "UIDVALIDITY " + std::to_string(r->status().uidvalidity()), "UIDs valid");
    out += imap::status_line("*", Condition::Ok, "UIDNEXT " + std::to_string(r->status().uidnext()), "Predicted next UID");
    write(out);
    selected_ = std::move(box);
    state_ = State::Selected;
    done(tag, Condition::Ok, read_only ? "READ-ONLY" : "READ-WRITE",
         std::string(read_only ? "EXAMINE" : "SELECT") + " completed");
  });
}

void ImapSession::list(const imap::Command& c) {
  const auto& a = std::get<imap::ListArgs>(c.args);
  const bool lsub = c.verb == imap::Verb::Lsub;
  const std::string word = lsub ? "LSUB" : "LIST";
  if (a.patterns.size() == 1 && a.patterns[0].empty() && !a.extended) {
    // RFC 9051 §6.3.9: an empty pattern asks for the hierarchy delimiter and the root.
    write("* " + word + " (\\Noselect) \"/\" \"\"\r\n");
    write(imap::status_line(c.tag, Condition::Ok, "", word + " completed"));
    return;
  }
  pb::ListMailboxesRequest request;
  for (const auto& p : a.patterns) {
    auto name = imap::mailbox_from_wire(a.reference + p, false);
    if (!name) return bad(c.tag, "That mailbox pattern is not valid modified UTF-7");
    request.add_patterns(*name);
  }
  request.set_subscribed_only(a.select_subscribed || lsub);
  wait();
  const bool say_subscribed = !lsub && (a.return_subscribed || a.select_subscribed);  // RFC 5258 §3.4
  store_->list(std::move(request), [this, tag = c.tag, say_subscribed, word](
                                       store_client::StoreResult<pb::ListMailboxesResponse> r) {
    if (!r) return done(tag, Condition::No, code_for(r.error()), text_for(r.error()));
    std::string out;
    for (const auto& m : r->mailboxes()) {
      std::vector<std::string> attrs;
      if (!m.exists()) attrs.push_back(word == "LSUB" ? "\\Noselect" : "\\NonExistent");
      attrs.push_back(m.has_children() ? "\\HasChildren" : "\\HasNoChildren");
      if (say_subscribed && m.subscribed()) attrs.push_back("\\Subscribed");
      for (const auto& s : m.special_use()) attrs.push_back(s);
      out += "* " + word + " ";
      imap::append_flag_list(out, attrs);
      out += " \"/\" ";
      imap::append_mailbox(out, m.name(), false);
      out += "\r\n";
    }
    write(out);
    done(tag, Condition::Ok, "", word + " completed");
  });
}

void ImapSession::status(const imap::Command& c) {
  const auto& a = std::get<imap::StatusArgs>(c.args);
  bool ok = false;
  std::string name = mailbox_name(a.mailbox, c.tag, ok);
  if (!ok) return;
  pb::StatusRequest request;
  request.set_name(name);
  request.set_deleted(std::find(a.items.begin(), a.items.end(), imap::StatusItem::Deleted) != a.items.end());
  wait();
  store_->status(std::move(request), [this, tag = c.tag, items = a.items, wire = a.mailbox](
                                         store_client::StoreResult<pb::MailboxEntry> r) {
    if (!r) return done(tag, Condition::No, code_for(r.error()), text_for(r.error()));
    const auto& s = r->status();
    std::string out = "* STATUS ";
    imap::append_mailbox(out, r->name(), false);
    out += " (";
    bool first = true;
    for (auto item : items) {
      uint64_t value = 0;
      switch (item) {
        case imap::StatusItem::Messages: value = s.messages(); break;
        case imap::StatusItem::Recent: value = 0; break;
        case imap::StatusItem::UidNext: value = s.uidnext(); break;
        case imap::StatusItem::UidValidity: value = s.uidvalidity(); break;
        case imap::StatusItem::Unseen: value = s.unseen(); break;
        case imap::StatusItem::Deleted: value = s.deleted(); break;
        case imap::StatusItem::Size: value = s.size(); break;
        case imap::StatusItem::HighestModSeq: value = s.highest_modseq(); break;
        case imap::StatusItem::AppendLimit: value = config_.imap.limits.max_message; break;
      }
      if (!first) out += ' ';
      first = false;
      out += std::string(imap::status_item_name(item)) + " " + std::to_string(value);
    }
    out += ")\r\n";
    write(out);
    done(tag, Condition::Ok, "", "STATUS completed");
  });
}

uint32_t ImapSession::sequence_of(uint32_t uid) const {
  const auto& uids = selected_->uids;
  const auto it = std::lower_bound(uids.begin(), uids.end(), uid);
  return it != uids.end() && *it == uid ? static_cast<uint32_t>(it - uids.begin() + 1) : 0;
}

std::vector<pb::UidRange> ImapSession::uid_ranges(const imap::SequenceSet& set, bool uid) const {
  const auto& uids = selected_->uids;
  std::vector<pb::UidRange> out;
  if (uids.empty()) return out;
  if (uid) {
    for (const auto& r : imap::resolve(set, uids.back())) {
      pb::UidRange u;
      u.set_first(r.first);
      u.set_last(r.last);
      out.push_back(u);
    }
    return out;
  }
  // Sequence numbers name positions in this session's view: each run of them becomes UID runs.
  for (const auto& r : imap::resolve(set, static_cast<uint32_t>(uids.size()))) {
    for (uint64_t n = r.first; n <= r.last && n <= uids.size(); ++n) {
      const uint32_t u = uids[n - 1];
      if (!out.empty() && out.back().last() + 1 == u) {
        out.back().set_last(u);
      } else {
        pb::UidRange range;
        range.set_first(u);
        range.set_last(u);
        out.push_back(range);
      }
    }
  }
  return out;
}

void ImapSession::fetch(const imap::Command& c) {
  const auto& a = std::get<imap::FetchArgs>(c.args);
  if (a.set.saved) {
    write(imap::status_line(c.tag, Condition::Bad, "", "There is no saved search result"));
    return count_error();
  }
  pb::FetchRequest request;
  *request.mutable_mailbox() = selected_->ref;
  for (auto& r : uid_ranges(a.set, c.uid)) *request.add_uids() = std::move(r);
  if (request.uids().empty()) {
    write(imap::status_line(c.tag, Condition::Ok, "", "FETCH completed"));
    return;
  }
  bool sets_seen = false;
  for (const auto& s : a.sections) sets_seen = sets_seen || !s.peek;
  sets_seen = sets_seen && !selected_->read_only;
  request.set_flags(a.flags || sets_seen);
  request.set_internal_date(a.internal_date);
  request.set_size(a.size);
  request.set_envelope(a.envelope);
  request.set_bodystructure(a.bodystructure);
  request.set_body(a.body);
  request.set_modseq(a.modseq);
  for (const auto& s : a.sections) *request.add_sections() = section_for(s);
  const auto uids = request.uids();
  auto args = std::make_shared<imap::FetchArgs>(a);
  if (c.uid) args->uid = true;
  if (sets_seen) args->flags = true;
  wait();
  auto run = [this, tag = c.tag, args, request = std::move(request)]() mutable {
    fetch_uid_ = 0;
    fetch_open_ = false;
    fetch_ = store_->fetch(
        std::move(request), [this, args](pb::FetchResponse&& reply) { fetch_reply(std::move(reply), *args); },
        [this, tag](store_client::StoreResult<void> r) {
          if (fetch_open_) write(")\r\n");
          fetch_open_ = false;
          fetch_.reset();
          if (!r) return done(tag, Condition::No, code_for(r.error()), text_for(r.error()));
          done(tag, Condition::Ok, "", "FETCH completed");
        });
  };
  if (!sets_seen) return run();
  // RFC 9051 §6.4.5: BODY[] without .PEEK sets \Seen; set first, so the FLAGS answered include it.
  pb::StoreFlagsRequest seen;
  *seen.mutable_mailbox() = selected_->ref;
  *seen.mutable_uids() = uids;
  seen.set_mode(pb::StoreFlagsRequest::ADD);
  seen.add_flags("\\Seen");
  store_->store_flags(std::move(seen), [this, tag = c.tag, run = std::move(run)](
                                           store_client::StoreResult<pb::StoreFlagsResponse> r) mutable {
    if (!r) return done(tag, Condition::No, code_for(r.error()), text_for(r.error()));
    run();
  });
}

void ImapSession::fetch_reply(pb::FetchResponse&& reply, const imap::FetchArgs& args) {
  std::string out;
  if (reply.uid() != fetch_uid_ || !fetch_open_) {
    if (fetch_open_) out += ")\r\n";
    fetch_open_ = false;
    fetch_uid_ = reply.uid();
    const uint32_t seq = sequence_of(reply.uid());
    if (seq == 0) return write(out);  // arrived after this session's view: told at the next NOOP
    out += "* " + std::to_string(seq) + " FETCH (";
    fetch_open_ = true;
    fetch_empty_ = true;
    auto item = [&](std::string_view text) {
      if (!fetch_empty_) out += ' ';
      fetch_empty_ = false;
      out += text;
    };
    if (args.uid) item("UID " + std::to_string(reply.uid()));
    if (args.flags) {
      item("FLAGS ");
      std::vector<std::string> flags(reply.flags().flags().begin(), reply.flags().flags().end());
      imap::append_flag_list(out, flags);
    }
    if (args.internal_date) {
      item("INTERNALDATE ");
      imap::append_date_time(out, reply.internal_date());
    }
    if (args.size) item("RFC822.SIZE " + std::to_string(reply.size()));
    if (args.envelope) item("ENVELOPE " + reply.envelope());
    if (args.bodystructure) item("BODYSTRUCTURE " + reply.bodystructure());
    if (args.body) item("BODY " + reply.body());
    if (args.modseq) item("MODSEQ (" + std::to_string(reply.modseq()) + ")");
  }
  if (!fetch_open_) return write(out);
  using Item = imap::BodySection::Item;
  for (const auto& piece : reply.sections()) {
    if (piece.index() >= static_cast<uint32_t>(args.sections.size())) continue;
    const auto& asked = args.sections[piece.index()];
    if (piece.offset() == 0) {
      if (!fetch_empty_) out += ' ';
      fetch_empty_ = false;
      imap::append_section_name(out, asked, false);
      out += ' ';
      if (asked.item == Item::BinarySize) {
        out += std::to_string(piece.total());
        continue;
      }
      if (piece.missing()) {
        out += asked.item == Item::Binary ? "NIL" : "\"\"";
        continue;
      }
      out += asked.item == Item::Binary ? "~{" : "{";
      out += std::to_string(piece.total()) + "}\r\n";
    }
    out += piece.data();
  }
  write(out);
  if (connection().write_blocked() && fetch_) fetch_->pause();
}

void ImapSession::on_writable() {
  if (fetch_) fetch_->resume();
}

void ImapSession::store(const imap::Command& c) {
  const auto& a = std::get<imap::StoreArgs>(c.args);
  if (selected_->read_only) {
    write(imap::status_line(c.tag, Condition::No, "READ-ONLY", "The mailbox was opened with EXAMINE"));
    return;
  }
  for (const auto& f : a.flags) {
    // RFC 9051 §2.3.2: \Recent is the server's; no client may set or clear it.
    if (common::ascii::iequals(f, "\\Recent")) return bad(c.tag, "\\Recent cannot be stored");
  }
  if (a.set.saved) return bad(c.tag, "There is no saved search result");
  pb::StoreFlagsRequest request;
  *request.mutable_mailbox() = selected_->ref;
  for (auto& r : uid_ranges(a.set, c.uid)) *request.add_uids() = std::move(r);
  if (request.uids().empty()) return write(imap::status_line(c.tag, Condition::Ok, "", "STORE completed"));
  request.set_mode(static_cast<pb::StoreFlagsRequest::Mode>(a.mode));
  for (const auto& f : a.flags) request.add_flags(f);
  if (a.unchanged_since) request.set_unchanged_since(*a.unchanged_since);
  wait();
  store_->store_flags(std::move(request), [this, tag = c.tag, uid = c.uid, silent = a.silent](
                                              store_client::StoreResult<pb::StoreFlagsResponse> r) {
    if (!r) return done(tag, Condition::No, code_for(r.error()), text_for(r.error()));
    std::string out;
    for (const auto& u : r->updated()) {
      const uint32_t seq = sequence_of(u.uid());
      if (seq == 0 || silent) continue;
      out += "* " + std::to_string(seq) + " FETCH (";
      if (uid) out += "UID " + std::to_string(u.uid()) + " ";
      out += "FLAGS ";
      std::vector<std::string> flags(u.flags().begin(), u.flags().end());
      imap::append_flag_list(out, flags);
      out += ")\r\n";
    }
    write(out);
    if (!r->modified().empty()) {
      // RFC 7162 §3.1.3: the messages whose MODSEQ was past UNCHANGEDSINCE were left alone.
      std::vector<imap::SeqRange> modified;
      for (const auto& m : r->modified()) modified.push_back({m.first(), m.last()});
      std::string code = "MODIFIED ";
      imap::append_sequence_set(code, modified);
      return done(tag, Condition::Ok, code, "Conditional STORE failed for some messages");
    }
    done(tag, Condition::Ok, "", "STORE completed");
  });
}

void ImapSession::expunged(const google::protobuf::RepeatedPtrField<pb::UidRange>& ranges) {
  std::vector<uint32_t> gone;
  for (const auto& r : ranges) {
    auto& uids = selected_->uids;
    auto from = std::lower_bound(uids.begin(), uids.end(), r.first());
    for (auto it = from; it != uids.end() && *it <= r.last(); ++it) gone.push_back(*it);
  }
  std::sort(gone.begin(), gone.end());
  std::string out;
  for (auto it = gone.rbegin(); it != gone.rend(); ++it) {
    const uint32_t seq = sequence_of(*it);
    if (seq == 0) continue;
    out += "* " + std::to_string(seq) + " EXPUNGE\r\n";
    selected_->uids.erase(selected_->uids.begin() + (seq - 1));
  }
  write(out);
}

void ImapSession::expunge(const imap::Command& c) {
  const auto& a = std::get<imap::ExpungeArgs>(c.args);
  if (selected_->read_only) {
    write(imap::status_line(c.tag, Condition::No, "READ-ONLY", "The mailbox was opened with EXAMINE"));
    return;
  }
  pb::ExpungeRequest request;
  *request.mutable_mailbox() = selected_->ref;
  if (a.uids) {
    // UID EXPUNGE (RFC 4315 §2.1): only these UIDs, and only if \Deleted.
    if (a.uids->saved) return bad(c.tag, "There is no saved search result");
    for (auto& r : uid_ranges(*a.uids, true)) *request.add_uids() = std::move(r);
    request.set_restrict_to_uids(true);
  }
  wait();
  store_->expunge(std::move(request), [this, tag = c.tag](store_client::StoreResult<pb::ExpungeResponse> r) {
    if (!r) return done(tag, Condition::No, code_for(r.error()), text_for(r.error()));
    expunged(r->expunged());
    done(tag, Condition::Ok, "", "EXPUNGE completed");
  });
}

void ImapSession::search(const imap::Command& c) {
  const auto& a = std::get<imap::SearchArgs>(c.args);
  if (a.charset && !common::ascii::iequals(*a.charset, "US-ASCII") && !common::ascii::iequals(*a.charset, "UTF-8")) {
    write(imap::status_line(c.tag, Condition::No, "BADCHARSET (US-ASCII UTF-8)", "That charset is not supported"));
    return;
  }
  if (a.ret_save) {
    write(imap::status_line(c.tag, Condition::No, "CANNOT", "SEARCH RETURN (SAVE) is not offered here"));
    return;
  }
  pb::SearchRequest request;
  *request.mutable_mailbox() = selected_->ref;
  for (const auto& key : a.program) {
    auto* k = request.add_program();
    switch (key.kind) {
      case imap::SearchKind::Sequence:
      case imap::SearchKind::Uid: {
        if (key.set.saved) return bad(c.tag, "There is no saved search result");
        k->set_kind(pb::SearchKey::UID);
        for (auto& r : uid_ranges(key.set, key.kind == imap::SearchKind::Uid)) *k->add_uids() = std::move(r);
        break;
      }
      case imap::SearchKind::Recent:
        // Nothing is \Recent here (no session sees a message first): NOT ALL matches nothing.
        k->set_kind(pb::SearchKey::NOT);
        request.add_program()->set_kind(pb::SearchKey::ALL);
        break;
      default:
        k->set_kind(static_cast<pb::SearchKey::Kind>(key.kind));
        k->set_field(key.field);
        k->set_text(key.text);
        k->set_number(key.number);
        k->set_day(key.day);
        k->set_operands(key.operands);
        break;
    }
  }
  wait();
  store_->search(std::move(request), [this, tag = c.tag, uid = c.uid, a](store_client::StoreResult<pb::SearchResponse> r) {
    if (!r) return done(tag, Condition::No, code_for(r.error()), text_for(r.error()));
    std::vector<uint32_t> numbers;
    for (const auto& range : r->uids()) {
      for (uint64_t u = range.first(); u <= range.last(); ++u) {
        const uint32_t n = uid ? static_cast<uint32_t>(u) : sequence_of(static_cast<uint32_t>(u));
        if (n != 0 && (uid ? sequence_of(n) != 0 : true)) numbers.push_back(n);
      }
    }
    std::sort(numbers.begin(), numbers.end());
    std::string out;
    if (!a.esearch) {
      out = "* SEARCH";
      for (uint32_t n : numbers) out += " " + std::to_string(n);
      out += "\r\n";
    } else {
      // RFC 4731 §3.1: only what was asked; RETURN () means ALL.
      const bool all = a.ret_all || (!a.ret_min && !a.ret_max && !a.ret_count);
      out = "* ESEARCH (TAG ";
      imap::append_quoted(out, tag);
      out += ")";
      if (uid) out += " UID";
      if (a.ret_min && !numbers.empty()) out += " MIN " + std::to_string(numbers.front());
      if (a.ret_max && !numbers.empty()) out += " MAX " + std::to_string(numbers.back());
      if (all && !numbers.empty()) {
        out += " ALL ";
        imap::append_number_set(out, numbers);
      }
      if (a.ret_count) out += " COUNT " + std::to_string(numbers.size());
      out += "\r\n";
    }
    write(out);
    done(tag, Condition::Ok, "", "SEARCH completed");
  });
}

void ImapSession::copy(const imap::Command& c) {
  const auto& a = std::get<imap::CopyArgs>(c.args);
  const bool move = c.verb == imap::Verb::Move;
  if (move && selected_->read_only) {
    write(imap::status_line(c.tag, Condition::No, "READ-ONLY", "The mailbox was opened with EXAMINE"));
    return;
  }
  if (a.set.saved) return bad(c.tag, "There is no saved search result");
  bool ok = false;
  std::string target = mailbox_name(a.mailbox, c.tag, ok);
  if (!ok) return;
  pb::CopyRequest request;
  *request.mutable_mailbox() = selected_->ref;
  for (auto& r : uid_ranges(a.set, c.uid)) *request.add_uids() = std::move(r);
  const std::string word(imap::verb_name(c.verb));
  if (request.uids().empty()) return write(imap::status_line(c.tag, Condition::Ok, "", word + " completed"));
  request.set_target(target);
  request.set_move(move);
  wait();
  store_->copy(std::move(request), [this, tag = c.tag, move, word](store_client::StoreResult<pb::CopyResponse> r) {
    if (!r) {
      // RFC 9051 §6.4.7: a target that does not exist is NO [TRYCREATE].
      if (r.error().kind != common::ErrorKind::TempFail && r.error().code == StoreCode::NotFound) {
        return done(tag, Condition::No, "TRYCREATE", "No such mailbox");
      }
      return done(tag, Condition::No, code_for(r.error()), text_for(r.error()));
    }
    std::string code;
    if (!r->source_uids().empty()) {
      std::vector<uint32_t> source(r->source_uids().begin(), r->source_uids().end());
      std::vector<uint32_t> target(r->target_uids().begin(), r->target_uids().end());
      code = "COPYUID " + std::to_string(r->target_uidvalidity()) + " ";
      std::vector<imap::SeqRange> s, t;
      for (uint32_t u : source) s.push_back({u, u});
      for (uint32_t u : target) t.push_back({u, u});
      imap::append_sequence_set(code, s);
      code += ' ';
      imap::append_sequence_set(code, t);
    }
    if (!move) return done(tag, Condition::Ok, code, word + " completed");
    // RFC 6851 §4.3: COPYUID in an untagged OK before the EXPUNGEs.
    if (!code.empty()) write(imap::status_line("*", Condition::Ok, code, "Moved"));
    expunged(r->expunged());
    done(tag, Condition::Ok, "", word + " completed");
  });
}

void ImapSession::manage(const imap::Command& c) {
  using imap::Verb;
  const std::string word(imap::verb_name(c.verb));
  auto finish = [this, tag = c.tag, word](store_client::StoreResult<pb::MailboxChanged> r) {
    if (!r) return done(tag, Condition::No, code_for(r.error()), text_for(r.error()));
    done(tag, Condition::Ok, "", word + " completed");
  };
  bool ok = false;
  if (c.verb == Verb::Rename) {
    const auto& a = std::get<imap::RenameArgs>(c.args);
    pb::RenameMailboxRequest request;
    request.set_from(mailbox_name(a.from, c.tag, ok));
    if (!ok) return;
    request.set_to(mailbox_name(a.to, c.tag, ok));
    if (!ok) return;
    wait();
    return store_->rename(std::move(request), std::move(finish));
  }
  if (c.verb == Verb::Create) {
    const auto& a = std::get<imap::CreateArgs>(c.args);
    pb::CreateMailboxRequest request;
    std::string name = mailbox_name(a.mailbox, c.tag, ok);
    if (!ok) return;
    // RFC 9051 §6.3.4: a trailing hierarchy delimiter only says a child may follow.
    while (name.size() > 1 && name.back() == '/') name.pop_back();
    request.set_name(name);
    for (const auto& u : a.special_use) request.add_special_use(u);
    wait();
    return store_->create(std::move(request), std::move(finish));
  }
  const auto& a = std::get<imap::MailboxArgs>(c.args);
  std::string name = mailbox_name(a.mailbox, c.tag, ok);
  if (!ok) return;
  wait();
  if (c.verb == Verb::Delete) {
    if (selected_ && selected_->name == name) {
      selected_.reset();
      state_ = State::Authenticated;
    }
    pb::DeleteMailboxRequest request;
    request.set_name(name);
    return store_->remove(std::move(request), std::move(finish));
  }
  pb::SubscribeRequest request;
  request.set_name(name);
  request.set_subscribe(c.verb == Verb::Subscribe);
  store_->subscribe(std::move(request), std::move(finish));
}

void ImapSession::quota(const imap::Command& c) {
  const bool root = c.verb == imap::Verb::GetQuotaRoot;
  if (!root && !std::get<imap::QuotaRootArgs>(c.args).root.empty()) {
    // RFC 9208 §4.2: the one quota root is "" (the user's whole mail).
    write(imap::status_line(c.tag, Condition::No, "NONEXISTENT", "No such quota root"));
    return;
  }
  std::string mailbox = root ? std::get<imap::MailboxArgs>(c.args).mailbox : std::string();
  wait();
  store_->quota([this, tag = c.tag, root, mailbox](store_client::StoreResult<pb::QuotaResponse> r) {
    if (!r) return done(tag, Condition::No, code_for(r.error()), text_for(r.error()));
    std::string out;
    if (root) {
      out += "* QUOTAROOT ";
      imap::append_astring(out, mailbox, false);
      out += " \"\"\r\n";
    }
    std::string limits;
    if (r->bytes_limit() != 0) {
      // STORAGE is in units of 1024 octets (RFC 9208 §5.1).
      limits += "STORAGE " + std::to_string((r->bytes_used() + 1023) / 1024) + " " +
                std::to_string(r->bytes_limit() / 1024);
    }
    if (r->messages_limit() != 0) {
      if (!limits.empty()) limits += ' ';
      limits += "MESSAGE " + std::to_string(r->messages_used()) + " " + std::to_string(r->messages_limit());
    }
    out += "* QUOTA \"\" (" + limits + ")\r\n";
    write(out);
    done(tag, Condition::Ok, "", root ? "GETQUOTAROOT completed" : "GETQUOTA completed");
  });
}

void ImapSession::poll(const std::string& tag, std::string_view verb) {
  pb::ChangesRequest request;
  *request.mutable_mailbox() = selected_->ref;
  request.set_since_modseq(selected_->highest_modseq);
  wait();
  store_->changes(std::move(request), [this, tag, word = std::string(verb)](store_client::StoreResult<pb::ChangesResponse> r) {
    if (!r) return done(tag, Condition::No, code_for(r.error()), text_for(r.error()));
    expunged(r->vanished());
    std::string out;
    const uint32_t known_last = selected_->uids.empty() ? 0 : selected_->uids.back();
    std::vector<const pb::FlagUpdate*> flag_changes;
    size_t added = 0;
    for (const auto& u : r->changed()) {
      if (u.uid() > known_last) {
        selected_->uids.push_back(u.uid());
        ++added;
      } else {
        flag_changes.push_back(&u);
      }
    }
    std::sort(selected_->uids.begin(), selected_->uids.end());
    if (added > 0) out += "* " + std::to_string(selected_->uids.size()) + " EXISTS\r\n";
    for (const auto* u : flag_changes) {
      const uint32_t seq = sequence_of(u->uid());
      if (seq == 0) continue;
      out += "* " + std::to_string(seq) + " FETCH (FLAGS ";
      std::vector<std::string> flags(u->flags().begin(), u->flags().end());
      imap::append_flag_list(out, flags);
      out += ")\r\n";
    }
    selected_->highest_modseq = std::max(selected_->highest_modseq, r->highest_modseq());
    write(out);
    done(tag, Condition::Ok, "", word + " completed");
  });
}

void ImapSession::append_start(const imap::AppendStart& start) {
  appending_ = std::make_unique<AppendState>();
  appending_->tag = start.tag;
  auto name = imap::mailbox_from_wire(start.mailbox, false);
  if (!name) {
    appending_->refusal = "That mailbox name is not valid modified UTF-7";
    return;
  }
  for (const auto& f : start.message.flags) {
    // RFC 9051 §2.3.2: \Recent is the server's to set.
    if (common::ascii::iequals(f, "\\Recent")) {
      appending_->refusal = "\\Recent cannot be set by APPEND";
      return;
    }
  }
  pb::AppendRequest::Start request;
  request.set_mailbox(*name);
  for (const auto& f : start.message.flags) request.add_flags(f);
  if (start.message.internal_date) request.set_internal_date(*start.message.internal_date);
  request.set_size(start.message.size);
  append_ = store_->append(std::move(request), [this](store_client::StoreResult<pb::AppendResponse> r) {
    if (!appending_) return;
    appending_->answered = true;
    appending_->result = std::move(r);
    append_blocked_ = false;
    if (appending_->command_seen) {
      write(append_answer());
      waiting_ = false;
      pump();
    }
    // Else the store answered early (over quota, no such mailbox): the rest of the message is read
    // and dropped, and the answer waits for the APPEND command.
  });
  append_->on_drained([this] {
    if (!append_blocked_) return;
    append_blocked_ = false;
    pump();
  });
}

void ImapSession::append_data(imap::AppendData& data) {
  if (!appending_ || !append_ || appending_->answered || !appending_->refusal.empty()) return;
  append_->write(std::move(data.bytes));
  // A client faster than the store must not make us hold its whole message: stop reading it.
  constexpr size_t kMaxQueued = 1 << 20;
  if (append_->queued_bytes() > kMaxQueued) append_blocked_ = true;
}

void ImapSession::append_command(const imap::Command& c) {
  if (!appending_) {
    // Every message was refused on the way (the parser answered), or the command has none.
    return write(imap::status_line(c.tag, Condition::Ok, "", "APPEND completed"));
  }
  appending_->command_seen = true;
  if (!appending_->refusal.empty()) {
    append_.reset();
    bad(c.tag, appending_->refusal);
    appending_.reset();
    return;
  }
  if (appending_->answered) return write(append_answer());  // the store refused it early
  wait();
  append_->finish();  // the message is whole: now the store commits it, and only then answers
}

std::string ImapSession::append_answer() {
  auto state = std::move(appending_);
  append_.reset();
  const auto& r = state->result;
  if (!r) {
    if (r.error().kind != common::ErrorKind::TempFail && r.error().code == StoreCode::NotFound) {
      return imap::status_line(state->tag, Condition::No, "TRYCREATE", "No such mailbox");
    }
    return imap::status_line(state->tag, Condition::No, code_for(r.error()), text_for(r.error()));
  }
  // RFC 4315 §3: APPENDUID; the store has committed the message to disk before answering.
  return imap::status_line(state->tag, Condition::Ok,
                           "APPENDUID " + std::to_string(r->uidvalidity()) + " " + std::to_string(r->uid()),
                           "APPEND completed");
}

void ImapSession::close_mailbox(const imap::Command& c) {
  const bool expunge = c.verb == imap::Verb::Close && !selected_->read_only;
  auto box = std::move(selected_);
  state_ = State::Authenticated;
  const std::string word(imap::verb_name(c.verb));
  if (!expunge) return write(imap::status_line(c.tag, Condition::Ok, "", word + " completed"));
  // RFC 9051 §6.4.1: CLOSE expunges the \Deleted messages, silently.
  pb::ExpungeRequest request;
  *request.mutable_mailbox() = box->ref;
  wait();
  store_->expunge(std::move(request), [this, tag = c.tag, word](store_client::StoreResult<pb::ExpungeResponse> r) {
    if (!r) return done(tag, Condition::No, code_for(r.error()), text_for(r.error()));
    done(tag, Condition::Ok, "", word + " completed");
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
  fetch_.reset();
  append_.reset();  // a message cut short is never committed
  relay_.reset();
}

}  // namespace mmp
