// imap_selected.cpp: the selected mailbox: SELECT/EXAMINE, CLOSE/UNSELECT, the commands on its
// messages (FETCH, STORE, SEARCH, COPY/MOVE, EXPUNGE, NOOP/CHECK), and the mapping between sequence
// numbers and UIDs.
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

namespace {

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

// RFC 9051 §9 (seq-number): a message sequence number above the number of messages is invalid,
// and the server should answer BAD rather than act on the messages it could find.
bool beyond_mailbox(const imap::SequenceSet& set, bool uid, size_t messages) {
  return !uid && !set.saved && set.max_number() > messages;
}

}  // namespace

void ImapSession::select(const imap::Command& c) {
  const auto& a = std::get<imap::SelectArgs>(c.args);
  bool ok = false;
  std::string name = mailbox_name(a.mailbox, c.tag, ok);
  if (!ok) return;
  // RFC 7162 §3.2.5: the QRESYNC parameter is a BAD unless QRESYNC was enabled first.
  if (a.qresync && !qresync_) return bad(c.tag, "SELECT (QRESYNC) needs ENABLE QRESYNC first");
  if (a.condstore) condstore_ = true;  // a CONDSTORE-enabling command (RFC 7162 §3.1)
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
  store_->select(std::move(request), [this, tag = c.tag, read_only, qresync = a.qresync](
                                         store_client::StoreResult<pb::SelectResponse> r) {
    if (!r) return store_failed(tag, r.error());
    auto box = std::make_unique<Selected>();
    box->ref = r->mailbox();
    box->name = r->name();
    box->read_only = read_only;
    box->highest_modseq = r->status().highest_modseq();
    std::vector<UidMap::Range> ranges;
    ranges.reserve(static_cast<size_t>(r->uids().size()));
    for (const auto& range : r->uids()) ranges.push_back({range.first(), range.last()});
    box->uids.assign(ranges);
    box->flags.assign(r->flags().begin(), r->flags().end());
    box->keywords_allowed = r->keywords_allowed();
    std::string out = flags_announcement(*box);
    out += "* " + std::to_string(box->uids.size()) + " EXISTS\r\n";
    if (!rev2_) {
      out += "* 0 RECENT\r\n";  // IMAP4rev1 clients expect it; nothing is \Recent here
      if (const uint32_t unseen = box->uids.seq_of(r->first_unseen_uid()); unseen != 0) {
        out += imap::status_line("*", Condition::Ok, "UNSEEN " + std::to_string(unseen), "First unseen message");
      }
    } else {
      // RFC 9051 §6.3.2: IMAP4rev2 has no RECENT and no UNSEEN code, and names the mailbox in a LIST.
      out += "* LIST () \"/\" ";
      imap::append_mailbox(out, box->name, true);
      out += "\r\n";
    }
    out += imap::status_line("*", Condition::Ok, "UIDVALIDITY " + std::to_string(r->status().uidvalidity()), "UIDs valid");
    out += imap::status_line("*", Condition::Ok, "UIDNEXT " + std::to_string(r->status().uidnext()), "Predicted next UID");
    // RFC 7162 §3.1.2.1: a server that keeps MODSEQs sends HIGHESTMODSEQ on every SELECT/EXAMINE.
    out += imap::status_line("*", Condition::Ok, "HIGHESTMODSEQ " + std::to_string(r->status().highest_modseq()),
                             "Highest");
    write(out);
    selected_ = std::move(box);
    state_ = State::Selected;
    const std::string word = read_only ? "EXAMINE" : "SELECT";
    const std::string code = read_only ? "READ-ONLY" : "READ-WRITE";
    // RFC 7162 §3.2.5: with the client's UIDVALIDITY still valid, what changed since its MODSEQ:
    // VANISHED (EARLIER) and the FETCHes; another UIDVALIDITY voids its cache, nothing more is sent.
    if (!qresync || qresync->uidvalidity != selected_->ref.uidvalidity()) return done(tag, Condition::Ok, code, word + " completed");
    resync(tag, qresync->modseq, qresync->known_uids, [this, tag, code, word] { done(tag, Condition::Ok, code, word + " completed"); });
  });
}

