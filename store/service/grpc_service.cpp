// grpc_service.cpp: the MailStore service over gRPC's callback API (grpc_service.hpp): the access
// check, then store::ops in read transactions (on the calling gRPC thread, or the read pool for
// searches and fetches) or on the group-commit writer (answered from a loop once on disk), and the
// Watch streams fed by the store's ChangeHub, each ended when its access token expires.
#include "store/service/grpc_service.hpp"

#include <grpcpp/alarm.h>
#include <grpcpp/grpcpp.h>

#include <algorithm>
#include <atomic>
#include <ctime>
#include <deque>
#include <mutex>

#include "common/grpc/credentials.hpp"
#include "common/grpc/server.hpp"
#include "common/log/log.hpp"
#include "common/runtime/worker_pool.hpp"
#include "proto/mailstore.grpc.pb.h"
#include "store/search/evaluate.hpp"
#include "store/service/convert.hpp"
#include "store/service/store_call.hpp"
#include "store/service/user_quota.hpp"
#include "store/storage/message_store.hpp"

namespace store::service {
namespace {

using common::Result;
using common::lmdb::Txn;
using ChangeList = std::vector<MailboxChange>;

int64_t now_unix() { return static_cast<int64_t>(std::time(nullptr)); }

grpc::Status refused(const AccessRefused& r) {
  return grpc::Status(r.code == Denial::Unauthenticated ? grpc::StatusCode::UNAUTHENTICATED
                                                        : grpc::StatusCode::PERMISSION_DENIED,
                      r.detail);
}

}  // namespace

struct MailStoreGrpc::Impl final : public pb::MailStore::CallbackService {
  Impl(MessageStore& s, common::authtoken::Verifier v, ServiceOptions o)
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
  void open(grpc::CallbackServerContext* context, std::string_view method, Opened next) {
    const auto& metadata = context->client_metadata();
    auto value = [&](const char* key) -> std::string_view {
      auto it = metadata.find(key);
      return it == metadata.end() ? std::string_view() : std::string_view(it->second.data(), it->second.size());
    };
    const std::string peer = common::rpc::peer_identity(*context).common_name;
    auto caller = check_access(verifier, options.access, peer, value("postern-token"), value("postern-user"), now_unix());
    if (!caller) {
      common::log::warning("mailstore").event("refused").kv("method", method).kv("client", peer)
          .kv("peer", context->peer()).kv("reason", caller.error().detail);
      return next(tl::unexpected(refused(caller.error())));
    }
    quotas.prepare(caller->user, [method = std::string(method), caller = *caller,
                                  next = std::move(next)](tl::expected<void, QuotaRefused> prepared) {
      if (prepared) return next(caller);
      const auto& [why, detail] = prepared.error();
      common::log::warning("mailstore").event(why == QuotaRefusal::UnknownUser ? "refused" : "user_unavailable")
          .kv("method", method).kv("user", caller.user).kv("reason", detail);
      switch (why) {
        case QuotaRefusal::UnknownUser: return next(tl::unexpected(grpc::Status(grpc::StatusCode::PERMISSION_DENIED, detail)));
        case QuotaRefusal::DirectoryUnavailable:
          return next(tl::unexpected(grpc::Status(grpc::StatusCode::UNAVAILABLE, detail + ": try again later")));
        case QuotaRefusal::StoreError: break;
      }
      next(tl::unexpected(grpc::Status(grpc::StatusCode::INTERNAL, "store error")));
    });
  }

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

  // The common shape of a unary call: access, then `body(caller, reactor)`, maybe later (open), so
  // `body` holds copies: the request and response live until the reactor finishes.
  template <class Body>
  grpc::ServerUnaryReactor* unary(grpc::CallbackServerContext* context, std::string_view method, Body body) {
    auto* reactor = context->DefaultReactor();
    open(context, method, [reactor, body = std::move(body)](Checked<Caller> caller) {
      if (!caller) return reactor->Finish(caller.error());
      body(*caller, reactor);
    });
    return reactor;
  }
  template <class Fn>
  grpc::ServerUnaryReactor* unary_read(grpc::CallbackServerContext* context, std::string_view method, Fn fn) {
    return unary(context, method, [this, fn = std::move(fn)](const Caller& caller, grpc::ServerUnaryReactor* reactor) {
      reactor->Finish(read([&](const Txn& txn, const Dbs& dbs) { return fn(caller, txn, dbs); }));
    });
  }
  // The same on the read pool, for reads whose cost grows with the mailbox. `fn` may use the
  // request and response, which live until the reactor finishes.
  template <class Fn>
  grpc::ServerUnaryReactor* pooled_read(grpc::CallbackServerContext* context, std::string_view method, Fn fn) {
    return unary(context, method, [this, fn = std::move(fn)](const Caller& caller, grpc::ServerUnaryReactor* reactor) {
      const bool queued = pooled([this, caller, reactor, fn = std::move(fn)] {
        reactor->Finish(read([&](const Txn& txn, const Dbs& dbs) { return fn(caller, txn, dbs); }));
      });
      if (!queued) reactor->Finish(reads_busy());
    });
  }

