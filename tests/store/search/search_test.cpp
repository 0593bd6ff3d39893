// search_test.cpp: SEARCH programs key by key on a real store environment: flags, keywords, dates,
// sizes, UIDs, MODSEQ, header keys on RFC 2047 words in several charsets, BODY and TEXT on base64
// and quoted-printable parts; the text helpers; the evaluation order; and refused programs.
#include <chrono>

#include "store/search/text.hpp"
#include "tests/store/search/search_env.hpp"

namespace {

using store::search::Kind;
using store::search::Program;
using store::search::SearchKey;
using store::search::UidRange;
using test::SearchEnv;
using namespace test::search_keys;

SearchKey num(Kind k, uint64_t n) {
  SearchKey s{k};
  s.number = n;
  return s;
}
SearchKey day(Kind k, int y, unsigned m, unsigned d) {
  SearchKey s{k};
  s.day = store::search::days_from_civil(y, m, d);
  return s;
}
SearchKey uid(std::vector<UidRange> set) {
  SearchKey s{Kind::Uid};
  s.uids = std::move(set);
  return s;
}

std::string error_of(const Program& p) {
  auto r = store::search::validate(p);
  REQUIRE_FALSE(r);
  CHECK(r.error().kind == common::ErrorKind::Protocol);
  return r.error().detail;
}

using U = std::vector<uint32_t>;

// ---- the messages of the key tests ----

const std::string kPlain =
    "Return-Path: <alice@example.org>\r\n"
    "From: Alice Example <alice@example.org>\r\n"
    "To: Bob <bob@example.net>\r\n"
    "Subject: Hello World\r\n"
    "Date: Tue, 14 Nov 2023 23:30:00 -0500\r\n"
    "Message-ID: <1@example.org>\r\n"
    "\r\n"
    "The quick brown fox\r\n"
    "jumps over the lazy dog.\r\n";

const std::string kMultipart =
    "Return-Path: <carol@example.org>\r\n"
    "From: =?utf-8?q?Carol_M=C3=BCller?= <carol@example.org>\r\n"
    "To: alice@example.com\r\n"
    "Cc: Dave <dave@example.net>\r\n"
    "Bcc: eve@example.net\r\n"
    "Subject: =?utf-8?q?Gr=C3=BC=C3=9Fe?=\r\n"
    " =?utf-8?b?IGF1cyBLw7Zsbg==?=\r\n"
    "Date: 1 Jan 2020 00:00:01 +1400\r\n"
    "MIME-Version: 1.0\r\n"
    "Content-Type: multipart/mixed; boundary=\"outer\"\r\n"
    "\r\n"
    "preamble words notsearched\r\n"
    "--outer\r\n"
    "Content-Type: multipart/alternative; boundary=inner\r\n"
    "\r\n"
    "--inner\r\n"
    "Content-Type: text/plain; charset=utf-8\r\n"
    "Content-Transfer-Encoding: base64\r\n"
    "\r\n"
    "R3LDtsOfZW53YWhuIMOcbsOvY8O2ZMOpIHVuZCBtZWhyIFRleHQNCg==\r\n"
    "--inner\r\n"
    "Content-Type: text/html; charset=\"utf-8\"\r\n"
    "Content-Transfer-Encoding: quoted-printable\r\n"
    "\r\n"
    "<p>soft=\r\n"
    "break and caf=C3=A9 cr=C3=A8me</p>\r\n"
    "--inner--\r\n"
    "--outer\r\n"
    "Content-Type: application/octet-stream\r\n"
    "Content-Disposition: attachment; filename=\"report.pdf\"\r\n"
    "Content-Transfer-Encoding: base64\r\n"
    "\r\n"
    "YmluYXJ5IHNlY3JldHdvcmQgZGF0YQ==\r\n"
    "--outer--\r\n"
    "epilogue\r\n";

const std::string kLatin1 =
    "Return-Path: <frank@example.org>\r\n"
    "From: frank@example.org\r\n"
    "To: =?iso-8859-1?q?J=F6rg?= <joerg@example.net>, Bob <bob@example.net>\r\n"
    "Subject: =?ISO-8859-1?Q?caf=E9?= und =?koi8-r?b?8PLp9+X0IM3J0g==?=\r\n"
    "Content-Type: text/plain; charset=iso-8859-1\r\n"
    "Content-Transfer-Encoding: 8bit\r\n"
    "\r\n"
    "Caf\xe9 cr\xe8me br\xfbl\xe9\x65\r\n";

const std::string kForwarded =
    "Return-Path: <gina@example.org>\r\n"
    "From: gina@example.org\r\n"
    "Subject: Fwd: something\r\n"
    "Date: garbage that is no date\r\n"
    "Content-Type: multipart/mixed; boundary=b\r\n"
    "\r\n"
    "--b\r\n"
    "Content-Type: text/plain\r\n"
    "\r\n"
    "see attached\r\n"
    "--b\r\n"
    "Content-Type: message/rfc822\r\n"
    "\r\n"
    "From: inner@example.net\r\n"
    "Subject: Inner =?utf-8?q?s=C3=A9cret?= topic\r\n"
    "\r\n"
    "nested body text\r\n"
    "--b--\r\n";

const std::string kWindows =
    "Return-Path: <hal@example.org>\r\n"
    "From: hal@example.org\r\n"
    "X-Custom: Some   Value\r\n"
    "X-Empty:\r\n"
    "Subject: =?windows-1252?q?=93quoted=94?=\r\n"
    "Content-Type: text/plain; charset=windows-1252\r\n"
    "Content-Transfer-Encoding: quoted-printable\r\n"
    "\r\n"
    "=80 100 price, na=\r\n"
    "=EFve\r\n" +
    std::string(10000, 'p') + "\r\n";

struct Mailbox {
  SearchEnv env;
  uint32_t plain, multipart, latin1, forwarded, windows;
  Mailbox() {
    auto uids = env.add({
        {kPlain, store::kSeen | store::kFlagged, {"$Work"}, 1700000000},       // 2023-11-14 22:13:20Z
        {kMultipart, 0, {"$Junk", "Later"}, 1577836800},                      // 2020-01-01 00:00:00Z
        {kLatin1, store::kAnswered | store::kDeleted | store::kDraft, {}, 1600000000},  // 2020-09-13
        {kForwarded, store::kSeen, {}, 1700000100},
        {kWindows, 0, {"later"}, 1700086400},  // 2023-11-15
    });
    plain = uids[0], multipart = uids[1], latin1 = uids[2], forwarded = uids[3], windows = uids[4];
  }
  // The answer without a header cache, checked to be the one with it too (warm after the first).
  store::search::HeaderCache cache{1 << 20};
  std::vector<uint32_t> uids(const Program& p) {
    auto plain = env.uids(p);
    CHECK(env.uids(p, 1700000000, &cache) == plain);
    return plain;
  }
};

}  // namespace

