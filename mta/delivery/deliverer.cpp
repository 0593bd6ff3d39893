// deliverer.cpp: the delivery loop (deliverer.hpp): which destinations to lease for, a delivery run
// per leased batch (routing, then one transaction per message and target, in order, over pooled
// sessions), the reports, the lease deadline and the drain.
#include "mta/delivery/deliverer.hpp"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <deque>
#include <map>
#include <random>
#include <set>

#include "common/ascii.hpp"
#include "common/authclient/authclient.hpp"
#include "common/dns/resolver.hpp"
#include "common/log/log.hpp"
#include "common/metrics/metrics.hpp"
#include "common/runtime/connection.hpp"
#include "common/runtime/loop.hpp"
#include "common/runtime/timer.hpp"
#include "common/smtpclient/client_session.hpp"
#include "common/tls/client.hpp"
#include "mta/delivery/routing.hpp"
#include "mta/queue/queue.hpp"

namespace mta::delivery {

using common::ErrorKind;
using common::Result;
using common::runtime::Timer;
using queue::Outcome;
namespace sc = common::smtpclient;

namespace {

constexpr size_t kMaxMxHosts = 10;             // MX hosts looked up per domain (Postfix: 5 sessions, 10 hosts)
constexpr size_t kMaxReportRetries = 50;       // a full writer queue, tried again every 200 ms
constexpr std::chrono::milliseconds kReportRetry{200};

std::string_view outcome_name(Outcome o) {
  switch (o) {
    case Outcome::Delivered: return "delivered";
    case Outcome::Relayed: return "relayed";
    case Outcome::Forwarded: return "forwarded";
    case Outcome::TempFail: return "deferred";
    case Outcome::PermFail: return "failed";
  }
  return "deferred";
}

std::string_view starttls_name(sc::StartTls s) {
  switch (s) {
    case sc::StartTls::Off: return "off";
    case sc::StartTls::Opportunistic: return "opportunistic";
    case sc::StartTls::Required: return "required";
  }
  return "off";
}

double uniform() {
  thread_local std::mt19937_64 rng{std::random_device{}()};
  return std::uniform_real_distribution<double>(0.0, 1.0)(rng);
}

}  // namespace

// One server to try: the pool it goes through and how it is named in logs and DSNs.
struct Candidate {
  std::string pool_key;
  std::string host;  // "mx1.example.net", "store1", "192.0.2.1": Remote-MTA and remote= in the logs
  common::runtime::ConnectOptions where;
  sc::ClientConfig client;
  std::string display() const { return host + "[" + where.remote.to_string() + "]"; }
};

// Where some of a run's transactions go: a store, or a remote destination's MX addresses in order.
struct Target {
  std::vector<Candidate> candidates;
  size_t current = 0;
  bool final_delivery = false;  // a store: success means Delivered
  // Every candidate failed before the message was offered, or a transaction broke off: what the
  // rest of this target's transactions are reported with, without another try in this run.
  std::optional<Verdict> dead;
  bool dead_destination = false;  // that failure was the destination's (destination_failed)
  bool any_temporary = false;     // a candidate failed for a reason that may pass (not a 5xx greeting)
};

struct Transaction {
  std::string queue_id;
  std::vector<size_t> rcpts;  // indexes into Run::rcpts
  size_t target = 0;
};

// One leased batch of one destination.
struct Run {
  std::string destination;
  DestinationKind kind;
  std::string channel;  // "lmtp" or "smtp", for metrics
  std::vector<queue::DueRecipient> rcpts;
  std::vector<bool> reported;
  std::vector<Target> targets;
  std::vector<Transaction> transactions;
  size_t next = 0;
  bool preparing = true;   // routing (DNS, recipient lookups) not finished
  bool in_flight = false;  // a transaction is with a server
  bool abandoned = false;  // the lease deadline passed: nothing more is sent, late results are dropped
  bool stopping = false;   // the drain: the transaction in flight finishes, nothing new starts
  bool finished = false;
  std::unique_ptr<Timer> deadline;
  // The message of the transactions in progress (they come in queue-id order), read once.
  std::string cached_id;
  std::optional<queue::Envelope> envelope;
  std::string content;
};

struct WakeState {
  common::runtime::Loop* loop = nullptr;
  std::atomic<bool> pending{false};
  std::weak_ptr<Deliverer::Impl> impl;  // written before any wake, read only on the loop
};

struct DestinationState {
  size_t runs = 0;
  bool taking = false;
  // Reports that say the destination failed as a whole, not yet committed: until they are, a read of
  // the queue does not show its backoff, and a new run would try the dead destination again.
  size_t failing = 0;
  bool dry = false;  // nothing came back for it: not asked again before the next poll
};

struct Deliverer::Impl : std::enable_shared_from_this<Deliverer::Impl> {
  Context ctx;
  const Config& cfg;
  std::string helo;
  std::shared_ptr<WakeState> wake_state = std::make_shared<WakeState>();
  std::unique_ptr<Timer> poll;
  std::unique_ptr<Timer> report_retry;
  struct WaitingReport {
    std::vector<queue::DeliveryResult> results;
    size_t tries = 0;
    std::string failing;
  };
  std::deque<WaitingReport> deferred_reports;  // the queue's writer was full
  std::shared_ptr<common::tls::ClientContext> lmtp_tls, smtp_opportunistic, smtp_ca, smtp_system;
  struct PoolSlot {
    std::unique_ptr<sc::DestinationPool> pool;
    size_t busy = 0;  // transactions in flight through it
  };
  std::map<std::string, PoolSlot> pools;  // by Candidate::pool_key; forgotten once idle and empty
  std::map<std::string, DestinationState> destinations;
  std::set<std::shared_ptr<Run>> runs;
  size_t taking = 0, reporting = 0;
  uint64_t attempted = 0, reported_count = 0;
  bool fill_posted = false;
  bool stopping = false;
  std::function<void()> stopped;
  bool stopped_told = false;