  // ---- mailboxes ----

  grpc::ServerUnaryReactor* ListMailboxes(grpc::CallbackServerContext* context, const pb::ListMailboxesRequest* request,
                                          pb::ListMailboxesResponse* response) override {
    return unary_read(context, "ListMailboxes", [=, this](const Caller& caller, const Txn& txn, const Dbs& dbs) {
      std::vector<std::string> patterns(request->patterns().begin(), request->patterns().end());
      ops::ListOptions o{request->subscribed_only(), request->special_use_only()};
      auto list = ops::list_mailboxes_matching(txn, dbs, caller.user, patterns, o);
      if (!list) return to_status(list.error());
      for (const auto& e : *list) {
        auto* out = response->add_mailboxes();
        to_proto(e, *out);
        if (request->with_status() && e.exists) to_proto(e.record, *out->mutable_status());
      }
      return grpc::Status::OK;
    });
  }

  grpc::ServerUnaryReactor* CreateMailbox(grpc::CallbackServerContext* context, const pb::CreateMailboxRequest* request,
                                          pb::MailboxChanged* response) override {
    return unary(context, "CreateMailbox", [=, this](const Caller& caller, grpc::ServerUnaryReactor* reactor) {
      std::vector<std::string> uses(request->special_use().begin(), request->special_use().end());
      auto special_use = ops::parse_special_use(uses);
      if (!special_use) return reactor->Finish(to_status(special_use.error()));
      write(reactor, [user = caller.user, name = request->name(), bits = *special_use, response](
                         Txn& txn, const Dbs& dbs, ChangeList&) {
        auto created = ops::create_mailbox(txn, dbs, user, name, bits, now_unix());
        if (!created) return to_status(created.error());
        auto* m = response->mutable_mailbox();
        m->set_name(created->name);
        m->set_exists(true);
        m->set_id(created->record.id);
        for (auto& u : ops::special_use_names(created->record.special_use)) m->add_special_use(std::move(u));
        to_proto(created->record, *m->mutable_status());
        return grpc::Status::OK;
      });
    });
  }

  grpc::ServerUnaryReactor* DeleteMailbox(grpc::CallbackServerContext* context, const pb::DeleteMailboxRequest* request,
                                          pb::MailboxChanged*) override {
    return unary(context, "DeleteMailbox", [=, this](const Caller& caller, grpc::ServerUnaryReactor* reactor) {
      write(reactor, [user = caller.user, name = request->name()](Txn& txn, const Dbs& dbs, ChangeList& changes) {
        auto deleted = ops::delete_mailbox(txn, dbs, user, name);
        if (!deleted) return to_status(deleted.error());
        changes.push_back(gone(deleted->record.id));
        return grpc::Status::OK;
      });
    });
  }

  grpc::ServerUnaryReactor* RenameMailbox(grpc::CallbackServerContext* context, const pb::RenameMailboxRequest* request,
                                          pb::MailboxChanged* response) override {
    return unary(context, "RenameMailbox", [=, this](const Caller& caller, grpc::ServerUnaryReactor* reactor) {
      write(reactor, [user = caller.user, from = request->from(), to = request->to(), response](
                         Txn& txn, const Dbs& dbs, ChangeList& changes) {
        auto renamed = ops::rename_mailbox(txn, dbs, user, from, to, now_unix());
        if (!renamed) return to_status(renamed.error());
        // A renamed mailbox keeps its id, so its watchers go on; RENAME INBOX empties INBOX.
        if (!renamed->inbox_expunged.empty()) {
          auto inbox = ops::find_mailbox_named(txn, dbs, user, "INBOX");
          if (!inbox) return to_status(inbox.error());
          changes.push_back(expunged(inbox->record.id, renamed->inbox_expunged, renamed->inbox_highest_modseq));
        }
        auto now_named = ops::find_mailbox_named(txn, dbs, user, to);
        if (!now_named) return to_status(now_named.error());
        auto* m = response->mutable_mailbox();
        m->set_name(now_named->name);
        m->set_exists(true);
        m->set_id(now_named->record.id);
        to_proto(now_named->record, *m->mutable_status());
        return grpc::Status::OK;
      });
    });
  }