// ---- text helpers ----

TEST_CASE("fold: ASCII, Latin, Greek and Cyrillic letters fold, other bytes stay", "[search]") {
  using store::search::fold;
  CHECK(fold("Hello WORLD 123") == "hello world 123");
  CHECK(fold("ÄÖÜ àéÎ ÇØÞ ×") == "äöü àéî çøþ ×");
  CHECK(fold("ŁÓDŹ Ğ Œ Ÿ ſ") == "łódź ğ œ ÿ s");
  CHECK(fold("ΣΟΦΊΑ ς") == "σοφία σ");
  CHECK(fold("ПРИВЕТ Ёж Ђ Ѣ") == "привет ёж ђ ѣ");
  CHECK(fold("ẞ Ạ") == "ß ạ");
  CHECK(fold("İ") == "İ");  // only a Turkic or a full folding
  CHECK(fold("\xff\xc3 A\xe9") == "\xff\xc3 a\xe9");  // not UTF-8: left as bytes
  CHECK(fold("日本語") == "日本語");
}

TEST_CASE("valid_utf8 refuses overlong forms, surrogates and cut sequences", "[search]") {
  using store::search::valid_utf8;
  CHECK(valid_utf8("plain"));
  CHECK(valid_utf8("caf\xc3\xa9 \xf0\x9f\x98\x80"));
  CHECK_FALSE(valid_utf8("\xc0\xaf"));
  CHECK_FALSE(valid_utf8("\xed\xa0\x80"));
  CHECK_FALSE(valid_utf8("\xc3"));
  CHECK_FALSE(valid_utf8("\xf4\x90\x80\x80"));
}

