// ops.cpp: the queue's operations inside one transaction (ops.hpp). Invariants (README "Schema"):
// a recipient is in `schedule` and `dest_schedule` at its next_attempt exactly while Queued or
// Deferred; a message is deleted with its last recipient that is not Delivered or Failed.
#include "mta/queue/ops.hpp"

#include <algorithm>
#include <cctype>
#include <map>
#include <random>
#include <set>

#include "common/lmdb/codec.hpp"
#include "common/log/log.hpp"
#include "mta/queue/dsn.hpp"

namespace mta::queue {
namespace {

using common::Error;
using common::ErrorKind;
using common::Result;
using common::lmdb::Cursor;
using common::lmdb::Decoder;
using common::lmdb::Encoder;

#define TRY_VOID(expr)                                      \
  do {                                                      \
    if (auto _r = (expr); !_r) return tl::unexpected(_r.error()); \
  } while (0)

bool active(RcptState s) { return s == RcptState::Queued || s == RcptState::Deferred; }
bool pending(RcptState s) { return active(s) || s == RcptState::Held; }

Result<uint64_t> next_counter(Txn& txn, const Dbs& dbs, std::string_view name) {
  auto value = txn.get(dbs.meta, name);
  if (!value) return tl::unexpected(value.error());
  uint64_t next = 1;
  if (*value) {
    Decoder d(**value);
    if (!d.u64(next) || !d.done()) return common::fail(ErrorKind::Internal, "damaged queue meta " + std::string(name));
  }
  TRY_VOID(txn.put(dbs.meta, name, Encoder().u64(next + 1).str()));
  return next;
}

Result<Counters> load_counters(const Txn& txn, const Dbs& dbs) {
  auto value = txn.get(dbs.meta, "counters");
  if (!value) return tl::unexpected(value.error());
  if (!*value) return Counters{};
  return decode_counters(**value);
}
Result<void> store_counters(Txn& txn, const Dbs& dbs, const Counters& c) {
  return txn.put(dbs.meta, "counters", encode(c));
}

void move_count(Counters& c, RcptState from, RcptState to) {
  if (c.of(from) > 0) c.of(from) -= 1;
  c.of(to) += 1;
}

Result<std::optional<Recipient>> get_recipient(const Txn& txn, const Dbs& dbs, std::string_view id, uint32_t index) {
  auto value = txn.get(dbs.recipients, recipient_key(id, index));
  if (!value) return tl::unexpected(value.error());
  if (!*value) return std::optional<Recipient>{};
  auto r = decode_recipient(**value);
  if (!r) return tl::unexpected(r.error());
  return std::optional<Recipient>{std::move(*r)};
}

Result<std::optional<Envelope>> get_envelope(const Txn& txn, const Dbs& dbs, std::string_view id) {
  auto value = txn.get(dbs.envelopes, id);
  if (!value) return tl::unexpected(value.error());
  if (!*value) return std::optional<Envelope>{};
  auto e = decode_envelope(**value);
  if (!e) return tl::unexpected(e.error());
  return std::optional<Envelope>{std::move(*e)};
}

Result<void> put_recipient(Txn& txn, const Dbs& dbs, std::string_view id, uint32_t index, const Recipient& r) {
  return txn.put(dbs.recipients, recipient_key(id, index), encode(r));
}

Result<void> schedule(Txn& txn, const Dbs& dbs, std::string_view id, uint32_t index, const Recipient& r) {
  TRY_VOID(txn.put(dbs.schedule, schedule_key(r.next_attempt, id, index), ""));
  return txn.put(dbs.dest_schedule, dest_schedule_key(r.destination, r.next_attempt, id, index), "");
}

Result<void> unschedule(Txn& txn, const Dbs& dbs, std::string_view id, uint32_t index, const Recipient& r) {
  TRY_VOID(txn.del(dbs.schedule, schedule_key(r.next_attempt, id, index)));
  TRY_VOID(txn.del(dbs.dest_schedule, dest_schedule_key(r.destination, r.next_attempt, id, index)));
  return {};
}

// Every recipient of a message, in index order.
Result<std::vector<Recipient>> recipients_of(const Txn& txn, const Dbs& dbs, std::string_view id) {
  std::vector<Recipient> out;
  auto cursor = Cursor::open(txn, dbs.recipients);
  if (!cursor) return tl::unexpected(cursor.error());
  for (auto entry = cursor->seek(recipient_key(id, 0));; entry = cursor->next()) {
    if (!entry) return tl::unexpected(entry.error());
    if (!*entry || !(*entry)->first.starts_with(id) || (*entry)->first.size() != id.size() + 4) return out;
    auto r = decode_recipient((*entry)->second);
    if (!r) return tl::unexpected(r.error());
    out.push_back(std::move(*r));
  }
  return common::fail(ErrorKind::Internal, "recipient scan failed");
}

Result<DestinationRecord> get_destination(const Txn& txn, const Dbs& dbs, std::string_view destination) {
  auto value = txn.get(dbs.destinations, destination);
  if (!value) return tl::unexpected(value.error());
  if (!*value) return DestinationRecord{};
  return decode_destination(**value);
}

double draw(const Policy& policy) {
  if (policy.random) return std::clamp(policy.random(), 0.0, 1.0);
  thread_local std::mt19937_64 rng{std::random_device{}()};
  return std::uniform_real_distribution<double>(0.0, 1.0)(rng);
}

std::string domain_of(std::string_view address) {
  const auto at = address.rfind('@');
  std::string d(at == std::string_view::npos ? std::string_view() : address.substr(at + 1));
  for (char& c : d) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return d;
}

// Reads the message's chunks up to `limit` bytes.
Result<std::string> read_message(const Txn& txn, const Dbs& dbs, std::string_view id, const Envelope& e, size_t limit) {
  std::string out;
  out.reserve(std::min<uint64_t>(e.size, limit));
  for (uint32_t i = 0; i < e.chunks && out.size() < limit; ++i) {
    auto chunk = txn.get(dbs.chunks, chunk_key(id, i));
    if (!chunk) return tl::unexpected(chunk.error());
    if (!*chunk) return common::fail(ErrorKind::Internal, "damaged queue message " + std::string(id) + " (a chunk is missing)");
    out.append((*chunk)->substr(0, limit - out.size()));
  }
  if (limit >= e.size && out.size() != e.size) {
    return common::fail(ErrorKind::Internal, "damaged queue message " + std::string(id) + " (its size)");
  }
  return out;
}

Result<std::string> allocate_id(Txn& txn, const Dbs& dbs, UnixMs now) {
  // The sequence makes the id unique even within one millisecond; the check covers a clock that
  // stepped back onto an id still queued.
  for (int tries = 0; tries < 16; ++tries) {
    auto seq = next_counter(txn, dbs, "next_seq");
    if (!seq) return tl::unexpected(seq.error());
    std::string id = make_queue_id(now, *seq);
    auto existing = txn.get(dbs.envelopes, id);
    if (!existing) return tl::unexpected(existing.error());
    if (!*existing) return id;
  }
  return common::fail(ErrorKind::Internal, "no free queue id");
}

Result<void> store_message(Txn& txn, const Dbs& dbs, Counters& counters, std::string_view id, const Message& m,
                           UnixMs now) {
  if (m.recipients.empty()) return common::fail(ErrorKind::Protocol, "a message without recipients");
  if (m.recipients.size() > kMaxRecipients) return common::fail(ErrorKind::Protocol, "too many recipients");
  for (const auto& r : m.recipients) {
    if (r.address.empty() || r.destination.empty() || r.destination.find('\0') != std::string::npos) {
      return common::fail(ErrorKind::Protocol, "a recipient without address or destination");
    }
  }
  Envelope e = m.envelope;
  if (e.arrival == 0) e.arrival = now;
  e.size = m.received.size() + m.content.size();
  e.chunks = static_cast<uint32_t>((e.size + kChunk - 1) / kChunk);
  e.recipients = static_cast<uint32_t>(m.recipients.size());
  // Chunks of Received + content without building the whole concatenation.
  std::string chunk;
  for (uint32_t i = 0; i < e.chunks; ++i) {
    const size_t start = size_t(i) * kChunk, end = std::min<size_t>(start + kChunk, e.size);
    chunk.clear();
    if (start < m.received.size()) chunk.append(m.received, start, std::min(end, m.received.size()) - start);
    if (end > m.received.size()) {
      const size_t from = std::max(start, m.received.size()) - m.received.size();
      chunk.append(m.content, from, end - m.received.size() - from);
    }
    TRY_VOID(txn.put(dbs.chunks, chunk_key(id, i), chunk));
  }
  TRY_VOID(txn.put(dbs.envelopes, id, encode(e)));
  std::map<std::string, UnixMs> not_before;  // per destination, from its backoff
  for (uint32_t i = 0; i < m.recipients.size(); ++i) {
    Recipient r;
    r.address = m.recipients[i].address;
    r.orcpt_type = m.recipients[i].orcpt_type;
    r.orcpt = m.recipients[i].orcpt;
    r.notify = m.recipients[i].notify;
    r.destination = m.recipients[i].destination;
    auto found = not_before.find(r.destination);
    if (found == not_before.end()) {
      auto dest = get_destination(txn, dbs, r.destination);
      if (!dest) return tl::unexpected(dest.error());
      found = not_before.emplace(r.destination, dest->retry_after).first;
    }
    // A destination that is backing off gets new mail at its next retry, not at once.
    r.next_attempt = std::max(now, found->second);
    TRY_VOID(put_recipient(txn, dbs, id, i, r));
    TRY_VOID(schedule(txn, dbs, id, i, r));
    counters.of(RcptState::Queued) += 1;
  }
  counters.messages += 1;
  counters.bytes += e.size;
  return {};
}

// Deletes a message whatever its recipients' states.
Result<void> delete_message(Txn& txn, const Dbs& dbs, Counters& counters, std::string_view id, const Envelope& e) {
  auto rcpts = recipients_of(txn, dbs, id);
  if (!rcpts) return tl::unexpected(rcpts.error());
  for (uint32_t i = 0; i < rcpts->size(); ++i) {
    const Recipient& r = (*rcpts)[i];
    if (active(r.state)) TRY_VOID(unschedule(txn, dbs, id, i, r));
    TRY_VOID(txn.del(dbs.recipients, recipient_key(id, i)));
    if (counters.of(r.state) > 0) counters.of(r.state) -= 1;
  }
  for (uint32_t i = 0; i < e.chunks; ++i) TRY_VOID(txn.del(dbs.chunks, chunk_key(id, i)));
  TRY_VOID(txn.del(dbs.envelopes, id));
  if (counters.messages > 0) counters.messages -= 1;
  counters.bytes -= std::min(counters.bytes, e.size);
  return {};
}

// Deletes the message when no recipient is left to deliver; true when it did.
Result<bool> remove_if_done(Txn& txn, const Dbs& dbs, Counters& counters, std::string_view id) {
  auto rcpts = recipients_of(txn, dbs, id);
  if (!rcpts) return tl::unexpected(rcpts.error());
  for (const auto& r : *rcpts) {
    if (pending(r.state)) return false;
  }
  auto e = get_envelope(txn, dbs, id);
  if (!e) return tl::unexpected(e.error());
  if (!*e) return false;
  TRY_VOID(delete_message(txn, dbs, counters, id, **e));
  return true;
}

// Queues a DSN about `id` to its sender, in the same transaction as the state change that caused
// it, so a crash can neither lose the DSN nor send it twice. nullopt when none may be sent.
Result<std::optional<std::string>> queue_dsn(Txn& txn, const Dbs& dbs, const Policy& policy, Counters& counters,
                                             std::string_view id, const Envelope& e,
                                             const std::vector<DsnRecipient>& rcpts, UnixMs now) {
  if (rcpts.empty()) return std::optional<std::string>{};
  // RFC 3461 §6.2 and RFC 5321 §4.5.5: a message from the null sender (a bounce itself) never gets
  // a DSN; answering one would let two mail systems bounce mail at each other forever.
  if (e.reverse_path.empty()) {
    common::log::notice("queue")
        .phase("dsn")
        .event("dsn_dropped")
        .kv("queue_id", id)
        .kv("reason", "null sender")
        .kv("action", action_name(rcpts.front().action))
        .kv("recipients", static_cast<uint64_t>(rcpts.size()));
    return std::optional<std::string>{};
  }
  auto dsn_id = allocate_id(txn, dbs, now);
  if (!dsn_id) return tl::unexpected(dsn_id.error());
  const bool full = rcpts.front().action == DsnAction::Failed && e.ret != Ret::Hdrs && e.size <= policy.max_dsn_return;
  // Headers only: the first chunk almost always holds them; never more than max_dsn_return.
  auto original = read_message(txn, dbs, id, e, full ? e.size : std::min<size_t>(policy.max_dsn_return, 4 * kChunk));
  if (!original) return tl::unexpected(original.error());
  DsnOptions options;
  options.reporting_mta = policy.reporting_mta;
  options.queue_id = std::string(id);
  options.dsn_id = *dsn_id;
  options.now = now;
  options.max_return = policy.max_dsn_return;
  Message m;
  m.content = make_dsn(e, rcpts, options, *original);
  m.envelope.reverse_path = "";  // RFC 3461 §6.2: DSNs go out from the null sender
  m.envelope.body = dsn_body_type(e, m.content);
  m.envelope.smtputf8 = e.smtputf8;
  m.envelope.ret = Ret::Hdrs;
  m.envelope.client.name = policy.reporting_mta;
  m.envelope.client.address = "local";
  m.envelope.arrival = now;
  Recipient to;
  to.address = e.reverse_path;
  to.notify = kNotifyNever;
  to.destination = policy.dsn_destination ? policy.dsn_destination(e.reverse_path) : domain_of(e.reverse_path);
  if (to.destination.empty() || to.destination.find('\0') != std::string::npos) to.destination = "(none)";
  m.recipients.push_back(std::move(to));
  TRY_VOID(store_message(txn, dbs, counters, *dsn_id, m, now));
  common::log::info("queue")
      .phase("dsn")
      .event("dsn_queued")
      .kv("queue_id", id)
      .kv("dsn_id", *dsn_id)
      .kv("action", action_name(rcpts.front().action))
      .kv("recipients", static_cast<uint64_t>(rcpts.size()));
  return std::optional<std::string>{*dsn_id};
}

DsnRecipient dsn_recipient(const Recipient& r, DsnAction action, const Policy& policy, const Envelope& e) {
  DsnRecipient d;
  d.address = r.address;
  d.orcpt_type = r.orcpt_type;
  d.orcpt = r.orcpt;
  d.action = action;
  d.status = r.last_status;
  d.remote_mta = r.last_remote;
  d.code = r.last_code;
  d.reply = r.last_reply;
  d.last_attempt = r.last_attempt;
  if (action == DsnAction::Delayed) {
    d.will_retry_until = e.arrival + std::chrono::duration_cast<std::chrono::milliseconds>(policy.max_queue_lifetime).count();
  }
  return d;
}

// RFC 3461 §4.1: without NOTIFY the MTA reports failures; with it, only what was asked.
bool wants(const Recipient& r, uint8_t bit) {
  if (r.notify == 0) return bit == kNotifyFailure;
  return (r.notify & kNotifyNever) == 0 && (r.notify & bit) != 0;
}

bool expired(const Policy& policy, const Envelope& e, UnixMs now) {
  return now - e.arrival >= std::chrono::duration_cast<std::chrono::milliseconds>(policy.max_queue_lifetime).count();
}

// DSNs to send, per message and action, gathered while recipients change, queued at the end.
using DsnGroups = std::map<std::string, std::map<DsnAction, std::vector<DsnRecipient>>>;

Result<void> finish(Txn& txn, const Dbs& dbs, const Policy& policy, Counters& counters, DsnGroups& groups,
                    const std::set<std::string>& touched, UnixMs now, std::vector<std::string>* dsns,
                    std::vector<std::string>* removed) {
  for (auto& [id, by_action] : groups) {
    auto e = get_envelope(txn, dbs, id);
    if (!e) return tl::unexpected(e.error());
    if (!*e) continue;
    for (auto& [action, rcpts] : by_action) {
      auto dsn = queue_dsn(txn, dbs, policy, counters, id, **e, rcpts, now);
      if (!dsn) return tl::unexpected(dsn.error());
      if (*dsn && dsns) dsns->push_back(**dsn);
    }
  }
  for (const auto& id : touched) {
    auto gone = remove_if_done(txn, dbs, counters, id);
    if (!gone) return tl::unexpected(gone.error());
    if (*gone) {
      common::log::info("queue").phase("report").event("message_done").kv("queue_id", id);
      if (removed) removed->push_back(id);
    }
  }
  return store_counters(txn, dbs, counters);
}

// Fails a recipient that is past the queue lifetime; the DSN carries its last reply.
Result<void> expire_recipient(Txn& txn, const Dbs& dbs, const Policy& policy, Counters& counters, DsnGroups& groups,
                              const std::string& id, uint32_t index, Recipient& r, const Envelope& e) {
  if (active(r.state)) TRY_VOID(unschedule(txn, dbs, id, index, r));
  move_count(counters, r.state, RcptState::Failed);
  r.state = RcptState::Failed;
  r.lease = 0;
  r.lease_until = 0;
  // RFC 3463 §3.5: X.4.7, delivery time expired, unless a reply said more.
  if (r.last_status.empty()) r.last_status = "4.4.7";
  TRY_VOID(put_recipient(txn, dbs, id, index, r));
  common::log::notice("queue")
      .phase("expire")
      .event("recipient_expired")
      .kv("queue_id", id)
      .kv("index", static_cast<uint64_t>(index))
      .kv("destination", r.destination)
      .kv("attempts", static_cast<uint64_t>(r.attempts));
  if (wants(r, kNotifyFailure)) groups[id][DsnAction::Failed].push_back(dsn_recipient(r, DsnAction::Failed, policy, e));
  return {};
}

template <class Fn>
Result<size_t> for_messages(Txn& txn, const Dbs& dbs, std::string_view id, Fn&& fn) {
  std::vector<std::string> ids;
  if (!id.empty()) {
    ids.emplace_back(id);
  } else {
    auto cursor = Cursor::open(txn, dbs.envelopes);
    if (!cursor) return tl::unexpected(cursor.error());
    for (auto entry = cursor->first();; entry = cursor->next()) {
      if (!entry) return tl::unexpected(entry.error());
      if (!*entry) break;
      ids.emplace_back((*entry)->first);
    }
  }
  size_t changed = 0;
  for (const auto& qid : ids) {
    auto n = fn(qid);
    if (!n) return tl::unexpected(n.error());
    changed += *n;
  }
  return changed;
}

}  // namespace

std::chrono::milliseconds backoff(const Policy& policy, uint32_t step, double random) {
  if (policy.retry_schedule.empty()) return std::chrono::minutes(5);
  const size_t i = std::min<size_t>(std::max<uint32_t>(step, 1), policy.retry_schedule.size()) - 1;
  const double base = std::chrono::duration<double, std::milli>(policy.retry_schedule[i]).count();
  const double jitter = std::clamp(policy.jitter, 0.0, 1.0);
  const double factor = 1.0 + jitter * (2.0 * std::clamp(random, 0.0, 1.0) - 1.0);
  return std::chrono::milliseconds(static_cast<int64_t>(base * factor));
}

Result<std::string> enqueue(Txn& txn, const Dbs& dbs, const Policy&, const Message& m, UnixMs now) {
  auto counters = load_counters(txn, dbs);
  if (!counters) return tl::unexpected(counters.error());
  auto id = allocate_id(txn, dbs, m.envelope.arrival != 0 ? m.envelope.arrival : now);
  if (!id) return tl::unexpected(id.error());
  TRY_VOID(store_message(txn, dbs, *counters, *id, m, now));
  TRY_VOID(store_counters(txn, dbs, *counters));
  return *id;
}

Result<DueBatch> take_due(Txn& txn, const Dbs& dbs, const Policy& policy, UnixMs now, size_t max,
                          std::string_view destination) {
  DueBatch batch;
  if (max == 0) return batch;
  if (destination.empty()) {
    // The destination of the earliest due recipient; the rest of the batch comes from its index.
    auto cursor = Cursor::open(txn, dbs.schedule);
    if (!cursor) return tl::unexpected(cursor.error());
    auto entry = cursor->first();
    if (!entry) return tl::unexpected(entry.error());
    ScheduleEntry s;
    if (!*entry) return batch;
    if (!parse_schedule_tail((*entry)->first, s)) return common::fail(ErrorKind::Internal, "damaged schedule key");
    if (s.when > now) return batch;
    auto r = get_recipient(txn, dbs, s.queue_id, s.index);
    if (!r) return tl::unexpected(r.error());
    if (!*r) return common::fail(ErrorKind::Internal, "schedule entry without recipient " + s.queue_id);
    batch.destination = (*r)->destination;
  } else {
    batch.destination.assign(destination);
  }

  // Candidates first (no cursor lives across the writes below). Expired ones do not count toward
  // max, so a few more are read.
  const std::string prefix = dest_schedule_prefix(batch.destination);
  std::vector<ScheduleEntry> due;
  {
    auto cursor = Cursor::open(txn, dbs.dest_schedule);
    if (!cursor) return tl::unexpected(cursor.error());
    for (auto entry = cursor->seek(prefix);; entry = cursor->next()) {
      if (!entry) return tl::unexpected(entry.error());
      if (!*entry || !(*entry)->first.starts_with(prefix)) break;
      ScheduleEntry s;
      if (!parse_schedule_tail((*entry)->first.substr(prefix.size()), s)) {
        return common::fail(ErrorKind::Internal, "damaged dest_schedule key");
      }
      if (s.when > now || due.size() >= max * 2 + 16) break;
      due.push_back(std::move(s));
    }
  }

  auto counters = load_counters(txn, dbs);
  if (!counters) return tl::unexpected(counters.error());
  DsnGroups groups;
  std::set<std::string> touched;
  std::map<std::string, Envelope> envelopes;
  const int64_t lease_ms = std::chrono::duration_cast<std::chrono::milliseconds>(policy.lease).count();
  for (const auto& s : due) {
    if (batch.recipients.size() >= max) break;
    auto r = get_recipient(txn, dbs, s.queue_id, s.index);
    if (!r) return tl::unexpected(r.error());
    if (!*r || !active((*r)->state)) return common::fail(ErrorKind::Internal, "schedule entry out of step " + s.queue_id);
    auto env = envelopes.find(s.queue_id);
    if (env == envelopes.end()) {
      auto e = get_envelope(txn, dbs, s.queue_id);
      if (!e) return tl::unexpected(e.error());
      if (!*e) return common::fail(ErrorKind::Internal, "recipient without envelope " + s.queue_id);
      env = envelopes.emplace(s.queue_id, std::move(**e)).first;
    }
    Recipient& rcpt = **r;
    if (expired(policy, env->second, now)) {
      TRY_VOID(expire_recipient(txn, dbs, policy, *counters, groups, s.queue_id, s.index, rcpt, env->second));
      touched.insert(s.queue_id);
      batch.expired += 1;
      continue;
    }
    auto token = next_counter(txn, dbs, "next_lease");
    if (!token) return tl::unexpected(token.error());
    TRY_VOID(unschedule(txn, dbs, s.queue_id, s.index, rcpt));
    // Leased: the schedule entry moves to the lease's expiry, so a crashed worker's recipients come
    // due again by themselves; the token tells the late report of an old lease from the current one.
    rcpt.attempts += 1;
    rcpt.lease = *token;
    rcpt.lease_until = now + lease_ms;
    rcpt.last_attempt = now;
    rcpt.next_attempt = rcpt.lease_until;
    TRY_VOID(schedule(txn, dbs, s.queue_id, s.index, rcpt));
    TRY_VOID(put_recipient(txn, dbs, s.queue_id, s.index, rcpt));
    batch.recipients.push_back(DueRecipient{s.queue_id, s.index, rcpt});
  }
  TRY_VOID(finish(txn, dbs, policy, *counters, groups, touched, now, nullptr, nullptr));
  return batch;
}

Result<std::vector<DueDestination>> due_destinations(const Txn& txn, const Dbs& dbs, UnixMs now, size_t limit) {
  std::vector<DueDestination> out;
  if (limit == 0) return out;
  constexpr size_t kTail = 1 + 8 + kQueueIdLength + 4;  // NUL, next attempt, queue id, index
  auto cursor = Cursor::open(txn, dbs.dest_schedule);
  if (!cursor) return tl::unexpected(cursor.error());
  std::string next;
  for (auto entry = cursor->seek("");;) {
    if (!entry) return tl::unexpected(entry.error());
    if (!*entry) break;
    const std::string_view key = (*entry)->first;
    if (key.size() < kTail || key[key.size() - kTail] != '\0') {
      return common::fail(ErrorKind::Internal, "damaged dest_schedule key");
    }
    ScheduleEntry s;
    if (!parse_schedule_tail(key.substr(key.size() - kTail + 1), s)) {
      return common::fail(ErrorKind::Internal, "damaged dest_schedule key");
    }
    const std::string_view destination = key.substr(0, key.size() - kTail);
    // The first key of a destination holds its earliest attempt; the next destination starts at or
    // after "destination \x01" (no destination holds a NUL, so nothing between belongs to another).
    if (s.when <= now) {
      // A destination that failed as a whole waits out its backoff with all its mail, not only with
      // the recipients of the run that found it dead (flush clears the backoff).
      auto record = get_destination(txn, dbs, destination);
      if (!record) return tl::unexpected(record.error());
      if (record->retry_after <= now) {
        out.push_back(DueDestination{std::string(destination), s.when});
        if (out.size() >= limit) break;
      }
    }
    next.assign(destination);
    next.push_back('\x01');
    entry = cursor->seek(next);
  }
  std::stable_sort(out.begin(), out.end(), [](const DueDestination& a, const DueDestination& b) {
    return a.earliest < b.earliest;
  });
  return out;
}

Result<ReportSummary> report(Txn& txn, const Dbs& dbs, const Policy& policy, UnixMs now,
                             std::span<const DeliveryResult> results) {
  ReportSummary summary;
  auto counters = load_counters(txn, dbs);
  if (!counters) return tl::unexpected(counters.error());

  // The destination's backoff first, so the recipients' delays below see its new failure count.
  // One failure per destination per report, however many recipients the failed session carried.
  std::set<std::string> failed_destinations, answered_destinations;
  std::map<std::string, Recipient> current;  // by recipient key, read once
  for (const auto& res : results) {
    auto r = get_recipient(txn, dbs, res.queue_id, res.index);
    if (!r) return tl::unexpected(r.error());
    if (!*r || (*r)->lease != res.lease || res.lease == 0 || !pending((*r)->state)) continue;
    if (res.outcome == Outcome::TempFail && res.destination_failed) {
      failed_destinations.insert((*r)->destination);
    } else {
      answered_destinations.insert((*r)->destination);
    }
  }
  std::map<std::string, DestinationRecord> destinations;
  for (const auto& d : answered_destinations) {
    TRY_VOID(txn.del(dbs.destinations, d));  // it answered: its backoff starts over
    destinations[d] = DestinationRecord{};
  }
  for (const auto& d : failed_destinations) {
    if (answered_destinations.count(d)) continue;
    auto rec = get_destination(txn, dbs, d);
    if (!rec) return tl::unexpected(rec.error());
    rec->failures += 1;
    rec->retry_after = now + backoff(policy, rec->failures, draw(policy)).count();
    TRY_VOID(txn.put(dbs.destinations, d, encode(*rec)));
    destinations[d] = *rec;
    common::log::notice("queue")
        .phase("report")
        .event("destination_backoff")
        .kv("destination", d)
        .kv("failures", static_cast<uint64_t>(rec->failures))
        .kv("retry_in_s", (rec->retry_after - now) / 1000);
  }

  DsnGroups groups;
  std::set<std::string> touched;
  std::map<std::string, Envelope> envelopes;
  for (const auto& res : results) {
    auto found = get_recipient(txn, dbs, res.queue_id, res.index);
    if (!found) return tl::unexpected(found.error());
    if (!*found || res.lease == 0 || (*found)->lease != res.lease || !pending((*found)->state)) {
      // Its lease expired and another worker has it now, or it was reported already, or deleted.
      summary.stale += 1;
      common::log::info("queue")
          .phase("report")
          .event("stale_report")
          .kv("queue_id", res.queue_id)
          .kv("index", static_cast<uint64_t>(res.index))
          .kv("lease", res.lease);
      continue;
    }
    auto env = envelopes.find(res.queue_id);
    if (env == envelopes.end()) {
      auto e = get_envelope(txn, dbs, res.queue_id);
      if (!e) return tl::unexpected(e.error());
      if (!*e) return common::fail(ErrorKind::Internal, "recipient without envelope " + res.queue_id);
      env = envelopes.emplace(res.queue_id, std::move(**e)).first;
    }
    const Envelope& e = env->second;
    Recipient r = std::move(**found);
    summary.applied += 1;
    touched.insert(res.queue_id);
    const RcptState before = r.state;
    if (active(r.state)) TRY_VOID(unschedule(txn, dbs, res.queue_id, res.index, r));
    r.lease = 0;
    r.lease_until = 0;
    r.last_code = res.code;
    r.last_status = header_safe(res.status, false, 16);
    r.last_reply = header_safe(res.reply, false, 400);
    r.last_remote = header_safe(res.remote, false, 255);
    auto line = common::log::info("queue");
    line.phase("report").kv("queue_id", res.queue_id).kv("index", static_cast<uint64_t>(res.index));
    line.kv("destination", r.destination).kv("code", static_cast<uint64_t>(res.code));
    switch (res.outcome) {
      case Outcome::Delivered:
      case Outcome::Relayed:
      case Outcome::Forwarded:
        r.state = RcptState::Delivered;
        line.event("delivered");
        if (res.outcome != Outcome::Forwarded && wants(r, kNotifySuccess)) {
          const auto action = res.outcome == Outcome::Delivered ? DsnAction::Delivered : DsnAction::Relayed;
          groups[res.queue_id][action].push_back(dsn_recipient(r, action, policy, e));
        }
        break;
      case Outcome::PermFail:
        r.state = RcptState::Failed;
        line.event("failed");
        if (wants(r, kNotifyFailure)) {
          groups[res.queue_id][DsnAction::Failed].push_back(dsn_recipient(r, DsnAction::Failed, policy, e));
        }
        break;
      case Outcome::TempFail: {
        if (expired(policy, e, now)) {
          line.event("expired");
          r.state = before;
          if (active(r.state)) TRY_VOID(schedule(txn, dbs, res.queue_id, res.index, r));  // expire unschedules
          TRY_VOID(expire_recipient(txn, dbs, policy, *counters, groups, res.queue_id, res.index, r, e));
          continue;
        }
        const auto dest = destinations.find(r.destination);
        const uint32_t step = std::max(r.attempts, dest == destinations.end() ? 0u : dest->second.failures);
        r.next_attempt = now + backoff(policy, step, draw(policy)).count();
        if (dest != destinations.end() && dest->second.retry_after > r.next_attempt) {
          r.next_attempt = dest->second.retry_after;
        }
        line.event("deferred").kv("retry_in_s", (r.next_attempt - now) / 1000);
        // A held message stays held: the operator's release schedules it.
        if (before != RcptState::Held) {
          r.state = RcptState::Deferred;
          TRY_VOID(schedule(txn, dbs, res.queue_id, res.index, r));
        }
        const int64_t delay_ms = std::chrono::duration_cast<std::chrono::milliseconds>(policy.delay_warning).count();
        if (delay_ms > 0 && !r.delay_notified && wants(r, kNotifyDelay) && now - e.arrival >= delay_ms) {
          r.delay_notified = true;
          groups[res.queue_id][DsnAction::Delayed].push_back(dsn_recipient(r, DsnAction::Delayed, policy, e));
        }
        break;
      }
    }
    if (r.state != before) move_count(*counters, before, r.state);
    TRY_VOID(put_recipient(txn, dbs, res.queue_id, res.index, r));
  }
  TRY_VOID(finish(txn, dbs, policy, *counters, groups, touched, now, &summary.dsns, &summary.removed));
  return summary;
}

Result<size_t> hold(Txn& txn, const Dbs& dbs, std::string_view id) {
  auto counters = load_counters(txn, dbs);
  if (!counters) return tl::unexpected(counters.error());
  auto n = for_messages(txn, dbs, id, [&](const std::string& qid) -> Result<size_t> {
    auto rcpts = recipients_of(txn, dbs, qid);
    if (!rcpts) return tl::unexpected(rcpts.error());
    size_t changed = 0;
    for (uint32_t i = 0; i < rcpts->size(); ++i) {
      Recipient& r = (*rcpts)[i];
      if (!active(r.state)) continue;
      // The lease token stays: a delivery in flight still reports its result.
      TRY_VOID(unschedule(txn, dbs, qid, i, r));
      move_count(*counters, r.state, RcptState::Held);
      r.state = RcptState::Held;
      TRY_VOID(put_recipient(txn, dbs, qid, i, r));
      ++changed;
    }
    return changed;
  });
  if (!n) return tl::unexpected(n.error());
  TRY_VOID(store_counters(txn, dbs, *counters));
  return *n;
}

Result<size_t> release(Txn& txn, const Dbs& dbs, std::string_view id, UnixMs now) {
  auto counters = load_counters(txn, dbs);
  if (!counters) return tl::unexpected(counters.error());
  auto n = for_messages(txn, dbs, id, [&](const std::string& qid) -> Result<size_t> {
    auto rcpts = recipients_of(txn, dbs, qid);
    if (!rcpts) return tl::unexpected(rcpts.error());
    size_t changed = 0;
    for (uint32_t i = 0; i < rcpts->size(); ++i) {
      Recipient& r = (*rcpts)[i];
      if (r.state != RcptState::Held) continue;
      const RcptState to = r.attempts == 0 ? RcptState::Queued : RcptState::Deferred;
      move_count(*counters, r.state, to);
      r.state = to;
      r.next_attempt = now;
      r.lease_until = 0;
      TRY_VOID(schedule(txn, dbs, qid, i, r));
      TRY_VOID(put_recipient(txn, dbs, qid, i, r));
      ++changed;
    }
    return changed;
  });
  if (!n) return tl::unexpected(n.error());
  TRY_VOID(store_counters(txn, dbs, *counters));
  return *n;
}

Result<bool> remove(Txn& txn, const Dbs& dbs, std::string_view id) {
  auto e = get_envelope(txn, dbs, id);
  if (!e) return tl::unexpected(e.error());
  if (!*e) return false;
  auto counters = load_counters(txn, dbs);
  if (!counters) return tl::unexpected(counters.error());
  TRY_VOID(delete_message(txn, dbs, *counters, id, **e));
  TRY_VOID(store_counters(txn, dbs, *counters));
  return true;
}

Result<size_t> flush(Txn& txn, const Dbs& dbs, std::string_view id, UnixMs now) {
  std::set<std::string> reset;
  auto n = for_messages(txn, dbs, id, [&](const std::string& qid) -> Result<size_t> {
    auto rcpts = recipients_of(txn, dbs, qid);
    if (!rcpts) return tl::unexpected(rcpts.error());
    size_t changed = 0;
    for (uint32_t i = 0; i < rcpts->size(); ++i) {
      Recipient& r = (*rcpts)[i];
      // A recipient in delivery keeps its lease: flushing it would hand it to a second worker.
      if (!active(r.state) || (r.lease_until != 0 && r.lease_until > now)) continue;
      TRY_VOID(unschedule(txn, dbs, qid, i, r));
      r.next_attempt = now;
      r.lease_until = 0;
      TRY_VOID(schedule(txn, dbs, qid, i, r));
      TRY_VOID(put_recipient(txn, dbs, qid, i, r));
      reset.insert(r.destination);
      ++changed;
    }
    return changed;
  });
  if (!n) return tl::unexpected(n.error());
  for (const auto& d : reset) TRY_VOID(txn.del(dbs.destinations, d));  // new mail to it goes at once too
  return *n;
}

Result<size_t> recover_leases(Txn& txn, const Dbs& dbs, UnixMs now) {
  return for_messages(txn, dbs, "", [&](const std::string& qid) -> Result<size_t> {
    auto rcpts = recipients_of(txn, dbs, qid);
    if (!rcpts) return tl::unexpected(rcpts.error());
    size_t changed = 0;
    for (uint32_t i = 0; i < rcpts->size(); ++i) {
      Recipient& r = (*rcpts)[i];
      if (!active(r.state) || r.lease_until == 0) continue;
      TRY_VOID(unschedule(txn, dbs, qid, i, r));
      // The attempt the lease counted may never have reached a server; it stays counted.
      r.next_attempt = now;
      r.lease_until = 0;
      r.lease = 0;  // a report of the dead worker's lease cannot come, and would be stale
      TRY_VOID(schedule(txn, dbs, qid, i, r));
      TRY_VOID(put_recipient(txn, dbs, qid, i, r));
      ++changed;
    }
    return changed;
  });
}

Result<std::optional<MessageInfo>> show(const Txn& txn, const Dbs& dbs, std::string_view id) {
  auto e = get_envelope(txn, dbs, id);
  if (!e) return tl::unexpected(e.error());
  if (!*e) return std::optional<MessageInfo>{};
  auto rcpts = recipients_of(txn, dbs, id);
  if (!rcpts) return tl::unexpected(rcpts.error());
  return std::optional<MessageInfo>{MessageInfo{std::string(id), std::move(**e), std::move(*rcpts)}};
}

Result<std::vector<MessageInfo>> list(const Txn& txn, const Dbs& dbs, const ListFilter& filter) {
  std::vector<MessageInfo> out;
  std::vector<std::string> ids;
  {
    auto cursor = Cursor::open(txn, dbs.envelopes);
    if (!cursor) return tl::unexpected(cursor.error());
    auto entry = cursor->first();
    for (; entry && *entry; entry = cursor->next()) ids.emplace_back((*entry)->first);
    if (!entry) return tl::unexpected(entry.error());
  }
  for (const auto& id : ids) {
    auto info = show(txn, dbs, id);
    if (!info) return tl::unexpected(info.error());
    if (!*info) continue;
    const auto& rs = (*info)->recipients;
    if (filter.state && std::none_of(rs.begin(), rs.end(), [&](const Recipient& r) { return r.state == *filter.state; })) {
      continue;
    }
    if (!filter.destination.empty() &&
        std::none_of(rs.begin(), rs.end(), [&](const Recipient& r) { return r.destination == filter.destination; })) {
      continue;
    }
    out.push_back(std::move(**info));
    if (filter.limit != 0 && out.size() >= filter.limit) break;
  }
  return out;
}

Result<std::string> message_bytes(const Txn& txn, const Dbs& dbs, std::string_view id, size_t limit) {
  auto e = get_envelope(txn, dbs, id);
  if (!e) return tl::unexpected(e.error());
  if (!*e) return common::fail(ErrorKind::Protocol, "no message " + std::string(id));
  return read_message(txn, dbs, id, **e, limit);
}

Result<Counters> counters(const Txn& txn, const Dbs& dbs) { return load_counters(txn, dbs); }

}  // namespace mta::queue
