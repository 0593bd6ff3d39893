// change_hub.cpp: the watcher registry of change_hub.hpp.
#include "store/storage/change_hub.hpp"

#include <algorithm>

namespace store {

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

void ChangeHub::publish(const std::vector<MailboxChange>& changes) {
  if (changes.empty()) return;
  std::lock_guard ordered(publish_mu_);
  // Each watcher gets its mailbox's changes in one call, outside the registry lock.
  std::vector<std::pair<std::shared_ptr<Watcher>, std::vector<const MailboxChange*>>> calls;
  {
    std::lock_guard lock(mu_);
    for (const MailboxChange& change : changes) {
      auto it = by_mailbox_.find(change.mailbox_id);
      if (it == by_mailbox_.end()) continue;
      for (const Entry& e : it->second) {
        auto watcher = e.watcher.lock();
        if (!watcher) continue;
        auto call = std::find_if(calls.begin(), calls.end(), [&](const auto& c) { return c.first == watcher; });
        if (call == calls.end()) {
          calls.emplace_back(std::move(watcher), std::vector<const MailboxChange*>{});
          call = calls.end() - 1;
        }
        call->second.push_back(&change);
      }
    }
  }
  for (auto& [watcher, list] : calls) watcher->changed(list);
}

size_t ChangeHub::watchers() const {
  std::lock_guard lock(mu_);
  return count_;
}

}  // namespace store
