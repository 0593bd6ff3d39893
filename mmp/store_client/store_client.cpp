// store_client.cpp: the gRPC half of the mmp's store client (store_client.hpp): one client base
// (common/grpc/client_base.hpp) per store, unary calls carrying the user's token, and the reactors
// of Fetch and Append with their loop-side state (Watch is in watch.cpp; what they share in
// internal.hpp).
#include "mmp/store_client/store_client.hpp"

#include "mmp/store_client/internal.hpp"

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <mutex>
#include <optional>
#include <utility>

#include <grpcpp/grpcpp.h>

#include "common/ascii.hpp"
#include "common/grpc/client_base.hpp"
#include "common/metrics/metrics.hpp"
#include "common/runtime/loop.hpp"
#include "mmp/store_client/targets.hpp"
#include "proto/mailstore.grpc.pb.h"

namespace mmp::store_client {

using namespace detail;

namespace {

// Appends go out in pieces of at most this size (the store takes up to 4 MiB per message).
constexpr size_t kAppendPiece = 1u << 20;

struct Metrics {
  common::metrics::Family<common::metrics::Counter>& calls = common::metrics::default_registry().counter_family(
      "postern_storeclient_calls_total", "Calls to the stores by method and result", {"method", "result"});
  common::metrics::Family<common::metrics::Counter>& overload = common::metrics::default_registry().counter_family(
      "postern_storeclient_overload_total", "Store calls refused at once because too many were in flight", {"kind"});
};
Metrics& stats_metrics() {
  static Metrics m;
  return m;
}

}  // namespace

common::Result<std::vector<std::string>> StoreClient::Impl::targets_for(std::string_view mail_host) const {
  const std::string name = common::ascii::lowered(mail_host);
  if (auto it = targets.find(name); it != targets.end()) return it->second;
  auto target = store_target(name, options.default_port);
  if (!target) return tl::unexpected(target.error());
  return std::vector<std::string>{std::move(*target)};
}

common::Result<StoreClient::Impl::Store> StoreClient::Impl::store(std::string_view mail_host) {
  const std::string name = common::ascii::lowered(mail_host);
  std::lock_guard lock(mu);
  if (closing) return common::fail(ErrorKind::TempFail, "store client shutting down");
  if (auto it = stores.find(name); it != stores.end()) return it->second;
  if (stores.size() >= options.max_stores) {
    stats_metrics().overload.with({"store"}).inc();
    return common::fail(ErrorKind::TempFail, "channels to " + std::to_string(stores.size()) +
                                                 " stores already (max_stores); not opening one to " + name);
  }
  auto list = targets_for(name);
  if (!list) return tl::unexpected(list.error());
  auto& metrics = stats_metrics();
  rpc::ClientOptions o;
  o.component = "storeclient";
  o.service = name;
  o.targets = std::move(*list);
  o.tls = options.tls;
  o.call_deadline = options.call_deadline;
  o.max_in_flight = options.max_in_flight;
  o.max_streams = 64;  // WatchMany: one open per store, plus any still finishing
  o.max_receive_message = static_cast<int>(std::min<size_t>(options.max_message, INT32_MAX));
  o.calls_metric = &metrics.calls;
  o.overload_metric = &metrics.overload;
  o.stream_kind = "watch";
  o.log_failure_if = temporary;
  auto made = Rpc::create(std::move(o), credentials);
  if (!made) return tl::unexpected(made.error());
  Store s{*made, make_watch_mux(*made, name, options)};
  stores.emplace(name, s);
  return s;
}

// ---------------------------------------------------------------------------------------------
// Fetch: replies read one at a time, each asked for by the loop once it has handled the last.

namespace {
class FetchReactor;
}  // namespace
using FetchLink = StreamLink<FetchReactor, FetchCall::State>;

struct FetchCall::State {
  std::shared_ptr<FetchLink> link;  // null: refused before it started
  std::function<void(mspb::FetchResponse&&)> on_reply;
  StoreCallback<void> done;
  bool paused = false;
  bool waiting = false;    // a reply was handled while paused: the next read waits for resume()
  bool cancelled = false;  // the handle is gone
  bool ended = false;

