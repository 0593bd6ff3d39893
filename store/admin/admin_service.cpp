// admin_service.cpp: StoreAdmin over gRPC's callback API (admin_service.hpp): the caller's
// certificate against admin_clients, then storectl's operations (store/tools admin_txn, import_txn)
// in read transactions or on the group-commit writer; exports streamed from one read transaction.
#include "store/admin/admin_service.hpp"

#include <grpcpp/grpcpp.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <ctime>
#include <deque>
#include <map>
#include <mutex>
#include <thread>

#include "common/grpc/credentials.hpp"
#include "common/grpc/server.hpp"
#include "common/log/log.hpp"
#include "proto/storeadmin.grpc.pb.h"
#include "store/mime/parser.hpp"
#include "store/service/store_call.hpp"
#include "store/storage/message_store.hpp"
#include "store/tools/admin_txn.hpp"
#include "store/tools/import_txn.hpp"

namespace store::admin {
namespace {

namespace pb = postern::storeadmin::v1;
using common::Result;
using common::lmdb::Txn;
using ChangeList = std::vector<MailboxChange>;
using ops::OpCode;
using ops::OpError;

constexpr size_t kExportPiece = 1u << 20;         // bytes of a message per reply, under the send limit
constexpr size_t kExportQueue = 8;                // replies read ahead of the client
constexpr size_t kMaxPendingImport = 256u << 20;  // bytes an import may send before its commit
constexpr uint32_t kDefaultIdle = 60, kMaxIdle = 600;

int64_t now_unix() { return static_cast<int64_t>(std::time(nullptr)); }

// For an operator: the store's detail, Internal's too.
grpc::Status to_status(const OpError& e) {
  switch (e.code) {
    case OpCode::NotFound: return grpc::Status(grpc::StatusCode::NOT_FOUND, e.detail);
    case OpCode::AlreadyExists: return grpc::Status(grpc::StatusCode::ALREADY_EXISTS, e.detail);
    case OpCode::InvalidArgument: return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, e.detail);
    case OpCode::FailedPrecondition: return grpc::Status(grpc::StatusCode::FAILED_PRECONDITION, e.detail);
    case OpCode::ResourceExhausted: return grpc::Status(grpc::StatusCode::RESOURCE_EXHAUSTED, e.detail);
    case OpCode::TempFail: return grpc::Status(grpc::StatusCode::UNAVAILABLE, e.detail);
    case OpCode::Internal: break;
  }
  common::log::error("storeadmin").event("store_error").kv("detail", e.detail);
  return grpc::Status(grpc::StatusCode::INTERNAL, "store error: " + e.detail);
}
grpc::Status to_status(const common::Error& e) { return to_status(ops::to_op_error(e)); }

void to_proto(const UserRecord& r, pb::UserRecord& out) {
  out.set_id(r.id);
  out.set_created(r.created);
  out.set_bytes_used(r.bytes_used);
  out.set_messages(r.messages);
  out.set_quota_bytes(r.quota_bytes);
  out.set_quota_messages(r.quota_messages);
}

// An import between BeginImport and FinishImport.
struct ImportSession {
  std::string user;
  tools::ImportStart start;
  uint32_t idle = kDefaultIdle;
  int64_t deadline = 0;  // given up after it, and its hold (kept UIDs) is no longer honoured
  std::vector<tools::ImportMessage> pending;  // sent since the last commit
  size_t pending_bytes = 0;
  bool continuing = false;  // the last pending message's bytes go on
  bool busy = false;        // a commit is on the writer
};

}  // namespace

struct StoreAdminGrpc::Impl final : public pb::StoreAdmin::CallbackService {
  Impl(MessageStore& s, AdminOptions o) : store(s), options(std::move(o)) {}

  MessageStore& store;
  AdminOptions options;
  common::rpc::GrpcRegistry* registry = nullptr;
  std::atomic<size_t> next_loop{0};
  std::shared_ptr<int> alive = std::make_shared<int>(0);
  std::mutex imports_mu;
  std::map<uint64_t, std::shared_ptr<ImportSession>> imports;
  uint64_t next_import = 1;

  common::runtime::Loop& loop() { return registry->loop(next_loop.fetch_add(1) % registry->loops()); }

