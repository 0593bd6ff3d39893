// main.cpp: postern-store, the message store daemon (LMTP in over mutual TLS; LMDB).
#include "store/app.hpp"

int main(int argc, char** argv) {
  return common::daemon::run_daemon(argc, argv,
                                    {"store", "Postern message store", "127.0.0.1:9103", store::make_app});
}
