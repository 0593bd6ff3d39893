// line_session_fuzz.cpp: the framer and the command dispatcher of common/line as a session drives
// them (command lines, a raw mode until ".", byte mode for "BYTES n"), with a toy table, on
// arbitrary client bytes. Any split of the same bytes must give the same dispatch sequence, and
// nothing the client sends can make the framer hold more than one line.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

#include "common/line/dispatcher.hpp"
#include "common/runtime/line_framer.hpp"

namespace {

using namespace common::line;
using common::runtime::ByteChunk;
using common::runtime::LineFrame;
using common::runtime::LineTooLong;

constexpr size_t kMaxLine = 64;
enum class St { Greeting, Ready, Mail };

constexpr Command<int> kTable[] = {
    {"EHLO", 1, in_states(St::Greeting, St::Ready), PreTls | LastInPipeline | NeedsArguments},
    {"MAIL", 2, state_bit(St::Ready), NeedsArguments},
    {"DATA", 3, state_bit(St::Mail), LastInPipeline | NoArguments},
    {"BYTES", 4, kAnyState, NeedsArguments},
    {"NOOP", 5, kAnyState, PreTls | CountsAsError},
    {"STARTTLS", 6, kAnyState, PreTls | NoArguments},
    {"RSET", 7, kAnyState, NoArguments},
};

struct Model {
  common::runtime::LineFramer framer{kMaxLine};
  Dispatcher<int> dispatcher{kTable, DispatchOptions{false, ErrorLimits{1000, 3}}};
  St state = St::Greeting;
  bool tls = false;
  bool raw = false;
  size_t literal = 0;
  std::string trace;

  void feed(std::string_view bytes) {
    framer.append(bytes);
    while (auto frame = framer.next()) {
      if (auto* line = std::get_if<LineFrame>(&*frame)) {
        on_line(*line);
      } else if (auto* chunk = std::get_if<ByteChunk>(&*frame)) {
        // Chunk sizes follow the reads; the total of a literal must not.
        literal += chunk->bytes.size();
        if (chunk->last) {
          trace += "B" + std::to_string(literal) + ";";
          literal = 0;
        }
      } else {
        trace += "T;";
        if (!raw) dispatcher.errors().add();
      }
    }
    // Between reads only a partial line may wait (or nothing, in byte mode).
    if (framer.buffered() > kMaxLine + 1) std::abort();
  }

  void on_line(const LineFrame& line) {
    if (raw) {
      if (line.text == ".") raw = false;
      trace += raw ? "r;" : ".;";
      return;
    }
    auto d = dispatcher.dispatch(line.text, state_bit(state), !tls);
    const auto& l = d.line;
    // The split gives back the line: verb, then one SP and the argument text.
    if (std::string(l.verb) + (l.has_args ? " " : "") + std::string(l.args) != line.text) std::abort();
    if ((d.command == nullptr) != (d.outcome == Outcome::Empty || d.outcome == Outcome::Unknown)) std::abort();
    trace += std::string(outcome_name(d.outcome)) + (d.counted ? "+" : "") + ";";
    if (d.outcome != Outcome::Run) return;
    switch (d.command->handler) {
      case 1: state = St::Ready; break;
      case 2: state = St::Mail; break;
      case 3: raw = true; state = St::Ready; break;
      case 4: {
        // A BDAT-style size, capped as a protocol would before it reads that many bytes.
        size_t n = 0;
        for (char c : l.args.substr(0, 4)) n = n * 10 + static_cast<unsigned char>(c) % 10;
        framer.expect_bytes(n);
        break;
      }
      case 6:
        // As forget_plaintext after STARTTLS: what was pipelined behind it is gone.
        trace += "drop" + std::to_string(framer.buffered()) + ";";
        framer.reset();
        tls = true;
        break;
      case 7: dispatcher.errors().reset_junk(); break;
      default: break;
    }
  }
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view bytes(reinterpret_cast<const char*>(data), size);
  Model whole;
  whole.feed(bytes);
  const size_t step = size > 0 ? 1 + data[0] % 13 : 1;
  Model split;
  for (size_t at = 0; at < size; at += step) split.feed(bytes.substr(at, step));
  Model bytewise;
  for (size_t at = 0; at < size; ++at) bytewise.feed(bytes.substr(at, 1));
  // STARTTLS drops what was buffered behind it, which depends on how the bytes were read; a
  // session reads what it got, so only splits that end each read at a line end compare in full.
  // Before any STARTTLS every split must agree.
  auto upto_tls = [](const std::string& t) { return t.substr(0, t.find("drop")); };
  if (upto_tls(whole.trace) != upto_tls(split.trace) || upto_tls(whole.trace) != upto_tls(bytewise.trace)) {
    std::abort();
  }
  if (whole.trace.find("drop") == std::string::npos) {
    if (whole.trace != split.trace || whole.trace != bytewise.trace) std::abort();
    if (whole.dispatcher.errors().count() != bytewise.dispatcher.errors().count()) std::abort();
  }
  return 0;
}
