// access_admission.hpp: the client access filters at accept time: the pure evaluator of
// common/access, with the reverse DNS it asks for looked up on the loop (never blocking it).
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "common/access/filter.hpp"
#include "common/dns/resolver.hpp"
#include "common/result.hpp"
#include "common/runtime/listener.hpp"

namespace common::daemon {


struct CommonConfig;

using AccessPolicy = std::shared_ptr<const access::AccessFilter>;

// Builds the filter from [access] allow_files/deny_files and the inline allow/deny lists; errors
// name the file, line and column. Warnings (e.g. @netgroup) are logged.
Result<AccessPolicy> load_access_policy(const CommonConfig& config);

class AccessAdmission : public runtime::AdmissionCheck {
 public:
  // resolver may be null (DNS failed to start): name lookups then count as a DNS outage.
  AccessAdmission(AccessPolicy policy, dns::Resolver* resolver);
  // SIGHUP: connections accepted from now on see the new filter.
  void set_policy(AccessPolicy policy) { policy_ = std::move(policy); }
  void check(const runtime::ConnectionInfo& info, std::function<void(runtime::AdmissionCheck::Outcome)> done) override;

 private:
  AccessPolicy policy_;
  dns::Resolver* resolver_;
};

}  // namespace common::daemon
