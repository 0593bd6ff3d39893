// config.hpp: the store's own tables, [store], [lmtp] and [mailstore], with their defaults; [authserv] is the
// common client table (common/authclient/config.hpp).
#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

#include "common/authclient/authclient.hpp"
#include "common/config/config.hpp"
#include "store/storage/maintenance.hpp"

namespace store {

struct StoreConfig {
  std::string dir;                   // the LMDB environment (data.mdb), created 0700
  std::vector<std::string> names;    // mailHost values that mean this store; default: the host name
  uint64_t map_size = 64ull << 30;   // LMDB map: the most the store can hold (sparse file)
  std::chrono::seconds delivery_retention{std::chrono::hours(24)};  // how long a delivery id is remembered
  size_t max_pending_writes = 4096;  // group-commit queue; beyond it deliveries get 451
  // The background batches (freeing deleted mailboxes, pruning expunge history): maintenance_poll,
  // maintenance_pause, free_batch_messages, free_batch_chunks, expunge_history_keep,
  // expunge_prune_every, prune_batch_mailboxes, prune_batch_entries.
  MaintenanceOptions maintenance;
};

struct LmtpConfig {
  // Certificate common names of the clients (our mta hosts) that may deliver. Required with TLS.
  std::vector<std::string> allowed_clients;
  bool plaintext = false;            // LMTP without TLS: only where a config says so (warned at start)
  uint64_t max_message_size = 50ull << 20;
  size_t max_recipients = 1000;
  size_t max_errors = 10;
  std::string subaddress_separator = "+";  // "" turns +detail folders off
};

// [mailstore]: the gRPC MailStore API the mmp hosts use ([grpc] has its address and TLS).
struct MailStoreConfig {
  std::vector<std::string> allowed_clients;  // certificate CNs of the mmp hosts
  std::vector<std::string> admins;           // users whose tokens may open any user's mailboxes
  // Certificate CNs of the operators' hosts that may call the StoreAdmin service (postern-storectl
  // --online: every user's mail, no token); empty: nobody.
  std::vector<std::string> admin_clients;
  // authserv's public keys: "ed25519:..." texts or files holding one (authserv writes
  // <key_file>.pub); several while a key is rotated.
  std::vector<std::string> token_keys;
  std::chrono::seconds token_clock_skew{30};
  uint64_t max_append_size = 50ull << 20;
  // MULTIAPPEND (RFC 3502): one Append call's messages, all held until their one commit.
  size_t max_append_messages = 1000;
  uint64_t max_append_total = 100ull << 20;
  size_t max_uid_ranges = 100000;     // ranges in one UID set
  size_t max_watch_backlog = 10000;   // events queued for a Watch client that does not read
  size_t max_watch_subscriptions = 200000;  // open on one WatchMany stream (one per mmp, typically)
  size_t max_fetch_messages = 100000; // messages one Fetch call may name
  // A user's quota is authserv's: asked at the user's first call, then again this often, so a
  // user who never had a delivery is limited too and a changed quota is seen without one.
  std::chrono::seconds quota_refresh{600};
  // Searches and fetches run on this many threads, not gRPC's, so a BODY search over a large
  // mailbox never holds up a STATUS behind it; 0: one per core.
  unsigned read_threads = 0;
  size_t max_queued_reads = 4096;  // beyond it a read is refused with UNAVAILABLE at once
  // Decoded message headers kept for header SEARCHes (store/search/header_cache.hpp), shared by the
  // read threads, least recently used out first; 0: none kept.
  uint64_t search_cache_size = 64ull << 20;
};

struct Config {
  StoreConfig store;
  LmtpConfig lmtp;
  MailStoreConfig mailstore;
  common::authclient::AuthClientOptions authserv;
};

// Problems go into the Document (--check-config shows them).
void read_config(common::config::Section root, Config& out);

}  // namespace store