  grpc::ServerUnaryReactor* Subscribe(grpc::CallbackServerContext* context, const pb::SubscribeRequest* request,
                                      pb::MailboxChanged* response) override {
    return unary(context, "Subscribe", [=, this](const Caller& caller, grpc::ServerUnaryReactor* reactor) {
      write(reactor, [user = caller.user, name = request->name(), on = request->subscribe(), response](
                         Txn& txn, const Dbs& dbs, ChangeList&) {
        auto done = ops::subscribe(txn, dbs, user, name, on);
        if (!done) return to_status(done.error());
        response->mutable_mailbox()->set_name(*done);
        response->mutable_mailbox()->set_subscribed(on);
        return grpc::Status::OK;
      });
    });
  }

  grpc::ServerUnaryReactor* Status(grpc::CallbackServerContext* context, const pb::StatusRequest* request,
                                   pb::MailboxEntry* response) override {
    return unary_read(context, "Status", [=, this](const Caller& caller, const Txn& txn, const Dbs& dbs) {
      auto status = ops::status_mailbox(txn, dbs, caller.user, request->name(), request->deleted());
      if (!status) return to_status(status.error());
      response->set_name(status->name);
      response->set_exists(true);
      response->set_id(status->ref.id);
      for (auto& u : ops::special_use_names(status->record.special_use)) response->add_special_use(std::move(u));
      to_proto(status->record, *response->mutable_status());
      response->mutable_status()->set_deleted(status->deleted);
      return grpc::Status::OK;
    });
  }

  grpc::ServerUnaryReactor* Select(grpc::CallbackServerContext* context, const pb::SelectRequest* request,
                                   pb::SelectResponse* response) override {
    return unary_read(context, "Select", [=, this](const Caller& caller, const Txn& txn, const Dbs& dbs) {
      auto selected = ops::select_mailbox(txn, dbs, caller.user, request->name());
      if (!selected) return to_status(selected.error());
      response->set_name(selected->name);
      response->mutable_mailbox()->set_id(selected->ref.id);
      response->mutable_mailbox()->set_uidvalidity(selected->ref.uidvalidity);
      to_proto(selected->record, *response->mutable_status());
      response->mutable_status()->set_deleted(selected->deleted);
      add_flags(kSeen | kAnswered | kFlagged | kDeleted | kDraft, selected->keywords, *response->mutable_flags());
      response->set_keywords_allowed(true);
      response->set_first_unseen_uid(selected->first_unseen);
      add_ranges(selected->uids, *response->mutable_uids());
      return grpc::Status::OK;
    });
  }

  // ---- messages ----

  grpc::ServerUnaryReactor* StoreFlags(grpc::CallbackServerContext* context, const pb::StoreFlagsRequest* request,
                                       pb::StoreFlagsResponse* response) override {
    return unary(context, "StoreFlags", [=, this](const Caller& caller, grpc::ServerUnaryReactor* reactor) {
      auto uids = to_uid_set(request->uids(), options.limits.max_uid_ranges);
      if (!uids) return reactor->Finish(uids.error());
      auto flags = to_flag_set(request->flags());
      if (!flags) return reactor->Finish(flags.error());
      ops::StoreMode mode = request->mode() == pb::StoreFlagsRequest::ADD      ? ops::StoreMode::Add
                            : request->mode() == pb::StoreFlagsRequest::REMOVE ? ops::StoreMode::Remove
                                                                               : ops::StoreMode::Replace;
      std::optional<uint64_t> unchanged_since;
      if (request->has_unchanged_since()) unchanged_since = request->unchanged_since();
      write(reactor, [user = caller.user, ref = to_ref(request->mailbox()), uids = std::move(*uids),
                      flags = std::move(*flags), mode, unchanged_since, response](Txn& txn, const Dbs& dbs,
                                                                                  ChangeList& changes) {
        auto stored = ops::store_flags(txn, dbs, user, ref, uids, mode, flags, unchanged_since);
        if (!stored) return to_status(stored.error());
        for (const auto& m : stored->updated) {
          to_proto(m, *response->add_updated());
          changes.push_back(flags_changed(ref.id, m));
        }
        add_ranges(stored->modified, *response->mutable_modified());
        response->set_highest_modseq(stored->highest_modseq);
        return grpc::Status::OK;
      });
    });
  }

