// imap_append.cpp: ImapSession's APPEND and MULTIAPPEND (RFC 3502): every message of the command
// streamed to one store Append call as its literal arrives, committed (all or none) only once the
// whole command has parsed; APPENDLIMIT (RFC 7889).
#include "mmp/imap_session.hpp"

#include <algorithm>
#include <utility>
#include <vector>

#include "common/ascii.hpp"
#include "mmp/imap/encode.hpp"
#include "mmp/imap/mutf7.hpp"
#include "mmp/imap_replies.hpp"

namespace mmp {
namespace pb = postern::mailstore::v1;
using imap::Condition;
using store_client::StoreCode;

namespace {

// RFC 9051 §2.3.2: \Recent is the server's to set. Empty: the flags may be stored.
std::string flag_refusal(const imap::AppendMessage& m) {
  for (const auto& f : m.flags) {
    if (common::ascii::iequals(f, "\\Recent")) return "\\Recent cannot be set by APPEND";
  }
  return {};
}

pb::AppendRequest::Start start_request(const std::string& mailbox, const imap::AppendMessage& m) {
  pb::AppendRequest::Start request;
  request.set_mailbox(mailbox);
  for (const auto& f : m.flags) request.add_flags(f);
  if (m.internal_date) request.set_internal_date(*m.internal_date);
  request.set_size(m.size);
  return request;
}

// The response code for a refused APPEND: the store words its limits (store/service/append.cpp),
// and a message or a command over them is TOOBIG (RFC 7889 §4, RFC 4469), too many is LIMIT.
std::string_view append_code(const store_client::StoreError& e) {
  if (e.kind != common::ErrorKind::TempFail && e.code == StoreCode::ResourceExhausted) {
    if (e.message.find("quota") != std::string::npos) return "OVERQUOTA";
    if (e.message.find("too many messages") != std::string::npos) return "LIMIT";
    if (e.message.find("over the limit") != std::string::npos) return "TOOBIG";
  }
  return code_for(e);
}

}  // namespace

std::string ImapSession::append_capabilities() const {
  // RFC 3502 only while the parser takes several messages (the session's parser_options); RFC 7889
  // §3: the largest message an APPEND may carry, the parser's limit after login.
  std::string caps = parser_.options().multiappend ? " MULTIAPPEND" : "";
  return caps + " APPENDLIMIT=" + std::to_string(config_.imap.limits.max_message);
}

void ImapSession::append_start(const imap::AppendStart& start) {
  if (start.index > 0) {
    // MULTIAPPEND (RFC 3502 §3): the next message goes to the same call, after every byte of the
    // one before. Once one message is refused (or the store has answered: a refusal), the rest of
    // the command is read and dropped, and nothing is stored.
    if (!appending_ || !append_ || appending_->answered || !appending_->refusal.empty()) return;
    appending_->refusal = flag_refusal(start.message);
    if (!appending_->refusal.empty()) {
      append_.reset();  // cancelled: the messages before are not stored either
      append_blocked_ = false;
      return;
    }
    append_->next_message(start_request(appending_->mailbox, start.message));
    return;
  }
  appending_ = std::make_unique<AppendState>();
  appending_->tag = start.tag;
  auto name = imap::mailbox_from_wire(start.mailbox, rev2_);
  if (!name) {
    appending_->refusal = "That mailbox name is not valid modified UTF-7";
    return;
  }
  appending_->refusal = flag_refusal(start.message);
  if (!appending_->refusal.empty()) return;
  appending_->mailbox = *name;
  auto answered = [this](store_client::StoreResult<pb::AppendResponse> r) {
    if (!appending_) return;
    appending_->answered = true;
    appending_->result = std::move(r);
    const bool blocked = std::exchange(append_blocked_, false);
    if (appending_->command_seen) return answer_append();
    // Else the store answered early (a limit, no such mailbox): the rest of the command is read
    // and dropped, and the answer waits for the APPEND command. A session that had stopped
    // reading for the store reads on (no drain is coming from an ended call).
    if (blocked) pump();
  };
  append_ = store_->append(start_request(*name, start.message), std::move(answered));
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
    return imap::status_line(state->tag, Condition::No, append_code(r.error()), text_for(r.error()));
  }
  // RFC 4315 §3: APPENDUID with every message's UID in order, as a uid-set (consecutive UIDs as
  // one range); the store has committed all of them to disk before answering.
  std::string code = "APPENDUID " + std::to_string(r->uidvalidity()) + " ";
  if (r->uids_size() == 0) {
    code += std::to_string(r->uid());
  } else {
    const std::vector<uint32_t> uids(r->uids().begin(), r->uids().end());
    imap::append_number_set(code, uids);
  }
  return imap::status_line(state->tag, Condition::Ok, code, "APPEND completed");
}

}  // namespace mmp
