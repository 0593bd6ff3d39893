// dispatcher_test.cpp: the pure command dispatcher with a toy SMTP-like and an IMAP-like table:
// verb lookup, refusals as values, states, flags, the error and junk limits; lines also arrive
// through the framer one byte at a time and must dispatch the same.
#include <catch2/catch.hpp>

#include <string>
#include <vector>

#include "common/line/dispatcher.hpp"
#include "common/runtime/line_framer.hpp"

using namespace common::line;

namespace {

enum class St { Greeting, Ready, Mail };

constexpr Command<int> kSmtp[] = {
    {"EHLO", 1, in_states(St::Greeting, St::Ready), PreTls | LastInPipeline | NeedsArguments},
    {"MAIL", 2, in_states(St::Ready), NeedsArguments},
    {"DATA", 3, in_states(St::Mail), LastInPipeline | NoArguments},
    {"NOOP", 4, kAnyState, PreTls | CountsAsError},
    {"STARTTLS", 5, kAnyState, PreTls | LastInPipeline | NoArguments},
    {"QUIT", 6, kAnyState, PreTls | NoArguments},
};

std::string render(const Dispatch<int>& d) {
  std::string s(outcome_name(d.outcome));
  if (d.command) s += ":" + std::to_string(d.command->handler);
  s += " [" + std::string(d.line.tag) + "|" + std::string(d.line.verb) + "|" + std::string(d.line.args) + "]";
  if (d.counted) s += " +err";
  return s;
}

// Every line of `in` through the framer (whole, then byte by byte) and the dispatcher.
std::vector<std::string> run(const std::string& in, St state, bool tls_missing, size_t byte_step) {
  Dispatcher<int> d(kSmtp, DispatchOptions{false, ErrorLimits{100, 0}});
  common::runtime::LineFramer f(64);
  std::vector<std::string> out;
  for (size_t at = 0; at < in.size(); at += byte_step) {
    f.append(std::string_view(in).substr(at, byte_step));
    while (auto fr = f.next()) {
      if (auto* l = std::get_if<common::runtime::LineFrame>(&*fr)) {
        out.push_back(render(d.dispatch(l->text, state_bit(state), tls_missing)));
      } else {
        out.push_back("too_long");
      }
    }
  }
  out.push_back("errors=" + std::to_string(d.errors().count()));
  return out;
}

}  // namespace

TEST_CASE("the verb is split from its argument text, which is left as sent", "[line][dispatcher]") {
  auto l = split_command("MAIL FROM:<a@b>  SIZE=10 ", false);
  CHECK(l.verb == "MAIL");
  CHECK(l.args == "FROM:<a@b>  SIZE=10 ");
  CHECK(l.has_args);
  auto bare = split_command("QUIT", false);
  CHECK(bare.verb == "QUIT");
  CHECK(bare.args.empty());
  CHECK_FALSE(bare.has_args);
  auto trailing = split_command("NOOP ", false);
  CHECK(trailing.has_args);
  CHECK(trailing.args.empty());
  auto tagged = split_command("a1 UID FETCH 1:* (FLAGS)", true);
  CHECK(tagged.tag == "a1");
  CHECK(tagged.verb == "UID");
  CHECK(tagged.args == "FETCH 1:* (FLAGS)");
  auto tag_only = split_command("a1", true);
  CHECK(tag_only.tag == "a1");
  CHECK(tag_only.verb.empty());
}

TEST_CASE("verbs are found case-insensitively, unknown and empty lines are refusals that count", "[line][dispatcher]") {
  auto got = run("ehlo x\r\nEhLo y\r\nXYZZY 1\r\n\r\nEHLOX\r\n", St::Greeting, false, 1);
  std::vector<std::string> want{"run:1 [|ehlo|x]", "run:1 [|EhLo|y]", "unknown [|XYZZY|1] +err", "empty [||] +err",
                                "unknown [|EHLOX|] +err", "errors=3"};
  CHECK(got == want);
  CHECK(run("ehlo x\r\nEhLo y\r\nXYZZY 1\r\n\r\nEHLOX\r\n", St::Greeting, false, 1000) == want);
}