  grpc::ServerUnaryReactor* Copy(grpc::CallbackServerContext* context, const pb::CopyRequest* request,
                                 pb::CopyResponse* response) override {
    return unary(context, request->move() ? "Move" : "Copy", [=, this](const Caller& caller, grpc::ServerUnaryReactor* reactor) {
      auto uids = to_uid_set(request->uids(), options.limits.max_uid_ranges);
      if (!uids) return reactor->Finish(uids.error());
      write(reactor, [user = caller.user, ref = to_ref(request->mailbox()), uids = std::move(*uids),
                      target = request->target(), move = request->move(), response](Txn& txn, const Dbs& dbs,
                                                                                    ChangeList& changes) {
        auto copied = ops::copy_messages(txn, dbs, user, ref, uids, target, move);
        if (!copied) return to_status(copied.error());
        response->set_target_uidvalidity(copied->target.uidvalidity);
        response->mutable_source_uids()->Add(copied->source_uids.begin(), copied->source_uids.end());
        response->mutable_target_uids()->Add(copied->target_uids.begin(), copied->target_uids.end());
        for (const auto& m : copied->added) changes.push_back(added(copied->target.id, m));
        if (!copied->expunged.empty()) {
          add_ranges(copied->expunged, *response->mutable_expunged());
          changes.push_back(expunged(ref.id, copied->expunged, copied->source_highest_modseq));
        }
        response->set_highest_modseq(copied->source_highest_modseq);
        return grpc::Status::OK;
      });
    });
  }

  grpc::ServerUnaryReactor* Expunge(grpc::CallbackServerContext* context, const pb::ExpungeRequest* request,
                                    pb::ExpungeResponse* response) override {
    return unary(context, "Expunge", [=, this](const Caller& caller, grpc::ServerUnaryReactor* reactor) {
      std::optional<ops::UidSet> only;
      if (request->restrict_to_uids() || request->uids_size() > 0) {
        auto uids = to_uid_set(request->uids(), options.limits.max_uid_ranges);
        if (!uids) return reactor->Finish(uids.error());
        only = std::move(*uids);
      }
      write(reactor, [user = caller.user, ref = to_ref(request->mailbox()), only = std::move(only), response](
                         Txn& txn, const Dbs& dbs, ChangeList& changes) {
        auto done = ops::expunge(txn, dbs, user, ref, only);
        if (!done) return to_status(done.error());
        add_ranges(done->expunged, *response->mutable_expunged());
        response->set_highest_modseq(done->highest_modseq);
        if (!done->expunged.empty()) changes.push_back(expunged(ref.id, done->expunged, done->highest_modseq));
        return grpc::Status::OK;
      });
    });
  }

  grpc::ServerUnaryReactor* Changes(grpc::CallbackServerContext* context, const pb::ChangesRequest* request,
                                    pb::ChangesResponse* response) override {
    return unary_read(context, "Changes", [=, this](const Caller& caller, const Txn& txn, const Dbs& dbs) {
      std::optional<ops::UidSet> only;
      if (request->uids_size() > 0) {
        auto uids = to_uid_set(request->uids(), options.limits.max_uid_ranges);
        if (!uids) return uids.error();
        only = std::move(*uids);
      }
      auto changes = ops::changes_since(txn, dbs, caller.user, to_ref(request->mailbox()), request->since_modseq(), only);
      if (!changes) return to_status(changes.error());
      for (const auto& m : changes->changed) to_proto(m, *response->add_changed());
      add_ranges(changes->vanished, *response->mutable_vanished());
      response->set_highest_modseq(changes->highest_modseq);
      return grpc::Status::OK;
    });
  }

