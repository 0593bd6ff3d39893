// resolver_thread.cpp: the loop thread behind ResolverThread; every Resolver call is posted to it.
#include "common/dns/resolver_thread.hpp"

#include <chrono>

namespace common::dns {

Result<std::unique_ptr<ResolverThread>> ResolverThread::start(ResolverOptions options) {
  std::unique_ptr<ResolverThread> t(new ResolverThread());
  // Created here, before the thread exists, so no call can race the loop thread on them.
  auto resolver = Resolver::create(t->loop_.get(), std::move(options));
  if (!resolver) return tl::unexpected(resolver.error());
  t->resolver_ = std::move(*resolver);
  t->keep_alive_ = std::make_unique<runtime::Timer>(t->loop_.get());
  t->keep_alive_->start(std::chrono::hours(1), [] {}, std::chrono::hours(1));
  t->thread_ = std::thread([raw = t.get()] { raw->loop_.run(); });
  return t;
}

ResolverThread::~ResolverThread() {
  // The Resolver and the timer belong to the loop thread: close them there, then let run() return.
  loop_.post([this] {
    resolver_.reset();  // in-flight callbacks run now, with TempFail
    keep_alive_.reset();
    loop_.stop();
  });
  if (thread_.joinable()) thread_.join();
}

void ResolverThread::verify_reverse(const net::IpAddress& address, Resolver::ReverseCallback cb) {
  loop_.post([this, address, cb = std::move(cb)]() mutable {
    if (!resolver_) return cb(ReverseResult{ReverseResult::Kind::TempFail, {}});
    resolver_->verify_reverse(address, std::move(cb));
  });
}

}  // namespace common::dns
