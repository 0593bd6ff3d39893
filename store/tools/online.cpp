// online.cpp: the online target over the store's StoreAdmin service (online.hpp).
#include "store/tools/online.hpp"

#include <grpcpp/grpcpp.h>

#include "proto/storeadmin.grpc.pb.h"

namespace store::tools {
namespace {

namespace pb = postern::storeadmin::v1;
using ops::OpCode;

constexpr size_t kPiece = 1u << 20;            // bytes of a message per ImportMessage
constexpr size_t kRequestBytes = 3u << 20;     // under the store's 4 MiB receive limit
constexpr auto kCallTimeout = std::chrono::minutes(30);  // verify --repair or a big batch on a busy store

OpError from_status(const grpc::Status& s, const std::string& target) {
  OpCode code = OpCode::Internal;
  switch (s.error_code()) {
    case grpc::StatusCode::NOT_FOUND: code = OpCode::NotFound; break;
    case grpc::StatusCode::ALREADY_EXISTS: code = OpCode::AlreadyExists; break;
    case grpc::StatusCode::INVALID_ARGUMENT: code = OpCode::InvalidArgument; break;
    case grpc::StatusCode::FAILED_PRECONDITION: code = OpCode::FailedPrecondition; break;
    case grpc::StatusCode::RESOURCE_EXHAUSTED: code = OpCode::ResourceExhausted; break;
    case grpc::StatusCode::UNAVAILABLE: code = OpCode::TempFail; break;
    default: break;
  }
  std::string what = s.error_code() == grpc::StatusCode::PERMISSION_DENIED ? "refused: " : "";
  return OpError{code, "store " + target + ": " + what + s.error_message()};
}

UserRecord from_proto(const pb::UserRecord& r) {
  UserRecord out;
  out.id = r.id();
  out.created = r.created();
  out.bytes_used = r.bytes_used();
  out.messages = r.messages();
  out.quota_bytes = r.quota_bytes();
  out.quota_messages = r.quota_messages();
  return out;
}

}  // namespace

struct OnlineTarget::Impl {
  OnlineOptions options;
  std::unique_ptr<pb::StoreAdmin::Stub> stub;
  std::map<std::string, uint64_t> imports;  // mailbox -> the store's import id

