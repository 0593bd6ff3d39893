// store_client.hpp: the mmp's client of the stores' MailStore API (proto/mailstore.proto): one
// pooled set of gRPC channels per store (the user's mailHost), shared by every session, and a
// StoreSession per logged-in user carrying authserv's access token. Results come back on the
// session's loop; a store that is down or slow is a TempFail within the deadline, never a hang.
// Requests and replies are the proto's messages (protobuf only: no gRPC in here).
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "common/grpc/credentials.hpp"
#include "common/result.hpp"
#include "proto/mailstore.pb.h"

namespace common::runtime {
class Loop;
}

namespace mmp::store_client {

namespace mspb = postern::mailstore::v1;

struct StoreClientOptions {
  // Where each store listens, by the name users' mailHost gives it: "host", "host:port",
  // "[v6]:port"; a target without a port gets default_port. A store with several targets is
  // reached round robin, and a call that finds one unavailable goes to the next when repeating it
  // is harmless (reads, Subscribe). A mailHost not listed is reached at mailHost:default_port.
  std::map<std::string, std::vector<std::string>> stores;
  uint16_t default_port = 7570;
  common::rpc::MtlsOptions tls;  // expected_peer_name empty: each target's host
  std::chrono::milliseconds call_deadline{std::chrono::seconds(10)};  // unary calls; a Watch's wait for Ready
  std::chrono::milliseconds transfer_deadline{std::chrono::minutes(5)};  // a whole Fetch or Append
  // A watch (IDLE) ends with DEADLINE_EXCEEDED after this; the session opens a new one (RFC 9051
  // §6.3.13 has clients re-issue IDLE within 30 minutes anyway). Bounds how long a watch on a
  // store that vanished without closing its connections goes unnoticed.
  std::chrono::milliseconds watch_deadline{std::chrono::minutes(29)};
  // Per store: beyond these a call fails at once with TempFail instead of queueing.
  size_t max_in_flight = 4096;  // unary calls, Fetches and Appends
  size_t max_watches = 200000;  // open watches (all on one WatchMany stream per store)
  size_t max_stores = 1024;     // distinct stores with channels (each mailHost value is one)
  size_t max_message = 16u << 20;  // largest reply accepted (the store sends at most 8 MiB)
};

// The gRPC status codes, with gRPC's numbers, so that sessions can pick IMAP response codes
// (RFC 5530: NONEXISTENT, ALREADYEXISTS, OVERQUOTA, ...) without gRPC headers.
enum class StoreCode {
  Ok = 0, Cancelled = 1, Unknown = 2, InvalidArgument = 3, DeadlineExceeded = 4, NotFound = 5, AlreadyExists = 6,
  PermissionDenied = 7, ResourceExhausted = 8, FailedPrecondition = 9, Aborted = 10, OutOfRange = 11,
  Unimplemented = 12, Internal = 13, Unavailable = 14, DataLoss = 15, Unauthenticated = 16,
};
std::string_view store_code_name(StoreCode code);

struct StoreError {
  // TempFail: the store is down, slow, overloaded or failed inside (NO [UNAVAILABLE], try later);
  // Remote: it refused the request (the code says why); Config: the mailHost names no usable store.
  common::ErrorKind kind = common::ErrorKind::TempFail;
  StoreCode code = StoreCode::Unavailable;
  std::string message;  // the store's own status message ("quota exceeded", ...); for logs
  std::string detail;   // store, method, code and message, for logs
};
template <class T>
using StoreResult = tl::expected<T, StoreError>;
template <class T>
using StoreCallback = std::function<void(StoreResult<T>)>;

// Who the calls are for: authserv's access token for the user ("postern-token"), and after a store
// administrator's proxy login the user whose mailboxes are worked on ("postern-user"; empty: the
// token's own user).
struct StoreCredentials {
  std::string token;
  std::string user;
};

struct StoreClientStats {
  size_t stores = 0;        // stores with channels
  uint64_t rpcs = 0;        // gRPC calls sent (retries included), all stores
  uint64_t overloaded = 0;  // refused at once by max_in_flight or max_watches
  size_t in_flight = 0;     // calls now
  size_t watches = 0;       // watches (IDLE) open now
  size_t watch_streams = 0; // WatchMany streams they share: one per store in use
};

class StoreSession;
class FetchCall;
class AppendCall;
class WatchCall;

// One per daemon, shared by all its loops (thread-safe). Destroy it after every StoreSession and
// call handle (and before the loops they deliver to): it cancels what is still in flight and waits
// (up to 5 s per store) until gRPC has let go of each call, so that its channels close on this
// thread; results of calls still in flight then are dropped.
class StoreClient {
 public:
  // Config errors: a bad target in `stores`, TLS credentials that cannot be made.
  static common::Result<std::unique_ptr<StoreClient>> create(StoreClientOptions options);
  ~StoreClient();
  StoreClient(const StoreClient&) = delete;
  StoreClient& operator=(const StoreClient&) = delete;

  // The targets a mailHost is reached at; Config for a name that is not a host name.
  common::Result<std::vector<std::string>> targets_for(std::string_view mail_host) const;

  // A user's mailbox session on the store `mail_host` names, for calls from `loop` whose results
  // come back there only while `alive` can be locked (pass the connection's alive()). Makes the
  // store's channels on first use; later sessions share them. Errors: Config (no usable store by
  // that name), TempFail (max_stores reached).
  common::Result<std::unique_ptr<StoreSession>> open(std::string_view mail_host, common::runtime::Loop& loop,
                                                     std::weak_ptr<void> alive, StoreCredentials credentials);

