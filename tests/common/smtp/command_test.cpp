// command_test.cpp: SMTP/LMTP command arguments (common/smtp/command.hpp): RFC 5321 §4.1.2 paths,
// ESMTP parameters, SMTPUTF8, XID, BDAT. These parsers take one whole line's arguments (the
// line session frames the bytes, and its own tests feed those one byte at a time).
#include <catch2/catch.hpp>

#include <string>

#include "common/smtp/command.hpp"

using namespace common::smtp;

namespace {

CommandLimits all_on() {
  CommandLimits l;
  l.binarymime = l.smtputf8 = l.dsn = l.auth = l.xid = true;
  l.max_message = 10'000'000;
  return l;
}

}  // namespace

TEST_CASE("paths RFC 5321 accepts") {
  auto lim = all_on();
  struct Case {
    const char* text;
    const char* local;
    const char* domain;
    DomainKind kind;
  };
  const Case cases[] = {
      {"<user@example.com>", "user", "example.com", DomainKind::Name},
      {"<User.Name+tag@Example.COM>", "User.Name+tag", "Example.COM", DomainKind::Name},
      {"<!#$%&'*+-/=?^_`{|}~@example.com>", "!#$%&'*+-/=?^_`{|}~", "example.com", DomainKind::Name},
      {"<\"john doe\"@example.com>", "\"john doe\"", "example.com", DomainKind::Name},
      {"<\"a\\\"b\"@example.com>", "\"a\\\"b\"", "example.com", DomainKind::Name},
      {"<\"a@b\"@example.com>", "\"a@b\"", "example.com", DomainKind::Name},
      {"<a@b>", "a", "b", DomainKind::Name},
      {"<a@x-1.example>", "a", "x-1.example", DomainKind::Name},
      {"<user@[192.0.2.1]>", "user", "[192.0.2.1]", DomainKind::Ipv4},
      {"<user@[001.002.003.004]>", "user", "[001.002.003.004]", DomainKind::Ipv4},
      {"<user@[IPv6:2001:db8::1]>", "user", "[IPv6:2001:db8::1]", DomainKind::Ipv6},
      {"<user@[ipv6:::ffff:192.0.2.1]>", "user", "[ipv6:::ffff:192.0.2.1]", DomainKind::Ipv6},
      {"<user@[x-tag:some-content]>", "user", "[x-tag:some-content]", DomainKind::General},
  };
  for (auto& c : cases) {
    INFO(c.text);
    auto p = parse_path(c.text, false, false, lim);
    REQUIRE(p);
    CHECK(p->mailbox.local == c.local);
    CHECK(p->mailbox.domain == c.domain);
    CHECK(p->mailbox.kind == c.kind);
    CHECK_FALSE(p->null);
    CHECK_FALSE(p->source_route);
  }
  auto q = parse_path("<\"a\\\"b c\"@example.com>", false, false, lim);
  REQUIRE(q);
  CHECK(q->mailbox.quoted);
  CHECK(q->mailbox.local_value() == "a\"b c");
  CHECK(q->mailbox.address() == "\"a\\\"b c\"@example.com");
}

TEST_CASE("paths: null, postmaster, source routes") {
  auto lim = all_on();
  auto n = parse_path("<>", true, false, lim);
  REQUIRE(n);
  CHECK(n->null);
  auto rn = parse_path("<>", false, false, lim);
  REQUIRE_FALSE(rn);
  CHECK(rn.error().code == 501);
  CHECK(rn.error().enhanced == EnhancedCode{5, 1, 3});

  // RFC 5321 §4.1.1.3: <Postmaster> with no domain is a valid recipient (any case), not a sender.
  auto pm = parse_path("<PostMaster>", false, false, lim);
  REQUIRE(pm);
  CHECK(pm->postmaster);
  CHECK(pm->mailbox.domain.empty());
  CHECK_FALSE(parse_path("<Postmaster>", true, false, lim));
  CHECK_FALSE(parse_path("<\"Postmaster\">", false, false, lim));

  // RFC 5321 Appendix C: the route is accepted and ignored; the mailbox is the last part.
  auto sr = parse_path("<@a.example,@b.example:user@c.example>", false, false, lim);
  REQUIRE(sr);
  CHECK(sr->source_route);
  CHECK(sr->mailbox.address() == "user@c.example");
  // The example of RFC 5321 §3.6.1 and Appendix C.
  auto rfc = parse_path("<@hosta.int,@jkl.org:userc@d.bar.org>", false, false, lim);
  REQUIRE(rfc);
  CHECK(rfc->mailbox.address() == "userc@d.bar.org");
  auto sr1 = parse_path("<@a.example:user@c.example>", true, false, lim);
  REQUIRE(sr1);
  CHECK(sr1->source_route);
}