TEST_CASE("header values are unfolded and RFC 2047 words decoded from several charsets", "[search]") {
  store::search::Charsets cs;
  auto d = [&](std::string_view raw) { return store::search::decode_header_value(raw, cs); };
  CHECK(d(" plain\r\n  folded ") == "plain  folded");
  CHECK(d("=?utf-8?q?h=C3=A9llo?= =?utf-8?b?d8O2cmxk?=") == "héllowörld");
  CHECK(d("=?utf-8?q?h=C3=A9llo_?=\r\n =?UTF-8?B?d8O2cmxk?=") == "héllo wörld");
  CHECK(d("Re: =?iso-8859-1?q?caf=E9?= ok") == "Re: café ok");
  CHECK(d("=?windows-1252?q?=80?=") == "€");
  CHECK(d("=?ISO-8859-15?Q?=A4?=") == "€");
  CHECK(d("=?iso-8859-2?q?=A3=F3d=BC?=") == "Łódź");
  CHECK(d("=?koi8-r?b?8PLp9+X0IM3J0g==?=") == "ПРИВЕТ мир");
  CHECK(d("=?utf-8?q?=C3?= =?utf-8?q?=A9?=") == "é");  // a character split across two words
  CHECK(d("=?utf-8*en?q?hi?=") == "hi");                // RFC 2231 language
  CHECK(d("a =?x-no-such-charset?q?abc?= b") == "a abc b");
  CHECK(d("=?utf-8?x?abc?=") == "=?utf-8?x?abc?=");
  CHECK(d("=?utf-8?q?not a word?=") == "=?utf-8?q?not a word?=");
  CHECK(d("=?utf-8//IGNORE?q?x?=") == "x");  // not a charset name: bytes as they are
  CHECK(d("=?utf-8?q?=FF?=") == "\xff");
  CHECK(d("=?iso-8859-1?q?a?= b =?iso-8859-1?q?c?=") == "a b c");
  CHECK(d("=?us-ascii?q?a?=\t=?utf-8?q?b?=") == "ab");
  CHECK(d("x=?utf-8?q?y?=z") == "xyz");
  CHECK(d("=?iso-2022-jp?b?GyRCRnxLXDhsGyhC?=") == "日本語");
}

TEST_CASE("charset conversion replaces bytes the charset cannot have", "[search]") {
  store::search::Charsets cs;
  std::string out;
  cs.to_utf8("utf-16le", std::string("a\0b", 3), out);  // a cut code unit at the end
  CHECK(out == "a\xEF\xBF\xBD");
  out.clear();
  cs.to_utf8("shift_jis", "\x82\xa0\xff", out);
  CHECK(out == "あ\xEF\xBF\xBD");
  out.clear();
  cs.to_utf8("", "as is \xff", out);
  CHECK(out == "as is \xff");
}

TEST_CASE("transfer decoding: base64 and quoted-printable, leniently", "[search]") {
  using store::search::decode_base64;
  using store::search::decode_quoted_printable;
  CHECK(decode_base64("aGVs\r\nbG8=") == "hello");
  CHECK(decode_base64("aGVs bG8*") == "hello");
  CHECK(decode_base64("aGk=aGk=") == "hihi");  // concatenated blocks
  CHECK(decode_quoted_printable("caf=C3=A9=\r\n au lait  \r\nnext") == "café au lait\r\nnext");
  CHECK(decode_quoted_printable("a=zz b=3d=") == "a=zz b=");
  CHECK(decode_quoted_printable("=4") == "=4");
}

TEST_CASE("header fields: continuations, odd names, lines that are no field", "[search]") {
  std::vector<std::pair<std::string, std::string>> got;
  store::search::for_each_field(
      "A: 1\r\n  more\r\n\tand more\r\nnot a field\r\nSubject : spaced\r\nBare-Lf: x\nB:\r\n\r\nBody: no\r\n",
      [&](std::string_view n, std::string_view v) { got.emplace_back(n, v); });
  REQUIRE(got.size() == 4);
  CHECK(got[0] == std::pair<std::string, std::string>{"A", " 1\r\n  more\r\n\tand more\r"});
  CHECK(got[1].first == "Subject");
  CHECK(got[2] == std::pair<std::string, std::string>{"Bare-Lf", " x"});
  CHECK(got[3] == std::pair<std::string, std::string>{"B", "\r"});
}

TEST_CASE("Date: fields give the calendar date they write, in the RFC 5322 forms and the obsolete ones",
          "[search]") {
  using store::search::days_from_civil;
  using store::search::parse_date_day;
  CHECK(days_from_civil(1970, 1, 1) == 0);
  CHECK(store::search::utc_day(-1) == -1);
  CHECK(store::search::utc_day(1700000000) == days_from_civil(2023, 11, 14));
  CHECK(parse_date_day("Tue, 1 Jul 2003 10:52:37 +0200") == days_from_civil(2003, 7, 1));
  CHECK(parse_date_day("Tue, 1 Jul 2003 23:59:59 -1200") == days_from_civil(2003, 7, 1));  // not converted to UTC
  CHECK(parse_date_day("1 jul 03 10:52") == days_from_civil(2003, 7, 1));
  CHECK(parse_date_day("1 Jul 99") == days_from_civil(1999, 7, 1));
  CHECK(parse_date_day("1 Jul 103") == days_from_civil(2003, 7, 1));
  CHECK(parse_date_day("01-Jul-2003") == days_from_civil(2003, 7, 1));
  CHECK(parse_date_day("(a (nested) comment) Tue , 01 July 2003") == days_from_civil(2003, 7, 1));
  CHECK(parse_date_day("29 Feb 2004") == days_from_civil(2004, 2, 29));
  CHECK_FALSE(parse_date_day("29 Feb 2003"));
  CHECK_FALSE(parse_date_day("31 Apr 2003"));
  CHECK_FALSE(parse_date_day("2003-07-01"));
  CHECK_FALSE(parse_date_day("1 Foo 2003"));
  CHECK_FALSE(parse_date_day("1 Jul 20031"));
  CHECK_FALSE(parse_date_day(""));
}

