// mime_test.cpp: ENVELOPE and BODYSTRUCTURE strings against hand-checked expectations (RFC 3501
// §7.4.2's example, Dovecot's lib-imap test message), offsets, bounds, and the stored encoding.
#include <catch2/catch.hpp>

#include <string>
#include <vector>

#include "store/mime/fields.hpp"
#include "store/mime/parser.hpp"
#include "store/mime/structure.hpp"

using namespace store::mime;

namespace {

std::string crlf(std::string_view lf) {
  std::string out;
  for (char c : lf) {
    if (c == '\n') out += '\r';
    out += c;
  }
  return out;
}

// Every parser test also feeds its input one byte at a time, and in a few odd-sized chunks.
MessageStructure parse_checked(std::string_view msg) {
  MessageStructure whole = parse(msg);
  for (size_t step : {size_t{1}, size_t{2}, size_t{7}, size_t{64}}) {
    Parser p;
    for (size_t at = 0; at < msg.size(); at += step) p.feed(msg.substr(at, step));
    MessageStructure split = p.finish();
    INFO("chunk size " << step);
    REQUIRE(split == whole);
  }
  auto back = decode(encode(whole));
  REQUIRE(back);
  REQUIRE(*back == whole);
  return whole;
}

std::string range_text(std::string_view msg, const std::optional<ByteRange>& r) {
  REQUIRE(r);
  REQUIRE(r->end <= msg.size());
  return std::string(msg.substr(r->start, r->size()));
}

std::string one_address(std::string_view value) {
  std::string out;
  append_address_list(out, parse_addresses(value));
  return out;
}

// Dovecot's src/lib-imap/test-imap-bodystructure.c message; Dovecot reports sizes of the CRLF
// form of its LF input, so the CRLF form here must give the very same strings.
const std::string kDovecotMessage = crlf(
    "From: user@domain.org\n"
    "Date: Sat, 24 Mar 2007 23:00:00 +0200\n"
    "Mime-Version: 1.0\n"
    "Content-Type: multipart/mixed; boundary=\"foo\n"
    " bar\"\n"
    "\n"
    "Root MIME prologue\n"
    "\n"
    "--foo bar\n"
    "Content-Type: text/x-myown; charset=us-ascii; foo=\"quoted\\\"string\"\n"
    "Content-ID: <foo@example.com>\n"
    "Content-MD5: Q2hlY2sgSW50ZWdyaXR5IQ==\n"
    "Content-Disposition: inline; foo=bar\n"
    "Content-Description: hellodescription\n"
    "Content-Language: en, fi, se\n"
    "Content-Location: http://example.com/test.txt\n"
    "\n"
    "hello\n"
    "\n"
    "--foo bar\n"
    "Content-Type: message/rfc822\n"
    "\n"
    "From: sub@domain.org\n"
    "To: sub-to1@domain.org, sub-to2@domain.org\n"
    "Date: Sun, 12 Aug 2012 12:34:56 +0300\n"
    "Subject: submsg\n"
    "Content-Type: multipart/alternative; boundary=\"sub1\"\n"
    "\n"
    "Sub MIME prologue\n"
    "--sub1\n"
    "Content-Type: text/html\n"
    "Content-Transfer-Encoding: 8bit\n"
    "\n"
    "<p>Hello world</p>\n"
    "\n"
    "--sub1\n"
    "Content-Type: text/plain\n"
    "Content-Transfer-Encoding: ?invalid\n"
    "\n"
    "Hello another world\n"
    "\n"
    "--sub1--\n"
    "Sub MIME epilogue\n"
    "\n"
    "--foo bar--\n"
    "Root MIME epilogue\n");

}  // namespace