TEST_CASE("paths RFC 5321 refuses") {
  auto lim = all_on();
  const std::string local65(65, 'a');
  const std::string label64(64, 'b');
  std::string long_domain;
  while (long_domain.size() < 256) long_domain += "abcdefghi.";
  long_domain += "com";
  std::string long_path = "<" + std::string(60, 'u') + "@";
  while (long_path.size() < 258) long_path += "abcdefg.";
  long_path += "com>";
  const std::string bad[] = {
      "user@example.com",
      "<user@example.com",
      "user@example.com>",
      "<user>",
      "<@example.com>",
      "<user@>",
      "<.user@example.com>",
      "<user.@example.com>",
      "<us..er@example.com>",
      "<us er@example.com>",
      "<us(er@example.com>",
      "<user@exa mple.com>",
      "<user@-example.com>",
      "<user@example-.com>",
      "<user@example..com>",
      "<user@example.com.>",
      "<user@.example.com>",
      "<user@exa_mple.com>",
      "<user@[300.1.1.1]>",
      "<user@[1.2.3]>",
      "<user@[1.2.3.4.5]>",
      "<user@[1.2.3.4]x>",
      "<user@[IPv6:zz::1]>",
      "<user@[IPv6:fe80::1%eth0]>",
      "<user@[IPv6:1:2:3:4:5:6:7:8:9]>",
      "<user@[:content]>",
      "<user@[tag:]>",
      "<user@[tag:a[b]>",
      "<user@[]>",
      "<\"unterminated@example.com>",
      "<\"a\"b@example.com>",
      "<\"tab\there\"@example.com>",
      "<user@example.com@example.org>",
      "<@a.example>",
      "<@a.example:>",
      "<@a.example,:user@c.example>",
      "<@a_b.example:user@c.example>",
      "<a.example:user@c.example>",
      std::string("<user\0@example.com>", 19),
      "<user\r\n@example.com>",
      "<" + local65 + "@example.com>",
      "<user@" + label64 + ".com>",
      "<u@" + long_domain + ">",
      long_path,
  };
  for (auto& b : bad) {
    INFO(b);
    auto p = parse_path(b, true, false, lim);
    REQUIRE_FALSE(p);
    CHECK(p.error().code == 501);
    CHECK(p.error().enhanced == EnhancedCode{5, 1, 7});
    CHECK(p.error().text.find('\n') == std::string::npos);
  }
  // The exact limits themselves pass: 64-octet local part, 63-octet label.
  CHECK(parse_path("<" + std::string(64, 'a') + "@example.com>", true, false, lim));
  CHECK(parse_path("<user@" + std::string(63, 'b') + ".com>", true, false, lim));
}

TEST_CASE("MAIL FROM with parameters") {
  auto lim = all_on();
  auto m = parse_mail("FROM:<a@example.com> SIZE=1000 BODY=8BITMIME", lim);
  REQUIRE(m);
  CHECK(m->path.mailbox.address() == "a@example.com");
  CHECK(m->params.size == 1000u);
  CHECK(m->params.body == Body::EightBitMime);
  CHECK_FALSE(m->params.smtputf8);

  // Keywords case-insensitive, blanks around tolerated, a space after the colon accepted.
  auto m2 = parse_mail("  from: <> size=0 body=7bit  ", lim);
  REQUIRE(m2);
  CHECK(m2->path.null);
  CHECK(m2->params.size == 0u);
  CHECK(m2->params.body == Body::SevenBit);

  auto dsn = parse_mail("FROM:<a@b> RET=HDRS ENVID=QQ314159+2Bx AUTH=user+2Bx@example.com BODY=BINARYMIME", lim);
  REQUIRE(dsn);
  CHECK(dsn->params.ret == Ret::Hdrs);
  CHECK(dsn->params.envid == "QQ314159+x");
  CHECK(dsn->params.auth == "user+x@example.com");
  CHECK(dsn->params.body == Body::BinaryMime);
  auto anon = parse_mail("FROM:<a@b> AUTH=<>", lim);
  REQUIRE(anon);
  CHECK(anon->params.auth == "<>");

  // A '>' inside a quoted local part does not end the path.
  auto q = parse_mail("FROM:<\"a> b\"@example.com> SIZE=5", lim);
  REQUIRE(q);
  CHECK(q->path.mailbox.local == "\"a> b\"");
  CHECK(q->params.size == 5u);
}

