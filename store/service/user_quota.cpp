// user_quota.cpp: authserv's quota for the users the MailStore API opens (user_quota.hpp).
#include "store/service/user_quota.hpp"

#include "common/authclient/authclient.hpp"
#include "common/log/log.hpp"
#include "store/storage/message_store.hpp"

namespace store::service {
namespace {

using common::authclient::UserInfo;
using Lookup = common::Result<std::optional<UserInfo>>;

constexpr size_t kMaxRemembered = 200000;

common::authclient::ConnectionFacts store_facts() {
  common::authclient::ConnectionFacts facts;
  facts.service = "imap";
  return facts;
}

}  // namespace

UserQuotas::UserQuotas(MessageStore& store, common::authclient::AuthClient* directory, std::chrono::seconds refresh,
                       PickLoop pick_loop, Offload offload)
    : store_(store),
      directory_(directory),
      refresh_(refresh),
      pick_loop_(std::move(pick_loop)),
      offload_(std::move(offload)) {}

UserQuotas::~UserQuotas() = default;

void UserQuotas::prepare(const std::string& user, Ready ready) {
  auto known = store_.user(user);
  if (!known) return ready(tl::unexpected(QuotaRefused{QuotaRefusal::StoreError, known.error().detail}));
  if (*known || !directory_) {
    if (*known && directory_) refresh_later(user);
    if (!*known) {
      if (auto created = store_.ensure_user(user); !created) {
        return ready(tl::unexpected(QuotaRefused{QuotaRefusal::StoreError, created.error().detail}));
      }
    }
    return ready({});
  }
  {
    std::lock_guard lock(mu_);
    if (asked_.size() >= kMaxRemembered) asked_.clear();
    asked_[user] = std::chrono::steady_clock::now();
  }
  directory_->lookup_user(pick_loop_(), alive_, store_facts(), user, [this, user, ready](Lookup found) {
    if (!found) {
      return ready(tl::unexpected(
          QuotaRefused{QuotaRefusal::DirectoryUnavailable, "directory unavailable: " + found.error().detail}));
    }
    // A token vouches for a login, but a mailbox is made only for a user the directory still has.
    if (!*found || (*found)->status == "deleted") {
      return ready(tl::unexpected(QuotaRefused{QuotaRefusal::UnknownUser, user + " is not in the directory"}));
    }
    const UserQuota quota{(*found)->quota_bytes, (*found)->quota_messages};
    // Creating the record waits for the writer's commit, which the loop must not.
    const bool queued = offload_([this, user, quota, ready] {
      auto created = store_.ensure_user(user, quota);
      if (!created) return ready(tl::unexpected(QuotaRefused{QuotaRefusal::StoreError, created.error().detail}));
      ready({});
    });
    if (!queued) ready(tl::unexpected(QuotaRefused{QuotaRefusal::DirectoryUnavailable, "store busy"}));
  });
}

void UserQuotas::refresh_later(const std::string& user) {
  const auto now = std::chrono::steady_clock::now();
  {
    std::lock_guard lock(mu_);
    auto it = asked_.find(user);
    if (it != asked_.end() && now - it->second < refresh_) return;
    if (asked_.size() >= kMaxRemembered) asked_.clear();
    asked_[user] = now;  // before the answer, so a burst of calls asks once
  }
  common::runtime::Loop& loop = pick_loop_();
  directory_->lookup_user(loop, alive_, store_facts(), user, [this, &loop, user](Lookup found) {
    if (!found) {
      common::log::warning("mailstore").event("quota_refresh_failed").kv("user", user).kv("reason", found.error().detail);
      return;
    }
    if (!*found) return;  // the next first-time check refuses the user; their mail stays
    if (!store_.set_quota(loop, user, UserQuota{(*found)->quota_bytes, (*found)->quota_messages})) {
      common::log::warning("mailstore").event("quota_refresh_failed").kv("user", user).kv("reason", "store writer busy");
    }
  });
}

}  // namespace store::service
