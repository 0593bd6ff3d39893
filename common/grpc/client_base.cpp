// client_base.cpp: the target-independent half of the gRPC client base (client_base.hpp):
// channels, admission, tickets, posting to loops, failure logs and the shutdown wait.
#include "common/grpc/client_base.hpp"

#include "common/log/log.hpp"

namespace common::rpc {

std::string_view status_code_name(::grpc::StatusCode code) {
  switch (code) {
    case ::grpc::StatusCode::OK: return "OK";
    case ::grpc::StatusCode::CANCELLED: return "CANCELLED";
    case ::grpc::StatusCode::INVALID_ARGUMENT: return "INVALID_ARGUMENT";
    case ::grpc::StatusCode::DEADLINE_EXCEEDED: return "DEADLINE_EXCEEDED";
    case ::grpc::StatusCode::NOT_FOUND: return "NOT_FOUND";
    case ::grpc::StatusCode::ALREADY_EXISTS: return "ALREADY_EXISTS";
    case ::grpc::StatusCode::PERMISSION_DENIED: return "PERMISSION_DENIED";
    case ::grpc::StatusCode::RESOURCE_EXHAUSTED: return "RESOURCE_EXHAUSTED";
    case ::grpc::StatusCode::FAILED_PRECONDITION: return "FAILED_PRECONDITION";
    case ::grpc::StatusCode::ABORTED: return "ABORTED";
    case ::grpc::StatusCode::OUT_OF_RANGE: return "OUT_OF_RANGE";
    case ::grpc::StatusCode::UNIMPLEMENTED: return "UNIMPLEMENTED";
    case ::grpc::StatusCode::INTERNAL: return "INTERNAL";
    case ::grpc::StatusCode::UNAVAILABLE: return "UNAVAILABLE";
    case ::grpc::StatusCode::DATA_LOSS: return "DATA_LOSS";
    case ::grpc::StatusCode::UNAUTHENTICATED: return "UNAUTHENTICATED";
    default: return "UNKNOWN";
  }
}

ClientCore::ClientCore(ClientOptions options) : options_(std::move(options)) {}

ClientCore::~ClientCore() = default;

ClientCore::Ticket::~Ticket() {
  if (core_) core_->ticket_gone(this, stream_);
}

Result<void> ClientCore::connect(std::shared_ptr<::grpc::ChannelCredentials> credentials) {
  const std::string& comp = options_.component;
  if (options_.targets.empty()) return fail(ErrorKind::Config, comp + ": no " + options_.service + " target");
  for (const auto& t : options_.targets)
    if (t.empty()) return fail(ErrorKind::Config, comp + ": empty " + options_.service + " target");
  if (options_.call_deadline.count() <= 0) return fail(ErrorKind::Config, comp + ": deadlines must be positive");
  if (options_.max_in_flight == 0 || options_.max_streams == 0)
    return fail(ErrorKind::Config, comp + ": max_in_flight and max_streams must be positive");
  if (!credentials) {
    auto made = channel_credentials(options_.tls);
    if (!made) return tl::unexpected(made.error());
    credentials = std::move(*made);
  }

  ::grpc::ChannelArguments args;
  // gRPC's default reconnect backoff grows to 2 minutes; a restarted server must be used again
  // within seconds, and calls on a failing channel fail at once (TempFail) in between. Not
  // GRPC_ARG_MIN_RECONNECT_BACKOFF_MS: in 1.51 it is also the connect timeout, and a loaded host
  // needs more than a few hundred milliseconds for the TLS handshake and NSS's checks.
  args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, 250);
  args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, 5000);
  if (options_.max_receive_message > 0) args.SetMaxReceiveMessageSize(options_.max_receive_message);
  for (const auto& target : options_.targets) {
    auto channel = ::grpc::CreateCustomChannel(target, credentials, args);
    if (!channel) return fail(ErrorKind::Config, comp + ": cannot make a channel to " + target);
    targets_.push_back({target, std::move(channel)});
  }
  return {};
}

size_t ClientCore::pick_target() {
  return healthy_from(next_target_.fetch_add(1, std::memory_order_relaxed) % targets_.size());
}

size_t ClientCore::pick_target_after(size_t failed) { return healthy_from((failed + 1) % targets_.size()); }

size_t ClientCore::healthy_from(size_t first) {
  const size_t n = targets_.size();
  for (size_t i = 0; i < n; ++i) {
    const size_t t = (first + i) % n;
    // A dropped channel (after close) is never picked for a call: claim() refuses first.
    if (targets_[t].channel && targets_[t].channel->GetState(false) != GRPC_CHANNEL_TRANSIENT_FAILURE) return t;
  }
  return first;
}

bool ClientCore::admit() {
  std::lock_guard lock(mu_);
  if (closing_ || in_flight_ >= options_.max_in_flight) {
    overloaded_.fetch_add(1, std::memory_order_relaxed);
    if (options_.overload_metric) options_.overload_metric->with({"call"}).inc();
    return false;
  }
  ++in_flight_;
  return true;
}

void ClientCore::release() {
  std::lock_guard lock(mu_);
  assert(in_flight_ > 0);
  --in_flight_;
}

