// commands_test.cpp: every command form of mmp/imap's model, mostly the examples of RFC 9051 and
// of the extensions' RFCs, and the refusals of forms their grammar does not allow.
#include <catch2/catch.hpp>

#include "tests/mmp/imap/driver.hpp"

using namespace imap_test;

namespace {

template <class T>
const T& args(const Command& c) {
  return std::get<T>(c.args);
}

SequenceSet set_of(std::initializer_list<SeqRange> ranges) {
  SequenceSet s;
  s.ranges = ranges;
  return s;
}

}  // namespace

TEST_CASE("commands without arguments (RFC 9051 §6.1, §6.2.1, §6.3.10, §6.4)") {
  const struct {
    const char* line;
    Verb verb;
  } cases[] = {
      {"a001 CAPABILITY", Verb::Capability}, {"a002 NOOP", Verb::Noop},         {"A023 LOGOUT", Verb::Logout},
      {"a002 STARTTLS", Verb::StartTls},      {"A001 NAMESPACE", Verb::Namespace}, {"FXXZ CHECK", Verb::Check},
      {"A341 CLOSE", Verb::Close},            {"A342 UNSELECT", Verb::Unselect},  {"A202 EXPUNGE", Verb::Expunge},
      {"a IDLE", Verb::Idle},                 {"x unauthenticate", Verb::Unauthenticate},
      {"a2 noop", Verb::Noop},  // command names are case-insensitive
  };
  for (const auto& c : cases) {
    INFO(c.line);
    Command cmd = parse_one(c.line);
    CHECK(cmd.verb == c.verb);
    CHECK_FALSE(cmd.uid);
    CHECK(cmd.tag == std::string_view(c.line).substr(0, std::string_view(c.line).find(' ')));
  }
  CHECK(refusal("a NOOP extra").text == "NOOP: takes no arguments");
  CHECK(refusal("a NOOP ").tag == "a");
  CHECK(refusal("a CAPABILITY(").tag == "a");
  CHECK_FALSE(std::get<ExpungeArgs>(parse_one("a EXPUNGE").args).uids);
}

TEST_CASE("tags and command names") {
  CHECK(parse_one("]tag.1-x NOOP").tag == "]tag.1-x");  // TAG-CHAR includes ']'
  auto unknown = refusal("a17 FROBNICATE x");
  CHECK(unknown.tag == "a17");
  CHECK(unknown.text == "unknown command");
  CHECK_FALSE(unknown.verb);
  CHECK(refusal("a+b NOOP").tag == "*");  // '+' is not a TAG-CHAR
  CHECK(refusal("a*b NOOP").tag == "*");
  CHECK(refusal("\"a\" NOOP").tag == "*");
  CHECK(refusal("tag").text == "missing command name");
  CHECK(refusal("tag ").text == "missing command name");
  CHECK(refusal(" NOOP").tag == "*");
  CHECK(refusal("a UID NOOP").text == "UID does not go with NOOP");
  CHECK(refusal("a UID").text == "UID needs a command");
  auto empty = refusal("");
  CHECK(empty.tag == "*");
  CHECK(empty.code == "CLIENTBUG");
}

TEST_CASE("AUTHENTICATE with and without SASL-IR (RFC 9051 §6.2.2, RFC 4959)") {
  auto a = parse_one("A001 AUTHENTICATE GSSAPI");
  CHECK(a.verb == Verb::Authenticate);
  CHECK(args<AuthenticateArgs>(a).mechanism == "GSSAPI");
  CHECK_FALSE(args<AuthenticateArgs>(a).initial_response);
  auto ir = parse_one("a AUTHENTICATE PLAIN dGVzdAB0ZXN0AHRlc3Q=");
  CHECK(*args<AuthenticateArgs>(ir).initial_response == "dGVzdAB0ZXN0AHRlc3Q=");
  auto empty = parse_one("a AUTHENTICATE EXTERNAL =");
  CHECK(args<AuthenticateArgs>(empty).initial_response == std::string());
  CHECK(refusal("a AUTHENTICATE PLAIN not*base64").text == "AUTHENTICATE: the initial response is not base64");
  CHECK(refusal("a AUTHENTICATE PLAIN abc").text == "AUTHENTICATE: the initial response is not base64");
  CHECK(refusal("a AUTHENTICATE PLAIN ab=c").tag == "a");
  CHECK(refusal("a AUTHENTICATE").tag == "a");
}

