// dispatcher.hpp: the pure command dispatcher of every line protocol (LMTP, SMTP, IMAP, POP3): a
// command table with allowed states and flags, verb lookup, refusals as values, the error counter.
// No I/O, no clock, no logging, so any split of the input gives the same dispatches (fuzzed).
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string_view>

#include "common/ascii.hpp"

namespace common::line {

// A set of states of the protocol's own `enum class State` (at most 32 values).
using StateMask = uint32_t;
template <class E>
constexpr StateMask state_bit(E e) {
  return StateMask{1} << static_cast<unsigned>(e);
}
template <class... E>
constexpr StateMask in_states(E... e) {
  return (StateMask{0} | ... | state_bit(e));
}
inline constexpr StateMask kAnyState = ~StateMask{0};

// Flags of a command-table entry, after Postfix's smtpd_cmd_table.
enum CommandFlag : uint32_t {
  // Allowed before TLS on a listener that requires it (EHLO, STARTTLS, NOOP, QUIT): RFC 3207 §4
  // lets a server refuse everything else with 530 until the client has started TLS.
  PreTls = 1u << 0,
  // Must end a pipelined group (RFC 2920 §3.1: EHLO, DATA, VRFY, EXPN, TURN, QUIT, NOOP, and
  // RFC 3207 STARTTLS). Input already buffered behind it goes to the session's
  // on_improper_pipelining hook: a spam engine that pipelines blindly shows itself there.
  LastInPipeline = 1u << 1,
  // A junk command (NOOP, RSET, VRFY, HELP): it achieves nothing, so a client looping on it would
  // hold the session for ever. Each use counts towards the error limit once the junk allowance
  // is spent (Postfix's smtpd_junk_command_limit).
  CountsAsError = 1u << 2,
  // Takes no argument ("DATA", "QUIT", "STARTTLS"): "DATA x" is refused as BadArguments.
  NoArguments = 1u << 3,
  // Needs an argument ("MAIL FROM:<>", "LHLO name"): a bare verb is refused as BadArguments.
  NeedsArguments = 1u << 4,
};

// One table entry. An entry with an empty verb takes every line that no other entry names
// (a catch-all, for test protocols such as the line echo); real protocols have none.
template <class Handler>
struct Command {
  std::string_view verb;
  Handler handler{};
  StateMask states = kAnyState;
  uint32_t flags = 0;
  constexpr bool has(CommandFlag f) const { return (flags & f) != 0; }
};

// One line split into words. Views into the line.
struct CommandLine {
  std::string_view tag;   // tagged protocols (IMAP): the first word; empty otherwise
  std::string_view verb;  // as the client wrote it (compare with ascii::iequals)
  std::string_view args;  // everything after the SP that ends the verb, unparsed (common/smtp reads it)
  bool has_args = false;  // a SP followed the verb, even if nothing else did ("NOOP ")
};

// The verb ends at the first SP; the rest of the line is the argument text, untouched (a protocol's
// parser decides about extra spaces: RFC 5321 §4.1.1 has exactly one). Tagged: the tag is the
// word before, RFC 3501 §2.2.1. IMAP's two-word commands ("UID FETCH") are one entry ("UID")
// whose handler splits its arguments again.
CommandLine split_command(std::string_view line, bool tagged);

enum class Outcome : uint8_t {
  Run,           // the entry's handler runs
  Empty,         // no verb (an empty line, or a tag alone)
  Unknown,       // no entry names the verb (SMTP 500 5.5.2, IMAP BAD)
  TlsRequired,   // TLS is required and not on, and the entry is not PreTls (SMTP 530 5.7.0)
  WrongState,    // not allowed in the current state (SMTP 503 5.5.1, IMAP BAD)
  BadArguments,  // NoArguments with arguments or NeedsArguments without (SMTP 501 5.5.4)
};
std::string_view outcome_name(Outcome o);

struct ErrorLimits {
  unsigned max_errors = 20;     // reaching it: the protocol's "too many errors" reply, then close; 0 = none
  unsigned junk_allowance = 0;  // CountsAsError commands free before each counts as an error
};

// Counts a session's errors. It survives STARTTLS (forget_plaintext leaves it alone): a client that
// probes in plaintext keeps its score once it has started TLS.
class ErrorCounter {
 public:
  explicit ErrorCounter(ErrorLimits limits = {}) : limits_(limits) {}
  void add(unsigned n = 1) { errors_ = errors_ + n < errors_ ? ~0u : errors_ + n; }
  // A CountsAsError command: free while the allowance lasts, then one error each.
  void junk() {
    if (junk_ < limits_.junk_allowance) {
      ++junk_;
    } else {
      add();
    }
  }
  // A completed transaction earns the allowance back (Postfix resets its junk count on a delivery).
  void reset_junk() { junk_ = 0; }
  bool exhausted() const { return limits_.max_errors > 0 && errors_ >= limits_.max_errors; }
  unsigned count() const { return errors_; }
  const ErrorLimits& limits() const { return limits_; }

