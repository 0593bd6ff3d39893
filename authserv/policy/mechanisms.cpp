// mechanisms.cpp: SASL mechanism selection over the flags of authserv/sasl's table, so a new
// mechanism brings its TLS and channel-binding needs with it.
#include "authserv/policy/mechanisms.hpp"

#include <algorithm>

#include "authserv/sasl/sasl.hpp"
#include "common/ascii.hpp"

namespace authserv::policy {

namespace {

const sasl::MechanismInfo* find_mechanism(std::string_view name) {
  for (const auto& m : sasl::mechanisms()) {
    if (common::ascii::iequals(m.name, name)) return &m;
  }
  return nullptr;
}

bool is_bearer(std::string_view name) {
  return common::ascii::iequals(name, "OAUTHBEARER") || common::ascii::iequals(name, "XOAUTH2");
}

}  // namespace

MechanismCheck mechanism_allowed(std::string_view name, const MechanismPolicy& policy, const ConnectionState& state) {
  const auto* info = find_mechanism(name);
  if (!info) return {false, "unknown_mechanism"};
  if (!policy.mech_list.empty() &&
      std::none_of(policy.mech_list.begin(), policy.mech_list.end(),
                   [&](const std::string& m) { return common::ascii::iequals(m, info->name); }))
    return {false, "not_enabled"};
  if (info->plaintext) {
    if (!state.under_tls && !policy.allow_plaintext_without_tls) return {false, "needs_tls"};
    if (state.under_tls && state.tls_version < policy.plaintext_min_tls_version) return {false, "tls_too_old"};
  }
  // Binding and certificates only exist under TLS; the state's flags are trusted as a set.
  if (info->needs_channel_binding && !(state.under_tls && state.channel_binding))
    return {false, "needs_channel_binding"};
  if (info->needs_tls_identity && !(state.under_tls && state.verified_client_certificate))
    return {false, "needs_client_certificate"};
  if (is_bearer(info->name) && !policy.token_issuers_configured) return {false, "no_token_issuers"};
  return {true, "ok"};
}

std::vector<std::string> mechanisms_for(const MechanismPolicy& policy, const ConnectionState& state) {
  std::vector<std::string> out;
  auto consider = [&](std::string_view name) {
    if (mechanism_allowed(name, policy, state).allowed) out.emplace_back(find_mechanism(name)->name);
  };
  if (policy.mech_list.empty()) {
    for (const auto& m : sasl::mechanisms()) consider(m.name);
  } else {
    for (const auto& m : policy.mech_list) consider(m);
  }
  return out;
}

common::Result<std::vector<std::string>> parse_mech_list(std::string_view text) {
  std::vector<std::string> out;
  while (!text.empty()) {
    auto start = text.find_first_not_of(" \t");
    if (start == std::string_view::npos) break;
    text.remove_prefix(start);
    auto word = text.substr(0, text.find_first_of(" \t"));
    text.remove_prefix(word.size());
    const auto* info = find_mechanism(word);
    if (!info) return common::fail(common::ErrorKind::Config, "mech_list: unknown mechanism '" + std::string(word) + "'");
    if (std::find(out.begin(), out.end(), info->name) != out.end())
      return common::fail(common::ErrorKind::Config, "mech_list: '" + std::string(info->name) + "' listed twice");
    out.emplace_back(info->name);
  }
  return out;
}

}  // namespace authserv::policy