TEST_CASE("LOGIN with atoms, quoted strings and literals (RFC 9051 §6.2.3, §4.3)") {
  auto l = parse_one("a001 LOGIN SMITH SESAME");
  CHECK(args<LoginArgs>(l).user == "SMITH");
  CHECK(args<LoginArgs>(l).password == "SESAME");
  auto q = parse_one(R"(a LOGIN "fred foo" "pass \"word\" \\ x")");
  CHECK(args<LoginArgs>(q).user == "fred foo");
  CHECK(args<LoginArgs>(q).password == "pass \"word\" \\ x");
  auto events = run("a LOGIN {4+}\r\nfred {6+}\r\nse\"c t\r\n");
  REQUIRE(events.size() == 1);
  const auto& lit = std::get<Command>(events[0]);
  CHECK(args<LoginArgs>(lit).user == "fred");
  CHECK(args<LoginArgs>(lit).password == "se\"c t");
  auto utf8 = parse_one("a LOGIN \"j\xc3\xb6rg\" x");
  CHECK(args<LoginArgs>(utf8).user == "j\xc3\xb6rg");
  CHECK(parse_one("a LOGIN \"\" \"\"").verb == Verb::Login);  // empty strings are strings
  CHECK(refusal("a LOGIN fred").text == "LOGIN: missing arguments");
  CHECK(refusal(R"(a LOGIN "a\b" x)").text == "LOGIN: bad escape in a quoted string");
  CHECK(refusal("a LOGIN \"abc x").text == "LOGIN: unterminated quoted string");
  CHECK(refusal("a LOGIN \"a\xff\" x").text.find("not UTF-8") != std::string::npos);
  CHECK(refusal("a LOGIN j\xc3\xb6rg x").text.find("8-bit") != std::string::npos);
  CHECK(refusal("a LOGIN fred  pw").text == "LOGIN: expected a password, found byte 0x20");
  CHECK(refusal("a LOGIN \"x\ry\" z").text == "LOGIN: control character in a quoted string");
}

TEST_CASE("ENABLE (RFC 5161, RFC 9051 §6.3.1)") {
  auto e = parse_one("t2 ENABLE CONDSTORE QRESYNC IMAP4rev2 UTF8=ACCEPT");
  CHECK(args<EnableArgs>(e).capabilities == std::vector<std::string>{"CONDSTORE", "QRESYNC", "IMAP4rev2", "UTF8=ACCEPT"});
  CHECK(refusal("t2 ENABLE").text == "ENABLE: ENABLE needs a capability");
}

TEST_CASE("SELECT and EXAMINE with CONDSTORE and QRESYNC (RFC 9051 §6.3.2, RFC 7162 §3.1.8, §3.2.5)") {
  auto s = parse_one("A142 SELECT INBOX");
  CHECK(s.verb == Verb::Select);
  CHECK(args<SelectArgs>(s).mailbox == "INBOX");
  CHECK_FALSE(args<SelectArgs>(s).condstore);
  auto e = parse_one("A932 EXAMINE blurdybloop");
  CHECK(e.verb == Verb::Examine);
  CHECK(args<SelectArgs>(e).mailbox == "blurdybloop");
  CHECK(args<SelectArgs>(parse_one("a SELECT INBOX (CONDSTORE)")).condstore);

  auto q = parse_one("A02 SELECT INBOX (QRESYNC (67890007 20050715194045000 41,43:211,214:541))");
  const auto& qa = *args<SelectArgs>(q).qresync;
  CHECK(qa.uidvalidity == 67890007);
  CHECK(qa.modseq == 20050715194045000ull);
  CHECK(*qa.known_uids == set_of({{41, 41}, {43, 211}, {214, 541}}));
  CHECK_FALSE(qa.known_seqs);

  auto m = parse_one(
      "B01 SELECT INBOX (QRESYNC (67890007 90060115194045000 1:29997 (5000,7500,9000,9990:9999 "
      "15000,22500,27000,29970,29973,29976,29979,29982,29985,29988,29991,29994,29997)))");
  const auto& ma = *args<SelectArgs>(m).qresync;
  CHECK(*ma.known_uids == set_of({{1, 29997}}));
  CHECK(ma.known_seqs->ranges.size() == 4);
  CHECK(ma.known_seq_uids->ranges.size() == 13);
  auto only_match = parse_one("a SELECT INBOX (CONDSTORE QRESYNC (1 2 (1:3 4:6)))");
  CHECK(args<SelectArgs>(only_match).condstore);
  CHECK_FALSE(args<SelectArgs>(only_match).qresync->known_uids);
  CHECK(*args<SelectArgs>(only_match).qresync->known_seq_uids == set_of({{4, 6}}));

  CHECK(refusal("a SELECT INBOX (QRESYNC (1 2 1:*))").text == "SELECT: '*' is not allowed here");
  CHECK(refusal("a SELECT INBOX (QRESYNC (0 2))").text == "SELECT: a UIDVALIDITY must not be 0");
  CHECK(refusal("a SELECT INBOX (QRESYNC (1 0))").text == "SELECT: a mod-sequence must not be 0");
  CHECK(refusal("a SELECT INBOX (FOO)").text == "SELECT: unknown SELECT parameter");
  CHECK(refusal("a SELECT INBOX (CONDSTORE CONDSTORE)").text == "SELECT: CONDSTORE given twice");
  CHECK(refusal("a SELECT").text == "SELECT: missing arguments");
}