TEST_CASE("Dovecot's lib-imap message gives Dovecot's BODYSTRUCTURE and BODY") {
  MessageStructure s = parse_checked(kDovecotMessage);
  CHECK(s.bodystructure ==
        "((\"text\" \"x-myown\" (\"charset\" \"us-ascii\" \"foo\" \"quoted\\\"string\") \"<foo@example.com>\" "
        "\"hellodescription\" \"7bit\" 7 1 \"Q2hlY2sgSW50ZWdyaXR5IQ==\" (\"inline\" (\"foo\" \"bar\")) "
        "(\"en\" \"fi\" \"se\") \"http://example.com/test.txt\")(\"message\" \"rfc822\" NIL NIL NIL \"7bit\" 412 "
        "(\"Sun, 12 Aug 2012 12:34:56 +0300\" \"submsg\" ((NIL NIL \"sub\" \"domain.org\")) "
        "((NIL NIL \"sub\" \"domain.org\")) ((NIL NIL \"sub\" \"domain.org\")) ((NIL NIL \"sub-to1\" "
        "\"domain.org\")(NIL NIL \"sub-to2\" \"domain.org\")) NIL NIL NIL NIL) ((\"text\" \"html\" "
        "(\"charset\" \"us-ascii\") NIL NIL \"8bit\" 20 1 NIL NIL NIL NIL)(\"text\" \"plain\" (\"charset\" "
        "\"us-ascii\") NIL NIL \"7bit\" 21 1 NIL NIL NIL NIL) \"alternative\" (\"boundary\" \"sub1\") NIL NIL NIL) "
        "21 NIL NIL NIL NIL) \"mixed\" (\"boundary\" \"foo bar\") NIL NIL NIL)");
  CHECK(s.body ==
        "((\"text\" \"x-myown\" (\"charset\" \"us-ascii\" \"foo\" \"quoted\\\"string\") \"<foo@example.com>\" "
        "\"hellodescription\" \"7bit\" 7 1)(\"message\" \"rfc822\" NIL NIL NIL \"7bit\" 412 (\"Sun, 12 Aug 2012 "
        "12:34:56 +0300\" \"submsg\" ((NIL NIL \"sub\" \"domain.org\")) ((NIL NIL \"sub\" \"domain.org\")) "
        "((NIL NIL \"sub\" \"domain.org\")) ((NIL NIL \"sub-to1\" \"domain.org\")(NIL NIL \"sub-to2\" "
        "\"domain.org\")) NIL NIL NIL NIL) ((\"text\" \"html\" (\"charset\" \"us-ascii\") NIL NIL \"8bit\" 20 1)"
        "(\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 21 1) \"alternative\") 21) \"mixed\")");
  CHECK(s.envelope ==
        "(\"Sat, 24 Mar 2007 23:00:00 +0200\" NIL ((NIL NIL \"user\" \"domain.org\")) ((NIL NIL \"user\" "
        "\"domain.org\")) ((NIL NIL \"user\" \"domain.org\")) NIL NIL NIL NIL NIL)");
  CHECK(s.anomalies == 0);
}

TEST_CASE("Section ranges of Dovecot's message follow RFC 3501 section numbering") {
  const std::string& m = kDovecotMessage;
  MessageStructure s = parse_checked(m);
  using P = std::vector<uint32_t>;
  CHECK(range_text(m, section_range(s, P{}, SectionText::Full)) == m);
  CHECK(range_text(m, section_range(s, P{}, SectionText::Header)).starts_with("From: user@domain.org\r\n"));
  CHECK(range_text(m, section_range(s, P{}, SectionText::Header)).ends_with(" bar\"\r\n\r\n"));
  CHECK(range_text(m, section_range(s, P{}, SectionText::Text)).starts_with("Root MIME prologue"));
  CHECK(range_text(m, section_range(s, P{1}, SectionText::Full)) == "hello\r\n");
  CHECK(range_text(m, section_range(s, P{1}, SectionText::Mime)).starts_with("Content-Type: text/x-myown"));
  CHECK(range_text(m, section_range(s, P{1}, SectionText::Mime)).ends_with("test.txt\r\n\r\n"));
  CHECK_FALSE(section_range(s, P{1}, SectionText::Header));  // not message/rfc822
  CHECK(range_text(m, section_range(s, P{2}, SectionText::Full)).starts_with("From: sub@domain.org"));
  CHECK(range_text(m, section_range(s, P{2}, SectionText::Full)).ends_with("Sub MIME epilogue\r\n"));
  CHECK(range_text(m, section_range(s, P{2}, SectionText::Header)).ends_with("boundary=\"sub1\"\r\n\r\n"));
  CHECK(range_text(m, section_range(s, P{2}, SectionText::Text)).starts_with("Sub MIME prologue"));
  CHECK(range_text(m, section_range(s, P{2}, SectionText::Mime)) == "Content-Type: message/rfc822\r\n\r\n");
  CHECK(range_text(m, section_range(s, P{2, 1}, SectionText::Full)) == "<p>Hello world</p>\r\n");
  CHECK(range_text(m, section_range(s, P{2, 2}, SectionText::Full)) == "Hello another world\r\n");
  CHECK(range_text(m, section_range(s, P{2, 2}, SectionText::Mime)) ==
        "Content-Type: text/plain\r\nContent-Transfer-Encoding: ?invalid\r\n\r\n");
  CHECK_FALSE(section_range(s, P{3}, SectionText::Full));
  CHECK_FALSE(section_range(s, P{2, 3}, SectionText::Full));
  CHECK_FALSE(section_range(s, P{0}, SectionText::Full));
  CHECK_FALSE(section_range(s, P{}, SectionText::Mime));
  // "1" of a non-multipart is the part itself at any level, as Dovecot resolves it.
  CHECK(section_range(s, P{1, 1}, SectionText::Full) == section_range(s, P{1}, SectionText::Full));
  CHECK_FALSE(section_range(s, P{1, 2}, SectionText::Full));

  REQUIRE(s.parts.size() == 6);
  CHECK(s.parts[0].kind == PartKind::Multipart);
  CHECK(s.parts[2].kind == PartKind::Message);
  CHECK(s.parts[3].kind == PartKind::Multipart);
  CHECK(s.parts[4].encoding == Encoding::EightBit);
  CHECK(s.parts[4].type == "text");
  CHECK(s.parts[4].subtype == "html");
  CHECK(s.parts[4].charset == "us-ascii");
}

