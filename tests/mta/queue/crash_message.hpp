// crash_message.hpp: the message the queue's crash-test child enqueues for a key, so the parent can
// rebuild it and compare what is stored byte for byte.
#pragma once

#include <string>

#include "mta/queue/ops.hpp"
#include "tests/common/lmdb/crash_value.hpp"

namespace test {

inline mta::queue::Message crash_message(const std::string& key, int recipients) {
  mta::queue::Message m;
  m.envelope.reverse_path = "sender-" + key + "@example.org";
  m.envelope.client.address = "127.0.0.1:2525";
  m.received = "Received: from crash.test by queue.test id " + key + "\r\n";
  m.content = "Subject: " + key + "\r\n\r\n" + crash_value(key);
  for (int i = 0; i < recipients; ++i) {
    mta::queue::Recipient r;
    r.address = "r" + std::to_string(i) + "-" + key + "@d" + std::to_string(i) + ".test";
    r.destination = "d" + std::to_string(i) + ".test";
    m.recipients.push_back(std::move(r));
  }
  return m;
}

}  // namespace test
