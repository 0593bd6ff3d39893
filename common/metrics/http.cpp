// http.cpp: the HTTP/1.x request-head state machine (RFC 9112 §2-§5) and response builders.
#include "common/ascii.hpp"
#include "common/metrics/http.hpp"

#include <algorithm>

#include "common/metrics/metrics.hpp"

namespace common::metrics {

namespace {

using common::ascii::iequals;

// Longer than any method we implement (RFC 9112 §3: answer 501).
constexpr size_t kMaxMethod = 16;
// RFC 9112 §2.2: ignore "at least one" empty line before the request line; a few, not a stream.
constexpr size_t kMaxEmptyLines = 8;

// RFC 9110 §5.6.2 tchar.
bool is_tchar(unsigned char c) {
  if ((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')) return true;
  switch (c) {
    case '!': case '#': case '$': case '%': case '&': case '\'': case '*': case '+': case '-': case '.':
    case '^': case '_': case '`': case '|': case '~':
      return true;
    default:
      return false;
  }
}


std::string_view trim_ows(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

}  // namespace

std::string_view HttpRequestHead::path() const {
  std::string_view t = target;
  // RFC 9112 §3.2.2: servers accept absolute-form ("http://host/metrics") too.
  for (std::string_view scheme : {"http://", "https://"}) {
    if (t.size() >= scheme.size() && iequals(t.substr(0, scheme.size()), scheme)) {
      t.remove_prefix(scheme.size());
      size_t slash = t.find_first_of("/?#");
      if (slash == std::string_view::npos || t[slash] != '/') return "/";
      t.remove_prefix(slash);
      break;
    }
  }
  return t.substr(0, t.find_first_of("?#"));
}

HttpRequestParser::HttpRequestParser(HttpLimits limits) : limits_(limits) {}

void HttpRequestParser::reset() {
  HttpLimits limits = limits_;
  *this = HttpRequestParser(limits);
}

HttpParseResult HttpRequestParser::feed(std::string_view in) {
  return feed(std::span<const std::byte>(reinterpret_cast<const std::byte*>(in.data()), in.size()));
}

HttpParseResult HttpRequestParser::feed(std::span<const std::byte> in) {
  consumed_ = 0;
  for (std::byte b : in) {
    if (state_ == State::Done || state_ == State::Failed) break;
    step(static_cast<unsigned char>(b));
    ++consumed_;
  }
  return result();
}

HttpParseResult HttpRequestParser::result() const {
  if (state_ == State::Done) return head_;
  if (state_ == State::Failed) return error_;
  return HttpNeedMore{};
}

void HttpRequestParser::fail(int status, std::string_view reason) {
  state_ = State::Failed;
  error_ = HttpError{status, reason};
}

void HttpRequestParser::empty_line() {
  if (++empty_lines_ > kMaxEmptyLines) return fail(400, "too many empty lines");
  state_ = State::Start;
}

void HttpRequestParser::step(unsigned char c) {
  if (c == 0) return fail(400, "NUL byte");
  // The method and version are short (checked below), so a request line over its limit means a
  // long target: RFC 9112 §3 answers 414.
  bool past_method = state_ == State::Target || state_ == State::Version;
  if (++head_bytes_ > limits_.max_head) {
    return past_method ? fail(414, "request target too long") : fail(431, "request head too large");
  }
  bool in_request_line = state_ == State::Method || past_method;
  if (in_request_line && c != '\r' && c != '\n' && ++line_bytes_ > limits_.max_request_line) {
    return past_method ? fail(414, "request target too long") : fail(400, "request line too long");
  }

  switch (state_) {
    case State::Start:
      if (c == '\r') {
        state_ = State::StartCr;
        return;
      }
      if (c == '\n') return empty_line();
      state_ = State::Method;
      line_bytes_ = 1;
      [[fallthrough]];
    case State::Method:
      if (is_tchar(c)) {
        if (head_.method.size() >= kMaxMethod) return fail(501, "method too long");
        head_.method += static_cast<char>(c);
      } else if (c == ' ' && !head_.method.empty()) {
        state_ = State::Target;
      } else {
        fail(400, "bad method");
      }
      return;
    case State::StartCr:
      if (c != '\n') return fail(400, "bare CR");
      return empty_line();
    case State::Target:
      if (c > 0x20 && c < 0x7f) {
        head_.target += static_cast<char>(c);
      } else if (c == ' ' && !head_.target.empty()) {
        state_ = State::Version;
      } else {
        fail(400, "bad request target");  // also HTTP/0.9 "GET /" and a second space
      }
      return;
    case State::Version:
      if (c == '\r') {
        state_ = State::RequestLineCr;
      } else if (c == '\n') {
        finish_request_line();
      } else if (version_.size() < 8 && c > 0x20 && c < 0x7f) {
        version_ += static_cast<char>(c);
      } else {
        fail(400, "bad version");
      }
      return;
    case State::RequestLineCr:
      if (c != '\n') return fail(400, "bare CR");
      return finish_request_line();
    case State::LineStart:
      if (c == '\r') {
        state_ = State::FinalCr;
      } else if (c == '\n') {
        finish_head();
      } else if (c == ' ' || c == '\t') {
        // obs-fold, or whitespace before the first header (RFC 9112 §2.2, §5.2): refuse.
        fail(400, "obs-fold");
      } else if (is_tchar(c)) {
        if (++headers_ > limits_.max_headers) return fail(431, "too many header fields");
        name_.assign(1, static_cast<char>(c));
        value_.clear();
        state_ = State::Name;
      } else {
        fail(400, "bad header name");
      }
      return;
    case State::Name:
      if (is_tchar(c)) {
        name_ += static_cast<char>(c);
      } else if (c == ':') {
        state_ = State::ValueStart;
      } else if (c == ' ' || c == '\t') {
        fail(400, "whitespace before colon");  // RFC 9112 §5.1: MUST reject
      } else {
        fail(400, "bad header name");
      }
      return;
    case State::ValueStart:
      if (c == ' ' || c == '\t') return;
      state_ = State::Value;
      [[fallthrough]];
    case State::Value:
      if (c == '\r') {
        state_ = State::LineCr;
      } else if (c == '\n') {
        finish_header();
      } else if (c == '\t' || (c >= 0x20 && c != 0x7f)) {  // VCHAR, SP, HTAB, obs-text
        value_ += static_cast<char>(c);
      } else {
        fail(400, "bad header value");
      }
      return;
    case State::LineCr:
      if (c != '\n') return fail(400, "bare CR");
      return finish_header();
    case State::FinalCr:
      if (c != '\n') return fail(400, "bare CR");
      return finish_head();
    case State::Done:
    case State::Failed:
      return;
  }
}

void HttpRequestParser::finish_request_line() {
  const std::string& v = version_;
  bool shape = v.size() == 8 && v.starts_with("HTTP/") && v[5] >= '0' && v[5] <= '9' && v[6] == '.' && v[7] >= '0' &&
               v[7] <= '9';
  if (!shape) return fail(400, "bad version");
  if (v[5] != '1') return fail(505, "unsupported version");
  head_.version_minor = v[7] - '0';
  state_ = State::LineStart;
}

void HttpRequestParser::finish_header() {
  std::string_view value = trim_ows(value_);
  state_ = State::LineStart;
  if (iequals(name_, "host")) {
    if (++hosts_ > 1) return fail(400, "duplicate Host");
    head_.host = std::string(value);
  } else if (iequals(name_, "connection")) {
    while (!value.empty()) {
      size_t comma = value.find(',');
      std::string_view token = trim_ows(value.substr(0, comma));
      if (iequals(token, "close")) connection_close_ = true;
      if (iequals(token, "keep-alive")) connection_keep_alive_ = true;
      value = comma == std::string_view::npos ? std::string_view() : value.substr(comma + 1);
    }
  } else if (iequals(name_, "content-length")) {
    // Digits only, no list: "5, 5" and "+5" are ambiguities a smuggler would use.
    if (value.empty() || value.size() > 18 ||
        !std::all_of(value.begin(), value.end(), [](char c) { return c >= '0' && c <= '9'; })) {
      return fail(400, "bad Content-Length");
    }
    uint64_t n = 0;
    for (char c : value) n = n * 10 + static_cast<uint64_t>(c - '0');
    if (head_.content_length && *head_.content_length != n) return fail(400, "conflicting Content-Length");
    head_.content_length = n;
  } else if (iequals(name_, "transfer-encoding")) {
    head_.chunked = true;
  }
}

void HttpRequestParser::finish_head() {
  // RFC 9112 §6.1: both framings at once is how requests are smuggled past a proxy.
  if (head_.chunked && head_.content_length) return fail(400, "Transfer-Encoding with Content-Length");
  if (head_.chunked && head_.version_minor == 0) return fail(400, "Transfer-Encoding in HTTP/1.0");
  if (limits_.require_host && head_.version_minor >= 1 && hosts_ == 0) return fail(400, "missing Host");
  head_.keep_alive = head_.version_minor >= 1 ? !connection_close_ : connection_keep_alive_ && !connection_close_;
  state_ = State::Done;
}

// ---- Responses -----------------------------------------------------------------------------------

std::string_view http_reason(int status) {
  switch (status) {
    case 200: return "OK";
    case 400: return "Bad Request";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 408: return "Request Timeout";
    case 413: return "Content Too Large";
    case 414: return "URI Too Long";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 501: return "Not Implemented";
    case 503: return "Service Unavailable";
    case 505: return "HTTP Version Not Supported";
    default: return "Unknown";
  }
}

namespace {

std::string build_response(int status, std::string_view content_type, std::string_view body,
                           std::string_view extra_headers, bool with_body) {
  std::string out;
  out.reserve(128 + (with_body ? body.size() : 0));
  out += "HTTP/1.1 ";
  out += std::to_string(status);
  out += ' ';
  out += http_reason(status);
  out += "\r\nContent-Type: ";
  out += content_type;
  out += "\r\nContent-Length: ";
  out += std::to_string(body.size());
  out += "\r\nConnection: close\r\n";
  out += extra_headers;
  out += "\r\n";
  if (with_body) out += body;
  return out;
}

constexpr std::string_view kTextPlain = "text/plain; charset=utf-8";

}  // namespace

std::string http_response(int status, std::string_view content_type, std::string_view body) {
  return build_response(status, content_type, body, "", true);
}

std::string http_error_response(const HttpError& error) {
  std::string body = std::to_string(error.status) + " " + std::string(http_reason(error.status)) + ": " +
                     std::string(error.reason) + "\n";
  return http_response(error.status, kTextPlain, body);
}

std::string metrics_http_response(const HttpRequestHead& request, const Registry& registry) {
  bool head = request.method == "HEAD";
  if (request.method != "GET" && !head) {
    return build_response(405, kTextPlain, "405 Method Not Allowed\n", "Allow: GET, HEAD\r\n", true);
  }
  // RFC 9110 §9.3.2: HEAD gets the headers GET would, Content-Length included, and no body.
  if (request.path() != "/metrics") return build_response(404, kTextPlain, "404 Not Found: try /metrics\n", "", !head);
  return build_response(200, kMetricsContentType, registry.render(), "", !head);
}

}  // namespace common::metrics
