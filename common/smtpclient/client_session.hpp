// client_session.hpp: the SMTP (RFC 5321) and LMTP (RFC 2033) client of the mta's delivery, on an
// outbound connection: greeting, EHLO/LHLO, STARTTLS (RFC 3207) opportunistic or required, one or
// more transactions with PIPELINING (RFC 2920), DATA or BDAT (RFC 3030), per-recipient results, and
// a pool that keeps idle sessions per destination. Every failure is a typed value for the queue.
#pragma once

#include <chrono>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/runtime/connection.hpp"
#include "common/runtime/outbound.hpp"
#include "common/smtp/data_reader.hpp"
#include "common/smtp/reply.hpp"
#include "common/tls/client.hpp"

namespace common::smtpclient {

enum class Protocol { Smtp, Lmtp };
// Off: never. Opportunistic: when offered (RFC 3207; a refused STARTTLS goes on in plaintext).
// Required: no transaction without TLS (RFC 3207 §4: a client that requires TLS must not go on).
enum class StartTls { Off, Opportunistic, Required };

// RFC 5321 §4.5.3.2 minimums by default; tests make them small.
struct Timeouts {
  std::chrono::milliseconds greeting{std::chrono::minutes(5)};    // §4.5.3.2.1 initial 220
  std::chrono::milliseconds command{std::chrono::minutes(5)};     // EHLO, STARTTLS, RSET, QUIT
  std::chrono::milliseconds mail{std::chrono::minutes(5)};        // §4.5.3.2.2
  std::chrono::milliseconds rcpt{std::chrono::minutes(5)};        // §4.5.3.2.3
  std::chrono::milliseconds data_init{std::chrono::minutes(2)};   // §4.5.3.2.4 the 354
  std::chrono::milliseconds data_block{std::chrono::minutes(3)};  // §4.5.3.2.5 each write of content
  std::chrono::milliseconds data_term{std::chrono::minutes(10)};  // §4.5.3.2.6 the reply(s) after the end
};

struct ClientConfig {
  Protocol protocol = Protocol::Smtp;
  std::string helo_name = "localhost";  // our name in EHLO/LHLO
  StartTls starttls = StartTls::Opportunistic;
  bool implicit_tls = false;            // TLS from the first byte (the store's lmtps port)
  std::shared_ptr<tls::ClientContext> tls;  // for STARTTLS or implicit TLS
  tls::ClientPeer tls_peer;             // SNI and the name the certificate must carry
  bool use_chunking = true;             // BDAT when the server offers CHUNKING
  Timeouts timeouts;
  smtp::ReplyLimits reply_limits;
};

// What the server announced (the greeting and the EHLO/LHLO reply, after TLS when it ran).
struct ServerInfo {
  std::string greeting;  // first line of the 220
  std::string domain;    // first word of the EHLO reply
  bool esmtp = false;    // EHLO/LHLO worked (HELO fallback: false)
  bool pipelining = false;
  bool eightbitmime = false;
  bool smtputf8 = false;
  bool chunking = false;
  bool starttls = false;
  bool enhancedstatuscodes = false;
  bool dsn = false;
  bool xid = false;  // our delivery id MAIL parameter (the store's LHLO)
  std::optional<uint64_t> size;  // SIZE limit; 0 = announced without a limit
};
// The EHLO/LHLO reply's keywords (RFC 5321 §4.1.1.1), case-insensitive. Pure.
ServerInfo parse_ehlo(const smtp::Reply& reply);

struct Message {
  std::string reverse_path;             // MAIL FROM address without <>; empty: the null sender
  std::vector<std::string> recipients;  // RCPT TO addresses without <>
  std::string content;                  // header and body, CRLF lines, not dot-stuffed
  std::string xid;                      // delivery id, sent as XID= when the server announces XID
  bool eight_bit = false;               // BODY=8BITMIME when the server has it
  bool smtputf8 = false;                // needs SMTPUTF8 (RFC 6531): refused by a server without it
};

// None: delivered (per recipient) or no failure (per session).
enum class Failure { None, Connect, Tls, TempFail, PermFail, Protocol, Timeout, Closed };
std::string_view failure_name(Failure f);
// Whether the queue should try again later: everything but a permanent refusal.
inline bool retryable(Failure f) { return f != Failure::None && f != Failure::PermFail; }

struct Status {
  Failure kind = Failure::None;
  std::string detail;                // for logs and the DSN's diagnostic
  std::optional<smtp::Reply> reply;  // the server's reply that decided, when one did
  bool ok() const { return kind == Failure::None; }
};

struct RecipientResult {
  std::string address;
  Status status;  // None: the server took responsibility (250 after the data)
};

struct DeliveryResult {
  Status status;  // the transaction as a whole: None when it reached the end of the data
  std::vector<RecipientResult> recipients;  // in the order of Message::recipients
  // MAIL was sent on a session: false when connecting, the greeting, EHLO or TLS failed (or the
  // message was refused before MAIL), so this server never saw the message and the caller may try
  // the destination's next address (RFC 5321 §5.1) without risking a second copy.
  bool offered = false;
  std::optional<runtime::SecurityFacts> tls;  // the session's TLS, when the transaction ran under it
};

class ClientSession final : public runtime::StartTlsSession {
 public:
  // Runs once: with the session, ready for send(), or with null and why it failed.
  using Ready = std::function<void(ClientSession*, Status)>;
  using Done = std::function<void(DeliveryResult)>;