  // The caller's certificate CN must be an operator host's: the service works on every user's mail.
  std::optional<grpc::Status> refused(grpc::CallbackServerContext* context, std::string_view method) {
    if (options.plaintext) return std::nullopt;
    const std::string cn = common::rpc::peer_identity(*context).common_name;
    std::string reason;
    if (cn.empty()) {
      reason = "no client certificate";
    } else if (std::find(options.admin_clients.begin(), options.admin_clients.end(), cn) ==
               options.admin_clients.end()) {
      reason = "certificate " + cn + " is not in [mailstore] admin_clients";
    } else {
      return std::nullopt;
    }
    common::log::warning("storeadmin").event("refused").kv("method", method).kv("client", cn)
        .kv("peer", context->peer()).kv("reason", reason);
    return grpc::Status(grpc::StatusCode::PERMISSION_DENIED, reason);
  }

  // `fn(txn, dbs, changes)` on the writer; the reactor finishes once the commit is on disk and the
  // changes were handed to the watchers. `after` sees the status first.
  void write(grpc::ServerUnaryReactor* reactor, service::CallWrite fn, service::CallFinish after = {}) {
    static const service::CallReplies replies{to_status, "store writer busy, try again"};
    service::write_call(store, loop(), alive, replies, std::move(fn),
                        [reactor, after = std::move(after)](const grpc::Status& status) {
                          if (after) after(status);
                          reactor->Finish(status);
                        });
  }

  grpc::Status read(const std::function<grpc::Status(const Txn&, const Dbs&)>& fn) {
    return service::read_call(store, to_status, fn);
  }

  template <class Body>
  grpc::ServerUnaryReactor* unary(grpc::CallbackServerContext* context, std::string_view method, Body body) {
    auto* reactor = context->DefaultReactor();
    if (auto no = refused(context, method)) {
      reactor->Finish(*no);
      return reactor;
    }
    body(reactor);
    return reactor;
  }

  // Imports whose client went quiet past their deadline are forgotten; their holds lapse by
  // themselves (add_message ignores a hold past its deadline) and BeginImport removes the records.
  void expire_imports() {
    const int64_t now = now_unix();
    std::lock_guard lock(imports_mu);
    for (auto it = imports.begin(); it != imports.end();) {
      if (!it->second->busy && it->second->deadline <= now) {
        common::log::warning("storeadmin").event("import_abandoned").kv("user", it->second->user)
            .kv("mailbox", it->second->start.mailbox);
        it = imports.erase(it);
      } else {
        ++it;
      }
    }
  }

  std::shared_ptr<ImportSession> session(uint64_t id) {
    std::lock_guard lock(imports_mu);
    auto it = imports.find(id);
    return it == imports.end() ? nullptr : it->second;
  }

  // ---- users ----

  grpc::ServerUnaryReactor* CreateUser(grpc::CallbackServerContext* context, const pb::UserRequest* request,
                                       pb::UserRecord* response) override {
    return unary(context, "CreateUser", [&](grpc::ServerUnaryReactor* reactor) {
      write(reactor, [user = request->user(), response](Txn& txn, const Dbs& dbs, ChangeList&) {
        auto made = tools::create_user_in(txn, dbs, user, now_unix());
        if (!made) return to_status(made.error());
        to_proto(*made, *response);
        return grpc::Status::OK;
      });
    });
  }

  grpc::ServerUnaryReactor* RenameUser(grpc::CallbackServerContext* context, const pb::RenameUserRequest* request,
                                       pb::Done*) override {
    return unary(context, "RenameUser", [&](grpc::ServerUnaryReactor* reactor) {
      write(reactor, [from = request->from(), to = request->to()](Txn& txn, const Dbs& dbs, ChangeList&) {
        auto done = ops::rename_user(txn, dbs, from, to);
        return done ? grpc::Status::OK : to_status(done.error());
      });
    });
  }

  grpc::ServerUnaryReactor* DeleteUser(grpc::CallbackServerContext* context, const pb::UserRequest* request,
                                       pb::DeleteUserReply* response) override {
    return unary(context, "DeleteUser", [&](grpc::ServerUnaryReactor* reactor) {
      write(reactor, [user = request->user(), response](Txn& txn, const Dbs& dbs, ChangeList& changes) {
        auto gone = ops::delete_user(txn, dbs, user);
        if (!gone) return to_status(gone.error());
        for (const auto& m : gone->mailboxes) {
          auto* out = response->add_mailboxes();
          out->set_name(m.name);
          out->set_expunged(m.expunged);
          MailboxChange c;
          c.kind = MailboxChange::Kind::Gone;
          c.mailbox_id = m.record.id;
          changes.push_back(std::move(c));
        }
        response->set_subscriptions(gone->subscriptions);
        return grpc::Status::OK;
      });
    });
  }

