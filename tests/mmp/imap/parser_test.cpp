// parser_test.cpp: the framing of mmp/imap's parser: synchronising and non-synchronising literals,
// literal8, APPEND streaming and MULTIAPPEND, the pauses and what the session answers at them
// (continuations, cancel, IDLE/DONE, SASL lines, STARTTLS), pipelining and line endings.
#include <catch2/catch.hpp>

#include "tests/mmp/imap/driver.hpp"

using namespace imap_test;
using namespace std::string_literals;

namespace {

const Command& command(const Event& e) { return std::get<Command>(e); }

}  // namespace

TEST_CASE("a synchronising literal pauses for the continuation request (RFC 9051 §4.3)") {
  Parser p;
  std::vector<Event> out;
  p.feed("a1 LOGIN {4}\r\n", out);
  REQUIRE(out.size() == 1);
  const auto& c = std::get<Continue>(out[0]);
  CHECK(c.tag == "a1");
  CHECK(c.verb == Verb::Login);
  CHECK(c.size == 4);
  CHECK_FALSE(c.message);
  CHECK(p.paused());
  CHECK(p.in_command());
  out.clear();
  p.feed("fred {3}\r\n", out);  // waits while paused
  CHECK(out.empty());
  CHECK(p.pending_bytes() == 10);
  p.resume(out);
  REQUIRE(out.size() == 1);
  CHECK(std::get<Continue>(out[0]).size == 3);
  out.clear();
  p.resume(out);
  CHECK(out.empty());
  p.feed("pw!\r\n", out);
  REQUIRE(out.size() == 1);
  const auto& l = std::get<LoginArgs>(command(out[0]).args);
  CHECK(l.user == "fred");
  CHECK(l.password == "pw!");
  CHECK(p.paused());  // pause_after_command
  CHECK_FALSE(p.in_command());
}

TEST_CASE("cancel_literal drops the command and reads on after its announcement") {
  Parser p;
  std::vector<Event> out;
  p.feed("a1 APPEND Nowhere {30}\r\n", out);
  REQUIRE(out.size() == 2);
  CHECK(std::get<AppendStart>(out[0]).mailbox == "Nowhere");
  CHECK(std::get<Continue>(out[1]).message);
  CHECK(p.cancel_literal());  // the session answers NO [TRYCREATE] itself
  CHECK_FALSE(p.cancel_literal());
  out.clear();
  p.feed("a2 NOOP\r\n", out);
  CHECK(out.empty());
  p.resume(out);
  REQUIRE(out.size() == 1);
  CHECK(command(out[0]).tag == "a2");
  // Not after the literal's first byte.
  Parser q;
  out.clear();
  q.feed("b LOGIN {3}\r\n", out);
  q.resume(out);
  q.feed("x", out);
  CHECK_FALSE(q.cancel_literal());
}

TEST_CASE("non-synchronising literals, LITERAL+ and LITERAL- (RFC 7888)") {
  auto plus = run("a LOGIN {5+}\r\nalice {5000+}\r\n" + std::string(5000, 'p') + "\r\n");
  REQUIRE(plus.size() == 1);
  CHECK(std::get<LoginArgs>(command(plus[0]).args).password.size() == 5000);

  ParserOptions minus;
  minus.literal_plus = false;
  auto ok = run("a LOGIN {5+}\r\nalice {4096+}\r\n" + std::string(4096, 'p') + "\r\n", minus);
  REQUIRE(ok.size() == 1);
  CHECK(std::holds_alternative<Command>(ok[0]));
  // Over 4096 under LITERAL-: BAD [TOOBIG], the literal read and dropped, the next command read.
  auto big = run("a LOGIN {5+}\r\nalice {4097+}\r\n" + std::string(4097, 'p') + "\r\nb NOOP\r\n", minus);
  REQUIRE(big.size() == 2);
  const auto& e = std::get<ParseError>(big[0]);
  CHECK(e.tag == "a");
  CHECK(e.code == "TOOBIG");
  CHECK(e.condition == Condition::Bad);
  CHECK_FALSE(e.fatal);
  CHECK(command(big[1]).tag == "b");
}

