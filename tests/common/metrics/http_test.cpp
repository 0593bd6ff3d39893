// http_test.cpp: the HTTP/1.x request-head parser, whole, byte by byte and in random splits, and
// the responses of the metrics endpoint.
#include <catch2/catch.hpp>

#include <random>

#include "common/metrics/http.hpp"
#include "common/metrics/metrics.hpp"

using namespace common::metrics;

namespace {

std::string describe(const HttpParseResult& r) {
  if (std::holds_alternative<HttpNeedMore>(r)) return "need-more";
  if (auto* e = std::get_if<HttpError>(&r)) return "error " + std::to_string(e->status) + " " + std::string(e->reason);
  auto& h = std::get<HttpRequestHead>(r);
  std::string s = h.method + " " + h.target + " 1." + std::to_string(h.version_minor);
  s += h.keep_alive ? " keep-alive" : " close";
  if (!h.host.empty()) s += " host=" + h.host;
  if (h.content_length) s += " length=" + std::to_string(*h.content_length);
  if (h.chunked) s += " chunked";
  return s;
}

struct Parsed {
  std::string result;
  size_t consumed;  // head bytes, summed over the feeds
};

// Feeds `input` in pieces of the given sizes (cycled) until a result.
Parsed feed_in_pieces(std::string_view input, const std::vector<size_t>& sizes, HttpLimits limits) {
  HttpRequestParser p(limits);
  HttpParseResult r = HttpNeedMore{};
  size_t pos = 0, consumed = 0, k = 0;
  while (pos < input.size()) {
    size_t n = std::min(sizes[k++ % sizes.size()], input.size() - pos);
    r = p.feed(input.substr(pos, n));
    consumed += p.consumed();
    pos += n;
    if (!std::holds_alternative<HttpNeedMore>(r)) break;
  }
  return {describe(r), consumed};
}

// Parses whole, byte by byte and in random splits; all must agree. Returns the description.
std::string parse(std::string_view input, HttpLimits limits = {}, size_t* consumed = nullptr) {
  auto whole = feed_in_pieces(input, {input.size() ? input.size() : 1}, limits);
  auto bytes = feed_in_pieces(input, {1}, limits);
  INFO("input: " << input);
  CHECK(bytes.result == whole.result);
  CHECK(bytes.consumed == whole.consumed);
  std::mt19937 rng(42);
  for (int round = 0; round < 20; ++round) {
    std::vector<size_t> sizes;
    for (int i = 0; i < 16; ++i) sizes.push_back(1 + rng() % 40);
    auto split = feed_in_pieces(input, sizes, limits);
    CHECK(split.result == whole.result);
    CHECK(split.consumed == whole.consumed);
  }
  if (consumed) *consumed = whole.consumed;
  return whole.result;
}

std::string error(std::string_view input, HttpLimits limits = {}) { return parse(input, limits); }

}  // namespace

TEST_CASE("requests from curl and Prometheus parse", "[http]") {
  CHECK(parse("GET /metrics HTTP/1.1\r\nHost: localhost:9101\r\nUser-Agent: curl/7.88.1\r\nAccept: */*\r\n\r\n") ==
        "GET /metrics 1.1 keep-alive host=localhost:9101");
  CHECK(parse("GET /metrics HTTP/1.1\r\n"
              "Host: 192.0.2.7:9101\r\n"
              "User-Agent: Prometheus/2.42.0\r\n"
              "Accept: application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,"
              "text/plain;version=0.0.4;q=0.5,*/*;q=0.1\r\n"
              "Accept-Encoding: gzip\r\n"
              "X-Prometheus-Scrape-Timeout-Seconds: 10\r\n"
              "\r\n") == "GET /metrics 1.1 keep-alive host=192.0.2.7:9101");
}

TEST_CASE("versions and Connection decide keep-alive", "[http]") {
  CHECK(parse("GET / HTTP/1.0\r\n\r\n") == "GET / 1.0 close");
  CHECK(parse("GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n") == "GET / 1.0 keep-alive");
  CHECK(parse("GET / HTTP/1.1\r\nConnection: close\r\n\r\n") == "GET / 1.1 close");
  CHECK(parse("GET / HTTP/1.1\r\nconnection: Keep-Alive, CLOSE\r\n\r\n") == "GET / 1.1 close");
  CHECK(parse("GET / HTTP/1.1\r\nConnection: Upgrade , keep-alive\r\n\r\n") == "GET / 1.1 keep-alive");
  CHECK(parse("GET / HTTP/1.2\r\n\r\n") == "GET / 1.2 keep-alive");  // a later 1.x is served as 1.1
  CHECK(error("GET / HTTP/2.0\r\n\r\n") == "error 505 unsupported version");
  CHECK(error("GET / HTTP/0.9\r\n\r\n") == "error 505 unsupported version");
}

