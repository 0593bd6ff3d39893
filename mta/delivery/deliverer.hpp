// deliverer.hpp: the mta's delivery loop: leases due recipients from the durable queue, delivers them
// (LMTP over mutual TLS to the store of each mailHost, SMTP to the remote domain's MX or a static
// route) over pooled connections, and reports every result back, on one runtime loop.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "common/result.hpp"
#include "mta/delivery/config.hpp"

namespace common::runtime {
class Loop;
class ConnectionSet;
}  // namespace common::runtime
namespace common::dns {
class Resolver;
}
namespace common::authclient {
class AuthClient;
}
namespace common::tls {
class Nss;
}
namespace common::metrics {
class Registry;
}
namespace mta::queue {
class Queue;
}

namespace mta::delivery {

// What the deliverer runs on. Everything must outlive it; loop, connections and resolver are one
// loop thread's (common::daemon::LoopContext gives all three).
struct Context {
  common::runtime::Loop* loop = nullptr;
  common::runtime::ConnectionSet* connections = nullptr;  // the loop's; the daemon's drain reaches our sessions
  common::dns::Resolver* resolver = nullptr;  // null: remote mail waits (4.4.3) unless routed to an address
  queue::Queue* queue = nullptr;
  // Recipient lookups for "local:<domain>" destinations (DSNs to our own senders); null: they wait.
  common::authclient::AuthClient* auth = nullptr;
  const Config* config = nullptr;
  std::vector<std::string> local_domains;
  std::string host_name;  // EHLO/LHLO name unless [delivery] helo_name says otherwise
  // NSS as common/tls opened it for the process: the TLS client contexts are made from it (our
  // certificate for the stores, the deployment CA, the public roots where a policy asks for them).
  const common::tls::Nss* nss = nullptr;
  common::metrics::Registry* registry = nullptr;  // null: the process's default registry
};

// Lives on Context::loop. Polls the queue every poll_interval and on wake(); per destination it
// leases a batch (queue::Queue::take_due), delivers it on one pooled session at a time, and reports
// each message's results as they come (queue::Queue::report). At most max_sessions deliveries run
// at once, max_per_destination of them to one destination, so a stalling MX holds only its own.
// A lease is reported before it runs out: a delivery still running at 80% of queue::Policy::lease
// has what it did not finish reported as a temporary failure.
//
// Threads: create, stop and destroy on the loop's thread (or, for destruction, after the loop has
// stopped running and before it is destroyed); wake() and waker() from any thread.
class Deliverer {
 public:
  // Makes the TLS client contexts; Config errors for what the configuration asks and NSS cannot
  // give (our certificate missing, the public roots not loadable). Starts polling at once.
  static common::Result<std::unique_ptr<Deliverer>> create(Context context);
  ~Deliverer();
  Deliverer(const Deliverer&) = delete;
  Deliverer& operator=(const Deliverer&) = delete;

  // Look at the queue now (a session just enqueued, postern-queue flushed): posts to the loop, and
  // many wakes before the loop gets to it make one look. Any thread.
  void wake();
  // The same as a callable that stays safe after the Deliverer is gone (it then does nothing), for
  // sessions on other loops. Needs only the loop to be alive.
  std::function<void()> waker() const;
  // The drain: no new leases; deliveries in progress finish their current transaction, whatever they
  // had not started yet is reported as a temporary failure, idle sessions say QUIT. `stopped` runs on
  // the loop once nothing is in flight (every result reported). On the loop's thread.
  void stop(std::function<void()> stopped = {});

  struct Stats {
    size_t active = 0;        // deliveries in progress
    size_t taking = 0;        // leases being taken
    size_t reporting = 0;     // reports not yet committed
    uint64_t attempted = 0;   // recipients handed to a server (or failed before one)
    uint64_t reported = 0;    // results reported
  };
  Stats stats() const;  // on the loop's thread

  struct Impl;

 private:
  explicit Deliverer(std::shared_ptr<Impl> impl);
  std::shared_ptr<Impl> impl_;
};

}  // namespace mta::delivery