TEST_CASE("MAIL FROM refusals") {
  auto lim = all_on();
  struct Case {
    const char* args;
    int code;
    EnhancedCode enh;
  };
  const Case cases[] = {
      {"", 501, {5, 5, 2}},
      {"TO:<a@b>", 501, {5, 5, 2}},
      {"FROM <a@b>", 501, {5, 5, 2}},
      {"FROM:a@b", 501, {5, 1, 7}},
      {"FROM:<a@b", 501, {5, 1, 7}},
      {"FROM:<a@b>SIZE=1", 501, {5, 1, 7}},
      {"FROM:<a@b> FOO=bar", 555, {5, 5, 4}},
      {"FROM:<a@b> X-UNKNOWN", 555, {5, 5, 4}},
      {"FROM:<a@b> SIZE=1 SIZE=2", 501, {5, 5, 4}},
      {"FROM:<a@b> SIZE=1 size=2", 501, {5, 5, 4}},
      {"FROM:<a@b> SIZE=", 501, {5, 5, 4}},
      {"FROM:<a@b> SIZE", 501, {5, 5, 4}},
      {"FROM:<a@b> SIZE=12x", 501, {5, 5, 4}},
      {"FROM:<a@b> SIZE=-1", 501, {5, 5, 4}},
      {"FROM:<a@b> SIZE=10000001", 552, {5, 3, 4}},
      {"FROM:<a@b> SIZE=99999999999999999999", 552, {5, 3, 4}},
      {"FROM:<a@b> SIZE=999999999999999999999", 501, {5, 5, 4}},
      {"FROM:<a@b> BODY=9BIT", 501, {5, 5, 4}},
      {"FROM:<a@b> RET=ALL", 501, {5, 5, 4}},
      {"FROM:<a@b> ENVID=a+zz", 501, {5, 5, 4}},
      {"FROM:<a@b> =x", 501, {5, 5, 4}},
      {"FROM:<a@b> -K=x", 501, {5, 5, 4}},
      {"FROM:<a@b> K_Y=x", 501, {5, 5, 4}},
      {"FROM:<a@b> SMTPUTF8=yes", 501, {5, 5, 4}},
      {"FROM:<a@b> A=1 B=2 C=3 D=4 E=5 F=6 G=7 H=8 I=9 J=10 K=11", 501, {5, 5, 4}},
  };
  for (auto& c : cases) {
    INFO(c.args);
    auto m = parse_mail(c.args, lim);
    REQUIRE_FALSE(m);
    CHECK(m.error().code == c.code);
    CHECK(m.error().enhanced == c.enh);
    CHECK(*m.error().reason != '\0');
  }
  // A parameter of an extension we did not announce is refused like an unknown one.
  CommandLimits plain;
  for (const char* args : {"FROM:<a@b> BODY=BINARYMIME", "FROM:<a@b> SMTPUTF8", "FROM:<a@b> RET=FULL",
                           "FROM:<a@b> ENVID=x", "FROM:<a@b> AUTH=<>", "FROM:<a@b> XID=abc"}) {
    INFO(args);
    auto m = parse_mail(args, plain);
    REQUIRE_FALSE(m);
    CHECK(m.error().code == 555);
  }
  plain.size = false;
  CHECK(parse_mail("FROM:<a@b> SIZE=1", plain).error().code == 555);
  // Without a maximum, any SIZE that fits is accepted.
  CommandLimits unlimited;
  CHECK(parse_mail("FROM:<a@b> SIZE=99999999999999999999", unlimited).error().code == 501);
  CHECK(parse_mail("FROM:<a@b> SIZE=9999999999999999999", unlimited)->params.size == 9999999999999999999ull);
}

