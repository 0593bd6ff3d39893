// dsn_test.cpp: the RFC 3464 builder: the multipart/report structure and per-recipient fields, read
// back independently by python3's email package; RET, ORCPT, ENVID, header injection from replies.
#include <catch2/catch.hpp>

#include <map>
#include <sstream>

#include "mta/queue/dsn.hpp"
#include "tests/support/process.hpp"

using namespace mta::queue;

namespace {

constexpr UnixMs kNow = 1'700'000'000'000;
const std::string kOriginal =
    "Received: from c.example.org by mx.test.example\r\nSubject: hello\r\nFrom: <a@example.org>\r\n\r\nbody line\r\n";

Envelope envelope(Ret ret = Ret::Unspecified) {
  Envelope e;
  e.reverse_path = "alice@example.org";
  e.envid = "QQ314159";
  e.ret = ret;
  e.arrival = kNow - 3600'000;
  return e;
}

DsnRecipient failed(std::string address, std::string reply) {
  DsnRecipient r;
  r.address = std::move(address);
  r.action = DsnAction::Failed;
  r.status = "5.1.1";
  r.code = 550;
  r.reply = std::move(reply);
  r.remote_mta = "mx.remote.example";
  r.last_attempt = kNow - 1000;
  return r;
}

DsnOptions options() {
  DsnOptions o;
  o.reporting_mta = "mx.test.example";
  o.queue_id = "0123456789ABCD";
  o.dsn_id = "0123456789ABCE";
  o.now = kNow;
  return o;
}

std::map<std::string, std::string> parse(const std::string& dsn) {
  test::TempDir tmp;
  const auto file = tmp.write("dsn.eml", dsn);
  auto r = test::run({"python3", test::source_path("tests/mta/queue/parse_dsn.py"), file.string()});
  INFO(r.output);
  REQUIRE(r.exit_code == 0);
  std::map<std::string, std::string> out;
  std::istringstream in(r.output);
  for (std::string line; std::getline(in, line);) {
    const auto eq = line.find('=');
    if (eq != std::string::npos) out[line.substr(0, eq)] = line.substr(eq + 1);
  }
  return out;
}

}  // namespace