// ---- validation ----

TEST_CASE("validate: well-formed programs pass, every malformed one gets a readable Protocol error",
          "[search]") {
  using store::search::validate;
  CHECK(validate(Program{}));
  CHECK(validate(Program{key(Kind::All)}));
  CHECK(validate(Program{all_of(2), key(Kind::Seen), str(Kind::Body, "x")}));
  CHECK(validate(Program{key(Kind::Or), key(Kind::Not), key(Kind::Seen), header("X-Spam", "")}));

  CHECK(error_of({all_of(0)}) == "search key 1 (AND): no operands");
  CHECK(error_of({key(Kind::Or), key(Kind::Seen)}) == "search ends before its operators have all their operands");
  CHECK(error_of({all_of(3), key(Kind::Seen)}) == "search ends before its operators have all their operands");
  CHECK(error_of({key(Kind::Seen), key(Kind::Draft)}) == "search key 2 (DRAFT) follows the end of the expression");
  CHECK(error_of({key(static_cast<Kind>(99))}) == "search key 1 has an unknown kind 99");
  CHECK(error_of({key(static_cast<Kind>(-1))}) == "search key 1 has an unknown kind -1");
  CHECK(error_of({header("", "x")}) == "search key 1 (HEADER): the field name is not a RFC 5322 field name");
  CHECK(error_of({header("Sub ject", "x")}).find("field name") != std::string::npos);
  CHECK(error_of({header("Subject:", "x")}).find("field name") != std::string::npos);
  CHECK(error_of({str(Kind::Keyword, "")}) == "search key 1 (KEYWORD): an empty keyword");
  CHECK(error_of({num(Kind::Older, 0)}).find("RFC 5032") != std::string::npos);
  CHECK(error_of({all_of(2), key(Kind::Seen), str(Kind::Subject, "caf\xe9")}) ==
        "search key 3 (SUBJECT): a string that is not valid UTF-8");
  CHECK(error_of({str(Kind::Body, std::string("a\0b", 3))}) == "search key 1 (BODY): a string with a NUL byte");
  CHECK(error_of({str(Kind::Text, std::string(64 * 1024 + 1, 'a'))}) ==
        "search key 1 (TEXT): a string longer than 65536 bytes");
  CHECK(validate(Program{str(Kind::Text, std::string(64 * 1024, 'a'))}));
  Program many_strings{all_of(17)};
  for (int i = 0; i < 17; ++i) many_strings.push_back(str(Kind::Body, std::string(64 * 1024, 'a')));
  CHECK(error_of(many_strings) == "search strings add up to more than 1048576 bytes");
}

TEST_CASE("validate: nesting is bounded at 64 levels without recursion, even 10,000 deep", "[search]") {
  auto nots = [](size_t depth) {
    Program p(depth - 1, key(Kind::Not));
    p.push_back(key(Kind::Seen));
    return p;
  };
  CHECK(store::search::validate(nots(64)));
  CHECK(error_of(nots(65)) == "search nests deeper than 64 levels");
  CHECK(error_of(nots(10000)) == "search nests deeper than 64 levels");
  // ORs nested in their second operand: depth counts levels, not keys.
  Program ors;
  for (int i = 0; i < 63; ++i) {
    ors.push_back(key(Kind::Or));
    ors.push_back(key(Kind::Seen));
  }
  ors.push_back(key(Kind::Draft));
  CHECK(store::search::validate(ors));
  ors.insert(ors.begin(), key(Kind::Not));
  CHECK(error_of(ors) == "search nests deeper than 64 levels");
  // A wide AND is shallow however many operands it has.
  Program wide{all_of(9999)};
  for (int i = 0; i < 9999; ++i) wide.push_back(key(Kind::Undeleted));
  CHECK(store::search::validate(wide));
  wide.front().operands = 10000;
  wide.push_back(key(Kind::Undeleted));
  CHECK(error_of(wide) == "search has 10001 keys, more than 10000");

  SearchEnv env;
  env.add(kPlain);
  auto deep = env.search(nots(10000));
  REQUIRE_FALSE(deep);
  CHECK(deep.error().kind == common::ErrorKind::Protocol);
  CHECK(deep.error().detail == "search nests deeper than 64 levels");
  wide.pop_back();
  wide.front().operands = 9999;
  CHECK(env.uids(wide) == U{1});
  // 64 levels evaluate (recursion is fine once the depth is known).
  CHECK(env.uids(nots(64)) == U{1});  // 63 NOTs of SEEN, on an unseen message
}

