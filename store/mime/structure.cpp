// structure.cpp: section addressing (RFC 3501 §6.4.5) and the stored form of MessageStructure.
#include "store/mime/structure.hpp"

namespace store::mime {
namespace {

// Version 1: 'M' 1, then varints and length-prefixed strings (see encode()).
constexpr char kMagic = 'M';
constexpr uint8_t kVersion = 1;
// A stored structure larger than this is corrupt: the parser's bounds keep real ones far below.
constexpr size_t kMaxEncodedString = 64 * 1024 * 1024;

void put_varint(std::string& out, uint64_t v) {
  while (v >= 0x80) {
    out += static_cast<char>((v & 0x7f) | 0x80);
    v >>= 7;
  }
  out += static_cast<char>(v);
}

void put_string(std::string& out, std::string_view s) {
  put_varint(out, s.size());
  out += s;
}

class Reader {
 public:
  explicit Reader(std::string_view in) : in_(in) {}
  bool ok() const { return ok_; }
  bool done() const { return i_ == in_.size(); }
  uint64_t varint() {
    uint64_t v = 0;
    for (int shift = 0; shift < 64; shift += 7) {
      if (i_ >= in_.size()) return fail();
      auto b = static_cast<uint8_t>(in_[i_++]);
      if (shift == 63 && b > 1) return fail();
      v |= static_cast<uint64_t>(b & 0x7f) << shift;
      if (!(b & 0x80)) return v;
    }
    return fail();
  }
  uint8_t byte() {
    if (i_ >= in_.size()) return static_cast<uint8_t>(fail());
    return static_cast<uint8_t>(in_[i_++]);
  }
  std::string string() {
    uint64_t n = varint();
    if (!ok_ || n > in_.size() - i_ || n > kMaxEncodedString) {
      fail();
      return {};
    }
    std::string s(in_.substr(i_, n));
    i_ += n;
    return s;
  }