void ImapSession::resync(const std::string& tag, uint64_t since, const std::optional<imap::SequenceSet>& uids,
                         std::function<void()> then) {
  pb::ChangesRequest request;
  *request.mutable_mailbox() = selected_->ref;
  request.set_since_modseq(since);
  if (uids) {
    for (auto& r : uid_ranges(*uids, true)) *request.add_uids() = std::move(r);
    if (request.uids().empty()) return then();
  }
  store_->changes(std::move(request), [this, tag, then = std::move(then)](store_client::StoreResult<pb::ChangesResponse> r) {
    if (!r) return store_failed(tag, r.error());
    std::string out;
    if (!r->vanished().empty()) {
      // Below the store's expunge history this is every UID that is not live: a superset the
      // client drops for UIDs it never had (RFC 7162 §3.2.5.2), sent as ranges.
      std::vector<imap::SeqRange> gone;
      for (const auto& range : r->vanished()) gone.push_back({range.first(), range.last()});
      out = "* VANISHED (EARLIER) ";
      imap::append_sequence_set(out, gone);
      out += "\r\n";
    }
    for (const auto& u : r->changed()) {
      const uint32_t seq = sequence_of(u.uid());
      if (seq != 0) out += flags_fetch(seq, u, true);
    }
    write(out);
    then();
  });
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
    if (!r) return store_failed(tag, r.error());
    done(tag, Condition::Ok, "", word + " completed");
  });
}


std::string ImapSession::flags_announcement(const Selected& box) const {
  std::string out = "* FLAGS ";
  imap::append_flag_list(out, box.flags);
  out += "\r\n";
  std::string permanent = "PERMANENTFLAGS ";
  std::vector<std::string> allowed;
  if (!box.read_only) {
    allowed = box.flags;
    if (box.keywords_allowed) allowed.push_back("\\*");
  }
  imap::append_flag_list(permanent, allowed);
  return out + imap::status_line("*", Condition::Ok, permanent, box.read_only ? "No permanent flags" : "Flags permitted");
}

std::string ImapSession::new_keywords(const google::protobuf::RepeatedPtrField<std::string>& flags) {
  bool added = false;
  for (const auto& f : flags) {
    const bool known = std::any_of(selected_->flags.begin(), selected_->flags.end(),
                                   [&](const std::string& k) { return common::ascii::iequals(k, f); });
    if (!known) {
      selected_->flags.push_back(f);
      added = true;
    }
  }
  // RFC 9051 §7.3.5: a keyword new to the mailbox is announced in FLAGS (and PERMANENTFLAGS).
  return added ? flags_announcement(*selected_) : std::string();
}

uint32_t ImapSession::sequence_of(uint32_t uid) const {
  return selected_->uids.seq_of(uid);
}

std::vector<pb::UidRange> ImapSession::uid_ranges(const imap::SequenceSet& set, bool uid) const {
  const auto& uids = selected_->uids;
  std::vector<pb::UidRange> out;
  if (set.saved) {
    // RFC 5182 §2.1: "$" is the last saved result, kept as UIDs, so messages expunged since are
    // simply not found, as the RFC asks; it names the same messages with or without UID.
    for (const auto& r : selected_->saved) {
      pb::UidRange u;
      u.set_first(r.first);
      u.set_last(r.last);
      out.push_back(u);
    }
    return out;
  }
  if (uids.empty()) return out;
  if (uid) {
    for (const auto& r : imap::resolve(set, uids.last_uid())) {
      pb::UidRange u;
      u.set_first(r.first);
      u.set_last(r.last);
      out.push_back(u);
    }
    return out;
  }
  // Sequence numbers name positions in this session's view: each run of them becomes UID runs.
  std::vector<UidMap::Range> runs;
  for (const auto& r : imap::resolve(set, static_cast<uint32_t>(uids.size()))) uids.uids_of(r.first, r.last, runs);
  for (const auto& run : runs) {
    pb::UidRange range;
    range.set_first(run.first);
    range.set_last(run.last);
    out.push_back(range);
  }
  return out;
}

