// maildir_fuzz.cpp: the Maildir and mbox formats postern-storectl reads from a tree it did not write
// (store/tools/maildir.hpp, mbox.hpp) on arbitrary bytes. What is written must read back the same:
// file-name flags, uidlist records, keyword files, modified UTF-7 names, and an mboxrd message,
// whose reader must undo the quoting exactly.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "store/tools/maildir.hpp"
#include "store/tools/mbox.hpp"

namespace {

namespace md = store::tools::maildir;

// What mbox::format_message then mbox::parse give back: CR before LF dropped, an LF at the end.
std::string lf_form(std::string_view in) {
  std::string out;
  while (!in.empty()) {
    const size_t nl = in.find('\n');
    std::string_view line = in.substr(0, nl);
    if (nl != std::string_view::npos && !line.empty() && line.back() == '\r') line.remove_suffix(1);
    out.append(line);
    out.push_back('\n');
    if (nl == std::string_view::npos) break;
    in.remove_prefix(nl + 1);
  }
  return out;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view bytes(reinterpret_cast<const char*>(data), size);

  const md::FileName name = md::parse_file_name(bytes);
  if (name.base.find(':') != std::string::npos) std::abort();
  const md::FileName again = md::parse_file_name(md::make_file_name(name.base, name.flags, name.passed,
                                                                    name.keyword_letters));
  if (again.base != name.base || again.flags != name.flags || again.passed != name.passed ||
      again.keyword_letters.size() != name.keyword_letters.size()) {
    std::abort();
  }
  (void)md::size_field(name.base, 'S');
  (void)md::sorts_before(bytes, name.base);

  if (auto list = md::parse_uidlist(bytes)) {
    std::vector<md::UidListLine> lines;
    uint32_t previous = 0;
    bool plain_names = true;  // a CR at the end of a name would be read back as part of the line end
    for (const auto& e : list->entries) {
      plain_names = plain_names && e.base.find('\r') == std::string::npos;
      if (e.uid <= previous || e.base.empty() || e.base.find(':') != std::string::npos) std::abort();
      previous = e.uid;
      lines.push_back({e.uid, 0, e.base});
    }
    auto back = md::parse_uidlist(md::format_uidlist(list->uidvalidity, list->next_uid, lines));
    if (plain_names && (!back || back->entries.size() != list->entries.size() ||
                        back->uidvalidity != list->uidvalidity || back->next_uid != list->next_uid)) {
      std::abort();
    }
    for (size_t i = 0; plain_names && i < lines.size(); ++i) {
      if (back->entries[i].uid != list->entries[i].uid || back->entries[i].base != list->entries[i].base) std::abort();
    }
  }

  const auto keywords = md::parse_keywords(bytes);
  if (keywords.size() != md::kMaxKeywordLetters) std::abort();
  bool plain = true;  // names the file format can carry back: no line ends, no leading blank
  for (const auto& k : keywords) plain = plain && k.find_first_of("\r\n") == std::string::npos;
  if (plain && md::parse_keywords(md::format_keywords(keywords)) != keywords) std::abort();

  if (auto decoded = md::mutf7_decode(bytes)) {
    // What decodes is valid UTF-8, so it encodes, and back to the same name.
    auto encoded = md::mutf7_encode(*decoded);
    if (!encoded) std::abort();
    auto back = md::mutf7_decode(*encoded);
    if (!back || *back != *decoded) std::abort();
  }
  (void)md::mutf7_encode(bytes);
  (void)md::folder_mailbox(bytes, "");
  (void)md::mailbox_folder(bytes);
  (void)md::parse_subscriptions(bytes);

  const std::string lines = md::imap_line_ends(std::string(bytes));
  if (bytes.find('\r') == std::string_view::npos && md::crlf_size(lines) != lines.size()) std::abort();

  const std::string text = store::tools::mbox::format_message(bytes, "s@x", 0);
  const auto messages = store::tools::mbox::parse(text);
  if (messages.size() != 1 || messages[0].bytes != lf_form(bytes)) std::abort();
  return 0;
}
