// convert.hpp: between the MailStore proto messages and the store's operations (store::ops):
// UID sets under the request limits, flags, operation errors as gRPC statuses, FETCH replies and
// Watch events. Used by grpc_service.cpp only.
#pragma once

#include <grpcpp/support/status.h>

#include <cstdint>
#include <deque>
#include <string>
#include <vector>

#include "proto/mailstore.pb.h"
#include "store/search/program.hpp"
#include "store/storage/change_hub.hpp"
#include "store/storage/mailbox_ops.hpp"

namespace store::service {

namespace pb = postern::mailstore::v1;
using Ranges = google::protobuf::RepeatedPtrField<pb::UidRange>;
using Strings = google::protobuf::RepeatedPtrField<std::string>;

template <class T>
using Checked = tl::expected<T, grpc::Status>;

// The status a front end reads: NOT_FOUND, ALREADY_EXISTS, INVALID_ARGUMENT, FAILED_PRECONDITION,
// RESOURCE_EXHAUSTED, UNAVAILABLE (retry later), INTERNAL (logged here with its detail).
grpc::Status to_status(const ops::OpError& e);
grpc::Status to_status(const common::Error& e);

// More than `max_ranges` ranges, a UID 0 or first > last: INVALID_ARGUMENT naming the problem.
Checked<ops::UidSet> to_uid_set(const Ranges& ranges, size_t max_ranges);
void add_ranges(const ops::UidSet& set, Ranges& out);
Checked<ops::FlagSet> to_flag_set(const Strings& names);
void add_flags(uint32_t bits, const std::vector<std::string>& keywords, Strings& out);
ops::MailboxRef to_ref(const pb::MailboxRef& ref);

// A search program as the proto carries it (the kinds share their numbers); store::search::validate
// checks it before anything runs.
search::Program to_program(const google::protobuf::RepeatedPtrField<pb::SearchKey>& keys);

void to_proto(const MailboxRecord& m, pb::MailboxStatus& out);
void to_proto(const ops::ListEntry& e, pb::MailboxEntry& out);
void to_proto(const ops::MessageState& m, pb::FlagUpdate& out);

// A section larger than this goes in several pieces, each in an entry of its own.
inline constexpr size_t kSectionPiece = 1 << 20;

// The entries of one message of a Fetch (several when a section is larger than kSectionPiece), in
// the order they are sent; nothing when the message is gone. fetch.cpp packs them into replies.
Checked<void> fetch_message(const common::lmdb::Txn& txn, const Dbs& dbs, const MessageInfo& message,
                            const pb::FetchRequest& request, std::deque<pb::FetchedMessage>& out);

// For the watchers: the changes an operation committed.
MailboxChange added(uint64_t mailbox_id, const ops::MessageState& m);
MailboxChange flags_changed(uint64_t mailbox_id, const ops::MessageState& m);
MailboxChange expunged(uint64_t mailbox_id, const ops::UidSet& uids, uint64_t modseq);
MailboxChange gone(uint64_t mailbox_id);
pb::WatchEvent to_event(const MailboxChange& change);
// A Watch's catch-up: what changed after `since`, as flag updates (with current flags) and one
// expunge of the vanished UIDs.
void to_events(const ops::ChangesResult& changes, std::vector<pb::WatchEvent>& out);

}  // namespace store::service
