// limits_test.cpp: the bad input against mmp/imap's parser: unbalanced literals and lists,
// a literal announced as 2 GiB, 10,000 nested parentheses, a huge line, a million-range UID set,
// and the other bounds; each gets the right BAD/NO, memory stays bounded, and the parser reads
// the next command (or, where it cannot, says the session must end).
#include <catch2/catch.hpp>

#include "tests/mmp/imap/driver.hpp"

using namespace imap_test;

namespace {

const Command& command(const Event& e) { return std::get<Command>(e); }
const ParseError& error(const Event& e) { return std::get<ParseError>(e); }

// `bad` (ending in CRLF) followed by "z NOOP": the refusal, and the parser went on.
ParseError refused_then_recovers(const std::string& bad, ParserOptions options = {}) {
  auto events = run(bad + "z NOOP\r\n", options);
  INFO(describe(events));
  REQUIRE(events.size() == 2);
  REQUIRE(std::holds_alternative<ParseError>(events[0]));
  REQUIRE(std::holds_alternative<Command>(events[1]));
  CHECK(command(events[1]).tag == "z");
  CHECK_FALSE(error(events[0]).fatal);
  return error(events[0]);
}

std::string million_ranges() {
  std::string s = "a UID FETCH ";
  s.reserve(8 << 20);
  for (uint32_t i = 0; i < 1000000; ++i) {
    if (i) s += ',';
    s += std::to_string(2 * i + 1);
  }
  return s + " FLAGS\r\n";
}

}  // namespace

TEST_CASE("unbalanced literals and lists get BAD and the next command is read") {
  // A literal announced longer than what follows takes the bytes after it (RFC 9051 §4.3: the count
  // is what counts); the command it swallowed is part of the bad one.
  auto short_lit = run("a LOGIN {8+}\r\nabc\r\nb NOOP\r\nc NOOP\r\n");
  REQUIRE(short_lit.size() == 2);
  CHECK(error(short_lit[0]).tag == "a");
  CHECK(command(short_lit[1]).tag == "c");
  // Shorter than announced and then the line goes on: the literal's end is where the count says.
  auto early = run("a LOGIN {2+}\r\nabc def\r\nb NOOP\r\n");
  REQUIRE(early.size() == 2);
  CHECK(error(early[0]).text == "LOGIN: expected a space");
  CHECK(refused_then_recovers("a SEARCH ((SEEN\r\n").tag == "a");
  CHECK(refused_then_recovers("a SEARCH SEEN))\r\n").tag == "a");
  CHECK(refused_then_recovers("a FETCH 1 (FLAGS\r\n").tag == "a");
  CHECK(refused_then_recovers("a STORE 1 FLAGS (\\Seen\r\n").tag == "a");
  CHECK(refused_then_recovers("a LIST \"\" (INBOX\r\n").tag == "a");
  CHECK(refused_then_recovers("a LOGIN \"unterminated\r\n").text == "LOGIN: unterminated quoted string");
  // A literal for a command without arguments is refused before its bytes.
  CHECK(refused_then_recovers("a NOOP {5}\r\n").text == "NOOP: takes no arguments");
  CHECK(refused_then_recovers("a EXPUNGE {5+}\r\nxxxxx\r\n").text == "EXPUNGE: takes no arguments");
  CHECK(run("a UID EXPUNGE {3}\r\n").size() == 1);  // a Continue: UID EXPUNGE takes a set
  // A literal's announcement in the middle of a line is not one.
  CHECK(refused_then_recovers("a LOGIN {3} pw\r\n").tag == "a");
  // A count that is no number64: a synchronising one is refused before any byte comes.
  auto huge_count = refused_then_recovers("a LOGIN {99999999999999999999999}\r\n");
  CHECK(huge_count.code == "TOOBIG");
  CHECK(huge_count.tag == "a");
  // ... a non-synchronising one cannot be skipped: the session must end.
  auto events = run("a LOGIN {99999999999999999999999+}\r\nz NOOP\r\n");
  REQUIRE(events.size() == 1);
  CHECK(error(events[0]).fatal);
}

