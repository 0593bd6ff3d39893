// shared_checks.cpp: one hash for identical password attempts in flight at the same time.
#include "authserv/service/shared_checks.hpp"

#include "common/metrics/metrics.hpp"

namespace authserv::service {
namespace {

common::metrics::Counter& shared_counter() {
  static auto& c = common::metrics::default_registry()
                       .counter_family("authserv_password_checks_shared_total",
                                       "password attempts answered by an identical check already being hashed", {})
                       .with({});
  return c;
}

}  // namespace

SharedChecks::SharedChecks(size_t max_waiters) : max_waiters_(max_waiters) {}

SharedChecks::Joined SharedChecks::join(const Tag& tag, Waiter waiter) {
  std::lock_guard lock(mutex_);
  auto it = checks_.find(tag);
  if (it == checks_.end()) {
    checks_.emplace(tag, std::vector<Waiter>{});
    return Joined::Lead;
  }
  if (waiting_ >= max_waiters_) return Joined::Full;
  it->second.push_back(std::move(waiter));
  ++waiting_;
  shared_counter().inc();
  return Joined::Waiting;
}

void SharedChecks::finish(const Tag& tag, const SharedVerdict& verdict) {
  std::vector<Waiter> waiters;
  {
    std::lock_guard lock(mutex_);
    auto it = checks_.find(tag);
    if (it == checks_.end()) return;
    waiters = std::move(it->second);
    checks_.erase(it);
    waiting_ -= waiters.size();
  }
  for (auto& w : waiters) w(verdict);
}

size_t SharedChecks::waiting() const {
  std::lock_guard lock(mutex_);
  return waiting_;
}

size_t SharedChecks::in_progress() const {
  std::lock_guard lock(mutex_);
  return checks_.size();
}

}  // namespace authserv::service
