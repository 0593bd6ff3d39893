// service_core.hpp: what the MailStore service's calls share (grpc_service.hpp): the store, the
// access check, the read pool, reads and group-committed writes; and the streaming calls' reactors,
// each in its own file (append.cpp, fetch.cpp, watch.cpp). Included by store/service's sources only.
#pragma once

#include <grpcpp/grpcpp.h>

#include <atomic>
#include <cstdint>
#include <ctime>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string_view>

#include "common/grpc/server.hpp"
#include "common/runtime/worker_pool.hpp"
#include "proto/mailstore.grpc.pb.h"
#include "store/search/header_cache.hpp"
#include "store/service/convert.hpp"
#include "store/service/grpc_service.hpp"
#include "store/service/store_call.hpp"
#include "store/service/user_quota.hpp"
#include "store/storage/message_store.hpp"

namespace store::service {

using common::lmdb::Txn;
using ChangeList = std::vector<MailboxChange>;

inline int64_t now_unix() { return static_cast<int64_t>(std::time(nullptr)); }

struct ServiceCore {
  ServiceCore(MessageStore& s, common::authtoken::Verifier v, ServiceOptions o)
      : store(s),
        verifier(std::move(v)),
        options(std::move(o)),
        quotas(s, options.directory, options.limits.quota_refresh, [this]() -> common::runtime::Loop& { return loop(); },
               [this](std::function<void()> work) { return pooled(std::move(work)); }),
        readers(options.limits.read_threads != 0 ? options.limits.read_threads
                                                 : std::max(1u, std::thread::hardware_concurrency()),
                options.limits.max_queued_reads) {}

  MessageStore& store;
  common::authtoken::Verifier verifier;
  ServiceOptions options;
  common::rpc::GrpcRegistry* registry = nullptr;
  std::atomic<size_t> next_loop{0};
  std::shared_ptr<int> alive = std::make_shared<int>(0);
  UserQuotas quotas;
  // Decoded root headers for header SEARCHes, shared by the read pool ([mailstore] search_cache_size).
  search::HeaderCache header_cache{static_cast<size_t>(options.limits.search_cache_size)};
  // Last, so it stops (finishing the reads it runs) before what they use goes away.
  common::runtime::WorkerPool readers;

  common::runtime::Loop& loop() { return registry->loop(next_loop.fetch_add(1) % registry->loops()); }

  // Runs `work` on the read pool; false (and the call answered UNAVAILABLE by the caller) when
  // max_queued_reads reads already wait.
  bool pooled(std::function<void()> work) { return readers.submit(std::move(work)); }
  static grpc::Status reads_busy() {
    return grpc::Status(grpc::StatusCode::UNAVAILABLE, "store busy: too many reads waiting, try again");
  }

  // The access check; then the user's record exists (created on the first call of a user the
  // token vouches for, as a first delivery would: the mmp routes a user here because the directory
  // says this store holds them), with authserv's quota for them. `next` runs at once on this thread
  // for a user the store knows, else later from the read pool, once authserv has answered.
  using Opened = std::function<void(Checked<Caller>)>;
  void open(grpc::CallbackServerContext* context, std::string_view method, Opened next);
  // The same for a token and user that came in a message (WatchMany's subscriptions), from the
  // client certificate CN `peer` at address `address` (for the log).
  void open(std::string_view peer, std::string_view address, std::string_view token, std::string_view user,
            std::string_view method, Opened next);

  // A write: `fn(txn, dbs, changes)` runs on the writer and returns the call's status; the reactor
  // finishes once the commit is on disk (and the watchers have the changes).
  void write(CallWrite fn, CallFinish finish) {
    static const CallReplies replies{to_status, "store writer busy"};
    write_call(store, loop(), alive, replies, std::move(fn), std::move(finish));
  }
  void write(grpc::ServerUnaryReactor* reactor, CallWrite fn) {
    write(std::move(fn), [reactor](const grpc::Status& status) { reactor->Finish(status); });
  }

  grpc::Status read(const std::function<grpc::Status(const Txn&, const Dbs&)>& fn) {
    return read_call(store, to_status, fn);
  }

  // The WatchMany streams open now, each with how to end it: the daemon's drain ends them at once
  // (UNAVAILABLE), so their clients move on instead of hearing nothing until drain_timeout, and
  // gRPC's shutdown does not wait on them.
  uint64_t add_stream(std::function<void()> end) {
    std::lock_guard lock(streams_mu);
    streams.emplace(++next_stream, std::move(end));
    return next_stream;
  }
  void remove_stream(uint64_t id) {
    std::lock_guard lock(streams_mu);
    streams.erase(id);
  }
  void end_streams() {
    std::map<uint64_t, std::function<void()>> all;
    {
      std::lock_guard lock(streams_mu);
      all = streams;  // each removes itself when gRPC is done with it
    }
    for (auto& [id, end] : all) end();
  }
  std::mutex streams_mu;
  std::map<uint64_t, std::function<void()>> streams;
  uint64_t next_stream = 0;

};

// The streaming calls, each a reactor that deletes itself when gRPC is done with it.
grpc::ServerReadReactor<pb::AppendRequest>* start_append(ServiceCore& core, grpc::CallbackServerContext* context,
                                                         pb::AppendResponse* response);
grpc::ServerWriteReactor<pb::FetchResponse>* start_fetch(ServiceCore& core, grpc::CallbackServerContext* context,
                                                         const pb::FetchRequest& request);
grpc::ServerWriteReactor<pb::WatchEvent>* start_watch(ServiceCore& core, grpc::CallbackServerContext* context,
                                                      const pb::WatchRequest& request);
grpc::ServerBidiReactor<pb::WatchControl, pb::WatchManyReply>* start_watch_many(ServiceCore& core,
                                                                                grpc::CallbackServerContext* context);

}  // namespace store::service