  grpc::ServerUnaryReactor* Search(grpc::CallbackServerContext* context, const pb::SearchRequest* request,
                                   pb::SearchResponse* response) override {
    return pooled_read(context, "Search", [this, context, request, response](const Caller& caller, const Txn& txn,
                                                                             const Dbs& dbs) {
      if (request->program_size() > static_cast<int>(search::kMaxKeys)) {
        return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "search of " + std::to_string(request->program_size()) +
                                                                    " keys is over the limit of " +
                                                                    std::to_string(search::kMaxKeys));
      }
      const search::Program program = to_program(request->program());
      if (auto valid = search::validate(program); !valid) {
        return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, valid.error().detail);
      }
      auto mailbox = ops::resolve_mailbox(txn, dbs, caller.user, to_ref(request->mailbox()));
      if (!mailbox) return to_status(mailbox.error());
      // A long BODY search stops once its caller's deadline passed or its client went away.
      auto found = search::evaluate(txn, dbs, mailbox->record.id, program, now_unix(),
                                    [context] { return context->IsCancelled(); });
      if (!found) return to_status(found.error());
      add_ranges(ops::to_ranges(found->uids), *response->mutable_uids());
      response->set_count(static_cast<uint32_t>(found->uids.size()));
      response->set_highest_modseq(found->highest_modseq);
      return grpc::Status::OK;
    });
  }

  grpc::ServerUnaryReactor* GetQuota(grpc::CallbackServerContext* context, const pb::QuotaRequest*,
                                     pb::QuotaResponse* response) override {
    return unary_read(context, "GetQuota", [=, this](const Caller& caller, const Txn& txn, const Dbs& dbs) {
      auto q = ops::quota(txn, dbs, caller.user);
      if (!q) return to_status(q.error());
      response->set_bytes_used(q->bytes_used);
      response->set_bytes_limit(q->bytes_limit);
      response->set_messages_used(q->messages_used);
      response->set_messages_limit(q->messages_limit);
      return grpc::Status::OK;
    });
  }

  grpc::ServerReadReactor<pb::AppendRequest>* Append(grpc::CallbackServerContext* context,
                                                     pb::AppendResponse* response) override;
  grpc::ServerWriteReactor<pb::FetchResponse>* Fetch(grpc::CallbackServerContext* context,
                                                    const pb::FetchRequest* request) override;
  grpc::ServerWriteReactor<pb::WatchEvent>* Watch(grpc::CallbackServerContext* context,
                                                 const pb::WatchRequest* request) override;
};

namespace {

using Impl = MailStoreGrpc::Impl;

// APPEND: the Start, then the bytes; the size declared at Start is checked against the limit before
// any byte is taken, and what arrives must match it.
class AppendReactor final : public grpc::ServerReadReactor<pb::AppendRequest> {
 public:
  AppendReactor(Impl& impl, grpc::CallbackServerContext* context, pb::AppendResponse* response)
      : impl_(impl), response_(response) {
    // Nothing finishes this reactor before `open` calls back, so `this` is alive there.
    impl_.open(context, "Append", [this](Checked<Caller> caller) {
      if (!caller) return Finish(caller.error());
      user_ = caller->user;
      StartRead(&in_);
    });
  }

  void OnReadDone(bool ok) override {
    if (!ok) return commit();
    if (committing_) return Finish(grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "data after commit"));
    if (in_.has_commit()) {
      committing_ = true;
    } else if (in_.has_start()) {
      if (started_) return Finish(grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "second Start in one append"));
      started_ = true;
      start_ = in_.start();
      if (start_.size() > impl_.options.limits.max_append_size) {
        return Finish(grpc::Status(grpc::StatusCode::RESOURCE_EXHAUSTED,
                                   "message of " + std::to_string(start_.size()) + " bytes is over the limit of " +
                                       std::to_string(impl_.options.limits.max_append_size)));
      }
      bytes_.reserve(start_.size());
    } else {
      if (!started_) return Finish(grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "append data before Start"));
      if (bytes_.size() + in_.data().size() > start_.size()) {
        return Finish(grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "more bytes than the declared size"));
      }
      bytes_ += in_.data();
    }
    StartRead(&in_);
  }

  void OnDone() override { delete this; }

 private:
  void commit() {
    if (!started_) return Finish(grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "append without Start"));
    // Cancelled, or the client gave up on the message: its reads ended without the marker.
    if (!committing_) return Finish(grpc::Status(grpc::StatusCode::ABORTED, "append ended without commit: nothing stored"));
    if (bytes_.size() != start_.size()) {
      return Finish(grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                                 "got " + std::to_string(bytes_.size()) + " of the " + std::to_string(start_.size()) +
                                     " bytes declared"));
    }
    auto flags = to_flag_set(start_.flags());
    if (!flags) return Finish(flags.error());
    const int64_t date = start_.internal_date() != 0 ? start_.internal_date() : now_unix();
    auto bytes = std::make_shared<std::string>(std::move(bytes_));
    impl_.write(
        [user = user_, mailbox = start_.mailbox(), bytes, flags = std::move(*flags), date,
         response = response_](Txn& txn, const Dbs& dbs, ChangeList& changes) {
          auto appended = ops::append_message(txn, dbs, user, mailbox, *bytes, flags, date);
          if (!appended) return to_status(appended.error());
          response->set_uidvalidity(appended->uidvalidity);
          response->set_uid(appended->uid);
          response->set_modseq(appended->modseq);
          changes.push_back(added(appended->mailbox_id, ops::MessageState{appended->uid, flags.flags, flags.keywords,
                                                                          appended->modseq}));
          return grpc::Status::OK;
        },
        [this](const grpc::Status& status) { Finish(status); });
  }

  Impl& impl_;
  pb::AppendResponse* response_;
  std::string user_;
  pb::AppendRequest in_;
  pb::AppendRequest::Start start_;
  bool committing_ = false;  // the client's commit marker came
  bool started_ = false;
  std::string bytes_;
};