TEST_CASE("headers: values trimmed, names case-insensitive, lengths checked", "[http]") {
  CHECK(parse("GET / HTTP/1.1\r\nHOST:   example.net  \t\r\n\r\n") == "GET / 1.1 keep-alive host=example.net");
  CHECK(parse("GET / HTTP/1.1\r\nX-Empty:\r\nX-Empty-Too:   \r\n\r\n") == "GET / 1.1 keep-alive");
  CHECK(parse("GET / HTTP/1.1\r\nX-Latin: caf\xe9\r\n\r\n") == "GET / 1.1 keep-alive");  // obs-text is allowed
  CHECK(parse("POST /x HTTP/1.1\r\nContent-Length: 12\r\n\r\n") == "POST /x 1.1 keep-alive length=12");
  CHECK(parse("POST /x HTTP/1.1\r\nContent-Length: 12\r\ncontent-length: 12\r\n\r\n") ==
        "POST /x 1.1 keep-alive length=12");
  CHECK(parse("POST /x HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n") == "POST /x 1.1 keep-alive chunked");
  CHECK(error("POST /x HTTP/1.1\r\nContent-Length: 12\r\nContent-Length: 13\r\n\r\n") ==
        "error 400 conflicting Content-Length");
  CHECK(error("POST /x HTTP/1.1\r\nContent-Length: 5, 5\r\n\r\n") == "error 400 bad Content-Length");
  CHECK(error("POST /x HTTP/1.1\r\nContent-Length: +5\r\n\r\n") == "error 400 bad Content-Length");
  CHECK(error("POST /x HTTP/1.1\r\nContent-Length:\r\n\r\n") == "error 400 bad Content-Length");
  CHECK(error("POST /x HTTP/1.1\r\nContent-Length: 9999999999999999999\r\n\r\n") == "error 400 bad Content-Length");
  CHECK(error("POST /x HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n") ==
        "error 400 Transfer-Encoding with Content-Length");
  CHECK(error("POST /x HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n") == "error 400 Transfer-Encoding in HTTP/1.0");
}

TEST_CASE("Host: lenient by default, required on request, never twice", "[http]") {
  CHECK(parse("GET / HTTP/1.1\r\n\r\n") == "GET / 1.1 keep-alive");
  HttpLimits strict;
  strict.require_host = true;
  CHECK(error("GET / HTTP/1.1\r\n\r\n", strict) == "error 400 missing Host");
  CHECK(parse("GET / HTTP/1.0\r\n\r\n", strict) == "GET / 1.0 close");  // HTTP/1.0 had no Host
  CHECK(parse("GET / HTTP/1.1\r\nHost: a\r\n\r\n", strict) == "GET / 1.1 keep-alive host=a");
  CHECK(error("GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n") == "error 400 duplicate Host");
  CHECK(error("GET / HTTP/1.1\r\nHost: a\r\nHost: a\r\n\r\n") == "error 400 duplicate Host");
}

TEST_CASE("bare LF ends lines and leading empty lines are skipped", "[http]") {
  CHECK(parse("GET /a HTTP/1.1\nHost: h\n\n") == "GET /a 1.1 keep-alive host=h");
  CHECK(parse("GET /a HTTP/1.1\r\nHost: h\n\r\n") == "GET /a 1.1 keep-alive host=h");
  CHECK(parse("\r\n\nGET /a HTTP/1.1\r\n\r\n") == "GET /a 1.1 keep-alive");
  CHECK(error(std::string(9, '\n') + "GET / HTTP/1.1\r\n\r\n") == "error 400 too many empty lines");
}

TEST_CASE("malformed request lines are refused", "[http]") {
  CHECK(error("GET  / HTTP/1.1\r\n\r\n") == "error 400 bad request target");
  CHECK(error(" GET / HTTP/1.1\r\n\r\n") == "error 400 bad method");
  CHECK(error("G(T / HTTP/1.1\r\n\r\n") == "error 400 bad method");
  CHECK(error("GET\r\n\r\n") == "error 400 bad method");
  CHECK(error("GET /\r\n\r\n") == "error 400 bad request target");  // HTTP/0.9
  CHECK(error("GET / HTTP/1.1 \r\n\r\n") == "error 400 bad version");
  CHECK(error("GET / http/1.1\r\n\r\n") == "error 400 bad version");
  CHECK(error("GET / HTTP/11\r\n\r\n") == "error 400 bad version");
  CHECK(error("GET / HTTP/1.1x\r\n\r\n") == "error 400 bad version");
  CHECK(error("GET / HTTP/1.\r\n\r\n") == "error 400 bad version");
  CHECK(error("GET /caf\xc3\xa9 HTTP/1.1\r\n\r\n") == "error 400 bad request target");
  CHECK(error("GET /a\x7f HTTP/1.1\r\n\r\n") == "error 400 bad request target");
  CHECK(error("GET /a\tb HTTP/1.1\r\n\r\n") == "error 400 bad request target");
  CHECK(error(std::string(17, 'G') + " / HTTP/1.1\r\n\r\n") == "error 501 method too long");
  CHECK(parse(std::string(16, 'G') + " / HTTP/1.1\r\n\r\n") == std::string(16, 'G') + " / 1.1 keep-alive");
}

