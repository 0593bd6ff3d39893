// mbox.hpp: the mboxrd format postern-storectl exports (a "From " line per message, and every line
// that looks like one, with any number of '>' in front, given one more '>' so a reader can undo it
// exactly), and its reader. Pure: strings in, strings out.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace store::tools::mbox {

// "From <sender> <date as asctime(3), UTC>\n".
std::string from_line(std::string_view sender, int64_t date);
// The envelope sender for the From line: the address of the message's Return-Path field (the
// first line of a delivered body), "MAILER-DAEMON" for "<>", none, or one with blanks or controls.
std::string envelope_sender(std::string_view message);

// One message as mboxrd: its From line, its lines with CRLF made LF (mbox is a Unix format;
// `keep_crlf` keeps them), ">*From " lines quoted, an LF added if the last line has none, then the
// empty line that separates it from the next.
std::string format_message(std::string_view message, std::string_view sender, int64_t date, bool keep_crlf = false);

struct Message {
  std::string from_line;  // without its LF
  std::string bytes;      // unquoted, with the LF line ends as written
};
// Messages start at a "From " line at the start of the text or after an empty line (which is the
// separator, not part of the message before it); ">+From " lines lose one '>'.
std::vector<Message> parse(std::string_view text);

}  // namespace store::tools::mbox
