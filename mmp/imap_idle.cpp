// imap_idle.cpp: IDLE (RFC 2177, RFC 9051 §6.3.13) fed by the store's Watch stream, and ENABLE
// (RFC 5161) of the extensions that change what the session tells (CONDSTORE, QRESYNC).
#include <algorithm>

#include "common/ascii.hpp"
#include "common/log/log.hpp"
#include "mmp/imap/encode.hpp"
#include "mmp/imap_replies.hpp"
#include "mmp/imap_session.hpp"

namespace mmp {
namespace pb = postern::mailstore::v1;
using imap::Condition;
using store_client::StoreCode;

void ImapSession::idle(const imap::Command& c) {
  idle_ = std::make_unique<IdleState>();
  idle_->tag = c.tag;
  if (!selected_) {
    // Authenticated but no mailbox: nothing to report, but IDLE is allowed (RFC 9051 §6.3.13).
    idle_->accepted = true;
    write(imap::continuation("idling"));
    parser_.expect_done();
    return;
  }
  // "+ idling" only once the store watches: a store that is down is the IDLE's NO [UNAVAILABLE]
  // (RFC 2177 §3 allows NO for an IDLE the server cannot run now), not a continuation that hears
  // nothing.
  wait();
  watch_open();
}

void ImapSession::watch_open() {
  pb::WatchRequest request;
  *request.mutable_mailbox() = selected_->ref;
  request.set_since_modseq(selected_->highest_modseq);
  idle_->catch_up.Clear();
  watch_ = store_->watch(
      std::move(request), [this](pb::WatchEvent&& e) { watch_event(std::move(e)); },
      [this](store_client::StoreResult<void> r) { watch_ended(std::move(r)); });
}

void ImapSession::watch_event(pb::WatchEvent&& e) {
  if (!idle_ || !selected_) return;
  auto& catch_up = idle_->catch_up;
  if (!watch_ || !watch_->ready() || e.has_ready()) {
    // Before Ready comes what changed since highest_modseq, in MODSEQ order: held and told as one
    // batch, so new messages get their sequence numbers in UID order.
    if (e.has_flags()) *catch_up.add_changed() = std::move(*e.mutable_flags());
    if (e.has_added()) {
      auto* u = catch_up.add_changed();
      u->set_uid(e.added().uid());
      *u->mutable_flags() = std::move(*e.mutable_added()->mutable_flags());
      u->set_modseq(e.added().modseq());
    }
    if (e.has_expunged()) {
      for (auto& r : *e.mutable_expunged()->mutable_uids()) *catch_up.add_vanished() = std::move(r);
    }
    if (e.has_gone()) return idle_lost("NONEXISTENT", "The selected mailbox was deleted", "mailbox_deleted");
    if (!e.has_ready()) return;
    catch_up.set_highest_modseq(e.ready().highest_modseq());
    tell_changes(catch_up);
    catch_up.Clear();
    if (!idle_->accepted) {
      idle_->accepted = true;
      write(imap::continuation("idling"));
      parser_.expect_done();
      waiting_ = false;
      pump();
    }
    return;
  }
  // Live: each commit as it lands, in commit order (a new message's UID is above all before it).
  std::string out;
  if (e.has_added()) {
    const uint32_t uid = e.added().uid();
    if (selected_->uids.push_back(uid)) out = "* " + std::to_string(selected_->uids.size()) + " EXISTS\r\n";
    selected_->highest_modseq = std::max(selected_->highest_modseq, e.added().modseq());
  } else if (e.has_flags()) {
    const uint32_t seq = sequence_of(e.flags().uid());
    if (seq != 0) out = flags_fetch(seq, e.flags(), false);
    selected_->highest_modseq = std::max(selected_->highest_modseq, e.flags().modseq());
  } else if (e.has_expunged()) {
    expunged(e.expunged().uids());
    selected_->highest_modseq = std::max(selected_->highest_modseq, e.expunged().modseq());
  } else if (e.has_gone()) {
    return idle_lost("NONEXISTENT", "The selected mailbox was deleted", "mailbox_deleted");
  }
  write(out);
}

void ImapSession::watch_ended(store_client::StoreResult<void> r) {
  const bool was_ready = watch_ && watch_->ready();
  watch_.reset();
  if (!idle_) return;
  if (!r && was_ready && (r.error().code == StoreCode::DeadlineExceeded || r.error().code == StoreCode::Unauthenticated)) {
    // The stream's own bound (store_client watch_deadline), or the store ending it when the token
    // it was opened with expired (the session renews its token before that): watch again from
    // what was told, with the current token. A store that is gone, or a token that was not
    // renewed, fails the new one before its Ready, and that is told below.
    common::log::debug(kImapComponent).session(connection().info().id).event("watch_renewed");
    return watch_open();
  }
  if (r) return;  // after Gone, which was told
  const auto& e = r.error();
  if (e.kind != common::ErrorKind::TempFail && e.code == StoreCode::Unauthenticated) {
    return idle_lost("", "Your login has expired, log in again", e.detail);
  }
  if (e.kind != common::ErrorKind::TempFail && e.code == StoreCode::NotFound) {
    return idle_lost("NONEXISTENT", "The selected mailbox was deleted", e.detail);
  }
  if (!idle_->accepted) {
    // No "+" yet: the IDLE is refused, the session goes on.
    const std::string tag = std::move(idle_->tag);
    idle_.reset();
    common::log::info(kImapComponent).session(connection().info().id).event("idle_refused").kv("reason", e.detail);
    return store_failed(tag, e);
  }
  idle_lost("UNAVAILABLE", "The mail store went away; reconnect later", e.detail);
}

// While IDLE runs, the session cannot keep its promise to report changes: a client that gets only
// an untagged NO warning would sit in IDLE hearing nothing, so the session ends with BYE (RFC 9051
// §7.1.5: the server closes the connection), and the client reconnects and selects again.
void ImapSession::idle_lost(std::string_view code, std::string_view text, std::string_view reason) {
  common::log::warning(kImapComponent).session(connection().info().id).event("idle_ended").kv("user", user_)
      .kv("reason", reason);
  watch_.reset();
  idle_.reset();
  write(imap::status_line("*", Condition::Bye, code, text));
  closing_ = true;
  connection().close();
}

void ImapSession::idle_end(const imap::IdleEnd& e) {
  if (!idle_) return;
  watch_.reset();
  const std::string tag = std::move(idle_->tag);
  idle_.reset();
  if (!e.done) {
    // RFC 2177 §3: DONE is the only line a client may send while idling.
    return bad(tag, "Expected DONE to end IDLE");
  }
  write(imap::status_line(tag, Condition::Ok, "", "IDLE terminated"));
}

void ImapSession::enable(const imap::Command& c) {
  const auto& a = std::get<imap::EnableArgs>(c.args);
  std::string enabled;
  for (const auto& name : a.capabilities) {
    // RFC 5161 §3.2: only what this command enabled now; unknown names are ignored.
    if (common::ascii::iequals(name, "CONDSTORE") && !condstore_) {
      condstore_ = true;
      enabled += " CONDSTORE";
    } else if (common::ascii::iequals(name, "IMAP4rev2") && !rev2_) {
      // RFC 9051 Appendix E: UTF-8 mailbox names, ESEARCH for SEARCH, no RECENT, from now on.
      rev2_ = true;
      enabled += " IMAP4rev2";
    } else if (common::ascii::iequals(name, "QRESYNC") && !qresync_) {
      // RFC 7162 §3.2.3: QRESYNC implies CONDSTORE.
      qresync_ = true;
      condstore_ = true;
      enabled += " QRESYNC";
    }
  }
  write("* ENABLED" + enabled + "\r\n");
  write(imap::status_line(c.tag, Condition::Ok, "", "ENABLE completed"));
}

}  // namespace mmp
