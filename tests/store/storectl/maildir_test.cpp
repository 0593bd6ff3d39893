// maildir_test.cpp: the Maildir conventions postern-storectl reads and writes: file-name flags,
// dovecot-keywords, dovecot-uidlist, Maildir++ folder names in modified UTF-7, subscriptions and
// line ends.
#include <catch2/catch.hpp>

#include "store/storage/schema.hpp"
#include "store/tools/maildir.hpp"

namespace {

namespace md = store::tools::maildir;

TEST_CASE("maildir: file-name info gives flags, P and keyword letters", "[storectl][maildir]") {
  auto f = md::parse_file_name("1700000000.M12P34.host,S=120,W=124:2,DFPRSTacz");
  CHECK(f.base == "1700000000.M12P34.host,S=120,W=124");
  CHECK(f.flags == (store::kDraft | store::kFlagged | store::kAnswered | store::kSeen | store::kDeleted));
  CHECK(f.passed);
  CHECK(f.keyword_letters == "acz");
  CHECK(f.unknown_flags.empty());

  SECTION("no info: a file in new/") {
    auto n = md::parse_file_name("1700000000.M12P34.host");
    CHECK(n.base == "1700000000.M12P34.host");
    CHECK(n.flags == 0);
    CHECK_FALSE(n.passed);
  }
  SECTION("an empty flag set") { CHECK(md::parse_file_name("a.b.c:2,").flags == 0); }
  SECTION("the experimental \"1,\" info has no flags") {
    auto n = md::parse_file_name("a.b.c:1,S");
    CHECK(n.flags == 0);
    CHECK(n.base == "a.b.c");
  }
  SECTION("a second flag set after ',' is ignored, as Dovecot does") {
    auto n = md::parse_file_name("a.b.c:2,S,F");
    CHECK(n.flags == store::kSeen);
  }
  SECTION("unknown upper-case letters are reported, letters repeated once") {
    auto n = md::parse_file_name("x:2,SXYXaa");
    CHECK(n.flags == store::kSeen);
    CHECK(n.unknown_flags == "XY");
    CHECK(n.keyword_letters == "a");
  }
  SECTION("the base is up to the first ':', the info after the last") {
    auto n = md::parse_file_name("x:y:2,F");
    CHECK(n.base == "x");
    CHECK(n.flags == store::kFlagged);
  }
}

TEST_CASE("maildir: file names list flags in ASCII order, keywords sorted", "[storectl][maildir]") {
  const uint32_t all = store::kDraft | store::kFlagged | store::kAnswered | store::kSeen | store::kDeleted;
  CHECK(md::make_file_name("b", all, true, "zca") == "b:2,DFPRSTacz");
  CHECK(md::make_file_name("b", store::kSeen, false, "") == "b:2,S");
  CHECK(md::make_file_name("b", 0, true, "") == "b:2,P");
  CHECK(md::make_file_name("b", store::kDraft, true, "") == "b:2,DP");
  CHECK(md::make_file_name("b", 0, false, "") == "b:2,");
  // Round trip through the parser for every flag combination.
  for (uint32_t flags = 0; flags < 32; ++flags) {
    for (bool passed : {false, true}) {
      auto back = md::parse_file_name(md::make_file_name("base", flags, passed, "db"));
      CHECK(back.flags == flags);
      CHECK(back.passed == passed);
      CHECK(back.keyword_letters == "bd");
      CHECK(back.base == "base");
    }
  }
}

TEST_CASE("maildir: S= and W= sizes from the base name", "[storectl][maildir]") {
  CHECK(md::size_field("1.M2P3.h,S=120,W=124", 'S') == 120u);
  CHECK(md::size_field("1.M2P3.h,S=120,W=124", 'W') == 124u);
  CHECK(md::size_field("1.M2P3.h,S=120", 'W') == std::nullopt);
  CHECK(md::size_field("1.M2P3.h,S=12x", 'S') == std::nullopt);
  CHECK(md::size_field("1.M2P3.h,S=", 'S') == std::nullopt);
}

TEST_CASE("maildir: unnumbered files sort by time, microseconds, then name", "[storectl][maildir]") {
  CHECK(md::sorts_before("9.M1P1.h", "10.M1P1.h"));
  CHECK(md::sorts_before("10.M2P1.h", "10.M10P1.h"));
  CHECK_FALSE(md::sorts_before("10.M10P1.h", "10.M2P1.h"));
  CHECK(md::sorts_before("10.M2P1.a", "10.M2P1.b"));
  CHECK_FALSE(md::sorts_before("10.M2P1.a:2,S", "10.M2P1.a:2,F"));  // same base
}

TEST_CASE("maildir: dovecot-keywords", "[storectl][maildir]") {
  auto k = md::parse_keywords("0 $Forwarded\n1 work\n25 last\n26 too-far\nbad line\n3 \n x\n");
  REQUIRE(k.size() == 26);
  CHECK(k[0] == "$Forwarded");
  CHECK(k[1] == "work");
  CHECK(k[2].empty());
  CHECK(k[3].empty());
  CHECK(k[25] == "last");
  CHECK(md::format_keywords(k) == "0 $Forwarded\n1 work\n25 last\n");
  CHECK(md::parse_keywords(md::format_keywords(k)) == k);
  CHECK(md::parse_keywords("0 a\r\n").at(0) == "a");
}

TEST_CASE("maildir: dovecot-uidlist version 3 and 1", "[storectl][maildir]") {
  SECTION("version 3 as Dovecot writes it (the header's N may lag behind the records)") {
    auto u = md::parse_uidlist(
        "3 V1796629145 N1 G888a4d1d9962166b493a000083ecc375\n"
        "1 :1796629145.M491622P14921.vm,S=305,W=318\n"
        "2 W321 :1796629145.M516569P14921.vm,S=308,W=321\n"
        "5 :1796629145.M528156P14921.vm,S=308,W=321:2,S\n");
    REQUIRE(u);
    CHECK(u->uidvalidity == 1796629145u);
    CHECK(u->next_uid == 1u);
    REQUIRE(u->entries.size() == 3);
    CHECK(u->entries[1].uid == 2u);
    CHECK(u->entries[1].base == "1796629145.M516569P14921.vm,S=308,W=321");
    CHECK(u->entries[2].uid == 5u);
    CHECK(u->entries[2].base == "1796629145.M528156P14921.vm,S=308,W=321");
  }
  SECTION("version 1 (Courier's courierimapuiddb)") {
    auto u = md::parse_uidlist("1 1234 7\n3 a.b.c\n6 d.e.f:2,S\n");
    REQUIRE(u);
    CHECK(u->uidvalidity == 1234u);
    CHECK(u->next_uid == 7u);
    REQUIRE(u->entries.size() == 2);
    CHECK(u->entries[1].base == "d.e.f");
  }
  SECTION("what we write reads back") {
    const std::string text = md::format_uidlist(99, 12, {{3, 120, "a,S=118,W=120"}, {11, 0, "b"}});
    CHECK(text == "3 V99 N12\n3 W120 :a,S=118,W=120\n11 :b\n");
    auto u = md::parse_uidlist(text);
    REQUIRE(u);
    CHECK(u->uidvalidity == 99u);
    CHECK(u->next_uid == 12u);
    REQUIRE(u->entries.size() == 2);
    CHECK(u->entries[0].base == "a,S=118,W=120");
  }
  SECTION("refused: no header, another version, UIDs not growing, no file name, a '/'") {
    CHECK_FALSE(md::parse_uidlist(""));
    CHECK_FALSE(md::parse_uidlist("2 1 2\n"));
    CHECK_FALSE(md::parse_uidlist("3 V1 N3\n2 :a\n2 :b\n"));
    CHECK_FALSE(md::parse_uidlist("3 V1 N3\n2 :a\n1 :b\n"));
    CHECK_FALSE(md::parse_uidlist("3 V1 N3\n0 :a\n"));
    CHECK_FALSE(md::parse_uidlist("3 V1 N3\n1 a\n"));
    CHECK_FALSE(md::parse_uidlist("3 V1 N3\n1 :\n"));
    CHECK_FALSE(md::parse_uidlist("3 V1 N3\n1 :../x\n"));
    CHECK_FALSE(md::parse_uidlist("3 V1 N3\n1 ::2,S\n"));  // no base before the info
    CHECK_FALSE(md::parse_uidlist("3 Vx N3\n"));
    CHECK_FALSE(md::parse_uidlist("3 V1 N3\n4294967295 :a\n"));
    CHECK_FALSE(md::parse_uidlist("1 5\n"));
  }
}

TEST_CASE("maildir: modified UTF-7 (RFC 3501 section 5.1.3)", "[storectl][maildir]") {
  struct Case {
    const char* utf8;
    const char* mutf7;
  };
  const Case cases[] = {
      {"INBOX", "INBOX"},
      {"t\xc3\xa9t\xc3\xa9", "t&AOk-t&AOk-"},
      {"\xc3\xa9t\xc3\xa9", "&AOk-t&AOk-"},
      {"A&B", "A&-B"},
      {"~peter/mail/\xe5\x8f\xb0\xe5\x8c\x97/\xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e",
       "~peter/mail/&U,BTFw-/&ZeVnLIqe-"},  // the RFC's example
      {"\xf0\x9f\x93\xa7 mail", "&2D3c5w- mail"},  // a code point past U+FFFF: a surrogate pair
      {"", ""},
  };
  for (const auto& c : cases) {
    INFO(c.mutf7);
    CHECK(md::mutf7_encode(c.utf8) == c.mutf7);
    auto back = md::mutf7_decode(c.mutf7);
    REQUIRE(back);
    CHECK(*back == c.utf8);
  }
  SECTION("refused") {
    CHECK_FALSE(md::mutf7_decode("&AOk"));        // no '-'
    CHECK_FALSE(md::mutf7_decode("&AOk!-"));      // not base64
    CHECK_FALSE(md::mutf7_decode("&AE-"));        // leftover bits, not a whole UTF-16 unit
    CHECK_FALSE(md::mutf7_decode("&AEE-"));       // "A" encoded: printable ASCII must be itself
    CHECK_FALSE(md::mutf7_decode("&2D0-"));       // a lone high surrogate
    CHECK_FALSE(md::mutf7_decode("&3-c-"));       // six bits: not a UTF-16 unit
    CHECK_FALSE(md::mutf7_decode("caf\xc3\xa9"));  // raw 8-bit
    CHECK_FALSE(md::mutf7_decode("a\tb"));         // control
  }
}

TEST_CASE("maildir: Maildir++ folder names", "[storectl][maildir]") {
  auto name = [](std::string_view dir, std::string_view prefix = "") {
    auto r = md::folder_mailbox(dir, prefix);
    REQUIRE(r);
    return r->value_or("(none)");
  };
  CHECK(name(".Work") == "Work");
  CHECK(name(".Work.Sub") == "Work/Sub");
  CHECK(name(".&AOk-t&AOk-") == "\xc3\xa9t\xc3\xa9");
  CHECK(name(".Work", "Old") == "Old/Work");
  CHECK(name(".INBOX.x") == "INBOX/x");
  CHECK(name("cur") == "(none)");
  CHECK(name(".") == "(none)");
  CHECK(name("..") == "(none)");
  CHECK(name(".a..b") == "(none)");
  CHECK(name(".a.") == "(none)");
  CHECK_FALSE(md::folder_mailbox(".&AOk", ""));

  auto folder = md::mailbox_folder("Work/\xc3\xa9t\xc3\xa9");
  REQUIRE(folder);
  CHECK(*folder == ".Work.&AOk-t&AOk-");
  CHECK_FALSE(md::mailbox_folder("a.b/c"));
}

TEST_CASE("maildir: Dovecot's subscriptions file", "[storectl][maildir]") {
  auto v2 = md::parse_subscriptions("V\t2\n\nWork\tSub\n&AOk-t&AOk-\nINBOX\n");
  REQUIRE(v2);
  CHECK(*v2 == std::vector<std::string>{"Work/Sub", "\xc3\xa9t\xc3\xa9", "INBOX"});
  auto v1 = md::parse_subscriptions("Work.Sub\nINBOX\n");
  REQUIRE(v1);
  CHECK(*v1 == std::vector<std::string>{"Work/Sub", "INBOX"});
  CHECK_FALSE(md::parse_subscriptions("V\t2\n\n&AOk\n"));
}

TEST_CASE("maildir: LF-only files get CRLF, files with any CR stay as they are", "[storectl][maildir]") {
  CHECK(md::imap_line_ends("a\nb\n\nc\n") == "a\r\nb\r\n\r\nc\r\n");
  CHECK(md::imap_line_ends("a\r\nb\n") == "a\r\nb\n");
  CHECK(md::imap_line_ends("no line end") == "no line end");
  CHECK(md::imap_line_ends("") == "");
  CHECK(md::crlf_size("a\nb\r\n") == 6u);
  CHECK(md::crlf_size("\n") == 2u);
  CHECK(md::crlf_size("a\r\nb\r\n") == 6u);
}

}  // namespace
