// ops.hpp: every queue operation as a function over one LMDB transaction: enqueue, lease due work,
// apply delivery results (backoff, expiry, DSNs), hold/release/delete/flush, list and show. No
// threads and no loop: the Queue runs the writes on the group-commit writer, postern-queue in a
// plain write transaction.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "common/lmdb/lmdb.hpp"
#include "common/result.hpp"
#include "mta/queue/schema.hpp"

namespace mta::queue {

struct Policy {
  // Delay after the n-th failed attempt (the last entry repeats): quick retries for a greylisting or
  // briefly busy server, then ever longer waits so a dead destination costs little.
  std::vector<std::chrono::seconds> retry_schedule{std::chrono::minutes(1),  std::chrono::minutes(5),
                                                   std::chrono::minutes(15), std::chrono::minutes(30),
                                                   std::chrono::hours(1),    std::chrono::hours(2),
                                                   std::chrono::hours(4)};
  // Each delay is scaled by a factor in [1 - jitter, 1 + jitter], so recipients that failed
  // together (a destination's outage) do not all come back in the same second.
  double jitter = 0.1;
  // After this a temporary failure is final (RFC 5321 §4.5.4.1 suggests at least 4-5 days).
  std::chrono::seconds max_queue_lifetime{std::chrono::hours(24 * 5)};
  // A lease not reported within this is handed out again (the worker crashed or hung).
  std::chrono::seconds lease{std::chrono::minutes(10)};
  // A "delayed" DSN once a recipient that asked NOTIFY=DELAY has waited this long; 0: never.
  std::chrono::seconds delay_warning{std::chrono::hours(4)};
  std::string reporting_mta = "localhost";
  size_t max_dsn_return = size_t{10} << 20;
  // The destination of a DSN's recipient (the original sender). Runs on the writer thread, inside
  // the write: must not block. Empty: the address's domain, lower-cased.
  std::function<std::string(std::string_view address)> dsn_destination;
  // Uniform in [0, 1) for the jitter; empty: a generator per thread. Tests inject one.
  std::function<double()> random;
};

// What the session hands over after DATA: the envelope, the Received: header it built (CRLF
// ended) and the content as received (dot-unstuffed). The queue stores Received + content.
struct Message {
  Envelope envelope;
  std::string received;
  std::string content;
  std::vector<Recipient> recipients;  // address, orcpt, notify, destination; the rest is ignored
};

// The delivery side's answer for one leased recipient.
enum class Outcome {
  Delivered,  // final delivery (the store took it): a "delivered" DSN if NOTIFY=SUCCESS
  Relayed,    // handed to an MTA that does not do DSN: a "relayed" DSN if NOTIFY=SUCCESS (RFC 3461 §5.2.2)
  Forwarded,  // handed to an MTA that took the DSN parameters: it reports from now on
  TempFail,   // 4xx or no answer: retried with backoff until max_queue_lifetime
  PermFail,   // 5xx: failed now, a DSN to the sender
};
struct DeliveryResult {
  std::string queue_id;
  uint32_t index = 0;
  uint64_t lease = 0;  // as take_due handed it out; another lease's report is ignored
  Outcome outcome = Outcome::TempFail;
  uint16_t code = 0;   // the reply, for the logs, `show` and the DSN
  std::string status;  // its enhanced code, "4.4.1"
  std::string reply;
  std::string remote;  // the host that answered
  // The destination as a whole failed (no connection, TLS refused, 421 at the greeting): the next
  // attempt to every recipient of it backs off.
  bool destination_failed = false;
};

struct DueRecipient {
  std::string queue_id;
  uint32_t index = 0;
  Recipient recipient;  // recipient.lease is the token to report with
};
struct DueBatch {
  std::string destination;  // every recipient below is of it
  std::vector<DueRecipient> recipients;
  size_t expired = 0;  // due recipients past the lifetime, failed (with a DSN) instead of leased
};

// A destination with recipients due, and when its earliest one came due.
struct DueDestination {
  std::string destination;
  UnixMs earliest = 0;
};

struct ReportSummary {
  size_t applied = 0;
  size_t stale = 0;                // a lease that expired and was handed out again, or a second report
  std::vector<std::string> dsns;   // queue ids of the DSNs queued
  std::vector<std::string> removed;  // messages with no recipient left, deleted
};

struct MessageInfo {
  std::string queue_id;
  Envelope envelope;
  std::vector<Recipient> recipients;
};

struct ListFilter {
  std::optional<RcptState> state;  // a message with at least one recipient in this state
  std::string destination;         // a message with at least one recipient of this destination
  size_t limit = 0;                // 0: all
};

using common::lmdb::Txn;

common::Result<std::string> enqueue(Txn&, const Dbs&, const Policy&, const Message&, UnixMs now);
// Leases up to `max` due recipients of one destination (`destination`, or that of the earliest
// due recipient when empty). An empty batch with expired > 0 means: ask again.
common::Result<DueBatch> take_due(Txn&, const Dbs&, const Policy&, UnixMs now, size_t max,
                                  std::string_view destination);
common::Result<ReportSummary> report(Txn&, const Dbs&, const Policy&, UnixMs now,
                                     std::span<const DeliveryResult> results);
// The destinations with a recipient due at `now` and no backoff of their own running (a destination
// that failed as a whole waits until its retry after with every recipient), earliest first, at most
// `limit` of them (the first `limit` in destination order when more are due). A read, one seek per
// destination: a deliverer that
// caps its sessions per destination asks take_due for each, so a destination at its cap (a stalling
// MX with a backlog) does not hide the ones behind it the way "the earliest due" would.
common::Result<std::vector<DueDestination>> due_destinations(const Txn&, const Dbs&, UnixMs now, size_t limit);

// Administration; an empty id means every message. Counts are of recipients changed.
common::Result<size_t> hold(Txn&, const Dbs&, std::string_view id);
common::Result<size_t> release(Txn&, const Dbs&, std::string_view id, UnixMs now);
common::Result<bool> remove(Txn&, const Dbs&, std::string_view id);  // no DSN: the operator decided
common::Result<size_t> flush(Txn&, const Dbs&, std::string_view id, UnixMs now);
// At the start of the queue's only deliverer: every lease still held was a previous process's (it
// was killed mid-delivery), so its recipients are due now instead of when the lease runs out.
common::Result<size_t> recover_leases(Txn&, const Dbs&, UnixMs now);

common::Result<std::vector<MessageInfo>> list(const Txn&, const Dbs&, const ListFilter&);
common::Result<std::optional<MessageInfo>> show(const Txn&, const Dbs&, std::string_view id);
// The stored message (Received: header and content), at most `limit` bytes of it.
common::Result<std::string> message_bytes(const Txn&, const Dbs&, std::string_view id, size_t limit = SIZE_MAX);
common::Result<Counters> counters(const Txn&, const Dbs&);

// The delay before attempt `step` + 1 (step >= 1 failures so far), jitter applied with `random`.
std::chrono::milliseconds backoff(const Policy&, uint32_t step, double random);

}  // namespace mta::queue
