// metrics_http.cpp: an HTTP session that answers one request from the registry and closes.
#include "common/daemon/metrics_http.hpp"

#include "common/metrics/http.hpp"

namespace common::daemon {

using namespace common::runtime;
namespace {

using namespace std::chrono_literals;

class MetricsSession : public Session {
 public:
  MetricsSession(Connection& c, const metrics::Registry& registry) : Session(c), registry_(registry) {}

  void on_data(std::string_view bytes) override {
    auto result = parser_.feed(bytes);
    if (std::holds_alternative<metrics::HttpNeedMore>(result)) return;
    if (auto* head = std::get_if<metrics::HttpRequestHead>(&result)) {
      connection().write(metrics::metrics_http_response(*head, registry_));
    } else {
      connection().write(metrics::http_error_response(std::get<metrics::HttpError>(result)));
    }
    connection().close();
  }

 private:
  const metrics::Registry& registry_;
  metrics::HttpRequestParser parser_;
};

}  // namespace

class MetricsEndpoint::Factory : public SessionFactory {
 public:
  explicit Factory(const metrics::Registry& registry) : registry_(registry) {}
  std::unique_ptr<Session> create(Connection& c) override { return std::make_unique<MetricsSession>(c, registry_); }
  std::string refusal(Refusal) override {
    return metrics::http_response(503, "text/plain", "too many connections\n");
  }

 private:
  const metrics::Registry& registry_;
};

MetricsEndpoint::MetricsEndpoint(Loop& loop, BoundSocket socket, metrics::Registry& registry)
    : factory_(std::make_unique<Factory>(registry)), connections_(std::make_unique<ConnectionSet>(loop.get())) {
  ListenerOptions o;
  o.name = "metrics";
  o.service = "metrics";
  o.limits.idle_timeout = 10s;
  o.limits.session_timeout = 30s;
  o.limits.close_linger = 2s;
  // A scraper needs one connection; the bounds stop a stray client from hoarding them.
  listener_ = std::make_unique<Listener>(*connections_, std::move(o), std::move(socket),
                                         std::make_shared<ConnectionLimiter>(64, 8),
                                         std::make_shared<ListenerStats>("metrics", registry), *factory_, nullptr);
  metrics::register_process_metrics(registry);
}

MetricsEndpoint::~MetricsEndpoint() {
  listener_.reset();
  connections_.reset();
}

Result<void> MetricsEndpoint::start() { return listener_->start(); }
void MetricsEndpoint::stop() { listener_->stop(); }

}  // namespace common::daemon
