// mutf7_test.cpp: modified UTF-7 (RFC 3501 §5.1.3) round trips and refusals, and the mailbox-name
// checks of both modes (mmp/imap/mutf7.hpp).
#include <catch2/catch.hpp>

#include <string>

#include "mmp/imap/mutf7.hpp"

using namespace mmp::imap;
using namespace std::string_literals;

TEST_CASE("modified UTF-7 round trips, with the RFC's examples") {
  const struct {
    const char* utf8;
    const char* wire;
  } cases[] = {
      {"INBOX", "INBOX"},
      {"~peter/mail/\xe5\x8f\xb0\xe5\x8c\x97/\xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e", "~peter/mail/&U,BTFw-/&ZeVnLIqe-"},  // RFC 3501 §5.1.3
      {"&", "&-"},
      {"Tom & Jerry", "Tom &- Jerry"},
      {"caf\xc3\xa9", "caf&AOk-"},
      {"\xc3\xa9\xc3\xa9", "&AOkA6Q-"},
      {"Entw\xc3\xbc" "rfe", "Entw&APw-rfe"},
      {"\xf0\x9f\x93\xa7 mail", "&2D3c5w- mail"},  // a surrogate pair
      {"\xd0\x92\xd1\x85\xd0\xbe\xd0\xb4\xd1\x8f\xd1\x89\xd0\xb8\xd0\xb5", "&BBIERQQ+BDQETwRJBDgENQ-"},
      {"a\tb", "a&AAk-b"},  // a control character is encoded (mailbox_from_wire refuses it)
      {"", ""},
  };
  for (const auto& c : cases) {
    INFO(c.wire);
    auto enc = mutf7_encode(c.utf8);
    REQUIRE(enc);
    CHECK(*enc == c.wire);
    auto dec = mutf7_decode(c.wire);
    REQUIRE(dec);
    CHECK(*dec == c.utf8);
  }
  // Every BMP code point outside printable ASCII, and some past it, survive the round trip.
  std::string all;
  for (uint32_t cp = 0x80; cp < 0x10000; cp += 7) {
    if (cp >= 0xd800 && cp <= 0xdfff) continue;
    std::string one;
    if (cp < 0x800) {
      one += static_cast<char>(0xC0 | (cp >> 6));
      one += static_cast<char>(0x80 | (cp & 0x3F));
    } else {
      one += static_cast<char>(0xE0 | (cp >> 12));
      one += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
      one += static_cast<char>(0x80 | (cp & 0x3F));
    }
    all += one;
    if (cp % 5 == 0) all += "x";
  }
  auto enc = mutf7_encode(all);
  REQUIRE(enc);
  auto dec = mutf7_decode(*enc);
  REQUIRE(dec);
  CHECK(*dec == all);
  CHECK(*mutf7_encode(*dec) == *enc);
}

TEST_CASE("modified UTF-7 refusals: non-canonical forms, bad base64, surrogates, 8-bit bytes") {
  const char* bad[] = {
      "&",            // no '-'
      "abc&AOk",      // no '-'
      "&AGE-",        // 'a' encoded: it can represent itself
      "&ACY-",        // '&' encoded (it is "&-")
      "&AOk-&AOk-",   // two runs side by side: the encoder writes "&AOkA6Q-"
      "&AOl-",        // non-zero padding bits
      "&AO-",         // 12 bits: not a whole UTF-16 unit
      "&AOkA-",       // 6 bits left over
      "&AOk=-",       // '=' is not in modified base64
      "&U/BTFw-",     // '/' is standard base64's; modified uses ','
      "&2D0-",        // a lone high surrogate
      "&3KcAZQ-",     // a lone low surrogate
      "&2D3YPQ-",     // high followed by high
      "caf\xc3\xa9",  // raw UTF-8 (8-bit garbage to a modified UTF-7 reader)
      "\xff",
      "a\tb",         // a control byte
      "a\x7f",
  };
  for (const char* s : bad) {
    INFO(s);
    auto r = mutf7_decode(s);
    CHECK_FALSE(r);
    if (!r) CHECK(r.error().kind == common::ErrorKind::Protocol);
  }
  CHECK_FALSE(mutf7_encode("caf\xe9"));      // Latin-1, not UTF-8
  CHECK_FALSE(mutf7_encode("\xed\xa0\x80"));  // an encoded surrogate
  CHECK_FALSE(mutf7_encode("\xc0\xaf"));      // overlong
}

TEST_CASE("mailbox names from the wire in both modes") {
  CHECK(*mailbox_from_wire("inbox", false) == "INBOX");
  CHECK(*mailbox_from_wire("InBoX", true) == "INBOX");
  CHECK(*mailbox_from_wire("INBOX/Sub", false) == "INBOX/Sub");
  CHECK(*mailbox_from_wire("Entw&APw-rfe", false) == "Entw\xc3\xbcrfe");
  // In UTF-8 mode '&' has no meaning and UTF-8 is taken as it is.
  CHECK(*mailbox_from_wire("Entw&APw-rfe", true) == "Entw&APw-rfe");
  CHECK(*mailbox_from_wire("Entw\xc3\xbcrfe", true) == "Entw\xc3\xbcrfe");
  // 8-bit garbage is a clean error in either mode.
  CHECK_FALSE(mailbox_from_wire("Entw\xc3\xbcrfe", false));
  CHECK_FALSE(mailbox_from_wire("bad\xff\xfe", true));
  CHECK_FALSE(mailbox_from_wire("\xc3", true));
  // Control characters, NUL included, however they are spelt.
  CHECK_FALSE(mailbox_from_wire("a&AAk-b", false));
  CHECK_FALSE(mailbox_from_wire("a\tb", true));
  CHECK_FALSE(mailbox_from_wire("a\0b"s, true));
  CHECK_FALSE(mailbox_from_wire("&AAA-", false));
  CHECK_FALSE(mailbox_from_wire("", true));

  CHECK(mailbox_to_wire("Entw\xc3\xbcrfe", false) == "Entw&APw-rfe");
  CHECK(mailbox_to_wire("Entw\xc3\xbcrfe", true) == "Entw\xc3\xbcrfe");
  CHECK(mailbox_to_wire("Tom & Jerry", false) == "Tom &- Jerry");
  // Should the store ever hold a bad name, no raw 8-bit byte reaches a modified UTF-7 client.
  CHECK(mailbox_to_wire("bad\xff", false) == "bad&,,0-");
  CHECK(mailbox_to_wire("bad\xff", true) == "bad\xef\xbf\xbd");
}
