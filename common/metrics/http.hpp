// http.hpp: a pure, bounded HTTP/1.x request-head parser (RFC 9112) and response builders, enough
// to serve /metrics to Prometheus and curl. No I/O: the caller owns the socket.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <variant>

namespace common::metrics {

class Registry;

struct HttpLimits {
  size_t max_head = 8 * 1024;          // request line, header lines and the blank line
  size_t max_request_line = 2 * 1024;  // without its CRLF
  size_t max_headers = 64;
  // RFC 9112 §3.2 makes Host mandatory in HTTP/1.1. A metrics endpoint has no virtual hosts, so
  // by default a missing Host is accepted (a duplicate Host is always refused).
  bool require_host = false;
};

struct HttpRequestHead {
  std::string method;  // case-sensitive token, e.g. "GET"
  std::string target;  // as sent: "/metrics?x=1"
  int version_minor = 1;  // HTTP/1.<minor>; 1.2 and up are served as 1.1
  bool keep_alive = false;  // HTTP/1.1 unless "Connection: close"; HTTP/1.0 only with keep-alive
  std::string host;         // empty when absent
  std::optional<uint64_t> content_length;
  bool chunked = false;  // Transfer-Encoding was sent

  // The target without query or fragment, absolute-form reduced to its path: "/metrics".
  std::string_view path() const;
};

struct HttpNeedMore {};

struct HttpError {
  int status = 400;         // what to answer: 400, 414, 431, 501, 505
  std::string_view reason;  // a fixed phrase for the log line, never client text
};

using HttpParseResult = std::variant<HttpNeedMore, HttpRequestHead, HttpError>;

// Incremental: any split of the input gives the same result. State lives in members, memory is
// bounded by HttpLimits. Bare CR, NUL, obs-fold, whitespace before a colon, a second Host and
// conflicting lengths are refused (request smuggling needs such ambiguities). A bare LF ends a
// line (RFC 9112 §2.2 allows it); empty lines before the request line are skipped.
class HttpRequestParser {
 public:
  explicit HttpRequestParser(HttpLimits limits = {});

  // Consumes bytes up to the end of the head. After a result other than NeedMore, further calls
  // consume nothing and return the same result until reset().
  HttpParseResult feed(std::span<const std::byte> in);
  HttpParseResult feed(std::string_view in);
  // Bytes of the last feed() that belonged to the head; the rest is body or the next request.
  size_t consumed() const { return consumed_; }
  void reset();

 private:
  enum class State : uint8_t {
    Start, StartCr, Method, Target, Version, RequestLineCr,
    LineStart, Name, ValueStart, Value, LineCr, FinalCr, Done, Failed
  };

  void step(unsigned char c);
  HttpParseResult result() const;
  void fail(int status, std::string_view reason);
  void empty_line();
  void finish_request_line();
  void finish_header();
  void finish_head();

  HttpLimits limits_;
  State state_ = State::Start;
  size_t head_bytes_ = 0;
  size_t line_bytes_ = 0;
  size_t empty_lines_ = 0;
  size_t headers_ = 0;
  std::string version_;
  std::string name_;
  std::string value_;
  int hosts_ = 0;
  bool connection_close_ = false;
  bool connection_keep_alive_ = false;
  HttpRequestHead head_;
  HttpError error_;
  size_t consumed_ = 0;
};

// "OK", "Not Found", ...; "Unknown" for codes not listed.
std::string_view http_reason(int status);

// A complete HTTP/1.1 response with Content-Type, Content-Length and "Connection: close": the
// server closes after one response, so keep-alive and pipelining never matter.
// content_type is server text; it must not hold CR or LF.
std::string http_response(int status, std::string_view content_type, std::string_view body);
// The answer to a parse error: status and reason as plain text.
std::string http_error_response(const HttpError& error);

// The metrics endpoint: GET or HEAD of /metrics -> the registry in text format 0.0.4;
// another path -> 404; another method -> 405 with "Allow: GET, HEAD".
std::string metrics_http_response(const HttpRequestHead& request, const Registry& registry);

inline constexpr std::string_view kMetricsContentType = "text/plain; version=0.0.4; charset=utf-8";

}  // namespace common::metrics