 private:
  ErrorLimits limits_;
  unsigned errors_ = 0;
  unsigned junk_ = 0;
};

template <class Handler>
struct Dispatch {
  Outcome outcome = Outcome::Empty;
  const Command<Handler>* command = nullptr;  // the entry, unless Empty or Unknown
  CommandLine line;
  bool counted = false;  // this dispatch added an error
};

struct DispatchOptions {
  bool tagged = false;
  ErrorLimits errors;
};

// Looks lines up in a table that outlives it (usually a static constexpr array of the protocol).
template <class Handler>
class Dispatcher {
 public:
  explicit Dispatcher(std::span<const Command<Handler>> table, DispatchOptions options = {})
      : table_(table), options_(options), errors_(options.errors) {}

  // Case-insensitive (RFC 5321 §2.4, RFC 3501 §9: verbs are case-insensitive), locale-free.
  const Command<Handler>* find(std::string_view verb) const {
    const Command<Handler>* catch_all = nullptr;
    for (const auto& c : table_) {
      if (c.verb.empty()) {
        catch_all = &c;
      } else if (ascii::iequals(c.verb, verb)) {
        return &c;
      }
    }
    return catch_all;
  }

  // `state` is state_bit(current state). `tls_missing`: the listener requires TLS and it is not
  // on. Every outcome but Run counts one error; a Run of a CountsAsError entry counts as junk.
  Dispatch<Handler> dispatch(std::string_view line, StateMask state, bool tls_missing) {
    Dispatch<Handler> d;
    d.line = split_command(line, options_.tagged);
    d.command = find(d.line.verb);
    if (d.command == nullptr) {
      d.outcome = d.line.verb.empty() ? Outcome::Empty : Outcome::Unknown;
    } else if (tls_missing && !d.command->has(PreTls)) {
      d.outcome = Outcome::TlsRequired;
    } else if ((d.command->states & state) == 0) {
      d.outcome = Outcome::WrongState;
    } else if ((d.command->has(NoArguments) && !d.line.args.empty()) ||
               (d.command->has(NeedsArguments) && d.line.args.empty())) {
      d.outcome = Outcome::BadArguments;
    } else {
      d.outcome = Outcome::Run;
    }
    if (d.outcome != Outcome::Run) {
      errors_.add();
      d.counted = true;
    } else if (d.command->has(CountsAsError)) {
      unsigned before = errors_.count();
      errors_.junk();
      d.counted = errors_.count() != before;
    }
    return d;
  }

  ErrorCounter& errors() { return errors_; }
  const ErrorCounter& errors() const { return errors_; }
  const DispatchOptions& options() const { return options_; }

 private:
  std::span<const Command<Handler>> table_;
  DispatchOptions options_;
  ErrorCounter errors_;
};

}  // namespace common::line