TEST_CASE("APPEND streams its message, MULTIAPPEND, dates, flags, literal8 (RFC 9051 §6.3.12, RFC 3502, RFC 3516)") {
  const std::string msg1 = "Date: Mon, 7 Feb 1994 21:52:25 -0800\r\nSubject: afternoon meeting\r\n\r\nHello Joe\r\n";
  const std::string msg2 = std::string("bin\0ary", 7);
  const std::string input = "A003 APPEND saved-messages (\\Seen $Junk) \"05-Feb-1994 21:52:25 -0800\" {" +
                            std::to_string(msg1.size()) + "+}\r\n" + msg1 + " ~{" + std::to_string(msg2.size()) +
                            "+}\r\n" + msg2 + " () \" 7-Feb-1994 01:02:03 +0000\" {0+}\r\n\r\n";
  auto events = run(input);
  REQUIRE(events.size() == 7);
  const auto& s1 = std::get<AppendStart>(events[0]);
  CHECK(s1.tag == "A003");
  CHECK(s1.mailbox == "saved-messages");
  CHECK(s1.index == 0);
  CHECK(s1.message.flags == std::vector<std::string>{"\\Seen", "$Junk"});
  CHECK(*s1.message.internal_date == 760513945);  // 1994-02-06T05:52:25Z
  CHECK(s1.message.size == msg1.size());
  CHECK_FALSE(s1.message.binary);
  CHECK(std::get<AppendData>(events[1]) == AppendData{msg1, true});
  const auto& s2 = std::get<AppendStart>(events[2]);
  CHECK(s2.index == 1);
  CHECK(s2.message.binary);
  CHECK(s2.message.flags.empty());
  CHECK_FALSE(s2.message.internal_date);
  CHECK(std::get<AppendData>(events[3]) == AppendData{msg2, true});
  const auto& s3 = std::get<AppendStart>(events[4]);
  CHECK(*s3.message.internal_date == 760582923);
  CHECK(std::get<AppendData>(events[5]) == AppendData{"", true});
  const auto& done = command(events[6]);
  CHECK(done.verb == Verb::Append);
  const auto& a = std::get<AppendArgs>(done.args);
  CHECK(a.mailbox == "saved-messages");
  REQUIRE(a.messages.size() == 3);
  CHECK(a.messages[0] == s1.message);
  CHECK(a.messages[1] == s2.message);

  // The mailbox as a literal, then a synchronising message literal.
  auto lit = run("a APPEND {5}\r\nDraft (\\Draft) {3}\r\nabc\r\n");
  REQUIRE(lit.size() == 5);
  CHECK(std::get<Continue>(lit[0]).size == 5);
  CHECK_FALSE(std::get<Continue>(lit[0]).message);
  CHECK(std::get<AppendStart>(lit[1]).mailbox == "Draft");
  CHECK(std::get<Continue>(lit[2]).message);
  CHECK(std::get<AppendData>(lit[3]).bytes == "abc");
  CHECK(command(lit[4]).verb == Verb::Append);
}

TEST_CASE("APPEND refusals: junk, NUL outside literal8, literal8 elsewhere, no MULTIAPPEND, size") {
  auto junk = run("a APPEND INBOX {3+}\r\nabc junk\r\nb NOOP\r\n");
  REQUIRE(junk.size() == 4);
  CHECK(std::get<ParseError>(junk[2]).text == "APPEND: unexpected text after the message");
  CHECK(command(junk[3]).tag == "b");

  auto nul = run("a APPEND INBOX {5+}\r\nab\0cd\r\nb NOOP\r\n"s);
  REQUIRE(nul.size() == 4);
  CHECK(std::holds_alternative<AppendStart>(nul[0]));
  CHECK(std::get<AppendData>(nul[1]) == AppendData{"ab", false});  // what came before the NUL, in any split
  CHECK(std::get<ParseError>(nul[2]).text == "APPEND: NUL in a message; send it as literal8 (~{n})");
  CHECK(command(nul[3]).tag == "b");

  auto l8 = run("a LOGIN ~{3+}\r\nabc x\r\nb NOOP\r\n");
  REQUIRE(l8.size() == 2);
  CHECK(std::get<ParseError>(l8[0]).text == "literal8 (~{n}) is only for APPEND messages");
  CHECK(command(l8[1]).tag == "b");

  ParserOptions single;
  single.multiappend = false;
  auto two = run("a APPEND INBOX {1+}\r\nx {1+}\r\ny\r\nb NOOP\r\n", single);
  REQUIRE(two.size() == 4);
  CHECK(std::get<ParseError>(two[2]).text == "APPEND takes one message (no MULTIAPPEND)");
  CHECK(command(two[3]).tag == "b");

  ParserOptions small;
  small.limits.max_message = 10;
  auto sync = run("a APPEND INBOX {11}\r\nb NOOP\r\n", small);
  REQUIRE(sync.size() == 2);
  const auto& too_big = std::get<ParseError>(sync[0]);
  CHECK(too_big.condition == Condition::No);  // RFC 7889: NO [TOOBIG], and no "+" sent
  CHECK(too_big.code == "TOOBIG");
  CHECK(command(sync[1]).tag == "b");
  auto nonsync = run("a APPEND INBOX {11+}\r\n01234567890\r\nb NOOP\r\n", small);
  REQUIRE(nonsync.size() == 2);
  CHECK(std::get<ParseError>(nonsync[0]).condition == Condition::Bad);
  CHECK(command(nonsync[1]).tag == "b");

  Parser p;
  p.set_message_limit(0);  // before login: no APPEND message is taken
  std::vector<Event> out;
  p.feed("a APPEND INBOX {0}\r\n", out);
  REQUIRE(out.size() == 1);
  CHECK(std::get<ParseError>(out[0]).code == "TOOBIG");

  auto bad_prefix = run("a APPEND INBOX (\\Seen \"date\" {3}\r\nb NOOP\r\n");
  REQUIRE(bad_prefix.size() == 2);
  CHECK(std::get<ParseError>(bad_prefix[0]).tag == "a");
  CHECK(command(bad_prefix[1]).tag == "b");
  CHECK(refusal("a APPEND INBOX").text == "APPEND: APPEND needs a mailbox and a message literal");
  auto bad_date = run("a APPEND INBOX \"31-Feb-2020 00:00:00 +0000\" {1}\r\n");
  REQUIRE(bad_date.size() == 1);
  CHECK(std::get<ParseError>(bad_date[0]).text == "APPEND: expected a date-time (\"dd-Mon-yyyy hh:mm:ss +zzzz\")");
}