TEST_CASE("RCPT TO with DSN parameters") {
  auto lim = all_on();
  auto r = parse_rcpt("TO:<b@example.com> NOTIFY=SUCCESS,failure ORCPT=rfc822;b+2Bx@example.com", false, lim);
  REQUIRE(r);
  CHECK(r->path.mailbox.address() == "b@example.com");
  CHECK(r->params.notify == (kNotifySuccess | kNotifyFailure));
  CHECK(r->params.orcpt_type == "rfc822");
  CHECK(r->params.orcpt == "b+x@example.com");
  CHECK(parse_rcpt("TO:<b@c> NOTIFY=NEVER", false, lim)->params.notify == kNotifyNever);
  CHECK(parse_rcpt("to:<Postmaster>", false, lim)->path.postmaster);
  for (const char* bad : {"TO:<b@c> NOTIFY=NEVER,DELAY", "TO:<b@c> NOTIFY=", "TO:<b@c> NOTIFY=SOMETIMES",
                          "TO:<b@c> NOTIFY=DELAY,DELAY", "TO:<b@c> NOTIFY=SUCCESS,", "TO:<b@c> ORCPT=rfc822",
                          "TO:<b@c> ORCPT=;x", "TO:<b@c> ORCPT=rfc822;", "TO:<b@c> ORCPT=rfc822;a+4", "TO:<>",
                          "FROM:<b@c>", "TO:<b@c> SIZE=10"}) {
    INFO(bad);
    auto e = parse_rcpt(bad, false, lim);
    REQUIRE_FALSE(e);
    CHECK((e.error().code == 501 || e.error().code == 555));
  }
  CHECK(parse_rcpt("TO:<b@c> SIZE=10", false, lim).error().code == 555);
  CommandLimits plain;
  CHECK(parse_rcpt("TO:<b@c> NOTIFY=NEVER", false, plain).error().code == 555);
}

TEST_CASE("SMTPUTF8: UTF-8 addresses only with SMTPUTF8 on MAIL") {
  auto lim = all_on();
  // RFC 6531 §3.5: 553 5.6.7 for a non-ASCII address without SMTPUTF8.
  auto no = parse_mail("FROM:<pel\xc3\xa9@example.com>", lim);
  REQUIRE_FALSE(no);
  CHECK(no.error().code == 553);
  CHECK(no.error().enhanced == EnhancedCode{5, 6, 7});
  auto yes = parse_mail("FROM:<pel\xc3\xa9@ex\xc3\xa4mple.com> SMTPUTF8", lim);
  REQUIRE(yes);
  CHECK(yes->params.smtputf8);
  CHECK(yes->path.mailbox.utf8);
  CHECK(yes->path.mailbox.domain == "ex\xc3\xa4mple.com");
  auto q = parse_mail("FROM:<\"\xe5\x90\x8d \xe5\xad\x97\"@example.com> smtputf8", lim);
  REQUIRE(q);
  CHECK(q->path.mailbox.quoted);

  CHECK(parse_rcpt("TO:<\xe7\x94\xa8\xe6\x88\xb7@example.com>", true, lim));
  CHECK(parse_rcpt("TO:<\xe7\x94\xa8\xe6\x88\xb7@example.com>", false, lim).error().code == 553);
  CHECK(parse_rcpt("TO:<a@b> ORCPT=utf-8;\xe7\x94\xa8@b", true, lim)->params.orcpt == "\xe7\x94\xa8@b");
  CHECK(parse_rcpt("TO:<a@b> ORCPT=utf-8;\xe7\x94\xa8@b", false, lim).error().code == 553);

  // Malformed UTF-8 is a syntax error even with SMTPUTF8.
  for (const char* bad : {"FROM:<a\xc3\x28@b> SMTPUTF8", "FROM:<a\xc0\xaf@b> SMTPUTF8", "FROM:<a\xed\xa0\x80@b> SMTPUTF8",
                          "FROM:<a\xf4\x90\x80\x80@b> SMTPUTF8", "FROM:<a\xc3@b> SMTPUTF8", "FROM:<a\x80@b> SMTPUTF8",
                          "FROM:<a@b> SMTPUTF8 ENVID=\xc3"}) {
    INFO(bad);
    auto e = parse_mail(bad, lim);
    REQUIRE_FALSE(e);
    CHECK(e.error().code == 501);
  }
  // Announced SMTPUTF8 is required to use it.
  CommandLimits plain;
  CHECK(parse_mail("FROM:<a@b> SMTPUTF8", plain).error().code == 555);

  CHECK(valid_utf8("plain"));
  CHECK(valid_utf8("\xf0\x9f\x93\xa7"));
  CHECK(valid_utf8("\xe2\x82\xac"));
  CHECK_FALSE(valid_utf8("\xe2\x82"));
  CHECK_FALSE(valid_utf8("\xf0\x82\x82\xac"));  // overlong
  CHECK_FALSE(valid_utf8("\xff"));
}

