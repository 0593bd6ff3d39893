// session.hpp: one inbound SMTP connection (RFC 5321) on port 25, 587 or 465: EHLO with the real
// limits, STARTTLS with a re-greeting, AUTH relayed to authserv (never before TLS), relay blocking by
// channel, local recipients checked at RCPT, DATA or BDAT into the durable queue; the 250 after the
// data only once the message and its envelope are on disk.
#pragma once

#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "common/authclient/authclient.hpp"
#include "common/daemon/daemon.hpp"
#include "common/dns/resolver.hpp"
#include "common/runtime/timer.hpp"
#include "common/smtp/command.hpp"
#include "common/smtpd/server_session.hpp"
#include "mta/config.hpp"
#include "mta/policy/policy.hpp"
#include "mta/queue/queue.hpp"

namespace mta::smtpd {

// What SIGHUP can change without a restart: [mta] and the listeners' own keys, replaced as a whole.
// A session keeps the snapshot it started with, so one transaction never sees two policies.
struct Settings {
  MtaConfig mta;
  std::map<std::string, ListenerOverrides> overrides;  // by listener name
};

class SettingsSlot {
 public:
  explicit SettingsSlot(std::shared_ptr<const Settings> settings) : settings_(std::move(settings)) {}
  std::shared_ptr<const Settings> current() const {
    std::lock_guard lock(mutex_);
    return settings_;
  }
  void replace(std::shared_ptr<const Settings> settings) {
    std::lock_guard lock(mutex_);
    settings_ = std::move(settings);
  }

 private:
  mutable std::mutex mutex_;
  std::shared_ptr<const Settings> settings_;
};

// What every session of one listener on one loop shares.
struct SessionContext {
  std::shared_ptr<SettingsSlot> settings;
  std::string listener;  // the [[listener]] name, for its overrides
  std::string service;   // smtp, submission, submissions
  queue::Queue* queue = nullptr;
  common::authclient::AuthClient* auth = nullptr;
  common::runtime::Loop* loop = nullptr;
  common::dns::Resolver* resolver = nullptr;  // null: no reverse lookups
  std::shared_ptr<common::daemon::TlsContextSlot> starttls;  // set on a STARTTLS listener
  std::function<void()> on_queued;  // a message was committed: the deliverer looks now
};

class SmtpSession final : public common::smtpd::ServerSession {
 public:
  SmtpSession(common::runtime::Connection& connection, const SessionContext& context);
  ~SmtpSession() override;

 private:
  SmtpSession(common::runtime::Connection& connection, const SessionContext& context,
              std::shared_ptr<const Settings> settings);

 public:
  void on_open() override;

 private:
  enum class State { Greeting, Ready, Mail, Rcpt, Data, Bdat, Auth, Closing };

  void ehlo(const common::line::Request& r);
  void helo(const common::line::Request& r);
  void starttls(const common::line::Request& r);
  void auth(const common::line::Request& r);
  void mail(const common::line::Request& r);
  void rcpt(const common::line::Request& r);
  void data(const common::line::Request& r);
  void bdat(const common::line::Request& r);
  void rset(const common::line::Request& r);
  void noop(const common::line::Request& r);
  void vrfy(const common::line::Request& r);
  void expn(const common::line::Request& r);
  void help(const common::line::Request& r);
  void quit(const common::line::Request& r);

  void count_reject(std::string_view reason) override;
  void on_content(std::string_view piece) override;
  void on_message_end(std::optional<common::smtp::SmtpError> refusal) override;
  void on_chunk_done(uint64_t size) override;
  void on_other_raw_line(const common::runtime::LineFrame& line) override;
  void on_command_line_too_long(size_t length) override;
  std::string_view wrong_state_text() const override;
  void on_forget_plaintext() override;

  void greet(const common::smtp::HeloArgs& helo, bool extended);
  void send_ehlo(const std::vector<std::string>& mechanisms);
  void on_sasl(common::authclient::SaslOutput output);
  void auth_line(std::string_view line);
  void look_up(std::string address, std::string asked, common::smtp::RcptArgs rcpt, bool base_tried);
  void recipient_found(const std::string& address, const common::authclient::RecipientInfo& info,
                       const common::smtp::RcptArgs& rcpt);
  void add_recipient(std::string address, std::string destination, const common::smtp::RcptArgs& rcpt,
                     std::string orcpt = {});
  void refuse_recipient(int code, common::smtp::EnhancedCode enh, std::string text, const char* reason);
  void start_data_timer();
  void commit();
  void queued(const common::Result<std::string>& id, std::chrono::steady_clock::time_point started);
  void reset_transaction();
  void start_reverse_lookup();
  std::string received_header();
  policy::Channel channel();
  common::smtp::CommandLimits limits() const;
  common::authclient::ConnectionFacts facts();

  static const common::line::LineSession::Entry kCommands[];

  const SessionContext& context_;
  const std::shared_ptr<const Settings> settings_;
  const MtaConfig* const config_;
  const SessionPolicy policy_;
  std::string helo_;
  bool esmtp_ = false;
  bool greeted_ = false;

  // The client's forward-confirmed name (MTA-21): looked up while the client talks, awaited at the
  // end of the first message if it is not in by then.
  std::string client_name_;
  bool reverse_pending_ = false;
  bool waiting_for_name_ = false;

  std::unique_ptr<common::authclient::SaslRelay> relay_;
  std::optional<common::authclient::AuthenticatedUser> user_;
  std::string auth_mechanism_;
  bool auth_final_ack_ = false;  // SASL success data sent as a 334; waiting for the empty line

  // The transaction.
  common::smtp::MailArgs mail_;
  std::vector<queue::Recipient> recipients_;
  size_t client_recipients_ = 0;  // RCPTs accepted in this transaction (aliases count once)
  bool recipient_limit_logged_ = false;
  size_t session_recipients_ = 0;
  size_t messages_ = 0;
  std::string content_;
  std::optional<common::smtp::SmtpError> bdat_refusal_;  // the transaction cannot succeed; chunks are still read
  common::runtime::Timer data_timer_;
  common::runtime::Timer name_timer_;
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);  // for the resolver's callbacks
};

class SmtpFactory final : public common::runtime::SessionFactory {
 public:
  explicit SmtpFactory(SessionContext context) : context_(std::move(context)) {}
  std::unique_ptr<common::runtime::Session> create(common::runtime::Connection& connection) override {
    return std::make_unique<SmtpSession>(connection, context_);
  }
  std::string refusal(common::runtime::Refusal) override { return "421 4.3.2 Service not available\r\n"; }

 private:
  SessionContext context_;
};

}  // namespace mta::smtpd
