// structure.hpp: what the store keeps of a message's MIME structure, computed once at delivery so
// IMAP (RFC 3501 / RFC 9051) serves ENVELOPE, BODYSTRUCTURE and BODY[section] without re-parsing.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "common/result.hpp"

namespace store::mime {

inline constexpr uint32_t kNoPart = 0xffffffffu;

// Multipart and message/rfc822 nest; a part deeper than this is kept as an opaque body, so a
// message built as a million nested multiparts costs constant stack and memory.
inline constexpr uint32_t kMaxDepth = 32;
// Parts in one message, all levels together; beyond it, delimiters no longer open parts.
inline constexpr uint32_t kMaxParts = 10000;
// Header fields looked at per part: a header of 100,000 one-byte fields is scanned, not indexed.
inline constexpr uint32_t kMaxHeaderFields = 1000;
// Bytes kept of one header field the structure needs (To:, Subject:, Content-Type:...): a longer
// field keeps its first bytes, the rest is skipped.
inline constexpr size_t kMaxFieldBytes = 64 * 1024;
// Bytes of header field values kept for the whole message, all parts together.
inline constexpr size_t kMaxKeptHeaderBytes = 1024 * 1024;
// RFC 2046 §5.1.1 allows 70 characters; longer boundaries from broken mailers are accepted up to
// this, and a longer one makes the multipart an opaque body.
inline constexpr size_t kMaxBoundary = 200;

enum class PartKind : uint8_t { Leaf = 0, Multipart = 1, Message = 2 };

// Content-Transfer-Encoding (RFC 2045 §6), for BINARY (RFC 3516) and SEARCH, which decode bodies.
enum class Encoding : uint8_t { SevenBit = 0, EightBit = 1, Binary = 2, Base64 = 3, QuotedPrintable = 4, Other = 5 };

// What was wrong with the input; the structure is served anyway (the store logs and counts these).
enum Anomaly : uint32_t {
  kAnomalyNul = 1u << 0,                  // NUL bytes (RFC 5322 forbids them; IMAP strings cannot carry them)
  kAnomalyBareLf = 1u << 1,               // a line ended by LF alone
  kAnomalyEightBitHeader = 1u << 2,       // raw 8-bit bytes in a header
  kAnomalyHeaderTruncated = 1u << 3,      // a field over kMaxFieldBytes or over the message budget
  kAnomalyTooManyFields = 1u << 4,        // more than kMaxHeaderFields fields in one header
  kAnomalyDepthLimit = 1u << 5,           // nesting beyond kMaxDepth
  kAnomalyPartsLimit = 1u << 6,           // more than kMaxParts parts
  kAnomalyNoBoundary = 1u << 7,           // a multipart without a usable boundary parameter
  kAnomalyUnterminatedMultipart = 1u << 8,  // the close delimiter never came
  kAnomalyHeaderUnterminated = 1u << 9,   // a header with no empty line after it
  kAnomalyInvalidHeaderLine = 1u << 10,   // a header line that is neither a field nor a continuation
};

struct Part {
  // Offsets into the message as stored. The header range includes the empty line after it
  // (RFC 3501 BODY[HEADER] and BODY[n.MIME]); the body ends before the line break that precedes a
  // boundary, which belongs to the boundary (RFC 2046 §5.1.1).
  uint64_t header_start = 0;
  uint64_t header_end = 0;
  uint64_t body_start = 0;
  uint64_t body_end = 0;
  uint64_t body_lines = 0;  // LFs in the body: BODYSTRUCTURE "lines" (RFC 3501 body-fld-lines)
  uint32_t parent = kNoPart;
  uint32_t first_child = kNoPart;
  uint32_t next_sibling = kNoPart;
  PartKind kind = PartKind::Leaf;
  Encoding encoding = Encoding::SevenBit;
  // Lowercased media type, subtype and charset, for code that picks parts (SEARCH, BINARY); the
  // BODYSTRUCTURE string carries them as the header spelled them.
  std::string type;
  std::string subtype;
  std::string charset;

  uint64_t body_size() const { return body_end - body_start; }
  friend bool operator==(const Part&, const Part&) = default;
};

struct MessageStructure {
  uint64_t size = 0;   // octets of the whole message
  uint64_t lines = 0;  // LFs in the whole message
  uint32_t anomalies = 0;
  // Pre-order: parts[0] is the message itself (its header is the message header). A multipart's
  // children are its body parts; a message/rfc822 part has one child, the encapsulated message.
  std::vector<Part> parts;
  std::string envelope;       // "(...)" exactly as after "ENVELOPE " in a FETCH response
  std::string bodystructure;  // "(...)" as after "BODYSTRUCTURE " (with extension data)
  std::string body;           // "(...)" as after "BODY " (no extension data)

  friend bool operator==(const MessageStructure&, const MessageStructure&) = default;
};

struct ByteRange {
  uint64_t start = 0;
  uint64_t end = 0;
  uint64_t size() const { return end - start; }
  friend bool operator==(const ByteRange&, const ByteRange&) = default;
};

// The section-text of RFC 3501 §6.4.5 for BODY[<path>.<text>]; Full is BODY[<path>] alone.
// HEADER.FIELDS and HEADER.FIELDS.NOT select lines from the Header range.
enum class SectionText { Full, Header, Text, Mime };

// The part a section path (1-based numbers, as in BODY[1.2.3]) names, following RFC 3501 §6.4.5:
// numbers walk a multipart's children, "1" of a non-multipart is the part itself, and a further
// number after a message/rfc822 part walks the encapsulated message. nullopt: no such part.
std::optional<uint32_t> find_part(const MessageStructure& s, std::span<const uint32_t> path);

// The byte range of BODY[<path>], BODY[<path>.HEADER|TEXT|MIME]; an empty path is the whole
// message (BODY[], BODY[HEADER], BODY[TEXT]). nullopt where RFC 3501 gives the section no meaning:
// MIME of the message itself, HEADER or TEXT of a part that is not message/rfc822.
std::optional<ByteRange> section_range(const MessageStructure& s, std::span<const uint32_t> path,
                                       SectionText text);

// The value stored beside the message: versioned, varint and length-prefixed.
std::string encode(const MessageStructure& s);
// Validates everything (lengths, offsets nested in their parents, links); a corrupt value is an
// Internal error, never a crash or a structure that points outside its message.
common::Result<MessageStructure> decode(std::string_view bytes);

}  // namespace store::mime