TEST_CASE("XID: the delivery id parameter") {
  auto lim = all_on();
  auto m = parse_mail("FROM:<a@b> XID=mta1.q:0001_a-B", lim);
  REQUIRE(m);
  CHECK(m->params.xid == "mta1.q:0001_a-B");
  CHECK(parse_mail("FROM:<a@b> xid=" + std::string(64, 'x'), lim));
  for (std::string bad : {std::string("XID=") + std::string(65, 'x'), std::string("XID=a/b"), std::string("XID=a+2B"),
                          std::string("XID="), std::string("XID"), std::string("XID=a XID=b")}) {
    INFO(bad);
    auto e = parse_mail("FROM:<a@b> " + bad, lim);
    REQUIRE_FALSE(e);
    CHECK(e.error().code == 501);
  }
  CHECK(valid_xid("a"));
  CHECK_FALSE(valid_xid(""));
  CHECK_FALSE(valid_xid("a b"));
}

TEST_CASE("BDAT arguments") {
  CommandLimits lim;
  lim.max_chunk = 1000;
  auto b = parse_bdat("100", lim);
  REQUIRE(b);
  CHECK(b->size == 100u);
  CHECK_FALSE(b->last);
  auto l = parse_bdat("  0  last ", lim);
  REQUIRE(l);
  CHECK(l->size == 0u);
  CHECK(l->last);
  CHECK(parse_bdat("1000 LAST", lim)->size == 1000u);
  for (const char* bad : {"", "abc", "100 LASTX", "100LAST", "-1", "+5", "100 LAST x", "1 2", "123456789012345678901"}) {
    INFO(bad);
    auto e = parse_bdat(bad, lim);
    REQUIRE_FALSE(e);
    CHECK(e.error().code == 501);
    CHECK(e.error().close);
  }
  // Over the chunk bound (or past 64 bits): we will not read it, so the reply ends the session.
  for (const char* big : {"1001", "99999999999999999999", "18446744073709551615 LAST"}) {
    INFO(big);
    auto e = parse_bdat(big, lim);
    REQUIRE_FALSE(e);
    CHECK(e.error().code == 552);
    CHECK(e.error().enhanced == EnhancedCode{5, 3, 4});
    CHECK(e.error().close);
  }
}

TEST_CASE("HELO, EHLO and LHLO names") {
  CommandLimits lim;
  auto e = parse_helo(" mx.example.com ", true, lim);
  REQUIRE(e);
  CHECK(e->name == "mx.example.com");
  CHECK(e->kind == DomainKind::Name);
  CHECK(parse_helo("[192.0.2.1]", true, lim)->kind == DomainKind::Ipv4);
  CHECK(parse_helo("[IPv6:::1]", true, lim)->kind == DomainKind::Ipv6);
  CHECK_FALSE(parse_helo("[192.0.2.1]", false, lim));  // HELO takes a Domain only (RFC 5321 §4.1.1.1)
  for (const char* bad : {"", "  ", "my_host", "a b", "bad..name", "-x.example", "[1.2.3.999]", "x\x01y", "h\xc3\xa9"}) {
    INFO(bad);
    auto r = parse_helo(bad, true, lim);
    REQUIRE_FALSE(r);
    CHECK(r.error().code == 501);
  }
  lim.strict_helo = false;
  CHECK(parse_helo("my_host", true, lim)->kind == DomainKind::Other);
  CHECK(parse_helo("[1.2.3.999]", true, lim)->kind == DomainKind::Other);
  CHECK_FALSE(parse_helo("a b", true, lim));
  CHECK_FALSE(parse_helo("x\x01y", true, lim));
  CHECK_FALSE(parse_helo("", true, lim));
  CHECK_FALSE(parse_helo(std::string(300, 'a'), true, lim));
}

