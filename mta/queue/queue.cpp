// queue.cpp: the queue's environment, its group-committed writes and its metrics (queue.hpp).
#include "mta/queue/queue.hpp"

#include <chrono>

#include "common/log/log.hpp"
#include "common/metrics/metrics.hpp"
#include "common/runtime/loop.hpp"

namespace mta::queue {

using common::Result;
using common::lmdb::GroupCommitWriter;
using common::lmdb::Txn;

namespace {

void log_enqueued(const Result<std::string>& r, const Message& m, size_t size) {
  if (r) {
    common::log::info("queue")
        .client(m.envelope.client.address)
        .phase("enqueue")
        .event("queued")
        .kv("queue_id", *r)
        .kv("from", m.envelope.reverse_path.empty() ? std::string_view("<>") : std::string_view(m.envelope.reverse_path))
        .kv("recipients", static_cast<uint64_t>(m.recipients.size()))
        .kv("size", static_cast<uint64_t>(size));
  } else {
    common::log::warning("queue")
        .client(m.envelope.client.address)
        .phase("enqueue")
        .event("enqueue_failed")
        .kv("reason", r.error().detail);
  }
}

}  // namespace

Result<std::unique_ptr<Queue>> Queue::open(QueueOptions options) {
  std::unique_ptr<Queue> q(new Queue());
  q->options_ = std::move(options);
  q->shared_ = std::make_shared<Shared>();
  common::lmdb::OpenOptions env_options;
  env_options.map_size = q->options_.map_size;
  env_options.max_dbs = Dbs::kCount + 4;
  env_options.max_readers = q->options_.max_readers;
  auto env = common::lmdb::open_env(q->options_.dir, env_options);
  if (!env) return tl::unexpected(env.error());
  q->shared_->env = std::move(*env);
  {
    auto txn = Txn::begin(q->shared_->env.get(), true);
    if (!txn) return tl::unexpected(txn.error());
    auto dbs = Dbs::open(*txn, true);
    if (!dbs) return tl::unexpected(dbs.error());
    size_t recovered = 0;
    if (q->options_.recover_leases) {
      auto n = recover_leases(*txn, *dbs, q->now());
      if (!n) return tl::unexpected(n.error());
      recovered = *n;
    }
    if (auto committed = txn->commit(); !committed) return tl::unexpected(committed.error());
    q->shared_->dbs = *dbs;
    if (recovered > 0) {
      common::log::notice("queue").phase("open").event("leases_recovered").kv("recipients", static_cast<uint64_t>(recovered));
    }
  }
  common::lmdb::GroupCommitOptions writer_options;
  writer_options.name = "queue";
  writer_options.max_queue = q->options_.max_pending_writes;
  if (q->options_.registry) writer_options.registry = q->options_.registry;
  auto writer = GroupCommitWriter::start(q->shared_->env.get(), writer_options);
  if (!writer) return tl::unexpected(writer.error());
  q->writer_ = std::move(*writer);
  if (q->options_.registry) q->register_metrics();
  auto c = q->counters();
  if (!c) return tl::unexpected(c.error());
  common::log::info("queue")
      .phase("open")
      .event("queue_opened")
      .kv("dir", q->options_.dir)
      .kv("messages", c->messages)
      .kv("bytes", c->bytes);
  return q;
}

Queue::~Queue() {
  if (writer_) writer_->stop();
}

UnixMs Queue::now() const {
  if (options_.clock) return options_.clock();
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

template <class T, class Fn>
bool Queue::submit(common::runtime::Loop& loop, std::weak_ptr<void> alive, Fn fn,
                   std::function<void(Result<T>)> done) {
  // The value the write produces travels to the completion; it is handed out only once the commit
  // returned ok (a rolled-back or lost write reports its error instead).
  auto out = std::make_shared<std::optional<T>>();
  return writer_->submit(
      loop, std::move(alive),
      [fn = std::move(fn), out](Txn& txn) -> Result<void> {
        auto r = fn(txn);
        if (!r) return tl::unexpected(r.error());
        *out = std::move(*r);
        return {};
      },
      [out, done = std::move(done)](Result<void> committed) {
        if (!committed) return done(tl::unexpected(committed.error()));
        done(std::move(**out));
      });
}

template <class T, class Fn>
Result<T> Queue::submit_and_wait(Fn fn) {
  std::optional<T> out;
  auto committed = writer_->submit_and_wait([&](Txn& txn) -> Result<void> {
    auto r = fn(txn);
    if (!r) return tl::unexpected(r.error());
    out = std::move(*r);
    return {};
  });
  if (!committed) return tl::unexpected(committed.error());
  return std::move(*out);
}

bool Queue::enqueue(common::runtime::Loop& loop, std::weak_ptr<void> alive, Message message,
                    std::function<void(Result<std::string>)> done) {
  auto m = std::make_shared<const Message>(std::move(message));
  const UnixMs now = this->now();
  auto shared = shared_;
  const Policy* policy = &options_.policy;
  return submit<std::string>(
      loop, std::move(alive),
      [shared, policy, m, now](Txn& txn) { return queue::enqueue(txn, shared->dbs, *policy, *m, now); },
      std::function<void(Result<std::string>)>([m, done = std::move(done)](Result<std::string> r) {
        log_enqueued(r, *m, m->received.size() + m->content.size());
        done(std::move(r));
      }));
}

bool Queue::take_due(common::runtime::Loop& loop, std::weak_ptr<void> alive, UnixMs now, size_t max,
                     std::string destination, std::function<void(Result<DueBatch>)> done) {
  auto shared = shared_;
  const Policy* policy = &options_.policy;
  return submit<DueBatch>(
      loop, std::move(alive),
      [shared, policy, now, max, destination = std::move(destination)](Txn& txn) {
        return queue::take_due(txn, shared->dbs, *policy, now, max, destination);
      },
      std::move(done));
}

bool Queue::report(common::runtime::Loop& loop, std::weak_ptr<void> alive, UnixMs now,
                   std::vector<DeliveryResult> results, std::function<void(Result<ReportSummary>)> done) {
  auto shared = shared_;
  const Policy* policy = &options_.policy;
  auto rs = std::make_shared<const std::vector<DeliveryResult>>(std::move(results));
  return submit<ReportSummary>(
      loop, std::move(alive),
      [shared, policy, now, rs](Txn& txn) { return queue::report(txn, shared->dbs, *policy, now, *rs); },
      std::move(done));
}

Result<std::string> Queue::enqueue_and_wait(Message message) {
  const UnixMs now = this->now();
  auto r = submit_and_wait<std::string>(
      [&](Txn& txn) { return queue::enqueue(txn, shared_->dbs, options_.policy, message, now); });
  log_enqueued(r, message, message.received.size() + message.content.size());
  return r;
}

Result<DueBatch> Queue::take_due_and_wait(UnixMs now, size_t max, std::string destination) {
  return submit_and_wait<DueBatch>(
      [&](Txn& txn) { return queue::take_due(txn, shared_->dbs, options_.policy, now, max, destination); });
}

Result<ReportSummary> Queue::report_and_wait(UnixMs now, std::vector<DeliveryResult> results) {
  return submit_and_wait<ReportSummary>(
      [&](Txn& txn) { return queue::report(txn, shared_->dbs, options_.policy, now, results); });
}

Result<size_t> Queue::hold(std::string id) {
  return submit_and_wait<size_t>([&](Txn& txn) { return queue::hold(txn, shared_->dbs, id); });
}
Result<size_t> Queue::release(std::string id, UnixMs now) {
  return submit_and_wait<size_t>([&](Txn& txn) { return queue::release(txn, shared_->dbs, id, now); });
}
Result<bool> Queue::remove(std::string id) {
  return submit_and_wait<bool>([&](Txn& txn) { return queue::remove(txn, shared_->dbs, id); });
}
Result<size_t> Queue::flush(std::string id, UnixMs now) {
  return submit_and_wait<size_t>([&](Txn& txn) { return queue::flush(txn, shared_->dbs, id, now); });
}

Result<std::vector<MessageInfo>> Queue::list(const ListFilter& filter) const {
  auto txn = Txn::begin(shared_->env.get(), false);
  if (!txn) return tl::unexpected(txn.error());
  return queue::list(*txn, shared_->dbs, filter);
}

Result<std::optional<MessageInfo>> Queue::show(std::string_view id) const {
  auto txn = Txn::begin(shared_->env.get(), false);
  if (!txn) return tl::unexpected(txn.error());
  return queue::show(*txn, shared_->dbs, id);
}

Result<std::string> Queue::message_bytes(std::string_view id) const {
  auto txn = Txn::begin(shared_->env.get(), false);
  if (!txn) return tl::unexpected(txn.error());
  return queue::message_bytes(*txn, shared_->dbs, id);
}

Result<Counters> Queue::counters() const {
  auto txn = Txn::begin(shared_->env.get(), false);
  if (!txn) return tl::unexpected(txn.error());
  return queue::counters(*txn, shared_->dbs);
}

Result<std::vector<DueDestination>> Queue::due_destinations(UnixMs now, size_t limit) const {
  auto txn = Txn::begin(shared_->env.get(), false);
  if (!txn) return tl::unexpected(txn.error());
  return queue::due_destinations(*txn, shared_->dbs, now, limit);
}

void Queue::register_metrics() {
  std::weak_ptr<Shared> weak = shared_;
  // Read from the stored counters at scrape time (one short read transaction each), so the figures
  // are what is on disk; a queue already closed reads as 0.
  auto reader = [weak](auto pick) {
    return [weak, pick]() -> double {
      auto shared = weak.lock();
      if (!shared) return 0;
      auto txn = Txn::begin(shared->env.get(), false);
      if (!txn) return 0;
      auto c = queue::counters(*txn, shared->dbs);
      return c ? static_cast<double>(pick(*c)) : 0.0;
    };
  };
  auto& reg = *options_.registry;
  reg.callback_gauge("mta_queue_messages", "Messages in the mta queue.",
                     reader([](const Counters& c) { return c.messages; }));
  reg.callback_gauge("mta_queue_bytes", "Bytes of messages in the mta queue.",
                     reader([](const Counters& c) { return c.bytes; }));
  for (size_t i = 0; i < kStateCount; ++i) {
    const auto state = static_cast<RcptState>(i);
    reg.callback_gauge("mta_queue_recipients_" + std::string(state_name(state)),
                       "Recipients in the mta queue in state " + std::string(state_name(state)) + ".",
                       reader([state](const Counters& c) { return c.of(state); }));
  }
}

}  // namespace mta::queue