TEST_CASE("UID sets: a million ranges are taken and searched quickly, more are refused", "[search]") {
  SearchEnv env;
  std::vector<SearchEnv::Message> messages(50, SearchEnv::Message{kPlain});
  env.add(messages);
  std::vector<UidRange> odd;
  for (uint32_t i = 0; i < 1000000; ++i) odd.push_back({2 * i + 1, 2 * i + 1});
  const auto start = std::chrono::steady_clock::now();
  auto got = env.uids({uid(odd)});
  CHECK(std::chrono::steady_clock::now() - start < std::chrono::seconds(20));
  REQUIRE(got.size() == 25);
  CHECK(got.front() == 1);
  CHECK(got.back() == 49);
  odd.push_back({UINT32_MAX, UINT32_MAX});
  CHECK(error_of({uid(odd)}) == "search has more than 1000000 UID ranges");
  // Reversed, overlapping, zero and "*"-sized ranges.
  CHECK(env.uids({uid({{10, 8}, {9, 12}, {0, 0}, {0, 2}, {49, UINT32_MAX}})}) == U{1, 2, 8, 9, 10, 11, 12, 49, 50});
  CHECK(env.uids({uid({})}).empty());
  // A UID key bounds the scan of the mailbox.
  auto bounded = env.search({all_of(2), uid({{20, 22}}), key(Kind::All)});
  REQUIRE(bounded);
  CHECK(bounded->uids == U{20, 21, 22});
  CHECK(bounded->stats.messages == 3);
}

// ---- keys ----

TEST_CASE("flag and keyword keys", "[search]") {
  Mailbox mb;
  auto& e = mb.env;
  CHECK(e.uids({key(Kind::All)}) == U{1, 2, 3, 4, 5});
  CHECK(e.uids({}) == U{1, 2, 3, 4, 5});
  CHECK(e.uids({key(Kind::Seen)}) == U{mb.plain, mb.forwarded});
  CHECK(e.uids({key(Kind::Unseen)}) == U{mb.multipart, mb.latin1, mb.windows});
  CHECK(e.uids({key(Kind::Flagged)}) == U{mb.plain});
  CHECK(e.uids({key(Kind::Unflagged)}) == U{2, 3, 4, 5});
  CHECK(e.uids({key(Kind::Answered)}) == U{mb.latin1});
  CHECK(e.uids({key(Kind::Unanswered)}) == U{1, 2, 4, 5});
  CHECK(e.uids({key(Kind::Deleted)}) == U{mb.latin1});
  CHECK(e.uids({key(Kind::Undeleted)}) == U{1, 2, 4, 5});
  CHECK(e.uids({key(Kind::Draft)}) == U{mb.latin1});
  CHECK(e.uids({key(Kind::Undraft)}) == U{1, 2, 4, 5});
  CHECK(e.uids({str(Kind::Keyword, "$work")}) == U{mb.plain});
  CHECK(e.uids({str(Kind::Keyword, "LATER")}) == U{mb.multipart, mb.windows});
  CHECK(e.uids({str(Kind::Keyword, "Lat")}).empty());
  CHECK(e.uids({str(Kind::Unkeyword, "later")}) == U{1, 3, 4});
  CHECK(e.uids({key(Kind::Not), key(Kind::Seen)}) == U{2, 3, 5});
  CHECK(e.uids({key(Kind::Or), key(Kind::Flagged), key(Kind::Draft)}) == U{1, 3});
  CHECK(e.uids({all_of(2), key(Kind::Seen), key(Kind::Unflagged)}) == U{mb.forwarded});
}

