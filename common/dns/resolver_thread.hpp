// resolver_thread.hpp: a Resolver on its own loop thread, for code that runs on worker or gRPC
// threads rather than on a loop (authserv checks a login's client name with it).
#pragma once

#include <memory>
#include <thread>

#include "common/dns/resolver.hpp"
#include "common/result.hpp"
#include "common/runtime/loop.hpp"
#include "common/runtime/timer.hpp"

namespace common::dns {

class ResolverThread {
 public:
  // Config errors for bad options; Internal when c-ares cannot start.
  static Result<std::unique_ptr<ResolverThread>> start(ResolverOptions options);
  // Cancels what is in flight: those callbacks run with TempFail (on the resolver thread) before
  // the destructor returns, so their owners must outlive this object.
  ~ResolverThread();
  ResolverThread(const ResolverThread&) = delete;
  ResolverThread& operator=(const ResolverThread&) = delete;

  // Thread-safe. `cb` runs exactly once, on the resolver thread: keep it short (hand real work on).
  void verify_reverse(const net::IpAddress& address, Resolver::ReverseCallback cb);

 private:
  ResolverThread() = default;

  runtime::Loop loop_;
  std::unique_ptr<runtime::Timer> keep_alive_;  // Loop::run returns when nothing holds it
  std::unique_ptr<Resolver> resolver_;
  std::thread thread_;
};

}  // namespace common::dns