  grpc::ServerUnaryReactor* Usage(grpc::CallbackServerContext* context, const pb::UsageRequest* request,
                                  pb::UsageReply* response) override {
    return unary(context, "Usage", [&](grpc::ServerUnaryReactor* reactor) {
      reactor->Finish(read([&](const Txn& txn, const Dbs& dbs) {
        std::optional<std::string_view> user;
        if (!request->user().empty()) user = request->user();
        auto users = tools::usage_in(txn, dbs, user);
        if (!users) return to_status(users.error());
        for (const auto& u : *users) {
          auto* out = response->add_users();
          out->set_user(u.user);
          to_proto(u.record, *out->mutable_record());
          for (const auto& m : u.mailboxes) {
            auto* b = out->add_mailboxes();
            b->set_name(m.name);
            b->set_id(m.record.id);
            b->set_uidvalidity(m.record.uidvalidity);
            b->set_uidnext(m.record.uidnext);
            b->set_highest_modseq(m.record.highestmodseq);
            b->set_messages(m.record.messages);
            b->set_unseen(m.record.unseen);
            b->set_bytes(m.record.bytes);
            b->set_special_use(m.record.special_use);
            b->set_created(m.record.created);
            b->set_subscribed(m.subscribed);
          }
        }
        return grpc::Status::OK;
      }));
    });
  }

  // verify reads in one read transaction; --repair is one write on the writer (deliveries wait
  // behind it for as long as the check takes, but nothing is ever half repaired).
  grpc::ServerUnaryReactor* Verify(grpc::CallbackServerContext* context, const pb::VerifyRequest* request,
                                   pb::VerifyReply* response) override {
    return unary(context, "Verify", [&](grpc::ServerUnaryReactor* reactor) {
      auto fill = [response](const ops::VerifyReport& r) {
        response->set_users(r.users);
        response->set_mailboxes(r.mailboxes);
        response->set_messages(r.messages);
        response->set_bodies(r.bodies);
        response->set_chunks(r.chunks);
        response->set_problems(r.problems);
        response->set_repaired(r.repaired);
        response->set_unrepairable(r.unrepairable);
        for (const auto& d : r.details) response->add_details(d);
      };
      if (!request->repair()) {
        return reactor->Finish(read([&](const Txn& txn, const Dbs& dbs) {
          auto report = ops::verify_refcounts(txn, dbs);
          if (!report) return to_status(report.error());
          fill(*report);
          return grpc::Status::OK;
        }));
      }
      common::log::info("storeadmin").event("repair").kv("client", common::rpc::peer_identity(*context).common_name);
      write(reactor, [fill](Txn& txn, const Dbs& dbs, ChangeList&) {
        auto report = ops::verify_refcounts(txn, dbs, true);
        if (!report) return to_status(report.error());
        fill(*report);
        return grpc::Status::OK;
      });
    });
  }

  grpc::ServerUnaryReactor* Subscribe(grpc::CallbackServerContext* context, const pb::SubscribeRequest* request,
                                      pb::Done*) override {
    return unary(context, "Subscribe", [&](grpc::ServerUnaryReactor* reactor) {
      std::vector<std::string> names(request->mailboxes().begin(), request->mailboxes().end());
      write(reactor, [user = request->user(), names = std::move(names)](Txn& txn, const Dbs& dbs, ChangeList&) {
        for (const auto& name : names) {
          auto done = ops::subscribe(txn, dbs, user, name, true);
          if (!done) return to_status(done.error());
        }
        return grpc::Status::OK;
      });
    });
  }

  // ---- import ----

