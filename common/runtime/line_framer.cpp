// line_framer.cpp: see line_framer.hpp. Memory is bounded by max_line plus one read.
#include "common/runtime/line_framer.hpp"

#include <algorithm>

namespace common::runtime {

LineFramer::LineFramer(size_t max_line) : max_line_(max_line) {}

void LineFramer::append(std::string_view bytes) {
  compact();
  buffer_.append(bytes);
}

void LineFramer::compact() {
  if (start_ == 0) return;
  if (start_ == buffer_.size()) {
    buffer_.clear();
  } else {
    buffer_.erase(0, start_);
  }
  start_ = 0;
}

void LineFramer::expect_bytes(size_t count) { bytes_left_ = count; }

void LineFramer::reset() {
  buffer_.clear();
  start_ = 0;
  scanned_ = 0;
  bytes_left_ = 0;
  discarding_ = false;
  discarded_ = 0;
}

std::optional<Frame> LineFramer::next() {
  if (bytes_left_ > 0) {
    size_t avail = buffer_.size() - start_;
    if (avail == 0) return std::nullopt;
    size_t take = std::min(avail, bytes_left_);
    std::string_view chunk(buffer_.data() + start_, take);
    start_ += take;
    bytes_left_ -= take;
    scanned_ = 0;
    return ByteChunk{chunk, bytes_left_ == 0};
  }
  for (;;) {
    std::string_view rest(buffer_.data() + start_, buffer_.size() - start_);
    size_t lf = rest.find('\n', scanned_);
    if (discarding_) {
      if (lf == std::string_view::npos) {
        discarded_ += rest.size();
        start_ = buffer_.size();
        scanned_ = 0;
        return std::nullopt;
      }
      discarded_ += lf + 1;
      start_ += lf + 1;
      scanned_ = 0;
      discarding_ = false;
      return LineTooLong{discarded_};
    }
    if (lf == std::string_view::npos) {
      // max_line bytes plus a CR may still end well; anything beyond cannot.
      if (rest.size() > max_line_ + 1) {
        discarding_ = true;
        discarded_ = 0;
        continue;
      }
      scanned_ = rest.size();
      return std::nullopt;
    }
    size_t end = lf;
    bool bare_lf = true;
    if (end > 0 && rest[end - 1] == '\r') {
      --end;
      bare_lf = false;
    }
    start_ += lf + 1;
    scanned_ = 0;
    if (end > max_line_) return LineTooLong{end};
    return LineFrame{rest.substr(0, end), bare_lf};
  }
}

}  // namespace common::runtime
