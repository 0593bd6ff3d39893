// app.hpp: the mmp as a DaemonApp for common::daemon::run_daemon: its config, the authserv client,
// the stores' client and the IMAP listeners (143 with STARTTLS, 993 implicit TLS).
#pragma once

#include <memory>

#include "common/daemon/daemon.hpp"

namespace mmp {

std::unique_ptr<common::daemon::DaemonApp> make_app();

}  // namespace mmp