TEST_CASE("a failure DSN is a multipart/report the email package reads field by field", "[dsn]") {
  auto r1 = failed("bob@example.net", "5.1.1 <bob@example.net>: user unknown");
  r1.orcpt_type = "rfc822";
  r1.orcpt = "bob@old.example.net";
  auto r2 = failed("carol@example.net", "mailbox disabled");
  r2.status = "5.2.1";
  r2.remote_mta = "";
  const DsnRecipient rs[] = {r1, r2};
  const std::string dsn = make_dsn(envelope(), rs, options(), kOriginal);
  INFO(dsn);
  auto f = parse(dsn);
  CHECK(f["defects"] == "0");
  CHECK(f["content_type"] == "multipart/report");
  CHECK(f["report_type"] == "delivery-status");
  CHECK(f["to"] == "<alice@example.org>");
  CHECK(f["from"] == "Mail Delivery System <MAILER-DAEMON@mx.test.example>");
  CHECK(f["auto_submitted"] == "auto-replied");
  CHECK(f["parts"] == "3");
  CHECK(f["part0"] == "text/plain");
  CHECK(f["part1"] == "message/delivery-status");
  CHECK(f["part2"] == "message/rfc822");
  CHECK(f["groups"] == "3");
  CHECK(f["msg.Reporting-MTA"] == "dns; mx.test.example");
  CHECK(f["msg.Original-Envelope-Id"] == "QQ314159");
  CHECK(f["msg.Arrival-Date"] == rfc5322_date(kNow - 3600'000));
  CHECK(f["rcpt0.Original-Recipient"] == "rfc822; bob@old.example.net");
  CHECK(f["rcpt0.Final-Recipient"] == "rfc822; bob@example.net");
  CHECK(f["rcpt0.Action"] == "failed");
  CHECK(f["rcpt0.Status"] == "5.1.1");
  CHECK(f["rcpt0.Remote-MTA"] == "dns; mx.remote.example");
  CHECK(f["rcpt0.Diagnostic-Code"] == "smtp; 550 5.1.1 <bob@example.net>: user unknown");
  CHECK(f["rcpt0.Last-Attempt-Date"] == rfc5322_date(kNow - 1000));
  CHECK(f.count("rcpt1.Original-Recipient") == 0);
  CHECK(f["rcpt1.Final-Recipient"] == "rfc822; carol@example.net");
  CHECK(f["rcpt1.Status"] == "5.2.1");
  CHECK(f.count("rcpt1.Remote-MTA") == 0);
  // RET not given: a failure returns the whole message.
  CHECK(f["inner_subject"] == "hello");
  CHECK(f["inner_body"] == "body line");
}

TEST_CASE("RET=HDRS, a delay DSN and an oversized original return headers only", "[dsn]") {
  const DsnRecipient rs[] = {failed("bob@example.net", "no")};
  auto hdrs = parse(make_dsn(envelope(Ret::Hdrs), rs, options(), kOriginal));
  CHECK(hdrs["part2"] == "text/rfc822-headers");
  CHECK(hdrs["headers_has_subject"] == "True");
  CHECK(hdrs["headers_has_body"] == "False");

  DsnRecipient delayed = failed("bob@example.net", "451 later");
  delayed.action = DsnAction::Delayed;
  delayed.status = "4.4.1";
  delayed.will_retry_until = kNow + 86400'000;
  const DsnRecipient ds[] = {delayed};
  auto d = parse(make_dsn(envelope(Ret::Full), ds, options(), kOriginal));
  CHECK(d["part2"] == "text/rfc822-headers");
  CHECK(d["rcpt0.Action"] == "delayed");
  CHECK(d["rcpt0.Status"] == "4.4.1");
  CHECK(d["rcpt0.Will-Retry-Until"] == rfc5322_date(kNow + 86400'000));

  DsnOptions small = options();
  small.max_return = 40;
  auto big = parse(make_dsn(envelope(Ret::Full), rs, small, kOriginal));
  CHECK(big["part2"] == "text/rfc822-headers");
}

TEST_CASE("a status of the wrong class is replaced, reply text cannot inject fields", "[dsn]") {
  DsnRecipient r = failed("bob@example.net", "bad\r\nAction: delivered\r\nX-Injected: yes");
  r.status = "2.0.0";  // a failure cannot carry a success code
  const DsnRecipient rs[] = {r};
  const std::string dsn = make_dsn(envelope(), rs, options(), kOriginal);
  auto f = parse(dsn);
  CHECK(f["rcpt0.Action"] == "failed");
  CHECK(f["rcpt0.Status"] == "5.0.0");
  CHECK(f.count("rcpt0.X-Injected") == 0);
  CHECK(dsn.find("\r\nX-Injected") == std::string::npos);
}

TEST_CASE("the boundary never occurs in the returned message", "[dsn]") {
  const DsnOptions o = options();
  const std::string evil = "Subject: x\r\n\r\n--=_postern_" + o.queue_id + "_" + o.dsn_id + "--\r\n";
  const DsnRecipient rs[] = {failed("bob@example.net", "no")};
  auto f = parse(make_dsn(envelope(), rs, o, evil));
  CHECK(f["parts"] == "3");
  CHECK(f["part2"] == "message/rfc822");
}

TEST_CASE("an internationalized message gets a global delivery status (RFC 6533)", "[dsn]") {
  Envelope e = envelope();
  e.smtputf8 = true;
  DsnRecipient r = failed("j\xc3\xb6rg@b\xc3\xbc" "cher.example", "no");
  const DsnRecipient rs[] = {r};
  const std::string dsn = make_dsn(e, rs, options(), kOriginal);
  CHECK(dsn.find("report-type=global-delivery-status") != std::string::npos);
  CHECK(dsn.find("Content-Type: message/global-delivery-status") != std::string::npos);
  CHECK(dsn.find("Final-Recipient: utf-8; j\xc3\xb6rg@b\xc3\xbc" "cher.example") != std::string::npos);
  CHECK(dsn.find("Content-Type: message/global\r\n") != std::string::npos);
  CHECK(dsn_body_type(e, dsn) == BodyType::EightBitMime);
  const DsnRecipient ascii[] = {failed("bob@example.net", "no")};
  CHECK(dsn_body_type(envelope(), make_dsn(envelope(), ascii, options(), kOriginal)) == BodyType::SevenBit);
}