void ImapSession::fetch(const imap::Command& c) {
  const auto& a = std::get<imap::FetchArgs>(c.args);
  if (beyond_mailbox(a.set, c.uid, selected_->uids.size())) return bad(c.tag, "No such message");
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
  // RFC 7162 §3.2.6: VANISHED is for QRESYNC sessions only.
  if (a.vanished && !qresync_) return bad(c.tag, "VANISHED needs ENABLE QRESYNC first");
  // MODSEQ and CHANGEDSINCE are CONDSTORE-enabling (RFC 7162 §3.1); CHANGEDSINCE implies MODSEQ.
  if (a.modseq || a.changed_since) condstore_ = true;
  request.set_modseq(a.modseq || a.changed_since.has_value());
  if (a.changed_since) request.set_changed_since(*a.changed_since);
  for (const auto& s : a.sections) *request.add_sections() = section_for(s);
  const auto uids = request.uids();
  auto args = std::make_shared<imap::FetchArgs>(a);
  if (c.uid) args->uid = true;
  if (sets_seen) args->flags = true;
  if (a.changed_since) args->modseq = true;
  wait();
  std::function<void()> run = [this, tag = c.tag, args, request = std::move(request)]() mutable {
    fetch_uid_ = 0;
    fetch_open_ = false;
    fetch_unknown_cte_ = false;
    fetch_ = store_->fetch(
        std::move(request), [this, args](pb::FetchResponse&& reply) { fetch_reply(std::move(reply), *args); },
        [this, tag](store_client::StoreResult<void> r) {
          if (fetch_open_) write(")\r\n");
          fetch_open_ = false;
          fetch_.reset();
          if (!r) return store_failed(tag, r.error());
          if (fetch_unknown_cte_) {
            return done(tag, Condition::No, "UNKNOWN-CTE", "A part's content transfer encoding is not one this server decodes");
          }
          done(tag, Condition::Ok, "", "FETCH completed");
        });
  };
  if (sets_seen) {
    // RFC 9051 §6.4.5: BODY[] without .PEEK sets \Seen; set first, so the FLAGS answered include it.
    run = [this, tag = c.tag, uids, fetch = std::move(run)]() mutable {
      pb::StoreFlagsRequest seen;
      *seen.mutable_mailbox() = selected_->ref;
      *seen.mutable_uids() = uids;
      seen.set_mode(pb::StoreFlagsRequest::ADD);
      seen.add_flags("\\Seen");
      store_->store_flags(std::move(seen), [this, tag, fetch = std::move(fetch)](
                                               store_client::StoreResult<pb::StoreFlagsResponse> r) mutable {
        if (!r) return store_failed(tag, r.error());
        fetch();
      });
    };
  }
  if (a.vanished) {
    // UID FETCH ... (CHANGEDSINCE n VANISHED): the UIDs of the set expunged since n first, as
    // VANISHED (EARLIER) (RFC 7162 §3.2.6); the FETCHes that follow are the FETCH's own.
    pb::ChangesRequest changes;
    *changes.mutable_mailbox() = selected_->ref;
    changes.set_since_modseq(*a.changed_since);
    *changes.mutable_uids() = uids;
    store_->changes(std::move(changes), [this, tag = c.tag, run = std::move(run)](
                                            store_client::StoreResult<pb::ChangesResponse> r) mutable {
      if (!r) return store_failed(tag, r.error());
      if (!r->vanished().empty()) {
        std::vector<imap::SeqRange> gone;
        for (const auto& range : r->vanished()) gone.push_back({range.first(), range.last()});
        std::string out = "* VANISHED (EARLIER) ";
        imap::append_sequence_set(out, gone);
        out += "\r\n";
        write(out);
      }
      run();
    });
    return;
  }
  run();
}

// One reply of the store's stream holds several messages (a large section's further pieces in
// entries of their own): all of them go to the client in one write, so a reply costs one TLS record
// (or a few, 16 KiB each) and one socket send rather than one per message. A message stays open at
// the end of a reply only while a piece of its last section is still to come.
void ImapSession::fetch_reply(pb::FetchResponse&& reply, const imap::FetchArgs& args) {
  std::string out;
  for (const auto& entry : reply.messages()) fetch_entry(entry, args, out);
  write(out);
  if (connection().write_blocked() && fetch_) fetch_->pause();
}