TEST_CASE("header keys match decoded, unfolded values without regard to case", "[search]") {
  Mailbox mb;
  CHECK(mb.uids({str(Kind::From, "alice")}) == U{mb.plain});
  CHECK(mb.uids({str(Kind::From, "EXAMPLE.ORG")}) == U{1, 2, 3, 4, 5});
  CHECK(mb.uids({str(Kind::From, "carol müller")}) == U{mb.multipart});
  CHECK(mb.uids({str(Kind::From, "MÜLLER")}) == U{mb.multipart});
  CHECK(mb.uids({str(Kind::To, "jörg")}) == U{mb.latin1});
  CHECK(mb.uids({str(Kind::To, "bob")}) == U{mb.plain, mb.latin1});
  CHECK(mb.uids({str(Kind::Cc, "dave")}) == U{mb.multipart});
  CHECK(mb.uids({str(Kind::Bcc, "eve@")}) == U{mb.multipart});
  CHECK(mb.uids({str(Kind::Subject, "hello world")}) == U{mb.plain});
  CHECK(mb.uids({str(Kind::Subject, "grüße aus köln")}) == U{mb.multipart});  // two words, folded between
  CHECK(mb.uids({str(Kind::Subject, "GRÜSSE")}).empty());  // simple folding: ß stays ß
  CHECK(mb.uids({str(Kind::Subject, "CAFÉ UND привет")}) == U{mb.latin1});
  CHECK(mb.uids({str(Kind::Subject, "“quoted”")}) == U{mb.windows});
  CHECK(mb.uids({str(Kind::Subject, "secret")}).empty());  // the forwarded message's own subject is in its body
  CHECK(mb.uids({str(Kind::Subject, "")}) == U{1, 2, 3, 4, 5});
  CHECK(mb.uids({str(Kind::Cc, "")}) == U{mb.multipart});
  CHECK(mb.uids({header("x-custom", "some   value")}) == U{mb.windows});
  CHECK(mb.uids({header("X-CUSTOM", "")}) == U{mb.windows});
  CHECK(mb.uids({header("X-Empty", "")}) == U{mb.windows});
  CHECK(mb.uids({header("X-Empty", " ")}).empty());
  CHECK(mb.uids({header("X-Missing", "")}).empty());
  CHECK(mb.uids({header("Delivered-To", "alice@example.com")}) == U{1, 2, 3, 4, 5});
  CHECK(mb.uids({header("Content-Type", "multipart/mixed")}) == U{mb.multipart, mb.forwarded});
  CHECK(mb.uids({header("Content-Transfer-Encoding", "base64")}).empty());  // a part's field, not the message's
  CHECK(mb.uids({header("Subject", "hello: world")}).empty());
}

TEST_CASE("BODY searches decoded text parts only, TEXT adds every header", "[search]") {
  Mailbox mb;
  CHECK(mb.uids({str(Kind::Body, "QUICK BROWN")}) == U{mb.plain});
  CHECK(mb.uids({str(Kind::Body, "größenwahn ünïcödé")}) == U{mb.multipart});  // base64, UTF-8
  CHECK(mb.uids({str(Kind::Body, "softbreak and CAFÉ crème")}) == U{mb.multipart});  // quoted-printable
  CHECK(mb.uids({str(Kind::Body, "café crème brûlée")}) == U{mb.latin1});          // ISO-8859-1, 8bit
  CHECK(mb.uids({str(Kind::Body, "€ 100 PRICE, NAÏVE")}) == U{mb.windows});      // windows-1252 QP
  CHECK(mb.uids({str(Kind::Body, "secretword")}).empty());  // an application/octet-stream attachment
  CHECK(mb.uids({str(Kind::Body, "notsearched")}).empty());  // preamble
  CHECK(mb.uids({str(Kind::Body, "epilogue")}).empty());
  CHECK(mb.uids({str(Kind::Body, "hello")}).empty());  // the header is not the body
  CHECK(mb.uids({str(Kind::Body, "nested body")}) == U{mb.forwarded});
  CHECK(mb.uids({str(Kind::Body, "inner sécret topic")}) == U{mb.forwarded});  // encapsulated header
  CHECK(mb.uids({str(Kind::Body, "")}) == U{1, 2, 3, 4, 5});
  CHECK(mb.uids({str(Kind::Body, "=C3=A9")}).empty());  // the encoded form is not what is searched

  CHECK(mb.uids({str(Kind::Text, "hello")}) == U{mb.plain});
  CHECK(mb.uids({str(Kind::Text, "subject: hello")}) == U{mb.plain});
  CHECK(mb.uids({str(Kind::Text, "lazy dog")}) == U{mb.plain});
  CHECK(mb.uids({str(Kind::Text, "report.pdf")}) == U{mb.multipart});  // a MIME part's header
  CHECK(mb.uids({str(Kind::Text, "quoted-printable")}) == U{mb.multipart, mb.windows});
  CHECK(mb.uids({str(Kind::Text, "secretword")}).empty());
  CHECK(mb.uids({str(Kind::Text, "sécret")}) == U{mb.forwarded});
  CHECK(mb.uids({str(Kind::Text, "")}) == U{1, 2, 3, 4, 5});
}