TEST_CASE("CREATE with USE, DELETE, RENAME, SUBSCRIBE, UNSUBSCRIBE (RFC 9051 §6.3.4-8, RFC 6154 §3)") {
  CHECK(args<CreateArgs>(parse_one("A003 CREATE owatagusiam/")).mailbox == "owatagusiam/");
  auto u = parse_one("t1 CREATE MySpecial (USE (\\Drafts \\Sent))");
  CHECK(args<CreateArgs>(u).mailbox == "MySpecial");
  CHECK(args<CreateArgs>(u).special_use == std::vector<std::string>{"\\Drafts", "\\Sent"});
  CHECK(args<CreateArgs>(parse_one("t1 CREATE X (USE ())")).special_use.empty());
  CHECK(refusal("t1 CREATE X (USE (Drafts))").text == "CREATE: a special-use attribute starts with '\\'");
  CHECK(refusal("t1 CREATE X (FOO)").text == "CREATE: unknown CREATE parameter");
  CHECK(args<MailboxArgs>(parse_one("A683 DELETE blurdybloop")).mailbox == "blurdybloop");
  auto r = parse_one("A683 RENAME blurdybloop sarasoop");
  CHECK(args<RenameArgs>(r).from == "blurdybloop");
  CHECK(args<RenameArgs>(r).to == "sarasoop");
  CHECK(parse_one("A002 SUBSCRIBE #news.comp.mail.mime").verb == Verb::Subscribe);
  CHECK(args<MailboxArgs>(parse_one("A002 UNSUBSCRIBE #news.comp.mail.mime")).mailbox == "#news.comp.mail.mime");
  // mUTF-7 stays as sent: mailbox_from_wire reads it later.
  CHECK(args<MailboxArgs>(parse_one("a DELETE &ZeVnLIqe-")).mailbox == "&ZeVnLIqe-");
  CHECK(refusal("a DELETE").tag == "a");
  CHECK(refusal("a RENAME one").text == "RENAME: missing arguments");
}

TEST_CASE("LIST, LIST-EXTENDED, LIST-STATUS, SPECIAL-USE and LSUB (RFC 9051 §6.3.9, RFC 5258, 5819, 6154)") {
  auto l = parse_one("A101 LIST \"\" \"\"");
  CHECK(args<ListArgs>(l).reference.empty());
  CHECK(args<ListArgs>(l).patterns == std::vector<std::string>{""});
  CHECK_FALSE(args<ListArgs>(l).extended);
  auto w = parse_one("A202 LIST ~/Mail/ %");
  CHECK(args<ListArgs>(w).reference == "~/Mail/");
  CHECK(args<ListArgs>(w).patterns == std::vector<std::string>{"%"});
  CHECK(args<ListArgs>(parse_one("A682 LIST \"\" *")).patterns == std::vector<std::string>{"*"});
  CHECK(args<ListArgs>(parse_one("a LIST \"\" INBOX/*]x")).patterns == std::vector<std::string>{"INBOX/*]x"});

  auto x = parse_one("A01 LIST (SUBSCRIBED RECURSIVEMATCH) \"\" \"%\" RETURN (CHILDREN)");
  const auto& xa = args<ListArgs>(x);
  CHECK(xa.extended);
  CHECK(xa.select_subscribed);
  CHECK(xa.select_recursive);
  CHECK(xa.return_children);
  CHECK_FALSE(xa.return_subscribed);
  auto p = parse_one("A02 LIST \"\" (\"INBOX\" \"Drafts\" \"Sent/%\")");
  CHECK(args<ListArgs>(p).patterns == std::vector<std::string>{"INBOX", "Drafts", "Sent/%"});
  CHECK(args<ListArgs>(p).extended);
  auto s = parse_one("A01 LIST \"\" % RETURN (STATUS (MESSAGES UNSEEN))");
  CHECK(args<ListArgs>(s).return_status == std::vector<StatusItem>{StatusItem::Messages, StatusItem::Unseen});
  auto su = parse_one("t1 LIST (SPECIAL-USE) \"\" \"*\" RETURN (SPECIAL-USE SUBSCRIBED)");
  CHECK(args<ListArgs>(su).select_special_use);
  CHECK(args<ListArgs>(su).return_special_use);
  CHECK(args<ListArgs>(su).return_subscribed);
  CHECK(args<ListArgs>(parse_one("a LIST () \"\" % RETURN ()")).extended);
  CHECK(args<ListArgs>(parse_one("a LIST (REMOTE) \"\" %")).select_remote);

  CHECK(refusal("A01 LIST (RECURSIVEMATCH) \"\" %").text == "LIST: RECURSIVEMATCH needs another selection option");
  CHECK(refusal("A01 LIST (FOO) \"\" %").text == "LIST: unknown LIST selection option");
  CHECK(refusal("A01 LIST \"\" % RETURN (FOO)").text == "LIST: unknown LIST return option");
  CHECK(refusal("A01 LIST \"\" % CHILDREN").text == "LIST: expected RETURN after the LIST patterns");
  CHECK(refusal("A01 LIST \"\"").tag == "A01");

  auto lsub = parse_one("A002 LSUB \"#news.\" \"comp.mail.*\"");
  CHECK(lsub.verb == Verb::Lsub);
  CHECK(args<ListArgs>(lsub).reference == "#news.");
  CHECK(args<ListArgs>(lsub).patterns == std::vector<std::string>{"comp.mail.*"});
}

