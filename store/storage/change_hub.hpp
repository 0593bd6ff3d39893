// change_hub.hpp: what committed writes changed in each mailbox, handed to the Watch streams that
// follow it (IMAP IDLE and NOOP in the mmp). Publishing happens after the commit is on disk, so a
// watcher never sees a change that a crash could take back, and on the hub's own thread, so ten
// thousand watchers of one mailbox never delay the reply to the write (an LMTP 250) behind them.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <thread>
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
    // Called on the hub's thread, never under its lock, once per publish with that mailbox's
    // changes, in commit order. Must not block: queue and return.
    virtual void changed(const std::vector<const MailboxChange*>& changes) = 0;
  };

  ChangeHub();
  ~ChangeHub();  // hands over what was published before it, then stops its thread
  ChangeHub(const ChangeHub&) = delete;
  ChangeHub& operator=(const ChangeHub&) = delete;

  uint64_t subscribe(uint64_t mailbox_id, std::weak_ptr<Watcher> watcher);
  void unsubscribe(uint64_t mailbox_id, uint64_t subscription);
  // Queues one commit's changes for the watchers and returns at once.
  void publish(std::vector<MailboxChange> changes);
  // Returns once everything published before the call has reached its watchers (tests, tools).
  void flush();
  size_t watchers() const;

 private:
  struct Entry {
    uint64_t id;
    std::weak_ptr<Watcher> watcher;
  };
  void run();
  void hand_over(const std::vector<MailboxChange>& changes);

  mutable std::mutex mu_;
  uint64_t next_id_ = 1;
  size_t count_ = 0;
  std::unordered_map<uint64_t, std::vector<Entry>> by_mailbox_;

  std::mutex queue_mu_;
  std::condition_variable queue_cv_;
  std::deque<std::vector<MailboxChange>> queue_;
  uint64_t queued_ = 0, handed_ = 0;  // publishes queued and handed over, for flush()
  bool stopping_ = false;
  std::thread thread_;
};

}  // namespace store
