// main.cpp: postern-mta, the SMTP relay and submission daemon (25, 587, 465; durable queue; LMTP to
// the stores, SMTP to the Internet).
#include "mta/app.hpp"

int main(int argc, char** argv) {
  return common::daemon::run_daemon(argc, argv,
                                    {"mta", "Postern SMTP relay and submission", "127.0.0.1:9102", mta::make_app});
}
