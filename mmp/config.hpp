// config.hpp: the mmp's own configuration: [mmp] (names, DefaultDomain, RestrictPlainPasswords),
// [imap] (the parser's limits, the error limit), [authserv] (common/authclient) and [stores]
// (how to reach each mailHost's MailStore API, mmp/store_client).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

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

}  // namespace mmp
