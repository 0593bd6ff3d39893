// main.cpp: postern-mmp, the Messaging Multiplexor (IMAP for mail clients, served from the stores).
#include "mmp/app.hpp"

int main(int argc, char** argv) {
  return common::daemon::run_daemon(argc, argv,
                                    {"mmp", "Postern messaging multiplexor", "127.0.0.1:9104", mmp::make_app});
}