TEST_CASE("a command outside its states is WrongState, arguments are checked by flag", "[line][dispatcher]") {
  std::string in = "MAIL FROM:<>\r\nDATA\r\nEHLO\r\nQUIT now\r\nQUIT\r\nDATA \r\n";
  std::vector<std::string> want{"wrong_state:2 [|MAIL|FROM:<>] +err", "wrong_state:3 [|DATA|] +err",
                                "bad_arguments:1 [|EHLO|] +err",     "bad_arguments:6 [|QUIT|now] +err",
                                "run:6 [|QUIT|]",                     "wrong_state:3 [|DATA|] +err",
                                "errors=5"};
  CHECK(run(in, St::Greeting, false, 1) == want);
  CHECK(run(in, St::Greeting, false, 7) == want);
  CHECK(run("DATA \r\n", St::Mail, false, 1) == std::vector<std::string>{"run:3 [|DATA|]", "errors=0"});
}

TEST_CASE("before TLS only PreTls commands run where TLS is required", "[line][dispatcher]") {
  std::string in = "EHLO a\r\nMAIL FROM:<>\r\nSTARTTLS\r\nNOOP\r\n";
  std::vector<std::string> want{"run:1 [|EHLO|a]", "tls_required:2 [|MAIL|FROM:<>] +err", "run:5 [|STARTTLS|]",
                                "run:4 [|NOOP|] +err", "errors=2"};
  CHECK(run(in, St::Ready, true, 1) == want);
  // TLS on: MAIL runs.
  CHECK(run("MAIL FROM:<>\r\n", St::Ready, false, 1) ==
        std::vector<std::string>{"run:2 [|MAIL|FROM:<>]", "errors=0"});
}

TEST_CASE("the error limit is reached after max_errors refusals, and junk is free within its allowance",
          "[line][dispatcher]") {
  Dispatcher<int> d(kSmtp, DispatchOptions{false, ErrorLimits{3, 2}});
  auto ready = state_bit(St::Ready);
  d.dispatch("NOOP", ready, false);
  d.dispatch("NOOP", ready, false);
  CHECK(d.errors().count() == 0);  // the allowance
  CHECK(d.dispatch("NOOP", ready, false).counted);
  CHECK(d.errors().count() == 1);
  d.errors().reset_junk();  // a delivered message earns it back
  CHECK_FALSE(d.dispatch("NOOP", ready, false).counted);
  d.dispatch("BOGUS", ready, false);
  CHECK_FALSE(d.errors().exhausted());
  d.dispatch("BOGUS", ready, false);
  CHECK(d.errors().exhausted());
  CHECK(d.errors().count() == 3);
  ErrorCounter none(ErrorLimits{0, 0});
  none.add(~0u);
  none.add(5);  // saturates, never wraps back under a limit
  CHECK(none.count() == ~0u);
  CHECK_FALSE(none.exhausted());
}

TEST_CASE("a catch-all entry takes every verb the table does not name", "[line][dispatcher]") {
  constexpr Command<int> table[] = {{"QUIT", 1}, {"", 9}};
  Dispatcher<int> d(table);
  CHECK(d.dispatch("quit", kAnyState, false).command->handler == 1);
  CHECK(d.dispatch("hello world", kAnyState, false).command->handler == 9);
  CHECK(d.dispatch("", kAnyState, false).outcome == Outcome::Run);
  CHECK(d.errors().count() == 0);
}

TEST_CASE("tagged lines carry their tag into refusals, so IMAP can answer with it", "[line][dispatcher]") {
  constexpr Command<int> table[] = {{"NOOP", 1}, {"LOGIN", 2, state_bit(St::Greeting), NeedsArguments}};
  Dispatcher<int> d(table, DispatchOptions{true, {}});
  auto r = d.dispatch("a7 login", state_bit(St::Ready), false);
  CHECK(r.outcome == Outcome::WrongState);
  CHECK(r.line.tag == "a7");
  auto e = d.dispatch("a8", state_bit(St::Ready), false);
  CHECK(e.outcome == Outcome::Empty);
  CHECK(e.line.tag == "a8");
  CHECK(d.dispatch("a9 Noop", state_bit(St::Ready), false).outcome == Outcome::Run);
}
