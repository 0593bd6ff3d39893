// config.cpp: reading [store], [lmtp], [mailstore] and [authserv] (config.hpp).
#include "store/config.hpp"

#include "common/authclient/config.hpp"
#include "common/net/address.hpp"

namespace store {

void read_config(common::config::Section root, Config& out) {
  using namespace std::chrono_literals;
  auto s = root.section("store");
  s.get("dir", out.store.dir);
  if (out.store.dir.empty()) s.error("dir", "missing: the directory of the store's LMDB environment");
  s.get("names", out.store.names);
  if (out.store.names.empty()) out.store.names.push_back(common::net::local_host_name());
  s.get_size("map_size", out.store.map_size, 1ull << 20, 1ull << 44);
  s.get_duration("delivery_retention", out.store.delivery_retention, std::chrono::seconds(60s),
                 std::chrono::seconds(24h * 30));
  s.get("max_pending_writes", out.store.max_pending_writes, size_t{1}, size_t{1000000});
  // Each batch is one writer transaction that deliveries wait behind, so the upper bounds keep one
  // from holding the writer for long; a batch of 0 would never make progress.
  auto& mt = out.store.maintenance;
  s.get_duration("maintenance_poll", mt.poll, std::chrono::milliseconds(100ms), std::chrono::milliseconds(1h));
  s.get_duration("maintenance_pause", mt.pause, std::chrono::milliseconds(0ms), std::chrono::milliseconds(10s));
  s.get("free_batch_messages", mt.free.messages, size_t{1}, size_t{100000});
  s.get("free_batch_chunks", mt.free.chunks, size_t{1}, size_t{65536});
  // Kept per mailbox, about 40 bytes each; fewer only make more QRESYNC answers the full superset.
  s.get("expunge_history_keep", mt.prune.keep, uint32_t{0}, uint32_t{10000000});
  s.get_duration("expunge_prune_every", mt.prune_every, std::chrono::milliseconds(1s), std::chrono::milliseconds(24h * 7));
  s.get("prune_batch_mailboxes", mt.prune.mailboxes, size_t{1}, size_t{100000});
  s.get("prune_batch_entries", mt.prune.entries, size_t{1}, size_t{100000});

  auto l = root.section("lmtp");
  l.get("allowed_clients", out.lmtp.allowed_clients);
  l.get("plaintext", out.lmtp.plaintext);
  l.get_size("max_message_size", out.lmtp.max_message_size, 1024, 1ull << 32);
  l.get("max_recipients", out.lmtp.max_recipients, size_t{1}, size_t{100000});
  l.get("max_errors", out.lmtp.max_errors, size_t{1}, size_t{1000});
  l.get("subaddress_separator", out.lmtp.subaddress_separator);
  if (out.lmtp.subaddress_separator.size() > 1) l.error("subaddress_separator", "one character, or \"\"");
  if (!out.lmtp.plaintext && out.lmtp.allowed_clients.empty()) {
    l.error("allowed_clients", "missing: the certificate names of the mta hosts that may deliver "
                               "(or plaintext = true where no TLS is wanted)");
  }

  auto m = root.section("mailstore");
  m.get("allowed_clients", out.mailstore.allowed_clients);
  m.get("admins", out.mailstore.admins);
  m.get("admin_clients", out.mailstore.admin_clients);
  m.get("token_keys", out.mailstore.token_keys);
  m.get_duration("token_clock_skew", out.mailstore.token_clock_skew, std::chrono::seconds(0), std::chrono::seconds(600s));
  m.get_size("max_append_size", out.mailstore.max_append_size, 1024, 1ull << 32);
  m.get("max_append_messages", out.mailstore.max_append_messages, size_t{1}, size_t{100000});
  m.get_size("max_append_total", out.mailstore.max_append_total, 1024, 1ull << 34);
  m.get("max_uid_ranges", out.mailstore.max_uid_ranges, size_t{16}, size_t{10000000});
  m.get("max_watch_backlog", out.mailstore.max_watch_backlog, size_t{16}, size_t{10000000});
  m.get("max_watch_subscriptions", out.mailstore.max_watch_subscriptions, size_t{1}, size_t{10000000});
  m.get("max_fetch_messages", out.mailstore.max_fetch_messages, size_t{1}, size_t{10000000});
  m.get_duration("quota_refresh", out.mailstore.quota_refresh, std::chrono::seconds(10s), std::chrono::seconds(24h));
  m.get("read_threads", out.mailstore.read_threads, 0u, 256u);
  m.get("max_queued_reads", out.mailstore.max_queued_reads, size_t{1}, size_t{1000000});
  m.get_size("search_cache_size", out.mailstore.search_cache_size, 0, 1ull << 36);

  common::authclient::read_auth_client_config(root.section("authserv"), out.authserv);
}

}  // namespace store