TEST_CASE("RFC 3501 §7.4.2's example message gives its ENVELOPE and BODY") {
  std::string body;
  for (int i = 0; i < 92; ++i) body += "0123456789012345678901234567890\r\n";  // 92 lines, 3036 octets
  body.resize(3028 - 2);
  body += "\r\n";
  std::string m =
      "Date: Wed, 17 Jul 1996 02:23:25 -0700 (PDT)\r\n"
      "From: Terry Gray <gray@cac.washington.edu>\r\n"
      "Subject: IMAP4rev1 WG mtg summary and minutes\r\n"
      "To: imap@cac.washington.edu\r\n"
      "cc: minutes@CNRI.Reston.VA.US, John Klensin <KLENSIN@MIT.EDU>\r\n"
      "Message-Id: <B27397-0100000@cac.washington.edu>\r\n"
      "MIME-Version: 1.0\r\n"
      "Content-Type: TEXT/PLAIN; CHARSET=US-ASCII\r\n"
      "\r\n" + body;
  MessageStructure s = parse_checked(m);
  CHECK(s.envelope ==
        "(\"Wed, 17 Jul 1996 02:23:25 -0700 (PDT)\" \"IMAP4rev1 WG mtg summary and minutes\" "
        "((\"Terry Gray\" NIL \"gray\" \"cac.washington.edu\")) ((\"Terry Gray\" NIL \"gray\" "
        "\"cac.washington.edu\")) ((\"Terry Gray\" NIL \"gray\" \"cac.washington.edu\")) ((NIL NIL \"imap\" "
        "\"cac.washington.edu\")) ((NIL NIL \"minutes\" \"CNRI.Reston.VA.US\")(\"John Klensin\" NIL \"KLENSIN\" "
        "\"MIT.EDU\")) NIL NIL \"<B27397-0100000@cac.washington.edu>\")");
  // The RFC shows the parameter name upper-case; names are case-insensitive (RFC 2045 §5.1) and
  // served lower-case, as Dovecot does. The line count is that of the body we built.
  uint64_t lines = s.parts[0].body_lines;
  CHECK(s.body == "(\"TEXT\" \"PLAIN\" (\"charset\" \"US-ASCII\") NIL NIL \"7bit\" 3028 " + std::to_string(lines) + ")");
  CHECK(s.parts[0].body_size() == 3028);
}

