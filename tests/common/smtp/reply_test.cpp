// reply_test.cpp: building and reading SMTP replies (common/smtp/reply.hpp, RFC 5321 §4.2,
// RFC 2034, RFC 3463). The parser is fed whole, one byte at a time and in pieces.
#include <catch2/catch.hpp>

#include <string>
#include <vector>

#include "common/smtp/reply.hpp"

using namespace common::smtp;

namespace {

struct Parsed {
  std::vector<Reply> replies;
  bool failed = false;
};

Parsed parse(std::string_view in, size_t step, ReplyLimits limits = {}) {
  ReplyParser p(limits);
  Parsed out;
  for (size_t at = 0; at < in.size(); at += step) p.feed(in.substr(at, step), out.replies);
  out.failed = p.failed();
  return out;
}

Parsed parse_all_ways(std::string_view in, ReplyLimits limits = {}) {
  Parsed whole = parse(in, in.size() ? in.size() : 1, limits);
  for (size_t step : {size_t{1}, size_t{2}, size_t{5}}) {
    Parsed s = parse(in, step, limits);
    CHECK(s.failed == whole.failed);
    REQUIRE(s.replies.size() == whole.replies.size());
    for (size_t i = 0; i < s.replies.size(); ++i) {
      CHECK(s.replies[i].code == whole.replies[i].code);
      CHECK(s.replies[i].enhanced == whole.replies[i].enhanced);
      CHECK(s.replies[i].lines == whole.replies[i].lines);
    }
  }
  return whole;
}

}  // namespace

TEST_CASE("replies render with enhanced codes") {
  CHECK(render_reply(250, {2, 1, 0}, "Ok") == "250 2.1.0 Ok\r\n");
  CHECK(render_reply(354, {}, "End data with <CR><LF>.<CR><LF>") == "354 End data with <CR><LF>.<CR><LF>\r\n");
  std::string_view lines[] = {"first", "second"};
  CHECK(render_reply(550, {5, 1, 1}, lines) == "550-5.1.1 first\r\n550 5.1.1 second\r\n");
  CHECK(render_reply(221, {2, 0, 0}, std::span<const std::string_view>{}) == "221 2.0.0\r\n");
  SmtpError e{552, {5, 3, 4}, "Too big", "r"};
  CHECK(render_reply(e) == "552 5.3.4 Too big\r\n");
  CHECK(EnhancedCode{}.str().empty());
}

TEST_CASE("reply text cannot inject a line") {
  std::string r = render_reply(250, {2, 0, 0}, "Hello evil\r\n250 2.0.0 injected\x00x");
  CHECK(r.find('\n') == r.size() - 1);
  CHECK(r.find('\r') == r.size() - 2);
  CHECK(sanitize("a\r\nb\x01\xc3\xa9") == "a??b???");
  CHECK(sanitize(std::string(200, 'x'), 10) == "xxxxxxxxxx...");
  // RFC 5321 §4.5.3.1.5: 512 octets per line, CRLF included.
  std::string longr = render_reply(250, {2, 0, 0}, std::string(2000, 'y'));
  CHECK(longr.size() <= kMaxReplyLine);
  CHECK(longr.substr(longr.size() - 2) == "\r\n");
}

TEST_CASE("EHLO capability list") {
  Capabilities caps;
  caps.domain = "store.example";
  caps.greeting = "hello";
  caps.size = 1048576;
  caps.chunking = true;
  caps.smtputf8 = true;
  caps.xid = true;
  caps.auth = {"PLAIN", "EXTERNAL"};
  CHECK(render_ehlo(caps) ==
        "250-store.example hello\r\n"
        "250-PIPELINING\r\n"
        "250-SIZE 1048576\r\n"
        "250-8BITMIME\r\n"
        "250-CHUNKING\r\n"
        "250-SMTPUTF8\r\n"
        "250-ENHANCEDSTATUSCODES\r\n"
        "250-AUTH PLAIN EXTERNAL\r\n"
        "250 XID\r\n");
  Capabilities bare;
  bare.domain = "h\r\nx";
  bare.pipelining = bare.eightbitmime = bare.enhancedstatuscodes = false;
  CHECK(render_ehlo(bare) == "250 h??x\r\n");
  // What we render, we read back.
  auto p = parse_all_ways(render_ehlo(caps));
  REQUIRE(p.replies.size() == 1);
  CHECK(p.replies[0].lines.size() == 9);
  CHECK(p.replies[0].lines[2] == "SIZE 1048576");
  CHECK_FALSE(p.replies[0].enhanced.present());
}

