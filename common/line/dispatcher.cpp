// dispatcher.cpp: splitting a command line into tag, verb and argument text (see dispatcher.hpp).
#include "common/line/dispatcher.hpp"

namespace common::line {

CommandLine split_command(std::string_view line, bool tagged) {
  CommandLine out;
  if (tagged) {
    size_t sp = line.find(' ');
    out.tag = line.substr(0, sp);
    if (sp == std::string_view::npos) return out;
    line.remove_prefix(sp + 1);
  }
  size_t sp = line.find(' ');
  out.verb = line.substr(0, sp);
  if (sp != std::string_view::npos) {
    out.args = line.substr(sp + 1);
    out.has_args = true;
  }
  return out;
}

std::string_view outcome_name(Outcome o) {
  switch (o) {
    case Outcome::Run: return "run";
    case Outcome::Empty: return "empty";
    case Outcome::Unknown: return "unknown";
    case Outcome::TlsRequired: return "tls_required";
    case Outcome::WrongState: return "wrong_state";
    case Outcome::BadArguments: return "bad_arguments";
  }
  return "unknown";
}

}  // namespace common::line
