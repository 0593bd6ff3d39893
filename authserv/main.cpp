// main.cpp: postern-authserv, the authentication and directory daemon (gRPC over mTLS).
#include "authserv/service/app.hpp"

int main(int argc, char** argv) {
  return common::daemon::run_daemon(argc, argv,
                                    {"authserv", "Postern authentication and directory service", "127.0.0.1:9105",
                                     authserv::service::make_app});
}