  StoreClientStats stats() const;

  struct Impl;

 private:
  explicit StoreClient(std::shared_ptr<Impl> impl);
  std::shared_ptr<Impl> impl_;
};

// Calls for one user on one store, from the loop thread it was opened for. Every callback runs on
// that loop, never inside the call itself, and only while the session's `alive` locks; a session
// object may go away with calls in flight (their results are dropped).
class StoreSession {
 public:
  ~StoreSession();
  StoreSession(const StoreSession&) = delete;
  StoreSession& operator=(const StoreSession&) = delete;

  const std::string& store() const;  // the mailHost
  // After authserv renewed the token: later calls carry the new one.
  void set_token(std::string token);

  void list(mspb::ListMailboxesRequest request, StoreCallback<mspb::ListMailboxesResponse> done);
  void create(mspb::CreateMailboxRequest request, StoreCallback<mspb::MailboxChanged> done);
  void remove(mspb::DeleteMailboxRequest request, StoreCallback<mspb::MailboxChanged> done);
  void rename(mspb::RenameMailboxRequest request, StoreCallback<mspb::MailboxChanged> done);
  void subscribe(mspb::SubscribeRequest request, StoreCallback<mspb::MailboxChanged> done);
  void status(mspb::StatusRequest request, StoreCallback<mspb::MailboxEntry> done);
  void select(mspb::SelectRequest request, StoreCallback<mspb::SelectResponse> done);
  void store_flags(mspb::StoreFlagsRequest request, StoreCallback<mspb::StoreFlagsResponse> done);
  void copy(mspb::CopyRequest request, StoreCallback<mspb::CopyResponse> done);  // and MOVE
  void expunge(mspb::ExpungeRequest request, StoreCallback<mspb::ExpungeResponse> done);
  void search(mspb::SearchRequest request, StoreCallback<mspb::SearchResponse> done);
  void changes(mspb::ChangesRequest request, StoreCallback<mspb::ChangesResponse> done);
  void quota(StoreCallback<mspb::QuotaResponse> done);

  // A FETCH: `on_reply` gets the store's replies in order (several messages each, a large section
  // in pieces across replies); the next one is asked for once it has returned, unless the call was
  // paused. `done` comes last, after every reply. Destroying the handle cancels the stream: nothing more is called.
  std::unique_ptr<FetchCall> fetch(mspb::FetchRequest request, std::function<void(mspb::FetchResponse&&)> on_reply,
                                   StoreCallback<void> done);
  // An APPEND: `start` names the mailbox and the size; the bytes follow through AppendCall::write,
  // then finish(). `done` brings the UID, or the store's refusal (possibly before all bytes were
  // written, e.g. over the quota from the declared size). Destroying the handle cancels it.
  std::unique_ptr<AppendCall> append(mspb::AppendRequest::Start start, StoreCallback<mspb::AppendResponse> done);
  // IDLE: the mailbox's changes since `since_modseq`, then Ready, then live. `ended` comes once,
  // when the watch ends: an error (TempFail also when no Ready came within call_deadline, or the
  // store's stream broke; DeadlineExceeded at watch_deadline), or success after a Gone event.
  // Destroying the handle ends the watch. All the watches on one store share one WatchMany stream.
  std::unique_ptr<WatchCall> watch(mspb::WatchRequest request, std::function<void(mspb::WatchEvent&&)> on_event,
                                   StoreCallback<void> ended);

  struct State;

 private:
  friend class StoreClient;
  explicit StoreSession(std::shared_ptr<State> state);
  std::shared_ptr<State> state_;
};

// The handles of the streaming calls: loop thread only; destroying one cancels its call.
class FetchCall {
 public:
  ~FetchCall();
  FetchCall(const FetchCall&) = delete;
  FetchCall& operator=(const FetchCall&) = delete;
  // No more replies until resume() (the mail client is not reading what we send); gRPC's flow
  // control then holds the store back.
  void pause();
  void resume();

  struct State;

 private:
  friend class StoreSession;
  explicit FetchCall(std::shared_ptr<State> state);
  std::shared_ptr<State> state_;
};

class AppendCall {
 public:
  ~AppendCall();
  AppendCall(const AppendCall&) = delete;
  AppendCall& operator=(const AppendCall&) = delete;
  // Queues bytes of the message; `on_drained` (when set) runs on the loop each time everything
  // queued has been handed to gRPC, so a session can stop reading its client while much is queued.
  void write(std::string bytes);
  // MULTIAPPEND (RFC 3502): the next message's Start, once all of the last one's bytes are
  // written; one finish() then commits every message or none.
  void next_message(mspb::AppendRequest::Start start);
  void finish();  // all bytes written: the store commits and answers
  size_t queued_bytes() const;
  void on_drained(std::function<void()> fn);

  struct State;

 private:
  friend class StoreSession;
  explicit AppendCall(std::shared_ptr<State> state);
  std::shared_ptr<State> state_;
};

class WatchCall {
 public:
  ~WatchCall();
  WatchCall(const WatchCall&) = delete;
  WatchCall& operator=(const WatchCall&) = delete;
  bool ready() const;  // the Ready event has arrived

  struct State;

 private:
  friend class StoreSession;
  explicit WatchCall(std::shared_ptr<State> state);
  std::shared_ptr<State> state_;
};

}  // namespace mmp::store_client
