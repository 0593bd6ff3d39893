// change_hub.cpp: the watcher registry of change_hub.hpp.
#include "store/storage/change_hub.hpp"

#include <algorithm>

namespace store {

ChangeHub::ChangeHub() : thread_([this] { run(); }) {}

ChangeHub::~ChangeHub() {
  {
    std::lock_guard lock(queue_mu_);
    stopping_ = true;
    queue_cv_.notify_all();
  }
  thread_.join();
}

uint64_t ChangeHub::subscribe(uint64_t mailbox_id, std::weak_ptr<Watcher> watcher) {
  std::lock_guard lock(mu_);
  const uint64_t id = next_id_++;
  by_mailbox_[mailbox_id].push_back(Entry{id, std::move(watcher)});
  ++count_;
  return id;
}

void ChangeHub::unsubscribe(uint64_t mailbox_id, uint64_t subscription) {
  std::lock_guard lock(mu_);
  auto it = by_mailbox_.find(mailbox_id);
  if (it == by_mailbox_.end()) return;
  auto& list = it->second;
  auto gone = std::remove_if(list.begin(), list.end(), [&](const Entry& e) { return e.id == subscription; });
  count_ -= static_cast<size_t>(list.end() - gone);
  list.erase(gone, list.end());
  if (list.empty()) by_mailbox_.erase(it);
}

void ChangeHub::publish(std::vector<MailboxChange> changes) {
  if (changes.empty()) return;
  std::lock_guard lock(queue_mu_);
  queue_.push_back(std::move(changes));
  ++queued_;
  queue_cv_.notify_all();
}

void ChangeHub::flush() {
  std::unique_lock lock(queue_mu_);
  const uint64_t target = queued_;
  queue_cv_.wait(lock, [&] { return handed_ >= target; });
}

void ChangeHub::run() {
  std::unique_lock lock(queue_mu_);
  for (;;) {
    queue_cv_.wait(lock, [&] { return stopping_ || !queue_.empty(); });
    if (queue_.empty()) return;  // stopping, and everything was handed over
    std::vector<MailboxChange> changes = std::move(queue_.front());
    queue_.pop_front();
    lock.unlock();
    hand_over(changes);
    lock.lock();
    ++handed_;
    queue_cv_.notify_all();
  }
}

// One call per watcher with its mailbox's changes, outside the registry lock. A commit touches a
// few mailboxes, so the changes are grouped by a short linear scan; the watchers of a mailbox can
// be thousands (one per IDLE client), so they are never searched.
void ChangeHub::hand_over(const std::vector<MailboxChange>& changes) {
  std::vector<std::pair<uint64_t, std::vector<const MailboxChange*>>> by_id;
  for (const MailboxChange& change : changes) {
    auto it = std::find_if(by_id.begin(), by_id.end(), [&](const auto& g) { return g.first == change.mailbox_id; });
    if (it == by_id.end()) {
      by_id.emplace_back(change.mailbox_id, std::vector<const MailboxChange*>{});
      it = by_id.end() - 1;
    }
    it->second.push_back(&change);
  }
  for (const auto& [mailbox_id, list] : by_id) {
    std::vector<std::shared_ptr<Watcher>> watchers;
    {
      std::lock_guard lock(mu_);
      auto it = by_mailbox_.find(mailbox_id);
      if (it == by_mailbox_.end()) continue;
      watchers.reserve(it->second.size());
      for (const Entry& e : it->second) {
        if (auto w = e.watcher.lock()) watchers.push_back(std::move(w));
      }
    }
    for (const auto& w : watchers) w->changed(list);
  }
}

size_t ChangeHub::watchers() const {
  std::lock_guard lock(mu_);
  return count_;
}

}  // namespace store