TEST_CASE("STATUS (RFC 9051 §6.3.11, RFC 7162, RFC 7889)") {
  auto s = parse_one("A042 STATUS blurdybloop (UIDNEXT MESSAGES)");
  CHECK(args<StatusArgs>(s).mailbox == "blurdybloop");
  CHECK(args<StatusArgs>(s).items == std::vector<StatusItem>{StatusItem::UidNext, StatusItem::Messages});
  auto all = parse_one("a status INBOX (messages recent uidnext uidvalidity unseen deleted size highestmodseq appendlimit messages)");
  CHECK(args<StatusArgs>(all).items.size() == 9);  // the repeat is dropped
  CHECK(refusal("a STATUS INBOX ()").text == "STATUS: expected a status item, found ')'");
  CHECK(refusal("a STATUS INBOX (FOO)").text == "STATUS: unknown status item");
  CHECK(refusal("a STATUS INBOX MESSAGES").text == "STATUS: expected '(' before the status items");
}

TEST_CASE("SEARCH keys, CHARSET and RETURN (RFC 9051 §6.4.4, RFC 4731, RFC 5182, RFC 7162, RFC 5032)") {
  auto s = parse_one("A282 SEARCH RETURN (MIN COUNT) FLAGGED SINCE 1-Feb-1994 NOT FROM \"Smith\"");
  const auto& a = args<SearchArgs>(s);
  CHECK(a.esearch);
  CHECK(a.ret_min);
  CHECK(a.ret_count);
  CHECK_FALSE(a.ret_all);
  REQUIRE(a.program.size() == 5);
  CHECK(a.program[0].kind == SearchKind::And);
  CHECK(a.program[0].operands == 3);
  CHECK(a.program[1].kind == SearchKind::Flagged);
  CHECK(a.program[2].kind == SearchKind::Since);
  CHECK(a.program[2].day == 8797);  // 1994-02-01
  CHECK(a.program[3].kind == SearchKind::Not);
  CHECK(a.program[4].kind == SearchKind::From);
  CHECK(a.program[4].text == "Smith");

  auto all = parse_one("A283 SEARCH RETURN () FLAGGED");
  CHECK(args<SearchArgs>(all).ret_all);  // RFC 4731 §3.1: () means ALL
  CHECK(args<SearchArgs>(all).program.size() == 1);
  CHECK_FALSE(args<SearchArgs>(parse_one("a SEARCH ALL")).esearch);

  auto cs = run("A285 SEARCH CHARSET UTF-8 TEXT {8+}\r\n\xd0\x97\xd0\xb5\xd0\xb2\xd1\x81\r\n");
  REQUIRE(cs.size() == 1);
  const auto& ca = std::get<SearchArgs>(std::get<Command>(cs[0]).args);
  CHECK(*ca.charset == "UTF-8");
  CHECK(ca.program[0].kind == SearchKind::Text);
  CHECK(ca.program[0].text == "\xd0\x97\xd0\xb5\xd0\xb2\xd1\x81");

  auto save = parse_one("A282 SEARCH RETURN (SAVE) FLAGGED SINCE 1-Feb-1994 NOT FROM \"Smith\"");
  CHECK(args<SearchArgs>(save).ret_save);
  CHECK_FALSE(args<SearchArgs>(save).ret_all);
  auto dollar = parse_one("A284 SEARCH RETURN (SAVE) OR $ 1:5");
  const auto& d = args<SearchArgs>(dollar).program;
  REQUIRE(d.size() == 3);
  CHECK(d[0].kind == SearchKind::Or);
  CHECK(d[1].kind == SearchKind::Sequence);
  CHECK(d[1].set.saved);
  CHECK(d[2].set == set_of({{1, 5}}));
  CHECK(args<SearchArgs>(parse_one("a UID SEARCH UID $")).program[0].set.saved);

  auto mod = parse_one("a SEARCH MODSEQ \"/flags/\\\\draft\" all 620162338");
  const auto& m = args<SearchArgs>(mod).program[0];
  CHECK(m.kind == SearchKind::ModSeq);
  CHECK(m.number == 620162338);
  CHECK(m.modseq_entry == "/flags/\\draft");
  CHECK(m.modseq_type == "all");
  CHECK(args<SearchArgs>(parse_one("t SEARCH MODSEQ 0")).program[0].number == 0);

  auto every = parse_one(
      "a UID SEARCH ALL ANSWERED BCC b BEFORE \"1-Jan-2020\" BODY x CC c DELETED DRAFT FLAGGED FROM f "
      "HEADER X-Spam yes KEYWORD $Junk LARGER 100 NEW OLD ON 29-Feb-2024 RECENT SEEN SENTBEFORE 1-Mar-2000 "
      "SENTON 2-Mar-2000 SENTSINCE 3-Mar-2000 SINCE 31-Dec-1999 SMALLER 5 SUBJECT s TEXT t TO o UID 1:* "
      "UNANSWERED UNDELETED UNDRAFT UNFLAGGED UNKEYWORD $Forwarded UNSEEN OLDER 60 YOUNGER 3600 2,4:* "
      "(SEEN DELETED) (UNSEEN)");
  CHECK(every.uid);
  const auto& e = args<SearchArgs>(every).program;
  CHECK(e[0].kind == SearchKind::And);
  CHECK(e[0].operands == 38);
  auto count = [&](SearchKind k) { return std::count_if(e.begin(), e.end(), [&](const SearchKey& x) { return x.kind == k; }); };
  CHECK(count(SearchKind::Recent) == 3);   // NEW, OLD, RECENT
  CHECK(count(SearchKind::Unseen) == 3);   // NEW's, UNSEEN, (UNSEEN)
  CHECK(count(SearchKind::Not) == 1);      // OLD
  CHECK(count(SearchKind::And) == 3);      // the top, NEW, (SEEN DELETED)
  const auto header = std::find_if(e.begin(), e.end(), [](const SearchKey& x) { return x.kind == SearchKind::Header; });
  CHECK(header->field == "X-Spam");
  CHECK(header->text == "yes");
  const auto on = std::find_if(e.begin(), e.end(), [](const SearchKey& x) { return x.kind == SearchKind::On; });
  CHECK(on->day == 19782);  // 2024-02-29
  const auto seq = std::find_if(e.begin(), e.end(), [](const SearchKey& x) { return x.kind == SearchKind::Sequence; });
  CHECK(seq->set.ranges == std::vector<SeqRange>{{2, 2}});
  CHECK(seq->set.star);
  CHECK(seq->set.star_lo == 4);

  CHECK(refusal("a SEARCH").text == "SEARCH: missing arguments");
  CHECK(refusal("a SEARCH FOO").text == "SEARCH: unknown search key");
  CHECK(refusal("a SEARCH ON 30-Feb-2024").text == "SEARCH: expected a date (d-Mon-yyyy)");
  CHECK(refusal("a SEARCH ON 1-Foo-2024").tag == "a");
  CHECK(refusal("a SEARCH HEADER \"a b\" x").text == "SEARCH: not a header field name");
  CHECK(refusal("a SEARCH OLDER 0").text == "SEARCH: a number of seconds must not be 0");
  CHECK(refusal("a SEARCH RETURN (FOO) ALL").text == "SEARCH: unknown SEARCH return option");
  CHECK(refusal("a SEARCH KEYWORD \\Seen").tag == "a");
  CHECK(refusal("a SEARCH OR SEEN").tag == "a");
  CHECK(refusal("a SEARCH (SEEN").tag == "a");
  CHECK(refusal("a SEARCH SEEN)").text == "SEARCH: expected a space");
  CHECK(refusal("a SEARCH MODSEQ \"/other\" all 5").text == "SEARCH: a MODSEQ entry name is \"/flags/<flag>\"");
  CHECK(refusal("a SEARCH LARGER 99999999999999999999").text == "SEARCH: a size out of range");
}

