// metrics_http.hpp: the per-daemon Prometheus endpoint (GET /metrics) served on the daemon's own
// runtime: one short HTTP/1.1 exchange per connection, bounded like every other listener.
#pragma once

#include <memory>

#include "common/metrics/metrics.hpp"
#include "common/runtime/listener.hpp"
#include "common/runtime/loop.hpp"

namespace common::daemon {


class MetricsEndpoint {
 public:
  MetricsEndpoint(runtime::Loop& loop, runtime::BoundSocket socket, metrics::Registry& registry = metrics::default_registry());
  ~MetricsEndpoint();
  Result<void> start();
  void stop();
  const net::Endpoint& endpoint() const { return listener_->endpoint(); }

 private:
  class Factory;
  std::unique_ptr<Factory> factory_;
  std::unique_ptr<runtime::ConnectionSet> connections_;
  std::unique_ptr<runtime::Listener> listener_;
};

}  // namespace common::daemon