TEST_CASE("date keys: internal date by UTC day, sent date as the Date: field writes it", "[search]") {
  Mailbox mb;
  // Internal dates: 2023-11-14, 2020-01-01, 2020-09-13, 2023-11-14, 2023-11-15.
  CHECK(mb.uids({day(Kind::On, 2023, 11, 14)}) == U{mb.plain, mb.forwarded});
  CHECK(mb.uids({day(Kind::Before, 2023, 11, 14)}) == U{mb.multipart, mb.latin1});
  CHECK(mb.uids({day(Kind::Since, 2023, 11, 14)}) == U{mb.plain, mb.forwarded, mb.windows});
  CHECK(mb.uids({day(Kind::Since, 2023, 11, 16)}).empty());
  // Date: fields: 14 Nov 2023 (-0500: the 15th in UTC, not counted), 1 Jan 2020 (+1400: 2019 in
  // UTC, not counted); none in latin1 and windows, garbage in forwarded: their internal dates.
  CHECK(mb.uids({day(Kind::SentOn, 2023, 11, 14)}) == U{mb.plain, mb.forwarded});
  CHECK(mb.uids({day(Kind::SentOn, 2020, 1, 1)}) == U{mb.multipart});
  CHECK(mb.uids({day(Kind::SentOn, 2020, 9, 13)}) == U{mb.latin1});
  CHECK(mb.uids({day(Kind::SentBefore, 2020, 9, 13)}) == U{mb.multipart});
  CHECK(mb.uids({day(Kind::SentSince, 2023, 11, 15)}) == U{mb.windows});
}

TEST_CASE("size, MODSEQ and OLDER/YOUNGER keys", "[search]") {
  Mailbox mb;
  auto& e = mb.env;
  const uint64_t plain_size = std::string("Delivered-To: alice@example.com\r\n").size() + kPlain.size();
  CHECK(e.uids({num(Kind::Larger, plain_size)}) == U{mb.multipart, mb.latin1, mb.forwarded, mb.windows});
  CHECK(e.uids({num(Kind::Larger, plain_size - 1)}) == U{1, 2, 3, 4, 5});
  CHECK(e.uids({num(Kind::Smaller, plain_size + 1)}) == U{mb.plain});
  CHECK(e.uids({num(Kind::Smaller, plain_size)}).empty());
  CHECK(e.uids({num(Kind::Larger, 10000)}) == U{mb.windows});
  CHECK(e.uids({num(Kind::Smaller, 0)}).empty());

  // MODSEQs 1..5 from the deliveries; a flag change moves plain to 6.
  const uint64_t changed = e.touch(mb.plain);
  CHECK(changed == 6);
  CHECK(e.uids({num(Kind::ModSeq, 4)}) == U{mb.plain, mb.forwarded, mb.windows});
  auto r = e.search({num(Kind::ModSeq, 6)});
  REQUIRE(r);
  CHECK(r->uids == U{mb.plain});
  CHECK(r->highest_modseq == 6);
  r = e.search({key(Kind::Unseen)});
  REQUIRE(r);
  CHECK(r->highest_modseq == 5);
  r = e.search({str(Kind::Keyword, "none")});
  REQUIRE(r);
  CHECK(r->highest_modseq == 0);

  // Internal dates 1700000000 (plain), 1700000100 (forwarded), 1700086400 (windows).
  const int64_t now = 1700000100;
  CHECK(e.uids({num(Kind::Older, 100)}, now) == U{mb.plain, mb.multipart, mb.latin1});
  CHECK(e.uids({num(Kind::Older, 101)}, now) == U{mb.multipart, mb.latin1});
  CHECK(e.uids({num(Kind::Younger, 100)}, now) == U{mb.plain, mb.forwarded, mb.windows});
  CHECK(e.uids({num(Kind::Younger, 99)}, now) == U{mb.forwarded, mb.windows});
  CHECK(e.uids({num(Kind::Older, UINT64_MAX)}, now).empty());
  CHECK(e.uids({num(Kind::Younger, UINT64_MAX)}, now) == U{1, 2, 3, 4, 5});
}

