// mime_fuzz.cpp: the MIME structure parser (store/mime) on arbitrary messages. Any split of the
// same bytes must give the same structure, the stored form must decode back to it, every part
// must lie inside its parent and the message, and decode must survive the input as a stored value.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>
#include <vector>

#include "store/mime/parser.hpp"
#include "store/mime/structure.hpp"

namespace {

void check_parts(const store::mime::MessageStructure& s) {
  using store::mime::kNoPart;
  if (s.parts.empty()) std::abort();
  for (size_t i = 0; i < s.parts.size(); ++i) {
    const auto& p = s.parts[i];
    if (p.header_start > p.header_end || p.header_end > p.body_start || p.body_start > p.body_end ||
        p.body_end > s.size || p.body_lines > p.body_size()) {
      std::abort();
    }
    if (p.parent != kNoPart) {
      const auto& up = s.parts[p.parent];
      if (p.parent >= i || p.header_start < up.body_start || p.body_end > up.body_end) std::abort();
    }
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace store::mime;
  std::string_view bytes(reinterpret_cast<const char*>(data), size);
  // The same bytes as a stored value: refused or decoded, never a crash.
  if (auto d = decode(bytes)) check_parts(*d);

  MessageStructure whole = parse(bytes);
  check_parts(whole);
  if (whole.size != size) std::abort();

  Parser split;
  const size_t step = size > 0 ? 1 + data[0] % 67 : 1;
  for (size_t at = 0; at < size; at += step) split.feed(bytes.substr(at, step));
  if (!(split.finish() == whole)) std::abort();

  auto back = decode(encode(whole));
  if (!back || !(*back == whole)) std::abort();

  // Every part's number path resolves to a range inside the message.
  for (uint32_t i = 1; i < whole.parts.size() && i < 64; ++i) {
    std::vector<uint32_t> path;
    for (uint32_t p = i; p != 0; p = whole.parts[p].parent) {
      const Part& up = whole.parts[whole.parts[p].parent];
      if (up.kind == PartKind::Message) continue;  // the encapsulated message has no number of its own
      uint32_t n = 1;
      for (uint32_t k = up.first_child; k != p && k != kNoPart; k = whole.parts[k].next_sibling) ++n;
      path.insert(path.begin(), n);
    }
    for (auto text : {SectionText::Full, SectionText::Header, SectionText::Text, SectionText::Mime}) {
      if (auto r = section_range(whole, path, text)) {
        if (r->start > r->end || r->end > whole.size) std::abort();
      }
    }
  }
  return 0;
}
