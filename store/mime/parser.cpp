// parser.cpp: the line-driven MIME state machine. Only a line's first bytes are kept (a header
// field's worth in a header, a boundary's worth in a body), so a 50 MB attachment costs nothing.
#include "store/mime/parser.hpp"

#include <algorithm>
#include <cstring>

#include "common/ascii.hpp"
#include "store/mime/fields.hpp"

namespace store::mime {
namespace {

using common::ascii::iequals;
using common::ascii::is_blank;

// Enough of a body line to recognise "--" boundary "--" with some transport padding after it.
constexpr size_t kBoundaryProbe = kMaxBoundary + 8;

// RFC 3501's grammar wants a body inside every multipart and message/rfc822; where the input had
// none (no boundary, nesting cut at kMaxDepth), this empty text/plain stands in, as Dovecot does.
constexpr std::string_view kEmptyBody = "(\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 0 0)";
constexpr std::string_view kEmptyEnvelope = "(NIL NIL NIL NIL NIL NIL NIL NIL NIL NIL)";

struct FieldName {
  std::string_view name;
  Parser::Field field;
};
constexpr FieldName kFieldNames[] = {
    {"content-type", Parser::kContentType},
    {"content-transfer-encoding", Parser::kContentTransferEncoding},
    {"content-id", Parser::kContentId},
    {"content-description", Parser::kContentDescription},
    {"content-disposition", Parser::kContentDisposition},
    {"content-language", Parser::kContentLanguage},
    {"content-location", Parser::kContentLocation},
    {"content-md5", Parser::kContentMd5},
    {"date", Parser::kDate},
    {"subject", Parser::kSubject},
    {"from", Parser::kFrom},
    {"sender", Parser::kSender},
    {"reply-to", Parser::kReplyTo},
    {"to", Parser::kTo},
    {"cc", Parser::kCc},
    {"bcc", Parser::kBcc},
    {"in-reply-to", Parser::kInReplyTo},
    {"message-id", Parser::kMessageId},
};

int field_index(std::string_view name) {
  for (const auto& f : kFieldNames) {
    if (iequals(f.name, name)) return f.field;
  }
  return -1;
}

Encoding encoding_of(std::string_view e) {
  if (iequals(e, "7bit")) return Encoding::SevenBit;
  if (iequals(e, "8bit")) return Encoding::EightBit;
  if (iequals(e, "binary")) return Encoding::Binary;
  if (iequals(e, "base64")) return Encoding::Base64;
  if (iequals(e, "quoted-printable")) return Encoding::QuotedPrintable;
  return Encoding::Other;
}

std::optional<std::string> nonempty(const std::optional<std::string>& raw) {
  if (!raw) return std::nullopt;
  std::string v = clean_value(*raw);
  if (v.empty()) return std::nullopt;
  return v;
}

std::string param_list(const std::vector<Param>& params) {
  std::string out;
  if (params.empty()) return "NIL";
  out += '(';
  for (size_t i = 0; i < params.size(); ++i) {
    if (i) out += ' ';
    append_string(out, params[i].name);
    out += ' ';
    append_string(out, params[i].value);
  }
  out += ')';
  return out;
}

}  // namespace

Parser::Parser() { reset(); }

void Parser::reset() {
  s_ = MessageStructure{};
  rendered_.clear();
  lf_at_body_.clear();
  depth_.clear();
  last_child_.clear();
  bounds_.clear();
  line_.clear();
  line_len_ = 0;
  line_tail_blank_ = true;
  line_truncated_ = false;
  last_ = before_last_ = 0;
  offset_ = lf_count_ = prev_content_end_ = 0;
  kept_bytes_ = 0;
  finished_ = false;
  open_part(kNoPart, 0);
}

uint32_t Parser::open_part(uint32_t parent, uint64_t header_start) {
  auto index = static_cast<uint32_t>(s_.parts.size());
  Part p;
  p.header_start = p.header_end = p.body_start = p.body_end = header_start;
  p.parent = parent;
  s_.parts.push_back(std::move(p));
  rendered_.emplace_back();
  lf_at_body_.push_back(0);
  last_child_.push_back(kNoPart);
  depth_.push_back(parent == kNoPart ? 0 : depth_[parent] + 1);
  if (parent != kNoPart) {
    if (last_child_[parent] == kNoPart) {
      s_.parts[parent].first_child = index;
    } else {
      s_.parts[last_child_[parent]].next_sibling = index;
    }
    last_child_[parent] = index;
  }
  current_ = index;
  state_ = State::Header;
  for (auto& f : fields_) f.reset();
  folding_ = -1;
  field_count_ = 0;
  line_keep_ = kMaxFieldBytes;
  return index;
}

void Parser::feed(std::string_view bytes) {
  if (finished_) return;
  const char* p = bytes.data();
  size_t n = bytes.size();
  while (n > 0) {
    const void* lf = std::memchr(p, '\n', n);
    size_t take = lf ? static_cast<size_t>(static_cast<const char*>(lf) - p) + 1 : n;
    absorb(p, take);
    if (lf) end_line(true);
    p += take;
    n -= take;
  }
}

void Parser::absorb(const char* p, size_t n) {
  offset_ += n;
  line_len_ += n;
  if (std::memchr(p, '\0', n)) s_.anomalies |= kAnomalyNul;
  size_t keep = line_.size() < line_keep_ ? std::min(n, line_keep_ - line_.size()) : 0;
  line_.append(p, keep);
  for (size_t i = keep; i < n; ++i) {
    line_truncated_ = true;
    char c = p[i];
    if (c != ' ' && c != '\t' && c != '\r' && c != '\n') {
      line_tail_blank_ = false;
      break;
    }
  }
  if (keep < n) line_truncated_ = true;
  if (n >= 2) {
    before_last_ = p[n - 2];
    last_ = p[n - 1];
  } else {
    before_last_ = last_;
    last_ = p[0];
  }
}

void Parser::end_line(bool has_lf) {
  const uint64_t line_end = offset_;
  size_t term = 0;
  if (has_lf) {
    if (line_len_ >= 2 && before_last_ == '\r') {
      term = 2;
    } else {
      term = 1;
      s_.anomalies |= kAnomalyBareLf;
    }
  }
  const uint64_t content_end = line_end - term;
  std::string_view content(line_);
  content = content.substr(0, static_cast<size_t>(std::min<uint64_t>(line_.size(), line_len_ - term)));

  bool handled = false;
  if (!bounds_.empty()) {
    if (auto m = match_boundary(content)) {
      if (m->second || s_.parts.size() < kMaxParts) {
        on_boundary(m->first, m->second, line_end);
        handled = true;
      } else {
        s_.anomalies |= kAnomalyPartsLimit;
      }
    }
  }
  if (!handled && state_ == State::Header) {
    if (line_truncated_) s_.anomalies |= kAnomalyHeaderTruncated;
    if (content.empty()) {
      end_header(line_end, lf_count_ + (has_lf ? 1 : 0));
    } else {
      header_line(content);
    }
  }
  prev_content_end_ = content_end;
  if (has_lf) ++lf_count_;
  line_.clear();
  line_len_ = 0;
  line_tail_blank_ = true;
  line_truncated_ = false;
  last_ = before_last_ = 0;
  line_keep_ = state_ == State::Header ? kMaxFieldBytes : (bounds_.empty() ? 0 : kBoundaryProbe);
}

// RFC 2046 §5.1.1: a delimiter line is "--" boundary, a close delimiter adds "--", and either may
// be followed by white space (transport padding). Enclosing multiparts' boundaries are checked
// too, innermost first, so an inner multipart that never closes ends at its parent's delimiter.
std::optional<std::pair<size_t, bool>> Parser::match_boundary(std::string_view content) const {
  if (content.size() < 2 || content[0] != '-' || content[1] != '-') return std::nullopt;
  if (line_truncated_ && !line_tail_blank_) return std::nullopt;
  while (!content.empty() && (content.back() == ' ' || content.back() == '\t' || content.back() == '\r')) {
    content.remove_suffix(1);
  }
  for (size_t i = bounds_.size(); i-- > 0;) {
    std::string_view d = bounds_[i].delimiter;
    if (content.size() == d.size() + 2 && content.substr(0, d.size()) == d && content.substr(d.size()) == "--") {
      return std::make_pair(i, true);
    }
    if (content == d) return std::make_pair(i, false);
  }
  return std::nullopt;
}

void Parser::on_boundary(size_t index, bool close, uint64_t line_end) {
  const uint32_t multipart = bounds_[index].part;
  // The line break before a delimiter belongs to the delimiter (RFC 2046 §5.1.1).
  const uint64_t cut = prev_content_end_;
  const uint64_t lf_at_cut = lf_count_ > 0 ? lf_count_ - 1 : 0;
  uint64_t c = cut;
  uint64_t lf = lf_at_cut;
  for (uint32_t p = current_; p != multipart && p != kNoPart; p = s_.parts[p].parent) {
    close_part(p, c, lf);
    // A part that began on this very line (a header cut at once) ends where it began; its
    // parents must then end there too, so that every part stays inside its parent.
    if (s_.parts[p].body_end > c) {
      c = s_.parts[p].body_end;
      lf = lf_count_;
    }
  }
  bounds_.resize(index + 1);
  current_ = multipart;
  state_ = State::Body;
  if (close) {
    bounds_.pop_back();  // what follows is the epilogue, part of the multipart's body
    return;
  }
  open_part(multipart, line_end);
}

void Parser::close_part(uint32_t index, uint64_t cut, uint64_t lf_at_cut) {
  Part& p = s_.parts[index];
  if (index == current_ && state_ == State::Header) {
    // A header that a delimiter (or the end) interrupts: the part has no body.
    s_.anomalies |= kAnomalyHeaderUnterminated;
    uint64_t end = std::max(p.header_start, cut);
    p.header_end = p.body_start = p.body_end = end;
    p.body_lines = 0;
    finish_header(false);
    return;
  }
  p.body_end = std::max(p.body_start, cut);
  p.body_lines = p.body_end > p.body_start ? lf_at_cut - lf_at_body_[index] : 0;
}

void Parser::append_field(int f, std::string_view text) {
  std::string& v = *fields_[f];
  size_t room = std::min(kMaxFieldBytes - std::min(kMaxFieldBytes, v.size()),
                         kMaxKeptHeaderBytes - std::min(kMaxKeptHeaderBytes, kept_bytes_));
  if (text.size() > room) {
    s_.anomalies |= kAnomalyHeaderTruncated;
    text = text.substr(0, room);
  }
  v.append(text);
  kept_bytes_ += text.size();
}

void Parser::header_line(std::string_view content) {
  for (char c : content) {
    if (static_cast<unsigned char>(c) >= 0x80) {
      s_.anomalies |= kAnomalyEightBitHeader;
      break;
    }
  }
  if (is_blank(content[0])) {
    // Folding (RFC 5322 §2.2.3): unfolding drops the line break and keeps the white space.
    if (folding_ >= 0) append_field(folding_, content);
    return;
  }
  folding_ = -1;
  size_t colon = content.find(':');
  std::string_view name = colon == std::string_view::npos ? std::string_view{} : content.substr(0, colon);
  while (!name.empty() && is_blank(name.back())) name.remove_suffix(1);  // obs-optional: "Name :"
  if (name.empty()) {
    // Not a field: kept in the header range (as Dovecot does) but read as nothing.
    s_.anomalies |= kAnomalyInvalidHeaderLine;
    return;
  }
  if (++field_count_ > kMaxHeaderFields) {
    s_.anomalies |= kAnomalyTooManyFields;
    return;
  }
  int f = field_index(name);
  if (f < 0) return;
  const Part& p = s_.parts[current_];
  bool message_header = p.parent == kNoPart || s_.parts[p.parent].kind == PartKind::Message;
  if (f >= kDate && !message_header) return;
  if (fields_[f]) return;  // RFC 5322 §3.6 allows each of these once: the first one counts
  fields_[f].emplace();
  folding_ = f;
  append_field(f, content.substr(colon + 1));
}

void Parser::end_header(uint64_t body_start, uint64_t lf_at_body) {
  Part& p = s_.parts[current_];
  p.header_end = p.body_start = p.body_end = body_start;
  lf_at_body_[current_] = lf_at_body;
  finish_header(true);
}

void Parser::finish_header(bool descend) {
  const uint32_t index = current_;
  Part& p = s_.parts[index];
  const bool message_header = p.parent == kNoPart || s_.parts[p.parent].kind == PartKind::Message;
  const bool digest_child = p.parent != kNoPart && s_.parts[p.parent].kind == PartKind::Multipart &&
                            s_.parts[p.parent].subtype == "digest";

  ContentType ct;
  if (fields_[kContentType]) ct = parse_content_type(clean_value(*fields_[kContentType]));
  if (!ct.valid) {
    // RFC 2045 §5.2 default, or message/rfc822 inside multipart/digest (RFC 2046 §5.1.5).
    ct.params.clear();
    if (digest_child) {
      ct.type = "message";
      ct.subtype = "rfc822";
    } else {
      ct.type = "text";
      ct.subtype = "plain";
    }
  }
  const bool is_text = iequals(ct.type, "text");
  auto charset = std::find_if(ct.params.begin(), ct.params.end(), [](const Param& q) { return q.name == "charset"; });
  if (is_text && charset == ct.params.end()) {
    // RFC 2045 §5.2: text without a charset is us-ascii; IMAP servers say so in BODYSTRUCTURE.
    ct.params.push_back({"charset", "us-ascii"});
    charset = ct.params.end() - 1;
  }
  p.type = common::ascii::lowered(ct.type);
  p.subtype = common::ascii::lowered(ct.subtype);
  p.charset = charset != ct.params.end() ? common::ascii::lowered(charset->value) : std::string();
  if (p.type == "multipart") {
    p.kind = PartKind::Multipart;
  } else if (p.type == "message" && (p.subtype == "rfc822" || p.subtype == "global")) {
    // RFC 9051 gives message/global (RFC 6532) the same BODYSTRUCTURE form as message/rfc822.
    p.kind = PartKind::Message;
  } else {
    p.kind = PartKind::Leaf;
  }

  std::string encoding = "7bit";
  if (fields_[kContentTransferEncoding]) {
    if (auto e = parse_encoding(clean_value(*fields_[kContentTransferEncoding]))) encoding = std::move(*e);
  }
  p.encoding = encoding_of(encoding);

  Rendered& r = rendered_[index];
  std::string& head = r.head;
  append_string(head, ct.type);
  head += ' ';
  append_string(head, ct.subtype);
  head += ' ';
  std::string params = param_list(ct.params);
  head += p.kind == PartKind::Multipart ? std::string("NIL") : params;
  head += ' ';
  append_nstring(head, nonempty(fields_[kContentId]));
  head += ' ';
  append_nstring(head, nonempty(fields_[kContentDescription]));
  head += ' ';
  append_string(head, encoding);

  // Extension data (RFC 3501 body-ext-1part / body-ext-mpart): md5 or parameters first, then
  // disposition, language, location.
  std::string& ext = r.ext;
  ext += ' ';
  if (p.kind == PartKind::Multipart) {
    ext += params;
    r.subtype.clear();
    append_string(r.subtype, ct.subtype);
  } else {
    append_nstring(ext, nonempty(fields_[kContentMd5]));
  }
  ext += ' ';
  std::optional<Disposition> disposition;
  if (fields_[kContentDisposition]) disposition = parse_disposition(clean_value(*fields_[kContentDisposition]));
  if (disposition) {
    ext += '(';
    append_string(ext, disposition->type);
    ext += ' ';
    ext += param_list(disposition->params);
    ext += ')';
  } else {
    ext += "NIL";
  }
  ext += ' ';
  std::vector<std::string> language;
  if (fields_[kContentLanguage]) language = parse_language(clean_value(*fields_[kContentLanguage]));
  if (language.empty()) {
    ext += "NIL";
  } else {
    ext += '(';
    for (size_t i = 0; i < language.size(); ++i) {
      if (i) ext += ' ';
      append_string(ext, language[i]);
    }
    ext += ')';
  }
  ext += ' ';
  append_nstring(ext, nonempty(fields_[kContentLocation]));

  if (message_header) {
    EnvelopeFields e;
    e.date = fields_[kDate];
    e.subject = fields_[kSubject];
    e.from = fields_[kFrom];
    e.sender = fields_[kSender];
    e.reply_to = fields_[kReplyTo];
    e.to = fields_[kTo];
    e.cc = fields_[kCc];
    e.bcc = fields_[kBcc];
    e.in_reply_to = fields_[kInReplyTo];
    e.message_id = fields_[kMessageId];
    r.envelope = render_envelope(e);
  }
  for (auto& f : fields_) f.reset();
  folding_ = -1;

  state_ = State::Body;
  if (!descend) return;
  const bool room = depth_[index] + 1 <= kMaxDepth && s_.parts.size() < kMaxParts;
  if (p.kind == PartKind::Multipart) {
    auto b = std::find_if(ct.params.begin(), ct.params.end(), [](const Param& q) { return q.name == "boundary"; });
    if (b == ct.params.end() || b->value.empty() || b->value.size() > kMaxBoundary) {
      // RFC 2046 §5.1.1 makes the boundary mandatory; without one the body is opaque (as gmime
      // keeps it all as the preamble).
      s_.anomalies |= kAnomalyNoBoundary;
    } else if (!room) {
      s_.anomalies |= depth_[index] + 1 > kMaxDepth ? kAnomalyDepthLimit : kAnomalyPartsLimit;
    } else {
      bounds_.push_back({index, "--" + b->value});
    }
  } else if (p.kind == PartKind::Message) {
    if (!room) {
      s_.anomalies |= depth_[index] + 1 > kMaxDepth ? kAnomalyDepthLimit : kAnomalyPartsLimit;
    } else {
      open_part(index, p.body_start);
    }
  }
}

MessageStructure Parser::finish() {
  if (finished_) return {};
  if (line_len_ > 0) end_line(false);
  if (state_ == State::Header) {
    // Only a header (no empty line): all of it is header, the body is empty.
    Part& p = s_.parts[current_];
    p.header_end = p.body_start = p.body_end = offset_;
    p.body_lines = 0;
    if (offset_ > p.header_start) s_.anomalies |= kAnomalyHeaderUnterminated;
    finish_header(false);
    current_ = p.parent;
  }
  for (uint32_t p = current_; p != kNoPart; p = s_.parts[p].parent) {
    Part& part = s_.parts[p];
    part.body_end = std::max(part.body_start, offset_);
    part.body_lines = part.body_end > part.body_start ? lf_count_ - lf_at_body_[p] : 0;
  }
  if (!bounds_.empty()) s_.anomalies |= kAnomalyUnterminatedMultipart;
  s_.size = offset_;
  s_.lines = lf_count_;
  s_.envelope = rendered_[0].envelope;
  render(0, true, s_.bodystructure);
  render(0, false, s_.body);
  finished_ = true;
  MessageStructure out = std::move(s_);
  s_ = MessageStructure{};
  rendered_.clear();
  return out;
}

void Parser::render(uint32_t index, bool extended, std::string& out) const {
  const Part& p = s_.parts[index];
  const Rendered& r = rendered_[index];
  out += '(';
  if (p.kind == PartKind::Multipart) {
    if (p.first_child == kNoPart) out += kEmptyBody;
    for (uint32_t c = p.first_child; c != kNoPart; c = s_.parts[c].next_sibling) render(c, extended, out);
    out += ' ';
    out += r.subtype;
  } else {
    out += r.head;
    out += ' ';
    out += std::to_string(p.body_size());
    if (p.kind == PartKind::Message) {
      out += ' ';
      if (p.first_child != kNoPart) {
        out += rendered_[p.first_child].envelope;
        out += ' ';
        render(p.first_child, extended, out);
      } else {
        out += kEmptyEnvelope;
        out += ' ';
        out += kEmptyBody;
      }
      out += ' ';
      out += std::to_string(p.body_lines);
    } else if (p.type == "text") {
      out += ' ';
      out += std::to_string(p.body_lines);
    }
  }
  if (extended) out += r.ext;
  out += ')';
}

MessageStructure parse(std::string_view message) {
  Parser parser;
  parser.feed(message);
  return parser.finish();
}

}  // namespace store::mime