  common::metrics::Family<common::metrics::Counter>* results_metric = nullptr;
  common::metrics::Counter* failover_metric = nullptr;
  common::metrics::Counter* deadline_metric = nullptr;
  common::metrics::Gauge* active_metric = nullptr;

  Impl(Context c) : ctx(std::move(c)), cfg(*ctx.config) {}

  std::weak_ptr<Impl> weak() { return weak_from_this(); }
  std::weak_ptr<void> alive() { return std::weak_ptr<void>(shared_from_this()); }

  Result<void> start();
  void shutdown();
  void schedule_fill();
  void fill();
  void take(const std::string& destination);
  void on_taken(const std::string& destination, Result<queue::DueBatch> batch);
  void begin(std::shared_ptr<Run> run);
  void prepare_store(const std::shared_ptr<Run>& run);
  void prepare_local(const std::shared_ptr<Run>& run);
  void prepare_remote(const std::shared_ptr<Run>& run);
  void resolve_hosts(const std::shared_ptr<Run>& run, std::vector<std::string> hosts, bool implicit_mx,
                     uint16_t port, const std::string& domain);
  void plan(const std::shared_ptr<Run>& run, const std::vector<size_t>& target_of);
  void proceed(const std::shared_ptr<Run>& run);
  void on_delivered(const std::shared_ptr<Run>& run, size_t index, sc::DeliveryResult result);
  void lease_deadline(const std::shared_ptr<Run>& run);
  void fail_rest(const std::shared_ptr<Run>& run, const Verdict& v, bool destination_failed, const std::string& remote);
  void finish(const std::shared_ptr<Run>& run);
  void report(const std::shared_ptr<Run>& run, std::vector<size_t> rcpts, const std::vector<Verdict>& verdicts,
              const std::vector<bool>& destination_failed, const std::string& remote);
  void submit_report(std::vector<queue::DeliveryResult> results, size_t tries, std::string failing);
  void reported(const std::string& failing);
  void check_stopped();
  void stop(std::function<void()> done);