TEST_CASE("cheap keys decide first: bodies are read only where flags and headers leave a doubt", "[search]") {
  Mailbox mb;
  auto& e = mb.env;
  auto flags_only = e.search({all_of(2), key(Kind::Unseen), str(Kind::Keyword, "later")});
  REQUIRE(flags_only);
  CHECK(flags_only->uids == U{mb.multipart, mb.windows});
  CHECK(flags_only->stats.structures == 0);
  CHECK(flags_only->stats.bodies == 0);

  // Whatever the order written, BODY runs on the two seen messages only.
  for (const Program& p : {Program{all_of(2), str(Kind::Body, "fox"), key(Kind::Seen)},
                           Program{all_of(2), key(Kind::Seen), str(Kind::Body, "fox")}}) {
    auto r = e.search(p);
    REQUIRE(r);
    CHECK(r->uids == U{mb.plain});
    CHECK(r->stats.messages == 5);
    CHECK(r->stats.bodies == 2);
  }
  // OR: a flagged message needs no body.
  auto either = e.search({key(Kind::Or), str(Kind::Body, "nested"), key(Kind::Flagged)});
  REQUIRE(either);
  CHECK(either->uids == U{mb.plain, mb.forwarded});
  CHECK(either->stats.bodies == 4);
  // A header key before a body key, and several body keys share one read of the parts.
  auto shared = e.search({all_of(3), str(Kind::From, "example.org"), str(Kind::Body, "crème"),
                          str(Kind::Text, "caf")});
  REQUIRE(shared);
  CHECK(shared->uids == U{mb.multipart, mb.latin1});
  CHECK(shared->stats.bodies == 5);
  auto by_header = e.search({all_of(2), str(Kind::Body, "crème"), str(Kind::From, "frank")});
  REQUIRE(by_header);
  CHECK(by_header->uids == U{mb.latin1});
  CHECK(by_header->stats.headers == 5);
  CHECK(by_header->stats.bodies == 1);
}

TEST_CASE("damaged bodies and structures are Internal errors, not crashes or silent misses", "[search]") {
  SearchEnv env;
  env.add(kMultipart);
  // A missing chunk.
  {
    auto txn = common::lmdb::Txn::begin(env.env(), true);
    REQUIRE(txn);
    auto list = store::list_messages(*txn, env.dbs(), env.mailbox_id());
    REQUIRE(list);
    REQUIRE(txn->del(env.dbs().body_chunks, store::chunk_key(list->at(0).record.body_id, 0)));
    auto r = store::search::evaluate(*txn, env.dbs(), env.mailbox_id(), Program{str(Kind::Body, "x")}, 0);
    REQUIRE_FALSE(r);
    CHECK(r.error().kind == common::ErrorKind::Internal);
    CHECK(r.error().detail == "message UID 1: a body chunk is missing");
    // Flags alone do not need the body.
    CHECK(store::search::evaluate(*txn, env.dbs(), env.mailbox_id(), Program{key(Kind::Unseen)}, 0));
  }
  // A structure that does not decode.
  {
    auto txn = common::lmdb::Txn::begin(env.env(), true);
    REQUIRE(txn);
    auto list = store::list_messages(*txn, env.dbs(), env.mailbox_id());
    REQUIRE(list);
    const uint64_t id = list->at(0).record.body_id;
    auto body = store::find_body(*txn, env.dbs(), id);
    REQUIRE(body);
    REQUIRE(*body);
    store::BodyRecord broken = **body;
    broken.structure = "not a structure";
    REQUIRE(txn->put(env.dbs().bodies, common::lmdb::Encoder().u64(id).str(), store::encode(broken)));
    auto r = store::search::evaluate(*txn, env.dbs(), env.mailbox_id(), Program{str(Kind::From, "x")}, 0);
    REQUIRE_FALSE(r);
    CHECK(r.error().kind == common::ErrorKind::Internal);
    CHECK(r.error().detail.find("message UID 1: its stored structure") == 0);
  }
}

TEST_CASE("a search can be stopped between messages, many string keys stay affordable", "[search]") {
  Mailbox mb;
  auto& e = mb.env;
  auto txn = common::lmdb::Txn::begin(e.env(), false);
  REQUIRE(txn);
  int asked = 0;
  auto stopped = store::search::evaluate(*txn, e.dbs(), e.mailbox_id(), Program{str(Kind::Body, "fox")}, 0,
                                         [&] { return ++asked > 2; });
  REQUIRE_FALSE(stopped);
  CHECK(stopped.error().kind == common::ErrorKind::TempFail);
  CHECK(stopped.error().detail == "search stopped after 2 messages (deadline or cancellation)");
  auto going = store::search::evaluate(*txn, e.dbs(), e.mailbox_id(), Program{str(Kind::Body, "fox")}, 0,
                                       [] { return false; });
  REQUIRE(going);
  CHECK(going->uids == U{mb.plain});

  // 9,999 BODY and TEXT keys, many the same: one read of each message's parts, the right answer.
  Program many{all_of(9999)};
  for (int i = 0; i < 9999; ++i) {
    many.push_back(str(i % 2 ? Kind::Body : Kind::Text, i % 3 ? "o" : "the quick brown fox " + std::to_string(i % 50)));
  }
  auto r = e.search(many);
  REQUIRE(r);
  CHECK(r->uids.empty());
  CHECK(r->stats.bodies <= 5);
  Program same{all_of(9999)};
  for (int i = 0; i < 9999; ++i) same.push_back(str(i % 2 ? Kind::Body : Kind::Text, i % 2 ? "lazy" : "QUICK"));
  CHECK(e.uids(same) == U{mb.plain});
}
