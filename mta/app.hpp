// app.hpp: the mta as a DaemonApp for common::daemon::run_daemon: its config, the queue, the authserv
// client, the SMTP listeners (25, 587, 465) and the delivery of what they queue.
#pragma once

#include <memory>

#include "common/daemon/daemon.hpp"

namespace mta {

std::unique_ptr<common::daemon::DaemonApp> make_app();

}  // namespace mta
