// text_test.cpp: the one copy of each text helper: ASCII case and trimming without the locale,
// strict base64 and base64url, and RFC 4514 / RFC 4515 escaping (with the RFCs' own cases).
#include <catch2/catch.hpp>

#include <clocale>
#include <string>

#include "common/ascii.hpp"
#include "common/text/base64.hpp"
#include "common/text/ldap_escape.hpp"

using namespace std::string_literals;
namespace ascii = common::ascii;
namespace text = common::text;

TEST_CASE("ASCII lowering and comparison ignore the locale and leave non-ASCII bytes alone") {
  // A Turkish locale lowers 'I' to a dotless i with std::tolower; protocol names must not change.
  const char* turkish = std::setlocale(LC_CTYPE, "tr_TR.ISO-8859-9");
  CHECK(ascii::lowered("IMAP SMTP \xc3\x89") == "imap smtp \xc3\x89");
  CHECK(ascii::iequals("LOGIN", "login"));
  CHECK(ascii::iequals("\xc9", "\xc9"));
  CHECK_FALSE(ascii::iequals("\xc9", "\xe9"));  // Latin-1 É and é: not ASCII, not folded
  CHECK_FALSE(ascii::iequals("abc", "abcd"));
  if (turkish != nullptr) std::setlocale(LC_CTYPE, "C");
}

TEST_CASE("trim drops blanks and line endings at the ends only") {
  CHECK(ascii::trim("  active \t\r\n") == "active");
  CHECK(ascii::trim("a b") == "a b");
  CHECK(ascii::trim(" \t ") == "");
  CHECK(ascii::trim("") == "");
  CHECK(ascii::trim("\va\v") == "\va\v");  // only the four
}

TEST_CASE("base64 is strict: padding, alphabet, trailing bits, length bound") {
  CHECK(text::base64_encode("") == "");
  CHECK(text::base64_encode("f") == "Zg==");
  CHECK(text::base64_encode("foobar") == "Zm9vYmFy");  // RFC 4648 §10
  CHECK(text::base64_encode("\xfb\xff"s) == "+/8=");
  CHECK(text::base64_decode("Zm9vYg==") == "foob");
  CHECK(text::base64_decode("") == "");
  for (std::string bad : {"Zg", "Zg=", "Zh==", "Zm9v\n", " Zm9v", "Zm9v====", "Zm9-", "Z===", "Zg==Zg=="}) {
    INFO(bad);
    CHECK_FALSE(text::base64_decode(bad));
  }
  // What the SASL relay relies on (RFC 4954 §4 continuations): one text, one meaning.
  CHECK(text::base64_encode(std::string("\0alice\0secret", 13)) == "AGFsaWNlAHNlY3JldA==");
  CHECK(text::base64_decode("AGFsaWNlAHNlY3JldA==") == std::string("\0alice\0secret", 13));
  for (const char* bad : {"AGFsaWNlAHNlY3JldA",     // padding missing
                          "AGFsaWNl AHNlY3JldA==",  // whitespace inside
                          "AGFsaWNlAHNlY3JldA==\n", "AGFs\r\naWNl",
                          "-_4=",                   // the URL-safe alphabet is another variant
                          "//5=",                   // non-zero trailing bits: a second spelling of "//4="
                          "=", "====", "Zm9v!"}) {
    INFO(bad);
    CHECK_FALSE(text::base64_decode(bad));
  }
  CHECK_FALSE(text::base64_decode(std::string("Zm9\0", 4)));
  CHECK(text::base64_decode("Zm9vYmFy", 6) == "foobar");
  CHECK_FALSE(text::base64_decode("Zm9vYmFy", 5));
  CHECK_FALSE(text::base64_decode(std::string(4000, 'A'), 16));
}

TEST_CASE("base64url is strict: no padding, URL alphabet, trailing bits, length bound") {
  CHECK(text::base64url_encode("\xfb\xff"s) == "-_8");
  CHECK(text::base64url_decode("-_8") == "\xfb\xff"s);
  CHECK(text::base64url_decode("Zm9vYmFy") == "foobar");
  for (std::string bad : {"Zg==", "Zg=", "+/8", "-_9", "Z", "Zm9v\n", "Zm9v Zm9v"}) {
    INFO(bad);
    CHECK_FALSE(text::base64url_decode(bad));
  }
  CHECK(text::base64url_decode("Zm9vYmE", 5) == "fooba");
  CHECK_FALSE(text::base64url_decode("Zm9vYmE", 4));
  CHECK_FALSE(text::base64url_decode(std::string(4000, 'A'), 32));
}

TEST_CASE("RFC 4515 filter values: the specials, NUL, controls and non-ASCII as backslash-XX") {
  // RFC 4515 §4's own examples.
  CHECK(text::escape_filter_value("Parens R Us (for all your parenthetical needs)") ==
        "Parens R Us \\28for all your parenthetical needs\\29");
  CHECK(text::escape_filter_value("*") == "\\2a");
  CHECK(text::escape_filter_value("C:\\MyFile") == "C:\\5cMyFile");
  CHECK(text::escape_filter_value("\x00\x00\x00\x04"s) == "\\00\\00\\00\\04");
  CHECK(text::escape_filter_value("Lu\xc4\x8di\xc4\x87") == "Lu\\c4\\8di\\c4\\87");
  // An injection stays one value.
  CHECK(text::escape_filter_value("*)(uid=*") == "\\2a\\29\\28uid=\\2a");
  CHECK(text::escape_filter_value("tab\there\x7f") == "tab\\09here\\7f");
  CHECK(text::escape_filter_value("a.b-c_d@example.com") == "a.b-c_d@example.com");
  CHECK(text::escape_filter_value("") == "");
}

TEST_CASE("RFC 4514 DN values: what section 2.4 requires, '=' as is, edge spaces as backslash-20") {
  CHECK(text::escape_dn_value("alice") == "alice");
  // RFC 4514 §4's examples.
  CHECK(text::escape_dn_value("James \"Jim\" Smith, III") == "James \\\"Jim\\\" Smith\\, III");
  CHECK(text::escape_dn_value("Before\rAfter") == "Before\\0dAfter");
  CHECK(text::escape_dn_value("Lu\xc4\x8di\xc4\x87") == "Lu\\c4\\8di\\c4\\87");
  // Every character §2.4 requires escaped, each with a backslash.
  CHECK(text::escape_dn_value("a+b,c;d<e>f\"g\\h") == "a\\+b\\,c\\;d\\<e\\>f\\\"g\\\\h");
  CHECK(text::escape_dn_value("nul\0"s) == "nul\\00");
  CHECK(text::escape_dn_value("#hash") == "\\#hash");
  CHECK(text::escape_dn_value("in#side") == "in#side");
  // The two points the old copies disagreed on.
  CHECK(text::escape_dn_value("uid=x,o=evil") == "uid=x\\,o=evil");  // '=' needs no escape (§3 grammar)
  CHECK(text::escape_dn_value(" lead") == "\\20lead");
  CHECK(text::escape_dn_value("trail ") == "trail\\20");
  CHECK(text::escape_dn_value(" ") == "\\20");
  CHECK(text::escape_dn_value("in side") == "in side");
  CHECK(text::escape_dn_value("#a b ") == "\\#a b\\20");
}
