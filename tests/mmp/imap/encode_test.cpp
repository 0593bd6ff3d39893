// encode_test.cpp: the response syntax helpers (mmp/imap/encode.hpp), and that what they write
// parses back to the same value with mmp/imap's own parser.
#include <catch2/catch.hpp>

#include "mmp/imap/encode.hpp"
#include "tests/mmp/imap/driver.hpp"

using namespace imap_test;
using namespace std::string_literals;

namespace {

std::string astring(std::string_view s, bool utf8 = false) {
  std::string out;
  append_astring(out, s, utf8);
  return out;
}

}  // namespace

TEST_CASE("strings: atom, quoted or literal") {
  CHECK(astring("INBOX") == "INBOX");
  CHECK(astring("a]b") == "a]b");
  CHECK(astring("") == "\"\"");
  CHECK(astring("NIL") == "\"NIL\"");
  CHECK(astring("two words") == "\"two words\"");
  CHECK(astring("q\"b\\s") == "\"q\\\"b\\\\s\"");
  CHECK(astring("a*b%") == "\"a*b%\"");
  CHECK(astring("line\r\nbreak") == "{11}\r\nline\r\nbreak");
  CHECK(astring("nul\0"s) == "{4}\r\nnul\0"s);
  CHECK(astring("caf\xc3\xa9") == "{5}\r\ncaf\xc3\xa9");          // IMAP4rev1: 8-bit is a literal
  CHECK(astring("caf\xc3\xa9", true) == "\"caf\xc3\xa9\"");      // UTF-8 mode: quoted
  CHECK(astring("caf\xe9", true) == "{4}\r\ncaf\xe9");            // not UTF-8: still a literal
  CHECK(astring(std::string(kMaxQuoted + 1, 'a') + " ").substr(0, 7) == "{1026}\r");
  std::string s;
  append_nstring(s, std::nullopt, false);
  s += ' ';
  append_nstring(s, std::string_view("x y"), false);
  CHECK(s == "NIL \"x y\"");
  s.clear();
  append_literal8(s, "\0b"s);
  CHECK(s == "~{2}\r\n\0b"s);
}

TEST_CASE("what the encoders write parses back to the same string") {
  const std::string values[] = {"", "plain", "with space", "q\"uote\\", "NIL", "{5}", "a\r\nb", "x\0y"s,
                                "\xff\xfe", "caf\xc3\xa9", std::string(3000, 'q'), "(paren)", "]", "%*"};
  for (const auto& v : values) {
    for (bool utf8 : {false, true}) {
      INFO(v << " utf8=" << utf8);
      std::string line = "a LOGIN ";
      append_astring(line, v, utf8);
      line += ' ';
      append_string(line, v, utf8);
      line += "\r\n";
      auto events = run(line);
      if (v.find('\0') != std::string::npos) {  // NUL cannot be in a command's literal: refused
        CHECK(std::holds_alternative<ParseError>(events.back()));
        continue;
      }
      // The parser needs the client's "+" for each literal; the driver gives it.
      const auto* c = std::get_if<Command>(&events.back());
      REQUIRE(c != nullptr);
      CHECK(std::get<LoginArgs>(c->args).user == v);
      CHECK(std::get<LoginArgs>(c->args).password == v);
    }
  }
}

