// tls_bench_server.cpp: the benchmark's server: one libuv loop with one implicit-TLS listener from
// common/tls. Each session writes "ok\n" after the handshake (like nginx's stream `return`) and then
// waits; it closes when the client does, so the same server serves the handshake rate and the
// idle-connection memory runs. Prints "listening PORT" once ready; SIGTERM/SIGINT stop it; SIGUSR1
// prints "heap in_use=BYTES connections=N" (malloc's view, to tell live memory from RSS). With
// --echo 1 a session sends back what it reads, so memory after traffic can be measured too; with
// --keep-nss 1 TLS 1.3 records stay in NSS after the handshake (ServerOptions::release_nss_after_handshake).
// Usage: tls_bench_server --db DIR --password FILE [--port 0] [--cert Server-Cert] [--echo 1] [--keep-nss 1]
#include <malloc.h>
#include <signal.h>
#include <sys/resource.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>

#include "common/log/log.hpp"
#include "common/metrics/metrics.hpp"
#include "common/net/address.hpp"
#include "common/runtime/connection.hpp"
#include "common/runtime/listener.hpp"
#include "common/runtime/loop.hpp"
#include "common/tls/nss.hpp"
#include "common/tls/server.hpp"
#include "common/uv_handle.hpp"

namespace {

using namespace common::runtime;

bool g_echo = false;

class OkSession : public Session {
 public:
  explicit OkSession(Connection& c) : Session(c) {}
  void on_open() override { connection().write("ok\n"); }
  void on_data(std::string_view bytes) override {
    if (g_echo) connection().write(bytes);
  }
};

class OkFactory : public SessionFactory {
 public:
  explicit OkFactory(std::shared_ptr<common::tls::ServerContext> tls) : tls_(std::move(tls)) {}
  std::unique_ptr<Session> create(Connection& c) override {
    c.start_implicit_tls(tls_->accept(c.info().id));
    return std::make_unique<OkSession>(c);
  }

 private:
  std::shared_ptr<common::tls::ServerContext> tls_;
};

int usage() {
  std::fprintf(stderr, "usage: tls_bench_server --db DIR --password FILE [--port 0] [--cert Server-Cert] [--echo 1] "
                       "[--keep-nss 1]\n");
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  std::string db, password, cert = "Server-Cert";
  int port = 0;
  bool keep_nss = false;
  for (int i = 1; i + 1 < argc; i += 2) {
    std::string key = argv[i];
    if (key == "--db") {
      db = argv[i + 1];
    } else if (key == "--password") {
      password = argv[i + 1];
    } else if (key == "--port") {
      port = std::atoi(argv[i + 1]);
    } else if (key == "--cert") {
      cert = argv[i + 1];
    } else if (key == "--echo") {
      g_echo = std::atoi(argv[i + 1]) != 0;
    } else if (key == "--keep-nss") {
      keep_nss = std::atoi(argv[i + 1]) != 0;
    } else {
      return usage();
    }
  }
  if (db.empty() || argc % 2 == 0) return usage();
  common::log::Settings settings;
  settings.daemon = "tls_bench_server";
  settings.level = common::log::Level::Warning;
  common::log::configure(settings);
  rlimit nofile{};
  if (getrlimit(RLIMIT_NOFILE, &nofile) == 0) {  // as many descriptors as allowed: thousands of clients
    nofile.rlim_cur = nofile.rlim_max;
    setrlimit(RLIMIT_NOFILE, &nofile);
  }

  int rc = 0;
  {
    auto nss = common::tls::Nss::init({db, password});
    if (!nss) {
      std::fprintf(stderr, "tls_bench_server: %s\n", nss.error().detail.c_str());
      return 1;
    }
    {
      common::tls::ServerOptions options;
      options.certificates = {cert};
      options.release_nss_after_handshake = !keep_nss;
      auto tls = common::tls::ServerContext::create(**nss, options);
      if (!tls) {
        std::fprintf(stderr, "tls_bench_server: %s\n", tls.error().detail.c_str());
        return 1;
      }
      common::metrics::Registry registry;
      Loop loop;
      ConnectionSet connections(loop.get());
      OkFactory factory(*tls);
      auto bound = bind_endpoints({*common::net::Endpoint::parse("127.0.0.1:" + std::to_string(port))}, 1, 4096);
      if (!bound) {
        std::fprintf(stderr, "tls_bench_server: %s\n", bound.error().detail.c_str());
        return 1;
      }
      int real_port = (*bound)[0][0].endpoint.port;
      ListenerOptions lo;
      lo.name = "bench";
      lo.service = "bench";
      lo.backlog = 4096;
      lo.limits.idle_timeout = std::chrono::minutes(10);
      auto stats = std::make_shared<ListenerStats>("bench", registry);
      Listener listener(connections, lo, std::move((*bound)[0][0]), std::make_shared<ConnectionLimiter>(0, 0), stats,
                        factory, nullptr);
      if (!listener.start()) return 1;
      common::UvHandle<uv_signal_t> sigterm, sigint, sigusr1;
      for (auto* h : {&sigterm, &sigint, &sigusr1}) {
        uv_signal_init(loop.get(), h->get());
        h->set_initialized();
        h->get()->data = &loop;
      }
      auto stop = [](uv_signal_t* s, int) { static_cast<Loop*>(s->data)->stop(); };
      uv_signal_start(sigterm.get(), stop, SIGTERM);
      uv_signal_start(sigint.get(), stop, SIGINT);
      sigusr1.get()->data = &connections;
      uv_signal_start(
          sigusr1.get(),
          [](uv_signal_t* s, int) {
            struct mallinfo2 mi = mallinfo2();
            std::printf("heap in_use=%zu connections=%zu\n", mi.uordblks + mi.hblkhd,
                        static_cast<ConnectionSet*>(s->data)->size());
            std::fflush(stdout);
          },
          SIGUSR1);
      std::printf("listening %d\n", real_port);
      std::fflush(stdout);
      loop.run();
      listener.stop();
      connections.abort_all();
    }
    if (auto down = (*nss)->shutdown(); !down) {
      std::fprintf(stderr, "tls_bench_server: %s\n", down.error().detail.c_str());
      rc = 1;
    }
  }
  return rc;
}