TEST_CASE("bare CR, NUL and control characters are refused wherever they appear", "[http]") {
  CHECK(error("GET / HTTP/1.1\rHost: a\r\n\r\n") == "error 400 bare CR");
  CHECK(error("GET / HTTP/1.1\r\nHost: a\rb\r\n\r\n") == "error 400 bare CR");
  CHECK(error("GET / HTTP/1.1\r\nHost: a\r\n\rX") == "error 400 bare CR");
  CHECK(error("\rGET / HTTP/1.1\r\n\r\n") == "error 400 bare CR");
  CHECK(error(std::string("GET /\0 HTTP/1.1\r\n\r\n", 18)) == "error 400 NUL byte");
  CHECK(error(std::string("GET / HTTP/1.1\r\nX: a\0b\r\n\r\n", 25)) == "error 400 NUL byte");
  CHECK(error(std::string("\0", 1)) == "error 400 NUL byte");
  CHECK(error("GET / HTTP/1.1\r\nX: a\x01z\r\n\r\n") == "error 400 bad header value");
  CHECK(error("GET / HTTP/1.1\r\nX: a\x7fz\r\n\r\n") == "error 400 bad header value");
}

TEST_CASE("obs-fold, whitespace before colon and bad names are refused", "[http]") {
  CHECK(error("GET / HTTP/1.1\r\nX-A: one\r\n two\r\n\r\n") == "error 400 obs-fold");
  CHECK(error("GET / HTTP/1.1\r\nX-A: one\r\n\ttwo\r\n\r\n") == "error 400 obs-fold");
  CHECK(error("GET / HTTP/1.1\r\n Host: a\r\n\r\n") == "error 400 obs-fold");
  CHECK(error("GET / HTTP/1.1\r\nHost : a\r\n\r\n") == "error 400 whitespace before colon");
  CHECK(error("GET / HTTP/1.1\r\nHo(st: a\r\n\r\n") == "error 400 bad header name");
  CHECK(error("GET / HTTP/1.1\r\n: a\r\n\r\n") == "error 400 bad header name");
  CHECK(error("GET / HTTP/1.1\r\nNoColon\r\n\r\n") == "error 400 bad header name");
}

TEST_CASE("limits: request line, whole head, header count", "[http]") {
  auto line_of = [](size_t length) {  // a request line of exactly `length` bytes
    std::string head = "GET /", tail = " HTTP/1.1";
    return head + std::string(length - head.size() - tail.size(), 'a') + tail;
  };
  CHECK(parse(line_of(2048) + "\r\n\r\n").starts_with("GET /aaa"));
  CHECK(error(line_of(2049) + "\r\n\r\n") == "error 414 request target too long");
  CHECK(error("GET /" + std::string(100000, 'a')) == "error 414 request target too long");
  // The version is checked for length on its own; the line limit still counts it.
  CHECK(error("GET / HTTP/1.1111\r\n\r\n") == "error 400 bad version");

  auto head_of = [](size_t length) {  // a head of exactly `length` bytes, CRLFs included
    std::string start = "GET / HTTP/1.1\r\n";
    std::string end = "\r\n\r\n";
    std::string name = "X-Pad: ";
    return start + name + std::string(length - start.size() - name.size() - end.size(), 'p') + end;
  };
  size_t consumed = 0;
  CHECK(parse(head_of(8192), {}, &consumed) == "GET / 1.1 keep-alive");
  CHECK(consumed == 8192);
  CHECK(error(head_of(8193)) == "error 431 request head too large");
  CHECK(error("GET / HTTP/1.1\r\n" + std::string(100000, 'a')) == "error 431 request head too large");

  std::string many = "GET / HTTP/1.1\r\n";
  for (int i = 0; i < 64; ++i) many += "X-" + std::to_string(i) + ": v\r\n";
  CHECK(parse(many + "\r\n") == "GET / 1.1 keep-alive");
  CHECK(error(many + "X-65: v\r\n\r\n") == "error 431 too many header fields");

  HttpLimits small;
  small.max_head = 64;
  small.max_request_line = 20;
  CHECK(error("GET /0123456789abcdef HTTP/1.1\r\n\r\n", small) == "error 414 request target too long");
  CHECK(error("GET / HTTP/1.1\r\nX: " + std::string(60, 'v') + "\r\n\r\n", small) ==
        "error 431 request head too large");
}

