// convert.cpp: proto <-> store operations for the MailStore service (convert.hpp).
#include "store/service/convert.hpp"

#include "common/log/log.hpp"

namespace store::service {
namespace {

grpc::Status invalid(std::string detail) { return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, std::move(detail)); }

ops::Section to_section(const pb::Section& s) {
  ops::Section out;
  out.part.assign(s.part().begin(), s.part().end());
  switch (s.text()) {
    case pb::Section::HEADER: out.text = ops::SectionText::Header; break;
    case pb::Section::TEXT: out.text = ops::SectionText::Text; break;
    case pb::Section::MIME: out.text = ops::SectionText::Mime; break;
    case pb::Section::HEADER_FIELDS: out.text = ops::SectionText::HeaderFields; break;
    case pb::Section::HEADER_FIELDS_NOT: out.text = ops::SectionText::HeaderFieldsNot; break;
    default: out.text = ops::SectionText::Full; break;
  }
  out.fields.assign(s.fields().begin(), s.fields().end());
  out.binary = s.binary() || s.size_only();
  return out;
}

}  // namespace

grpc::Status to_status(const ops::OpError& e) {
  using ops::OpCode;
  switch (e.code) {
    case OpCode::NotFound: return grpc::Status(grpc::StatusCode::NOT_FOUND, e.detail);
    case OpCode::AlreadyExists: return grpc::Status(grpc::StatusCode::ALREADY_EXISTS, e.detail);
    case OpCode::InvalidArgument: return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, e.detail);
    case OpCode::FailedPrecondition: return grpc::Status(grpc::StatusCode::FAILED_PRECONDITION, e.detail);
    case OpCode::ResourceExhausted: return grpc::Status(grpc::StatusCode::RESOURCE_EXHAUSTED, e.detail);
    case OpCode::TempFail: return grpc::Status(grpc::StatusCode::UNAVAILABLE, "store busy or full: " + e.detail);
    case OpCode::Internal: break;
  }
  common::log::error("mailstore").event("store_error").kv("detail", e.detail);
  return grpc::Status(grpc::StatusCode::INTERNAL, "store error");
}

grpc::Status to_status(const common::Error& e) { return to_status(ops::to_op_error(e)); }

Checked<ops::UidSet> to_uid_set(const Ranges& ranges, size_t max_ranges) {
  if (static_cast<size_t>(ranges.size()) > max_ranges) {
    return tl::unexpected(invalid("UID set of " + std::to_string(ranges.size()) + " ranges is over the limit of " +
                                  std::to_string(max_ranges)));
  }
  ops::UidSet set;
  set.reserve(ranges.size());
  for (const auto& r : ranges) {
    if (r.first() == 0 || r.first() > r.last()) {
      return tl::unexpected(invalid("bad UID range " + std::to_string(r.first()) + ":" + std::to_string(r.last())));
    }
    set.emplace_back(r.first(), r.last());
  }
  return ops::normalise(std::move(set));
}

void add_ranges(const ops::UidSet& set, Ranges& out) {
  for (const auto& [first, last] : set) {
    auto* r = out.Add();
    r->set_first(first);
    r->set_last(last);
  }
}

Checked<ops::FlagSet> to_flag_set(const Strings& names) {
  std::vector<std::string> list(names.begin(), names.end());
  auto parsed = ops::parse_flags(list);
  if (!parsed) return tl::unexpected(to_status(parsed.error()));
  return std::move(*parsed);
}

void add_flags(uint32_t bits, const std::vector<std::string>& keywords, Strings& out) {
  for (auto& name : ops::flag_names(bits, keywords)) out.Add(std::move(name));
}

ops::MailboxRef to_ref(const pb::MailboxRef& ref) { return ops::MailboxRef{ref.id(), ref.uidvalidity()}; }

search::Program to_program(const google::protobuf::RepeatedPtrField<pb::SearchKey>& keys) {
  search::Program out;
  out.reserve(keys.size());
  for (const auto& k : keys) {
    search::SearchKey key;
    key.kind = static_cast<search::Kind>(k.kind());
    key.field = k.field();
    key.text = k.text();
    key.number = k.number();
    key.day = k.day();
    key.uids.reserve(k.uids_size());
    for (const auto& r : k.uids()) key.uids.push_back({r.first(), r.last()});
    key.operands = k.operands();
    out.push_back(std::move(key));
  }
  return out;
}

void to_proto(const MailboxRecord& m, pb::MailboxStatus& out) {
  out.set_messages(m.messages);
  out.set_uidnext(m.uidnext);
  out.set_uidvalidity(m.uidvalidity);
  out.set_unseen(m.unseen);
  out.set_size(m.bytes);
  out.set_highest_modseq(m.highestmodseq);
}

void to_proto(const ops::ListEntry& e, pb::MailboxEntry& out) {
  out.set_name(e.name);
  out.set_exists(e.exists);
  out.set_subscribed(e.subscribed);
  out.set_has_children(e.has_children);
  out.set_child_subscribed(e.child_subscribed);
  for (auto& u : ops::special_use_names(e.special_use)) out.add_special_use(std::move(u));
  if (e.exists) out.set_id(e.record.id);
}