TEST_CASE("FETCH items, sections, partials, BINARY and CONDSTORE (RFC 9051 §6.4.5, RFC 3516, RFC 7162)") {
  auto f = parse_one("A654 FETCH 2:4 (FLAGS BODY[HEADER.FIELDS (DATE FROM)])");
  const auto& a = args<FetchArgs>(f);
  CHECK(a.set == set_of({{2, 4}}));
  CHECK(a.flags);
  REQUIRE(a.sections.size() == 1);
  CHECK(a.sections[0].item == BodySection::Item::Body);
  CHECK(a.sections[0].section.text == Section::Text::HeaderFields);
  CHECK(a.sections[0].section.fields == std::vector<std::string>{"DATE", "FROM"});
  CHECK_FALSE(a.sections[0].peek);

  auto full = args<FetchArgs>(parse_one("A003 FETCH 12 FULL"));
  CHECK((full.flags && full.internal_date && full.size && full.envelope && full.body));
  auto all = args<FetchArgs>(parse_one("a FETCH 1 ALL"));
  CHECK((all.flags && all.internal_date && all.size && all.envelope && !all.body));
  auto fast = args<FetchArgs>(parse_one("a FETCH 1 fast"));
  CHECK((fast.flags && fast.internal_date && fast.size && !fast.envelope));

  auto peek = args<FetchArgs>(parse_one("A005 FETCH 12 BODY.PEEK[TEXT]<0.2048>"));
  CHECK(peek.sections[0].peek);
  CHECK(peek.sections[0].section.text == Section::Text::Text);
  CHECK(*peek.sections[0].partial == Partial{0, 2048});

  auto parts = args<FetchArgs>(parse_one("a FETCH 1 (BODY[] BODY[1.2.3] BODY[4.MIME] BODY[3.HEADER.FIELDS.NOT (X-A)] BODY[2.TEXT] BODY[HEADER])"));
  REQUIRE(parts.sections.size() == 6);
  CHECK(parts.sections[0].section == Section{});
  CHECK(parts.sections[1].section.part == std::vector<uint32_t>{1, 2, 3});
  CHECK(parts.sections[2].section.text == Section::Text::Mime);
  CHECK(parts.sections[3].section.text == Section::Text::HeaderFieldsNot);
  CHECK(parts.sections[3].section.part == std::vector<uint32_t>{3});
  CHECK(parts.sections[4].section.text == Section::Text::Text);
  CHECK(parts.sections[5].section.text == Section::Text::Header);

  auto bin = args<FetchArgs>(parse_one("t FETCH 1 (BINARY[1.2]<0.100> BINARY.PEEK[] BINARY.SIZE[1])"));
  REQUIRE(bin.sections.size() == 3);
  CHECK(bin.sections[0].item == BodySection::Item::Binary);
  CHECK(bin.sections[0].section.part == std::vector<uint32_t>{1, 2});
  CHECK(*bin.sections[0].partial == Partial{0, 100});
  CHECK(bin.sections[1].peek);
  CHECK(bin.sections[2].item == BodySection::Item::BinarySize);

  auto old = args<FetchArgs>(parse_one("a FETCH 1:* (RFC822 RFC822.HEADER RFC822.TEXT RFC822.SIZE ENVELOPE BODYSTRUCTURE BODY INTERNALDATE UID MODSEQ)"));
  REQUIRE(old.sections.size() == 3);
  CHECK(old.sections[0].item == BodySection::Item::Rfc822);
  CHECK_FALSE(old.sections[0].peek);
  CHECK(old.sections[1].item == BodySection::Item::Rfc822Header);
  CHECK(old.sections[1].peek);
  CHECK(old.sections[1].section.text == Section::Text::Header);
  CHECK(old.sections[2].section.text == Section::Text::Text);
  CHECK((old.size && old.envelope && old.bodystructure && old.body && old.internal_date && old.uid && old.modseq));
  CHECK(old.set.star);
  CHECK(old.set.ranges.empty());
  CHECK(old.set.star_lo == 1);

  auto uid = parse_one("A999 UID FETCH 4827313:4828442 FLAGS");
  CHECK(uid.uid);
  CHECK(args<FetchArgs>(uid).uid);  // UID FETCH always answers UID
  CHECK(args<FetchArgs>(uid).flags);

  auto chg = args<FetchArgs>(parse_one("s100 UID FETCH 1:* (FLAGS) (CHANGEDSINCE 12345)"));
  CHECK(*chg.changed_since == 12345);
  CHECK(chg.modseq);
  CHECK_FALSE(chg.vanished);
  auto van = args<FetchArgs>(parse_one("s101 UID FETCH 300:500 (FLAGS) (CHANGEDSINCE 12345 VANISHED)"));
  CHECK(van.vanished);
  CHECK(args<FetchArgs>(parse_one("a FETCH $ (UID INTERNALDATE FLAGS RFC822.SIZE)")).set.saved);

  CHECK(refusal("a FETCH 1:3 (FLAGS) (VANISHED)").text == "FETCH: VANISHED needs UID FETCH with CHANGEDSINCE");
  CHECK(refusal("a FETCH 1 (FLAGS) (CHANGEDSINCE 1 VANISHED)").tag == "a");
  CHECK(refusal("a FETCH 1 (FLAGS) (FOO)").text == "FETCH: unknown FETCH modifier");
  CHECK(refusal("a FETCH 1 (ALL)").text == "FETCH: unknown FETCH item");  // macros stand alone
  CHECK(refusal("a FETCH 1 BODY[MIME]").text == "FETCH: unknown section");
  CHECK(refusal("a FETCH 1 BINARY[HEADER]").text == "FETCH: BINARY takes part numbers only");
  CHECK(refusal("a FETCH 1 BINARY[1.TEXT]").text == "FETCH: BINARY takes part numbers only");
  CHECK(refusal("a FETCH 1 BINARY.SIZE[1]<0.5>").tag == "a");
  CHECK(refusal("a FETCH 1 BODY[]<0.0>").text == "FETCH: a partial length must not be 0");
  CHECK(refusal("a FETCH 1 BODY[0]").text == "FETCH: a part number must not be 0");
  CHECK(refusal("a FETCH 0 FLAGS").text == "FETCH: a sequence number or UID must not be 0");
  CHECK(refusal("a FETCH 4294967296 FLAGS").text == "FETCH: a sequence number or UID out of range");
  CHECK(refusal("a FETCH 1 BODY[HEADER.FIELDS ()]").tag == "a");
  CHECK(refusal("a FETCH 1 BODY[HEADER.FIELDS (a:b)]").text == "FETCH: not a header field name");
  CHECK(refusal("a FETCH 1").text == "FETCH: missing arguments");
  CHECK(refusal("a FETCH 1 ()").text == "FETCH: expected a FETCH item");
}