  ClientSession(runtime::Connection& c, ClientConfig config, Ready ready);
  ~ClientSession() override;

  // One transaction; `done` runs once, when every reply is in and the session is idle again (or
  // gone). Only when idle(); otherwise `done` gets a Protocol failure at once.
  void send(Message message, Done done);
  bool idle() const { return phase_ == Phase::Ready; }
  // Held idle for a pool: after `timeout` with nothing to send, QUIT and close.
  void park(std::chrono::milliseconds timeout);
  // QUIT, then close once the server answers (or the command timeout passes).
  void quit();
  // Told when the connection ends while the session is idle (the pool forgets it).
  void set_on_gone(std::function<void()> fn) { on_gone_ = std::move(fn); }

  const ServerInfo& server() const { return server_; }
  const runtime::SecurityFacts* tls_facts() const;
  const runtime::ConnectionInfo& info() { return connection().info(); }
  std::weak_ptr<void> alive() { return connection().alive(); }
  size_t transactions() const { return transactions_; }

  // runtime::Session
  void on_open() override;
  void on_data(std::string_view bytes) override;
  void on_timeout(runtime::TimeoutKind kind) override;
  void on_writable() override;
  void on_closed(runtime::CloseReason reason) override;
  void on_drain() override;

 private:
  enum class Phase { Greeting, Ehlo, StartTls, TlsEhlo, Ready, Transaction, Quit, Closed };
  enum class Expect { Greeting, Ehlo, Helo, StartTls, Mail, Rcpt, Data, DataEnd, Rset, Quit };

  size_t forget_plaintext() override;
  void handle(const smtp::Reply& reply);
  void on_greeting(const smtp::Reply& r);
  void on_ehlo(const smtp::Reply& r, bool helo);
  void on_starttls(const smtp::Reply& r);
  void on_mail(const smtp::Reply& r);
  void on_rcpt(const smtp::Reply& r);
  void on_data_reply(const smtp::Reply& r);
  void on_data_end(const smtp::Reply& r);
  void send_ehlo();
  void become_ready();
  void begin_transaction();
  void send_rcpt(size_t index);
  void after_recipients();
  void start_content(bool bdat);
  void pump_content();
  void finish_transaction(Status status);
  void deliver_result();
  void fail_session(Status status);  // before ready, or a broken transaction: ends the connection
  void expect(Expect e, std::chrono::milliseconds timeout);
  void write(std::string_view line);
  std::string mail_command() const;
  Status status_from(const smtp::Reply& r, std::string_view what) const;
  std::string_view phase_name() const;
  Status no_recipient_status() const;
  friend std::string open_session(runtime::ConnectionSet&, const runtime::ConnectOptions&, ClientConfig,
                                  ClientSession::Ready);

