// driver.hpp: the tests' stand-in for an IMAP session over mmp::imap::Parser: feeds bytes in any
// split, answers every pause as an accepting session would, and joins AppendData pieces so runs
// with different splits compare equal.
#pragma once

#include <stdexcept>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "mmp/imap/parser.hpp"

namespace imap_test {

using namespace mmp::imap;

inline std::string describe(const Event& e) {
  struct V {
    std::string operator()(const Command& c) const {
      return "Command " + c.tag + " " + (c.uid ? "UID " : "") + std::string(verb_name(c.verb));
    }
    std::string operator()(const Continue& c) const {
      return "Continue " + c.tag + " " + std::to_string(c.size) + (c.message ? " message" : "");
    }
    std::string operator()(const AppendStart& a) const {
      return "AppendStart " + a.tag + " " + a.mailbox + " #" + std::to_string(a.index) + " size " +
             std::to_string(a.message.size);
    }
    std::string operator()(const AppendData& d) const {
      return "AppendData " + std::to_string(d.bytes.size()) + (d.last ? " last" : "");
    }
    std::string operator()(const ParseError& p) const {
      return "ParseError " + p.tag + " " + std::string(condition_name(p.condition)) + " [" + p.code + "] " + p.text +
             (p.fatal ? " FATAL" : "");
    }
    std::string operator()(const IdleEnd& i) const { return std::string("IdleEnd ") + (i.done ? "DONE" : "other"); }
    std::string operator()(const SaslResponse& s) const { return "SaslResponse " + s.text; }
  };
  return std::visit(V{}, e);
}

inline std::string describe(const std::vector<Event>& events) {
  std::string s;
  for (const auto& e : events) s += describe(e) + "\n";
  return s;
}

class Driver {
 public:
  explicit Driver(ParserOptions options = {}) : parser(options) {}

  void feed(std::string_view bytes) {
    std::vector<Event> out;
    parser.feed(bytes, out);
    settle(out);
  }

  // Feeds `bytes` in pieces of `chunk` bytes.
  void feed_chunks(std::string_view bytes, size_t chunk) {
    for (size_t i = 0; i < bytes.size(); i += chunk) feed(bytes.substr(i, chunk));
  }

  Parser parser;
  std::vector<Event> events;
  bool accept_idle = true;  // IDLE: expect_done
  bool accept_sasl = true;  // AUTHENTICATE without an initial response: one SASL line, then done

 private:
  void settle(std::vector<Event>& out) {
    while (true) {
      for (auto& e : out) {
        react(e);
        add(std::move(e));
      }
      out.clear();
      if (!parser.paused()) return;
      parser.resume(out);
      if (out.empty() && parser.paused()) return;
    }
  }

  void react(const Event& e) {
    if (const auto* c = std::get_if<Command>(&e)) {
      if (c->verb == Verb::Idle && accept_idle) parser.expect_done();
      if (c->verb == Verb::Authenticate && accept_sasl) {
        const auto& a = std::get<AuthenticateArgs>(c->args);
        if (!a.initial_response) parser.expect_sasl(c->tag);
      }
    } else if (std::holds_alternative<SaslResponse>(e)) {
      parser.end_sasl();
    }
  }

  void add(Event e) {
    if (auto* d = std::get_if<AppendData>(&e); d != nullptr && !events.empty()) {
      if (auto* prev = std::get_if<AppendData>(&events.back()); prev != nullptr && !prev->last) {
        prev->bytes += d->bytes;
        prev->last = d->last;
        return;
      }
    }
    events.push_back(std::move(e));
  }
};

// All events of `input` fed in one piece (or in pieces of `chunk`).
inline std::vector<Event> run(std::string_view input, ParserOptions options = {}, size_t chunk = 0) {
  Driver d(options);
  if (chunk == 0) {
    d.feed(input);
  } else {
    d.feed_chunks(input, chunk);
  }
  return d.events;
}

// The one command `line` (CRLF added) parses to; fails the test otherwise.
inline Command parse_one(std::string_view line, ParserOptions options = {}) {
  auto events = run(std::string(line) + "\r\n", options);
  if (events.size() != 1 || !std::holds_alternative<Command>(events[0])) {
    throw std::runtime_error("not one command: " + std::string(line) + "\n" + describe(events));
  }
  return std::get<Command>(events[0]);
}

// The refusal `line` (CRLF added) gets; fails the test otherwise.
inline ParseError refusal(std::string_view line, ParserOptions options = {}) {
  auto events = run(std::string(line) + "\r\n", options);
  if (events.size() != 1 || !std::holds_alternative<ParseError>(events[0])) {
    throw std::runtime_error("not one refusal: " + std::string(line) + "\n" + describe(events));
  }
  return std::get<ParseError>(events[0]);
}

}  // namespace imap_test
