// parser.hpp: streaming, bounded MIME parser (RFC 5322, RFC 2045/2046): bytes in as they arrive,
// MessageStructure out. No I/O, clock or logging; memory is O(parts + kept header fields).
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "store/mime/structure.hpp"

namespace store::mime {

class Parser {
 public:
  Parser();
  // Any split of the same message gives the same structure: all state is in members.
  void feed(std::string_view bytes);
  // Ends the message (a last line without a line break counts) and returns its structure. The
  // parser is spent afterwards; reset() readies it for another message.
  MessageStructure finish();
  void reset();

  // The header fields the structure is built from (MIME fields of every part; the ENVELOPE fields
  // of a message's own header).
  enum Field : uint8_t {
    kContentType, kContentTransferEncoding, kContentId, kContentDescription, kContentDisposition,
    kContentLanguage, kContentLocation, kContentMd5,
    kDate, kSubject, kFrom, kSender, kReplyTo, kTo, kCc, kBcc, kInReplyTo, kMessageId,
    kFieldCount
  };

 private:
  enum class State { Header, Body };
  struct Boundary {
    uint32_t part;          // the multipart it delimits
    std::string delimiter;  // "--" boundary
  };
  // Per-part strings of BODYSTRUCTURE held until finish() nests them.
  struct Rendered {
    std::string head;      // type, subtype, params, id, description, encoding
    std::string ext;       // md5/params, disposition, language, location (leading space each)
    std::string subtype;   // multipart: the quoted subtype
    std::string envelope;  // a message's own header: its ENVELOPE
  };

  void absorb(const char* p, size_t n);
  void end_line(bool has_lf);
  void header_line(std::string_view content);
  void append_field(int field, std::string_view text);
  void end_header(uint64_t body_start, uint64_t lf_at_body);
  void finish_header(bool descend);
  std::optional<std::pair<size_t, bool>> match_boundary(std::string_view content) const;
  void on_boundary(size_t index, bool close, uint64_t line_end);
  void close_part(uint32_t part, uint64_t cut, uint64_t lf_at_cut);
  uint32_t open_part(uint32_t parent, uint64_t header_start);
  void render(uint32_t part, bool extended, std::string& out) const;

  MessageStructure s_;
  std::vector<Rendered> rendered_;
  std::vector<uint64_t> lf_at_body_;   // LFs before each part's body start
  std::vector<uint32_t> depth_;
  std::vector<uint32_t> last_child_;
  std::vector<Boundary> bounds_;       // innermost last
  State state_ = State::Header;
  uint32_t current_ = 0;               // the part whose header or body the next line is in

  // The current line: its first bytes (enough for a header field or a boundary), its length, and
  // whether everything past the kept bytes is white space (transport padding after a boundary).
  std::string line_;
  size_t line_keep_ = 0;
  uint64_t line_len_ = 0;
  bool line_tail_blank_ = true;
  bool line_truncated_ = false;
  char last_ = 0, before_last_ = 0;

  uint64_t offset_ = 0;
  uint64_t lf_count_ = 0;
  uint64_t prev_content_end_ = 0;  // where the previous line's line break starts

  // The header being read: the fields kept so far, the one continuation lines extend.
  std::array<std::optional<std::string>, kFieldCount> fields_;
  int folding_ = -1;
  uint32_t field_count_ = 0;
  size_t kept_bytes_ = 0;
  bool finished_ = false;
};

// The whole message at once.
MessageStructure parse(std::string_view message);

}  // namespace store::mime
