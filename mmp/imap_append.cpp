// imap_append.cpp: ImapSession's APPEND, streamed to the store as the literal arrives and committed
// only once the whole command has parsed.
#include "mmp/imap_session.hpp"

#include <algorithm>

#include "common/ascii.hpp"
#include "mmp/imap/encode.hpp"
#include "mmp/imap/mutf7.hpp"
#include "mmp/imap_replies.hpp"

namespace mmp {
namespace pb = postern::mailstore::v1;
using imap::Condition;
using store_client::StoreCode;

std::string ImapSession::append_capabilities() const { return {}; }

void ImapSession::append_start(const imap::AppendStart& start) {
  appending_ = std::make_unique<AppendState>();
  appending_->tag = start.tag;
  auto name = imap::mailbox_from_wire(start.mailbox, rev2_);
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
  appending_->mailbox = *name;
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
    if (appending_->command_seen) answer_append();
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

void ImapSession::answer_append() {
  const bool here = selected_ && appending_->result && same_mailbox(appending_->mailbox, selected_->name);
  std::string answer = append_answer();
  if (!here) {
    write(answer);
    waiting_ = false;
    return pump();
  }
  // RFC 9051 §6.3.12: an APPEND to the selected mailbox is announced (EXISTS) before its OK.
  answer_after_news(std::move(answer));
}

void ImapSession::answer_after_news(std::string answer) {
  pb::ChangesRequest request;
  *request.mutable_mailbox() = selected_->ref;
  request.set_since_modseq(selected_->highest_modseq);
  store_->changes(std::move(request), [this, answer = std::move(answer)](store_client::StoreResult<pb::ChangesResponse> r) {
    // The command itself has succeeded: a store that cannot say what changed only delays the news
    // to the next NOOP.
    if (r && selected_) tell_changes(*r);
    write(answer);
    waiting_ = false;
    pump();
  });
}

bool ImapSession::same_mailbox(std::string_view a, std::string_view b) {
  // RFC 9051 §5.1: INBOX is case-insensitive; every other name is as written.
  return a == b || (common::ascii::iequals(a, "INBOX") && common::ascii::iequals(b, "INBOX"));
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

}  // namespace mmp
