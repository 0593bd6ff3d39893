// data_reader_test.cpp: DATA/BDAT content (common/smtp/data_reader.hpp): dot-unstuffing and the
// CRLF.CRLF end (RFC 5321 §4.5.2, §4.1.1.4), limits, bare CR/LF, NUL, long lines. Every case runs
// whole, one byte at a time and in 3-byte pieces, and must give the same result each way.
#include <catch2/catch.hpp>

#include <string>

#include "common/smtp/data_reader.hpp"

using namespace common::smtp;

namespace {

struct Run {
  std::string content;
  size_t consumed = 0;
  bool done = false;
  DataReport report;
  std::optional<SmtpError> verdict;
};

Run run(std::string_view in, DataOptions opts, size_t step) {
  DataReader r(opts);
  Run out;
  size_t at = 0;
  while (at < in.size() && !out.done) {
    std::string chunk;
    auto f = r.feed(in.substr(at, std::min(step, in.size() - at)), chunk);
    out.content += chunk;
    out.consumed += f.consumed;
    at += f.consumed;
    out.done = f.done;
    if (!f.done) REQUIRE(f.consumed == std::min(step, in.size() - (at - f.consumed)));
  }
  out.report = r.report();
  if (out.done) out.verdict = r.verdict();
  return out;
}

// Runs the input whole, byte by byte and in 3-byte pieces; all three must agree.
Run check_splits(std::string_view in, DataOptions opts = {}) {
  Run whole = run(in, opts, in.size() ? in.size() : 1);
  for (size_t step : {size_t{1}, size_t{3}}) {
    INFO("step " << step);
    Run s = run(in, opts, step);
    CHECK(s.content == whole.content);
    CHECK(s.consumed == whole.consumed);
    CHECK(s.done == whole.done);
    CHECK(s.report.size == whole.report.size);
    CHECK(s.report.bare_lf == whole.report.bare_lf);
    CHECK(s.report.bare_cr == whole.report.bare_cr);
    CHECK(s.report.nul == whole.report.nul);
    CHECK(s.report.long_line == whole.report.long_line);
    CHECK(s.report.too_big == whole.report.too_big);
  }
  return whole;
}

}  // namespace

TEST_CASE("DATA: the end and dot-unstuffing") {
  auto empty = check_splits(".\r\n");
  CHECK(empty.done);
  CHECK(empty.content.empty());
  CHECK(empty.consumed == 3);
  CHECK_FALSE(empty.verdict);

  auto one = check_splits("Subject: x\r\n\r\nbody\r\n.\r\n");
  CHECK(one.done);
  CHECK(one.content == "Subject: x\r\n\r\nbody\r\n");
  CHECK(one.report.lines == 3);

  CHECK(check_splits("..\r\n.\r\n").content == ".\r\n");
  CHECK(check_splits("...\r\n.\r\n").content == "..\r\n");
  CHECK(check_splits("a\r\n..b\r\n.x\r\n.\r\n").content == "a\r\n.b\r\nx\r\n");
  // A dot inside a line is content.
  CHECK(check_splits("a.b\r\n a\r\n.\r\n").content == "a.b\r\n a\r\n");
  // ". \r\n" is not the end: the line has a space after the dot.
  auto sp = check_splits(". \r\n.\r\n");
  CHECK(sp.content == " \r\n");
}

TEST_CASE("DATA: pipelined input after the final dot is not consumed") {
  std::string in = "hello\r\n.\r\nQUIT\r\n";
  auto r = check_splits(in);
  CHECK(r.done);
  CHECK(r.consumed == 10);
  CHECK(in.substr(r.consumed) == "QUIT\r\n");
  DataReader reader;
  std::string out;
  auto f = reader.feed(in, out);
  CHECK(f.consumed == 10);
  // After the end nothing more is taken.
  auto again = reader.feed("MAIL FROM:<>\r\n", out);
  CHECK(again.consumed == 0);
  CHECK(again.done);
  reader.reset();
  out.clear();
  CHECK(reader.feed("x\r\n.\r\n", out).done);
  CHECK(out == "x\r\n");
}

TEST_CASE("DATA: end split across chunks") {
  DataReader r;
  std::string out;
  CHECK_FALSE(r.feed("a\r", out).done);
  CHECK_FALSE(r.feed("\n.", out).done);
  CHECK_FALSE(r.feed("\r", out).done);
  auto f = r.feed("\nNOOP\r\n", out);
  CHECK(f.done);
  CHECK(f.consumed == 1);
  CHECK(out == "a\r\n");
}

TEST_CASE("DATA: bare LF and CR never end the data (SMTP smuggling)") {
  for (const char* in : {"a\n.\n", "a\r\n.\n", "a\n.\r\n", "a\r.\r", "a\r\n.\rx"}) {
    INFO(in);
    auto r = check_splits(in);
    CHECK_FALSE(r.done);
    CHECK((r.report.bare_lf || r.report.bare_cr));
  }
  // ".\r" at a line start may still become the end: nothing is decided or handed out yet.
  auto pending = check_splits("a\r\n.\r");
  CHECK_FALSE(pending.done);
  CHECK_FALSE(pending.report.bare_cr);
  CHECK(pending.content == "a\r\n");
  // The smuggled "end" stays in the content, dot and all, so a relay re-stuffs it.
  auto s = check_splits("a\r\n.\nMAIL FROM:<x@y>\r\n.\r\n");
  CHECK(s.done);
  CHECK(s.content == "a\r\n.\nMAIL FROM:<x@y>\r\n");
  CHECK(s.report.bare_lf);
  REQUIRE(s.verdict);
  CHECK(s.verdict->code == 550);
}

