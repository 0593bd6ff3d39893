// crash_writer.cpp: the child of the queue's crash test: enqueues messages through Queue::enqueue on
// a loop, keeping many in flight, and appends "queue-id key recipients" to a file for each one whose
// completion reported the commit, until the parent kill -9s it.
#include <fcntl.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <functional>
#include <memory>
#include <string>

#include "common/runtime/loop.hpp"
#include "common/runtime/timer.hpp"
#include "mta/queue/queue.hpp"
#include "tests/mta/queue/crash_message.hpp"

using namespace mta::queue;

namespace {

int run(const std::string& dir, const std::string& ack_path, const std::string& prefix) {
  QueueOptions options;
  options.dir = dir;
  options.map_size = size_t{1} << 30;
  auto queue = Queue::open(options);
  if (!queue) {
    std::fprintf(stderr, "open: %s\n", queue.error().detail.c_str());
    return 2;
  }
  const int ack = ::open(ack_path.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0600);
  if (ack < 0) return 2;
  common::runtime::Loop loop;
  common::runtime::Timer guard(loop.get());
  guard.start(std::chrono::seconds(120), [&] { loop.stop(); });  // the parent kills us long before
  auto alive = std::make_shared<int>(0);
  constexpr int kWindow = 32;
  int next = 0;
  std::function<void()> send = [&] {
    const std::string key = prefix + std::to_string(next++);
    const int recipients = 1 + static_cast<int>(key.size() % 3);
    bool ok = (*queue)->enqueue(loop, alive, test::crash_message(key, recipients), [&, key, recipients](common::Result<std::string> r) {
      if (!r) {
        std::fprintf(stderr, "enqueue failed: %s\n", r.error().detail.c_str());
        std::exit(4);
      }
      // One write(2) per line: a kill cannot leave half of it.
      const std::string line = *r + " " + key + " " + std::to_string(recipients) + "\n";
      if (::write(ack, line.data(), line.size()) != static_cast<ssize_t>(line.size())) std::exit(3);
      send();
    });
    if (!ok) {
      std::fprintf(stderr, "queue full\n");
      std::exit(5);
    }
  };
  loop.post([&] {
    for (int i = 0; i < kWindow; ++i) send();
  });
  loop.run();
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc == 5 && std::strcmp(argv[1], "write") == 0) return run(argv[2], argv[3], argv[4]);
  std::fprintf(stderr, "usage: %s write <dir> <ack-file> <key-prefix>\n", argv[0]);
  return 2;
}
