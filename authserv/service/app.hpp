// app.hpp: authserv as a common::daemon app: its config tables, the backend it opens, the gRPC
// server it runs. main.cpp hands this to run_daemon.
#pragma once

#include <memory>

#include "common/daemon/daemon.hpp"

namespace authserv::service {

std::unique_ptr<common::daemon::DaemonApp> make_app();

}  // namespace authserv::service
