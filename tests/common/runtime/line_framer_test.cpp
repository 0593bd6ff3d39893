// line_framer_test.cpp: framing limits, resync after over-long lines, literal mode, reset; every
// input is also fed one byte at a time and must give the same frames.
#include <catch2/catch.hpp>

#include <string>
#include <vector>

#include "common/runtime/line_framer.hpp"

using namespace common::runtime;

namespace {

// Renders frames as strings so splits can be compared.
std::vector<std::string> frames_of(LineFramer& f) {
  std::vector<std::string> out;
  while (auto fr = f.next()) {
    if (auto* l = std::get_if<LineFrame>(&*fr)) out.push_back("L:" + std::string(l->text) + (l->bare_lf ? "|lf" : ""));
    if (auto* t = std::get_if<LineTooLong>(&*fr)) out.push_back("TOOLONG:" + std::to_string(t->length >= 11));
    if (auto* c = std::get_if<ByteChunk>(&*fr)) out.push_back("B:" + std::string(c->bytes) + (c->last ? "|last" : ""));
  }
  return out;
}

std::vector<std::string> whole(const std::string& in, size_t max) {
  LineFramer f(max);
  f.append(in);
  return frames_of(f);
}

std::vector<std::string> bytewise(const std::string& in, size_t max) {
  LineFramer f(max);
  std::vector<std::string> out;
  for (char c : in) {
    f.append(std::string_view(&c, 1));
    auto part = frames_of(f);
    out.insert(out.end(), part.begin(), part.end());
  }
  return out;
}

}  // namespace

TEST_CASE("lines split on CRLF and bare LF, in any split", "[framer]") {
  std::string in = "EHLO a\r\nNOOP\nQUIT\r\npartial";
  std::vector<std::string> want{"L:EHLO a", "L:NOOP|lf", "L:QUIT"};
  CHECK(whole(in, 10) == want);
  CHECK(bytewise(in, 10) == want);
}

TEST_CASE("a line at the limit passes, one byte more is refused once and parsing resyncs", "[framer]") {
  std::string ok(10, 'a');
  std::string bad(11, 'b');
  std::string in = ok + "\r\n" + bad + "\r\n" + "next\r\n";
  std::vector<std::string> want{"L:" + ok, "TOOLONG:1", "L:next"};
  CHECK(whole(in, 10) == want);
  CHECK(bytewise(in, 10) == want);
}

TEST_CASE("a huge line without LF never grows the buffer past the limit", "[framer]") {
  LineFramer f(100);
  for (int i = 0; i < 1000; ++i) {
    f.append(std::string(1000, 'x'));
    CHECK_FALSE(f.next());
    CHECK(f.buffered() <= 1000 + 101);
  }
  f.append("tail\r\nok\r\n");
  auto fr = f.next();
  REQUIRE(fr);
  REQUIRE(std::holds_alternative<LineTooLong>(*fr));
  CHECK(std::get<LineTooLong>(*fr).length > 100);
  fr = f.next();
  REQUIRE(fr);
  CHECK(std::get<LineFrame>(*fr).text == "ok");
}

TEST_CASE("byte mode delivers exactly the literal, then lines again", "[framer]") {
  for (bool one_by_one : {false, true}) {
    LineFramer f(20);
    std::string in = "A1 APPEND {5}\r\nhe\r\nlo)\r\nA2 NOOP\r\n";
    std::vector<std::string> got;
    auto pump = [&] {
      while (auto fr = f.next()) {
        if (auto* l = std::get_if<LineFrame>(&*fr)) {
          got.push_back("L:" + std::string(l->text));
          if (l->text.ends_with("{5}")) f.expect_bytes(5);
        } else if (auto* c = std::get_if<ByteChunk>(&*fr)) {
          got.push_back("B:" + std::string(c->bytes) + (c->last ? "|last" : ""));
        }
      }
    };
    if (one_by_one) {
      for (char c : in) {
        f.append(std::string_view(&c, 1));
        pump();
      }
      CHECK(got == std::vector<std::string>{"L:A1 APPEND {5}", "B:h", "B:e", "B:\r", "B:\n", "B:l|last", "L:o)",
                                            "L:A2 NOOP"});
    } else {
      f.append(in);
      pump();
      CHECK(got == std::vector<std::string>{"L:A1 APPEND {5}", "B:he\r\nl|last", "L:o)", "L:A2 NOOP"});
    }
  }
}

TEST_CASE("reset drops pipelined plaintext (STARTTLS)", "[framer]") {
  LineFramer f(100);
  f.append("STARTTLS\r\nRSET injected\r\nMAIL FROM:<x>");
  auto fr = f.next();
  REQUIRE(fr);
  CHECK(std::get<LineFrame>(*fr).text == "STARTTLS");
  f.reset();
  CHECK(f.buffered() == 0);
  CHECK_FALSE(f.next());
  f.append("EHLO tls\r\n");
  CHECK(std::get<LineFrame>(*f.next()).text == "EHLO tls");
}

TEST_CASE("CR alone inside a line is data and NUL bytes pass to the protocol", "[framer]") {
  std::string in("a\rb\0c\r\n", 7);
  auto got = whole(in, 10);
  REQUIRE(got.size() == 1);
  CHECK(got[0] == "L:" + std::string("a\rb\0c", 5));
}