bool ClientCore::claim(Ticket& ticket, std::function<void()> cancel, bool stream) {
  assert(!ticket.held());
  std::lock_guard lock(mu_);
  if (stream) {
    if (closing_ || streams_ >= options_.max_streams) {
      overloaded_.fetch_add(1, std::memory_order_relaxed);
      if (options_.overload_metric) options_.overload_metric->with({options_.stream_kind}).inc();
      return false;
    }
    ++streams_;
  } else if (closing_) {
    return false;
  }
  ++active_;
  if (cancel) cancels_.emplace(&ticket, std::move(cancel));
  ticket.core_ = shared_from_this();
  ticket.stream_ = stream;
  return true;
}

std::function<void()> ClientCore::canceller(std::weak_ptr<::grpc::ClientContext> context) {
  return [context = std::move(context)] {
    if (auto c = context.lock()) c->TryCancel();
  };
}

// The last use of `this` by the thread destroying a call object.
void ClientCore::ticket_gone(const Ticket* ticket, bool stream) {
  std::lock_guard lock(mu_);
  cancels_.erase(ticket);
  if (stream) --streams_;
  --active_;
  if (active_ == 0) idle_.notify_all();
}

void ClientCore::post(runtime::Loop& loop, std::weak_ptr<void> alive, std::function<void()> fn) {
  // Under mu_: a post racing with shutdown() either lands before it returns or not at all.
  std::lock_guard lock(mu_);
  if (closing_) return;
  loop.post([alive = std::move(alive), fn = std::move(fn)] {
    if (auto token = alive.lock()) fn();
  });
}

void ClientCore::log_failure(std::string_view method, const std::string& target, const ::grpc::Status& status) {
  if (options_.log_failure_if && !options_.log_failure_if(status.error_code())) return;
  const int64_t now = std::chrono::duration_cast<std::chrono::milliseconds>(
                          std::chrono::steady_clock::now().time_since_epoch())
                          .count();
  int64_t last = last_failure_log_.load(std::memory_order_relaxed);
  if ((last != 0 && now - last < options_.failure_log_interval.count()) ||
      !last_failure_log_.compare_exchange_strong(last, now))
    return;
  log::warning(options_.component)
      .phase("call")
      .event("rpc_failed")
      .kv("server", options_.service)
      .kv("method", method)
      .kv("target", target)
      .kv("code", status_code_name(status.error_code()))
      .client_text("message", status.error_message());
}

void ClientCore::count(std::string_view method, std::string_view result) {
  if (options_.calls_metric) options_.calls_metric->with({method, result}).inc();
}

Error ClientCore::rpc_error(std::string_view method, const ::grpc::Status& status) const {
  std::string detail = options_.service + " " + std::string(method) + ": " +
                       std::string(status_code_name(status.error_code()));
  if (!status.error_message().empty()) detail += ": " + status.error_message();
  switch (status.error_code()) {
    case ::grpc::StatusCode::INVALID_ARGUMENT:
    case ::grpc::StatusCode::NOT_FOUND:
    case ::grpc::StatusCode::ALREADY_EXISTS:
    case ::grpc::StatusCode::PERMISSION_DENIED:
    case ::grpc::StatusCode::FAILED_PRECONDITION:
    case ::grpc::StatusCode::OUT_OF_RANGE:
    case ::grpc::StatusCode::UNIMPLEMENTED:
    case ::grpc::StatusCode::UNAUTHENTICATED:
      return Error{ErrorKind::Remote, std::move(detail)};
    default:
      return Error{ErrorKind::TempFail, std::move(detail)};
  }
}

ClientStats ClientCore::stats() const {
  std::lock_guard lock(mu_);
  return ClientStats{rpcs_.load(), overloaded_.load(), in_flight_, streams_, active_};
}

bool ClientCore::closing() const {
  std::lock_guard lock(mu_);
  return closing_;
}

void ClientCore::cancel_all() {
  std::vector<std::function<void()>> cancel;
  {
    std::lock_guard lock(mu_);
    closing_ = true;
    for (auto& [ticket, fn] : cancels_) cancel.push_back(fn);
  }
  // Outside mu_: a cancelled call's completion may run inline and takes mu_ (and a call object
  // whose last reference a canceller held goes here, its ticket with it).
  for (auto& fn : cancel) fn();
}

bool ClientCore::shutdown() {
  cancel_all();
  std::unique_lock lock(mu_);
  if (idle_.wait_for(lock, options_.shutdown_wait, [&] { return active_ == 0; })) return true;
  log::error(options_.component)
      .phase("shutdown")
      .event("calls_outstanding")
      .kv("server", options_.service)
      .kv("calls", static_cast<uint64_t>(active_));
  return false;
}

void ClientCore::drop_channels(bool idle) {
  if (!idle) {
    // A call object still alive may yet drop its channel reference on a gRPC thread; rather than
    // crash then, keep this object (and so the channels) for the life of the process.
    (void)new std::shared_ptr<ClientCore>(shared_from_this());
    return;
  }
  // Nothing uses the channels once shutdown() returned true: new calls are refused before one is
  // chosen. The names stay, for late readers of target_name().
  for (auto& t : targets_) t.channel.reset();
}

}  // namespace common::rpc
