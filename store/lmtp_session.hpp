// lmtp_session.hpp: one LMTP connection (RFC 2033) from an mta: LHLO, MAIL, RCPT checked with
// authserv, DATA or BDAT, one reply per recipient after the durable commit; the client must hold a
// certificate of the deployment CA whose name [lmtp] allowed_clients lists.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "common/authclient/authclient.hpp"
#include "common/daemon/daemon.hpp"
#include "common/smtp/command.hpp"
#include "common/smtpd/server_session.hpp"
#include "store/config.hpp"
#include "store/mime/parser.hpp"
#include "store/storage/message_store.hpp"

namespace store {

// What every session of one loop shares.
struct LmtpContext {
  const Config* config = nullptr;
  MessageStore* store = nullptr;
  common::authclient::AuthClient* auth = nullptr;
  common::runtime::Loop* loop = nullptr;
  std::shared_ptr<common::daemon::TlsContextSlot> starttls;  // set on a STARTTLS listener
  bool tls_required = false;  // STARTTLS listener without [lmtp] plaintext: every command but LHLO,
                              // STARTTLS, NOOP and QUIT waits for TLS
  std::string host_name;      // for the greeting and LHLO
};

class LmtpSession final : public common::smtpd::ServerSession {
 public:
  LmtpSession(common::runtime::Connection& connection, const LmtpContext& context);
  void on_open() override;

 private:
  enum class State { Greeting, Ready, Mail, Rcpt, Bdat, Data, Closing };
  struct Recipient {
    std::string address;  // as given
    std::string user;
    std::string folder;
    uint64_t quota_bytes = 0;
    uint64_t quota_messages = 0;
  };

  void lhlo(const common::line::Request& r);
  void helo(const common::line::Request& r);
  void starttls(const common::line::Request& r);
  void mail(const common::line::Request& r);
  void rcpt(const common::line::Request& r);
  void data(const common::line::Request& r);
  void bdat(const common::line::Request& r);
  void rset(const common::line::Request& r);
  void noop(const common::line::Request& r);
  void quit(const common::line::Request& r);

  void count_reject(std::string_view reason) override;
  void on_content(std::string_view piece) override;
  void on_message_end(std::optional<common::smtp::SmtpError> refusal) override;
  void on_forget_plaintext() override;

  // The client's certificate names an allowed mta (always true with [lmtp] plaintext).
  bool client_allowed();
  void lookup(std::string address, std::string asked, std::string detail, bool base_tried);
  void accept_recipient(std::string address, const common::authclient::RecipientInfo& info, std::string detail);
  void begin_message();
  void reply_all(std::string_view line);
  void delivered(const common::Result<std::vector<RecipientResult>>& result, std::chrono::steady_clock::time_point started);
  void reset_transaction();
  common::smtp::CommandLimits limits() const;
  common::authclient::ConnectionFacts facts();

  static const common::line::LineSession::Entry kCommands[];

  const LmtpContext& context_;
  std::string client_name_;  // the allowed certificate name, for logs
  bool lhlo_done_ = false;
  std::string from_;
  std::string delivery_id_;
  bool smtputf8_ = false;
  std::vector<Recipient> recipients_;
  std::string body_;
  mime::Parser mime_;
  uint64_t messages_ = 0;
};

class LmtpFactory final : public common::runtime::SessionFactory {
 public:
  explicit LmtpFactory(LmtpContext context) : context_(std::move(context)) {}
  std::unique_ptr<common::runtime::Session> create(common::runtime::Connection& connection) override {
    return std::make_unique<LmtpSession>(connection, context_);
  }
  std::string refusal(common::runtime::Refusal) override { return "421 4.3.2 Service not available\r\n"; }

 private:
  LmtpContext context_;
};

}  // namespace store
