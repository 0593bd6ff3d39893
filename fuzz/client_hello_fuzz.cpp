// client_hello_fuzz.cpp: the ClientHello scan (common/tls/client_hello.hpp) on arbitrary bytes from
// a client. Any split of the same bytes into reads must give the same answer, and a limit is only
// ever read from a ClientHello that was read whole.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "common/tls/client_hello.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using common::tls::ClientHelloScan;
  std::string_view bytes(reinterpret_cast<const char*>(data), size);
  ClientHelloScan whole;
  whole.feed(bytes);
  ClientHelloScan split;
  const size_t step = size > 0 ? 1 + data[0] % 17 : 1;
  for (size_t at = 0; at < size; at += step) split.feed(bytes.substr(at, step));
  if (whole.readable() != split.readable() || whole.record_size_limit() != split.record_size_limit()) std::abort();
  if (whole.record_size_limit() && *whole.record_size_limit() > 0xffff) std::abort();
  return 0;
}
