// schema.cpp: the queue's record layouts and keys (schema.hpp).
#include "mta/queue/schema.hpp"

#include "common/lmdb/codec.hpp"

namespace mta::queue {
namespace {

using common::Error;
using common::ErrorKind;
using common::Result;
using common::lmdb::Decoder;
using common::lmdb::Encoder;
using common::lmdb::Txn;

constexpr uint8_t kLayout = 1;
// Digits then letters: ASCII order equals numeric order, so queue ids sort by time.
constexpr std::string_view kAlphabet = "0123456789ABCDEFGHIJKLMNOPQRSTUV";

tl::unexpected<Error> damaged(std::string_view what) {
  return tl::unexpected(Error{ErrorKind::Internal, "damaged queue " + std::string(what) + " record"});
}

void base32(std::string& out, uint64_t v, int digits) {
  for (int i = digits - 1; i >= 0; --i) out.push_back(kAlphabet[(v >> (5 * i)) & 31]);
}

// Times before the epoch never occur; clamping keeps the big-endian key order numeric.
uint64_t key_time(UnixMs t) { return t < 0 ? 0 : static_cast<uint64_t>(t); }

}  // namespace

std::string_view state_name(RcptState state) {
  switch (state) {
    case RcptState::Queued: return "queued";
    case RcptState::Deferred: return "deferred";
    case RcptState::Delivered: return "delivered";
    case RcptState::Failed: return "failed";
    case RcptState::Held: return "held";
  }
  return "unknown";
}

std::optional<RcptState> parse_state(std::string_view name) {
  for (size_t i = 0; i < kStateCount; ++i) {
    if (state_name(static_cast<RcptState>(i)) == name) return static_cast<RcptState>(i);
  }
  return std::nullopt;
}

Result<Dbs> Dbs::open(Txn& txn, bool create) {
  Dbs dbs;
  const std::pair<const char*, MDB_dbi*> names[] = {
      {"meta", &dbs.meta},           {"envelopes", &dbs.envelopes},         {"chunks", &dbs.chunks},
      {"recipients", &dbs.recipients}, {"schedule", &dbs.schedule},       {"dest_schedule", &dbs.dest_schedule},
      {"destinations", &dbs.destinations},
  };
  for (auto [name, dbi] : names) {
    if (int rc = mdb_dbi_open(txn.get(), name, create ? MDB_CREATE : 0, dbi); rc != 0) {
      if (rc == MDB_NOTFOUND) return common::fail(ErrorKind::Config, std::string("not an mta queue (no table ") + name + ")");
      return tl::unexpected(common::lmdb::error(std::string("mdb_dbi_open ") + name, rc));
    }
  }
  auto version = txn.get(dbs.meta, "schema");
  if (!version) return tl::unexpected(version.error());
  if (!*version) {
    if (!create) return common::fail(ErrorKind::Config, "not an mta queue (no schema version)");
    if (auto put = txn.put(dbs.meta, "schema", Encoder().u32(kSchemaVersion).str()); !put) {
      return tl::unexpected(put.error());
    }
    return dbs;
  }
  Decoder d(**version);
  uint32_t v = 0;
  if (!d.u32(v) || !d.done()) return damaged("meta");
  if (v != kSchemaVersion) {
    return common::fail(ErrorKind::Config, "queue schema version " + std::to_string(v) +
                                               " is not the one this build reads (" + std::to_string(kSchemaVersion) +
                                               ")");
  }
  return dbs;
}

std::string make_queue_id(UnixMs now, uint64_t sequence) {
  std::string id;
  id.reserve(kQueueIdLength);
  base32(id, key_time(now), 9);
  base32(id, sequence, 5);
  return id;
}

bool valid_queue_id(std::string_view id) {
  if (id.size() != kQueueIdLength) return false;
  for (char c : id) {
    if (kAlphabet.find(c) == std::string_view::npos) return false;
  }
  return true;
}

std::string encode(const Envelope& e) {
  Encoder out;
  out.u8(kLayout).bytes(e.reverse_path).u8(e.size_param ? 1 : 0).u64(e.size_param.value_or(0));
  out.u8(static_cast<uint8_t>(e.body)).u8(e.smtputf8 ? 1 : 0).u8(static_cast<uint8_t>(e.ret)).bytes(e.envid);
  out.bytes(e.client.address).bytes(e.client.name).bytes(e.client.helo).bytes(e.client.tls).bytes(e.client.auth_user);
  out.i64(e.arrival).u64(e.size).u32(e.chunks).u32(e.recipients);
  return std::move(out).str();
}

Result<Envelope> decode_envelope(std::string_view v) {
  Decoder d(v);
  Envelope e;
  uint8_t layout = 0, has_size = 0, body = 0, utf8 = 0, ret = 0;
  uint64_t size_param = 0;
  std::string_view reverse_path, envid, address, name, helo, tls, auth;
  d.u8(layout);
  d.bytes(reverse_path);
  d.u8(has_size);
  d.u64(size_param);
  d.u8(body);
  d.u8(utf8);
  d.u8(ret);
  d.bytes(envid);
  d.bytes(address);
  d.bytes(name);
  d.bytes(helo);
  d.bytes(tls);
  d.bytes(auth);
  d.i64(e.arrival);
  d.u64(e.size);
  d.u32(e.chunks);
  d.u32(e.recipients);
  if (!d.done() || layout != kLayout || body > 3 || ret > 2) return damaged("envelope");
  e.reverse_path.assign(reverse_path);
  if (has_size) e.size_param = size_param;
  e.body = static_cast<BodyType>(body);
  e.smtputf8 = utf8 != 0;
  e.ret = static_cast<Ret>(ret);
  e.envid.assign(envid);
  e.client = {std::string(address), std::string(name), std::string(helo), std::string(tls), std::string(auth)};
  return e;
}

std::string encode(const Recipient& r) {
  Encoder out;
  out.u8(kLayout).bytes(r.address).bytes(r.orcpt_type).bytes(r.orcpt).u8(r.notify).bytes(r.destination);
  out.u8(static_cast<uint8_t>(r.state)).u32(r.attempts).u16(r.last_code).bytes(r.last_status).bytes(r.last_reply);
  out.bytes(r.last_remote).i64(r.next_attempt).i64(r.last_attempt).i64(r.lease_until).u64(r.lease);
  out.u8(r.delay_notified ? 1 : 0);
  return std::move(out).str();
}

Result<Recipient> decode_recipient(std::string_view v) {
  Decoder d(v);
  Recipient r;
  uint8_t layout = 0, state = 0, delay = 0;
  std::string_view address, orcpt_type, orcpt, destination, status, reply, remote;
  d.u8(layout);
  d.bytes(address);
  d.bytes(orcpt_type);
  d.bytes(orcpt);
  d.u8(r.notify);
  d.bytes(destination);
  d.u8(state);
  d.u32(r.attempts);
  d.u16(r.last_code);
  d.bytes(status);
  d.bytes(reply);
  d.bytes(remote);
  d.i64(r.next_attempt);
  d.i64(r.last_attempt);
  d.i64(r.lease_until);
  d.u64(r.lease);
  d.u8(delay);
  if (!d.done() || layout != kLayout || state >= kStateCount) return damaged("recipient");
  r.address.assign(address);
  r.orcpt_type.assign(orcpt_type);
  r.orcpt.assign(orcpt);
  r.destination.assign(destination);
  r.state = static_cast<RcptState>(state);
  r.last_status.assign(status);
  r.last_reply.assign(reply);
  r.last_remote.assign(remote);
  r.delay_notified = delay != 0;
  return r;
}

std::string encode(const Counters& c) {
  Encoder out;
  out.u8(kLayout).u64(c.messages).u64(c.bytes);
  for (uint64_t n : c.recipients) out.u64(n);
  return std::move(out).str();
}

Result<Counters> decode_counters(std::string_view v) {
  Decoder d(v);
  Counters c;
  uint8_t layout = 0;
  d.u8(layout);
  d.u64(c.messages);
  d.u64(c.bytes);
  for (uint64_t& n : c.recipients) d.u64(n);
  if (!d.done() || layout != kLayout) return damaged("counters");
  return c;
}

std::string encode(const DestinationRecord& r) { return Encoder().u8(kLayout).u32(r.failures).i64(r.retry_after).str(); }

Result<DestinationRecord> decode_destination(std::string_view v) {
  Decoder d(v);
  DestinationRecord r;
  uint8_t layout = 0;
  d.u8(layout);
  d.u32(r.failures);
  d.i64(r.retry_after);
  if (!d.done() || layout != kLayout) return damaged("destination");
  return r;
}

std::string recipient_key(std::string_view queue_id, uint32_t index) { return Encoder().raw(queue_id).u32(index).str(); }
std::string chunk_key(std::string_view queue_id, uint32_t chunk) { return Encoder().raw(queue_id).u32(chunk).str(); }
std::string schedule_key(UnixMs when, std::string_view queue_id, uint32_t index) {
  return Encoder().u64(key_time(when)).raw(queue_id).u32(index).str();
}
std::string dest_schedule_prefix(std::string_view destination) { return Encoder().raw(destination).u8(0).str(); }
std::string dest_schedule_key(std::string_view destination, UnixMs when, std::string_view queue_id, uint32_t index) {
  return Encoder().raw(destination).u8(0).u64(key_time(when)).raw(queue_id).u32(index).str();
}

bool parse_schedule_tail(std::string_view tail, ScheduleEntry& out) {
  if (tail.size() != 8 + kQueueIdLength + 4) return false;
  Decoder d(tail);
  std::string_view id;
  d.i64(out.when);
  d.raw(id, kQueueIdLength);
  d.u32(out.index);
  if (!d.done()) return false;
  out.queue_id.assign(id);
  return true;
}

}  // namespace mta::queue