TEST_CASE("IDLE and DONE (RFC 2177)") {
  auto events = run("a IDLE\r\nDONE\r\nb IDLE\r\ndone\r\nc IDLE\r\nNOOP\r\nd NOOP\r\n");
  REQUIRE(events.size() == 7);
  CHECK(command(events[0]).verb == Verb::Idle);
  CHECK(std::get<IdleEnd>(events[1]).done);
  CHECK(std::get<IdleEnd>(events[3]).done);  // case-insensitive
  CHECK_FALSE(std::get<IdleEnd>(events[5]).done);
  CHECK(command(events[6]).tag == "d");
  // A refused IDLE: the session resumes without expect_done and the next line is a command.
  Driver d;
  d.accept_idle = false;
  d.feed("a IDLE\r\nb NOOP\r\n");
  REQUIRE(d.events.size() == 2);
  CHECK(command(d.events[1]).tag == "b");
}

TEST_CASE("AUTHENTICATE exchanges: SASL lines, cancel, and the pause after each (RFC 9051 §6.2.2)") {
  Parser p;
  std::vector<Event> out;
  p.feed("a AUTHENTICATE PLAIN\r\ndGVzdAB0ZXN0AHRlc3Q=\r\nb NOOP\r\n", out);
  REQUIRE(out.size() == 1);
  CHECK(p.paused());
  p.expect_sasl("a");
  out.clear();
  p.resume(out);
  REQUIRE(out.size() == 1);
  CHECK(std::get<SaslResponse>(out[0]) == SaslResponse{"dGVzdAB0ZXN0AHRlc3Q=", false});
  CHECK(p.paused());
  p.end_sasl();
  out.clear();
  p.resume(out);
  REQUIRE(out.size() == 1);
  CHECK(command(out[0]).tag == "b");

  auto cancel = run("a AUTHENTICATE SCRAM-SHA-256\r\n*\r\n");
  REQUIRE(cancel.size() == 2);
  CHECK(std::get<SaslResponse>(cancel[1]).cancel);
}

TEST_CASE("STARTTLS: reset() drops what was pipelined behind it (CVE-2011-0411)") {
  Parser p;
  std::vector<Event> out;
  p.feed("a STARTTLS\r\nb LOGIN injected pw\r\nc {5}\r\n", out);
  REQUIRE(out.size() == 1);
  CHECK(command(out[0]).verb == Verb::StartTls);
  CHECK(p.paused());
  CHECK(p.pending_bytes() > 0);
  p.reset();
  CHECK_FALSE(p.paused());
  CHECK(p.buffered() == 0);
  out.clear();
  p.feed("d CAPABILITY\r\n", out);
  REQUIRE(out.size() == 1);
  CHECK(command(out[0]).tag == "d");
}

TEST_CASE("pipelining, bare LF, and pause_after_command off") {
  ParserOptions all_at_once;
  all_at_once.pause_after_command = false;
  Parser p(all_at_once);
  std::vector<Event> out;
  p.feed("a NOOP\r\nb NOOP\nc BOGUS\r\nd CAPABILITY\r\n", out);
  REQUIRE(out.size() == 4);
  CHECK(command(out[1]).tag == "b");  // a bare LF ends a line too
  CHECK(std::get<ParseError>(out[2]).tag == "c");
  CHECK_FALSE(p.paused());
  // With the default, one command per resume.
  Parser q;
  out.clear();
  q.feed("a NOOP\r\nb NOOP\r\n", out);
  CHECK(out.size() == 1);
  out.clear();
  q.resume(out);
  CHECK(out.size() == 1);
}

TEST_CASE("one byte at a time gives the same events as all at once") {
  const std::string input =
      "a LOGIN {4}\r\nfred {3+}\r\npw!\r\n"
      "b SELECT INBOX (CONDSTORE)\r\n"
      "c UID FETCH 1:* (FLAGS BODY.PEEK[HEADER.FIELDS (From {4+}\r\nDate)]) (CHANGEDSINCE 7)\r\n"
      "d APPEND {5}\r\nDraft (\\Draft) ~{6}\r\n" + std::string("a\0b\r\nc", 6) + " {2+}\r\nxy\r\n"
      "e IDLE\r\nDONE\r\n"
      "f SEARCH CHARSET UTF-8 OR (TEXT {3}\r\nabc SEEN) NOT 1:5\r\n"
      "g BAD(\r\n"
      "h LOGOUT\r\n";
  const auto whole = run(input);
  CHECK(run(input, {}, 1) == whole);
  CHECK(whole.size() == 17);
  INFO(describe(whole));
  CHECK(command(whole.back()).verb == Verb::Logout);
}