TEST_CASE("STORE with +/-FLAGS[.SILENT] and UNCHANGEDSINCE (RFC 9051 §6.4.6, RFC 7162 §3.1.3)") {
  auto s = args<StoreArgs>(parse_one("A003 STORE 2:4 +FLAGS (\\Deleted)"));
  CHECK(s.mode == StoreArgs::Mode::Add);
  CHECK_FALSE(s.silent);
  CHECK(s.flags == std::vector<std::string>{"\\Deleted"});
  auto r = args<StoreArgs>(parse_one("a STORE 1 -FLAGS.SILENT \\Seen $Junk"));
  CHECK(r.mode == StoreArgs::Mode::Remove);
  CHECK(r.silent);
  CHECK(r.flags == std::vector<std::string>{"\\Seen", "$Junk"});
  auto p = args<StoreArgs>(parse_one("a STORE 1 flags ()"));
  CHECK(p.mode == StoreArgs::Mode::Replace);
  CHECK(p.flags.empty());
  auto u = args<StoreArgs>(parse_one("d105 STORE 7,5,9 (UNCHANGEDSINCE 320162338) +FLAGS.SILENT (\\Deleted)"));
  CHECK(*u.unchanged_since == 320162338);
  CHECK(u.set == set_of({{5, 5}, {7, 7}, {9, 9}}));
  CHECK(*args<StoreArgs>(parse_one("a UID STORE 1 (UNCHANGEDSINCE 0) FLAGS ()")).unchanged_since == 0);
  CHECK(refusal("a STORE 1 FLAGS").text == "STORE: missing arguments");
  CHECK(refusal("a STORE 1 *FLAGS (\\Seen)").tag == "a");
  CHECK(refusal("a STORE 1 FLAGS.LOUD (\\Seen)").text == "STORE: expected FLAGS, +FLAGS or -FLAGS");
  CHECK(refusal("a STORE 1 FLAGS (\\*)").text == "STORE: expected a flag, found '*'");
  CHECK(refusal("a STORE 1 (FOO 1) FLAGS ()").text == "STORE: unknown STORE modifier");
}