TEST_CASE("a literal announced as 2 GiB") {
  const std::string two_gib = std::to_string(2ull << 30);
  // Synchronising: refused before the client sends a byte; no continuation request.
  auto login = refused_then_recovers("a LOGIN {" + two_gib + "}\r\n");
  CHECK(login.condition == Condition::Bad);
  CHECK(login.code == "TOOBIG");
  CHECK(login.text == "literal too large");
  auto append = refused_then_recovers("a APPEND INBOX {" + two_gib + "}\r\n");
  CHECK(append.condition == Condition::No);  // RFC 7889 §4
  CHECK(append.code == "TOOBIG");
  CHECK(append.verb == Verb::Append);
  CHECK(refused_then_recovers("a APPEND INBOX ~{" + two_gib + "}\r\n").code == "TOOBIG");
  // Non-synchronising: the client sends 2 GiB whatever we say; too much to read and drop.
  Parser p;
  std::vector<Event> out;
  p.feed("a APPEND INBOX {" + two_gib + "+}\r\n" + std::string(4096, 'x'), out);
  REQUIRE(out.size() == 1);
  CHECK(error(out[0]).fatal);
  CHECK(error(out[0]).code == "TOOBIG");
  CHECK(error(out[0]).tag == "a");
  CHECK(p.failed());
  out.clear();
  p.feed("z NOOP\r\n", out);
  CHECK(out.empty());  // ignored: the session has said BYE
  CHECK(p.buffered() == 0);
  // One that fits in max_discard is read and dropped instead.
  ParserOptions small;
  small.limits.max_literal = 100;
  CHECK(refused_then_recovers("a LOGIN {1000+}\r\n" + std::string(1000, 'x') + " pw\r\n", small).code == "TOOBIG");
}

TEST_CASE("10,000 nested parentheses") {
  const std::string deep = std::string(10000, '(') + "SEEN" + std::string(10000, ')');
  auto search = refused_then_recovers("a SEARCH " + deep + "\r\n");
  CHECK(search.code == "LIMIT");
  CHECK(search.text == "SEARCH: SEARCH nests deeper than 64 levels");
  std::string nots;
  for (int i = 0; i < 10000; ++i) nots += "NOT ";
  CHECK(refused_then_recovers("a SEARCH " + nots + "SEEN\r\n").code == "LIMIT");
  std::string ors;
  for (int i = 0; i < 5000; ++i) ors += "OR SEEN ";
  CHECK(refused_then_recovers("a SEARCH " + ors + "SEEN\r\n").code == "LIMIT");
  CHECK(refused_then_recovers("a FETCH 1 " + deep + "\r\n").tag == "a");
  CHECK(refused_then_recovers("a LIST " + deep + " \"\" *\r\n").tag == "a");
  CHECK(refused_then_recovers("a ID " + deep + "\r\n").tag == "a");
  // 63 lists deep (64 levels with the key inside) is still fine; the program the store gets is
  // the key itself, since one-key lists are dropped.
  auto ok = run("a SEARCH " + std::string(63, '(') + "SEEN" + std::string(63, ')') + "\r\n");
  REQUIRE(ok.size() == 1);
  CHECK(std::get<SearchArgs>(command(ok[0]).args).program.size() == 1);
  // 64 keys deep in the program (what the store counts) passes, 65 does not.
  std::string n63;
  for (int i = 0; i < 63; ++i) n63 += "NOT ";
  CHECK(run("a SEARCH " + n63 + "SEEN\r\n").size() == 1);
  CHECK(refused_then_recovers("a SEARCH " + n63 + "SEEN SEEN\r\n").code == "LIMIT");  // the top AND is one more
}

TEST_CASE("a huge line is refused once, held to the limit, and dropped to its end") {
  Parser p;
  std::vector<Event> out;
  p.feed("a LOGIN ", out);
  const std::string chunk(1 << 20, 'x');
  for (int i = 0; i < 16; ++i) {  // 16 MiB with no line end
    p.feed(chunk, out);
    CHECK(p.buffered() <= p.options().limits.max_line + 1);
  }
  REQUIRE(out.size() == 1);
  CHECK(error(out[0]).tag == "a");
  CHECK(error(out[0]).code == "TOOBIG");
  CHECK(error(out[0]).text == "line too long");
  out.clear();
  p.feed(" pw\r\nz NOOP\r\n", out);
  REQUIRE(out.size() == 1);
  CHECK(command(out[0]).tag == "z");
  // Exactly at the limit is fine; one more is not.
  ParserOptions o;
  o.limits.max_line = 100;
  const std::string line100 = "a LOGIN u " + std::string(90, 'p');
  CHECK(run(line100 + "\r\n", o).size() == 1);
  CHECK(std::holds_alternative<Command>(run(line100 + "\r\n", o)[0]));
  CHECK(refused_then_recovers(line100 + "p\r\n", o).text == "line too long");
  CHECK(refused_then_recovers(line100 + "p\n", o).text == "line too long");
  // A long line after a literal carries the command's tag; one that ends announcing a
  // non-synchronising literal has the literal dropped too.
  CHECK(refused_then_recovers("b LOGIN {1+}\r\nu " + std::string(200, 'p') + "\r\n", o).tag == "b");
  CHECK(refused_then_recovers("c LOGIN u " + std::string(200, 'p') + " {5+}\r\nz NOO\r\n", o).tag == "c");
  // The IDLE and SASL lines have the same limit.
  Driver d(o);
  d.feed("a IDLE\r\n" + std::string(500, 'D') + "\r\nb NOOP\r\n");
  REQUIRE(d.events.size() == 3);
  CHECK_FALSE(std::get<IdleEnd>(d.events[1]).done);
  CHECK(command(d.events[2]).tag == "b");
  Parser s(o);
  out.clear();
  s.feed("t AUTHENTICATE PLAIN\r\n", out);
  s.expect_sasl("t");
  s.resume(out);
  s.feed(std::string(500, 'A') + "\r\n", out);
  REQUIRE(out.size() == 2);
  CHECK(error(out[1]).tag == "t");
  CHECK(error(out[1]).verb == Verb::Authenticate);
}