  void prepare(grpc::ClientContext& context) const {
    context.set_deadline(std::chrono::system_clock::now() + kCallTimeout);
  }
  tl::unexpected<OpError> fail(const grpc::Status& s) const { return tl::unexpected(from_status(s, options.target)); }
};

OnlineTarget::OnlineTarget(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
OnlineTarget::~OnlineTarget() = default;

OpResult<std::unique_ptr<OnlineTarget>> OnlineTarget::open(const OnlineOptions& options) {
  auto credentials = common::rpc::channel_credentials(options.mtls);
  if (!credentials) return tl::unexpected(OpError{OpCode::Internal, credentials.error().detail});
  grpc::ChannelArguments args;
  args.SetMaxReceiveMessageSize(8 << 20);  // the store's send limit
  args.SetMaxSendMessageSize(4 << 20);
  auto impl = std::make_unique<Impl>();
  impl->options = options;
  impl->stub = pb::StoreAdmin::NewStub(grpc::CreateCustomChannel(options.target, *credentials, args));
  return std::unique_ptr<OnlineTarget>(new OnlineTarget(std::move(impl)));
}

std::string OnlineTarget::describe() const { return "online " + impl_->options.target; }

OpResult<UserRecord> OnlineTarget::create_user(std::string_view user) {
  grpc::ClientContext context;
  impl_->prepare(context);
  pb::UserRequest request;
  request.set_user(std::string(user));
  pb::UserRecord reply;
  if (auto s = impl_->stub->CreateUser(&context, request, &reply); !s.ok()) return impl_->fail(s);
  return from_proto(reply);
}

OpResult<void> OnlineTarget::rename_user(std::string_view from, std::string_view to) {
  grpc::ClientContext context;
  impl_->prepare(context);
  pb::RenameUserRequest request;
  request.set_from(std::string(from));
  request.set_to(std::string(to));
  pb::Done reply;
  if (auto s = impl_->stub->RenameUser(&context, request, &reply); !s.ok()) return impl_->fail(s);
  return {};
}

OpResult<ops::DeletedUser> OnlineTarget::delete_user(std::string_view user) {
  grpc::ClientContext context;
  impl_->prepare(context);
  pb::UserRequest request;
  request.set_user(std::string(user));
  pb::DeleteUserReply reply;
  if (auto s = impl_->stub->DeleteUser(&context, request, &reply); !s.ok()) return impl_->fail(s);
  ops::DeletedUser out;
  for (const auto& m : reply.mailboxes()) {
    ops::DeletedMailbox d;
    d.name = m.name();
    d.expunged = static_cast<uint32_t>(m.expunged());
    out.mailboxes.push_back(std::move(d));
  }
  out.subscriptions = reply.subscriptions();
  return out;
}

OpResult<std::vector<UserUsage>> OnlineTarget::usage(std::optional<std::string_view> user) {
  grpc::ClientContext context;
  impl_->prepare(context);
  pb::UsageRequest request;
  if (user) request.set_user(std::string(*user));
  pb::UsageReply reply;
  if (auto s = impl_->stub->Usage(&context, request, &reply); !s.ok()) return impl_->fail(s);
  std::vector<UserUsage> out;
  for (const auto& u : reply.users()) {
    UserUsage usage{u.user(), from_proto(u.record()), {}};
    for (const auto& b : u.mailboxes()) {
      MailboxRecord r;
      r.id = b.id();
      r.uidvalidity = b.uidvalidity();
      r.uidnext = b.uidnext();
      r.highestmodseq = b.highest_modseq();
      r.messages = b.messages();
      r.unseen = b.unseen();
      r.bytes = b.bytes();
      r.special_use = b.special_use();
      r.created = b.created();
      usage.mailboxes.push_back(MailboxUsage{b.name(), r, b.subscribed()});
    }
    out.push_back(std::move(usage));
  }
  return out;
}

OpResult<ops::VerifyReport> OnlineTarget::verify(bool repair) {
  grpc::ClientContext context;
  impl_->prepare(context);
  pb::VerifyRequest request;
  request.set_repair(repair);
  pb::VerifyReply reply;
  if (auto s = impl_->stub->Verify(&context, request, &reply); !s.ok()) return impl_->fail(s);
  ops::VerifyReport out;
  out.users = reply.users();
  out.mailboxes = reply.mailboxes();
  out.messages = reply.messages();
  out.bodies = reply.bodies();
  out.chunks = reply.chunks();
  out.problems = reply.problems();
  out.repaired = reply.repaired();
  out.unrepairable = reply.unrepairable();
  out.details.assign(reply.details().begin(), reply.details().end());
  return out;
}

OpResult<void> OnlineTarget::export_mailbox(std::string_view user, std::string_view mailbox,
                                            const std::function<OpResult<void>(const ExportedMailbox&)>& begin,
                                            const std::function<OpResult<void>(const ExportedMessage&)>& message) {
  grpc::ClientContext context;  // no deadline: a big mailbox streams for as long as it takes
  pb::ExportRequest request;
  request.set_user(std::string(user));
  request.set_mailbox(std::string(mailbox));
  auto reader = impl_->stub->Export(&context, request);
  pb::ExportPiece piece;
  bool begun = false;
  std::optional<ExportedMessage> current;
  uint64_t expected = 0;
  auto protocol = [&](const std::string& why) -> OpResult<void> {
    context.TryCancel();
    reader->Finish();
    return tl::unexpected(OpError{OpCode::Internal, "store " + impl_->options.target + ": export: " + why});
  };
  auto deliver = [&]() -> OpResult<void> {
    if (!current) return {};
    if (current->bytes.size() != expected) return protocol("message UID " + std::to_string(current->uid) + " cut short");
    auto sent = message(*current);
    current.reset();
    return sent;
  };
  while (reader->Read(&piece)) {
    if (piece.has_mailbox()) {
      if (begun) return protocol("a second mailbox");
      begun = true;
      const auto& m = piece.mailbox();
      if (auto b = begin(ExportedMailbox{m.name(), m.uidvalidity(), m.uidnext(), m.messages()}); !b) {
        context.TryCancel();
        reader->Finish();
        return b;
      }
    } else if (piece.has_message()) {
      if (!begun) return protocol("a message before the mailbox");
      if (auto d = deliver(); !d) {
        context.TryCancel();
        reader->Finish();
        return d;
      }
      const auto& h = piece.message();
      current = ExportedMessage{h.uid(), h.flags(), {h.keywords().begin(), h.keywords().end()}, h.internal_date(), {}};
      expected = h.size();
      current->bytes.reserve(expected);
    } else if (piece.piece_case() == pb::ExportPiece::kData) {
      if (!current || current->bytes.size() + piece.data().size() > expected) return protocol("bytes out of place");
      current->bytes += piece.data();
    }
  }
  auto status = reader->Finish();
  if (!status.ok()) return impl_->fail(status);
  if (!begun) return tl::unexpected(OpError{OpCode::Internal, "store " + impl_->options.target + ": empty export"});
  return deliver();
}

OpResult<ImportStart> OnlineTarget::begin_import(std::string_view user, std::string_view mailbox,
                                                 uint32_t source_uidvalidity) {
  grpc::ClientContext context;
  impl_->prepare(context);
  pb::BeginImportRequest request;
  request.set_user(std::string(user));
  request.set_mailbox(std::string(mailbox));
  request.set_source_uidvalidity(source_uidvalidity);
  request.set_idle_seconds(impl_->options.import_idle_seconds);
  pb::BeginImportReply reply;
  if (auto s = impl_->stub->BeginImport(&context, request, &reply); !s.ok()) return impl_->fail(s);
  ImportStart out;
  out.mailbox = reply.mailbox();
  out.created = reply.created();
  out.keep_uids = reply.keep_uids();
  out.uidvalidity = reply.uidvalidity();
  out.uidnext = reply.uidnext();
  impl_->imports[out.mailbox] = reply.import_id();
  return out;
}

// The batch in requests under the store's receive limit, a big message in pieces; the last
// request commits it all in one write.
OpResult<ImportBatchResult> OnlineTarget::import_batch(std::string_view, const ImportStart& start,
                                                       std::vector<ImportMessage>&& batch) {
  auto id = impl_->imports.find(start.mailbox);
  if (id == impl_->imports.end()) return tl::unexpected(OpError{OpCode::Internal, "import_batch before begin_import"});
  pb::ImportBatchRequest request;
  size_t request_bytes = 0;
  auto send = [&](bool commit) -> OpResult<ImportBatchResult> {
    grpc::ClientContext context;
    impl_->prepare(context);
    request.set_import_id(id->second);
    request.set_commit(commit);
    pb::ImportBatchReply reply;
    auto s = impl_->stub->ImportBatch(&context, request, &reply);
    request.Clear();
    request_bytes = 0;
    if (!s.ok()) return impl_->fail(s);
    return ImportBatchResult{reply.imported(), reply.skipped(), reply.first_uid(), reply.last_uid()};
  };
  for (auto& m : batch) {
    size_t at = 0;
    do {
      const size_t n = std::min(kPiece, m.bytes.size() - at);
      if (request_bytes + n > kRequestBytes && request.messages_size() > 0) {
        if (auto sent = send(false); !sent) return sent;
      }
      auto* out = request.add_messages();
      if (at == 0) {
        out->set_uid(m.uid);
        out->set_flags(m.flags);
        for (const auto& k : m.keywords) out->add_keywords(k);
        out->set_internal_date(m.internal_date);
        out->set_source(m.source);
      }
      out->set_data(m.bytes.substr(at, n));
      at += n;
      out->set_more(at < m.bytes.size());
      request_bytes += n + 256;
    } while (at < m.bytes.size());
    std::string().swap(m.bytes);
  }
  return send(true);
}

OpResult<void> OnlineTarget::finish_import(std::string_view, const ImportStart& start, uint32_t source_uidnext) {
  auto id = impl_->imports.find(start.mailbox);
  if (id == impl_->imports.end()) return tl::unexpected(OpError{OpCode::Internal, "finish_import before begin_import"});
  grpc::ClientContext context;
  impl_->prepare(context);
  pb::FinishImportRequest request;
  request.set_import_id(id->second);
  request.set_source_uidnext(source_uidnext);
  pb::Done reply;
  auto s = impl_->stub->FinishImport(&context, request, &reply);
  impl_->imports.erase(id);
  if (!s.ok()) return impl_->fail(s);
  return {};
}

OpResult<void> OnlineTarget::subscribe(std::string_view user, const std::vector<std::string>& mailboxes) {
  grpc::ClientContext context;
  impl_->prepare(context);
  pb::SubscribeRequest request;
  request.set_user(std::string(user));
  for (const auto& m : mailboxes) request.add_mailboxes(m);
  pb::Done reply;
  if (auto s = impl_->stub->Subscribe(&context, request, &reply); !s.ok()) return impl_->fail(s);
  return {};
}

}  // namespace store::tools
