// app.hpp: the store as a DaemonApp for common::daemon::run_daemon: its config, the message store,
// the authserv client and the LMTP listeners.
#pragma once

#include <memory>

#include "common/daemon/daemon.hpp"

namespace store {

std::unique_ptr<common::daemon::DaemonApp> make_app();

}  // namespace store
