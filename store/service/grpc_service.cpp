// grpc_service.cpp: the MailStore service over gRPC's callback API (grpc_service.hpp): the access
// check, then store::ops in read transactions (on the calling gRPC thread, or the read pool for
// searches) or on the group-commit writer (answered from a loop once on disk). The streaming calls
// are in append.cpp, fetch.cpp and watch.cpp.
#include "store/service/grpc_service.hpp"

#include <algorithm>

#include "store/search/evaluate.hpp"
#include "store/service/service_core.hpp"

namespace store::service {

struct MailStoreGrpc::Impl final : public pb::MailStore::CallbackService, ServiceCore {
  using ServiceCore::ServiceCore;
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
                                    [context] { return context->IsCancelled(); }, &header_cache);
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
  grpc::ServerBidiReactor<pb::WatchControl, pb::WatchManyReply>* WatchMany(grpc::CallbackServerContext* context) override {
    return start_watch_many(*this, context);
  }
};
grpc::ServerReadReactor<pb::AppendRequest>* MailStoreGrpc::Impl::Append(grpc::CallbackServerContext* context,
                                                                       pb::AppendResponse* response) {
  return start_append(*this, context, response);
}

grpc::ServerWriteReactor<pb::FetchResponse>* MailStoreGrpc::Impl::Fetch(grpc::CallbackServerContext* context,
                                                                       const pb::FetchRequest* request) {
  return start_fetch(*this, context, *request);
}

grpc::ServerWriteReactor<pb::WatchEvent>* MailStoreGrpc::Impl::Watch(grpc::CallbackServerContext* context,
                                                                    const pb::WatchRequest* request) {
  return start_watch(*this, context, *request);
}

MailStoreGrpc::MailStoreGrpc(MessageStore& store, common::authtoken::Verifier verifier, ServiceOptions options)
    : impl_(std::make_unique<Impl>(store, std::move(verifier), std::move(options))) {}

MailStoreGrpc::~MailStoreGrpc() = default;

void MailStoreGrpc::end_watches() { impl_->end_streams(); }

void MailStoreGrpc::register_with(common::rpc::GrpcRegistry& registry) {
  impl_->registry = &registry;
  registry.add<pb::MailStore>(*impl_);
  // The largest UID set allowed (max_uid_ranges ranges of up to 12 bytes each) must fit a request;
  // appends come in chunks and fetch replies in pieces of convert.hpp's kSectionPiece.
  const size_t receive = std::max<size_t>(4u << 20, impl_->options.limits.max_uid_ranges * 12 + 4096);
  registry.set_message_limits(receive, 8u << 20);
}

}  // namespace store::service