void to_proto(const ops::MessageState& m, pb::FlagUpdate& out) {
  out.set_uid(m.uid);
  out.set_modseq(m.modseq);
  add_flags(m.flags, m.keywords, *out.mutable_flags());
}

Checked<void> fetch_message(const common::lmdb::Txn& txn, const Dbs& dbs, const MessageInfo& message,
                            const pb::FetchRequest& request, std::deque<pb::FetchedMessage>& out) {
  const MessageRecord& m = message.record;
  pb::FetchedMessage& first = out.emplace_back();
  first.set_uid(message.uid);
  if (request.flags()) add_flags(m.flags, m.keywords, *first.mutable_flags()->mutable_flags());
  if (request.internal_date()) first.set_internal_date(m.internal_date);
  if (request.size()) first.set_size(m.size);
  if (request.modseq()) first.set_modseq(m.modseq);
  if (!request.envelope() && !request.bodystructure() && !request.body() && request.sections().empty()) return {};
  auto structure = ops::load_structure(txn, dbs, m);
  if (!structure) return tl::unexpected(to_status(structure.error()));
  if (request.envelope()) first.set_envelope(structure->envelope);
  if (request.bodystructure()) first.set_bodystructure(structure->bodystructure);
  if (request.body()) first.set_body(structure->body);
  for (int i = 0; i < request.sections_size(); ++i) {
    const pb::Section& s = request.sections(i);
    std::optional<ops::Partial> partial;
    if (s.partial()) partial = ops::Partial{s.offset(), s.length()};
    auto data = ops::read_section(txn, dbs, m, *structure, to_section(s), partial, s.size_only());
    if (!data && data.error().code == ops::OpCode::FailedPrecondition && s.binary()) {
      auto* d = out.back().add_sections();
      d->set_index(i);
      d->set_unknown_cte(true);
      d->set_last(true);
      continue;
    }
    if (!data) return tl::unexpected(to_status(data.error()));
    // A section starts in the latest entry of the message; its further pieces follow in entries
    // of their own.
    size_t offset = 0;
    pb::FetchedMessage* reply = &out.back();
    do {
      const size_t n = std::min(kSectionPiece, data->data.size() - offset);
      auto* d = reply->add_sections();
      d->set_index(i);
      d->set_offset(offset);
      d->set_data(data->data.substr(offset, n));
      // The proto's total is what the section sends (after partial): the mmp announces it as the
      // literal's size, and a larger one would leave the client waiting for bytes never sent.
      d->set_total(partial ? data->data.size() : data->total);
      d->set_missing(data->missing);
      offset += n;
      d->set_last(offset >= data->data.size());
      if (offset < data->data.size()) {
        reply = &out.emplace_back();
        reply->set_uid(message.uid);
      }
    } while (offset < data->data.size());
  }
  return {};
}

MailboxChange added(uint64_t mailbox_id, const ops::MessageState& m) {
  MailboxChange c;
  c.kind = MailboxChange::Kind::Added;
  c.mailbox_id = mailbox_id;
  c.uid = m.uid;
  c.flags = m.flags;
  c.keywords = m.keywords;
  c.modseq = m.modseq;
  return c;
}

MailboxChange flags_changed(uint64_t mailbox_id, const ops::MessageState& m) {
  MailboxChange c = added(mailbox_id, m);
  c.kind = MailboxChange::Kind::Flags;
  return c;
}

MailboxChange expunged(uint64_t mailbox_id, const ops::UidSet& uids, uint64_t modseq) {
  MailboxChange c;
  c.kind = MailboxChange::Kind::Expunged;
  c.mailbox_id = mailbox_id;
  c.uids = uids;
  c.modseq = modseq;
  return c;
}

MailboxChange gone(uint64_t mailbox_id) {
  MailboxChange c;
  c.kind = MailboxChange::Kind::Gone;
  c.mailbox_id = mailbox_id;
  return c;
}

pb::WatchEvent to_event(const MailboxChange& c) {
  pb::WatchEvent e;
  ops::MessageState m{c.uid, c.flags, c.keywords, c.modseq};
  switch (c.kind) {
    case MailboxChange::Kind::Added: {
      auto* a = e.mutable_added();
      a->set_uid(c.uid);
      a->set_modseq(c.modseq);
      add_flags(c.flags, c.keywords, *a->mutable_flags());
      break;
    }
    case MailboxChange::Kind::Flags: to_proto(m, *e.mutable_flags()); break;
    case MailboxChange::Kind::Expunged: {
      auto* x = e.mutable_expunged();
      add_ranges(c.uids, *x->mutable_uids());
      x->set_modseq(c.modseq);
      break;
    }
    case MailboxChange::Kind::Gone: e.mutable_gone(); break;
  }
  return e;
}

void to_events(const ops::ChangesResult& changes, std::vector<pb::WatchEvent>& out) {
  for (const auto& c : changes.changed) to_proto(c, *out.emplace_back().mutable_flags());
  if (!changes.vanished.empty()) {
    auto* e = out.emplace_back().mutable_expunged();
    add_ranges(changes.vanished, *e->mutable_uids());
    e->set_modseq(changes.highest_modseq);
  }
}

}  // namespace store::service