TEST_CASE("a million-range UID set") {
  const std::string big = million_ranges();
  REQUIRE(big.size() > 6'000'000);
  // The default line limit refuses it first.
  CHECK(refused_then_recovers(big).text == "line too long");
  // With a line limit that lets it through, the range bound refuses it, before the ranges are merged.
  ParserOptions o;
  o.limits.max_line = 16 << 20;
  o.limits.max_command = 16 << 20;
  auto r = refused_then_recovers(big, o);
  CHECK(r.code == "LIMIT");
  CHECK(r.text == "FETCH: too many ranges in sequence sets");
  // Up to the bound (65,536 ranges) it parses, merged where they touch.
  std::string ok = "a UID FETCH ";
  for (uint32_t i = 0; i < 65536; ++i) ok += (i ? "," : "") + std::to_string(i + 1);
  auto events = run(ok + " FLAGS\r\n", o);
  REQUIRE(events.size() == 1);
  CHECK(std::get<FetchArgs>(command(events[0]).args).set.ranges == std::vector<SeqRange>{{1, 65536}});
}

TEST_CASE("the other bounds: command size, literals, items, search keys, pending bytes, messages") {
  ParserOptions o;
  o.limits.max_command = 10000;
  CHECK(refused_then_recovers("a LOGIN {6000+}\r\n" + std::string(6000, 'u') + " {6000+}\r\n" + std::string(6000, 'p') +
                              "\r\n", o).text == "command too long");
  std::string many = "a SEARCH";
  for (int i = 0; i < 300; ++i) many += " TEXT {1+}\r\nx";
  auto lits = refused_then_recovers(many + "\r\n");
  CHECK(lits.text == "too many literals in one command");
  CHECK(lits.code == "LIMIT");

  std::string flags = "a STORE 1 FLAGS (";
  for (int i = 0; i < 21000; ++i) flags += (i ? " f" : "f");
  CHECK(refused_then_recovers(flags + ")\r\n").text == "STORE: too many items in one command");
  std::string keys = "a SEARCH";
  for (int i = 0; i < 10001; ++i) keys += " SEEN";
  CHECK(refused_then_recovers(keys + "\r\n").text == "SEARCH: SEARCH has more than 10000 keys");

  ParserOptions m;
  m.limits.max_messages = 2;
  auto three = run("a APPEND INBOX {1+}\r\nx {1+}\r\ny {1+}\r\nz\r\nb NOOP\r\n", m);
  REQUIRE(three.size() == 6);  // two messages streamed, then the refusal: the session drops both
  CHECK(error(three[4]).text == "too many messages in one APPEND");
  CHECK(command(three[5]).tag == "b");

  // A session that keeps feeding while paused.
  Parser p;
  std::vector<Event> out;
  p.feed("a NOOP\r\n", out);
  REQUIRE(p.paused());
  out.clear();
  for (int i = 0; i < 5 && out.empty(); ++i) p.feed(std::string(64 * 1024, 'x'), out);
  REQUIRE(out.size() == 1);
  CHECK(error(out[0]).fatal);
  CHECK(p.failed());
  CHECK(p.buffered() == 0);
}

TEST_CASE("buffers are released after a big command") {
  Parser p;
  std::vector<Event> out;
  p.feed("a LOGIN {60000+}\r\n" + std::string(60000, 'u') + " pw\r\n", out);
  REQUIRE(out.size() == 1);
  CHECK(p.buffered() == 0);
  CHECK_FALSE(p.in_command());
}