TEST_CASE("DATA: bare LF and CR under each policy") {
  const std::string in = "a\nb\rc\r\r\n.\r\n";
  DataOptions refuse;
  auto r = check_splits(in, refuse);
  CHECK(r.done);
  CHECK(r.content == "a\nb\rc\r\r\n");
  CHECK(r.report.bare_lf);
  CHECK(r.report.bare_cr);
  REQUIRE(r.verdict);
  CHECK(r.verdict->code == 550);
  CHECK(r.verdict->enhanced == EnhancedCode{5, 6, 0});

  DataOptions convert;
  convert.bare = BarePolicy::Convert;
  auto c = check_splits(in, convert);
  CHECK(c.content == "a\r\nb\r\nc\r\n\r\n");
  CHECK(c.report.bare_lf);
  CHECK_FALSE(c.verdict);
  CHECK(c.report.size == c.content.size());

  DataOptions keep;
  keep.bare = BarePolicy::Keep;
  auto k = check_splits(in, keep);
  CHECK(k.content == "a\nb\rc\r\r\n");
  CHECK_FALSE(k.verdict);
}

TEST_CASE("DATA: NUL under each policy") {
  const std::string in("a\0b\r\n.\r\n", 8);
  auto r = check_splits(in);
  CHECK(r.report.nul);
  CHECK(r.content == std::string("a\0b\r\n", 5));
  REQUIRE(r.verdict);
  CHECK(r.verdict->code == 550);
  DataOptions strip;
  strip.nul = NulPolicy::Strip;
  auto s = check_splits(in, strip);
  CHECK(s.content == "ab\r\n");
  CHECK(s.report.nul);
  CHECK_FALSE(s.verdict);
  DataOptions keep;
  keep.nul = NulPolicy::Keep;
  CHECK_FALSE(check_splits(in, keep).verdict);
}

TEST_CASE("DATA: too big keeps reading to the end, stores nothing more") {
  DataOptions opts;
  opts.max_size = 10;
  auto ok = check_splits("12345678\r\n.\r\n", opts);  // exactly 10 bytes
  CHECK(ok.done);
  CHECK_FALSE(ok.report.too_big);
  CHECK_FALSE(ok.verdict);

  std::string big = "0123456789\r\n";
  for (int i = 0; i < 100; ++i) big += "more more more\r\n";
  big += ".\r\nRSET\r\n";
  auto r = check_splits(big, opts);
  CHECK(r.done);
  CHECK(r.report.too_big);
  CHECK(r.content == "0123456789");
  CHECK(big.substr(r.consumed) == "RSET\r\n");
  CHECK(r.report.size == big.size() - 3 - 6);
  REQUIRE(r.verdict);
  CHECK(r.verdict->code == 552);
  CHECK(r.verdict->enhanced == EnhancedCode{5, 3, 4});
}

TEST_CASE("DATA: a line over 998 octets is reported") {
  auto at = check_splits(std::string(998, 'x') + "\r\n.\r\n");
  CHECK_FALSE(at.report.long_line);
  auto over = check_splits(std::string(999, 'x') + "\r\n.\r\n");
  CHECK(over.report.long_line);
  CHECK_FALSE(over.verdict);
  CHECK(over.content.size() == 1001);
  // The dot doubled for transparency is not counted (RFC 5321 §4.5.3.1.6).
  CHECK_FALSE(check_splits("." + std::string(998, 'x') + "\r\n.\r\n").report.long_line);
  CHECK(check_splits("." + std::string(999, 'x') + "\r\n.\r\n").report.long_line);
  DataOptions strict;
  strict.refuse_long_lines = true;
  auto refused = check_splits(std::string(2000, 'y') + "\r\n.\r\n", strict);
  REQUIRE(refused.verdict);
  CHECK(refused.verdict->code == 550);
}

TEST_CASE("BDAT: counted framing across chunks") {
  DataOptions opts;
  opts.framing = Framing::Counted;
  DataReader r(opts);
  std::string out;
  // Dots are content in BDAT (RFC 3030 §2: no dot-stuffing).
  auto f = r.feed(".\r\n..a\r", out);
  CHECK(f.consumed == 7);
  CHECK_FALSE(f.done);
  r.feed("\nb\r", out);
  r.finish(out);
  CHECK(r.done());
  CHECK(out == ".\r\n..a\r\nb\r");
  CHECK(r.report().bare_cr);
  CHECK_FALSE(r.report().bare_lf);

  DataOptions conv = opts;
  conv.bare = BarePolicy::Convert;
  DataReader c(conv);
  out.clear();
  for (char ch : std::string("x\ny\r")) c.feed(std::string_view(&ch, 1), out);
  c.finish(out);
  CHECK(out == "x\r\ny\r\n");
}

TEST_CASE("DotStuffer round-trips through the reader") {
  const std::string contents[] = {"", "a\r\n", ".\r\n", "..\r\n.a\r\n\r\n.", "no final newline", "x\r\n.\r\n.\r\n"};
  for (auto& content : contents) {
    INFO(content);
    DotStuffer s;
    std::string wire;
    for (char c : content) s.feed(std::string_view(&c, 1), wire);
    s.finish(wire);
    auto r = check_splits(wire);
    CHECK(r.done);
    CHECK(r.consumed == wire.size());
    std::string expect = content;
    if (!expect.empty() && expect.size() >= 2 && expect.substr(expect.size() - 2) != "\r\n") expect += "\r\n";
    if (expect.size() == 1) expect += "\r\n";
    CHECK(r.content == expect);
  }
  // A dot after a bare LF is stuffed too, so a lenient receiver never sees LF "." LF.
  DotStuffer s;
  std::string wire;
  s.feed("a\n.\n", wire);
  s.finish(wire);
  CHECK(wire == "a\n..\n\r\n.\r\n");
}