// Streams one message at a time, each read in its own short read transaction so a Fetch of a
// whole mailbox never pins an old snapshot (and the map's free pages) for its whole length. The
// reads run on the read pool, a few messages ahead of the writes: a hop to the pool for every
// message cost more store CPU than the read itself (100 thread switches for FETCH 1:100 FLAGS
// ENVELOPE), so replies read ahead are written from OnWriteDone. That puts the writes on gRPC's
// threads, so a cheap call beside many fetches of many messages waits behind those writes (about
// 100 ms on a saturated core in bench/store/README.md; beside searches, a few ms). (gRPC's buffer
// hint would save a packet per small reply, but a hinted write may not complete until a later one
// flushes it, and this reactor waits for each write before the next: a fetch stalled until its
// deadline.)
class FetchReactor final : public grpc::ServerWriteReactor<pb::FetchResponse> {
 public:
  FetchReactor(Impl& impl, grpc::CallbackServerContext* context, const pb::FetchRequest& request)
      : impl_(impl), request_(request) {
    impl_.open(context, "Fetch", [this](Checked<Caller> caller) {
      if (!caller) return Finish(caller.error());
      user_ = caller->user;
      auto set = to_uid_set(request_.uids(), impl_.options.limits.max_uid_ranges);
      if (!set) return Finish(set.error());
      if (!impl_.pooled([this, set = std::move(*set)] { scan(set); })) Finish(Impl::reads_busy());
    });
  }

  // The pool's read and these writes never overlap: each StartWrite is the last thing either does.
  void OnWriteDone(bool ok) override {
    if (!ok) return Finish(grpc::Status(grpc::StatusCode::CANCELLED, "client went away"));
    if (!pending_.empty() || !failed_.ok() || position_ >= uids_.size()) return write_next();
    if (!impl_.pooled([this] { next(); })) Finish(Impl::reads_busy());
  }
  void OnDone() override { delete this; }

 private:
  void scan(const ops::UidSet& set) {
    const size_t limit = impl_.options.limits.max_fetch_messages;
    grpc::Status s = impl_.read([&](const Txn& txn, const Dbs& dbs) -> grpc::Status {
      auto scanned = ops::for_each_message(
          txn, dbs, user_, to_ref(request_.mailbox()), set,
          [&](const MessageInfo& m) {
            uids_.push_back(m.uid);
            return uids_.size() <= limit;
          },
          request_.changed_since());
      if (!scanned) return to_status(scanned.error());
      if (uids_.size() > limit) {
        return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                            "fetch names more than " + std::to_string(limit) + " messages");
      }
      return grpc::Status::OK;
    });
    if (!s.ok()) return Finish(s);
    next();
  }

  // At most this many messages, or this many bytes of replies, are read ahead of the client.
  static constexpr size_t kReadAheadMessages = 32;
  static constexpr size_t kReadAheadBytes = 256u << 10;

  void next() {
    size_t read = 0, bytes = 0;
    while (position_ < uids_.size() && read < kReadAheadMessages && bytes < kReadAheadBytes) {
      const uint32_t uid = uids_[position_++];
      const size_t before = pending_.size();
      read += 1;
      grpc::Status s = impl_.read([&](const Txn& txn, const Dbs& dbs) -> grpc::Status {
        grpc::Status built = grpc::Status::OK;
        auto scanned = ops::for_each_message(txn, dbs, user_, to_ref(request_.mailbox()), {{uid, uid}},
                                             [&](const MessageInfo& m) {
                                               auto r = fetch_message(txn, dbs, m, request_, pending_);
                                               if (!r) built = r.error();
                                               return false;
                                             });
        if (!scanned) return to_status(scanned.error());
        return built;
      });
      if (!s.ok()) {
        // The messages before it still go out whole, then the error ends the call.
        pending_.resize(before);
        failed_ = s;
        break;
      }
      for (size_t i = before; i < pending_.size(); ++i) bytes += pending_[i].ByteSizeLong();
    }
    write_next();
  }

  void write_next() {
    if (pending_.empty()) return Finish(failed_);
    out_ = std::move(pending_.front());
    pending_.pop_front();
    StartWrite(&out_);
  }

  Impl& impl_;
  pb::FetchRequest request_;
  std::string user_;
  std::vector<uint32_t> uids_;
  size_t position_ = 0;
  std::deque<pb::FetchResponse> pending_;
  grpc::Status failed_;  // the read that failed; OK while none has
  pb::FetchResponse out_;
};