  grpc::ServerUnaryReactor* BeginImport(grpc::CallbackServerContext* context, const pb::BeginImportRequest* request,
                                        pb::BeginImportReply* response) override {
    expire_imports();
    return unary(context, "BeginImport", [&](grpc::ServerUnaryReactor* reactor) {
      auto s = std::make_shared<ImportSession>();
      s->user = request->user();
      s->idle = request->idle_seconds() == 0 ? kDefaultIdle : std::min(request->idle_seconds(), kMaxIdle);
      s->deadline = now_unix() + s->idle;
      uint64_t id = 0;
      {
        std::lock_guard lock(imports_mu);
        id = next_import++;
      }
      write(
          reactor,
          [s, id, mailbox = request->mailbox(), uidvalidity = request->source_uidvalidity(), response](
              Txn& txn, const Dbs& dbs, ChangeList&) {
            const int64_t now = now_unix();
            if (auto d = tools::drop_stale_holds(txn, dbs, now); !d) return to_status(d.error());
            auto start = tools::import_begin(txn, dbs, s->user, mailbox, uidvalidity, now);
            if (!start) return to_status(start.error());
            if (start->keep_uids) {
              // One import with kept UIDs per mailbox: two would interleave their UIDs.
              auto user = find_user(txn, dbs, s->user);
              if (!user || !*user) return grpc::Status(grpc::StatusCode::INTERNAL, "user vanished");
              auto box = find_mailbox(txn, dbs, (*user)->id, start->mailbox);
              if (!box || !*box) return grpc::Status(grpc::StatusCode::INTERNAL, "mailbox vanished");
              auto held = txn.get(dbs.meta, import_hold_key((*box)->id));
              if (!held) return to_status(held.error());
              if (*held) {
                return grpc::Status(grpc::StatusCode::FAILED_PRECONDITION,
                                    "mailbox " + start->mailbox + " is being imported by another postern-storectl");
              }
              auto hold = tools::hold_import(txn, dbs, s->user, *start, s->deadline, id);
              if (!hold) return to_status(hold.error());
            }
            s->start = *start;
            response->set_import_id(id);
            response->set_mailbox(start->mailbox);
            response->set_created(start->created);
            response->set_keep_uids(start->keep_uids);
            response->set_uidvalidity(start->uidvalidity);
            response->set_uidnext(start->uidnext);
            return grpc::Status::OK;
          },
          [this, s, id](const grpc::Status& status) {
            if (!status.ok()) return;
            std::lock_guard lock(imports_mu);
            imports.emplace(id, s);
            common::log::info("storeadmin").event("import_begin").kv("user", s->user).kv("mailbox", s->start.mailbox)
                .kv("keep_uids", s->start.keep_uids ? "yes" : "no");
          });
    });
  }