TEST_CASE("commands without arguments and with string arguments") {
  CHECK(parse_no_args(""));
  CHECK(parse_no_args("  "));
  auto e = parse_no_args(" now");
  REQUIRE_FALSE(e);
  CHECK(e.error().code == 501);
  CHECK(e.error().enhanced == EnhancedCode{5, 5, 4});
  CHECK(parse_string_arg("", false).value().empty());
  CHECK(parse_string_arg(" hello there ", false).value() == "hello there");
  CHECK_FALSE(parse_string_arg("", true));
  CHECK(parse_string_arg("postmaster", true).value() == "postmaster");
  CHECK_FALSE(parse_string_arg("a\x01", false));
  CHECK_FALSE(parse_string_arg("\xc3\xa9", true));
  CHECK(parse_string_arg("\xc3\xa9", true, true));
  CHECK_FALSE(parse_string_arg("\xc3", true, true));
}

TEST_CASE("xtext") {
  CHECK(xtext_decode("a+2Bb+3Dc") == "a+b=c");
  CHECK(xtext_decode("") == "");
  CHECK_FALSE(xtext_decode("+2b"));  // hex digits are upper case (RFC 3461 §4)
  CHECK_FALSE(xtext_decode("+2"));
  CHECK_FALSE(xtext_decode("a=b"));
  CHECK_FALSE(xtext_decode("a b"));
  const std::string raw("a+b=c \x01\xff~\0", 10);
  CHECK(xtext_encode(raw) == "a+2Bb+3Dc+20+01+FF~+00");
  CHECK(xtext_decode(xtext_encode(raw)) == raw);
}

TEST_CASE("client side: formatted commands parse back the same") {
  auto lim = all_on();
  const char* mails[] = {"FROM:<> SIZE=0", "FROM:<a@b> SIZE=1000 BODY=8BITMIME XID=q:1",
                         "FROM:<\"x y\"@[IPv6:::1]> RET=FULL ENVID=a+2Bb+3D AUTH=u+2B1@example.com BODY=BINARYMIME",
                         "FROM:<pel\xc3\xa9@b> SMTPUTF8 AUTH=<> BODY=7BIT", "FROM:<@r.example:a@b>"};
  for (const char* m : mails) {
    INFO(m);
    auto a = parse_mail(m, lim);
    REQUIRE(a);
    std::string line = format_mail(*a);
    REQUIRE(line.substr(0, 5) == "MAIL ");
    REQUIRE(line.substr(line.size() - 2) == "\r\n");
    auto b = parse_mail(std::string_view(line).substr(5, line.size() - 7), lim);
    REQUIRE(b);
    CHECK(b->path.mailbox.address() == a->path.mailbox.address());
    CHECK(b->path.null == a->path.null);
    CHECK(b->params.size == a->params.size);
    CHECK(b->params.body == a->params.body);
    CHECK(b->params.smtputf8 == a->params.smtputf8);
    CHECK(b->params.ret == a->params.ret);
    CHECK(b->params.envid == a->params.envid);
    CHECK(b->params.auth == a->params.auth);
    CHECK(b->params.xid == a->params.xid);
  }
  CHECK(format_mail(*parse_mail("FROM:<a@b> XID=q:1 SIZE=5", lim)) == "MAIL FROM:<a@b> SIZE=5 XID=q:1\r\n");
  const char* rcpts[] = {"TO:<Postmaster>", "TO:<b@c> NOTIFY=NEVER", "TO:<b@c> NOTIFY=DELAY,SUCCESS ORCPT=rfc822;b+2B1@c",
                         "TO:<b@c> ORCPT=utf-8;\xe7\x94\xa8@b"};
  for (const char* r : rcpts) {
    INFO(r);
    auto a = parse_rcpt(r, true, lim);
    REQUIRE(a);
    std::string line = format_rcpt(*a);
    REQUIRE(line.substr(0, 5) == "RCPT ");
    auto b = parse_rcpt(std::string_view(line).substr(5, line.size() - 7), true, lim);
    REQUIRE(b);
    CHECK(b->path.mailbox.address() == a->path.mailbox.address());
    CHECK(b->path.postmaster == a->path.postmaster);
    CHECK(b->params.notify == a->params.notify);
    CHECK(b->params.orcpt == a->params.orcpt);
    CHECK(b->params.orcpt_type == a->params.orcpt_type);
  }
  CHECK(format_rcpt(*parse_rcpt("TO:<b@c> NOTIFY=DELAY,SUCCESS", false, lim)) == "RCPT TO:<b@c> NOTIFY=SUCCESS,DELAY\r\n");
}