TEST_CASE("reply parser: multi-line, enhanced codes, several replies") {
  auto p = parse_all_ways("250-mx.example\r\n250-PIPELINING\r\n250 SIZE 100\r\n550 5.1.1 <x@y>: unknown\r\n");
  REQUIRE_FALSE(p.failed);
  REQUIRE(p.replies.size() == 2);
  CHECK(p.replies[0].code == 250);
  CHECK(p.replies[0].lines == std::vector<std::string>{"mx.example", "PIPELINING", "SIZE 100"});
  CHECK(p.replies[1].code == 550);
  CHECK(p.replies[1].enhanced == EnhancedCode{5, 1, 1});
  CHECK(p.replies[1].lines == std::vector<std::string>{"<x@y>: unknown"});
  CHECK_FALSE(p.replies[1].positive());

  auto multi = parse_all_ways("452-4.2.2 over\r\n452 4.2.2 quota\r\n");
  REQUIRE(multi.replies.size() == 1);
  CHECK(multi.replies[0].transient());
  CHECK(multi.replies[0].lines == std::vector<std::string>{"over", "quota"});

  // A bare code, LF endings, a "2.0" that is no enhanced code, a class that does not match.
  auto odd = parse_all_ways("250\n220 2.0 ready\r\n250 5.1.1 odd\r\n354 \r\n");
  REQUIRE(odd.replies.size() == 4);
  CHECK(odd.replies[0].lines == std::vector<std::string>{""});
  CHECK_FALSE(odd.replies[1].enhanced.present());
  CHECK(odd.replies[1].lines[0] == "2.0 ready");
  CHECK_FALSE(odd.replies[2].enhanced.present());
  CHECK(odd.replies[2].lines[0] == "5.1.1 odd");
  CHECK(odd.replies[3].code == 354);

  // An unfinished reply is held.
  ReplyParser held;
  std::vector<Reply> out;
  held.feed("250-a\r\n250 b", out);
  CHECK(out.empty());
  CHECK(held.pending() > 0);
  held.feed("\r\n", out);
  CHECK(out.size() == 1);
  CHECK(held.pending() == 0);
}

TEST_CASE("reply parser refuses garbage and stays failed") {
  for (const char* bad : {"hello\r\n", "25\r\n", "650 x\r\n", "150 x\r\n", "260 x\r\n", "2500 x\r\n", "250x\r\n", "250-a\r\n251 b\r\n",
                          "25a ok\r\n"}) {
    INFO(bad);
    auto p = parse_all_ways(bad);
    CHECK(p.failed);
    CHECK(p.replies.empty());
  }
  ReplyLimits small;
  small.max_line = 20;
  small.max_lines = 3;
  small.max_total = 30;
  CHECK(parse_all_ways("250 " + std::string(30, 'x') + "\r\n", small).failed);
  CHECK(parse_all_ways(std::string(100, '2'), small).failed);  // no line end, still bounded
  CHECK(parse_all_ways("250-a\r\n250-b\r\n250-c\r\n250 d\r\n", small).failed);
  CHECK(parse_all_ways("250-aaaaaaaaaaaa\r\n250-bbbbbbbbbbbb\r\n250 cccccccccccc\r\n", small).failed);
  CHECK_FALSE(parse_all_ways("250-a\r\n250-b\r\n250 c\r\n", small).failed);

  ReplyParser p;
  std::vector<Reply> out;
  p.feed("bad\r\n", out);
  CHECK(p.failed());
  p.feed("250 ok\r\n", out);
  CHECK(out.empty());
  p.reset();
  p.feed("250 ok\r\n", out);
  CHECK(out.size() == 1);
}

TEST_CASE("enhanced code parsing") {
  auto e = parse_enhanced("5.7.1 denied");
  REQUIRE(e);
  CHECK(e->first == EnhancedCode{5, 7, 1});
  CHECK(e->second == 6);
  CHECK(parse_enhanced("2.0.0")->second == 5);
  CHECK(parse_enhanced("4.123.456 x")->first == EnhancedCode{4, 123, 456});
  for (const char* bad : {"3.0.0 x", "5.1 x", "5.1.1x", "5..1 x", "5.1234.1 x", "5.1.1234", "", "x.1.1"}) {
    INFO(bad);
    CHECK_FALSE(parse_enhanced(bad));
  }
}
