// imap_session.hpp: one IMAP client connection (RFC 9051 with the RFC 3501 forms): the pure parser
// (mmp/imap) reads the client, authserv logs the user in (common/authclient's SASL relay), and the
// user's store serves the mailbox (mmp/store_client). Sequence numbers are kept here; the store
// speaks UIDs only. The commands are in imap_session.cpp (state, login), imap_mailboxes.cpp,
// imap_selected.cpp and imap_append.cpp.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "common/authclient/authclient.hpp"
#include "common/daemon/daemon.hpp"
#include "common/runtime/connection.hpp"
#include "common/runtime/timer.hpp"
#include "mmp/config.hpp"
#include "mmp/imap/parser.hpp"
#include "mmp/store_client/store_client.hpp"
#include "mmp/uid_map.hpp"

namespace common::runtime {
class Loop;
}

namespace mmp {

struct ImapContext {
  std::shared_ptr<const Config> config;
  common::authclient::AuthClient* auth = nullptr;
  store_client::StoreClient* stores = nullptr;
  common::runtime::Loop* loop = nullptr;
  std::shared_ptr<common::daemon::TlsContextSlot> starttls;  // null: no STARTTLS (implicit TLS or none)
  std::string listener;
  bool implicit_tls = false;  // IMAPS: the greeting waits for the handshake (PREAUTH by certificate)
  bool client_certs = false;  // the listener asks for client certificates
  std::shared_ptr<const ListenerSettings> settings;  // the listener's virtual domain, resolved
};

class ImapSession final : public common::runtime::StartTlsSession {
 public:
  ImapSession(common::runtime::Connection& connection, ImapContext context);
  ~ImapSession() override;

  void on_open() override;
  void on_data(std::string_view bytes) override;
  void on_timeout(common::runtime::TimeoutKind kind) override;
  void on_drain() override;
  void on_writable() override;
  void on_closed(common::runtime::CloseReason reason) override;
  size_t forget_plaintext() override;

  enum class State { NotAuthenticated, Authenticated, Selected, Logout };

 private:
  struct Selected {
    postern::mailstore::v1::MailboxRef ref;
    std::string name;
    bool read_only = false;
    UidMap uids;  // ascending: uid_at(n) is message sequence number n
    uint64_t highest_modseq = 0;  // what this session has told the client up to
    std::vector<imap::SeqRange> saved;  // RFC 5182 SEARCHRES "$", as UID ranges
    std::vector<std::string> flags;     // what FLAGS told the client
    bool keywords_allowed = false;      // PERMANENTFLAGS has \*
  };

  // Runs the parser's events until a command waits for authserv or the store, or input runs out.
  void pump();
  void handle(imap::Event& event);
  void command(imap::Command& c);
  void parse_error(const imap::ParseError& e);
  // The command waiting for async work is answered: the next one may run.
  void done(std::string_view tag, imap::Condition condition, std::string_view code, std::string_view text);
  void store_failed(std::string_view tag, const store_client::StoreError& e);  // done() with NO [code]
  void wait();
  void write(std::string_view bytes);
  void bad(std::string_view tag, std::string_view text);
  void count_error();

  bool tls_on() const;
  common::authclient::ConnectionFacts facts() const;
  std::string capabilities(const std::vector<std::string>& mechanisms) const;
  std::string append_capabilities() const;  // what APPEND offers (imap_append.cpp), each with a leading space