TEST_CASE("Address lists: groups, routes, comments, quoted and encoded names") {
  CHECK(one_address("\"Doe, John\" <john@example.com>") == "((\"Doe, John\" NIL \"john\" \"example.com\"))");
  CHECK(one_address("=?utf-8?q?J=C3=B6rg?= <j@example.com>") ==
        "((\"=?utf-8?q?J=C3=B6rg?=\" NIL \"j\" \"example.com\"))");
  CHECK(one_address("john@example.com (John Doe)") == "((\"John Doe\" NIL \"john\" \"example.com\"))");
  CHECK(one_address("John Q. Public <jqp@example.com>") == "((\"John Q. Public\" NIL \"jqp\" \"example.com\"))");
  CHECK(one_address("<@relay1.example,@relay2.example:joe@example.com>") ==
        "((NIL \"@relay1.example,@relay2.example\" \"joe\" \"example.com\"))");
  CHECK(one_address("A Group: a@example.com, \"B\" <b@example.org>; c@example.net") ==
        "((NIL NIL \"A Group\" NIL)(NIL NIL \"a\" \"example.com\")(\"B\" NIL \"b\" \"example.org\")"
        "(NIL NIL NIL NIL)(NIL NIL \"c\" \"example.net\"))");
  CHECK(one_address("undisclosed-recipients:;") == "((NIL NIL \"undisclosed-recipients\" NIL)(NIL NIL NIL NIL))");
  CHECK(one_address("john . doe @ example . com") == "((NIL NIL \"john.doe\" \"example.com\"))");
  CHECK(one_address("\"john doe\"@example.com") == "((NIL NIL \"\\\"john doe\\\"\" \"example.com\"))");
  CHECK(one_address("postmaster") == "((NIL NIL \"postmaster\" \"MISSING_DOMAIN\"))");
  CHECK(one_address("user@[192.0.2.1]") == "((NIL NIL \"user\" \"[192.0.2.1]\"))");
  CHECK(one_address("") == "NIL");
  CHECK(one_address(",,,") == "NIL");
  CHECK(one_address("<>") == "NIL");
  CHECK(one_address("J\xC3\xB6rg <j@example.com>") == "(({5}\r\nJ\xC3\xB6rg NIL \"j\" \"example.com\"))");
  CHECK(one_address("a@b, garbage>>, c@d") ==
        "((NIL NIL \"a\" \"b\")(NIL NIL \"garbage\" \"MISSING_DOMAIN\")(NIL NIL \"c\" \"d\"))");
}

TEST_CASE("IMAP strings: quoting, literals for 8-bit, NIL") {
  std::string out;
  append_string(out, "a \"quoted\" \\ back");
  CHECK(out == "\"a \\\"quoted\\\" \\\\ back\"");
  out.clear();
  append_string(out, "caf\xC3\xA9");
  CHECK(out == "{5}\r\ncaf\xC3\xA9");
  out.clear();
  append_nstring(out, std::nullopt);
  CHECK(out == "NIL");
  CHECK(clean_value("  folded\r\n\tvalue \r\n") == "folded\tvalue");
  CHECK(clean_value(std::string("a\0b", 3)) == "a\xEF\xBF\xBD" "b");
}

TEST_CASE("Envelope: unfolding, RFC 2047 words kept, Sender and Reply-To default to From") {
  std::string m = crlf(
      "Subject: =?UTF-8?B?w6lt?=\n"
      "  folded subject\n"
      "From: a@example.com\n"
      "Sender:\n"
      "Reply-To: r@example.com\n"
      "In-Reply-To: <x@y>\n"
      "Message-ID:\n"
      " <id@host>\n"
      "Subject: second subject is ignored\n"
      "\n"
      "body\n");
  MessageStructure s = parse_checked(m);
  CHECK(s.envelope ==
        "(NIL \"=?UTF-8?B?w6lt?=  folded subject\" ((NIL NIL \"a\" \"example.com\")) ((NIL NIL \"a\" "
        "\"example.com\")) ((NIL NIL \"r\" \"example.com\")) NIL NIL NIL \"<x@y>\" \"<id@host>\")");
}

TEST_CASE("Parameters: RFC 2231 continuations joined, extended values kept encoded") {
  auto p = parse_params("; name*0=\"long\"; name*1=\"name.txt\"; title*=utf-8''%E2%82%AC; "
                        "f*1*=%41; f*0*=us-ascii''x; g*0=\"a b\"; g*1*=%42; Charset=UTF-8; junk; k=v");
  std::vector<Param> want = {{"name", "longname.txt"}, {"title*", "utf-8''%E2%82%AC"},
                             {"f*", "us-ascii''x%41"}, {"g*", "a%20b%42"},
                             {"charset", "UTF-8"},    {"k", "v"}};
  CHECK(p == want);
  auto ct = parse_content_type(" multipart/mixed ; boundary==_Part_1_=");
  CHECK(ct.valid);
  CHECK(ct.params == std::vector<Param>{{"boundary", "=_Part_1_="}});
  CHECK_FALSE(parse_content_type("text").valid);
  CHECK_FALSE(parse_content_type("/plain").valid);
  CHECK(parse_content_type("text/plain (comment) ; charset=\"us-ascii\"").params ==
        std::vector<Param>{{"charset", "us-ascii"}});
}

