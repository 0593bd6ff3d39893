// mbox_test.cpp: mboxrd as postern-storectl exports it: the From line, ">*From " quoting that a
// reader undoes exactly, line ends, and the envelope sender.
#include <catch2/catch.hpp>

#include "store/tools/mbox.hpp"

namespace {

namespace mbox = store::tools::mbox;

TEST_CASE("mbox: the From line has the sender and the date as asctime, UTC", "[storectl][mbox]") {
  CHECK(mbox::from_line("a@b.example", 1700000000) == "From a@b.example Tue Nov 14 22:13:20 2023\n");
  CHECK(mbox::from_line("MAILER-DAEMON", 0) == "From MAILER-DAEMON Thu Jan  1 00:00:00 1970\n");
}

TEST_CASE("mbox: the envelope sender comes from Return-Path", "[storectl][mbox]") {
  CHECK(mbox::envelope_sender("Delivered-To: x@y\r\nReturn-Path: <a@b.example>\r\n\r\nbody") == "a@b.example");
  CHECK(mbox::envelope_sender("return-path:   <a@b.example>  \n\n") == "a@b.example");
  CHECK(mbox::envelope_sender("Return-Path: <>\r\n\r\n") == "MAILER-DAEMON");
  CHECK(mbox::envelope_sender("Subject: x\r\n\r\nReturn-Path: <a@b>\r\n") == "MAILER-DAEMON");  // in the body
  CHECK(mbox::envelope_sender("Return-Path: <a b@c>\r\n\r\n") == "MAILER-DAEMON");
  CHECK(mbox::envelope_sender("") == "MAILER-DAEMON");
}

TEST_CASE("mbox: From-like lines are quoted with one more '>', and read back exactly", "[storectl][mbox]") {
  const std::string message =
      "Subject: quoting\r\n\r\nFrom the start\r\n>From once\r\n>>From twice\r\nFromage\r\n> From not\r\n"
      "From\r\nlast line\r\n";
  const std::string text = mbox::format_message(message, "a@b", 1700000000);
  CHECK(text ==
        "From a@b Tue Nov 14 22:13:20 2023\n"
        "Subject: quoting\n\n>From the start\n>>From once\n>>>From twice\nFromage\n> From not\nFrom\nlast line\n\n");
  auto back = mbox::parse(text + mbox::format_message("Subject: 2\r\n\r\nFrom x\r\n", "MAILER-DAEMON", 0));
  REQUIRE(back.size() == 2);
  CHECK(back[0].from_line == "From a@b Tue Nov 14 22:13:20 2023");
  CHECK(back[0].bytes ==
        "Subject: quoting\n\nFrom the start\n>From once\n>>From twice\nFromage\n> From not\nFrom\nlast line\n");
  CHECK(back[1].bytes == "Subject: 2\n\nFrom x\n");
}

TEST_CASE("mbox: CRLF kept on request, a missing last line end added", "[storectl][mbox]") {
  CHECK(mbox::format_message("A: b\r\n\r\nFrom x\r\n", "s", 0, true) ==
        "From s Thu Jan  1 00:00:00 1970\nA: b\r\n\r\n>From x\r\n\n");
  CHECK(mbox::format_message("A: b\n\nno end", "s", 0) == "From s Thu Jan  1 00:00:00 1970\nA: b\n\nno end\n\n");
  auto back = mbox::parse(mbox::format_message("A: b\r\n\r\n>From x\r\n", "s", 0, true));
  REQUIRE(back.size() == 1);
  CHECK(back[0].bytes == "A: b\r\n\r\n>From x\r\n");
}

TEST_CASE("mbox: messages ending in empty lines and empty messages survive", "[storectl][mbox]") {
  const std::string text = mbox::format_message("a\n\n", "s", 0) + mbox::format_message("", "s", 0) +
                           mbox::format_message("b\n", "s", 0);
  auto back = mbox::parse(text);
  REQUIRE(back.size() == 3);
  CHECK(back[0].bytes == "a\n\n");
  CHECK(back[1].bytes == "");
  CHECK(back[2].bytes == "b\n");
  CHECK(mbox::parse("no From line here\n").empty());
}

}  // namespace