  void capability(const imap::Command& c);
  void starttls(const imap::Command& c);
  void login(const imap::Command& c);
  void authenticate(const imap::Command& c);
  void sasl_start(const std::string& tag, const std::string& mechanism, std::optional<std::string> initial_base64);
  void sasl_output(common::authclient::SaslOutput output);
  // Login, certificates and the token (imap_session.cpp).
  void on_transform_ready() override;
  void greet(const std::vector<std::string>& mechanisms);
  // authserv's mechanisms for this connection, EXTERNAL only if the certificate maps to a user.
  void mechanisms_then(std::function<void(std::vector<std::string>)> then);
  void capability_reply(const std::string& tag, const std::vector<std::string>& mechanisms);
  const std::string& default_domain() const;  // the listener's, or its SNI name's (virtual domains)
  bool restrict_plain() const;
  bool certificate_verified() const;
  // Runs `then` once authserv has said whether the verified client certificate maps to a user
  // (cert_state_ Mapped, with cert_user_) or not; at once when that is known or there is none.
  void map_certificate(std::function<void()> then);
  void login_refused(const std::string& tag, std::string_view code, std::string_view text);
  bool open_mailbox(const common::authclient::AuthenticatedUser& user, std::string_view mechanism);
  void logged_in(const std::string& tag, const common::authclient::AuthenticatedUser& user, std::string_view mechanism);
  static int64_t now_unix();
  void schedule_renewal(int64_t expires_unix);
  void renew_token();
  void select(const imap::Command& c);
  void list(const imap::Command& c);
  void status(const imap::Command& c);
  // The untagged STATUS of one mailbox (STATUS, and LIST RETURN (STATUS) of RFC 5819).
  std::string status_response(const postern::mailstore::v1::MailboxEntry& m,
                              const std::vector<imap::StatusItem>& items) const;
  void fetch(const imap::Command& c);
  void store(const imap::Command& c);
  void expunge(const imap::Command& c);
  void search(const imap::Command& c);
  void copy(const imap::Command& c);
  void manage(const imap::Command& c);  // CREATE, DELETE, RENAME, SUBSCRIBE, UNSUBSCRIBE
  void quota(const imap::Command& c);
  // The untagged QUOTA (with QUOTAROOT for `root_of`'s mailbox first) and the tagged OK.
  void quota_reply(const std::string& tag, std::optional<std::string> root_of);
  // NOOP and CHECK while selected: tell the client what changed since (RFC 9051 §7.4.1, §7.5.1).
  void poll(const std::string& tag, std::string_view verb);
  // Untagged EXPUNGE for each UID this session still shows, highest first, so each number is
  // right when the client reads it; drops them from the view.
  void expunged(const google::protobuf::RepeatedPtrField<postern::mailstore::v1::UidRange>& uids);
  // A reply of the store's Fetch: every message in it written at once (imap_selected.cpp).
  void fetch_reply(postern::mailstore::v1::FetchResponse&& reply, const imap::FetchArgs& args);
  // One entry of it (a message, or a further piece of its sections) appended to `out`.
  void fetch_entry(const postern::mailstore::v1::FetchedMessage& entry, const imap::FetchArgs& args, std::string& out);
  // News from the store (Changes, a Watch's catch-up): expunges first, then new messages (one
  // EXISTS), then flag changes; the view and highest_modseq follow what was told.
  void tell_changes(const postern::mailstore::v1::ChangesResponse& changes);
  // An unsolicited FETCH of a message's flags; with CONDSTORE on, with its UID and MODSEQ too
  // (RFC 7162 §3.1: every untagged FETCH after a CONDSTORE-enabling command carries both).
  std::string flags_fetch(uint32_t seq, const postern::mailstore::v1::FlagUpdate& u, bool uid) const;
  // IDLE (imap_idle.cpp, RFC 2177): the store's Watch feeds the untagged responses until DONE.
  void idle(const imap::Command& c);
  void idle_end(const imap::IdleEnd& e);
  void watch_open();
  void watch_event(postern::mailstore::v1::WatchEvent&& e);
  void watch_ended(store_client::StoreResult<void> r);
  void idle_lost(std::string_view code, std::string_view text, std::string_view reason);
  void enable(const imap::Command& c);  // RFC 5161
  void save_result(const postern::mailstore::v1::SearchResponse& r, const imap::SearchArgs& a);  // RFC 5182
  // QRESYNC (RFC 7162 §3.2.5, §3.2.6): VANISHED (EARLIER) and the FETCH of each message changed
  // since `since` (within `uids` when given), then `then`; a store error answers `tag` instead.
  void resync(const std::string& tag, uint64_t since, const std::optional<imap::SequenceSet>& uids,
              std::function<void()> then);
  void close_mailbox(const imap::Command& c);
  std::string flags_announcement(const Selected& box) const;  // untagged FLAGS and PERMANENTFLAGS
  // The announcement again when `flags` hold keywords the client has not been told of (added to FLAGS).
  std::string new_keywords(const google::protobuf::RepeatedPtrField<std::string>& flags);
  // APPEND: the store's stream opens at AppendStart, takes the AppendData pieces, and commits only
  // once the APPEND command itself has been parsed whole (finish()); a ParseError drops it.
  void append_start(const imap::AppendStart& start);
  void append_data(imap::AppendData& data);
  void append_command(const imap::Command& c);
  std::string append_answer();  // the APPEND's tagged reply, from the store's answer
  void answer_append();  // append_answer(), after the news when the message went to the selected mailbox
  // Tells what changed in the selected mailbox (tell_changes), then writes `answer` and reads on.
  void answer_after_news(std::string answer);
  static bool same_mailbox(std::string_view a, std::string_view b);
  void logout(const imap::Command& c);
  std::vector<postern::mailstore::v1::UidRange> uid_ranges(const imap::SequenceSet& set, bool uid) const;
  uint32_t sequence_of(uint32_t uid) const;  // 0: not in the mailbox as this session knows it
  std::string mailbox_name(std::string_view wire, std::string_view tag, bool& ok);

