// schema.hpp: the mta queue's LMDB records (mta/queue/README.md "Schema"): envelopes, message chunks,
// per-recipient state, the schedule indexes and per-destination backoff, with their byte layouts.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <lmdb.h>

#include "common/lmdb/lmdb.hpp"
#include "common/result.hpp"

namespace mta::queue {

using UnixMs = int64_t;  // milliseconds since the epoch: every time in the queue

inline constexpr uint32_t kSchemaVersion = 1;
inline constexpr size_t kChunk = 64 * 1024;
inline constexpr size_t kQueueIdLength = 14;
// A message with more recipients than this is refused at enqueue: the session limits RCPTs far
// below it, so only a bug gets here, and a record count must fit the u32 index.
inline constexpr size_t kMaxRecipients = 100000;

// The ESMTP envelope parameters, as the session parsed them (values already xtext-decoded).
enum class BodyType : uint8_t { Unspecified = 0, SevenBit = 1, EightBitMime = 2, BinaryMime = 3 };
enum class Ret : uint8_t { Unspecified = 0, Full = 1, Hdrs = 2 };  // RFC 3461 §4.3
// RFC 3461 §4.1; the same bits as common/smtp's Notify. 0: NOTIFY not given.
enum Notify : uint8_t { kNotifyNever = 1, kNotifySuccess = 2, kNotifyFailure = 4, kNotifyDelay = 8 };

enum class RcptState : uint8_t { Queued = 0, Deferred = 1, Delivered = 2, Failed = 3, Held = 4 };
inline constexpr size_t kStateCount = 5;
std::string_view state_name(RcptState state);
std::optional<RcptState> parse_state(std::string_view name);

// Who handed the message to us: for the logs and the DSN, never for decisions after the session.
struct ClientFacts {
  std::string address;    // "192.0.2.7:51234"
  std::string name;       // the verified (forward-confirmed) name, or empty
  std::string helo;       // the EHLO/HELO argument as given
  std::string tls;        // "TLSv1.3 TLS_AES_128_GCM_SHA256", or empty for plaintext
  std::string auth_user;  // the authenticated user, or empty
};

struct Envelope {
  std::string reverse_path;  // MAIL FROM without brackets; "" is the null sender <>
  std::optional<uint64_t> size_param;  // SIZE= as declared (RFC 1870)
  BodyType body = BodyType::Unspecified;
  bool smtputf8 = false;  // RFC 6531
  Ret ret = Ret::Unspecified;
  std::string envid;  // RFC 3461 §4.4 ENVID; empty when not given
  ClientFacts client;
  UnixMs arrival = 0;
  // Filled by the queue at enqueue (what is stored): the Received: header and the content.
  uint64_t size = 0;
  uint32_t chunks = 0;
  uint32_t recipients = 0;
};

struct Recipient {
  std::string address;     // RCPT TO without brackets
  std::string orcpt_type;  // RFC 3461 §4.2 addr-type ("rfc822", "utf-8"); empty when ORCPT not given
  std::string orcpt;       // its address, xtext-decoded
  uint8_t notify = 0;      // Notify bits
  // What a delivery run groups by: the store's name for a local recipient, the domain for a remote
  // one (the session decides; the queue only compares). No NUL byte (it ends the index key).
  std::string destination;
  // Below: the queue's state, ignored at enqueue.
  RcptState state = RcptState::Queued;
  uint32_t attempts = 0;     // leases handed out (a crash mid-delivery counts: its lease expired)
  uint16_t last_code = 0;    // the last reply's code (0: none yet)
  std::string last_status;   // its enhanced status ("4.2.2"), or empty
  std::string last_reply;    // its text, sanitized and cut
  std::string last_remote;   // who answered it ("mx.example.com", "store1"), or empty
  UnixMs next_attempt = 0;   // due time while Queued or Deferred (the lease's expiry while leased)
  UnixMs last_attempt = 0;
  UnixMs lease_until = 0;    // 0: not leased
  uint64_t lease = 0;        // the token of the current lease; a report must carry it
  bool delay_notified = false;  // a "delayed" DSN went out already (RFC 3461 NOTIFY=DELAY)
};

// Totals kept in the same transactions as the records, so they never drift (metrics, list).
struct Counters {
  uint64_t messages = 0;
  uint64_t bytes = 0;
  std::array<uint64_t, kStateCount> recipients{};
  uint64_t& of(RcptState s) { return recipients[static_cast<size_t>(s)]; }
  uint64_t of(RcptState s) const { return recipients[static_cast<size_t>(s)]; }
};

// Per-destination backoff: consecutive failures of the destination as a whole (it did not answer,
// or refused the session), and the time before which new mail to it waits.
struct DestinationRecord {
  uint32_t failures = 0;
  UnixMs retry_after = 0;
};

// The named databases, opened once and valid for the environment's life.
struct Dbs {
  MDB_dbi meta = 0, envelopes = 0, chunks = 0, recipients = 0, schedule = 0, dest_schedule = 0, destinations = 0;
  static constexpr unsigned kCount = 7;
  // With create (a write txn): creates what is missing. Without: fails (Config) on an environment
  // that is not a queue. Both check the schema version.
  static common::Result<Dbs> open(common::lmdb::Txn& txn, bool create);
};

// "01HV3K9QZ0A42X": 9 base-32 digits of the arrival time in ms, 5 of a sequence; the alphabet is in
// ASCII order, so ids sort by arrival. Also the store's XID (RFC-5321-safe characters only).
std::string make_queue_id(UnixMs now, uint64_t sequence);
bool valid_queue_id(std::string_view id);

std::string encode(const Envelope&);
std::string encode(const Recipient&);
std::string encode(const Counters&);
std::string encode(const DestinationRecord&);
common::Result<Envelope> decode_envelope(std::string_view);
common::Result<Recipient> decode_recipient(std::string_view);
common::Result<Counters> decode_counters(std::string_view);
common::Result<DestinationRecord> decode_destination(std::string_view);

std::string recipient_key(std::string_view queue_id, uint32_t index);
std::string chunk_key(std::string_view queue_id, uint32_t chunk);
std::string schedule_key(UnixMs when, std::string_view queue_id, uint32_t index);
std::string dest_schedule_prefix(std::string_view destination);
std::string dest_schedule_key(std::string_view destination, UnixMs when, std::string_view queue_id, uint32_t index);

// (queue id, index) at the end of a schedule key; false when the key is damaged.
struct ScheduleEntry {
  UnixMs when = 0;
  std::string queue_id;
  uint32_t index = 0;
};
bool parse_schedule_tail(std::string_view tail, ScheduleEntry& out);  // i64 when, id, u32 index

}  // namespace mta::queue