  void next();
  void reply(mspb::FetchResponse&& r);
  void finished(StoreResult<void> result);
};

namespace {

class FetchReactor final : public grpc::ClientReadReactor<mspb::FetchResponse> {
 public:
  FetchReactor(std::shared_ptr<FetchLink> link, std::string store, mspb::FetchRequest request)
      : link_(std::move(link)), store_(std::move(store)), request_(std::move(request)) {}

  rpc::ClientCore::Ticket& ticket() { return ticket_; }

  void begin(Rpc& rpc, size_t target, const StoreCredentials& credentials, SystemClock::time_point deadline) {
    target_ = rpc.target_name(target);
    add_credentials(ctx_, credentials);
    ctx_.set_deadline(deadline);
    rpc.sent();
    rpc.stub(target).async()->Fetch(&ctx_, &request_, this);
    AddHold();  // the loop side's
    StartRead(&in_);
    StartCall();
  }
  void read_next() { StartRead(&in_); }
  void cancel() { ctx_.TryCancel(); }

  void OnReadDone(bool ok) override {
    if (!ok) {
      link_->let_go();  // the stream ended: OnDone brings the status
      return;
    }
    mspb::FetchResponse reply;
    reply.Swap(&in_);  // before the post: the loop may start the next read at once
    link_->post([reply = std::move(reply)](FetchCall::State& s) mutable { s.reply(std::move(reply)); });
  }

  void OnDone(const grpc::Status& status) override {
    auto& rpc = link_->rpc();
    StoreResult<void> result;
    if (!status.ok()) {
      rpc.log_failure("Fetch", target_, status);
      result = tl::unexpected(store_error(store_, "Fetch", status));
    }
    rpc.count("Fetch", status.ok() ? "ok" : rpc::status_code_name(status.error_code()));
    rpc.release();
    link_->post([result = std::move(result)](FetchCall::State& s) mutable { s.finished(std::move(result)); });
    delete this;
  }

 private:
  rpc::ClientCore::Ticket ticket_;  // first: destroyed after the context
  std::shared_ptr<FetchLink> link_;
  std::string store_, target_;
  grpc::ClientContext ctx_;
  mspb::FetchRequest request_;
  mspb::FetchResponse in_;
};

}  // namespace

void FetchCall::State::next() {
  if (paused) {
    waiting = true;
    return;
  }
  link->use([](FetchReactor& r) { r.read_next(); });
}

void FetchCall::State::reply(mspb::FetchResponse&& r) {
  if (cancelled || ended) return;
  on_reply(std::move(r));  // may destroy the handle (cancelled then)
  if (!cancelled) next();
}

void FetchCall::State::finished(StoreResult<void> result) {
  if (cancelled || ended) return;
  ended = true;
  done(std::move(result));
}

FetchCall::FetchCall(std::shared_ptr<State> state) : state_(std::move(state)) {}

FetchCall::~FetchCall() {
  state_->cancelled = true;
  if (state_->link) state_->link->abort();
}

void FetchCall::pause() { state_->paused = true; }

void FetchCall::resume() {
  State& s = *state_;
  if (!s.paused) return;
  s.paused = false;
  if (s.waiting && s.link && !s.ended) {
    s.waiting = false;
    s.next();
  }
}

// ---------------------------------------------------------------------------------------------
// Append: the Start and the bytes written in order, one write at a time.

namespace {
class AppendReactor;
}  // namespace
using AppendLink = StreamLink<AppendReactor, AppendCall::State>;

struct AppendCall::State {
  std::shared_ptr<AppendLink> link;
  StoreCallback<mspb::AppendResponse> done;
  std::function<void()> drained;
  bool finishing = false;  // finish() was called
  bool cancelled = false;
  bool ended = false;