TEST_CASE("Defaults: no Content-Type is text/plain us-ascii, digest children are message/rfc822") {
  MessageStructure s = parse_checked(crlf("Subject: x\n\nhello\nworld"));
  CHECK(s.body == "(\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 12 1)");
  CHECK(s.lines == 3);

  std::string digest = crlf(
      "Content-Type: multipart/digest; boundary=d\n"
      "\n"
      "--d\n"
      "\n"
      "Subject: inner\n"
      "\n"
      "text\n"
      "--d--\n");
  MessageStructure d = parse_checked(digest);
  CHECK(d.body ==
        "((\"message\" \"rfc822\" NIL NIL NIL \"7bit\" 22 (NIL \"inner\" NIL NIL NIL NIL NIL NIL NIL NIL) "
        "(\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 4 0) 2) \"digest\")");
}

TEST_CASE("Broken input: missing close delimiter, no boundary, unterminated inner multipart") {
  SECTION("a multipart whose close delimiter never comes ends at the message end") {
    std::string m = crlf("Content-Type: multipart/mixed; boundary=b\n\n--b\n\none\n--b\n\ntwo\n");
    MessageStructure s = parse_checked(m);
    CHECK(s.body ==
          "((\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 3 0)"
          "(\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 5 1) \"mixed\")");
    CHECK((s.anomalies & kAnomalyUnterminatedMultipart));
  }
  SECTION("a multipart without a boundary keeps its type and an empty stand-in part") {
    std::string m = crlf("Content-Type: multipart/mixed\n\n--b\n\none\n");
    MessageStructure s = parse_checked(m);
    CHECK(s.body == "((\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 0 0) \"mixed\")");
    CHECK((s.anomalies & kAnomalyNoBoundary));
    CHECK_FALSE(section_range(s, std::vector<uint32_t>{1}, SectionText::Full));
  }
  SECTION("an inner multipart that never closes ends at its parent's delimiter") {
    std::string m = crlf(
        "Content-Type: multipart/mixed; boundary=outer\n\n"
        "--outer\n"
        "Content-Type: multipart/alternative; boundary=inner\n\n"
        "--inner\n\na\n"
        "--outer\n\nb\n"
        "--outer--\n");
    MessageStructure s = parse_checked(m);
    CHECK(s.body ==
          "(((\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 1 0) \"alternative\")"
          "(\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 1 0) \"mixed\")");
  }
  SECTION("a part header cut by a delimiter has no body") {
    std::string m = crlf("Content-Type: multipart/mixed; boundary=b\n\n--b\nContent-Type: text/html\n--b--\n");
    MessageStructure s = parse_checked(m);
    CHECK(s.body == "((\"text\" \"html\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 0 0) \"mixed\")");
  }
  SECTION("delimiters with transport padding count, longer lookalikes do not") {
    std::string m = crlf("Content-Type: multipart/mixed; boundary=b\n\n--b \t\n\nx\n--bb\n--b--  \n");
    MessageStructure s = parse_checked(m);
    CHECK(s.body == "((\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 7 1) \"mixed\")");
    CHECK(s.anomalies == 0);
  }
}