TEST_CASE("mailboxes, flags, sequence sets, dates") {
  std::string s;
  append_mailbox(s, "inbox", false);
  s += ' ';
  append_mailbox(s, "Entw\xc3\xbcrfe", false);
  s += ' ';
  append_mailbox(s, "Entw\xc3\xbcrfe", true);
  s += ' ';
  append_mailbox(s, "Sent Items", false);
  CHECK(s == "INBOX Entw&APw-rfe \"Entw\xc3\xbcrfe\" \"Sent Items\"");

  s.clear();
  const std::vector<std::string> flags = {"\\Seen", "$Junk", "bad flag", "\\", "", "\\Answered"};
  append_flag_list(s, flags);
  CHECK(s == "(\\Seen $Junk \\Answered)");
  s.clear();
  append_flag_list(s, std::vector<std::string>{});
  CHECK(s == "()");
  s.clear();
  // PERMANENTFLAGS' "\*" (new keywords may be stored) is the one flag that is not an atom.
  append_flag_list(s, std::vector<std::string>{"\\Seen", "\\*", "*", "$*"});
  CHECK(s == "(\\Seen \\*)");

  s.clear();
  const std::vector<SeqRange> ranges = {{1, 3}, {5, 5}, {7, 4294967295u}};
  append_sequence_set(s, ranges);
  CHECK(s == "1:3,5,7:4294967295");
  s.clear();
  const std::vector<uint32_t> uids = {1, 2, 3, 5, 7, 8, 10};
  append_number_set(s, uids);
  CHECK(s == "1:3,5,7:8,10");
  s.clear();
  append_number_set(s, std::vector<uint32_t>{4294967294u, 4294967295u});
  CHECK(s == "4294967294:4294967295");

  s.clear();
  append_date_time(s, 837596665);  // RFC 3501's "17-Jul-1996 02:44:25 -0700"
  CHECK(s == "\"17-Jul-1996 09:44:25 +0000\"");
  s.clear();
  append_date_time(s, 0);
  CHECK(s == "\"01-Jan-1970 00:00:00 +0000\"");
  s.clear();
  append_date_time(s, -1);
  CHECK(s == "\"31-Dec-1969 23:59:59 +0000\"");
  s.clear();
  append_date_time(s, 1709251199);
  CHECK(s == "\"29-Feb-2024 23:59:59 +0000\"");
  // What it writes, APPEND reads back as the same time.
  auto events = run("a APPEND INBOX " + s + " {0+}\r\n\r\n");
  REQUIRE(events.size() == 3);
  CHECK(*std::get<AppendStart>(events[0]).message.internal_date == 1709251199);
}

TEST_CASE("section names as FETCH responses give them") {
  auto name = [](std::string_view item) {
    auto c = parse_one("a FETCH 1 " + std::string(item));
    std::string out;
    append_section_name(out, std::get<FetchArgs>(c.args).sections.at(0), false);
    return out;
  };
  CHECK(name("BODY[]") == "BODY[]");
  CHECK(name("BODY.PEEK[HEADER.FIELDS (Date \"X(Y\")]") == "BODY[HEADER.FIELDS (Date \"X(Y\")]");
  CHECK(name("body[1.2.mime]") == "BODY[1.2.MIME]");
  CHECK(name("BODY[3.HEADER.FIELDS.NOT (A)]<10.20>") == "BODY[3.HEADER.FIELDS.NOT (A)]<10>");
  CHECK(name("BODY[2.TEXT]") == "BODY[2.TEXT]");
  CHECK(name("BODY[4]") == "BODY[4]");
  CHECK(name("BINARY.PEEK[1.2]<0.5>") == "BINARY[1.2]<0>");
  CHECK(name("BINARY.SIZE[3]") == "BINARY.SIZE[3]");
  CHECK(name("RFC822") == "RFC822");
  CHECK(name("RFC822.HEADER") == "RFC822.HEADER");
  CHECK(name("RFC822.TEXT") == "RFC822.TEXT");
}

TEST_CASE("status lines, continuations and parse errors never carry CR, LF or a forged code") {
  CHECK(status_line("a1", Condition::Ok, "READ-WRITE", "SELECT completed") == "a1 OK [READ-WRITE] SELECT completed\r\n");
  CHECK(status_line("*", Condition::Bye, "", "bye\r\n* OK injected") == "* BYE bye  * OK injected\r\n");
  CHECK(status_line("a", Condition::No, "", "[ALERT] forged") == "a NO ALERT] forged\r\n");
  CHECK(status_line("a", Condition::No, "TRYCREATE", "") == "a NO [TRYCREATE] failed\r\n");
  CHECK(status_line("a", Condition::No, "", "caf\xc3\xa9 \xff") == "a NO caf?? ?\r\n");
  CHECK(status_line("a", Condition::No, "", "caf\xc3\xa9 \xff", true) == "a NO caf\xc3\xa9 ?\r\n");
  CHECK(continuation("") == "+ \r\n");
  CHECK(continuation("YWJj\r\n") == "+ YWJj  \r\n");
  auto e = refusal("x1 LOGIN {99999999}");
  CHECK(parse_error_line(e) == "x1 BAD [TOOBIG] literal too large\r\n");
  ParseError untagged;
  untagged.text = "empty command line";
  CHECK(parse_error_line(untagged) == "* BAD empty command line\r\n");
}
