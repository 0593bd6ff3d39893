// client_session.cpp: the SMTP/LMTP client state machine. Replies are matched in order to a queue
// of what was sent (RFC 2920 §3: replies come in the order of the commands), so pipelined and
// unpipelined dialogues run the same code; every wait arms the connection's idle timer with the
// RFC 5321 §4.5.3.2 timeout of what is awaited.
#include "common/smtpclient/client_session.hpp"

#include <algorithm>

#include "common/ascii.hpp"
#include "common/log/log.hpp"
#include "common/smtp/command.hpp"

namespace common::smtpclient {
namespace {

constexpr size_t kContentSlice = 64 * 1024;  // written per turn while the write queue has room

std::string describe(const smtp::Reply& r) {
  std::string out = std::to_string(r.code);
  if (r.enhanced.present()) out += " " + r.enhanced.str();
  if (!r.lines.empty()) out += " " + smtp::sanitize(r.lines.front(), 200);
  return out;
}

}  // namespace

std::string_view failure_name(Failure f) {
  switch (f) {
    case Failure::None: return "none";
    case Failure::Connect: return "connect";
    case Failure::Tls: return "tls";
    case Failure::TempFail: return "temporary";
    case Failure::PermFail: return "permanent";
    case Failure::Protocol: return "protocol";
    case Failure::Timeout: return "timeout";
    case Failure::Closed: return "closed";
  }
  return "none";
}

ServerInfo parse_ehlo(const smtp::Reply& reply) {
  ServerInfo info;
  info.esmtp = true;
  if (!reply.lines.empty()) {
    const std::string& first = reply.lines.front();
    info.domain = first.substr(0, first.find(' '));
  }
  for (size_t i = 1; i < reply.lines.size(); ++i) {
    const std::string& line = reply.lines[i];
    const size_t space = line.find(' ');
    const std::string keyword = ascii::lowered(std::string_view(line).substr(0, space));
    const std::string_view arg = space == std::string::npos ? std::string_view() : std::string_view(line).substr(space + 1);
    if (keyword == "pipelining") info.pipelining = true;
    else if (keyword == "8bitmime") info.eightbitmime = true;
    else if (keyword == "smtputf8") info.smtputf8 = true;
    else if (keyword == "chunking") info.chunking = true;
    else if (keyword == "starttls") info.starttls = true;
    else if (keyword == "enhancedstatuscodes") info.enhancedstatuscodes = true;
    else if (keyword == "dsn") info.dsn = true;
    else if (keyword == "xid") info.xid = true;
    else if (keyword == "size") {
      // RFC 1870 §4: "SIZE" alone or with the largest size accepted; garbage reads as no limit.
      uint64_t n = 0;
      bool digits = !arg.empty() && arg.size() <= 19;
      for (char ch : arg) {
        if (ch < '0' || ch > '9') {
          digits = false;
          break;
        }
        n = n * 10 + static_cast<uint64_t>(ch - '0');
      }
      info.size = digits ? n : 0;
    }
  }
  return info;
}

DeliveryResult failed_delivery(const Message& message, Status status) {
  DeliveryResult r;
  r.status = status;
  for (const auto& a : message.recipients) r.recipients.push_back(RecipientResult{a, status});
  return r;
}

ClientSession::ClientSession(runtime::Connection& c, ClientConfig config, Ready ready)
    : StartTlsSession(c), config_(std::move(config)), ready_(std::move(ready)), parser_(config_.reply_limits) {}

ClientSession::~ClientSession() = default;

std::string_view ClientSession::phase_name() const {
  switch (phase_) {
    case Phase::Greeting: return "greeting";
    case Phase::Ehlo: return config_.protocol == Protocol::Lmtp ? "lhlo" : "ehlo";
    case Phase::StartTls: return "starttls";
    case Phase::TlsEhlo: return "tls";
    case Phase::Ready: return "idle";
    case Phase::Transaction: return "transaction";
    case Phase::Quit: return "quit";
    case Phase::Closed: return "closed";
  }
  return "closed";
}

const runtime::SecurityFacts* ClientSession::tls_facts() const {
  auto* t = const_cast<ClientSession*>(this)->connection().transform();
  return t ? t->facts() : nullptr;
}

void ClientSession::expect(Expect e, std::chrono::milliseconds timeout) {
  expected_.push_back(e);
  connection().set_idle_timeout(timeout);
}

void ClientSession::write(std::string_view line) { connection().write(line); }

Status ClientSession::status_from(const smtp::Reply& r, std::string_view what) const {
  Status s;
  s.kind = r.code >= 500 && r.code < 600 ? Failure::PermFail : r.code >= 400 && r.code < 500 ? Failure::TempFail
                                                                                               : Failure::Protocol;
  s.detail = std::string(what) + ": " + describe(r);
  s.reply = r;
  return s;
}

void ClientSession::on_open() {
  if ((config_.implicit_tls || config_.starttls == StartTls::Required) && !config_.tls) {
    fail_session(Status{Failure::Tls, "TLS is required but no TLS client context is configured", {}});
    return;
  }
  tls_ = connection().transform() != nullptr;
  phase_ = Phase::Greeting;
  expect(Expect::Greeting, config_.timeouts.greeting);
}

void ClientSession::on_data(std::string_view bytes) {
  replies_.clear();
  parser_.feed(bytes, replies_);
  forgot_ = false;
  for (size_t i = 0; i < replies_.size(); ++i) {
    if (forgot_ || phase_ == Phase::Closed) break;
    handle(replies_[i]);
  }
  if (!forgot_ && parser_.failed() && phase_ != Phase::Closed) {
    fail_session(Status{Failure::Protocol, "malformed reply: " + parser_.error(), {}});
  }
}

size_t ClientSession::forget_plaintext() {
  // RFC 3207 §4.2: what the server said before TLS is forgotten, and whatever it sent behind its
  // 220 was sent in plaintext by anyone on the path (CVE-2011-1575 is this bug in a client).
  size_t dropped = parser_.pending();
  bool after = false;
  for (const auto& r : replies_) {
    if (after) {
      for (const auto& l : r.lines) dropped += l.size() + 6;
    }
    if (r.code == 220) after = true;
  }
  parser_.reset();
  forgot_ = true;
  std::string greeting = std::move(server_.greeting);
  server_ = ServerInfo{};
  server_.greeting = std::move(greeting);
  expected_.clear();
  return dropped;
}

void ClientSession::handle(const smtp::Reply& r) {
  if (expected_.empty()) {
    fail_session(Status{Failure::Protocol, "a reply to no command: " + describe(r), r});
    return;
  }
  const Expect e = expected_.front();
  expected_.pop_front();
  switch (e) {
    case Expect::Greeting: on_greeting(r); break;
    case Expect::Ehlo: on_ehlo(r, false); break;
    case Expect::Helo: on_ehlo(r, true); break;
    case Expect::StartTls: on_starttls(r); break;
    case Expect::Mail: on_mail(r); break;
    case Expect::Rcpt: on_rcpt(r); break;
    case Expect::Data: on_data_reply(r); break;
    case Expect::DataEnd: on_data_end(r); break;
    case Expect::Rset: {
      const bool ok = r.positive();
      deliver_result();
      if (!ok) quit();
      break;
    }
    case Expect::Quit:
      phase_ = Phase::Closed;
      connection().close();
      break;
  }
}

void ClientSession::on_greeting(const smtp::Reply& r) {
  if (!r.lines.empty()) server_.greeting = smtp::sanitize(r.lines.front(), 200);
  if (r.code != 220) {
    fail_session(status_from(r, "greeting"));
    return;
  }
  phase_ = Phase::Ehlo;
  send_ehlo();
}

void ClientSession::send_ehlo() {
  write(std::string(config_.protocol == Protocol::Lmtp ? "LHLO " : "EHLO ") + config_.helo_name + "\r\n");
  expect(Expect::Ehlo, config_.timeouts.command);
}

void ClientSession::on_ehlo(const smtp::Reply& r, bool helo) {
  if (!r.positive()) {
    // RFC 5321 §3.2: a server that does not know EHLO answers 500/502; HELO then. LMTP has no
    // fallback (RFC 2033 §4.1: LHLO only).
    if (!helo && config_.protocol == Protocol::Smtp && r.code >= 500 && phase_ == Phase::Ehlo) {
      write("HELO " + config_.helo_name + "\r\n");
      expect(Expect::Helo, config_.timeouts.command);
      return;
    }
    fail_session(status_from(r, helo ? "HELO" : config_.protocol == Protocol::Lmtp ? "LHLO" : "EHLO"));
    return;
  }
  std::string greeting = std::move(server_.greeting);
  server_ = helo ? ServerInfo{} : parse_ehlo(r);
  server_.greeting = std::move(greeting);
  if (phase_ == Phase::TlsEhlo || tls_) {
    become_ready();
    return;
  }
  const bool want = config_.starttls != StartTls::Off && config_.tls != nullptr;
  if (want && server_.starttls) {
    phase_ = Phase::StartTls;
    write("STARTTLS\r\n");
    expect(Expect::StartTls, config_.timeouts.command);
    return;
  }
  if (config_.starttls == StartTls::Required) {
    fail_session(Status{Failure::Tls, "TLS is required and the server does not offer STARTTLS", {}});
    return;
  }
  become_ready();
}

void ClientSession::on_starttls(const smtp::Reply& r) {
  if (r.code != 220) {
    if (config_.starttls == StartTls::Required) {
      auto s = status_from(r, "STARTTLS");
      s.kind = Failure::Tls;
      fail_session(std::move(s));
      return;
    }
    // RFC 3207 §4: after a refused STARTTLS the client may go on without TLS.
    log::notice("smtpclient").session(info().id).client(info().peer.to_string()).phase("starttls")
        .event("starttls_refused").kv("reply", describe(r)).kv("action", "plaintext");
    become_ready();
    return;
  }
  auto transform = config_.tls->connect(info().id, config_.tls_peer);
  transform_ = transform.get();
  if (!start_tls("", std::move(transform))) {
    transform_ = nullptr;
    if (phase_ != Phase::Closed) fail_session(Status{Failure::Tls, "TLS could not be started", {}});
    return;
  }
  tls_ = true;
  phase_ = Phase::TlsEhlo;
  send_ehlo();  // RFC 3207 §4.2: greet again; held by the transform until the handshake is done
}

void ClientSession::become_ready() {
  phase_ = Phase::Ready;
  connection().set_idle_timeout(park_timeout_.count() > 0 ? park_timeout_ : config_.timeouts.command);
  if (ready_) {
    auto line = log::info("smtpclient");
    line.session(info().id).client(info().peer.to_string()).phase("greeting").event("session_ready")
        .kv("protocol", config_.protocol == Protocol::Lmtp ? "lmtp" : "smtp").kv("tls", tls_ ? "yes" : "no")
        .kv("pipelining", server_.pipelining ? "yes" : "no").kv("chunking", server_.chunking ? "yes" : "no");
    if (const auto* f = tls_facts()) {
      line.kv("tls_protocol", f->protocol).kv("verified", f->server_verified ? "yes" : "no");
    }
    Ready ready = std::move(ready_);
    ready_ = nullptr;
    ready(this, Status{});
  }
}

void ClientSession::park(std::chrono::milliseconds timeout) {
  park_timeout_ = timeout;
  if (phase_ == Phase::Ready) connection().set_idle_timeout(timeout);
}

void ClientSession::send(Message message, Done done) {
  auto refuse = [&](Failure kind, std::string detail) {
    done(failed_delivery(message, Status{kind, std::move(detail), {}}));
  };
  if (phase_ != Phase::Ready) return refuse(Failure::Protocol, "the session is not idle");
  if (message.recipients.empty()) return refuse(Failure::Protocol, "a message without recipients");
  if (message.smtputf8 && !server_.smtputf8) {
    // RFC 6531 §3.4: a message that needs SMTPUTF8 must not go to a server without it.
    return refuse(Failure::PermFail, "the message needs SMTPUTF8 and the server does not offer it");
  }
  if (server_.size && *server_.size > 0 && message.content.size() > *server_.size) {
    // RFC 1870 §6: above the announced fixed limit the server would refuse it permanently.
    return refuse(Failure::PermFail, "the message is larger than the server's SIZE " + std::to_string(*server_.size));
  }
  message_ = std::move(message);
  done_ = std::move(done);
  result_ = DeliveryResult{};
  for (const auto& a : message_.recipients) result_.recipients.push_back(RecipientResult{a, Status{}});
  accepted_.clear();
  final_.assign(message_.recipients.size(), false);
  rcpt_replies_ = 0;
  data_end_replies_ = 0;
  mail_ok_ = false;
  content_done_ = false;
  data_ended_ = false;
  lone_dot_ = false;
  broken_ = false;
  sending_ = false;
  sent_ = 0;
  result_ready_ = false;
  bdat_ = config_.use_chunking && server_.chunking;
  phase_ = Phase::Transaction;
  begin_transaction();
}

std::string ClientSession::mail_command() const {
  std::string cmd = "MAIL FROM:<" + message_.reverse_path + ">";
  if (server_.size) cmd += " SIZE=" + std::to_string(message_.content.size());
  // Without 8BITMIME the content still goes as it is, as Postfix does by default: converting it
  // to 7 bit would break signatures, and refusing would bounce mail most servers take.
  if (message_.eight_bit && server_.eightbitmime) cmd += " BODY=8BITMIME";
  if (message_.smtputf8) cmd += " SMTPUTF8";
  if (server_.xid && !message_.xid.empty()) {
    if (smtp::valid_xid(message_.xid)) {
      cmd += " XID=" + message_.xid;
    } else {
      log::warning("smtpclient").session(const_cast<ClientSession*>(this)->info().id).phase("mail")
          .event("xid_not_sent").kv("reason", "not 1..64 of [A-Za-z0-9._:-]");
    }
  }
  return cmd + "\r\n";
}

void ClientSession::begin_transaction() {
  result_.offered = true;
  if (const auto* f = tls_facts()) result_.tls = *f;
  out_ = mail_command();
  expected_.push_back(Expect::Mail);
  if (server_.pipelining) {
    // RFC 2920 §3.1: MAIL, every RCPT and DATA in one group; DATA ends it (it waits for the 354).
    for (const auto& a : message_.recipients) {
      out_ += "RCPT TO:<" + a + ">\r\n";
      expected_.push_back(Expect::Rcpt);
    }
    if (!bdat_) {
      out_ += "DATA\r\n";
      expected_.push_back(Expect::Data);
    }
  }
  write(out_);
  out_.clear();
  connection().set_idle_timeout(server_.pipelining ? std::max(config_.timeouts.rcpt, config_.timeouts.data_init)
                                                   : config_.timeouts.mail);
}

void ClientSession::send_rcpt(size_t index) {
  write("RCPT TO:<" + message_.recipients[index] + ">\r\n");
  expect(Expect::Rcpt, config_.timeouts.rcpt);
}

void ClientSession::on_mail(const smtp::Reply& r) {
  mail_ok_ = r.positive();
  if (!mail_ok_) {
    result_.status = status_from(r, "MAIL FROM");
    if (!server_.pipelining) finish_transaction(result_.status);
    return;  // pipelined: the RCPT and DATA replies (503s) still come and are read
  }
  if (!server_.pipelining) send_rcpt(0);
}

void ClientSession::on_rcpt(const smtp::Reply& r) {
  const size_t index = rcpt_replies_++;
  if (index >= message_.recipients.size()) {
    fail_session(Status{Failure::Protocol, "more RCPT replies than recipients", r});
    return;
  }
  if (r.positive() && mail_ok_) {
    accepted_.push_back(index);
  } else if (mail_ok_) {
    result_.recipients[index].status = status_from(r, "RCPT TO");
    final_[index] = true;
  }
  const bool last = index + 1 == message_.recipients.size();
  if (!server_.pipelining) {
    if (!mail_ok_) return;
    if (!last) {
      send_rcpt(index + 1);
      return;
    }
    after_recipients();
  } else if (last && bdat_) {
    after_recipients();
  }
}

Status ClientSession::no_recipient_status() const {
  bool all_permanent = true;
  for (const auto& rr : result_.recipients) {
    if (rr.status.kind != Failure::PermFail) all_permanent = false;
  }
  return Status{all_permanent ? Failure::PermFail : Failure::TempFail, "no recipient was accepted", {}};
}

void ClientSession::after_recipients() {
  if (!mail_ok_) {
    finish_transaction(result_.status);
  } else if (accepted_.empty()) {
    finish_transaction(no_recipient_status());
  } else if (bdat_) {
    start_content(true);
  } else {
    write("DATA\r\n");
    expect(Expect::Data, config_.timeouts.data_init);
  }
}

void ClientSession::on_data_reply(const smtp::Reply& r) {
  if (r.code == 354) {
    if (!mail_ok_ || accepted_.empty()) {
      // RFC 2920 §3.1: a DATA accepted after every recipient failed gets an empty message.
      lone_dot_ = true;
      write(".\r\n");
      expect(Expect::DataEnd, config_.timeouts.data_term);
      return;
    }
    start_content(false);
    return;
  }
  if (!mail_ok_) {
    finish_transaction(result_.status);
  } else if (accepted_.empty()) {
    finish_transaction(no_recipient_status());
  } else {
    finish_transaction(status_from(r, "DATA"));
  }
}

void ClientSession::start_content(bool bdat) {
  sending_ = true;
  sent_ = 0;
  stuffer_.reset();
  if (bdat) write("BDAT " + std::to_string(message_.content.size()) + " LAST\r\n");
  // RFC 2033 §4.2: after the data an LMTP server answers once per accepted recipient (for BDAT,
  // after the LAST chunk); an SMTP server once.
  const size_t replies = config_.protocol == Protocol::Lmtp ? accepted_.size() : 1;
  for (size_t i = 0; i < replies; ++i) expected_.push_back(Expect::DataEnd);
  connection().set_idle_timeout(config_.timeouts.data_block);
  pump_content();
}

void ClientSession::pump_content() {
  const std::string& content = message_.content;
  while (sending_ && connection().open() && !connection().write_blocked()) {
    const size_t n = std::min(kContentSlice, content.size() - sent_);
    std::string_view slice(content.data() + sent_, n);
    if (bdat_) {
      write(slice);
    } else {
      stuffer_.feed(slice, out_);
      write(out_);
      out_.clear();
    }
    sent_ += n;
    if (sent_ == content.size()) {
      if (!bdat_) {
        stuffer_.finish(out_);
        write(out_);
        out_.clear();
      }
      sending_ = false;
      content_done_ = true;
      connection().set_idle_timeout(config_.timeouts.data_term);
    }
  }
}

void ClientSession::on_writable() {
  if (sending_) pump_content();
}

void ClientSession::on_data_end(const smtp::Reply& r) {
  if (sending_) {
    // A reply before the end of our content (a 552 mid-stream): the server may read the rest as
    // commands, so this connection is not used again.
    sending_ = false;
    broken_ = true;
  }
  if (lone_dot_) {
    data_ended_ = true;
    finish_transaction(!mail_ok_ ? result_.status : no_recipient_status());
    return;
  }
  if (config_.protocol == Protocol::Smtp) {
    data_ended_ = true;
    for (size_t index : accepted_) {
      if (!r.positive()) result_.recipients[index].status = status_from(r, "end of data");
      final_[index] = true;
    }
    finish_transaction(r.positive() ? Status{} : status_from(r, "end of data"));
    return;
  }
  const size_t k = data_end_replies_++;
  const size_t index = accepted_[k];
  if (!r.positive()) result_.recipients[index].status = status_from(r, "end of data");
  final_[index] = true;
  if (k + 1 == accepted_.size()) {
    data_ended_ = true;
    finish_transaction(Status{});  // the transaction is over; each recipient has its own reply
  }
}

void ClientSession::finish_transaction(Status status) {
  result_.status = std::move(status);
  if (!result_.status.ok()) {
    for (size_t i = 0; i < result_.recipients.size(); ++i) {
      if (!final_[i]) result_.recipients[i].status = result_.status;
    }
  }
  ++transactions_;
  result_ready_ = true;
  size_t delivered = 0;
  for (const auto& rr : result_.recipients) delivered += rr.status.ok() ? 1 : 0;
  auto line = log::info("smtpclient");
  line.session(info().id).client(info().peer.to_string()).phase("transaction").event("transaction_done")
      .kv("status", failure_name(result_.status.kind)).kv("recipients", static_cast<uint64_t>(result_.recipients.size()))
      .kv("delivered", static_cast<uint64_t>(delivered)).kv("size", static_cast<uint64_t>(message_.content.size()));
  if (!message_.xid.empty()) line.kv("xid", message_.xid);
  if (!result_.status.ok()) line.kv("reason", result_.status.detail);
  if (broken_) {
    deliver_result();
    if (phase_ == Phase::Ready) {
      phase_ = Phase::Closed;
      connection().close();
    }
    return;
  }
  if (data_ended_) {
    // RFC 5321 §4.1.1.4: the reply after the data ends the transaction, whatever it said.
    deliver_result();
    return;
  }
  // Stopped before the data: RSET so the next transaction starts clean (RFC 5321 §4.1.1.5).
  write("RSET\r\n");
  expect(Expect::Rset, config_.timeouts.command);
}

void ClientSession::deliver_result() {
  if (!result_ready_) return;
  result_ready_ = false;
  Done done = std::move(done_);
  done_ = nullptr;
  DeliveryResult result = std::move(result_);
  result_ = DeliveryResult{};
  message_ = Message{};
  if (phase_ == Phase::Transaction) {
    phase_ = Phase::Ready;
    connection().set_idle_timeout(park_timeout_.count() > 0 ? park_timeout_ : config_.timeouts.command);
  }
  if (done) done(std::move(result));
  if (draining_ && phase_ == Phase::Ready) quit();
}

void ClientSession::quit() {
  if (phase_ == Phase::Closed || phase_ == Phase::Quit) return;
  if (phase_ != Phase::Ready) {
    fail_session(Status{Failure::Closed, "the session was ended", {}});
    return;
  }
  phase_ = Phase::Quit;
  write("QUIT\r\n");
  expect(Expect::Quit, config_.timeouts.command);
}

void ClientSession::fail_session(Status status) {
  if (phase_ == Phase::Closed) return;
  auto line = log::notice("smtpclient");
  line.session(info().id).client(info().peer.to_string()).phase(phase_name()).event("session_failed")
      .kv("kind", failure_name(status.kind)).kv("reason", status.detail);
  const bool was_open = connection().open();
  const bool polite = was_open && status.kind != Failure::Protocol && status.kind != Failure::Timeout && !sending_;
  phase_ = Phase::Closed;
  // RFC 5321 §3.8: a client giving up on a session says QUIT when the dialogue is still in step.
  if (polite) connection().write("QUIT\r\n");
  if (was_open) connection().close();
  Ready ready = std::move(ready_);
  ready_ = nullptr;
  if (ready) {
    ready(nullptr, status);
    return;
  }
  if (done_) {
    if (!result_ready_) {
      result_.status = status;
      for (size_t i = 0; i < result_.recipients.size(); ++i) {
        if (!final_[i]) result_.recipients[i].status = status;
      }
      result_ready_ = true;
    }
    Done done = std::move(done_);
    done_ = nullptr;
    result_ready_ = false;
    done(std::move(result_));
  }
}

void ClientSession::on_timeout(runtime::TimeoutKind) {
  switch (phase_) {
    case Phase::Ready: quit(); return;
    case Phase::Quit:
      phase_ = Phase::Closed;
      connection().close(runtime::CloseReason::Timeout);
      return;
    case Phase::Closed: return;
    default: break;
  }
  fail_session(Status{Failure::Timeout, "no reply from the server while " + std::string(phase_name()) +
                                            (sending_ ? " (sending the content)" : ""), {}});
}

void ClientSession::on_drain() {
  draining_ = true;
  if (phase_ == Phase::Ready) {
    quit();
  } else if (phase_ != Phase::Transaction && phase_ != Phase::Quit) {
    fail_session(Status{Failure::Closed, "the mta is stopping", {}});
  }
}

void ClientSession::on_closed(runtime::CloseReason reason) {
  if (phase_ == Phase::Closed) return;
  const bool idle = phase_ == Phase::Ready || phase_ == Phase::Quit;
  Status status;
  if (reason == runtime::CloseReason::TransformError) {
    status = Status{Failure::Tls, transform_ ? transform_->failure() : "TLS failed", {}};
    if (status.detail.empty()) status.detail = "TLS failed";
  } else if (reason == runtime::CloseReason::Timeout) {
    status = Status{Failure::Timeout, "the connection timed out", {}};
  } else {
    status = Status{Failure::Closed, "the server closed the connection while " + std::string(phase_name()), {}};
  }
  if (idle) {
    phase_ = Phase::Closed;
    if (on_gone_) on_gone_();
    return;
  }
  if (result_ready_) {  // the outcome was known; only the RSET after it was lost
    phase_ = Phase::Closed;
    deliver_result();
    return;
  }
  fail_session(std::move(status));
}

std::string open_session(runtime::ConnectionSet& set, const runtime::ConnectOptions& where, ClientConfig config,
                         ClientSession::Ready ready) {
  auto shared_ready = std::make_shared<ClientSession::Ready>(std::move(ready));
  return runtime::connect(
      set, where,
      [config = std::move(config), shared_ready](runtime::Connection& c) -> std::unique_ptr<runtime::Session> {
        tls::ClientTransform* raw = nullptr;
        if (config.implicit_tls && config.tls) {
          auto transform = config.tls->connect(c.info().id, config.tls_peer);
          raw = transform.get();
          c.start_implicit_tls(std::move(transform));
        }
        auto session = std::make_unique<ClientSession>(c, config, std::move(*shared_ready));
        session->transform_ = raw;
        return session;
      },
      [shared_ready](const Error& e) {
        if (*shared_ready) (*shared_ready)(nullptr, Status{Failure::Connect, e.detail, {}});
      });
}

// --- DestinationPool ---

DestinationPool::DestinationPool(runtime::ConnectionSet& set, runtime::ConnectOptions where, ClientConfig config,
                                 PoolOptions options)
    : set_(set), where_(std::move(where)), config_(std::move(config)), options_(options) {}

DestinationPool::~DestinationPool() {
  alive_.reset();
  close_idle();
}

size_t DestinationPool::idle() const {
  size_t n = 0;
  for (const auto& i : idle_) n += i.alive.expired() ? 0 : 1;
  return n;
}

void DestinationPool::close_idle() {
  std::vector<Idle> all;
  all.swap(idle_);
  for (auto& i : all) {
    if (!i.alive.expired()) i.session->quit();
  }
}

void DestinationPool::deliver(Message message, ClientSession::Done done) {
  while (!idle_.empty()) {
    Idle i = idle_.back();
    idle_.pop_back();
    if (!i.alive.expired() && i.session->idle()) {
      run(*i.session, std::move(message), std::move(done));
      return;
    }
  }
  ++opened_;
  std::weak_ptr<bool> pool = alive_;
  auto held = std::make_shared<std::pair<Message, ClientSession::Done>>(std::move(message), std::move(done));
  open_session(set_, where_, config_, [this, pool, held](ClientSession* s, Status status) {
    if (s == nullptr) {
      held->second(failed_delivery(held->first, std::move(status)));
      return;
    }
    if (pool.expired()) {
      s->quit();
      held->second(failed_delivery(held->first, Status{Failure::Closed, "the pool was closed", {}}));
      return;
    }
    run(*s, std::move(held->first), std::move(held->second));
  });
}

void DestinationPool::run(ClientSession& session, Message message, ClientSession::Done done) {
  std::weak_ptr<bool> pool = alive_;
  std::weak_ptr<void> alive = session.alive();
  ClientSession* s = &session;
  session.send(std::move(message), [this, pool, alive, s, done = std::move(done)](DeliveryResult r) {
    if (!pool.expired() && !alive.expired()) release(*s);
    done(std::move(r));
  });
}

void DestinationPool::release(ClientSession& session) {
  if (!session.idle()) return;
  if (session.transactions() < options_.max_transactions && idle() < options_.max_idle) {
    session.park(options_.idle_timeout);
    idle_.push_back(Idle{&session, session.alive()});
  } else {
    session.quit();
  }
}

}  // namespace common::smtpclient