TEST_CASE("COPY, MOVE and UID EXPUNGE (RFC 9051 §6.4.7-9, RFC 6851, RFC 4315)") {
  auto c = parse_one("A003 COPY 2:4 MEETING");
  CHECK(args<CopyArgs>(c).set == set_of({{2, 4}}));
  CHECK(args<CopyArgs>(c).mailbox == "MEETING");
  auto m = parse_one("a UID MOVE 42:69 foo");
  CHECK(m.verb == Verb::Move);
  CHECK(m.uid);
  auto e = parse_one("A003 UID EXPUNGE 3000:3002");
  CHECK(e.uid);
  CHECK(*args<ExpungeArgs>(e).uids == set_of({{3000, 3002}}));
  CHECK(refusal("a UID EXPUNGE").text == "EXPUNGE: missing arguments");
  CHECK(refusal("a COPY 1").text == "COPY: missing arguments");
}

TEST_CASE("QUOTA (RFC 9208) and ID (RFC 2971)") {
  CHECK(args<QuotaRootArgs>(parse_one("G0001 GETQUOTA \"!partition/sda4\"")).root == "!partition/sda4");
  CHECK(args<MailboxArgs>(parse_one("A003 GETQUOTAROOT INBOX")).mailbox == "INBOX");
  auto sq = args<SetQuotaArgs>(parse_one("S0000 SETQUOTA \"#user/alice\" (STORAGE 510 MESSAGE 10)"));
  CHECK(sq.root == "#user/alice");
  CHECK(sq.limits == std::vector<std::pair<std::string, uint64_t>>{{"STORAGE", 510}, {"MESSAGE", 10}});
  CHECK(args<SetQuotaArgs>(parse_one("a SETQUOTA \"\" ()")).limits.empty());

  auto id = args<IdArgs>(parse_one("a023 ID (\"name\" \"sodr\" \"version\" \"19.34\" \"vendor\" NIL)"));
  REQUIRE(id.params.size() == 3);
  CHECK(id.params[0] == std::pair<std::string, std::optional<std::string>>{"name", "sodr"});
  CHECK_FALSE(id.params[2].second);
  CHECK(args<IdArgs>(parse_one("a ID NIL")).params.empty());
  CHECK(args<IdArgs>(parse_one("a ID ()")).params.empty());
  CHECK(refusal("a ID (\"0123456789012345678901234567890\" \"x\")").text == "ID: an ID field is longer than 30 octets");
  std::string many = "a ID (";
  for (int i = 0; i < 31; ++i) many += (i ? " \"f" : "\"f") + std::to_string(i) + "\" NIL";
  CHECK(refusal(many + ")").text == "ID: more than 30 ID fields");
  CHECK(refusal("a ID (name x)").text == "ID: expected a string");
}