// What a Watch stream shares with the hub: a bounded queue of events and the one write in flight.
// The reactor goes away in OnDone; the hub holds this weakly.
class WatchState final : public ChangeHub::Watcher {
 public:
  WatchState(grpc::ServerWriteReactor<pb::WatchEvent>* reactor, size_t max_backlog)
      : reactor_(reactor), max_backlog_(max_backlog) {}

  void changed(const std::vector<const MailboxChange*>& changes) override {
    std::lock_guard lock(mu_);
    if (finished_) return;
    for (const MailboxChange* c : changes) {
      if (started_ && c->modseq != 0 && c->modseq <= ready_modseq_) continue;  // the catch-up had it
      events_.push_back(to_event(*c));
    }
    pump();
  }

  // The catch-up read's events, then Ready; live changes at or below `modseq` were in the catch-up.
  void start(std::vector<pb::WatchEvent> catch_up, uint64_t modseq) {
    std::lock_guard lock(mu_);
    ready_modseq_ = modseq;
    std::deque<pb::WatchEvent> live;
    live.swap(events_);
    for (auto& e : catch_up) events_.push_back(std::move(e));
    pb::WatchEvent ready;
    ready.mutable_ready()->set_highest_modseq(modseq);
    events_.push_back(std::move(ready));
    for (auto& e : live) {
      if (event_modseq(e) == 0 || event_modseq(e) > modseq) events_.push_back(std::move(e));
    }
    started_ = true;
    opened_ = true;
    if (deferred_) return finish(*deferred_);
    pump();
  }

  void write_done(bool ok) {
    std::lock_guard lock(mu_);
    writing_ = false;
    if (!ok) return finish(grpc::Status(grpc::StatusCode::CANCELLED, "client went away"));
    if (ending_) return finish(grpc::Status::OK);
    pump();
  }

  void cancelled() {
    std::lock_guard lock(mu_);
    ending_ = true;
    if (!writing_) finish(grpc::Status::CANCELLED);
  }

  void done() {
    std::lock_guard lock(mu_);
    reactor_ = nullptr;
  }

  // The open failed: the stream ends with `s` (or what ended it meanwhile).
  void fail(grpc::Status s) {
    std::lock_guard lock(mu_);
    opened_ = true;
    finish(deferred_ ? *deferred_ : std::move(s));
  }

  // Ends a live stream (its token expired); before the open is done, once it is.
  void end(grpc::Status s) {
    std::lock_guard lock(mu_);
    finish(std::move(s));
  }

 private:
  static uint64_t event_modseq(const pb::WatchEvent& e) {
    if (e.has_added()) return e.added().modseq();
    if (e.has_flags()) return e.flags().modseq();
    if (e.has_expunged()) return e.expunged().modseq();
    return 0;
  }

  void pump() {
    if (finished_ || !reactor_) return;
    // The backlog counts whatever waits while the client is not reading, before and after Ready.
    if (events_.size() > max_backlog_) {
      common::log::warning("mailstore").event("watch_cut_off").kv("backlog", events_.size());
      return finish(grpc::Status(grpc::StatusCode::RESOURCE_EXHAUSTED,
                                 "watch client is not reading: " + std::to_string(events_.size()) + " events pending"));
    }
    if (!started_ || writing_ || events_.empty()) return;
    out_ = std::move(events_.front());
    events_.pop_front();
    if (out_.has_gone()) ending_ = true;
    writing_ = true;
    reactor_->StartWrite(&out_);
  }

  void finish(grpc::Status s) {
    if (finished_ || !reactor_) return;
    if (!opened_) {
      // The reactor is still being opened on another thread, which uses it after this returns.
      if (!deferred_) deferred_ = std::move(s);
      return;
    }
    finished_ = true;
    events_.clear();
    reactor_->Finish(std::move(s));
  }

  std::mutex mu_;
  grpc::ServerWriteReactor<pb::WatchEvent>* reactor_;
  size_t max_backlog_;
  std::deque<pb::WatchEvent> events_;
  pb::WatchEvent out_;
  uint64_t ready_modseq_ = 0;
  bool started_ = false, writing_ = false, ending_ = false, finished_ = false;
  bool opened_ = false;                   // start() or fail() ran: finishing may delete the reactor
  std::optional<grpc::Status> deferred_;  // what ended the stream while it was being opened
};

class WatchReactor final : public grpc::ServerWriteReactor<pb::WatchEvent> {
 public:
  WatchReactor(Impl& impl, grpc::CallbackServerContext* context, const pb::WatchRequest& request)
      : impl_(impl),
        request_(request),
        state_(std::make_shared<WatchState>(this, impl.options.limits.max_watch_backlog)) {
    impl_.open(context, "Watch", [this](Checked<Caller> caller) { opened(std::move(caller)); });
  }