TEST_CASE("Edge messages: empty, only a header, bare LF, NUL, 8-bit header") {
  MessageStructure empty = parse_checked("");
  CHECK(empty.envelope == "(NIL NIL NIL NIL NIL NIL NIL NIL NIL NIL)");
  CHECK(empty.body == "(\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 0 0)");

  MessageStructure header_only = parse_checked("Subject: only\r\nFrom: a@b");
  CHECK(header_only.envelope == "(NIL \"only\" ((NIL NIL \"a\" \"b\")) ((NIL NIL \"a\" \"b\")) ((NIL NIL \"a\" \"b\")) NIL NIL NIL NIL NIL)");
  CHECK(header_only.parts[0].header_end == header_only.size);
  CHECK(header_only.parts[0].body_size() == 0);

  MessageStructure lf = parse_checked("Content-Type: multipart/mixed; boundary=b\n\n--b\n\nbare\n--b--\n");
  CHECK((lf.anomalies & kAnomalyBareLf));
  CHECK(lf.body == "((\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 4 0) \"mixed\")");

  const char nul_bytes[] = "Subject: a\0b\r\n\r\nbo\0dy\r\n";
  std::string nul(nul_bytes, sizeof nul_bytes - 1);
  MessageStructure n = parse_checked(nul);
  CHECK((n.anomalies & kAnomalyNul));
  CHECK(n.envelope.find("{5}\r\na\xEF\xBF\xBD" "b") != std::string::npos);

  MessageStructure eight = parse_checked("Subject: \xC3\xA9t\xC3\xA9\r\n\r\n");
  CHECK(eight.envelope == "(NIL {5}\r\n\xC3\xA9t\xC3\xA9 NIL NIL NIL NIL NIL NIL NIL NIL)");
  CHECK((eight.anomalies & kAnomalyEightBitHeader));
}

TEST_CASE("Bounds: nesting is cut at kMaxDepth, header fields at their limits") {
  std::string m;
  for (uint32_t i = 0; i < kMaxDepth + 8; ++i) {
    m += "Content-Type: multipart/mixed; boundary=b" + std::to_string(i) + "\r\n\r\n--b" + std::to_string(i) + "\r\n";
  }
  m += "\r\nleaf\r\n";
  MessageStructure s = parse_checked(m);
  CHECK((s.anomalies & kAnomalyDepthLimit));
  CHECK(s.parts.size() == kMaxDepth + 1);

  std::string rfc822;
  for (uint32_t i = 0; i < 100; ++i) rfc822 += "Content-Type: message/rfc822\r\n\r\n";
  MessageStructure r = parse_checked(rfc822);
  CHECK((r.anomalies & kAnomalyDepthLimit));
  CHECK(r.parts.size() == kMaxDepth + 1);

  std::string long_subject = "Subject: " + std::string(kMaxFieldBytes * 2, 'x') + "\r\n\r\nbody\r\n";
  MessageStructure l = parse_checked(long_subject);
  CHECK((l.anomalies & kAnomalyHeaderTruncated));
  CHECK(l.parts[0].body_size() == 6);
  CHECK(l.envelope.size() < kMaxFieldBytes + 100);

  std::string many;
  for (uint32_t i = 0; i < kMaxHeaderFields + 10; ++i) many += "X-A: b\r\n";
  many += "Subject: late\r\n\r\n";
  MessageStructure f = parse(many);
  CHECK((f.anomalies & kAnomalyTooManyFields));
  CHECK(f.envelope == "(NIL NIL NIL NIL NIL NIL NIL NIL NIL NIL)");
}

TEST_CASE("Bounds: parts beyond kMaxParts become body of the last part") {
  std::string m = "Content-Type: multipart/mixed; boundary=b\r\n\r\n";
  for (uint32_t i = 0; i < kMaxParts + 5; ++i) m += "--b\r\n\r\nx\r\n";
  m += "--b--\r\n";
  MessageStructure s = parse(m);
  CHECK(s.parts.size() == kMaxParts);
  CHECK((s.anomalies & kAnomalyPartsLimit));
  auto back = decode(encode(s));
  REQUIRE(back);
  CHECK(*back == s);
}

TEST_CASE("decode refuses every truncation and many corruptions of a stored value") {
  MessageStructure s = parse(kDovecotMessage);
  std::string stored = encode(s);
  for (size_t n = 0; n < stored.size(); ++n) CHECK_FALSE(decode(std::string_view(stored).substr(0, n)));
  CHECK_FALSE(decode(stored + "x"));
  for (size_t i = 0; i < stored.size(); ++i) {
    for (unsigned char flip : {0x01u, 0x80u, 0xffu}) {
      std::string bad = stored;
      bad[i] = static_cast<char>(bad[i] ^ flip);
      auto r = decode(bad);
      if (!r) continue;
      // What decodes is still self-consistent: every range inside the message, parents first.
      for (const Part& p : r->parts) {
        CHECK(p.header_start <= p.header_end);
        CHECK(p.header_end <= p.body_start);
        CHECK(p.body_end <= r->size);
        if (p.parent != kNoPart) CHECK(p.parent < r->parts.size());
      }
    }
  }
}
