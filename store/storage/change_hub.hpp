// change_hub.hpp: what committed writes changed in each mailbox, handed to the Watch streams that
// follow it (IMAP IDLE and NOOP in the mmp). Publishing happens after the commit is on disk, so a
// watcher never sees a change that a crash could take back.
#pragma once

#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

namespace store {

struct MailboxChange {
  enum class Kind { Added, Flags, Expunged, Gone };
  Kind kind = Kind::Added;
  uint64_t mailbox_id = 0;
  uint64_t modseq = 0;
  uint32_t uid = 0;                                 // Added, Flags
  uint32_t flags = 0;                               // Added, Flags: the system flag bits
  std::vector<std::string> keywords;                // Added, Flags
  std::vector<std::pair<uint32_t, uint32_t>> uids;  // Expunged: ascending inclusive ranges
};

// Thread-safe. A watcher is held weakly: one that went away is dropped at the next publish.
class ChangeHub {
 public:
  class Watcher {
   public:
    virtual ~Watcher() = default;
    // Called on the publishing thread (the writer's completion), never under the hub's lock, in
    // commit order for any one mailbox. Must not block: queue and return.
    virtual void changed(const std::vector<const MailboxChange*>& changes) = 0;
  };

  uint64_t subscribe(uint64_t mailbox_id, std::weak_ptr<Watcher> watcher);
  void unsubscribe(uint64_t mailbox_id, uint64_t subscription);
  void publish(const std::vector<MailboxChange>& changes);
  size_t watchers() const;

 private:
  struct Entry {
    uint64_t id;
    std::weak_ptr<Watcher> watcher;
  };
  mutable std::mutex mu_;
  // Publishing holds this too, so two commits' changes reach a watcher in commit order.
  std::mutex publish_mu_;
  uint64_t next_id_ = 1;
  size_t count_ = 0;
  std::unordered_map<uint64_t, std::vector<Entry>> by_mailbox_;
};

}  // namespace store