void ImapSession::fetch_entry(const pb::FetchedMessage& entry, const imap::FetchArgs& args, std::string& out) {
  if (entry.uid() != fetch_uid_ || !fetch_open_) {
    if (fetch_open_) out += ")\r\n";
    fetch_open_ = false;
    fetch_uid_ = entry.uid();
    const uint32_t seq = sequence_of(entry.uid());
    if (seq == 0) return;  // arrived after this session's view: told at the next NOOP
    out += "* " + std::to_string(seq) + " FETCH (";
    fetch_open_ = true;
    fetch_empty_ = true;
    auto item = [&](std::string_view text) {
      if (!fetch_empty_) out += ' ';
      fetch_empty_ = false;
      out += text;
    };
    if (args.uid) item("UID " + std::to_string(entry.uid()));
    if (args.flags) {
      item("FLAGS ");
      std::vector<std::string> flags(entry.flags().flags().begin(), entry.flags().flags().end());
      imap::append_flag_list(out, flags);
    }
    if (args.internal_date) {
      item("INTERNALDATE ");
      imap::append_date_time(out, entry.internal_date());
    }
    if (args.size) item("RFC822.SIZE " + std::to_string(entry.size()));
    if (args.envelope) item("ENVELOPE " + entry.envelope());
    if (args.bodystructure) item("BODYSTRUCTURE " + entry.bodystructure());
    if (args.body) item("BODY " + entry.body());
    if (args.modseq) item("MODSEQ (" + std::to_string(entry.modseq()) + ")");
  }
  if (!fetch_open_) return;
  using Item = imap::BodySection::Item;
  bool complete = true;  // nothing of this message is still to come
  for (const auto& piece : entry.sections()) {
    complete = piece.last() && piece.index() + 1 >= static_cast<uint32_t>(args.sections.size());
    if (piece.index() >= static_cast<uint32_t>(args.sections.size())) continue;
    const auto& asked = args.sections[piece.index()];
    if (piece.unknown_cte()) {
      // RFC 3516 §4.3: the FETCH ends NO [UNKNOWN-CTE]; the message's other items still go out
      // (its UID when there are none, so the response stays well formed).
      fetch_unknown_cte_ = true;
      if (fetch_empty_) out += "UID " + std::to_string(entry.uid());
      fetch_empty_ = false;
      continue;
    }
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
  if (complete) {
    out += ")\r\n";
    fetch_open_ = false;
  }
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
  if (beyond_mailbox(a.set, c.uid, selected_->uids.size())) return bad(c.tag, "No such message");
  pb::StoreFlagsRequest request;
  *request.mutable_mailbox() = selected_->ref;
  for (auto& r : uid_ranges(a.set, c.uid)) *request.add_uids() = std::move(r);
  if (request.uids().empty()) return write(imap::status_line(c.tag, Condition::Ok, "", "STORE completed"));
  request.set_mode(static_cast<pb::StoreFlagsRequest::Mode>(a.mode));
  for (const auto& f : a.flags) request.add_flags(f);
  if (a.unchanged_since) {
    request.set_unchanged_since(*a.unchanged_since);
    condstore_ = true;  // CONDSTORE-enabling (RFC 7162 §3.1)
  }
  wait();
  store_->store_flags(std::move(request), [this, tag = c.tag, uid = c.uid, silent = a.silent](
                                              store_client::StoreResult<pb::StoreFlagsResponse> r) {
    if (!r) return store_failed(tag, r.error());
    std::string out;
    for (const auto& u : r->updated()) out += new_keywords(u.flags());
    for (const auto& u : r->updated()) {
      const uint32_t seq = sequence_of(u.uid());
      // RFC 7162 §3.1.3: .SILENT still answers the MODSEQ of what changed once CONDSTORE is on.
      if (seq == 0 || (silent && !condstore_)) continue;
      if (silent) {
        out += "* " + std::to_string(seq) + " FETCH (UID " + std::to_string(u.uid()) + " MODSEQ (" +
               std::to_string(u.modseq()) + "))\r\n";
        continue;
      }
      out += flags_fetch(seq, u, uid);
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
  // Only UIDs this session shows: a range from the store may be far wider (below its expunge
  // history it lists every UID that is not live).
  for (const auto& r : ranges) selected_->uids.held(r.first(), r.last(), gone);
  std::sort(gone.begin(), gone.end());
  gone.erase(std::unique(gone.begin(), gone.end()), gone.end());
  std::string out;
  if (qresync_ && !gone.empty()) {
    // RFC 7162 §3.2.10: once QRESYNC is enabled, VANISHED (UIDs) replaces EXPUNGE.
    out = "* VANISHED ";
    imap::append_number_set(out, gone);
    out += "\r\n";
    selected_->uids.remove(gone);
    return write(out);
  }
  // Highest first: removing a message renumbers only those above it, so each number is still
  // the one the client has when it reads the line.
  for (auto it = gone.rbegin(); it != gone.rend(); ++it) {
    const uint32_t seq = sequence_of(*it);
    if (seq != 0) out += "* " + std::to_string(seq) + " EXPUNGE\r\n";
  }
  selected_->uids.remove(gone);
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
    for (auto& r : uid_ranges(*a.uids, true)) *request.add_uids() = std::move(r);
    request.set_restrict_to_uids(true);
  }
  wait();
  store_->expunge(std::move(request), [this, tag = c.tag](store_client::StoreResult<pb::ExpungeResponse> r) {
    if (!r) return store_failed(tag, r.error());
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
  pb::SearchRequest request;
  *request.mutable_mailbox() = selected_->ref;
  bool by_modseq = false;
  for (const auto& key : a.program) {
    by_modseq = by_modseq || key.kind == imap::SearchKind::ModSeq;
    auto* k = request.add_program();
    switch (key.kind) {
      case imap::SearchKind::Sequence:
      case imap::SearchKind::Uid: {
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
  if (by_modseq) condstore_ = true;  // SEARCH MODSEQ is CONDSTORE-enabling (RFC 7162 §3.1)
  wait();
  store_->search(std::move(request), [this, tag = c.tag, uid = c.uid, a, by_modseq](
                                         store_client::StoreResult<pb::SearchResponse> r) {
    if (!r) {
      if (a.ret_save) selected_->saved.clear();  // RFC 5182 §2.1: a failed SAVE leaves "$" empty
      return store_failed(tag, r.error());
    }
    std::vector<uint32_t> numbers;
    for (const auto& range : r->uids()) {
      for (uint64_t u = range.first(); u <= range.last(); ++u) {
        const uint32_t n = uid ? static_cast<uint32_t>(u) : sequence_of(static_cast<uint32_t>(u));
        if (n != 0 && (uid ? sequence_of(n) != 0 : true)) numbers.push_back(n);
      }
    }
    std::sort(numbers.begin(), numbers.end());
    if (a.ret_save) save_result(*r, a);
    std::string out;
    // RFC 5182 §2.1: SAVE alone answers no ESEARCH response (the client asked to keep, not see).
    const bool only_save = a.ret_save && !a.ret_min && !a.ret_max && !a.ret_all && !a.ret_count;
    // RFC 9051 §6.4.4: an IMAP4rev2 session always gets ESEARCH.
    if (!a.esearch && !rev2_ && !only_save) {
      out = "* SEARCH";
      for (uint32_t n : numbers) out += " " + std::to_string(n);
      // RFC 7162 §3.1.5: with a MODSEQ key, the highest MODSEQ of the matches ends the response.
      if (by_modseq && !numbers.empty()) out += " (MODSEQ " + std::to_string(r->highest_modseq()) + ")";
      out += "\r\n";
    } else if (!only_save) {
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
      if (by_modseq && !numbers.empty()) out += " MODSEQ " + std::to_string(r->highest_modseq());
      out += "\r\n";
    }
    write(out);
    done(tag, Condition::Ok, "", "SEARCH completed");
  });
}

void ImapSession::save_result(const pb::SearchResponse& r, const imap::SearchArgs& a) {
  auto& saved = selected_->saved;
  saved.clear();
  std::vector<uint32_t> live;  // the matches this session shows, ascending UIDs
  for (const auto& range : r.uids()) {
    for (uint64_t u = range.first(); u <= range.last(); ++u) {
      if (sequence_of(static_cast<uint32_t>(u)) != 0) live.push_back(static_cast<uint32_t>(u));
    }
  }
  std::sort(live.begin(), live.end());
  if (live.empty()) return;
  // RFC 5182 §2.1: SAVE with MIN and/or MAX (and neither ALL nor COUNT) keeps only those.
  if ((a.ret_min || a.ret_max) && !a.ret_all && !a.ret_count) {
    if (a.ret_min) saved.push_back({live.front(), live.front()});
    if (a.ret_max && (!a.ret_min || live.back() != live.front())) saved.push_back({live.back(), live.back()});
    return;
  }
  for (uint32_t u : live) {
    if (!saved.empty() && saved.back().last + 1 == u) {
      saved.back().last = u;
    } else {
      saved.push_back({u, u});
    }
  }
}

void ImapSession::copy(const imap::Command& c) {
  const auto& a = std::get<imap::CopyArgs>(c.args);
  const bool move = c.verb == imap::Verb::Move;
  if (move && selected_->read_only) {
    write(imap::status_line(c.tag, Condition::No, "READ-ONLY", "The mailbox was opened with EXAMINE"));
    return;
  }
  bool ok = false;
  std::string target = mailbox_name(a.mailbox, c.tag, ok);
  if (!ok) return;
  if (beyond_mailbox(a.set, c.uid, selected_->uids.size())) return bad(c.tag, "No such message");
  pb::CopyRequest request;
  *request.mutable_mailbox() = selected_->ref;
  for (auto& r : uid_ranges(a.set, c.uid)) *request.add_uids() = std::move(r);
  const std::string word(imap::verb_name(c.verb));
  if (request.uids().empty()) return write(imap::status_line(c.tag, Condition::Ok, "", word + " completed"));
  request.set_target(target);
  request.set_move(move);
  wait();
  // RFC 9051 §6.4.7: messages copied into the selected mailbox are announced (EXISTS) before the OK.
  const bool here = same_mailbox(target, selected_->name);
  store_->copy(std::move(request), [this, tag = c.tag, move, word, here](store_client::StoreResult<pb::CopyResponse> r) {
    auto answer = [&](const std::string& code) {
      if (!here) return done(tag, Condition::Ok, code, word + " completed");
      answer_after_news(imap::status_line(tag, Condition::Ok, code, word + " completed"));
    };
    if (!r) {
      // RFC 9051 §6.4.7: a target that does not exist is NO [TRYCREATE].
      if (r.error().kind != common::ErrorKind::TempFail && r.error().code == StoreCode::NotFound) {
        return done(tag, Condition::No, "TRYCREATE", "No such mailbox");
      }
      return store_failed(tag, r.error());
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
    if (!move) return answer(code);
    // RFC 6851 §4.3: COPYUID in an untagged OK before the EXPUNGEs.
    if (!code.empty()) write(imap::status_line("*", Condition::Ok, code, "Moved"));
    expunged(r->expunged());
    answer("");
  });
}

void ImapSession::poll(const std::string& tag, std::string_view verb) {
  pb::ChangesRequest request;
  *request.mutable_mailbox() = selected_->ref;
  request.set_since_modseq(selected_->highest_modseq);
  wait();
  store_->changes(std::move(request), [this, tag, word = std::string(verb)](store_client::StoreResult<pb::ChangesResponse> r) {
    if (!r) return store_failed(tag, r.error());
    tell_changes(*r);
    done(tag, Condition::Ok, "", word + " completed");
  });
}

std::string ImapSession::flags_fetch(uint32_t seq, const pb::FlagUpdate& u, bool uid) const {
  std::string out = "* " + std::to_string(seq) + " FETCH (";
  if (uid || condstore_) out += "UID " + std::to_string(u.uid()) + " ";
  out += "FLAGS ";
  std::vector<std::string> flags(u.flags().begin(), u.flags().end());
  imap::append_flag_list(out, flags);
  if (condstore_ && u.modseq() != 0) out += " MODSEQ (" + std::to_string(u.modseq()) + ")";
  out += ")\r\n";
  return out;
}

void ImapSession::tell_changes(const pb::ChangesResponse& r) {
  expunged(r.vanished());
  std::string out;
  // A UID above every one this session shows is a message it has not told yet (UIDs only grow);
  // the store lists changes in MODSEQ order, so new ones are sorted before they get numbers.
  const uint32_t known_last = selected_->uids.last_uid();
  std::vector<uint32_t> added;
  std::vector<const pb::FlagUpdate*> flag_changes;
  for (const auto& u : r.changed()) {
    if (u.uid() > known_last) {
      added.push_back(u.uid());
    } else {
      flag_changes.push_back(&u);
    }
  }
  std::sort(added.begin(), added.end());
  added.erase(std::unique(added.begin(), added.end()), added.end());
  for (uint32_t u : added) selected_->uids.push_back(u);
  if (!added.empty()) out += "* " + std::to_string(selected_->uids.size()) + " EXISTS\r\n";
  for (const auto* u : flag_changes) {
    const uint32_t seq = sequence_of(u->uid());
    if (seq != 0) out += flags_fetch(seq, *u, false);
  }
  selected_->highest_modseq = std::max(selected_->highest_modseq, r.highest_modseq());
  write(out);
}

}  // namespace mmp