  ImapContext context_;
  const Config& config_;
  imap::Parser parser_;
  std::vector<imap::Event> events_;
  size_t next_event_ = 0;
  State state_ = State::NotAuthenticated;
  bool waiting_ = false;   // a command is with authserv or the store
  bool closing_ = false;
  unsigned errors_ = 0;
  std::string user_;       // canonical, once logged in
  std::unique_ptr<common::authclient::SaslRelay> relay_;
  std::string sasl_tag_;
  std::string sasl_mechanism_;  // for the login line
  // authserv accepted the exchange; the client has yet to answer its success data (SCRAM server-final).
  std::optional<common::authclient::AuthenticatedUser> sasl_verified_;
  enum class CertState { Unknown, Mapping, Mapped, Unmapped };
  CertState cert_state_ = CertState::Unknown;
  std::unique_ptr<common::authclient::SaslRelay> cert_relay_;
  std::optional<common::authclient::AuthenticatedUser> cert_user_;  // Mapped, until a login uses it
  std::string token_;          // the store's access token, renewed before token_expires_
  int64_t token_expires_ = 0;
  std::unique_ptr<common::runtime::Timer> renew_timer_;
  std::unique_ptr<store_client::StoreSession> store_;
  std::unique_ptr<Selected> selected_;
  std::unique_ptr<store_client::FetchCall> fetch_;
  // FETCH in progress: the message being written and its open literal.
  std::unique_ptr<store_client::AppendCall> append_;
  struct AppendState {
    std::string tag;
    std::string mailbox;        // the target, decoded
    bool command_seen = false;  // the APPEND command is parsed: the message is whole
    bool answered = false;      // the store's reply (or our refusal) is in `result`
    std::string refusal;        // set: refused before the store saw it (BAD text)
    store_client::StoreResult<postern::mailstore::v1::AppendResponse> result{
        tl::unexpected(store_client::StoreError{})};
  };
  std::unique_ptr<AppendState> appending_;
  bool append_blocked_ = false;  // reading paused until the store has taken what is queued
  uint32_t fetch_uid_ = 0;
  bool fetch_open_ = false;
  bool fetch_empty_ = true;  // nothing written yet inside its parentheses
  bool fetch_unknown_cte_ = false;  // a BINARY section could not be decoded: NO [UNKNOWN-CTE]
  // IDLE in progress: its tag, whether "+ idling" was sent (DONE may come), and the Watch's
  // catch-up (before Ready) held to be told as one batch in UID order.
  struct IdleState {
    std::string tag;
    bool accepted = false;
    postern::mailstore::v1::ChangesResponse catch_up;
  };
  std::unique_ptr<IdleState> idle_;
  std::unique_ptr<store_client::WatchCall> watch_;
  // RFC 5161 ENABLE, or a CONDSTORE-enabling command (RFC 7162 §3.1): for the rest of the session.
  bool condstore_ = false;
  bool qresync_ = false;
  bool rev2_ = false;  // ENABLE IMAP4rev2 (RFC 9051 Appendix E): UTF-8 names, ESEARCH, no RECENT
};

class ImapFactory final : public common::runtime::SessionFactory {
 public:
  explicit ImapFactory(ImapContext context) : context_(std::move(context)) {}
  std::unique_ptr<common::runtime::Session> create(common::runtime::Connection& connection) override {
    return std::make_unique<ImapSession>(connection, context_);
  }
  // RFC 9051 §7.1.5: a BYE greeting refuses the connection.
  std::string refusal(common::runtime::Refusal) override { return "* BYE Too many connections, try again later\r\n"; }

 private:
  ImapContext context_;
};

}  // namespace mmp