  ClientConfig config_;
  Ready ready_;
  Done done_;
  std::function<void()> on_gone_;
  Phase phase_ = Phase::Greeting;
  smtp::ReplyParser parser_;
  std::vector<smtp::Reply> replies_;
  std::deque<Expect> expected_;
  bool forgot_ = false;  // STARTTLS ran inside this batch of replies: the rest was plaintext
  bool tls_ = false;
  tls::ClientTransform* transform_ = nullptr;  // owned by the connection
  ServerInfo server_;
  size_t transactions_ = 0;
  std::chrono::milliseconds park_timeout_{0};

  // The transaction in progress.
  Message message_;
  DeliveryResult result_;
  std::vector<size_t> accepted_;  // indexes of recipients with a positive RCPT reply
  size_t rcpt_replies_ = 0;
  size_t data_end_replies_ = 0;
  std::vector<bool> final_;      // the recipient's result is known
  bool mail_ok_ = false;
  bool data_ended_ = false;    // the server answered the end of the data: no RSET needed
  bool lone_dot_ = false;      // RFC 2920 §3.1 empty message after a 354 nobody wanted
  bool broken_ = false;        // out of step with the server: close after the result
  bool draining_ = false;
  bool content_done_ = false;  // the server has all the content
  bool sending_ = false;
  size_t sent_ = 0;            // content bytes handed to the connection
  bool bdat_ = false;
  bool result_ready_ = false;
  smtp::DotStuffer stuffer_;
  std::string out_;
};

// Connects to `where`, greets, runs STARTTLS as configured; `ready` runs once (never inside this
// call), with a Connect, Tls, TempFail/PermFail (greeting, EHLO), Protocol or Timeout failure or the session.
std::string open_session(runtime::ConnectionSet& set, const runtime::ConnectOptions& where, ClientConfig config,
                         ClientSession::Ready ready);

struct PoolOptions {
  size_t max_idle = 4;                                            // idle sessions kept per destination
  std::chrono::milliseconds idle_timeout{std::chrono::seconds(30)};  // then QUIT
  size_t max_transactions = 100;                                  // per connection, then a fresh one
};

// Sessions to one destination (a store, an MX address): a transaction goes to an idle session when
// there is one, else to a new connection; after it, the session is kept idle up to max_idle. Lives
// on one loop; destroy it on that loop (idle sessions are told to QUIT).
class DestinationPool {
 public:
  DestinationPool(runtime::ConnectionSet& set, runtime::ConnectOptions where, ClientConfig config,
                  PoolOptions options = {});
  ~DestinationPool();
  DestinationPool(const DestinationPool&) = delete;
  DestinationPool& operator=(const DestinationPool&) = delete;

  // `done` runs once, later; a failure to connect or greet is every recipient's result.
  void deliver(Message message, ClientSession::Done done);
  size_t idle() const;
  size_t connections_opened() const { return opened_; }
  void close_idle();

 private:
  struct Idle {
    ClientSession* session;
    std::weak_ptr<void> alive;
  };
  void run(ClientSession& session, Message message, ClientSession::Done done);
  void release(ClientSession& session);

  runtime::ConnectionSet& set_;
  runtime::ConnectOptions where_;
  ClientConfig config_;
  PoolOptions options_;
  std::vector<Idle> idle_;
  size_t opened_ = 0;
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
};

// Every recipient of `message` with the same status (a failure before any RCPT was answered).
DeliveryResult failed_delivery(const Message& message, Status status);

}  // namespace common::smtpclient