  void finished(StoreResult<mspb::AppendResponse> result);
};

namespace {

class AppendReactor final : public grpc::ClientWriteReactor<mspb::AppendRequest> {
 public:
  AppendReactor(std::shared_ptr<AppendLink> link, std::string store)
      : link_(std::move(link)), store_(std::move(store)) {}

  rpc::ClientCore::Ticket& ticket() { return ticket_; }

  void begin(Rpc& rpc, size_t target, const StoreCredentials& credentials, SystemClock::time_point deadline,
             mspb::AppendRequest start) {
    target_ = rpc.target_name(target);
    add_credentials(ctx_, credentials);
    ctx_.set_deadline(deadline);
    rpc.sent();
    rpc.stub(target).async()->Append(&ctx_, &response_, this);
    AddHold();  // the loop side's, until finish() or the handle goes
    write(std::move(start));
    StartCall();
  }
  void cancel() { ctx_.TryCancel(); }

  // nullopt: WritesDone. Queued while a write is in progress.
  void write(std::optional<mspb::AppendRequest> message) {
    if (writes_.push(std::move(message))) issue();
  }

  void OnWriteDone(bool ok) override { next(ok); }
  void OnWritesDoneDone(bool ok) override { next(ok); }

  void OnDone(const grpc::Status& status) override {
    auto& rpc = link_->rpc();
    StoreResult<mspb::AppendResponse> result = std::move(response_);
    if (!status.ok()) {
      rpc.log_failure("Append", target_, status);
      result = tl::unexpected(store_error(store_, "Append", status));
    }
    rpc.count("Append", status.ok() ? "ok" : rpc::status_code_name(status.error_code()));
    rpc.release();
    link_->post([result = std::move(result)](AppendCall::State& s) mutable { s.finished(std::move(result)); });
    delete this;
  }

 private:
  void issue() {
    auto& m = writes_.current();
    if (m) StartWrite(&*m);
    else StartWritesDone();
  }
  void next(bool ok) {
    // A message (not WritesDone) went out and nothing is queued: what the loop wrote is taken.
    const bool message_out = writes_.current().has_value();  // stable while its write is in flight
    const bool more = writes_.done(ok, [&](const std::optional<mspb::AppendRequest>& m) {
      if (m && m->has_data()) link_->queued -= m->data().size();
    });
    const bool drained = ok && !more && message_out;
    // !ok: the store ended the call (a refusal, a broken connection): nothing more goes out, and
    // OnDone, once we let go, brings its status.
    if (!ok) return link_->let_go();
    if (drained) {
      link_->post([](AppendCall::State& s) {
        if (s.drained && !s.cancelled && !s.ended) s.drained();
      });
    }
    if (more) issue();
  }

