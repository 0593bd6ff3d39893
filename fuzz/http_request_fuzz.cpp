// http_request_fuzz.cpp: the metrics endpoint's HTTP head parser must give the same result and
// consume the same bytes for any split of its input, and never crash or grow without bound.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>
#include <variant>

#include "common/metrics/http.hpp"
#include "common/metrics/metrics.hpp"

using namespace common::metrics;

namespace {

bool same(const HttpParseResult& a, const HttpParseResult& b) {
  if (a.index() != b.index()) return false;
  if (auto* x = std::get_if<HttpError>(&a)) {
    auto& y = std::get<HttpError>(b);
    return x->status == y.status && x->reason == y.reason;
  }
  if (auto* x = std::get_if<HttpRequestHead>(&a)) {
    auto& y = std::get<HttpRequestHead>(b);
    return x->method == y.method && x->target == y.target && x->version_minor == y.version_minor &&
           x->keep_alive == y.keep_alive && x->host == y.host && x->content_length == y.content_length &&
           x->chunked == y.chunked;
  }
  return true;
}

void check(bool ok) {
  if (!ok) std::abort();
}

// Split sizes come from the input itself so a corpus replay is deterministic.
uint32_t next(uint32_t& state) {
  state = state * 1664525u + 1013904223u;
  return state >> 8;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view in(reinterpret_cast<const char*>(data), size);
  HttpLimits limits;
  HttpRequestParser whole(limits);
  HttpParseResult expected = whole.feed(in);
  size_t expected_consumed = whole.consumed();
  check(expected_consumed <= size);
  check(expected_consumed <= limits.max_head + 1);  // it stops at the byte that breaks a limit

  uint32_t state = static_cast<uint32_t>(size);
  for (size_t i = 0; i < size && i < 64; ++i) state = state * 31 + data[i];
  for (int round = 0; round < 3; ++round) {
    HttpRequestParser p(limits);
    HttpParseResult r = HttpNeedMore{};
    size_t pos = 0, consumed = 0;
    while (pos < size) {
      size_t chunk = round == 0 ? 1 : 1 + next(state) % (round == 1 ? 16 : 700);
      if (chunk > size - pos) chunk = size - pos;
      r = p.feed(in.substr(pos, chunk));
      check(p.consumed() <= chunk);
      consumed += p.consumed();
      pos += chunk;
      if (!std::holds_alternative<HttpNeedMore>(r)) break;
    }
    check(same(r, expected));
    check(consumed == expected_consumed);
    // A finished parser keeps its answer and consumes nothing more.
    if (!std::holds_alternative<HttpNeedMore>(r)) {
      check(same(p.feed(in), expected));
      check(p.consumed() == 0);
    }
  }

  if (auto* req = std::get_if<HttpRequestHead>(&expected)) {
    check(!req->method.empty() && !req->target.empty());
    check(req->method.size() + 1 + req->target.size() < limits.max_request_line);
    static Registry* registry = [] {
      auto* r = new Registry;
      r->counter("fuzz_requests_total", "Requests.").inc();
      return r;
    }();
    std::string response = metrics_http_response(*req, *registry);
    check(response.starts_with("HTTP/1.1 "));
  } else if (auto* err = std::get_if<HttpError>(&expected)) {
    check(err->status == 400 || err->status == 414 || err->status == 431 || err->status == 501 ||
          err->status == 505);
    check(http_error_response(*err).starts_with("HTTP/1.1 "));
  }
  return 0;
}