  std::optional<Candidate> store_candidate(const std::string& name);
  Candidate smtp_candidate(const std::string& host, const common::net::IpAddress& address, uint16_t port,
                           const std::string& policy_domain);
  sc::DestinationPool& pool_for(const Candidate& c);
  Result<sc::Message> message_for(Run& run, const Transaction& t);
};

// --- start and stop ---

Result<void> Deliverer::Impl::start() {
  if (!ctx.loop || !ctx.connections || !ctx.queue || !ctx.config) {
    return common::fail(ErrorKind::Internal, "delivery: the context needs a loop, its connections, the queue and the config");
  }
  if (!ctx.nss) return common::fail(ErrorKind::Config, "delivery: NSS is not open (the TLS client contexts come from it)");
  helo = !cfg.helo_name.empty() ? cfg.helo_name : !ctx.host_name.empty() ? ctx.host_name : "localhost";
  auto make = [&](common::tls::Verify verify, std::string certificate) -> Result<std::shared_ptr<common::tls::ClientContext>> {
    common::tls::ClientOptions o;
    o.verify = verify;
    o.client_certificate = std::move(certificate);
    auto made = common::tls::ClientContext::create(*ctx.nss, o);
    if (!made) return common::fail(ErrorKind::Config, "delivery: " + made.error().detail);
    return *made;
  };
  // The stores: only the deployment CA may vouch for them, and they check our certificate.
  auto lmtp = make(common::tls::Verify::DeploymentCa, cfg.certificate);
  if (!lmtp) return tl::unexpected(lmtp.error());
  lmtp_tls = *lmtp;
  auto opportunistic = make(common::tls::Verify::Opportunistic, "");
  if (!opportunistic) return tl::unexpected(opportunistic.error());
  smtp_opportunistic = *opportunistic;
  for (const auto& p : cfg.tls_policies) {
    if (p.starttls != sc::StartTls::Required) continue;
    if (p.verify == common::tls::Verify::DeploymentCa && !smtp_ca) {
      auto c = make(common::tls::Verify::DeploymentCa, "");
      if (!c) return tl::unexpected(c.error());
      smtp_ca = *c;
    } else if (p.verify == common::tls::Verify::SystemRoots && !smtp_system) {
      auto c = make(common::tls::Verify::SystemRoots, "");
      if (!c) return tl::unexpected(c.error());
      smtp_system = *c;
    }
  }

  auto& reg = ctx.registry ? *ctx.registry : common::metrics::default_registry();
  results_metric = &reg.counter_family("mta_delivery_attempts_total",
                                       "Delivery attempts per recipient, by channel (lmtp, smtp) and outcome.",
                                       {"channel", "outcome"});
  failover_metric = &reg.counter("mta_delivery_next_address_total",
                                 "Transactions moved to the destination's next address after a failure before MAIL.");
  deadline_metric = &reg.counter("mta_delivery_lease_deadlines_total",
                                 "Delivery runs that reached their lease deadline and were reported as deferred.");
  active_metric = &reg.gauge("mta_delivery_active", "Delivery runs in progress.");

  wake_state->loop = ctx.loop;
  wake_state->impl = weak();
  poll = std::make_unique<Timer>(ctx.loop->get());
  report_retry = std::make_unique<Timer>(ctx.loop->get());
  std::weak_ptr<Impl> w = weak();
  poll->start(
      cfg.poll_interval,
      [w] {
        auto self = w.lock();
        if (!self) return;
        for (auto& [name, d] : self->destinations) d.dry = false;
        // Destinations and pools nothing uses any more are forgotten (a pool once its idle sessions
        // timed out), so a long-running mta does not keep one per domain it ever mailed.
        for (auto it = self->pools.begin(); it != self->pools.end();) {
          it = it->second.busy == 0 && it->second.pool->idle() == 0 ? self->pools.erase(it) : std::next(it);
        }
        for (auto it = self->destinations.begin(); it != self->destinations.end();) {
          const bool idle = it->second.runs == 0 && !it->second.taking && it->second.failing == 0;
          it = idle ? self->destinations.erase(it) : std::next(it);
        }
        self->fill();
      },
      cfg.poll_interval);
  common::log::info("delivery").phase("start").event("delivery_started")
      .kv("poll_ms", static_cast<int64_t>(cfg.poll_interval.count()))
      .kv("max_sessions", static_cast<uint64_t>(cfg.max_sessions))
      .kv("max_per_destination", static_cast<uint64_t>(cfg.max_per_destination))
      .kv("stores", static_cast<uint64_t>(cfg.store_hosts.size()))
      .kv("routes", static_cast<uint64_t>(cfg.routes.size()))
      .kv("tls_policies", static_cast<uint64_t>(cfg.tls_policies.size()));
  schedule_fill();
  return {};
}

void Deliverer::Impl::shutdown() {
  poll.reset();
  report_retry.reset();
  deferred_reports.clear();
  for (auto& r : runs) r->deadline.reset();
  runs.clear();
  pools.clear();  // idle sessions QUIT; a transaction in flight ends with its connection's drain
}

void Deliverer::Impl::stop(std::function<void()> done) {
  stopped = std::move(done);
  if (stopping) {
    check_stopped();
    return;
  }
  stopping = true;
  if (poll) poll->stop();
  common::log::info("delivery").phase("stop").event("delivery_stopping")
      .kv("runs", static_cast<uint64_t>(runs.size())).kv("taking", static_cast<uint64_t>(taking));
  const Verdict v = local_verdict(Outcome::TempFail, "4.3.2", "the mta is stopping");
  for (const auto& run : std::vector<std::shared_ptr<Run>>(runs.begin(), runs.end())) {
    run->stopping = true;
    if (run->preparing) {
      // Routing has not finished (a lookup may take seconds): give the batch back now.
      fail_rest(run, v, false, "");
      finish(run);
    } else if (!run->in_flight) {
      proceed(run);
    }
  }
  for (auto& [key, slot] : pools) slot.pool->close_idle();
  check_stopped();
}

void Deliverer::Impl::check_stopped() {
  if (!stopping || stopped_told || !runs.empty() || taking != 0 || reporting != 0) return;
  for (auto& [key, slot] : pools) slot.pool->close_idle();
  stopped_told = true;
  common::log::info("delivery").phase("stop").event("delivery_stopped").kv("reported", reported_count);
  if (stopped) {
    auto fn = std::move(stopped);
    stopped = nullptr;
    fn();
  }
}

// --- what to lease ---

void Deliverer::Impl::schedule_fill() {
  if (fill_posted || stopping) return;
  fill_posted = true;
  std::weak_ptr<Impl> w = weak();
  ctx.loop->post([w] {
    if (auto self = w.lock()) {
      self->fill_posted = false;
      self->fill();
    }
  });
}

void Deliverer::Impl::fill() {
  if (stopping) return;
  const size_t busy = runs.size() + taking;
  if (busy >= cfg.max_sessions) return;
  auto due = ctx.queue->due_destinations(ctx.queue->now());
  if (!due) {
    common::log::error("delivery").phase("poll").event("queue_read_failed").kv("reason", due.error().detail);
    return;
  }
  size_t started = busy;
  for (const auto& d : *due) {
    if (started >= cfg.max_sessions) break;
    auto& state = destinations[d.destination];
    if (state.taking || state.dry || state.failing > 0 || state.runs >= cfg.max_per_destination) continue;
    take(d.destination);
    if (!state.taking) break;  // the queue's writer is full: the next poll tries again
    ++started;
  }
}

void Deliverer::Impl::take(const std::string& destination) {
  auto& state = destinations[destination];
  std::weak_ptr<Impl> w = weak();
  const bool submitted = ctx.queue->take_due(
      *ctx.loop, alive(), ctx.queue->now(), cfg.batch_recipients, destination,
      [w, destination](Result<queue::DueBatch> batch) {
        if (auto self = w.lock()) self->on_taken(destination, std::move(batch));
      });
  if (!submitted) {
    common::log::warning("delivery").phase("poll").event("take_refused").kv("destination", destination)
        .kv("reason", "the queue's writer is full or stopping");
    return;
  }
  state.taking = true;
  ++taking;
}

void Deliverer::Impl::on_taken(const std::string& destination, Result<queue::DueBatch> batch) {
  auto& state = destinations[destination];
  state.taking = false;
  --taking;
  if (!batch) {
    common::log::error("delivery").phase("lease").event("take_failed").kv("destination", destination)
        .kv("reason", batch.error().detail);
    state.dry = true;
    check_stopped();
    return;
  }
  if (batch->recipients.empty()) {
    if (batch->expired == 0) state.dry = true;  // with expired ones failed, ask again: more may be due
    schedule_fill();
    check_stopped();
    return;
  }
  auto run = std::make_shared<Run>();
  run->destination = destination;
  run->kind = classify(destination);
  run->rcpts = std::move(batch->recipients);
  run->reported.assign(run->rcpts.size(), false);
  run->channel = run->kind.kind == DestinationKind::Kind::Store || run->kind.kind == DestinationKind::Kind::Local
                     ? "lmtp" : "smtp";
  begin(run);
  schedule_fill();
}

// --- a run ---

void Deliverer::Impl::begin(std::shared_ptr<Run> run) {
  runs.insert(run);
  destinations[run->destination].runs += 1;
  active_metric->set(static_cast<int64_t>(runs.size()));
  common::log::info("delivery").phase("lease").event("run_started").kv("destination", run->destination)
      .kv("recipients", static_cast<uint64_t>(run->rcpts.size()))
      .kv("queue_id", run->rcpts.front().queue_id);
  if (stopping) {
    run->stopping = true;
    fail_rest(run, local_verdict(Outcome::TempFail, "4.3.2", "the mta is stopping"), false, "");
    finish(run);
    return;
  }
  // The lease runs out after Policy::lease; what is not reported by 80% of it is reported deferred,
  // so no second worker (or this one after a restart) gets it while we still hold it.
  const auto lease = std::chrono::duration_cast<std::chrono::milliseconds>(ctx.queue->policy().lease);
  run->deadline = std::make_unique<Timer>(ctx.loop->get());
  std::weak_ptr<Impl> w = weak();
  std::weak_ptr<Run> wr = run;
  run->deadline->start(std::max(lease * 4 / 5, std::chrono::milliseconds(100)), [w, wr] {
    auto self = w.lock();
    auto r = wr.lock();
    if (self && r) self->lease_deadline(r);
  });
  switch (run->kind.kind) {
    case DestinationKind::Kind::Store: prepare_store(run); break;
    case DestinationKind::Kind::Local: prepare_local(run); break;
    case DestinationKind::Kind::Remote:
    case DestinationKind::Kind::Literal: prepare_remote(run); break;
    case DestinationKind::Kind::Invalid:
      common::log::error("delivery").phase("route").event("bad_destination").kv("destination", run->destination)
          .kv("queue_id", run->rcpts.front().queue_id);
      fail_rest(run, local_verdict(Outcome::PermFail, "5.1.2", "the queue holds a destination that is not a domain"),
                false, "");
      finish(run);
      break;
  }
}

std::optional<Candidate> Deliverer::Impl::store_candidate(const std::string& name) {
  const StoreHost* store = cfg.store_host(name);
  if (!store) return std::nullopt;
  Candidate c;
  c.pool_key = "lmtp " + store->name;
  c.host = store->name;
  c.where.remote = store->address;
  c.where.connect_timeout = cfg.connect_timeout;
  c.where.name = "lmtp-" + store->name;
  c.where.service = "lmtp";
  c.client.protocol = sc::Protocol::Lmtp;
  c.client.helo_name = helo;
  c.client.implicit_tls = store->implicit_tls;
  // Mail never goes to a store in plaintext: the other tier holds every mailbox.
  c.client.starttls = store->implicit_tls ? sc::StartTls::Off : sc::StartTls::Required;
  c.client.tls = lmtp_tls;
  c.client.tls_peer = {store->server_name, store->server_name};
  c.client.timeouts = cfg.timeouts;
  return c;
}

Candidate Deliverer::Impl::smtp_candidate(const std::string& host, const common::net::IpAddress& address,
                                          uint16_t port, const std::string& policy_domain) {
  Candidate c;
  c.host = host;
  c.where.remote = common::net::Endpoint{address, port};
  c.where.connect_timeout = cfg.connect_timeout;
  c.where.name = "smtp-out";
  c.where.service = "smtp";
  c.client.protocol = sc::Protocol::Smtp;
  c.client.helo_name = helo;
  c.client.timeouts = cfg.timeouts;
  const TlsPolicy* policy = cfg.tls_policy(policy_domain);
  c.client.starttls = policy ? policy->starttls : sc::StartTls::Opportunistic;
  common::tls::Verify verify = common::tls::Verify::Opportunistic;
  if (c.client.starttls == sc::StartTls::Required) verify = policy->verify;
  switch (verify) {
    case common::tls::Verify::Opportunistic: c.client.tls = smtp_opportunistic; break;
    case common::tls::Verify::DeploymentCa: c.client.tls = smtp_ca; break;
    case common::tls::Verify::SystemRoots: c.client.tls = smtp_system; break;
  }
  if (c.client.starttls == sc::StartTls::Off) c.client.tls = nullptr;
  // SNI and the name checked: the MX host as DNS named it (or the route's host), unless the policy
  // names the certificate; ClientContext sends no SNI for an address.
  c.client.tls_peer.server_name = host;
  c.client.tls_peer.expected_name = policy && !policy->server_name.empty() ? policy->server_name : host;
  c.pool_key = "smtp " + c.where.remote.to_string() + " " + std::string(starttls_name(c.client.starttls)) + " " +
               std::string(common::tls::verify_name(verify)) + " " + host + " " + c.client.tls_peer.expected_name;
  return c;
}

sc::DestinationPool& Deliverer::Impl::pool_for(const Candidate& c) {
  auto& slot = pools[c.pool_key];
  if (!slot.pool) slot.pool = std::make_unique<sc::DestinationPool>(*ctx.connections, c.where, c.client, cfg.pool);
  return *slot.pool;
}

void Deliverer::Impl::prepare_store(const std::shared_ptr<Run>& run) {
  auto c = store_candidate(run->kind.name);
  if (!c) {
    // A mailHost we have no address for is our configuration's gap, not the recipient's fault:
    // the mail waits for the operator to add the [[store_host]].
    common::log::error("delivery").phase("route").event("unknown_store").kv("destination", run->destination)
        .kv("queue_id", run->rcpts.front().queue_id).kv("store", run->kind.name);
    fail_rest(run, local_verdict(Outcome::TempFail, "4.3.5", "no [[store_host]] for mailHost " + run->kind.name),
              true, "");
    finish(run);
    return;
  }
  Target t;
  t.final_delivery = true;
  t.candidates.push_back(std::move(*c));
  run->targets.push_back(std::move(t));
  plan(run, std::vector<size_t>(run->rcpts.size(), 0));
}

void Deliverer::Impl::prepare_local(const std::shared_ptr<Run>& run) {
  if (!ctx.auth) {
    common::log::error("delivery").phase("route").event("no_directory").kv("destination", run->destination)
        .kv("queue_id", run->rcpts.front().queue_id);
    fail_rest(run, local_verdict(Outcome::TempFail, "4.3.5", "no authserv client to look the recipient up"), true, "");
    finish(run);
    return;
  }
  struct Pending {
    size_t left = 0;
    std::vector<std::optional<Result<common::authclient::RecipientInfo>>> answers;
  };
  auto pending = std::make_shared<Pending>();
  pending->left = run->rcpts.size();
  pending->answers.resize(run->rcpts.size());
  std::weak_ptr<Impl> w = weak();
  for (size_t i = 0; i < run->rcpts.size(); ++i) {
    common::authclient::ConnectionFacts facts;
    facts.service = "smtp";
    facts.session_id = run->rcpts[i].queue_id;
    ctx.auth->lookup_recipient(
        *ctx.loop, std::weak_ptr<void>(run), facts, run->rcpts[i].recipient.address,
        [w, wr = std::weak_ptr<Run>(run), pending, i](Result<common::authclient::RecipientInfo> info) {
          pending->answers[i] = std::move(info);
          if (--pending->left != 0) return;
          auto self = w.lock();
          auto run = wr.lock();
          if (!self || !run || run->finished || run->abandoned) return;
          std::map<std::string, size_t> by_store;
          std::vector<size_t> target_of(run->rcpts.size(), SIZE_MAX);
          for (size_t k = 0; k < run->rcpts.size(); ++k) {
            const auto& a = *pending->answers[k];
            const std::string& address = run->rcpts[k].recipient.address;
            if (!a) {
              const bool busy = a.error().kind == ErrorKind::TempFail;
              common::log::notice("delivery").phase("route").event("lookup_failed").kv("queue_id", run->rcpts[k].queue_id)
                  .kv("recipient", address).kv("reason", a.error().detail);
              self->report(run, {k},
                           {busy ? local_verdict(Outcome::TempFail, "4.4.3", "recipient lookup failed: " + a.error().detail)
                                 : local_verdict(Outcome::PermFail, "5.1.3", "recipient lookup refused: " + a.error().detail)},
                           {busy}, "");
              continue;
            }
            if (a->kind != common::authclient::RecipientKind::User || a->mail_host.empty()) {
              // An alias is expanded by the inbound session at RCPT; a DSN to one is not expanded again.
              const char* why = a->kind == common::authclient::RecipientKind::Alias ? "an alias (a DSN is not expanded)"
                                                                                    : "no such user here";
              self->report(run, {k}, {local_verdict(Outcome::PermFail, "5.1.1", address + ": " + why, 550)}, {false}, "");
              continue;
            }
            const std::string store = common::ascii::lowered(a->mail_host);
            auto found = by_store.find(store);
            if (found == by_store.end()) {
              auto c = self->store_candidate(store);
              if (!c) {
                common::log::error("delivery").phase("route").event("unknown_store")
                    .kv("queue_id", run->rcpts[k].queue_id).kv("recipient", address).kv("store", store);
                self->report(run, {k},
                             {local_verdict(Outcome::TempFail, "4.3.5", "no [[store_host]] for mailHost " + store)},
                             {false}, "");
                continue;
              }
              Target t;
              t.final_delivery = true;
              t.candidates.push_back(std::move(*c));
              run->targets.push_back(std::move(t));
              found = by_store.emplace(store, run->targets.size() - 1).first;
            }
            target_of[k] = found->second;
          }
          self->plan(run, target_of);
        });
  }
}

void Deliverer::Impl::prepare_remote(const std::shared_ptr<Run>& run) {
  const std::string& domain = run->kind.name;
  if (run->kind.kind == DestinationKind::Kind::Literal) {
    Target t;
    t.candidates.push_back(smtp_candidate(run->kind.address->to_string(), *run->kind.address, cfg.smtp_port, domain));
    run->targets.push_back(std::move(t));
    plan(run, std::vector<size_t>(run->rcpts.size(), 0));
    return;
  }
  if (const Route* route = cfg.route(domain)) {
    if (auto address = common::net::IpAddress::parse(route->host)) {
      Target t;
      t.candidates.push_back(smtp_candidate(route->host, *address, route->port, domain));
      run->targets.push_back(std::move(t));
      plan(run, std::vector<size_t>(run->rcpts.size(), 0));
      return;
    }
    resolve_hosts(run, {route->host}, false, route->port, domain);
    return;
  }
  if (!ctx.resolver) {
    fail_rest(run, local_verdict(Outcome::TempFail, "4.4.3", "no DNS resolver for MX lookups"), true, "");
    finish(run);
    return;
  }
  std::weak_ptr<Impl> w = weak();
  std::weak_ptr<Run> wr = run;
  ctx.resolver->mx(domain, [w, wr, domain](common::dns::Status status, std::vector<common::dns::MxRecord> records) {
    auto self = w.lock();
    auto run = wr.lock();
    if (!self || !run || run->finished || run->abandoned) return;
    if (status == common::dns::Status::TempFail) {
      self->fail_rest(run, local_verdict(Outcome::TempFail, "4.4.3", "MX lookup for " + domain + " failed for now"), true,
                      "");
      self->finish(run);
      return;
    }
    std::vector<std::string> hosts;
    bool implicit = false;
    if (status == common::dns::Status::NotFound || records.empty()) {
      hosts.push_back(domain);  // RFC 5321 §5.1: no MX, the domain itself is the implicit MX
      implicit = true;
    } else {
      MxPlan plan = plan_mx(std::move(records), uniform);
      if (plan.null_mx) {
        // RFC 7505 §4.1: the domain accepts no mail; fail at once without a connection.
        common::log::info("delivery").phase("route").event("null_mx").kv("destination", domain)
            .kv("queue_id", run->rcpts.front().queue_id);
        self->fail_rest(run, local_verdict(Outcome::PermFail, "5.1.10",
                                           domain + " accepts no mail (null MX, RFC 7505)", 556),
                        false, "");
        self->finish(run);
        return;
      }
      hosts = std::move(plan.hosts);
      if (hosts.size() > kMaxMxHosts) hosts.resize(kMaxMxHosts);
    }
    self->resolve_hosts(run, std::move(hosts), implicit, self->cfg.smtp_port, domain);
  });
}

void Deliverer::Impl::resolve_hosts(const std::shared_ptr<Run>& run, std::vector<std::string> hosts, bool implicit_mx,
                                    uint16_t port, const std::string& domain) {
  if (!ctx.resolver) {
    fail_rest(run, local_verdict(Outcome::TempFail, "4.4.3", "no DNS resolver for address lookups"), true, "");
    finish(run);
    return;
  }
  struct Pending {
    size_t left = 0;
    std::vector<std::string> hosts;
    std::vector<common::dns::Status> status;
    std::vector<std::vector<common::net::IpAddress>> addresses;
  };
  auto pending = std::make_shared<Pending>();
  pending->left = hosts.size();
  pending->status.assign(hosts.size(), common::dns::Status::TempFail);
  pending->addresses.resize(hosts.size());
  pending->hosts = std::move(hosts);
  std::weak_ptr<Impl> w = weak();
  std::weak_ptr<Run> wr = run;
  for (size_t i = 0; i < pending->hosts.size(); ++i) {
    ctx.resolver->addresses(pending->hosts[i], [w, wr, pending, i, implicit_mx, port, domain](
                                                   common::dns::Status status, std::vector<common::net::IpAddress> found) {
      pending->status[i] = status;
      pending->addresses[i] = std::move(found);
      if (--pending->left != 0) return;
      auto self = w.lock();
      auto run = wr.lock();
      if (!self || !run || run->finished || run->abandoned) return;
      Target t;
      bool temporary = false;
      for (size_t h = 0; h < pending->hosts.size(); ++h) {
        if (pending->status[h] == common::dns::Status::TempFail) temporary = true;
        for (const auto& a : pending->addresses[h]) {
          if (a.is_unspecified() || t.candidates.size() >= self->cfg.max_mx_addresses) continue;
          t.candidates.push_back(self->smtp_candidate(pending->hosts[h], a, port, domain));
        }
      }
      if (t.candidates.empty()) {
        Verdict v = temporary ? local_verdict(Outcome::TempFail, "4.4.3", "address lookup for the MX of " + domain +
                                                                              " failed for now")
                    : implicit_mx ? local_verdict(Outcome::PermFail, "5.1.2", domain + " has no MX, A or AAAA record", 550)
                                  : local_verdict(Outcome::PermFail, "5.4.4", "no MX host of " + domain + " has an address",
                                                  550);
        common::log::notice("delivery").phase("route").event("no_address").kv("destination", domain)
            .kv("queue_id", run->rcpts.front().queue_id).kv("reason", v.reply);
        self->fail_rest(run, v, temporary, "");
        self->finish(run);
        return;
      }
      run->targets.push_back(std::move(t));
      self->plan(run, std::vector<size_t>(run->rcpts.size(), 0));
    });
  }
}

// Transactions in queue-id order: one per message and target, at most max_transaction_recipients each.
void Deliverer::Impl::plan(const std::shared_ptr<Run>& run, const std::vector<size_t>& target_of) {
  std::map<std::pair<std::string, size_t>, std::vector<size_t>> groups;
  for (size_t i = 0; i < run->rcpts.size(); ++i) {
    if (target_of[i] == SIZE_MAX || run->reported[i]) continue;
    groups[{run->rcpts[i].queue_id, target_of[i]}].push_back(i);
  }
  for (auto& [key, members] : groups) {
    for (size_t start = 0; start < members.size(); start += cfg.max_transaction_recipients) {
      Transaction t;
      t.queue_id = key.first;
      t.target = key.second;
      const size_t end = std::min(members.size(), start + cfg.max_transaction_recipients);
      t.rcpts.assign(members.begin() + static_cast<std::ptrdiff_t>(start), members.begin() + static_cast<std::ptrdiff_t>(end));
      run->transactions.push_back(std::move(t));
    }
  }
  run->preparing = false;
  proceed(run);
}

Result<sc::Message> Deliverer::Impl::message_for(Run& run, const Transaction& t) {
  if (run.cached_id != t.queue_id) {
    run.cached_id.clear();
    run.envelope.reset();
    run.content.clear();
    auto info = ctx.queue->show(t.queue_id);
    if (!info) return tl::unexpected(info.error());
    if (!*info) return common::fail(ErrorKind::Protocol, "the message left the queue");
    auto bytes = ctx.queue->message_bytes(t.queue_id);
    if (!bytes) return tl::unexpected(bytes.error());
    run.cached_id = t.queue_id;
    run.envelope = std::move((*info)->envelope);
    run.content = std::move(*bytes);
  }
  sc::Message m;
  m.reverse_path = run.envelope->reverse_path;
  for (size_t i : t.rcpts) m.recipients.push_back(run.rcpts[i].recipient.address);
  m.content = run.content;
  m.xid = t.queue_id;  // the store keeps (XID, recipient): a retry after a crash is stored once
  m.eight_bit = run.envelope->body == queue::BodyType::EightBitMime || run.envelope->body == queue::BodyType::BinaryMime;
  m.smtputf8 = run.envelope->smtputf8;
  return m;
}

void Deliverer::Impl::proceed(const std::shared_ptr<Run>& run) {
  while (!run->finished && !run->in_flight) {
    if (run->abandoned || run->next >= run->transactions.size()) {
      finish(run);
      return;
    }
    if (run->stopping) {
      fail_rest(run, local_verdict(Outcome::TempFail, "4.3.2", "the mta is stopping"), false, "");
      finish(run);
      return;
    }
    const size_t index = run->next++;
    const Transaction& t = run->transactions[index];
    Target& target = run->targets[t.target];
    if (target.dead) {
      std::vector<Verdict> vs(t.rcpts.size(), *target.dead);
      report(run, t.rcpts, vs, std::vector<bool>(t.rcpts.size(), target.dead_destination),
             target.candidates.empty() ? "" : target.candidates[target.current].host);
      continue;
    }
    auto message = message_for(*run, t);
    if (!message) {
      common::log::warning("delivery").phase("deliver").event("message_unreadable").kv("queue_id", t.queue_id)
          .kv("reason", message.error().detail);
      std::vector<Verdict> vs(t.rcpts.size(), local_verdict(Outcome::TempFail, "4.3.0", "the queued message could not be read"));
      report(run, t.rcpts, vs, std::vector<bool>(t.rcpts.size(), false), "");
      continue;
    }
    const Candidate& c = target.candidates[target.current];
    attempted += t.rcpts.size();
    common::log::info("delivery").phase("deliver").event("attempt").kv("queue_id", t.queue_id)
        .kv("destination", run->destination).kv("remote", c.display()).kv("channel", run->channel)
        .kv("recipients", static_cast<uint64_t>(t.rcpts.size()))
        .kv("attempt", static_cast<uint64_t>(run->rcpts[t.rcpts.front()].recipient.attempts))
        .kv("size", static_cast<uint64_t>(message->content.size()));
    run->in_flight = true;
    std::weak_ptr<Impl> w = weak();
    std::weak_ptr<Run> wr = run;
    sc::DestinationPool& pool = pool_for(c);
    pools[c.pool_key].busy += 1;
    pool.deliver(std::move(*message), [w, wr, index, key = c.pool_key](sc::DeliveryResult r) {
      auto self = w.lock();
      if (!self) return;
      if (auto slot = self->pools.find(key); slot != self->pools.end() && slot->second.busy > 0) slot->second.busy -= 1;
      auto run = wr.lock();
      if (!run) return;
      self->on_delivered(run, index, std::move(r));
    });
  }
}

void Deliverer::Impl::on_delivered(const std::shared_ptr<Run>& run, size_t index, sc::DeliveryResult r) {
  run->in_flight = false;
  const Transaction& t = run->transactions[index];
  Target& target = run->targets[t.target];
  const Candidate& c = target.candidates[target.current];
  if (run->abandoned) {
    // Reported deferred at the lease deadline; the queue would ignore this late word anyway.
    common::log::notice("delivery").phase("deliver").event("late_result").kv("queue_id", t.queue_id)
        .kv("remote", c.display()).kv("status", sc::failure_name(r.status.kind));
    finish(run);
    return;
  }
  if (try_next_address(r)) {
    common::log::notice("delivery").phase("deliver").event("server_failed").kv("queue_id", t.queue_id)
        .kv("destination", run->destination).kv("remote", c.display()).kv("kind", sc::failure_name(r.status.kind))
        .kv("reason", r.status.detail);
    if (r.status.kind != sc::Failure::PermFail) target.any_temporary = true;
    if (target.current + 1 < target.candidates.size() && !run->stopping) {
      // RFC 5321 §5.1: the next MX (or the next address of this one); the message was never offered.
      ++target.current;
      failover_metric->inc();
      run->next = index;
      proceed(run);
      return;
    }
    target.dead = verdict(r.status, target.final_delivery);
    if (target.any_temporary && target.dead->outcome == Outcome::PermFail) {
      // One MX refusing us with a 5xx greeting while another could not be reached: not final.
      target.dead->outcome = Outcome::TempFail;
      target.dead->status[0] = '4';
    }
    target.dead_destination = true;
  }
  std::vector<Verdict> vs;
  for (size_t k = 0; k < t.rcpts.size(); ++k) {
    const sc::Status& s = k < r.recipients.size() ? r.recipients[k].status : r.status;
    vs.push_back(target.dead && !r.offered ? *target.dead : verdict(s, target.final_delivery));
  }
  const bool destination_failed = target.dead.has_value() && target.dead_destination && !r.offered;
  if (r.offered && !r.status.ok() &&
      (r.status.kind == sc::Failure::Timeout || r.status.kind == sc::Failure::Closed ||
       r.status.kind == sc::Failure::Protocol)) {
    // The server stopped answering mid-transaction: the rest of this run's mail for it waits for
    // the next attempt instead of each message sitting out the same timeout.
    target.dead = local_verdict(Outcome::TempFail, "4.4.2",
                                "not attempted: the previous transaction to " + c.host + " failed (" + r.status.detail + ")");
    target.dead_destination = false;
  }
  const std::string remote = c.host;
  {
    auto line = common::log::info("delivery");
    line.phase("deliver").event("transaction").kv("queue_id", t.queue_id).kv("remote", c.display())
        .kv("status", sc::failure_name(r.status.kind)).kv("offered", r.offered ? "yes" : "no");
    if (r.tls) {
      line.kv("tls", r.tls->protocol).kv("cipher", r.tls->cipher).kv("verified", r.tls->server_verified ? "yes" : "no");
    } else if (r.offered) {
      line.kv("tls", "no");
    }
  }
  report(run, t.rcpts, vs, std::vector<bool>(t.rcpts.size(), destination_failed), remote);
  if (run->stopping) {
    for (auto& [key, slot] : pools) slot.pool->close_idle();
  }
  proceed(run);
}

void Deliverer::Impl::lease_deadline(const std::shared_ptr<Run>& run) {
  if (run->finished) return;
  deadline_metric->inc();
  common::log::warning("delivery").phase("deliver").event("lease_deadline").kv("destination", run->destination)
      .kv("queue_id", run->rcpts.front().queue_id).kv("in_flight", run->in_flight ? "yes" : "no");
  fail_rest(run, local_verdict(Outcome::TempFail, "4.4.2", "the delivery did not finish in time (lease deadline)"), false,
            "");
  run->abandoned = true;
  if (!run->in_flight) finish(run);
}

void Deliverer::Impl::fail_rest(const std::shared_ptr<Run>& run, const Verdict& v, bool destination_failed,
                                const std::string& remote) {
  std::vector<size_t> rest;
  for (size_t i = 0; i < run->rcpts.size(); ++i) {
    if (!run->reported[i]) rest.push_back(i);
  }
  if (rest.empty()) return;
  std::vector<Verdict> vs(rest.size(), v);
  report(run, rest, vs, std::vector<bool>(rest.size(), destination_failed), remote);
}

void Deliverer::Impl::finish(const std::shared_ptr<Run>& run) {
  if (run->finished) return;
  run->finished = true;
  run->deadline.reset();
  // Nothing leased may stay unreported (a route that found nothing for a recipient, say).
  fail_rest(run, local_verdict(Outcome::TempFail, "4.3.0", "not attempted"), false, "");
  auto& state = destinations[run->destination];
  if (state.runs > 0) state.runs -= 1;
  runs.erase(run);
  active_metric->set(static_cast<int64_t>(runs.size()));
  schedule_fill();
  check_stopped();
}

void Deliverer::Impl::report(const std::shared_ptr<Run>& run, std::vector<size_t> rcpts,
                             const std::vector<Verdict>& verdicts, const std::vector<bool>& destination_failed,
                             const std::string& remote) {
  std::vector<queue::DeliveryResult> results;
  bool any_failing = false;
  for (size_t k = 0; k < rcpts.size(); ++k) {
    const size_t i = rcpts[k];
    if (run->reported[i]) continue;
    run->reported[i] = true;
    const auto& d = run->rcpts[i];
    const Verdict& v = verdicts[k];
    queue::DeliveryResult r;
    r.queue_id = d.queue_id;
    r.index = d.index;
    r.lease = d.recipient.lease;
    r.outcome = v.outcome;
    r.code = v.code;
    r.status = v.status;
    r.reply = v.reply;
    r.remote = remote;
    r.destination_failed = destination_failed[k] && v.outcome == Outcome::TempFail;
    results_metric->with({run->channel, outcome_name(v.outcome)}).inc();
    auto line = v.outcome == Outcome::TempFail || v.outcome == Outcome::PermFail ? common::log::notice("delivery")
                                                                                   : common::log::info("delivery");
    line.phase("deliver").event(outcome_name(v.outcome)).kv("queue_id", d.queue_id)
        .kv("recipient", d.recipient.address).kv("destination", run->destination)
        .kv("remote", remote.empty() ? std::string_view("none") : std::string_view(remote))
        .kv("code", static_cast<uint64_t>(v.code)).kv("status", v.status).client_text("reply", v.reply)
        .kv("attempt", static_cast<uint64_t>(d.recipient.attempts));
    if (r.destination_failed) line.kv("destination_failed", "yes");
    any_failing = any_failing || r.destination_failed;
    results.push_back(std::move(r));
  }
  if (results.empty()) return;
  if (any_failing) destinations[run->destination].failing += 1;
  submit_report(std::move(results), 0, any_failing ? run->destination : std::string());
}

void Deliverer::Impl::reported(const std::string& failing) {
  if (failing.empty()) return;
  auto found = destinations.find(failing);
  if (found != destinations.end() && found->second.failing > 0) found->second.failing -= 1;
}

void Deliverer::Impl::submit_report(std::vector<queue::DeliveryResult> results, size_t tries, std::string failing) {
  std::weak_ptr<Impl> w = weak();
  const size_t n = results.size();
  auto copy = std::make_shared<std::vector<queue::DeliveryResult>>(results);  // kept for a retry
  ++reporting;
  const bool submitted = ctx.queue->report(
      *ctx.loop, alive(), ctx.queue->now(), std::move(results), [w, n, failing](Result<queue::ReportSummary> summary) {
        auto self = w.lock();
        if (!self) return;
        --self->reporting;
        self->reported(failing);
        if (!summary) {
          // The results are lost with the write; the leases run out and the queue hands them out again.
          common::log::error("delivery").phase("report").event("report_failed").kv("results", static_cast<uint64_t>(n))
              .kv("reason", summary.error().detail);
        } else {
          self->reported_count += summary->applied;
          if (!summary->dsns.empty()) self->schedule_fill();  // DSNs are due at once
        }
        self->check_stopped();
      });
  if (submitted) return;
  --reporting;
  if (tries + 1 >= kMaxReportRetries) {
    common::log::error("delivery").phase("report").event("report_dropped").kv("results", static_cast<uint64_t>(n))
        .kv("queue_id", copy->front().queue_id).kv("reason", "the queue's writer stayed full; the leases will run out");
    reported(failing);
    check_stopped();
    return;
  }
  // Counted while it waits, so the drain waits for it too.
  ++reporting;
  deferred_reports.push_back(WaitingReport{std::move(*copy), tries + 1, std::move(failing)});
  if (report_retry && !report_retry->active()) {
    report_retry->start(kReportRetry, [w] {
      auto self = w.lock();
      if (!self) return;
      auto waiting = std::move(self->deferred_reports);
      self->deferred_reports.clear();
      for (auto& waiting_report : waiting) {
        --self->reporting;
        self->submit_report(std::move(waiting_report.results), waiting_report.tries, std::move(waiting_report.failing));
      }
    });
  }
}

// --- the public face ---

Deliverer::Deliverer(std::shared_ptr<Impl> impl) : impl_(std::move(impl)) {}

Deliverer::~Deliverer() {
  if (impl_) impl_->shutdown();
}

Result<std::unique_ptr<Deliverer>> Deliverer::create(Context context) {
  auto impl = std::make_shared<Impl>(std::move(context));
  if (auto started = impl->start(); !started) return tl::unexpected(started.error());
  return std::unique_ptr<Deliverer>(new Deliverer(std::move(impl)));
}

void Deliverer::wake() { waker()(); }

std::function<void()> Deliverer::waker() const {
  return [ws = impl_->wake_state] {
    if (ws->pending.exchange(true)) return;
    ws->loop->post([ws] {
      ws->pending = false;
      auto impl = ws->impl.lock();
      if (!impl) return;
      for (auto& [name, d] : impl->destinations) d.dry = false;
      impl->fill();
    });
  };
}

void Deliverer::stop(std::function<void()> stopped) { impl_->stop(std::move(stopped)); }

Deliverer::Stats Deliverer::stats() const {
  Stats s;
  s.active = impl_->runs.size();
  s.taking = impl_->taking;
  s.reporting = impl_->reporting;
  s.attempted = impl_->attempted;
  s.reported = impl_->reported_count;
  return s;
}

}  // namespace mta::delivery