  rpc::ClientCore::Ticket ticket_;  // first: destroyed after the context
  std::shared_ptr<AppendLink> link_;
  std::string store_, target_;
  grpc::ClientContext ctx_;
  mspb::AppendResponse response_;
  SerialWrites<std::optional<mspb::AppendRequest>> writes_;
};

}  // namespace

void AppendCall::State::finished(StoreResult<mspb::AppendResponse> result) {
  if (cancelled || ended) return;
  ended = true;
  done(std::move(result));
}

AppendCall::AppendCall(std::shared_ptr<State> state) : state_(std::move(state)) {}

AppendCall::~AppendCall() {
  state_->cancelled = true;
  if (state_->link && !state_->ended) state_->link->abort();
}

void AppendCall::write(std::string bytes) {
  State& s = *state_;
  if (!s.link || s.finishing || s.ended) return;
  for (size_t at = 0; at < bytes.size(); at += kAppendPiece) {
    const bool whole = at == 0 && bytes.size() <= kAppendPiece;
    mspb::AppendRequest piece;
    if (whole) piece.set_data(std::move(bytes));
    else piece.set_data(bytes.substr(at, kAppendPiece));
    const size_t size = piece.data().size();
    s.link->queued += size;
    if (!s.link->use([&](AppendReactor& r) { r.write(std::move(piece)); })) {
      s.link->queued -= size;  // the call already ended; its result is on the way
      return;
    }
    if (whole) break;
  }
}

void AppendCall::next_message(mspb::AppendRequest::Start start) {
  State& s = *state_;
  if (!s.link || s.finishing || s.ended) return;
  mspb::AppendRequest part;
  *part.mutable_start() = std::move(start);
  s.link->use([&](AppendReactor& r) { r.write(std::move(part)); });
}

void AppendCall::finish() {
  State& s = *state_;
  if (!s.link || s.finishing) return;
  s.finishing = true;
  s.link->use([](AppendReactor& r) {
    mspb::AppendRequest commit;
    commit.set_commit(true);
    r.write(std::move(commit));
    r.write(std::nullopt);
  });
  s.link->let_go();  // gRPC finishes the call once the writes are out and the store answers
}

size_t AppendCall::queued_bytes() const { return state_->link ? state_->link->queued.load() : 0; }

void AppendCall::on_drained(std::function<void()> fn) { state_->drained = std::move(fn); }

// ---------------------------------------------------------------------------------------------

StoreSession::StoreSession(std::shared_ptr<State> state) : state_(std::move(state)) {}
StoreSession::~StoreSession() = default;

const std::string& StoreSession::store() const { return state_->store; }

void StoreSession::set_token(std::string token) {
  state_->credentials =
      std::make_shared<const StoreCredentials>(StoreCredentials{std::move(token), state_->credentials->user});
}

// Failover (kRepeatable) for the reads and for Subscribe (setting a subscription twice is the
// same); not for what would be done twice or answered differently the second time (kOnce).
constexpr bool kRepeatable = true;
constexpr bool kOnce = false;

void StoreSession::list(mspb::ListMailboxesRequest request, StoreCallback<mspb::ListMailboxesResponse> done) {
  state_->unary(
      "ListMailboxes", kRepeatable,
      [](auto* stub, auto* ctx, auto* req, auto* resp, auto cb) { stub->ListMailboxes(ctx, req, resp, std::move(cb)); },
      std::move(request), std::move(done));
}

void StoreSession::create(mspb::CreateMailboxRequest request, StoreCallback<mspb::MailboxChanged> done) {
  state_->unary(
      "CreateMailbox", kOnce,
      [](auto* stub, auto* ctx, auto* req, auto* resp, auto cb) { stub->CreateMailbox(ctx, req, resp, std::move(cb)); },
      std::move(request), std::move(done));
}

void StoreSession::remove(mspb::DeleteMailboxRequest request, StoreCallback<mspb::MailboxChanged> done) {
  state_->unary(
      "DeleteMailbox", kOnce,
      [](auto* stub, auto* ctx, auto* req, auto* resp, auto cb) { stub->DeleteMailbox(ctx, req, resp, std::move(cb)); },
      std::move(request), std::move(done));
}

void StoreSession::rename(mspb::RenameMailboxRequest request, StoreCallback<mspb::MailboxChanged> done) {
  state_->unary(
      "RenameMailbox", kOnce,
      [](auto* stub, auto* ctx, auto* req, auto* resp, auto cb) { stub->RenameMailbox(ctx, req, resp, std::move(cb)); },
      std::move(request), std::move(done));
}

void StoreSession::subscribe(mspb::SubscribeRequest request, StoreCallback<mspb::MailboxChanged> done) {
  state_->unary(
      "Subscribe", kRepeatable,
      [](auto* stub, auto* ctx, auto* req, auto* resp, auto cb) { stub->Subscribe(ctx, req, resp, std::move(cb)); },
      std::move(request), std::move(done));
}

void StoreSession::status(mspb::StatusRequest request, StoreCallback<mspb::MailboxEntry> done) {
  state_->unary(
      "Status", kRepeatable,
      [](auto* stub, auto* ctx, auto* req, auto* resp, auto cb) { stub->Status(ctx, req, resp, std::move(cb)); },
      std::move(request), std::move(done));
}

void StoreSession::select(mspb::SelectRequest request, StoreCallback<mspb::SelectResponse> done) {
  state_->unary(
      "Select", kRepeatable,
      [](auto* stub, auto* ctx, auto* req, auto* resp, auto cb) { stub->Select(ctx, req, resp, std::move(cb)); },
      std::move(request), std::move(done));
}

void StoreSession::store_flags(mspb::StoreFlagsRequest request, StoreCallback<mspb::StoreFlagsResponse> done) {
  state_->unary(
      "StoreFlags", kOnce,
      [](auto* stub, auto* ctx, auto* req, auto* resp, auto cb) { stub->StoreFlags(ctx, req, resp, std::move(cb)); },
      std::move(request), std::move(done));
}

void StoreSession::copy(mspb::CopyRequest request, StoreCallback<mspb::CopyResponse> done) {
  state_->unary(
      "Copy", kOnce,
      [](auto* stub, auto* ctx, auto* req, auto* resp, auto cb) { stub->Copy(ctx, req, resp, std::move(cb)); },
      std::move(request), std::move(done));
}

void StoreSession::expunge(mspb::ExpungeRequest request, StoreCallback<mspb::ExpungeResponse> done) {
  state_->unary(
      "Expunge", kOnce,
      [](auto* stub, auto* ctx, auto* req, auto* resp, auto cb) { stub->Expunge(ctx, req, resp, std::move(cb)); },
      std::move(request), std::move(done));
}

void StoreSession::search(mspb::SearchRequest request, StoreCallback<mspb::SearchResponse> done) {
  state_->unary(
      "Search", kRepeatable,
      [](auto* stub, auto* ctx, auto* req, auto* resp, auto cb) { stub->Search(ctx, req, resp, std::move(cb)); },
      std::move(request), std::move(done));
}

void StoreSession::changes(mspb::ChangesRequest request, StoreCallback<mspb::ChangesResponse> done) {
  state_->unary(
      "Changes", kRepeatable,
      [](auto* stub, auto* ctx, auto* req, auto* resp, auto cb) { stub->Changes(ctx, req, resp, std::move(cb)); },
      std::move(request), std::move(done));
}

void StoreSession::quota(StoreCallback<mspb::QuotaResponse> done) {
  state_->unary(
      "GetQuota", kRepeatable,
      [](auto* stub, auto* ctx, auto* req, auto* resp, auto cb) { stub->GetQuota(ctx, req, resp, std::move(cb)); },
      mspb::QuotaRequest(), std::move(done));
}

std::unique_ptr<FetchCall> StoreSession::fetch(mspb::FetchRequest request,
                                               std::function<void(mspb::FetchResponse&&)> on_reply,
                                               StoreCallback<void> done) {
  State& s = *state_;
  auto side = std::make_shared<FetchCall::State>();
  side->on_reply = std::move(on_reply);
  side->done = std::move(done);
  std::unique_ptr<FetchCall> handle(new FetchCall(side));
  if (!s.rpc->admit()) {
    s.post_error(std::move(side->done), overloaded(s.store, "calls"));
    side->ended = true;
    return handle;
  }
  auto link = std::make_shared<FetchLink>(s.rpc, s.loop, s.alive);
  auto* reactor = new FetchReactor(link, s.store, std::move(request));
  if (!s.rpc->claim(reactor->ticket(), aborter(link))) {
    delete reactor;
    s.rpc->release();
    s.post_error(std::move(side->done), overloaded(s.store, "calls"));
    side->ended = true;
    return handle;
  }
  link->attach(reactor, side);
  side->link = link;
  reactor->begin(*s.rpc, s.rpc->pick_target(), *s.credentials, SystemClock::now() + s.options().transfer_deadline);
  return handle;
}

std::unique_ptr<AppendCall> StoreSession::append(mspb::AppendRequest::Start start,
                                                 StoreCallback<mspb::AppendResponse> done) {
  State& s = *state_;
  auto side = std::make_shared<AppendCall::State>();
  side->done = std::move(done);
  std::unique_ptr<AppendCall> handle(new AppendCall(side));
  if (!s.rpc->admit()) {
    s.post_error(std::move(side->done), overloaded(s.store, "calls"));
    side->ended = true;
    return handle;
  }
  auto link = std::make_shared<AppendLink>(s.rpc, s.loop, s.alive);
  auto* reactor = new AppendReactor(link, s.store);
  if (!s.rpc->claim(reactor->ticket(), aborter(link))) {
    delete reactor;
    s.rpc->release();
    s.post_error(std::move(side->done), overloaded(s.store, "calls"));
    side->ended = true;
    return handle;
  }
  link->attach(reactor, side);
  side->link = link;
  mspb::AppendRequest first;
  *first.mutable_start() = std::move(start);
  reactor->begin(*s.rpc, s.rpc->pick_target(), *s.credentials, SystemClock::now() + s.options().transfer_deadline,
                 std::move(first));
  return handle;
}

// ---------------------------------------------------------------------------------------------

common::Result<std::unique_ptr<StoreClient>> StoreClient::create(StoreClientOptions options) {
  if (options.default_port == 0) return common::fail(ErrorKind::Config, "storeclient: default_port must be set");
  if (options.call_deadline.count() <= 0 || options.transfer_deadline.count() <= 0 ||
      options.watch_deadline.count() <= 0)
    return common::fail(ErrorKind::Config, "storeclient: deadlines must be positive");
  if (options.max_in_flight == 0 || options.max_watches == 0 || options.max_stores == 0)
    return common::fail(ErrorKind::Config, "storeclient: max_in_flight, max_watches and max_stores must be positive");
  auto impl = std::make_shared<Impl>(std::move(options));
  for (const auto& [name, list] : impl->options.stores) {
    if (list.empty()) return common::fail(ErrorKind::Config, "storeclient: store " + name + " has no address");
    std::vector<std::string> targets;
    for (const auto& t : list) {
      auto target = store_target(t, impl->options.default_port);
      if (!target) return common::fail(ErrorKind::Config, "storeclient: store " + name + ": " + target.error().detail);
      targets.push_back(std::move(*target));
    }
    impl->targets[common::ascii::lowered(name)] = std::move(targets);
  }
  auto credentials = rpc::channel_credentials(impl->options.tls);
  if (!credentials) return tl::unexpected(credentials.error());
  impl->credentials = std::move(*credentials);
  return std::unique_ptr<StoreClient>(new StoreClient(std::move(impl)));
}

StoreClient::StoreClient(std::shared_ptr<Impl> impl) : impl_(std::move(impl)) {}

StoreClient::~StoreClient() { impl_->close(); }

common::Result<std::vector<std::string>> StoreClient::targets_for(std::string_view mail_host) const {
  return impl_->targets_for(mail_host);
}

common::Result<std::unique_ptr<StoreSession>> StoreClient::open(std::string_view mail_host, Loop& loop,
                                                                std::weak_ptr<void> alive,
                                                                StoreCredentials credentials) {
  auto store = impl_->store(mail_host);
  if (!store) return tl::unexpected(store.error());
  auto state = std::shared_ptr<StoreSession::State>(new StoreSession::State{
      impl_, std::move(store->rpc), std::move(store->watches), loop, std::move(alive), common::ascii::lowered(mail_host),
      std::make_shared<const StoreCredentials>(std::move(credentials))});
  return std::unique_ptr<StoreSession>(new StoreSession(std::move(state)));
}

StoreClientStats StoreClient::stats() const {
  StoreClientStats out;
  std::lock_guard lock(impl_->mu);
  out.stores = impl_->stores.size();
  for (const auto& [name, store] : impl_->stores) {
    const auto s = store.rpc->stats();
    out.rpcs += s.rpcs;
    const auto w = watch_counts(*store.watches);
    out.overloaded += s.overloaded + w.overloaded;
    out.in_flight += s.in_flight;
    out.watch_streams += s.streams;
    out.watches += w.open;
  }
  return out;
}

std::string_view store_code_name(StoreCode code) {
  return rpc::status_code_name(static_cast<grpc::StatusCode>(static_cast<int>(code)));
}

}  // namespace mmp::store_client