TEST_CASE("the parser stops at the end of the head and keeps its result", "[http]") {
  HttpRequestParser p;
  std::string req = "GET /metrics HTTP/1.1\r\nHost: h\r\n\r\n";
  auto r = p.feed(req.substr(0, 10));
  CHECK(std::holds_alternative<HttpNeedMore>(r));
  CHECK(p.consumed() == 10);
  r = p.feed(req.substr(10) + "BODYBYTES");
  CHECK(describe(r) == "GET /metrics 1.1 keep-alive host=h");
  CHECK(p.consumed() == req.size() - 10);
  r = p.feed("more");
  CHECK(describe(r) == "GET /metrics 1.1 keep-alive host=h");
  CHECK(p.consumed() == 0);
  CHECK(std::get<HttpRequestHead>(r).path() == "/metrics");

  p.reset();
  r = p.feed("HEAD /metrics?x=1 HTTP/1.0\r\n\r\n");
  CHECK(describe(r) == "HEAD /metrics?x=1 1.0 close");
  CHECK(std::get<HttpRequestHead>(r).path() == "/metrics");

  auto path_of = [](std::string target) {
    HttpRequestHead h;
    h.target = std::move(target);
    return std::string(h.path());
  };
  CHECK(path_of("/metrics#frag") == "/metrics");
  CHECK(path_of("http://h:9101/metrics?x") == "/metrics");
  CHECK(path_of("HTTPS://h/metrics") == "/metrics");
  CHECK(path_of("http://h") == "/");
  CHECK(path_of("http://h?x=1") == "/");
  CHECK(path_of("*") == "*");

  p.reset();
  r = p.feed("GET / HTTP/1.1\r\nX: \x01\r\n\r\n");
  CHECK(describe(r) == "error 400 bad header value");
  CHECK(describe(p.feed("GET / HTTP/1.1\r\n\r\n")) == "error 400 bad header value");
  CHECK(describe(p.feed(std::string_view())) == "error 400 bad header value");

  HttpRequestParser fresh;
  CHECK(std::holds_alternative<HttpNeedMore>(fresh.feed(std::string_view())));
}

TEST_CASE("responses carry length and Connection: close", "[http]") {
  CHECK(http_response(200, "text/plain", "hello\n") ==
        "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 6\r\nConnection: close\r\n\r\nhello\n");
  CHECK(http_response(503, "text/plain", "") ==
        "HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
  CHECK(http_reason(431) == "Request Header Fields Too Large");
  CHECK(http_reason(299) == "Unknown");
  CHECK(http_error_response(HttpError{414, "request target too long"}) ==
        "HTTP/1.1 414 URI Too Long\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: 42\r\n"
        "Connection: close\r\n\r\n414 URI Too Long: request target too long\n");
}

TEST_CASE("the metrics endpoint answers GET, HEAD, 404 and 405", "[http]") {
  Registry reg;
  reg.counter("scrapes_total", "Scrapes.").inc(3);
  std::string body = reg.render();
  auto request = [](std::string text) {
    HttpRequestParser p;
    return std::get<HttpRequestHead>(p.feed(text));
  };
  std::string expected_headers = "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\n"
                                 "Content-Length: " +
                                 std::to_string(body.size()) + "\r\nConnection: close\r\n\r\n";
  CHECK(metrics_http_response(request("GET /metrics HTTP/1.1\r\nHost: h\r\n\r\n"), reg) == expected_headers + body);
  CHECK(metrics_http_response(request("GET /metrics?debug=1 HTTP/1.0\r\n\r\n"), reg) == expected_headers + body);
  CHECK(metrics_http_response(request("HEAD /metrics HTTP/1.1\r\n\r\n"), reg) == expected_headers);
  CHECK(metrics_http_response(request("GET http://h:9101/metrics HTTP/1.1\r\n\r\n"), reg) == expected_headers + body);
  CHECK(metrics_http_response(request("GET / HTTP/1.1\r\n\r\n"), reg).starts_with("HTTP/1.1 404 Not Found\r\n"));
  auto head404 = metrics_http_response(request("HEAD /x HTTP/1.1\r\n\r\n"), reg);
  CHECK(head404.starts_with("HTTP/1.1 404 Not Found\r\n"));
  CHECK(head404.ends_with("\r\n\r\n"));
  CHECK(metrics_http_response(request("POST /metrics HTTP/1.1\r\n\r\n"), reg) ==
        "HTTP/1.1 405 Method Not Allowed\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: 23\r\n"
        "Connection: close\r\nAllow: GET, HEAD\r\n\r\n405 Method Not Allowed\n");
  CHECK(metrics_http_response(request("get /metrics HTTP/1.1\r\n\r\n"), reg).starts_with("HTTP/1.1 405"));
}