  void OnWriteDone(bool ok) override { state_->write_done(ok); }
  void OnCancel() override { state_->cancelled(); }
  void OnDone() override {
    state_->done();
    expiry_.Cancel();
    if (subscription_) impl_.store.hub().unsubscribe(mailbox_id_, subscription_);
    delete this;
  }

 private:
  // The state finishes nothing before start() or fail(), so each is the last use of `this` here.
  void opened(Checked<Caller> caller) {
    if (!caller) return state_->fail(caller.error());
    std::vector<pb::WatchEvent> catch_up;
    uint64_t highest = 0;
    const ops::MailboxRef ref = to_ref(request_.mailbox());
    grpc::Status s = impl_.read([&](const Txn& txn, const Dbs& dbs) -> grpc::Status {
      auto mailbox = ops::resolve_mailbox(txn, dbs, caller->user, ref);
      if (!mailbox) return to_status(mailbox.error());
      // Subscribed while this snapshot lives: whatever commits after it began is published later,
      // and what both the snapshot and the hub carry is dropped by MODSEQ.
      mailbox_id_ = mailbox->record.id;
      subscription_ = impl_.store.hub().subscribe(mailbox_id_, state_);
      highest = mailbox->record.highestmodseq;
      auto changes = ops::changes_since(txn, dbs, caller->user, ref, request_.since_modseq());
      if (!changes) return to_status(changes.error());
      if (changes->changed.size() > impl_.options.limits.max_watch_backlog) {
        return grpc::Status(grpc::StatusCode::RESOURCE_EXHAUSTED,
                            std::to_string(changes->changed.size()) + " changes since MODSEQ " +
                                std::to_string(request_.since_modseq()) + ": select the mailbox again");
      }
      to_events(*changes, catch_up);
      return grpc::Status::OK;
    });
    if (!s.ok()) return state_->fail(s);
    // A token is good until it expires, and a stream must not outlive it: the mmp renews the token
    // and watches again, so a revoked login stops seeing mail at the latest here.
    expiry_.Set(std::chrono::system_clock::from_time_t(static_cast<std::time_t>(caller->expires_at)),
                [weak = std::weak_ptr<WatchState>(state_), user = caller->user](bool fired) {
                  if (!fired) return;
                  auto state = weak.lock();
                  if (!state) return;
                  common::log::info("mailstore").event("watch_token_expired").kv("user", user);
                  state->end(grpc::Status(grpc::StatusCode::UNAUTHENTICATED,
                                          "access token expired: renew it and watch again"));
                });
    state_->start(std::move(catch_up), highest);
  }

  Impl& impl_;
  pb::WatchRequest request_;
  std::shared_ptr<WatchState> state_;
  grpc::Alarm expiry_;
  uint64_t mailbox_id_ = 0;
  uint64_t subscription_ = 0;
};

}  // namespace

grpc::ServerReadReactor<pb::AppendRequest>* MailStoreGrpc::Impl::Append(grpc::CallbackServerContext* context,
                                                                       pb::AppendResponse* response) {
  return new AppendReactor(*this, context, response);
}

grpc::ServerWriteReactor<pb::FetchResponse>* MailStoreGrpc::Impl::Fetch(grpc::CallbackServerContext* context,
                                                                       const pb::FetchRequest* request) {
  return new FetchReactor(*this, context, *request);
}

grpc::ServerWriteReactor<pb::WatchEvent>* MailStoreGrpc::Impl::Watch(grpc::CallbackServerContext* context,
                                                                    const pb::WatchRequest* request) {
  return new WatchReactor(*this, context, *request);
}

MailStoreGrpc::MailStoreGrpc(MessageStore& store, common::authtoken::Verifier verifier, ServiceOptions options)
    : impl_(std::make_unique<Impl>(store, std::move(verifier), std::move(options))) {}

MailStoreGrpc::~MailStoreGrpc() = default;

void MailStoreGrpc::register_with(common::rpc::GrpcRegistry& registry) {
  impl_->registry = &registry;
  registry.add<pb::MailStore>(*impl_);
  // The largest UID set allowed (max_uid_ranges ranges of up to 12 bytes each) must fit a request;
  // appends come in chunks and fetch replies in pieces of convert.hpp's kSectionPiece.
  const size_t receive = std::max<size_t>(4u << 20, impl_->options.limits.max_uid_ranges * 12 + 4096);
  registry.set_message_limits(receive, 8u << 20);
}

}  // namespace store::service