TEST_CASE("sequence sets: compact form and resolution (RFC 9051 §9)") {
  auto set = [](std::string_view text) { return args<FetchArgs>(parse_one("a FETCH " + std::string(text) + " FLAGS")).set; };
  CHECK(set("1,3,2,5:4,9") == set_of({{1, 5}, {9, 9}}));  // sorted and merged; 5:4 is 4:5
  CHECK(set("4294967295").ranges == std::vector<SeqRange>{{4294967295u, 4294967295u}});
  auto s = set("1:3,*:10,7:*,*");
  CHECK(s.ranges == std::vector<SeqRange>{{1, 3}});
  CHECK(s.star);
  CHECK(s.star_lo == 7);
  CHECK(s.star_hi == 10);
  CHECK(resolve(s, 20) == std::vector<SeqRange>{{1, 3}, {7, 20}});
  CHECK(resolve(s, 5) == std::vector<SeqRange>{{1, 3}, {5, 10}});  // *:10 with * = 5 is 5:10
  CHECK(resolve(s, 0) == std::vector<SeqRange>{{1, 3}});
  auto star = set("*");
  CHECK(resolve(star, 9) == std::vector<SeqRange>{{9, 9}});
  CHECK(star.max_number() == 0);
  CHECK(set("2:6,100").max_number() == 100);
  CHECK(set("$").saved);
  CHECK(refusal("a FETCH 1,,2 FLAGS").text == "FETCH: expected a sequence set");
  CHECK(refusal("a FETCH 1: FLAGS").tag == "a");
  CHECK(refusal("a FETCH $,1 FLAGS").text == "FETCH: expected a space");
}
