// user_quota.hpp: the quota of each user the MailStore API opens, from authserv, which holds it in
// the directory (a delivery brings it too). Asked before a new user's record is made, so a user who
// never had a delivery is limited on APPEND and COPY as well, and asked again every `refresh`, so a
// changed quota is seen without waiting for mail.
#pragma once

#include <chrono>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_map>

#include "common/result.hpp"

namespace common::authclient {
class AuthClient;
}
namespace common::runtime {
class Loop;
}
namespace store {
class MessageStore;
}

namespace store::service {

enum class QuotaRefusal { DirectoryUnavailable, UnknownUser, StoreError };
using QuotaRefused = std::pair<QuotaRefusal, std::string>;

class UserQuotas {
 public:
  using PickLoop = std::function<common::runtime::Loop&()>;
  // Runs work on a thread that may block (the read pool); false when it cannot take more.
  using Offload = std::function<bool(std::function<void()>)>;
  using Ready = std::function<void(tl::expected<void, QuotaRefused>)>;
  // `directory` null: no quota is asked for (a store run without authserv, in tests of the service).
  UserQuotas(MessageStore& store, common::authclient::AuthClient* directory, std::chrono::seconds refresh,
             PickLoop pick_loop, Offload offload);
  ~UserQuotas();
  UserQuotas(const UserQuotas&) = delete;
  UserQuotas& operator=(const UserQuotas&) = delete;

  // Before a call for `user`: when `ready` runs, their record exists. For a user this store has
  // seen, `ready` runs at once on this thread (and a due refresh starts without being waited for);
  // for a new one, once authserv answered and the record is written, on an `offload` thread. The
  // answer is never waited for on the calling thread: a gRPC handler thread blocked on a gRPC call
  // can starve the polling that call needs.
  void prepare(const std::string& user, Ready ready);

 private:
  void refresh_later(const std::string& user);

  MessageStore& store_;
  common::authclient::AuthClient* directory_;
  std::chrono::seconds refresh_;
  PickLoop pick_loop_;
  Offload offload_;
  std::shared_ptr<int> alive_ = std::make_shared<int>(0);
  std::mutex mu_;
  // When each user's quota was last asked for; emptied when it grows past a bound (each user is
  // then asked again once), so a store serving millions of users keeps it small.
  std::unordered_map<std::string, std::chrono::steady_clock::time_point> asked_;
};

}  // namespace store::service
