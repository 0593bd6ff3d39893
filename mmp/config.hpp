// config.hpp: the mmp's own configuration: [mmp] (names, DefaultDomain, RestrictPlainPasswords),
// [imap] (the parser's limits, the error limit), [authserv] (common/authclient) and [stores]
// (how to reach each mailHost's MailStore API, mmp/store_client).
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "common/authclient/authclient.hpp"
#include "common/config/config.hpp"
#include "mmp/imap/grammar.hpp"
#include "mmp/store_client/store_client.hpp"

namespace mmp {

struct MmpConfig {
  std::string host_name;       // in the greeting and the logs; default: the host name
  // Appended to a login name without "@" (LOGIN, AUTHENTICATE PLAIN's authcid), as the Sun
  // MMP's DefaultDomain; empty: authserv's own default domain decides.
  std::string default_domain;
  // No password may cross the wire in plaintext: before TLS the capabilities say LOGINDISABLED
  // and no AUTH=, and LOGIN / AUTHENTICATE are refused (RFC 9051 §6.2.3, the Sun MMP's
  // RestrictPlainPasswords). Off only for a listener of clients that cannot do TLS.
  bool restrict_plain_passwords = true;
};

// A virtual domain (the Sun MMP's vdmap.cfg: one per server address): a [[listener]] on the
// domain's address, or a [[listener.sni]] name that asks for its certificate, carries its own
// default_domain and restrict_plain_passwords; what it leaves out comes from [mmp].
struct ListenerSettings {
  std::optional<std::string> default_domain;
  std::optional<bool> restrict_plain_passwords;
  // [[listener.sni]] name (lowercased; "*.example.org" matches one label) -> its default_domain.
  std::vector<std::pair<std::string, std::optional<std::string>>> sni_domains;

  // The listener's settings with [mmp]'s where it has none (the listeners are read before [mmp]).
  ListenerSettings resolved(const MmpConfig& defaults) const;
  // The default_domain for a name the client sent by SNI; null when no entry names it.
  const std::string* sni_domain(std::string_view server_name) const;
};

struct ImapConfig {
  mmp::imap::ParserLimits limits;  // max_line, max_literal, max_message (APPENDLIMIT), max_depth ...
  size_t max_errors = 20;          // protocol errors and failed logins, then BYE and close
};

struct Config {
  MmpConfig mmp;
  ImapConfig imap;
  common::authclient::AuthClientOptions authserv;
  store_client::StoreClientOptions stores;
};

void read_config(common::config::Section root, Config& out);
// A [[listener]]'s default_domain and restrict_plain_passwords, and its [[listener.sni]] entries'.
ListenerSettings read_listener_settings(common::config::Section listener);

}  // namespace mmp