  grpc::ServerUnaryReactor* ImportBatch(grpc::CallbackServerContext* context, const pb::ImportBatchRequest* request,
                                        pb::ImportBatchReply* response) override {
    expire_imports();
    return unary(context, "ImportBatch", [&](grpc::ServerUnaryReactor* reactor) {
      auto s = session(request->import_id());
      if (!s) {
        return reactor->Finish(grpc::Status(grpc::StatusCode::NOT_FOUND,
                                            "no import " + std::to_string(request->import_id()) +
                                                " (finished, or given up after going quiet)"));
      }
      std::vector<tools::ImportMessage> batch;
      {
        std::lock_guard lock(imports_mu);
        if (s->busy) {
          return reactor->Finish(grpc::Status(grpc::StatusCode::FAILED_PRECONDITION, "a batch of this import is on the writer"));
        }
        for (const auto& m : request->messages()) {
          s->pending_bytes += m.data().size();
          if (s->pending_bytes > kMaxPendingImport) {
            imports.erase(request->import_id());
            return reactor->Finish(grpc::Status(grpc::StatusCode::RESOURCE_EXHAUSTED,
                                                "more than 256 MiB sent without a commit: import given up"));
          }
          if (s->continuing) {
            s->pending.back().bytes += m.data();
          } else {
            tools::ImportMessage in;
            in.uid = m.uid();
            in.flags = m.flags();
            in.keywords.assign(m.keywords().begin(), m.keywords().end());
            in.internal_date = m.internal_date();
            in.bytes = m.data();
            in.source = m.source();
            s->pending.push_back(std::move(in));
          }
          s->continuing = m.more();
        }
        s->deadline = now_unix() + s->idle;
        if (!request->commit()) return reactor->Finish(grpc::Status::OK);
        if (s->continuing) {
          return reactor->Finish(grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "commit in the middle of a message"));
        }
        batch = std::move(s->pending);
        s->pending.clear();
        s->pending_bytes = 0;
        s->busy = true;
      }
      // Parsed here, on gRPC's thread, so the writer only writes.
      auto structures = std::make_shared<std::vector<std::string>>();
      structures->reserve(batch.size());
      for (const auto& m : batch) structures->push_back(mime::encode(mime::parse(m.bytes)));
      auto messages = std::make_shared<std::vector<tools::ImportMessage>>(std::move(batch));
      const int64_t deadline = now_unix() + s->idle;
      const uint64_t id = request->import_id();
      write(
          reactor,
          [s, messages, structures, deadline, id, response](Txn& txn, const Dbs& dbs, ChangeList& changes) {
            // The import's own UIDs: its hold is lifted inside this write and put back before the commit.
            if (s->start.keep_uids) {
              if (auto r = tools::release_import(txn, dbs, s->user, s->start); !r) return to_status(r.error());
            }
            auto done = tools::import_messages(txn, dbs, s->user, s->start, *messages, *structures);
            if (!done) return to_status(done.error());
            uint64_t mailbox_id = 0;
            if (s->start.keep_uids) {
              auto hold = tools::hold_import(txn, dbs, s->user, s->start, deadline, id);
              if (!hold) return to_status(hold.error());
              mailbox_id = *hold;
            } else {
              auto user = find_user(txn, dbs, s->user);
              if (!user || !*user) return grpc::Status(grpc::StatusCode::INTERNAL, "user vanished");
              auto box = find_mailbox(txn, dbs, (*user)->id, s->start.mailbox);
              if (!box || !*box) return grpc::Status(grpc::StatusCode::INTERNAL, "mailbox vanished");
              mailbox_id = (*box)->id;
            }
            if (done->imported > 0) {
              auto listed = for_each_message(txn, dbs, mailbox_id, done->first_uid, done->last_uid,
                                             [&](uint32_t uid, const MessageRecord& r) {
                                               MailboxChange c;
                                               c.kind = MailboxChange::Kind::Added;
                                               c.mailbox_id = mailbox_id;
                                               c.modseq = r.modseq;
                                               c.uid = uid;
                                               c.flags = r.flags;
                                               c.keywords = r.keywords;
                                               changes.push_back(std::move(c));
                                               return true;
                                             });
              if (!listed) return to_status(listed.error());
            }
            response->set_imported(done->imported);
            response->set_skipped(done->skipped);
            response->set_first_uid(done->first_uid);
            response->set_last_uid(done->last_uid);
            return grpc::Status::OK;
          },
          [this, s](const grpc::Status&) {
            std::lock_guard lock(imports_mu);
            s->busy = false;
            s->deadline = now_unix() + s->idle;
          });
    });
  }

  grpc::ServerUnaryReactor* FinishImport(grpc::CallbackServerContext* context, const pb::FinishImportRequest* request,
                                         pb::Done*) override {
    expire_imports();
    return unary(context, "FinishImport", [&](grpc::ServerUnaryReactor* reactor) {
      auto s = session(request->import_id());
      if (!s) {
        return reactor->Finish(grpc::Status(grpc::StatusCode::NOT_FOUND,
                                            "no import " + std::to_string(request->import_id()) +
                                                " (finished, or given up after going quiet)"));
      }
      {
        std::lock_guard lock(imports_mu);
        if (s->busy || !s->pending.empty()) {
          return reactor->Finish(grpc::Status(grpc::StatusCode::FAILED_PRECONDITION, "messages of this import are not committed"));
        }
        s->busy = true;
      }
      const uint64_t id = request->import_id();
      write(
          reactor,
          [s, next = request->source_uidnext()](Txn& txn, const Dbs& dbs, ChangeList&) {
            if (s->start.keep_uids) {
              if (auto r = tools::release_import(txn, dbs, s->user, s->start); !r) return to_status(r.error());
            }
            auto done = tools::import_finish(txn, dbs, s->user, s->start, next);
            return done ? grpc::Status::OK : to_status(done.error());
          },
          [this, s, id](const grpc::Status& status) {
            std::lock_guard lock(imports_mu);
            s->busy = false;
            if (status.ok()) {
              imports.erase(id);
              common::log::info("storeadmin").event("import_done").kv("user", s->user).kv("mailbox", s->start.mailbox);
            }
          });
    });
  }

  grpc::ServerWriteReactor<pb::ExportPiece>* Export(grpc::CallbackServerContext* context,
                                                    const pb::ExportRequest* request) override;
};