 private:
  uint64_t fail() {
    ok_ = false;
    i_ = in_.size();
    return 0;
  }
  std::string_view in_;
  size_t i_ = 0;
  bool ok_ = true;
};

common::Result<MessageStructure> corrupt(const char* why) {
  return common::fail(common::ErrorKind::Internal, std::string("stored MIME structure is corrupt: ") + why);
}

}  // namespace

std::optional<uint32_t> find_part(const MessageStructure& s, std::span<const uint32_t> path) {
  if (s.parts.empty()) return std::nullopt;
  uint32_t cur = 0;
  for (size_t i = 0; i < path.size(); ++i) {
    const uint32_t n = path[i];
    if (n == 0) return std::nullopt;
    const Part& p = s.parts[cur];
    if (p.kind == PartKind::Multipart) {
      uint32_t c = p.first_child;
      for (uint32_t k = 1; k < n && c != kNoPart; ++k) c = s.parts[c].next_sibling;
      if (c == kNoPart) return std::nullopt;
      cur = c;
    } else if (n != 1) {
      return std::nullopt;  // a non-multipart has only part 1, itself
    }
    // A further number after a message/rfc822 part addresses the encapsulated message's parts.
    if (i + 1 < path.size() && s.parts[cur].kind == PartKind::Message) {
      if (s.parts[cur].first_child == kNoPart) return std::nullopt;
      cur = s.parts[cur].first_child;
    }
  }
  return cur;
}

std::optional<ByteRange> section_range(const MessageStructure& s, std::span<const uint32_t> path,
                                       SectionText text) {
  if (s.parts.empty()) return std::nullopt;
  if (path.empty()) {
    const Part& root = s.parts[0];
    switch (text) {
      case SectionText::Full: return ByteRange{0, s.size};
      case SectionText::Header: return ByteRange{root.header_start, root.header_end};
      case SectionText::Text: return ByteRange{root.body_start, root.body_end};
      case SectionText::Mime: return std::nullopt;
    }
    return std::nullopt;
  }
  auto index = find_part(s, path);
  if (!index) return std::nullopt;
  const Part& p = s.parts[*index];
  switch (text) {
    case SectionText::Full: return ByteRange{p.body_start, p.body_end};
    case SectionText::Mime: return ByteRange{p.header_start, p.header_end};
    case SectionText::Header:
    case SectionText::Text: {
      // RFC 3501 §6.4.5: HEADER and TEXT of a part only when it is message/rfc822.
      if (p.kind != PartKind::Message || p.first_child == kNoPart) return std::nullopt;
      const Part& m = s.parts[p.first_child];
      if (text == SectionText::Header) return ByteRange{m.header_start, m.header_end};
      return ByteRange{m.body_start, m.body_end};
    }
  }
  return std::nullopt;
}

// Offsets are written as deltas from the previous offset of the same part (each fits in few
// bytes); links as the parent only, the children being rebuilt from the pre-order.
std::string encode(const MessageStructure& s) {
  std::string out;
  out.reserve(32 + s.parts.size() * 24 + s.envelope.size() + s.bodystructure.size() + s.body.size());
  out += kMagic;
  out += static_cast<char>(kVersion);
  put_varint(out, s.size);
  put_varint(out, s.lines);
  put_varint(out, s.anomalies);
  put_varint(out, s.parts.size());
  for (const Part& p : s.parts) {
    put_varint(out, p.header_start);
    put_varint(out, p.header_end - p.header_start);
    put_varint(out, p.body_start - p.header_end);
    put_varint(out, p.body_end - p.body_start);
    put_varint(out, p.body_lines);
    put_varint(out, p.parent == kNoPart ? 0 : static_cast<uint64_t>(p.parent) + 1);
    out += static_cast<char>(p.kind);
    out += static_cast<char>(p.encoding);
    put_string(out, p.type);
    put_string(out, p.subtype);
    put_string(out, p.charset);
  }
  put_string(out, s.envelope);
  put_string(out, s.bodystructure);
  put_string(out, s.body);
  return out;
}

common::Result<MessageStructure> decode(std::string_view bytes) {
  if (bytes.size() < 2 || bytes[0] != kMagic) return corrupt("no magic");
  if (static_cast<uint8_t>(bytes[1]) != kVersion) return corrupt("unknown version");
  Reader r(bytes.substr(2));
  MessageStructure s;
  s.size = r.varint();
  s.lines = r.varint();
  uint64_t anomalies = r.varint();
  uint64_t count = r.varint();
  if (!r.ok()) return corrupt("truncated");
  if (anomalies > 0xffffffffu) return corrupt("anomalies");
  s.anomalies = static_cast<uint32_t>(anomalies);
  if (count == 0 || count > kMaxParts) return corrupt("part count");
  if (s.lines > s.size) return corrupt("more lines than octets");
  s.parts.reserve(static_cast<size_t>(count));
  std::vector<uint32_t> last_child(static_cast<size_t>(count), kNoPart);
  for (uint64_t i = 0; i < count; ++i) {
    Part p;
    uint64_t header_start = r.varint();
    uint64_t header_len = r.varint();
    uint64_t gap = r.varint();
    uint64_t body_len = r.varint();
    p.body_lines = r.varint();
    uint64_t parent = r.varint();
    uint8_t kind = r.byte();
    uint8_t encoding = r.byte();
    p.type = r.string();
    p.subtype = r.string();
    p.charset = r.string();
    if (!r.ok()) return corrupt("truncated part");
    // Each step checked against the message size, so no sum can wrap.
    if (header_start > s.size || header_len > s.size - header_start) return corrupt("header range");
    p.header_start = header_start;
    p.header_end = header_start + header_len;
    if (gap > s.size - p.header_end) return corrupt("body start");
    p.body_start = p.header_end + gap;
    if (body_len > s.size - p.body_start) return corrupt("body range");
    p.body_end = p.body_start + body_len;
    if (p.body_lines > body_len) return corrupt("body lines");
    if (kind > static_cast<uint8_t>(PartKind::Message)) return corrupt("part kind");
    if (encoding > static_cast<uint8_t>(Encoding::Other)) return corrupt("encoding");
    p.kind = static_cast<PartKind>(kind);
    p.encoding = static_cast<Encoding>(encoding);
    if (i == 0) {
      if (parent != 0) return corrupt("root has a parent");
    } else {
      if (parent == 0 || parent > i) return corrupt("parent not before child");
      auto pi = static_cast<uint32_t>(parent - 1);
      Part& up = s.parts[pi];
      if (up.kind == PartKind::Leaf) return corrupt("leaf with children");
      if (up.kind == PartKind::Message && up.first_child != kNoPart) return corrupt("message with two children");
      if (p.header_start < up.body_start || p.body_end > up.body_end) return corrupt("part outside its parent");
      if (last_child[pi] != kNoPart && p.header_start < s.parts[last_child[pi]].body_end) {
        return corrupt("siblings overlap");
      }
      // Pre-order: the new part's parent must be on the path from the root to the previous part.
      uint32_t prev = static_cast<uint32_t>(i - 1);
      while (prev != kNoPart && prev != pi) prev = s.parts[prev].parent;
      if (prev == kNoPart) return corrupt("not in pre-order");
      p.parent = pi;
      if (last_child[pi] == kNoPart) {
        up.first_child = static_cast<uint32_t>(i);
      } else {
        s.parts[last_child[pi]].next_sibling = static_cast<uint32_t>(i);
      }
      last_child[pi] = static_cast<uint32_t>(i);
    }
    s.parts.push_back(std::move(p));
  }
  s.envelope = r.string();
  s.bodystructure = r.string();
  s.body = r.string();
  if (!r.ok()) return corrupt("truncated strings");
  if (!r.done()) return corrupt("trailing bytes");
  return s;
}

}  // namespace store::mime
