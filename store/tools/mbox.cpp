// mbox.cpp: mboxrd writing and reading (mbox.hpp).
#include "store/tools/mbox.hpp"

#include <ctime>

#include "common/ascii.hpp"

namespace store::tools::mbox {
namespace {

// ">*From ": a line a reader would take for a message start once its '>'s are counted.
bool from_like(std::string_view line) {
  size_t i = 0;
  while (i < line.size() && line[i] == '>') ++i;
  return line.substr(i).starts_with("From ");
}

}  // namespace

std::string from_line(std::string_view sender, int64_t date) {
  const std::time_t t = static_cast<std::time_t>(date);
  std::tm tm{};
  char when[64] = "Thu Jan  1 00:00:00 1970";
  if (gmtime_r(&t, &tm) != nullptr) std::strftime(when, sizeof when, "%a %b %e %H:%M:%S %Y", &tm);
  return "From " + std::string(sender) + " " + when + "\n";
}

std::string envelope_sender(std::string_view message) {
  // Header lines only: the first empty line ends the header.
  while (!message.empty()) {
    const size_t nl = message.find('\n');
    std::string_view line = message.substr(0, nl);
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    if (line.empty()) break;
    if (line.size() > 12 && common::ascii::iequals(line.substr(0, 12), "return-path:")) {
      std::string_view v = common::ascii::trim(line.substr(12));
      if (v.size() >= 2 && v.front() == '<' && v.back() == '>') v = v.substr(1, v.size() - 2);
      bool clean = !v.empty();
      for (char c : v) {
        if (static_cast<unsigned char>(c) <= 0x20 || c == 0x7f) clean = false;
      }
      return clean ? std::string(v) : std::string("MAILER-DAEMON");
    }
    if (nl == std::string_view::npos) break;
    message.remove_prefix(nl + 1);
  }
  return "MAILER-DAEMON";
}

std::string format_message(std::string_view message, std::string_view sender, int64_t date, bool keep_crlf) {
  std::string out = from_line(sender, date);
  out.reserve(out.size() + message.size() + message.size() / 64 + 2);
  while (!message.empty()) {
    const size_t nl = message.find('\n');
    std::string_view line = message.substr(0, nl);
    std::string_view end = "\n";
    if (!line.empty() && line.back() == '\r' && nl != std::string_view::npos) {
      line.remove_suffix(1);
      if (keep_crlf) end = "\r\n";
    }
    if (from_like(line)) out.push_back('>');
    out.append(line);
    out.append(end);
    if (nl == std::string_view::npos) break;
    message.remove_prefix(nl + 1);
  }
  out.push_back('\n');
  return out;
}

std::vector<Message> parse(std::string_view text) {
  std::vector<Message> out;
  bool after_empty = true;  // the start of the text counts as after a separator
  Message* current = nullptr;
  while (!text.empty()) {
    const size_t nl = text.find('\n');
    const std::string_view raw = text.substr(0, nl == std::string_view::npos ? text.size() : nl + 1);
    std::string_view line = text.substr(0, nl);
    text.remove_prefix(raw.size());
    std::string_view content = line;
    if (!content.empty() && content.back() == '\r') content.remove_suffix(1);
    if (after_empty && content.starts_with("From ")) {
      // The empty line before this one was the separator.
      if (current && !current->bytes.empty()) {
        const size_t cut = current->bytes.ends_with("\r\n") ? 2 : 1;
        current->bytes.resize(current->bytes.size() - cut);
      }
      out.push_back(Message{std::string(content), {}});
      current = &out.back();
      after_empty = false;
      continue;
    }
    after_empty = content.empty();
    if (!current) continue;  // text before the first From line is not a message
    if (!content.empty() && content.front() == '>' && from_like(content)) {
      current->bytes.append(raw.substr(1));
    } else {
      current->bytes.append(raw);
    }
  }
  // The last message's separator (the empty line at the end of the file).
  if (current && after_empty && !current->bytes.empty()) {
    const size_t cut = current->bytes.ends_with("\r\n") ? 2 : 1;
    current->bytes.resize(current->bytes.size() - cut);
  }
  return out;
}

}  // namespace store::tools::mbox
