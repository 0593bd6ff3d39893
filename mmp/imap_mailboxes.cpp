// imap_mailboxes.cpp: the ImapSession commands that name mailboxes without selecting one: LIST/LSUB,
// STATUS, CREATE/DELETE/RENAME/(UN)SUBSCRIBE and the QUOTA commands.
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

std::string ImapSession::mailbox_name(std::string_view wire, std::string_view tag, bool& ok) {
  auto name = imap::mailbox_from_wire(wire, rev2_);
  ok = static_cast<bool>(name);
  if (!ok) {
    write(imap::status_line(tag, Condition::Bad, "", "That mailbox name is not valid modified UTF-7"));
    count_error();
    return {};
  }
  return *name;
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
    auto name = imap::mailbox_from_wire(a.reference + p, rev2_);
    if (!name) return bad(c.tag, "That mailbox pattern is not valid modified UTF-7");
    request.add_patterns(*name);
  }
  request.set_subscribed_only(a.select_subscribed || lsub);
  request.set_special_use_only(a.select_special_use);
  request.set_with_status(!a.return_status.empty());
  wait();
  store_->list(std::move(request), [this, tag = c.tag, a, lsub, word](store_client::StoreResult<pb::ListMailboxesResponse> r) {
    if (!r) return store_failed(tag, r.error());
    const bool say_subscribed = !lsub && (a.return_subscribed || a.select_subscribed);  // RFC 5258 §3.4
    std::string out;
    for (const auto& m : r->mailboxes()) {
      // The store adds the superiors of subscribed names the patterns miss: LSUB lists them as
      // \Noselect (RFC 3501 §6.3.9), LIST (SUBSCRIBED) only with RECURSIVEMATCH (RFC 5258 §3.5).
      const bool via_child = (a.select_subscribed || lsub) && !m.subscribed();
      if (via_child && !lsub && !a.select_recursive) continue;
      std::vector<std::string> attrs;
      if (!m.exists() || (lsub && via_child)) {
        // RFC 5258 §3.4: \NonExistent implies \Noselect; IMAP4rev1 LSUB knows only the latter.
        attrs.push_back(lsub ? "\\Noselect" : "\\NonExistent");
      }
      attrs.push_back(m.has_children() ? "\\HasChildren" : "\\HasNoChildren");
      if (say_subscribed && m.subscribed()) attrs.push_back("\\Subscribed");
      for (const auto& s : m.special_use()) attrs.push_back(s);
      out += "* " + word + " ";
      imap::append_flag_list(out, attrs);
      out += " \"/\" ";
      imap::append_mailbox(out, m.name(), rev2_);
      if (a.select_subscribed && a.select_recursive && m.child_subscribed()) out += " (\"CHILDINFO\" (\"SUBSCRIBED\"))";
      out += "\r\n";
      // RFC 5819 §2: a STATUS after the LIST line of each mailbox that can be selected.
      if (!a.return_status.empty() && m.exists()) out += status_response(m, a.return_status);
    }
    write(out);
    done(tag, Condition::Ok, "", word + " completed");
  });
}

std::string ImapSession::status_response(const pb::MailboxEntry& m, const std::vector<imap::StatusItem>& items) const {
  const auto& s = m.status();
  std::string out = "* STATUS ";
  imap::append_mailbox(out, m.name(), rev2_);
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
  return out + ")\r\n";
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
  store_->status(std::move(request), [this, tag = c.tag, items = a.items](store_client::StoreResult<pb::MailboxEntry> r) {
    if (!r) return store_failed(tag, r.error());
    write(status_response(*r, items));
    done(tag, Condition::Ok, "", "STATUS completed");
  });
}

void ImapSession::manage(const imap::Command& c) {
  using imap::Verb;
  const std::string word(imap::verb_name(c.verb));
  auto finish = [this, tag = c.tag, word](store_client::StoreResult<pb::MailboxChanged> r) {
    if (!r) return store_failed(tag, r.error());
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
    if (a.special_use.empty()) return store_->create(std::move(request), std::move(finish));
    return store_->create(std::move(request), [this, tag = c.tag, finish = std::move(finish)](
                                                  store_client::StoreResult<pb::MailboxChanged> r) mutable {
      // RFC 6154 §3: a special use the server does not know or cannot give is NO [USEATTR].
      if (!r && r.error().kind != common::ErrorKind::TempFail && r.error().code == StoreCode::InvalidArgument) {
        return done(tag, Condition::No, "USEATTR", text_for(r.error()));
      }
      finish(std::move(r));
    });
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
  if (!root) {
    wait();
    return quota_reply(c.tag, {});
  }
  const std::string& wire = std::get<imap::MailboxArgs>(c.args).mailbox;
  bool ok = false;
  std::string name = mailbox_name(wire, c.tag, ok);
  if (!ok) return;
  // RFC 9208 §4.3: GETQUOTAROOT names a mailbox, which must exist (NO [NONEXISTENT] otherwise).
  pb::StatusRequest request;
  request.set_name(name);
  wait();
  store_->status(std::move(request), [this, tag = c.tag](store_client::StoreResult<pb::MailboxEntry> r) {
    if (!r) return store_failed(tag, r.error());
    quota_reply(tag, r->name());
  });
}

void ImapSession::quota_reply(const std::string& tag, std::optional<std::string> root_of) {
  store_->quota([this, tag, root_of = std::move(root_of)](store_client::StoreResult<pb::QuotaResponse> r) {
    if (!r) return store_failed(tag, r.error());
    std::string out;
    if (root_of) {
      out += "* QUOTAROOT ";
      imap::append_mailbox(out, *root_of, rev2_);
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
    done(tag, Condition::Ok, "", root_of ? "GETQUOTAROOT completed" : "GETQUOTA completed");
  });
}

}  // namespace mmp