namespace {

// One export: a thread of its own holds the read transaction (LMDB ties it to its thread) and
// queues replies; the reactor sends them, at most kExportQueue ahead of the client.
class ExportReactor final : public grpc::ServerWriteReactor<pb::ExportPiece> {
 public:
  ExportReactor(MessageStore& store, std::string user, std::string mailbox) {
    worker_ = std::thread([this, &store, user = std::move(user), mailbox = std::move(mailbox)] {
      grpc::Status status;
      std::optional<OpError> failed;
      auto r = store.read([&](const Txn& txn, const Dbs& dbs) -> Result<void> {
        auto done = tools::export_in(
            txn, dbs, user, mailbox,
            [&](const tools::ExportedMailbox& m) -> ops::OpResult<void> {
              pb::ExportPiece p;
              auto* b = p.mutable_mailbox();
              b->set_name(m.name);
              b->set_uidvalidity(m.uidvalidity);
              b->set_uidnext(m.uidnext);
              b->set_messages(m.messages);
              return push(std::move(p));
            },
            [&](const tools::ExportedMessage& m) -> ops::OpResult<void> {
              pb::ExportPiece p;
              auto* h = p.mutable_message();
              h->set_uid(m.uid);
              h->set_flags(m.flags);
              for (const auto& k : m.keywords) h->add_keywords(k);
              h->set_internal_date(m.internal_date);
              h->set_size(m.bytes.size());
              if (auto pushed = push(std::move(p)); !pushed) return pushed;
              for (size_t at = 0; at < m.bytes.size(); at += kExportPiece) {
                pb::ExportPiece d;
                d.set_data(m.bytes.substr(at, kExportPiece));
                if (auto pushed = push(std::move(d)); !pushed) return pushed;
              }
              return {};
            });
        if (!done) failed = done.error();
        return {};
      });
      if (!r) status = to_status(r.error());
      else if (failed) status = to_status(*failed);
      std::lock_guard lock(mu_);
      status_ = status;
      worker_done_ = true;
      pump();
    });
  }

  void OnWriteDone(bool ok) override {
    std::lock_guard lock(mu_);
    writing_ = false;
    if (!ok) stop_locked();
    pump();
  }
  void OnCancel() override {
    std::lock_guard lock(mu_);
    stop_locked();
  }
  void OnDone() override {
    if (worker_.joinable()) worker_.join();
    delete this;
  }

 private:
  ops::OpResult<void> push(pb::ExportPiece piece) {
    std::unique_lock lock(mu_);
    room_.wait(lock, [&] { return stopped_ || queue_.size() < kExportQueue; });
    if (stopped_) return tl::unexpected(OpError{OpCode::TempFail, "export client went away"});
    queue_.push_back(std::move(piece));
    pump();
    return {};
  }
  void stop_locked() {
    stopped_ = true;
    queue_.clear();
    room_.notify_all();
  }
  // Under mu_ (recursive: StartWrite may complete on this thread).
  void pump() {
    if (writing_ || finished_) return;
    if (!queue_.empty() && !stopped_) {
      current_ = std::move(queue_.front());
      queue_.pop_front();
      room_.notify_all();
      writing_ = true;
      StartWrite(&current_);
      return;
    }
    if (worker_done_) {
      finished_ = true;
      Finish(stopped_ && status_.ok() ? grpc::Status(grpc::StatusCode::CANCELLED, "export client went away") : status_);
    }
  }

  std::recursive_mutex mu_;
  std::condition_variable_any room_;
  std::deque<pb::ExportPiece> queue_;
  pb::ExportPiece current_;
  bool writing_ = false, stopped_ = false, worker_done_ = false, finished_ = false;
  grpc::Status status_;
  std::thread worker_;  // last: started once the rest exists
};

// A refused export: the status, and nothing else.
class RefusedExport final : public grpc::ServerWriteReactor<pb::ExportPiece> {
 public:
  explicit RefusedExport(grpc::Status status) { Finish(std::move(status)); }
  void OnDone() override { delete this; }
};

}  // namespace

grpc::ServerWriteReactor<pb::ExportPiece>* StoreAdminGrpc::Impl::Export(grpc::CallbackServerContext* context,
                                                                        const pb::ExportRequest* request) {
  if (auto no = refused(context, "Export")) return new RefusedExport(*no);
  return new ExportReactor(store, request->user(), request->mailbox());
}

StoreAdminGrpc::StoreAdminGrpc(MessageStore& store, AdminOptions options)
    : impl_(std::make_unique<Impl>(store, std::move(options))) {}

StoreAdminGrpc::~StoreAdminGrpc() = default;

void StoreAdminGrpc::register_with(common::rpc::GrpcRegistry& registry) {
  impl_->registry = &registry;
  // The message limits are MailStore's (registered beside it): an import request stays under its
  // 4 MiB receive limit, an export reply under its send limit (kExportPiece).
  registry.add<pb::StoreAdmin>(*impl_);
}

}  // namespace store::admin
