// split_test.cpp: every split point (and every pair of split points) of multi-literal commands
// gives the events of the unsplit input: the parser's state lives in members, not in the
// caller's read sizes.
#include <catch2/catch.hpp>

#include "tests/mmp/imap/driver.hpp"

using namespace imap_test;
using namespace std::string_literals;

namespace {

const std::string kInputs[] = {
    // synchronising and non-synchronising literals in one command, a quoted string with escapes
    "a1 LOGIN {5}\r\nalice {7+}\r\nse\"cr\\t\r\na2 SELECT \"Sent \\\"Items\\\"\" (CONDSTORE)\r\n",
    // MULTIAPPEND: a mailbox literal, a message, a literal8 message with NUL and CRLF inside, an empty one
    "b1 APPEND {6}\r\nDrafts (\\Draft $Foo) \"01-Jan-2024 10:00:00 +0100\" {12}\r\nHello\r\nWorld ~{5+}\r\n"
    "\0\r\n\0x () {0}\r\n\r\nb2 NOOP\r\n"s,
    // literals inside SEARCH lists and a FETCH header list, a UID command, CHANGEDSINCE
    "c1 UID SEARCH RETURN (MIN MAX) CHARSET {5}\r\nUTF-8 OR (SUBJECT {3+}\r\nfoo FROM \"bar\") NOT (TEXT {2}\r\nxy)\r\n"
    "c2 UID FETCH 1:*,7 (FLAGS BODY.PEEK[HEADER.FIELDS ({4+}\r\nDate From)]<0.1024>) (CHANGEDSINCE 5 VANISHED)\r\n"s,
    // refusals in the middle: a literal too big (sync, then non-sync dropped), junk, then good commands
    "d1 LOGIN {999999999}\r\nd2 LOGIN {70000+}\r\n"s + std::string(70000, 'z') + " pw\r\nd3 BOGUS {3+}\r\nabc\r\n"
    "d4 ID (\"name\" {4}\r\nmutt)\r\n",
    // IDLE/DONE, AUTHENTICATE with one SASL line, LF-only endings
    "e1 IDLE\r\nDONE\ne2 AUTHENTICATE PLAIN\r\nAGZyZWQAcHc=\r\ne3 LOGOUT\n",
};

}  // namespace

TEST_CASE("every split point gives the same events") {
  for (const auto& input : kInputs) {
    const auto whole = run(input);
    INFO(describe(whole));
    REQUIRE_FALSE(whole.empty());
    for (size_t cut = 1; cut < input.size(); ++cut) {
      Driver d;
      d.feed(std::string_view(input).substr(0, cut));
      d.feed(std::string_view(input).substr(cut));
      if (d.events != whole) {
        INFO("split at " << cut);
        CHECK(describe(d.events) == describe(whole));
        CHECK(d.events == whole);
        break;
      }
    }
  }
}

TEST_CASE("every pair of split points of a MULTIAPPEND gives the same events") {
  const std::string& input = kInputs[1];
  const auto whole = run(input);
  size_t mismatches = 0;
  for (size_t a = 1; a < input.size(); ++a) {
    for (size_t b = a + 1; b < input.size(); ++b) {
      Driver d;
      const std::string_view in(input);
      d.feed(in.substr(0, a));
      d.feed(in.substr(a, b - a));
      d.feed(in.substr(b));
      if (d.events != whole) ++mismatches;
    }
  }
  CHECK(mismatches == 0);
}

TEST_CASE("the expected events of the split inputs") {
  auto login = run(kInputs[0]);
  REQUIRE(login.size() == 3);
  CHECK(std::get<LoginArgs>(std::get<Command>(login[1]).args).password == "se\"cr\\t");
  CHECK(std::get<SelectArgs>(std::get<Command>(login[2]).args).mailbox == "Sent \"Items\"");

  auto append = run(kInputs[1]);
  REQUIRE(append.size() == 11);
  CHECK(std::get<AppendData>(append[3]).bytes == "Hello\r\nWorld");
  CHECK(std::get<AppendData>(append[5]).bytes == "\0\r\n\0x"s);
  CHECK(std::get<AppendArgs>(std::get<Command>(append[9]).args).messages.size() == 3);

  auto search = run(kInputs[2]);
  REQUIRE(search.size() == 4);  // two continuations, two commands
  const auto& s = std::get<SearchArgs>(std::get<Command>(search[2]).args);
  CHECK(*s.charset == "UTF-8");
  CHECK(s.program.size() == 6);  // OR AND(2) SUBJECT FROM NOT TEXT
  const auto& f = std::get<FetchArgs>(std::get<Command>(search[3]).args);
  CHECK(f.sections[0].section.fields == std::vector<std::string>{"Date", "From"});
  CHECK(f.set.star);
  CHECK(f.vanished);

  auto refusals = run(kInputs[3]);
  REQUIRE(refusals.size() == 5);
  CHECK(std::get<ParseError>(refusals[0]).tag == "d1");
  CHECK(std::get<ParseError>(refusals[1]).tag == "d2");
  CHECK(std::get<ParseError>(refusals[2]).tag == "d3");
  CHECK(std::get<Continue>(refusals[3]).tag == "d4");
  CHECK(std::get<IdArgs>(std::get<Command>(refusals[4]).args).params[0].second == "mutt");
}
